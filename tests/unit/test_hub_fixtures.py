"""Hand-made encoded tables for the hub tests (and tests of those fixtures).

No encoder, no normaliser, no real data: each "person" gets random Bloom
filters, random keyed hashes and a random CLK; a "record" of a person is a
copy with some filter bits moved (a near-duplicate), and optionally a changed
keyed hash (a typo in the ID number).  Tables follow the encoded-record
contract (docs/formats/encodings.md), so they can be packaged and ingested.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from linkage.keyfile import Identity
from linkage.package import write_package
from linkage.roster import build_roster, roster_from_document, sign_roster
from linkage.schema import LinkageSchema, load_schema, schema_from_document

NOW = datetime.now(UTC).replace(second=0, microsecond=0)  # packages must be fresh for the CLI too
KCV = "0123456789abcdef0123456789abcdef"


def tiny_schema_doc() -> dict:
    """A small schema with odd filter lengths (64, 192 and 320 bits) and a derived, salted field."""
    return {
        "version": 1,
        "id": "hub-test-v1",
        "fields": [
            {"name": "id_number", "normaliser": "id_number", "tokeniser": {"kind": "digit_ngrams", "n": 2},
             "filter": {"length": 320, "bits_per_token": 8}, "clk": {"bits_per_token": 5}, "exact_hash": True},
            {"name": "birth_date", "normaliser": "date", "derive": {"from": "id_number", "via": "birth_date"},
             "tokeniser": {"kind": "digit_ngrams", "n": 2}, "filter": {"length": 192, "bits_per_token": 6},
             "clk": {"bits_per_token": 4}},
            {"name": "birth_year", "normaliser": "year", "derive": {"from": "birth_date", "via": "year"},
             "tokeniser": {"kind": "exact"}},
            {"name": "name", "normaliser": "chinese_name", "tokeniser": {"kind": "char_ngrams", "n": 2},
             "filter": {"length": 256, "bits_per_token": 12, "hardening": {"salt": {"field": "birth_year"}}},
             "clk": {"bits_per_token": 8}},
            {"name": "phone", "normaliser": "phone", "tokeniser": {"kind": "digit_ngrams", "n": 2},
             "filter": {"length": 64, "bits_per_token": 4}, "clk": {"bits_per_token": 4}, "exact_hash": True,
             "frequency_adjust": True},
            {"name": "address", "normaliser": "address", "tokeniser": {"kind": "char_ngrams", "n": 2},
             "filter": {"length": 512, "bits_per_feature": 120}, "clk": {"bits_per_feature": 60}},
        ],
        "clk": {"length": 512},
        "blocking_keys": [{"name": "dob_name", "fields": ["birth_date", "name"]}],
        "datasets": {
            "victims": {"attributes": {"compensated": {"type": "boolean"},
                                       "injury": {"type": "string", "enum": ["none", "minor", "serious"]}}},
            "roster": {"attributes": {"grade": {"type": "integer", "minimum": 1, "maximum": 4}}},
        },
    }


def tiny_schema() -> LinkageSchema:
    return schema_from_document(tiny_schema_doc(), "tiny")


def _random_filter(rng: np.random.Generator, bits: int, ones: int) -> np.ndarray:
    out = np.zeros(bits, dtype=bool)
    out[rng.choice(bits, size=min(ones, bits), replace=False)] = True
    return out


def _move_bits(rng: np.random.Generator, f: np.ndarray, moves: int) -> np.ndarray:
    g = f.copy()
    on, off = np.flatnonzero(g), np.flatnonzero(~g)
    k = min(moves, len(on), len(off))
    if k:
        g[rng.choice(on, k, replace=False)] = False
        g[rng.choice(off, k, replace=False)] = True
    return g


@dataclass
class People:
    """True values of ``n`` people: per filter field a bit array, per keyed column an int64."""

    schema: LinkageSchema
    filters: dict[str, np.ndarray]  # field -> (n, bits) bool
    hashes: dict[str, np.ndarray]  # eh_/bk_/vk_ column -> (n,) int64
    clk: np.ndarray  # (n, bits) bool


def make_people(schema: LinkageSchema, n: int, rng: np.random.Generator, density: float = 0.15) -> People:
    filters = {}
    for f in schema.filter_fields:
        bits = f.filter.output_length
        filters[f.name] = np.stack([_random_filter(rng, bits, max(4, int(density * bits))) for _ in range(n)])
    hashes = {f"eh_{f.name}": rng.integers(-2**63, 2**63 - 1, n, dtype=np.int64) for f in schema.exact_fields}
    hashes.update({f"bk_{k.name}": rng.integers(-2**63, 2**63 - 1, n, dtype=np.int64) for k in schema.blocking_keys})
    hashes.update({c: rng.integers(-2**63, 2**63 - 1, n, dtype=np.int64)
                   for f in schema.typo_fields for c in f.typo_key_columns})
    clk_bits = schema.clk_output_length
    clk = np.stack([_random_filter(rng, clk_bits, int(0.3 * clk_bits)) for _ in range(n)])
    return People(schema, filters, hashes, clk)


def encoded_table(people: People, persons: np.ndarray, rng: np.random.Generator, *, moved: float = 0.0,
                  typo: dict[str, float] | None = None, missing: dict[str, float] | None = None,
                  attributes: dict[str, pa.Array] | None = None) -> pa.Table:
    """One record per entry of ``persons``: near-duplicates of those people.

    ``moved``: fraction of each filter's set bits moved elsewhere (Dice about 1 - moved);
    ``typo``: per eh_/bk_ column, probability the hash is replaced (and the filter noisier; for a
    field with typo keys, a replaced hash comes with the true one among its typo keys, as a
    mistyped ID number's corrections do; a kept one with none);
    ``missing``: per field, probability the value (filter and hash) is null.
    """
    typo = typo or {}
    missing = missing or {}
    n = len(persons)
    cols: dict[str, pa.Array] = {"token": pa.array([secrets.token_hex(16) for _ in range(n)], pa.string())}
    null_of: dict[str, np.ndarray] = {f: rng.random(n) < p for f, p in missing.items()}
    for f in people.schema.filter_fields:
        src = people.filters[f.name][persons]
        rows = []
        for r in range(n):
            ones = int(src[r].sum())
            extra = 3 * moved if rng.random() < typo.get(f"eh_{f.name}", 0.0) else moved
            rows.append(np.packbits(_move_bits(rng, src[r], round(extra * ones))).tobytes())
        mask = null_of.get(f.name, np.zeros(n, bool))
        cols[f"bf_{f.name}"] = pa.array([None if mask[r] else rows[r] for r in range(n)],
                                        pa.binary(f.filter.output_length // 8))
    typo_of = {c: f for f in people.schema.typo_fields for c in f.typo_key_columns}
    kept = {f.name: rng.integers(len(f.typo_key_columns), size=n) for f in people.schema.typo_fields}
    mistyped: dict[str, np.ndarray] = {}
    for c, values in people.hashes.items():
        v = values[persons].copy()
        if c in typo_of:  # a valid number sends no typo key; a mistyped one its true number's hash at
            f = typo_of[c]  # one position and other corrections at some others
            wrong = mistyped.get(f"eh_{f.name}", np.zeros(n, bool))
            here = kept[f.name] == f.typo_key_columns.index(c)
            v = np.where(here, people.hashes[f"eh_{f.name}"][persons], v)
            absent = ~wrong | (~here & (rng.random(n) < 0.5)) | null_of.get(f.name, np.zeros(n, bool))
            cols[c] = pa.array(np.where(absent, 0, v), pa.int64(), mask=absent)
            continue
        changed = rng.random(n) < typo.get(c, 0.0)
        mistyped[c] = changed
        field = c[3:] if c.startswith("eh_") else None
        v[changed] = rng.integers(-2**63, 2**63 - 1, int(changed.sum()), dtype=np.int64)
        mask = null_of.get(field, np.zeros(n, bool)) if field else np.zeros(n, bool)
        cols[c] = pa.array(v, pa.int64(), mask=mask)
    clk = people.clk[persons]
    cols["clk"] = pa.array([np.packbits(_move_bits(rng, clk[r], int(moved * clk[r].sum()))).tobytes()
                            for r in range(n)], pa.binary(people.schema.clk_output_length // 8))
    for name, arr in (attributes or {}).items():
        cols[name] = arr
    order = ["token"] + [f"bf_{f.name}" for f in people.schema.filter_fields] + list(people.hashes) + ["clk"]
    order += list(attributes or {})
    return pa.table({c: cols[c] for c in order})


def manifest(schema: LinkageSchema, table: pa.Table, dataset: str, kind: str, *, kcv: str = KCV,
             fingerprint: str | None = None, package_id: str | None = None) -> dict:
    """A to_hub manifest as open_package returns it (for ingest tests that skip the crypto)."""
    import hashlib

    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return {"version": 1, "package_id": package_id or secrets.token_hex(16), "direction": "to_hub",
            "sender": "agency-a", "recipient": "hub", "agency": "agency-a", "dataset": dataset,
            "dataset_kind": kind, "schema_id": schema.id,
            "schema_fingerprint": fingerprint or schema.fingerprint, "key_check_value": kcv,
            "created_at": "2026-03-01T08:00:00Z", "expires_at": "2026-03-31T08:00:00Z",
            "content_sha256": hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest(),
            "row_count": table.num_rows}


@dataclass
class Opened:
    manifest: dict
    table: pa.Table


class Federation:
    """A hub, two agencies and a signed roster, for real packages."""

    def __init__(self, schema: LinkageSchema, kinds_a: tuple[str, ...], kinds_b: tuple[str, ...]):
        self.schema = schema
        self.hub = Identity.generate("hub", "hub", operator="County procuratorate IT office")
        self.a = Identity.generate("agency", "agency-a", name="A")
        self.a.datasets = kinds_a
        self.b = Identity.generate("agency", "agency-b", name="B")
        self.b.datasets = kinds_b
        doc = build_roster(federation="fed", schema_fingerprint=schema.fingerprint, hub=self.hub.public(),
                           agencies=[self.a.public(), self.b.public()], valid_from=NOW - timedelta(days=10),
                           valid_until=NOW + timedelta(days=300), now=NOW)
        self.roster_doc = sign_roster(doc, self.hub.signing_key, "hub")
        self.roster = roster_from_document(self.roster_doc, now=NOW)

    def package(self, path, table: pa.Table, agency: Identity, dataset: str, kind: str, *, kcv: str = KCV,
                fingerprint: str | None = None, package_id: str | None = None) -> dict:
        fields = {"dataset": dataset, "dataset_kind": kind, "schema_id": self.schema.id,
                  "schema_fingerprint": fingerprint or self.schema.fingerprint, "key_check_value": kcv,
                  "counts": {"rows_read": table.num_rows, "encoded": table.num_rows, "flagged": 0, "rejected": 0}}
        if package_id:
            fields["package_id"] = package_id
        return write_package(path, table, fields, signing_key=agency.signing_key, sender_id=agency.id,
                             recipient_id="hub", recipient_public_key=self.hub.public().sealing_key(), now=NOW,
                             force=True)


# ---------------------------------------------------------------- tests of the fixtures


def test_near_duplicates_have_high_dice_and_strangers_low():
    s = tiny_schema()
    rng = np.random.default_rng(1)
    people = make_people(s, 20, rng)
    t = encoded_table(people, np.arange(20), rng, moved=0.1)
    u = encoded_table(people, np.arange(20), rng, moved=0.1)
    a = np.frombuffer(b"".join(t.column("bf_address").to_pylist()), np.uint8).reshape(20, -1)
    b = np.frombuffer(b"".join(u.column("bf_address").to_pylist()), np.uint8).reshape(20, -1)
    inter = np.bitwise_count(a[:, None, :] & b[None, :, :]).sum(-1)
    pc = np.bitwise_count(a).sum(-1)[:, None] + np.bitwise_count(b).sum(-1)[None, :]
    dice = 2 * inter / pc
    assert np.diag(dice).min() > 0.75
    assert dice[~np.eye(20, dtype=bool)].max() < 0.5


def test_tables_follow_the_contract():
    s = load_schema("judicial-assistance")
    rng = np.random.default_rng(2)
    t = encoded_table(make_people(s, 5, rng), np.arange(5), rng)
    assert t.column_names[0] == "token"
    assert t.schema.field("bf_name").type == pa.binary(64)
    assert t.schema.field("vk_id_number_34").type == pa.int64()
    assert t.schema.field("eh_id_number").type == pa.int64()
    assert t.schema.field("bk_dob_sex").type == pa.int64()
    assert t.schema.field("clk").type == pa.binary(s.clk_output_length // 8)
