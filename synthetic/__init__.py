"""A synthetic county for aidlink: people, agency exports with realistic errors, truth.

Everything is made up.  See :mod:`synthetic.county` for the API and the files
written, :mod:`synthetic.planting` for the rules the planted cases satisfy,
and :mod:`synthetic.errors` for the error model.
"""

from synthetic.county import DATASET_AGENCY, County, generate_county, write_county

__all__ = ["DATASET_AGENCY", "County", "generate_county", "write_county"]
