"""``linkage-hub audit verify|show``: the hub's audit log (see :mod:`agency_kit.audit_cmd`).

    linkage-hub audit verify --db hub/hub.duckdb [--roster roster.json] [--expect-head HASH]
    linkage-hub audit verify --log hub/hub.duckdb.audit.jsonl
    linkage-hub audit show   --db hub/hub.duckdb [--last N] [--action ingest]

The hub's commands append to ``<db>.audit.jsonl`` beside the database (or the
``--audit-log`` they were given); ``--db`` finds that log, ``--log`` names any.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from agency_kit.audit_cmd import register_audit
from linkage.audit import hub_log_path


def _resolve(kw: dict[str, Any]) -> Path:
    log, db = kw.get("log_path"), kw.get("db_path")
    if log and db:
        raise click.UsageError("give --log or --db, not both")
    if log:
        return Path(log)
    if db:
        return hub_log_path(db)
    raise click.UsageError("name the audit log with --log, or the hub database with --db (its log is "
                           "<db>.audit.jsonl beside it)")


def register(cli: click.Group) -> None:
    """Add ``audit`` to ``linkage-hub``."""
    register_audit(cli, resolve=_resolve, log_options=[
        click.option("--log", "log_path", default=None, type=click.Path(dir_okay=False),
                     help="The audit log file."),
        click.option("--db", "db_path", default=None, type=click.Path(dir_okay=False),
                     help="The hub database: its log is <db>.audit.jsonl beside it."),
    ])
