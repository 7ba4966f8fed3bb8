"""``linkage-hub ingest`` and ``match`` through the CLI: exit codes, stderr, --json."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pytest
from click.testing import CliRunner
from test_hub_fixtures import Federation, encoded_table, make_people, tiny_schema

from hub.cli import cli
from linkage.keyfile import write_identity_file

PASS = "correct horse battery staple"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    s = tiny_schema()
    d = tmp_path_factory.mktemp("cli")
    fed = Federation(s, ("victims",), ("roster",))
    write_identity_file(d / "hub.key", fed.hub, PASS)
    (d / "roster.json").write_text(json.dumps(fed.roster_doc))
    (d / "schema.json").write_text(json.dumps(s.document))
    rng = np.random.default_rng(8)
    people = make_people(s, 120, rng)
    a = encoded_table(people, np.arange(100), rng, moved=0.04)
    b = encoded_table(people, np.arange(20, 120), rng, moved=0.04, typo={"eh_id_number": 0.2})
    fed.package(d / "a.aidpkg", a, fed.a, "victims-2026", "victims")
    fed.package(d / "b.aidpkg", b, fed.b, "roster-2026", "roster")
    return d


def run(args, env=None):
    return CliRunner().invoke(cli, args, env={"AIDLINK_PASSPHRASE": PASS, **(env or {})})


def ingest_args(d, db, *packages):
    return ["ingest", "--db", str(db), "--roster", str(d / "roster.json"), "--hub-key", str(d / "hub.key"),
            "--schema", str(d / "schema.json"), *[str(d / p) for p in packages]]


def test_ingest_then_again_then_match(setup, tmp_path):
    d = setup
    db = tmp_path / "hub.duckdb"
    r = run([*ingest_args(d, db, "a.aidpkg", "b.aidpkg"), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["ok"] and out["records_total"] == 200 and len(out["loaded"]) == 2
    r = run(ingest_args(d, db, "a.aidpkg"))
    assert r.exit_code == 0 and "already ingested" in r.stdout
    (tmp_path / "run.json").write_text(json.dumps({"version": 1, "training": {"u_max_pairs": 5000}}))
    r = run(["match", "--db", str(db), "--config", str(tmp_path / "run.json"), "--json",
             "--model-out", str(tmp_path / "model.json")])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["links"] >= 70 and out["records"] == 200
    assert json.loads((tmp_path / "model.json").read_text())["link_type"] == "dedupe_only"
    con = duckdb.connect(str(db), read_only=True)
    n_pairs, = con.execute("SELECT count(*) FROM pairs WHERE run_id = ?", [out["run_id"]]).fetchall()[0]
    n_clusters, = con.execute("SELECT count(DISTINCT token) FROM clusters WHERE run_id = ?",
                              [out["run_id"]]).fetchall()[0]
    model, = con.execute("SELECT model FROM runs WHERE run_id = ?", [out["run_id"]]).fetchall()[0]
    assert n_pairs == out["links"] and n_clusters == 200 and json.loads(model)["comparisons"]


def test_wrong_passphrase_exits_14(setup, tmp_path):
    r = run(ingest_args(setup, tmp_path / "hub.duckdb", "a.aidpkg"), env={"AIDLINK_PASSPHRASE": "wrong one!!"})
    assert r.exit_code == 14 and r.stderr.startswith("Error: ")


def test_match_before_ingest_exits_22(tmp_path):
    db = tmp_path / "empty.duckdb"
    duckdb.connect(str(db)).close()
    r = run(["match", "--db", str(db)])
    assert r.exit_code == 22 and "ingest" in r.stderr


def test_bad_run_config_exits_3(tmp_path):
    db = tmp_path / "empty.duckdb"
    duckdb.connect(str(db)).close()
    (tmp_path / "run.json").write_text('{"version": 1, "seed": -1}')
    r = run(["match", "--db", str(db), "--config", str(tmp_path / "run.json"), "--json"])
    assert r.exit_code == 3 and "$.seed" in r.stderr
    assert json.loads(r.stdout)["error"] == "ConfigError"
