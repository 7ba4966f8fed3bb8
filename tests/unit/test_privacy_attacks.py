"""The privacy attacks of hub.privacy: each succeeds on a small unhardened case and
is stopped by hardening.

Everything is synthetic: names drawn from the synthetic county's frequency
tables (or a small made-up table), IDs and dates invented.  The attacker's
public table is always another draw from the same distribution, never the
encoded records.
"""

from __future__ import annotations

import copy
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from hub.privacy import attacks, stats
from hub.privacy.knowledge import targets_of, units_of
from hub.privacy.lab import Variant, apply_variant
from hub.privacy.matrix import packed_column
from linkage.encode import encode_records
from linkage.keys import LinkageSecret
from linkage.normalise import normalise_records
from linkage.schema import load_schema, schema_from_document

NAMES = [s + g for s in "王李张刘陈杨黄赵吴周" for g in ("伟", "芳", "建国", "秀英", "磊", "静", "子轩", "欣怡")]
# a made-up name table: 80 names with Zipf weights (the commonest about 8 %)
WEIGHTS = 1.0 / np.arange(1, len(NAMES) + 1) ** 0.7


def _schema(hardening: dict, **geometry):
    """The judicial-assistance schema with ``hardening`` on the name filters."""
    base = load_schema("judicial-assistance")
    return schema_from_document(apply_variant(base.document, Variant("t", hardening, **geometry),
                                              ("name", "name_pinyin"), "birth_year"))


def _frame(schema, names, years=None, extra: dict | None = None) -> pd.DataFrame:
    raw = pd.DataFrame({"name": names, **(extra or {})}, dtype=object)
    if years is not None:
        raw["birth_date"] = [f"{y}-06-01" for y in years]
    normalised, _ = normalise_records(raw, schema)
    return normalised


def _encode(schema, frame, seed=1):
    return encode_records(frame, schema, LinkageSecret(bytes(range(32))), rng=np.random.default_rng(seed))


def _draw(rng, n):
    return list(rng.choice(NAMES, size=n, p=WEIGHTS / WEIGHTS.sum()))


def _target(schema, column):
    return next(t for t in targets_of(schema) if t.column == column)


def _run(attack, schema, column, records, public, top_n=5, **kw):
    table = _encode(schema, records)
    target = _target(schema, column)
    packed, valid = packed_column(table.column(column))
    _, truth = units_of(target, records)
    g = attack(target, packed, valid, public, schema, rng=np.random.default_rng(3), **kw)
    return attacks.score(g, target, truth, top_n=top_n, blind_guess=attacks.commonest(target, public))


# --------------------------------------------------------------------------- 1. frequency


def test_frequency_attack_reidentifies_unhardened_filters_and_salt_or_blip_stops_it():
    rng = np.random.default_rng(11)
    years = rng.integers(1950, 2010, 1500)
    plain = _schema({})
    records = _frame(plain, _draw(rng, 1500), years)
    public = _frame(plain, _draw(rng, 5000), rng.integers(1950, 2010, 5000))
    got = _run(attacks.frequency_attack, plain, "bf_name", records, public)
    assert got["reidentified"] >= 0.35
    assert got["frequent_recovered"] >= 0.6  # of the five most frequent names

    salted = _schema({"salt": {"field": "birth_year"}})
    got = _run(attacks.frequency_attack, salted, "bf_name", _frame(salted, list(records["name"]), years),
               _frame(salted, list(public["name"]), rng.integers(1950, 2010, 5000)))
    # no better than guessing the commonest name for everyone
    assert got["reidentified"] <= got["blind_guess"] + 0.03

    noisy = _schema({"blip": {"epsilon": 2}})
    got = _run(attacks.frequency_attack, noisy, "bf_name", records, public)
    assert got["reidentified"] <= got["blind_guess"] + 0.03


# --------------------------------------------------------------------------- 4. keyed hashes


def test_keyed_hash_attack_reads_a_name_key_and_a_composite_key_stops_it():
    base = load_schema("judicial-assistance")
    doc = copy.deepcopy(base.document)
    doc["blocking_keys"] = [{"name": "name_only", "fields": ["name"]},
                            {"name": "name_dob", "fields": ["name", "birth_date"]}]
    schema = schema_from_document(doc)
    rng = np.random.default_rng(5)
    days = [dt.date(1950, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 20000, 1200)]
    records = _frame(schema, _draw(rng, 1200), extra={"birth_date": [d.isoformat() for d in days]})
    pdays = [dt.date(1950, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 20000, 5000)]
    public = _frame(schema, _draw(rng, 5000), extra={"birth_date": [d.isoformat() for d in pdays]})
    table = _encode(schema, records)
    out = {}
    for col in ("bk_name_only", "bk_name_dob"):
        target = _target(schema, col)
        arr = table.column(col).combine_chunks()
        g = attacks.keyed_hash_attack(target, arr.fill_null(0).to_numpy(zero_copy_only=False),
                                      arr.is_valid().to_numpy(zero_copy_only=False), public)
        out[col] = attacks.score(g, target, units_of(target, records)[1],
                                 blind_guess=attacks.commonest(target, public))
    assert out["bk_name_only"]["reidentified"] >= out["bk_name_only"]["blind_guess"] + 0.1
    assert out["bk_name_dob"]["reidentified"] <= 0.01
    st = stats.key_statistics(table.column("bk_name_only"))
    assert st["distinct"] <= len(NAMES) and st["shared"] > 0.9


def test_typo_keys_of_id_numbers_give_a_frequency_attack_nothing():
    schema = load_schema("judicial-assistance")
    rng = np.random.default_rng(9)
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)

    def ids(n):
        first = [f"522199{1950 + int(rng.integers(60))}0{1 + int(rng.integers(9))}1{int(rng.integers(10))}"
                 f"{int(rng.integers(1000)):03d}" for _ in range(n)]
        return [f + "10X98765432"[sum(int(c) * w for c, w in zip(f, weights, strict=True)) % 11] for f in first]

    people = ids(400)
    # each person 1-3 records, a few with a digit mistyped: the keys shared are a typo and its true ID
    rows = [p for p in people for _ in range(1 + int(rng.integers(3)))]
    rows += [p[:4] + str((int(p[4]) + 1) % 10) + p[5:] for p in people[:40]]
    records = _frame(schema, _draw(rng, len(rows)), extra={"id_number": rows})
    public = _frame(schema, _draw(rng, 3000), extra={"id_number": ids(3000)})
    table = _encode(schema, records)
    for j in (0, 4, 17, 20, 34):
        target = _target(schema, f"vk_id_number_{j}")
        units, scored = units_of(target, records)
        arr = table.column(target.column).combine_chunks()
        codes, valid = arr.fill_null(0).to_numpy(zero_copy_only=False), arr.is_valid().to_numpy(zero_copy_only=False)
        # the lab's ground truth is the encoder's: equal units <=> equal keys
        assert (pd.factorize(units)[0] == pd.factorize(np.where(valid, codes, None))[0]).all()
        g = attacks.keyed_hash_attack(target, codes, valid, public)
        got = attacks.score(g, target, scored, blind_guess=attacks.commonest(target, public))
        assert got["reidentified"] == 0.0
    # position 5 masked: the 40 mistyped records share it with their person's records
    arr = table.column("vk_id_number_4").to_numpy(zero_copy_only=False)
    assert pd.Series(arr).value_counts().max() <= 4


# --------------------------------------------------------------------------- 2. pattern mining


def test_pattern_mining_identifies_token_positions_unhardened_and_salt_or_blip_stops_it():
    rng = np.random.default_rng(21)
    plain = _schema({})
    years = rng.integers(1950, 2010, 1200)
    records = _frame(plain, _draw(rng, 1200), years)
    public = _frame(plain, _draw(rng, 4000), rng.integers(1950, 2010, 4000))
    got = _run(attacks.pattern_mining_attack, plain, "bf_name", records, public)
    assert got["reidentified"] >= got["blind_guess"] + 0.15

    salted = _schema({"salt": {"field": "birth_year"}})
    got = _run(attacks.pattern_mining_attack, salted, "bf_name", _frame(salted, list(records["name"]), years),
               _frame(salted, list(public["name"]), rng.integers(1950, 2010, 4000)))
    assert got["reidentified"] <= got["blind_guess"] + 0.02

    noisy = _schema({"blip": {"epsilon": 2}})
    got = _run(attacks.pattern_mining_attack, noisy, "bf_name", records, public)
    assert got["reidentified"] <= got["blind_guess"] + 0.02


def test_debalance_recovers_the_original_columns():
    rng = np.random.default_rng(2)
    F = rng.random((300, 64)) < 0.15
    cat = np.concatenate([F, ~F], axis=1)
    perm = rng.permutation(128)
    got, done = attacks.debalance(cat[:, perm])
    assert done and got.shape == (300, 64)
    # every original column is present once (up to order)
    key = {c.tobytes() for c in F.T}
    assert {c.tobytes() for c in got.T} == key


# --------------------------------------------------------------------------- 3. graph matching


def _population(n, seed):
    from synthetic.population import generate_population

    pop, _ = generate_population(np.random.default_rng(seed), n, dt.date(2024, 6, 30))
    return pop


def test_graph_attack_percolates_from_a_few_seeds_unhardened_and_blip_or_salt_stops_it():
    pop = _population(2000, 4)
    years = pop["birth_date"].dt.year.tolist()

    def run(schema):
        reference = _frame(schema, list(pop["name"]), years)
        records = reference.sample(n=1200, random_state=1).reset_index(drop=True)
        table = _encode(schema, records)
        target = _target(schema, "bf_name")
        packed, valid = packed_column(table.column("bf_name"))
        units, truth = units_of(target, records)
        rng = np.random.default_rng(7)
        sr, su = attacks.seeds_for(units, valid, 40, rng, units_of(target, reference)[0])
        g = attacks.graph_attack(target, packed, valid, reference, schema, sr, su, rng=rng, rounds=10)
        return attacks.score(g, target, truth, blind_guess=attacks.commonest(target, reference))

    got = run(_schema({}))
    assert got["reidentified"] >= 0.15 and got["blind_guess"] < 0.01  # 40 known records of 1,200
    got = run(_schema({"blip": {"epsilon": 2}}))
    assert got["reidentified"] <= 0.03
    got = run(_schema({"salt": {"field": "birth_year"}}))
    assert got["reidentified"] <= 0.03


def test_graph_attack_reidentifies_an_unhardened_clk_and_the_shipped_clk_hardening_stops_it():
    pop = _population(2000, 6)
    raw = pop[["name", "id_number", "sex", "birth_date", "phone", "address"]].copy()
    raw["birth_date"] = raw["birth_date"].dt.strftime("%Y-%m-%d")
    raw["phone"] = raw["phone"].replace("", None)
    shipped = load_schema("judicial-assistance")
    doc = copy.deepcopy(shipped.document)
    doc["clk"]["hardening"] = {"permute": True}
    unhardened = schema_from_document(doc)

    def run(schema):
        reference, _ = normalise_records(raw.astype(object), schema)
        records = reference.sample(n=700, random_state=2).reset_index(drop=True)
        table = _encode(schema, records)
        target = _target(schema, "clk")
        packed, valid = packed_column(table.column("clk"))
        units, truth = units_of(target, records)
        rng = np.random.default_rng(9)
        sr, su = attacks.seeds_for(units, valid, 30, rng, units_of(target, reference)[0])
        g = attacks.graph_attack(target, packed, valid, reference, schema, sr, su, rng=rng, rounds=8)
        return attacks.score(g, target, truth, blind_guess=attacks.commonest(target, reference))

    got = run(unhardened)
    assert got["reidentified"] >= 0.3 and got["blind_guess"] < 0.01  # the whole record, from 30 known ones
    assert run(shipped)["reidentified"] <= 0.02


# --------------------------------------------------------------------------- statistics


def test_bit_statistics_of_a_column():
    schema = _schema({})
    rng = np.random.default_rng(1)
    table = _encode(schema, _frame(schema, _draw(rng, 400) + [None] * 10))
    st = stats.bit_statistics(table.column("bf_name"))
    assert st["records"] == 400 and st["length"] == 512
    assert len(st["position_frequency"]) == 512
    assert 0 < st["frequency"]["mean"] < 0.2
    assert st["largest_class"] >= 20 and st["shared"] > 0.9  # identical names, identical filters
    balanced = _schema({"balance": True})
    st = stats.bit_statistics(_encode(balanced, _frame(balanced, _draw(rng, 400))).column("bf_name"))
    assert st["hamming_weight"]["sd"] == 0 and st["hamming_weight"]["mean"] == 512


def test_attack_sample_uses_only_what_the_hub_has_and_measures_with_truth():
    schema = _schema({})
    rng = np.random.default_rng(8)
    records = _frame(schema, _draw(rng, 1500), rng.integers(1950, 2010, 1500))
    public = _frame(schema, _draw(rng, 5000), rng.integers(1950, 2010, 5000))
    table = _encode(schema, records)
    out = stats.attack_sample(table, schema, public=public, sample_size=1000, columns=("bf_name",))
    col = out["columns"]["bf_name"]
    assert out["sample"] == 1000 and "measured" not in col["frequency"]
    assert col["frequency"]["claimed"] > 0
    out = stats.attack_sample(table, schema, public=public, sample_size=1000, columns=("bf_name",),
                              truth=records)
    assert out["columns"]["bf_name"]["frequency"]["measured"]["reidentified"] >= 0.3


@pytest.mark.parametrize("column", ["bf_name", "clk"])
def test_every_attackable_column_has_a_target(column):
    schema = load_schema("judicial-assistance")
    assert _target(schema, column).length > 0


# --------------------------------------------------------------------------- salt banks


def test_bank_linking_desalts_names_that_appear_in_a_bank_and_blip_stops_it():
    bank = {"salt": {"field": "birth_year", "on_missing": "bank", "bank": {"from": 1950, "to": 2009}}}
    rng = np.random.default_rng(31)
    names = _draw(rng, 1500)
    years = [None if rng.random() < 0.1 else f"{int(y)}-06-01" for y in rng.integers(1950, 2010, 1500)]
    public_names = _draw(rng, 5000)
    public_years = rng.integers(1950, 2010, 5000)

    def run(hardening, **geometry):
        schema = _schema(hardening, **geometry)
        records = _frame(schema, names, extra={"birth_date": years})
        public = _frame(schema, public_names, public_years)
        table = _encode(schema, records)
        target = _target(schema, "bf_name")
        packed, valid = packed_column(table.column("bf_name"))
        g = attacks.bank_linking_attack(target, packed, valid, table.column("sb_name"), public, schema,
                                        rng=np.random.default_rng(4))
        return g, attacks.score(g, target, units_of(target, records)[1], top_n=5,
                                blind_guess=attacks.commonest(target, public)), records

    g, got, records = run(bank)
    banked = set(records["name"][records["birth_year"].isna()])
    expected = float(np.mean([n in banked for n in records["name"][records["birth_year"].notna()]]))
    assert g.info["bank_rows"] == int(records["birth_year"].isna().sum()) > 0
    assert g.info["desalted_share"] == pytest.approx(expected)  # every salted record of a banked name
    assert got["reidentified"] >= got["blind_guess"] + 0.15  # the unsalted frequency attack is back
    # 37 % of the bits flipped: slots link by chance, across names, and the frequency attack fails
    g, got, _ = run({**bank, "blip": {"epsilon": 8}})
    assert got["reidentified"] <= got["blind_guess"] + 0.03
    # light noise (5 bits per bigram, epsilon 20: 1.8 % flipped) leaves the slots close enough to link,
    # as the hub's own linkage through a bank needs: the attacker links by Dice and de-salts as before
    g, _, _ = run({**bank, "blip": {"epsilon": 20}}, bits_per_token=5)
    assert 0 < g.info["same_value_dice"] < 1
    assert g.info["desalted_share"] >= 0.8 * expected


# --------------------------------------------------------------------------- the hub's own records


def test_sample_store_reads_back_every_encoding_the_hub_holds(tmp_path):
    import secrets as _secrets
    from types import SimpleNamespace

    import pyarrow as pa

    from hub.ingest import ingest_opened
    from hub.store import RecordLayout, connect, read_meta

    schema = load_schema("judicial-assistance")  # name filters salted, with salt banks
    rng = np.random.default_rng(41)
    n = 300
    days = [dt.date(1950, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 20000, n)]
    births = [None if i % 10 == 0 else d.isoformat() for i, d in enumerate(days)]  # every tenth: a bank
    phones = [f"13{int(x):09d}" for x in rng.integers(0, 10**9, n)]
    records = _frame(schema, _draw(rng, n), extra={"birth_date": births, "phone": phones})
    table = _encode(schema, records)
    tokens = [f"{i:032x}" for i in range(n)]
    table = table.add_column(0, "token", pa.array(tokens, pa.string()))
    secret = LinkageSecret(bytes(range(32)))
    manifest = {"version": 1, "package_id": _secrets.token_hex(16), "direction": "to_hub", "agency": "a",
                "sender": "a", "recipient": "hub", "dataset": "civil_affairs_dibao",
                "dataset_kind": "civil_affairs_dibao", "schema_id": schema.id,
                "schema_fingerprint": schema.fingerprint, "key_check_value": secret.key_check_value(),
                "content_sha256": "0" * 64, "row_count": n}
    db = tmp_path / "hub.duckdb"
    ingest_opened(db, [SimpleNamespace(manifest=manifest, table=table)], schema=schema, write_parquet=False)
    con = connect(db, read_only=True)
    try:
        layout = RecordLayout.from_schema(schema, read_meta(con).lsh)
        got = stats.sample_store(con, layout, sample_size=10 * n)
        row_of = dict(con.execute("SELECT rid, token FROM records").fetchall())
        part = stats.sample_store(con, layout, sample_size=50, seed=3)
    finally:
        con.close()
    assert got.num_rows == n and part.num_rows == 50
    order = [tokens.index(row_of[r]) for r in got.column("rid").to_pylist()]
    encodings = [c for c in table.column_names if c.split("_")[0] in ("bf", "eh", "bk", "clk", "sb")]
    assert set(encodings) <= set(got.column_names)
    for c in encodings:
        want = table.column(c).take(pa.array(order)).to_pylist()
        have = got.column(c).to_pylist()
        if c.startswith("sb_"):  # a bank's slots come in a random order: compare them as sets
            width = schema.field(c[3:]).filter.output_length // 8
            assert sum(v is not None for v in have) == n // 10
            for w, h in zip(want, have, strict=True):
                assert (w is None) == (h is None)
                if w is not None:
                    assert sorted(w[i:i + width] for i in range(0, len(w), width)) == \
                        sorted(h[i:i + width] for i in range(0, len(h), width))
        else:
            assert have == want, c
