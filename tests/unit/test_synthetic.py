"""The synthetic county generator: valid IDs, determinism, planted rules, error rates, files."""

from __future__ import annotations

import datetime as dt
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from synthetic import errors as er
from synthetic.county import DATASET_AGENCY, generate_county, mapping_documents, write_county
from synthetic.planting import RULES

ROOT = Path(__file__).resolve().parents[2]
SMALL = 3000


# --- an independent check-digit implementation (GB 11643-1999) -------------

WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


def check_char(first17: str) -> str:
    return "10X98765432"[sum(int(c) * w for c, w in zip(first17, WEIGHTS, strict=True)) % 11]


def is_valid_id(s: str) -> bool:
    if len(s) != 18 or not s[:17].isdigit():
        return False
    try:
        dt.date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        return False
    return check_char(s[:17]) == s[17]


def test_check_digit_reference():
    # the worked example of the standard: 11010519491231002X
    assert check_char("11010519491231002") == "X"
    assert is_valid_id("11010519491231002X")
    assert not is_valid_id("110105194912310021")


# --- fixtures --------------------------------------------------------------


@pytest.fixture(scope="module")
def county():
    return generate_county(people=SMALL, seed=11)


@pytest.fixture(scope="module")
def written(county, tmp_path_factory):
    out = tmp_path_factory.mktemp("county")
    paths = write_county(county, out, formats="mixed")
    return out, paths


@pytest.fixture(scope="module")
def big():
    """Big enough to measure error rates (about a second)."""
    return generate_county(people=20_000, seed=5)


def read_export(out: Path, dataset: str) -> pd.DataFrame:
    doc = json.loads((out / f"{dataset}.mapping.json").read_text(encoding="utf-8"))
    src = doc["source"]
    path = out / f"{doc['dataset_kind']}.{src['file_type']}"
    if src["file_type"] == "csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding=src["encoding"])
    if src["file_type"] == "xlsx":
        return pd.read_excel(path, sheet_name=src["sheet"], dtype=object).astype(object).where(lambda d: d.notna(), "")
    return pd.read_parquet(path)


# --- population ------------------------------------------------------------


def test_every_id_is_valid_unique_and_consistent(county):
    pop = county.population
    ids = pop["id_number"].tolist()
    assert all(is_valid_id(s) for s in ids)
    assert len(set(ids)) == len(ids)
    male = pop["sex"].to_numpy() == "M"
    parity = np.array([int(s[16]) % 2 == 1 for s in ids])
    assert (parity == male).all()
    births = pop["birth_date"].dt.strftime("%Y%m%d").tolist()
    assert all(s[6:14] == b for s, b in zip(ids, births, strict=True))
    assert (pop["region_code"].str.startswith("522199")).mean() > 0.8


def test_population_shape(county):
    pop, hh = county.population, county.households
    assert len(pop) == SMALL
    assert hh["size"].between(1, 6).all() and hh["size"].sum() == SMALL
    heads = pop.loc[hh["head_person_id"] - 1]
    assert (heads["relation"] == "本人").all() and (heads["age"] >= 18).all()
    assert 0.15 < (pop["age"] < 18).mean() < 0.35
    assert (pop["age"] >= 60).mean() > 0.08
    phones = pop.loc[pop["phone"] != "", "phone"]
    assert phones.str.fullmatch(r"1[3-9]\d{9}").all()
    assert phones.duplicated().any()  # some households share a phone
    assert (pop["phone"] == "").mean() > 0.05
    assert pop["address"].str.startswith("贵州省遵义市青石县").all()


def test_names_are_low_entropy_with_minorities(big):
    pop = big.population
    top = pop["name"].value_counts()
    assert top.iloc[0] >= 10  # 张伟 and friends repeat
    surnames = pop.loc[~pop["minority"], "name"].str[0].value_counts()
    assert set(surnames.index[:3]) <= {"王", "李", "张", "刘"}
    minority = pop.loc[pop["minority"], "name"]
    assert 0.01 < len(minority) / len(pop) < 0.04
    assert minority.str.contains("·").all()
    assert (pop["name"].str.len() >= 2).all()


# --- determinism -----------------------------------------------------------


def test_same_seed_same_bytes(tmp_path):
    a = write_county(generate_county(people=1000, seed=3), tmp_path / "a", formats="mixed")
    b = write_county(generate_county(people=1000, seed=3), tmp_path / "b", formats="mixed")
    for group in ("exports", "mappings", "truth"):
        for name, pa in a[group].items():
            assert pa.read_bytes() == b[group][name].read_bytes(), f"{group}/{name} differs"
    c = write_county(generate_county(people=1000, seed=4), tmp_path / "c", formats="mixed")
    assert c["exports"]["procuratorate_victims"].read_bytes() != a["exports"]["procuratorate_victims"].read_bytes()


# --- planted rules ---------------------------------------------------------


def test_every_rule_has_cases(county):
    counts = county.expected_clues["rule_id"].value_counts()
    for rule in RULES:
        assert counts.get(rule, 0) >= 1, rule
    # the default size plants at least five per rule
    assert county.planted.query("kind == 'positive'").groupby("rule_id").size().min() >= 5


def test_planted_positives_hold_and_near_misses_do_not(county):
    exp = set(zip(county.expected_clues["rule_id"], county.expected_clues["person_id"], strict=True))
    for r in county.planted.itertuples():
        if r.kind == "positive":
            assert (r.rule_id, r.person_id) in exp, (r.rule_id, r.note)
        else:
            assert (r.rule_id, r.person_id) not in exp, (r.rule_id, r.note)
    assert (county.planted["kind"] == "near_miss").groupby(county.planted["rule_id"]).sum().sum() >= 8


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planting_holds_for_other_seeds_and_tiny_counties(seed):
    c = generate_county(people=600, seed=seed)
    exp = set(zip(c.expected_clues["rule_id"], c.expected_clues["person_id"], strict=True))
    for r in c.planted.itertuples():
        assert ((r.rule_id, r.person_id) in exp) == (r.kind == "positive"), (seed, r.rule_id, r.note)
    assert set(c.expected_clues["rule_id"]) == set(RULES)


def test_expected_clues_columns(county):
    e = county.expected_clues
    assert list(e.columns) == ["rule_id", "person_id", "clue_type", "receiver"]
    assert not e.duplicated(["rule_id", "person_id"]).any()
    for r in e.itertuples():
        assert (r.clue_type, r.receiver) == (RULES[r.rule_id].clue_type, RULES[r.rule_id].receiver)


def _persons_of(out: Path, dataset: str, mask: np.ndarray | None = None) -> set[int]:
    por = pd.read_csv(out / "truth" / "person_of_row.csv")
    p = por[por["dataset"] == dataset].sort_values("row")["person_id"].to_numpy()
    return set(p if mask is None else p[mask])


def test_rules_r1_r3_r8_recomputed_from_the_files(written):
    """The exports carry the attributes the truth was computed from (rules as in the rule set)."""
    out, _ = written
    exp = pd.read_csv(out / "truth" / "expected_clues.csv")
    hardship = _persons_of(out, "civil_affairs_dibao") | _persons_of(out, "civil_affairs_tekun")
    certified = _persons_of(out, "disability_certificates")
    v = read_export(out, "procuratorate_victims")
    open_grave = ((v["是否获得赔偿"] == "否") & v["伤情"].isin(["重伤", "伤残", "死亡"])).to_numpy()
    x1 = _persons_of(out, "procuratorate_victims", (v["是否获得赔偿"] == "是").to_numpy())
    x2 = _persons_of(out, "procuratorate_victims", (v["是否已获司法救助"] == "是").to_numpy())
    r1 = (_persons_of(out, "procuratorate_victims", open_grave) & (hardship | certified)) - x1 - x2
    assert r1 == set(exp.loc[exp["rule_id"] == "R1", "person_id"])
    c = read_export(out, "court_enforcement")
    zb = (c["结案方式"] == "终结本次执行").to_numpy()
    r3 = (_persons_of(out, "court_enforcement", zb) & hardship) - x2
    assert r3 == set(exp.loc[exp["rule_id"] == "R3", "person_id"])

    def to_date(x):
        if isinstance(x, dt.datetime):
            return x.date()
        if isinstance(x, int | np.integer) or (isinstance(x, str) and x.isdigit()):
            return er.EXCEL_EPOCH + dt.timedelta(days=int(x))
        y, m, d = (int(p) for p in str(x).replace("/", ".").split("."))
        return dt.date(y, m, d)

    filed, closed = c["立案日期"].map(to_date), c["结案日期"].map(to_date)
    months = [(b.year - a.year) * 12 + b.month - a.month - (b.day < a.day) for a, b in zip(filed, closed, strict=True)]
    flag = zb & ((np.array(months) < 3) | (c["是否报告财产"] == "否").to_numpy() | (c["是否限制消费"] == "否").to_numpy())
    assert _persons_of(out, "court_enforcement", flag) & hardship == set(exp.loc[exp["rule_id"] == "R8", "person_id"])


# --- error model -----------------------------------------------------------


def test_error_rates_are_recorded_and_roughly_applied(big):
    checked = 0
    for ds, info in big.errors.items():
        assert info["agency"] == DATASET_AGENCY[ds]
        for kind, e in info["errors"].items():
            assert e["rate"] == getattr(big.rates[ds], kind)
            if e["rate"] == 0:
                assert e["applied"] == 0, (ds, kind)
                continue
            if e["eligible"] < 150:
                continue
            r, n = e["rate"], e["eligible"]
            assert abs(e["applied"] / n - r) <= 4 * math.sqrt(r * (1 - r) / n) + 0.005, (ds, kind, e)
            checked += 1
    assert checked > 40


def test_error_rates_seen_in_the_files(big, tmp_path):
    """Independently of the tally: compare export cells with the true IDs."""
    write_county(big, tmp_path, formats="csv", population=False)
    pop_ids = big.population["id_number"].to_numpy()
    por = big.person_of_row

    def id_stats(dataset, col):
        df = read_export(tmp_path, dataset)
        pid = por[por["dataset"] == dataset].sort_values("row")["person_id"].to_numpy()
        truth = pop_ids[pid - 1]
        cells = df[col].to_numpy().astype(str)
        return (cells == "").mean(), (cells == truth).mean()

    miss_v, exact_v = id_stats("procuratorate_victims", "身份证号")
    miss_d, exact_d = id_stats("civil_affairs_dibao", "成员身份证号")
    assert 0.04 < miss_v < 0.13  # rate 0.08
    assert miss_d < 0.01
    assert exact_d > 0.97 and exact_v < 0.85  # procuratorate worst, civil affairs best (≈0.985 vs ≈0.75)
    # duplicates: the same person on more rows than the facts have
    n_facts = len(big.facts["procuratorate_victims"])
    assert len(big.exports["procuratorate_victims"]) > n_facts


def test_error_renderers_do_what_they_say():
    rng = np.random.default_rng(0)
    t = er.Tally()
    rates = er.ErrorRates(id_legacy15=1.0)
    out = er.render_ids(rng, np.array(["11010519491231002X", "522199201001011234"]), rates, t)
    assert out[0] == "110105491231002" and out[1] == "522199201001011234"  # born 2010: no 15-digit form
    t = er.Tally()
    out = er.render_ids(rng, np.array(["11010519491231002X"]), er.ErrorRates(id_lower_x=1.0, id_fullwidth=1.0), t)
    assert out[0] == "１１０１０５１９４９１２３１００２ｘ"
    out = er.render_ids(rng, np.array(["110105194912310021"]), er.ErrorRates(id_excel_float=1.0), er.Tally())
    assert out[0] == "1.10105E+17"
    assert er.chinese_numeral(3) == "三" and er.chinese_numeral(12) == "十二" and er.chinese_numeral(105) == "一百零五"
    assert er.chinese_numeral(45) == "四十五" and er.chinese_numeral(110) == "一百一十"
    names = np.array(["张伟", "阿依古丽·买买提"])
    out = er.render_names(rng, names, np.array([1, 0]), np.array([False, True]),
                          er.ErrorRates(name_homophone=1.0, name_dot_variant=1.0), er.Tally())
    assert out[0][0] == "张" and out[0][1] in "玮炜" and "·" not in out[1]


# --- files -----------------------------------------------------------------


def test_encodings_and_bom(written):
    out, paths = written
    for ds, path in paths["exports"].items():
        raw = path.read_bytes()
        doc = json.loads((out / f"{ds}.mapping.json").read_text(encoding="utf-8"))
        enc = doc["source"]["encoding"]
        if doc["source"]["file_type"] != "csv":
            continue
        if enc == "gb18030":
            raw.decode("gb18030")
            with pytest.raises(UnicodeDecodeError):
                raw.decode("utf-8")
            assert not raw.startswith(b"\xef\xbb\xbf")
        elif enc == "utf-8-sig":
            assert raw.startswith(b"\xef\xbb\xbf")
            raw.decode("utf-8")
        else:
            assert enc == "utf-8" and not raw.startswith(b"\xef\xbb\xbf")
            raw.decode("utf-8")
        assert b"\r\n" in raw[:2000]
    kinds = {json.loads(p.read_text(encoding="utf-8"))["source"]["encoding"] for p in paths["mappings"].values()}
    assert {"gb18030", "utf-8-sig", None} <= kinds


def test_truth_rows_line_up_with_file_rows(written, county):
    out, _ = written
    por = pd.read_csv(out / "truth" / "person_of_row.csv")
    pop_ids = county.population["id_number"].to_numpy()
    id_cols = {"procuratorate_victims": "身份证号", "court_enforcement": "身份证号", "civil_affairs_dibao": "成员身份证号",
               "civil_affairs_tekun": "公民身份号码", "disability_certificates": "残疾人证号",
               "education_students": "全国学籍号", "education_guardians": "监护人身份证号", "wage_claimants": "身份证号"}
    for ds, col in id_cols.items():
        df = read_export(out, ds)
        rows = por[por["dataset"] == ds].sort_values("row")
        assert rows["row"].tolist() == list(range(1, len(df) + 1)), ds
        assert (rows["file_row"] == rows["row"] + 1).all()
        cells = df[col].astype(str).str.lstrip("G").str[:18].to_numpy()
        truth = pop_ids[rows["person_id"].to_numpy() - 1]
        valid = np.array([is_valid_id(s) for s in cells])
        known = np.isin(cells, pop_ids)
        assert (cells[valid & known] == truth[valid & known]).all(), ds
        assert (valid & known).mean() > 0.7, ds


def test_xlsx_dates_and_text(written):
    _out, paths = written
    import openpyxl

    wb = openpyxl.load_workbook(paths["exports"]["court_enforcement"], read_only=True)
    ws = wb["终本案件"]
    header = next(ws.iter_rows(min_row=1, max_row=1, values_only=True))
    assert header[:2] == ("执行案号", "立案日期")
    kinds = {type(r[1]).__name__ for r in ws.iter_rows(min_row=2, values_only=True)}
    assert "datetime" in kinds
    ids = [r[4] for r in ws.iter_rows(min_row=2, values_only=True) if r[4]]
    assert all(isinstance(x, str) for x in ids)  # IDs stay text
    with zipfile.ZipFile(paths["exports"]["court_enforcement"]) as z:
        assert all(i.date_time == (2024, 1, 1, 0, 0, 0) for i in z.infolist())


def test_special_numbers(written, county):
    out, _ = written
    d = read_export(out, "disability_certificates")
    code = {"视力": "1", "听力": "2", "言语": "3", "肢体": "4", "智力": "5", "精神": "6", "多重": "7"}
    grade = {"一级": "1", "二级": "2", "三级": "3", "四级": "4"}
    ok = d["残疾人证号"].str.fullmatch(r"[0-9]{17}[0-9X][0-9]{2}")
    assert ok.mean() > 0.9
    assert (d.loc[ok, "残疾人证号"].str[18] == d.loc[ok, "残疾类别"].map(code)).all()
    assert (d.loc[ok, "残疾人证号"].str[19] == d.loc[ok, "残疾等级"].map(grade)).all()
    s = read_export(out, "education_students")["全国学籍号"]
    assert s.str.fullmatch(r"G.{15,18}|J[0-9]{18}|").all()
    assert s.str.startswith("J").any() or len(s) < 300


def test_mappings_match_schema_and_files(written):
    out, paths = written
    schema = json.loads((ROOT / "schemas" / "judicial-assistance.linkage.json").read_text(encoding="utf-8"))
    field_names = {f["name"] for f in schema["fields"]}
    assert set(paths["mappings"]) == set(DATASET_AGENCY) | {"education_guardians"}
    for ds, mp in paths["mappings"].items():
        doc = json.loads(mp.read_text(encoding="utf-8"))
        assert doc["version"] == 1 and doc["dataset"] == ds
        kind = doc["dataset_kind"]
        assert doc["agency"] == DATASET_AGENCY[kind]
        header = list(read_export(out, ds).columns)
        assert set(doc["fields"]) <= field_names
        for col in [*doc["fields"].values(), *doc["row_key"]]:
            assert col in header, (ds, col)
        allowed = schema["datasets"][kind]["attributes"]
        for name, spec in doc["attributes"].items():
            assert name in allowed, (ds, name)
            a = allowed[name]
            if "column" in spec:
                assert spec["column"] in header
                values = set(read_export(out, ds)[spec["column"]].astype(str))
                if "map" in spec:
                    assert values <= set(spec["map"]), (ds, name, values - set(spec["map"]))
                    for v in spec["map"].values():
                        if "enum" in a:
                            assert v in a["enum"]
                        elif a["type"] == "boolean":
                            assert isinstance(v, bool)
                        elif a["type"] == "integer":
                            assert isinstance(v, int) and a["minimum"] <= v <= a["maximum"]
            else:
                assert set(spec) == {"derive"}, (ds, name)
    assert mapping_documents()["education_guardians"]["dataset_kind"] == "education_students"


def test_mappings_validate_against_the_mapping_schema(written):
    jsonschema = pytest.importorskip("jsonschema")
    path = ROOT / "schemas" / "mapping.schema.json"
    if not path.exists():
        pytest.skip("no mapping schema yet")
    schema = json.loads(path.read_text(encoding="utf-8"))
    _, paths = written
    for ds, mp in paths["mappings"].items():
        errors = list(jsonschema.Draft202012Validator(schema).iter_errors(json.loads(mp.read_text(encoding="utf-8"))))
        assert not errors, (ds, [e.message for e in errors])


def test_formats_csv_and_parquet(tmp_path):
    c = generate_county(people=600, seed=2)
    p = write_county(c, tmp_path / "csv", formats="csv", population=False)
    assert {x.suffix for x in p["exports"].values()} == {".csv"}
    p = write_county(c, tmp_path / "pq", formats="parquet", population=False)
    assert {x.suffix for x in p["exports"].values()} == {".parquet"}
    df = pd.read_parquet(p["exports"]["court_enforcement"])
    assert len(df) == len(c.exports["court_enforcement"])
    with pytest.raises(ValueError):
        write_county(c, tmp_path / "bad", formats="mixed,no_such_dataset=csv")


def test_cli(tmp_path):
    from synthetic.__main__ import main

    runner = CliRunner()
    r = runner.invoke(main, ["--people", "600", "--seed", "1", "--out", str(tmp_path / "o"), "--json",
                             "--formats", "csv", "--no-population"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert summary["ok"] and (tmp_path / "o" / "truth" / "expected_clues.csv").exists()
    r = runner.invoke(main, ["--people", "600", "--out", str(tmp_path / "o")])
    assert r.exit_code == 16 and "Error:" in r.output
    r = runner.invoke(main, ["--people", "10", "--out", str(tmp_path / "p")])
    assert r.exit_code == 2
