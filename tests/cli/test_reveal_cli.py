"""linkage-hub results, agency-kit reveal and agency-kit clues list/update/export through click's CliRunner.

Packages and vaults are built with the library APIs (synthetic rows only).
"""

import hashlib
import json
from datetime import UTC, datetime, timedelta

import click
import duckdb
import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from agency_kit import clues_cmd
from agency_kit.mapping import mapping_from_document, row_key_text
from agency_kit.readers import iter_chunks
from agency_kit.reveal import identity_vault_key
from agency_kit.vault import VaultWriter
from hub import results_cmd
from hub.rules import build_clues_sql
from hub.store import RecordLayout, create_pairs_sql, create_tables, insert_package_sql, write_meta
from linkage.keyfile import Identity, write_identity_file
from linkage.roster import build_roster, sign_roster, write_roster
from linkage.schema import load_schema

PW = "correct horse battery staple"
ENV = {"AIDLINK_PASSPHRASE": PW, "AIDLINK_REGISTER": None}
SCHEMA = load_schema("judicial-assistance")
PROC, CIVIL = "county-procuratorate", "civil-affairs-bureau"
DATASET = {PROC: "victims_2026", CIVIL: "dibao_2026"}
KIND = {PROC: "procuratorate_victims", CIVIL: "civil_affairs_dibao"}
EXPORT = (
    "案件编号,姓名,身份证号,住址\n"
    "AJ-001,测试甲,110101199003070011,某某镇示例村1组\n"
    "AJ-002,测试乙,110101198805060022,某某镇示例村2组\n"
    "AJ-003,样例丙,110101197001010033,某某镇示例村3组\n"
)
MAPPING = {"version": 1, "agency": PROC, "dataset": DATASET[PROC], "dataset_kind": KIND[PROC],
           "source": {"file_type": "csv", "encoding": "utf-8", "sheet": None}, "row_key": ["案件编号"],
           "fields": {"name": "姓名", "id_number": "身份证号", "address": "住址"}, "attributes": {}}


@click.group()
def agency_cli():
    """agency-kit, as the lead's cli.py will compose it."""


@click.group()
def hub_cli():
    """linkage-hub, as the lead's cli.py will compose it."""


clues_cmd.register(agency_cli)
results_cmd.register(hub_cli)


def run(cli, args, env=ENV):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)


def one_json(result):
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def tok(agency, i, run):
    return hashlib.md5(f"{agency}/{i}/{run}".encode()).hexdigest()


class World:
    def __init__(self, d):
        self.d = d
        now = datetime.now(UTC)
        hub = Identity.generate("hub", "hub", operator="County procuratorate, IT office")
        self.ids = {a: Identity.generate("agency", a, name=a) for a in (PROC, CIVIL)}
        for a, i in self.ids.items():
            i.datasets = (KIND[a],)
        self.hub_key = d / "hub.identity.key"
        write_identity_file(self.hub_key, hub, PW)
        self.proc_key = d / "proc.identity.key"
        write_identity_file(self.proc_key, self.ids[PROC], PW)
        self.roster = d / "roster.json"
        doc = build_roster(federation="county", schema_fingerprint=SCHEMA.fingerprint, hub=hub.public(),
                           agencies=[i.public() for i in self.ids.values()], valid_from=now - timedelta(days=1),
                           valid_until=now + timedelta(days=365))
        write_roster(self.roster, sign_roster(doc, hub.signing_key, "hub"))
        self.unsigned_roster = d / "unsigned-roster.json"
        write_roster(self.unsigned_roster, doc)
        self.export = d / "victims.csv"
        self.export.write_text(EXPORT, encoding="utf-8")
        self.mapping_path = d / "victims.mapping.json"
        self.mapping_path.write_text(json.dumps(MAPPING, ensure_ascii=False), encoding="utf-8")
        self.mapping = mapping_from_document(MAPPING, SCHEMA)
        self.db = d / "hub.duckdb"
        con = duckdb.connect(str(self.db))
        create_tables(con, RecordLayout.from_schema(SCHEMA))
        write_meta(con, SCHEMA, "0f" * 16, ())
        con.execute(create_pairs_sql())
        con.execute(build_clues_sql()[0].sql)
        con.close()
        self.rid = 0

    def encode_run(self, run, started):
        """A new encode of the same export (fresh tokens, new package), ingested and matched as run ``run``."""
        pkg = {PROC: hashlib.md5(f"p{run}".encode()).hexdigest(), CIVIL: hashlib.md5(f"c{run}".encode()).hexdigest()}
        tp = [tok(PROC, i, run) for i in range(3)]
        td = [tok(CIVIL, i, run) for i in range(2)]
        vault = self.d / f"victims.{run}.vault"
        chunk = next(iter_chunks(self.export, columns_needed=self.mapping.source_columns))
        with VaultWriter(vault, key=identity_vault_key(self.ids[PROC]), package_id=pkg[PROC],
                         dataset=DATASET[PROC]) as v:
            v.add(tp, [2, 3, 4], row_key_text(chunk, self.mapping))
        con = duckdb.connect(str(self.db))
        for agency, tokens in ((PROC, tp), (CIVIL, td)):
            con.execute(insert_package_sql(), [pkg[agency], agency, DATASET[agency], KIND[agency], "00" * 32,
                                               len(tokens), None, None, started, "{}"])
            for t in tokens:
                self.rid += 1
                con.execute("INSERT INTO records (rid, dataset, dataset_kind, package_id, token) VALUES (?,?,?,?,?)",
                            [self.rid, DATASET[agency], KIND[agency], pkg[agency], t])
        members = {"c1": [(PROC, tp[0]), (CIVIL, td[0])], "c2": [(PROC, tp[1])], "c3": [(PROC, tp[2])],
                   "c4": [(CIVIL, td[1])]}
        for cid, ms in members.items():
            for agency, t in ms:
                con.execute("INSERT INTO clusters VALUES (?, ?, ?, ?)", [run, cid, DATASET[agency], t])
        con.execute("INSERT INTO pairs VALUES (?, ?, ?, ?, ?, 9.0, 0.998)", [run, tp[0], DATASET[PROC], td[0],
                                                                              DATASET[CIVIL]])
        clues = [("R1", "judicial_assistance", PROC, "c1", tp[0], ["civil_affairs_dibao"]),
                 ("R6", "referral", "womens-federation", "c1", tp[0], ["civil_affairs_dibao"]),
                 ("R7", "supervision_suggestion", CIVIL, "c2", tp[1], [])]
        for rule, ctype, receiver, cid, t, others in clues:
            con.execute("INSERT INTO clues VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [run, rule, ctype, receiver, cid, DATASET[PROC], t, others, PROC])
        con.execute("INSERT INTO runs VALUES (?, ?, ?, ?, 'test', 'test', '{}', '{}', '{}')",
                    [run, started, started, (started + timedelta(days=90)).date()])
        con.close()
        return vault

    def results(self, run, *extra):
        return run_(hub_cli, ["results", "--db", self.db, "--roster", self.roster, "--hub-key", self.hub_key,
                              "--run", run, "--out", self.d / "out", "--json", *extra])

    def reveal(self, result, vault, out, *extra):
        return run_(agency_cli, ["reveal", "--result", result, "--identity", self.proc_key, "--roster", self.roster,
                                 "--vault", vault, "--input", self.export, "--mapping", self.mapping_path,
                                 "--out", self.d / f"{out}.xlsx", "--csv", self.d / f"{out}.csv",
                                 "--register", self.d / "reg.duckdb", "--actor", "officer-a", *extra])

    def clues(self, *args):
        return run_(agency_cli, ["clues", *args, "--register", self.d / "reg.duckdb"])


run_ = run


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return World(tmp_path_factory.mktemp("reveal"))


def test_results_reveal_and_register_end_to_end(world):
    v1 = world.encode_run("r1", datetime(2026, 5, 1))
    r = world.results("r1")
    assert r.exit_code == 0, r.stderr
    summary = one_json(r)
    assert summary["ok"] and summary["command"] == "results" and summary["run_id"] == "r1"
    assert summary["clue_rows"] == {PROC: 3}
    package = summary["packages"][0]["file"]
    assert all(t not in r.stdout for t in (tok(PROC, i, "r1") for i in range(3)))

    r = world.reveal(package, v1, "clues1", "--json")
    assert r.exit_code == 0, r.stderr
    out = one_json(r)
    assert out["command"] == "reveal" and out["revealed"] == 3 and out["register"]["new"] == 3
    ws = load_workbook(world.d / "clues1.xlsx").active
    assert [c.value for c in ws[1]][:8] == ["线索编号", "规则编号", "规则名称", "线索类型", "接收单位", "置信度",
                                           "关联数据集", "源文件行号"]
    assert (world.d / "clues1.csv").read_bytes().startswith(b"\xef\xbb\xbf")

    r = world.clues("list", "--json")
    listed = one_json(r)
    assert r.exit_code == 0 and listed["count"] == 3 and listed["by_status"]["new"] == 3
    assert {c["rule_id"] for c in listed["clues"]} == {"R1", "R6", "R7"}

    # a second run: new encode, new tokens, the same rows -> no duplicates
    v2 = world.encode_run("r2", datetime(2026, 6, 1))
    r = world.results("r2")
    assert r.exit_code == 0, r.stderr
    package2 = one_json(r)["packages"][0]["file"]
    r = world.reveal(package2, v2, "clues2", "--json")
    assert r.exit_code == 0, r.stderr
    assert one_json(r)["register"] == {"path": str(world.d / "reg.duckdb"), "new": 0, "seen_again": 3,
                                       "already_recorded": False}
    listed = one_json(world.clues("list", "--json"))
    assert listed["count"] == 3
    assert {(c["first_seen_run"], c["last_seen_run"], c["times_seen"]) for c in listed["clues"]} == {("r1", "r2", 2)}

    # the old vault does not fit the new result
    r = world.reveal(package2, v1, "clues3", "--json")
    assert r.exit_code == 22 and "Error:" in r.stderr
    assert one_json(r)["ok"] is False
    assert all(tok(PROC, i, "r2") not in r.stderr + r.stdout for i in range(3))

    # the workflow
    r1 = next(c["clue_id"] for c in listed["clues"] if c["rule_id"] == "R1")
    r = world.clues("update", r1, "--status", "assisted", "--amount", "5000", "--actor", "officer-b", "--json")
    assert r.exit_code == 22 and "cannot change to assisted" in r.stderr
    r = world.clues("update", r1, "--status", "verifying", "--actor", "officer-b", "--json")
    assert r.exit_code == 0 and one_json(r)["status"] == "verifying"
    r = world.clues("update", r1, "--status", "assisted", "--amount", "lots", "--actor", "officer-b")
    assert r.exit_code == 2
    r = world.clues("update", r1, "--status", "assisted", "--amount", "5000", "--visit-date", "2026-05-02",
                    "--note", "已发放", "--actor", "officer-b", "--json")
    assert r.exit_code == 0, r.stderr
    assert one_json(r)["changed"] == ["status", "assistance_amount", "visits", "note"]
    r = world.clues("list", "--status", "assisted", "--json")
    assert [c["assistance_amount"] for c in one_json(r)["clues"]] == ["5000.00"]
    r = world.clues("update", "C999999", "--status", "verifying", "--actor", "x")
    assert r.exit_code == 22 and r.stderr.startswith("Error:")

    r = world.clues("export", "--out", world.d / "register.xlsx", "--json")
    assert r.exit_code == 0, r.stderr
    exported = one_json(r)
    assert exported["clues"] == 3 and len(exported["history_head"]) == 64
    wb = load_workbook(world.d / "register.xlsx")
    assert wb.sheetnames == ["线索登记簿", "状态历史", "说明"]
    r = world.clues("export", "--out", world.d / "register.xlsx")
    assert r.exit_code == 16


def test_refusals(world, tmp_path):
    vault = world.encode_run("r9", datetime(2026, 4, 1))
    r = world.results("r9")
    package = one_json(r)["packages"][0]["file"]
    r = world.results("r9")
    assert r.exit_code == 16 and "already exists" in r.stderr  # the package is there

    edited = tmp_path / "edited.aidpkg"
    data = bytearray(open(package, "rb").read())
    data[-5] ^= 1
    edited.write_bytes(bytes(data))
    r = world.reveal(edited, vault, "e", "--json")
    assert r.exit_code == 20 and one_json(r)["error"] == "IntegrityError"

    (world.d / "x.xlsx").write_bytes(b"keep")
    r = world.reveal(package, vault, "x")
    assert r.exit_code == 16 and (world.d / "x.xlsx").read_bytes() == b"keep"

    r = run(hub_cli, ["results", "--db", world.db, "--roster", world.roster, "--hub-key", world.hub_key,
                      "--out", tmp_path / "o"], env={"AIDLINK_PASSPHRASE": "wrong passphrase"})
    assert r.exit_code == 14

    r = run(hub_cli, ["results", "--db", world.db, "--roster", world.unsigned_roster, "--hub-key", world.hub_key,
                      "--run", "r9", "--out", tmp_path / "o", "--json"])
    assert r.exit_code == 20 and not (tmp_path / "o").exists()  # the roster must be the hub's own, signed

    r = run(agency_cli, ["clues", "list", "--register", tmp_path / "missing.duckdb", "--json"])
    assert r.exit_code == 22 and one_json(r)["ok"] is False


def test_reveal_after_a_real_encode(world):
    """agency-kit encode writes the package and the vault; the hub's results come back; reveal finds the rows."""
    from agency_kit.cli import cli as agency_kit_cli
    from linkage.keyfile import create_secret_file, read_identity_file
    from linkage.package import open_package
    from linkage.roster import load_roster

    secret = world.d / "secret.key"
    if not secret.exists():
        create_secret_file(secret, PW)
    enc = world.d / "enc" / "victims.aidpkg"
    r = run(agency_kit_cli, ["encode", "--input", world.export, "--mapping", world.mapping_path, "--secret", secret,
                             "--identity", world.proc_key, "--roster", world.roster, "--out", enc, "--workers", "1",
                             "--json"])
    assert r.exit_code == 0, r.stderr
    hub = read_identity_file(world.hub_key, PW, role="hub")
    sent = open_package(enc, recipient_private_key=hub.sealing_key, roster=load_roster(world.roster),
                        recipient_id="hub")
    tokens, pid = sent.table.column("token").to_pylist(), sent.manifest["package_id"]
    assert len(tokens) == 3  # rows 2, 3, 4 of the export, in order
    con = duckdb.connect(str(world.db))
    con.execute(insert_package_sql(), [pid, PROC, DATASET[PROC], KIND[PROC], "00" * 32, 3, None, None,
                                       datetime(2026, 7, 1), "{}"])
    for t in tokens:
        world.rid += 1
        con.execute("INSERT INTO records (rid, dataset, dataset_kind, package_id, token) VALUES (?,?,?,?,?)",
                    [world.rid, DATASET[PROC], KIND[PROC], pid, t])
    for cid, t in (("e1", tokens[0]), ("e3", tokens[2])):
        con.execute("INSERT INTO clusters VALUES ('re', ?, ?, ?)", [cid, DATASET[PROC], t])
    con.execute("INSERT INTO clues VALUES ('re', 'R1', 'judicial_assistance', ?, 'e1', ?, ?, [], ?)",
                [PROC, DATASET[PROC], tokens[0], PROC])
    con.execute("INSERT INTO clues VALUES ('re', 'R7', 'supervision_suggestion', ?, 'e3', ?, ?, [], ?)",
                [CIVIL, DATASET[PROC], tokens[2], PROC])
    con.close()
    r = world.results("re")
    assert r.exit_code == 0, r.stderr
    result = one_json(r)["packages"][0]["file"]
    vault = world.d / "enc" / "victims.vault"
    r = world.reveal(result, vault, "real", "--register", world.d / "real-register.duckdb", "--json")
    assert r.exit_code == 0, r.stderr
    assert one_json(r)["revealed"] == 2
    ws = load_workbook(world.d / "real.xlsx").active
    rows = [[c.value for c in row] for row in ws.iter_rows()]
    got = {(row[1], row[7], row[8], row[9]) for row in rows[1:]}
    assert got == {("R1", 2, "测试甲", "110101199003070011"), ("R7", 4, "样例丙", "110101197001010033")}


def test_help_lists_the_commands():
    r = run(agency_cli, ["--help"])
    assert "reveal" in r.stdout and "clues" in r.stdout
    r = run(agency_cli, ["clues", "--help"])
    assert all(c in r.stdout for c in ("list", "update", "export"))
    assert "results" in run(hub_cli, ["--help"]).stdout
