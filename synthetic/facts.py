"""What each agency knows, before anyone types it: the true records per dataset.

One DataFrame per dataset kind, keyed by ``person_id`` (and, for cases, by
a case group), with the attribute values the rules look at.  The exports are
rendered from these (with the error model) and the expected clues are
computed from these, so a clue is "true" exactly when the facts make it so.

Natural rates (shares of the population) are modest and fixed; planting
(:mod:`synthetic.planting`) adds rows on top with the ``add_*`` functions.
Case numbers are assigned last, by :func:`number_cases`, so planted rows get
numbers like everyone else's.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from synthetic.names import draw_surnames

#: Dataset kinds, in the order the schema lists them.
DATASETS = ("procuratorate_victims", "court_enforcement", "civil_affairs_dibao",
            "civil_affairs_tekun", "disability_certificates", "education_students", "wage_claimants")

INJURIES = ("none", "minor", "serious", "disability", "death")
INJURY_TEXT = {"none": "无", "minor": "轻伤", "serious": "重伤", "disability": "伤残", "death": "死亡"}
#: 案由 → (weight, injury distribution over INJURIES, log-normal loss (median yuan, sigma), P(loss > 0))
CAUSES: dict[str, tuple[float, tuple[float, ...], tuple[float, float], float]] = {
    "故意伤害": (0.25, (0.0, 0.55, 0.30, 0.12, 0.03), (2500, 0.8), 0.5),
    "交通肇事": (0.15, (0.0, 0.30, 0.35, 0.20, 0.15), (6000, 0.9), 0.8),
    "诈骗": (0.25, (1.0, 0.0, 0.0, 0.0, 0.0), (15000, 1.3), 1.0),
    "盗窃": (0.15, (1.0, 0.0, 0.0, 0.0, 0.0), (5000, 1.1), 1.0),
    "抢劫": (0.05, (0.50, 0.35, 0.15, 0.0, 0.0), (3000, 1.0), 0.9),
    "寻衅滋事": (0.10, (0.30, 0.60, 0.10, 0.0, 0.0), (1500, 0.8), 0.4),
    "过失致人重伤": (0.03, (0.0, 0.0, 0.70, 0.30, 0.0), (2000, 0.8), 0.3),
    "故意杀人": (0.02, (0.0, 0.0, 0.30, 0.0, 0.70), (2000, 0.8), 0.2),
}
#: Losses in this band are nudged out of it, so no rule depends on ≥ versus >.
LOSS_GAP = (9500, 10500)

DISABILITY_CATEGORIES = ("visual", "hearing", "speech", "physical", "intellectual", "mental", "multiple")
DISABILITY_TEXT = {"visual": "视力", "hearing": "听力", "speech": "言语", "physical": "肢体",
                   "intellectual": "智力", "mental": "精神", "multiple": "多重"}
DISABILITY_CODE = {c: i + 1 for i, c in enumerate(DISABILITY_CATEGORIES)}
GRADE_TEXT = {1: "一级", 2: "二级", 3: "三级", 4: "四级"}

#: Closing durations (days) avoid this band, so "< 3 months" is unambiguous
#: whether months are counted as calendar months or as 30-day blocks.
DURATION_GAP = (80, 100)

GRADE_BY_AGE = {6: "一年级", 7: "二年级", 8: "三年级", 9: "四年级", 10: "五年级", 11: "六年级",
                12: "七年级", 13: "八年级", 14: "九年级", 15: "高一", 16: "高二", 17: "高三"}

_EMPLOYER_A = "宏达鑫源顺发恒通金鼎华丰永盛兴旺富民隆昌天成广源瑞祥嘉禾开元"
_EMPLOYER_B = ("建筑工程", "劳务", "建材", "服装", "矿业", "农业开发", "装饰工程", "运输", "食品", "物业管理")


def _pairs(s: str) -> list[str]:
    return [s[i:i + 2] for i in range(0, len(s), 2)]


def _dates_between(rng: np.random.Generator, lo: dt.date, hi: dt.date, n: int) -> np.ndarray:
    a, b = np.datetime64(lo, "D"), np.datetime64(hi, "D")
    return a + rng.integers(0, int((b - a).astype(int)) + 1, size=n)


def _pick(rng: np.random.Generator, weights: np.ndarray, k: int, replace: bool = False) -> np.ndarray:
    """Indices drawn with probability ∝ weights (0 weight never)."""
    w = np.asarray(weights, float)
    k = min(k, int((w > 0).sum())) if not replace else k
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    return rng.choice(len(w), size=k, replace=replace, p=w / w.sum())


# --- row constructors (used by the natural draw and by planting) -----------


def victim_rows(rng: np.random.Generator, person_ids: np.ndarray, as_of: dt.date, *,
                cause: np.ndarray | None = None, injury: np.ndarray | None = None,
                loss: np.ndarray | None = None, compensated: np.ndarray | None = None,
                assisted: np.ndarray | None = None, case_group: np.ndarray | None = None,
                planted: bool = False) -> pd.DataFrame:
    """Victim rows for ``person_ids``; anything not given is drawn."""
    n = len(person_ids)
    names = list(CAUSES)
    if cause is None:
        cause = draw_causes(rng, n)
    cause = np.asarray(cause, dtype=object)
    if injury is None:
        injury = np.empty(n, dtype=object)
        for c in names:
            m = cause == c
            injury[m] = np.array(INJURIES)[rng.choice(5, size=int(m.sum()), p=CAUSES[c][1])]
    if loss is None:
        loss = np.zeros(n, dtype=np.int64)
        for c in names:
            m = cause == c
            med, sig = CAUSES[c][2]
            val = np.exp(np.log(med) + sig * rng.standard_normal(int(m.sum())))
            val = np.where(rng.random(int(m.sum())) < CAUSES[c][3], val, 0)
            loss[m] = (np.round(val / 10) * 10).astype(np.int64)
    loss = _out_of_gap(np.asarray(loss, dtype=np.int64), LOSS_GAP)
    if compensated is None:
        grave = np.isin(injury, ["serious", "disability", "death"])
        compensated = rng.random(n) < np.where(grave, 0.35, 0.45)
    if assisted is None:
        assisted = ~np.asarray(compensated) & (rng.random(n) < 0.05)
    if case_group is None:
        case_group = -np.ones(n, dtype=np.int64)  # numbered later: one case each
    accepted = _dates_between(rng, dt.date(2019, 1, 1), as_of - dt.timedelta(days=30), n)
    return pd.DataFrame({
        "person_id": np.asarray(person_ids, dtype=np.int64), "case_group": case_group,
        "accepted": accepted, "cause": cause, "injury": injury, "loss": loss,
        "compensated": np.asarray(compensated, bool), "assisted": np.asarray(assisted, bool),
        "planted": planted,
    })


def draw_causes(rng: np.random.Generator, n: int) -> np.ndarray:
    names = list(CAUSES)
    w = np.array([CAUSES[c][0] for c in names])
    return np.array(names, dtype=object)[rng.choice(len(names), size=n, p=w / w.sum())]


def _out_of_gap(v: np.ndarray, gap: tuple[int, int]) -> np.ndarray:
    lo, hi = gap
    inside = (v >= lo) & (v < hi)
    mid = (lo + hi) / 2
    return np.where(inside, np.where(v < mid, lo - 500, hi + 500), v).astype(np.int64)


def court_rows(rng: np.random.Generator, person_ids: np.ndarray, as_of: dt.date, *,
               zhongben: np.ndarray | None = None, duration: np.ndarray | None = None,
               asset_report: np.ndarray | None = None, restricted: np.ndarray | None = None,
               planted: bool = False) -> pd.DataFrame:
    """Enforcement cases with ``person_ids`` as applicants (申请执行人)."""
    n = len(person_ids)
    if zhongben is None:
        zhongben = rng.random(n) < 0.6
    if duration is None:
        short = rng.random(n) < 0.15
        duration = np.where(short, rng.integers(30, DURATION_GAP[0], size=n),
                            rng.integers(DURATION_GAP[1] + 1, 700, size=n))
    duration = np.asarray(duration, dtype=np.int64)
    bad = (duration >= DURATION_GAP[0]) & (duration <= DURATION_GAP[1])
    if bad.any():
        raise ValueError("court case durations must avoid the 80–100 day band")
    if asset_report is None:
        asset_report = rng.random(n) < 0.85
    if restricted is None:
        restricted = rng.random(n) < 0.85
    last_close = np.datetime64(as_of - dt.timedelta(days=10), "D")
    filed = _dates_between(rng, dt.date(2018, 1, 1), as_of - dt.timedelta(days=120), n)
    closed = filed + duration
    late = closed > last_close
    filed = np.where(late, last_close - duration, filed)
    closed = filed + duration
    amount = np.round(np.exp(np.log(30000) + 1.2 * rng.standard_normal(n)) / 100) * 100
    respondent = _respondents(rng, n)
    return pd.DataFrame({
        "person_id": np.asarray(person_ids, dtype=np.int64), "filed": filed, "closed": closed,
        "zhongben": np.asarray(zhongben, bool), "asset_report": np.asarray(asset_report, bool),
        "restricted": np.asarray(restricted, bool), "amount": np.maximum(amount, 500).astype(np.int64),
        "respondent": respondent, "planted": planted,
    })


def _respondents(rng: np.random.Generator, n: int) -> np.ndarray:
    """被执行人: a company name or a masked natural person (never linked)."""
    a = _pairs(_EMPLOYER_A)
    comp = np.array([f"青石县{a[i]}{_EMPLOYER_B[j]}有限公司" for i in range(len(a))
                     for j in range(len(_EMPLOYER_B))], dtype=object)
    person = np.strings.add(draw_surnames(rng, n), "某").astype(object)
    is_comp = rng.random(n) < 0.6
    return np.where(is_comp, comp[rng.integers(0, len(comp), size=n)], person)


def months_between(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Completed calendar months from ``start`` to ``end`` (``datetime64[D]``)."""
    s, e = pd.DatetimeIndex(start), pd.DatetimeIndex(end)
    m = (e.year.to_numpy() - s.year.to_numpy()) * 12 + (e.month.to_numpy() - s.month.to_numpy())
    return m - (e.day.to_numpy() < s.day.to_numpy()).astype(int)


def wage_rows(rng: np.random.Generator, person_ids: np.ndarray, group: int, as_of: dt.date, *,
              support: np.ndarray | None = None, recovered: np.ndarray | None = None,
              planted: bool = False) -> pd.DataFrame:
    """One employer's group of unpaid workers (``group`` numbers the employer)."""
    n = len(person_ids)
    if support is None:
        support = rng.random(n) < 0.85
    if recovered is None:
        group_recovered = rng.random() < 0.3
        recovered = np.where(rng.random(n) < 0.05, not group_recovered, group_recovered)
    amount = np.round(np.exp(np.log(12000) + 0.6 * rng.standard_normal(n)) / 10) * 10
    accepted = _dates_between(rng, dt.date(2020, 1, 1), as_of - dt.timedelta(days=30), 1)[0]
    return pd.DataFrame({
        "person_id": np.asarray(person_ids, dtype=np.int64), "group": group,
        "accepted": np.full(n, accepted), "amount": amount.astype(np.int64),
        "support": np.asarray(support, bool), "recovered": np.asarray(recovered, bool),
        "planted": planted,
    })


_PLACES = ("青石县", "遵义市", "贵州", "黔北")


def employer_name(group: int) -> str:
    """A made-up company name, distinct for every group number."""
    a = _pairs(_EMPLOYER_A)
    k = int(group)
    place = _PLACES[(k // (len(a) * len(_EMPLOYER_B))) % len(_PLACES)]
    extra = k // (len(a) * len(_EMPLOYER_B) * len(_PLACES))
    return f"{place}{a[k % len(a)]}{_EMPLOYER_B[(k // len(a)) % len(_EMPLOYER_B)]}有限公司" + (
        f"第{extra + 1}分公司" if extra else "")


def dibao_rows(rng: np.random.Generator, pop: pd.DataFrame, household_ids: np.ndarray,
               planted: bool = False) -> pd.DataFrame:
    """All members of ``household_ids`` (one row each), with the household's allowance."""
    hid = pop["household_id"].to_numpy()
    m = np.isin(hid, household_ids)
    members = pop.loc[m, ["person_id", "household_id"]].reset_index(drop=True)
    size = members.groupby("household_id")["person_id"].transform("size").to_numpy()
    per_head = {h: int(rng.integers(30, 66)) * 10 for h in np.unique(household_ids)}
    monthly = np.array([per_head[h] for h in members["household_id"]], dtype=np.int64) * size
    members["covered"] = size
    members["monthly"] = monthly
    members["planted"] = planted
    return members


def student_rows(pop: pd.DataFrame, hh: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Every enrolled child aged 6–17 with school, grade and guardian (household head)."""
    age = pop["age"].to_numpy()
    p = np.select([age < 6, age <= 14, age <= 17], [0.0, 0.98, 0.8], 0.0)
    m = rng.random(len(pop)) < p
    st = pop.loc[m, ["person_id", "household_id", "age"]].reset_index(drop=True)
    head = hh["head_person_id"].to_numpy()[st["household_id"].to_numpy() - 1]
    st["guardian_id"] = head
    township = hh["township"].to_numpy()[st["household_id"].to_numpy() - 1]
    a = st["age"].to_numpy()
    st["grade"] = [GRADE_BY_AGE[int(x)] for x in a]
    primary = np.where(township == "城关镇", np.where(rng.random(len(st)) < 0.5, "青石县第一小学", "青石县第二小学"),
                       np.strings.add(township.astype(str), "中心小学"))
    junior = np.where(rng.random(len(st)) < 0.5, "青石县第二中学", np.strings.add(township.astype(str), "中学"))
    senior = np.where(rng.random(len(st)) < 0.7, "青石县第一中学", "青石县民族中学")
    st["school"] = np.select([a <= 11, a <= 14], [primary, junior], senior)
    st["has_id"] = rng.random(len(st)) >= 0.015
    st["j_number"] = np.strings.add("J", rng.integers(10**17, 10**18, size=len(st)).astype("U18"))
    st = st[st["guardian_id"] != st["person_id"]].reset_index(drop=True)
    st["planted"] = False
    return st.drop(columns=["age"])


# --- the natural draw ------------------------------------------------------


def generate_facts(rng: np.random.Generator, pop: pd.DataFrame, hh: pd.DataFrame, as_of: dt.date
                   ) -> dict[str, pd.DataFrame]:
    """The true records of every dataset for the population (before planting)."""
    n = len(pop)
    age = pop["age"].to_numpy()
    facts: dict[str, pd.DataFrame] = {}

    # 低保: 6 % of rural and 3 % of town households; older heads more often
    head_age = age[hh["head_person_id"].to_numpy() - 1]
    p = np.where(hh["rural"].to_numpy(), 0.06, 0.03) * np.where(head_age >= 60, 1.6, 1.0)
    dibao_hh = hh["household_id"].to_numpy()[rng.random(len(hh)) < p]
    facts["civil_affairs_dibao"] = dibao_rows(rng, pop, dibao_hh)
    in_dibao = np.isin(pop["person_id"].to_numpy(), facts["civil_affairs_dibao"]["person_id"].to_numpy())

    # 特困: ~0.6 % of people, mostly the old living alone; never also in 低保
    alone = hh["size"].to_numpy()[pop["household_id"].to_numpy() - 1] == 1
    w = np.select([(age >= 60) & alone, age >= 70, age >= 18], [50.0, 2.0, 0.05], 0.05) * ~in_dibao
    idx = _pick(rng, w, round(0.006 * n))
    facts["civil_affairs_tekun"] = pd.DataFrame({
        "person_id": pop["person_id"].to_numpy()[idx],
        "mode": np.where(rng.random(len(idx)) < 0.3, "集中供养", "分散供养"),
        "planted": False,
    })

    # 残疾人证: ~3 %, more often with age
    idx = _pick(rng, age / 40 + 0.2, round(0.03 * n))
    facts["disability_certificates"] = disability_rows(rng, pop["person_id"].to_numpy()[idx])

    # victims: ~1.5 % of people (with replacement: a few are victims twice), cases of 1–3
    w = np.select([age < 10, age < 18, age < 80], [0.05, 0.4, 1.0], 0.5)
    idx = _pick(rng, w, round(0.015 * n), replace=True)
    per_case = rng.choice([1, 2, 3], size=len(idx), p=[0.8, 0.15, 0.05])
    groups = np.repeat(np.arange(len(idx)), per_case)[: len(idx)]
    cause = draw_causes(rng, int(groups.max()) + 1 if len(groups) else 0)[groups]
    v = victim_rows(rng, pop["person_id"].to_numpy()[idx], as_of, cause=cause, case_group=groups)
    # one case, one date
    first = v.groupby("case_group")["accepted"].transform("min")
    v["accepted"] = first.to_numpy()
    facts["procuratorate_victims"] = v

    # court enforcement applicants: ~1.2 % of adults 20+
    idx = _pick(rng, (age >= 20).astype(float), round(0.012 * n), replace=True)
    facts["court_enforcement"] = court_rows(rng, pop["person_id"].to_numpy()[idx], as_of)

    # wage claimants: groups of 4–25 workers (18–60, mostly men, many migrants)
    w = ((age >= 18) & (age <= 60)) * np.where(pop["sex"].to_numpy() == "M", 4.0, 1.0)
    w = w * np.where(pop["region_code"].to_numpy() != "522199", 2.0, 1.0)
    n_groups = max(4, round(n / 4000))
    sizes = rng.integers(4, 26, size=n_groups)
    idx = _pick(rng, w, int(sizes.sum()))
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    rows = [wage_rows(rng, pop["person_id"].to_numpy()[idx[bounds[g]:bounds[g + 1]]], g, as_of)
            for g in range(n_groups)]
    facts["wage_claimants"] = pd.concat(rows, ignore_index=True)

    facts["education_students"] = student_rows(pop, hh, rng)
    return facts


def disability_rows(rng: np.random.Generator, person_ids: np.ndarray, *, grade: np.ndarray | None = None,
                    category: np.ndarray | None = None, planted: bool = False) -> pd.DataFrame:
    n = len(person_ids)
    if category is None:
        category = np.array(DISABILITY_CATEGORIES)[
            rng.choice(7, size=n, p=[0.12, 0.20, 0.01, 0.40, 0.07, 0.08, 0.12])]
    if grade is None:
        grade = rng.choice([1, 2, 3, 4], size=n, p=[0.15, 0.25, 0.30, 0.30])
    return pd.DataFrame({"person_id": np.asarray(person_ids, dtype=np.int64),
                         "category": np.asarray(category, dtype=object),
                         "grade": np.asarray(grade, dtype=np.int64), "planted": planted})


# --- case numbers ----------------------------------------------------------


def number_cases(facts: dict[str, pd.DataFrame]) -> None:
    """Give every case its number, in order of date (in place)."""
    v = facts["procuratorate_victims"]
    solo = v["case_group"] < 0
    base = int(v["case_group"].max()) + 1 if len(v) else 0
    v.loc[solo, "case_group"] = base + np.arange(int(solo.sum()))
    first = v.groupby("case_group")["accepted"].min().sort_values(kind="stable")
    year = pd.DatetimeIndex(first.to_numpy()).year.to_numpy()
    seq = pd.Series(1, index=first.index).groupby(year).cumsum().to_numpy()
    num = {g: f"青检刑诉〔{y}〕{s:04d}号" for g, y, s in zip(first.index, year, seq, strict=True)}
    v["case_no"] = v["case_group"].map(num)
    facts["procuratorate_victims"] = v.sort_values(["accepted", "case_no"], kind="stable").reset_index(drop=True)

    c = facts["court_enforcement"].sort_values("filed", kind="stable").reset_index(drop=True)
    year = pd.DatetimeIndex(c["filed"].to_numpy()).year.to_numpy()
    seq = pd.Series(1, index=c.index).groupby(year).cumsum().to_numpy()
    c["case_no"] = [f"（{y}）黔0399执{s}号" for y, s in zip(year, seq, strict=True)]
    facts["court_enforcement"] = c

    w = facts["wage_claimants"].sort_values(["accepted", "group"], kind="stable").reset_index(drop=True)
    year = pd.DatetimeIndex(w["accepted"].to_numpy()).year.to_numpy()
    seq = pd.Series(1, index=w.index).groupby(year).cumsum().to_numpy()
    w["claim_no"] = [f"青检民支〔{y}〕{s:03d}号" for y, s in zip(year, seq, strict=True)]
    w["employer"] = [employer_name(int(g)) for g in w["group"]]
    facts["wage_claimants"] = w
