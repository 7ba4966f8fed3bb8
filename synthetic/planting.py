"""The judicial-assistance rules as the generator reads them, planting, and truth.

``truth/expected_clues.csv`` lists exactly the (rule, person) pairs that a
perfect linkage plus a correct rule engine must produce.  The conditions
below are those of ``schemas/judicial-assistance.rules.json`` (the rule
set the hub runs), evaluated here on the *true* records
(:mod:`synthetic.facts`) of each person, i.e. on a perfect cluster.
"Hardship" = a record in ``civil_affairs_dibao`` or ``civil_affairs_tekun``.
A ``where`` condition must hold within one record.

R1  judicial_assistance → county-procuratorate
    a victim record with ``compensated = false`` and
    ``injury ∈ {serious, disability, death}``; and hardship or a
    ``disability_certificates`` record.
R2  judicial_assistance → county-procuratorate
    a victim record with ``major_property_loss = true`` (loss ≥ 10 000
    yuan; no generated loss lies in 9 500–10 499) and ``compensated = false``;
    and hardship.
R3  judicial_assistance → county-procuratorate
    a ``court_enforcement`` record with ``zhongben`` and ``applicant``; and hardship.
R4  judicial_assistance → county-procuratorate
    a ``wage_claimants`` record with ``support_prosecution = true`` and
    ``wages_recovered = false``; and a ``zhongben`` + ``applicant`` court
    record or hardship.
X1  drops R1 and R2 when *any* victim record of the person says
    ``compensated = true`` (even another case's).
X2  drops R1–R4 when *any* victim record says ``already_assisted = true``.
R5  referral → education-bureau
    an R1–R4 clue (after X1/X2) and an ``education_students`` record with
    ``role = student`` (the person is a student) or ``role = guardian`` (the
    person is the registered guardian of a student: the dependant is a
    student; the education bureau's guardian row names that student).
R6  referral → womens-federation
    an R1–R4 clue (after X1/X2) and a victim, court or wage-claimant record
    saying ``female = true`` or ``age_band = minor`` (under 18 on the as-of
    date; court and wage records derive both from the ID number).  Every
    R1–R4 person has such a record, so R6 = R1–R4 ∩ (women ∪ minors).
R7  supervision_suggestion → civil-affairs-bureau
    a victim record with ``compensated = false``,
    ``injury ∈ {minor, serious, disability}`` and ``age_band = senior``
    (60+), or such a record (any age) together with a disability record of
    ``disability_grade ≤ 2``; and *no* hardship record.  X1/X2 do not apply.
R8  supervision_suggestion → county-court
    a court record with ``zhongben``, ``applicant`` and (``months_to_close < 3``
    or ``asset_report_done = false`` or ``consumption_restricted = false``);
    and hardship.  Durations never lie in 80–100 days, so calendar months
    and 30-day months agree on "< 3".

Clues are per (rule, person) whatever the number of records behind them.
Ages are computed on ``as_of`` (``truth/meta.json``): the encoder's
reference date for ``age_band`` must be the same.  Truth is about people:
where the data cannot show an attribute (a minor victim whose ID was left
blank has no ``age_band``), the expected clue is still listed -- a miss the
pipeline cannot avoid, and the benchmark should count it as one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from synthetic import facts as fx


@dataclass(frozen=True)
class Rule:
    rule_id: str
    clue_type: str
    receiver: str
    summary: str


#: The rules the generator plants for (the module docstring has the exact conditions).
#: ``receiver`` is the agency id, as in the hub's ``clues.receiver``.
RULES: dict[str, Rule] = {r.rule_id: r for r in (
    Rule("R1", "judicial_assistance", "county-procuratorate",
         "uncompensated victim, serious injury/disability/death, in 低保/特困 or with a disability certificate"),
    Rule("R2", "judicial_assistance", "county-procuratorate",
         "uncompensated victim with property loss ≥ 10 000 yuan, in 低保/特困"),
    Rule("R3", "judicial_assistance", "county-procuratorate",
         "court 终本 applicant in 低保/特困"),
    Rule("R4", "judicial_assistance", "county-procuratorate",
         "supported, unrecovered wage claimant with a 终本 case or in 低保/特困"),
    Rule("R5", "referral", "education-bureau",
         "an R1–R4 clue whose person is a student or a student's guardian"),
    Rule("R6", "referral", "womens-federation",
         "an R1–R4 clue whose victim, court or wage record says female or minor"),
    Rule("R7", "supervision_suggestion", "civil-affairs-bureau",
         "injured uncompensated victim aged 60+ or with disability grade 1–2, in neither 低保 nor 特困"),
    Rule("R8", "supervision_suggestion", "county-court",
         "终本 with a hardship applicant closed < 3 months, or without asset report / consumption restriction"),
)}
#: The exclusions of the rule set (drop clues, produce none).
EXCLUSIONS = {"X1": ("R1", "R2"), "X2": ("R1", "R2", "R3", "R4")}

GRAVE = ("serious", "disability", "death")
INJURED_ALIVE = ("minor", "serious", "disability")
MAJOR_LOSS = 10_000


# --- truth -----------------------------------------------------------------


def evaluate_rules(pop: pd.DataFrame, facts: dict[str, pd.DataFrame], as_of: dt.date) -> pd.DataFrame:
    """Expected clues: one row per (rule, person) that the true records make hold."""
    del as_of  # ages are in pop["age"], computed on as_of
    v = facts["procuratorate_victims"]
    c = facts["court_enforcement"]
    w = facts["wage_claimants"]
    st = facts["education_students"]
    dis = facts["disability_certificates"]
    hardship = set(facts["civil_affairs_dibao"]["person_id"]) | set(facts["civil_affairs_tekun"]["person_id"])
    certified = set(dis["person_id"])
    grade12 = set(dis.loc[dis["grade"] <= 2, "person_id"])
    age = dict(zip(pop["person_id"], pop["age"], strict=True))
    female = set(pop.loc[pop["sex"] == "F", "person_id"])
    uncomp = v[~v["compensated"]]
    x1 = set(v.loc[v["compensated"], "person_id"])
    x2 = set(v.loc[v["assisted"], "person_id"])
    zb = c[c["zhongben"]]  # every court record is an applicant's
    months = fx.months_between(zb["filed"].to_numpy(), zb["closed"].to_numpy())
    zb_flag = zb[(months < 3) | ~zb["asset_report"].to_numpy() | ~zb["restricted"].to_numpy()]

    out: dict[str, set[int]] = {}
    out["R1"] = (set(uncomp.loc[uncomp["injury"].isin(GRAVE), "person_id"]) & (hardship | certified)) - x1 - x2
    out["R2"] = (set(uncomp.loc[uncomp["loss"] >= MAJOR_LOSS, "person_id"]) & hardship) - x1 - x2
    out["R3"] = (set(zb["person_id"]) & hardship) - x2
    ww = w[w["support"] & ~w["recovered"]]
    out["R4"] = (set(ww["person_id"]) & (hardship | set(zb["person_id"]))) - x2
    base = out["R1"] | out["R2"] | out["R3"] | out["R4"]
    out["R5"] = base & (set(st["person_id"]) | set(st["guardian_id"]))
    out["R6"] = {p for p in base if p in female or age[p] < 18}
    injured = uncomp[uncomp["injury"].isin(INJURED_ALIVE)]
    senior = {p for p in injured["person_id"] if age[p] >= 60}
    out["R7"] = (senior | (set(injured["person_id"]) & grade12)) - hardship
    out["R8"] = set(zb_flag["person_id"]) & hardship
    rows = [(r, int(p), RULES[r].clue_type, RULES[r].receiver) for r in RULES for p in sorted(out[r])]
    return pd.DataFrame(rows, columns=["rule_id", "person_id", "clue_type", "receiver"])


# --- planting --------------------------------------------------------------


class _Planter:
    """Chooses fresh people (in no case data yet) and adds records for them."""

    def __init__(self, rng: np.random.Generator, pop: pd.DataFrame, hh: pd.DataFrame,
                 facts: dict[str, pd.DataFrame], as_of: dt.date) -> None:
        self.rng, self.pop, self.hh, self.facts, self.as_of = rng, pop, hh, facts, as_of
        self.pid = pop["person_id"].to_numpy()
        self.age = pop["age"].to_numpy()
        self.female = pop["sex"].to_numpy() == "F"
        busy = set(facts["procuratorate_victims"]["person_id"]) | set(facts["court_enforcement"]["person_id"]) \
            | set(facts["wage_claimants"]["person_id"])
        self.used = np.isin(self.pid, list(busy))
        self.hh_of = pop["household_id"].to_numpy()
        # households that must stay off the rosters (someone planted there needs "in no roster")
        self.keep_out = np.zeros(int(self.hh_of.max()) + 1, dtype=bool)
        self.planted: list[tuple[str, int, str, str]] = []
        self.next_wage_group = int(facts["wage_claimants"]["group"].max()) + 1 if len(facts["wage_claimants"]) else 0

    # membership
    def hardship(self) -> np.ndarray:
        s = np.concatenate([self.facts["civil_affairs_dibao"]["person_id"].to_numpy(),
                            self.facts["civil_affairs_tekun"]["person_id"].to_numpy()])
        return np.isin(self.pid, s)

    def certified(self, max_grade: int = 4) -> np.ndarray:
        d = self.facts["disability_certificates"]
        return np.isin(self.pid, d.loc[d["grade"] <= max_grade, "person_id"].to_numpy())

    def students_or_guardians(self) -> np.ndarray:
        st = self.facts["education_students"]
        return np.isin(self.pid, np.concatenate([st["person_id"].to_numpy(), st["guardian_id"].to_numpy()]))

    def choose(self, mask: np.ndarray, k: int, *, enrol: bool = False, stay_out: bool = False) -> np.ndarray:
        """k fresh person ids among ``mask`` (fewer if there are fewer).

        ``enrol``: they are about to be put on 低保 with their household, so
        households marked keep-out are avoided.  ``stay_out``: they must stay
        off the rosters, so their households are marked keep-out.
        """
        m = mask & ~self.used
        if enrol:
            m &= ~self.keep_out[self.hh_of]
        cand = np.flatnonzero(m)
        if len(cand) == 0:
            return np.empty(0, dtype=np.int64)
        take = self.rng.choice(cand, size=min(k, len(cand)), replace=False)
        take.sort()
        self.used[take] = True
        if stay_out:
            self.keep_out[self.hh_of[take]] = True
        return self.pid[take]

    def enrol_dibao(self, person_ids: np.ndarray) -> None:
        """Put the households of ``person_ids`` on 低保 if they are in no roster yet."""
        hard = self.hardship()
        need = person_ids[~hard[person_ids - 1]]
        if len(need) == 0:
            return
        hids = np.unique(self.pop["household_id"].to_numpy()[need - 1])
        # a household with a 特困 member cannot also be on 低保: such people join 特困 themselves
        tk = self.facts["civil_affairs_tekun"]
        hid_of = self.pop["household_id"].to_numpy()
        bad = {int(hid_of[q - 1]) for q in tk["person_id"]}
        ok = np.array([h not in bad for h in hids], dtype=bool)
        rows = fx.dibao_rows(self.rng, self.pop, hids[ok], planted=True)
        self.facts["civil_affairs_dibao"] = pd.concat([self.facts["civil_affairs_dibao"], rows], ignore_index=True)
        solo = need[np.isin(hid_of[need - 1], hids[~ok])]
        if len(solo):
            extra = pd.DataFrame({"person_id": solo, "mode": "分散供养", "planted": True})
            self.facts["civil_affairs_tekun"] = pd.concat([tk, extra], ignore_index=True)

    def certify(self, person_ids: np.ndarray, grade: int) -> None:
        d = self.facts["disability_certificates"]
        have = np.isin(person_ids, d["person_id"].to_numpy())
        d.loc[d["person_id"].isin(person_ids[have]), "grade"] = np.minimum(
            d.loc[d["person_id"].isin(person_ids[have]), "grade"], grade)
        new = fx.disability_rows(self.rng, person_ids[~have], grade=np.full(int((~have).sum()), grade), planted=True)
        self.facts["disability_certificates"] = pd.concat([d, new], ignore_index=True)

    # records
    def victim(self, person_ids: np.ndarray, **kw) -> None:
        n = len(person_ids)
        kw = {k: (np.full(n, v, dtype=object if isinstance(v, str) else None) if np.isscalar(v) else v)
              for k, v in kw.items()}
        rows = fx.victim_rows(self.rng, person_ids, self.as_of, planted=True, **kw)
        self.facts["procuratorate_victims"] = pd.concat([self.facts["procuratorate_victims"], rows],
                                                        ignore_index=True)

    def court(self, person_ids: np.ndarray, *, zhongben: bool, duration: int | np.ndarray,
              asset_report: bool = True, restricted: bool = True) -> None:
        n = len(person_ids)
        rows = fx.court_rows(self.rng, person_ids, self.as_of, zhongben=np.full(n, zhongben),
                             duration=np.broadcast_to(np.asarray(duration), (n,)).copy(),
                             asset_report=np.full(n, asset_report), restricted=np.full(n, restricted),
                             planted=True)
        self.facts["court_enforcement"] = pd.concat([self.facts["court_enforcement"], rows], ignore_index=True)

    def wage(self, person_ids: np.ndarray, *, support: bool, recovered: bool) -> None:
        if len(person_ids) == 0:
            return
        n = len(person_ids)
        rows = fx.wage_rows(self.rng, person_ids, self.next_wage_group, self.as_of,
                            support=np.full(n, support), recovered=np.full(n, recovered), planted=True)
        self.next_wage_group += 1
        self.facts["wage_claimants"] = pd.concat([self.facts["wage_claimants"], rows], ignore_index=True)

    def note(self, rule: str, person_ids: np.ndarray, kind: str, what: str) -> None:
        self.planted.extend((rule, int(p), kind, what) for p in person_ids)


def plant_cases(rng: np.random.Generator, pop: pd.DataFrame, hh: pd.DataFrame,
                facts: dict[str, pd.DataFrame], as_of: dt.date, per_rule: int) -> pd.DataFrame:
    """Add records that make every rule hold for at least ``per_rule`` fresh people,
    plus near misses that must *not* produce the rule's clue.  Mutates ``facts``;
    returns ``planted`` (rule_id, person_id, kind ∈ {positive, near_miss}, note)."""
    p = _Planter(rng, pop, hh, facts, as_of)
    k = per_rule
    adult = (p.age >= 18) & (p.age < 60)
    grown = p.age >= 18
    minor = (p.age >= 8) & (p.age < 18)

    # R1: a third each through 低保/特困 membership, a disability certificate, and 低保 enrolment
    a = p.choose(grown & p.hardship(), (k + 2) // 3)
    b = p.choose(adult & p.certified() & ~p.hardship(), (k + 2) // 3)
    c = p.choose(adult & ~p.hardship() & ~p.certified(), k - len(a) - len(b), enrol=True)
    p.enrol_dibao(c)
    r1 = np.concatenate([a, b, c])
    inj = np.array(GRAVE, dtype=object)[np.arange(len(r1)) % 3]
    p.victim(r1, cause="交通肇事", injury=inj, compensated=False, assisted=False)
    # two of them also have an earlier minor-injury case, uncompensated: still one clue each
    p.victim(r1[:2], cause="寻衅滋事", injury="minor", loss=0, compensated=False, assisted=False)
    p.note("R1", a, "positive", "grave injury, uncompensated, already on a roster")
    p.note("R1", b, "positive", "grave injury, uncompensated, disability certificate, on no roster")
    p.note("R1", c, "positive", "grave injury, uncompensated, household enrolled on 低保")

    # R2: major property loss, in hardship
    r2 = p.choose(grown, k, enrol=True)
    p.enrol_dibao(r2)
    loss = rng.integers(12_000, 200_000, size=len(r2)) // 100 * 100
    p.victim(r2, cause="诈骗", injury="none", loss=loss, compensated=False, assisted=False)
    p.note("R2", r2, "positive", "loss >= 10000, uncompensated, hardship")

    # R3: 终本 applicant in hardship (long case, assets reported, consumption restricted: no R8)
    r3 = p.choose(grown & ~p.female, k, enrol=True)
    p.enrol_dibao(r3)
    p.court(r3, zhongben=True, duration=rng.integers(120, 600, size=len(r3)))
    p.note("R3", r3, "positive", "zhongben applicant in hardship")
    p.note("R8", r3, "near_miss", "zhongben applicant in hardship, long case, report + restriction done")
    p.note("R6", r3, "near_miss", "R3 clue for an adult man")

    # R4: half through hardship, half through a 终本 case of their own
    r4h = p.choose(adult & ~p.female, (k + 1) // 2, enrol=True)
    p.enrol_dibao(r4h)
    r4z = p.choose(adult & ~p.female & ~p.hardship(), k - len(r4h))
    p.court(r4z, zhongben=True, duration=rng.integers(120, 600, size=len(r4z)))
    p.wage(np.concatenate([r4h, r4z]), support=True, recovered=False)
    p.note("R4", r4h, "positive", "supported unrecovered wage claim, in hardship")
    p.note("R4", r4z, "positive", "supported unrecovered wage claim, zhongben case as applicant, no roster")

    # R5: students with a clue (through R1), and guardians of students with a clue (the dependant is a student)
    st = p.facts["education_students"]
    r5 = p.choose(np.isin(p.pid, st["person_id"].to_numpy()) & minor, k, enrol=True)
    p.enrol_dibao(r5)
    p.victim(r5, cause="故意伤害", injury="serious", compensated=False, assisted=False)
    p.note("R5", r5, "positive", "R1 for a student")
    p.note("R1", r5, "positive", "R1 via R5 planting")
    g = p.choose(np.isin(p.pid, st["guardian_id"].to_numpy()) & ~np.isin(p.pid, st["person_id"].to_numpy()),
                 max(2, k // 2), enrol=True)
    p.enrol_dibao(g)
    p.victim(g, cause="故意伤害", injury="serious", compensated=False, assisted=False)
    p.note("R5", g, "positive", "R1 for a student's guardian (the dependant is a student)")
    p.note("R1", g, "positive", "R1 via R5 guardian planting")

    # R6: women (through R2, with a victim record) and minors (through R1); women known to the court only
    r6f = p.choose(grown & p.female & ~p.students_or_guardians(), (k + 1) // 2, enrol=True)
    p.enrol_dibao(r6f)
    loss = rng.integers(15_000, 120_000, size=len(r6f)) // 100 * 100
    p.victim(r6f, cause="诈骗", injury="none", loss=loss, compensated=False, assisted=False)
    r6m = p.choose(minor & ~p.female, k - len(r6f), enrol=True)
    p.enrol_dibao(r6m)
    p.victim(r6m, cause="交通肇事", injury="disability", compensated=False, assisted=False)
    p.note("R6", r6f, "positive", "R2 clue with a victim record of a woman")
    p.note("R6", r6m, "positive", "R1 clue with a victim record of a minor")
    r6c = p.choose(grown & p.female, max(2, k // 2), enrol=True)
    p.enrol_dibao(r6c)
    p.court(r6c, zhongben=True, duration=rng.integers(120, 600, size=len(r6c)))
    p.note("R6", r6c, "positive", "R3 clue for a woman known to the court only (no victim record)")
    p.note("R3", r6c, "positive", "R3 via R6 planting")

    # R7: seniors and grade 1–2 certificate holders, injured, uncompensated, in no roster
    r7s = p.choose((p.age >= 62) & (p.age < 90) & ~p.hardship(), (k + 1) // 2, stay_out=True)
    r7d = p.choose(adult & (p.age < 58) & ~p.hardship(), k - len(r7s), stay_out=True)
    p.certify(r7d, grade=int(rng.integers(1, 3)))
    r7 = np.concatenate([r7s, r7d])
    assisted = np.arange(len(r7)) == 0  # X2 drops R1-R4 only: an assisted victim still counts for R7
    p.victim(r7, cause="故意伤害", injury=np.array(INJURED_ALIVE, dtype=object)[np.arange(len(r7)) % 3],
             compensated=False, assisted=assisted)
    p.note("R7", r7s, "positive", "injured uncompensated senior (60+), in no roster")
    p.note("R7", r7d, "positive", "injured uncompensated holder of a grade 1-2 certificate, in no roster")

    # R8: hardship applicants, 终本 flagged three ways
    r8 = p.choose(grown & ~p.female, k, enrol=True)
    p.enrol_dibao(r8)
    third = len(r8) // 3
    p.court(r8[:third], zhongben=True, duration=rng.integers(30, 75, size=third))
    p.court(r8[third:2 * third], zhongben=True, duration=rng.integers(120, 600, size=third), asset_report=False)
    rest = len(r8) - 2 * third
    p.court(r8[2 * third:], zhongben=True, duration=rng.integers(120, 600, size=rest), restricted=False)
    p.note("R8", r8[:third], "positive", "zhongben hardship applicant: closed < 3 months after filing")
    p.note("R8", r8[third:2 * third], "positive", "zhongben hardship applicant: no asset report")
    p.note("R8", r8[2 * third:], "positive", "zhongben hardship applicant: no consumption restriction")

    # --- near misses
    m = max(2, k // 2)
    nm = p.choose(adult & p.hardship(), m)
    p.victim(nm, cause="交通肇事", injury="serious", compensated=True, assisted=False)
    p.note("R1", nm, "near_miss", "grave injury, in hardship, but compensated")
    nm = p.choose(adult & ~p.certified(), m, enrol=True)
    p.enrol_dibao(nm)
    p.victim(nm, cause="故意伤害", injury="disability", compensated=False, assisted=True)
    p.note("R1", nm, "near_miss", "grave injury, in hardship, uncompensated, but already assisted")
    nm = p.choose(adult & ~p.hardship() & ~p.certified(), m, stay_out=True)
    p.victim(nm, cause="交通肇事", injury="serious", compensated=False, assisted=False)
    p.note("R1", nm, "near_miss", "grave injury, uncompensated, in no roster and no certificate")
    nm = p.choose(adult & p.hardship(), m)
    p.victim(nm, cause="交通肇事", injury="serious", compensated=False, assisted=False)
    p.victim(nm, cause="盗窃", injury="none", loss=rng.integers(5, 50, size=len(nm)) * 100,
             compensated=True, assisted=False)
    p.note("R1", nm, "near_miss", "grave injury uncompensated in hardship, but another case compensated (X1)")
    nm = p.choose(adult & ~p.female, m, enrol=True)
    p.enrol_dibao(nm)
    p.court(nm, zhongben=True, duration=rng.integers(120, 600, size=len(nm)))
    p.victim(nm, cause="寻衅滋事", injury="minor", loss=0, compensated=False, assisted=True)
    p.note("R3", nm, "near_miss", "zhongben applicant in hardship, but already assisted as a victim (X2)")
    nm = p.choose(adult & p.hardship(), m)
    p.victim(nm, cause="盗窃", injury="none", loss=rng.integers(20, 90, size=len(nm)) * 100,
             compensated=False, assisted=False)
    p.note("R2", nm, "near_miss", "loss under 10000")
    nm = p.choose(adult & p.hardship() & ~p.female, m)
    p.court(nm, zhongben=False, duration=rng.integers(30, 75, size=len(nm)), asset_report=False)
    p.note("R3", nm, "near_miss", "applicant in hardship, but the case was paid (执行完毕)")
    p.note("R8", nm, "near_miss", "short case without asset report, but not zhongben")
    nm = p.choose(adult & ~p.hardship() & ~p.female, m, stay_out=True)
    p.wage(nm, support=True, recovered=False)
    p.note("R4", nm, "near_miss", "supported wage claim, no hardship and no zhongben")
    nm = p.choose(adult & p.hardship() & ~p.female, m)
    p.wage(nm, support=True, recovered=True)
    p.note("R4", nm, "near_miss", "in hardship, but the wages were recovered")
    nm = p.choose((p.age >= 62) & (p.age < 90) & p.hardship(), m)
    p.victim(nm, cause="寻衅滋事", injury="minor", loss=0, compensated=False, assisted=False)
    p.note("R7", nm, "near_miss", "injured uncompensated senior, but in 低保/特困")
    nm = p.choose((p.age >= 62) & (p.age < 90) & ~p.hardship(), m)
    p.victim(nm, cause="故意伤害", injury="minor", loss=0, compensated=True, assisted=False)
    p.note("R7", nm, "near_miss", "injured senior in no roster, but compensated")
    guardians = np.isin(p.pid, st["guardian_id"].to_numpy()) & ~np.isin(p.pid, st["person_id"].to_numpy())
    nm = p.choose(guardians & adult & ~p.hardship() & ~p.certified(), m, stay_out=True)
    p.victim(nm, cause="交通肇事", injury="serious", compensated=False, assisted=False)
    p.note("R5", nm, "near_miss", "a student's guardian, grave injury, uncompensated, but no R1: in no roster")

    return pd.DataFrame(p.planted, columns=["rule_id", "person_id", "kind", "note"])
