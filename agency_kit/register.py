"""The clue register: the agency follows every clue to closure ("closed-loop management").

A DuckDB file kept by the agency (``aidlink-register.duckdb`` by default).
``agency-kit reveal`` adds the clues of each result package; officers then
move each clue through its statuses with ``agency-kit clues update`` and
export the register with ``agency-kit clues export``.

What it holds -- and what not
    Per clue: status, rule id and title, clue type, receiver, confidence band,
    the other dataset kinds, first and last run it was seen in, the dataset
    and row number in the latest export, the row key *MAC* from the vault
    (never the row-key cells), assistance amount, referral department,
    follow-up visit dates and notes.  No name, no ID number: the register
    points at rows of the agency's own export; ``reveal`` shows the rows.

A clue seen again
    Tokens are fresh every run, so a clue is recognised across runs by
    ``(dataset, row key MAC, rule id)``: the vault's MAC of the row-key cells
    is the same run after run for the same source row.  A clue seen again is
    not duplicated: its last-seen run and time, row number, confidence and
    sighting count are updated and a row is added to ``sightings``.  Its
    status is left alone (a closed clue stays closed; ``times_seen`` and
    ``last_seen_run`` show that it came back).  Re-importing the same result
    package changes nothing (``imports`` remembers package ids and datasets).

Statuses and transitions
    ============ ========================== ===================================
    status       meaning                    may change to
    ============ ========================== ===================================
    new          added by reveal            verifying, rejected
    verifying    an officer is checking it  assisted, referred, rejected
    assisted     assistance was given       referred, closed
    referred     handed to another          assisted, closed
                 department
    rejected     checked, not a case        verifying (reopened), closed
    closed       finished                   verifying (reopened)
    ============ ========================== ===================================

    Conditions, checked with the transition: ``assisted`` for a
    judicial-assistance clue needs an assistance amount (given now or
    recorded before); ``referred`` needs a referral department; ``rejected``
    and reopening a closed clue need a note saying why.  An amount may be
    recorded only on an assisted or closed clue, a referral department only
    on a referred or closed one.  Visit dates and notes may be added in any
    status; a visit date may not lie in the future.

History
    ``history`` is append-only (the code never updates or deletes it): who,
    when, which event (``status`` for a change of status, including creation
    from nothing to ``new``; ``amount``, ``referral_dept``, ``visit``,
    ``note``), from and to which status, and a short detail (the amount, the
    department, the date; never a note's text).  Each row carries
    ``hash = sha256(label || previous hash || canonical JSON of the row)``,
    so an edited, deleted or reordered row breaks the chain
    (:meth:`Register.verify_history`).  Limit: the chain is not keyed, so
    whoever can write the file can rebuild it; print the chain head
    (``clues export`` shows it) onto a paper record to anchor it.

Tables: ``register_meta(key, value)``, ``clues``, ``sightings``,
``visits``, ``notes``, ``history``, ``imports``.  Every statement comes from
a builder below; values are bound.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import duckdb

from linkage._crypto._files import atomic_output, check_output
from linkage.errors import IntegrityError, StateError

__all__ = [
    "DEFAULT_REGISTER",
    "STATUSES",
    "STATUS_LABELS_ZH",
    "TRANSITIONS",
    "ClueSighting",
    "RecordOutcome",
    "Register",
    "open_register",
    "parse_amount",
    "write_csv",
    "write_sheets",
]

REGISTER_VERSION = "1"
DEFAULT_REGISTER = "aidlink-register.duckdb"
STATUSES = ("new", "verifying", "assisted", "referred", "rejected", "closed")
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "new": ("verifying", "rejected"),
    "verifying": ("assisted", "referred", "rejected"),
    "assisted": ("referred", "closed"),
    "referred": ("assisted", "closed"),
    "rejected": ("verifying", "closed"),
    "closed": ("verifying",),
}
STATUS_LABELS_ZH = {"new": "新线索", "verifying": "核查中", "assisted": "已救助", "referred": "已移送",
                    "rejected": "不予采纳", "closed": "已办结"}
AMOUNT_STATUSES = ("assisted", "closed")
REFERRAL_STATUSES = ("referred", "closed")
MAX_AMOUNT = Decimal("9999999999.99")
MAX_TEXT = 2000
HISTORY_LABEL = b"aidlink register history v1\x00"
GENESIS = "0" * 64
_MAC = re.compile(r"^[0-9a-f]{32}$")
_CLUE_ID = re.compile(r"^C[0-9]{6,}$")


# ---------------------------------------------------------------- values


def parse_amount(text: str | Decimal | int) -> Decimal:
    """An assistance amount in yuan: 0 .. 9,999,999,999.99, at most two decimals (ValueError otherwise)."""
    try:
        value = Decimal(str(text).replace(",", "").strip())
    except InvalidOperation:
        raise ValueError("the amount must be a number of yuan, e.g. 5000 or 5000.50") from None
    if not value.is_finite() or value < 0 or value > MAX_AMOUNT:
        raise ValueError(f"the amount must be between 0 and {MAX_AMOUNT} yuan")
    if value != value.quantize(Decimal("0.01")):
        raise ValueError("the amount has at most two decimals (fen)")
    return value.quantize(Decimal("0.01"))


def _utc_naive(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    return now.astimezone(dt.UTC).replace(tzinfo=None, microsecond=0)


def _iso(t: dt.datetime | dt.date | None) -> str | None:
    if t is None:
        return None
    if isinstance(t, dt.datetime):
        return t.replace(microsecond=0).isoformat() + "Z"
    return t.isoformat()


def _check_text(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"the {what} is empty")
    if len(value) > MAX_TEXT:
        raise ValueError(f"the {what} is longer than {MAX_TEXT} characters")
    return value.strip()


# ---------------------------------------------------------------- SQL builders


def create_tables_sql() -> list[str]:
    """Output: every table of the register (idempotent)."""
    return [
        "CREATE TABLE IF NOT EXISTS register_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)",
        "CREATE TABLE IF NOT EXISTS clues ("
        " clue_id VARCHAR PRIMARY KEY, dataset VARCHAR NOT NULL, row_key_mac VARCHAR NOT NULL,"
        " rule_id VARCHAR NOT NULL, rule_title VARCHAR, legal_basis VARCHAR, clue_type VARCHAR NOT NULL,"
        " receiver VARCHAR NOT NULL, receiver_name VARCHAR, other_datasets VARCHAR[], confidence VARCHAR,"
        " status VARCHAR NOT NULL, first_seen_run VARCHAR NOT NULL, last_seen_run VARCHAR NOT NULL,"
        " first_seen_at TIMESTAMP NOT NULL, last_seen_at TIMESTAMP NOT NULL, times_seen INTEGER NOT NULL,"
        " row_number BIGINT, assistance_amount DECIMAL(14, 2), referral_dept VARCHAR,"
        " updated_at TIMESTAMP NOT NULL, UNIQUE (dataset, row_key_mac, rule_id))",
        "CREATE TABLE IF NOT EXISTS sightings (clue_id VARCHAR NOT NULL, run_id VARCHAR NOT NULL,"
        " package_id VARCHAR NOT NULL, seen_at TIMESTAMP NOT NULL, row_number BIGINT, confidence VARCHAR)",
        "CREATE TABLE IF NOT EXISTS visits (clue_id VARCHAR NOT NULL, visit_date DATE NOT NULL,"
        " actor VARCHAR NOT NULL, recorded_at TIMESTAMP NOT NULL, PRIMARY KEY (clue_id, visit_date))",
        "CREATE TABLE IF NOT EXISTS notes (clue_id VARCHAR NOT NULL, noted_at TIMESTAMP NOT NULL,"
        " actor VARCHAR NOT NULL, text VARCHAR NOT NULL)",
        "CREATE TABLE IF NOT EXISTS history (seq BIGINT PRIMARY KEY, clue_id VARCHAR NOT NULL,"
        " occurred_at TIMESTAMP NOT NULL, actor VARCHAR NOT NULL, event VARCHAR NOT NULL, from_status VARCHAR,"
        " to_status VARCHAR, detail VARCHAR, prev_hash VARCHAR NOT NULL, hash VARCHAR NOT NULL)",
        "CREATE TABLE IF NOT EXISTS imports (package_id VARCHAR NOT NULL, run_id VARCHAR NOT NULL,"
        " dataset VARCHAR NOT NULL, imported_at TIMESTAMP NOT NULL, actor VARCHAR NOT NULL,"
        " clue_rows BIGINT NOT NULL, new_clues BIGINT NOT NULL, seen_again BIGINT NOT NULL,"
        " PRIMARY KEY (package_id, dataset))",
    ]


def select_meta_sql() -> str:
    """Input: ``register_meta``.  Output: every (key, value)."""
    return "SELECT key, value FROM register_meta"


def upsert_meta_sql() -> str:
    """Input: bound (key, value).  Output: that row of ``register_meta``."""
    return "INSERT OR REPLACE INTO register_meta (key, value) VALUES (?, ?)"


def select_import_sql() -> str:
    """Input: ``imports``; bound: package id, dataset.  Output: its row, if that package's clues of
    that dataset were recorded before (a result package may carry several datasets of the agency)."""
    return "SELECT run_id, imported_at FROM imports WHERE package_id = ? AND dataset = ?"


def insert_import_sql() -> str:
    """Input: bound fields.  Output: one row of ``imports``."""
    return ("INSERT INTO imports (package_id, run_id, dataset, imported_at, actor, clue_rows, new_clues, seen_again)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)")


def select_clue_by_key_sql() -> str:
    """Input: ``clues``; bound: dataset, row key MAC, rule id.  Output: (clue_id, status) or nothing."""
    return "SELECT clue_id, status FROM clues WHERE dataset = ? AND row_key_mac = ? AND rule_id = ?"


def max_clue_number_sql() -> str:
    """Input: ``clues``.  Output: the largest number used in a clue id (0 when empty)."""
    return "SELECT coalesce(max(CAST(substr(clue_id, 2) AS BIGINT)), 0) FROM clues"


def insert_clue_sql() -> str:
    """Input: bound fields.  Output: one new row of ``clues`` with status ``new``."""
    return ("INSERT INTO clues (clue_id, dataset, row_key_mac, rule_id, rule_title, legal_basis, clue_type, receiver,"
            " receiver_name, other_datasets, confidence, status, first_seen_run, last_seen_run, first_seen_at,"
            " last_seen_at, times_seen, row_number, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'new', ?, ?, ?, ?, 1, ?, ?)")


def update_seen_sql() -> str:
    """Input: bound fields and clue id.  Output: the clue's last sighting, row number, band and titles updated."""
    return ("UPDATE clues SET last_seen_run = ?, last_seen_at = ?, times_seen = times_seen + 1, row_number = ?,"
            " confidence = ?, other_datasets = ?, rule_title = ?, legal_basis = ?, receiver = ?, receiver_name = ?,"
            " clue_type = ? WHERE clue_id = ?")


def insert_sighting_sql() -> str:
    """Input: bound fields.  Output: one row of ``sightings``."""
    return ("INSERT INTO sightings (clue_id, run_id, package_id, seen_at, row_number, confidence)"
            " VALUES (?, ?, ?, ?, ?, ?)")


def select_clue_sql() -> str:
    """Input: ``clues``; bound: clue id.  Output: its row."""
    return "SELECT * FROM clues WHERE clue_id = ?"


def update_clue_sql(columns: Sequence[str]) -> str:
    """Input: bound values of ``columns`` (from a fixed list), then the clue id.  Output: the row updated."""
    allowed = {"status", "assistance_amount", "referral_dept", "updated_at"}
    if not columns or not set(columns) <= allowed:
        raise ValueError("columns outside the updatable set")
    return f"UPDATE clues SET {', '.join(f'{c} = ?' for c in columns)} WHERE clue_id = ?"


def insert_visit_sql() -> str:
    """Input: bound fields.  Output: one row of ``visits`` -- none for a date already recorded --
    and the date inserted, if any."""
    return ("INSERT INTO visits (clue_id, visit_date, actor, recorded_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING RETURNING visit_date")


def insert_note_sql() -> str:
    """Input: bound fields.  Output: one row of ``notes``."""
    return "INSERT INTO notes (clue_id, noted_at, actor, text) VALUES (?, ?, ?, ?)"


def last_history_sql() -> str:
    """Input: ``history``.  Output: (seq, hash) of the last row, or nothing."""
    return "SELECT seq, hash FROM history ORDER BY seq DESC LIMIT 1"


def insert_history_sql() -> str:
    """Input: bound fields.  Output: one row appended to ``history``."""
    return ("INSERT INTO history (seq, clue_id, occurred_at, actor, event, from_status, to_status, detail, prev_hash, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def select_history_sql(one_clue: bool) -> str:
    """Input: ``history``; bound: a clue id when ``one_clue``.  Output: the rows in order."""
    where = " WHERE clue_id = ?" if one_clue else ""
    return ("SELECT seq, clue_id, occurred_at AS at, actor, event, from_status, to_status, detail, prev_hash, hash FROM history"
            f"{where} ORDER BY seq")


def list_clues_sql(n_statuses: int, n_rules: int) -> str:
    """Input: ``clues``, ``visits``, ``notes``; bound: ``n_statuses`` statuses then ``n_rules`` rule ids
    to keep (none: all).  Output: the clues with their visit dates and notes, by clue id."""
    where = []
    if n_statuses:
        where.append(f"c.status IN ({', '.join('?' * n_statuses)})")
    if n_rules:
        where.append(f"c.rule_id IN ({', '.join('?' * n_rules)})")
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return (
        "SELECT c.clue_id, c.status, c.rule_id, c.rule_title, c.legal_basis, c.clue_type, c.receiver,"
        " c.receiver_name, c.confidence, c.other_datasets, c.dataset, c.row_number, c.first_seen_run,"
        " c.last_seen_run, c.first_seen_at, c.last_seen_at, c.times_seen, c.assistance_amount, c.referral_dept,"
        " c.updated_at,"
        " (SELECT list(v.visit_date ORDER BY v.visit_date) FROM visits AS v WHERE v.clue_id = c.clue_id)"
        "   AS visit_dates,"
        " (SELECT list({'at': n.noted_at, 'actor': n.actor, 'text': n.text} ORDER BY n.noted_at) FROM notes AS n"
        "   WHERE n.clue_id = c.clue_id) AS notes"
        f" FROM clues AS c{clause} ORDER BY c.clue_id"
    )


def count_by_status_sql() -> str:
    """Input: ``clues``.  Output: (status, count)."""
    return "SELECT status, count(*) FROM clues GROUP BY status"


# ---------------------------------------------------------------- the register


@dataclass(frozen=True)
class ClueSighting:
    """One clue row of a result package, revealed: what the register keeps of it."""

    dataset: str
    row_key_mac: str  # 32 hex, from the vault
    rule_id: str
    clue_type: str
    receiver: str
    row_number: int
    rule_title: str = ""
    legal_basis: str = ""
    receiver_name: str = ""
    other_datasets: tuple[str, ...] = ()
    confidence: str = ""


@dataclass(frozen=True)
class RecordOutcome:
    """What recording one result package did.  ``clue_ids`` follows the sightings given."""

    clue_ids: tuple[str, ...]
    new: int
    seen_again: int
    already_imported: bool


def _history_hash(prev: str, row: dict[str, Any]) -> str:
    body = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(HISTORY_LABEL + bytes.fromhex(prev) + body.encode("utf-8")).hexdigest()


class Register:
    """An open register.  Use :func:`open_register` (a context manager)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path) -> None:
        self.con = con
        self.path = path

    # -- meta

    def meta(self) -> dict[str, str]:
        return dict(self.con.execute(select_meta_sql()).fetchall())

    def _bind_agency(self, agency: str) -> None:
        bound = self.meta().get("agency")
        if bound is None:
            self.con.execute(upsert_meta_sql(), ["agency", agency])
        elif bound != agency:
            raise StateError(f"{self.path}: this register belongs to agency {bound!r}, not {agency!r}")

    # -- history

    def _append_history(self, clue_id: str, at: dt.datetime, actor: str, event: str, from_status: str | None,
                        to_status: str | None, detail: str | None) -> None:
        last = self.con.execute(last_history_sql()).fetchone()
        seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
        row = {"seq": seq, "clue_id": clue_id, "at": _iso(at), "actor": actor, "event": event,
               "from_status": from_status, "to_status": to_status, "detail": detail}
        self.con.execute(insert_history_sql(), [seq, clue_id, at, actor, event, from_status, to_status, detail,
                                                prev, _history_hash(prev, row)])

    def history(self, clue_id: str | None = None) -> list[dict[str, Any]]:
        """History rows (all, or one clue's), oldest first."""
        cur = self.con.execute(select_history_sql(clue_id is not None), [clue_id] if clue_id else [])
        names = [d[0] for d in cur.description]
        return [{k: (_iso(v) if k == "at" else v) for k, v in zip(names, r, strict=True)} for r in cur.fetchall()]

    def verify_history(self) -> str:
        """Check the hash chain; returns its head (GENESIS when empty), IntegrityError if broken."""
        prev = GENESIS
        expected_seq = 1
        for h in self.history():
            row = {k: h[k] for k in ("seq", "clue_id", "at", "actor", "event", "from_status", "to_status", "detail")}
            if h["seq"] != expected_seq or h["prev_hash"] != prev or h["hash"] != _history_hash(prev, row):
                raise IntegrityError(f"{self.path}: the clue history was altered (chain broken at entry "
                                     f"{expected_seq})")
            prev = h["hash"]
            expected_seq += 1
        return prev

    # -- recording results

    def record_results(self, sightings: Sequence[ClueSighting], *, agency: str, package_id: str, run_id: str,
                       dataset: str, actor: str, now: dt.datetime | None = None,
                       before_commit: Callable[[RecordOutcome], None] | None = None) -> RecordOutcome:
        """Add the clues of one result package: new clues are created, clues seen before are
        updated (matched on dataset, row key MAC and rule id), all in one transaction.  A
        package (and dataset) recorded before changes nothing (its clue ids are still returned).

        ``before_commit(outcome)`` runs inside the transaction, before it commits:
        if it raises, nothing is recorded (reveal writes its files there).
        """
        actor = _check_text(actor, "actor name") or ""
        at = _utc_naive(now)
        for s in sightings:
            if not _MAC.fullmatch(s.row_key_mac):
                raise ValueError("row_key_mac must be 32 lower-case hex characters")
        self.con.execute("BEGIN TRANSACTION")
        try:
            self._bind_agency(agency)
            already = self.con.execute(select_import_sql(), [package_id, dataset]).fetchone() is not None
            next_number = self.con.execute(max_clue_number_sql()).fetchone()[0] + 1
            ids: list[str] = []
            new = again = 0
            done: dict[tuple[str, str, str], str] = {}
            for s in sightings:
                key = (s.dataset, s.row_key_mac, s.rule_id)
                if key in done:  # the same row twice for one rule in one package
                    ids.append(done[key])
                    continue
                found = self.con.execute(select_clue_by_key_sql(), list(key)).fetchone()
                if already:
                    if found is None:
                        raise StateError(f"{self.path}: result package {package_id} was recorded before, but its "
                                         "clues are missing from the register")
                    ids.append(found[0])
                    done[key] = found[0]
                    continue
                if found is None:
                    clue_id = f"C{next_number:06d}"
                    next_number += 1
                    self.con.execute(insert_clue_sql(), [
                        clue_id, s.dataset, s.row_key_mac, s.rule_id, s.rule_title, s.legal_basis, s.clue_type,
                        s.receiver, s.receiver_name, list(s.other_datasets), s.confidence, run_id, run_id, at, at,
                        s.row_number, at])
                    self._append_history(clue_id, at, actor, "status", None, "new", f"run {run_id}")
                    new += 1
                else:
                    clue_id = found[0]
                    self.con.execute(update_seen_sql(), [
                        run_id, at, s.row_number, s.confidence, list(s.other_datasets), s.rule_title, s.legal_basis,
                        s.receiver, s.receiver_name, s.clue_type, clue_id])
                    again += 1
                self.con.execute(insert_sighting_sql(), [clue_id, run_id, package_id, at, s.row_number,
                                                         s.confidence])
                ids.append(clue_id)
                done[key] = clue_id
            if not already:
                self.con.execute(insert_import_sql(), [package_id, run_id, dataset, at, actor, len(sightings), new,
                                                       again])
            outcome = RecordOutcome(tuple(ids), new, again, already)
            if before_commit is not None:
                before_commit(outcome)
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        return outcome

    # -- officers' updates

    def clue(self, clue_id: str) -> dict[str, Any]:
        """One clue's row; StateError if the register has no such clue."""
        cur = self.con.execute(select_clue_sql(), [clue_id])
        row = cur.fetchone()
        if row is None:
            raise StateError(f"{self.path}: there is no clue {clue_id!r} in this register "
                             "(see `agency-kit clues list`)")
        return dict(zip([d[0] for d in cur.description], row, strict=True))

    def update(self, clue_id: str, *, actor: str, status: str | None = None, amount: Decimal | str | None = None,
               referral_dept: str | None = None, visit_dates: Iterable[dt.date] = (), note: str | None = None,
               now: dt.datetime | None = None) -> dict[str, Any]:
        """Change a clue's status and/or record an amount, a referral department, visit dates,
        a note -- all checked first, then written in one transaction with their history.

        StateError (exit 22) for a transition or a field the workflow does not
        allow (see the module docstring); ValueError for malformed values.
        """
        actor = _check_text(actor, "actor name") or ""
        if not isinstance(clue_id, str) or not _CLUE_ID.fullmatch(clue_id):
            raise ValueError("a clue id looks like C000123")
        at = _utc_naive(now)
        note = _check_text(note, "note")
        referral_dept = _check_text(referral_dept, "referral department")
        value = parse_amount(amount) if amount is not None else None
        visits = sorted(set(visit_dates))
        for d in visits:
            if not isinstance(d, dt.date) or isinstance(d, dt.datetime):
                raise ValueError("visit dates are dates")
            if d > at.date():
                raise StateError(f"clue {clue_id}: visit date {d.isoformat()} is in the future")
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        if status is None and value is None and referral_dept is None and not visits and note is None:
            raise ValueError("nothing to update: give --status, --amount, --referral-dept, --visit-date or --note")
        self.con.execute("BEGIN TRANSACTION")
        try:
            current = self.clue(clue_id)
            old = current["status"]
            new = status or old
            self._check_update(clue_id, current, old, new, status is not None, value, referral_dept, note)
            columns: dict[str, Any] = {}
            if new != old:
                columns["status"] = new
            if value is not None:
                columns["assistance_amount"] = value
            if referral_dept is not None:
                columns["referral_dept"] = referral_dept
            columns["updated_at"] = at
            self.con.execute(update_clue_sql(list(columns)), [*columns.values(), clue_id])
            if value is not None:
                self._append_history(clue_id, at, actor, "amount", old, old, f"{value} yuan")
            if referral_dept is not None:
                self._append_history(clue_id, at, actor, "referral_dept", old, old, referral_dept)
            if new != old:
                self._append_history(clue_id, at, actor, "status", old, new, None)
            added = []
            for d in visits:
                if self.con.execute(insert_visit_sql(), [clue_id, d, actor, at]).fetchall():
                    added.append(d)
                    self._append_history(clue_id, at, actor, "visit", new, new, d.isoformat())
            if note is not None:
                self.con.execute(insert_note_sql(), [clue_id, at, actor, note])
                self._append_history(clue_id, at, actor, "note", new, new, None)
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        return {"clue_id": clue_id, "from_status": old, "status": new,
                "changed": [c for c in columns if c != "updated_at"] + (["visits"] if added else [])
                + (["note"] if note is not None else [])}

    @staticmethod
    def _check_update(clue_id: str, current: dict[str, Any], old: str, new: str, status_given: bool,
                      amount: Decimal | None, referral_dept: str | None, note: str | None) -> None:
        if status_given and new != old and new not in TRANSITIONS[old]:
            allowed = ", ".join(TRANSITIONS[old]) or "none"
            raise StateError(f"clue {clue_id}: status {old} cannot change to {new} (from {old}: {allowed})")
        if amount is not None and new not in AMOUNT_STATUSES:
            raise StateError(f"clue {clue_id}: an assistance amount is recorded on an assisted or closed clue, "
                             f"not on a {new} one")
        if referral_dept is not None and new not in REFERRAL_STATUSES:
            raise StateError(f"clue {clue_id}: a referral department is recorded on a referred or closed clue, "
                             f"not on a {new} one")
        if new == old:
            return
        if new == "assisted" and current["clue_type"] == "judicial_assistance" \
                and amount is None and current["assistance_amount"] is None:
            raise StateError(f"clue {clue_id}: give the assistance amount (--amount) to mark it assisted")
        if new == "referred" and referral_dept is None and current["referral_dept"] is None:
            raise StateError(f"clue {clue_id}: give the department it goes to (--referral-dept) to mark it referred")
        if (new == "rejected" or (old == "closed" and new == "verifying")) and note is None:
            what = "rejecting" if new == "rejected" else "reopening"
            raise StateError(f"clue {clue_id}: {what} a clue needs a note saying why (--note)")

    # -- reading

    def list(self, statuses: Sequence[str] = (), rule_ids: Sequence[str] = ()) -> list[dict[str, Any]]:
        """The clues (filtered by status and rule), with visit dates and notes, as plain JSON-able dicts."""
        bad = [s for s in statuses if s not in STATUSES]
        if bad:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        cur = self.con.execute(list_clues_sql(len(statuses), len(rule_ids)), [*statuses, *rule_ids])
        names = [d[0] for d in cur.description]
        out = []
        for r in cur.fetchall():
            d = dict(zip(names, r, strict=True))
            for k in ("first_seen_at", "last_seen_at", "updated_at"):
                d[k] = _iso(d[k])
            d["assistance_amount"] = None if d["assistance_amount"] is None else str(d["assistance_amount"])
            d["other_datasets"] = list(d["other_datasets"] or [])
            d["visit_dates"] = [_iso(v) for v in d["visit_dates"] or []]
            d["notes"] = [{"at": _iso(n["at"]), "actor": n["actor"], "text": n["text"]} for n in d["notes"] or []]
            out.append(d)
        return out

    def counts(self) -> dict[str, int]:
        have = dict(self.con.execute(count_by_status_sql()).fetchall())
        return {s: int(have.get(s, 0)) for s in STATUSES}


@contextlib.contextmanager
def open_register(path: str | Path, *, create: bool = False, read_only: bool = False) -> Iterator[Register]:
    """Open the register file (``create``: create it if absent); StateError if it is absent or not a register."""
    p = Path(path)
    existed = p.exists()
    if not existed:
        if not create or read_only:
            raise StateError(f"{p}: no clue register here (`agency-kit reveal` creates it; see --register)")
        p.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(p), read_only=read_only)
    except duckdb.Error as e:
        raise StateError(f"{p}: cannot open the clue register ({type(e).__name__}): is another program using "
                         "it, or is it not a register?") from e
    try:
        if existed and not _has_meta(con):
            raise StateError(f"{p}: this file is not an aidlink clue register")
        if not read_only:
            for sql in create_tables_sql():
                con.execute(sql)
        version = dict(con.execute(select_meta_sql()).fetchall()).get("register_version")
        if version is None and not read_only:
            con.execute(upsert_meta_sql(), ["register_version", REGISTER_VERSION])
        elif version != REGISTER_VERSION:
            raise StateError(f"{p}: register version {version}; this agency-kit reads version {REGISTER_VERSION}")
        yield Register(con, p)
    finally:
        con.close()


def _has_meta(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'register_meta'"
                            ).fetchone()[0])


# ---------------------------------------------------------------- officer-facing files


def _cell(value: Any) -> Any:
    """A value for a worksheet cell: text stays text (never a formula), control characters dropped."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    if value is None:
        return None
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, str):
        return ILLEGAL_CHARACTERS_RE.sub("", value)
    return value


def write_sheets(path: str | Path, sheets: Sequence[tuple[str, Sequence[str], Iterable[Sequence[Any]]]], *,
                 force: bool = False) -> Path:
    """Write an XLSX workbook atomically (mode 0600): one sheet per ``(title, headers, rows)``.

    Text cells are stored as text -- a cell starting with ``=`` is never a
    formula, an ID number never becomes a number; the header row is bold and
    frozen, with a filter.
    """
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    check_output(path, force)
    wb = Workbook()
    wb.remove(wb.active)
    for title, headers, rows in sheets:
        ws = wb.create_sheet(title)
        ws.append(list(headers))
        for c in ws[1]:
            c.font = Font(bold=True)
        widths = [max(6, len(str(h)) * 2) for h in headers]
        for r, row in enumerate(rows, start=2):
            for j, value in enumerate(row, start=1):
                cell = ws.cell(row=r, column=j, value=_cell(value))
                if isinstance(cell.value, str):
                    cell.data_type = "s"
                    widths[j - 1] = min(60, max(widths[j - 1], len(cell.value) + 2))
        for j, w in enumerate(widths, start=1):
            ws.column_dimensions[get_column_letter(j)].width = w
        ws.freeze_panes = "A2"
        if ws.max_row > 1:
            ws.auto_filter.ref = ws.dimensions
    buf = io.BytesIO()
    wb.save(buf)
    with atomic_output(path, force=force, mode=0o600) as f:
        f.write(buf.getvalue())
    return Path(path)


_CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    # a cell Excel would read as a formula is prefixed with an apostrophe (CSV injection)
    return "'" + text if text.startswith(_CSV_FORMULA_START) else text


def write_csv(path: str | Path, headers: Sequence[str], rows: Iterable[Sequence[Any]], *,
              force: bool = False) -> Path:
    """Write a CSV atomically (mode 0600): UTF-8 with a byte-order mark, CRLF, so that Excel opens it."""
    check_output(path, force)
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(headers)
    for row in rows:
        w.writerow([_csv_cell(v) for v in row])
    with atomic_output(path, force=force, mode=0o600) as f:
        f.write(buf.getvalue().encode("utf-8-sig"))
    return Path(path)


REGISTER_HEADERS = ("线索编号", "状态", "规则编号", "规则名称", "线索类型", "接收单位", "置信度", "数据集",
                    "源文件行号", "首次发现批次", "最近发现批次", "首次发现时间", "最近发现时间", "发现次数",
                    "救助金额(元)", "移送部门", "回访日期", "备注", "更新时间")
HISTORY_HEADERS = ("序号", "线索编号", "时间", "操作人", "事项", "原状态", "新状态", "说明", "校验值")


def register_rows(clues: Sequence[dict[str, Any]], labels: dict[str, dict[str, str]]) -> list[list[Any]]:
    """The register sheet's rows; ``labels`` maps clue_type / confidence values to display names."""
    rows = []
    for c in clues:
        notes = "\n".join(f"{n['at'][:10]} {n['actor']}: {n['text']}" for n in c["notes"])
        rows.append([
            c["clue_id"], STATUS_LABELS_ZH.get(c["status"], c["status"]), c["rule_id"], c["rule_title"],
            labels.get("clue_type", {}).get(c["clue_type"], c["clue_type"]),
            c["receiver_name"] or c["receiver"], labels.get("confidence", {}).get(c["confidence"], c["confidence"]),
            c["dataset"], c["row_number"], c["first_seen_run"], c["last_seen_run"], c["first_seen_at"],
            c["last_seen_at"], c["times_seen"],
            None if c["assistance_amount"] is None else Decimal(c["assistance_amount"]),
            c["referral_dept"], ", ".join(c["visit_dates"]), notes, c["updated_at"],
        ])
    return rows


def history_rows(history: Sequence[dict[str, Any]]) -> list[list[Any]]:
    events = {"status": "状态变更", "amount": "救助金额", "referral_dept": "移送部门", "visit": "回访", "note": "备注"}
    return [[h["seq"], h["clue_id"], h["at"], h["actor"], events.get(h["event"], h["event"]),
             STATUS_LABELS_ZH.get(h["from_status"], h["from_status"]),
             STATUS_LABELS_ZH.get(h["to_status"], h["to_status"]), h["detail"], h["hash"][:16]]
            for h in history]
