"""Store and run SQL builders, checked on tiny literal tables by their rows."""

from __future__ import annotations

import duckdb
import pytest

from hub.cluster import cluster_sizes_sql, insert_clusters_sql
from hub.model import (
    candidate_pairs_sql,
    insert_pairs_sql,
    labels_to_rids_sql,
    measured_quality_sql,
    scored_pairs_sql,
)
from hub.store import hugeint_word_sql, q


@pytest.fixture
def con():
    c = duckdb.connect()
    c.execute("ATTACH ':memory:' AS hub")
    c.execute("CREATE TABLE hub.records (rid BIGINT, dataset VARCHAR, token VARCHAR, eh_x BIGINT, bk_y BIGINT)")
    c.execute("INSERT INTO hub.records VALUES (1, 'a', 't1', 5, 1), (2, 'a', 't2', 5, 1), (3, 'b', 't3', 5, 2),"
              " (4, 'b', 't4', NULL, 2)")
    c.execute("CREATE TABLE hub.pairs (run_id VARCHAR, token_l VARCHAR, dataset_l VARCHAR, token_r VARCHAR,"
              " dataset_r VARCHAR, match_weight DOUBLE, match_probability DOUBLE)")
    c.execute("CREATE TABLE hub.clusters (run_id VARCHAR, cluster_id VARCHAR, dataset VARCHAR, token VARCHAR)")
    return c


def test_identifiers_are_quoted_and_anything_else_refused():
    assert q("bf_name_0") == '"bf_name_0"'
    assert q("hub.records") == '"hub"."records"'
    for bad in ('x"; DROP TABLE records; --', "Name", "a.b.c", "", "1abc"):
        with pytest.raises(ValueError):
            q(bad)


@pytest.mark.parametrize("hi, lo", [(0, 0), (-1, -1), (-2**63, 2**63 - 1), (2**63 - 1, -2**63), (12345, -987654)])
def test_hugeint_words_hold_the_bits_of_two_bigints(hi, lo):
    c = duckdb.connect()
    c.execute("CREATE TABLE t (h BIGINT, l BIGINT)")
    c.execute("INSERT INTO t VALUES (?, ?)", [hi, lo])
    word, short = c.execute(f"SELECT {hugeint_word_sql('h', 'l')}, {hugeint_word_sql('h', None)} FROM t").fetchall()[0]
    bits = ((hi & (2**64 - 1)) << 64) | (lo & (2**64 - 1))
    assert word & (2**128 - 1) == bits
    assert short == hi & (2**64 - 1)  # a lone 64-bit word is unsigned: no sign bits above it
    pc = c.execute(f"SELECT bit_count({hugeint_word_sql('h', 'l')}) FROM t").fetchall()[0][0]
    assert pc == bin(bits).count("1")


def test_scored_pairs_shift_the_prior_and_recompute_probabilities(con):
    con.execute("CREATE TABLE pred AS SELECT * FROM (VALUES (1, 2, 1.0), (1, 3, -3.0)) t(rid_l, rid_r, match_weight)")
    con.execute(scored_pairs_sql("pred"), [2.0])
    got = con.execute("SELECT rid_l, rid_r, match_weight, match_probability FROM scored_pairs ORDER BY rid_r").fetchall()
    assert got[0][:3] == (1, 2, 3.0) and got[0][3] == pytest.approx(8 / 9)
    assert got[1][:3] == (1, 3, -1.0) and got[1][3] == pytest.approx(1 / 3)


def test_links_are_stored_as_tokens_above_the_threshold(con):
    con.execute("CREATE TABLE scored_pairs AS SELECT * FROM (VALUES (1, 2, 5.0, 0.97), (2, 3, 1.0, 0.66))"
                " t(rid_l, rid_r, match_weight, match_probability)")
    con.execute(insert_pairs_sql(), ["run1", 3.0])
    assert con.execute("SELECT * FROM hub.pairs").fetchall() == [("run1", "t1", "a", "t2", "a", 5.0, 0.97)]


def test_every_record_gets_its_cluster(con):
    con.execute("CREATE TABLE cl AS SELECT * FROM (VALUES (1, 1), (1, 2), (3, 3), (4, 4)) t(cluster_id, rid)")
    con.execute(insert_clusters_sql("cl"), ["run1"])
    got = sorted(con.execute("SELECT cluster_id, dataset, token FROM hub.clusters WHERE run_id = 'run1'").fetchall())
    assert got == [("c1", "a", "t1"), ("c1", "a", "t2"), ("c3", "b", "t3"), ("c4", "b", "t4")]
    assert con.execute(cluster_sizes_sql("cl")).fetchall() == [(1, 2), (2, 1)]


def test_labels_map_to_ordered_rid_pairs_and_measure(con):
    con.execute("CREATE TABLE lab AS SELECT * FROM (VALUES ('b', 't3', 'a', 't1'), ('a', 't2', 'a', 't1'),"
                " ('a', 't1', 'a', 't2')) t(dataset_l, token_l, dataset_r, token_r)")
    con.execute(labels_to_rids_sql("lab"))
    assert sorted(con.execute("SELECT * FROM label_pairs").fetchall()) == [(1, 2), (1, 3)]
    con.execute("CREATE TABLE scored_pairs AS SELECT * FROM (VALUES (1, 2, 5.0), (2, 3, 4.0), (1, 3, -1.0))"
                " t(rid_l, rid_r, match_weight)")
    assert con.execute(measured_quality_sql(), [3.0, 3.0]).fetchall() == [(2, 1, 2)]


def test_candidate_pair_counts(con):
    assert con.execute(candidate_pairs_sql("hub.records", ["eh_x"])).fetchall()[0][0] == 3
    assert con.execute(candidate_pairs_sql("hub.records", ["eh_x", "bk_y"])).fetchall()[0][0] == 1
