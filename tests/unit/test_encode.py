"""Behaviour of linkage.encode (the native aidlink encoding v1).

Known answers: tests/vectors/native/ (made by an independent stdlib-only
implementation of the spec, tests/vectors/native/reference.py).
"""

from __future__ import annotations

import base64
import copy
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC

from linkage import encode as enc
from linkage._bits import hashing, kernels, tokens
from linkage.encode import (
    blip_flip_probability,
    blip_sensitivity,
    encode_records,
    encoded_arrow_schema,
    typo_corrections,
)
from linkage.errors import SchemaMismatchError
from linkage.keys import LinkageSecret
from linkage.schema import load_schema, schema_from_document

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "native"
sys.path.insert(0, str(VECTORS))
import reference  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SECRET = LinkageSecret(bytes(range(32)))
OTHER = LinkageSecret(bytes(range(1, 33)))


def judicial_doc() -> dict:
    return json.loads((ROOT / "schemas" / "judicial-assistance.linkage.json").read_text("utf-8"))


def frame(rows: list[dict], schema) -> pd.DataFrame:
    df = pd.DataFrame(rows, dtype=object)
    for f in schema.field_names:
        if f not in df.columns:
            df[f] = None
    return df[list(schema.field_names)].astype(object)


ROWS = [
    {"name": "张三", "name_pinyin": "zhang san", "id_number": "522199199003071234",
     "birth_date": "1990-03-07", "birth_year": "1990", "sex": "M", "phone": "13800138000",
     "address": "新场镇上林村2组", "region_code": "522199"},
    {"name": "李四", "name_pinyin": "li si", "id_number": None, "birth_date": None,
     "birth_year": None, "sex": "F", "phone": None, "address": "A", "region_code": None},
    {"name": None, "name_pinyin": None, "id_number": "522199199003071234", "birth_date": "",
     "birth_year": "1990", "sex": None, "phone": "", "address": None, "region_code": None},
    {"name": "张三", "name_pinyin": "zhang san", "id_number": "522199199003071234",
     "birth_date": "1990-03-07", "birth_year": "1991", "sex": "M", "phone": None,
     "address": None, "region_code": None},
]


@pytest.fixture(scope="module")
def judicial():
    return load_schema("judicial-assistance")


@pytest.fixture(scope="module")
def table(judicial):
    return encode_records(frame(ROWS, judicial), judicial, SECRET, np.random.default_rng(0))


def test_columns_types_and_lengths(judicial, table):
    assert table.schema == encoded_arrow_schema(judicial)
    names = table.column_names
    bf = [f"bf_{f.name}" for f in judicial.filter_fields]
    assert names[:len(bf)] == bf and "bf_name" in bf and "bf_id_number" not in bf  # typo keys instead
    vk = [f"vk_id_number_{j}" for j in range(35)]  # 18 positions, 17 adjacent pairs
    assert names[names.index("ok_id_number") + 1:names.index("clk")] == vk
    assert all(table.schema.field(c).type == pa.int64() for c in vk)
    assert names[-3:] == ["clk", "sb_name", "sb_name_pinyin"]  # salt banks last
    assert "eh_id_number" in names and "bk_dob_sex" in names
    for f in judicial.filter_fields:
        col = table[f"bf_{f.name}"]
        assert col.type == pa.binary(f.filter.output_length // 8)
        assert all(len(v) == f.filter.output_length // 8 for v in col.to_pylist() if v is not None)
    assert table["clk"].type == pa.binary(judicial.clk_output_length // 8)
    assert table["clk"].null_count == 0


def test_null_rules(table):
    rows = table.to_pylist()
    assert rows[1]["bf_name"] is None  # salted by birth_year with on_missing bank, year missing
    assert rows[1]["sb_name"] is not None and rows[0]["sb_name"] is None  # ... so it has a bank
    assert rows[2]["sb_name"] is None  # no name: no bank
    assert rows[2]["bf_name"] is None and rows[2]["eh_phone"] is None  # None and "" are missing
    assert rows[2]["eh_birth_date"] is None and rows[0]["eh_birth_date"] is not None
    assert rows[1]["eh_id_number"] is None and rows[1]["vk_id_number_0"] is None
    assert rows[1]["bk_dob_sex"] is None and rows[0]["bk_dob_sex"] is not None
    assert rows[2]["bk_name_dob"] is None


def test_matches_reference_and_vectors(judicial, table):
    doc = judicial_doc()
    for rec, got in zip(ROWS, table.to_pylist(), strict=True):
        # salt banks (random slot order) are checked against bf_ filters in the bank test below
        assert reference.encode_record(rec, doc, SECRET.value) == {
            k: v for k, v in got.items() if not k.startswith("sb_")}


@pytest.mark.parametrize("name", ["judicial_assistance", "hardening", "febrl"])
def test_native_known_answer_vectors(name):
    v = json.loads((VECTORS / f"{name}.json").read_text("utf-8"))
    schema = schema_from_document(v["schema"])
    got = encode_records(frame(v["records"], schema), schema,
                         LinkageSecret(bytes.fromhex(v["secret"]))).to_pylist()
    for g, e in zip(got, v["expected"], strict=True):
        # salt banks (slots in a random order, section 7) have no vectors; their slots are the
        # bf_ filters under each year, checked in the bank test below
        assert {k: base64.b64encode(x).decode() if isinstance(x, bytes) else x
                for k, x in g.items() if not k.startswith("sb_")} == e


def test_deterministic_and_secret_dependent(judicial, table):
    again = encode_records(frame(ROWS, judicial), judicial, SECRET, np.random.default_rng(0))
    assert again.equals(table)  # the same generator gives the same bank order
    other = encode_records(frame(ROWS, judicial), judicial, OTHER).to_pylist()
    for a, b in zip(table.to_pylist(), other, strict=True):
        for k, v in a.items():
            if k.startswith("ok_"):  # a validity flag is keyless: the same under any secret
                assert v == b[k], k
            elif v is not None:
                assert v != b[k], k


def test_salt_changes_filter_not_clk_contribution(table):
    rows = table.to_pylist()
    # rows 0 and 3: same name, birth years 1990 / 1991
    assert rows[0]["bf_name"] != rows[3]["bf_name"]
    assert rows[0]["bf_name_pinyin"] != rows[3]["bf_name_pinyin"]
    assert rows[0]["eh_id_number"] == rows[3]["eh_id_number"]
    assert rows[0]["vk_id_number_0"] == rows[3]["vk_id_number_0"]


def test_unsalted_on_missing_hashes_bare_token(judicial):
    doc = judicial_doc()
    doc["fields"][0]["filter"]["hardening"]["salt"]["on_missing"] = "unsalted"
    del doc["fields"][0]["filter"]["hardening"]["salt"]["bank"]
    s = schema_from_document(doc)
    plain = copy.deepcopy(doc)
    del plain["fields"][0]["filter"]["hardening"]["salt"]
    p = schema_from_document(plain)
    rec = dict(ROWS[1])
    a = encode_records(frame([rec], s), s, SECRET)["bf_name"][0].as_py()
    b = encode_records(frame([rec], p), p, SECRET)["bf_name"][0].as_py()
    assert a is not None and a == b


def _schema_with(hard: dict, clk_hard: dict | None = None, **filter_kw):
    """The judicial schema with a Bloom filter on the ID number (which ships with typo keys instead)
    hardened by ``hard``: a digit field to test hardening on."""
    doc = judicial_doc()
    doc["fields"][2].setdefault("filter", {"length": 512, "bits_per_token": 10})
    if "bits_per_feature" in filter_kw:
        del doc["fields"][2]["filter"]["bits_per_token"]
    doc["fields"][2]["filter"].update(filter_kw)
    doc["fields"][2]["filter"]["hardening"] = hard
    if clk_hard is not None:
        doc["clk"]["hardening"] = clk_hard
    return schema_from_document(doc)


def _bits(b: bytes) -> np.ndarray:
    return np.unpackbits(np.frombuffer(b, dtype=np.uint8))


IDS = [{"id_number": f"5221991990030{i:05d}"} for i in range(40)] + [{"id_number": None}]


def test_permutation_preserves_popcount(judicial):
    plain = _schema_with({})
    perm = _schema_with({"permute": True})
    a = encode_records(frame(IDS, plain), plain, SECRET)["bf_id_number"].to_pylist()
    b = encode_records(frame(IDS, perm), perm, SECRET)["bf_id_number"].to_pylist()
    for x, y in zip(a[:-1], b[:-1], strict=True):
        assert x != y and _bits(x).sum() == _bits(y).sum()
    p = hashing.keyed_permutation(SECRET.derive("permute", perm.id, "id_number"), 512)
    assert sorted(p.tolist()) == list(range(512))
    assert all(np.array_equal(_bits(y), _bits(x)[p]) for x, y in zip(a[:-1], b[:-1], strict=True))


def test_balancing_gives_constant_weight():
    s = _schema_with({"balance": True, "permute": True})
    got = encode_records(frame(IDS, s), s, SECRET)["bf_id_number"].to_pylist()
    assert got[-1] is None
    for v in got[:-1]:
        assert len(v) * 8 == 1024 and _bits(v).sum() == 512  # exactly half of 2L


def test_xor_fold_halves_and_matches_manual_fold():
    plain = _schema_with({})
    folded = _schema_with({"xor_fold": 2})
    a = encode_records(frame(IDS, plain), plain, SECRET)["bf_id_number"].to_pylist()
    b = encode_records(frame(IDS, folded), folded, SECRET)["bf_id_number"].to_pylist()
    for x, y in zip(a[:-1], b[:-1], strict=True):
        bits = _bits(x)
        bits = bits[:256] ^ bits[256:]
        bits = bits[:128] ^ bits[128:]
        assert len(y) == 16 and np.array_equal(_bits(y), bits)


def test_blip_flip_rate_and_seeded_reproducibility():
    eps = 4.0
    plain = _schema_with({"permute": True})
    blip = _schema_with({"permute": True, "blip": {"epsilon": eps}})
    rows = IDS[:-1] * 25  # 1000 rows x 512 bits
    a = encode_records(frame(rows, plain), plain, SECRET)["bf_id_number"].to_pylist()
    b1 = encode_records(frame(rows, blip), blip, SECRET, rng=np.random.default_rng(7))
    b2 = encode_records(frame(rows, blip), blip, SECRET, rng=np.random.default_rng(7))
    assert b1.equals(b2)
    flips = sum(int((_bits(x) ^ _bits(y)).sum()) for x, y in
                zip(a, b1["bf_id_number"].to_pylist(), strict=True))
    p = blip_flip_probability(eps, blip_sensitivity(blip, "id_number"))
    assert blip_sensitivity(blip, "id_number") == 10
    n = len(rows) * 512
    assert abs(flips - n * p) < 5 * math.sqrt(n * p * (1 - p))
    b3 = encode_records(frame(rows, blip), blip, SECRET, rng=np.random.default_rng(8))
    assert not b3.equals(b1)


def test_blip_does_not_touch_null_rows_and_defaults_to_fresh_randomness():
    s = _schema_with({"blip": {"epsilon": 1.0}})
    t1 = encode_records(frame(IDS, s), s, SECRET)
    t2 = encode_records(frame(IDS, s), s, SECRET)
    assert t1["bf_id_number"][40].as_py() is None
    assert t1["bf_id_number"].to_pylist()[:40] != t2["bf_id_number"].to_pylist()[:40]


def test_blip_flip_probability_formula():
    assert blip_flip_probability(2.0, 1) == pytest.approx(1 / (1 + math.e ** 2))
    f = 2 * blip_flip_probability(3.0, 10)  # Schnell & Borgs' f
    assert 10 * math.log((1 - f / 2) / (f / 2)) == pytest.approx(3.0)
    assert blip_flip_probability(1.0, 10) > blip_flip_probability(5.0, 10)
    with pytest.raises(ValueError):
        blip_flip_probability(0, 10)
    s = _schema_with({"balance": True})
    assert blip_sensitivity(s, "id_number") == 20  # balancing doubles what one token moves
    assert blip_sensitivity(s) == 150  # CLK: address's bits_per_feature


def test_bits_per_feature_spreads_bits():
    s = _schema_with({}, bits_per_feature=120)
    doc_bpf = copy.deepcopy(s.document)
    assert "bits_per_token" not in doc_bpf["fields"][2]["filter"]
    for value, T in (("5", 2), ("52", 3), ("522199199003071234", 19)):
        got = encode_records(frame([{"id_number": value}], s), s, SECRET)["bf_id_number"][0].as_py()
        k = math.ceil(120 / T)
        key = SECRET.derive("bloom", s.id, "id_number")
        toks = reference.tokenise(value, "digit_ngrams", 2, True)
        assert len(toks) == T
        expect = set()
        for t in toks:
            expect |= {w % 512 for w in reference.words(key, t.encode(), k, 512)}
        assert set(np.flatnonzero(_bits(got)).tolist()) == expect
        assert 120 <= T * k < 120 + T


def test_exact_hash_and_blocking_key_by_hand(judicial, table):
    def h(key: bytes, msg: str) -> int:  # the first 8 bytes of AES-256-CMAC, by cryptography's own CMAC
        c = CMAC(algorithms.AES(key))
        c.update(msg.encode())
        return int.from_bytes(c.finalize()[:8], "big", signed=True)

    row = table.to_pylist()[0]
    assert row["eh_id_number"] == h(SECRET.derive("exact", judicial.id, "id_number"),
                                    "522199199003071234")
    assert row["bk_dob_sex"] == h(SECRET.derive("blocking", judicial.id, "dob_sex"),
                                  "1990-03-07\x1fM")
    assert row["bk_pinyin_year"] == h(SECRET.derive("blocking", judicial.id, "pinyin_year"),
                                      "zhang san\x1f1990")
    # keys of one and of three fields (two-field keys are hashed from segments, the others joined)
    doc = judicial_doc()
    doc["blocking_keys"] = [{"name": "sex", "fields": ["sex"]},
                            {"name": "three", "fields": ["name_pinyin", "birth_year", "sex"]}]
    s = schema_from_document(doc)
    t = encode_records(frame(ROWS, s), s, SECRET).to_pylist()
    assert t[0]["bk_sex"] == h(SECRET.derive("blocking", s.id, "sex"), "M")
    assert t[0]["bk_three"] == h(SECRET.derive("blocking", s.id, "three"), "zhang san\x1f1990\x1fM")


def test_same_result_for_every_bit_setting_strategy_and_chunking(judicial, monkeypatch):
    doc = judicial_doc()
    doc["clk"]["hardening"] = {"permute": True, "salt": {"field": "birth_year", "on_missing": "null"}}
    s = schema_from_document(doc)
    rows = (ROWS * 30)[:100]
    def rng():
        return np.random.default_rng(3)  # the bank order

    base = encode_records(frame(rows, s), s, SECRET, rng())
    for force in ("bits", "units", "tokens"):
        monkeypatch.setattr(kernels, "FORCE_STRATEGY", force)
        assert encode_records(frame(rows, s), s, SECRET, rng()).equals(base), force
    monkeypatch.setattr(kernels, "FORCE_STRATEGY", None)
    monkeypatch.setattr(kernels.SaltedEntries, "DENSE_LIMIT", 0)
    monkeypatch.setattr(enc, "CHUNK_ROWS", 7)
    assert encode_records(frame(rows, s), s, SECRET, rng()).equals(base)


def test_tokenisers_follow_the_spec():
    vals = ["张三", "110", "a", "zhang san", "abcd"]
    for n in (1, 2, 3):
        for padded in (True, False):
            for positional, kind in ((False, "char_ngrams"), (True, "digit_ngrams")):
                for fast in (True, False):
                    t = tokens.ngram_table(vals, n, padded=padded, positional=positional,
                                           short_whole=True, fast=fast)
                    for i, v in enumerate(vals):
                        got = [t.strings[j] for j in t.tok[t.ptr[i]:t.ptr[i + 1]]]
                        assert got == reference.tokenise(v, kind, n, padded)
    t = tokens.ngram_table(["110"], 2, padded=True, positional=True, short_whole=True)
    assert t.strings == ["1  1", "2 11", "3 10", "4 0 "]


def test_empty_frame(judicial):
    t = encode_records(frame([], judicial), judicial, SECRET)
    assert t.num_rows == 0 and t.schema == encoded_arrow_schema(judicial)


def test_errors_name_columns_never_values(judicial):
    df = frame(ROWS, judicial).drop(columns=["phone"])
    with pytest.raises(SchemaMismatchError, match="phone"):
        encode_records(df, judicial, SECRET)
    df = frame(ROWS, judicial)
    df.loc[0, "id_number"] = 522199199003071234
    with pytest.raises(TypeError) as e:
        encode_records(df, judicial, SECRET)
    assert "522199" not in str(e.value) and "id_number" in str(e.value)
    with pytest.raises(TypeError):
        encode_records(frame(ROWS, judicial), judicial, bytes(32))


def test_salt_bank_holds_the_filter_under_every_year_in_a_fresh_order(judicial):
    """Section 7: the slots are the field filter with the salt set to each bank year; their order
    is random per row and run (so it tells the hub nothing), the set of slots is not."""
    spec = judicial.field("name")
    years = spec.filter.hardening.salt.bank
    width = spec.filter.output_length // 8
    rows = [dict(ROWS[1]), dict(ROWS[1], name="王五", name_pinyin="wang wu")]
    t1 = encode_records(frame(rows, judicial), judicial, SECRET, np.random.default_rng(1))
    t2 = encode_records(frame(rows, judicial), judicial, SECRET, np.random.default_rng(2))
    for r in range(2):
        b1, b2 = t1["sb_name"][r].as_py(), t2["sb_name"][r].as_py()
        slots1 = [b1[i * width:(i + 1) * width] for i in range(len(years))]
        slots2 = [b2[i * width:(i + 1) * width] for i in range(len(years))]
        assert b1 != b2 and sorted(slots1) == sorted(slots2)  # same slots, another order
        each_year = frame([dict(rows[r], birth_year=y) for y in years], judicial)
        assert sorted(slots1) == sorted(encode_records(each_year, judicial, SECRET)["bf_name"].to_pylist())
        assert len(set(slots1)) == len(years)


def test_validity_flag_says_whether_the_id_number_passes_its_check(judicial):
    # synthetic numbers: 52219919900307123 + its check character, and the same with a typo
    good = "52219919900307123" + "7"
    typo = good[:11] + "4" + good[12:]  # month 04 instead of 03: a real date, check character now wrong
    rows = [dict(ROWS[0], id_number=good), dict(ROWS[0], id_number=typo), dict(ROWS[1]),
            dict(ROWS[0], id_number="522199199013071234")]  # month 13: no date
    got = encode_records(frame(rows, judicial), judicial, SECRET).column("ok_id_number").to_pylist()
    assert got == [True, False, None, False]
    for rec, flag in zip(rows, got, strict=True):
        assert reference.encode_record(rec, judicial_doc(), SECRET.value)["ok_id_number"] == flag


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def _with_check(first17: str) -> str:
    return first17 + "10X98765432"[sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def _passes(ids: list[str]) -> np.ndarray:
    from linkage import idnumber

    return pd.isna(idnumber.id_problems(np.asarray(ids, dtype=object)))


def _typo_keys(schema, ids: list[str | None]) -> list[list[int | None]]:
    t = encode_records(frame([{"id_number": v} for v in ids], schema), schema, SECRET)
    cols = schema.field("id_number").typo_key_columns
    return [list(r) for r in zip(*(t[c].to_pylist() for c in cols), strict=True)]


def test_typo_keys_of_a_mistyped_id_are_the_exact_hashes_of_its_corrections(judicial):
    valid = _with_check("52219919900307123")
    assert _passes([valid]).all()
    digit = valid[:9] + str((int(valid[9]) + 4) % 10) + valid[10:]  # position 10 changed
    swapped = valid[:6] + valid[7] + valid[6] + valid[8:]  # positions 7 and 8 swapped
    check = valid[:17] + ("0" if valid[17] != "0" else "1")  # the check character mistyped
    two = digit[:3] + str((int(digit[3]) + 1) % 10) + digit[4:]  # two substitutions
    ids = [valid, digit, swapped, check, two, None, valid[:17]]
    t = encode_records(frame([{"id_number": v} for v in ids], judicial), judicial, SECRET)
    eh = t["eh_id_number"].to_pylist()
    keys = _typo_keys(judicial, ids)
    assert keys[0] == [None] * 35  # a number that passes sends no typo key
    assert keys[1][9] == eh[0] and keys[1].count(eh[0]) == 1  # the substitution at position 10 undone
    assert keys[2][18 + 6] == eh[0] and keys[2].count(eh[0]) == 1  # the swap of positions 7-8 undone
    assert keys[3][17] == eh[0]  # the right check character
    assert eh[0] not in keys[4]  # two typos: not one typo apart
    assert keys[5] == [None] * 35 and keys[6] == [None] * 35  # missing; 17 characters
    # every key is a number one typo from the mistyped one whose check character is right
    from linkage.idnumber import check_digit

    fixes = typo_corrections(digit)
    assert [f is not None for f in fixes] == [k is not None for k in keys[1]]
    assert all(f[17] == check_digit(f[:17]) and sum(a != b for a, b in zip(f, digit)) in (1, 2) for f in fixes if f)
    assert encode_records(frame([{"id_number": digit}], judicial), judicial, OTHER)["vk_id_number_9"][0].as_py() \
        != keys[1][9]  # keyed


def test_failing_check_found_alike_for_odd_characters():
    """The vectorised MOD 11-2 test behind the typo keys agrees with the rule written out, for
    values that are no 17 ASCII digits (full-width and Han characters, the highest code point)."""
    from linkage.idnumber import CHECK_CHARS, check_digit, check_fails

    valid = _with_check("52219919900307123")
    bad = valid[:17] + ("0" if valid[17] != "0" else "1")
    cases = [valid, bad, bad[:17] + "x", "\uff11" + bad[1:], "\U0010ffff" * 17 + bad[17], "\u6d4b" + bad[1:],
             bad[:17], bad + "1", "", bad[:16] + "a" + bad[17], "X" * 18]
    expect = [len(v) == 18 and v[:17].isascii() and v[:17].isdigit() and v[17] in CHECK_CHARS
              and check_digit(v[:17]) != v[17] for v in cases]
    assert expect[:2] == [False, True]
    assert check_fails(cases).tolist() == expect


def test_two_ids_that_pass_the_check_never_meet_through_typo_keys(judicial):
    rng = np.random.default_rng(5)
    ids = [_with_check("522199" + f"{1950 + int(rng.integers(60))}0{1 + int(rng.integers(9))}1"
                       f"{int(rng.integers(10))}{int(rng.integers(1000)):03d}") for _ in range(30)]
    assert _passes(ids).all()
    # every one-substitution / adjacent-transposition neighbour of each ID
    neighbours = set()
    for v in ids:
        for i in range(18):
            for c in "0123456789X":
                if c != v[i]:
                    neighbours.add(v[:i] + c + v[i + 1:])
        for i in range(17):
            neighbours.add(v[:i] + v[i + 1] + v[i] + v[i + 2:])
    neighbours -= set(ids)
    assert not _passes(sorted(neighbours)).any()  # MOD 11-2: any such typo breaks the check
    assert _typo_keys(judicial, ids) == [[None] * 35] * len(ids)  # valid numbers send no key at all
    # and every well-formed one-typo variant of a number lists that number among its corrections
    for v in ids[:3]:
        variants = {v[:i] + c + v[i + 1:] for i in range(17) for c in "0123456789" if c != v[i]}
        variants |= {v[:17] + c for c in "0123456789X" if c != v[17]}
        variants |= {v[:i] + v[i + 1] + v[i] + v[i + 2:] for i in range(16) if v[i] != v[i + 1]}
        assert len(variants) >= 17 * 9 and all(v in typo_corrections(w) for w in variants)
