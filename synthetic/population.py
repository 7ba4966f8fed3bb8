"""The synthetic county's people: households, names, ID numbers, addresses, phones.

All vectorised with numpy: a million people take seconds.  Nobody here is
real.  The county is 青石县 (region code 522199: a real province and
prefecture prefix, 贵州省遵义市, with a county number that does not exist),
about a tenth of adults were born elsewhere and carry another region code.

Household model (per household, then per slot):

* sizes 1–6 (1 ≈ 10 %: mostly elderly people living alone, who are the
  特困 candidates), a head (slot 0; 80 % men), a spouse in slot 1 (85 % of
  households of 2+), children or -- under an older head -- grandchildren, and
  in households of 5–6 sometimes a parent of the head in the last slot;
* heads' ages ~ N(48, 12) (N(62, 14) for people alone), children 20–38
  years younger than the head, grandchildren 42–62; together this gives a
  plausible rural age pyramid;
* children carry the father's surname; minority (Uyghur-style) households,
  ~2 %, name everyone ``given·father's given``.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from synthetic import names as nm
from synthetic.errors import AddressParts, canonical_addresses, random_phones

COUNTY_CODE = "522199"
PROVINCE, CITY, COUNTY = "贵州省", "遵义市", "青石县"
#: Region codes of people born elsewhere (real codes of other districts).
OTHER_REGIONS = ("520102", "520103", "520302", "520402", "510104", "500101", "530102",
                 "440304", "330106", "430104", "450102", "420106")
#: Region codes for adults of minority households born in Xinjiang.
MINORITY_REGIONS = ("650102", "653101", "652901")

#: Weights of the ID check digit (GB 11643-1999, ISO 7064 MOD 11-2).
ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
ID_CHECK_MAP = np.array(list("10X98765432"), dtype="U1")

TOWN = "城关镇"
RURAL_TOWNSHIPS = ("石门镇", "青龙镇", "白沙镇", "黄泥乡", "新场镇", "龙潭乡", "松林镇",
                   "马场镇", "桃花乡", "岩脚镇", "三合乡")
STREETS = ("人民路", "解放路", "中山路", "建设路", "文化路", "新华街", "东门街", "南门街",
           "北门街", "西门街", "滨河路", "环城路", "青石大道", "兴隆街", "育才路", "和平路")
_VILLAGE_FIRST = "石水青白黄新龙松马桃岩三长高花大小上下沙红金银凤响茶竹杨柳梨枫坪河山田林溪"
_VILLAGE_SECOND = "门口岗坝坪湾沟塘寨山河桥岭冲洞林田场坡溪庄园堡关铺"

RELATION_HEAD, RELATION_SPOUSE, RELATION_CHILD, RELATION_GRANDCHILD, RELATION_PARENT = range(5)


def id_check_chars(first17: np.ndarray) -> np.ndarray:
    """Check characters for 17-digit ID prefixes given as int64."""
    x = first17.astype(np.int64).copy()
    total = np.zeros(len(x), dtype=np.int64)
    for w in ID_WEIGHTS[::-1]:
        total += (x % 10) * w
        x //= 10
    return ID_CHECK_MAP[total % 11]


def _villages() -> dict[str, list[str]]:
    """A fixed geography (independent of the seed): 8–16 villages per township."""
    g = np.random.default_rng(2260)
    pool = [a + b for a in _VILLAGE_FIRST for b in _VILLAGE_SECOND]
    order = g.permutation(len(pool))
    out, k = {}, 0
    for t in RURAL_TOWNSHIPS:
        m = int(g.integers(8, 17))
        out[t] = [pool[i] for i in order[k:k + m]]
        k += m
    return out


VILLAGES = _villages()


def _ages_to_birth_dates(rng: np.random.Generator, age: np.ndarray, as_of: dt.date) -> np.ndarray:
    days = np.floor((np.clip(age, 0, 99.9) + rng.random(len(age)) * 0.999) * 365.2425).astype(np.int64)
    days = np.minimum(days, int(99.9 * 365.2425))
    return np.datetime64(as_of, "D") - days


def age_on(birth: np.ndarray, as_of: dt.date) -> np.ndarray:
    """Completed years of age on ``as_of`` for ``datetime64[D]`` birth dates."""
    b = pd.DatetimeIndex(birth)
    years = as_of.year - b.year.to_numpy()
    before = (b.month.to_numpy() > as_of.month) | ((b.month.to_numpy() == as_of.month) & (b.day.to_numpy() > as_of.day))
    return years - before.astype(int)


def generate_population(rng: np.random.Generator, people: int, as_of: dt.date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(population, households)``: one row per person and one per household."""
    # --- households and slots
    sizes_p = np.array([0.10, 0.22, 0.27, 0.21, 0.13, 0.07])
    mean = float((np.arange(1, 7) * sizes_p).sum())
    sizes = rng.choice(np.arange(1, 7), size=int(people / mean * 1.1) + 10, p=sizes_p)
    cum = np.cumsum(sizes)
    n_hh = int(np.searchsorted(cum, people) + 1)
    sizes = sizes[:n_hh].copy()
    sizes[-1] -= int(cum[n_hh - 1] - people)
    if sizes[-1] <= 0:  # pragma: no cover - searchsorted makes this impossible
        raise AssertionError("household sizes")
    hh_of = np.repeat(np.arange(n_hh), sizes)
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    slot = np.arange(people) - start[hh_of]
    size_p = sizes[hh_of]

    # --- per household
    single = sizes == 1
    head_age = np.where(single, rng.normal(62, 14, n_hh), rng.normal(48, 12, n_hh))
    head_age = np.clip(head_age, 22, 92)
    head_male = rng.random(n_hh) < 0.8
    has_spouse = (sizes >= 2) & (rng.random(n_hh) < 0.85)
    has_parent = (sizes >= 5) & (rng.random(n_hh) < 0.5)
    minority_hh = rng.random(n_hh) < 0.02
    rural_hh = rng.random(n_hh) < 0.65

    # --- roles
    rel = np.full(people, RELATION_CHILD)
    rel[slot == 0] = RELATION_HEAD
    rel[(slot == 1) & has_spouse[hh_of]] = RELATION_SPOUSE
    rel[(slot == size_p - 1) & (slot >= 2) & has_parent[hh_of]] = RELATION_PARENT
    ha = head_age[hh_of]
    grand = (rel == RELATION_CHILD) & (ha >= 55) & (rng.random(people) < 0.5)
    rel[grand] = RELATION_GRANDCHILD

    # --- sex and age
    hm = head_male[hh_of]
    male = rng.random(people) < 0.52
    male[rel == RELATION_HEAD] = hm[rel == RELATION_HEAD]
    male[rel == RELATION_SPOUSE] = ~hm[rel == RELATION_SPOUSE]
    u = rng.random(people)
    age = ha.copy()
    sp = rel == RELATION_SPOUSE
    age[sp] = np.clip(ha[sp] + np.where(hm[sp], -2.0, 2.0) + rng.normal(0, 3, sp.sum()), 18, 95)
    ch = rel == RELATION_CHILD
    hi = np.minimum(38.0, ha[ch])
    lo = np.minimum(20.0, hi)
    age[ch] = ha[ch] - (lo + u[ch] * (hi - lo))
    gc = rel == RELATION_GRANDCHILD
    hi = np.minimum(62.0, ha[gc])
    lo = np.minimum(42.0, hi)
    age[gc] = ha[gc] - (lo + u[gc] * (hi - lo))
    pa = rel == RELATION_PARENT
    age[pa] = np.minimum(ha[pa] + 20 + u[pa] * 12, 99.0)
    birth = _ages_to_birth_dates(rng, age, as_of)
    age_int = age_on(birth, as_of)
    born_before_1980 = birth < np.datetime64("1980-01-01")

    # --- names
    sex = np.where(male, "M", "F")
    head_idx = start[hh_of]
    spouse_idx = np.where(has_spouse[hh_of], head_idx + 1, -1)
    surname = nm.draw_surnames(rng, people)
    # father of the head's children: the head if male, else the spouse if any
    father_idx = np.where(hm, head_idx, np.where(spouse_idx >= 0, spouse_idx, head_idx))
    kids = (rel == RELATION_CHILD) | (rel == RELATION_GRANDCHILD)
    surname[kids] = surname[father_idx[kids]]
    pf = pa & male  # the head's father shares the head's surname
    surname[pf] = surname[head_idx[pf]]
    given = nm.draw_given_names(rng, sex, born_before_1980)
    minority = minority_hh[hh_of]
    own = nm.draw_minority_given(rng, sex)
    patron = nm.draw_minority_given(rng, np.full(people, "M"))
    patron[kids] = own[father_idx[kids]]
    full_han = np.strings.add(surname, given)
    full_min = np.strings.add(np.strings.add(own, nm.MIDDLE_DOT), patron)
    name = np.where(minority, full_min, full_han)
    surname_out = np.where(minority, "", surname)

    # --- region codes and ID numbers
    adult = age_int >= 18
    region = np.full(people, COUNTY_CODE, dtype="U6")
    away = adult & ~minority & (rng.random(people) < 0.10)
    region[away] = rng.choice(np.array(OTHER_REGIONS), size=int(away.sum()))
    xj = adult & minority & (rng.random(people) < 0.7)
    region[xj] = rng.choice(np.array(MINORITY_REGIONS), size=int(xj.sum()))
    ymd = pd.DatetimeIndex(birth)
    date_int = (ymd.year.to_numpy() * 10000 + ymd.month.to_numpy() * 100 + ymd.day.to_numpy()).astype(np.int64)
    base = region.astype(np.int64) * 10**11 + date_int * 1000
    seq = _unique_sequences(rng, base, male)
    first17 = base + seq
    id_number = np.strings.add(first17.astype("U17"), id_check_chars(first17))

    # --- addresses (per household)
    township = np.full(n_hh, TOWN, dtype="U4")
    n_rural = int(rural_hh.sum())
    township[rural_hh] = rng.choice(np.array(RURAL_TOWNSHIPS), size=n_rural)
    village = np.full(n_hh, "", dtype="U4")
    group = np.zeros(n_hh, dtype=np.int64)
    for t in RURAL_TOWNSHIPS:
        m = township == t
        village[m] = rng.choice(np.array(VILLAGES[t]), size=int(m.sum()))
    group[rural_hh] = rng.integers(1, 13, size=n_rural)
    street = np.full(n_hh, "", dtype="U4")
    street[~rural_hh] = rng.choice(np.array(STREETS), size=n_hh - n_rural)
    house_no = np.zeros(n_hh, dtype=np.int64)
    house_no[~rural_hh] = rng.integers(1, 300, size=n_hh - n_rural)
    parts = AddressParts((PROVINCE, CITY, COUNTY), township, rural_hh, village, group, street, house_no)
    hh_address = canonical_addresses(parts)

    # --- phones: owners get unique numbers; others list the head's or none
    p_own = np.select([age_int < 12, age_int < 18, age_int < 70], [0.0, 0.5, 0.93], 0.45)
    owns = rng.random(people) < p_own
    own_phone = np.full(people, "", dtype="U11")
    own_phone[owns] = _unique_phones(rng, int(owns.sum()))
    phone = own_phone.copy()
    uses_head = (rel != RELATION_HEAD) & ~owns & ((age_int >= 60) | (age_int < 18)) & (rng.random(people) < 0.6)
    uses_head |= (rel == RELATION_SPOUSE) & owns & (rng.random(people) < 0.1)
    phone[uses_head] = own_phone[head_idx[uses_head]]

    relation_text = np.array(["本人", "配偶", "子", "孙子", "父亲"], dtype="U2")[rel]
    relation_text = np.where((rel == RELATION_CHILD) & ~male, "女", relation_text)
    relation_text = np.where((rel == RELATION_GRANDCHILD) & ~male, "孙女", relation_text)
    relation_text = np.where((rel == RELATION_PARENT) & ~male, "母亲", relation_text)

    pop = pd.DataFrame({
        "person_id": np.arange(1, people + 1, dtype=np.int64),
        "household_id": hh_of.astype(np.int64) + 1,
        "relation": relation_text,
        "name": name,
        "surname": surname_out,
        "minority": minority,
        "sex": sex,
        "birth_date": birth,
        "age": age_int,
        "region_code": region,
        "id_number": id_number,
        "phone": phone,
        "address": hh_address[hh_of],
    })
    hh = pd.DataFrame({
        "household_id": np.arange(1, n_hh + 1, dtype=np.int64),
        "head_person_id": start.astype(np.int64) + 1,
        "size": sizes,
        "rural": rural_hh,
        "township": township,
        "village": village,
        "group": group,
        "street": street,
        "house_no": house_no,
        "address": hh_address,
    })
    return pop, hh


def _unique_sequences(rng: np.random.Generator, base: np.ndarray, male: np.ndarray) -> np.ndarray:
    """Sequence codes 001–999, odd for men and even for women, unique per region+date."""
    n = len(base)
    seq = np.empty(n, dtype=np.int64)
    todo = np.arange(n)
    for _ in range(200):
        if len(todo) == 0:
            break
        k = rng.integers(0, 499, size=len(todo))
        seq[todo] = np.where(male[todo], 2 * k + 1, 2 * k + 2)
        key = base + seq
        _, first = np.unique(key, return_index=True)
        dup = np.ones(n, bool)
        dup[first] = False
        todo = np.flatnonzero(dup)
    else:  # pragma: no cover
        raise RuntimeError("could not make ID numbers unique")
    return seq


def _unique_phones(rng: np.random.Generator, n: int) -> np.ndarray:
    out = random_phones(rng, n)
    for _ in range(100):
        _, first = np.unique(out, return_index=True)
        dup = np.ones(n, bool)
        dup[first] = False
        if not dup.any():
            return out
        out[dup] = random_phones(rng, int(dup.sum()))
    raise RuntimeError("could not make phone numbers unique")  # pragma: no cover


def address_parts_of(hh: pd.DataFrame, household_ids: np.ndarray) -> AddressParts:
    """Address components for rows belonging to ``household_ids`` (1-based)."""
    i = np.asarray(household_ids, dtype=np.int64) - 1
    return AddressParts((PROVINCE, CITY, COUNTY), hh["township"].to_numpy()[i].astype("U4"),
                        hh["rural"].to_numpy()[i], hh["village"].to_numpy()[i].astype("U4"),
                        hh["group"].to_numpy()[i], hh["street"].to_numpy()[i].astype("U4"),
                        hh["house_no"].to_numpy()[i])
