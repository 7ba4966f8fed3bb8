"""The error model: how each agency's export departs from the true values.

Every distortion is drawn at a rate fixed per dataset (:data:`ERROR_RATES`)
and every application is counted in a :class:`Tally` -- how many rows were
*eligible* for a kind of error (an ID ending in X for ``id_lower_x``, a name
with a character that has a homophone for ``name_homophone``) and how many
got it.  The counts go to ``truth/errors.json`` beside the rates, so a test
can check that ``applied / eligible`` is close to ``rate``.

Semantics of a rate: the probability that an eligible row gets that error.
The ID errors ``id_missing`` … ``id_excel_float`` are mutually exclusive (a
row gets at most one of them: the draw is one categorical); everything else
is an independent draw.

Renderers take numpy arrays and return object arrays of cell text; the bulk
work is vectorised and only the rows that get an error go through Python.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from synthetic.names import DOT_VARIANTS, HOMOPHONE_OF, MIDDLE_DOT, TRADITIONAL_OF


@dataclass(frozen=True)
class ErrorRates:
    """Per-dataset rates, each the probability that an eligible row gets the error."""

    # names
    name_homophone: float = 0.0      # one character replaced by a homophone (伟→玮)
    name_traditional: float = 0.0    # simplified characters written traditional (华→華)
    name_space: float = 0.0          # a space inside the name (张 伟, 张　伟)
    name_dot_variant: float = 0.0    # minority names: the middle dot typed otherwise (•, ., none)
    # ID numbers: one of these at most per row
    id_missing: float = 0.0          # empty
    id_digit: float = 0.0            # one digit changed
    id_swap: float = 0.0             # two adjacent digits swapped
    id_check: float = 0.0            # wrong check character
    id_legacy15: float = 0.0         # the old 15-digit form (born before 2000 only)
    id_excel_float: float = 0.0      # Excel turned it into 5.22199E+17
    # ID numbers: cosmetic, on top
    id_lower_x: float = 0.0          # trailing X written x (only IDs ending in X)
    id_fullwidth: float = 0.0        # full-width digits (５２２１…)
    # phones
    phone_missing: float = 0.0
    phone_changed: float = 0.0       # an old or another number
    phone_format: float = 0.0        # 138-1234-5678, +86 138…, spaces
    phone_fullwidth: float = 0.0
    # dates
    date_drift: float = 0.0          # a date written in another format than the agency's usual
    # addresses (relative to the canonical 贵州省遵义市青石县…村3组)
    address_missing: float = 0.0
    address_prefix: float = 0.0      # province / city / county prefix dropped
    address_group_term: float = 0.0  # 3组 → 3村民小组 / 第3村民小组
    address_numerals: float = 0.0    # 3组 → 三组, 45号 → 四十五号
    # rows
    duplicate_exact: float = 0.0
    duplicate_with_error: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


ID_PRIMARY = ("id_missing", "id_digit", "id_swap", "id_check", "id_legacy15", "id_excel_float")

#: Rates per dataset.  The procuratorate's victim IDs are the worst (typed from
#: a statement, often from memory); civil affairs, checked against the
#: household register, the best.
ERROR_RATES: dict[str, ErrorRates] = {
    "procuratorate_victims": ErrorRates(
        name_homophone=0.06, name_traditional=0.01, name_space=0.03, name_dot_variant=0.35,
        id_missing=0.08, id_digit=0.05, id_swap=0.02, id_check=0.02, id_legacy15=0.02,
        id_lower_x=0.30, id_fullwidth=0.03,
        phone_missing=0.15, phone_changed=0.10, phone_format=0.05, phone_fullwidth=0.02,
        date_drift=0.10,
        address_missing=0.03, address_prefix=0.60, address_group_term=0.20, address_numerals=0.30,
        duplicate_exact=0.01, duplicate_with_error=0.01,
    ),
    "wage_claimants": ErrorRates(
        name_homophone=0.05, name_traditional=0.005, name_space=0.02, name_dot_variant=0.30,
        id_missing=0.03, id_digit=0.03, id_swap=0.015, id_check=0.01, id_excel_float=0.02,
        id_lower_x=0.30, id_fullwidth=0.02,
        phone_missing=0.02, phone_changed=0.08, phone_format=0.05, phone_fullwidth=0.02,
        date_drift=0.05,
        duplicate_exact=0.02, duplicate_with_error=0.01,
    ),
    "court_enforcement": ErrorRates(
        name_homophone=0.02, name_traditional=0.005, name_space=0.01, name_dot_variant=0.20,
        id_missing=0.02, id_digit=0.01, id_swap=0.005, id_check=0.005, id_legacy15=0.005,
        id_lower_x=0.10,
        phone_missing=0.05, phone_changed=0.08, phone_format=0.02,
        date_drift=0.05,
        duplicate_exact=0.005, duplicate_with_error=0.005,
    ),
    "civil_affairs_dibao": ErrorRates(
        name_homophone=0.01, name_traditional=0.002, name_space=0.005, name_dot_variant=0.10,
        id_missing=0.002, id_digit=0.003, id_swap=0.001, id_check=0.001,
        id_lower_x=0.02, id_fullwidth=0.005,
        phone_missing=0.02, phone_changed=0.05, phone_format=0.01,
        address_missing=0.0, address_prefix=0.30, address_group_term=0.50, address_numerals=0.30,
        duplicate_exact=0.003, duplicate_with_error=0.002,
    ),
    "civil_affairs_tekun": ErrorRates(
        name_homophone=0.01, name_traditional=0.002, name_space=0.005, name_dot_variant=0.10,
        id_missing=0.002, id_digit=0.003, id_swap=0.001, id_check=0.001,
        id_lower_x=0.02, id_fullwidth=0.005,
        date_drift=0.02,
        address_missing=0.01, address_prefix=0.30, address_group_term=0.50, address_numerals=0.30,
        duplicate_exact=0.003, duplicate_with_error=0.002,
    ),
    "disability_certificates": ErrorRates(
        name_homophone=0.015, name_traditional=0.003, name_space=0.01, name_dot_variant=0.15,
        id_digit=0.004, id_swap=0.002, id_check=0.002,
        id_fullwidth=0.01,
        phone_missing=0.10, phone_changed=0.10, phone_format=0.02,
        address_missing=0.02, address_prefix=0.50, address_group_term=0.30, address_numerals=0.20,
        duplicate_exact=0.004, duplicate_with_error=0.003,
    ),
    "education_students": ErrorRates(
        name_homophone=0.03, name_traditional=0.003, name_space=0.02, name_dot_variant=0.25,
        id_missing=0.01, id_digit=0.015, id_swap=0.008, id_check=0.005, id_legacy15=0.01,
        id_lower_x=0.10, id_fullwidth=0.01,
        phone_missing=0.05, phone_changed=0.10, phone_format=0.03, phone_fullwidth=0.01,
        date_drift=0.04,
        duplicate_exact=0.005, duplicate_with_error=0.005,
    ),
}


@dataclass
class Tally:
    """How many rows were eligible for each kind of error and how many got it."""

    eligible: dict[str, int] = field(default_factory=dict)
    applied: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, eligible: int, applied: int) -> None:
        self.eligible[kind] = self.eligible.get(kind, 0) + int(eligible)
        self.applied[kind] = self.applied.get(kind, 0) + int(applied)

    def merge(self, other: Tally, skip: tuple[str, ...] = ()) -> None:
        for k in other.eligible:
            if k not in skip:
                self.add(k, other.eligible[k], other.applied.get(k, 0))

    def as_dict(self, rates: ErrorRates) -> dict:
        out = {}
        for f in fields(rates):
            k = f.name
            e, a = self.eligible.get(k, 0), self.applied.get(k, 0)
            out[k] = {"rate": getattr(rates, k), "eligible": e, "applied": a,
                      "observed": round(a / e, 6) if e else None}
        return out


def without_duplicates(rates: ErrorRates) -> ErrorRates:
    return replace(rates, duplicate_exact=0.0, duplicate_with_error=0.0)


# --- helpers ---------------------------------------------------------------

FULLWIDTH = str.maketrans("0123456789Xx-+ ", "０１２３４５６７８９Ｘｘ－＋　")


def _draw(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    """Bernoulli(rate) for n rows; always consumes n draws (keeps streams aligned)."""
    return rng.random(n) < rate


def _obj(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=object)


def _has_any_char(values: np.ndarray, chars: str | dict) -> np.ndarray:
    """Vectorised: does each string contain at least one of ``chars``?"""
    u = np.ascontiguousarray(np.asarray(values).astype(str))
    if len(u) == 0 or u.dtype.itemsize == 0:
        return np.zeros(len(u), dtype=bool)
    code = u.view(np.uint32).reshape(len(u), -1)
    table = np.zeros(0x110000, dtype=bool)
    table[[ord(c) for c in chars]] = True
    table[0] = False
    return table[code].any(axis=1)


# --- names -----------------------------------------------------------------


def render_names(rng: np.random.Generator, names: np.ndarray, surname_len: np.ndarray,
                 minority: np.ndarray, rates: ErrorRates, tally: Tally) -> np.ndarray:
    """Names as typed by the agency: homophones, traditional, dot variants, spaces."""
    n = len(names)
    out = _obj(names).copy()
    # homophone: one character (given-name characters four times as likely as the surname)
    draw = _draw(rng, n, rates.name_homophone)
    elig = _has_any_char(names, HOMOPHONE_OF)
    idx = np.flatnonzero(draw & elig & ~minority)
    for i in idx:
        s = out[i]
        pos = [j for j, c in enumerate(s) if c in HOMOPHONE_OF]
        w = np.array([1.0 if j < surname_len[i] else 4.0 for j in pos])
        j = pos[int(rng.choice(len(pos), p=w / w.sum()))]
        alts = HOMOPHONE_OF[s[j]]
        out[i] = s[:j] + alts[int(rng.integers(len(alts)))] + s[j + 1:]
    tally.add("name_homophone", int((elig & ~minority).sum()), len(idx))
    # traditional characters
    draw = _draw(rng, n, rates.name_traditional)
    elig = _has_any_char(out.astype(str), TRADITIONAL_OF)
    idx = np.flatnonzero(draw & elig)
    for i in idx:
        out[i] = "".join(TRADITIONAL_OF.get(c, c) for c in out[i])
    tally.add("name_traditional", int(elig.sum()), len(idx))
    # the middle dot of minority names
    draw = _draw(rng, n, rates.name_dot_variant)
    idx = np.flatnonzero(draw & minority)
    for i in idx:
        out[i] = out[i].replace(MIDDLE_DOT, DOT_VARIANTS[int(rng.integers(len(DOT_VARIANTS)))])
    tally.add("name_dot_variant", int(minority.sum()), len(idx))
    # a space inside the name (after the surname; or around the dot)
    draw = _draw(rng, n, rates.name_space)
    idx = np.flatnonzero(draw)
    for i in idx:
        s = out[i]
        sp = "　" if rng.random() < 0.3 else " "
        k = int(surname_len[i]) if not minority[i] else max(1, len(s) // 2)
        k = min(max(k, 1), len(s) - 1) if len(s) > 1 else 1
        out[i] = s[:k] + sp + s[k:]
    tally.add("name_space", n, len(idx))
    return out


# --- ID numbers ------------------------------------------------------------

_CHECK_CHARS = "0123456789X"


def legacy15(id18: str) -> str:
    """The 15-digit form of an 18-digit ID (drop the century and the check)."""
    return id18[:6] + id18[8:17]


def excel_float(id18: str) -> str:
    """What Excel shows after reading an ID as a number and saving as CSV (5.22199E+17)."""
    return f"{int(id18):.5E}"


def render_ids(rng: np.random.Generator, ids: np.ndarray, rates: ErrorRates, tally: Tally,
               prefix: str = "") -> np.ndarray:
    """ID numbers as typed: at most one of the primary errors, then cosmetics.

    ``ids`` are the true 18-character IDs ('' where the agency has none).
    ``prefix`` is prepended to every non-empty result (``G`` for student numbers).
    """
    n = len(ids)
    out = _obj(ids).copy()
    u18 = np.asarray(ids).astype(str)
    has = np.strings.str_len(u18) == 18
    p = np.array([getattr(rates, k) for k in ID_PRIMARY])
    u = rng.random(n)
    cuts = np.cumsum(p)
    kind = np.searchsorted(cuts, u, side="right")  # == len(p) means none
    ends_x = np.strings.endswith(u18, "X")
    born_before_2000 = has & np.isin(np.strings.slice(u18, 6, 8), np.array(["18", "19"]))
    for k, name in enumerate(ID_PRIMARY):
        sel = (kind == k) & has
        if name == "id_legacy15":
            elig = has & born_before_2000
        elif name == "id_excel_float":
            elig = has & ~ends_x
        else:
            elig = has
        sel &= elig
        idx = np.flatnonzero(sel)
        for i in idx:
            s = out[i]
            if name == "id_missing":
                out[i] = ""
            elif name == "id_digit":
                j = int(rng.integers(17))
                out[i] = s[:j] + str((int(s[j]) + int(rng.integers(1, 10))) % 10) + s[j + 1:]
            elif name == "id_swap":
                cand = [j for j in range(17) if s[j] != s[j + 1] and s[j + 1] != "X"]
                j = cand[int(rng.integers(len(cand)))]
                out[i] = s[:j] + s[j + 1] + s[j] + s[j + 2:]
            elif name == "id_check":
                alts = _CHECK_CHARS.replace(s[17], "")
                out[i] = s[:17] + alts[int(rng.integers(len(alts)))]
            elif name == "id_legacy15":
                out[i] = legacy15(s)
            elif name == "id_excel_float":
                out[i] = excel_float(s)
        tally.add(name, int(elig.sum()), len(idx))
    # cosmetics on the remaining 18-character forms
    draw = _draw(rng, n, rates.id_lower_x)
    cur = out.astype(str)
    elig = (np.strings.str_len(cur) == 18) & np.strings.endswith(cur, "X")
    idx = np.flatnonzero(draw & elig)
    for i in idx:
        out[i] = out[i][:17] + "x"
    tally.add("id_lower_x", int(elig.sum()), len(idx))
    draw = _draw(rng, n, rates.id_fullwidth)
    ln = np.strings.str_len(out.astype(str))
    elig = (ln == 15) | (ln == 18)
    idx = np.flatnonzero(draw & elig)
    for i in idx:
        out[i] = out[i].translate(FULLWIDTH)
    tally.add("id_fullwidth", int(elig.sum()), len(idx))
    if prefix:
        nonempty = out.astype(str) != ""
        out[nonempty] = np.strings.add(prefix, out[nonempty].astype(str)).astype(object)
    return out


# --- phones ----------------------------------------------------------------


def random_phones(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random 11-digit mobile numbers 1[3-9]xxxxxxxxx (not checked for uniqueness)."""
    second = rng.choice(np.array([3, 5, 8, 7, 9, 4, 6]), size=n, p=[.3, .25, .25, .08, .06, .03, .03])
    rest = rng.integers(0, 1_000_000_000, size=n)
    return (10_000_000_000 + second.astype(np.int64) * 1_000_000_000 + rest).astype("U11")


def render_phones(rng: np.random.Generator, phones: np.ndarray, rates: ErrorRates,
                  tally: Tally) -> np.ndarray:
    n = len(phones)
    out = _obj(phones).copy()
    has = np.asarray(phones).astype(str) != ""
    u = rng.random(n)
    miss = has & (u < rates.phone_missing)
    changed = has & ~miss & (u >= rates.phone_missing) & (u < rates.phone_missing + rates.phone_changed)
    out[miss] = ""
    if changed.any():
        out[changed] = random_phones(rng, int(changed.sum())).astype(object)
    tally.add("phone_missing", int(has.sum()), int(miss.sum()))
    tally.add("phone_changed", int(has.sum()), int(changed.sum()))
    draw = _draw(rng, n, rates.phone_format)
    idx = np.flatnonzero(draw & has & ~miss)
    for i in idx:
        s = out[i]
        style = int(rng.integers(4))
        out[i] = (f"{s[:3]}-{s[3:7]}-{s[7:]}", f"{s[:3]} {s[3:7]} {s[7:]}", f"+86 {s}", f"+86{s}")[style]
    tally.add("phone_format", int((has & ~miss).sum()), len(idx))
    draw = _draw(rng, n, rates.phone_fullwidth)
    idx = np.flatnonzero(draw & has & ~miss)
    for i in idx:
        out[i] = out[i].translate(FULLWIDTH)
    tally.add("phone_fullwidth", int((has & ~miss).sum()), len(idx))
    return out


# --- dates -----------------------------------------------------------------

EXCEL_EPOCH = dt.date(1899, 12, 30)


def format_dates(dates: np.ndarray, style: str) -> np.ndarray:
    """Format ``datetime64[D]`` dates in one of the agencies' styles (object array).

    Styles: ``iso`` 1990-01-02, ``slash`` 1990/1/2, ``compact`` 19900102,
    ``cn`` 1990年1月2日, ``dot`` 1990.1.2, ``excel_date`` a ``datetime.date``
    (an XLSX date cell), ``excel_serial`` the Excel serial number (int).
    """
    d = np.asarray(dates, dtype="datetime64[D]")
    if style == "excel_date":
        return np.array(d.astype(object), dtype=object)
    if style == "excel_serial":
        return (d - np.datetime64(EXCEL_EPOCH, "D")).astype(np.int64).astype(object)
    y = d.astype("datetime64[Y]").astype(int) + 1970
    m = d.astype("datetime64[M]").astype(int) % 12 + 1
    dd = (d - d.astype("datetime64[M]")).astype(int) + 1
    ys, ms, ds = y.astype("U4"), m.astype("U2"), dd.astype("U2")
    add = np.strings.add
    if style == "iso":
        return _obj(d.astype("U10"))
    if style == "compact":
        return _obj(np.strings.replace(d.astype("U10"), "-", ""))
    if style == "slash":
        return _obj(add(add(add(add(ys, "/"), ms), "/"), ds))
    if style == "dot":
        return _obj(add(add(add(add(ys, "."), ms), "."), ds))
    if style == "cn":
        return _obj(add(add(add(add(add(ys, "年"), ms), "月"), ds), "日"))
    raise ValueError(f"unknown date style {style!r}")


def render_dates(rng: np.random.Generator, dates: np.ndarray, base: str, drift: Sequence[str],
                 rates: ErrorRates, tally: Tally) -> np.ndarray:
    """Dates in the agency's ``base`` style, a share ``date_drift`` in one of ``drift``."""
    n = len(dates)
    out = format_dates(dates, base)
    draw = _draw(rng, n, rates.date_drift)
    which = rng.integers(0, len(drift), size=n)
    for k, style in enumerate(drift):
        m = draw & (which == k)
        if m.any():
            out[m] = format_dates(dates[m], style)
    tally.add("date_drift", n, int(draw.sum()))
    return out


# --- addresses -------------------------------------------------------------

_DIGITS_CN = "零一二三四五六七八九"


def chinese_numeral(k: int) -> str:
    """0..9999 in Chinese numerals as written in addresses (十二, 一百零五)."""
    if k < 10:
        return _DIGITS_CN[k]
    if k < 20:
        return "十" + (_DIGITS_CN[k % 10] if k % 10 else "")
    if k < 100:
        return _DIGITS_CN[k // 10] + "十" + (_DIGITS_CN[k % 10] if k % 10 else "")
    if k < 1000:
        rest = k % 100
        tail = "" if rest == 0 else ("零" + _DIGITS_CN[rest] if rest < 10 else
                                     (_DIGITS_CN[1] + chinese_numeral(rest) if rest < 20 else chinese_numeral(rest)))
        return _DIGITS_CN[k // 100] + "百" + tail
    rest = k % 1000
    tail = "" if rest == 0 else ("零" + chinese_numeral(rest) if rest < 100 else chinese_numeral(rest))
    return _DIGITS_CN[k // 1000] + "千" + tail


CN_NUMERALS = np.array([chinese_numeral(k) for k in range(1000)], dtype="U8")


@dataclass(frozen=True)
class AddressParts:
    """Canonical address components, one entry per row (numpy arrays)."""

    prefix_levels: tuple[str, str, str]   # ("贵州省", "遵义市", "青石县")
    township: np.ndarray                  # 石门镇 / 城关镇
    rural: np.ndarray                     # bool
    village: np.ndarray                   # 水口 (without 村); '' in town
    group: np.ndarray                     # int; 0 in town
    street: np.ndarray                    # 人民路; '' in villages
    house_no: np.ndarray                  # int; 0 in villages


def canonical_addresses(a: AddressParts) -> np.ndarray:
    """The canonical form: 贵州省遵义市青石县石门镇水口村3组 / …城关镇人民路45号."""
    return _compose(a, np.zeros(len(a.township), int), np.zeros(len(a.township), bool),
                    np.zeros(len(a.township), int)).astype(str)


def _compose(a: AddressParts, drop: np.ndarray, numerals: np.ndarray, group_term: np.ndarray) -> np.ndarray:
    add = np.strings.add
    p1, p2, p3 = a.prefix_levels
    prefix = np.array([p1 + p2 + p3, p2 + p3, p3, ""], dtype="U16")[drop]
    grp = np.where(numerals, CN_NUMERALS[np.clip(a.group, 0, 999)], a.group.astype("U4"))
    no = np.where(numerals, CN_NUMERALS[np.clip(a.house_no, 0, 999)], a.house_no.astype("U4"))
    gsuffix = np.array(["组", "村民小组", "村民小组"], dtype="U4")[group_term]
    gprefix = np.array(["", "", "第"], dtype="U1")[group_term]
    rural_part = add(add(add(add(a.village, "村"), gprefix), grp), gsuffix)
    town_part = add(add(a.street, no), "号")
    return _obj(add(add(prefix, a.township), np.where(a.rural, rural_part, town_part)))


def render_addresses(rng: np.random.Generator, a: AddressParts, rates: ErrorRates,
                     tally: Tally) -> np.ndarray:
    n = len(a.township)
    prefix = _draw(rng, n, rates.address_prefix)
    drop = np.where(prefix, rng.integers(1, 4, size=n), 0)
    term = _draw(rng, n, rates.address_group_term)
    group_term = np.where(term & a.rural, rng.integers(1, 3, size=n), 0)
    numerals = _draw(rng, n, rates.address_numerals)
    missing = _draw(rng, n, rates.address_missing)
    out = _compose(a, drop, numerals, group_term)
    out[missing] = ""
    tally.add("address_prefix", n, int((prefix & ~missing).sum()))
    tally.add("address_group_term", int(a.rural.sum()), int((term & a.rural & ~missing).sum()))
    tally.add("address_numerals", n, int((numerals & ~missing).sum()))
    tally.add("address_missing", n, int(missing.sum()))
    return out


# --- duplicate rows --------------------------------------------------------


def duplicate_rows(rng: np.random.Generator, n: int, rates: ErrorRates, tally: Tally
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Choose duplicates among ``n`` rendered rows and where they go.

    Returns ``(order, source, with_error)``: the final row order as indices
    into ``source``; ``source[i]`` is the original row the i-th (pre-order)
    row copies (identity for the first ``n``); ``with_error`` marks copies
    that must get one more error.  Six in ten copies sit right after their
    original (an export run twice and appended), the rest anywhere.
    """
    u = rng.random(n)
    exact = u < rates.duplicate_exact
    err = (u >= rates.duplicate_exact) & (u < rates.duplicate_exact + rates.duplicate_with_error)
    src = np.flatnonzero(exact | err)
    with_error = np.concatenate([np.zeros(n, bool), err[src]])
    tally.add("duplicate_exact", n, int(exact.sum()))
    tally.add("duplicate_with_error", n, int(err.sum()))
    source = np.concatenate([np.arange(n), src])
    adjacent = rng.random(len(src)) < 0.6
    anchor = np.where(adjacent, src, rng.integers(0, max(n, 1), size=len(src)))
    key = np.concatenate([2 * np.arange(n), 2 * anchor + 1]).astype(np.int64)
    order = np.argsort(key, kind="stable")
    return order, source, with_error


def mutate_for_duplicate(rng: np.random.Generator, name: str, id_number: str) -> tuple[str, str]:
    """One small change for a duplicate-with-error copy: the name or the ID."""
    if len(id_number) == 18 and rng.random() < 0.5:
        j = int(rng.integers(17))
        return name, id_number[:j] + str((int(id_number[j]) + int(rng.integers(1, 10))) % 10) + id_number[j + 1:]
    pos = [j for j, c in enumerate(name) if c in HOMOPHONE_OF]
    if pos:
        j = pos[int(rng.integers(len(pos)))]
        alts = HOMOPHONE_OF[name[j]]
        return name[:j] + alts[int(rng.integers(len(alts)))] + name[j + 1:], id_number
    return (name[:1] + " " + name[1:] if len(name) > 1 else name + " "), id_number
