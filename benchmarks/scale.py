"""Scale: a million encoded records in seven datasets, ingested and matched on this machine.

``python -m benchmarks scale [--quick] [--json]``

Data: synthetic counties (``synthetic.county``, independent seeds, so no true
pair crosses counties) until the seven agency exports hold 1,000,000 records
(``--quick``: 50,000); each export mapped, normalised and encoded as agency-kit
does (``agency_kit.mapping`` + ``linkage.normalise`` + ``linkage.encode``).
Preparing the data is not timed.

Timed, each in its own process (so peak memory is that process's own):

* ours: ``ingest`` (all seven datasets, one transaction, Parquet copy) and
  ``match`` with the default run configuration -- blocking, u, EM, predict,
  prior, threshold, clustering, storing pairs and clusters;
* plain Splink on the same records' normalised plaintext in the same run, with
  the same discipline: exact-key blocking on the same keys (ID number, phone,
  birth date + sex, name + birth date, pinyin + birth year) plus name, pinyin
  and address equality in place of the LSH bands, each key capped at the same
  pairs per record; u by sampling, EM (the hub's robust session helper), predict
  on those pairs, the prior and threshold as the hub does, clustering.

Reported: wall seconds per stage, pairs scored per second inside predict,
peak resident memory, the ratio of our time to plain Splink's, and the floors
(ingest + match within 10 minutes, memory under 12 GiB, at most 2x plain Splink).
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import resource
import secrets
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ._common import log

DATASETS = ("procuratorate_victims", "court_enforcement", "civil_affairs_dibao", "civil_affairs_tekun",
            "disability_certificates", "education_students", "wage_claimants")
PLAIN_COLUMNS = ["name", "name_pinyin", "id_number", "birth_date", "sex", "phone", "address", "birth_year"]
PEOPLE_PER_COUNTY = 800_000


def prepare(target: int, out: Path, secret_bytes: bytes) -> dict[str, Any]:
    """Encode synthetic counties until ``target`` records; one encoded and one plaintext Parquet
    file per dataset under ``out``."""
    from agency_kit.mapping import apply_mapping, mapping_from_document
    from linkage.encode import encode_records
    from linkage.keys import LinkageSecret
    from linkage.normalise import normalise_records
    from linkage.schema import load_schema
    from synthetic.county import generate_county, mapping_documents

    schema = load_schema("judicial-assistance")
    secret = LinkageSecret(secret_bytes)
    docs = mapping_documents("parquet")
    mappings = {ds: mapping_from_document(docs[ds], schema) for ds in DATASETS}
    writers: dict[str, tuple[pq.ParquetWriter, pq.ParquetWriter]] = {}
    rng = np.random.default_rng(7)
    total, county_no = 0, 0
    people = min(PEOPLE_PER_COUNTY, max(2000, int(target * 3.4)))
    t0 = time.perf_counter()
    try:
        while total < target:
            county = generate_county(people=people, seed=1000 + county_no)
            county_no += 1
            county_total = sum(len(county.exports[ds]) for ds in DATASETS)
            share = min(1.0, (target - total) / county_total)  # every dataset in proportion
            for ds in DATASETS:
                frame = county.exports[ds]
                if share < 1.0:
                    frame = frame.iloc[:max(1, round(len(frame) * share))]
                fields, _, _ = apply_mapping(frame.reset_index(drop=True), mappings[ds])
                normalised, _ = normalise_records(fields, schema)
                table = encode_records(normalised, schema, secret)
                table = table.add_column(0, "token", pa.array([rng.bytes(16).hex() for _ in range(len(frame))]))
                values = normalised[PLAIN_COLUMNS].astype(object).where(normalised[PLAIN_COLUMNS].notna(), None)
                # every column typed string (an all-empty column would otherwise be typed null in one
                # county and string in the next, and the Parquet writer refuses the second)
                plain = pa.table({c: pa.array([None if v is None else str(v) for v in values[c]], pa.string())
                                  for c in PLAIN_COLUMNS})
                plain = plain.append_column("dataset", pa.array([ds] * len(frame), pa.string()))
                if ds not in writers:
                    writers[ds] = (pq.ParquetWriter(out / f"{ds}.enc.parquet", table.schema),
                                   pq.ParquetWriter(out / f"{ds}.plain.parquet", plain.schema))
                writers[ds][0].write_table(table)
                writers[ds][1].write_table(plain)
                total += len(frame)
            log(f"scale: county {county_no} ({people} people) encoded; {total} records so far")
            del county
    finally:
        for w in writers.values():
            w[0].close()
            w[1].close()
    counts = {ds: pq.ParquetFile(out / f"{ds}.enc.parquet").metadata.num_rows for ds in writers}
    return {"records": total, "datasets": counts, "counties": county_no, "people_per_county": people,
            "prepare_seconds": round(time.perf_counter() - t0, 1)}


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def opened_packages(data: Path, secret_bytes: bytes) -> list[SimpleNamespace]:
    """The prepared datasets in ``data`` as ingest takes opened packages (manifest + table), under
    the judicial-assistance schema and the key-check value of ``secret_bytes``."""
    from linkage.keys import LinkageSecret
    from linkage.schema import load_schema

    schema = load_schema("judicial-assistance")
    kcv = LinkageSecret(secret_bytes).key_check_value()
    opened = []
    for ds in DATASETS:
        p = data / f"{ds}.enc.parquet"
        if not p.exists():
            continue
        table = pq.read_table(p)
        m = {"version": 1, "package_id": secrets.token_hex(16), "direction": "to_hub", "agency": ds, "sender": ds,
             "recipient": "hub", "dataset": ds, "dataset_kind": ds, "schema_id": schema.id,
             "schema_fingerprint": schema.fingerprint, "key_check_value": kcv,
             "content_sha256": hashlib.sha256(ds.encode()).hexdigest(), "row_count": table.num_rows}
        opened.append(SimpleNamespace(manifest=m, table=table))
    return opened


def hub_job(data: str, secret_bytes: bytes) -> dict[str, Any]:
    """Child process: ingest the seven datasets and match with the default configuration."""
    from hub.ingest import ingest_opened
    from hub.model import run_match
    from hub.runconfig import RunConfig

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("aidlink").setLevel(logging.INFO)
    d = Path(data)
    t0 = time.perf_counter()
    opened = opened_packages(d, secret_bytes)
    db = d / "hub.duckdb"
    summary = ingest_opened(db, opened, now=None)
    del opened
    ingest_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    s = run_match(db, RunConfig(), work_dir=d / "work")
    match_s = time.perf_counter() - t1
    return {"ingest_seconds": round(ingest_s, 1), "match_seconds": round(match_s, 1),
            "total_seconds": round(ingest_s + match_s, 1), "records": summary.records_total,
            "pairs_scored": s.blocking["pairs"], "pairs_scored_per_second_in_predict":
                s.blocking.get("pairs_scored_per_second"), "links": s.links, "stages": {k: round(v, 1) for k, v in s.seconds.items()},
            "blocking_rules": [{"rule": r["rule"], "pairs": r["pairs_first_found"], "seconds": r["seconds"]}
                               for r in s.blocking["rules"]],
            "clk": s.blocking.get("clk"), "peak_rss_mib": round(_peak_mib())}


PLAIN_KEYS = {  # the hub's keyed blocking, on plaintext; exact name, pinyin and address stand in for the LSH bands
    "id_number": "id_number", "phone": "phone", "k_dob_sex": "birth_date || '|' || sex",
    "k_name_dob": "name || '|' || birth_date", "k_pinyin_year": "name_pinyin || '|' || birth_year",
    "name": "name", "name_pinyin": "name_pinyin", "address": "address",
}


def plain_job(data: str) -> dict[str, Any]:
    """Child process: plain Splink on the normalised plaintext of the same records, with the same
    blocking discipline as the hub (keyed blocks capped at 5 pairs per record per key)."""
    import duckdb
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    from hub.block import (
        block_size_cap,
        create_table_as_sql,
        keyed_block_sizes_sql,
        keyed_pairs_sql,
        union_pairs_sql,
    )
    from hub.model import INITIAL_PRIOR, choose_threshold, em_session, estimate_prior, prior_weight
    from hub.runconfig import RunConfig

    d = Path(data)
    cfg = RunConfig()
    t0 = time.perf_counter()
    con = duckdb.connect(config={"memory_limit": "6GB", "temp_directory": str(d / "plain_tmp")})
    con.execute("SET enable_progress_bar = false")
    files = [str(d / f"{ds}.plain.parquet") for ds in DATASETS if (d / f"{ds}.plain.parquet").exists()]
    keys = ", ".join(f"{expr} AS {name}" for name, expr in PLAIN_KEYS.items() if name.startswith("k_"))
    con.execute(f"CREATE TABLE plain AS SELECT row_number() OVER () AS rid, *, {keys} FROM read_parquet(?)", [files])
    n = con.execute("SELECT count(*) FROM plain").fetchall()[0][0]
    load_s = time.perf_counter() - t0
    t = time.perf_counter()
    parts = []
    for mk, col in enumerate(PLAIN_KEYS):
        hist = con.execute(keyed_block_sizes_sql("plain", col)).fetchall()
        cap, _ = block_size_cap(hist, cfg.blocking.max_pairs_per_record * n, cfg.blocking.max_block_size)
        con.execute(create_table_as_sql(f"pp_{mk}", keyed_pairs_sql("plain", col)), [cap, mk])
        parts.append(f"pp_{mk}")
    con.execute(union_pairs_sql(parts, "plain_pairs"))
    n_pairs = con.execute("SELECT count(*) FROM plain_pairs").fetchall()[0][0]
    block_s = time.perf_counter() - t
    db_api = DuckDBAPI(connection=con)
    sdf = db_api.register("plain")
    comparisons = [
        cl.JaroWinklerAtThresholds("name", [0.9, 0.7]), cl.JaroWinklerAtThresholds("name_pinyin", [0.92, 0.8]),
        cl.LevenshteinAtThresholds("id_number", [1, 2]), cl.LevenshteinAtThresholds("birth_date", [1, 2]),
        cl.ExactMatch("sex"), cl.LevenshteinAtThresholds("phone", [1, 2]),
        cl.JaroWinklerAtThresholds("address", [0.9, 0.7]),
    ]
    settings = SettingsCreator(link_type="dedupe_only", unique_id_column_name="rid", comparisons=comparisons,
                               probability_two_random_records_match=INITIAL_PRIOR, retain_matching_columns=False)
    linker = Linker(sdf, settings, log_level=None)
    t = time.perf_counter()
    linker.training.estimate_u_using_random_sampling(max_pairs=cfg.training.u_max_pairs, seed=1,
                                                     min_count_per_level=None, num_chunks=1)
    u_s = time.perf_counter() - t
    t = time.perf_counter()
    for r in (block_on("id_number"), block_on("name_pinyin", "birth_year"), block_on("phone")):
        if em_session(linker, r, cfg.training.em_max_pairs, cfg.training.em_max_iterations) is None:
            log("scale: plain Splink EM session failed, skipped")
    em_s = time.perf_counter() - t
    t = time.perf_counter()
    linker.table_management.register_blocked_pairs_for_predict(db_api.register("plain_pairs", table_name="pp"))
    w0 = prior_weight(INITIAL_PRIOR)
    pred = linker.inference.predict(threshold_match_weight=w0, warning_mode="never")
    predict_s = time.perf_counter() - t
    t = time.perf_counter()
    bayes = con.execute(f"SELECT match_weight FROM {pred.physical_name}").fetchnumpy()["match_weight"] - w0
    prior = estimate_prior(bayes, n * (n - 1) / 2)
    th = choose_threshold(bayes + prior_weight(prior), cfg.link_threshold)
    shifted = th.match_weight - prior_weight(prior) + w0  # the same cut on Splink's weights
    links = con.execute(f"SELECT count(*) FROM {pred.physical_name} WHERE match_weight >= ?", [shifted]).fetchall()
    linker.clustering.cluster_pairwise_predictions_at_threshold(pred, threshold_match_weight=shifted)
    cluster_s = time.perf_counter() - t
    total = time.perf_counter() - t0
    return {"total_seconds": round(total, 1), "stages": {"load": round(load_s, 1), "blocking": round(block_s, 1),
                                                         "u": round(u_s, 1), "em": round(em_s, 1),
                                                         "predict": round(predict_s, 1),
                                                         "prior_threshold_cluster": round(cluster_s, 1)},
            "pairs_scored": int(n_pairs), "pairs_scored_per_second_in_predict": round(n_pairs / predict_s),
            "links": int(links[0][0]), "peak_rss_mib": round(_peak_mib())}


def _in_child(fn, *args) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(fn, args)


def run(quick: bool) -> dict[str, Any]:
    """``AIDLINK_SCALE_DATA=DIR`` keeps the prepared data in DIR and reuses it on the next run."""
    target = 50_000 if quick else 1_000_000
    keep = os.environ.get("AIDLINK_SCALE_DATA")
    with tempfile.TemporaryDirectory(prefix="aidlink-scale-") as tmp:
        d = Path(keep) / str(target) if keep else Path(tmp)
        d.mkdir(parents=True, exist_ok=True)
        meta = d / "prepared.json"
        if meta.exists():
            data = json.loads(meta.read_text())
            secret_bytes = bytes.fromhex(data.pop("secret"))
            log(f"scale: reusing the {data['records']} records prepared in {d}")
        else:
            secret_bytes = secrets.token_bytes(32)
            log(f"scale: preparing {target} encoded records (not timed) ...")
            data = prepare(target, d, secret_bytes)
            meta.write_text(json.dumps({**data, "secret": secret_bytes.hex()}))
        for stale in ("hub.duckdb", "hub.duckdb.wal", "hub.duckdb.records.parquet"):
            (d / stale).unlink(missing_ok=True)
        log("scale: ours (ingest + match) in a child process ...")
        ours = _in_child(hub_job, str(d), secret_bytes)
        log(f"scale: ours {json.dumps(ours)}")
        log("scale: plain Splink in a child process ...")
        plain = _in_child(plain_job, str(d))
        log(f"scale: plain Splink {json.dumps(plain)}")
    ratio = ours["total_seconds"] / plain["total_seconds"] if plain["total_seconds"] else None
    return {"data": data, "ours": ours, "plaintext_splink": plain, "ratio_to_plaintext_splink": ratio,
            "floors": {"ingest_plus_match_within_600s": ours["total_seconds"] <= 600,
                       "memory_under_12GiB": ours["peak_rss_mib"] < 12 * 1024,
                       "at_most_2x_plaintext_splink": ratio is not None and ratio <= 2.0}}


def describe(figures: dict[str, Any]) -> str:
    o, p, d = figures["ours"], figures["plaintext_splink"], figures["data"]
    lines = [f"scale ({'quick' if figures.get('quick') else 'full'}): {d['records']} encoded records in "
             f"{len(d['datasets'])} datasets ({d['counties']} synthetic counties); data preparation "
             f"{d['prepare_seconds']} s (not timed below)",
             f"  ours:          ingest {o['ingest_seconds']} s + match {o['match_seconds']} s = {o['total_seconds']} s; "
             f"{o['pairs_scored']} pairs scored, {o['pairs_scored_per_second_in_predict']} pairs/s in predict; "
             f"peak {o['peak_rss_mib']} MiB",
             "    stages: " + ", ".join(f"{k} {v}" for k, v in o["stages"].items()),
             "    blocking: " + ", ".join(f"{r['rule']} {r['pairs']} pairs {r['seconds']} s"
                                          for r in o["blocking_rules"]),
             f"  plain Splink:  {p['total_seconds']} s; {p['pairs_scored']} pairs scored, "
             f"{p['pairs_scored_per_second_in_predict']} pairs/s in predict; peak {p['peak_rss_mib']} MiB",
             "    stages: " + ", ".join(f"{k} {v}" for k, v in p["stages"].items()),
             f"  ratio ours / plain Splink: {figures['ratio_to_plaintext_splink']:.2f}",
             "floors: " + ", ".join(f"{k} {'ok' if v else 'MISSED'}" for k, v in figures["floors"].items())]
    return "\n".join(lines)
