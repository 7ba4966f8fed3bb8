"""Properties of the native encoder (hypothesis): it agrees with the independent
reference implementation on random schemas and records, is deterministic under
one key and different under another, and keeps fixed filter lengths."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linkage._bits import hardening, hashing, tokens
from linkage.encode import encode_records
from linkage.keys import LinkageSecret
from linkage.schema import schema_from_document

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vectors" / "native"))
import reference

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ALPHABET = "ab 1209X张三李·"
values = st.one_of(st.none(), st.just(""), st.text(ALPHABET, min_size=1, max_size=7))
secrets_ = st.binary(min_size=32, max_size=32)


@st.composite
def hardenings(draw, length: int, salt: bool):
    h = {}
    if draw(st.booleans()):
        h["permute"] = True
    if draw(st.booleans()):
        h["balance"] = True
    out = length * (2 if h.get("balance") else 1)
    max_fold = 0
    while max_fold < 2 and (out >> (max_fold + 1)) >= 64:
        max_fold += 1
    folds = draw(st.integers(0, max_fold))
    if folds:
        h["xor_fold"] = folds
    if salt and draw(st.booleans()):
        h["salt"] = {"field": "s", "on_missing": draw(st.sampled_from(["null", "unsalted"]))}
    return h


@st.composite
def weights(draw):
    if draw(st.booleans()):
        return {"bits_per_token": draw(st.integers(1, 20))}
    return {"bits_per_feature": draw(st.integers(1, 120))}


@st.composite
def schemas(draw):
    kind = draw(st.sampled_from(["char_ngrams", "digit_ngrams", "exact", "pinyin_ngrams"]))
    tok = {"kind": kind}
    if kind != "exact":
        tok.update(n=draw(st.integers(1, 3)), padded=draw(st.booleans()))
    length = draw(st.sampled_from([64, 128, 256]))
    clk_len = draw(st.sampled_from([64, 128, 256]))
    a = {"name": "a", "normaliser": "pinyin" if kind == "pinyin_ngrams" else "text", "tokeniser": tok,
         "filter": {"length": length, **draw(weights()), "hardening": draw(hardenings(length, True))},
         "clk": draw(weights()), "exact_hash": draw(st.booleans())}
    s = {"name": "s", "normaliser": "year", "tokeniser": {"kind": "exact"}}
    if draw(st.booleans()):
        s["clk"] = draw(weights())
    return {"version": 1, "id": "prop-v1", "fields": [a, s],
            "clk": {"length": clk_len, "hardening": draw(hardenings(clk_len, True))},
            "blocking_keys": [{"name": "as", "fields": ["a", "s"]}]}


def _frame(recs):
    return pd.DataFrame(recs, columns=["a", "s"], dtype=object)


@SETTINGS
@given(doc=schemas(), recs=st.lists(st.fixed_dictionaries({"a": values, "s": values}),
                                    min_size=1, max_size=6), secret=secrets_)
def test_agrees_with_reference(doc, recs, secret):
    schema = schema_from_document(doc)
    got = encode_records(_frame(recs), schema, LinkageSecret(secret)).to_pylist()
    for rec, row in zip(recs, got, strict=True):
        assert row == reference.encode_record(rec, doc, secret)
        bf = row["bf_a"]
        assert bf is None or len(bf) * 8 == schema.field("a").filter.output_length
        assert len(row["clk"]) * 8 == schema.clk_output_length


@SETTINGS
@given(recs=st.lists(st.text(ALPHABET, min_size=1, max_size=7), min_size=1, max_size=8),
       s1=secrets_, s2=secrets_)
def test_deterministic_under_a_key_different_under_another(recs, s1, s2):
    doc = {"version": 1, "id": "prop-v1",
           "fields": [{"name": "a", "normaliser": "text", "tokeniser": {"kind": "char_ngrams"},
                       "filter": {"length": 512, "bits_per_token": 20, "hardening": {"permute": True}},
                       "clk": {"bits_per_token": 20}, "exact_hash": True}],
           "clk": {"length": 512}}
    schema = schema_from_document(doc)
    df = pd.DataFrame({"a": recs}, dtype=object)
    t1 = encode_records(df, schema, LinkageSecret(s1))
    assert encode_records(df, schema, LinkageSecret(s1)).equals(t1)
    if s1 != s2:
        t2 = encode_records(df, schema, LinkageSecret(s2))
        for col in ("bf_a", "clk", "eh_a"):
            assert all(x != y for x, y in zip(t1[col].to_pylist(), t2[col].to_pylist(), strict=True))


@SETTINGS
@given(vals=st.lists(st.text(ALPHABET, min_size=0, max_size=9), min_size=0, max_size=12),
       n=st.integers(1, 4), padded=st.booleans(), positional=st.booleans(), short=st.booleans())
def test_tokeniser_fast_equals_plain_equals_spec(vals, n, padded, positional, short):
    fast = tokens.ngram_table(vals, n, padded=padded, positional=positional, short_whole=short)
    plain = tokens.ngram_table(vals, n, padded=padded, positional=positional, short_whole=short,
                               fast=False)
    kind = "digit_ngrams" if positional else "char_ngrams"
    for i, v in enumerate(vals):
        a = [fast.strings[j] for j in fast.tok[fast.ptr[i]:fast.ptr[i + 1]]]
        b = [plain.strings[j] for j in plain.tok[plain.ptr[i]:plain.ptr[i + 1]]]
        assert a == b
        if v and (short or (padded and n > 1) or len(v) >= n):
            assert a == reference.tokenise(v, kind, n, padded)
        elif not v:
            assert a == []
    assert len(set(fast.strings)) == len(fast.strings)


@settings(max_examples=25, deadline=None)
@given(key=st.binary(min_size=1, max_size=40), n=st.integers(1, 300))
def test_keyed_permutation_is_the_specified_permutation(key, n):
    p = hashing.keyed_permutation(key, n)
    assert p.tolist() == reference.permutation(key, n)
    inv = hashing.inverse_permutation(p)
    assert np.array_equal(p[inv], np.arange(n))


@settings(max_examples=40, deadline=None)
@given(data=st.data(), nbits=st.sampled_from([16, 40, 64, 128, 200, 1024]),
       rows=st.integers(0, 5))
def test_fold_matches_bitwise_xor(data, nbits, rows):
    folds = data.draw(st.integers(0, 3 if nbits % 8 == 0 else 1))
    if nbits % (2 ** folds):
        folds = 0
    bits = np.array(data.draw(st.lists(st.integers(0, 1), min_size=rows * nbits,
                                       max_size=rows * nbits)), dtype=np.uint8).reshape(rows, nbits)
    got, out_bits = hardening.fold(np.packbits(bits, axis=1), nbits, folds)
    for _ in range(folds):
        h = bits.shape[1] // 2
        bits = bits[:, :h] ^ bits[:, h:]
    assert out_bits == bits.shape[1]
    assert np.array_equal(got, np.packbits(bits, axis=1))


@settings(max_examples=30, deadline=None)
@given(msgs=st.lists(st.binary(max_size=20), min_size=1, max_size=10, unique=True),
       k=st.integers(1, 40), length=st.sampled_from([64, 192, 512, 8192]))
def test_token_positions_follow_the_stream(msgs, k, length):
    key = b"\x01" * 32
    ptr, pos = hashing.token_positions(key, msgs, np.full(len(msgs), k), length)
    for i, m in enumerate(msgs):
        assert pos[ptr[i]:ptr[i + 1]].tolist() == [w % length for w in reference.words(key, m, k, length)]
