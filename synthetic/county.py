"""The synthetic county: population, agency exports as agencies export them, and truth.

::

    from synthetic.county import generate_county, write_county
    county = generate_county(people=20_000, seed=7)
    paths = write_county(county, "out/county", formats="mixed")

:func:`generate_county` is pure (in memory, deterministic for a seed);
:func:`write_county` writes every export with its mapping document
(``<dataset>.mapping.json``, the agency-kit mapping format) and the truth
directory:

``truth/person_of_row.csv``
    ``dataset, row, person_id, file_row``: the person behind every data row.
    ``row`` 1 is the first data row (the line after the CSV header, sheet
    row 2 in the XLSX); ``file_row`` = ``row + 1`` is the same row counted
    the way :mod:`agency_kit.readers` and spreadsheet users count (header = 1).  The education export holds two people per row, so its rows are
    listed twice: as ``education_students`` (the student) and as
    ``education_guardians`` (the guardian); both datasets have a mapping.
``truth/errors.json``
    per dataset: every error rate used and the counts actually applied.
``truth/expected_clues.csv``
    ``rule_id, person_id, clue_type, receiver`` for every (rule, person) the
    true records make hold (rules as in :mod:`synthetic.planting`).
``truth/planted.csv``
    the people planted for each rule: positives and near misses.
``truth/population.csv``, ``truth/meta.json``
    everyone's true identifiers, and what was generated how.

Exports (``formats="mixed"``; ``"csv"`` makes them all CSV, ``"parquet"``
all Parquet).  Columns beyond the person's own, as the agencies have them:

========================= ============================ ===================================================
dataset                   file                         non-person columns
========================= ============================ ===================================================
procuratorate_victims     CSV UTF-8 with BOM           案件编号 受案日期 案由 伤情 财产损失(元) 是否获得赔偿 是否已获司法救助
court_enforcement         XLSX, sheet 终本案件          执行案号 立案日期 结案日期 结案用时(月) 诉讼地位 被执行人
                                                       执行标的(元) 结案方式 是否报告财产 是否限制消费
civil_affairs_dibao       CSV GB18030                  户编号 户主姓名 与户主关系 保障人数 月保障金额
civil_affairs_tekun       CSV GB18030                  序号 供养方式
disability_certificates   CSV GB18030                  残疾类别 残疾等级 (残疾人证号 = ID + category + grade)
education_students        CSV UTF-8 (no BOM)           学校 年级 监护人关系 (全国学籍号 = G + ID, or J + 18 digits)
wage_claimants            CSV UTF-8 with BOM           受理编号 受理日期 用人单位 欠薪金额(元) 是否支持起诉 是否已追回
========================= ============================ ===================================================

CSV files use CRLF line ends (as Excel writes them).  Dates come in each
agency's style with some drift (``1990年1月2日``, ``1990/1/2``, ``19900102``,
``1990-01-02``, ``1990.1.2``; XLSX date cells and bare Excel serials).

Nothing here is a real person: names are drawn from frequency tables, ID
numbers are valid in form only, the county code 522199 does not exist.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthetic import errors as er
from synthetic import facts as fx
from synthetic import planting
from synthetic.population import COUNTY_CODE, address_parts_of, generate_population

GENERATOR_VERSION = 1
AS_OF = dt.date(2024, 6, 30)

#: Which agency holds (and exports) each dataset.
DATASET_AGENCY: dict[str, str] = {
    "procuratorate_victims": "county-procuratorate",
    "court_enforcement": "county-court",
    "civil_affairs_dibao": "civil-affairs-bureau",
    "civil_affairs_tekun": "civil-affairs-bureau",
    "disability_certificates": "disabled-persons-federation",
    "education_students": "education-bureau",
    "wage_claimants": "county-procuratorate",
}
#: Mapping documents that describe a file of another dataset (second person per row).
EXTRA_MAPPINGS: dict[str, str] = {"education_guardians": "education_students"}

#: ``formats="mixed"``: what each agency's export looks like.
MIXED_FORMATS: dict[str, tuple[str, str | None]] = {
    "procuratorate_victims": ("csv", "utf-8-sig"),
    "wage_claimants": ("csv", "utf-8-sig"),
    "court_enforcement": ("xlsx", None),
    "civil_affairs_dibao": ("csv", "gb18030"),
    "civil_affairs_tekun": ("csv", "gb18030"),
    "disability_certificates": ("csv", "gb18030"),
    "education_students": ("csv", "utf-8"),
}
COURT_SHEET = "终本案件"

YES_NO = {True: "是", False: "否"}
GUARDIAN_RELATIONS = ("父亲", "母亲", "祖父", "祖母", "其他监护人")
SEX_TEXT = {"M": "男", "F": "女"}


@dataclass
class County:
    """Everything generated, in memory.  ``exports`` hold the cells as written."""

    seed: int
    people: int
    as_of: dt.date
    population: pd.DataFrame
    households: pd.DataFrame
    facts: dict[str, pd.DataFrame]
    exports: dict[str, pd.DataFrame]
    person_of_row: pd.DataFrame
    errors: dict[str, Any]
    expected_clues: pd.DataFrame
    planted: pd.DataFrame
    rates: dict[str, er.ErrorRates] = field(default_factory=dict)


def generate_county(people: int = 20_000, seed: int = 7, *, as_of: dt.date = AS_OF,
                    per_rule: int | None = None,
                    error_rates: Mapping[str, er.ErrorRates] | None = None) -> County:
    """Generate a county of ``people`` (deterministic for ``seed``).

    ``per_rule`` -- people planted per rule (default ``max(6, people // 2000)``).
    ``error_rates`` -- per-dataset overrides of :data:`synthetic.errors.ERROR_RATES`.
    """
    if not isinstance(people, int | np.integer) or people < 500:
        raise ValueError("people must be an integer of at least 500")
    if per_rule is None:
        per_rule = max(6, people // 2000)
    rates = dict(er.ERROR_RATES)
    rates.update(error_rates or {})
    ss = np.random.SeedSequence(int(seed))
    s_pop, s_facts, s_plant, *s_exp = ss.spawn(3 + len(DATASET_AGENCY))
    pop, hh = generate_population(np.random.default_rng(s_pop), int(people), as_of)
    facts = fx.generate_facts(np.random.default_rng(s_facts), pop, hh, as_of)
    planted = planting.plant_cases(np.random.default_rng(s_plant), pop, hh, facts, as_of, per_rule)
    fx.number_cases(facts)
    expected = planting.evaluate_rules(pop, facts, as_of)

    exports: dict[str, pd.DataFrame] = {}
    por: list[pd.DataFrame] = []
    tallies: dict[str, dict] = {}
    arrays = _PopArrays(pop)
    for (dataset, build), s in zip(_BUILDERS.items(), s_exp, strict=True):
        tally = er.Tally()
        table, persons = build(np.random.default_rng(s), arrays, hh, facts[dataset], rates[dataset], tally)
        exports[dataset] = table
        for ds, pids in persons.items():
            rows = np.arange(1, len(pids) + 1, dtype=np.int64)
            por.append(pd.DataFrame({"dataset": ds, "row": rows, "person_id": np.asarray(pids, dtype=np.int64),
                                     "file_row": rows + 1}))
        tallies[dataset] = {"agency": DATASET_AGENCY[dataset], "rows": len(table),
                            "errors": tally.as_dict(rates[dataset])}
    return County(seed=int(seed), people=int(people), as_of=as_of, population=pop, households=hh,
                  facts=facts, exports=exports, person_of_row=pd.concat(por, ignore_index=True),
                  errors=tallies, expected_clues=expected, planted=planted, rates=rates)


# --- rendering helpers -----------------------------------------------------


class _PopArrays:
    """The population's columns as numpy arrays, converted once (fast fancy indexing)."""

    def __init__(self, pop: pd.DataFrame) -> None:
        self.name = pop["name"].to_numpy().astype(str)
        self.surname_len = np.strings.str_len(pop["surname"].to_numpy().astype(str))
        self.minority = pop["minority"].to_numpy().astype(bool)
        self.id = pop["id_number"].to_numpy().astype(str)
        self.sex = np.where(pop["sex"].to_numpy() == "M", "男", "女").astype(object)
        self.phone = pop["phone"].to_numpy().astype(str)
        self.household = pop["household_id"].to_numpy()
        self.birth = pop["birth_date"].to_numpy().astype("datetime64[D]")
        self.relation = pop["relation"].to_numpy().astype(object)


def _persons(pa: _PopArrays, pids: np.ndarray) -> dict[str, np.ndarray]:
    i = np.asarray(pids, dtype=np.int64) - 1
    return {"name": pa.name[i], "surname_len": pa.surname_len[i], "minority": pa.minority[i], "id": pa.id[i],
            "sex": pa.sex[i], "phone": pa.phone[i], "household": pa.household[i], "birth": pa.birth[i]}


def _names(rng, p, rates, tally):
    return er.render_names(rng, p["name"], p["surname_len"], p["minority"], rates, tally)


def _yes_no(a) -> np.ndarray:
    return np.where(np.asarray(a, bool), "是", "否").astype(object)


def _finish(rng: np.random.Generator, cols: dict[str, np.ndarray], persons: dict[str, np.ndarray],
            rates: er.ErrorRates, tally: er.Tally, name_col: str, id_col: str,
            renumber: str | None = None) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Add duplicate rows (exact, or with one more error) and build the table."""
    n = len(next(iter(cols.values()))) if cols else 0
    order, source, with_error = er.duplicate_rows(rng, n, rates, tally)
    out = {c: np.asarray(v, dtype=object)[source] for c, v in cols.items()}
    for i in np.flatnonzero(with_error):
        out[name_col][i], out[id_col][i] = er.mutate_for_duplicate(rng, str(out[name_col][i]), str(out[id_col][i]))
    out = {c: v[order] for c, v in out.items()}
    if renumber:
        out[renumber] = np.arange(1, len(source) + 1, dtype=np.int64).astype(object)
    table = pd.DataFrame(out)
    return table, {ds: np.asarray(p)[source][order] for ds, p in persons.items()}


# --- one builder per dataset -----------------------------------------------


def _procuratorate_victims(rng, pop, hh, f, rates, tally):
    pids = f["person_id"].to_numpy()
    p = _persons(pop, pids)
    cols = {
        "案件编号": f["case_no"].to_numpy(),
        "受案日期": er.render_dates(rng, f["accepted"].to_numpy(), "cn", ("iso", "slash"), rates, tally),
        "姓名": _names(rng, p, rates, tally),
        "身份证号": er.render_ids(rng, p["id"], rates, tally),
        "性别": p["sex"],
        "联系电话": er.render_phones(rng, p["phone"], rates, tally),
        "住址": er.render_addresses(rng, address_parts_of(hh, p["household"]), rates, tally),
        "案由": f["cause"].to_numpy(),
        "伤情": f["injury"].map(fx.INJURY_TEXT).to_numpy(),
        "财产损失(元)": f["loss"].to_numpy(),
        "是否获得赔偿": _yes_no(f["compensated"]),
        "是否已获司法救助": _yes_no(f["assisted"]),
    }
    return _finish(rng, cols, {"procuratorate_victims": pids}, rates, tally, "姓名", "身份证号")


def _court_enforcement(rng, pop, hh, f, rates, tally):
    pids = f["person_id"].to_numpy()
    p = _persons(pop, pids)
    drift = ("excel_serial", "dot")
    cols = {
        "执行案号": f["case_no"].to_numpy(),
        "立案日期": er.render_dates(rng, f["filed"].to_numpy(), "excel_date", drift, rates, tally),
        "结案日期": er.render_dates(rng, f["closed"].to_numpy(), "excel_date", drift, rates, tally),
        "结案用时(月)": fx.months_between(f["filed"].to_numpy(), f["closed"].to_numpy()).astype(np.int64),
        "诉讼地位": np.full(len(pids), "申请执行人", dtype=object),
        "申请执行人": _names(rng, p, rates, tally),
        "身份证号": er.render_ids(rng, p["id"], rates, tally),
        "联系电话": er.render_phones(rng, p["phone"], rates, tally),
        "被执行人": f["respondent"].to_numpy(),
        "执行标的(元)": f["amount"].to_numpy(),
        "结案方式": np.where(f["zhongben"].to_numpy(), "终结本次执行", "执行完毕").astype(object),
        "是否报告财产": _yes_no(f["asset_report"]),
        "是否限制消费": _yes_no(f["restricted"]),
    }
    return _finish(rng, cols, {"court_enforcement": pids}, rates, tally, "申请执行人", "身份证号")


def _civil_affairs_dibao(rng, pop, hh, f, rates, tally):
    rel_order = {"本人": 0, "配偶": 1, "父亲": 2, "母亲": 3, "子": 4, "女": 4, "孙子": 5, "孙女": 5}
    f = f.assign(_r=pop.relation[f["person_id"].to_numpy() - 1])
    f = f.assign(_o=f["_r"].map(rel_order)).sort_values(["household_id", "_o", "person_id"], kind="stable")
    pids = f["person_id"].to_numpy()
    p = _persons(pop, pids)
    names = _names(rng, p, rates, tally)
    ids = er.render_ids(rng, p["id"], rates, tally)
    # one address and one phone per household, as the household's file has them
    hids, _first = np.unique(f["household_id"].to_numpy(), return_index=True)
    inv = np.searchsorted(hids, f["household_id"].to_numpy())
    addr = er.render_addresses(rng, address_parts_of(hh, hids), rates, tally)[inv]
    head_pid = hh["head_person_id"].to_numpy()[hids - 1]
    phone = er.render_phones(rng, pop.phone[head_pid - 1], rates, tally)[inv]
    is_head = pids == head_pid[inv]
    head_name = np.empty(len(hids), dtype=object)
    head_name[inv[is_head]] = names[is_head]
    cols = {
        "户编号": np.array([f"DB{COUNTY_CODE}{h:07d}" for h in f["household_id"]], dtype=object),
        "户主姓名": head_name[inv],
        "与户主关系": f["_r"].to_numpy(),
        "成员姓名": names,
        "成员身份证号": ids,
        "家庭住址": addr,
        "联系电话": phone,
        "保障人数": f["covered"].to_numpy(),
        "月保障金额": f["monthly"].to_numpy(),
    }
    return _finish(rng, cols, {"civil_affairs_dibao": pids}, rates, tally, "成员姓名", "成员身份证号")


def _civil_affairs_tekun(rng, pop, hh, f, rates, tally):
    f = f.sort_values("person_id", kind="stable")
    pids = f["person_id"].to_numpy()
    p = _persons(pop, pids)
    cols = {
        "序号": np.zeros(len(pids), dtype=np.int64),
        "姓名": _names(rng, p, rates, tally),
        "公民身份号码": er.render_ids(rng, p["id"], rates, tally),
        "出生日期": er.render_dates(rng, p["birth"], "compact", ("iso", "slash", "cn"), rates, tally),
        "性别": p["sex"],
        "供养方式": f["mode"].to_numpy(),
        "居住地址": er.render_addresses(rng, address_parts_of(hh, p["household"]), rates, tally),
    }
    return _finish(rng, cols, {"civil_affairs_tekun": pids}, rates, tally, "姓名", "公民身份号码",
                   renumber="序号")


def _disability_certificates(rng, pop, hh, f, rates, tally):
    f = f.sort_values("person_id", kind="stable")
    pids = f["person_id"].to_numpy()
    p = _persons(pop, pids)
    scratch = er.Tally()  # the full-width error is applied to the whole certificate number below
    ids = er.render_ids(rng, p["id"], replace(rates, id_fullwidth=0.0), scratch)
    tally.merge(scratch, skip=("id_fullwidth",))
    suffix = np.array([f"{fx.DISABILITY_CODE[c]}{g}" for c, g in zip(f["category"], f["grade"], strict=True)],
                      dtype=object)
    cert = np.where(ids != "", ids + suffix, "").astype(object)
    draw = rng.random(len(cert)) < rates.id_fullwidth
    nonempty = cert != ""
    for i in np.flatnonzero(draw & nonempty):
        cert[i] = cert[i].translate(er.FULLWIDTH)
    tally.add("id_fullwidth", int(nonempty.sum()), int((draw & nonempty).sum()))
    cols = {
        "姓名": _names(rng, p, rates, tally),
        "残疾人证号": cert,
        "残疾类别": f["category"].map(fx.DISABILITY_TEXT).to_numpy(),
        "残疾等级": f["grade"].map(fx.GRADE_TEXT).to_numpy(),
        "联系电话": er.render_phones(rng, p["phone"], rates, tally),
        "地址": er.render_addresses(rng, address_parts_of(hh, p["household"]), rates, tally),
    }
    return _finish(rng, cols, {"disability_certificates": pids}, rates, tally, "姓名", "残疾人证号")


def _education_students(rng, pop, hh, f, rates, tally):
    order = {g: i for i, g in enumerate(fx.GRADE_BY_AGE.values())}
    f = f.assign(_g=f["grade"].map(order)).sort_values(["school", "_g", "person_id"], kind="stable")
    pids = f["person_id"].to_numpy()
    gids = f["guardian_id"].to_numpy()
    s, g = _persons(pop, pids), _persons(pop, gids)
    has = f["has_id"].to_numpy()
    sid = er.render_ids(rng, np.where(has, s["id"], ""), rates, tally, prefix="G")
    sid = np.where(has, sid, f["j_number"].to_numpy()).astype(object)
    cols = {
        "学生姓名": _names(rng, s, rates, tally),
        "全国学籍号": sid,
        "性别": s["sex"],
        "出生日期": er.render_dates(rng, s["birth"], "iso", ("slash", "compact"), rates, tally),
        "学校": f["school"].to_numpy(),
        "年级": f["grade"].to_numpy(),
        "监护人姓名": _names(rng, g, rates, tally),
        "监护人关系": _guardian_relation(s, g, pop, pids),
        "监护人身份证号": er.render_ids(rng, g["id"], rates, tally),
        "监护人电话": er.render_phones(rng, g["phone"], rates, tally),
    }
    return _finish(rng, cols, {"education_students": pids, "education_guardians": gids}, rates, tally,
                   "学生姓名", "全国学籍号")


def _guardian_relation(s: dict, g: dict, pop: _PopArrays, pids: np.ndarray) -> np.ndarray:
    """What the guardian (the household head) is to the student."""
    rel = pop.relation[np.asarray(pids) - 1]
    male = g["sex"] == "男"
    grand = np.isin(rel, ["孙子", "孙女"])
    child = np.isin(rel, ["子", "女"])
    out = np.where(grand, np.where(male, "祖父", "祖母"), np.where(male, "父亲", "母亲"))
    return np.where(grand | child, out, "其他监护人").astype(object)


def _wage_claimants(rng, pop, hh, f, rates, tally):
    pids = f["person_id"].to_numpy()
    p = _persons(pop, pids)
    cols = {
        "受理编号": f["claim_no"].to_numpy(),
        "受理日期": er.render_dates(rng, f["accepted"].to_numpy(), "slash", ("iso",), rates, tally),
        "申请人姓名": _names(rng, p, rates, tally),
        "身份证号": er.render_ids(rng, p["id"], rates, tally),
        "联系电话": er.render_phones(rng, p["phone"], rates, tally),
        "用人单位": f["employer"].to_numpy(),
        "欠薪金额(元)": f["amount"].to_numpy(),
        "是否支持起诉": _yes_no(f["support"]),
        "是否已追回": _yes_no(f["recovered"]),
    }
    return _finish(rng, cols, {"wage_claimants": pids}, rates, tally, "申请人姓名", "身份证号")


_BUILDERS = {
    "procuratorate_victims": _procuratorate_victims,
    "court_enforcement": _court_enforcement,
    "civil_affairs_dibao": _civil_affairs_dibao,
    "civil_affairs_tekun": _civil_affairs_tekun,
    "disability_certificates": _disability_certificates,
    "education_students": _education_students,
    "wage_claimants": _wage_claimants,
}
assert tuple(_BUILDERS) == tuple(DATASET_AGENCY)


# --- mapping documents -----------------------------------------------------

_YN = {"是": True, "否": False}


def mapping_documents(formats: str | Mapping[str, str] = "mixed") -> dict[str, dict[str, Any]]:
    """The agency-kit mapping document per dataset, ``source`` as written with ``formats``.

    Only the forms of ``schemas/mapping.schema.json``: ``column`` + ``map``,
    ``column`` + ``threshold``, ``column`` (cast) and ``derive``.  Values the
    format cannot state as a constant come from real columns: the court's
    诉讼地位 (``applicant``) and 结案用时(月) (``months_to_close``, completed
    calendar months), the education bureau's 年级 (``role = student``) and
    监护人关系 (``role = guardian``).  ``female`` and ``age_band`` of court
    applicants and wage claimants are derived from their ID numbers (those
    exports have no sex column).
    """
    victims = {
        "row_key": ["案件编号", "身份证号"],
        "fields": {"name": "姓名", "id_number": "身份证号", "sex": "性别", "phone": "联系电话", "address": "住址"},
        "attributes": {
            "compensated": {"column": "是否获得赔偿", "map": _YN},
            "injury": {"column": "伤情", "map": {v: k for k, v in fx.INJURY_TEXT.items()}},
            "major_property_loss": {"column": "财产损失(元)", "threshold": planting.MAJOR_LOSS},
            "already_assisted": {"column": "是否已获司法救助", "map": _YN},
            "female": {"column": "性别", "map": {"女": True, "男": False}},
            "age_band": {"derive": "age_band_from_id"},
        },
    }
    court = {
        "row_key": ["执行案号", "身份证号"],
        "fields": {"name": "申请执行人", "id_number": "身份证号", "phone": "联系电话"},
        "attributes": {
            "zhongben": {"column": "结案方式", "map": {"终结本次执行": True, "执行完毕": False}},
            "applicant": {"column": "诉讼地位", "map": {"申请执行人": True, "被执行人": False}},
            "months_to_close": {"column": "结案用时(月)"},
            "asset_report_done": {"column": "是否报告财产", "map": _YN},
            "consumption_restricted": {"column": "是否限制消费", "map": _YN},
            "female": {"derive": "female_from_id"},
            "age_band": {"derive": "age_band_from_id"},
        },
    }
    dibao = {
        "row_key": ["户编号", "成员身份证号"],
        "fields": {"name": "成员姓名", "id_number": "成员身份证号", "phone": "联系电话", "address": "家庭住址"},
        "attributes": {},
    }
    tekun = {
        "row_key": ["序号"],
        "fields": {"name": "姓名", "id_number": "公民身份号码", "birth_date": "出生日期", "sex": "性别",
                   "address": "居住地址"},
        "attributes": {},
    }
    disability = {
        "row_key": ["残疾人证号"],
        "fields": {"name": "姓名", "id_number": "残疾人证号", "phone": "联系电话", "address": "地址"},
        "attributes": {
            "disability_grade": {"column": "残疾等级", "map": {v: k for k, v in fx.GRADE_TEXT.items()}},
            "disability_category": {"column": "残疾类别", "map": {v: k for k, v in fx.DISABILITY_TEXT.items()}},
        },
    }
    students = {
        "row_key": ["全国学籍号"],
        "fields": {"name": "学生姓名", "id_number": "全国学籍号", "sex": "性别", "birth_date": "出生日期"},
        "attributes": {"role": {"column": "年级", "map": {g: "student" for g in fx.GRADE_BY_AGE.values()}}},
    }
    guardians = {
        "row_key": ["全国学籍号"],
        "fields": {"name": "监护人姓名", "id_number": "监护人身份证号", "phone": "监护人电话"},
        "attributes": {"role": {"column": "监护人关系", "map": {r: "guardian" for r in GUARDIAN_RELATIONS}}},
    }
    wage = {
        "row_key": ["受理编号"],
        "fields": {"name": "申请人姓名", "id_number": "身份证号", "phone": "联系电话"},
        "attributes": {
            "support_prosecution": {"column": "是否支持起诉", "map": _YN},
            "wages_recovered": {"column": "是否已追回", "map": _YN},
            "female": {"derive": "female_from_id"},
            "age_band": {"derive": "age_band_from_id"},
        },
    }
    body = {"procuratorate_victims": victims, "court_enforcement": court, "civil_affairs_dibao": dibao,
            "civil_affairs_tekun": tekun, "disability_certificates": disability,
            "education_students": students, "education_guardians": guardians, "wage_claimants": wage}
    fmts = resolve_formats(formats)
    out = {}
    for ds, b in body.items():
        kind = EXTRA_MAPPINGS.get(ds, ds)
        ftype, enc = fmts[kind]
        source = {"file_type": ftype, "encoding": enc if ftype == "csv" else None,
                  "sheet": COURT_SHEET if ftype == "xlsx" else None}
        out[ds] = {"version": 1, "agency": DATASET_AGENCY[kind], "dataset": ds, "dataset_kind": kind,
                   "source": source, **b}
    return out


# --- writing ---------------------------------------------------------------


def resolve_formats(formats: str | Mapping[str, str]) -> dict[str, tuple[str, str | None]]:
    """``mixed`` | ``csv`` | ``parquet`` | ``{dataset: file_type}`` | ``"mixed,court_enforcement=csv"``."""
    out = dict(MIXED_FORMATS)
    items: list[tuple[str, str]] = []
    if isinstance(formats, str):
        for part in (x.strip() for x in formats.split(",") if x.strip()):
            if "=" in part:
                ds, ft = (y.strip() for y in part.split("=", 1))
                items.append((ds, ft))
            else:
                items.extend((ds, part) for ds in out)
    else:
        items.extend(formats.items())
    for ds, ft in items:
        if ds not in out:
            raise ValueError(f"unknown dataset in formats: {ds}")
        if ft == "mixed":
            out[ds] = MIXED_FORMATS[ds]
        elif ft == "csv":
            enc = MIXED_FORMATS[ds][1] or "utf-8-sig"
            out[ds] = ("csv", enc)
        elif ft in ("parquet", "xlsx"):
            out[ds] = (ft, None)
        else:
            raise ValueError(f"unknown format: {ft} (mixed, csv, parquet, xlsx)")
    return out


def _cells_as_text(table: pd.DataFrame) -> pd.DataFrame:
    """Cells as a CSV or Parquet file holds them: date cells become 2021/3/4 text."""
    out = table.copy()
    for c in out.columns:
        col = out[c].to_numpy()
        if col.dtype == object and any(isinstance(x, dt.date) for x in col):
            out[c] = [f"{x.year}/{x.month}/{x.day}" if isinstance(x, dt.date) else str(x) for x in col]
    return out


def _write_csv(table: pd.DataFrame, path: Path, encoding: str) -> None:
    data = _cells_as_text(table).to_csv(index=False, lineterminator="\r\n")
    path.write_bytes(data.encode(encoding))


def _write_parquet(table: pd.DataFrame, path: Path) -> None:
    t = _cells_as_text(table)
    for c in t.columns:
        if t[c].dtype == object:
            t[c] = t[c].astype(str)
    t.to_parquet(path, index=False, engine="pyarrow", compression="zstd")


_FIXED_ZIP_TIME = (2024, 1, 1, 0, 0, 0)

_XLSX_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/styles.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
    '<Override PartName="/docProps/core.xml" ContentType="application/vnd.openxmlformats-package.core-properties+xml"/>'
    "</Types>")
_XLSX_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
    'Target="xl/workbook.xml"/>'
    '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties" '
    'Target="docProps/core.xml"/>'
    "</Relationships>")
_XLSX_CORE = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
    'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
    "<dc:creator>aidlink synthetic</dc:creator>"
    '<dcterms:created xsi:type="dcterms:W3CDTF">2024-01-01T00:00:00Z</dcterms:created>'
    "</cp:coreProperties>")
_XLSX_WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" '
    'Target="worksheets/sheet1.xml"/>'
    '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" '
    'Target="styles.xml"/>'
    "</Relationships>")
_XLSX_STYLES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    '<numFmts count="1"><numFmt numFmtId="164" formatCode="yyyy-mm-dd"/></numFmts>'
    '<fonts count="1"><font><sz val="11"/><name val="宋体"/></font></fonts>'
    '<fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="3"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="49" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/></cellXfs>'
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    "</styleSheet>")


def _xlsx_col(k: int) -> str:
    s = ""
    k += 1
    while k:
        k, r = divmod(k - 1, 26)
        s = chr(65 + r) + s
    return s


def _xml_text(v: str) -> str:
    return v.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _write_xlsx(table: pd.DataFrame, path: Path, sheet: str) -> None:
    """A minimal, deterministic XLSX: one sheet, inline strings (text format), date
    cells as serials with a yyyy-mm-dd format, integers as numbers.

    Written by hand because openpyxl without lxml needs ~3 ms a row; this reads
    back with openpyxl and pandas like any Excel export.
    """
    letters = [_xlsx_col(k) for k in range(len(table.columns))]
    epoch = er.EXCEL_EPOCH
    parts = ['<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
             '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>']

    def row_xml(r: int, values) -> str:
        cells = []
        for col, v in zip(letters, values, strict=True):
            ref = f"{col}{r}"
            if v is None or (isinstance(v, str) and v == ""):
                continue
            if isinstance(v, dt.date):
                cells.append(f'<c r="{ref}" s="1"><v>{(v - epoch).days}</v></c>')
            elif isinstance(v, bool | np.bool_):
                cells.append(f'<c r="{ref}" t="inlineStr" s="2"><is><t>{"是" if v else "否"}</t></is></c>')
            elif isinstance(v, int | np.integer):
                cells.append(f'<c r="{ref}"><v>{int(v)}</v></c>')
            else:
                cells.append(f'<c r="{ref}" t="inlineStr" s="2"><is><t>{_xml_text(str(v))}</t></is></c>')
        return f'<row r="{r}">' + "".join(cells) + "</row>"

    parts.append(row_xml(1, list(table.columns)))
    cols = [table[c].to_numpy() for c in table.columns]
    for i in range(len(table)):
        parts.append(row_xml(i + 2, [c[i] for c in cols]))
    parts.append("</sheetData></worksheet>")
    workbook = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
                'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
                f'<sheets><sheet name="{_xml_text(sheet)}" sheetId="1" r:id="rId1"/></sheets></workbook>')
    files = [("[Content_Types].xml", _XLSX_CONTENT_TYPES), ("_rels/.rels", _XLSX_RELS),
             ("docProps/core.xml", _XLSX_CORE), ("xl/workbook.xml", workbook),
             ("xl/_rels/workbook.xml.rels", _XLSX_WORKBOOK_RELS), ("xl/styles.xml", _XLSX_STYLES),
             ("xl/worksheets/sheet1.xml", "".join(parts))]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in files:
            zi = zipfile.ZipInfo(name, date_time=_FIXED_ZIP_TIME)
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, text.encode("utf-8"))
    path.write_bytes(out.getvalue())


def _write_truth_csv(df: pd.DataFrame, path: Path) -> None:
    """UTF-8 without BOM, LF, quoted only where needed (pyarrow: fast at a million rows)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    t = pa.Table.from_pandas(df, preserve_index=False)
    pacsv.write_csv(t, str(path), pacsv.WriteOptions(quoting_style="needed"))


def write_county(county: County, out_dir: str | Path, formats: str | Mapping[str, str] = "mixed",
                 *, population: bool = True) -> dict[str, Any]:
    """Write exports, mappings and truth under ``out_dir``; return their paths.

    Returns ``{"exports": {dataset: path}, "mappings": {dataset: path},
    "truth": {name: path}}``.  ``population=False`` skips the (large)
    ``truth/population.csv``.
    """
    out = Path(out_dir)
    truth = out / "truth"
    truth.mkdir(parents=True, exist_ok=True)
    fmts = resolve_formats(formats)
    docs = mapping_documents(formats)
    paths: dict[str, Any] = {"exports": {}, "mappings": {}, "truth": {}}
    files: dict[str, dict[str, Any]] = {}
    for ds, table in county.exports.items():
        ftype, enc = fmts[ds]
        path = out / f"{ds}.{ftype}"
        if ftype == "csv":
            _write_csv(table, path, enc or "utf-8-sig")
        elif ftype == "xlsx":
            _write_xlsx(table, path, COURT_SHEET)
        else:
            _write_parquet(table, path)
        paths["exports"][ds] = path
        files[ds] = {"file": path.name, "file_type": ftype, "encoding": enc if ftype == "csv" else None,
                     "sheet": COURT_SHEET if ftype == "xlsx" else None, "rows": len(table)}
    for ds, doc in docs.items():
        mp = out / f"{ds}.mapping.json"
        mp.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        paths["mappings"][ds] = mp

    def put(name: str, df: pd.DataFrame) -> None:
        p = truth / name
        _write_truth_csv(df, p)
        paths["truth"][name.split(".")[0]] = p

    put("person_of_row.csv", county.person_of_row)
    put("expected_clues.csv", county.expected_clues)
    put("planted.csv", county.planted)
    if population:
        pop = county.population.drop(columns=["surname"]).copy()
        pop["birth_date"] = pop["birth_date"].to_numpy().astype("datetime64[D]").astype(str)
        put("population.csv", pop)
    ep = truth / "errors.json"
    ep.write_text(json.dumps(county.errors, ensure_ascii=False, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    paths["truth"]["errors"] = ep
    meta = {
        "version": 1,
        "generator": "synthetic",
        "generator_version": GENERATOR_VERSION,
        "seed": county.seed,
        "people": county.people,
        "households": len(county.households),
        "as_of": county.as_of.isoformat(),
        "county_region_code": COUNTY_CODE,
        "age_bands": {"minor": "< 18", "adult": "18–59", "senior": ">= 60"},
        "datasets": {ds: {"agency": DATASET_AGENCY[ds], **files[ds]} for ds in county.exports},
        "mappings": {ds: f"{ds}.mapping.json" for ds in docs},
        "row_numbering": "row 1 = first data row (CSV line after the header; XLSX sheet row 2); "
                         "file_row = row + 1 (header = row 1, as agency_kit.readers count)",
        "rules": {r.rule_id: {"clue_type": r.clue_type, "receiver": r.receiver, "summary": r.summary}
                  for r in planting.RULES.values()},
        "expected_clue_counts": county.expected_clues["rule_id"].value_counts().sort_index().to_dict(),
    }
    mp = truth / "meta.json"
    mp.write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    paths["truth"]["meta"] = mp
    return paths
