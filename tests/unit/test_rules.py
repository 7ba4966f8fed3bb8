"""The supervision rules: loading, meaning checks, compiling to parameterised SQL,
and every ready-made rule on tiny literal DuckDB tables (rows checked, not SQL text)."""

import copy
import json
import logging
import re
from importlib import resources

import duckdb
import pytest

from hub.rules import (
    RUN_ID,
    apply_rules,
    compile_rules,
    load_rules,
    ruleset_from_document,
)
from linkage.errors import AidlinkError, ConfigError, RuleError, StateError
from linkage.schema import load_schema, schema_from_document

SCHEMA = load_schema("judicial-assistance")
RULES = load_rules("judicial-assistance", SCHEMA)

AGENCY = {  # which agency sends which dataset kind in these tests
    "procuratorate_victims": "county-procuratorate",
    "wage_claimants": "county-procuratorate",
    "court_enforcement": "county-court",
    "civil_affairs_dibao": "civil-affairs-bureau",
    "civil_affairs_tekun": "civil-affairs-bureau",
    "disability_certificates": "disabled-persons-federation",
    "education_students": "education-bureau",
}
SQL_TYPE = {"boolean": "BOOLEAN", "integer": "BIGINT", "string": "VARCHAR", "date": "DATE"}


def builtin_rules_doc():
    return json.loads(resources.files("schemas").joinpath("judicial-assistance.rules.json").read_text("utf-8"))


def attr_columns(schema):
    cols = {}
    for kind in schema.datasets.values():
        for a in kind.attributes.values():
            cols[a.name] = SQL_TYPE[a.type]
    return cols


class World:
    """Tiny literal records + clusters tables for one run.  ``add`` puts one
    record into a cluster and returns its token."""

    def __init__(self, schema=SCHEMA, *, with_rosters=True):
        self.schema = schema
        self.cols = attr_columns(schema)
        self.records = []
        self.clusters = []
        if with_rosters:  # both rosters present somewhere in the run (R7's guard)
            self.add("bystander-1", "civil_affairs_dibao")
            self.add("bystander-2", "civil_affairs_tekun")

    def add(self, cluster, kind, agency=None, dataset=None, **attrs):
        token = f"tok{len(self.records):04d}"
        dataset = dataset or f"{kind}-2024"
        for a in attrs:
            assert a in self.schema.datasets[kind].attributes, a
        self.records.append((dataset, kind, agency or AGENCY[kind], token, attrs))
        self.clusters.append((cluster, dataset, token))
        return token

    def connect(self, run_id="run-1", drop_columns=()):
        con = duckdb.connect()
        cols = {a: t for a, t in self.cols.items() if a not in drop_columns}
        col_sql = "".join(f", attr_{a} {t}" for a, t in cols.items())
        con.execute(f"CREATE TABLE records (dataset VARCHAR, dataset_kind VARCHAR, agency VARCHAR, token VARCHAR{col_sql})")
        con.execute("CREATE TABLE clusters (run_id VARCHAR, cluster_id VARCHAR, dataset VARCHAR, token VARCHAR)")
        names = list(cols)
        placeholders = ", ".join(["?"] * (4 + len(names)))
        for dataset, kind, agency, token, attrs in self.records:
            con.execute(f"INSERT INTO records VALUES ({placeholders})",
                        [dataset, kind, agency, token, *[attrs.get(a) for a in names]])
        for cluster, dataset, token in self.clusters:
            con.execute("INSERT INTO clusters VALUES (?, ?, ?, ?)", [run_id, cluster, dataset, token])
        return con

    def run(self, ruleset=RULES, run_id="run-1", **kw):
        con = self.connect(run_id)
        summary = apply_rules(con, ruleset, run_id, **kw)
        return summary, clue_rows(con, run_id), con


def clue_rows(con, run_id="run-1"):
    cur = con.execute("SELECT * FROM clues WHERE run_id = ? ORDER BY rule_id, cluster_id, token", [run_id])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def fired(rows, rule_id):
    return {r["cluster_id"] for r in rows if r["rule_id"] == rule_id}


def victim(w, cluster, **attrs):
    base = {"compensated": False, "injury": "serious", "major_property_loss": False, "already_assisted": False,
            "female": False, "age_band": "adult"}
    base.update(attrs)
    return w.add(cluster, "procuratorate_victims", **base)


# --------------------------------------------------------------------------- ready-made set loads


def test_builtin_rule_set_loads_in_dependency_order():
    ids = [r.id for r in RULES.rules]
    assert ids == ["R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "X1", "X2"]
    order = list(RULES.order)
    for x, r in [("X1", "R1"), ("X2", "R4"), ("R1", "R5"), ("R4", "R6"), ("X2", "R5")]:
        assert order.index(x) < order.index(r)
    assert RULES.rule("X2").excludes == ("R1", "R2", "R3", "R4")
    assert all(r.legal_basis for r in RULES.rules)
    assert len(RULES.digest) == 64


# --------------------------------------------------------------------------- each rule: fires / near miss


def test_r1_fires_on_uncompensated_injured_victim_in_hardship_and_not_on_near_misses():
    w = World()
    victim(w, "dibao", injury="serious")
    w.add("dibao", "civil_affairs_dibao")
    victim(w, "tekun", injury="death")
    w.add("tekun", "civil_affairs_tekun")
    victim(w, "disabled", injury="disability")
    w.add("disabled", "disability_certificates", disability_grade=3)
    victim(w, "compensated", compensated=True)  # near miss: compensated
    w.add("compensated", "civil_affairs_dibao")
    victim(w, "minor-injury", injury="minor")  # near miss: injury not serious
    w.add("minor-injury", "civil_affairs_dibao")
    victim(w, "not-poor")  # near miss: on no roster, no certificate
    victim(w, "unknown", compensated=None)  # near miss: compensation unknown (null never compares true)
    w.add("unknown", "civil_affairs_dibao")
    summary, rows, _ = w.run()
    assert fired(rows, "R1") == {"dibao", "tekun", "disabled"}
    assert summary["clues"]["R1"] == {"county-procuratorate": 3}


def test_attribute_leaves_on_one_record_scope_hold_on_the_same_record():
    w = World()
    # two victim records of one person: one uncompensated minor injury, one death with compensation unknown
    victim(w, "split", compensated=False, injury="minor")
    victim(w, "split", compensated=None, injury="death")
    w.add("split", "civil_affairs_dibao")
    _, rows, _ = w.run()
    assert fired(rows, "R1") == set()


def test_r2_major_property_loss():
    w = World()
    victim(w, "yes", injury="none", major_property_loss=True)
    w.add("yes", "civil_affairs_tekun")
    victim(w, "no-roster", injury="none", major_property_loss=True)
    w.add("no-roster", "disability_certificates", disability_grade=1)  # a certificate is not hardship for R2
    victim(w, "no-loss", injury="none", major_property_loss=False)
    w.add("no-loss", "civil_affairs_tekun")
    _, rows, _ = w.run()
    assert fired(rows, "R2") == {"yes"}
    assert fired(rows, "R1") == set()


def test_r3_zhongben_applicant_in_hardship_goes_to_procuratorate_via_court_tokens():
    w = World()
    court_tok = w.add("court-only", "court_enforcement", zhongben=True, applicant=True, months_to_close=8,
                      asset_report_done=True, consumption_restricted=True)
    w.add("court-only", "civil_affairs_dibao")
    w.add("with-victim", "court_enforcement", zhongben=True, applicant=True)
    victim_tok = victim(w, "with-victim", injury="none")
    w.add("with-victim", "civil_affairs_tekun")
    w.add("respondent", "court_enforcement", zhongben=True, applicant=False)  # near miss: the debtor
    w.add("respondent", "civil_affairs_dibao")
    w.add("paid", "court_enforcement", zhongben=False, applicant=True)  # near miss: not 终本
    w.add("paid", "civil_affairs_dibao")
    _, rows, _ = w.run()
    r3 = [r for r in rows if r["rule_id"] == "R3"]
    assert {r["cluster_id"] for r in r3} == {"court-only", "with-victim"}
    by_cluster = {r["cluster_id"]: r for r in r3}
    assert by_cluster["court-only"]["receiver"] == "county-procuratorate"
    assert by_cluster["court-only"]["deliver_to"] == "county-court"
    assert by_cluster["court-only"]["token"] == court_tok
    # the procuratorate holds a record of this person: its own token, not the court's
    assert by_cluster["with-victim"]["deliver_to"] == "county-procuratorate"
    assert by_cluster["with-victim"]["token"] == victim_tok
    assert len(r3) == 2


def test_r4_wage_claimant():
    w = World()
    w.add("zhongben", "wage_claimants", support_prosecution=True, wages_recovered=False)
    w.add("zhongben", "court_enforcement", zhongben=True, applicant=True)
    w.add("roster", "wage_claimants", support_prosecution=True, wages_recovered=False)
    w.add("roster", "civil_affairs_tekun")
    w.add("recovered", "wage_claimants", support_prosecution=True, wages_recovered=True)  # near miss
    w.add("recovered", "civil_affairs_tekun")
    w.add("not-supported", "wage_claimants", support_prosecution=False, wages_recovered=False)  # near miss
    w.add("not-supported", "civil_affairs_tekun")
    w.add("neither", "wage_claimants", support_prosecution=True, wages_recovered=False)  # near miss: no 终本, no roster
    w.add("neither", "court_enforcement", zhongben=False, applicant=True)
    _, rows, _ = w.run()
    assert fired(rows, "R4") == {"zhongben", "roster"}


def test_r5_follows_a_clue_for_a_student_or_a_guardian_with_the_education_bureaus_token():
    w = World()
    victim(w, "student")
    w.add("student", "civil_affairs_dibao")
    edu = w.add("student", "education_students", role="student")
    victim(w, "guardian")
    w.add("guardian", "civil_affairs_dibao")
    gua = w.add("guardian", "education_students", role="guardian")  # the dependant is a student
    victim(w, "no-clue", compensated=True)  # near miss: a student but no R1-R4 clue
    w.add("no-clue", "education_students", role="student")
    victim(w, "no-clue-guardian", compensated=True)  # near miss: a guardian but no R1-R4 clue
    w.add("no-clue-guardian", "education_students", role="guardian")
    _, rows, _ = w.run()
    r5 = [r for r in rows if r["rule_id"] == "R5"]
    assert [(r["cluster_id"], r["token"], r["receiver"], r["deliver_to"], r["clue_type"]) for r in r5] == [
        ("guardian", gua, "education-bureau", "education-bureau", "referral"),
        ("student", edu, "education-bureau", "education-bureau", "referral")]
    assert r5[1]["other_datasets"] == ["civil_affairs_dibao", "procuratorate_victims"]


def test_r6_women_and_minors_referred_via_the_procuratorates_or_the_courts_tokens():
    w = World()
    woman = victim(w, "woman", female=True)
    w.add("woman", "civil_affairs_dibao")
    victim(w, "child", age_band="minor", injury="disability")
    w.add("child", "civil_affairs_tekun")
    victim(w, "man")  # near miss: adult male
    w.add("man", "civil_affairs_dibao")
    victim(w, "woman-no-clue", female=True, compensated=True)  # near miss: no clue to follow
    w.add("woman-no-clue", "civil_affairs_dibao")
    # an R3 clue known to the court only: the court's record says female, the court carries the referral
    court_woman = w.add("court-woman", "court_enforcement", zhongben=True, applicant=True, female=True)
    w.add("court-woman", "civil_affairs_dibao")
    w.add("court-man", "court_enforcement", zhongben=True, applicant=True, female=False, age_band="adult")
    w.add("court-man", "civil_affairs_dibao")  # near miss: an adult man
    _, rows, _ = w.run()
    assert fired(rows, "R6") == {"woman", "child", "court-woman"}
    r6 = {r["cluster_id"]: r for r in rows if r["rule_id"] == "R6"}
    assert r6["woman"]["receiver"] == "womens-federation"
    assert r6["woman"]["deliver_to"] == "county-procuratorate"
    assert r6["woman"]["token"] == woman
    assert (r6["court-woman"]["receiver"], r6["court-woman"]["deliver_to"], r6["court-woman"]["token"]) == (
        "womens-federation", "county-court", court_woman)


def test_r7_severely_disabled_or_elderly_victim_absent_from_both_rosters():
    w = World()
    victim(w, "grade2", injury="minor")
    w.add("grade2", "disability_certificates", disability_grade=2)
    victim(w, "senior", age_band="senior", injury="serious")
    victim(w, "grade3", injury="minor")  # near miss: grade 3
    w.add("grade3", "disability_certificates", disability_grade=3)
    victim(w, "on-dibao", age_band="senior")  # near miss: already on 低保
    w.add("on-dibao", "civil_affairs_dibao")
    victim(w, "on-tekun", injury="minor")  # near miss: already on 特困
    w.add("on-tekun", "disability_certificates", disability_grade=1)
    w.add("on-tekun", "civil_affairs_tekun")
    victim(w, "compensated", age_band="senior", compensated=True)  # near miss
    victim(w, "uninjured", age_band="senior", injury="none")  # near miss
    _, rows, _ = w.run()
    assert fired(rows, "R7") == {"grade2", "senior"}
    r7 = [r for r in rows if r["rule_id"] == "R7"]
    assert {(r["receiver"], r["deliver_to"], r["clue_type"]) for r in r7} == {
        ("civil-affairs-bureau", "county-procuratorate", "supervision_suggestion")}


def test_r7_does_not_run_when_a_roster_was_not_sent():
    w = World(with_rosters=False)
    w.add("x", "civil_affairs_dibao")  # 低保 sent, 特困 not
    victim(w, "senior", age_band="senior")
    summary, rows, _ = w.run()
    assert fired(rows, "R7") == set()
    assert summary["skipped"] == {"R7": ["civil_affairs_tekun"]}


def test_r8_zhongben_closed_too_early_or_without_steps():
    w = World()
    steps_ok = {"months_to_close": 8, "asset_report_done": True, "consumption_restricted": True}
    tok = w.add("early", "court_enforcement", zhongben=True, applicant=True, **{**steps_ok, "months_to_close": 2})
    w.add("early", "civil_affairs_dibao")
    w.add("no-report", "court_enforcement", zhongben=True, applicant=True, **{**steps_ok, "asset_report_done": False})
    w.add("no-report", "civil_affairs_tekun")
    w.add("no-restriction", "court_enforcement", zhongben=True, applicant=True,
          **{**steps_ok, "consumption_restricted": False})
    w.add("no-restriction", "civil_affairs_dibao")
    w.add("regular", "court_enforcement", zhongben=True, applicant=True, **steps_ok)  # near miss
    w.add("regular", "civil_affairs_dibao")
    w.add("three-months", "court_enforcement", zhongben=True, applicant=True, **{**steps_ok, "months_to_close": 3})
    w.add("three-months", "civil_affairs_dibao")  # near miss: exactly three months is not "less than"
    w.add("not-poor", "court_enforcement", zhongben=True, applicant=True, **{**steps_ok, "months_to_close": 1})
    _, rows, _ = w.run()
    assert fired(rows, "R8") == {"early", "no-report", "no-restriction"}
    r8 = {r["cluster_id"]: r for r in rows if r["rule_id"] == "R8"}
    assert r8["early"]["token"] == tok
    assert r8["early"]["receiver"] == r8["early"]["deliver_to"] == "county-court"


# --------------------------------------------------------------------------- exclusions


def test_x1_any_compensated_victim_record_removes_r1_and_r2():
    w = World()
    victim(w, "twice", compensated=False, major_property_loss=True)
    victim(w, "twice", compensated=True, injury="none")
    w.add("twice", "civil_affairs_dibao")
    victim(w, "once")
    w.add("once", "civil_affairs_dibao")
    summary, rows, _ = w.run()
    assert fired(rows, "R1") == {"once"}
    assert fired(rows, "R2") == set()
    assert summary["matched"]["R1"] == 2
    assert summary["excluded"]["R1"] == {"X1": 1}
    assert summary["excluded"]["R2"] == {"X1": 1}
    assert summary["clues"]["R1"] == {"county-procuratorate": 1}


def test_x2_already_assisted_removes_r1_to_r4_and_the_referrals_that_follow():
    w = World()
    victim(w, "assisted", already_assisted=True, female=True)
    w.add("assisted", "civil_affairs_dibao")
    w.add("assisted", "education_students", role="student")
    w.add("assisted", "court_enforcement", zhongben=True, applicant=True)
    victim(w, "new", female=True)
    w.add("new", "civil_affairs_dibao")
    w.add("new", "education_students", role="student")
    w.add("new", "court_enforcement", zhongben=True, applicant=True)
    summary, rows, _ = w.run()
    for rule in ("R1", "R3", "R5", "R6"):
        assert fired(rows, rule) == {"new"}, rule
    assert summary["excluded"]["R1"] == {"X2": 1}
    assert summary["excluded"]["R3"] == {"X2": 1}
    assert "R5" not in summary["excluded"]  # R5 never matched there: its R1 clue was gone


# --------------------------------------------------------------------------- tokens and delivery


def test_a_clue_lists_only_the_receivers_own_tokens():
    w = World()
    v = victim(w, "p")
    wc = w.add("p", "wage_claimants", support_prosecution=False, wages_recovered=True)
    w.add("p", "civil_affairs_dibao")
    w.add("p", "disability_certificates", disability_grade=4)
    w.add("p", "court_enforcement", zhongben=False, applicant=True)
    _, rows, _ = w.run()
    r1 = [r for r in rows if r["rule_id"] == "R1"]
    assert sorted(r["token"] for r in r1) == sorted([v, wc])
    assert {r["deliver_to"] for r in r1} == {"county-procuratorate"}
    other = {r["token"]: r["other_datasets"] for r in r1}
    assert other[v] == ["civil_affairs_dibao", "court_enforcement", "disability_certificates", "wage_claimants"]
    assert other[wc] == ["civil_affairs_dibao", "court_enforcement", "disability_certificates",
                         "procuratorate_victims"]
    assert all(r["run_id"] == "run-1" and r["clue_type"] == "judicial_assistance" for r in r1)


def test_run_config_maps_roles_to_agency_ids_and_undeliverable_clues_are_counted():
    w = World()
    victim(w, "p", agency="xx-county-procuratorate")
    w.add("p", "civil_affairs_dibao")
    summary, rows, _ = w.run()  # default agency id: nobody holds the victim record under it
    assert fired(rows, "R1") == set()
    assert summary["undeliverable"]["R1"] == 1
    summary, rows, _ = w.run(agencies={"procuratorate": "xx-county-procuratorate"})
    assert fired(rows, "R1") == {"p"}
    assert summary["clues"]["R1"] == {"xx-county-procuratorate": 1}
    assert summary["undeliverable"]["R1"] == 0
    with pytest.raises(RuleError) as ei:
        w.run(agencies={"prosecutor": "x"})
    assert ei.value.problems[0].path == "$.prosecutor"


def test_rerun_replaces_the_runs_rows_and_keeps_other_runs():
    w = World()
    victim(w, "p")
    w.add("p", "civil_affairs_dibao")
    con = w.connect("run-1")
    con.execute("INSERT INTO clusters SELECT 'run-2', cluster_id, dataset, token FROM clusters")
    apply_rules(con, RULES, "run-1")
    apply_rules(con, RULES, "run-2")
    apply_rules(con, RULES, "run-1")
    assert len(clue_rows(con, "run-1")) == len(clue_rows(con, "run-2")) == 1


def test_missing_attribute_column_is_treated_as_null():
    w = World()
    victim(w, "p")
    w.add("p", "civil_affairs_dibao")
    w.add("p", "education_students")
    con = w.connect(drop_columns=("role",))
    summary = apply_rules(con, RULES, "run-1")
    assert summary["clues"]["R1"] == {"county-procuratorate": 1}
    assert summary["clues"]["R5"] == {"education-bureau": 0}


def test_agency_from_the_packages_table_when_records_has_none():
    w = World()
    v = victim(w, "p")
    w.add("p", "civil_affairs_dibao")
    con = w.connect()
    con.execute("ALTER TABLE records ADD COLUMN package_id VARCHAR")
    con.execute("UPDATE records SET package_id = 'pkg-' || dataset")
    con.execute("CREATE TABLE packages (package_id VARCHAR, agency VARCHAR)")
    con.execute("INSERT INTO packages SELECT DISTINCT package_id, agency FROM records")
    con.execute("ALTER TABLE records DROP COLUMN agency")
    apply_rules(con, RULES, "run-1")
    assert [(r["rule_id"], r["token"], r["deliver_to"]) for r in clue_rows(con)] == [
        ("R1", v, "county-procuratorate")]
    con.execute("DROP TABLE packages")
    with pytest.raises(StateError):
        apply_rules(con, RULES, "run-1")


# --------------------------------------------------------------------------- running: state, debug, failure


def test_state_errors_before_the_match_step():
    con = duckdb.connect()
    with pytest.raises(StateError):
        apply_rules(con, RULES, "run-1")
    w = World()
    con = w.connect("run-1")
    with pytest.raises(StateError) as ei:
        apply_rules(con, RULES, "run-9")
    assert ei.value.exit_code == 22


def test_debug_mode_logs_each_steps_row_count_and_keeps_work_tables(caplog):
    w = World()
    victim(w, "p")
    w.add("p", "civil_affairs_dibao")
    con = w.connect()
    with caplog.at_level(logging.INFO, logger="aidlink.hub.rules"):
        apply_rules(con, RULES, "run-1", debug=True)
    lines = [r.getMessage() for r in caplog.records]
    assert any(re.match(r"rules step match_R1: 1 rows", m) for m in lines)
    assert any(re.match(r"rules step clues_write: 1 rows", m) for m in lines)
    steps = [s.name for s in compile_rules(RULES)]
    assert sum(m.startswith("rules step ") for m in lines) == len(steps)
    assert con.execute("SELECT count(*) FROM rules_matches").fetchone()[0] >= 1
    con2 = w.connect()
    apply_rules(con2, RULES, "run-1")
    assert not con2.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE 'rules_%'").fetchone()[0]


def test_a_failing_step_is_named_rolled_back_and_its_message_holds_no_value():
    w = World()
    victim(w, "p")
    w.add("p", "civil_affairs_dibao")
    con = w.connect()
    apply_rules(con, RULES, "run-1")
    before = clue_rows(con)
    # sabotage: a text column where the schema says integer, holding a value that cannot be cast
    con.execute("ALTER TABLE records ALTER attr_disability_grade TYPE VARCHAR")
    con.execute("UPDATE records SET attr_disability_grade = 'SECRET-VALUE-42' WHERE dataset_kind = 'procuratorate_victims'")
    con.execute("INSERT INTO records (dataset, dataset_kind, agency, token, attr_disability_grade) "
                "VALUES ('d', 'disability_certificates', 'dpf', 'tx', 'SECRET-VALUE-42')")
    con.execute("INSERT INTO clusters VALUES ('run-1', 'p', 'd', 'tx')")
    with pytest.raises(AidlinkError) as ei:
        apply_rules(con, RULES, "run-1")
    msg = str(ei.value)
    assert "match_R7" in msg
    assert "SECRET-VALUE-42" not in msg
    assert ei.value.__cause__ is not None
    assert clue_rows(con) == before  # the transaction was rolled back


# --------------------------------------------------------------------------- parameters, injection


def literals(node):
    """Every literal value of a rule document, except keys."""
    if isinstance(node, dict):
        for v in node.values():
            yield from literals(v)
    elif isinstance(node, list):
        for v in node:
            yield from literals(v)
    else:
        yield node


def test_compiled_sql_holds_no_literal_of_the_rule_set():
    steps = compile_rules(RULES)
    doc = builtin_rules_doc()
    words = {v for v in literals(doc["rules"]) if isinstance(v, str)} | {
        r["agency"] for r in doc["receivers"].values()}
    for step in steps:
        assert "'" not in step.sql, step.name
        assert not re.search(r"[0-9]", re.sub(r"\$p[0-9]+", "", step.sql)), step.name  # no numeric literal
        for word in words:
            assert not re.search(rf"(?<![A-Za-z_]){re.escape(word)}(?![A-Za-z_])", step.sql.replace('"attr_', '"')) \
                or word in attr_columns(SCHEMA), (step.name, word)
        placeholders = set(re.findall(r"\$([a-z_]+[0-9]*)", step.sql))
        assert placeholders == set(step.params), step.name
    params = {v for s in steps for v in s.params.values() if v is not RUN_ID}
    assert {"serious", "disability", "death", "procuratorate_victims", "student", "R1", "county-court", 3, 2} <= params


INJECTION = "'; DROP TABLE records; --"


def injection_schema():
    doc = copy.deepcopy(SCHEMA.document)
    doc["id"] = "injection-test"
    doc["datasets"]["case_notes"] = {"attributes": {"note": {"type": "string"}}}
    return schema_from_document(doc, "test")


def test_injection_attempt_matches_literally_and_damages_nothing():
    schema = injection_schema()
    doc = {
        "version": 1, "id": "injection", "linkage_schema": "injection-test",
        "receivers": {"procuratorate": {"agency": "county-procuratorate"}},
        "rules": [
            {"id": "R1", "title": INJECTION, "legal_basis": INJECTION, "clue_type": "referral",
             "receiver": "procuratorate", "condition": {"all": [
                 {"dataset": "case_notes", "attr": "note", "eq": INJECTION},
                 {"dataset": "case_notes", "attr": "note", "in": [INJECTION, '"); DELETE FROM clusters; --']},
             ]}},
        ],
    }
    rules = ruleset_from_document(doc, schema, "test")
    for step in compile_rules(rules):
        assert "DROP" not in step.sql and "DELETE FROM clusters" not in step.sql
    w = World(schema, with_rosters=False)
    hit = w.add("literal", "case_notes", agency="county-procuratorate", note=INJECTION)
    w.add("other", "case_notes", agency="county-procuratorate", note="DROP TABLE records")
    w.add("null", "case_notes", agency="county-procuratorate")
    con = w.connect()
    n_records = con.execute("SELECT count(*) FROM records").fetchone()[0]
    summary = apply_rules(con, rules, "run-1")
    assert [r["token"] for r in clue_rows(con)] == [hit]
    assert summary["clues"]["R1"] == {"county-procuratorate": 1}
    assert con.execute("SELECT count(*) FROM records").fetchone()[0] == n_records
    assert con.execute("SELECT count(*) FROM clusters").fetchone()[0] == 3


# --------------------------------------------------------------------------- refusing bad rule sets


def problems_of(doc, schema=SCHEMA):
    with pytest.raises(RuleError) as ei:
        ruleset_from_document(doc, schema, "bad.rules.json")
    assert ei.value.exit_code == 21
    assert str(ei.value).startswith("bad.rules.json: ")
    return {(p.path, p.message) for p in ei.value.problems}


def paths(problems):
    return {p for p, _ in problems}


def test_invalid_rule_file_lists_every_problem_with_json_paths():
    doc = builtin_rules_doc()
    del doc["rules"][0]["title"]
    doc["rules"][1]["clue_type"] = "reward"
    doc["rules"][2]["condition"]["all"][0]["where"]["all"][0]["equals"] = True  # unknown key
    doc["rules"][3]["condition"]["all"][0]["where"]["all"][1]["ne"] = True  # two operators
    doc["rules"][4]["condition"]["all"][1] = {"maybe": 1}  # no form at all
    doc["rules"][5]["id"] = "r6"  # pattern
    doc["rules"][8]["receiver"] = "procuratorate"  # an exclusion has no receiver
    doc["colour"] = "blue"
    found = problems_of(doc)
    assert paths(found) >= {
        "$.rules[0]", "$.rules[1].clue_type", "$.rules[2].condition.all[0].where.all[0]",
        "$.rules[3].condition.all[0].where.all[1]", "$.rules[4].condition.all[1]", "$.rules[5].id",
        "$.rules[8].receiver", "$",
    }
    msgs = dict(found)
    assert msgs["$.rules[0]"] == "missing required property 'title'"
    assert msgs["$.rules[3].condition.all[0].where.all[1]"].startswith("needs exactly one of: eq | ne | in")
    assert msgs["$.rules[4].condition.all[1]"].startswith("needs exactly one of: all | any | not")
    assert msgs["$.rules[8].receiver"] == "is not allowed here"


def test_forbidden_attributes_are_refused_all_at_once():
    doc = builtin_rules_doc()
    doc["rules"][0]["condition"]["all"][0]["where"]["all"].append({"attr": "name", "eq": "x"})
    doc["rules"][7]["condition"]["all"].append({"dataset": "civil_affairs_dibao", "attr": "income", "lt": 500})
    doc["rules"][4]["condition"]["all"][1]["attr"] = "female"  # an attribute of another dataset kind
    found = problems_of(doc)
    assert paths(found) == {
        "$.rules[0].condition.all[0].where.all[2].attr",
        "$.rules[7].condition.all[2].attr",
        "$.rules[4].condition.all[1].attr",
    }
    msgs = dict(found)
    assert "attribute 'income' may not be used for dataset kind 'civil_affairs_dibao'" in msgs["$.rules[7].condition.all[2].attr"]
    assert "(none)" in msgs["$.rules[7].condition.all[2].attr"]
    assert "(role)" in msgs["$.rules[4].condition.all[1].attr"]


def test_meaning_problems_are_all_listed():
    doc = builtin_rules_doc()
    doc["linkage_schema"] = "febrl-v1"
    doc["rules"][0]["condition"]["all"][1]["any"][0]["has_dataset"] = "tax_records"  # unknown kind
    doc["rules"][0]["condition"]["all"][0]["where"]["all"][0] = {"attr": "compensated", "lt": 1}  # op on boolean
    doc["rules"][0]["condition"]["all"][0]["where"]["all"][1]["in"] = ["serious", "grievous"]  # not in enum
    doc["rules"][6]["condition"]["all"][0]["any"][1]["all"][1]["le"] = "two"  # type
    doc["rules"][5]["condition"]["all"][0]["any"][0]["rule"] = "R99"  # no such rule
    doc["rules"][4]["condition"]["all"][0]["any"][0]["rule"] = "X1"  # an exclusion
    doc["rules"][9]["excludes"].append("R42")
    doc["rules"][2]["receiver"] = "police"
    doc["rules"][7]["id"] = "R7"  # duplicate
    doc["rules"].append({"id": "R9", "title": "t", "legal_basis": "b", "clue_type": "referral",
                         "receiver": "womens_federation", "condition": {
                             "dataset": "disability_certificates", "attr": "disability_grade", "in": [1, 2]}})
    doc["rules"].append({"id": "R10", "title": "t", "legal_basis": "b", "clue_type": "referral",
                         "receiver": "procuratorate", "condition": {
                             "dataset": "procuratorate_victims", "attr": "injury", "ne": "minor"}})
    doc["rules"][11]["condition"] = {"dataset": "disability_certificates", "attr": "disability_grade", "in": [0, 2]}
    found = problems_of(doc)
    assert paths(found) == {
        "$.linkage_schema",
        "$.rules[0].condition.all[1].any[0].has_dataset",
        "$.rules[0].condition.all[0].where.all[0].lt",
        "$.rules[0].condition.all[0].where.all[1].in[1]",
        "$.rules[6].condition.all[0].any[1].all[1].le",
        "$.rules[5].condition.all[0].any[0].rule",
        "$.rules[4].condition.all[0].any[0].rule",
        "$.rules[9].excludes[4]",
        "$.rules[2].receiver",
        "$.rules[7].id",
        "$.rules[10].receiver",  # nobody who holds a record could re-identify the person
        "$.rules[11].condition.in[0]",  # grade 0 is outside 1..4
    }


def test_schema_and_meaning_problems_come_out_together():
    doc = builtin_rules_doc()
    doc["rules"][0]["clue_type"] = "reward"
    doc["rules"][1]["condition"]["all"][0]["where"]["all"][0]["attr"] = "tax_paid"
    found = problems_of(doc)
    assert paths(found) == {"$.rules[0].clue_type", "$.rules[1].condition.all[0].where.all[0].attr"}


def test_reference_cycles_are_refused():
    doc = builtin_rules_doc()
    # R5 follows R6 and R6 follows R5
    doc["rules"][4]["condition"]["all"][0]["any"].append({"rule": "R6"})
    doc["rules"][5]["condition"]["all"][0]["any"].append({"rule": "R5"})
    found = problems_of(doc)
    assert len(found) == 1
    (path, msg), = found
    assert path == "$.rules[4]"
    assert "R5 -> R6 -> R5" in msg
    # an exclusion that needs the rule it excludes
    doc = builtin_rules_doc()
    doc["rules"][8]["condition"] = {"all": [doc["rules"][8]["condition"], {"rule": "R5"}]}
    found = problems_of(doc)  # R1 -> X1 -> R5 -> R1 and R2 -> X1 -> R5 -> R2
    assert paths(found) == {"$.rules[0]", "$.rules[1]"}
    assert all("cycle" in m and "X1 -> R5" in m for _, m in found)


def test_unreadable_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError):
        load_rules(tmp_path / "nope.json", SCHEMA)
    bad = tmp_path / "bad.json"
    bad.write_text("{", "utf-8")
    with pytest.raises(ConfigError):
        load_rules(bad, SCHEMA)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(builtin_rules_doc(), ensure_ascii=False), "utf-8")
    assert load_rules(good, "judicial-assistance").digest == RULES.digest
