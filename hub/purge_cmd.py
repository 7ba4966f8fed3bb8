"""``linkage-hub purge``: delete what is past its retention date (see :mod:`hub.retention`).

    linkage-hub purge --db hub.duckdb [--as-of YYYY-MM-DD] [--dry-run]

Deletes the links, clusters and clues of every run past its ``delete_after``
date, and the encodings no remaining run needs; ``--dry-run`` counts without
deleting.  ``--json`` prints the run and package ids and the rows deleted per
table, never a token.  Audited: the entry carries the same counts.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import click

from agency_kit.clitools import aidlink_command, hub_audit

from .retention import purge


def register(cli: click.Group) -> None:
    """Add ``purge`` to ``linkage-hub``."""

    @aidlink_command(cli, "purge", audit=hub_audit("db_path"))
    @click.option("--db", "db_path", required=True, type=click.Path(exists=True, dir_okay=False),
                  help="The hub database.")
    @click.option("--as-of", "as_of", default=None, type=click.DateTime(formats=["%Y-%m-%d"]),
                  help="Judge deletion dates as on this day (default: today, UTC). Runs whose delete_after "
                       "is before it are purged.")
    @click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
    def purge_cmd(reporter, db_path: str, as_of: datetime | None, dry_run: bool) -> dict:
        """Delete run outputs past their retention date, and the encodings no kept run needs."""
        day: date = as_of.date() if as_of else datetime.now(UTC).date()
        reporter.audit_input("database", db_path)
        s = purge(db_path, as_of=day, dry_run=dry_run)
        reporter.audit_counts({f"rows_{t}": n for t, n in s.rows.items()}, runs=len(s.runs), packages=len(s.packages))
        if s.runs:
            reporter.audit_refs(run_ids=s.runs)
        if s.packages:
            reporter.audit_refs(package_ids=s.packages)
        verb = "would delete" if dry_run else "deleted"
        if not s.runs and not s.packages:
            reporter.say(f"nothing is past its deletion date as of {day.isoformat()}")
        for run_id in s.runs:
            reporter.say(f"run {run_id}: past its deletion date; links, clusters and clues {verb}")
        if s.packages:
            reporter.say(f"{len(s.packages)} package(s) whose encodings no kept run needs: {verb}")
        if s.rows:
            reporter.say(", ".join(f"{t} {n:,}" for t, n in s.rows.items()) + f" row(s) {verb}")
        if s.parquet_removed:
            reporter.say("the Parquet copy of the records was removed (a Spark run writes it again)")
        return s.as_doc()
