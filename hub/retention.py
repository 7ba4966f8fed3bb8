"""Retention: delete what the hub may no longer keep (``linkage-hub purge``).

Every match run records a deletion date (``runs.delete_after``: its start plus
the run configuration's ``retention_days``).  After that date the run's
*outputs* -- its links (``pairs``), its clusters and its clues -- must go:
they say which tokens of which agencies belong to one person.  The run's row
in ``runs`` stays (purpose, legal basis, configuration, model, summary:
counts and parameters, nothing about a person), so the report and the audit
trail can still say what was done and when it was deleted.

The encodings themselves (``records`` and the salt banks, with their tokens)
serve the runs made after they were ingested.  A package's records are
deleted when at least one run has used them and every run that used them
(every run started after the package was ingested) is past its date.
Records no run has used yet are kept: they are waiting for their first run.
The package's row in ``packages`` (manifest: counts, fingerprints, no values)
stays, as ``runs`` does.  The Parquet copy of ``records`` beside the database
(for Spark) is removed whenever records are deleted; the next Spark run
writes it again.

Each deletion is recorded in table ``purges`` (when, what, how many rows),
which the report reads; the command's audit-log entry has the same counts.
Everything is deleted in one transaction: a failure deletes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb

from .store import RecordLayout, bank_table, connect, parquet_path_for, q, read_meta, table_exists

PURGES = "purges"
RUN_TABLES = ("pairs", "clusters", "clues")  # the per-run outputs (clues: written by `linkage-hub rules`)


def create_purges_sql() -> str:
    """Output: table ``purges`` (one row per run or package whose data was deleted)."""
    return (f"CREATE TABLE IF NOT EXISTS {PURGES} (purged_at TIMESTAMP NOT NULL, as_of DATE NOT NULL,"
            " run_id VARCHAR, package_id VARCHAR, table_name VARCHAR NOT NULL, rows_deleted BIGINT NOT NULL)")


def due_runs_sql() -> str:
    """Input: ``runs``, ``purges``; bound: as-of date.  Output: run ids past ``delete_after`` and not
    yet purged, oldest first."""
    return (f"SELECT run_id FROM runs WHERE delete_after < $1 AND run_id NOT IN"
            f" (SELECT run_id FROM {PURGES} WHERE run_id IS NOT NULL) ORDER BY started_at, run_id")


def due_packages_sql() -> str:
    """Input: ``packages``, ``runs``, ``purges``, temp table ``purge_runs(run_id)`` (this purge's runs).
    Output: package ids whose records have served at least one run, every one of which is purged now
    or was before."""
    done = f"(SELECT run_id FROM purge_runs UNION SELECT run_id FROM {PURGES} WHERE run_id IS NOT NULL)"
    return (
        f"SELECT p.package_id FROM packages p"
        f" WHERE p.package_id NOT IN (SELECT package_id FROM {PURGES} WHERE package_id IS NOT NULL)"
        f" AND EXISTS (SELECT 1 FROM runs r WHERE r.started_at >= p.ingested_at)"
        f" AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.started_at >= p.ingested_at AND r.run_id NOT IN {done})"
        f" ORDER BY p.ingested_at, p.package_id"
    )


@dataclass
class PurgeSummary:
    as_of: date
    dry_run: bool
    runs: list[str] = field(default_factory=list)
    packages: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows deleted (or to delete, dry run)
    parquet_removed: bool = False

    def as_doc(self) -> dict[str, Any]:
        return {"as_of": self.as_of.isoformat(), "dry_run": self.dry_run, "runs": self.runs,
                "packages": self.packages, "rows": self.rows, "parquet_removed": self.parquet_removed}


def _count(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> int:
    return int(con.execute(sql, params).fetchall()[0][0])


def purge(db_path: str | Path, *, as_of: date | None = None, dry_run: bool = False,
          now: datetime | None = None) -> PurgeSummary:
    """Delete every run output past its date and the records no kept run needs (see the module
    docstring).  ``as_of``: the day to judge by (default today, UTC); ``dry_run``: count only."""
    as_of = as_of or datetime.now(UTC).date()
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)  # TIMESTAMP columns hold UTC
    out = PurgeSummary(as_of=as_of, dry_run=dry_run)
    con = connect(db_path, read_only=dry_run)
    try:
        meta = read_meta(con)
        if not table_exists(con, "runs"):
            return out
        if not dry_run:
            con.execute(create_purges_sql())
        con.execute("BEGIN TRANSACTION")
        try:
            if not table_exists(con, PURGES):  # a dry run on a database never purged
                con.execute(create_purges_sql().replace("CREATE TABLE IF NOT EXISTS", "CREATE TEMP TABLE"))
            out.runs = [r for (r,) in con.execute(due_runs_sql(), [as_of]).fetchall()]
            con.execute("CREATE OR REPLACE TEMP TABLE purge_runs (run_id VARCHAR)")
            if out.runs:
                con.executemany("INSERT INTO purge_runs VALUES (?)", [[r] for r in out.runs])
            out.packages = [p for (p,) in con.execute(due_packages_sql()).fetchall()]
            log: list[list[Any]] = []
            for table in RUN_TABLES:
                if not table_exists(con, table):
                    continue
                for run_id in out.runs:
                    n = _count(con, f"SELECT count(*) FROM {q(table)} WHERE run_id = ?", [run_id])
                    out.rows[table] = out.rows.get(table, 0) + n
                    log.append([now, as_of, run_id, None, table, n])
                    if not dry_run:
                        con.execute(f"DELETE FROM {q(table)} WHERE run_id = ?", [run_id])
            layout = RecordLayout.from_schema(_schema(meta)) if meta.schema_document else None
            record_tables = [bank_table(f) for f in (layout.banks if layout else {})]
            for package_id in out.packages:
                rids = "SELECT rid FROM records WHERE package_id = ?"
                for table in record_tables:
                    n = _count(con, f"SELECT count(*) FROM {q(table)} WHERE rid IN ({rids})", [package_id])
                    out.rows[table] = out.rows.get(table, 0) + n
                    log.append([now, as_of, None, package_id, table, n])
                    if not dry_run:
                        con.execute(f"DELETE FROM {q(table)} WHERE rid IN ({rids})", [package_id])
                n = _count(con, "SELECT count(*) FROM records WHERE package_id = ?", [package_id])
                out.rows["records"] = out.rows.get("records", 0) + n
                log.append([now, as_of, None, package_id, "records", n])
                if not dry_run:
                    con.execute("DELETE FROM records WHERE package_id = ?", [package_id])
            if not dry_run:
                if log:  # every table of every purged run or package has its row, 0 deleted included
                    con.executemany(f"INSERT INTO {PURGES} VALUES (?, ?, ?, ?, ?, ?)", log)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        if not dry_run and (out.runs or out.packages):
            con.execute("CHECKPOINT")  # deleted rows' blocks go back to the file's free list
    finally:
        con.close()
    parquet = parquet_path_for(db_path)
    if out.packages and not dry_run and parquet.exists():
        parquet.unlink()
        out.parquet_removed = True
    return out


def _schema(meta: Any) -> Any:
    from linkage.schema import schema_from_document

    return schema_from_document(meta.schema_document, "the hub database's linkage schema")


def purge_history_sql() -> str:
    """Input: ``purges``; bound: run id.  Output: (purged_at, rows deleted) of that run, if purged."""
    return f"SELECT min(purged_at), sum(rows_deleted) FROM {PURGES} WHERE run_id = ?"


def require_kept(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """StateError if ``run_id``'s links and clusters were purged (rules over them would find nothing)."""
    from linkage.errors import StateError

    if table_exists(con, PURGES):
        when = con.execute(purge_history_sql(), [run_id]).fetchall()[0][0]
        if when is not None:
            raise StateError(f"run {run_id} was purged on {when:%Y-%m-%d} (past its deletion date): "
                             "its links and clusters are gone; make a new match run")
