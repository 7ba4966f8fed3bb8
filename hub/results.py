"""Per-agency result packages: each agency gets back its own tokens, nothing else.

``linkage-hub results`` turns the ``clues`` table of one run into one package
per agency named in ``deliver_to``, signed by the hub and sealed to that
agency's receiving key from the roster (``linkage.package.write_package``,
direction ``to_agency``).  The table format is defined with the reader, in
:mod:`agency_kit.reveal` (``RESULT_SCHEMA``); one row per clue row:

================== ============================================================
column             what
================== ============================================================
token              the agency's own token (32 hex), as it sent it
source_package_id  the agency's package that carried the token (its vault's id)
dataset            the agency's dataset name from that package
rule_id            e.g. ``R1``
rule_title         the rule's title (Chinese) from the rule set
legal_basis        the rule's legal basis from the rule set
clue_type          judicial_assistance | referral | supervision_suggestion
receiver           the agency the clue is for (may differ from the recipient:
                   a referral to the women's federation travels as the
                   procuratorate's token, for it to forward)
receiver_name      the receiver's name (rule set, else roster, else its id)
other_datasets     the other dataset *kinds* in the person's cluster, sorted,
                   comma-separated
confidence         a band, never a score (below)
================== ============================================================

Never another agency's token
    Rows are chosen by ``deliver_to``; independently, every token's owner is
    looked up through ``records.package_id`` ⋈ ``packages.agency``.  Before any
    package is written, :func:`check_own_tokens` requires, for every package,
    that each token is owned by the package's recipient and that no token
    appears in two packages; a violation stops the run with nothing written.

Confidence bands
    A raw match probability is close to unique per pair: returned to an agency
    it would let that agency tie rows across result packages and runs, and
    learn about the agreement patterns of other agencies' data (a
    fingerprint).  So a clue carries one of four bands (at most two bits),
    computed per cluster from its *weakest* stored link -- the minimum match
    probability over the links (``pairs``) with both ends in the cluster.  The
    minimum rather than the mean: a chain A-B-C with one doubtful link makes
    the whole cluster doubtful, which a mean would hide.

    ========== =================================================================
    band       meaning
    ========== =================================================================
    high       every link in the cluster has match probability >= 0.99
    medium     the weakest link has match probability >= 0.90 (and < 0.99)
    low        the weakest link is below 0.90, or the cluster holds several
               records but none of its links reached the link threshold (it was
               joined at a lower cluster threshold)
    unlinked   the cluster is the agency's record alone: the clue rests on that
               record and on the *absence* of matches (e.g. R7), not on a link
    ========== =================================================================

Manifest
    ``direction: to_agency``, ``agency`` = recipient, the store's schema id and
    fingerprint (which must be the roster's), ``run_id``, ``in_reply_to`` (the
    agency's packages that took part in the run, so that its reveal can tell a
    wrong vault from a damaged result), and ``extensions.results``: format,
    version, rule set id and digest, row counts per rule, and the band
    definitions.  Counts only, never a value.

Roster
    Results are sealed to the receiving keys the roster lists, so the roster
    must be signed by this hub's key (``linkage-hub results`` loads it pinned
    to the hub key; :func:`write_results` refuses an unsigned roster or one
    naming another hub key, RosterError): a roster the hub did not issue
    could otherwise redirect an agency's results to someone else's key.

Record keeping
    Each package written is recorded in the hub database, table
    ``result_packages(package_id, run_id, agency, file, clue_rows, created_at,
    expires_at, rule_set, rule_set_digest)``, for the report's "who received
    which result".  If recording fails, the packages written are removed.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from agency_kit.reveal import (
    CONFIDENCE_BANDS,
    RESULT_FORMAT,
    RESULT_SCHEMA,
    RESULT_VERSION,
)
from linkage._crypto._files import check_output
from linkage.errors import (
    AidlinkError,
    FingerprintMismatchError,
    RosterError,
    RuleError,
    StateError,
)
from linkage.keyfile import Identity
from linkage.package import DEFAULT_TTL_DAYS, write_package
from linkage.roster import Roster, check_party_id, format_timestamp
from linkage.schema import schema_from_document

from .rules import CLUES, RuleSet, load_rules
from .store import read_meta, table_exists

log = logging.getLogger("aidlink.hub.results")

HIGH_MIN_PROBABILITY = 0.99
MEDIUM_MIN_PROBABILITY = 0.90
BAND_DEFINITIONS = {
    "high": f"weakest link in the cluster has match probability >= {HIGH_MIN_PROBABILITY}",
    "medium": f"weakest link >= {MEDIUM_MIN_PROBABILITY} and < {HIGH_MIN_PROBABILITY}",
    "low": f"weakest link < {MEDIUM_MIN_PROBABILITY}, or no link of the cluster reached the link threshold",
    "unlinked": "the cluster is one record: the clue rests on it and on absent matches",
}
assert tuple(BAND_DEFINITIONS) == CONFIDENCE_BANDS

RESULT_PACKAGES = "result_packages"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # as the manifest's run_id
_NEEDED = {
    CLUES: ("run_id", "rule_id", "clue_type", "receiver", "cluster_id", "dataset", "token", "other_datasets",
            "deliver_to"),
    "clusters": ("run_id", "cluster_id", "dataset", "token"),
    "records": ("dataset", "token", "package_id"),
    "packages": ("package_id", "agency"),
    "pairs": ("run_id", "token_l", "dataset_l", "token_r", "dataset_r", "match_probability"),
}


# ---------------------------------------------------------------- bands


def confidence_band(members: int, links: int, min_probability: float | None) -> str:
    """The band of one cluster (see the module docstring); the probability never leaves here."""
    if members <= 1:
        return "unlinked"
    if not links or min_probability is None:
        return "low"
    if min_probability >= HIGH_MIN_PROBABILITY:
        return "high"
    if min_probability >= MEDIUM_MIN_PROBABILITY:
        return "medium"
    return "low"


# ---------------------------------------------------------------- SQL builders


def run_clue_rows_sql() -> str:
    """Input: ``clues``, ``clusters``, ``records``, ``packages``, ``pairs``; bound: ``$run_id``.

    Output: one row per clue row of the run -- deliver_to, dataset, token,
    source_package_id and owner (the agency of the package that carried the
    token, NULL if none), rule_id, clue_type, receiver, cluster_id,
    other_datasets, members (records in the cluster), links (stored links
    inside the cluster), min_probability (weakest of them).
    """
    return (
        "WITH run_clues AS (SELECT * FROM clues WHERE run_id = $run_id), "
        "clue_clusters AS (SELECT DISTINCT cluster_id FROM run_clues), "
        "members AS (SELECT m.cluster_id, m.dataset, m.token FROM clusters AS m "
        "  JOIN clue_clusters AS k ON k.cluster_id = m.cluster_id WHERE m.run_id = $run_id), "
        "sizes AS (SELECT cluster_id, count(*) AS members FROM members GROUP BY cluster_id), "
        "links AS (SELECT a.cluster_id, count(*) AS links, min(p.match_probability) AS min_probability "
        "  FROM pairs AS p "
        "  JOIN members AS a ON a.dataset = p.dataset_l AND a.token = p.token_l "
        "  JOIN members AS b ON b.dataset = p.dataset_r AND b.token = p.token_r AND b.cluster_id = a.cluster_id "
        "  WHERE p.run_id = $run_id GROUP BY a.cluster_id) "
        "SELECT c.deliver_to, c.dataset, c.token, r.package_id AS source_package_id, pk.agency AS owner, "
        "  c.rule_id, c.clue_type, c.receiver, c.cluster_id, c.other_datasets, "
        "  coalesce(s.members, 0) AS members, coalesce(l.links, 0) AS links, l.min_probability "
        "FROM run_clues AS c "
        "LEFT JOIN records AS r ON r.dataset = c.dataset AND r.token = c.token "
        "LEFT JOIN packages AS pk ON pk.package_id = r.package_id "
        "LEFT JOIN sizes AS s ON s.cluster_id = c.cluster_id "
        "LEFT JOIN links AS l ON l.cluster_id = c.cluster_id "
        "ORDER BY c.deliver_to, c.rule_id, c.token"
    )


def run_packages_sql() -> str:
    """Input: ``clusters``, ``records``, ``packages``; bound: ``$run_id``.
    Output: (agency, package_id) of every package with a record in the run."""
    return (
        "SELECT DISTINCT pk.agency, pk.package_id FROM clusters AS c "
        "JOIN records AS r ON r.dataset = c.dataset AND r.token = c.token "
        "JOIN packages AS pk ON pk.package_id = r.package_id "
        "WHERE c.run_id = $run_id ORDER BY pk.agency, pk.package_id"
    )


def latest_run_sql() -> str:
    """Input: ``clues``, ``runs``.  Output: the run id of the latest run (by finish) that has clue rows."""
    return ("SELECT k.run_id FROM (SELECT DISTINCT run_id FROM clues) AS k JOIN runs AS r ON r.run_id = k.run_id "
            "ORDER BY r.finished_at DESC, k.run_id DESC LIMIT 1")


def clue_runs_sql() -> str:
    """Input: ``clues``.  Output: every run id with clue rows."""
    return "SELECT DISTINCT run_id FROM clues ORDER BY run_id"


def run_known_sql() -> str:
    """Input: ``clusters``; bound: ``$run_id``.  Output: 1 if the run has clusters."""
    return "SELECT count(*) > 0 FROM (SELECT 1 FROM clusters WHERE run_id = $run_id LIMIT 1)"


def create_result_packages_sql() -> str:
    """Output: table ``result_packages`` (one row per result package written)."""
    return (f"CREATE TABLE IF NOT EXISTS {RESULT_PACKAGES} ("
            " package_id VARCHAR PRIMARY KEY, run_id VARCHAR NOT NULL, agency VARCHAR NOT NULL,"
            " file VARCHAR NOT NULL, clue_rows BIGINT NOT NULL, created_at VARCHAR NOT NULL,"
            " expires_at VARCHAR NOT NULL, rule_set VARCHAR NOT NULL, rule_set_digest VARCHAR NOT NULL)")


def insert_result_package_sql() -> str:
    """Input: bound fields.  Output: one row of ``result_packages``."""
    return (f"INSERT INTO {RESULT_PACKAGES} (package_id, run_id, agency, file, clue_rows, created_at, expires_at,"
            " rule_set, rule_set_digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")


# ---------------------------------------------------------------- planning


@dataclass
class AgencyResult:
    """One agency's package, before it is written."""

    agency: str
    table: pa.Table
    in_reply_to: list[str]
    rows_by_rule: dict[str, int]
    owners: dict[tuple[str, str], str | None] = field(default_factory=dict, repr=False)

    @property
    def clue_rows(self) -> int:
        return self.table.num_rows


def _check_tables(con: duckdb.DuckDBPyConnection) -> None:
    missing = []
    for table, cols in _NEEDED.items():
        if not table_exists(con, table):
            missing.append(table)
            continue
        have = {r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
            "AND table_schema = current_schema()", [table]).fetchall()}
        missing += [f"{table}.{c}" for c in cols if c not in have]
    if missing:
        raise StateError(f"the hub database lacks {', '.join(missing)}: run ingest, match and rules first")


def resolve_run(con: duckdb.DuckDBPyConnection, run_id: str | None) -> str:
    """The run to answer: ``run_id``, or the latest run with clue rows."""
    if run_id is not None:
        if not con.execute(run_known_sql(), {"run_id": run_id}).fetchone()[0]:
            raise StateError(f"the hub database has no run {run_id!r}")
        return run_id
    if table_exists(con, "runs"):
        row = con.execute(latest_run_sql()).fetchone()
        if row:
            return row[0]
    runs = [r[0] for r in con.execute(clue_runs_sql()).fetchall()]
    if len(runs) == 1:
        return runs[0]
    if not runs:
        raise StateError("no run has clue rows: run `linkage-hub rules` first")
    raise StateError(f"{len(runs)} runs have clue rows; choose one with --run ({', '.join(runs)})")


def _receiver_names(ruleset: RuleSet, roster: Roster) -> dict[str, str]:
    names = {a.id: a.name for a in roster.agencies if a.name}
    for r in ruleset.receivers.values():
        if r.name:
            names[r.agency] = r.name
    return names


def plan_results(con: duckdb.DuckDBPyConnection, run_id: str, ruleset: RuleSet,
                 roster: Roster) -> list[AgencyResult]:
    """Read the run's clue rows and cut them into one table per ``deliver_to`` agency.

    Raises RuleError for a clue of a rule the rule set lacks, RosterError for
    a recipient not on the roster, StateError for a token whose owner is not
    its ``deliver_to`` agency (nothing is returned then).
    """
    _check_tables(con)
    cur = con.execute(run_clue_rows_sql(), {"run_id": run_id})
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    if not rows:
        return []
    unknown = sorted({r["rule_id"] for r in rows} - {x.id for x in ruleset.clue_rules})
    if unknown:
        raise RuleError(f"run {run_id!r} has clues of rule(s) {', '.join(unknown)}, which rule set "
                        f"{ruleset.id!r} does not define: give the rule set the run used (--rules)")
    agencies = sorted({r["deliver_to"] for r in rows})
    off_roster = [a for a in agencies if roster.agency(a) is None]
    if off_roster:
        raise RosterError(f"result recipient(s) {', '.join(off_roster)} are not agencies of the roster of "
                          f"federation {roster.federation!r}")
    stray = Counter((r["deliver_to"], r["rule_id"]) for r in rows if r["owner"] != r["deliver_to"])
    if stray:
        detail = "; ".join(f"{n} row(s) of rule {rule} for {agency}" for (agency, rule), n in sorted(stray.items()))
        raise StateError(f"run {run_id!r}: clue rows carry tokens their deliver_to agency did not send ({detail}); "
                         "no result package was written")
    replies: dict[str, list[str]] = {}
    for agency, package_id in con.execute(run_packages_sql(), {"run_id": run_id}).fetchall():
        replies.setdefault(agency, []).append(package_id)
    names_by_agency = _receiver_names(ruleset, roster)
    bands = {r["cluster_id"]: confidence_band(r["members"], r["links"], r["min_probability"]) for r in rows}
    out = []
    for agency in agencies:
        mine = [r for r in rows if r["deliver_to"] == agency]
        cols: dict[str, list[Any]] = {f.name: [] for f in RESULT_SCHEMA}
        for r in mine:
            rule = ruleset.rule(r["rule_id"])
            cols["token"].append(r["token"])
            cols["source_package_id"].append(r["source_package_id"])
            cols["dataset"].append(r["dataset"])
            cols["rule_id"].append(r["rule_id"])
            cols["rule_title"].append(rule.title)
            cols["legal_basis"].append(rule.legal_basis)
            cols["clue_type"].append(r["clue_type"])
            cols["receiver"].append(r["receiver"])
            cols["receiver_name"].append(names_by_agency.get(r["receiver"], r["receiver"]))
            cols["other_datasets"].append(",".join(sorted(r["other_datasets"] or [])))
            cols["confidence"].append(bands[r["cluster_id"]])
        table = pa.Table.from_pydict(cols, schema=RESULT_SCHEMA)
        out.append(AgencyResult(
            agency=agency, table=table, in_reply_to=replies.get(agency, []),
            rows_by_rule=dict(sorted(Counter(r["rule_id"] for r in mine).items())),
            owners={(r["dataset"], r["token"]): r["owner"] for r in mine}))
    check_own_tokens(out)
    return out


def check_own_tokens(results: Sequence[AgencyResult]) -> None:
    """The last check before writing: every token of a package is owned by its recipient
    (per ``records`` ⋈ ``packages``, not per ``deliver_to``) and no token is in two packages.

    Raises :class:`AidlinkError` (a bug: the planner already refuses such rows).
    """
    seen: dict[tuple[str, str], int] = {}
    for n, res in enumerate(results):
        tokens = res.table.column("token").to_pylist()
        datasets = res.table.column("dataset").to_pylist()
        for key in zip(datasets, tokens, strict=True):
            if res.owners.get(key) != res.agency:
                raise AidlinkError(f"refusing to write results: a token in the package for {res.agency} "
                                   "is not that agency's (nothing was written; please report this)")
            if seen.setdefault(key, n) != n:  # several rules may list one token within a package
                raise AidlinkError(f"refusing to write results: a token is in the packages for both "
                                   f"{results[seen[key]].agency} and {res.agency} (nothing was written; "
                                   "please report this)")


# ---------------------------------------------------------------- writing


def _rows_by_package(table: Any) -> dict[str, int]:
    """Clue rows per answered agency package (counts only)."""
    ids = table.column("source_package_id").to_pylist()
    return {pid: ids.count(pid) for pid in sorted(set(ids))}


def result_file_name(agency: str, run_id: str) -> str:
    """``<agency>.<run id>.results.aidpkg`` (both are checked to be safe as a file name)."""
    if not _RUN_ID.fullmatch(run_id):
        raise StateError("the run id is not 1-64 letters, digits, '.', '_' or '-': it cannot name a result package")
    return f"{check_party_id(agency)}.{run_id}.results.aidpkg"


def _manifest_fields(res: AgencyResult, run_id: str, schema_id: str, fingerprint: str,
                     ruleset: RuleSet) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "direction": "to_agency",
        "agency": res.agency,
        "schema_id": schema_id,
        "schema_fingerprint": fingerprint,
        "run_id": run_id,
        "extensions": {"results": {
            "format": RESULT_FORMAT,
            "version": RESULT_VERSION,
            "rule_set": ruleset.id,
            "rule_set_digest": ruleset.digest,
            "clue_rows": res.clue_rows,
            "rows_by_rule": res.rows_by_rule,
            "confidence_bands": BAND_DEFINITIONS,
        }},
    }
    if res.in_reply_to:
        fields["in_reply_to"] = list(res.in_reply_to)
    return fields


def _hub_identity_matches(identity: Identity, roster: Roster) -> None:
    """The roster must name this hub's key and be signed by it: results are sealed to the
    agency keys the roster lists, so a roster the hub did not issue could redirect them."""
    if identity.role != "hub" or identity.id != roster.hub.id or \
            identity.public().signing_public_key != roster.hub.signing_public_key:
        raise RosterError(f"the hub key is not the key of hub {roster.hub.id!r} on the roster of federation "
                          f"{roster.federation!r}: agencies would refuse its packages")
    if not roster.signed:  # a present signature was verified against roster.hub when it was loaded
        raise RosterError(f"the roster of federation {roster.federation!r} is not signed by the hub: results "
                          "are sealed only to the agency keys of a roster this hub signed "
                          "(agency-kit roster-build --sign-with)")


def write_results(db_path: str | Path, out_dir: str | Path, *, roster: Roster, hub: Identity,
                  rules: RuleSet | str | Path = "judicial-assistance", run_id: str | None = None,
                  ttl_days: int = DEFAULT_TTL_DAYS, force: bool = False,
                  now: datetime | None = None) -> dict[str, Any]:
    """Write one result package per receiving agency of a run; returns a summary (counts only).

    All or nothing: every output path is checked first, every package is
    planned and checked (:func:`check_own_tokens`) before the first is written,
    and the packages written are removed if a later one or the record keeping fails.
    """
    when = now or datetime.now(UTC).replace(microsecond=0)
    roster.check_valid(when)
    _hub_identity_matches(hub, roster)
    db = Path(db_path)
    if not db.exists():
        raise StateError(f"{db}: no hub database here (run `linkage-hub ingest` first)")
    con = duckdb.connect(str(db))
    try:
        meta = read_meta(con)
        if not meta.initialised or meta.schema_document is None:
            raise StateError(f"{db}: nothing has been ingested yet")
        if meta.schema_fingerprint != roster.schema_fingerprint:
            raise FingerprintMismatchError(
                f"{db}: the data was encoded with schema fingerprint {meta.schema_fingerprint[:16]}..., but "
                f"federation {roster.federation!r} uses {roster.schema_fingerprint[:16]}...")
        if not isinstance(rules, RuleSet):
            rules = load_rules(rules, schema_from_document(meta.schema_document, "hub database schema"))
        _check_tables(con)
        run = resolve_run(con, run_id)
        plan = plan_results(con, run, rules, roster)
        out = Path(out_dir)
        targets = {res.agency: out / result_file_name(res.agency, run) for res in plan}
        for target in targets.values():
            check_output(target, force)
        if plan:
            out.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        packages: list[dict[str, Any]] = []
        try:
            for res in plan:
                check_own_tokens([res])
                party = roster.require_agency(res.agency)
                manifest = write_package(
                    targets[res.agency], res.table,
                    _manifest_fields(res, run, meta.schema_id or "", meta.schema_fingerprint, rules),
                    signing_key=hub.signing_key, sender_id=hub.id, recipient_id=res.agency,
                    recipient_public_key=party.sealing_key(), suite=party.sealing_suite, now=when,
                    ttl_days=ttl_days, force=force)
                written.append(targets[res.agency])
                packages.append({"agency": res.agency, "file": str(targets[res.agency]),
                                 "package_id": manifest["package_id"], "clue_rows": res.clue_rows,
                                 "rows_by_rule": res.rows_by_rule, "expires_at": manifest["expires_at"],
                                 "suite": party.sealing_suite, "in_reply_to": list(res.in_reply_to or ()),
                                 "rows_by_package": _rows_by_package(res.table)})
            _record(con, run, rules, packages, when)
        except BaseException:
            for p in written:
                with contextlib.suppress(OSError):
                    p.unlink()
            raise
    finally:
        con.close()
    return {
        "run_id": run,
        "rule_set": rules.id,
        "rule_set_digest": rules.digest,
        "packages": packages,
        "clue_rows": {p["agency"]: p["clue_rows"] for p in packages},
        "confidence_bands": BAND_DEFINITIONS,
    }


def _record(con: duckdb.DuckDBPyConnection, run_id: str, rules: RuleSet, packages: Sequence[Mapping[str, Any]],
            when: datetime) -> None:
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(create_result_packages_sql())
        for p in packages:
            con.execute(insert_result_package_sql(), [
                p["package_id"], run_id, p["agency"], p["file"], p["clue_rows"], format_timestamp(when),
                p["expires_at"], rules.id, rules.digest])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
