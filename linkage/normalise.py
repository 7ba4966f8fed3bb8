"""Normalisation: the values every agency must write the same way before encoding.

Public surface:

* :data:`NORMALISERS` -- the normaliser names a linkage schema may use;
* :data:`RULES` -- rule id -> plain-English description of every problem flag;
* :class:`NormalisedColumn` and :func:`normalise_column` -- one column;
* :func:`derive_column` -- a companion column (pinyin of a name, birth date of
  an ID number, year of a date ...);
* :func:`normalise_records` -- a whole mapped export against a schema, with
  derivation, returning the normalised frame and one problem row per flagged
  cell.

Every normaliser works per *distinct* value (``pd.factorize``, normalise the
uniques, take back by codes); ID numbers, where every value is distinct, are
checked with numpy (:mod:`linkage.idnumber`).  Normalisers only flag: a
flagged value is kept wherever it can still help matching (an invalid ID
number keeps its digits) and dropped only where it means nothing (an
unparseable date).  Problem flags name a rule, never a value.

Normalising twice changes nothing; the output is always None or a str.
Bump ``NORMALISER_VERSION`` (linkage/versions.py) whenever an output can change.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from importlib import metadata

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import _cjk
from . import idnumber as _id
from ._bits.memo import ValueMemo
from ._cjk import HAN, MIDDLE_DOT, cell_text, fold, is_null_marker
from .errors import SchemaMismatchError
from .schema import LinkageSchema

NORMALISERS: tuple[str, ...] = (
    "chinese_name", "pinyin", "id_number", "date", "year", "sex", "phone", "address",
    "region_code", "text", "digits",
)
DERIVATIONS: tuple[str, ...] = ("pinyin", "birth_date", "birth_year", "sex", "region_code", "year", "salt_year")

#: Version of the pinyin reading table (the installed pypinyin), for the fingerprint.
PINYIN_TABLE_VERSION: str = metadata.version("pypinyin")

RULES: dict[str, str] = {
    **_id.RULES,
    "name.no_han": "the name holds no Chinese (Han) character",
    "pinyin.no_letters": "no pinyin could be made: the value holds neither Han characters nor Latin letters",
    "date.unparseable": "the date is in no recognised format or is not a real calendar date",
    "date.out_of_range": "the date is before 1900-01-01 or in the future",
    "year.unparseable": "the year is neither a four-digit year nor a recognised date",
    "year.out_of_range": "the year is before 1900 or in the future",
    "sex.unknown": "the sex code is not one of 男/女, M/F, male/female, 1/2 (GB/T 2261.1)",
    "phone.not_mobile": "not an 11-digit mainland mobile number (kept as digits: landlines still match exactly)",
    "region_code.format": "the region code is not six digits",
    "digits.no_digits": "the value holds no digit",
}

_Result = tuple[str | None, str | None]  # (value, rule)


@dataclass(frozen=True)
class NormalisedColumn:
    """One normalised column.

    ``values``: object Series of normalised str or None (missing), same index as
    the input.  ``problems``: None where fine, else a rule id from :data:`RULES`.
    ``extra``: derived companions (``display`` for names; ``birth_date``,
    ``sex``, ``region_code``, ``disability_category_digit``,
    ``disability_grade_digit`` for ID numbers -- None where the ID is not valid).
    """

    values: pd.Series
    problems: pd.Series
    extra: dict[str, pd.Series] = field(default_factory=dict)


# ------------------------------------------------------------------ plumbing


def _as_series(values: object) -> pd.Series:
    if isinstance(values, pd.Series):
        return values
    return pd.Series(values, dtype=object)


def _factorize(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(codes, object uniques); None, NaN, NaT and pd.NA all get code -1."""
    codes, uniques = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=True)
    return codes, np.asarray(uniques, dtype=object)


def _extend(per_unique: np.ndarray) -> np.ndarray:
    """Per-unique results with a trailing None, so that code -1 (missing) takes None."""
    ext = np.empty(len(per_unique) + 1, dtype=object)
    ext[:-1] = per_unique
    ext[-1] = None
    return ext


def _take(per_unique: np.ndarray, codes: np.ndarray, like: pd.Series) -> pd.Series:
    """Per-unique results back to rows; code -1 (missing) -> None."""
    return _wrap(_extend(per_unique)[codes], like)


def _wrap(arr: np.ndarray, like: pd.Series) -> pd.Series:
    return pd.Series(arr, index=like.index, dtype=object, name=like.name, copy=False)


_MEMO: ContextVar[ValueMemo | None] = ContextVar("aidlink_normalise_memo", default=None)


@contextmanager
def memo_scope(memo: ValueMemo) -> Iterator[None]:
    """Inside the block, the slow paths -- addresses (some 20 us a distinct
    value), names and their pinyin that are not plain Han (names with a middle
    dot) -- take the result for a value seen before from ``memo``, one run's
    (an export normalised chunk by chunk), dropped with it.  The bulk paths are
    cheaper than a look-up and do not use it.  Results are the same with or
    without it."""
    token = _MEMO.set(memo)
    try:
        yield
    finally:
        _MEMO.reset(token)


def _memoised(kind: str):
    """Route ``fn(uniques, *args)`` through the memo in scope (``kind`` and ``args`` key it)."""
    def wrap(fn):
        def run(uniques: np.ndarray, *args):
            memo = _MEMO.get()
            if memo is None:
                return fn(uniques, *args)
            return memo.apply((kind, *args), uniques, lambda u: fn(u, *args))
        run.__doc__ = fn.__doc__
        return run
    return wrap


def _memoised_one(kind: str):
    """Route a one-value ``fn(v)`` through the memo in scope."""
    def wrap(fn):
        def run(v: object):
            memo = _MEMO.get()
            return fn(v) if memo is None else memo.one(kind, v, fn)
        run.__doc__ = fn.__doc__
        return run
    return wrap


def _per_unique(uniques: np.ndarray, fn: Callable[[object], tuple], width: int) -> list[np.ndarray]:
    """Apply ``fn`` (returning a ``width``-tuple) to every unique value."""
    out = [np.empty(len(uniques), dtype=object) for _ in range(width)]
    for i, u in enumerate(uniques):
        res = fn(u)
        for k in range(width):
            out[k][i] = res[k]
    return out


def _settle(fn: Callable[[str], str | None], s: str) -> str | None:
    """Apply a string -> string cleaning until it stops changing (bounded)."""
    cur: str | None = fn(s)
    for _ in range(4):
        if cur is None:
            return None
        nxt = fn(cur)
        if nxt == cur:
            break
        cur = nxt
    return cur


def _text_of(v: object) -> str | None:
    """Cell -> folded text (NFKC, lower, trimmed, one space), None when missing."""
    t = cell_text(v)
    if t is None:
        return None
    s = fold(t)
    return None if is_null_marker(s) else s


# --------------------------------------------------------------- chinese_name


def _name_clean(s: str) -> str:
    """Fold, unify dots, drop every non-letter/digit except U+00B7 (not simplified yet)."""
    s = fold(s).replace(" ", "")
    return _cjk.keep_word_chars(_cjk.unify_dots(s), keep=MIDDLE_DOT)


def _name_value(s: str) -> str | None:
    """One pass towards the matching value: cleaned, dots dropped, simplified."""
    return _cjk.to_simplified(_name_clean(s).replace(MIDDLE_DOT, "")) or None


def _name_core(s: str) -> tuple[str | None, list[str]]:
    """(dot-less simplified value, dot-separated segments for display) of folded text."""
    segments = [seg for seg in (_settle(_name_clean, s) or "").split(MIDDLE_DOT) if seg]
    return _settle(_name_value, s), segments


_ALL_HAN = re.compile(f"[{_cjk.HAN_CLASS}]+")


def _names(uniques: np.ndarray) -> list[np.ndarray]:
    """``_name_one`` of every unique value, in bulk where a value is plain Han
    (``fold`` leaves it alone): one OpenCC call for all of them."""
    vals, probs, display = (np.full(len(uniques), None, dtype=object) for _ in range(3))
    idx = np.flatnonzero(np.fromiter((type(u) is str for u in uniques), dtype=bool, count=len(uniques)))
    strs = uniques[idx].tolist()
    plain = _cjk.plain_han_mask(strs) if strs else np.zeros(0, dtype=bool)
    fast = idx[plain]
    fast_strs = [s for s, p in zip(strs, plain.tolist(), strict=True) if p]
    if fast_strs and not unicodedata.is_normalized("NFKC", "".join(fast_strs)):  # pragma: no cover
        fast, fast_strs = fast[:0], []
    rest = np.ones(len(uniques), dtype=bool)
    simplified = _cjk.to_simplified_many(fast_strs)
    for i, s, value in zip(fast.tolist(), fast_strs, simplified, strict=True):
        if s in _cjk.NULL_MARKERS:
            continue
        if value == s or (_ALL_HAN.fullmatch(value) and unicodedata.is_normalized("NFKC", value)):
            vals[i] = display[i] = value
            rest[i] = False
    for i in np.flatnonzero(rest).tolist():
        vals[i], probs[i], display[i] = _name_one(uniques[i])
    return [vals, probs, display]


@_memoised_one("chinese_name")
def _name_one(v: object) -> tuple[str | None, str | None, str | None]:
    s = _text_of(v)
    if s is None:
        return None, None, None
    if _ALL_HAN.fullmatch(s):  # the common case: nothing to clean
        value = _cjk.to_simplified(s)
        if value == s or (_ALL_HAN.fullmatch(value) and unicodedata.is_normalized("NFKC", value)):
            return value, None, value
    value, segments = _name_core(s)
    if value is None:
        return None, None, None
    if len(segments) == 1:
        display = value
    else:
        display = MIDDLE_DOT.join(_cjk.to_simplified(seg) for seg in segments)
    rule = None if HAN.search(value) else "name.no_han"
    return value, rule, display


# --------------------------------------------------------------------- pinyin

_U_UMLAUT = re.compile("[üǖǘǚǜ]")
_NOT_ASCII_OR_HAN = re.compile(f"[^\x00-\x7f{_cjk.HAN_CLASS}]")


def _latin_prep(s: str) -> str:
    """ü (and ``u:``) -> v, tone marks and other diacritics dropped (Han untouched)."""
    if "u:" in s:
        s = s.replace("u:", "v")
    if s.isascii() or not _NOT_ASCII_OR_HAN.search(s):
        return s
    s = _U_UMLAUT.sub("v", s)
    return "".join(ch for ch in unicodedata.normalize("NFD", s) if unicodedata.category(ch) != "Mn")


def _pinyin_of_text(s: str) -> str | None:
    """Toneless pinyin of folded text: Han -> per-character reading (surname table
    for the first characters), Latin runs -> split into syllables, rest dropped."""
    s = _latin_prep(s)
    tokens: list[str] = []
    start = 0
    if s and HAN.match(s):
        hit = _cjk.surname_prefix(s)
        if hit is not None:
            start = hit[0]
            tokens.extend(hit[1])
        if _ALL_HAN.fullmatch(s):  # the common case
            table = _cjk.CHAR_PINYIN
            for ch in s[start:]:
                py = table.get(ch)
                if py is None:
                    py = _cjk.char_pinyin(ch)
                if py:
                    tokens.append(py)
            return " ".join(tokens) or None
    word: list[str] = []
    for ch in s[start:]:
        if "a" <= ch <= "z":
            word.append(ch)
            continue
        if word:
            tokens.extend(_cjk.segment_pinyin("".join(word)))
            word = []
        if HAN.match(ch):
            py = _cjk.char_pinyin(ch)
            if py:
                tokens.append(py)
    if word:
        tokens.extend(_cjk.segment_pinyin("".join(word)))
    return " ".join(tokens) or None


@_memoised_one("pinyin_of_name")
def _pinyin_of_name_value(v: object) -> tuple[str | None]:
    return (None,) if v is None else (_pinyin_of_text(str(v)),)


def _pinyin_of_name_values(values: np.ndarray) -> np.ndarray:
    """``_pinyin_of_name_value`` of every value; plain-Han names in bulk."""
    out = np.full(len(values), None, dtype=object)
    idx = np.flatnonzero(np.fromiter((type(v) is str for v in values), dtype=bool, count=len(values)))
    strs = values[idx].tolist()
    plain = _cjk.plain_han_mask(strs) if strs else np.zeros(0, dtype=bool)
    out[idx[plain]] = _cjk.pinyin_of_han_names([s for s, p in zip(strs, plain.tolist(), strict=True) if p])
    for i in idx[~plain].tolist():
        (out[i],) = _pinyin_of_name_value(values[i])
    for i in np.flatnonzero(np.fromiter((v is not None and type(v) is not str for v in values), dtype=bool,
                                        count=len(values))).tolist():
        (out[i],) = _pinyin_of_name_value(values[i])
    return out


def _pinyin_one(v: object) -> _Result:
    s = _text_of(v)
    if s is None:
        return None, None
    if HAN.search(s):
        value, _ = _name_core(s)
        out = _pinyin_of_text(value) if value else None
    else:
        out = _pinyin_of_text(s)
    return (out, None) if out else (None, "pinyin.no_letters")


# ------------------------------------------------------------------ dates

_DATE_YMD = re.compile(
    r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*[日号]?"
    r"(?:\s*t?\s*\d{1,2}[:时]\d{1,2}(?:[:分]\d{1,2}(?:\.\d+)?秒?)?\s*(?:z|[+-]\d{2}:?\d{2})?)?",
    re.ASCII,
)
_DATE_8 = re.compile(r"(\d{4})(\d{2})(\d{2})", re.ASCII)
_SERIAL = re.compile(r"\d{1,5}(?:\.\d+)?", re.ASCII)
_YEAR = re.compile(r"(\d{4})(?:\.0+)?\s*年?", re.ASCII)
_EARLIEST = date(1900, 1, 1)
_EXCEL_MAX = 80000
_MISSING = object()


def _excel_serial(x: float) -> date | None:
    """1900 date system: 1 = 1900-01-01; 60 is Excel's phantom 1900-02-29."""
    if not (1 <= x < _EXCEL_MAX):
        return None
    n = math.floor(x)
    if n == 60:
        return None
    if n < 60:
        return date(1899, 12, 31) + timedelta(days=n)
    return date(1899, 12, 30) + timedelta(days=n)


def _ymd(y: str | int, m: str | int, d: str | int) -> date | None:
    try:
        return date(int(y), int(m), int(d))
    except ValueError:
        return None


def _date_from_number(x: float) -> date | None:
    if not math.isfinite(x):
        return None
    if x.is_integer() and 19000101 <= x <= 99991231:
        n = int(x)
        return _ymd(n // 10000, n // 100 % 100, n % 100)
    return _excel_serial(x)


def _parse_date(v: object) -> object:
    """A date, None (unparseable) or _MISSING; no range check."""
    if v is None or v is pd.NaT:
        return _MISSING
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    if isinstance(v, np.datetime64):
        if np.isnat(v):
            return _MISSING
        try:
            return pd.Timestamp(v).date()
        except (ValueError, OverflowError):
            return None
    if isinstance(v, bool | np.bool_):
        return None
    if isinstance(v, int | float | np.integer | np.floating | Decimal):
        if isinstance(v, float | np.floating | Decimal) and v != v:  # NaN
            return _MISSING
        return _date_from_number(float(v))
    s = _text_of(v)
    if s is None:
        return _MISSING
    m = _DATE_YMD.fullmatch(s)
    if m:
        return _ymd(*m.groups())
    m = _DATE_8.fullmatch(s)
    if m:
        return _ymd(*m.groups())
    if len(s) >= 5 and _SERIAL.fullmatch(s):  # a serial number written out as text
        return _excel_serial(float(s))
    return None


def _date_one(v: object, today: date) -> _Result:
    d = _parse_date(v)
    if d is _MISSING:
        return None, None
    if d is None:
        return None, "date.unparseable"
    assert isinstance(d, date)
    if not (_EARLIEST <= d <= today):
        return None, "date.out_of_range"
    return d.isoformat(), None


# The common shapes of a date written as text, already as fold() leaves them
# (ASCII digits, no spaces): 1976-03-17, 1976/3/17, 1976.3.17, 1976年3月17日, 19760317.
_FAST_YMD = "^(?P<y>[0-9]{4})[-/.年](?P<m>[0-9]{1,2})[-/.月](?P<d>[0-9]{1,2})[日号]?$"
_FAST_8 = "^(?P<y>[0-9]{4})(?P<m>[0-9]{2})(?P<d>[0-9]{2})$"
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def _dates(uniques: np.ndarray, today: date) -> list[np.ndarray]:
    """``_date_one`` of every unique value; text in a common shape is parsed,
    checked and written with array operations, the rest value by value."""
    n = len(uniques)
    vals = np.full(n, None, dtype=object)
    probs = np.full(n, None, dtype=object)
    rest = np.ones(n, dtype=bool)
    idx = np.flatnonzero(np.fromiter((type(u) is str for u in uniques), dtype=bool, count=n))
    if len(idx):
        texts = pa.array(uniques[idx].tolist(), type=pa.string())
        ymd = np.zeros((len(idx), 3), dtype=np.int64)
        hit = np.zeros(len(idx), dtype=bool)
        for pattern in (_FAST_YMD, _FAST_8):
            todo = np.flatnonzero(~hit)
            if not len(todo):
                break
            got = pc.extract_regex(texts.take(pa.array(todo)), pattern=pattern)
            ok = got.is_valid().to_numpy(zero_copy_only=False)
            if not ok.any():
                continue
            got = got.filter(pa.array(ok))
            for k in range(3):
                ymd[todo[ok], k] = pc.cast(got.field(k), pa.int64()).to_numpy()
            hit[todo[ok]] = True
        y, m, d = ymd[hit].T
        leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
        mdays = _MONTH_DAYS[np.clip(m, 0, 12)] + ((m == 2) & leap)
        real = (y >= 1) & (m >= 1) & (m <= 12) & (d >= 1) & (d <= mdays)
        key = y * 10000 + m * 100 + d
        lo = _EARLIEST.year * 10000 + _EARLIEST.month * 100 + _EARLIEST.day
        hi = today.year * 10000 + today.month * 100 + today.day
        inside = real & (key >= lo) & (key <= hi)
        where = idx[hit]
        probs[where[~real]] = "date.unparseable"
        probs[where[real & ~inside]] = "date.out_of_range"
        if inside.any():
            days = (np.array(y[inside] - 1970, dtype="datetime64[Y]").astype("datetime64[M]")
                    + (m[inside] - 1)).astype("datetime64[D]") + (d[inside] - 1)
            vals[where[inside]] = np.datetime_as_string(days, unit="D").astype(object)
        rest[where] = False
    for i in np.flatnonzero(rest).tolist():
        vals[i], probs[i] = _date_one(uniques[i], today)
    return [vals, probs]


def _year_one(v: object, today: date) -> _Result:
    y: int | None = None
    if isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_) and 1000 <= v <= 9999:
        y = int(v)
    elif isinstance(v, float | np.floating) and math.isfinite(v) and v.is_integer() and 1000 <= v <= 9999:
        y = int(v)
    elif isinstance(v, str):
        s = _text_of(v)
        if s is None:
            return None, None
        m = _YEAR.fullmatch(s)
        if m:
            y = int(m.group(1))
    if y is None:
        d = _parse_date(v)
        if d is _MISSING:
            return None, None
        if d is None:
            return None, "year.unparseable"
        assert isinstance(d, date)
        y = d.year
    if not (_EARLIEST.year <= y <= today.year):
        return None, "year.out_of_range"
    return f"{y:04d}", None


# ------------------------------------------------------------------ sex

_MALE = frozenset({"男", "男性", "男士", "m", "male", "man", "1"})
_FEMALE = frozenset({"女", "女性", "女士", "f", "female", "woman", "2"})


def _sex_one(v: object) -> _Result:
    s = _text_of(v)
    if s is None:
        return None, None
    s = s.replace(" ", "")
    if s in _MALE:
        return "M", None
    if s in _FEMALE:
        return "F", None
    return None, "sex.unknown"


# ------------------------------------------------------------------ phone

_MOBILE = re.compile(r"1[3-9][0-9]{9}")
_NOT_DIGIT = re.compile(r"[^0-9]")
_TRAILING_ZERO_DECIMAL = re.compile(r"([0-9]+)\.0+")


def _phone_one(v: object) -> _Result:
    s = _text_of(v)
    if s is None:
        return None, None
    m = _TRAILING_ZERO_DECIMAL.fullmatch(s)
    if m:
        s = m.group(1)
    d = _NOT_DIGIT.sub("", s)
    if not d:
        return None, "phone.not_mobile"
    for prefix in ("0086", "86", "0"):
        rest = d[len(prefix):]
        if d.startswith(prefix) and len(rest) == 11 and _MOBILE.fullmatch(rest):
            d = rest
            break
    return (d, None) if _MOBILE.fullmatch(d) else (d, "phone.not_mobile")


def _phone_rows(obj: np.ndarray) -> list[np.ndarray]:
    """Plain 11-digit mobiles are checked row by row with numpy; the rest are
    cleaned once per distinct value."""
    n = len(obj)
    value = np.full(n, None, dtype=object)
    rule = np.full(n, None, dtype=object)
    fast = np.zeros(n, dtype=bool)
    lens = np.fromiter((len(x) if type(x) is str else -1 for x in obj), dtype=np.int64, count=n)
    idx = np.flatnonzero(lens == 11)
    if idx.size:
        m = obj[idx].astype("U11").view(np.uint32).reshape(-1, 11)
        ok = ((m >= 48) & (m <= 57)).all(axis=1) & (m[:, 0] == 49) & (m[:, 1] >= 51)
        value[idx[ok]] = obj[idx[ok]]
        fast[idx[ok]] = True
    slow = np.flatnonzero(~fast)
    if slow.size:
        codes, uniques = pd.factorize(obj[slow], use_na_sentinel=True)
        vals, rules = _per_unique(np.asarray(uniques, dtype=object), _phone_one, 2)
        value[slow] = _extend(vals)[codes]
        rule[slow] = _extend(rules)[codes]
    return [value, rule]


# ------------------------------------------------------------------ address

_DIGIT_HYPHEN = re.compile("(?<=[0-9])[-\u2010\u2011\u2012\u2013\u2014\u2015\u2212]+(?=[0-9])")
_STRAY_HYPHEN = re.compile("-(?![0-9])|(?<![0-9])-")
_HASH_NUMBER = re.compile("(?<=[0-9零〇一二两三四五六七八九十百千])#")


def _address_pass(s: str) -> str | None:
    s = fold(s).replace(" ", "")
    if "#" in s:
        s = _HASH_NUMBER.sub("号", s)
    s = _DIGIT_HYPHEN.sub("-", s)
    s = _cjk.keep_word_chars(s, keep="-")
    if "-" in s:
        s = _STRAY_HYPHEN.sub("", s)
    s = _cjk.to_simplified(s)
    s = _cjk.arabic_numerals(s)
    s = _cjk.strip_admin_prefixes(s)
    return s or None


def _address_passes(texts: list[str]) -> list[str | None]:
    """``_address_pass`` of every text.  The per-character steps run once over
    all texts joined by newlines: ``fold`` leaves no newline in a text, and no
    step matches across one (each pattern's context is a digit, a numeral or a
    unit word, and the word-character filter keeps the newline)."""
    joined = "\n".join(fold(t).replace(" ", "") for t in texts)
    if "#" in joined:
        joined = _HASH_NUMBER.sub("号", joined)
    joined = _DIGIT_HYPHEN.sub("-", joined)
    joined = _cjk.keep_word_chars(joined, keep="-\n")
    if "-" in joined:
        joined = _STRAY_HYPHEN.sub("", joined)
    parts = _cjk.to_simplified_many(joined.split("\n"))
    parts = _cjk.arabic_numerals("\n".join(parts)).split("\n")
    if len(parts) != len(texts):  # pragma: no cover - defensive
        return [_address_pass(t) for t in texts]
    return [_cjk.strip_admin_prefixes(p) or None for p in parts]


@_memoised("address")
def _addresses(uniques: np.ndarray) -> list[np.ndarray]:
    """``_address_one`` of every unique value: ``_settle`` run in rounds over
    all values still changing."""
    vals = np.full(len(uniques), None, dtype=object)
    texts = [_text_of(u) for u in uniques]
    active = [i for i, t in enumerate(texts) if t is not None]
    cur: list[str | None] = list(texts)
    for i, out in zip(active, _address_passes([texts[i] for i in active]), strict=True):
        cur[i] = out
    active = [i for i in active if cur[i] is not None]
    for _ in range(4):
        if not active:
            break
        nxt = _address_passes([cur[i] for i in active])  # type: ignore[misc]
        still = []
        for i, x in zip(active, nxt, strict=True):
            if x != cur[i]:
                cur[i] = x
                if x is not None:
                    still.append(i)
        active = still
    for i in range(len(uniques)):
        if texts[i] is not None:
            vals[i] = cur[i]
    return [vals, np.full(len(uniques), None, dtype=object)]


def _address_one(v: object) -> _Result:
    s = _text_of(v)
    if s is None:
        return None, None
    return _settle(_address_pass, s), None


# ------------------------------------------------------- region_code, text, digits

_SIX_DIGITS = re.compile(r"[0-9]{6}")


def _region_one(v: object) -> _Result:
    s = _text_of(v)
    if s is None:
        return None, None
    s = s.replace(" ", "")
    return (s, None) if _SIX_DIGITS.fullmatch(s) else (None, "region_code.format")


def _text_one(v: object) -> _Result:
    return _text_of(v), None


def _digits_one(v: object) -> _Result:
    s = _text_of(v)
    if s is None:
        return None, None
    d = _NOT_DIGIT.sub("", s)
    return (d, None) if d else (None, "digits.no_digits")


# ------------------------------------------------------------------ public API

_SIMPLE: dict[str, Callable[[object], _Result]] = {
    "pinyin": _pinyin_one,
    "sex": _sex_one,
    "address": _address_one,
    "region_code": _region_one,
    "text": _text_one,
    "digits": _digits_one,
}


@dataclass(frozen=True)
class _Factors:
    """How a column's values were produced: ``values == per_unique[codes]``
    (code -1 -> None).  Lets a derivation work per distinct value too."""

    codes: np.ndarray
    per_unique: np.ndarray


def _normalise(normaliser: str, values: pd.Series) -> tuple[NormalisedColumn, _Factors | None]:
    if normaliser not in NORMALISERS:
        raise ValueError(f"unknown normaliser {normaliser!r}; expected one of {', '.join(NORMALISERS)}")
    values = _as_series(values)
    if normaliser == "id_number":  # (nearly) all distinct: row-wise with numpy
        b = _id.parse_ids(values.to_numpy(dtype=object))
        extra = {"birth_date": b.birth_date, "birth_year": b.birth_year, "sex": b.sex,
                 "region_code": b.region_code, "salt_year": b.salt_year,
                 "disability_category_digit": b.disability_category_digit,
                 "disability_grade_digit": b.disability_grade_digit}
        col = NormalisedColumn(_wrap(b.value, values), _wrap(b.problem, values),
                               {k: _wrap(a, values) for k, a in extra.items()})
        return col, None
    if normaliser == "phone":
        vals, probs = _phone_rows(values.to_numpy(dtype=object))
        return NormalisedColumn(_wrap(vals, values), _wrap(probs, values), {}), None
    codes, uniques = _factorize(values)
    extras: dict[str, np.ndarray] = {}
    if normaliser == "chinese_name":
        vals, probs, display = _names(uniques)
        extras["display"] = display
    elif normaliser == "date":
        vals, probs = _dates(uniques, date.today())
    elif normaliser == "address":
        vals, probs = _addresses(uniques)
    elif normaliser == "year":
        today = date.today()
        vals, probs = _per_unique(uniques, lambda v: _year_one(v, today), 2)
    else:
        vals, probs = _per_unique(uniques, _SIMPLE[normaliser], 2)
    col = NormalisedColumn(
        values=_take(vals, codes, values),
        problems=_take(probs, codes, values),
        extra={k: _take(a, codes, values) for k, a in extras.items()},
    )
    return col, _Factors(codes, vals)


def normalise_column(normaliser: str, values: pd.Series) -> NormalisedColumn:
    """Normalise one column with the named normaliser (one of :data:`NORMALISERS`).

    ``values`` may hold str, numbers, dates/timestamps or missing markers (None,
    NaN, NaT, pd.NA); the result has the same index and length.
    """
    return _normalise(normaliser, values)[0]


def _map_values(series: pd.Series, fn: Callable[[object], tuple]) -> pd.Series:
    codes, uniques = _factorize(series)
    (out,) = _per_unique(uniques, fn, 1)
    return _take(out, codes, series)


def _year_prefix(v: object) -> tuple[str | None]:
    return (None,) if v is None else (str(v)[:4],)


def derive_column(via: str, source: NormalisedColumn) -> pd.Series:
    """A companion column from an already-normalised source column.

    ``pinyin``: toneless pinyin of a ``chinese_name`` column; ``birth_date``,
    ``birth_year``, ``sex``, ``region_code``: from a valid ``id_number``;
    ``salt_year``: the year in the birth-date digits of an ``id_number`` that
    fails another check (a typo elsewhere), as well as of a valid one -- for a
    salt only; ``year``: year of a ``date`` column.  None wherever the source gives nothing.
    """
    return _derive(via, source, None)


def _derive(via: str, source: NormalisedColumn, factors: _Factors | None) -> pd.Series:
    if via not in DERIVATIONS:
        raise ValueError(f"unknown derivation {via!r}; expected one of {', '.join(DERIVATIONS)}")
    if via == "pinyin":
        if factors is not None:
            return _take(_pinyin_of_name_values(factors.per_unique), factors.codes, source.values)
        codes, uniques = _factorize(source.values)
        return _take(_pinyin_of_name_values(uniques), codes, source.values)
    if via == "year":
        if "birth_date" in source.extra:
            raise ValueError("cannot derive year from an id_number column: use birth_year")
        return _map_values(source.values, _year_prefix)
    if via not in source.extra:
        raise ValueError(f"cannot derive {via}: the source column is not an id_number column")
    return source.extra[via].copy()


def normalise_records(frame: pd.DataFrame, schema: LinkageSchema) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Normalise a mapped export (columns named by schema field names).

    Returns the normalised frame -- every schema field as an object column,
    None for missing, same index as ``frame`` -- and the problems frame with
    columns ``row`` (position in ``frame``), ``column`` (field name) and
    ``rule`` (rule id), one row per flagged cell, ordered by row then field.
    A field that is absent from ``frame`` is all missing.  A field with
    ``derive`` is filled, where missing, from its source field's normalised
    value (a birth date only from a valid ID number); a ``derive`` array is
    tried step by step, each filling what the earlier ones left missing.
    """
    columns = list(frame.columns)
    for f in schema.fields:
        if columns.count(f.name) > 1:
            raise SchemaMismatchError(f"the export has more than one column named {f.name!r}")
    done: dict[str, NormalisedColumn] = {}
    out: dict[str, np.ndarray] = {}
    prob_rows: list[np.ndarray] = []
    prob_cols: list[np.ndarray] = []
    prob_rules: list[np.ndarray] = []
    factors: dict[str, _Factors | None] = {}
    absent = pd.Series(np.full(len(frame), None, dtype=object), index=frame.index, dtype=object)
    for pos, f in enumerate(schema.fields):
        raw = frame[f.name] if f.name in frame.columns else absent
        col, factors[f.name] = _normalise(f.normaliser, raw)
        for derive_from, derive_via in f.derive_chain:
            factors[f.name] = None
            vals = col.values.to_numpy(dtype=object)
            gap = pd.isna(vals) if len(vals) else np.zeros(0, dtype=bool)
            if not gap.any():
                break
            derived = _derive(derive_via, done[derive_from], factors[derive_from])
            vals = vals.copy()
            vals[gap] = derived.to_numpy(dtype=object)[gap]
            col = NormalisedColumn(pd.Series(vals, index=frame.index, dtype=object), col.problems, col.extra)
        done[f.name] = col
        out[f.name] = col.values.to_numpy(dtype=object)
        probs = col.problems.to_numpy(dtype=object)
        flagged = np.flatnonzero(pd.notna(probs)) if len(probs) else np.zeros(0, dtype=np.int64)
        if flagged.size:
            prob_rows.append(flagged)
            prob_cols.append(np.full(flagged.size, pos, dtype=np.int64))
            prob_rules.append(probs[flagged])
    normalised = pd.DataFrame(out, index=frame.index, columns=list(schema.field_names), dtype=object)
    if prob_rows:
        rows = np.concatenate(prob_rows)
        cols = np.concatenate(prob_cols)
        rules = np.concatenate(prob_rules)
        order = np.lexsort((cols, rows))
        names = np.array(schema.field_names, dtype=object)
        problems = pd.DataFrame({
            "row": rows[order].astype(np.int64),
            "column": names[cols[order]],
            "rule": rules[order],
        })
    else:
        problems = pd.DataFrame({"row": np.zeros(0, dtype=np.int64),
                                 "column": np.zeros(0, dtype=object),
                                 "rule": np.zeros(0, dtype=object)})
    return normalised, problems
