"""The hub's DuckDB database: its tables, and the SQL that fills them.

One file (``hub.duckdb``) holds everything the hub keeps:

============ ================================================================
table        what
============ ================================================================
``meta``     key/value: store version, schema id, fingerprint, key-check
             value, the schema document, the LSH parameters
``packages`` one row per ingested package (id, agency, dataset, kind, counts,
             content hash, manifest)
``records``  one row per encoded record: ``rid`` (hub row id), dataset, kind,
             package, token, the keyed hashes, blocking keys and typo keys
             ``vk_<f>_<j>`` (BIGINT),
             each Bloom filter as HUGEINT words ``bf_<f>_<i>`` (128 bits each,
             bit *i* of the filter is bit ``127 - i % 128`` of word ``i // 128``)
             with its popcount ``bf_<f>_pc`` (INTEGER), the record CLK (BLOB),
             LSH bands ``lsh_<f>_<j>`` (BIGINT) and the ``attr_*`` columns
``runs``     one row per match run: config, model JSON, thresholds, estimates
``pairs``    links of a run (token and dataset on both sides, weight, probability)
``clusters`` every record's cluster in a run
============ ================================================================

Nothing else is stored: no raw identifier ever reaches the hub.  Parquet has
no HUGEINT, so the Parquet copy of ``records`` (for the Spark engine) keeps
each filter as signed BIGINT words ``bf_<f>_w<i>`` (64 bits, big-endian order).

Every SQL statement comes from one pure builder below whose docstring names its
input and output tables.  Identifiers come only from the validated linkage
schema (``^[a-z][a-z0-9_]{0,47}$``) and are quoted; values are bound.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from linkage.errors import ConfigError, Problem, StateError
from linkage.schema import LinkageSchema

STORE_VERSION = "1"
WORD_BITS = 128
_IDENT = re.compile(r"^[a-z][a-z0-9_]{0,90}$")

ATTRIBUTE_SQL_TYPES = {"boolean": "BOOLEAN", "integer": "BIGINT", "string": "VARCHAR", "date": "DATE"}


def q(identifier: str) -> str:
    """Quote an identifier (or ``catalog.table``) built from the validated schema; refuse anything else."""
    parts = identifier.split(".")
    if len(parts) > 2 or not all(_IDENT.match(p) for p in parts):
        raise ValueError("identifier not from the validated schema")
    return ".".join(f'"{p}"' for p in parts)


@dataclass(frozen=True)
class FilterColumns:
    """Where one Bloom-filter field lives in ``records``."""

    field: str
    bits: int

    @property
    def n_words(self) -> int:
        return -(-self.bits // WORD_BITS)

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(f"bf_{self.field}_{i}" for i in range(self.n_words))

    def word_bits(self, i: int) -> int:
        """Bits held by word ``i`` (128, or 64 for a short last word)."""
        return min(WORD_BITS, self.bits - i * WORD_BITS)

    @property
    def popcount(self) -> str:
        return f"bf_{self.field}_pc"

    @property
    def source(self) -> str:
        """The column of the encoded-record table (``fixed_size_binary``)."""
        return f"bf_{self.field}"


@dataclass(frozen=True)
class LshBands:
    """LSH bands of one filter field: ``n_bands`` bands of ``bits_per_band`` sampled bits."""

    field: str
    bits_per_band: int
    n_bands: int
    seed: int

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f"lsh_{self.field}_{j}" for j in range(self.n_bands))

    def as_doc(self) -> dict[str, Any]:
        return {"field": self.field, "bits_per_band": self.bits_per_band, "n_bands": self.n_bands, "seed": self.seed}


@dataclass(frozen=True)
class RecordLayout:
    """The columns of ``records`` for one linkage schema (and its LSH parameters)."""

    schema_id: str
    filters: tuple[FilterColumns, ...]
    exact: tuple[str, ...]  # eh_<field>
    keys: tuple[str, ...]  # bk_<key>
    clk_bytes: int
    attributes: dict[str, str]  # attr_<name> -> SQL type
    kind_attributes: dict[str, frozenset[str]]  # dataset kind -> allowed attr_ columns
    lsh: tuple[LshBands, ...] = ()
    exact_fields: dict[str, str] = field(default_factory=dict)  # eh_ column -> field
    banks: dict[str, int] = field(default_factory=dict)  # field with a salt bank -> slots
    flags: tuple[str, ...] = ()  # ok_<field>: the value passed its check (validity_flag)
    typo: dict[str, tuple[str, ...]] = field(default_factory=dict)  # field -> its vk_<field>_<j> columns

    @classmethod
    def from_schema(cls, schema: LinkageSchema, lsh: tuple[LshBands, ...] = ()) -> RecordLayout:
        attrs: dict[str, str] = {}
        problems = []
        kinds: dict[str, frozenset[str]] = {}
        for kind in schema.datasets.values():
            for a in kind.attributes.values():
                col, typ = f"attr_{a.name}", ATTRIBUTE_SQL_TYPES[a.type]
                if attrs.setdefault(col, typ) != typ:
                    problems.append(Problem(f"$.datasets.{kind.name}.attributes.{a.name}.type",
                                            "the same attribute name has another type in another dataset kind"))
            kinds[kind.name] = frozenset(f"attr_{a}" for a in kind.attributes)
        if problems:
            raise ConfigError(f"schema {schema.id}", problems)
        return cls(
            schema_id=schema.id,
            filters=tuple(FilterColumns(f.name, f.filter.output_length) for f in schema.filter_fields),
            exact=tuple(f"eh_{f.name}" for f in schema.exact_fields),
            keys=tuple(f"bk_{k.name}" for k in schema.blocking_keys),
            clk_bytes=schema.clk_output_length // 8,
            attributes=attrs,
            kind_attributes=kinds,
            lsh=lsh,
            exact_fields={f"eh_{f.name}": f.name for f in schema.exact_fields},
            banks={f.name: len(f.filter.hardening.salt.bank) for f in schema.bank_fields},
            flags=tuple(f"ok_{f.name}" for f in schema.flag_fields),
            typo={f.name: f.typo_key_columns for f in schema.typo_fields},
        )

    def filter(self, field_name: str) -> FilterColumns:
        for f in self.filters:
            if f.field == field_name:
                return f
        raise KeyError(field_name)

    def bank_columns(self, field_name: str) -> list[tuple[str, str]]:
        """(name, SQL type) of the columns of table ``bank_<field>``: rid, slot, and the field's
        filter words and popcount under the same names as in ``records``."""
        f = self.filter(field_name)
        return [("rid", "BIGINT"), ("slot", "SMALLINT"), *((w, "HUGEINT") for w in f.words),
                (f.popcount, "INTEGER")]

    @property
    def typo_columns(self) -> tuple[str, ...]:
        """Every typo-key column (BIGINT), field by field."""
        return tuple(c for cols in self.typo.values() for c in cols)

    @property
    def lsh_columns(self) -> tuple[str, ...]:
        return tuple(c for b in self.lsh for c in b.columns)

    def record_columns(self) -> list[tuple[str, str]]:
        """(name, SQL type) of every ``records`` column, in order."""
        cols = [("rid", "BIGINT"), ("dataset", "VARCHAR"), ("dataset_kind", "VARCHAR"),
                ("package_id", "VARCHAR"), ("token", "VARCHAR")]
        cols += [(c, "BIGINT") for c in self.exact + self.keys]
        cols += [(c, "BOOLEAN") for c in self.flags]
        cols += [(c, "BIGINT") for c in self.typo_columns]
        for f in self.filters:
            cols += [(w, "HUGEINT") for w in f.words]
            cols.append((f.popcount, "INTEGER"))
        cols.append(("clk", "BLOB"))
        cols += [(c, "BIGINT") for c in self.lsh_columns]
        cols += sorted(self.attributes.items())
        return cols


# ---------------------------------------------------------------- DDL builders


def create_meta_sql() -> str:
    """Output: table ``meta(key, value)``."""
    return "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)"


def create_packages_sql() -> str:
    """Output: table ``packages`` (one row per ingested package)."""
    return (
        "CREATE TABLE IF NOT EXISTS packages ("
        " package_id VARCHAR PRIMARY KEY, agency VARCHAR NOT NULL, dataset VARCHAR NOT NULL,"
        " dataset_kind VARCHAR NOT NULL, content_sha256 VARCHAR NOT NULL, n_records BIGINT NOT NULL,"
        " created_at VARCHAR, expires_at VARCHAR, ingested_at TIMESTAMP NOT NULL, manifest VARCHAR NOT NULL)"
    )


def create_records_sql(layout: RecordLayout) -> str:
    """Output: table ``records`` with the columns of ``layout``."""
    cols = ", ".join(f"{q(n)} {t}" for n, t in layout.record_columns())
    return f"CREATE TABLE IF NOT EXISTS records ({cols})"


def bank_table(field_name: str) -> str:
    """The table holding the salt banks of one field."""
    return f"bank_{field_name}"


def create_bank_sql(layout: RecordLayout, field_name: str) -> str:
    """Output: table ``bank_<field>`` (one row per slot of each record's salt bank)."""
    cols = ", ".join(f"{q(n)} {t}" for n, t in layout.bank_columns(field_name))
    return f"CREATE TABLE IF NOT EXISTS {q(bank_table(field_name))} ({cols})"


def insert_bank_sql(layout: RecordLayout, field_name: str, staging: str) -> str:
    """Input: staging table ``staging`` (rid, slot, BIGINT words ``bf_<f>_w<i>``, popcount).
    Output: its rows appended to ``bank_<field>``, words as HUGEINT."""
    f = layout.filter(field_name)
    names = [q(n) for n, _ in layout.bank_columns(field_name)]
    sel = ["rid", "slot", *(hugeint_word_sql(hi, lo) for hi, lo in staging_word_columns(f)), q(f.popcount)]
    return (f"INSERT INTO {q(bank_table(field_name))} ({', '.join(names)})"
            f" SELECT {', '.join(sel)} FROM {q(staging)}")


def create_runs_sql() -> str:
    """Output: table ``runs`` (one row per match run)."""
    return (
        "CREATE TABLE IF NOT EXISTS runs ("
        " run_id VARCHAR PRIMARY KEY, started_at TIMESTAMP NOT NULL, finished_at TIMESTAMP NOT NULL,"
        " delete_after DATE NOT NULL, purpose VARCHAR, legal_basis VARCHAR,"
        " config VARCHAR NOT NULL, model VARCHAR NOT NULL, summary VARCHAR NOT NULL)"
    )


def create_pairs_sql() -> str:
    """Output: table ``pairs`` (links of every run), read by the rules engine."""
    return (
        "CREATE TABLE IF NOT EXISTS pairs ("
        " run_id VARCHAR NOT NULL, token_l VARCHAR NOT NULL, dataset_l VARCHAR NOT NULL,"
        " token_r VARCHAR NOT NULL, dataset_r VARCHAR NOT NULL,"
        " match_weight DOUBLE NOT NULL, match_probability DOUBLE NOT NULL)"
    )


def create_clusters_sql() -> str:
    """Output: table ``clusters`` (every record's cluster in every run)."""
    return (
        "CREATE TABLE IF NOT EXISTS clusters ("
        " run_id VARCHAR NOT NULL, cluster_id VARCHAR NOT NULL, dataset VARCHAR NOT NULL, token VARCHAR NOT NULL)"
    )


# ---------------------------------------------------------------- DML builders


def insert_meta_sql() -> str:
    """Input: bound (key, value).  Output: one row of ``meta`` (replaced if present)."""
    return "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)"


def select_meta_sql() -> str:
    """Input: ``meta``.  Output: every (key, value)."""
    return "SELECT key, value FROM meta"


def insert_package_sql() -> str:
    """Input: bound package fields.  Output: one row of ``packages``."""
    return (
        "INSERT INTO packages (package_id, agency, dataset, dataset_kind, content_sha256, n_records,"
        " created_at, expires_at, ingested_at, manifest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )


def select_package_hashes_sql() -> str:
    """Input: ``packages``.  Output: (package_id, content_sha256) of every ingested package."""
    return "SELECT package_id, content_sha256 FROM packages"


def hugeint_word_sql(hi: str, lo: str | None) -> str:
    """The HUGEINT holding the 128 bits ``hi:lo`` (two signed BIGINT columns), or 64 bits ``hi``.

    Two's complement: ``hi * 2^64 + (lo as unsigned)``; a lone 64-bit word is
    taken unsigned so that no sign bits are set above it.
    """
    if lo is None:
        return f"(CAST({q(hi)} AS HUGEINT) & CAST(18446744073709551615 AS HUGEINT))"
    return (f"(CAST({q(hi)} AS HUGEINT) * CAST(18446744073709551616 AS HUGEINT)"
            f" + (CAST({q(lo)} AS HUGEINT) & CAST(18446744073709551615 AS HUGEINT)))")


def staging_word_columns(f: FilterColumns) -> list[tuple[str, str | None]]:
    """Names of the BIGINT halves of each word of ``f`` in a staging table."""
    out = []
    for i in range(f.n_words):
        hi = f"{f.source}_w{2 * i}"
        lo = f"{f.source}_w{2 * i + 1}" if f.word_bits(i) == WORD_BITS else None
        out.append((hi, lo))
    return out


def insert_records_sql(layout: RecordLayout, staging: str) -> str:
    """Input: staging table ``staging`` (BIGINT words ``bf_<f>_w<i>``, popcounts, every other
    ``records`` column).  Output: its rows appended to ``records``, filters as HUGEINT words."""
    names, exprs = [], []
    for name, _ in layout.record_columns():
        names.append(q(name))
        exprs.append(None)
    by_name = dict(zip([n for n, _ in layout.record_columns()], range(len(names)), strict=True))
    for f in layout.filters:
        for w, (hi, lo) in zip(f.words, staging_word_columns(f), strict=True):
            exprs[by_name[w]] = hugeint_word_sql(hi, lo)
    sel = ", ".join(e if e is not None else q(n) for e, (n, _) in zip(exprs, layout.record_columns(), strict=True))
    return f"INSERT INTO records ({', '.join(names)}) SELECT {sel} FROM {q(staging)}"


def select_max_rid_sql() -> str:
    """Input: ``records``.  Output: the largest rid (0 when empty)."""
    return "SELECT coalesce(max(rid), 0) FROM records"


def count_duplicate_tokens_sql(staging: str) -> str:
    """Input: ``records`` and ``staging``.  Output: how many staged (dataset, token) already exist."""
    return (f"SELECT count(*) FROM {q(staging)} s JOIN records r"
            f" ON r.dataset = s.dataset AND r.token = s.token")


def bigint_halves_sql(f: FilterColumns, table_alias: str = "") -> list[str]:
    """Expressions splitting each HUGEINT word of filter ``f`` (columns prefixed ``table_alias``) into
    signed BIGINT words ``bf_<f>_w<2i>``, ``bf_<f>_w<2i+1>`` (a short last word gives one)."""
    parts = []
    for i, w in enumerate(f.words):
        c = f"{table_alias}{q(w)}"
        if f.word_bits(i) == WORD_BITS:
            parts.append(f"CAST({c} >> 64 AS BIGINT) AS {q(f'{f.source}_w{2 * i}')}")
            parts.append(f"CAST(CAST({c} & CAST(9223372036854775807 AS HUGEINT) AS BIGINT)"
                         f" | (CASE WHEN ({c} >> 63) & 1 = 1 THEN CAST(-9223372036854775808 AS BIGINT)"
                         f" ELSE CAST(0 AS BIGINT) END) AS BIGINT) AS {q(f'{f.source}_w{2 * i + 1}')}")
        else:
            parts.append(f"CAST(CASE WHEN {c} >= CAST(9223372036854775808 AS HUGEINT)"
                         f" THEN {c} - CAST(18446744073709551616 AS HUGEINT) ELSE {c} END AS BIGINT)"
                         f" AS {q(f'{f.source}_w{2 * i}')}")
    return parts


def parquet_export_sql(layout: RecordLayout) -> str:
    """Input: ``records``.  Output: a query of ``records`` with every HUGEINT word split into two
    signed BIGINT words ``bf_<f>_w<2i>``, ``bf_<f>_w<2i+1>`` (Parquet has no HUGEINT)."""
    parts = []
    for name, typ in layout.record_columns():
        if typ != "HUGEINT":
            parts.append(q(name))
    for f in layout.filters:
        parts += bigint_halves_sql(f)
    return f"SELECT {', '.join(parts)} FROM records ORDER BY rid"


# ---------------------------------------------------------------- the store


@dataclass
class StoreMeta:
    """What ``meta`` says about the ingested data (all None for a new store)."""

    schema_id: str | None = None
    schema_fingerprint: str | None = None
    key_check_value: str | None = None
    schema_document: dict[str, Any] | None = None
    lsh: tuple[LshBands, ...] = ()

    @property
    def initialised(self) -> bool:
        return self.schema_fingerprint is not None


def connect(path: str | Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the hub database file (created when absent unless read_only)."""
    p = Path(path)
    if read_only and not p.exists():
        raise StateError(f"{p}: no hub database here (run `linkage-hub ingest` first)")
    if not read_only:
        p.parent.mkdir(parents=True, exist_ok=True)  # a new database in a new folder
    con = duckdb.connect(str(p), read_only=read_only)
    con.execute("SET enable_progress_bar = false")  # it would print on stdout
    return con


def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?",
        [name]).fetchall()[0][0])


def read_meta(con: duckdb.DuckDBPyConnection) -> StoreMeta:
    """The store's meta rows, or an empty StoreMeta for a new database."""
    if not table_exists(con, "meta"):
        return StoreMeta()
    kv = dict(con.execute(select_meta_sql()).fetchall())
    version = kv.get("store_version")
    if version is not None and version != STORE_VERSION:
        raise StateError(f"hub database has store version {version}; this linkage-hub reads {STORE_VERSION}")
    lsh = tuple(LshBands(**d) for d in json.loads(kv.get("lsh", "[]")))
    return StoreMeta(
        schema_id=kv.get("schema_id"),
        schema_fingerprint=kv.get("schema_fingerprint"),
        key_check_value=kv.get("key_check_value"),
        schema_document=json.loads(kv["schema_document"]) if "schema_document" in kv else None,
        lsh=lsh,
    )


def create_tables(con: duckdb.DuckDBPyConnection, layout: RecordLayout) -> None:
    """Create every table of the store (idempotent)."""
    for sql in (create_meta_sql(), create_packages_sql(), create_records_sql(layout), create_runs_sql(),
                create_pairs_sql(), create_clusters_sql(), *(create_bank_sql(layout, f) for f in layout.banks)):
        con.execute(sql)


def write_meta(con: duckdb.DuckDBPyConnection, schema: LinkageSchema, key_check_value: str,
               lsh: tuple[LshBands, ...]) -> None:
    """Record what every later package must agree with."""
    rows = {
        "store_version": STORE_VERSION,
        "schema_id": schema.id,
        "schema_fingerprint": schema.fingerprint,
        "key_check_value": key_check_value,
        "schema_document": json.dumps(schema.document, ensure_ascii=False, sort_keys=True),
        "lsh": json.dumps([b.as_doc() for b in lsh]),
    }
    for k, v in rows.items():
        con.execute(insert_meta_sql(), [k, v])


def export_parquet(con: duckdb.DuckDBPyConnection, layout: RecordLayout, path: str | Path) -> Path:
    """Write ``records`` to ``path`` (replaced atomically), filters as BIGINT words."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    rel = con.sql(parquet_export_sql(layout))
    rel.write_parquet(str(tmp), compression="zstd")
    tmp.replace(p)
    return p


def parquet_path_for(db_path: str | Path) -> Path:
    """Where the Parquet copy of ``records`` goes: ``<db>.records.parquet`` beside the database."""
    p = Path(db_path)
    return p.with_name(p.name + ".records.parquet")
