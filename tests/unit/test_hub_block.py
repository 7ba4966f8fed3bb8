"""Blocking: the pair SQL on tiny literal tables, LSH bands, and blocked pairs of planted duplicates."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from test_hub_fixtures import Opened, encoded_table, make_people, manifest, tiny_schema

from hub.block import (
    band_values,
    banded_pairs_sql,
    blocking_recall_sql,
    build_blocked_pairs,
    choose_bands,
    keyed_pairs_sql,
    union_pairs_sql,
)
from hub.ingest import ingest_opened
from hub.runconfig import BlockingConfig, ClkCandidateConfig, LshConfig
from hub.store import LshBands, RecordLayout, connect, read_meta


@pytest.fixture
def con():
    c = duckdb.connect()
    c.execute("CREATE TABLE src (rid BIGINT, eh_x BIGINT, lsh_a_0 BIGINT, lsh_a_1 BIGINT)")
    c.execute("INSERT INTO src VALUES (1, 10, 100, 200), (2, 10, 101, 200), (3, 10, 100, NULL),"
              " (4, NULL, NULL, 201), (5, 20, 102, 201), (6, 30, 103, 202), (7, 30, 103, 202)")
    return c


def rows(con, sql, params):
    return sorted(tuple(r) for r in con.execute(sql, params).fetchall())


def _hub_of_two(tmp_path, s, a, b, offset: int):
    """Ingest datasets ``a`` and ``b`` (record i of b is the person of record i of a) into a hub
    database; a connection with it attached as ``hub`` and ``truth(rid_l, rid_r)``, and the layout."""
    db = tmp_path / "hub.duckdb"
    ingest_opened(db, [Opened(manifest(s, a, "a", "victims"), a), Opened(manifest(s, b, "b", "roster"), b)],
                  schema=s, lsh_seed=4)
    layout = RecordLayout.from_schema(s, read_meta(connect(db, read_only=True)).lsh)
    con = duckdb.connect()
    con.execute("ATTACH ? AS hub (READ_ONLY)", [str(db)])
    con.execute("CREATE TABLE truth AS SELECT x.rid AS rid_l, y.rid AS rid_r FROM hub.records x"
                f" JOIN hub.records y ON y.rid = x.rid + {offset}")
    return con, layout


def test_keyed_pairs_are_every_pair_sharing_a_value_once(con):
    assert rows(con, keyed_pairs_sql("src", "eh_x"), [1000, 0]) == [
        (0, 1, 2), (0, 1, 3), (0, 2, 3), (0, 6, 7)]


def test_keyed_pairs_skip_values_held_by_too_many_records(con):
    assert rows(con, keyed_pairs_sql("src", "eh_x"), [2, 5]) == [(5, 6, 7)]


def test_banded_pairs_join_on_band_and_value_and_drop_duplicates(con):
    got = rows(con, banded_pairs_sql("src", ["lsh_a_0", "lsh_a_1"]), [1000, 1])
    # band 0: {1,3} on 100, {6,7} on 103; band 1: {1,2} on 200, {4,5} on 201, {6,7} on 202 (once)
    assert got == [(1, 1, 2), (1, 1, 3), (1, 4, 5), (1, 6, 7)]


def test_union_keeps_each_pair_once_with_the_first_rule(con):
    con.execute(f"CREATE TABLE p0 AS {keyed_pairs_sql('src', 'eh_x')}", [1000, 0])
    con.execute(f"CREATE TABLE p1 AS {banded_pairs_sql('src', ['lsh_a_0', 'lsh_a_1'])}", [1000, 1])
    con.execute(union_pairs_sql(["p0", "p1"], "bp"))
    got = sorted(con.execute("SELECT match_key, join_key_l, join_key_r FROM bp").fetchall())
    assert got == sorted([("0", 1, 2), ("0", 1, 3), ("0", 2, 3), ("0", 6, 7), ("1", 4, 5)])
    con.execute("CREATE TABLE truth (rid_l BIGINT, rid_r BIGINT)")
    con.execute("INSERT INTO truth VALUES (1, 2), (4, 5), (5, 6)")
    assert con.execute(blocking_recall_sql("bp", "truth")).fetchall() == [(3, 2)]


def test_band_values_are_deterministic_and_sparse_bands_null():
    rng = np.random.default_rng(0)
    bits = 256
    packed = np.packbits(rng.random((50, bits)) < 0.2, axis=1)
    packed[3] = 0  # an empty filter: no band
    valid = np.ones(50, bool)
    valid[4] = False
    b = LshBands("name", bits_per_band=24, n_bands=6, seed=9)
    v1, ok1 = band_values(packed, valid, b, bits)
    v2, ok2 = band_values(packed.copy(), valid, b, bits)
    assert (v1 == v2).all() and (ok1 == ok2).all()
    assert not ok1[3].any() and not ok1[4].any()
    assert ok1[0].any()
    other, _ = band_values(packed, valid, LshBands("name", 24, 6, seed=10), bits)
    assert (other[ok1] != v1[ok1]).mean() > 0.9
    v3, _ = band_values(np.vstack([packed[:1], packed[:1]]), np.ones(2, bool), b, bits)
    assert (v3[0] == v3[1]).all()


def test_band_width_follows_the_density():
    rng = np.random.default_rng(0)
    sparse = np.packbits(rng.random((200, 512)) < 0.05, axis=1)
    dense = np.packbits(rng.random((200, 512)) < 0.4, axis=1)
    ok = np.ones(200, bool)
    assert choose_bands("a", sparse, ok, 512, 1).bits_per_band > choose_bands("a", dense, ok, 512, 1).bits_per_band


def test_blocking_finds_a_planted_pair_whose_id_is_mistyped_and_phone_missing(tmp_path):
    """Keyed hashes alone miss the pair; name/address LSH bands and the CLK find it."""
    s = tiny_schema()
    rng = np.random.default_rng(21)
    people = make_people(s, 300, rng)
    a = encoded_table(people, np.arange(300), rng, moved=0.03)
    b = encoded_table(people, np.arange(300), rng, moved=0.03,
                      typo={"eh_id_number": 1.0, "bk_dob_name": 1.0}, missing={"phone": 1.0})
    con, layout = _hub_of_two(tmp_path, s, a, b, 300)
    keyed_only = BlockingConfig(lsh=LshConfig(enabled=False), clk_candidates=ClkCandidateConfig(enabled=False))
    res = build_blocked_pairs(con, "hub.records", layout, keyed_only, output="bp_keyed")
    assert con.execute(blocking_recall_sql("bp_keyed", "truth")).fetchall()[0] == (300, 0)
    lsh_only = BlockingConfig(keys=(), clk_candidates=ClkCandidateConfig(enabled=False))
    res = build_blocked_pairs(con, "hub.records", layout, lsh_only, output="bp_lsh")
    n_true, found = con.execute(blocking_recall_sql("bp_lsh", "truth")).fetchall()[0]
    assert found / n_true > 0.95
    assert res.pairs < 300 * 599 / 4  # far from all pairs
    clk_only = BlockingConfig(keys=(), lsh=LshConfig(enabled=False), clk_candidates=ClkCandidateConfig(threshold=0.8))
    build_blocked_pairs(con, "hub.records", layout, clk_only, output="bp_clk")
    n_true, found = con.execute(blocking_recall_sql("bp_clk", "truth")).fetchall()[0]
    assert found / n_true > 0.95
    assert [r.kind for r in build_blocked_pairs(con, "hub.records", layout, BlockingConfig()).rules] == (
        ["keyed"] * 3 + ["lsh"] * 2 + ["clk"] * 2)


def test_unknown_blocking_key_is_a_config_error(tmp_path):
    from linkage.errors import ConfigError

    s = tiny_schema()
    layout = RecordLayout.from_schema(s)
    with pytest.raises(ConfigError, match="eh_nonsense"):
        build_blocked_pairs(duckdb.connect(), "records", layout, BlockingConfig(keys=("eh_nonsense",)))


def test_band_columns_are_stored_at_ingest(tmp_path):
    s = tiny_schema()
    rng = np.random.default_rng(3)
    t = encoded_table(make_people(s, 30, rng), np.arange(30), rng)
    db = tmp_path / "hub.duckdb"
    ingest_opened(db, [Opened(manifest(s, t, "a", "victims"), t)], schema=s, lsh_seed=4)
    con = connect(db, read_only=True)
    meta = read_meta(con)
    assert [b.field for b in meta.lsh] == ["name", "address"]  # character n-gram fields
    cols = {r[0] for r in con.execute("DESCRIBE records").fetchall()}
    assert {c for b in meta.lsh for c in b.columns} <= cols


def test_block_size_cap_keeps_the_small_blocks_within_the_budget():
    from hub.block import block_size_cap

    hist = [(2, 10), (3, 5), (10, 2)]  # 10 + 15 + 90 pairs
    assert block_size_cap(hist, 1000, 1000) == (10, 115)
    assert block_size_cap(hist, 100, 1000) == (3, 25)
    assert block_size_cap(hist, 5, 1000) == (1, 0)
    assert block_size_cap(hist, 1000, 5) == (3, 25)


def test_block_size_histograms(con):
    from hub.block import banded_block_sizes_sql, keyed_block_sizes_sql

    assert con.execute(keyed_block_sizes_sql("src", "eh_x")).fetchall() == [(2, 1), (3, 1)]
    assert con.execute(banded_block_sizes_sql("src", ["lsh_a_0", "lsh_a_1"])).fetchall() == [(2, 5)]


def test_pair_budget_caps_a_generator(tmp_path):
    s = tiny_schema()
    rng = np.random.default_rng(9)
    people = make_people(s, 400, rng)
    t = encoded_table(people, np.arange(400), rng)
    # everyone shares one phone: 79,800 pairs unless capped
    t = t.set_column(t.column_names.index("eh_phone"), "eh_phone", pa.array([7] * 400, pa.int64()))
    db = tmp_path / "hub.duckdb"
    ingest_opened(db, [Opened(manifest(s, t, "a", "victims"), t)], schema=s, lsh_seed=4)
    layout = RecordLayout.from_schema(s, read_meta(connect(db, read_only=True)).lsh)
    con = duckdb.connect()
    con.execute("ATTACH ? AS hub (READ_ONLY)", [str(db)])
    cfg = BlockingConfig(keys=("eh_phone",), lsh=LshConfig(enabled=False),
                         clk_candidates=ClkCandidateConfig(enabled=False), max_pairs_per_record=5)
    res = build_blocked_pairs(con, "hub.records", layout, cfg)
    assert res.pairs == 0 and "at most 1" in res.rules[0].description


def test_typo_keys_block_a_mistyped_id_number_with_its_true_one(tmp_path):
    """A field with typo keys: the pairs where one side's exact hash is among the other's typo keys
    (a mistyped number's corrections) are blocked whenever the field's exact hash is a blocking key,
    and only then."""
    from test_hub_fixtures import tiny_schema_doc

    from linkage.schema import schema_from_document

    doc = tiny_schema_doc()
    doc["fields"][0]["typo_keys"] = True
    s = schema_from_document(doc, "typo")
    rng = np.random.default_rng(23)
    people = make_people(s, 200, rng)
    a = encoded_table(people, np.arange(200), rng)
    b = encoded_table(people, np.arange(200), rng, typo={"eh_id_number": 1.0, "bk_dob_name": 1.0},
                      missing={"phone": 1.0})
    con, layout = _hub_of_two(tmp_path, s, a, b, 200)
    assert layout.typo == {"id_number": tuple(f"vk_id_number_{j}" for j in range(35))}
    keyed_only = BlockingConfig(lsh=LshConfig(enabled=False), clk_candidates=ClkCandidateConfig(enabled=False))
    res = build_blocked_pairs(con, "hub.records", layout, keyed_only, output="bp_keyed")
    assert con.execute(blocking_recall_sql("bp_keyed", "truth")).fetchall()[0] == (200, 200)
    assert res.rules[-1].description.startswith("id_number: exact hash or one of 35 typo keys shared")
    assert res.pairs == 200  # the other corrections are nobody's number: nothing else is blocked
    without = BlockingConfig(keys=("eh_phone",), lsh=LshConfig(enabled=False),
                             clk_candidates=ClkCandidateConfig(enabled=False))
    build_blocked_pairs(con, "hub.records", layout, without, output="bp_without")
    assert con.execute(blocking_recall_sql("bp_without", "truth")).fetchall()[0] == (200, 0)
