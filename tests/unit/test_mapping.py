"""agency_kit.mapping: the mapping document, per-chunk mapping, derived attributes."""

import copy
import datetime as dt
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from agency_kit.mapping import (
    age_band_from_id,
    age_from_id,
    apply_mapping,
    birth_dates_from_id,
    female_from_id,
    finish_attributes,
    load_mapping,
    mapping_from_document,
    minor_from_id,
    row_key_text,
)
from agency_kit.readers import NUMERIC_CELLS_ATTR, Chunk
from linkage.errors import ConfigError, SchemaMismatchError
from linkage.schema import load_schema, schema_from_document

DOC = Path(__file__).resolve().parents[2] / "docs" / "formats" / "mapping.md"
REF = dt.date(2024, 6, 30)


def with_check(first17: str) -> str:
    w = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return first17 + "10X98765432"[sum(int(c) * k for c, k in zip(first17, w, strict=True)) % 11]


F_ADULT = with_check("11010119900307002")  # born 1990-03-07, 17th digit 2 -> female
M_MINOR = with_check("11010120100630001")  # born 2010-06-30, male, 14 on REF
M_TURNS18 = with_check("11010120060701003")  # 18 on 2024-07-01: still a minor on REF
F_SENIOR = with_check("11010119640630004")  # 60 exactly on REF
BAD_CHECK = F_ADULT[:-1] + ("0" if F_ADULT[-1] != "0" else "1")


@pytest.fixture(scope="module")
def schema():
    return load_schema("judicial-assistance")


def victims_doc():
    return {
        "version": 1, "agency": "county-procuratorate", "dataset": "procuratorate_victims",
        "dataset_kind": "procuratorate_victims",
        "source": {"file_type": "csv", "encoding": "utf-8-sig", "sheet": None},
        "row_key": ["案件编号", "身份证号"],
        "fields": {"name": "姓名", "id_number": "身份证号", "sex": "性别", "phone": "联系电话", "address": "住址"},
        "attributes": {
            "compensated": {"column": "是否获得赔偿", "map": {"是": True, "否": False}},
            "injury": {"column": "伤情", "map": {"轻伤": "minor", "重伤": "serious", "伤残": "disability",
                                               "死亡": "death", "无": "none"}},
            "major_property_loss": {"column": "财产损失(元)", "threshold": 10000},
            "female": {"derive": "female_from_id"},
            "age_band": {"derive": "age_band_from_id"},
        },
    }


# -- loading ----------------------------------------------------------------------------------------


def test_example_loads_from_file(tmp_path, schema):
    p = tmp_path / "victims.mapping.json"
    p.write_text(json.dumps(victims_doc(), ensure_ascii=False), "utf-8")
    m = load_mapping(p, schema)
    assert m.dataset_kind == "procuratorate_victims" and m.agency == "county-procuratorate"
    assert m.encoding == "utf-8-sig" and m.file_type == "csv" and m.sheet is None
    assert m.source_columns == ("姓名", "身份证号", "性别", "联系电话", "住址", "是否获得赔偿", "伤情",
                                "财产损失(元)", "案件编号")
    assert list(m.attributes) == ["compensated", "injury", "major_property_loss", "female", "age_band"]
    assert m.attributes["age_band"].how == "derive" and m.attributes["age_band"].from_fields
    assert m.id_fields == ("id_number",)


def test_source_is_optional(schema):
    doc = victims_doc()
    del doc["source"]
    m = mapping_from_document(doc, schema)
    assert m.file_type is None and m.encoding is None


def test_json_schema_problems_all_reported_with_paths(schema):
    doc = victims_doc()
    doc["version"] = 2
    doc["agency"] = "County Procuratorate"
    doc["fields"]["Name"] = "姓名"
    doc["attributes"]["compensated"]["derive"] = "female_from_id"  # column and derive
    doc["attributes"]["injury"]["threshold"] = 3  # map and threshold
    doc["source"]["colour"] = "blue"
    del doc["row_key"]
    with pytest.raises(ConfigError) as ei:
        mapping_from_document(doc, schema, "victims.mapping.json")
    paths = [p.path for p in ei.value.problems]
    assert "$.version" in paths
    assert "$.agency" in paths
    assert "$.fields" in paths  # property name not allowed
    assert "$.attributes.compensated" in paths
    assert "$.attributes.injury" in paths
    assert "$.source" in paths
    assert "$" in paths  # row_key missing
    assert ei.value.exit_code == 3
    assert "victims.mapping.json" in str(ei.value)


def test_forbidden_attributes_refused_all_named(schema):
    doc = victims_doc()
    doc["dataset_kind"] = "civil_affairs_dibao"  # may send no attributes
    with pytest.raises(SchemaMismatchError) as ei:
        mapping_from_document(doc, schema, "dibao.mapping.json")
    paths = {p.path for p in ei.value.problems}
    assert paths == {f"$.attributes.{a}" for a in victims_doc()["attributes"]}
    assert "minimisation" in str(ei.value)
    assert ei.value.exit_code == 13


def test_meaning_problems_all_reported(schema):
    doc = victims_doc()
    doc["fields"]["nickname"] = "绰号"
    doc["attributes"]["injury"]["map"]["轻微伤"] = "slight"
    doc["attributes"]["compensated"]["map"]["不详"] = "unknown"
    doc["attributes"]["already_assisted"] = {"column": "已救助", "threshold": 1}  # fine: boolean
    doc["attributes"]["age_band"] = {"column": "年龄", "threshold": 60}  # a string attribute
    doc["attributes"]["female"] = {"derive": "age_band_from_id"}  # gives a string, female is boolean
    doc["attributes"]["home_value"] = {"column": "房产"}
    with pytest.raises(SchemaMismatchError) as ei:
        mapping_from_document(doc, schema, "v.json")
    paths = {p.path for p in ei.value.problems}
    assert paths == {"$.fields.nickname", "$.attributes.injury.map.轻微伤", "$.attributes.compensated.map.不详",
                     "$.attributes.age_band.threshold", "$.attributes.female.derive",
                     "$.attributes.home_value"}
    assert str(ei.value).startswith("v.json: 6 problems against linkage schema judicial-assistance-v1")


def test_unknown_dataset_kind(schema):
    doc = victims_doc()
    doc["dataset_kind"] = "tax_records"
    with pytest.raises(SchemaMismatchError) as ei:
        mapping_from_document(doc, schema)
    assert [p.path for p in ei.value.problems] == ["$.dataset_kind"]


def test_derive_needs_its_inputs(schema):
    doc = victims_doc()
    del doc["fields"]["id_number"]
    del doc["fields"]["sex"]
    with pytest.raises(SchemaMismatchError) as ei:
        mapping_from_document(doc, schema)
    assert {p.path for p in ei.value.problems} == {"$.attributes.female.derive", "$.attributes.age_band.derive"}


def test_map_keys_equal_once_trimmed(schema):
    doc = victims_doc()
    doc["attributes"]["compensated"]["map"] = {"是": True, " 是": True, "否": False}
    with pytest.raises(ConfigError) as ei:
        mapping_from_document(doc, schema)
    assert [p.path for p in ei.value.problems] == ["$.attributes.compensated.map. 是"]


def test_constant_and_months_between(schema):
    doc = {"version": 1, "agency": "county-court", "dataset": "court", "dataset_kind": "court_enforcement",
           "row_key": ["执行案号"], "fields": {"name": "申请执行人", "id_number": "身份证号"},
           "attributes": {"applicant": {"constant": True},
                          "months_to_close": {"derive": "months_between", "columns": ["立案日期", "结案日期"]}}}
    m = mapping_from_document(doc, schema)
    assert m.source_columns == ("申请执行人", "身份证号", "立案日期", "结案日期", "执行案号")
    frame = pd.DataFrame({"申请执行人": ["甲"] * 6, "身份证号": [None] * 6, "执行案号": list("abcdef"),
                          "立案日期": ["2021/3/4", "2020-01-31", "不详", "2024-01-01", None, "1970-01-01"],
                          "结案日期": ["2023/3/3", "2020-02-29", "2020-01-01", "2023-01-01", "2024-01-01",
                                   "2024-01-01"]})
    _, raw, problems = apply_mapping(frame, m)
    assert raw["applicant"].tolist() == [True] * 6
    assert raw["months_to_close"].tolist() == [23, 0, None, None, None, None]
    assert problems.values.tolist() == [[2, "立案日期", "attribute.invalid_value"],
                                        [3, "结案日期", "attribute.out_of_range"],
                                        [5, "结案日期", "attribute.out_of_range"]]  # 648 > maximum 600
    out = finish_attributes(raw, None, m, schema, REF)
    assert str(out["attr_months_to_close"].dtype) == "Int64"
    bad = copy.deepcopy(doc)
    bad["attributes"]["months_to_close"] = {"derive": "months_between"}
    with pytest.raises(ConfigError):
        mapping_from_document(bad, schema)
    bad["attributes"] = {"applicant": {"constant": "yes"}}
    with pytest.raises(SchemaMismatchError):
        mapping_from_document(bad, schema)


def test_docs_examples_load(schema):
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text("utf-8"), re.S)
    assert len(blocks) >= 2
    for b in blocks:
        mapping_from_document(json.loads(b), schema, "docs/formats/mapping.md")


def test_docs_example_csv_reads_with_its_mapping(tmp_path, schema):
    from agency_kit.readers import iter_chunks, sniff

    text = DOC.read_text("utf-8")
    csv_text = re.search(r"```text\n(户编号.*?)```", text, re.S).group(1).replace("\n", "\r\n")
    p = tmp_path / "dibao-2024-06.csv"
    p.write_bytes(csv_text.encode("gb18030"))
    m = mapping_from_document(json.loads(re.findall(r"```json\n(.*?)```", text, re.S)[0]), schema)
    assert sniff(p).encoding == "gb18030"
    chunk = next(iter_chunks(p, columns_needed=m.source_columns, encoding=m.encoding))
    fields, raw, problems = apply_mapping(chunk, m)
    assert list(fields.columns) == ["name", "id_number", "sex", "phone", "address"]
    assert fields["id_number"].tolist() == ["11010119900307001X", "110101199205060026"]
    assert raw.shape == (2, 0) and problems.empty
    assert len(row_key_text(chunk, m)[0].split("\x1f")) == 2


# -- apply_mapping ----------------------------------------------------------------------------------


def victims_frame(n_extra=0):
    return pd.DataFrame({
        "姓名": ["测试甲乙", "样例丙", None, "样例丁"],
        "身份证号": [F_ADULT, M_MINOR, None, "12345"],
        "性别": ["女", "男", None, "男"],
        "联系电话": ["13900000001", None, None, None],
        "住址": ["某某县示例路1号", None, None, None],
        "是否获得赔偿": ["是", " 否 ", None, "不详"],
        "伤情": ["轻伤", "重伤", None, "擦伤"],
        "财产损失(元)": ["12,000", "１２０００", None, "很多"],
        "案件编号": ["A1", "A2", None, "A4"],
    })


def test_apply_mapping_fields_attributes_problems(schema):
    m = mapping_from_document(victims_doc(), schema)
    fields, raw, problems = apply_mapping(victims_frame(), m)
    assert list(fields.columns) == ["name", "id_number", "sex", "phone", "address"]
    assert fields["name"].tolist() == ["测试甲乙", "样例丙", None, "样例丁"]
    assert list(raw.columns) == ["compensated", "injury", "major_property_loss"]
    assert raw["compensated"].tolist() == [True, False, None, None]
    assert raw["injury"].tolist() == ["minor", "serious", None, None]
    assert raw["major_property_loss"].tolist() == [True, True, None, None]
    assert problems.to_dict("records") == [
        {"row": 3, "column": "伤情", "rule": "attribute.unmapped_value"},
        {"row": 3, "column": "是否获得赔偿", "rule": "attribute.unmapped_value"},
        {"row": 3, "column": "财产损失(元)", "rule": "attribute.not_a_number"},
    ]
    assert problems["row"].dtype == np.int64
    for rule_text in problems["rule"]:
        assert "不详" not in rule_text


def test_threshold_numbers(schema):
    m = mapping_from_document(victims_doc(), schema)
    f = victims_frame()
    f["财产损失(元)"] = ["9999.99", "1.2万", "10000元", "-5"]
    _, raw, problems = apply_mapping(f, m)
    assert raw["major_property_loss"].tolist() == [False, True, True, False]
    assert not (problems["column"] == "财产损失(元)").any()


def test_cast_forms(schema):
    doc = {"version": 1, "agency": "dpf", "dataset": "dpf", "dataset_kind": "disability_certificates",
           "row_key": ["证号"], "fields": {"name": "姓名"},
           "attributes": {"disability_grade": {"column": "等级"}, "disability_category": {"column": "类别"}}}
    m = mapping_from_document(doc, schema)
    f = pd.DataFrame({"姓名": ["甲"] * 5, "证号": list("abcde"), "等级": ["1", "４", "5", "二", None],
                      "类别": ["Physical", "visual ", "其他", None, "mental"]})
    _, raw, problems = apply_mapping(f, m)
    assert raw["disability_grade"].tolist() == [1, 4, None, None, None]
    assert raw["disability_category"].tolist() == ["physical", "visual", None, None, "mental"]
    assert sorted(map(tuple, problems.values.tolist())) == [
        (2, "等级", "attribute.out_of_range"), (2, "类别", "attribute.invalid_value"),
        (3, "等级", "attribute.invalid_value")]
    out = finish_attributes(raw, None, m, schema, REF)
    assert str(out["attr_disability_grade"].dtype) == "Int64"
    assert str(out["attr_disability_category"].dtype).startswith("string")


def test_boolean_cast_words(schema):
    doc = {"version": 1, "agency": "w", "dataset": "w", "dataset_kind": "wage_claimants",
           "row_key": ["编号"], "fields": {"name": "姓名"}, "attributes": {"wages_recovered": {"column": "追回"}}}
    m = mapping_from_document(doc, schema)
    words = ["是", "否", "1", "0", "TRUE", "false", "Yes", "n", "有"]
    f = pd.DataFrame({"姓名": ["甲"] * len(words), "编号": list(range(len(words))), "追回": words})
    _, raw, problems = apply_mapping(f, m)
    assert raw["wages_recovered"].tolist() == [True, False, True, False, True, False, True, False, None]
    assert problems.values.tolist() == [[8, "追回", "attribute.invalid_value"]]


def test_numeric_id_cells_are_dropped_and_flagged(schema):
    m = mapping_from_document(victims_doc(), schema)
    f = victims_frame()
    f.attrs[NUMERIC_CELLS_ATTR] = {"身份证号": np.array([1]), "联系电话": np.array([0])}
    fields, _, problems = apply_mapping(f, m)
    assert fields["id_number"].tolist() == [F_ADULT, None, None, "12345"]
    assert fields["phone"].tolist()[0] == "13900000001"  # phones fit in a double: kept
    assert [1, "身份证号", "cell.numeric_id"] in problems.values.tolist()
    chunk = Chunk(victims_frame(), 2, np.zeros(0, np.int64), {"身份证号": np.array([0, 3])})
    fields, _, problems = apply_mapping(chunk, m)
    assert fields["id_number"].tolist() == [None, M_MINOR, None, None]
    assert (problems["rule"] == "cell.numeric_id").sum() == 2


def test_finish_attributes_types_and_derivations(schema):
    m = mapping_from_document(victims_doc(), schema)
    f = victims_frame()
    fields, raw, _ = apply_mapping(f, m)
    normalised = pd.DataFrame({"id_number": fields["id_number"], "sex": ["F", "M", None, "M"],
                               "birth_date": [None, None, None, "1950-01-01"]})
    out = finish_attributes(raw, normalised, m, schema, REF)
    assert list(out.columns) == ["attr_compensated", "attr_injury", "attr_major_property_loss", "attr_female",
                                 "attr_age_band"]
    assert str(out["attr_compensated"].dtype) == "boolean"
    assert str(out["attr_injury"].dtype).startswith("string")
    assert out["attr_female"].tolist() == [True, False, pd.NA, False]
    assert out["attr_age_band"].tolist() == ["adult", "minor", pd.NA, "senior"]
    for name in out.columns:
        pa.Array.from_pandas(out[name])  # what the encoder does
    # rows dropped before finishing (as the encoder does for rejected rows)
    keep = [0, 3]
    out2 = finish_attributes(raw.iloc[keep].reset_index(drop=True),
                             normalised.iloc[keep].reset_index(drop=True), m, schema, REF)
    assert out2["attr_age_band"].tolist() == ["adult", "senior"]


def test_date_attribute_is_date32(schema):
    doc = copy.deepcopy(schema.document)
    doc["datasets"]["wage_claimants"]["attributes"]["filed_on"] = {"type": "date"}
    s2 = schema_from_document(doc, "custom")
    m = mapping_from_document({"version": 1, "agency": "w", "dataset": "w", "dataset_kind": "wage_claimants",
                               "row_key": ["编号"], "fields": {"name": "姓名"},
                               "attributes": {"filed_on": {"column": "受理日期"}}}, s2)
    f = pd.DataFrame({"姓名": ["甲"] * 4, "编号": list("abcd"),
                      "受理日期": ["2024-06-30", "2024年6月1日", "2024-02-30", None]})
    _, raw, problems = apply_mapping(f, m)
    out = finish_attributes(raw, None, m, s2, REF)
    arr = pa.Array.from_pandas(out["attr_filed_on"])
    assert arr.type == pa.date32()
    assert arr.to_pylist() == [dt.date(2024, 6, 30), dt.date(2024, 6, 1), None, None]
    assert problems.values.tolist() == [[2, "受理日期", "attribute.invalid_value"]]


def test_finish_attributes_refuses_another_schema(schema):
    m = mapping_from_document(victims_doc(), schema)
    other = load_schema("febrl")
    with pytest.raises(SchemaMismatchError):
        finish_attributes(pd.DataFrame(), None, m, other, REF)


def test_row_key_text_is_normalised(schema):
    m = mapping_from_document(victims_doc(), schema)
    a = pd.DataFrame({c: ["x"] for c in m.source_columns})
    b = a.copy()
    a["案件编号"], a["身份证号"] = ["Ａ１ "], [F_ADULT]
    b["案件编号"], b["身份证号"] = ["A1"], [F_ADULT]
    assert row_key_text(a, m) == row_key_text(b, m) == [f"A1\x1f{F_ADULT}"]


# -- derivation functions ---------------------------------------------------------------------------


def test_derivations_from_valid_ids():
    ids = [F_ADULT, M_MINOR, M_TURNS18, F_SENIOR, BAD_CHECK, None, "abc", F_ADULT.lower()]
    assert female_from_id(ids).tolist() == [True, False, False, True, pd.NA, pd.NA, pd.NA, True]
    assert age_from_id(ids, REF).tolist() == [34, 14, 17, 60, pd.NA, pd.NA, pd.NA, 34]
    assert age_band_from_id(ids, REF).tolist() == ["adult", "minor", "minor", "senior", pd.NA, pd.NA, pd.NA,
                                                   "adult"]
    assert minor_from_id(ids, REF).tolist() == [False, True, True, False, pd.NA, pd.NA, pd.NA, False]
    assert minor_from_id([M_TURNS18], dt.date(2024, 7, 1)).tolist() == [False]
    b = birth_dates_from_id(ids)
    assert b.iloc[0] == pd.Timestamp("1990-03-07") and pd.isna(b.iloc[4])


def test_derivations_fall_back_to_fields():
    ids = [BAD_CHECK, None, None, None]
    assert female_from_id(ids, ["F", "M", "女", "?"]).tolist() == [True, False, True, pd.NA]
    births = ["2000-07-01", "20100101", "2024-07-01", "1990/1/1"]
    assert age_from_id(ids, REF, births).tolist() == [23, 14, pd.NA, 34]  # born after REF: unknown


def test_fifteen_digit_id():
    old = "110101900307002"  # 15 digits: born 1990-03-07, last digit even -> female
    assert age_from_id([old], REF).tolist() == [34]
    assert female_from_id([old]).tolist() == [True]


def test_reference_date_required():
    with pytest.raises(TypeError):
        age_from_id([F_ADULT], "2024-06-30")
