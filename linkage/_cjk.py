"""Private tables and helpers for Chinese-aware normalisation.

Nothing here is public API: :mod:`linkage.normalise` builds on it.  The tables
are small and written out by hand (middle-dot look-alikes, null markers,
surname readings, province names); the large ones come from the installed
``opencc`` (traditional -> simplified) and ``pypinyin`` (character readings)
packages, whose versions go into the schema fingerprint.  pypinyin's
single-character readings are read from ``pinyin_table.txt``, generated from
it by tools/make_pinyin_table.py, when that table was made from the installed
version (tests/unit/test_pinyin_table.py checks every character).
"""

from __future__ import annotations

import math
import re
import sys
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

# --------------------------------------------------------------------- text

#: Cell contents that mean "no value" (compared after NFKC, trim and lower-casing).
NULL_MARKERS = frozenset({
    "无", "空", "暂无", "不详", "null", "none", "nan", "nat", "n/a", "#n/a",
    "-", "--", "/", "//", "—", "——", "\\",
})

_WS = re.compile(r"\s+")
#: Invisible format characters that copy-paste leaves in cells (zero-width
#: spaces and joiners, direction marks, BOM, soft hyphen).
_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")


def cell_text(v: object) -> str | None:
    """A cell as text, or None when it is missing.

    Integral floats (how spreadsheets hand over ID and phone numbers) lose the
    ``.0``; NaN, NaT and pd.NA are missing.
    """
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        f = float(v)
        if math.isnan(f):
            return None
        if math.isinf(f):
            return str(f)
        return str(int(f)) if f.is_integer() else repr(f)
    if isinstance(v, Decimal):
        if v.is_nan():
            return None
        if v.is_finite() and v == v.to_integral_value():
            return str(int(v))
        return str(v)
    if isinstance(v, bytes | bytearray):
        return bytes(v).decode("utf-8", errors="replace")
    if v is pd.NA or v is pd.NaT:
        return None
    return str(v)

#: Han characters: CJK unified ideographs (URO, extensions A to H), the
#: compatibility block and U+3007 IDEOGRAPHIC NUMBER ZERO (used in names).
HAN_CLASS = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003347f"
HAN = re.compile(f"[{HAN_CLASS}]")


def is_han(ch: str) -> bool:
    return HAN.match(ch) is not None


def code_points(values: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(code points of all values, concatenated; start of each value; length of each)."""
    lens = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    starts = np.zeros(len(values), dtype=np.int64)
    if len(values) > 1:
        np.cumsum(lens[:-1], out=starts[1:])
    cps = np.frombuffer("".join(values).encode("utf-32-le", "surrogatepass"), dtype="<u4")
    return cps, starts, lens


#: Per code point: 0 not yet known, 1 plain Han, 2 anything else (see plain_han_mask).
_PLAIN_HAN = np.zeros(0x110000, dtype=np.uint8)


def _is_plain_han_char(ch: str) -> bool:
    return (HAN.match(ch) is not None and unicodedata.normalize("NFKC", ch) == ch
            and ch.lower() == ch and not ch.isspace() and _INVISIBLE.match(ch) is None)


def plain_han_mask(values: list[str]) -> np.ndarray:
    """Per value: True when it is non-empty and every character is a Han character
    that NFKC, lower-casing and :func:`fold` leave as it is -- so ``fold(v) == v``
    and ``v`` is all Han.  (Compatibility ideographs, which NFKC changes, are not plain.)"""
    cps, starts, lens = code_points(values)
    if not len(cps):
        return np.zeros(len(values), dtype=bool)
    table = _PLAIN_HAN
    seen = np.unique(cps)
    for c in seen[table[seen] == 0].tolist():
        table[c] = 1 if _is_plain_han_char(chr(c)) else 2
    bad = np.zeros(len(cps) + 1, dtype=np.int64)
    np.cumsum(table[cps] != 1, out=bad[1:])
    return (lens > 0) & (bad[starts + lens] == bad[starts])


def _fold_once(s: str, lower: bool) -> str:
    if not s.isascii():
        if not unicodedata.is_normalized("NFKC", s):
            s = unicodedata.normalize("NFKC", s)
        s = _INVISIBLE.sub("", s)
    if lower:
        s = s.lower()
    return " ".join(s.split())


def fold(s: str) -> str:
    """NFKC, drop invisible format characters, lower-case, trim, collapse
    internal whitespace to one space.

    Repeated until stable: lower-casing can un-normalise a few code points.
    """
    for _ in range(4):
        t = _fold_once(s, True)
        if t == s or t.isascii():
            return t
        s = t
    return s


def fold_keep_case(s: str) -> str:
    """As :func:`fold`, without lower-casing."""
    for _ in range(4):
        t = _fold_once(s, False)
        if t == s or t.isascii():
            return t
        s = t
    return s


def is_null_marker(folded: str) -> bool:
    return folded == "" or folded in NULL_MARKERS


# --------------------------------------------------------------- middle dots

#: Canonical middle dot for display forms.
MIDDLE_DOT = "\u00b7"

#: Look-alikes of the middle dot used between the parts of transliterated
#: (mostly Uyghur, Tibetan, foreign) names.  Mapped before and after NFKC, so
#: both a code point and its NFKC image are listed where they differ.
DOT_LOOKALIKES = (
    "\u00b7"  # MIDDLE DOT
    "\u0387"  # GREEK ANO TELEIA (NFKC -> U+00B7)
    "\u02d1"  # MODIFIER LETTER HALF TRIANGULAR COLON
    "\u1427"  # CANADIAN SYLLABICS FINAL MIDDLE DOT
    "\u119e"  # HANGUL JUNGSEONG ARAEA (NFKC image of U+318D)
    "\u16eb"  # RUNIC SINGLE PUNCTUATION
    "\u2022"  # BULLET
    "\u2024"  # ONE DOT LEADER
    "\u2027"  # HYPHENATION POINT
    "\u2219"  # BULLET OPERATOR
    "\u22c5"  # DOT OPERATOR
    "\u25cf"  # BLACK CIRCLE
    "\u2981"  # Z NOTATION SPOT
    "\u2e31"  # WORD SEPARATOR MIDDLE DOT
    "\u2e33"  # RAISED DOT
    "\u30fb"  # KATAKANA MIDDLE DOT
    "\u318d"  # HANGUL LETTER ARAEA
    "\ua78f"  # LATIN LETTER SINOLOGICAL DOT
    "\ufe52"  # SMALL FULL STOP
    "\uff0e"  # FULLWIDTH FULL STOP
    "\uff65"  # HALFWIDTH KATAKANA MIDDLE DOT
    "."
)
DOT_TABLE = str.maketrans(dict.fromkeys(DOT_LOOKALIKES, MIDDLE_DOT))

#: Written between two Han characters of a name, these are separators too
#: (a hyphen, an ideographic full stop or an underscore typed for the dot).
DOT_BETWEEN_HAN = "-_\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u3002\uff61\uff0d"
_DOT_BETWEEN_HAN_RE = re.compile(f"(?<=[{HAN_CLASS}])[{re.escape(DOT_BETWEEN_HAN)}]+(?=[{HAN_CLASS}])")


def unify_dots(s: str) -> str:
    """Every middle-dot look-alike (and a dash/stop between Han) -> U+00B7."""
    return _DOT_BETWEEN_HAN_RE.sub(MIDDLE_DOT, s.translate(DOT_TABLE))


_NON_WORD: dict[str, re.Pattern[str]] = {}


def keep_word_chars(s: str, keep: str = "") -> str:
    """Drop every character that is not a letter or a digit (or in ``keep``).

    "Letter or digit" is Python's ``str.isalnum`` (Unicode categories L* and N*).
    """
    pat = _NON_WORD.get(keep)
    if pat is None:
        pat = _NON_WORD[keep] = re.compile(f"(?:[^\\w{re.escape(keep)}]|_)+")
    return pat.sub("", s)


# ------------------------------------------------------ traditional -> simplified


@cache
def _converter():  # pragma: no cover - trivial
    import opencc

    return opencc.OpenCC("t2s")


def to_simplified(s: str) -> str:
    """OpenCC ``t2s``, applied until stable (the table is not idempotent:
    薴 -> 苧 -> 苎)."""
    if s.isascii():
        return s
    conv = _converter()
    for _ in range(4):
        t = conv.convert(s)
        if t == s:
            break
        s = t
    return s


def to_simplified_many(values: list[str]) -> list[str]:
    """:func:`to_simplified` of every value, with one OpenCC call per round.

    The values are joined with newlines: no OpenCC phrase holds a newline, so
    no conversion reaches across two values.  A value holding a newline itself
    (or a round whose line count comes back different) is converted on its own.
    """
    out = list(values)
    todo = [i for i, s in enumerate(out) if not s.isascii()]
    if not todo:
        return out
    conv = _converter()
    if any("\n" in out[i] for i in todo):
        alone = [i for i in todo if "\n" in out[i]]
        for i in alone:
            out[i] = to_simplified(out[i])
        todo = [i for i in todo if "\n" not in out[i]]
    for _ in range(4):
        if not todo:
            break
        src = [out[i] for i in todo]
        got = conv.convert("\n".join(src)).split("\n")
        if len(got) != len(src):  # pragma: no cover - defensive
            for i in todo:
                out[i] = to_simplified(out[i])
            break
        changed = []
        for i, s, t in zip(todo, src, got, strict=True):
            if t != s:
                out[i] = t
                changed.append(i)
        todo = changed
    return out


# ------------------------------------------------------------------- pinyin

#: Surname readings that differ from a character's most common reading, and
#: compound surnames.  Applied to the first character(s) of a name only.
SURNAME_READINGS: dict[str, tuple[str, ...]] = {
    # compound surnames first (longest match wins)
    "尉迟": ("yu", "chi"),
    "万俟": ("mo", "qi"),
    "长孙": ("zhang", "sun"),
    "澹台": ("tan", "tai"),
    "乐正": ("yue", "zheng"),
    "令狐": ("ling", "hu"),
    "鲜于": ("xian", "yu"),
    # single-character surnames
    "单": ("shan",),
    "曾": ("zeng",),
    "解": ("xie",),
    "仇": ("qiu",),
    "朴": ("piao",),
    "区": ("ou",),
    "查": ("zha",),
    "盖": ("ge",),
    "乐": ("yue",),
    "覃": ("qin",),
    "缪": ("miao",),
    "翟": ("zhai",),
    "员": ("yun",),
    "繁": ("po",),
    "秘": ("bi",),
    "种": ("chong",),
    "召": ("shao",),
    "隗": ("wei",),
    "藏": ("zang",),
    "折": ("she",),
    "佴": ("nai",),
    "句": ("gou",),
    "阚": ("kan",),
    "洗": ("xian",),
    "长": ("chang",),
    "祭": ("zhai",),
    "乜": ("nie",),
    "能": ("nai",),
}
_SURNAME_MAX = max(len(k) for k in SURNAME_READINGS)
# the same tables by code point (pairs: first * 0x110000 + second), for pinyin_of_han_names
_SINGLE_SURNAMES = {ord(k): "".join(x + " " for x in v) for k, v in SURNAME_READINGS.items() if len(k) == 1}
_COMPOUND_SURNAMES = {ord(k[0]) * 0x110000 + ord(k[1]): "".join(x + " " for x in v)
                      for k, v in SURNAME_READINGS.items() if len(k) == 2}
_SINGLE_CODES = np.array(sorted(_SINGLE_SURNAMES), dtype=np.int64)
_COMPOUND_CODES = np.array(sorted(_COMPOUND_SURNAMES), dtype=np.int64)


def _ascii_toneless(reading: str) -> str:
    """``lǚ`` -> ``lv``, ``ê`` -> ``e``; ASCII lower-case letters only."""
    reading = reading.replace("ü", "v").replace("Ü", "v")
    decomposed = unicodedata.normalize("NFD", reading)
    return "".join(ch for ch in decomposed if "a" <= ch <= "z")


@cache
def _pinyin_module():
    import pypinyin

    return pypinyin


def pinyin_version() -> str:
    return metadata.version("pypinyin")


def pypinyin_reading(ch: str) -> str:
    """Toneless pinyin of one character straight from pypinyin ('' if it has none)."""
    pp = _pinyin_module()
    out = pp.lazy_pinyin(ch, style=pp.Style.NORMAL, errors="ignore")
    return _ascii_toneless(out[0]) if out else ""


def pypinyin_syllables() -> frozenset[str]:
    """Every toneless syllable pypinyin knows that has a vowel (no m, n, ng, hm)."""
    from pypinyin.constants import PINYIN_DICT

    out: set[str] = set()
    for readings in PINYIN_DICT.values():
        for r in readings.split(","):
            t = _ascii_toneless(r)
            if t and any(v in t for v in "aeiouv"):
                out.add(t)
    return frozenset(out)


# The readings come from a table generated from pypinyin (tools/make_pinyin_table.py):
# importing pypinyin costs ~0.7 s and ~55 MB in every encoding process, the table ~10 ms
# and ~6 MB.  It is used only when it was made from the installed pypinyin version, so the
# fingerprint's "pinyin_table: pypinyin-<version>" stays true; otherwise pypinyin is asked.
PINYIN_TABLE_FILE = Path(__file__).with_name("pinyin_table.txt")
PINYIN_TABLE_FORMAT = "aidlink-pinyin-table 1"


@dataclass(frozen=True)
class PinyinTable:
    """A generated single-character table: readings of every code point in ``ranges``
    (a covered character absent from ``readings`` has none) and pypinyin's syllables."""

    pypinyin_version: str
    ranges: tuple[tuple[int, int], ...]  # inclusive code point ranges
    readings: dict[str, str]
    syllables: frozenset[str]

    def covers(self, cp: int) -> bool:
        return any(lo <= cp <= hi for lo, hi in self.ranges)


def class_ranges(char_class: str) -> tuple[tuple[int, int], ...]:
    """Inclusive code point ranges of a regex character-class body such as HAN_CLASS."""
    out, i = [], 0
    while i < len(char_class):
        if i + 2 < len(char_class) and char_class[i + 1] == "-":
            out.append((ord(char_class[i]), ord(char_class[i + 2])))
            i += 3
        else:
            out.append((ord(char_class[i]), ord(char_class[i])))
            i += 1
    return tuple(out)


def read_pinyin_table(path: Path | None = None) -> PinyinTable:
    """Parse a table file (the shipped one by default; tools/make_pinyin_table.py has the format)."""
    path = PINYIN_TABLE_FILE if path is None else path
    fields: dict[str, str] = {}
    readings: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        if f.readline().rstrip("\n") != PINYIN_TABLE_FORMAT:
            raise ValueError(f"{path}: not a {PINYIN_TABLE_FORMAT} file")
        for line in f:
            tag, _, rest = line.rstrip("\n").partition("\t")
            if tag == "r":
                reading, _, chars = rest.partition("\t")
                readings.update(dict.fromkeys(chars, sys.intern(reading)))
            elif tag and not tag.startswith("#"):
                fields[tag] = rest
    ranges = tuple((int(a, 16), int(b, 16)) for a, b in
                   (r.split("-") for r in fields["covers"].split(",")))
    return PinyinTable(fields["pypinyin"], ranges, readings, frozenset(fields["syllables"].split()))


@cache
def _pinyin_table() -> PinyinTable | None:
    """The shipped table when it was made from the installed pypinyin, else None."""
    try:
        table = read_pinyin_table()
        if table.pypinyin_version != pinyin_version():
            return None
    except (OSError, ValueError, KeyError, metadata.PackageNotFoundError):
        return None
    CHAR_PINYIN.update(table.readings)
    return table


CHAR_PINYIN: dict[str, str] = {}


def char_pinyin(ch: str) -> str:
    """Toneless pinyin of one Han character ('' if pypinyin has none), cached."""
    hit = CHAR_PINYIN.get(ch)
    if hit is None:
        table = _pinyin_table()  # loads once, filling CHAR_PINYIN with every reading it has
        hit = CHAR_PINYIN.get(ch)
        if hit is None:
            hit = "" if table is not None and table.covers(ord(ch)) else pypinyin_reading(ch)
            CHAR_PINYIN[ch] = hit
    return hit


@cache
def pinyin_syllables() -> frozenset[str]:
    """Every toneless syllable pypinyin knows that has a vowel (no m, n, ng, hm)."""
    table = _pinyin_table()
    return table.syllables if table is not None else pypinyin_syllables()


def segment_pinyin(word: str) -> list[str]:
    """Split run-together pinyin (``zhangwei`` -> ``zhang wei``).

    Fewest syllables wins; ties go to the longer first syllable.  A word that
    cannot be split entirely into syllables is returned whole, so the result is
    stable under re-segmentation.
    """
    syll = pinyin_syllables()
    n = len(word)
    if n == 0 or word in syll:
        return [word] if word else []
    if n > 60:
        return [word]
    # best[i] = (count, lengths) for word[i:], lengths compared negatively.
    best: list[tuple[int, tuple[int, ...]] | None] = [None] * (n + 1)
    best[n] = (0, ())
    for i in range(n - 1, -1, -1):
        cand = None
        for j in range(min(n, i + 6), i, -1):  # longest syllable is 6 letters
            if best[j] is None or word[i:j] not in syll:
                continue
            cnt, lens = best[j]  # type: ignore[misc]
            key = (cnt + 1, (-(j - i), *lens))
            if cand is None or key < cand:
                cand = key
        best[i] = cand
    if best[0] is None:
        return [word]
    out, i = [], 0
    for neg in best[0][1]:
        out.append(word[i:i - neg])
        i -= neg
    return out


def pinyin_of_han_names(values: list[str]) -> list[str | None]:
    """Toneless pinyin of names that are all Han (checked by the caller): the
    surname table for the first character(s) (as :func:`surname_prefix`), then
    :func:`char_pinyin` per character, readings joined by one space; None when no
    character has a reading.  The same as reading each name on its own, with the
    work done per distinct character."""
    if not values:
        return []
    cps, starts, lens = code_points(values)
    chars, inverse = np.unique(cps, return_inverse=True)
    readings = np.array([(py + " ") if (py := char_pinyin(chr(c))) else "" for c in chars.tolist()],
                        dtype=object)
    pieces = readings[inverse.ravel()]
    # surnames: two characters (compounds) when the name has at least three, else one
    hit2 = np.zeros(len(values), dtype=bool)
    two = (lens >= 3).nonzero()[0]
    if len(two):
        a = starts[two]
        pair = cps[a].astype(np.int64) * 0x110000 + cps[a + 1]
        sel = np.isin(pair, _COMPOUND_CODES)
        for i, p in zip(two[sel].tolist(), pair[sel].tolist(), strict=True):
            pieces[starts[i]] = _COMPOUND_SURNAMES[p]
            pieces[starts[i] + 1] = ""
            hit2[i] = True
    one = ((lens >= 2) & ~hit2).nonzero()[0]
    firsts = cps[starts[one]].astype(np.int64)
    sel = np.isin(firsts, _SINGLE_CODES)
    for i, c in zip(one[sel].tolist(), firsts[sel].tolist(), strict=True):
        pieces[starts[i]] = _SINGLE_SURNAMES[c]
    # one newline after each name, then split
    owner_shift = np.repeat(np.arange(len(values), dtype=np.int64), lens)
    buf = np.full(len(cps) + len(values), "\n", dtype=object)
    buf[np.arange(len(cps), dtype=np.int64) + owner_shift] = pieces
    lines = "".join(buf.tolist()).split("\n")
    return [line[:-1] or None for line in lines[:-1]]


def surname_prefix(name: str) -> tuple[int, tuple[str, ...]] | None:
    """(number of characters, readings) when ``name`` starts with a listed surname."""
    for k in range(min(_SURNAME_MAX, len(name) - 1), 0, -1):
        hit = SURNAME_READINGS.get(name[:k])
        if hit is not None:
            return k, hit
    return None


# ----------------------------------------------------------------- addresses

PROVINCES_FULL = (
    "北京市", "天津市", "上海市", "重庆市",
    "河北省", "山西省", "辽宁省", "吉林省", "黑龙江省", "江苏省", "浙江省", "安徽省",
    "福建省", "江西省", "山东省", "河南省", "湖北省", "湖南省", "广东省", "海南省",
    "四川省", "贵州省", "云南省", "陕西省", "甘肃省", "青海省", "台湾省",
    "内蒙古自治区", "广西壮族自治区", "西藏自治区", "宁夏回族自治区", "新疆维吾尔自治区",
    "香港特别行政区", "澳门特别行政区",
    # frequent variants
    "广西自治区", "宁夏自治区", "新疆自治区", "新疆维吾尔族自治区", "内蒙自治区",
)
PROVINCES_SHORT = (
    "北京", "天津", "上海", "重庆", "河北", "山西", "辽宁", "吉林", "黑龙江", "江苏",
    "浙江", "安徽", "福建", "江西", "山东", "河南", "湖北", "湖南", "广东", "海南",
    "四川", "贵州", "云南", "陕西", "甘肃", "青海", "台湾", "内蒙古", "内蒙", "广西",
    "西藏", "宁夏", "新疆", "香港", "澳门",
)


def _index_provinces() -> dict[str, tuple[tuple[str, bool], ...]]:
    """First two characters -> ((name, is_full_name), ...), longest name first."""
    index: dict[str, tuple[tuple[str, bool], ...]] = {}
    names = [(p, True) for p in PROVINCES_FULL] + [(p, False) for p in PROVINCES_SHORT]
    for name, full in sorted(names, key=lambda x: -len(x[0])):
        index[name[:2]] = (*index.get(name[:2], ()), (name, full))
    return index


_PROVINCE_NAMES = _index_provinces()
#: A short province name ("湖南") followed by one of these is a place or street
#: named after the province (湖南路, 吉林市), not the province itself.
_NOT_AFTER_SHORT_PROVINCE = frozenset("市省区县州盟旗路街巷道弄村镇乡号里庄大")
_COUNTRIES = ("中华人民共和国", "中国")


def _province_end(s: str) -> int:
    """Length of a leading province-level name in ``s`` (0 if none)."""
    for name, full in _PROVINCE_NAMES.get(s[:2], ()):
        if s.startswith(name):
            if full or s[len(name):len(name) + 1] not in _NOT_AFTER_SHORT_PROVINCE:
                return len(name)
    return 0


_H = f"[{HAN_CLASS}]"
_UNIT_RE = re.compile(
    "^(?:"
    f"{_H}{{2,12}}?(?:自治州|自治县|自治旗|地区|林区)"
    f"|{_H}{{1,6}}?盟"
    f"|{_H}{{2,4}}?省"
    f"|{_H}{{2,4}}?市(?!场)"
    f"|{_H}{{1,4}}?县"
    f"|{_H}{{2,4}}?(?<![小社校厂园景])区"
    f"|{_H}{{2,4}}?旗"
    ")"
)
ADDRESS_ANCHORS = re.compile("[乡镇村路街号]")


def strip_admin_prefixes(s: str) -> str:
    """Drop leading country / province / prefecture / county parts while what
    remains still has a 乡/镇/街道/村/路/街/号 part.  Runs to a fixed point, so
    it is idempotent."""
    for _ in range(12):
        cut = 0
        for c in _COUNTRIES:
            if s.startswith(c):
                cut = len(c)
                break
        else:
            cut = _province_end(s)
            if not cut:
                m = _UNIT_RE.match(s)
                cut = m.end() if m else 0
        if not cut or not ADDRESS_ANCHORS.search(s, cut):
            break
        s = s[cut:]
    return s


_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5,
              "六": 6, "七": 7, "八": 8, "九": 9}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000}
_CN_NUM = "零〇一二两三四五六七八九十百千"
_NUMERAL_BEFORE_UNIT = re.compile(f"([{_CN_NUM}]+)(?=组|号|栋|幢|单元|室|楼|层)")


def chinese_numeral(run: str) -> int | None:
    """三 -> 3, 十二 -> 12, 二十一 -> 21, 一百零五 -> 105, 三〇一 -> 301."""
    if not any(ch in _CN_UNITS for ch in run):
        return int("".join(str(_CN_DIGITS[ch]) for ch in run))
    total, cur, last_unit = 0, None, 10_000
    for ch in run:
        if ch in _CN_DIGITS:
            if cur is not None and _CN_DIGITS[ch] != 0 and cur != 0:
                return None  # two digits in a row without a unit
            cur = _CN_DIGITS[ch]
        else:
            unit = _CN_UNITS[ch]
            if unit >= last_unit:
                return None
            total += (cur if cur else 1) * unit
            cur, last_unit = None, unit
    return total + (cur or 0)


def arabic_numerals(s: str) -> str:
    """Chinese numerals before 组/号/栋/单元/室/楼 -> Arabic; 村民小组 -> 组; 5# -> 5号."""
    s = s.replace("村民小组", "组")

    def sub(m: re.Match[str]) -> str:
        n = chinese_numeral(m.group(1))
        return m.group(1) if n is None else str(n)

    return _NUMERAL_BEFORE_UNIT.sub(sub, s)
