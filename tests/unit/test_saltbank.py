"""Salt banks at the hub (hub.saltbank): slots chosen pair by pair, stand-ins, rewritten pairs.

Three synthetic records of one name: A born 1990, C born 1985 (another person of the same name),
B with no birth year and therefore a salt bank.  Each pair with B must be scored against the
slot of the other side's year, through a stand-in that maps back to B.
"""

from __future__ import annotations

import hashlib
import secrets
from types import SimpleNamespace

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from hub import saltbank
from hub.ingest import ingest_opened
from hub.model import input_columns
from hub.store import RecordLayout, connect, read_meta
from linkage.encode import encode_records
from linkage.keys import LinkageSecret
from linkage.schema import load_schema

SECRET = LinkageSecret(bytes(range(32)))


def _rows() -> list[dict]:
    base = {"name": "测试名", "name_pinyin": "ce shi ming", "id_number": None, "birth_date": None,
            "birth_year": None, "sex": None, "phone": None, "address": "某某镇某某村1组", "region_code": None}
    return [dict(base, birth_year="1990", birth_date="1990-01-02"),  # A
            dict(base, phone="13800138000"),  # B: no year -> a salt bank
            dict(base, birth_year="1985", birth_date="1985-05-06"),  # C
            dict(base, name="另一人", name_pinyin="ling yi ren", birth_year="1990")]  # D: other name


def _ingested(rows: list[dict], db, seed: int):
    """``rows`` encoded, ingested into ``db`` and attached read-only to a fresh connection, with every
    pair of records blocked (table ``blocked``; rids 1.. in row order): (schema, layout, connection)."""
    schema = load_schema("judicial-assistance")
    df = pd.DataFrame(rows, dtype=object)[list(schema.field_names)].astype(object)
    table = encode_records(df, schema, SECRET, np.random.default_rng(seed))
    table = table.add_column(0, "token", pa.array([secrets.token_hex(16) for _ in range(len(df))]))
    m = {"version": 1, "package_id": secrets.token_hex(16), "direction": "to_hub", "agency": "a", "sender": "a",
         "recipient": "hub", "dataset": "victims", "dataset_kind": "procuratorate_victims",
         "schema_id": schema.id, "schema_fingerprint": schema.fingerprint,
         "key_check_value": SECRET.key_check_value(), "content_sha256": hashlib.sha256(b"x").hexdigest(),
         "row_count": table.num_rows}
    ingest_opened(db, [SimpleNamespace(manifest=m, table=table)], schema=schema, write_parquet=False)
    c = connect(db, read_only=True)
    layout = RecordLayout.from_schema(schema, read_meta(c).lsh)
    c.close()
    con = duckdb.connect()
    con.execute("ATTACH ? AS hub (READ_ONLY)", [str(db)])
    con.execute("CREATE TABLE blocked AS SELECT '0' AS match_key, a.rid AS join_key_l, b.rid AS join_key_r"
                " FROM hub.records a JOIN hub.records b ON a.rid < b.rid")
    return schema, layout, con


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    return _ingested(_rows(), tmp_path_factory.mktemp("bank") / "hub.duckdb", 7)


def test_the_bank_is_stored_slot_by_slot(hub):
    schema, layout, con = hub
    k = len(schema.field("name").filter.hardening.salt.bank)
    assert layout.banks == {"name": k, "name_pinyin": k}
    rows = con.execute("SELECT rid, count(*), count(DISTINCT slot) FROM hub.bank_name GROUP BY rid").fetchall()
    assert rows == [(2, k, k)]  # only B
    assert con.execute("SELECT bf_name_pc FROM hub.records WHERE rid = 2").fetchall() == [(None,)]


def test_each_pair_gets_the_slot_of_the_other_sides_year(hub):
    schema, layout, con = hub
    pairs, n = saltbank.resolve_salt_banks(con, layout, "blocked", input_columns(schema, layout, []))
    best = {(lo, hi): (b, s1, s2) for lo, hi, b, s1, s2 in con.execute(
        f"SELECT * FROM {saltbank.BEST_SLOTS} ORDER BY 1, 2").fetchall()}
    assert set(best) == {(1, 2), (2, 3), (2, 4)}  # the pairs with B (A-C, A-D, C-D have no bank)
    dice = {}
    for (lo, hi), (b, s1, _s2) in best.items():
        other = lo if b == hi else hi
        assert b == 2
        dice[other] = con.execute(
            "SELECT 2.0 * (" + " + ".join(f"bit_count(x.{w} & y.{w})" for w in layout.filter("name").words)
            + ") / (x.bf_name_pc + y.bf_name_pc) FROM hub.bank_name x, hub.records y"
            " WHERE x.rid = 2 AND x.slot = ? AND y.rid = ?", [s1, other]).fetchall()[0][0]
    assert dice[1] == pytest.approx(1.0) and dice[3] == pytest.approx(1.0)  # same name, the right year
    assert dice[4] < 0.5  # another name: its best slot is still a poor match
    assert best[(1, 2)][1] != best[(2, 3)][1]  # 1990 and 1985: two slots, so two stand-ins
    assert n == 3
    ins = con.execute(f"SELECT rid, of_rid, bf_name_pc IS NOT NULL, bf_name_pinyin_pc IS NOT NULL, eh_phone"
                      f" FROM {saltbank.STAND_INS} ORDER BY rid").fetchall()
    assert [r[0] for r in ins] == [5, 6, 7] and {r[1] for r in ins} == {2}
    assert all(r[2] and r[3] for r in ins)
    phone_b = con.execute("SELECT eh_phone FROM hub.records WHERE rid = 2").fetchall()[0][0]
    assert phone_b is not None and {r[4] for r in ins} == {phone_b}  # everything else is B's own
    got = con.execute(f"SELECT join_key_l, join_key_r FROM {pairs} ORDER BY 1, 2").fetchall()
    assert len(got) == 6
    assert (1, 3) in got and (1, 4) in got and (3, 4) in got  # untouched
    assert not any(2 in p for p in got)  # B is only ever scored through a stand-in
    assert all(r > 4 for lft, r in got if lft in (1, 3, 4) and r not in (3, 4))


def test_stand_ins_map_back_to_their_record(hub):
    _schema, _layout, con = hub
    con.execute("CREATE OR REPLACE TABLE scored AS SELECT join_key_l AS rid_l, join_key_r AS rid_r, 1.5 AS"
                " match_weight FROM aidlink_blocked_resolved")
    con.execute(saltbank.stand_in_map_sql())
    con.execute(saltbank.map_back_sql("scored"))
    got = con.execute("SELECT rid_l, rid_r FROM scored ORDER BY 1, 2").fetchall()
    assert got == [(1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4)]
    assert con.execute("SELECT DISTINCT match_weight FROM scored").fetchall() == [(1.5,)]


def test_bank_levels_sit_in_front_of_their_twins_and_read_the_stand_in_flag(hub):
    from hub.comparisons import BANK_LABEL, STAND_IN_FLAG, comparison_specs
    from hub.runconfig import DEFAULT_DICE_LEVELS

    schema, layout, _con = hub
    name = next(c for c in comparison_specs(schema, layout, DEFAULT_DICE_LEVELS) if c.name == "name")
    labels = [lv["label_for_charts"] for lv in name.doc["comparison_levels"]]
    bank = [lb for lb in labels if lb.startswith(BANK_LABEL)]
    assert len(bank) == 2 * len(DEFAULT_DICE_LEVELS)  # name and pinyin, each Dice level
    for lb in bank:
        assert labels.index(lb) < labels.index(lb[len(BANK_LABEL):])  # reached before the twin
    assert STAND_IN_FLAG in name.columns
    no_banks = RecordLayout(**{**layout.__dict__, "banks": {}})
    plain = next(c for c in comparison_specs(schema, no_banks, DEFAULT_DICE_LEVELS) if c.name == "name")
    assert not any(lv["label_for_charts"].startswith(BANK_LABEL) for lv in plain.doc["comparison_levels"])
    assert STAND_IN_FLAG not in plain.columns


def test_bank_levels_get_u_from_sampled_bank_pairs_and_m_from_their_twins(hub):
    from hub.comparisons import BANK_LABEL
    from hub.model import SMOOTHING_PSEUDOCOUNT, bank_level_counts, fill_bank_levels, settings_dict
    from hub.runconfig import RunConfig

    schema, layout, con = hub
    cfg = RunConfig()
    counts, pairs = bank_level_counts(con, schema, layout, cfg, input_columns(schema, layout, []))
    # B against A, C (same name: the slot of their year agrees exactly) and D (another name)
    assert pairs == 3
    top = BANK_LABEL + "Dice >= 0.95"
    assert counts[("name", top)] == 2
    assert sum(counts.values()) == 2  # D falls to "else"
    model = settings_dict(schema, layout, cfg)
    for comp in model["comparisons"]:
        for i, lv in enumerate(comp["comparison_levels"]):
            lv["m_probability"], lv["u_probability"] = 0.01 * (i + 1), 0.001 * (i + 1)
    filled = fill_bank_levels(model, counts, pairs)
    name = next(c for c in filled["comparisons"] if c["output_column_name"] == "name")
    levels = {lv["label_for_charts"]: lv for lv in name["comparison_levels"]}
    k = len([lv for lv in name["comparison_levels"] if not lv.get("is_null_level")])
    assert levels[top]["m_probability"] == levels["Dice >= 0.95"]["m_probability"]
    assert levels[top]["u_probability"] == pytest.approx((2 + SMOOTHING_PSEUDOCOUNT) / (3 + k * SMOOTHING_PSEUDOCOUNT))
    assert levels["Dice >= 0.95"]["u_probability"] != levels[top]["u_probability"]  # the twin keeps its own u
    for before, after in zip(model["comparisons"], filled["comparisons"], strict=True):
        if after["output_column_name"] != "name":  # no bank levels: untouched
            assert after == before


def test_two_banks_of_one_name_are_compared_through_two_stand_ins(tmp_path):
    """B and E have no year and the same name: a slot of each holds the same filter, so the pair is
    scored (stand-in of B, stand-in of E); F, another name without a year, shares no slot with B."""
    rows = [dict(_rows()[1]), dict(_rows()[1], address="另一个村2组"),
            dict(_rows()[1], name="另一人", name_pinyin="ling yi ren")]  # B, E, F: all banks
    schema, layout, con = _ingested(rows, tmp_path / "hub.duckdb", 9)
    pairs, n = saltbank.resolve_salt_banks(con, layout, "blocked", input_columns(schema, layout, []))
    best = con.execute(f"SELECT join_key_l, join_key_r, bank_rid, slot_name, slot_name_pinyin"
                       f" FROM {saltbank.BEST_SLOTS} ORDER BY 1, 2, 3").fetchall()
    assert [(lo, hi, b) for lo, hi, b, *_ in best] == [(1, 2, 1), (1, 2, 2)]  # B-E only, both sides
    (_, _, _, s1, p1), (_, _, _, s2, p2) = best
    words = layout.filter("name").words
    same = con.execute("SELECT " + " AND ".join(f"x.{w} = y.{w}" for w in words) +
                       " FROM hub.bank_name x, hub.bank_name y WHERE x.rid = 1 AND x.slot = ? AND y.rid = 2 AND"
                       " y.slot = ?", [s1, s2]).fetchall()[0][0]
    assert same and p1 is not None and p2 is not None  # the same name under the same year, and its pinyin
    assert n == 2
    got = con.execute(f"SELECT join_key_l, join_key_r FROM {pairs} ORDER BY 1, 2").fetchall()
    assert (1, 3) in got and (2, 3) in got  # B-F, E-F: no shared slot, scored as they are (null name)
    assert len(got) == 3 and min(got[-1]) > 3  # B-E: between the two stand-ins
    ins = dict(con.execute(f"SELECT rid, of_rid FROM {saltbank.STAND_INS}").fetchall())
    assert sorted(ins[r] for r in got[-1]) == [1, 2]
