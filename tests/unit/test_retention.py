"""``linkage-hub purge`` (hub.retention): run outputs go at their date, encodings when no kept run needs them."""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from click.testing import CliRunner
from test_hub_fixtures import Federation, encoded_table, make_people, tiny_schema

from hub.cli import cli
from hub.ingest import ingest_opened
from hub.model import insert_run_sql
from hub.retention import PURGES, purge, require_kept
from linkage.encode import encode_records
from linkage.errors import StateError
from linkage.keyfile import write_identity_file
from linkage.keys import LinkageSecret
from linkage.schema import load_schema

PASS = "correct horse battery staple"
TODAY = datetime.now(UTC).date()


def run(args):
    return CliRunner().invoke(cli, args, env={"AIDLINK_PASSPHRASE": PASS})


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Packages a, b; run 1 (kept 30 days); package c; run 2 (kept 400 days)."""
    s = tiny_schema()
    d = tmp_path_factory.mktemp("purge")
    fed = Federation(s, ("victims",), ("roster",))
    write_identity_file(d / "hub.key", fed.hub, PASS)
    (d / "roster.json").write_text(json.dumps(fed.roster_doc))
    (d / "schema.json").write_text(json.dumps(s.document))
    rng = np.random.default_rng(3)
    people = make_people(s, 150, rng)
    fed.package(d / "a.aidpkg", encoded_table(people, np.arange(100), rng, moved=0.04), fed.a, "victims-1", "victims")
    fed.package(d / "b.aidpkg", encoded_table(people, np.arange(30, 130), rng, moved=0.04), fed.b, "roster-1", "roster")
    fed.package(d / "c.aidpkg", encoded_table(people, np.arange(60, 150), rng, moved=0.04), fed.a, "victims-2", "victims")
    db = d / "hub.duckdb"

    def ingest(*names):
        r = run(["ingest", "--db", str(db), "--roster", str(d / "roster.json"), "--hub-key", str(d / "hub.key"),
                 "--schema", str(d / "schema.json"), *[str(d / n) for n in names]])
        assert r.exit_code == 0, r.output

    def match(days):
        (d / "run.json").write_text(json.dumps({"version": 1, "retention_days": days, "training": {"u_max_pairs": 5000}}))
        r = run(["match", "--db", str(db), "--config", str(d / "run.json"), "--json"])
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)["run_id"]

    ingest("a.aidpkg", "b.aidpkg")
    first = match(30)
    ingest("c.aidpkg")
    second = match(400)
    return d, db, first, second


def counts(db):
    con = duckdb.connect(str(db), read_only=True)
    try:
        out = {t: dict(con.execute(f"SELECT run_id, count(*) FROM {t} GROUP BY run_id").fetchall())
               for t in ("pairs", "clusters")}
        out["records"] = dict(con.execute("SELECT dataset, count(*) FROM records GROUP BY dataset").fetchall())
        return out
    finally:
        con.close()


def test_purge_deletes_run_outputs_at_their_date_and_records_when_no_kept_run_needs_them(two_runs):
    d, db, first, second = two_runs
    before = counts(db)
    assert before["pairs"][first] > 0 and before["pairs"][second] > 0
    assert before["records"] == {"victims-1": 100, "roster-1": 100, "victims-2": 90}

    # before either date: nothing
    r = run(["purge", "--db", str(db), "--as-of", (TODAY + timedelta(days=29)).isoformat(), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["runs"] == [] and counts(db) == before

    # past run 1's date: a dry run counts, the real one deletes exactly that
    day = (TODAY + timedelta(days=31)).isoformat()
    dry = json.loads(run(["purge", "--db", str(db), "--as-of", day, "--dry-run", "--json"]).stdout)
    assert dry["runs"] == [first] and dry["packages"] == [] and counts(db) == before  # a, b serve run 2 too
    got = json.loads(run(["purge", "--db", str(db), "--as-of", day, "--json"]).stdout)
    assert got["runs"] == [first] and got["rows"] == dry["rows"] and not got["dry_run"]
    assert got["rows"]["pairs"] == before["pairs"][first] and got["rows"]["clusters"] == before["clusters"][first]
    after = counts(db)
    assert first not in after["pairs"] and first not in after["clusters"]
    assert after["pairs"][second] == before["pairs"][second] and after["records"] == before["records"]
    again = json.loads(run(["purge", "--db", str(db), "--as-of", day, "--json"]).stdout)
    assert again["runs"] == [] and again["packages"] == []  # purged once
    con = duckdb.connect(str(db), read_only=True)
    with pytest.raises(StateError, match="was purged"):  # `linkage-hub rules` refuses a purged run
        require_kept(con, first)
    require_kept(con, second)
    con.close()

    # past run 2's date too: its outputs, and every package (each served only purged runs)
    day = (TODAY + timedelta(days=401)).isoformat()
    got = json.loads(run(["purge", "--db", str(db), "--as-of", day, "--json"]).stdout)
    assert got["runs"] == [second] and len(got["packages"]) == 3
    assert got["rows"]["records"] == 290
    final = counts(db)
    assert final == {"pairs": {}, "clusters": {}, "records": {}}
    con = duckdb.connect(str(db), read_only=True)
    try:
        runs = [r for (r,) in con.execute("SELECT run_id FROM runs ORDER BY started_at").fetchall()]
        assert runs == [first, second]  # what was done stays on record ...
        purged = con.execute(f"SELECT run_id, sum(rows_deleted) FROM {PURGES} WHERE run_id IS NOT NULL"
                             " GROUP BY run_id ORDER BY min(purged_at)").fetchall()
        assert [p[0] for p in purged] == [first, second]  # ... and when its data was deleted
        assert con.execute("SELECT count(*) FROM packages").fetchall()[0][0] == 3
    finally:
        con.close()
    from hub.report import gather_retention

    con = duckdb.connect(str(db), read_only=True)
    row = con.execute("SELECT run_id, started_at, finished_at, delete_after FROM runs WHERE run_id = ?",
                      [first]).fetchall()[0]
    ret = gather_retention(con, row, {"retention_days": 30}, [], [], TODAY + timedelta(days=500))
    con.close()  # the report's retention section says when, and that nothing is left
    assert ret["purged_at"] is not None and ret["stored"] == {"pairs": 0, "cluster_rows": 0} and not ret["overdue"]
    log = [json.loads(line) for line in (d / "hub.duckdb.audit.jsonl").read_text().splitlines()]
    purges = [e for e in log if e["action"] == "purge"]
    assert len(purges) >= 4 and purges[-1]["counts"]["rows_records"] == 290


def test_a_package_no_run_has_used_yet_is_kept(tmp_path):
    schema = load_schema("judicial-assistance")
    rows = [{"name": "测试名", "name_pinyin": "ce shi ming", "address": "某某镇某某村1组"},  # no year: a salt bank
            {"name": "另一人", "name_pinyin": "ling yi ren", "birth_year": "1990", "birth_date": "1990-01-02"}]
    df = pd.DataFrame(rows, dtype=object).reindex(columns=list(schema.field_names)).astype(object)
    secret = LinkageSecret(bytes(range(32)))
    table = encode_records(df, schema, secret, np.random.default_rng(1))
    table = table.add_column(0, "token", pa.array([secrets.token_hex(16) for _ in rows]))

    def opened(dataset):
        return SimpleNamespace(table=table, manifest={
            "version": 1, "package_id": secrets.token_hex(16), "direction": "to_hub", "agency": "a", "sender": "a",
            "recipient": "hub", "dataset": dataset, "dataset_kind": "procuratorate_victims",
            "schema_id": schema.id, "schema_fingerprint": schema.fingerprint,
            "key_check_value": secret.key_check_value(), "content_sha256": hashlib.sha256(b"x").hexdigest(),
            "row_count": table.num_rows})

    db = tmp_path / "hub.duckdb"
    t0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    ingest_opened(db, [opened("old")], schema=schema, now=t0, write_parquet=False)
    con = duckdb.connect(str(db))
    con.execute(insert_run_sql("runs"), ["run-1", t0.replace(tzinfo=None) + timedelta(hours=1),
                                         t0.replace(tzinfo=None) + timedelta(hours=2), date(2026, 2, 1),
                                         "test", "test", "{}", "{}", "{}"])
    con.close()
    ingest_opened(db, [opened("new")], schema=schema, now=t0 + timedelta(days=3), write_parquet=False)
    banks_before = duckdb.connect(str(db), read_only=True).execute("SELECT count(*) FROM bank_name").fetchall()[0][0]
    assert banks_before == 2 * len(schema.field("name").filter.hardening.salt.bank)  # one bank per package

    dry = purge(db, as_of=date(2026, 3, 1), dry_run=True)  # a database never purged, opened read-only
    s = purge(db, as_of=date(2026, 3, 1))
    assert (dry.runs, dry.packages, dry.rows) == (s.runs, s.packages, s.rows)
    assert s.runs == ["run-1"] and len(s.packages) == 1  # "old" served run-1; "new" waits for its first run
    assert s.rows["records"] == 2 and s.rows["bank_name"] == banks_before // 2
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT DISTINCT dataset FROM records").fetchall() == [("new",)]
    assert con.execute("SELECT count(*) FROM bank_name").fetchall()[0][0] == banks_before // 2
    con.close()
