"""Behaviour of each normaliser and of normalise_records.

All names, ID numbers, phones and addresses are made up (测试/样例 "test/sample"
names; ID check digits computed here).
"""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest

from linkage import normalise as N
from linkage.normalise import (
    NORMALISERS,
    PINYIN_TABLE_VERSION,
    RULES,
    NormalisedColumn,
    derive_column,
    normalise_column,
    normalise_records,
)
from linkage.schema import load_schema
from linkage.versions import component_versions


def _ref_check(first17: str) -> str:
    total = sum(int(c) * pow(2, 17 - i, 11) for i, c in enumerate(first17))
    r = (12 - total % 11) % 11
    return "X" if r == 10 else str(r)


def make_id(region: str = "330106", born: str = "19850317", seq: str = "421") -> str:
    return region + born + seq + _ref_check(region + born + seq)


def norm(normaliser: str, *values: object) -> list[object]:
    return normalise_column(normaliser, pd.Series(list(values), dtype=object)).values.tolist()


def flags(normaliser: str, *values: object) -> list[object]:
    return normalise_column(normaliser, pd.Series(list(values), dtype=object)).problems.tolist()


# --------------------------------------------------------------------- surface


def test_normaliser_names_match_the_linkage_schema_json_schema() -> None:
    assert NORMALISERS == ("chinese_name", "pinyin", "id_number", "date", "year", "sex", "phone",
                           "address", "region_code", "text", "digits")


def test_every_rule_is_described_and_namespaced() -> None:
    for rule, text in RULES.items():
        assert rule.split(".")[0] in {"id_number", "name", "pinyin", "date", "year", "sex", "phone",
                                      "region_code", "digits"}
        assert text and text[0].islower()


def test_pinyin_table_version_is_the_installed_pypinyin() -> None:
    import pypinyin

    assert PINYIN_TABLE_VERSION == pypinyin.__version__
    assert component_versions()["pinyin_table"] == f"pypinyin-{PINYIN_TABLE_VERSION}"


def test_unknown_normaliser_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown normaliser"):
        normalise_column("soundex", pd.Series(["x"]))


def test_plain_lists_and_typed_series_are_accepted() -> None:
    assert normalise_column("text", ["A", None]).values.tolist() == ["a", None]  # type: ignore[arg-type]
    typed = pd.Series(["A", None], dtype="string")
    assert normalise_column("text", typed).values.tolist() == ["a", None]


def test_index_is_kept() -> None:
    s = pd.Series(["男", "女"], index=["r7", "r9"])
    out = normalise_column("sex", s)
    assert list(out.values.index) == ["r7", "r9"]
    assert list(out.problems.index) == ["r7", "r9"]


# ----------------------------------------------------------- common cleaning


@pytest.mark.parametrize("missing", [None, np.nan, pd.NA, pd.NaT, "", "   ", "\u3000", "无", "空", "null",
                                     "NULL", "N/A", "-", "/", "——"])
@pytest.mark.parametrize("normaliser", NORMALISERS)
def test_null_markers_are_missing_and_not_flagged(normaliser: str, missing: object) -> None:
    out = normalise_column(normaliser, pd.Series([missing], dtype=object))
    assert out.values.tolist() == [None]
    assert out.problems.tolist() == [None]


def test_text_folds_width_case_and_whitespace() -> None:
    assert norm("text", "  ＳＭＩＴＨ\u3000 Ｊｏｈｎ  ", "O'Brien") == ["smith john", "o'brien"]


def test_digits_keeps_only_digits() -> None:
    assert norm("digits", "4 0 0 0", "１２３", 4000.0, "no digits") == ["4000", "123", "4000", None]
    assert flags("digits", "no digits") == ["digits.no_digits"]


# ------------------------------------------------------------------- names


def test_traditional_is_simplified() -> None:
    assert norm("chinese_name", "張測試", "陳樣例") == ["张测试", "陈样例"]


DOT_FORMS = ["阿依古丽·买买提", "阿依古丽买买提", "阿依古丽•买买提", "阿依古丽‧买买提", "阿依古丽・买买提",
             "阿依古丽･买买提", "阿依古丽ㆍ买买提", "阿依古丽∙买买提", "阿依古丽⋅买买提", "阿依古丽·买买提",
             "阿依古丽᛫买买提", "阿依古丽⸱买买提", "阿依古丽．买买提", "阿依古丽.买买提", "阿依古丽 · 买买提",
             "阿依古丽-买买提", "阿依古丽。买买提", "阿依古丽ꞏ买买提", "阿依古丽●买买提"]


def test_middle_dot_variants_equal_the_dot_less_form() -> None:
    out = normalise_column("chinese_name", pd.Series(DOT_FORMS))
    assert set(out.values) == {"阿依古丽买买提"}
    assert set(out.extra["display"][[i for i, f in enumerate(DOT_FORMS) if f != "阿依古丽买买提"]]) == {
        "阿依古丽·买买提"}
    assert out.problems.isna().all()


def test_spaces_and_punctuation_inside_names_are_removed() -> None:
    assert norm("chinese_name", " 王 测试 ", "王\u3000测试", "王测试。", "(王测试)", "王\u200b测试") == ["王测试"] * 5


def test_full_width_letters_fold_and_no_han_is_flagged() -> None:
    out = normalise_column("chinese_name", pd.Series(["ＪＯＨＮ Ｓｍｉｔｈ", "王测试"]))
    assert out.values.tolist() == ["johnsmith", "王测试"]
    assert out.problems.tolist() == ["name.no_han", None]


def test_display_of_a_traditional_dotted_name() -> None:
    out = normalise_column("chinese_name", pd.Series(["麗娜．測試"]))
    assert out.values.tolist() == ["丽娜测试"]
    assert out.extra["display"].tolist() == ["丽娜·测试"]


# ------------------------------------------------------------------- pinyin


def test_homophones_share_pinyin() -> None:
    assert norm("pinyin", "张伟", "章伟", "張偉", "张 伟") == ["zhang wei"] * 4


@pytest.mark.parametrize(("name", "expected"), [
    ("单测试", "shan ce shi"), ("曾测试", "zeng ce shi"), ("解测试", "xie ce shi"),
    ("仇测试", "qiu ce shi"), ("朴测试", "piao ce shi"), ("区测试", "ou ce shi"),
    ("查测试", "zha ce shi"), ("盖测试", "ge ce shi"), ("乐测试", "yue ce shi"),
    ("覃测试", "qin ce shi"), ("缪测试", "miao ce shi"), ("翟测试", "zhai ce shi"),
    ("员测试", "yun ce shi"), ("繁测试", "po ce shi"), ("秘测试", "bi ce shi"),
    ("尉迟测试", "yu chi ce shi"), ("万俟测试", "mo qi ce shi"), ("长孙测试", "zhang sun ce shi"),
])
def test_surname_readings(name: str, expected: str) -> None:
    assert norm("pinyin", name) == [expected]


def test_surname_reading_applies_to_the_first_character_only() -> None:
    assert norm("pinyin", "王单") == ["wang dan"]


def test_u_umlaut_is_written_v() -> None:
    assert norm("pinyin", "吕测试", "女", "Lü Ce Shi", "LÜ CESHI", "lǚ") == [
        "lv ce shi", "nv", "lv ce shi", "lv ce shi", "lv"]


def test_latin_pinyin_is_normalised_and_split_into_syllables() -> None:
    assert norm("pinyin", "ZHANG Wei", "Zhang-Wei", "zhangwei", "Zhāng Wěi", " zhang  wei ") == ["zhang wei"] * 5
    assert norm("pinyin", "Xi'an") == ["xi an"]


def test_pinyin_with_nothing_to_read_is_flagged() -> None:
    assert norm("pinyin", "123") == [None]
    assert flags("pinyin", "123") == ["pinyin.no_letters"]


def test_pinyin_derivation_from_a_name_column() -> None:
    names = normalise_column("chinese_name", pd.Series(["阿依古丽·买买提", None, "單測試"]))
    assert derive_column("pinyin", names).tolist() == ["a yi gu li mai mai ti", None, "shan ce shi"]


# --------------------------------------------------------------- ID numbers


def test_id_number_column_values_flags_and_extras() -> None:
    good, bad = make_id(), make_id()[:17] + ("1" if make_id()[17] != "1" else "2")
    out = normalise_column("id_number", pd.Series([good, bad, None, "J330106201209010012", good + "71"]))
    assert out.values.tolist() == [good, bad, None, None, good]
    assert out.problems.tolist() == [None, "id_number.checksum", None, "id_number.no_id", None]
    assert out.extra["birth_date"].tolist() == ["1985-03-17", None, None, None, "1985-03-17"]
    assert out.extra["sex"].tolist() == ["M", None, None, None, "M"]
    assert out.extra["region_code"].tolist() == ["330106", None, None, None, "330106"]
    assert out.extra["disability_category_digit"].tolist() == [None, None, None, None, "7"]
    assert out.extra["disability_grade_digit"].tolist() == [None, None, None, None, "1"]


# ------------------------------------------------------------------- dates


@pytest.mark.parametrize("form", [
    "1990-01-02", "1990/1/2", "1990.1.2", "19900102", "1990年1月2日", "1990年01月02日", "1990-01-02 00:00:00",
    "1990-01-02T08:30:00", "１９９０－０１－０２", " 1990-1-2 ", date(1990, 1, 2), datetime(1990, 1, 2, 23, 59),
    pd.Timestamp("1990-01-02"), np.datetime64("1990-01-02"), 32875, 32875.75, "32875", 19900102,
])
def test_date_formats(form: object) -> None:
    assert norm("date", form) == ["1990-01-02"]


def test_excel_serials_around_the_1900_leap_bug() -> None:
    assert norm("date", 1, 59, 61, 60) == ["1900-01-01", "1900-02-28", "1900-03-01", None]
    assert flags("date", 60) == ["date.unparseable"]


@pytest.mark.parametrize("form", ["1899-12-31", "2999-01-01", 90000, "2999年1月1日"])
def test_date_out_of_range(form: object) -> None:
    if form == 90000:
        assert flags("date", form) == ["date.unparseable"]  # beyond the plausible serial range
        return
    assert norm("date", form) == [None]
    assert flags("date", form) == ["date.out_of_range"]


@pytest.mark.parametrize("form", ["foo", "1990-02-30", "1990-13-01", "1990", "1990-01", "02/01/1990", True, -5])
def test_date_unparseable(form: object) -> None:
    assert norm("date", form) == [None]
    assert flags("date", form) == ["date.unparseable"]


def test_year() -> None:
    assert norm("year", "1990", "1990年", 1990, 1990.0, "1990-05-06", 32875, date(1990, 1, 2)) == ["1990"] * 7
    assert flags("year", "1850", "2999", "soon") == ["year.out_of_range", "year.out_of_range", "year.unparseable"]


# --------------------------------------------------------------------- sex


def test_sex_codes() -> None:
    assert norm("sex", "男", "女", "M", "f", "Male", "FEMALE", "1", 2, 1.0, "男性", "女 ") == [
        "M", "F", "M", "F", "M", "F", "M", "F", "M", "M", "F"]


@pytest.mark.parametrize("unknown", ["0", "9", 0, "未知", "未说明", "x"])
def test_sex_unknown(unknown: object) -> None:
    assert norm("sex", unknown) == [None]
    assert flags("sex", unknown) == ["sex.unknown"]


# ------------------------------------------------------------------- phone


@pytest.mark.parametrize("form", [
    "13912345678", "139 1234 5678", "139-1234-5678", "+86 139 1234 5678", "+86-13912345678", "0086 13912345678",
    "8613912345678", "(+86)139-1234-5678", "（139）12345678", "１３９１２３４５６７８", 13912345678, 13912345678.0,
    "013912345678", "13912345678.0",
])
def test_mobile_formats(form: object) -> None:
    assert norm("phone", form) == ["13912345678"]
    assert flags("phone", form) == [None]


def test_landlines_are_kept_as_digits_and_flagged() -> None:
    assert norm("phone", "0571-8888 7777", "12912345678", "电话未留") == ["057188887777", "12912345678", None]
    assert flags("phone", "0571-8888 7777", "12912345678", "电话未留") == ["phone.not_mobile"] * 3


# ----------------------------------------------------------------- address


def test_address_prefixes_are_dropped() -> None:
    forms = ["浙江省杭州市西湖区文三路35号", "浙江杭州西湖区文三路35号", "杭州市西湖区文三路35号",
             "西湖区文三路35号", "文三路35号", "浙江省 杭州市 西湖区 文三路 35 号", "中国浙江省杭州市西湖区文三路三十五号"]
    assert set(norm("address", *forms)) == {"文三路35号"}


def test_autonomous_regions_and_villages() -> None:
    out = norm("address", "广西壮族自治区南宁市青秀区某某镇某某村三村民小组", "某某镇某某村3组",
               "新疆维吾尔自治区喀什地区疏附县某某乡某某村二十一组")
    assert out == ["某某镇某某村3组", "某某镇某某村3组", "某某乡某某村21组"]


def test_address_numerals_are_unified() -> None:
    assert norm("address", "某某路十二号五#楼二单元三〇一室") == ["某某路12号5号楼2单元301室"]


def test_address_prefix_is_kept_when_nothing_would_remain() -> None:
    assert norm("address", "杭州市西湖区") == ["杭州市西湖区"]
    assert norm("address", "阳光小区5号楼") == ["阳光小区5号楼"]


def test_street_named_after_a_province_is_kept() -> None:
    assert norm("address", "南京市鼓楼区上海路5号") == ["上海路5号"]


def test_traditional_address_is_simplified() -> None:
    assert norm("address", "臺灣省臺北市某某路1號") == norm("address", "台湾省台北市某某路1号")


# ------------------------------------------------------------- region code


def test_region_code() -> None:
    assert norm("region_code", "330106", 330106, " 330106 ", "33010", "330106000000", "abcdef") == [
        "330106", "330106", "330106", None, None, None]
    assert flags("region_code", "33010") == ["region_code.format"]


# ---------------------------------------------------------------- derivation


def test_derive_birth_fields_only_from_valid_ids() -> None:
    ids = normalise_column("id_number", pd.Series([make_id(), make_id()[:17] + "Y", None]))
    assert derive_column("birth_date", ids).tolist() == ["1985-03-17", None, None]
    assert derive_column("birth_year", ids).tolist() == ["1985", None, None]
    assert derive_column("sex", ids).tolist() == ["M", None, None]
    assert derive_column("region_code", ids).tolist() == ["330106", None, None]


def test_derive_year_from_a_date_column() -> None:
    dates = normalise_column("date", pd.Series(["1990/1/2", None, "bad"]))
    assert derive_column("year", dates).tolist() == ["1990", None, None]


def test_derive_errors() -> None:
    names = normalise_column("chinese_name", pd.Series(["王测试"]))
    with pytest.raises(ValueError, match="unknown derivation"):
        derive_column("zodiac", names)
    with pytest.raises(ValueError, match="not an id_number column"):
        derive_column("birth_date", names)


# ------------------------------------------------------------ whole records

JA = load_schema("judicial-assistance")


def _export() -> tuple[pd.DataFrame, dict[str, str]]:
    good_f = make_id("440305", "19920708", "362")
    good_m = make_id("510104", "19700101", "015")
    bad = make_id("330106", "19850317", "421")[:17] + "Y"
    frame = pd.DataFrame({
        "name": ["王测试", "陳樣例", "李·示例", "  ", "赵测试"],
        "id_number": [good_f, good_m, bad, None, "99" + good_m[2:]],
        "birth_date": [None, "1970年1月1日", None, "1988-02-30", None],
        "sex": [None, None, "女", "0", None],
        "phone": ["139 1234 5678", "0571-8888 7777", None, "+8615812345678", None],
        "address": ["浙江省杭州市西湖区文三路三十五号", None, "某某镇某某村3组", None, "文三路35号"],
    }, index=[101, 102, 103, 104, 105])
    raw = {"good_f": good_f, "good_m": good_m, "bad": bad}
    return frame, raw


def test_normalise_records_fills_every_field_and_derives() -> None:
    frame, raw = _export()
    out, _ = normalise_records(frame, JA)
    assert list(out.columns) == list(JA.field_names)
    assert set(out.dtypes) == {np.dtype(object)}
    assert list(out.index) == [101, 102, 103, 104, 105]
    assert out["name"].tolist() == ["王测试", "陈样例", "李示例", None, "赵测试"]
    assert out["name_pinyin"].tolist() == ["wang ce shi", "chen yang li", "li shi li", None, "zhao ce shi"]
    assert out["id_number"].tolist() == [raw["good_f"], raw["good_m"], raw["bad"][:17], None,
                                         "99" + raw["good_m"][2:]]
    # birth date: own value kept, else derived from a VALID id only
    assert out["birth_date"].tolist() == ["1992-07-08", "1970-01-01", None, None, None]
    # birth year (a salt): also from the date digits of a number failing another check (row 105:
    # region 99), not from one whose characters are wrong (row 103) or that is missing
    assert out["birth_year"].tolist() == ["1992", "1970", None, None, "1970"]
    assert out["sex"].tolist() == ["F", "M", "F", None, None]
    assert out["region_code"].tolist() == ["440305", "510104", None, None, None]
    assert out["phone"].tolist() == ["13912345678", "057188887777", None, "15812345678", None]
    assert out["address"].tolist() == ["文三路35号", None, "某某镇某某村3组", None, "文三路35号"]


def test_own_values_win_over_derived_ones() -> None:
    frame = pd.DataFrame({"id_number": [make_id(born="19850317", seq="421")], "birth_date": ["1985-03-18"],
                          "sex": ["女"]})
    out, _ = normalise_records(frame, JA)
    assert out.loc[0, "birth_date"] == "1985-03-18"
    assert out.loc[0, "birth_year"] == "1985"
    assert out.loc[0, "sex"] == "F"
    assert out.loc[0, "region_code"] == "330106"


def test_problems_frame_names_row_column_and_rule() -> None:
    frame, _ = _export()
    _, problems = normalise_records(frame, JA)
    assert list(problems.columns) == ["row", "column", "rule"]
    assert problems["row"].dtype == np.int64
    assert problems.to_dict("records") == [
        {"row": 1, "column": "phone", "rule": "phone.not_mobile"},
        {"row": 2, "column": "id_number", "rule": "id_number.characters"},
        {"row": 3, "column": "birth_date", "rule": "date.unparseable"},
        {"row": 3, "column": "sex", "rule": "sex.unknown"},
        {"row": 4, "column": "id_number", "rule": "id_number.region"},
    ]
    assert set(problems["rule"]) <= set(RULES)


def test_problems_never_contain_input_values() -> None:
    frame, raw = _export()
    _, problems = normalise_records(frame, JA)
    cells = [str(c) for c in problems.to_numpy().ravel()]
    inputs = [str(v) for v in frame.to_numpy().ravel() if v is not None] + list(raw.values())
    for value in inputs:
        if value.strip():
            assert not any(value in cell or cell in (value,) for cell in cells), "a problem cell echoes an input"


def test_absent_fields_are_all_missing() -> None:
    frame = pd.DataFrame({"name": ["王测试"]})
    out, problems = normalise_records(frame, JA)
    assert out.loc[0, "name_pinyin"] == "wang ce shi"
    for f in ("id_number", "birth_date", "birth_year", "sex", "phone", "address", "region_code"):
        assert out.loc[0, f] is None
    assert problems.empty
    assert list(problems.columns) == ["row", "column", "rule"]


def test_empty_frame() -> None:
    out, problems = normalise_records(pd.DataFrame({"name": pd.Series([], dtype=object)}), JA)
    assert list(out.columns) == list(JA.field_names)
    assert len(out) == 0 and len(problems) == 0


def test_duplicate_columns_are_refused() -> None:
    from linkage.errors import SchemaMismatchError

    frame = pd.DataFrame([["王测试", "李测试"]], columns=["name", "name"])
    with pytest.raises(SchemaMismatchError) as exc:
        normalise_records(frame, JA)
    assert "王测试" not in str(exc.value)


def test_febrl_schema() -> None:
    febrl = load_schema("febrl")
    frame = pd.DataFrame({"given_name": ["  Mary ", None], "surname": ["O'NEIL", "smith"],
                          "street_number": ["12a", 7.0], "postcode": ["2 6 0 0", "x"],
                          "date_of_birth": ["19560909", None], "soc_sec_id": [1234567, "  "]})
    out, problems = normalise_records(frame, febrl)
    assert out["given_name"].tolist() == ["mary", None]
    assert out["surname"].tolist() == ["o'neil", "smith"]
    assert out["street_number"].tolist() == ["12", "7"]
    assert out["postcode"].tolist() == ["2600", None]
    assert out["soc_sec_id"].tolist() == ["1234567", None]
    assert out["state"].tolist() == [None, None]
    assert problems.to_dict("records") == [{"row": 1, "column": "postcode", "rule": "digits.no_digits"}]


def test_normalised_column_is_frozen() -> None:
    col = normalise_column("text", pd.Series(["a"]))
    assert isinstance(col, NormalisedColumn)
    with pytest.raises(AttributeError):
        col.values = pd.Series(["b"])  # type: ignore[misc]


def test_per_distinct_value_work_is_shared() -> None:
    calls: list[object] = []
    original = N._SIMPLE["text"]
    try:
        N._SIMPLE["text"] = lambda v: (calls.append(v), original(v))[1]
        normalise_column("text", pd.Series(["A", "A", "B", None, "A"] * 100))
    finally:
        N._SIMPLE["text"] = original
    assert sorted(calls) == ["A", "B"]
