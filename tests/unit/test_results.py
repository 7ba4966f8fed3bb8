"""Result packages (hub.results) and reveal (agency_kit.reveal).

A tiny hub database is built by hand: four agencies' packages and records,
one run's clusters, links and clues.  Every value is synthetic.
"""

import hashlib
import json
import os
from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa
import pytest
from openpyxl import load_workbook

from agency_kit.mapping import mapping_from_document, row_key_text
from agency_kit.readers import iter_chunks
from agency_kit.register import open_register
from agency_kit.reveal import (
    CONFIDENCE_BANDS,
    RESULT_SCHEMA,
    REVEAL_HEADERS,
    identity_vault_key,
    open_results,
    reveal_results,
)
from agency_kit.vault import VaultWriter
from hub.results import (
    AgencyResult,
    check_own_tokens,
    confidence_band,
    write_results,
)
from hub.rules import build_clues_sql, load_rules
from hub.store import (
    RecordLayout,
    create_pairs_sql,
    create_tables,
    insert_package_sql,
    write_meta,
)
from linkage.errors import (
    AidlinkError,
    ConfigError,
    FingerprintMismatchError,
    InputError,
    IntegrityError,
    OutputExistsError,
    RosterError,
    RuleError,
    StateError,
)
from linkage.keyfile import Identity
from linkage.package import open_package
from linkage.roster import build_roster, roster_from_document, sign_roster
from linkage.schema import load_schema

NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
SCHEMA = load_schema("judicial-assistance")
RULES = load_rules("judicial-assistance", SCHEMA)
KCV = "0f" * 16
PROC, COURT, CIVIL, EDU = "county-procuratorate", "county-court", "civil-affairs-bureau", "education-bureau"
PKG = {PROC: "a1" * 16, COURT: "b2" * 16, CIVIL: "c3" * 16, EDU: "d4" * 16}
DATASET = {PROC: "victims_2026", COURT: "zhongben_2026", CIVIL: "dibao_2026", EDU: "students_2026"}
KIND = {PROC: "procuratorate_victims", COURT: "court_enforcement", CIVIL: "civil_affairs_dibao",
        EDU: "education_students"}


def tok(agency, i, salt=""):
    return hashlib.md5(f"{agency}/{i}/{salt}".encode()).hexdigest()


TOKENS = {PROC: [tok(PROC, i) for i in range(6)], COURT: [tok(COURT, i) for i in range(3)],
          CIVIL: [tok(CIVIL, i) for i in range(4)], EDU: [tok(EDU, i) for i in range(2)]}
TP, TC, TD, TE = TOKENS[PROC], TOKENS[COURT], TOKENS[CIVIL], TOKENS[EDU]

# cluster -> members (agency, token); links (token, token, probability); clues (rule, deliver_to, token)
CLUSTERS = {
    "c1": [(PROC, TP[0]), (CIVIL, TD[0])],
    "c2": [(COURT, TC[0]), (CIVIL, TD[1])],
    "c3": [(PROC, TP[1])],
    "c4": [(PROC, TP[2]), (COURT, TC[1])],
    "c5": [(EDU, TE[0]), (CIVIL, TD[2])],
    "c6": [(PROC, TP[3]), (CIVIL, TD[3]), (COURT, TC[2])],
    "c7": [(PROC, TP[4])], "c8": [(PROC, TP[5])], "c9": [(EDU, TE[1])],
}
LINKS = [("c1", TP[0], TD[0], 0.995), ("c2", TC[0], TD[1], 0.95), ("c4", TP[2], TC[1], 0.7),
         ("c5", TE[0], TD[2], 0.999), ("c6", TP[3], TD[3], 0.999), ("c6", TD[3], TC[2], 0.93)]
CLUES = [  # rule, clue_type, receiver, cluster, deliver_to, token
    ("R1", "judicial_assistance", PROC, "c1", PROC, TP[0]),
    ("R6", "referral", "womens-federation", "c1", PROC, TP[0]),
    ("R3", "judicial_assistance", PROC, "c2", COURT, TC[0]),
    ("R7", "supervision_suggestion", CIVIL, "c3", PROC, TP[1]),
    ("R2", "judicial_assistance", PROC, "c4", PROC, TP[2]),
    ("R8", "supervision_suggestion", COURT, "c4", COURT, TC[1]),
    ("R5", "referral", EDU, "c5", EDU, TE[0]),
    ("R1", "judicial_assistance", PROC, "c6", PROC, TP[3]),
]
EXPECTED_BAND = {"c1": "high", "c2": "medium", "c3": "unlinked", "c4": "low", "c5": "high", "c6": "medium"}
PROBABILITIES = {p for *_, p in LINKS}

EXPORT = (
    "案件编号,姓名,身份证号,联系电话,住址\n"
    "AJ-001,测试甲,110101199003070011,13900000001,某某镇示例村1组\n"
    "AJ-002,测试乙,110101198805060022,13900000002,某某镇示例村2组\n"
    "AJ-003,样例丙,110101197001010033,,某某镇示例村3组\n"
    "AJ-004,样例丁,110101200202020044,13900000004,某某镇示例村4组\n"
    "AJ-005,示例戊,110101195512120055,13900000005,=某某镇示例村5组\n"
    "AJ-006,示例己,110101199909090066,13900000006,某某镇示例村6组\n"
)
MAPPING = {
    "version": 1, "agency": PROC, "dataset": DATASET[PROC], "dataset_kind": KIND[PROC],
    "source": {"file_type": "csv", "encoding": "utf-8", "sheet": None},
    "row_key": ["案件编号", "身份证号"],
    "fields": {"name": "姓名", "id_number": "身份证号", "phone": "联系电话", "address": "住址"},
    "attributes": {},
}


class Fed:
    """Hub and agency identities, the roster, a hub database, the procuratorate's export and vault."""

    def __init__(self, d):
        self.dir = d
        self.hub = Identity.generate("hub", "hub", operator="County procuratorate, IT office")
        self.ids = {a: Identity.generate("agency", a, name=a) for a in (PROC, COURT, CIVIL, EDU)}
        for a, ident in self.ids.items():
            ident.datasets = (KIND[a],)
        doc = build_roster(federation="county", schema_fingerprint=SCHEMA.fingerprint, hub=self.hub.public(),
                           agencies=[i.public() for i in self.ids.values()], valid_from=NOW - timedelta(days=10),
                           valid_until=NOW + timedelta(days=365), now=NOW)
        self.roster = roster_from_document(sign_roster(doc, self.hub.signing_key, "hub"), now=NOW)
        self.db = d / "hub.duckdb"
        build_hub_db(self.db)
        self.export = d / "victims.csv"
        self.export.write_text(EXPORT, encoding="utf-8")
        self.mapping = mapping_from_document(MAPPING, SCHEMA, "victims.mapping.json")
        self.vault = d / "victims.vault"
        write_vault(self.vault, self.ids[PROC], self.export, self.mapping, PKG[PROC], TP)

    def write(self, out="results", **kw):
        kw.setdefault("now", NOW)
        return write_results(self.db, self.dir / out, roster=self.roster, hub=self.hub, rules=RULES, **kw)


def write_vault(path, identity, export, mapping, package_id, tokens, force=False):
    chunk = next(iter_chunks(export, columns_needed=mapping.source_columns, sheet=mapping.sheet))
    keys = row_key_text(chunk, mapping)
    with VaultWriter(path, key=identity_vault_key(identity), package_id=package_id, dataset=mapping.dataset,
                     force=force) as v:
        v.add(list(tokens), [chunk.first_row + i for i in range(len(tokens))], keys[:len(tokens)])


def build_hub_db(path, run="r1"):
    con = duckdb.connect(str(path))
    create_tables(con, RecordLayout.from_schema(SCHEMA))
    write_meta(con, SCHEMA, KCV, ())
    con.execute(create_pairs_sql())
    con.execute(build_clues_sql()[0].sql)
    rid = 0
    for agency, tokens in TOKENS.items():
        con.execute(insert_package_sql(), [PKG[agency], agency, DATASET[agency], KIND[agency], "00" * 32,
                                           len(tokens), None, None, NOW.replace(tzinfo=None), "{}"])
        for t in tokens:
            rid += 1
            con.execute("INSERT INTO records (rid, dataset, dataset_kind, package_id, token) VALUES (?, ?, ?, ?, ?)",
                        [rid, DATASET[agency], KIND[agency], PKG[agency], t])
    add_run(con, run, NOW - timedelta(hours=1))
    con.close()


def add_run(con, run, started, clusters=CLUSTERS, links=LINKS, clues=CLUES):
    agency_of = {t: a for a, ts in TOKENS.items() for t in ts}
    for cid, members in clusters.items():
        for agency, t in members:
            con.execute("INSERT INTO clusters VALUES (?, ?, ?, ?)", [run, cid, DATASET[agency], t])
    for _, tl, tr, p in links:
        con.execute("INSERT INTO pairs VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [run, tl, DATASET[agency_of[tl]], tr, DATASET[agency_of[tr]], 5.0, p])
    for rule, ctype, receiver, cid, deliver, t in clues:
        others = sorted({KIND[a] for a, _ in clusters[cid]} - {KIND[agency_of[t]]})
        con.execute("INSERT INTO clues VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [run, rule, ctype, receiver, cid, DATASET[agency_of[t]], t, others, deliver])
    s = started.replace(tzinfo=None)
    con.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [run, s, s, (s + timedelta(days=90)).date(), "test", "test", "{}", "{}",
                                         "{}"])


@pytest.fixture
def fed(tmp_path):
    return Fed(tmp_path)


def open_as(fed, path, agency, key_of=None):
    ident = fed.ids[key_of or agency]
    return open_package(path, recipient_private_key=ident.sealing_key, roster=fed.roster, recipient_id=agency,
                        now=NOW)


# ---------------------------------------------------------------- results


def test_each_package_holds_only_its_own_tokens(fed):
    summary = fed.write()
    assert summary["run_id"] == "r1"
    assert summary["clue_rows"] == {PROC: 5, COURT: 2, EDU: 1}  # civil affairs: records but no clue to deliver
    assert sorted(os.listdir(fed.dir / "results")) == sorted(f"{a}.r1.results.aidpkg" for a in (PROC, COURT, EDU))
    for p in summary["packages"]:
        opened = open_as(fed, p["file"], p["agency"])
        tokens = opened.table.column("token").to_pylist()
        assert set(tokens) <= set(TOKENS[p["agency"]])
        for other, theirs in TOKENS.items():
            if other != p["agency"]:
                assert not set(tokens) & set(theirs)
        want = sorted((r, t) for r, _, _, _, d, t in CLUES if d == p["agency"])
        assert sorted(zip(opened.table.column("rule_id").to_pylist(), tokens)) == want
        assert opened.table.schema.equals(RESULT_SCHEMA)
        m = opened.manifest
        assert m["direction"] == "to_agency" and m["agency"] == p["agency"] and m["sender"] == "hub"
        assert m["run_id"] == "r1" and m["in_reply_to"] == [PKG[p["agency"]]]
        assert set(opened.table.column("source_package_id").to_pylist()) == {PKG[p["agency"]]}
        assert m["extensions"]["results"]["clue_rows"] == p["clue_rows"]


def test_referral_travels_with_the_holder_and_names_the_receiver(fed):
    summary = fed.write()
    proc = next(p for p in summary["packages"] if p["agency"] == PROC)
    rows = open_as(fed, proc["file"], PROC).table.to_pylist()
    r6 = next(r for r in rows if r["rule_id"] == "R6")
    assert r6["receiver"] == "womens-federation" and r6["receiver_name"] == "县妇女联合会"
    assert r6["clue_type"] == "referral" and r6["other_datasets"] == "civil_affairs_dibao"
    assert r6["rule_title"] == RULES.rule("R6").title and r6["legal_basis"] == RULES.rule("R6").legal_basis


def test_opening_with_another_agencys_key_fails(fed):
    summary = fed.write()
    court = next(p["file"] for p in summary["packages"] if p["agency"] == COURT)
    with pytest.raises(IntegrityError):
        open_as(fed, court, PROC)  # the procuratorate's key and id
    with pytest.raises(IntegrityError):
        open_as(fed, court, COURT, key_of=PROC)  # claiming to be the court with the wrong key
    with pytest.raises(IntegrityError):
        open_results(court, identity=fed.ids[PROC], roster=fed.roster, now=NOW)


def test_edited_result_package_is_refused(fed):
    summary = fed.write()
    path = next(p["file"] for p in summary["packages"] if p["agency"] == PROC)
    data = bytearray(open(path, "rb").read())
    for pos in (20, len(data) // 2, len(data) - 1):
        edited = bytearray(data)
        edited[pos] ^= 0x01
        bad = fed.dir / f"edited-{pos}.aidpkg"
        bad.write_bytes(bytes(edited))
        with pytest.raises(IntegrityError) as ei:
            open_results(bad, identity=fed.ids[PROC], roster=fed.roster, now=NOW)
        assert str(ei.value) == IntegrityError().message


def test_bands_not_raw_scores(fed):
    summary = fed.write()
    assert set(summary["confidence_bands"]) == set(CONFIDENCE_BANDS)
    seen = {}
    for p in summary["packages"]:
        opened = open_as(fed, p["file"], p["agency"])
        for f in opened.table.schema:
            assert not pa.types.is_floating(f.type), f.name
        for row in opened.table.to_pylist():
            assert row["confidence"] in CONFIDENCE_BANDS
            assert not any(str(v) in json.dumps(row) for v in PROBABILITIES)
            cid = next(c for r, _, _, c, _, t in CLUES if t == row["token"] and r == row["rule_id"])
            seen[cid] = row["confidence"]
        text = json.dumps(opened.manifest)
        assert not any(str(v) in text for v in PROBABILITIES)
    assert seen == EXPECTED_BAND


@pytest.mark.parametrize(("members", "links", "p", "band"), [
    (1, 0, None, "unlinked"), (3, 0, None, "low"), (2, 1, 0.999, "high"), (2, 1, 0.99, "high"),
    (2, 1, 0.9899, "medium"), (2, 1, 0.9, "medium"), (2, 1, 0.5, "low"),
])
def test_confidence_band(members, links, p, band):
    assert confidence_band(members, links, p) == band


def test_token_not_owned_by_its_deliver_to_stops_everything(fed):
    con = duckdb.connect(str(fed.db))
    con.execute("INSERT INTO clues VALUES ('r1', 'R2', 'judicial_assistance', ?, 'c4', ?, ?, [], ?)",
                [PROC, DATASET[COURT], TC[1], PROC])  # the court's token, routed to the procuratorate
    con.close()
    with pytest.raises(StateError, match="did not send"):
        fed.write()
    assert not (fed.dir / "results").exists()


def test_check_own_tokens_is_the_last_guard():
    table = pa.Table.from_pydict({f.name: [] for f in RESULT_SCHEMA}, schema=RESULT_SCHEMA)
    row = {f.name: [None] for f in RESULT_SCHEMA}
    row.update(token=[TC[0]], dataset=[DATASET[COURT]])
    one = pa.Table.from_pydict(row, schema=RESULT_SCHEMA)
    with pytest.raises(AidlinkError, match="not that agency's"):
        check_own_tokens([AgencyResult(PROC, one, [], {}, {(DATASET[COURT], TC[0]): COURT})])
    with pytest.raises(AidlinkError, match="both"):
        check_own_tokens([AgencyResult(COURT, one, [], {}, {(DATASET[COURT], TC[0]): COURT}),
                          AgencyResult(COURT, one, [], {}, {(DATASET[COURT], TC[0]): COURT})])
    check_own_tokens([AgencyResult(COURT, one, [], {}, {(DATASET[COURT], TC[0]): COURT}),
                      AgencyResult(PROC, table, [], {}, {})])


def test_existing_output_refused_and_nothing_written(fed):
    out = fed.dir / "results"
    out.mkdir()
    (out / f"{EDU}.r1.results.aidpkg").write_bytes(b"old")
    with pytest.raises(OutputExistsError):
        fed.write()
    assert os.listdir(out) == [f"{EDU}.r1.results.aidpkg"]
    fed.write(force=True)
    assert len(os.listdir(out)) == 3


def test_recipient_not_on_roster(fed):
    doc = dict(fed.roster.document)
    doc["agencies"] = [a for a in doc["agencies"] if a["id"] != EDU]
    fed.roster = roster_from_document(sign_roster(doc, fed.hub.signing_key, "hub"), now=NOW)
    with pytest.raises(RosterError, match=EDU):
        fed.write()


def test_hub_key_must_be_the_rosters_and_have_signed_it(fed):
    real = fed.hub
    fed.hub = Identity.generate("hub", "hub", operator="someone else")
    with pytest.raises(RosterError, match="not the key"):
        fed.write()
    fed.hub = real
    unsigned = {k: v for k, v in fed.roster.document.items() if k != "signature"}
    fed.roster = roster_from_document(unsigned, now=NOW)
    with pytest.raises(RosterError, match="not signed"):
        fed.write()
    assert not (fed.dir / "results").exists()


def test_roster_of_another_schema(fed):
    doc = dict(fed.roster.document)
    doc["schema_fingerprint"] = "ab" * 32
    fed.roster = roster_from_document(sign_roster(doc, fed.hub.signing_key, "hub"), now=NOW)
    with pytest.raises(FingerprintMismatchError):
        fed.write()


def test_rule_missing_from_rule_set(fed):
    con = duckdb.connect(str(fed.db))
    con.execute("UPDATE clues SET rule_id = 'R99' WHERE rule_id = 'R5'")
    con.close()
    with pytest.raises(RuleError, match="R99"):
        fed.write()


def test_run_choice_and_record_keeping(fed):
    con = duckdb.connect(str(fed.db))
    add_run(con, "r0", NOW - timedelta(days=30), clusters={"c1": CLUSTERS["c1"]}, links=[LINKS[0]],
            clues=[CLUES[0]])
    con.close()
    assert fed.write("latest")["run_id"] == "r1"  # the latest run by start time
    old = fed.write("old", run_id="r0")
    assert old["clue_rows"] == {PROC: 1}
    with pytest.raises(StateError, match="no run"):
        fed.write("none", run_id="r-missing")
    con = duckdb.connect(str(fed.db))
    rows = con.execute("SELECT run_id, agency, clue_rows FROM result_packages ORDER BY run_id, agency").fetchall()
    con.close()
    assert rows == [("r0", PROC, 1), ("r1", COURT, 2), ("r1", PROC, 5), ("r1", EDU, 1)]


def test_missing_tables_are_a_state_error(tmp_path, fed):
    db = tmp_path / "empty.duckdb"
    con = duckdb.connect(str(db))
    create_tables(con, RecordLayout.from_schema(SCHEMA))
    write_meta(con, SCHEMA, KCV, ())
    con.close()
    with pytest.raises(StateError, match="clues"):
        write_results(db, tmp_path / "o", roster=fed.roster, hub=fed.hub, rules=RULES, now=NOW)


# ---------------------------------------------------------------- reveal


def reveal(fed, result, out="clues.xlsx", csv="clues.csv", register="reg.duckdb", **kw):
    kw.setdefault("now", NOW)
    return reveal_results(result_path=result, identity=fed.ids[PROC], roster=fed.roster, vault_path=fed.vault,
                          input_path=fed.export, mapping=fed.mapping, out_xlsx=fed.dir / out,
                          out_csv=fed.dir / csv if csv else None, register_path=fed.dir / register,
                          actor="officer-a", **kw)


def proc_result(fed, **kw):
    return next(p["file"] for p in fed.write(**kw)["packages"] if p["agency"] == PROC)


def test_reveal_round_trip(fed):
    summary = reveal(fed, proc_result(fed))
    assert summary["revealed"] == 5 and summary["other_package_rows"] == 0 and summary["relocated_rows"] == 0
    assert summary["by_rule"] == {"R1": 2, "R2": 1, "R6": 1, "R7": 1}
    assert summary["register"] == {"path": str(fed.dir / "reg.duckdb"), "new": 5, "seen_again": 0,
                                   "already_recorded": False}
    ws = load_workbook(fed.dir / "clues.xlsx").active
    rows = [[c.value for c in r] for r in ws.iter_rows()]
    headers = rows[0]
    assert headers[:len(REVEAL_HEADERS)] == list(REVEAL_HEADERS)
    assert headers[len(REVEAL_HEADERS):] == ["姓名", "身份证号", "联系电话", "住址", "案件编号", "法律依据"]
    by = {(r[1], r[7]): dict(zip(headers, r)) for r in rows[1:]}
    # R1 for export row 2 (AJ-001, token TP[0]) in cluster c1 (high), R1 for row 5 (AJ-004) in c6 (medium)
    assert by[("R1", 2)]["姓名"] == "测试甲" and by[("R1", 2)]["置信度"] == "高"
    assert by[("R1", 2)]["身份证号"] == "110101199003070011"  # text, not a number
    assert by[("R1", 5)]["案件编号"] == "AJ-004" and by[("R1", 5)]["置信度"] == "中"
    assert by[("R7", 3)]["置信度"] == "无关联记录" and by[("R7", 3)]["接收单位"] == "县民政局"
    assert by[("R6", 2)]["线索类型"] == "转介移送" and by[("R6", 2)]["关联数据集"] == "低保"
    assert by[("R2", 4)]["线索编号"].startswith("C")
    csv_text = (fed.dir / "clues.csv").read_bytes()
    assert csv_text.startswith(b"\xef\xbb\xbf")
    lines = csv_text.decode("utf-8-sig").splitlines()
    assert lines[0].split(",")[:len(REVEAL_HEADERS)] == list(REVEAL_HEADERS)
    assert len(lines) == 6
    with open_register(fed.dir / "reg.duckdb", read_only=True) as reg:
        clues = reg.list()
        assert len(clues) == 5 and {c["status"] for c in clues} == {"new"}
        assert {c["row_number"] for c in clues} == {2, 3, 4, 5}
        assert all(len(c) and "row_key" not in c for c in clues)


def test_reveal_again_changes_nothing_in_the_register(fed):
    result = proc_result(fed)
    first = reveal(fed, result)
    again = reveal(fed, result, force=True)
    assert again["register"]["already_recorded"] and again["register"]["new"] == 0
    ws1 = [[c.value for c in r] for r in load_workbook(fed.dir / "clues.xlsx").active.iter_rows()]
    assert first["revealed"] == again["revealed"] == len(ws1) - 1


def test_unknown_token_refused_without_echoing_it(fed):
    result = proc_result(fed)
    other = fed.dir / "other.vault"  # same package id, but the vault lacks the clue tokens
    write_vault(other, fed.ids[PROC], fed.export, fed.mapping, PKG[PROC], [tok(PROC, i, "x") for i in range(6)])
    fed.vault = other
    with pytest.raises(StateError, match="another run or dataset") as ei:
        reveal(fed, result)
    assert not any(t in str(ei.value) for t in TP)
    assert not (fed.dir / "clues.xlsx").exists() and not (fed.dir / "reg.duckdb").exists()


def test_vault_of_another_package_refused(fed):
    result = proc_result(fed)
    write_vault(fed.vault, fed.ids[PROC], fed.export, fed.mapping, "ee" * 16, TP, force=True)
    with pytest.raises(StateError, match="answers package"):
        reveal(fed, result)


def test_vault_of_another_agency_is_opaque(fed):
    result = proc_result(fed)
    write_vault(fed.vault, fed.ids[COURT], fed.export, fed.mapping, PKG[PROC], TP, force=True)
    with pytest.raises(IntegrityError):
        reveal(fed, result)


def test_moved_rows_are_found_by_row_key_and_missing_rows_refused(fed):
    result = proc_result(fed)
    lines = EXPORT.splitlines()
    fed.export.write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n", encoding="utf-8")
    summary = reveal(fed, result)
    assert summary["relocated_rows"] == 4  # rows 2..5 are now rows 7..4
    ws = load_workbook(fed.dir / "clues.xlsx").active
    rows = [[c.value for c in r] for r in ws.iter_rows()][1:]
    assert {(r[1], r[7], r[8]) for r in rows if r[1] == "R1"} == {("R1", 7, "测试甲"), ("R1", 4, "样例丁")}
    fed.export.write_text("\n".join(lines[:1] + lines[2:]) + "\n", encoding="utf-8")  # AJ-001 deleted
    with pytest.raises(InputError, match="not in this file"):
        reveal(fed, result, out="b.xlsx", csv="b.csv")


def test_reveal_outputs_are_atomic_and_refused_when_present(fed):
    result = proc_result(fed)
    (fed.dir / "clues.csv").write_text("keep me", encoding="utf-8")
    with pytest.raises(OutputExistsError):
        reveal(fed, result)
    assert (fed.dir / "clues.csv").read_text(encoding="utf-8") == "keep me"
    assert not (fed.dir / "clues.xlsx").exists() and not (fed.dir / "reg.duckdb").exists()
    assert [p for p in os.listdir(fed.dir) if p.endswith(".tmp")] == []
    reveal(fed, result, force=True)
    assert (fed.dir / "clues.csv").read_bytes().startswith(b"\xef\xbb\xbf")


def test_failed_output_leaves_register_and_files_untouched(fed, monkeypatch):
    import agency_kit.reveal as reveal_module

    def broken(*a, **k):
        raise OSError("disk full")

    result = proc_result(fed)
    monkeypatch.setattr(reveal_module, "write_csv", broken)
    with pytest.raises(OSError):
        reveal(fed, result, out="sub/dir/c.xlsx")
    assert not (fed.dir / "sub/dir/c.xlsx").exists()
    with open_register(fed.dir / "reg.duckdb", read_only=True) as reg:
        assert reg.list() == [] and reg.history() == []
    monkeypatch.undo()
    assert reveal(fed, result, out="sub/dir/c.xlsx")["register"]["new"] == 5


def test_formula_like_cell_stays_text(fed):
    reveal(fed, proc_result(fed), all_columns=True)
    wb = load_workbook(fed.dir / "clues.xlsx")
    cells = [c for r in wb.active.iter_rows() for c in r if isinstance(c.value, str) and c.value.startswith("=")]
    assert cells == []  # row AJ-005 has no clue; check the CSV escaping on a row that has one instead
    lines = EXPORT.replace("某某镇示例村2组", "=1+1").encode()
    fed.export.write_bytes(lines)
    reveal(fed, proc_result(fed, out="r2", force=True), out="f.xlsx", csv="f.csv", force=True)
    wb = load_workbook(fed.dir / "f.xlsx")
    formula = [c for r in wb.active.iter_rows() for c in r if c.value == "=1+1"]
    assert formula and all(c.data_type == "s" for c in formula)
    assert "'=1+1" in (fed.dir / "f.csv").read_text(encoding="utf-8-sig")


def test_reveal_from_an_xlsx_export(fed):
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "受害人"
    for line in EXPORT.replace("=", "").splitlines():  # openpyxl would store "=..." as a formula
        ws.append(line.split(","))
    wb.create_sheet("说明").append(["导出说明"])
    xlsx = fed.dir / "victims.xlsx"
    wb.save(xlsx)
    fed.export = xlsx
    fed.mapping = mapping_from_document({**MAPPING, "source": {"file_type": "xlsx", "sheet": "受害人"}}, SCHEMA)
    write_vault(fed.vault, fed.ids[PROC], xlsx, fed.mapping, PKG[PROC], TP, force=True)
    summary = reveal(fed, proc_result(fed))
    assert summary["revealed"] == 5 and summary["relocated_rows"] == 0
    rows = [[c.value for c in r] for r in load_workbook(fed.dir / "clues.xlsx").active.iter_rows()]
    assert {(r[1], r[7], r[8]) for r in rows[1:] if r[1] == "R1"} == {("R1", 2, "测试甲"), ("R1", 5, "样例丁")}


def test_mapping_of_another_agency_or_dataset_refused(fed):
    result = proc_result(fed)
    fed.mapping = mapping_from_document({**MAPPING, "agency": COURT}, SCHEMA)
    with pytest.raises(ConfigError, match="agency"):
        reveal(fed, result)
    fed.mapping = mapping_from_document({**MAPPING, "dataset": "victims_2025"}, SCHEMA)
    with pytest.raises(ConfigError, match="dataset"):
        reveal(fed, result)


def test_expired_result_refused(fed):
    from linkage.errors import ReplayError

    result = proc_result(fed, ttl_days=1)
    with pytest.raises(ReplayError):
        reveal(fed, result, now=NOW + timedelta(days=2))
