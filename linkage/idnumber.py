"""Resident ID numbers (公民身份号码, GB 11643-1999).

An 18-character number: a six-digit region code, the birth date ``YYYYMMDD``,
a three-digit sequence code whose last digit is odd for men and even for
women, and a check character computed with ISO 7064 MOD 11-2 (weights
7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2 over the first 17 digits; the weighted sum
mod 11 indexes ``"10X98765432"``).

Besides plain 18-character numbers this module accepts what agency exports
actually hold: a lower-case ``x``, full-width digits, spaces and hyphens, a
leading apostrophe (Excel's text marker), 15-digit numbers issued before 1999
(upgraded: ``19`` inserted before the two-digit year, check character
computed), 20-digit disability-certificate numbers (残疾人证号: the 18-character
ID followed by a category digit 1-7 and a grade digit 1-4), and ``G`` + ID
student numbers (全国学籍号).  ``J`` student numbers carry no ID.

Safe surface: :func:`check_digit`, :func:`upgrade_15_to_18`, :func:`is_valid`,
:func:`parse_id` for one value, :func:`parse_ids` for many (vectorised with
numpy: this is the one normaliser where every value is distinct).  Nothing
here ever puts a number into an exception message.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ._cjk import cell_text, fold_keep_case, is_null_marker

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"

#: First two digits of a valid number: the province-level divisions, plus 83
#: (Taiwan residents' residence permits, which use the same format).
PROVINCE_CODES = frozenset(
    [*range(11, 16), *range(21, 24), *range(31, 38), *range(41, 47), *range(50, 55),
     *range(61, 66), 71, 81, 82, 83]
)
EARLIEST_BIRTH_DATE = date(1900, 1, 1)

VALID = "valid"
MISSING = "missing"
RULE_CHARACTERS = "id_number.characters"
RULE_LENGTH = "id_number.length"
RULE_CHECKSUM = "id_number.checksum"
RULE_BIRTH_DATE = "id_number.birth_date"
RULE_REGION = "id_number.region"
RULE_NO_ID = "id_number.no_id"

RULES: dict[str, str] = {
    RULE_CHARACTERS: "the ID number holds characters other than digits and a final X",
    RULE_LENGTH: "the ID number has the wrong number of digits (not 15, 18, a 20-digit "
                 "disability-certificate number or a G student number)",
    RULE_CHECKSUM: "the ID number's check character does not match (ISO 7064 MOD 11-2)",
    RULE_BIRTH_DATE: "the ID number's birth-date digits are not a real date between "
                     "1900-01-01 and today",
    RULE_REGION: "the ID number's first two digits are not a province-level region code",
    RULE_NO_ID: "a J student number, which carries no ID number",
}


@dataclass(frozen=True)
class IdInfo:
    """What one cell yields.  ``status`` is ``"valid"``, ``"missing"`` or a rule id.

    ``value`` is the 18-character number when one could be made out (also when
    it is invalid, so that typos can still match), else the cleaned digits, else
    None.  The derived fields are set only for valid numbers.
    """

    value: str | None
    status: str
    birth_date: str | None = None  # YYYY-MM-DD
    sex: str | None = None  # "M" | "F"
    region_code: str | None = None  # first six digits
    disability_category_digit: str | None = None
    disability_grade_digit: str | None = None

    @property
    def valid(self) -> bool:
        return self.status == VALID


@dataclass(frozen=True)
class IdBatch:
    """Column-wise result of :func:`parse_ids`: object arrays of equal length.

    ``problem`` is None for valid and missing cells, else a rule id.
    """

    value: np.ndarray
    problem: np.ndarray
    birth_date: np.ndarray
    birth_year: np.ndarray
    sex: np.ndarray
    region_code: np.ndarray
    disability_category_digit: np.ndarray
    disability_grade_digit: np.ndarray
    #: The year in the birth-date digits of any 18-character number (also one that fails its
    #: region or check-character test, e.g. a typo elsewhere) when those digits are a real date
    #: in range.  Only for salting: a wrong year costs a link, never a disclosure.
    salt_year: np.ndarray

    def __len__(self) -> int:
        return len(self.value)


_DIGITS17 = re.compile(r"[0-9]{17}")


def check_digit(first17: str) -> str:
    """The check character (``0``-``9`` or ``X``) for the first 17 digits."""
    if not isinstance(first17, str) or not _DIGITS17.fullmatch(first17):
        raise ValueError("check_digit needs exactly 17 ASCII digits")
    total = sum(int(c) * w for c, w in zip(first17, WEIGHTS, strict=True))
    return CHECK_CHARS[total % 11]


def upgrade_15_to_18(s: str) -> str:
    """A 15-digit number (pre-1999) as 18: ``19`` before the year, check character added."""
    if not isinstance(s, str) or not re.fullmatch(r"[0-9]{15}", s):
        raise ValueError("upgrade_15_to_18 needs exactly 15 ASCII digits")
    first17 = s[:6] + "19" + s[6:]
    return first17 + check_digit(first17)


def parse_id(value: object, *, today: date | None = None) -> IdInfo:
    """Clean and check one cell (see the module docstring for what is accepted)."""
    b = parse_ids([value], today=today)
    problem = b.problem[0]
    if problem is not None:
        status = problem
    elif b.value[0] is None:
        status = MISSING
    else:
        status = VALID
    return IdInfo(b.value[0], status, b.birth_date[0], b.sex[0], b.region_code[0],
                  b.disability_category_digit[0], b.disability_grade_digit[0])


def is_valid(value: object, *, today: date | None = None) -> bool:
    return parse_id(value, today=today).valid


# ------------------------------------------------------------------ internals

_SEPARATORS = re.compile("[\\s\\-\u2010\u2011\u2012\u2013\u2014\u2015\u2212]+")
_NOT_ID_CHAR = re.compile("[^0-9X]")
_ID18 = re.compile(r"[0-9]{17}[0-9X]")
_ID15 = re.compile(r"[0-9]{15}")
_ID20 = re.compile(r"[0-9]{17}[0-9X][1-7][1-4]")

_W = np.array(WEIGHTS, dtype=np.int32)
_CHECK_CODES = np.array([ord(c) for c in CHECK_CHARS], dtype=np.uint32)
_PROVINCE_OK = np.zeros(100, dtype=bool)
_PROVINCE_OK[sorted(PROVINCE_CODES)] = True
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int32)
_ORD0, _ORD9, _ORD_X, _ORD_x, _ORD_DASH = ord("0"), ord("9"), ord("X"), ord("x"), ord("-")
_BLOCK = 1 << 17


def _clean_slow(v: object) -> tuple[str | None, str | None, str | None, str | None, str | None]:
    """(18-char candidate, final value, rule, category digit, grade digit) for one cell
    that is not already a plain 18-character ASCII number."""
    t = cell_text(v)
    if t is None:
        return None, None, None, None, None
    s = fold_keep_case(t)
    if is_null_marker(s.lower()):
        return None, None, None, None, None
    s = _SEPARATORS.sub("", s).lstrip("'`").upper()
    if not s:
        return None, None, None, None, None
    if s[0] == "J":
        return None, None, RULE_NO_ID, None, None
    if s[0] == "G":
        s = s[1:]
    rule = None
    if _NOT_ID_CHAR.search(s):
        rule = RULE_CHARACTERS
        s = _NOT_ID_CHAR.sub("", s)
    if _ID18.fullmatch(s):
        return s, None, rule, None, None
    if _ID15.fullmatch(s):
        return upgrade_15_to_18(s), None, rule, None, None
    if _ID20.fullmatch(s):
        return s[:18], None, rule, s[18], s[19]
    if rule is None:
        rule = RULE_CHARACTERS if "X" in s[:-1] else RULE_LENGTH
    return None, s or None, rule, None, None


def _today_int(today: date | None) -> int:
    d = today or date.today()
    return d.year * 10000 + d.month * 100 + d.day


def _validate(m: np.ndarray, today_int: int) -> tuple[np.ndarray, ...]:
    """Checks on an (n, 18) uint32 matrix of code points, all ``[0-9]{17}[0-9X]``.

    Returns (rule code per row: 0 valid, 1 region, 2 birth date, 3 checksum;
    the first 17 digits as an int32 matrix; whether the birth-date digits are a
    real date in range, whatever the other checks say).
    """
    d = m[:, :17].astype(np.int32) - _ORD0
    expected = _CHECK_CODES[(d @ _W) % 11]
    check_ok = m[:, 17] == expected
    province_ok = _PROVINCE_OK[d[:, 0] * 10 + d[:, 1]]
    y = d[:, 6] * 1000 + d[:, 7] * 100 + d[:, 8] * 10 + d[:, 9]
    mo = d[:, 10] * 10 + d[:, 11]
    dd = d[:, 12] * 10 + d[:, 13]
    leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
    dim = _DAYS_IN_MONTH[np.clip(mo, 0, 12)] + (leap & (mo == 2))
    ymd = y * 10000 + mo * 100 + dd
    date_ok = (mo >= 1) & (mo <= 12) & (dd >= 1) & (dd <= dim) & (ymd >= 19000101) & (ymd <= today_int)
    code = np.where(~province_ok, 1, np.where(~date_ok, 2, np.where(~check_ok, 3, 0)))
    return code, d, date_ok


_CODE_RULES = np.array([None, RULE_REGION, RULE_BIRTH_DATE, RULE_CHECKSUM], dtype=object)
_N_COLS = 9  # value, problem, ymd (int), -, sex, region (int), category, grade, lenient ymd (int)


def _format_digits(ints: np.ndarray, widths: tuple[int, ...]) -> np.ndarray:
    """Non-negative integers as zero-padded decimal groups joined by ``-`` (``(4, 2, 2)``:
    ``19491231`` -> ``1949-12-31``), -1 -> None; the text of every distinct value is built
    as one character matrix, not one Python call per value (there are as many birth dates
    as rows, nearly)."""
    codes, uniq = pd.factorize(ints)
    keep = np.flatnonzero(uniq >= 0)
    rest = uniq[keep].astype(np.int64)
    width = sum(widths) + len(widths) - 1
    chars = np.empty((len(rest), width), dtype=np.uint8)
    col = width
    for i, w in enumerate(reversed(widths)):
        if i:
            col -= 1
            chars[:, col] = ord("-")
        for _ in range(w):
            col -= 1
            chars[:, col] = 48 + rest % 10
            rest //= 10
    offsets = np.arange(0, width * (len(keep) + 1), width, dtype=np.int32)
    text = pa.StringArray.from_buffers(len(keep), pa.py_buffer(offsets), pa.py_buffer(chars))
    table = np.full(len(uniq) + 1, None, dtype=object)  # + 1: code -1 (none) takes the last
    table[keep] = text.to_numpy(zero_copy_only=False)
    return table[codes]


def _parse_block(u: np.ndarray, today_int: int) -> list[np.ndarray]:
    n = len(u)
    out = [np.full(n, None, dtype=object) for _ in range(_N_COLS)]
    out[2] = np.full(n, -1, dtype=np.int64)  # birth date as YYYYMMDD
    out[5] = np.full(n, -1, dtype=np.int64)  # region code as an int
    out[8] = np.full(n, -1, dtype=np.int64)  # birth date digits of any 18-digit number, if a real date
    value, problem, birth, _, sex, region, cat, grade, lenient = out
    if n == 0:
        return out

    # Fast path: plain 18-character ASCII numbers, checked without a Python loop.
    lens = np.fromiter((len(x) if type(x) is str else -1 for x in u), dtype=np.int64, count=n)
    idx18 = np.flatnonzero(lens == 18)
    fast = np.zeros(n, dtype=bool)
    mats, rows = [], []
    if idx18.size:
        m = u[idx18].astype("U18").view(np.uint32).reshape(-1, 18)
        head, last = m[:, :17], m[:, 17]
        ok = ((head >= _ORD0) & (head <= _ORD9)).all(axis=1) & (
            ((last >= _ORD0) & (last <= _ORD9)) | (last == _ORD_X) | (last == _ORD_x))
        if ok.any():
            mats.append(m[ok])
            rows.append(idx18[ok])
            fast[idx18[ok]] = True
            value[idx18[ok]] = u[idx18[ok]]

    # Everything else: cleaned once per distinct value.
    slow = np.flatnonzero(~fast)
    pre_rule = np.zeros(0, dtype=np.int64)
    if slow.size:
        codes, uniq = pd.factorize(u[slow], use_na_sentinel=True)
        res = [_clean_slow(x) for x in uniq] + [(None, None, None, None, None)]
        cand_u, val_u, rule_u, cat_u, grade_u = (np.array(col, dtype=object) for col in zip(*res, strict=True))
        has_cand = np.array([c is not None for c in cand_u], dtype=bool)
        value[slow] = val_u[codes]
        problem[slow] = rule_u[codes]
        cat[slow] = cat_u[codes]
        grade[slow] = grade_u[codes]
        row_has = has_cand[codes]
        if row_has.any():
            cand_codes = codes[row_has]
            cand_rows = slow[row_has]
            cand_m = np.array([c or "" for c in cand_u], dtype="U18").view(np.uint32).reshape(-1, 18)
            mats.append(cand_m[cand_codes])
            rows.append(cand_rows)
            value[cand_rows] = cand_u[cand_codes]
            pre_rule = cand_rows[pd.notna(rule_u[cand_codes])]
    if not mats:
        return out

    m = np.concatenate(mats) if len(mats) > 1 else mats[0]
    r = np.concatenate(rows) if len(rows) > 1 else rows[0]
    lower_x = np.flatnonzero(m[:, 17] == _ORD_x)
    if lower_x.size:
        m[lower_x, 17] = _ORD_X
        value[r[lower_x]] = [str(x).upper() for x in value[r[lower_x]]]
    code, d, date_ok = _validate(m, today_int)
    flagged = code != 0
    if pre_rule.size:  # "characters" beats every other finding
        keep = np.isin(r, pre_rule)
        flagged &= ~keep
        good = (code == 0) & ~keep
        date_ok &= ~keep
    else:
        good = code == 0
    problem[r[flagged]] = _CODE_RULES[code[flagged]]
    if date_ok.any():
        dl = d[date_ok]
        lenient[r[date_ok]] = dl[:, 6] * 10_000_000 + dl[:, 7] * 1_000_000 + dl[:, 8] * 100_000 \
            + dl[:, 9] * 10_000 + dl[:, 10] * 1000 + dl[:, 11] * 100 + dl[:, 12] * 10 + dl[:, 13]
    if good.any():
        dg, rg = d[good], r[good]
        ymd = dg[:, 6] * 10_000_000 + dg[:, 7] * 1_000_000 + dg[:, 8] * 100_000 + dg[:, 9] * 10_000 \
            + dg[:, 10] * 1000 + dg[:, 11] * 100 + dg[:, 12] * 10 + dg[:, 13]
        birth[rg] = ymd
        region[rg] = dg[:, 0] * 100_000 + dg[:, 1] * 10_000 + dg[:, 2] * 1000 + dg[:, 3] * 100 \
            + dg[:, 4] * 10 + dg[:, 5]
        sex[rg] = np.where(dg[:, 16] % 2 == 1, "M", "F").astype(object)
    bad = r[~good]
    cat[bad] = None
    grade[bad] = None
    return out


def _object_array(values: Sequence[object] | np.ndarray) -> np.ndarray:
    """``values`` as a 1-D object array (no copy when it already is one)."""
    if isinstance(values, np.ndarray) and values.dtype == object and values.ndim == 1:
        return values
    u = np.empty(len(values), dtype=object)
    u[:] = list(values)
    return u


def id_problems(values: Sequence[object] | np.ndarray, *, today: date | None = None) -> np.ndarray:
    """The ``problem`` column of :func:`parse_ids` alone (None where the number is valid):
    the same checks, without formatting the derived columns."""
    u = _object_array(values)
    today_int = _today_int(today)
    return np.concatenate([_parse_block(u[i:i + _BLOCK], today_int)[1] for i in range(0, max(len(u), 1), _BLOCK)])


_REMAINDER = np.full(128, -1, dtype=np.int64)  # check character (code point) -> the remainder it stands for
_REMAINDER[[ord(c) for c in CHECK_CHARS]] = np.arange(11)


def check_fails(values: list[str]) -> np.ndarray:
    """Per value: 17 ASCII digits and a check character that does not pass MOD 11-2 (vectorised;
    4 bytes a character, no (n, 17) int64 temporaries)."""
    u = np.asarray(values, dtype="U18")
    n = len(u)
    if n == 0:
        return np.zeros(0, dtype=bool)
    cp = u.view(np.uint32).reshape(n, 18)
    shape = np.fromiter((len(v) == 18 for v in values), dtype=bool, count=n)
    digits = cp[:, :17].astype(np.int32)
    digits -= 48
    shape &= ((digits >= 0) & (digits <= 9)).all(axis=1) & (cp[:, 17] < 128)
    want = _REMAINDER[np.minimum(cp[:, 17], 127)]
    shape &= want >= 0
    # code points below 0x110000: a row's weighted sum stays far inside int32 even where it is no digit
    total = (digits @ _W) % 11
    return shape & (total != want)


def ids_valid(values: Sequence[object] | np.ndarray, *, today: date | None = None) -> np.ndarray:
    """Whether each value is a valid ID number: ``pd.isna(id_problems(values))``, quicker for
    values already in canonical form (``[0-9]{17}[0-9X]``, as a normalised column holds them),
    which are checked as one matrix without the per-value columns of :func:`parse_ids`."""
    u = _object_array(values)
    ok = np.zeros(len(u), dtype=bool)
    if not len(u):
        return ok
    try:
        text = pa.array(u, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a cell that is not text: every value the slow way
        text = None
    canonical = (np.zeros(len(u), dtype=bool) if text is None else
                 pc.match_substring_regex(text, "^[0-9]{17}[0-9X]$").fill_null(False).to_numpy(zero_copy_only=False))
    fast = np.flatnonzero(canonical)
    if len(fast):
        m = u[fast].astype("U18").view(np.uint32).reshape(-1, 18)
        ok[fast] = _validate(m, _today_int(today))[0] == 0
    slow = np.flatnonzero(~canonical)
    if len(slow):
        ok[slow] = pd.isna(id_problems(u[slow], today=today))
    return ok


def parse_ids(values: Sequence[object] | np.ndarray, *, today: date | None = None) -> IdBatch:
    """Clean and check many cells at once (one result per input, in order).

    Plain 18-character ASCII numbers go through numpy without a Python loop;
    everything else is cleaned once per distinct value, then checked the same way.
    """
    u = _object_array(values)
    today_int = _today_int(today)
    parts = [_parse_block(u[i:i + _BLOCK], today_int) for i in range(0, max(len(u), 1), _BLOCK)]
    cols = [np.concatenate([p[k] for p in parts]) for k in range(_N_COLS)]
    ymd, region, lenient = cols[2], cols[5], cols[8]
    return IdBatch(
        value=cols[0], problem=cols[1],
        birth_date=_format_digits(ymd, (4, 2, 2)),
        birth_year=_format_digits(np.where(ymd < 0, -1, ymd // 10_000), (4,)),
        sex=cols[4],
        region_code=_format_digits(region, (6,)),
        disability_category_digit=cols[6], disability_grade_digit=cols[7],
        salt_year=_format_digits(np.where(lenient < 0, -1, lenient // 10_000), (4,)),
    )
