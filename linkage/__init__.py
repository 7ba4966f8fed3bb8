"""aidlink shared core: schema, normalisation, keyed encoding, packages.

No CLI code lives here: this package never prints, never exits, and never
imports click or Splink.
"""

__version__ = "0.1.0"
