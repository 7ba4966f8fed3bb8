"""linkage-hub ingest: real packages in, encodings stored; idempotent and all-or-nothing."""

from __future__ import annotations

import hashlib

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_hub_fixtures import (
    NOW,
    Federation,
    Opened,
    encoded_table,
    make_people,
    manifest,
    tiny_schema,
)

from hub.ingest import ingest_opened, ingest_packages
from hub.store import parquet_path_for
from linkage.errors import (
    FingerprintMismatchError,
    InputError,
    IntegrityError,
    ReplayError,
    SchemaMismatchError,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    s = tiny_schema()
    fed = Federation(s, ("victims",), ("roster",))
    rng = np.random.default_rng(5)
    people = make_people(s, 40, rng)
    d = tmp_path_factory.mktemp("pk")
    t_a = encoded_table(people, np.arange(30), rng, moved=0.05, attributes={
        "attr_compensated": pa.array([i % 2 == 0 for i in range(30)]),
        "attr_injury": pa.array(["none", "minor", "serious"] * 10)})
    t_b = encoded_table(people, np.arange(10, 40), rng, moved=0.05, attributes={
        "attr_grade": pa.array([1 + i % 4 for i in range(30)], pa.int64())})
    t_c = encoded_table(people, np.arange(0, 5), rng, moved=0.05, attributes={})
    paths = {"a": d / "a.aidpkg", "b": d / "b.aidpkg", "c": d / "c.aidpkg"}
    fed.package(paths["a"], t_a, fed.a, "victims-2026", "victims")
    fed.package(paths["b"], t_b, fed.b, "roster-2026", "roster")
    fed.package(paths["c"], t_c, fed.a, "victims-late", "victims")
    return s, fed, paths, {"a": t_a, "b": t_b, "c": t_c}


def _ingest(db, fed, s, paths):
    return ingest_packages(db, paths, hub_identity=fed.hub, roster=fed.roster, schema=s, now=NOW, lsh_seed=3)


def _snapshot(db) -> dict:
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]
        out = {"tables": tables}
        for t in tables:
            out[t] = con.execute(f'SELECT count(*) FROM "{t}"').fetchall()[0][0]
        return out
    finally:
        con.close()


def test_ingest_stores_encodings_tokens_and_allowed_attributes_only(tmp_path, world):
    s, fed, paths, tables = world
    db = tmp_path / "hub.duckdb"
    summary = _ingest(db, fed, s, [paths["a"], paths["b"]])
    assert [p.records for p in summary.loaded] == [30, 30]
    assert summary.records_total == 60
    con = duckdb.connect(str(db), read_only=True)
    cols = {r[0]: r[1] for r in con.execute("DESCRIBE records").fetchall()}
    for c in cols:
        assert c in ("rid", "dataset", "dataset_kind", "package_id", "token", "clk") or c.split("_")[0] in (
            "eh", "bk", "bf", "lsh", "attr"), c
    assert cols["bf_address_0"] == "HUGEINT" and cols["bf_address_pc"] == "INTEGER"
    assert cols["eh_id_number"] == "BIGINT" and cols["bk_dob_name"] == "BIGINT"
    assert {"attr_compensated", "attr_injury", "attr_grade"} <= set(cols)
    # the roster's attributes are null for victims and the other way round
    n_bad = con.execute("SELECT count(*) FROM records WHERE dataset_kind = 'victims' AND attr_grade IS NOT NULL"
                        " OR dataset_kind = 'roster' AND attr_injury IS NOT NULL").fetchall()[0][0]
    assert n_bad == 0
    meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
    assert meta["schema_fingerprint"] == s.fingerprint and meta["key_check_value"] == "0123456789abcdef" * 2
    # popcounts are exact (a null filter has a null popcount)
    pcs = con.execute("SELECT bf_address_pc FROM records WHERE dataset = 'victims-2026' ORDER BY rid").fetchall()
    want = [None if v is None else bin(int.from_bytes(v, "big")).count("1")
            for v in tables["a"].column("bf_address").to_pylist()]
    assert [p[0] for p in pcs] == want
    con.close()


def test_parquet_copy_round_trips_every_filter_bit(tmp_path, world):
    s, fed, paths, tables = world
    db = tmp_path / "hub.duckdb"
    _ingest(db, fed, s, [paths["a"]])
    p = pq.read_table(parquet_path_for(db))
    t = tables["a"]
    for f in s.filter_fields:
        nbytes = f.filter.output_length // 8
        nwords = nbytes // 8
        words = np.stack([p.column(f"bf_{f.name}_w{i}").to_numpy(zero_copy_only=False) for i in range(nwords)], 1)
        original = t.column(f"bf_{f.name}").to_pylist()
        for r, v in enumerate(original):
            if v is None:
                assert p.column(f"bf_{f.name}_w0")[r].as_py() is None
            else:
                assert words[r].astype(">i8").tobytes() == v
    assert p.column("token").to_pylist() == t.column("token").to_pylist()
    assert "bf_address_0" not in p.column_names  # no HUGEINT in Parquet


def test_the_same_packages_twice_change_nothing(tmp_path, world):
    s, fed, paths, _ = world
    db = tmp_path / "hub.duckdb"
    _ingest(db, fed, s, [paths["a"], paths["b"]])
    before = _snapshot(db)
    again = _ingest(db, fed, s, [paths["b"], paths["a"], paths["a"]])
    assert again.loaded == [] and sorted(again.already_ingested) == sorted(
        [again.already_ingested[0], again.already_ingested[1], again.already_ingested[2]])
    assert len(again.already_ingested) == 3
    assert _snapshot(db) == before


def test_a_bad_package_in_the_middle_leaves_the_database_unchanged(tmp_path, world):
    s, fed, paths, _ = world
    db = tmp_path / "hub.duckdb"
    _ingest(db, fed, s, [paths["a"]])
    before = _snapshot(db)
    bad = tmp_path / "bad.aidpkg"
    raw = bytearray(paths["b"].read_bytes())
    raw[-40] ^= 1
    bad.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError) as ei:
        _ingest(db, fed, s, [paths["c"], bad, paths["b"]])
    assert _snapshot(db) == before
    # the one opaque message, prefixed by which of the operator's files failed
    assert ei.value.message == f"{bad}: {IntegrityError().message}"


def test_a_failure_while_loading_rolls_back_everything(tmp_path, world):
    """A package that passes opening but fails inside the transaction (a token already held)."""
    s, _fed, _paths, tables = world
    db = tmp_path / "hub.duckdb"
    first = Opened(manifest(s, tables["a"], "victims-2026", "victims"), tables["a"])
    ingest_opened(db, [first], schema=s, lsh_seed=1)
    before = _snapshot(db)
    good = Opened(manifest(s, tables["b"], "roster-2026", "roster"), tables["b"])
    clash = Opened(manifest(s, tables["a"], "victims-2026", "victims"), tables["a"])  # new id, same tokens
    with pytest.raises(InputError, match="repeats tokens"):
        ingest_opened(db, [good, clash], schema=s)
    assert _snapshot(db) == before


def test_new_database_is_not_created_by_a_failed_ingest(tmp_path, world):
    s, _fed, _paths, tables = world
    db = tmp_path / "hub.duckdb"
    t = tables["a"].append_column("surname_plain", pa.array(["x"] * 30))
    with pytest.raises(SchemaMismatchError, match="surname_plain"):
        ingest_opened(db, [Opened(manifest(s, t, "v", "victims"), t)], schema=s)
    assert _snapshot(db)["tables"] == []


def test_fingerprint_and_key_check_value_must_agree(tmp_path, world):
    s, _fed, _paths, tables = world
    db = tmp_path / "hub.duckdb"
    a = Opened(manifest(s, tables["a"], "v", "victims"), tables["a"])
    b_other_secret = Opened(manifest(s, tables["b"], "r", "roster", kcv="f" * 32), tables["b"])
    with pytest.raises(FingerprintMismatchError, match="different linkage secrets"):
        ingest_opened(db, [a, b_other_secret], schema=s)
    b_other_schema = Opened(manifest(s, tables["b"], "r", "roster", fingerprint="e" * 64), tables["b"])
    with pytest.raises(FingerprintMismatchError, match="schema fingerprint"):
        ingest_opened(db, [a, b_other_schema], schema=s)
    with pytest.raises(FingerprintMismatchError, match="roster"):
        ingest_opened(db, [a], schema=s, roster_fingerprint="d" * 64)
    ingest_opened(db, [a], schema=s)
    later = Opened(manifest(s, tables["b"], "r", "roster", kcv="f" * 32), tables["b"])
    with pytest.raises(FingerprintMismatchError, match="another linkage secret"):
        ingest_opened(db, [later], schema=s)


def test_package_with_another_fingerprint_than_the_roster_is_refused(tmp_path, world):
    s, fed, _paths, tables = world
    p = tmp_path / "x.aidpkg"
    fed.package(p, tables["a"], fed.a, "v", "victims", fingerprint="e" * 64)
    with pytest.raises(FingerprintMismatchError):
        _ingest(tmp_path / "hub.duckdb", fed, s, [p])


def test_replayed_id_with_other_content_is_refused(tmp_path, world):
    s, _fed, _paths, tables = world
    db = tmp_path / "hub.duckdb"
    m = manifest(s, tables["a"], "v", "victims", package_id="ab" * 16)
    ingest_opened(db, [Opened(m, tables["a"])], schema=s)
    other = dict(m, content_sha256=hashlib.sha256(b"other").hexdigest())
    with pytest.raises(ReplayError):
        ingest_opened(db, [Opened(other, tables["b"])], schema=s)
    same = ingest_opened(db, [Opened(m, tables["a"])], schema=s)
    assert same.already_ingested == ["ab" * 16] and same.loaded == []


@pytest.mark.parametrize("change, error, text", [
    (lambda t: t.append_column("attr_grade", pa.array([1] * t.num_rows, pa.int64())), SchemaMismatchError,
     "not allowed for dataset kind"),
    (lambda t: t.set_column(t.column_names.index("attr_injury"), "attr_injury",
                            pa.array(["fatal"] * t.num_rows)), InputError, "outside its allowed set"),
    (lambda t: t.drop_columns(["eh_phone"]), SchemaMismatchError, "eh_phone is missing"),
    (lambda t: t.set_column(0, "token", pa.array(["NOT-HEX"] * t.num_rows)), InputError, "hex"),
    (lambda t: t.set_column(t.column_names.index("eh_phone"), "eh_phone",
                            pa.array([1] * t.num_rows, pa.int32())), SchemaMismatchError, "type int64"),
])
def test_tables_outside_the_contract_are_refused_without_quoting_values(tmp_path, world, change, error, text):
    s, _fed, _paths, tables = world
    t = change(tables["a"])
    with pytest.raises(error, match=text) as ei:
        ingest_opened(tmp_path / "hub.duckdb", [Opened(manifest(s, t, "v", "victims"), t)], schema=s)
    assert "fatal" not in str(ei.value) and "NOT-HEX" not in str(ei.value)
