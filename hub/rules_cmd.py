"""``linkage-hub rules``: run the supervision rules over a match run's clusters.

    linkage-hub rules --db hub.duckdb [--rules judicial-assistance] [--run RUN_ID] [--agency ROLE=ID ...]

Writes the ``clues`` table (see :mod:`hub.rules`); ``--json`` prints counts per
rule and receiver, never a token.

The text output says, per rule, how many persons have a clue, whom the clue is
*for* (the receiver) and in whose result package it *travels* (the agency whose
tokens it carries): a referral to the women's federation travels in the
procuratorate's package, for the procuratorate to forward.
"""

from __future__ import annotations

from pathlib import Path

import click
import duckdb

from agency_kit.clitools import aidlink_command, hub_audit
from linkage.errors import StateError
from linkage.schema import load_schema

from .retention import require_kept
from .rules import apply_rules, load_rules


def latest_run(con: duckdb.DuckDBPyConnection) -> str:
    """The most recent match run's id, or StateError when there is none."""
    try:
        rows = con.execute("SELECT run_id FROM runs ORDER BY finished_at DESC LIMIT 1").fetchall()
    except duckdb.CatalogException:
        rows = []
    if not rows:
        raise StateError("no match run in this database: run `linkage-hub match` first")
    return rows[0][0]


def delivery_line(rule_id: str, receiver: str, persons: int, carried: dict[str, int]) -> str:
    """One line of the text output: ``persons`` clue(s) of ``rule_id`` for ``receiver``, and where
    they travel; ``carried`` = {agency whose result package carries them: persons}.

    ``R6: 19 clue(s) for womens-federation, delivered in county-procuratorate's result package
    (19), to be forwarded``
    """
    head = f"{rule_id}: {persons} clue(s) for {receiver}"
    if not persons:
        return head
    others = [(agency, n) for agency, n in sorted(carried.items()) if agency != receiver and n]
    if not others:
        return f"{head}, delivered in its own result package"
    own = carried.get(receiver, 0)
    parts = ([f"its own result package ({own})"] if own else []) + [
        f"{agency}'s result package ({n})" for agency, n in others]
    return f"{head}, delivered in " + " and in ".join(parts) + ", to be forwarded"


def register(cli: click.Group) -> None:
    """Add ``rules`` to ``linkage-hub``."""

    @aidlink_command(cli, "rules", audit=hub_audit("db_path"))
    @click.option("--db", "db_path", required=True, type=click.Path(exists=True, dir_okay=False),
                  help="The hub database.")
    @click.option("--rules", "rules_path", default="judicial-assistance", show_default=True,
                  help="Rule-set file or built-in name.")
    @click.option("--schema", "schema_path", default="judicial-assistance", show_default=True,
                  help="The linkage schema the rules are checked against (attribute minimisation).")
    @click.option("--run", "run_id", default=None, help="The match run (default: the latest).")
    @click.option("--agency", "agencies", multiple=True, metavar="ROLE=AGENCY_ID",
                  help="Map a receiver role to an agency id (repeatable).")
    def rules(reporter, db_path: str, rules_path: str, schema_path: str, run_id: str | None,
              agencies: tuple[str, ...]) -> dict:
        """Apply the rule set to a match run and store its clues."""
        mapping = {}
        for item in agencies:
            role, sep, agency = item.partition("=")
            if not sep or not role or not agency:
                raise click.BadParameter("expected ROLE=AGENCY_ID", param_hint="--agency")
            mapping[role] = agency
        ruleset = load_rules(rules_path, load_schema(schema_path))
        reporter.audit_input("database", db_path)
        if Path(rules_path).is_file():
            reporter.audit_input("rule_set", rules_path)
        con = duckdb.connect(db_path)
        try:
            run = run_id or latest_run(con)
            require_kept(con, run)
            summary = apply_rules(con, ruleset, run, agencies=mapping or None)
        finally:
            con.close()
        reporter.audit_output("database", db_path)
        reporter.audit_counts(clues=sum(n for by in summary["clues"].values() for n in by.values()),
                              clusters_matched=sum(summary["matched"].values()))
        reporter.audit_refs(run_id=summary["run_id"], rule_set_digest=summary["rule_set_digest"])
        for rule_id, by_receiver in summary["clues"].items():
            for receiver, n in by_receiver.items():
                reporter.say(delivery_line(rule_id, receiver, n, summary["delivered"].get(rule_id, {})))
        return summary
