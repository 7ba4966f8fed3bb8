"""The Spark engine gives the DuckDB engine's results: same pairs, clusters and clues; same training.

The data: the default schema (judicial-assistance), whose name filters are
salted with the birth year and whose records without a year carry salt banks
(:mod:`hub.saltbank`): their pairs are scored through stand-in records, which
the Spark engine receives next to the records (``register_predict_input``).

Prediction parity: a model trained on DuckDB is loaded into both engines --
DuckDB through ``run_match(model=...)``, Spark through ``linkage-hub match
--engine spark --model`` (which finds the test session running and leaves it
running) -- each scores the same blocked pairs of the same hub database and
stores its run; the stored links (token pairs above the threshold), their
weights, the links of salt-bank records among them, the clusters (as
partitions of tokens) and the clues of the rule set over them must agree.
Weights within 1e-9 bits: both engines add the same per-comparison log2 Bayes
factors, only the order of the float additions may differ.

Training parity: training on Spark gives DuckDB's m and u within 1e-9.  That
is exact arithmetic, not a tolerance for noise, and holds because this database
is in the regime where neither engine samples: u is estimated over every pair
(n(n-1)/2 <= ``u_max_pairs``, asserted below) and each EM session sees all its
blocked pairs (<= ``em_max_pairs``); both engines then count the same pairs
and run the same EM iterations (measured: largest difference 1.4e-17).  On a
larger database each engine draws its u sample with its own hash function, so
the samples differ; ``python -m benchmarks spark`` measures that difference
(docs/scale-out.md).

The trained runs on both engines then score, cluster and store as usual, and
their links, clusters and clues must agree too.

Spark pays seconds of planning per query whatever the data size, so the runs
use a lighter training configuration than the default (both engines the
same): the two EM rules the default plan starts with, which between them train
every comparison (``EM_RULES``), 3 iterations each (not 25) and no u-correction
pass (``correct_u``: one scoring pass fewer).
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from hub.comparisons import BigintFilterColumns, bigint_layout, spark_comparison_specs, spark_sql
from hub.model import model_for_engine, run_match
from hub.runconfig import RunConfig, TrainingConfig
from hub.store import FilterColumns, RecordLayout, parquet_export_sql, parquet_path_for
from linkage.errors import ConfigError
from linkage.schema import load_schema

EM_RULES = (("eh_phone",), ("bk_name_dob",))  # trains name and id_number; trains household
CFG = RunConfig(training=TrainingConfig(em_max_iterations=3, em_rules=EM_RULES, correct_u=False))
NOW = datetime(2024, 7, 1)


def _copy(db: Path, to: Path) -> Path:
    to.mkdir(parents=True, exist_ok=True)
    shutil.copy(db, to / db.name)
    if parquet_path_for(db).exists():
        shutil.copy(parquet_path_for(db), parquet_path_for(to / db.name))
    return to / db.name


def _stored(db: Path, run_id: str) -> dict:
    con = duckdb.connect(str(db), read_only=True)
    try:
        pairs = {tuple(sorted([(dl, tl), (dr, tr)])): w for tl, dl, tr, dr, w in con.execute(
            "SELECT token_l, dataset_l, token_r, dataset_r, match_weight FROM pairs WHERE run_id = ?",
            [run_id]).fetchall()}
        members: dict[str, set] = {}
        for cid, ds, tok in con.execute("SELECT cluster_id, dataset, token FROM clusters WHERE run_id = ?",
                                        [run_id]).fetchall():
            members.setdefault(cid, set()).add((ds, tok))
        model = json.loads(con.execute("SELECT model FROM runs WHERE run_id = ?", [run_id]).fetchall()[0][0])
    finally:
        con.close()
    return {"pairs": pairs, "partition": {frozenset(m) for m in members.values()}, "model": model}


def _clues(db: Path, run_id: str) -> set:
    from hub.rules import apply_rules, load_rules

    con = duckdb.connect(str(db))
    try:
        apply_rules(con, load_rules("judicial-assistance", load_schema("judicial-assistance")), run_id)
        cols = [r[0] for r in con.execute("DESCRIBE clues").fetchall()]
        keep = [c for c in cols if c not in ("run_id", "cluster_id")]  # cluster ids are per-run names
        rows = con.execute(f"SELECT {', '.join(keep)} FROM clues WHERE run_id = ?", [run_id]).fetchall()
    finally:
        con.close()
    return {tuple(map(str, r)) for r in rows}


def _bank_links(db: Path, run_id: str) -> set:
    """The stored links with a salt-bank record (no birth year, name sent as a bank) on either side."""
    from hub.store import bank_table

    schema = load_schema("judicial-assistance")
    banks = " UNION ".join(f"SELECT rid FROM {bank_table(f)}" for f in RecordLayout.from_schema(schema).banks)
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            f"SELECT p.dataset_l, p.token_l, p.dataset_r, p.token_r FROM pairs p"
            f" JOIN records l ON l.dataset = p.dataset_l AND l.token = p.token_l"
            f" JOIN records r ON r.dataset = p.dataset_r AND r.token = p.token_r"
            f" WHERE p.run_id = ? AND (l.rid IN ({banks}) OR r.rid IN ({banks}))", [run_id]).fetchall()
    finally:
        con.close()
    return {tuple(sorted([(dl, tl), (dr, tr)])) for dl, tl, dr, tr in rows}


def _levels(model: dict) -> list[tuple[str, str, float | None, float | None]]:
    return [(c["output_column_name"], lv["label_for_charts"], lv.get("m_probability"), lv.get("u_probability"))
            for c in model["comparisons"] for lv in c["comparison_levels"] if not lv.get("is_null_level")]


@pytest.fixture(scope="module")
def duckdb_trained(hub_db, tmp_path_factory):
    """A DuckDB run that trains (the model the parity runs load, and the training reference)."""
    db = _copy(hub_db, tmp_path_factory.mktemp("duckdb-trained"))
    summary = run_match(db, CFG, run_id="duckdb-trained", now=NOW, memory_limit="1GB")
    return db, summary


# ---------------------------------------------------------------- no Spark needed


def test_bigint_words_are_the_parquet_copys_columns():
    """16 signed BIGINT words per 1024-bit filter, named as the Parquet copy names them; a 64-bit tail too."""
    assert BigintFilterColumns("address", 1024).words == tuple(f"bf_address_w{k}" for k in range(16))
    assert BigintFilterColumns("x", 320).words == tuple(f"bf_x_w{k}" for k in range(5))
    assert FilterColumns("x", 320).words == ("bf_x_0", "bf_x_1", "bf_x_2")  # the HUGEINT words stay
    schema = load_schema("judicial-assistance")
    layout = RecordLayout.from_schema(schema)
    export = parquet_export_sql(layout)
    for f in bigint_layout(layout).filters:
        assert len(f.words) == f.bits // 64
        for w in f.words:
            assert f'AS "{w}"' in export


def test_spark_sql_backquotes_identifiers_and_refuses_literals():
    assert spark_sql('bit_count("bf_a_w0_l" & "bf_a_w0_r") >= 1') == "bit_count(`bf_a_w0_l` & `bf_a_w0_r`) >= 1"
    with pytest.raises(ValueError):
        spark_sql("\"a_l\" = 'x'")
    with pytest.raises(ValueError):
        spark_sql('"a; DROP TABLE records" = 1')
    schema = load_schema("judicial-assistance")
    for spec in spark_comparison_specs(schema, RecordLayout.from_schema(schema), (0.95, 0.85, 0.7)):
        for lv in spec.doc["comparison_levels"]:
            assert '"' not in lv["sql_condition"] and "HUGEINT" not in lv["sql_condition"]


def test_a_model_of_other_levels_is_refused(duckdb_trained):
    db, _ = duckdb_trained
    model = _stored(db, "duckdb-trained")["model"]
    schema = load_schema("judicial-assistance")
    layout = RecordLayout.from_schema(schema)
    with pytest.raises(ConfigError) as e:  # as many levels, other Dice thresholds
        model_for_engine(model, schema, layout, RunConfig(dice_levels=(0.95, 0.85, 0.75)), "spark")
    assert any(p.path.endswith("label_for_charts") for p in e.value.problems)
    with pytest.raises(ConfigError) as e:  # fewer levels
        model_for_engine(model, schema, layout, RunConfig(dice_levels=(0.9, 0.8)), "spark")
    assert any(p.path.endswith("comparison_levels") for p in e.value.problems)
    bad = json.loads(json.dumps(model))
    bad["comparisons"][0]["comparison_levels"][1]["m_probability"] = 2.0
    bad["comparisons"][0]["comparison_levels"][1]["sql_condition"] = "1 = 1; DROP TABLE records"
    with pytest.raises(ConfigError):
        model_for_engine(bad, schema, layout, CFG, "duckdb")
    # the SQL of a model file is never used: only its numbers
    ok = json.loads(json.dumps(model))
    ok["comparisons"][0]["comparison_levels"][1]["sql_condition"] = "1 = 1"
    rebuilt = model_for_engine(ok, schema, layout, CFG, "duckdb")
    assert rebuilt["comparisons"][0]["comparison_levels"][1]["sql_condition"] != "1 = 1"
    assert _levels(rebuilt) == _levels(model)


def test_cli_engine_options_are_checked_before_spark_starts(tmp_path):
    from hub.cli import cli

    db = tmp_path / "empty.duckdb"
    duckdb.connect(str(db)).close()
    r = CliRunner().invoke(cli, ["match", "--db", str(db), "--engine", "spark", "--spark-conf", "executor.memory"])
    assert r.exit_code == 3 and "KEY=VALUE" in r.stderr
    r = CliRunner().invoke(cli, ["match", "--db", str(db), "--engine", "spark", "--spark-conf", "memory=8g"])
    assert r.exit_code == 3 and "spark." in r.stderr
    r = CliRunner().invoke(cli, ["match", "--db", str(db), "--engine", "spark", "--spark-master", "local[2]"])
    assert r.exit_code == 22 and "ingest" in r.stderr
    r = CliRunner().invoke(cli, ["match", "--db", str(db), "--engine", "sparkling"])
    assert r.exit_code == 2
    bad = tmp_path / "model.json"
    bad.write_text("m=0.9 u=0.1 Zhang San 110101199003070012", "utf-8")  # not JSON; made-up words
    r = CliRunner().invoke(cli, ["match", "--db", str(db), "--engine", "spark", "--model", str(bad)])
    assert r.exit_code == 3 and "not a JSON document" in r.stderr and "Zhang" not in r.stderr


# ---------------------------------------------------------------- on Spark


@pytest.mark.spark
@pytest.mark.slow
def test_same_model_same_pairs_clusters_and_clues(spark, duckdb_trained, tmp_path):
    """DuckDB through the API, Spark through ``linkage-hub match --engine spark --model``: the command
    finds the session running in this process and leaves it running."""
    from hub.cli import cli

    trained_db, _ = duckdb_trained
    model = _stored(trained_db, "duckdb-trained")["model"]
    model_file = tmp_path / "duckdb-trained.model.json"
    model_file.write_text(json.dumps(model), "utf-8")

    dd_db = _copy(trained_db.parent / "hub.duckdb", tmp_path / "duckdb")
    sp_db = _copy(trained_db.parent / "hub.duckdb", tmp_path / "spark")
    parquet_path_for(sp_db).unlink(missing_ok=True)  # the Spark run writes the Parquet copy when it is missing
    dd = run_match(dd_db, CFG, run_id="dd", now=NOW, model=model, memory_limit="1GB").as_doc()
    r = CliRunner().invoke(cli, ["match", "--db", str(sp_db), "--engine", "spark", "--spark-master", "local[2]",
                                 "--model", str(model_file), "--memory-limit", "1GB", "--json"])
    assert r.exit_code == 0, r.stderr
    sp = json.loads(r.stdout)
    assert spark.sparkContext._jsc is not None, "the command stopped the session it was given"
    assert parquet_path_for(sp_db).exists()
    assert sp["engine"] == "spark" and dd["engine"] == "duckdb" and sp["training"]["model_source"] == "given"

    a, b = _stored(dd_db, "dd"), _stored(sp_db, sp["run_id"])
    assert a["pairs"], "the model links nothing: the comparison would prove nothing"
    assert set(a["pairs"]) == set(b["pairs"])
    assert max(abs(a["pairs"][k] - b["pairs"][k]) for k in a["pairs"]) <= 1e-9
    assert a["partition"] == b["partition"]
    assert any(len(m) > 2 for m in a["partition"])  # clusters beyond single pairs are compared too
    assert sp["blocking"]["pairs"] == dd["blocking"]["pairs"] and sp["links"] == dd["links"]
    assert sp["link_threshold"]["match_weight"] == pytest.approx(dd["link_threshold"]["match_weight"], abs=1e-9)
    assert sp["training"]["prior"] == pytest.approx(dd["training"]["prior"], rel=1e-9)
    assert sp["clusters"] == dd["clusters"]
    # the default schema salts names with the birth year and sends salt banks for records without
    # one: their pairs reach Spark through stand-in records, and some of them are links
    assert RecordLayout.from_schema(load_schema("judicial-assistance")).banks
    assert sp["training"]["salt_bank_stand_ins"] == dd["training"]["salt_bank_stand_ins"] > 0
    bank_links = _bank_links(dd_db, "dd")
    assert bank_links, "no link involves a record with a salt bank: the bank comparison would prove nothing"
    assert bank_links == _bank_links(sp_db, sp["run_id"])
    # the stored models carry the given numbers, in the DuckDB engine's SQL whatever engine ran
    assert _levels(a["model"]) == _levels(b["model"]) == _levels(model)
    assert b["model"]["sql_dialect"] == "duckdb"
    # a given model on DuckDB reproduces the run that trained it
    assert set(_stored(trained_db, "duckdb-trained")["pairs"]) == set(a["pairs"])

    clues_dd, clues_sp = _clues(dd_db, "dd"), _clues(sp_db, sp["run_id"])
    assert clues_dd, "no clue at all: the rule comparison would prove nothing"
    assert clues_dd == clues_sp


@pytest.mark.spark
@pytest.mark.slow
def test_training_on_spark_gives_duckdbs_parameters(spark, duckdb_trained, tmp_path):
    trained_db, trained = duckdb_trained
    n = trained.records
    assert n * (n - 1) / 2 <= CFG.training.u_max_pairs  # the unsampled regime the tolerance relies on
    assert all((r["pairs"] or 0) <= CFG.training.em_max_pairs for r in trained.training["em_rules"])

    sp_db = _copy(trained_db.parent / "hub.duckdb", tmp_path / "spark-trained")
    sp = run_match(sp_db, CFG, run_id="sp-trained", now=NOW, memory_limit="1GB", engine="spark",
                   spark_session=spark)
    assert sp.training["model_source"] == "trained"
    assert sp.training["em_rules"] == trained.training["em_rules"]
    assert sp.training["failed_em_rules"] == trained.training["failed_em_rules"] == []
    ref, got = _levels(_stored(trained_db, "duckdb-trained")["model"]), _levels(_stored(sp_db, "sp-trained")["model"])
    assert [x[:2] for x in ref] == [x[:2] for x in got]
    trained_levels = 0
    for (comp, label, m_ref, u_ref), (_, _, m, u) in zip(ref, got, strict=True):
        assert (m is None) == (m_ref is None) and (u is None) == (u_ref is None), (comp, label)
        if m is not None:
            assert m == pytest.approx(m_ref, abs=1e-9), (comp, label)
            trained_levels += 1
        if u is not None:
            assert u == pytest.approx(u_ref, abs=1e-9, rel=1e-9), (comp, label)
    assert trained_levels >= 10
    assert not sp.training["untrained_comparisons"] and not trained.training["untrained_comparisons"]
    assert sp.training["prior"] == pytest.approx(trained.training["prior"], rel=1e-9)
    # and the whole job after training: the same links, clusters and clues
    a, b = _stored(trained_db, "duckdb-trained"), _stored(sp_db, "sp-trained")
    assert a["pairs"] and set(a["pairs"]) == set(b["pairs"])
    assert a["partition"] == b["partition"]
    clues = _clues(_copy(trained_db, tmp_path / "duckdb-clues"), "duckdb-trained")  # a copy: rules write
    assert clues and _clues(sp_db, "sp-trained") == clues
