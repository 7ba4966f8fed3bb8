"""agency-kit encode: the happy path, every bad input with its own exit code, atomic outputs.

Every error test checks the message names no personal data from the input.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from agency_kit.cli import cli
from agency_kit.vault import open_vault, vault_key
from linkage.idnumber import check_digit
from linkage.keyfile import read_identity_file
from tests.support import PASSPHRASE, make_federation

AGENCY = "civil-affairs-bureau"
# synthetic people, made up for these tests
NAMES = ["测试甲", "测试乙", "测试丙", "测试丁"]


def make_id(first17: str) -> str:
    return first17 + check_digit(first17)


IDS = [make_id("52212319800101" + f"{i:03d}") for i in range(1, 5)]
PHONES = ["13900000001", "13900000002", "13900000003", "13900000004"]
HEADER = ["序号", "姓名", "身份证号", "联系电话"]
SECRETS = [*NAMES, *IDS, *PHONES]


def rows():
    return [[str(i + 1), NAMES[i], IDS[i], PHONES[i]] for i in range(4)]


def write_csv(path: Path, header, body, encoding="utf-8-sig"):
    with open(path, "w", encoding=encoding, newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(body)
    return path


MAPPING = {
    "version": 1, "agency": AGENCY, "dataset": "dibao", "dataset_kind": "civil_affairs_dibao",
    "row_key": ["序号"],
    "fields": {"name": "姓名", "id_number": "身份证号", "phone": "联系电话"},
}


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    return make_federation(tmp_path_factory.mktemp("fed"), {AGENCY: ["civil_affairs_dibao"]})


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("AIDLINK_PASSPHRASE", PASSPHRASE)


def run_encode(fed, tmp_path, input_path, mapping=None, *extra, roster=None):
    tmp_path.mkdir(parents=True, exist_ok=True)
    mp = tmp_path / "m.json"
    mp.write_text(json.dumps(mapping or MAPPING, ensure_ascii=False), "utf-8")
    out = tmp_path / "out" / "dibao.aidpkg"
    args = ["encode", "--input", str(input_path), "--mapping", str(mp), "--secret", str(fed.secret),
            "--identity", str(fed.identities[AGENCY]), "--roster", str(roster or fed.roster),
            "--out", str(out), "--workers", "1", "--json", *extra]
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    return res, out


def assert_no_personal_data(text: str):
    for s in SECRETS:
        assert s not in text


def assert_nothing_written(out: Path):
    d = out.parent
    assert not d.exists() or not [p for p in d.iterdir()], sorted(p.name for p in d.iterdir())


def test_encode_happy_path(fed, tmp_path, env):
    src = write_csv(tmp_path / "dibao.csv", HEADER, [*rows(), ["", "", "", ""], ["6", "", "", ""]])
    res, out = run_encode(fed, tmp_path, src)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["ok"] is True
    assert summary["counts"] == {"rows_read": 6, "encoded": 4, "flagged": 0, "rejected": 2}
    assert out.exists() and out.with_name("dibao.vault").exists()
    rejects = out.with_name("dibao.rejects.csv").read_text("utf-8-sig").splitlines()
    # header is row 1: the blank row is row 6, the row with only a serial number row 7
    assert rejects == ["row,column,rule", "6,,row.blank", "7,,row.no_identifier"]
    # the vault maps each token back to its file row
    ident = read_identity_file(fed.identities[AGENCY], PASSPHRASE)
    vault = open_vault(out.with_name("dibao.vault"), key=vault_key(ident.signing_key.private_bytes_raw()))
    assert vault.package_id == summary["package_id"]
    assert_no_personal_data(out.read_bytes().decode("latin-1"))


def test_encode_leaves_no_file_descriptor_open(fed, tmp_path, env):
    src = write_csv(tmp_path / "dibao.csv", HEADER, rows())
    run_encode(fed, tmp_path / "warm", src)  # libraries load (and open what they keep) once
    before = len(os.listdir("/proc/self/fd"))
    res, _ = run_encode(fed, tmp_path, src)
    assert res.exit_code == 0, res.output
    assert len(os.listdir("/proc/self/fd")) == before


def test_flagged_id_still_encoded_and_reported_by_rule(fed, tmp_path, env):
    body = rows()
    body[1][2] = IDS[1][:-1] + ("0" if IDS[1][-1] != "0" else "1")  # wrong check digit
    src = write_csv(tmp_path / "dibao.csv", HEADER, body)
    res, out = run_encode(fed, tmp_path, src)
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["counts"]["flagged"] == 1 and s["counts"]["encoded"] == 4
    assert s["problems_by_rule"] == {"id_number.checksum": 1}
    report = out.with_name("dibao.rejects.csv").read_text("utf-8-sig")
    assert "3,身份证号,id_number.checksum" in report
    assert_no_personal_data(report)


def test_gb18030_input(fed, tmp_path, env):
    src = write_csv(tmp_path / "dibao.csv", HEADER, rows(), encoding="gb18030")
    res, _ = run_encode(fed, tmp_path, src)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["counts"]["encoded"] == 4


def _xlsx(path: Path, sheets: dict[str, list[list]]):
    from openpyxl import Workbook

    wb = Workbook()
    wb.remove(wb.active)
    for name, data in sheets.items():
        ws = wb.create_sheet(name)
        for r in data:
            ws.append(r)
    wb.save(path)
    return path


BAD_INPUTS = {
    "missing_column": (5, lambda p: write_csv(p / "x.csv", ["序号", "姓名", "联系电话"], [r[:2] + r[3:] for r in rows()])),
    "duplicate_header": (6, lambda p: write_csv(p / "x.csv", ["序号", "姓名", "身份证号", "姓名", "联系电话"],
                                                 [[*r[:3], r[1], *r[3:]] for r in rows()])),
    "empty_file": (7, lambda p: (p / "x.csv").write_bytes(b"") or p / "x.csv"),
    "header_only": (7, lambda p: write_csv(p / "x.csv", HEADER, [])),
    "huge_cell": (10, lambda p: write_csv(p / "x.csv", HEADER, [*rows(), ["9", "测" * 4_000_000, IDS[0], PHONES[0]]])),
    "several_sheets": (11, lambda p: _xlsx(p / "x.xlsx", {"一": [HEADER, *rows()], "二": [HEADER, *rows()]})),
    "formula_cells": (12, lambda p: _xlsx(p / "x.xlsx", {"s": [HEADER, *rows(), ["5", "=A1&A2", IDS[0], PHONES[0]]]})),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_has_its_own_exit_code_and_no_personal_data(fed, tmp_path, env, case):
    code, make = BAD_INPUTS[case]
    src = make(tmp_path)
    res, out = run_encode(fed, tmp_path, src)
    assert res.exit_code == code, (case, res.output)
    assert res.stderr.startswith("Error: ") and len(res.stderr.strip().splitlines()) == 1
    assert str(src.name) in res.stderr
    assert "Traceback" not in res.output
    assert_no_personal_data(res.output)
    assert json.loads(res.stdout)["exit_code"] == code
    assert_nothing_written(out)


def test_wrong_encoding_given(fed, tmp_path, env):
    src = write_csv(tmp_path / "x.csv", HEADER, rows(), encoding="utf-8")
    res, out = run_encode(fed, tmp_path, src, None, "--encoding", "gb18030")
    assert res.exit_code == 8, res.output
    assert_no_personal_data(res.output)
    assert_nothing_written(out)


def test_mixed_encodings(fed, tmp_path, env):
    src = tmp_path / "x.csv"
    head = write_csv(tmp_path / "a.csv", HEADER, rows()[:2], encoding="utf-8").read_bytes()
    tail = "\n".join(",".join(r) for r in rows()[2:]).encode("gb18030") + b"\n"
    src.write_bytes(head + tail)
    res, out = run_encode(fed, tmp_path, src)
    assert res.exit_code == 9, res.output
    assert_no_personal_data(res.output)
    assert_nothing_written(out)


def test_schema_mapping_mismatch(fed, tmp_path, env):
    src = write_csv(tmp_path / "x.csv", HEADER, rows())
    bad = dict(MAPPING, fields={**MAPPING["fields"], "shoe_size": "姓名"})
    res, out = run_encode(fed, tmp_path, src, bad)
    assert res.exit_code in (3, 13), res.output
    assert "shoe_size" in res.stderr
    forbidden = dict(MAPPING, attributes={"compensated": {"column": "姓名", "map": {"是": True}}})
    res, out = run_encode(fed, tmp_path, src, forbidden)
    assert res.exit_code == 13, res.output
    assert "compensated" in res.stderr
    assert_nothing_written(out)


def test_wrong_passphrase(fed, tmp_path, monkeypatch):
    monkeypatch.setenv("AIDLINK_PASSPHRASE", "not-the-passphrase")
    src = write_csv(tmp_path / "x.csv", HEADER, rows())
    res, out = run_encode(fed, tmp_path, src)
    assert res.exit_code == 14, res.output
    assert_nothing_written(out)


def test_expired_roster(tmp_path, env):
    old = make_federation(tmp_path / "old", {AGENCY: ["civil_affairs_dibao"]},
                          valid_from=datetime.now(UTC) - timedelta(days=400), valid_days=30)
    src = write_csv(tmp_path / "x.csv", HEADER, rows())
    res, out = run_encode(old, tmp_path, src)
    assert res.exit_code == 15, res.output
    assert "expired" in res.stderr.lower() or "valid" in res.stderr.lower()
    assert_nothing_written(out)


def test_existing_output_refused_without_force(fed, tmp_path, env):
    src = write_csv(tmp_path / "x.csv", HEADER, rows())
    res, out = run_encode(fed, tmp_path, src)
    assert res.exit_code == 0
    before = out.read_bytes()
    res, _ = run_encode(fed, tmp_path, src)
    assert res.exit_code == 16, res.output
    assert out.read_bytes() == before
    res, _ = run_encode(fed, tmp_path, src, None, "--force")
    assert res.exit_code == 0, res.output
    assert out.read_bytes() != before  # fresh tokens, fresh package


def test_two_runs_are_unlinkable_by_token(fed, tmp_path, env):
    from linkage.package import open_package
    from linkage.roster import load_roster

    src = write_csv(tmp_path / "x.csv", HEADER, rows())
    res1, out1 = run_encode(fed, tmp_path / "a", src)
    res2, out2 = run_encode(fed, tmp_path / "b", src)
    assert res1.exit_code == res2.exit_code == 0
    hub = read_identity_file(fed.hub_key, PASSPHRASE)
    roster = load_roster(fed.roster)
    t1 = open_package(out1, recipient_private_key=hub.sealing_key, roster=roster, recipient_id="hub").table
    t2 = open_package(out2, recipient_private_key=hub.sealing_key, roster=roster, recipient_id="hub").table
    assert not set(t1["token"].to_pylist()) & set(t2["token"].to_pylist())
    assert t1["clk"].to_pylist() == t2["clk"].to_pylist()  # same secret: same encodings
    assert {c for c in t1.column_names} >= {"token", "clk", "bf_name", "eh_id_number"}


def test_parquet_input_and_multiple_workers(fed, tmp_path, env):
    import pandas as pd

    src = tmp_path / "x.parquet"
    pd.DataFrame(rows() * 50, columns=HEADER).to_parquet(src)
    mp = tmp_path / "m.json"
    mp.write_text(json.dumps(MAPPING, ensure_ascii=False), "utf-8")
    out = tmp_path / "o.aidpkg"
    res = CliRunner().invoke(cli, ["encode", "--input", str(src), "--mapping", str(mp), "--secret", str(fed.secret),
                                   "--identity", str(fed.identities[AGENCY]), "--roster", str(fed.roster),
                                   "--out", str(out), "--workers", "2", "--chunk-rows", "1000", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["counts"]["encoded"] == 200
    assert pq  # parquet module importable for the package payload


def test_dataset_kind_not_on_the_roster_refused(fed, tmp_path, env):
    src = write_csv(tmp_path / "x.csv", HEADER, rows())
    other = dict(MAPPING, dataset_kind="civil_affairs_tekun")
    res, out = run_encode(fed, tmp_path, src, other)
    assert res.exit_code == 15, res.output
    assert "civil_affairs_tekun" in res.stderr
    assert_nothing_written(out)


def test_identity_with_a_passphrase_of_its_own(fed, tmp_path, monkeypatch):
    """The identity file need not share the secret's passphrase: --identity-passphrase-env names its own."""
    from linkage.keyfile import change_passphrase

    own = "the agency team's own passphrase"
    ident = tmp_path / "agency.identity.key"
    ident.write_bytes(Path(fed.identities[AGENCY]).read_bytes())
    change_passphrase(ident, PASSPHRASE, own)
    other = dataclasses.replace(fed, identities={**fed.identities, AGENCY: ident})
    monkeypatch.setenv("AIDLINK_PASSPHRASE", PASSPHRASE)
    src = write_csv(tmp_path / "x.csv", HEADER, rows())
    res, out = run_encode(other, tmp_path / "a", src)  # the secret's passphrase does not open it
    assert res.exit_code == 14, res.output
    assert_nothing_written(out)
    monkeypatch.setenv("TEAM_PASSPHRASE", own)
    res, out = run_encode(other, tmp_path / "b", src, None, "--identity-passphrase-env", "TEAM_PASSPHRASE")
    assert res.exit_code == 0, res.output
    assert out.exists() and own not in res.output and PASSPHRASE not in res.output
