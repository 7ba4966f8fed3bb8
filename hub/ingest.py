"""``linkage-hub ingest``: open agencies' packages and load their encodings.

Order of work, so that a failing package changes nothing:

1. open every package (``linkage.package.open_package`` authenticates,
   decrypts and checks roster, expiry and fingerprint against the roster);
2. check that every package's schema fingerprint and key-check value agree
   with each other, with the roster, and with what the database already holds
   (FingerprintMismatchError otherwise);
3. check every table against the encoded-record contract
   (docs/formats/encodings.md) and the attributes its dataset kind may send
   (SchemaMismatchError / InputError, naming the column, never a value);
4. load all new packages in ONE transaction; any failure rolls it back.

Replays.  A package id that is already in the database is a no-op reported
as "already ingested" when its content hash is the one recorded -- re-running
an ingest after an interruption, or listing a package twice, is safe.  The
same id with a different content hash is refused with ReplayError (exit 18)
and nothing of that call is loaded: an id must never name two contents.
``open_package`` is therefore called without ``seen_package_ids``; the check
happens here, after the package proved authentic.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from linkage.errors import (
    FingerprintMismatchError,
    InputError,
    ReplayError,
    SchemaMismatchError,
    StateError,
)
from linkage.schema import BUILTIN_SCHEMAS, LinkageSchema, load_schema, schema_from_document

from . import block
from .store import (
    ATTRIBUTE_SQL_TYPES,
    FilterColumns,
    LshBands,
    RecordLayout,
    StoreMeta,
    connect,
    count_duplicate_tokens_sql,
    create_tables,
    export_parquet,
    insert_bank_sql,
    insert_package_sql,
    insert_records_sql,
    parquet_path_for,
    read_meta,
    select_max_rid_sql,
    select_package_hashes_sql,
    staging_word_columns,
    table_exists,
    write_meta,
)

log = logging.getLogger("aidlink.hub.ingest")

_ARROW_ATTRIBUTE_TYPES = {"boolean": pa.bool_(), "integer": pa.int64(), "string": pa.string(), "date": pa.date32()}
_STAGING = "ingest_staging"


class OpenedLike(Protocol):
    manifest: dict[str, Any]
    table: pa.Table


@dataclass(frozen=True)
class LoadedPackage:
    package_id: str
    agency: str
    dataset: str
    dataset_kind: str
    records: int

    def as_doc(self) -> dict[str, Any]:
        return {"package_id": self.package_id, "agency": self.agency, "dataset": self.dataset,
                "dataset_kind": self.dataset_kind, "records": self.records}


@dataclass
class IngestSummary:
    db: str
    schema_id: str
    schema_fingerprint: str
    loaded: list[LoadedPackage] = field(default_factory=list)
    already_ingested: list[str] = field(default_factory=list)
    records_total: int = 0
    parquet: str | None = None

    def as_doc(self) -> dict[str, Any]:
        return {"db": self.db, "schema_id": self.schema_id, "schema_fingerprint": self.schema_fingerprint,
                "loaded": [p.as_doc() for p in self.loaded], "already_ingested": self.already_ingested,
                "records_total": self.records_total, "parquet": self.parquet}


# ---------------------------------------------------------------- checks


def _dataset_name(manifest: dict[str, Any]) -> str:
    return str(manifest.get("dataset") or manifest["dataset_kind"])


def _label(manifest: dict[str, Any]) -> str:
    return f"package {manifest.get('package_id', '?')}"


def check_agreement(manifests: Sequence[dict[str, Any]], meta: StoreMeta, roster_fingerprint: str | None) -> None:
    """FingerprintMismatchError unless every fingerprint and key-check value agree."""
    for m in manifests:
        if m.get("direction", "to_hub") != "to_hub":
            raise SchemaMismatchError(f"{_label(m)} is a result package, not an agency's encodings")
        if not m.get("dataset_kind"):
            raise SchemaMismatchError(f"{_label(m)}: the manifest names no dataset kind")
        if not m.get("key_check_value"):
            raise FingerprintMismatchError(f"{_label(m)} carries no key-check value, so it cannot be shown "
                                           f"to use the federation's linkage secret")
    first = manifests[0] if manifests else None
    for m in manifests[1:]:
        if m["schema_fingerprint"] != first["schema_fingerprint"]:
            raise FingerprintMismatchError(
                f"{_label(m)} was encoded with schema fingerprint {m['schema_fingerprint'][:16]}..., "
                f"{_label(first)} with {first['schema_fingerprint'][:16]}...: they cannot be linked")
        if m["key_check_value"] != first["key_check_value"]:
            raise FingerprintMismatchError(
                f"{_label(m)} and {_label(first)} were encoded with different linkage secrets "
                f"(their key-check values differ): they cannot be linked")
    if first is None:
        return
    if roster_fingerprint is not None and first["schema_fingerprint"] != roster_fingerprint:
        raise FingerprintMismatchError(
            f"{_label(first)} has schema fingerprint {first['schema_fingerprint'][:16]}..., the roster "
            f"{roster_fingerprint[:16]}...")
    if meta.initialised:
        if first["schema_fingerprint"] != meta.schema_fingerprint:
            raise FingerprintMismatchError(
                f"{_label(first)} has schema fingerprint {first['schema_fingerprint'][:16]}..., but this hub "
                f"database holds encodings with {meta.schema_fingerprint[:16]}...: use a new database")
        if first["key_check_value"] != meta.key_check_value:
            raise FingerprintMismatchError(
                f"{_label(first)} was encoded with another linkage secret than the data already in this hub "
                f"database (key-check values differ)")


def resolve_schema(fingerprint: str, meta: StoreMeta, schema: str | Path | LinkageSchema | None) -> LinkageSchema:
    """The linkage schema with ``fingerprint``: the database's, the one given, or a built-in."""
    if meta.schema_document is not None:
        s = schema_from_document(meta.schema_document, "hub database schema")
        if s.fingerprint != meta.schema_fingerprint:
            raise FingerprintMismatchError(
                "the schema stored in this hub database no longer has its recorded fingerprint (the normaliser "
                "or encoding versions of this linkage-hub differ from those that made the data)")
        return s
    if schema is not None:
        s = schema if isinstance(schema, LinkageSchema) else load_schema(schema)
        if s.fingerprint != fingerprint:
            raise FingerprintMismatchError(
                f"schema {s.id} has fingerprint {s.fingerprint[:16]}..., the packages {fingerprint[:16]}...")
        return s
    for name in BUILTIN_SCHEMAS:
        s = load_schema(name)
        if s.fingerprint == fingerprint:
            return s
    raise SchemaMismatchError(
        f"no built-in linkage schema has fingerprint {fingerprint[:16]}...; give the schema file with --schema")


def _require_type(m: dict[str, Any], table: pa.Table, column: str, typ: pa.DataType) -> None:
    if column not in table.column_names:
        raise SchemaMismatchError(f"{_label(m)}: column {column} is missing")
    if table.schema.field(column).type != typ:
        raise SchemaMismatchError(f"{_label(m)}: column {column} must be of type {typ}")


def check_table(m: dict[str, Any], table: pa.Table, schema: LinkageSchema, layout: RecordLayout) -> None:
    """Check one package table against the encoded-record contract and its kind's attributes."""
    kind = m["dataset_kind"]
    if schema.datasets and kind not in schema.datasets:
        raise SchemaMismatchError(f"{_label(m)}: dataset kind {kind!r} is not in linkage schema {schema.id}")
    allowed_attrs = layout.kind_attributes.get(kind, frozenset())
    required: dict[str, pa.DataType] = {"token": pa.string(), "clk": pa.binary(layout.clk_bytes)}
    for f in layout.filters:
        required[f.source] = pa.binary(f.bits // 8)
    for c in layout.exact + layout.keys + layout.typo_columns:
        required[c] = pa.int64()
    for c in layout.flags:
        required[c] = pa.bool_()
    for name in layout.banks:
        required[f"sb_{name}"] = pa.binary()
    if len(set(table.column_names)) != len(table.column_names):
        raise SchemaMismatchError(f"{_label(m)}: two columns share a name")
    for c in table.column_names:
        if c not in required and c not in allowed_attrs:
            what = "attribute not allowed for dataset kind " + repr(kind) if c.startswith("attr_") else "column"
            raise SchemaMismatchError(f"{_label(m)}: {what} {c} is not part of the encoded-record contract; "
                                      f"the hub stores only encodings, tokens and allowed attributes")
    for c, typ in required.items():
        _require_type(m, table, c, typ)
    for c in ("token", "clk"):
        if table.column(c).null_count:
            raise InputError(f"{_label(m)}: column {c} has empty cells")
    ok = pc.match_substring_regex(table.column("token"), r"^[0-9a-f]{32}$")
    if not pc.all(ok).as_py():
        raise InputError(f"{_label(m)}: column token holds values that are not 32 lower-case hex characters")
    if pc.count_distinct(table.column("token")).as_py() != table.num_rows:
        raise InputError(f"{_label(m)}: column token repeats a token")
    spec = schema.datasets.get(kind)
    for c in table.column_names:
        if not c.startswith("attr_"):
            continue
        a = spec.attributes[c[len("attr_"):]]
        _require_type(m, table, c, _ARROW_ATTRIBUTE_TYPES[a.type])
        col = table.column(c)
        if a.enum is not None:
            bad = pc.sum(pc.invert(pc.is_in(col.drop_null(), value_set=pa.array(list(a.enum), col.type)))).as_py()
            if bad:
                raise InputError(f"{_label(m)}: column {c} has {bad} values outside its allowed set")
        if a.minimum is not None or a.maximum is not None:
            mm = pc.min_max(col).as_py()
            if mm["min"] is not None and ((a.minimum is not None and mm["min"] < a.minimum)
                                          or (a.maximum is not None and mm["max"] > a.maximum)):
                raise InputError(f"{_label(m)}: column {c} has values outside [{a.minimum}, {a.maximum}]")


# ---------------------------------------------------------------- staging


def packed_filter(column: pa.ChunkedArray | pa.Array, nbytes: int) -> tuple[np.ndarray, np.ndarray]:
    """A ``fixed_size_binary`` column as ``(n, nbytes)`` uint8 and its validity (zeros where null)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(arr)
    valid = np.ones(n, dtype=bool) if arr.null_count == 0 else ~arr.is_null().to_numpy(zero_copy_only=False)
    buf = arr.buffers()[1]
    if buf is None or n == 0:
        return np.zeros((n, nbytes), dtype=np.uint8), valid
    data = np.frombuffer(buf, dtype=np.uint8)[arr.offset * nbytes:(arr.offset + n) * nbytes].reshape(n, nbytes)
    data = data.copy()
    data[~valid] = 0
    return data, valid


def filter_word_arrays(data: np.ndarray, valid: np.ndarray, f: FilterColumns) -> dict[str, pa.Array]:
    """Staging columns of one filter: signed BIGINT words (big-endian bit order) and the popcount."""
    words = data.view(">u8").astype(np.uint64).view(np.int64)
    mask = ~valid
    out: dict[str, pa.Array] = {}
    for i, (hi, lo) in enumerate(staging_word_columns(f)):
        out[hi] = pa.array(words[:, 2 * i], pa.int64(), mask=mask)
        if lo is not None:
            out[lo] = pa.array(words[:, 2 * i + 1], pa.int64(), mask=mask)
    out[f.popcount] = pa.array(np.bitwise_count(data).sum(axis=1, dtype=np.int32), pa.int32(), mask=mask)
    return out


def stage_table(m: dict[str, Any], table: pa.Table, layout: RecordLayout, first_rid: int) -> pa.Table:
    """The staging table of one package: every ``records`` column, filters as BIGINT words."""
    n = table.num_rows
    cols: dict[str, pa.Array | pa.ChunkedArray] = {
        "rid": pa.array(np.arange(first_rid, first_rid + n, dtype=np.int64)),
        "dataset": pa.array([_dataset_name(m)] * n, pa.string()),
        "dataset_kind": pa.array([m["dataset_kind"]] * n, pa.string()),
        "package_id": pa.array([m["package_id"]] * n, pa.string()),
        "token": table.column("token"),
    }
    for c in layout.exact + layout.keys + layout.flags + layout.typo_columns:
        cols[c] = table.column(c)
    packed: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for f in layout.filters:
        data, valid = packed_filter(table.column(f.source), f.bits // 8)
        packed[f.field] = (data, valid)
        cols.update(filter_word_arrays(data, valid, f))
    cols["clk"] = table.column("clk").cast(pa.binary())
    for b in layout.lsh:
        data, valid = packed[b.field]
        values, ok = block.band_values(data, valid, b, layout.filter(b.field).bits)
        for j, c in enumerate(b.columns):
            cols[c] = pa.array(values[:, j], pa.int64(), mask=~ok[:, j])
    for c, typ in layout.attributes.items():
        if c in table.column_names:
            cols[c] = table.column(c)
        else:
            arrow = {v: k for k, v in ATTRIBUTE_SQL_TYPES.items()}[typ]
            cols[c] = pa.nulls(n, _ARROW_ATTRIBUTE_TYPES[arrow])
    return pa.table(cols)


def stage_banks(table: pa.Table, layout: RecordLayout, first_rid: int) -> dict[str, pa.Table]:
    """Per field with a salt bank: the staging table of its slots (rid, slot, BIGINT words,
    popcount), one row per slot of every record that has a bank."""
    out: dict[str, pa.Table] = {}
    for name, k in layout.banks.items():
        f = layout.filter(name)
        width = f.bits // 8
        col = table.column(f"sb_{name}").drop_null()
        arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        if pc.any(pc.not_equal(pc.binary_length(arr), k * width)).as_py():
            raise InputError(f"column sb_{name} holds a salt bank that is not {k} slots of {width} bytes")
        valid = table.column(f"sb_{name}").is_valid().to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(valid)
        body = np.frombuffer(b"".join(arr.to_pylist()), dtype=np.uint8) if rows.size else np.zeros(0, np.uint8)
        slots = body.reshape(rows.size * k, width)
        cols: dict[str, pa.Array] = {
            "rid": pa.array(np.repeat(first_rid + rows.astype(np.int64), k)),
            "slot": pa.array(np.tile(np.arange(k, dtype=np.int16), rows.size)),
        }
        cols.update(filter_word_arrays(slots, np.ones(len(slots), dtype=bool), f))
        out[name] = pa.table(cols)
    return out


def choose_lsh(schema: LinkageSchema, layout: RecordLayout, tables: Sequence[pa.Table],
               seed: int) -> tuple[LshBands, ...]:
    """LSH band parameters for a new database, from the first packages' bit densities."""
    out = []
    for name in block.default_lsh_fields(schema):
        f = layout.filter(name)
        parts = [packed_filter(t.column(f.source), f.bits // 8) for t in tables]
        data = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, f.bits // 8), np.uint8)
        valid = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, bool)
        out.append(block.choose_bands(name, data, valid, f.bits, seed))
    return tuple(out)


# ---------------------------------------------------------------- ingest


def ingest_opened(db_path: str | Path, packages: Sequence[OpenedLike], *,
                  schema: str | Path | LinkageSchema | None = None, roster_fingerprint: str | None = None,
                  now: datetime | None = None, lsh_seed: int | None = None,
                  write_parquet: bool = True) -> IngestSummary:
    """Load authenticated packages into the hub database, all or nothing."""
    if not packages:
        raise StateError("no packages to ingest")
    manifests = [p.manifest for p in packages]
    con = connect(db_path)
    try:
        meta = read_meta(con)
        check_agreement(manifests, meta, roster_fingerprint)
        fingerprint = manifests[0]["schema_fingerprint"]
        the_schema = resolve_schema(fingerprint, meta, schema)
        if the_schema.id != manifests[0].get("schema_id", the_schema.id):
            raise FingerprintMismatchError(f"{_label(manifests[0])} names schema {manifests[0]['schema_id']}, "
                                           f"not {the_schema.id}")
        recorded = dict(con.execute(select_package_hashes_sql()).fetchall()) if table_exists(con, "packages") else {}
        fresh: list[OpenedLike] = []
        already: list[str] = []
        seen: dict[str, str] = {}
        for p in packages:
            m = p.manifest
            pid, digest = m["package_id"], m["content_sha256"]
            prior = recorded.get(pid, seen.get(pid))
            if prior is not None:
                if prior != digest:
                    raise ReplayError(f"{_label(m)} was ingested before with other content; an id must never "
                                      f"name two contents, so nothing of this ingest was loaded")
                already.append(pid)
                continue
            seen[pid] = digest
            fresh.append(p)
        base_layout = RecordLayout.from_schema(the_schema)
        for p in fresh:
            check_table(p.manifest, p.table, the_schema, base_layout)
        lsh = meta.lsh if meta.initialised else choose_lsh(
            the_schema, base_layout, [p.table for p in fresh],
            lsh_seed if lsh_seed is not None else secrets.randbelow(2**31))
        layout = RecordLayout.from_schema(the_schema, lsh)
        summary = IngestSummary(str(db_path), the_schema.id, the_schema.fingerprint, already_ingested=already)
        when = (now or datetime.now(UTC)).replace(tzinfo=None)
        con.execute("BEGIN TRANSACTION")
        try:
            create_tables(con, layout)
            if not meta.initialised:
                write_meta(con, the_schema, manifests[0]["key_check_value"], lsh)
            next_rid = con.execute(select_max_rid_sql()).fetchall()[0][0] + 1
            for p in fresh:
                m = p.manifest
                staged = stage_table(m, p.table, layout, next_rid)
                con.register(_STAGING, staged)
                try:
                    if con.execute(count_duplicate_tokens_sql(_STAGING)).fetchall()[0][0]:
                        raise InputError(f"{_label(m)} repeats tokens already held for dataset "
                                         f"{_dataset_name(m)!r}")
                    con.execute(insert_records_sql(layout, _STAGING))
                finally:
                    con.unregister(_STAGING)
                for name, bank in stage_banks(p.table, layout, next_rid).items():
                    con.register(_STAGING, bank)
                    try:
                        con.execute(insert_bank_sql(layout, name, _STAGING))
                    finally:
                        con.unregister(_STAGING)
                con.execute(insert_package_sql(), [
                    m["package_id"], m.get("agency", m.get("sender")), _dataset_name(m), m["dataset_kind"],
                    m["content_sha256"], p.table.num_rows, m.get("created_at"), m.get("expires_at"), when,
                    json.dumps(m, ensure_ascii=False, sort_keys=True)])
                next_rid += p.table.num_rows
                summary.loaded.append(LoadedPackage(m["package_id"], m.get("agency", m.get("sender", "")),
                                                    _dataset_name(m), m["dataset_kind"], p.table.num_rows))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        summary.records_total = con.execute("SELECT count(*) FROM records").fetchall()[0][0]
        if write_parquet and summary.loaded:
            summary.parquet = str(export_parquet(con, layout, parquet_path_for(db_path)))
        return summary
    finally:
        con.close()


def ingest_packages(db_path: str | Path, package_paths: Sequence[str | Path], *, hub_identity: Any,
                    roster: Any, schema: str | Path | LinkageSchema | None = None,
                    now: datetime | None = None, lsh_seed: int | None = None) -> IngestSummary:
    """Open every package (all checks in ``open_package``), then :func:`ingest_opened` them."""
    from linkage.errors import IntegrityError
    from linkage.package import open_package

    opened = []
    for p in package_paths:
        try:
            opened.append(open_package(p, recipient_private_key=hub_identity.sealing_key, roster=roster,
                                       recipient_id=hub_identity.id, now=now))
        except IntegrityError:
            # still one opaque message whatever failed; naming the operator's own file tells an
            # attacker nothing, and tells the operator which package to ask for again
            raise IntegrityError(f"{p}: {IntegrityError().message}") from None
    return ingest_opened(db_path, opened, schema=schema, roster_fingerprint=roster.schema_fingerprint,
                         now=now, lsh_seed=lsh_seed)
