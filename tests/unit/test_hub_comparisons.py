"""The Dice SQL and the comparison levels, checked by their rows against numpy."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from test_hub_fixtures import encoded_table, make_people, manifest, tiny_schema

from hub.comparisons import (
    compared_fields,
    comparison_specs,
    dice_at_least_sql,
    dice_scaled_threshold,
    dice_sql,
    field_comparison,
    filter_null_sql,
    guarded_fallback_comparison,
    household_comparison,
    intersection_sql,
)
from hub.ingest import stage_table
from hub.store import RecordLayout, create_records_sql, insert_records_sql
from linkage.schema import load_schema


def _pairs_table(table: pa.Table, schema) -> tuple[duckdb.DuckDBPyConnection, RecordLayout]:
    """records (via the real staging SQL) and all their ordered pairs as ``pairs`` with _l/_r columns."""
    layout = RecordLayout.from_schema(schema)
    con = duckdb.connect()
    con.execute(create_records_sql(layout))
    staged = stage_table(manifest(schema, table, "d", "victims"), table, layout, 1)
    con.register("staging", staged)
    con.execute(insert_records_sql(layout, "staging"))
    cols = [n for n, _ in layout.record_columns()]
    sel = ", ".join(f'l."{c}" AS "{c}_l", r."{c}" AS "{c}_r"' for c in cols)
    con.execute(f"CREATE TABLE pairs AS SELECT {sel} FROM records l, records r")
    return con, layout


def _numpy_dice(table: pa.Table, column: str, nbytes: int) -> tuple[np.ndarray, np.ndarray]:
    vals = table.column(column).to_pylist()
    null = np.array([v is None for v in vals])
    a = np.stack([np.frombuffer(v or bytes(nbytes), np.uint8) for v in vals])
    inter = np.bitwise_count(a[:, None, :] & a[None, :, :]).sum(-1).astype(np.int64)
    pc = np.bitwise_count(a).sum(-1).astype(np.int64)
    s = pc[:, None] + pc[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(s > 0, 2 * inter / np.where(s > 0, s, 1), 0.0)
    both_null = null[:, None] | null[None, :]
    return dice, both_null


@pytest.fixture(scope="module")
def pairs():
    s = tiny_schema()
    rng = np.random.default_rng(11)
    people = make_people(s, 12, rng)
    t = encoded_table(people, np.r_[np.arange(12), np.arange(6)], rng, moved=0.08, missing={"address": 0.2})
    # two all-zero filters (0/0) on the 64-bit field
    zero = pa.array([bytes(8) if i < 2 else v for i, v in enumerate(t.column("bf_phone").to_pylist())], pa.binary(8))
    t = t.set_column(t.column_names.index("bf_phone"), "bf_phone", zero)
    con, layout = _pairs_table(t, s)
    return s, t, con, layout


@pytest.mark.parametrize("field", ["id_number", "birth_date", "name", "phone", "address"])
def test_dice_sql_equals_numpy_including_empty_and_null(pairs, field):
    _s, t, con, layout = pairs
    f = layout.filter(field)
    got = con.execute(f"SELECT rid_l, rid_r, {dice_sql(f)}, {filter_null_sql(f)} FROM pairs"
                      " ORDER BY rid_l, rid_r").fetchall()
    dice, null = _numpy_dice(t, f.source, f.bits // 8)
    n = t.num_rows
    assert len(got) == n * n
    for rl, rr, d, is_null in got:
        i, j = rl - 1, rr - 1
        assert is_null == bool(null[i, j])
        if not is_null:
            assert d == pytest.approx(dice[i, j], abs=1e-12)
    if field == "phone":
        assert dice[0, 1] == 0.0 and dice[0, 0] == 0.0  # 0/0 is 0


@pytest.mark.parametrize("threshold", [0.95, 0.85, 0.7, 0.5, 1.0, 0.3333])
@pytest.mark.parametrize("field", ["name", "phone", "address"])
def test_dice_threshold_condition_is_exact(pairs, field, threshold):
    _s, t, con, layout = pairs
    f = layout.filter(field)
    got = con.execute(f"SELECT rid_l, rid_r, coalesce({dice_at_least_sql(f, threshold)}, false) FROM pairs"
                      " ORDER BY rid_l, rid_r").fetchall()
    dice, null = _numpy_dice(t, f.source, f.bits // 8)
    pc = np.bitwise_count(np.stack([np.frombuffer(v or bytes(f.bits // 8), np.uint8)
                                    for v in t.column(f.source).to_pylist()])).sum(-1)
    for rl, rr, ok in got:
        i, j = rl - 1, rr - 1
        if null[i, j]:
            continue
        # exact rational comparison: 2c / s >= t  <=>  20000 c >= round(10000 t) s, s > 0
        c = dice[i, j] * (pc[i] + pc[j]) / 2
        want = (pc[i] + pc[j]) > 0 and 20000 * round(c) >= round(threshold * 10000) * (pc[i] + pc[j])
        assert ok == want
    assert any(ok for *_, ok in got)


def test_intersection_counts_words_of_a_short_last_word(pairs):
    _s, t, con, layout = pairs
    f = layout.filter("id_number")  # 320 bits: two 128-bit words and one 64-bit word
    assert f.n_words == 3 and f.word_bits(2) == 64
    got = con.execute(f"SELECT {intersection_sql(f)} FROM pairs WHERE rid_l = rid_r ORDER BY rid_l").fetchall()
    want = [bin(int.from_bytes(v, "big")).count("1") for v in t.column(f.source).to_pylist()]
    assert [g[0] for g in got] == want


def test_dice_thresholds_must_have_four_decimals():
    assert dice_scaled_threshold(0.95) == 9500
    with pytest.raises(ValueError):
        dice_scaled_threshold(0.12345)
    with pytest.raises(ValueError):
        dice_scaled_threshold(0)


def test_comparison_levels_from_the_schema():
    s = tiny_schema()
    layout = RecordLayout.from_schema(s)
    specs = comparison_specs(s, layout, (0.95, 0.85, 0.7))
    comps = {c.name: c.doc for c in specs}
    # phone and address are household values: one comparison, where phone was; the birth date is
    # embedded in the ID number: compared only where the ID number is missing
    assert [c.name for c in specs] == ["id_number", "name", "household"]
    assert specs[0].fields == ("id_number", "birth_date")
    assert [f.name for f in compared_fields(s)] == ["id_number", "birth_date", "name", "phone", "address"]
    assert specs[2].fields == ("phone", "address")
    assert set(specs[2].columns) == {"bf_phone_0", "bf_phone_pc", "eh_phone", *layout.filter("address").words,
                                     "bf_address_pc"}
    labels = [lv["label_for_charts"] for lv in comps["id_number"]["comparison_levels"]]
    assert labels == ["null", "exact (keyed hash)", "Dice >= 0.95", "Dice >= 0.85", "Dice >= 0.7", "else",
                      "no id_number: birth_date Dice >= 0.95", "no id_number: birth_date Dice >= 0.85",
                      "no id_number: birth_date Dice >= 0.7", "no id_number: birth_date else"]
    assert [lv["label_for_charts"] for lv in comps["household"]["comparison_levels"]] == [
        "null", "all agree: phone + address", "phone agrees", "address agrees", "phone Dice >= 0.7",
        "address Dice >= 0.7", "else"]
    phone_level = comps["household"]["comparison_levels"][2]
    assert phone_level["tf_adjustment_column"] == "eh_phone"  # frequency_adjust in the schema
    assert "tf_adjustment_column" not in comps["id_number"]["comparison_levels"][1]
    assert comps["id_number"]["comparison_levels"][0]["is_null_level"] is True
    judicial = load_schema("judicial-assistance")
    jspecs = comparison_specs(judicial, RecordLayout.from_schema(judicial), (0.9, 0.7))
    # pinyin is the name's fallback (derived from it: one comparison, not two agreeing twice); the
    # address has no filter (only in the CLK), so the phone is the only household value compared
    assert [c.name for c in jspecs] == ["name", "id_number", "phone"]
    # the ID number by keyed hash and typo keys, no filter; the birth date (exact) where it is missing
    assert [lv["label_for_charts"] for lv in jspecs[1].doc["comparison_levels"]] == [
        "null", "exact (keyed hash)", "one typo apart (typo keys)", "different, both pass the check", "else",
        "no id_number: birth_date exact (keyed hash)", "no id_number: birth_date else"]
    assert set(jspecs[1].columns) == {"eh_id_number", "ok_id_number", "eh_birth_date",
                                      *(f"vk_id_number_{j}" for j in range(35))}
    assert jspecs[0].fields == ("name", "name_pinyin")
    # the names are salted with a bank for yearless records: bank levels first (hub.saltbank)
    assert [lv["label_for_charts"] for lv in jspecs[0].doc["comparison_levels"]] == [
        "null", "salt bank: Dice >= 0.9", "salt bank: name_pinyin Dice >= 0.9", "salt bank: Dice >= 0.7",
        "salt bank: name_pinyin Dice >= 0.7",
        "Dice >= 0.9", "name_pinyin Dice >= 0.9", "Dice >= 0.7", "name_pinyin Dice >= 0.7", "else"]
    febrl = load_schema("febrl")  # no household values: one comparison per field
    assert [c.name for c in comparison_specs(febrl, RecordLayout.from_schema(febrl), (0.9,))] == [
        f.name for f in compared_fields(febrl)]


def test_household_levels_by_their_rows(pairs):
    from splink import SettingsCreator

    s, t, con, layout = pairs
    doc = household_comparison((s.field("phone"), s.field("address")), layout, (0.95, 0.85, 0.7))
    settings = SettingsCreator(link_type="dedupe_only", unique_id_column_name="rid",
                               comparisons=[doc]).get_settings("duckdb")
    case = settings.comparisons[0]._case_statement
    got = con.execute(f"SELECT rid_l, rid_r, {case} FROM pairs ORDER BY rid_l, rid_r").fetchall()
    d_addr, null_addr = _numpy_dice(t, "bf_address", 64)
    d_phone, null_phone = _numpy_dice(t, "bf_phone", 8)
    eh = t.column("eh_phone").to_pylist()
    seen = set()
    for rl, rr, gamma in got:
        i, j = rl - 1, rr - 1
        phone_eq = eh[i] is not None and eh[j] is not None and eh[i] == eh[j]
        addr_ok = not null_addr[i, j] and d_addr[i, j] >= 0.85
        if null_addr[i, j] and null_phone[i, j] and (eh[i] is None or eh[j] is None):
            want = -1
        elif phone_eq and addr_ok:
            want = 5
        elif phone_eq:
            want = 4
        elif addr_ok:
            want = 3
        elif not null_phone[i, j] and d_phone[i, j] >= 0.7:
            want = 2
        elif not null_addr[i, j] and d_addr[i, j] >= 0.7:
            want = 1
        else:
            want = 0
        assert gamma == want, (rl, rr)
        seen.add(want)
    assert {5, 0} <= seen


def test_birth_date_speaks_only_where_the_id_number_is_missing():
    from splink import SettingsCreator

    s = tiny_schema()
    rng = np.random.default_rng(5)
    people = make_people(s, 12, rng)
    t = encoded_table(people, np.r_[np.arange(12), np.arange(8)], rng, moved=0.1,
                      missing={"id_number": 0.35, "birth_date": 0.25})
    con, layout = _pairs_table(t, s)
    doc = guarded_fallback_comparison(s.field("id_number"), s.field("birth_date"), layout, (0.9, 0.6))
    settings = SettingsCreator(link_type="dedupe_only", unique_id_column_name="rid",
                               comparisons=[doc]).get_settings("duckdb")
    case = settings.comparisons[0]._case_statement
    got = con.execute(f"SELECT rid_l, rid_r, {case} FROM pairs ORDER BY rid_l, rid_r").fetchall()
    nb = {c: len(next(v for v in t.column(c).to_pylist() if v is not None)) for c in ("bf_id_number", "bf_birth_date")}
    d_id, null_id = _numpy_dice(t, "bf_id_number", nb["bf_id_number"])
    d_bd, null_bd = _numpy_dice(t, "bf_birth_date", nb["bf_birth_date"])
    eh = t.column("eh_id_number").to_pylist()
    seen = set()
    for rl, rr, gamma in got:
        i, j = rl - 1, rr - 1
        if null_id[i, j] and null_bd[i, j]:
            want = -1
        elif not null_id[i, j]:  # 6 exact, 5 >= 0.9, 4 >= 0.6, 3 else -- the birth date is not read
            exact = eh[i] is not None and eh[j] is not None and eh[i] == eh[j]
            want = 6 if exact else 5 if d_id[i, j] >= 0.9 else 4 if d_id[i, j] >= 0.6 else 3
        else:  # 2 >= 0.9, 1 >= 0.6, 0 else: the birth date where an ID number is missing
            want = 2 if d_bd[i, j] >= 0.9 else 1 if d_bd[i, j] >= 0.6 else 0
        assert gamma == want, (rl, rr)
        seen.add(want)
    assert {-1, 6, 3} <= seen and seen & {0, 1, 2}


def test_splink_case_statement_gives_the_levels_of_the_sql(pairs):
    """The CASE Splink builds from our levels assigns each pair the level our conditions say."""
    from splink import SettingsCreator

    s, t, con, layout = pairs
    f = s.field("name")
    settings = SettingsCreator(link_type="dedupe_only", unique_id_column_name="rid",
                               comparisons=[field_comparison(f, layout, (0.9, 0.6))]).get_settings("duckdb")
    case = settings.comparisons[0]._case_statement
    got = con.execute(f"SELECT rid_l, rid_r, {case} FROM pairs ORDER BY rid_l, rid_r").fetchall()
    dice, null = _numpy_dice(t, "bf_name", 32)
    for rl, rr, gamma in got:
        i, j = rl - 1, rr - 1
        want = -1 if null[i, j] else 2 if dice[i, j] >= 0.9 else 1 if dice[i, j] >= 0.6 else 0
        assert gamma == want


def test_pinyin_is_a_fallback_level_of_the_name_by_its_rows():
    from splink import SettingsCreator

    from linkage.schema import schema_from_document

    doc = {"version": 1, "id": "names-v1", "fields": [
        {"name": "name", "normaliser": "chinese_name", "tokeniser": {"kind": "char_ngrams", "n": 2},
         "filter": {"length": 256, "bits_per_token": 12}, "clk": {"bits_per_token": 8}},
        {"name": "name_pinyin", "normaliser": "pinyin", "derive": {"from": "name", "via": "pinyin"},
         "tokeniser": {"kind": "pinyin_ngrams", "n": 2}, "filter": {"length": 256, "bits_per_token": 8}}],
        "clk": {"length": 256}}
    s = schema_from_document(doc, "names")
    rng = np.random.default_rng(4)
    people = make_people(s, 10, rng)
    t = encoded_table(people, np.r_[np.arange(10), np.arange(5)], rng, moved=0.2, missing={"name": 0.2})
    con, layout = _pairs_table(t, s)
    specs = comparison_specs(s, layout, (0.9, 0.6))
    assert [c.name for c in specs] == ["name"]
    settings = SettingsCreator(link_type="dedupe_only", unique_id_column_name="rid",
                               comparisons=[specs[0].doc]).get_settings("duckdb")
    got = con.execute(f"SELECT rid_l, rid_r, {settings.comparisons[0]._case_statement} FROM pairs").fetchall()
    d_name, null_name = _numpy_dice(t, "bf_name", 32)
    d_py, null_py = _numpy_dice(t, "bf_name_pinyin", 32)
    for rl, rr, gamma in got:
        i, j = rl - 1, rr - 1
        if null_name[i, j]:
            want = -1 if null_py[i, j] else None
        else:
            py = -1.0 if null_py[i, j] else d_py[i, j]
            want = (4 if d_name[i, j] >= 0.9 else 3 if py >= 0.9 else 2 if d_name[i, j] >= 0.6
                    else 1 if py >= 0.6 else 0)
        if want is not None:
            assert gamma == want, (rl, rr)


def test_two_different_id_numbers_that_both_pass_the_check_get_their_own_level():
    """With ``validity_flag``, "different, both pass the check" comes right after "exact": a pair
    whose IDs differ lands there when both flags are true, else in the Dice levels as before."""
    from splink import SettingsCreator
    from test_hub_fixtures import tiny_schema_doc

    from linkage.schema import schema_from_document

    doc = tiny_schema_doc()
    next(f for f in doc["fields"] if f["name"] == "id_number")["validity_flag"] = True
    s = schema_from_document(doc, "tiny with a validity flag")
    rng = np.random.default_rng(5)
    people = make_people(s, 12, rng)
    t = encoded_table(people, np.r_[np.arange(12), np.arange(8)], rng, moved=0.1,
                      missing={"id_number": 0.3}, typo={"eh_id_number": 0.3})
    ids = t.column("eh_id_number").to_pylist()
    flags = [None if v is None else bool(rng.random() < 0.7) for v in ids]
    t = t.append_column("ok_id_number", pa.array(flags, pa.bool_()))
    con, layout = _pairs_table(t, s)
    comp = guarded_fallback_comparison(s.field("id_number"), s.field("birth_date"), layout, (0.9, 0.6))
    labels = [lv["label_for_charts"] for lv in comp["comparison_levels"]]
    assert labels[1:3] == ["exact (keyed hash)", "different, both pass the check"]
    settings = SettingsCreator(link_type="dedupe_only", unique_id_column_name="rid",
                               comparisons=[comp]).get_settings("duckdb")
    case = settings.comparisons[0]._case_statement
    got = con.execute(f"SELECT rid_l, rid_r, {case} FROM pairs ORDER BY rid_l, rid_r").fetchall()
    d_id, null_id = _numpy_dice(t, "bf_id_number", 40)
    seen = set()
    for rl, rr, gamma in got:
        i, j = rl - 1, rr - 1
        if null_id[i, j]:
            continue  # the birth-date fallback, tested above
        # 7 exact, 6 both pass, 5 >= 0.9, 4 >= 0.6, 3 else
        if ids[i] == ids[j]:
            want = 7
        elif flags[i] and flags[j]:
            want = 6
        else:
            want = 5 if d_id[i, j] >= 0.9 else 4 if d_id[i, j] >= 0.6 else 3
        assert gamma == want, (rl, rr)
        seen.add(want)
    assert {7, 6, 3} <= seen and seen & {4, 5}  # every kind of level reached


def test_id_number_typo_keys_by_their_rows():
    """An ID number without a filter: exact, one typo apart (typo keys), both pass the check, else --
    and the birth date's exact hash only where an ID number is missing."""
    from splink import SettingsCreator
    from test_hub_fixtures import tiny_schema_doc

    from linkage.encode import encode_records
    from linkage.keys import LinkageSecret
    from linkage.schema import schema_from_document

    doc = tiny_schema_doc()
    ident, dob = doc["fields"][0], doc["fields"][1]
    del ident["filter"], dob["filter"]
    ident.update(validity_flag=True, typo_keys=True)
    dob["exact_hash"] = True
    s = schema_from_document(doc, "typo")
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)

    def valid(first17):
        return first17 + "10X98765432"[sum(int(c) * w for c, w in zip(first17, weights, strict=True)) % 11]

    a, b = valid("52219919900307123"), valid("52219919851111456")
    ids = [a, a[:5] + "7" + a[6:], a[:8] + a[9] + a[8] + a[10:], a[:3] + "0" + a[4:7] + "0" + a[8:], b, None, None]
    dates = ["1990-03-07", "1990-03-07", "1990-03-07", "1990-03-07", "1985-11-11", "1990-03-07", "1985-11-11"]
    frame = pd.DataFrame({f: [None] * len(ids) for f in s.field_names}, dtype=object)
    frame["id_number"], frame["birth_date"] = ids, dates
    t = encode_records(frame, s, LinkageSecret(bytes(range(32))))
    t = t.append_column("token", pa.array([f"{i:032x}" for i in range(len(ids))]))
    con, layout = _pairs_table(t, s)
    comp = comparison_specs(s, layout, (0.9,))[0]
    assert comp.fields == ("id_number", "birth_date")
    settings = SettingsCreator(link_type="dedupe_only", unique_id_column_name="rid",
                               comparisons=[comp.doc]).get_settings("duckdb")
    case = settings.comparisons[0]._case_statement
    got = {(rl - 1, rr - 1): g for rl, rr, g in
           con.execute(f"SELECT rid_l, rid_r, {case} FROM pairs WHERE rid_l < rid_r").fetchall()}
    # 5 exact, 4 one typo apart, 3 both pass the check, 2 else, 1 / 0: birth date (no ID) equal / not
    assert got[(0, 1)] == 4 and got[(0, 2)] == 4  # a substitution, a swap
    assert got[(0, 3)] == 2  # two substitutions: not one typo, and one side fails the check
    assert got[(1, 2)] == 2  # two typos of the same number: no key in common
    assert got[(0, 4)] == 3  # two valid numbers
    assert got[(0, 5)] == 1 and got[(4, 5)] == 0 and got[(4, 6)] == 1 and got[(5, 6)] == 0
