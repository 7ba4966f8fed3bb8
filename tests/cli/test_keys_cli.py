"""agency-kit keygen-secret / keygen-identity / export-public / key-info / roster-build / roster-info,
and linkage-hub keygen, through click's CliRunner."""

import json
import os

import pytest
from click.testing import CliRunner

from agency_kit.cli import cli as agency_cli
from hub.cli import cli as hub_cli
from linkage.keyfile import read_identity_file, read_secret_file
from linkage.roster import load_roster

PW = "correct horse battery staple"
ENV = {"AIDLINK_PASSPHRASE": PW}
NO_ENV = {"AIDLINK_PASSPHRASE": None}


def run(cli, args, env=ENV, input=None):
    return CliRunner().invoke(cli, args, env=env, input=input, catch_exceptions=False)


def one_json(result):
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def mode(path):
    return oct(os.stat(path).st_mode & 0o777)


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    """Hub and two agencies with keys and public files."""
    d = tmp_path_factory.mktemp("fed")
    r = run(hub_cli, ["keygen", "--out", str(d / "hub"), "--operator", "County procuratorate, IT office", "--json"])
    assert r.exit_code == 0, r.output
    for agency, kind, extra in (("civil-affairs", "civil_affairs_dibao", []), ("court", "court_enforcement", ["--pq"])):
        r = run(agency_cli, ["keygen-identity", "--agency", agency, "--out", str(d / agency), "--name", agency.title(),
                             "--dataset", kind, *extra])
        assert r.exit_code == 0, r.output
    return d


def test_keygen_secret_json_mode_and_key_info(tmp_path):
    out = tmp_path / "secret.key"
    r = run(agency_cli, ["keygen-secret", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    summary = one_json(r)
    assert summary["ok"] and summary["command"] == "keygen-secret" and summary["mode"] == "0600"
    assert mode(out) == "0o600"
    kcv = read_secret_file(out, PW).key_check_value()
    assert summary["key_check_value"] == kcv and summary["kdf"]["n"] >= 2 ** 15
    r = run(agency_cli, ["key-info", "--key", str(out), "--json"])
    info = one_json(r)
    assert r.exit_code == 0 and info["key_check_value"] == kcv and info["verified"] is True
    r = run(agency_cli, ["key-info", "--key", str(out), "--no-passphrase"], env=NO_ENV)
    assert r.exit_code == 0 and kcv in r.stdout and "not verified" in r.stdout


def test_keygen_secret_prompts_twice(tmp_path):
    out = tmp_path / "s.key"
    r = run(agency_cli, ["keygen-secret", "--out", str(out), "--json"], env=NO_ENV, input=f"{PW}\n{PW}\n")
    assert r.exit_code == 0, r.output
    one_json(r)  # the prompts went to stderr
    assert read_secret_file(out, PW)
    r = run(agency_cli, ["keygen-secret", "--out", str(tmp_path / "t.key")], env=NO_ENV, input="short\nshort\n")
    assert r.exit_code == 2 and not (tmp_path / "t.key").exists()


def test_passphrase_env_option(tmp_path, monkeypatch):
    out = tmp_path / "s.key"
    r = run(agency_cli, ["keygen-secret", "--out", str(out), "--passphrase-env", "MY_PW"],
            env={"MY_PW": "another passphrase", "AIDLINK_PASSPHRASE": None})
    assert r.exit_code == 0, r.output
    assert read_secret_file(out, "another passphrase")
    r = run(agency_cli, ["key-info", "--key", str(out), "--passphrase-env", "UNSET_VAR"],
            env={"UNSET_VAR": None})
    assert r.exit_code == 2 and "UNSET_VAR" in r.stderr


def test_errors_and_exit_codes(tmp_path):
    out = tmp_path / "s.key"
    assert run(agency_cli, ["keygen-secret", "--out", str(out)]).exit_code == 0
    before = out.read_bytes()
    r = run(agency_cli, ["keygen-secret", "--out", str(out), "--json"])
    assert r.exit_code == 16 and r.stderr.startswith("Error: ") and out.read_bytes() == before
    assert one_json(r) == {"ok": False, "error": "OutputExistsError", "exit_code": 16, "message": r.stderr[7:].strip()}
    assert run(agency_cli, ["keygen-secret", "--out", str(out), "--force"]).exit_code == 0
    assert out.read_bytes() != before
    r = run(agency_cli, ["key-info", "--key", str(out)], env={"AIDLINK_PASSPHRASE": "wrong passphrase"})
    assert r.exit_code == 14 and "Error: the passphrase does not open this key file" in r.stderr
    assert PW not in r.output and "wrong passphrase" not in r.output
    r = run(agency_cli, ["key-info", "--key", str(out)], env=NO_ENV, input="")
    assert r.exit_code == 2 and "no passphrase" in r.stderr


def test_keygen_identity_files_and_modes(federation):
    d = federation / "civil-affairs"
    key, pub = d / "civil-affairs.identity.key", d / "civil-affairs.pub.json"
    assert mode(key) == "0o600" and mode(pub) == "0o644"
    ident = read_identity_file(key, PW)
    doc = json.loads(pub.read_text("utf-8"))
    assert doc["format"] == "aidlink-public-identity" and doc["role"] == "agency" and doc["id"] == "civil-affairs"
    assert doc["datasets"] == ["civil_affairs_dibao"] and doc["sealing_suite"] == "x25519"
    assert doc["signing_public_key"] and "private" not in pub.read_text()
    assert ident.public().fingerprint
    assert json.loads((federation / "court" / "court.pub.json").read_text())["sealing_suite"] == "mlkem768-x25519"


def test_keygen_identity_json_and_bad_id(tmp_path):
    r = run(agency_cli, ["keygen-identity", "--agency", "edu", "--out", str(tmp_path), "--json", "--pq"])
    assert r.exit_code == 0, r.output
    s = one_json(r)
    assert s["id"] == "edu" and s["sealing_suite"] == "mlkem768-x25519" and s["identity_mode"] == "0600"
    r = run(agency_cli, ["keygen-identity", "--agency", "edu", "--out", str(tmp_path)])
    assert r.exit_code == 16
    r = run(agency_cli, ["keygen-identity", "--agency", "../evil", "--out", str(tmp_path)])
    assert r.exit_code == 2 and not list(tmp_path.glob("*evil*"))


def test_linkage_hub_keygen(federation):
    d = federation / "hub"
    assert mode(d / "hub.identity.key") == "0o600" and mode(d / "hub.pub.json") == "0o644"
    doc = json.loads((d / "hub.pub.json").read_text())
    assert doc["role"] == "hub" and doc["operator"] == "County procuratorate, IT office"
    r = run(hub_cli, ["keygen", "--out", str(d), "--operator", "x", "--json"])
    assert r.exit_code == 16 and one_json(r)["error"] == "OutputExistsError"
    r = run(hub_cli, ["keygen", "--out", str(d)])
    assert r.exit_code == 2  # --operator is required


def test_export_public(federation, tmp_path):
    out = tmp_path / "ca.pub.json"
    r = run(agency_cli, ["export-public", "--identity", str(federation / "civil-affairs" / "civil-affairs.identity.key"),
                         "--out", str(out), "--name", "民政局", "--dataset", "civil_affairs_tekun", "--json"])
    assert r.exit_code == 0, r.output
    s = one_json(r)
    doc = json.loads(out.read_text("utf-8"))
    assert doc["name"] == "民政局" and doc["datasets"] == ["civil_affairs_tekun"] and s["name"] == "民政局"
    original = json.loads((federation / "civil-affairs" / "civil-affairs.pub.json").read_text())
    assert doc["signing_public_key"] == original["signing_public_key"]
    plain = tmp_path / "plain.pub.json"
    r = run(agency_cli, ["export-public", "--identity", str(federation / "civil-affairs" / "civil-affairs.identity.key"),
                         "--out", str(plain)])
    assert r.exit_code == 0 and json.loads(plain.read_text()) == original  # datasets and name kept in the key file
    r = run(agency_cli, ["export-public", "--identity", str(federation / "civil-affairs" / "civil-affairs.identity.key"),
                         "--out", str(tmp_path / "x.json")], env={"AIDLINK_PASSPHRASE": "wrong passphrase"})
    assert r.exit_code == 14 and not (tmp_path / "x.json").exists()


def test_roster_build_and_info(federation, tmp_path):
    out = tmp_path / "roster.json"
    args = ["roster-build", "--federation", "county-2026", "--schema-fingerprint", "ab" * 32,
            "--hub", str(federation / "hub" / "hub.pub.json"),
            "--agency", str(federation / "civil-affairs" / "civil-affairs.pub.json"),
            "--agency", str(federation / "court" / "court.pub.json"),
            "--datasets", "court=court_enforcement,wage_claimants", "--valid-days", "30", "--out", str(out)]
    r = run(agency_cli, [*args, "--sign-with", str(federation / "hub" / "hub.identity.key"), "--json"])
    assert r.exit_code == 0, r.output
    s = one_json(r)
    roster = load_roster(out)
    assert s["fingerprint"] == roster.fingerprint and s["signed"] and roster.signed
    assert roster.hub.operator == "County procuratorate, IT office"
    assert roster.agency("court").datasets == ("court_enforcement", "wage_claimants")
    assert roster.agency("civil-affairs").datasets == ("civil_affairs_dibao",)
    assert mode(out) == "0o644"
    r = run(agency_cli, [*args])
    assert r.exit_code == 16
    r = run(agency_cli, ["roster-info", "--roster", str(out), "--json"])
    assert r.exit_code == 0 and one_json(r)["federation"] == "county-2026"
    # from a built-in schema instead of a fingerprint; both at once is a usage error
    r = run(agency_cli, [*args[:3], "--schema", "judicial-assistance", *args[5:-1], str(tmp_path / "r2.json")])
    assert r.exit_code == 0, r.output
    r = run(agency_cli, [*args[:-1], str(tmp_path / "r3.json"), "--schema", "febrl"])
    assert r.exit_code == 2


def test_roster_build_problems_and_expired_roster(federation, tmp_path):
    hub_pub = federation / "hub" / "hub.pub.json"
    agency_pub = federation / "civil-affairs" / "civil-affairs.pub.json"
    r = run(agency_cli, ["roster-build", "--federation", "f", "--schema-fingerprint", "nothex", "--hub", str(agency_pub),
                         "--agency", str(agency_pub), "--out", str(tmp_path / "r.json"), "--json"])
    assert r.exit_code == 3 and one_json(r)["error"] == "ConfigError" and not (tmp_path / "r.json").exists()
    old = tmp_path / "old.json"
    r = run(agency_cli, ["roster-build", "--federation", "f", "--schema-fingerprint", "ab" * 32, "--hub", str(hub_pub),
                         "--agency", str(agency_pub), "--valid-from", "2020-01-01", "--valid-days", "10",
                         "--out", str(old)])
    assert r.exit_code == 0, r.output
    r = run(agency_cli, ["roster-info", "--roster", str(old)])
    assert r.exit_code == 15 and "expired" in r.stderr
    # signing with an identity that is not the roster's hub
    r = run(agency_cli, ["roster-build", "--federation", "f", "--schema-fingerprint", "ab" * 32, "--hub", str(hub_pub),
                         "--agency", str(agency_pub), "--out", str(tmp_path / "s.json"),
                         "--sign-with", str(federation / "civil-affairs" / "civil-affairs.identity.key")])
    assert r.exit_code == 3 and not (tmp_path / "s.json").exists()


def test_schema_info_still_there():
    r = run(agency_cli, ["schema-info", "--json"])
    assert r.exit_code == 0 and one_json(r)["schema_id"].startswith("judicial-assistance")


def test_passphrase_change_keeps_the_key_and_refuses_the_old_passphrase(tmp_path, federation):
    new = "another long passphrase"
    secret_file = tmp_path / "s.key"
    assert run(agency_cli, ["keygen-secret", "--out", str(secret_file)]).exit_code == 0
    secret = read_secret_file(secret_file, PW)
    created = json.loads(secret_file.read_text())["created_at"]
    r = run(agency_cli, ["passphrase", "--key", str(secret_file), "--json"],
            env={**ENV, "AIDLINK_NEW_PASSPHRASE": new})
    assert r.exit_code == 0, r.output
    assert one_json(r) == {"ok": True, "command": "passphrase", "path": str(secret_file), "kind": "linkage-secret",
                           "mode": "0600", "changed": True}
    assert PW not in r.output and new not in r.output
    assert read_secret_file(secret_file, new).value == secret.value  # the same key ...
    assert json.loads(secret_file.read_text())["created_at"] == created  # ... made when it was made
    assert run(agency_cli, ["key-info", "--key", str(secret_file)]).exit_code == 14  # the old one is gone
    assert mode(secret_file) == "0o600"

    # an identity (the hub's, through linkage-hub), new passphrase typed at the prompt, twice
    hub_key = tmp_path / "hub.identity.key"
    hub_key.write_bytes((federation / "hub" / "hub.identity.key").read_bytes())
    before = read_identity_file(hub_key, PW)
    r = run(hub_cli, ["passphrase", "--key", str(hub_key)], env=NO_ENV, input=f"{PW}\n{new}\n{new}\n")
    assert r.exit_code == 0, r.output
    after = read_identity_file(hub_key, new)
    assert after.signing_key.private_bytes_raw() == before.signing_key.private_bytes_raw()
    assert after.sealing_key.private_bytes() == before.sealing_key.private_bytes()


def test_passphrase_change_refusals_leave_the_file_as_it_was(tmp_path):
    key = tmp_path / "s.key"
    assert run(agency_cli, ["keygen-secret", "--out", str(key)]).exit_code == 0
    before = key.read_bytes()
    # wrong current passphrase: the one opaque error, nothing written
    r = run(agency_cli, ["passphrase", "--key", str(key)],
            env={"AIDLINK_PASSPHRASE": "wrong passphrase", "AIDLINK_NEW_PASSPHRASE": "another long one"})
    assert r.exit_code == 14 and key.read_bytes() == before
    # too short, the same as the old one, or no new passphrase at all: refused before writing
    for new in ("short", PW):
        r = run(agency_cli, ["passphrase", "--key", str(key)], env={**ENV, "AIDLINK_NEW_PASSPHRASE": new})
        assert r.exit_code == 2 and key.read_bytes() == before, r.output
    r = run(agency_cli, ["passphrase", "--key", str(key)], env=ENV, input="")
    assert r.exit_code == 2 and "no new passphrase" in r.stderr and key.read_bytes() == before
    # an edited file is refused like a wrong passphrase
    doc = json.loads(before)
    doc["public"]["key_check_value"] = "0" * len(doc["public"]["key_check_value"])
    key.write_text(json.dumps(doc))
    r = run(agency_cli, ["passphrase", "--key", str(key)], env={**ENV, "AIDLINK_NEW_PASSPHRASE": "another long one"})
    assert r.exit_code in (14, 20) and json.loads(key.read_text()) == doc
