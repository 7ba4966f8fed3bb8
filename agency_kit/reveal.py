"""Reveal: open the hub's result package, turn its tokens back into your own rows.

    agency-kit reveal --result R.aidpkg --identity ID.identity.key --roster roster.json
                      --vault X.vault --input export.csv --mapping X.mapping.json
                      --out clues.xlsx [--csv clues.csv] [--register aidlink-register.duckdb]

1. The result package is opened with the agency's receiving key and
   verified against the roster (the hub's signature, the recipient, the
   direction ``to_agency``, freshness; :func:`linkage.package.open_package`).
2. Rows of the package that came from the vault's package
   (``source_package_id``) are looked up in the vault: token -> row number
   and row key MAC.  The vault is opened with the key derived from the
   agency's signing key (:func:`identity_vault_key`, as the encoder does).
   A token of that package that the vault does not hold is refused
   (StateError, exit 22): the result belongs to another run or dataset.  No
   token is ever printed.  Rows from the agency's other packages (another
   dataset) are left for their own vault and counted.
3. The agency's export is read again (:mod:`agency_kit.readers`) and only the
   referenced rows are kept.  Each row is checked against the vault's row-key
   MAC; a row that moved (the file was re-sorted) is found again by its MAC,
   and a row no longer in the file is an InputError.
4. The clues go into the agency's register (:mod:`agency_kit.register`):
   new ones are created, ones seen in earlier runs recognised by row-key MAC
   and rule and updated.  Revealing the same package again changes nothing
   there (and writes the same clue ids).
5. Inside the register's transaction, the clue list for officers is written
   -- XLSX and, with ``--csv``, CSV in UTF-8 with a byte-order mark so that
   Excel opens it -- with Chinese headers (:data:`REVEAL_HEADERS`, then the
   source columns, then 法律依据).  Each file is written atomically; if a
   file cannot be written the register is rolled back and the other file
   removed, so files and register agree.  Existing outputs are refused
   unless ``--force``.

The result format (shared with :mod:`hub.results`, which writes it) is
defined here: :data:`RESULT_SCHEMA`, manifest ``extensions.results`` with
``format`` = :data:`RESULT_FORMAT`, ``version`` = :data:`RESULT_VERSION`.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from linkage._crypto._files import check_output
from linkage.errors import ConfigError, InputError, Problem, StateError
from linkage.keyfile import Identity
from linkage.package import open_package
from linkage.roster import Roster

from .mapping import Mapping, row_key_text
from .readers import iter_chunks, sniff
from .register import ClueSighting, RecordOutcome, open_register, write_csv, write_sheets
from .vault import Vault, open_vault, vault_key

log = logging.getLogger("aidlink.agency_kit.reveal")

__all__ = [
    "CLUE_TYPE_LABELS_ZH",
    "CONFIDENCE_BANDS",
    "CONFIDENCE_LABELS_ZH",
    "RESULT_FORMAT",
    "RESULT_SCHEMA",
    "RESULT_VERSION",
    "REVEAL_HEADERS",
    "Results",
    "identity_vault_key",
    "open_results",
    "reveal_results",
]

# ---------------------------------------------------------------- the result format

RESULT_FORMAT = "aidlink-results"
RESULT_VERSION = 1
CONFIDENCE_BANDS = ("high", "medium", "low", "unlinked")
RESULT_SCHEMA = pa.schema([
    ("token", pa.string()),
    ("source_package_id", pa.string()),
    ("dataset", pa.string()),
    ("rule_id", pa.string()),
    ("rule_title", pa.string()),
    ("legal_basis", pa.string()),
    ("clue_type", pa.string()),
    ("receiver", pa.string()),
    ("receiver_name", pa.string()),
    ("other_datasets", pa.string()),  # comma-separated, sorted (a Parquet list type does not round-trip
    #                                    through linkage.package's column check: list<item> -> list<element>)
    ("confidence", pa.string()),
])

CLUE_TYPE_LABELS_ZH = {"judicial_assistance": "司法救助", "referral": "转介移送",
                       "supervision_suggestion": "监督建议"}
CONFIDENCE_LABELS_ZH = {"high": "高", "medium": "中", "low": "低", "unlinked": "无关联记录"}
DATASET_KIND_LABELS_ZH = {
    "procuratorate_victims": "检察机关被害人",
    "court_enforcement": "法院终本执行案件",
    "civil_affairs_dibao": "低保",
    "civil_affairs_tekun": "特困",
    "disability_certificates": "残疾人证",
    "education_students": "在校学生及监护人",
    "wage_claimants": "支持起诉讨薪",
}
REVEAL_HEADERS = ("线索编号", "规则编号", "规则名称", "线索类型", "接收单位", "置信度", "关联数据集", "源文件行号")
LEGAL_BASIS_HEADER = "法律依据"
_HEX32 = re.compile(r"^[0-9a-f]{32}$")


def identity_vault_key(identity: Identity) -> bytes:
    """The vault key of an agency: derived from its signing key (see :mod:`agency_kit.vault`)."""
    return vault_key(identity.signing_key.private_bytes_raw())


# ---------------------------------------------------------------- opening


@dataclass(frozen=True)
class Results:
    """An authenticated, well-formed result package."""

    path: Path
    manifest: dict[str, Any]
    table: pa.Table

    @property
    def package_id(self) -> str:
        return self.manifest["package_id"]

    @property
    def run_id(self) -> str:
        return self.manifest.get("run_id", "")

    @property
    def agency(self) -> str:
        return self.manifest["agency"]

    @property
    def in_reply_to(self) -> list[str]:
        return list(self.manifest.get("in_reply_to", []))


def result_table_problems(table: pa.Table, in_reply_to: Sequence[str]) -> list[Problem]:
    """What is wrong with a result table (column names and positions only, never a value)."""
    if not table.schema.equals(RESULT_SCHEMA):
        want = ", ".join(f"{f.name}: {f.type}" for f in RESULT_SCHEMA)
        return [Problem("$.columns", f"are not the result columns of format version {RESULT_VERSION} ({want})")]
    problems = []
    cols = {name: table.column(name).to_pylist() for name in ("token", "source_package_id", "confidence",
                                                              "rule_id", "clue_type", "receiver", "dataset")}
    replies = set(in_reply_to)
    for i in range(table.num_rows):
        if not isinstance(cols["token"][i], str) or not _HEX32.fullmatch(cols["token"][i]):
            problems.append(Problem(f"$.rows[{i}].token", "is not 32 lower-case hex characters"))
        if cols["source_package_id"][i] not in replies:
            problems.append(Problem(f"$.rows[{i}].source_package_id", "is not among the manifest's in_reply_to"))
        if cols["confidence"][i] not in CONFIDENCE_BANDS:
            problems.append(Problem(f"$.rows[{i}].confidence", f"must be one of {list(CONFIDENCE_BANDS)}"))
        for name in ("rule_id", "clue_type", "receiver", "dataset"):
            if not cols[name][i]:
                problems.append(Problem(f"$.rows[{i}].{name}", "is empty"))
        if len(problems) >= 20:
            break
    return problems


def open_results(path: str | Path, *, identity: Identity, roster: Roster, now: datetime | None = None) -> Results:
    """Open and verify a result package sealed to ``identity``.

    IntegrityError (exit 20) if it is not authentic, not from the roster's hub
    or not for this agency; ReplayError when it expired; ConfigError when an
    authentic package is not a result package of this format.
    """
    p = Path(path)
    opened = open_package(p, recipient_private_key=identity.sealing_key, roster=roster,
                          recipient_id=identity.id, now=now)
    m = opened.manifest
    ext = (m.get("extensions") or {}).get("results")
    if m.get("direction") != "to_agency" or not isinstance(ext, dict) or ext.get("format") != RESULT_FORMAT:
        raise ConfigError(str(p), [Problem("$.extensions.results", "this package is not a result package "
                                                                     "of the hub")])
    if ext.get("version") != RESULT_VERSION:
        raise ConfigError(str(p), [Problem("$.extensions.results.version",
                                           f"result format version {ext.get('version')!r}; this agency-kit "
                                           f"reads version {RESULT_VERSION}")])
    problems = result_table_problems(opened.table, m.get("in_reply_to", []))
    if problems:
        raise ConfigError(f"{p}: result table", problems)
    return Results(p, m, opened.table)


# ---------------------------------------------------------------- joining


def rows_for_vault(results: Results, vault: Vault, vault_path: str | Path) -> tuple[pd.DataFrame, int]:
    """The result rows of ``vault``'s package, joined with it: every result column plus
    ``row_number`` and ``row_key`` (the MAC).  Also returns how many rows belong to other packages.

    StateError if no row is the vault's, or if a row of the vault's package
    carries a token the vault does not hold (never naming the token).
    """
    frame = results.table.to_pandas()
    mine = frame[frame["source_package_id"] == vault.package_id].reset_index(drop=True)
    others = len(frame) - len(mine)
    if mine.empty:
        answered = ", ".join(results.in_reply_to) or "none"
        raise StateError(f"{results.path}: none of its {len(frame)} clue row(s) are for vault {vault_path} "
                         f"(package {vault.package_id}, dataset {vault.dataset!r}); the result answers package(s) "
                         f"{answered}: use the vault written with one of those (another run or dataset?)")
    tokens = list(dict.fromkeys(mine["token"]))  # one token may carry clues of several rules
    found = vault.lookup(tokens)
    if len(found) != len(tokens):
        missing = int((~mine["token"].isin(set(found["token"]))).sum())
        raise StateError(f"{results.path}: {missing} of its clue row(s) carry a token that is not in vault "
                         f"{vault_path}: the result belongs to another run or dataset; use the vault written by "
                         f"the encode run that made package {vault.package_id}")
    joined = mine.merge(found, on="token", how="inner", validate="many_to_one")
    return joined, others


@dataclass(frozen=True)
class SourceRows:
    """Rows of the export found for the clues: row number -> cells, and where each wanted row was found."""

    cells: dict[int, dict[str, str | None]]
    located: dict[tuple[int, str], int]  # (vault row number, row key MAC) -> row number in this file
    relocated: int
    missing: int


def read_source_rows(input_path: str | Path, mapping: Mapping, vault: Vault, wanted: Sequence[tuple[int, str]],
                     columns: Sequence[str], *, encoding: str | None = None, sheet: str | None = None,
                     chunk_rows: int = 50_000) -> SourceRows:
    """Stream the export and keep only the rows ``wanted`` as (vault row number, row key MAC).

    A row is taken at its vault row number when its row key MAC agrees; else
    the row with that MAC elsewhere in the file (the file was re-sorted); else
    it is missing.  Only the cells of ``columns`` of matching rows are kept.
    """
    macs = {mac for _, mac in wanted}
    by_mac: dict[str, list[int]] = {}
    cells: dict[int, dict[str, str | None]] = {}
    needed = list(dict.fromkeys([*columns, *mapping.row_key]))
    for chunk in iter_chunks(input_path, columns_needed=needed, encoding=encoding or mapping.encoding,
                             sheet=sheet or mapping.sheet, chunk_rows=chunk_rows, file_type=mapping.file_type):
        for i, text in enumerate(row_key_text(chunk, mapping)):
            mac = vault.row_key_digest(text)
            if mac in macs:
                rn = chunk.first_row + i
                by_mac.setdefault(mac, []).append(rn)
                row = chunk.frame.iloc[i]
                cells[rn] = {c: row[c] for c in columns}
    located: dict[tuple[int, str], int] = {}
    relocated = missing = 0
    for rn, mac in wanted:
        at = by_mac.get(mac, [])
        if rn in at:
            located[(rn, mac)] = rn
        elif at:
            located[(rn, mac)] = at[0]
            relocated += 1
        else:
            missing += 1
    return SourceRows(cells, located, relocated, missing)


# ---------------------------------------------------------------- the whole step


def split_kinds(text: str | None) -> tuple[str, ...]:
    """The dataset kinds of an ``other_datasets`` cell (comma-separated)."""
    return tuple(k for k in (text or "").split(",") if k)


def _labels(kinds: Sequence[str]) -> str:
    return "、".join(DATASET_KIND_LABELS_ZH.get(k, k) for k in kinds)


def _source_headers(columns: Sequence[str]) -> list[str]:
    taken = set(REVEAL_HEADERS) | {LEGAL_BASIS_HEADER}
    return [f"{c}(源)" if c in taken else c for c in columns]


def reveal_results(*, result_path: str | Path, identity: Identity, roster: Roster, vault_path: str | Path,
                   input_path: str | Path, mapping: Mapping, out_xlsx: str | Path, out_csv: str | Path | None = None,
                   register_path: str | Path, actor: str, all_columns: bool = False, encoding: str | None = None,
                   sheet: str | None = None, force: bool = False, now: datetime | None = None) -> dict[str, Any]:
    """Open, join, write the clue list and record it in the register; returns counts (never a value).

    ``encoding`` and ``sheet`` override the mapping's, as for ``agency-kit encode``.
    """
    outputs = [Path(out_xlsx)] + ([Path(out_csv)] if out_csv else [])
    if len({o.resolve() for o in outputs} | {Path(input_path).resolve()}) != len(outputs) + 1:
        raise ConfigError("outputs", [Problem("$", "--out, --csv and --input must be three different files")])
    for o in outputs:
        check_output(o, force)
        o.parent.mkdir(parents=True, exist_ok=True)
    if mapping.agency != identity.id:
        raise ConfigError(mapping.source or "mapping", [Problem("$.agency", f"names agency {mapping.agency!r}, "
                                                                           f"but the identity is {identity.id!r}")])
    results = open_results(result_path, identity=identity, roster=roster, now=now)
    vault = open_vault(vault_path, key=identity_vault_key(identity))
    if vault.dataset != mapping.dataset:
        raise ConfigError(mapping.source or "mapping", [Problem("$.dataset", f"is {mapping.dataset!r}, but vault "
                                                                            f"{vault_path} is of dataset "
                                                                            f"{vault.dataset!r}")])
    joined, others = rows_for_vault(results, vault, vault_path)
    columns = list(sniff(input_path, encoding=encoding or mapping.encoding, sheet=sheet or mapping.sheet,
                         file_type=mapping.file_type).headers or ()) if all_columns else []
    columns = columns or list(mapping.source_columns)
    wanted = list(dict.fromkeys(zip(joined["row_number"].astype(int).tolist(), joined["row_key"], strict=True)))
    source = read_source_rows(input_path, mapping, vault, wanted, columns, encoding=encoding, sheet=sheet)
    if source.missing:
        raise InputError(f"{input_path}: {source.missing} clue row(s) are not in this file (no row has their row "
                         f"key): give the export that was encoded into package {vault.package_id}")
    joined["file_row"] = [source.located[(int(rn), mac)] for rn, mac in
                          zip(joined["row_number"], joined["row_key"], strict=True)]
    joined = joined.sort_values(["rule_id", "file_row"], kind="stable").reset_index(drop=True)
    sightings = [ClueSighting(dataset=vault.dataset, row_key_mac=r.row_key, rule_id=r.rule_id, clue_type=r.clue_type,
                              receiver=r.receiver, row_number=int(r.file_row), rule_title=r.rule_title,
                              legal_basis=r.legal_basis, receiver_name=r.receiver_name,
                              other_datasets=split_kinds(r.other_datasets), confidence=r.confidence)
                  for r in joined.itertuples(index=False)]
    headers = [*REVEAL_HEADERS, *_source_headers(columns), LEGAL_BASIS_HEADER]
    written: list[Path] = []

    def write_outputs(outcome: RecordOutcome) -> None:
        rows = []
        for clue_id, r in zip(outcome.clue_ids, joined.itertuples(index=False), strict=True):
            src = source.cells[int(r.file_row)]
            rows.append([clue_id, r.rule_id, r.rule_title, CLUE_TYPE_LABELS_ZH.get(r.clue_type, r.clue_type),
                         r.receiver_name or r.receiver, CONFIDENCE_LABELS_ZH.get(r.confidence, r.confidence),
                         _labels(split_kinds(r.other_datasets)), int(r.file_row), *(src[c] for c in columns),
                         r.legal_basis])
        written.append(write_sheets(out_xlsx, [("线索清单", headers, rows)], force=force))
        if out_csv:
            written.append(write_csv(out_csv, headers, rows, force=force))

    try:  # the files are written inside the register's transaction: both, or neither
        with open_register(register_path, create=True) as reg:
            outcome = reg.record_results(sightings, agency=identity.id, package_id=results.package_id,
                                         run_id=results.run_id, dataset=vault.dataset, actor=actor, now=now,
                                         before_commit=write_outputs)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    return {
        "result": str(result_path),
        "package_id": results.package_id,
        "run_id": results.run_id,
        "agency": identity.id,
        "dataset": vault.dataset,
        "clue_rows": results.table.num_rows,
        "revealed": len(joined),
        "other_package_rows": others,
        "relocated_rows": source.relocated,
        "by_rule": dict(sorted(Counter(joined["rule_id"]).items())),
        "by_confidence": {b: int((joined["confidence"] == b).sum()) for b in CONFIDENCE_BANDS},
        "outputs": {"xlsx": str(out_xlsx), **({"csv": str(out_csv)} if out_csv else {})},
        "register": {"path": str(register_path), "new": outcome.new, "seen_again": outcome.seen_again,
                     "already_recorded": outcome.already_imported},
    }
