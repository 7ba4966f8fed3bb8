"""The audit log through the CLIs: encode and ingest append entries with their files' hashes and no
personal value; ``audit verify`` / ``audit show`` on both sides; tampering exits 23 naming the position;
failed commands are logged; a damaged log stops data commands before they act.

Synthetic people only (names, ID numbers, phones and addresses made up here).
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from agency_kit.cli import cli as agency_cli
from hub.cli import cli as hub_cli
from linkage.audit import chain_head, hub_log_path, verify_log
from linkage.documents import canonical_json, read_json
from linkage.idnumber import check_digit
from linkage.keyfile import read_identity_file
from linkage.roster import sign_roster, write_public_identity, write_roster
from tests.support import PASSPHRASE, make_federation

AGENCY = "civil-affairs-bureau"
NAMES = ["审计甲", "审计乙", "审计丙", "审计丁", "审计戊"]
IDS = [f"{f}{check_digit(f)}" for f in (f"52212319850203{i:03d}" for i in range(11, 16))]
PHONES = [f"1380000{i:04d}" for i in range(11, 16)]
ADDRESSES = [f"示例县样例镇{i}号" for i in range(11, 16)]
PERSONAL = [*NAMES, *IDS, *PHONES, *ADDRESSES]
HEADER = ["户编号", "姓名", "身份证号", "联系电话", "住址"]
MAPPING = {"version": 1, "agency": AGENCY, "dataset": "dibao_audit", "dataset_kind": "civil_affairs_dibao",
           "row_key": ["户编号"], "fields": {"name": "姓名", "id_number": "身份证号", "phone": "联系电话",
                                            "address": "住址"}}
ENV = {"AIDLINK_PASSPHRASE": PASSPHRASE, "AIDLINK_AUDIT_LOG": None, "AIDLINK_REGISTER": None}


def run(cli, args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env={**ENV, **(env or {})}, catch_exceptions=False)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_no_personal_value(text: str) -> None:
    leaked = [v for v in PERSONAL if v in text]
    assert not leaked, f"{len(leaked)} personal value(s) in the log"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("audit")
    fed = make_federation(d / "fed", {AGENCY: ["civil_affairs_dibao"]})
    hub = read_identity_file(fed.hub_key, PASSPHRASE)
    signed = d / "fed" / "roster.signed.json"  # ingest insists on a roster the hub signed
    write_roster(signed, sign_roster(read_json(fed.roster), hub.signing_key, hub.id))
    export = d / "dibao.csv"
    with export.open("w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for i in range(5):
            w.writerow([f"H{i:03d}", NAMES[i], IDS[i], PHONES[i], ADDRESSES[i]])
    mapping = d / "dibao.mapping.json"
    mapping.write_text(json.dumps(MAPPING, ensure_ascii=False), "utf-8")
    return {"d": d, "fed": fed, "roster": signed, "export": export, "mapping": mapping}


def encode(w, out: Path, *extra, env=None):
    return run(agency_cli, ["encode", "--input", w["export"], "--mapping", w["mapping"], "--secret", w["fed"].secret,
                            "--identity", w["fed"].identities[AGENCY], "--roster", w["roster"], "--out", out,
                            "--workers", "1", "--json", *extra], env=env)


def ingest(w, db: Path, *packages, extra=()):
    return run(hub_cli, ["ingest", "--db", db, "--roster", w["roster"], "--hub-key", w["fed"].hub_key, *extra,
                         *packages])


def last_entry(log: Path) -> dict:
    return json.loads(log.read_bytes().splitlines()[-1])


def test_encode_then_ingest_are_logged_with_file_hashes_and_no_personal_value(world, tmp_path):
    w = world
    agency_log = w["fed"].identities[AGENCY].parent / "aidlink-audit.jsonl"  # beside the identity key
    before = chain_head(agency_log).entries if agency_log.exists() else 0
    pkg = tmp_path / "outbox" / "dibao.aidpkg"
    r = encode(w, pkg)
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    e = last_entry(agency_log)
    assert summary["audit"] == {"log": str(agency_log), "seq": before + 1, "hash": e["hash"]}
    assert e["action"] == "encode" and e["tool"] == "agency-kit" and e["outcome"] == {"status": "ok"}
    assert e["actor"]["party"] == AGENCY and e["actor"]["role"] == "agency" and e["actor"]["user"]
    assert e["sig"]["signer"] == AGENCY
    files = {(f["role"], f["name"]): f for f in e["inputs"] + e["outputs"]}
    assert files[("export", "dibao.csv")]["sha256"] == sha256(w["export"])
    assert files[("export", "dibao.csv")]["size"] == w["export"].stat().st_size
    assert files[("mapping", "dibao.mapping.json")]["sha256"] == sha256(w["mapping"])
    assert files[("package", "dibao.aidpkg")]["sha256"] == sha256(pkg)
    assert files[("vault", "dibao.vault")]["sha256"] == sha256(pkg.with_name("dibao.vault"))
    assert files[("rejects", "dibao.rejects.csv")]["sha256"] == sha256(pkg.with_name("dibao.rejects.csv"))
    assert e["counts"] == {"rows_read": 5, "encoded": 5, "flagged": 0, "rejected": 0}
    assert e["refs"] == {"package_id": summary["package_id"]}
    assert all("/" not in f["name"] for f in e["inputs"] + e["outputs"])  # base names only

    db = tmp_path / "hub" / "hub.duckdb"
    db.parent.mkdir()
    r = ingest(w, db, pkg, extra=["--json"])
    assert r.exit_code == 0, r.output
    hub_log = hub_log_path(db)
    assert hub_log == tmp_path / "hub" / "hub.duckdb.audit.jsonl" and hub_log.exists()
    e = last_entry(hub_log)
    assert e["seq"] == 1 and e["action"] == "ingest" and e["tool"] == "linkage-hub"
    assert e["actor"]["party"] == "hub" and e["sig"]["signer"] == "hub"
    assert [(f["role"], f["sha256"]) for f in e["inputs"] if f["role"] == "package"] == [("package", sha256(pkg))]
    assert not [f for f in e["inputs"] if f["role"] == "database"]  # a new database: nothing read
    assert {f["role"]: f["sha256"] for f in e["outputs"]}["database"] == sha256(db)
    assert e["counts"]["records_loaded"] == 5 and e["refs"]["package_ids"] == [summary["package_id"]]

    for log in (agency_log, hub_log):
        assert_no_personal_value(log.read_bytes().decode("utf-8"))
        assert verify_log(log).ok

    # verify, with the signatures checked against the roster
    r = run(hub_cli, ["audit", "verify", "--db", db, "--roster", w["roster"], "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["intact"] and out["entries"] == 1 and out["head_hash"] == chain_head(hub_log).head_hash
    assert out["signed_entries"] == 1 and out["signatures_checked"] and out["signers"] == ["hub"]
    r = run(agency_cli, ["audit", "verify", "--log", agency_log, "--roster", w["roster"]])
    assert r.exit_code == 0 and f"chain head {chain_head(agency_log).head_hash}" in r.stdout
    assert "signatures verified" in r.stdout
    r = run(agency_cli, ["audit", "show", "--log", agency_log, "--last", "1", "--json"])
    shown = json.loads(r.stdout)
    assert [x["hash"] for x in shown["entries"]] == [last_entry(agency_log)["hash"]]
    r = run(hub_cli, ["audit", "show", "--db", db])
    assert r.exit_code == 0 and "ingest" in r.stdout and "1 entry shown" in r.stdout


def test_tampering_exits_23_naming_the_position(world, tmp_path):
    w = world
    log = tmp_path / "agency.audit.jsonl"
    for i in range(3):
        r = encode(w, tmp_path / f"o{i}" / "d.aidpkg", "--audit-log", log)
        assert r.exit_code == 0, r.output
    good = log.read_bytes()
    ls = good.splitlines(keepends=True)
    doc = json.loads(ls[1])
    doc["counts"]["rows_read"] = 4
    log.write_bytes(ls[0] + canonical_json(doc) + b"\n" + ls[2])
    r = run(agency_cli, ["audit", "verify", "--log", log])
    assert r.exit_code == 23
    assert r.stderr.startswith("Error: ") and "position 2" in r.stderr and "edited" in r.stderr
    assert "dibao" not in r.stderr and AGENCY not in r.stderr  # no content of the entry
    r = run(agency_cli, ["audit", "verify", "--log", log, "--json"])
    err = json.loads(r.stdout)
    assert (err["ok"], err["error"], err["exit_code"], err["position"], err["kind"]) == \
        (False, "AuditLogError", 23, 2, "edited")

    log.write_bytes(ls[0] + ls[2])
    r = run(agency_cli, ["audit", "verify", "--log", log, "--json"])
    assert r.exit_code == 23 and (json.loads(r.stdout)["position"], json.loads(r.stdout)["kind"]) == (2, "removed")

    # entries cut off the end: only a head recorded earlier shows it
    log.write_bytes(good)
    full_head = chain_head(log).head_hash
    log.write_bytes(b"".join(ls[:2]))
    assert run(agency_cli, ["audit", "verify", "--log", log]).exit_code == 0
    r = run(agency_cli, ["audit", "verify", "--log", log, "--expect-head", full_head])
    assert r.exit_code == 23 and "head_missing" in r.stderr

    # signatures checked against the wrong party's public identity: unknown signer at the first entry
    hub_pub = tmp_path / "hub.pub.json"
    write_public_identity(hub_pub, read_identity_file(w["fed"].hub_key, PASSPHRASE).public())
    r = run(agency_cli, ["audit", "verify", "--log", log, "--pub", hub_pub, "--json"])
    assert r.exit_code == 23 and (json.loads(r.stdout)["position"], json.loads(r.stdout)["kind"]) == \
        (1, "unknown_signer")
    agency_pub = tmp_path / "agency.pub.json"
    write_public_identity(agency_pub, read_identity_file(w["fed"].identities[AGENCY], PASSPHRASE).public())
    assert run(agency_cli, ["audit", "verify", "--log", log, "--pub", agency_pub]).exit_code == 0


def test_a_damaged_log_stops_data_commands_before_they_act(world, tmp_path):
    w = world
    log = tmp_path / "a.audit.jsonl"
    assert encode(w, tmp_path / "o1" / "d.aidpkg", "--audit-log", log).exit_code == 0
    log.write_bytes(log.read_bytes()[:-10])  # an interrupted write
    out = tmp_path / "o2" / "d.aidpkg"
    r = encode(w, out, "--audit-log", log)
    assert r.exit_code == 23 and "incomplete line" in r.stderr
    assert not out.parent.exists()  # refused before anything was written
    assert json.loads(r.stdout) == {"ok": False, "error": "AuditLogError", "exit_code": 23,
                                    "message": r.stderr.strip()[len("Error: "):], "kind": "truncated"}


def test_failed_commands_are_logged_when_they_touched_data(world, tmp_path):
    w = world
    log = tmp_path / "env.audit.jsonl"
    # the log from the environment; the output exists: refused after reading nothing -> not logged
    first = tmp_path / "o" / "d.aidpkg"
    assert encode(w, first, env={"AIDLINK_AUDIT_LOG": str(log)}).exit_code == 0
    assert chain_head(log).entries == 1
    r = encode(w, first, env={"AIDLINK_AUDIT_LOG": str(log)})
    assert r.exit_code == 16
    assert chain_head(log).entries == 1

    # a damaged package read by ingest: logged as IntegrityError (exit 20) with the package's fingerprint
    damaged = tmp_path / "damaged.aidpkg"
    damaged.write_bytes(first.read_bytes()[:3000])
    db = tmp_path / "hub.duckdb"
    r = ingest(w, db, damaged)
    assert r.exit_code == 20
    e = last_entry(hub_log_path(db))
    assert e["action"] == "ingest" and e["outcome"] == {"status": "error", "error": "IntegrityError", "exit_code": 20}
    assert [f["sha256"] for f in e["inputs"] if f["role"] == "package"] == [sha256(damaged)]
    assert e["outputs"] == [] or all(f["role"] != "records_parquet" for f in e["outputs"])

    # a wrong passphrase fails before any data is read: not logged
    r = ingest(w, tmp_path / "other.duckdb", first, extra=["--passphrase-env", "WRONG_PASS"])
    assert r.exit_code == 2  # the variable is not set: usage error before anything
    r = run(hub_cli, ["ingest", "--db", tmp_path / "other.duckdb", "--roster", w["roster"], "--hub-key",
                      w["fed"].hub_key, first], env={"AIDLINK_PASSPHRASE": "not the passphrase"})
    assert r.exit_code == 14 and not hub_log_path(tmp_path / "other.duckdb").exists()


def test_usage(world, tmp_path):
    r = run(agency_cli, ["audit", "verify"])
    assert r.exit_code == 2 and "--log" in r.stderr
    r = run(hub_cli, ["audit", "verify", "--log", tmp_path / "a", "--db", tmp_path / "b"])
    assert r.exit_code == 2
    r = run(hub_cli, ["audit", "verify", "--db", tmp_path / "none.duckdb"])
    assert r.exit_code == 23 and "no audit log" in r.stderr


# ---------------------------------------------------------------- the hook itself, on a made-up command


def _dummy_group():
    import click

    from agency_kit.clitools import agency_audit, aidlink_command
    from linkage.errors import InputError

    @click.group()
    def tool():
        """A test tool."""

    @tool.group("things")
    def things():
        """Nested, like ``clues``."""

    @aidlink_command(things, "do", audit=agency_audit("src"))
    @click.option("--src", type=click.Path())
    @click.option("--fail", type=click.Choice(["none", "before", "after", "bug"]), default="none")
    def do(reporter, src, fail):
        """Read src, write src.out."""
        if fail == "before":
            raise InputError("refused before reading")
        reporter.audit_input("source", src)
        reporter.audit_refs(run_id="", other=None)  # absent identifiers are left out
        if fail == "after":
            raise InputError("failed after reading")
        if fail == "bug":
            raise RuntimeError("a bug")
        out = Path(src + ".out")
        out.write_text("x")
        reporter.audit_output("result", out)
        reporter.audit_counts(rows=3)
        return {"log_seen_by_command": str(reporter.audit_log)}

    return tool


def test_the_hook_records_success_and_failures_after_touching_data(tmp_path):
    tool = _dummy_group()
    src = tmp_path / "in.csv"
    src.write_text("a\n1\n")
    log = tmp_path / "aidlink-audit.jsonl"  # beside --src, as agency_audit("src") says
    r = run(tool, ["things", "do", "--src", src, "--json"])
    assert r.exit_code == 0, r.output
    e = last_entry(log)
    assert e["action"] == "things do" and e["tool"] == "agency-kit" and e["actor"]["role"] == "agency"
    assert e["inputs"] == [{"role": "source", "name": "in.csv", "sha256": sha256(src), "size": 4}]
    assert e["outputs"][0]["name"] == "in.csv.out" and e["counts"] == {"rows": 3} and e["refs"] == {}
    out = json.loads(r.stdout)
    assert out["audit"]["seq"] == 1 and out["log_seen_by_command"] == str(log) and "sig" not in e

    assert run(tool, ["things", "do", "--src", src, "--fail", "before"]).exit_code == 4
    assert chain_head(log).entries == 1  # refused before touching data: not logged
    assert run(tool, ["things", "do", "--src", src, "--fail", "after"]).exit_code == 4
    assert last_entry(log)["outcome"] == {"status": "error", "error": "InputError", "exit_code": 4}
    r = run(tool, ["things", "do", "--src", src, "--fail", "bug"])
    assert r.exit_code == 1
    assert last_entry(log)["outcome"] == {"status": "error", "error": "RuntimeError", "exit_code": 1}
    assert chain_head(log).entries == 3 and verify_log(log).ok

    other = tmp_path / "elsewhere" / "x.jsonl"
    assert run(tool, ["things", "do", "--src", src, "--audit-log", other]).exit_code == 0
    assert last_entry(other)["seq"] == 1 and chain_head(log).entries == 3
    assert run(tool, ["things", "do", "--src", src], env={"AIDLINK_AUDIT_LOG": str(other)}).exit_code == 0
    assert chain_head(other).entries == 2
