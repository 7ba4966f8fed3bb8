"""Resident ID numbers (GB 11643-1999): check digit, cleaning, legacy and
embedded forms, validity rules, derived birth date / sex / region.

Every number here is made up: region, birth date and sequence are chosen by
the test and the check digit is computed by ``_ref_check`` below, an
independent formulation of ISO 7064 MOD 11-2 (weight of position i is
2**(17-i) mod 11), so the module is not checked against itself.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from linkage import idnumber
from linkage.idnumber import IdInfo, check_digit, parse_id, parse_ids, upgrade_15_to_18


def _ref_check(first17: str) -> str:
    total = sum(int(c) * pow(2, 17 - i, 11) for i, c in enumerate(first17))
    r = (12 - total % 11) % 11
    return "X" if r == 10 else str(r)


def make_id(region: str = "330106", born: str = "19850317", seq: str = "421") -> str:
    first17 = region + born + seq
    return first17 + _ref_check(first17)


FULLWIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")


# ---------------------------------------------------------------- check digit


def test_known_answer_from_the_standard() -> None:
    # The specimen number printed in GB 11643-1999 itself (not a person).
    assert check_digit("11010519491231002") == "X"
    assert parse_id("11010519491231002X").valid


@pytest.mark.parametrize("first17", ["33010619850317421", "44030520000229001", "65010119000101000",
                                     "11000020240101999", "82000019991231998"])
def test_check_digit_matches_the_reference(first17: str) -> None:
    assert check_digit(first17) == _ref_check(first17)


def test_every_remainder_maps_through_10X98765432() -> None:
    seen = set()
    for seq in range(200):
        first17 = f"3301061985031{seq:04d}"
        seen.add(check_digit(first17))
        assert check_digit(first17) == _ref_check(first17)
    assert seen == set("0123456789X")


@pytest.mark.parametrize("bad", ["1234", "1101051949123100X", "１１０１０５１９４９１２３１００２", None, 12345678901234567])
def test_check_digit_rejects_anything_but_17_ascii_digits(bad: object) -> None:
    with pytest.raises(ValueError) as exc:
        check_digit(bad)  # type: ignore[arg-type]
    assert str(bad) not in str(exc.value)


# ------------------------------------------------------------ valid numbers


def test_valid_number_and_derived_fields() -> None:
    id18 = make_id("330106", "19850317", "421")
    info = parse_id(id18)
    assert info == IdInfo(id18, "valid", "1985-03-17", "M", "330106")
    assert info.valid


def test_even_sequence_digit_is_female() -> None:
    info = parse_id(make_id(seq="420"))
    assert info.sex == "F"


def test_lower_case_x_is_accepted_and_upper_cased() -> None:
    first17 = next(f"3301061985031{s:04d}" for s in range(1000) if _ref_check(f"3301061985031{s:04d}") == "X")
    info = parse_id(first17 + "x")
    assert info.valid
    assert info.value == first17 + "X"


def test_full_width_digits_spaces_hyphens_and_apostrophe_are_cleaned() -> None:
    id18 = make_id()
    for form in (id18.translate(FULLWIDTH), f"{id18[:6]} {id18[6:14]} {id18[14:]}",
                 f"{id18[:6]}-{id18[6:14]}-{id18[14:]}", f"'{id18}", f"  {id18}\t", f"{id18}\u200b"):
        info = parse_id(form)
        assert info.valid, form
        assert info.value == id18


def test_integer_cell_is_read_as_digits() -> None:
    id18 = next(i for i in (make_id(seq=f"{s:03d}") for s in range(100)) if i[-1] != "X")
    assert parse_id(int(id18)).value == id18
    assert parse_id(int(id18)).valid


def test_province_83_taiwan_residence_permit_is_accepted() -> None:
    assert parse_id(make_id("830000", "19900101", "001")).valid


# -------------------------------------------------------------- legacy forms


def test_fifteen_digit_number_is_upgraded() -> None:
    old = "330106850317421"  # region + YYMMDD + sequence
    new = upgrade_15_to_18(old)
    assert new == make_id("330106", "19850317", "421")
    info = parse_id(old)
    assert info.valid
    assert info.value == new
    assert info.birth_date == "1985-03-17"


def test_fifteen_digit_number_with_impossible_date_is_flagged() -> None:
    info = parse_id("330106851317421")
    assert info.status == "id_number.birth_date"
    assert info.value == upgrade_15_to_18("330106851317421")


def test_upgrade_rejects_wrong_input() -> None:
    with pytest.raises(ValueError):
        upgrade_15_to_18("12345")


def test_twenty_digit_disability_certificate_number() -> None:
    id18 = make_id()
    info = parse_id(id18 + "42")  # category 4 (physical), grade 2
    assert info.valid
    assert info.value == id18
    assert (info.disability_category_digit, info.disability_grade_digit) == ("4", "2")


def test_twenty_digit_number_with_impossible_category_is_a_length_problem() -> None:
    info = parse_id(make_id() + "95")
    assert info.status == "id_number.length"
    assert info.disability_category_digit is None


def test_g_student_number_carries_the_id() -> None:
    id18 = make_id(born="20120901")
    for form in ("G" + id18, "g" + id18):
        info = parse_id(form)
        assert info.valid
        assert info.value == id18


def test_j_student_number_carries_no_id() -> None:
    info = parse_id("J330106201209010012")
    assert info.status == "id_number.no_id"
    assert info.value is None


# ----------------------------------------------------------- invalid numbers


def test_wrong_check_digit_is_flagged_and_the_digits_kept() -> None:
    id18 = make_id()
    wrong = id18[:17] + ("0" if id18[17] != "0" else "1")
    info = parse_id(wrong)
    assert info.status == "id_number.checksum"
    assert info.value == wrong
    assert info.birth_date is info.sex is info.region_code is None


@pytest.mark.parametrize("born", ["19850230", "19851301", "19850000", "19000229", "18991231", "29990101"])
def test_impossible_or_out_of_range_birth_date(born: str) -> None:
    info = parse_id(make_id(born=born))
    assert info.status == "id_number.birth_date"
    assert info.value == make_id(born=born)


def test_leap_day_is_a_real_date() -> None:
    assert parse_id(make_id(born="20000229")).valid
    assert parse_id(make_id(born="19000101")).valid


def test_birth_date_after_today_is_flagged_with_an_explicit_clock() -> None:
    id18 = make_id(born="20240615")
    assert parse_id(id18, today=date(2024, 6, 15)).valid
    assert parse_id(id18, today=date(2024, 6, 14)).status == "id_number.birth_date"


@pytest.mark.parametrize("region", ["000000", "990101", "160101", "200101", "720101", "840101"])
def test_bad_province_is_flagged(region: str) -> None:
    assert parse_id(make_id(region=region)).status == "id_number.region"


@pytest.mark.parametrize("cut", [17, 16, 19])
def test_wrong_length(cut: int) -> None:
    id18 = make_id()
    s = (id18 + "12")[:cut]
    info = parse_id(s)
    assert info.status == "id_number.length"
    assert info.value == s


def test_letters_are_a_characters_problem_and_the_digits_kept() -> None:
    id18 = make_id(seq="423")
    info = parse_id(id18[:10] + "A" + id18[10:])
    assert info.status == "id_number.characters"
    assert info.value == id18  # the letter dropped, so the typo can still match
    assert info.birth_date is None  # but nothing is derived from a flagged number


def test_x_in_the_middle_is_a_characters_problem() -> None:
    info = parse_id("3301061985X317421")
    assert info.status == "id_number.characters"


@pytest.mark.parametrize("missing", [None, float("nan"), "", "   ", "无", "NULL", "-", "——"])
def test_missing_values(missing: object) -> None:
    info = parse_id(missing)
    assert info.status == "missing"
    assert info.value is None


def test_is_valid() -> None:
    assert idnumber.is_valid(make_id())
    assert not idnumber.is_valid(make_id()[:17])


# ------------------------------------------------------------------ batches


def test_parse_ids_matches_parse_id_and_keeps_order() -> None:
    id18 = make_id()
    values = [id18, None, id18.lower(), "330106850317421", "J1", id18[:17] + "0", "abc", id18 + "11",
              "G" + id18, id18.translate(FULLWIDTH), 330106850317421, id18]
    batch = parse_ids(values)
    assert len(batch) == len(values)
    for i, v in enumerate(values):
        one = parse_id(v)
        assert batch.value[i] == one.value
        assert batch.birth_date[i] == one.birth_date
        assert batch.problem[i] == (None if one.status in ("valid", "missing") else one.status)
    assert batch.birth_year[0] == "1985"


def test_parse_ids_on_more_rows_than_one_block() -> None:
    n = (1 << 17) + 5
    ids = np.array([make_id(seq=f"{i % 1000:03d}") for i in range(1000)], dtype=object)[np.arange(n) % 1000]
    ids[3] = "bad"
    batch = parse_ids(ids)
    assert len(batch) == n
    assert batch.problem[3] == "id_number.characters"
    assert (batch.problem[4:] == None).all()  # noqa: E711 - elementwise
    assert batch.value[n - 1] == ids[n - 1]


def test_ids_valid_agrees_with_id_problems() -> None:
    """The matrix path for canonical numbers and the per-value path say the same."""
    id18 = make_id()
    values = [id18, None, id18.lower(), "330106850317421", id18[:17] + ("1" if id18[17] == "0" else "0"), make_id(region="990106"),
              make_id(born="19850230"), make_id(born="20991231"), "abc", id18.translate(FULLWIDTH),
              make_id(region="830106"), float("nan"), id18, "",
              next(v for v in (make_id(seq=f"{i:03d}") for i in range(100)) if v.endswith("X"))]
    expect = [bool(x) for x in idnumber.pd.isna(idnumber.id_problems(values, today=date(2026, 1, 1)))]
    assert expect[0] and not any(expect[4:8])  # (a missing value has no problem either)
    assert idnumber.ids_valid(values, today=date(2026, 1, 1)).tolist() == expect
    # a cell that is not text sends every value the per-value way: same answers
    assert idnumber.ids_valid([*values, 330106850317421], today=date(2026, 1, 1)).tolist() == [
        *expect, bool(idnumber.pd.isna(idnumber.id_problems([330106850317421], today=date(2026, 1, 1))[0]))]
    assert idnumber.ids_valid([]).tolist() == []


def test_derived_text_columns_are_zero_padded() -> None:
    """Birth date, year, region code and salt year are written from integers as fixed-width text."""
    batch = parse_ids([make_id(region="110101", born="19050102"), None, "x", make_id(born="20001231")])
    assert batch.birth_date.tolist() == ["1905-01-02", None, None, "2000-12-31"]
    assert batch.birth_year.tolist() == ["1905", None, None, "2000"]
    assert batch.region_code.tolist() == ["110101", None, None, "330106"]
    assert batch.salt_year.tolist() == ["1905", None, None, "2000"]
    assert all(type(v) is str for v in batch.birth_date.tolist() if v is not None)


def test_parse_ids_of_nothing() -> None:
    assert len(parse_ids([])) == 0


def test_rules_are_documented() -> None:
    assert set(idnumber.RULES) == {
        "id_number.characters", "id_number.length", "id_number.checksum",
        "id_number.birth_date", "id_number.region", "id_number.no_id",
    }


# ---------------------------------------------------------------- the salt year of a flawed number


def test_salt_year_survives_a_typo_outside_the_birth_date() -> None:
    good = make_id(born="19850317")
    wrong_check = good[:17] + ("0" if good[17] != "0" else "1")
    wrong_seq = good[:15] + ("9" if good[15] != "9" else "8") + good[16:]  # check digit now wrong
    bad_region = "99" + good[2:]
    batch = parse_ids([good, wrong_check, wrong_seq, bad_region])
    assert batch.birth_year.tolist() == ["1985", None, None, None]  # derived fields: valid numbers only
    assert batch.salt_year.tolist() == ["1985", "1985", "1985", "1985"]


def test_salt_year_needs_real_birth_date_digits_and_an_18_digit_number() -> None:
    impossible = make_id(born="19851301")
    future = make_id(born="20240615")
    letters = make_id()[:17] + "Y"
    short = make_id()[:16]
    batch = parse_ids([impossible, future, letters, short, None, "  "], today=date(2024, 6, 14))
    assert batch.salt_year.tolist() == [None, None, None, None, None, None]


def test_salt_year_of_upgraded_and_embedded_numbers() -> None:
    old15 = "330106" + "850317" + "421"
    disability = make_id(born="19700101") + "42"
    batch = parse_ids([old15, disability])
    assert batch.salt_year.tolist() == ["1985", "1970"]
