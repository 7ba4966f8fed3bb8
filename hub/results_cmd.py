"""``linkage-hub results``: one signed, sealed result package per receiving agency.

    linkage-hub results --db hub.duckdb --roster roster.json --hub-key hub.identity.key
                        [--run RUN_ID] [--rules judicial-assistance] [--ttl-days 30] --out DIR [--force]

Writes ``DIR/<agency>.<run id>.results.aidpkg`` for every agency named in the
run's ``deliver_to`` (see :mod:`hub.results`).  ``--json`` prints the packages
written and the clue rows per agency -- counts, never a token.
"""

from __future__ import annotations

import click

from agency_kit.clitools import aidlink_command, hub_audit
from agency_kit.keys_cmd import force_option, passphrase_option, read_passphrase
from linkage.keyfile import read_identity_file
from linkage.package import DEFAULT_TTL_DAYS
from linkage.roster import load_roster

from .results import write_results


def register(cli: click.Group) -> None:
    """Add ``results`` to ``linkage-hub``."""

    @aidlink_command(cli, "results", audit=hub_audit("db_path"))
    @click.option("--db", "db_path", required=True, type=click.Path(exists=True, dir_okay=False),
                  help="The hub database.")
    @click.option("--roster", "roster_path", required=True, type=click.Path(exists=True, dir_okay=False),
                  help="The federation roster, signed with this hub's key.")
    @click.option("--hub-key", "hub_key", required=True, type=click.Path(exists=True, dir_okay=False),
                  help="The hub's identity key file (signs the packages).")
    @click.option("--run", "run_id", default=None, help="The run to answer (default: the latest with clues).")
    @click.option("--rules", default="judicial-assistance", show_default=True,
                  help="The rule set the run used (file or built-in name): titles and legal bases.")
    @click.option("--ttl-days", default=DEFAULT_TTL_DAYS, show_default=True, type=click.IntRange(1, 366),
                  help="Days until the packages expire.")
    @click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
                  help="Directory for the result packages.")
    @force_option
    @passphrase_option
    def results(reporter, db_path, roster_path, hub_key, run_id, rules, ttl_days, out_dir, force, passphrase_env):
        """Write one signed, sealed result package per receiving agency."""
        passphrase = read_passphrase(passphrase_env, new=False, what=f"the hub identity in {hub_key}")
        hub = read_identity_file(hub_key, passphrase, role="hub")
        # pinned: only a roster this hub signed says which keys results are sealed to
        roster = load_roster(roster_path, hub_signing_key=hub.signing_key.public_key())
        reporter.audit_identity(hub)
        reporter.audit_input("database", db_path)
        reporter.audit_input("roster", roster_path)
        summary = write_results(db_path, out_dir, roster=roster, hub=hub, rules=rules, run_id=run_id,
                                ttl_days=ttl_days, force=force)
        reporter.audit_output("database", db_path)
        for p in summary["packages"]:
            reporter.audit_output("result_package", p["file"])
        reporter.audit_counts(packages=len(summary["packages"]),
                              clue_rows=sum(p["clue_rows"] for p in summary["packages"]))
        reporter.audit_refs(run_id=summary["run_id"], rule_set_digest=summary["rule_set_digest"],
                            package_ids=[p["package_id"] for p in summary["packages"]])
        if not summary["packages"]:
            reporter.say(f"run {summary['run_id']} has no clue rows: no result package written")
        for p in summary["packages"]:
            reporter.say(f"{p['agency']}: {p['clue_rows']} clue row(s) -> {p['file']} (package {p['package_id']}, "
                         f"expires {p['expires_at']})")
        return summary
