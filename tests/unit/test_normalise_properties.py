"""Hypothesis properties of the normalisers and of ID-number checking.

Idempotence (normalising a normalised value changes nothing), output types
(None or str), and shape (same index and length) for every normaliser; for ID
numbers, that every well-formed number with a computed check digit is valid and
that every single-digit change of a valid number is detected.  All data is
generated.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linkage import idnumber
from linkage.normalise import NORMALISERS, derive_column, normalise_column

settings.register_profile(
    "aidlink", deadline=None, max_examples=150,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("aidlink")

# Han characters that matter here: common simplified ones, traditional ones,
# the surname-table characters, numerals, and OpenCC's non-idempotent 薴.
HAN = ("张王李赵刘陈杨黄伟芳秀英国华阿依古丽买买提單劉陳張偉麗華國薴苧"
       "单曾解仇朴区查盖乐尉迟万俟长孙覃缪翟员繁秘吕女绿〇一二三十百千两零"
       "省市县区镇乡村路街号组栋单元室楼小社浙江杭州西湖北京朝阳建国新疆")
DOTS = "·•‧・･ㆍ∙⋅·᛫⸱．.-—_。"
OTHER = " \t\u3000\u200b0123456789０１２３ＡＢｘXabcGJüÜǚ#()（）,，、/\\'+"
ALPHABET = HAN + DOTS + OTHER

cells = st.one_of(
    st.none(),
    st.text(alphabet=ALPHABET, max_size=24),
    st.text(max_size=12),  # any Unicode at all
    st.sampled_from(["无", "空", "null", "NULL", "N/A", "-", "/", "——", "", "  "]),
    st.integers(min_value=-10**19, max_value=10**19),
    st.floats(allow_nan=True, allow_infinity=True),
    st.dates(min_value=date(1800, 1, 1), max_value=date(2200, 1, 1)),
)


def _column(draw_list: list[object]) -> pd.Series:
    return pd.Series(draw_list, dtype=object, index=pd.RangeIndex(10, 10 + len(draw_list)))


@pytest.mark.parametrize("normaliser", NORMALISERS)
@given(values=st.lists(cells, max_size=12))
def test_idempotent_typed_and_shaped(normaliser: str, values: list[object]) -> None:
    series = _column(values)
    once = normalise_column(normaliser, series)
    for out in (once.values, once.problems, *once.extra.values()):
        assert len(out) == len(series)
        assert out.index.equals(series.index)
        assert out.dtype == object
        assert all(v is None or isinstance(v, str) for v in out)
    twice = normalise_column(normaliser, once.values)
    assert twice.values.tolist() == once.values.tolist()


@given(values=st.lists(st.one_of(st.none(), st.text(alphabet=ALPHABET, max_size=16)), max_size=12))
def test_pinyin_of_a_name_column_equals_the_derived_pinyin(values: list[object]) -> None:
    # For names with Han characters; Latin-only input keeps its word breaks in
    # the pinyin normaliser but loses them as a chinese_name value.
    series = _column(values)
    names = normalise_column("chinese_name", series)
    han = (names.problems != "name.no_han").to_numpy()
    derived = derive_column("pinyin", names)[han].tolist()
    assert derived == normalise_column("pinyin", series).values[han].tolist()


@given(values=st.lists(st.text(alphabet=ALPHABET, max_size=16), max_size=8))
def test_pinyin_is_lower_case_letters_and_single_spaces(values: list[str]) -> None:
    out = normalise_column("pinyin", _column(values)).values
    for v in out:
        if v is not None:
            assert v == v.strip() and "  " not in v
            assert all("a" <= ch <= "z" or ch == " " for ch in v)


# ---------------------------------------------------------------- ID numbers

PROVINCES = sorted(idnumber.PROVINCE_CODES)


@st.composite
def valid_ids(draw: st.DrawFn) -> str:
    province = draw(st.sampled_from(PROVINCES))
    rest_of_region = draw(st.integers(0, 9999))
    born = draw(st.dates(min_value=date(1900, 1, 1), max_value=date.today()))
    seq = draw(st.integers(0, 999))
    first17 = f"{province:02d}{rest_of_region:04d}{born:%Y%m%d}{seq:03d}"
    return first17 + _reference_check_digit(first17)


def _reference_check_digit(first17: str) -> str:
    """ISO 7064 MOD 11-2 written independently: weight of position i is 2**(17-i) mod 11."""
    total = sum(int(c) * pow(2, 17 - i, 11) for i, c in enumerate(first17))
    r = (12 - total % 11) % 11
    return "X" if r == 10 else str(r)


@given(valid_ids())
def test_well_formed_number_with_computed_check_digit_is_valid(id18: str) -> None:
    info = idnumber.parse_id(id18)
    assert info.valid, info.status
    assert info.value == id18
    assert info.birth_date == f"{id18[6:10]}-{id18[10:12]}-{id18[12:14]}"
    assert info.region_code == id18[:6]
    assert info.sex == ("M" if int(id18[16]) % 2 else "F")
    assert idnumber.check_digit(id18[:17]) == id18[17]


@given(valid_ids(), st.integers(0, 17), st.integers(1, 10))
def test_any_single_character_change_is_detected(id18: str, pos: int, shift: int) -> None:
    alphabet = "0123456789X" if pos == 17 else "0123456789"
    new = alphabet[(alphabet.index(id18[pos]) + shift) % len(alphabet)]
    if new == id18[pos]:
        return
    changed = id18[:pos] + new + id18[pos + 1:]
    info = idnumber.parse_id(changed)
    assert not info.valid
    assert info.value == changed  # kept so that the typo can still match
    assert info.birth_date is info.sex is info.region_code is None


@given(st.lists(st.one_of(valid_ids(), cells), max_size=20))
def test_batch_equals_one_by_one(values: list[object]) -> None:
    batch = idnumber.parse_ids(values)
    for i, v in enumerate(values):
        one = idnumber.parse_id(v)
        assert (batch.value[i], batch.birth_date[i], batch.sex[i], batch.region_code[i]) == (
            one.value, one.birth_date, one.sex, one.region_code)
        assert batch.problem[i] == (None if one.status in ("valid", "missing") else one.status)


@given(st.dates(min_value=date(1900, 1, 1), max_value=date.today()))
def test_every_written_form_of_a_date_agrees(d: date) -> None:
    serial = (d - date(1899, 12, 30)).days if d >= date(1900, 3, 1) else (d - date(1899, 12, 31)).days
    forms = [d, datetime(d.year, d.month, d.day, 13, 5), pd.Timestamp(d), d.isoformat(),
             f"{d.year}/{d.month}/{d.day}", f"{d.year}.{d.month}.{d.day}", d.strftime("%Y%m%d"),
             f"{d.year}年{d.month}月{d.day}日", f"{d.isoformat()} 00:00:00", serial, serial + 0.25]
    out = normalise_column("date", pd.Series(forms, dtype=object))
    assert set(out.values) == {d.isoformat()}
    if serial < 10000:  # a four-digit number in a year column is a year, not a serial
        forms = forms[:-2]
    assert set(normalise_column("year", pd.Series(forms, dtype=object)).values) == {f"{d.year:04d}"}


@given(st.integers(1, 10**5))
def test_future_dates_are_out_of_range(days: int) -> None:
    future = date.today() + timedelta(days=days)
    out = normalise_column("date", pd.Series([future.isoformat()], dtype=object))
    assert out.values[0] is None
    assert out.problems[0] == "date.out_of_range"
