import copy
import json
from importlib import resources

import pytest

from linkage.errors import ConfigError
from linkage.schema import compute_fingerprint, load_schema, schema_from_document


def builtin(name="judicial-assistance"):
    return json.loads(resources.files("schemas").joinpath(f"{name}.linkage.json").read_text("utf-8"))


@pytest.mark.parametrize("name", ["judicial-assistance", "febrl"])
def test_builtin_schemas_load(name):
    s = load_schema(name)
    assert s.version == 1
    assert len(s.fingerprint) == 64
    assert s.filter_fields


def test_all_problems_reported_at_once_with_json_paths():
    doc = builtin()
    doc["fields"][0]["filter"]["length"] = 100  # not a multiple of 64
    doc["fields"][2]["tokeniser"]["kind"] = "soundex"  # not allowed
    doc["clk"]["colour"] = "blue"  # unknown property
    del doc["id"]
    with pytest.raises(ConfigError) as ei:
        schema_from_document(doc, "x.json")
    paths = {p.path for p in ei.value.problems}
    assert "$.fields[0].filter.length" in paths
    assert "$.fields[2].tokeniser.kind" in paths
    assert "$.clk" in paths
    assert "$" in paths
    assert len(ei.value.problems) == 4
    assert ei.value.exit_code == 3


def test_meaning_checks():
    doc = builtin()
    doc["fields"][1]["derive"]["from"] = "nobody"
    doc["fields"][0]["filter"]["hardening"]["salt"]["field"] = "name"
    doc["blocking_keys"][0]["fields"].append("shoe_size")
    with pytest.raises(ConfigError) as ei:
        schema_from_document(doc)
    msgs = {str(p) for p in ei.value.problems}
    assert "$.fields[1].derive.from: names no field of this schema" in msgs
    assert "$.fields[0].filter.hardening.salt.field: a field cannot be salted with itself" in msgs
    assert any(p.path == "$.blocking_keys[0].fields[2]" for p in ei.value.problems)


def test_derive_chain_steps_are_checked_one_by_one():
    doc = builtin()
    year = next(i for i, f in enumerate(doc["fields"]) if f["name"] == "birth_year")
    assert isinstance(doc["fields"][year]["derive"], list)
    assert load_schema("judicial-assistance").field("birth_year").derive_chain == (
        ("birth_date", "year"), ("id_number", "salt_year"))
    doc["fields"][year]["derive"][1] = {"from": "phone", "via": "salt_year"}  # phone: after, wrong kind
    doc["fields"][year]["derive"].append({"from": "name", "via": "salt_year"})
    with pytest.raises(ConfigError) as ei:
        schema_from_document(doc)
    msgs = {str(p) for p in ei.value.problems}
    assert f"$.fields[{year}].derive[1].from: must name a field listed before this one" in msgs
    assert f"$.fields[{year}].derive[2].via: cannot derive from a field normalised as chinese_name" in msgs
    assert len(ei.value.problems) == 2


def test_fingerprint_ignores_descriptions_but_not_parameters():
    doc = builtin()
    base = compute_fingerprint(doc)
    d2 = copy.deepcopy(doc)
    d2["description"] = "another description"
    d2["fields"][0]["description"] = "changed"
    assert compute_fingerprint(d2) == base
    d3 = copy.deepcopy(doc)
    d3["fields"][0]["filter"]["bits_per_token"] += 1
    assert compute_fingerprint(d3) != base


def test_fingerprint_covers_component_versions(monkeypatch):
    doc = builtin()
    base = compute_fingerprint(doc)
    import linkage.schema as sch

    monkeypatch.setattr(sch, "component_versions", lambda: {"normaliser": "999"})
    assert compute_fingerprint(doc) != base
