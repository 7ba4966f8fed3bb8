"""clkhash v3 compatibility: known-answer vectors made with clkhash 0.18.3
(tools/make_clkhash_vectors.py; see tests/vectors/README.md), recomputed and
compared bit for bit; plus the loader's and encoder's error behaviour."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import pandas as pd
import pytest

from linkage.clkhash_compat import (
    derive_clkhash_keys,
    encode_clks,
    encode_clks_packed,
    load_clkhash_schema,
)
from linkage.errors import ConfigError, InputError

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "clkhash"
FILES = sorted(p.stem for p in VECTORS.glob("*.json"))


def load(name: str) -> dict:
    return json.loads((VECTORS / f"{name}.json").read_text("utf-8"))


def secret_of(v: dict) -> bytes | str:
    return bytes.fromhex(v["secret"]) if v["secret_encoding"] == "hex" else v["secret"]


def clks(v: dict, doc: dict | None = None) -> list[bytes]:
    return encode_clks(v["records"], load_clkhash_schema(doc or v["schema"]), secret_of(v))


def test_every_advertised_set_is_there():
    assert {"febrl_tutorial", "febrl_tutorial_400", "blake_bits_per_token", "double_hash",
            "singularity", "xor_folds", "odd_fold", "types", "unicode"} <= set(FILES)


@pytest.mark.parametrize("name", FILES)
def test_bit_identical_to_clkhash(name):
    v = load(name)
    assert v["made_with"]["clkhash"].startswith("0.18.")
    expected = [base64.b64decode(c) for c in v["clks"]]
    assert clks(v) == expected


@pytest.mark.parametrize(("name", "mutate"), [
    ("singularity", lambda d: d["features"][1]["hashing"]["hash"].update(prevent_singularity=False)),
    ("febrl_tutorial", lambda d: d["features"][1]["hashing"].update(hash={"type": "blakeHash"})),
    ("febrl_tutorial", lambda d: d["features"][3]["hashing"]["comparison"].update(positional=False)),
    ("febrl_tutorial", lambda d: d["features"][1]["hashing"].update(strategy={"bitsPerToken": 20})),
    ("types", lambda d: d["features"][1]["hashing"]["missingValue"].pop("replaceWith")),
    ("types", lambda d: d["features"][1]["format"].update(encoding="utf-8")),
    ("xor_folds", lambda d: d["clkConfig"]["kdf"].update(hash="SHA256")),
    ("double_hash", lambda d: d["features"][2]["hashing"].update(strategy={"bitsPerFeature": 91})),
    ("odd_fold", lambda d: d["clkConfig"].update(l=40, xor_folds=0)),
])
def test_vectors_exercise_the_feature(name, mutate):
    """Changing the feature a set is meant to exercise changes its CLKs."""
    v = load(name)
    doc = copy.deepcopy(v["schema"])
    mutate(doc)
    assert clks(v, doc) != [base64.b64decode(c) for c in v["clks"]]


def test_xor_folds_spelling_quirk_mirrored():
    v = load("xor_folds")
    s = load_clkhash_schema(v["schema"])
    assert s.xor_folds == 2 and s.ignored_xor_folds and s.hash_length == 1024
    assert all(len(base64.b64decode(c)) == 32 for c in v["clks"])
    doc = copy.deepcopy(v["schema"])
    doc["clkConfig"]["xorFolds"] = 0
    assert clks(v, doc) == [base64.b64decode(c) for c in v["clks"]]


def test_dataframe_input_and_packed_output_agree():
    v = load("febrl_tutorial")
    schema = load_clkhash_schema(v["schema"])
    idents = [f.identifier for f in schema.features]
    df = pd.DataFrame(v["records"], columns=idents).drop(columns=["rec_id", "soc_sec_id"])
    df.loc[df["state"] == "", "state"] = None  # None is an empty cell
    packed = encode_clks_packed(df, schema, secret_of(v))
    assert [bytes(r) for r in packed] == [base64.b64decode(c) for c in v["clks"]]


def test_str_secret_is_its_utf8_bytes():
    s = load_clkhash_schema(load("febrl_tutorial")["schema"])
    assert derive_clkhash_keys("sécret", s) == derive_clkhash_keys("sécret".encode(), s)
    assert len(derive_clkhash_keys("x", s)) == len(s.features)


def test_loader_collects_every_problem_with_paths():
    doc = copy.deepcopy(load("febrl_tutorial")["schema"])
    doc["version"] = 2
    doc["clkConfig"]["l"] = 1000  # blakeHash needs a power of two
    doc["features"][1]["hashing"]["strategy"] = {"bitsPerToken": 1, "bitsPerFeature": 2}
    doc["features"][2]["format"]["type"] = "float"
    doc["features"][4]["hashing"]["hash"] = {"type": "blakeHash", "prevent_singularity": True}
    with pytest.raises(ConfigError) as e:
        load_clkhash_schema(doc)
    paths = {p.path for p in e.value.problems}
    assert {"$.version", "$.clkConfig.l", "$.features[1].hashing.strategy",
            "$.features[2].format.type", "$.features[4].hashing.hash.prevent_singularity"} <= paths


def test_loader_reads_files(tmp_path):
    p = tmp_path / "s.json"
    p.write_text(json.dumps(load("types")["schema"]), encoding="utf-8")
    assert load_clkhash_schema(p).l == 512
    p.write_text("{", encoding="utf-8")
    with pytest.raises(ConfigError):
        load_clkhash_schema(p)


def test_invalid_entries_named_by_row_and_column_never_value():
    v = load("febrl_tutorial")
    schema = load_clkhash_schema(v["schema"])
    rows = copy.deepcopy(v["records"][:5])
    rows[3][7] = "xyzzy"  # postcode: not an integer
    with pytest.raises(InputError) as e:
        encode_clks(rows, schema, secret_of(v))
    msg = str(e.value)
    assert "row 3" in msg and "postcode" in msg and "xyzzy" not in msg
    rows[3][7] = "17"  # below the minimum of 50
    with pytest.raises(InputError, match="below minimum") as e:
        encode_clks(rows, schema, secret_of(v))
    assert "17" not in str(e.value).replace("row 3", "")
    rows[3][1] = "q" * 65  # longer than maxLength (row 3 again, given_name is checked too)
    with pytest.raises(InputError):
        encode_clks(rows, schema, secret_of(v))
    with pytest.raises(InputError, match="row 1 has 2 entries"):
        encode_clks([v["records"][0], ["a", "b"]], schema, secret_of(v))


def test_validate_false_still_formats_like_clkhash():
    v = load("febrl_tutorial")
    schema = load_clkhash_schema(v["schema"])
    rows = copy.deepcopy(v["records"][:3])
    rows[0][7] = "17"  # out of range but an integer: fine without validation
    encode_clks(rows, schema, secret_of(v), validate=False)
    rows[0][7] = "x"  # clkhash's IntegerSpec formatting fails even without validation
    with pytest.raises(InputError):
        encode_clks(rows, schema, secret_of(v), validate=False)
