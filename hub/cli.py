"""``linkage-hub``: ingest, match, rules, results, report."""

from __future__ import annotations

import click

from agency_kit.clitools import LazyGroup, aidlink_command, hub_audit
from linkage import __version__
from linkage.schema import load_schema

from . import keys_cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]},
             lazy={"rules": "hub.rules_cmd", "results": "hub.results_cmd", "report": "hub.report_cmd", "audit": "hub.audit_cmd",
                   "privacy": "hub.privacy_cmd", "purge": "hub.purge_cmd"})
@click.version_option(__version__, prog_name="linkage-hub")
def cli() -> None:
    """Link agencies' encodings and turn links into clues."""


@aidlink_command(cli, "schema-info")
@click.option("--schema", "schema_path", default="judicial-assistance", show_default=True)
def schema_info(reporter, schema_path: str) -> dict:
    """Validate a linkage schema and print its fingerprint."""
    schema = load_schema(schema_path)
    reporter.say(f"schema {schema.id} fingerprint {schema.fingerprint}")
    return {"schema_id": schema.id, "fingerprint": schema.fingerprint}


keys_cmd.register(cli)


# ---------------------------------------------------------------- ingest, match (hub/ingest.py, hub/model.py)

from agency_kit.keys_cmd import passphrase_option, read_passphrase  # noqa: E402


@aidlink_command(cli, "ingest", audit=hub_audit("db"))
@click.option("--db", required=True, type=click.Path(dir_okay=False), help="The hub database (created if absent).")
@click.option("--roster", "roster_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The federation roster, signed with this hub's key.")
@click.option("--hub-key", required=True, type=click.Path(exists=True, dir_okay=False),
              help="This hub's identity key file (opens the packages).")
@click.option("--schema", "schema_path", default=None,
              help="Linkage schema file or built-in name (default: the database's, or the built-in "
                   "whose fingerprint the packages carry).")
@passphrase_option
@click.argument("packages", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def ingest(reporter, db: str, roster_path: str, hub_key: str, schema_path: str | None,
           passphrase_env: str | None, packages: tuple[str, ...]) -> dict:
    """Open agencies' packages and load their encodings, all or nothing."""
    from linkage.keyfile import read_identity_file
    from linkage.roster import load_roster

    from .ingest import ingest_packages

    identity = read_identity_file(hub_key, read_passphrase(passphrase_env, new=False, what=hub_key),
                                  role="hub")
    roster = load_roster(roster_path, hub_signing_key=identity.signing_key.public_key())
    reporter.audit_identity(identity)
    for role, path in (("roster", roster_path), ("database", db), *(("package", p) for p in packages)):
        reporter.audit_input(role, path)
    summary = ingest_packages(db, packages, hub_identity=identity, roster=roster, schema=schema_path)
    reporter.audit_output("database", db)
    if summary.parquet:
        reporter.audit_output("records_parquet", summary.parquet)
    reporter.audit_counts(packages_loaded=len(summary.loaded), packages_already_ingested=len(summary.already_ingested),
                          records_loaded=sum(p.records for p in summary.loaded),
                          records_total=summary.records_total)
    reporter.audit_refs(package_ids=[p.package_id for p in summary.loaded])
    for p in summary.loaded:
        reporter.say(f"loaded package {p.package_id}: {p.records} records of {p.dataset} ({p.dataset_kind}) "
                     f"from {p.agency}")
    for pid in summary.already_ingested:
        reporter.say(f"package {pid}: already ingested (nothing changed)")
    reporter.say(f"{summary.records_total} records in {db}")
    return summary.as_doc()


@aidlink_command(cli, "match", audit=hub_audit("db"))
@click.option("--db", required=True, type=click.Path(exists=True, dir_okay=False), help="The hub database.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Run configuration (schemas/run-config.schema.json); defaults work without it.")
@click.option("--model-out", type=click.Path(dir_okay=False), default=None,
              help="Where to write the model JSON (default: beside the database, named by run id).")
@click.option("--labels", "labels_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Parquet of true pairs (dataset_l, token_l, dataset_r, token_r): adds measured blocking "
                   "recall, precision and recall to the summary.  Evaluation only; nothing is tuned on it.")
@click.option("--memory-limit", default="6GB", show_default=True, help="DuckDB memory limit (it spills beyond).")
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="DuckDB threads (default: all cores).")
@click.option("--engine", type=click.Choice(["duckdb", "spark"]), default="duckdb", show_default=True,
              help="Where the model is trained and the pairs scored and clustered (docs/scale-out.md).")
@click.option("--spark-master", default="local[*]", show_default=True,
              help="Spark master URL for --engine spark (local[N], spark://HOST:7077, yarn, k8s://...).")
@click.option("--spark-conf", multiple=True, metavar="KEY=VALUE",
              help="A Spark setting for --engine spark (repeatable), e.g. spark.executor.memory=8g.")
@click.option("--model", "model_in", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Score with this model (a model JSON an earlier match wrote, on either engine) instead of "
                   "training one; only its m and u are read, the prior is estimated again.")
def match(reporter, db: str, config_path: str | None, model_out: str | None, labels_path: str | None,
          memory_limit: str, threads: int | None, engine: str, spark_master: str,
          spark_conf: tuple[str, ...], model_in: str | None) -> dict:
    """Link every ingested dataset with every other and within each; store pairs and clusters."""
    from .model import run_match
    from .runconfig import load_run_config
    from .spark import parse_conf

    cfg = load_run_config(config_path)
    spark_settings = parse_conf(spark_conf)
    given = None
    if model_in is not None:  # its numbers are checked against this schema and run in run_match
        import json
        from pathlib import Path

        from linkage.errors import ConfigError, Problem

        try:
            given = json.loads(Path(model_in).read_text("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError("--model", [Problem("$", "not a JSON document")]) from e
    labels = None
    if labels_path is not None:
        import pyarrow.parquet as pq

        labels = pq.read_table(labels_path, columns=["dataset_l", "token_l", "dataset_r", "token_r"])
    for role, path in (("database", db), ("run_config", config_path), ("labels", labels_path),
                       ("model", model_in)):
        if path is not None:
            reporter.audit_input(role, path)
    s = run_match(db, cfg, model_path=model_out, memory_limit=memory_limit, threads=threads, labels=labels,
                  engine=engine, spark_master=spark_master, spark_conf=spark_settings, model=given)
    reporter.audit_output("database", db)
    if s.model_path:
        reporter.audit_output("model", s.model_path)
    reporter.audit_counts(records=s.records, pairs_scored=int(s.blocking["pairs"]), links=s.links,
                          clusters=int(s.clusters["count"]))
    reporter.audit_refs(run_id=s.run_id)
    th = s.link_threshold
    reporter.say(f"run {s.run_id}: {s.records} records, {s.blocking['pairs']} pairs scored, {s.links} links "
                 f"at match probability {th['match_probability']:.4g} (weight {th['match_weight']:.2f}); "
                 f"model-estimated precision {th['expected_precision']:.4f}, recall {th['expected_recall']:.4f}")
    reporter.say(f"{s.clusters['count']} clusters ({s.clusters['linked_records']} records in clusters of two or "
                 f"more); model written to {s.model_path}")
    if s.measured:
        m = s.measured
        reporter.say(f"measured against labels: blocking recall {m['blocking_recall']:.4f}, precision "
                     f"{m['precision']:.4f}, recall {m['recall']:.4f}, F1 {m['f1']:.4f}")
    return s.as_doc()




def main() -> None:
    cli(prog_name="linkage-hub")
