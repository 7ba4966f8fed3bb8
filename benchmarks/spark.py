"""Spark: the same match on a local Spark session and on DuckDB, same records, same run.

``python -m benchmarks spark [--quick] [--json]``

Data: the scale benchmark's (``benchmarks.scale.prepare``: synthetic counties
encoded as agency-kit encodes them, seven datasets).  A size already prepared
under ``AIDLINK_SPARK_DATA/<size>`` or ``AIDLINK_SCALE_DATA/<size>`` (what
``python -m benchmarks scale`` keeps there) is reused and only read; any other
size is prepared afresh -- under ``AIDLINK_SPARK_DATA/<size>`` when that is
set (kept for the next run), else in a temporary directory.  Each size is
ingested once into a hub database of its own (ingest also writes the Parquet
copy of the records Spark reads).  Preparing and ingesting are not part of the
comparison (ingest is timed and reported on its own).

Compared, each match in a process of its own, one after the other on the same
hub database (each stores its own run):

* ``duckdb``: ``run_match`` with the default run configuration on DuckDB
  (its threads: every core, i.e. 2 on the development machine);
* ``spark``: the same on a Spark session on ``local[2]`` (``AIDLINK_SPARK_MASTER``
  to change it), started by :mod:`hub.spark` as ``linkage-hub match --engine
  spark`` starts it; the session start-up is reported apart from the run.

Full run (sizes ``AIDLINK_SPARK_SIZES``, default 100,000, 300,000 and
1,000,000 records): both engines train (u, EM) and then score, threshold and
cluster -- the whole job.  The two trained models differ where the engines
sample differently (u: each engine's hash picks its own records), so the full
run also reports how far apart they are (largest difference of a level's match
weight, in bits) and how many links the two runs share.  Before each size the
Spark run's time is forecast from the largest Spark run so far (linear in the
records, which is how the pairs grow: blocking caps them per record); a size
whose forecast exceeds ``AIDLINK_SPARK_BUDGET`` seconds (default 35 minutes)
runs on DuckDB only, and Spark's time there is *extrapolated* from the sizes
Spark ran at (a power law through the two largest, linear from one), said so
in the figures.

``--quick`` (10,000 records): a model is trained on DuckDB first (not
compared), then both engines score and cluster with that model
(``run_match(model=...)``), so links and clusters must be identical; the quick
run stays in one process (a JVM compiling with C1 only, as the tests'), which
keeps it near a minute.

Reported per engine: wall seconds per stage; pairs scored; pairs scored per
second inside predict, per core, and per CPU-second of the whole process tree
(the JVM included), which varies less than wall time on a shared machine;
peak memory of the process tree (sum of RSS, sampled every 0.2 s from /proc);
the load average at start and end; the ratio of Spark's wall time to DuckDB's,
with and without the session start-up.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing as mp
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._common import cpu_seconds, log, rss_kib, tree_pids
from .scale import opened_packages, prepare

QUICK_SIZE = 10_000
FULL_SIZES = (100_000, 300_000, 1_000_000)
BUDGET_SECONDS = 35 * 60
QUICK_SPARK_CONF = {"spark.driver.memory": "2g", "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1"}


def _cores(master: str) -> int:
    from hub.spark import is_local, local_cores

    return local_cores(master) if is_local(master) else 0


class TreeSampler:
    """Peak memory (sum of RSS) and CPU seconds of the process tree under ``root`` (``exclude``d
    pids left out), sampled from /proc every ``every`` seconds in a thread."""

    def __init__(self, root: int, exclude: tuple[int, ...] = (), every: float = 0.2) -> None:
        self.root, self.exclude, self.every = root, set(exclude), every
        self.peak_kib = 0
        self.cpu: dict[int, float] = {}  # pid -> its latest utime + stime (s)
        self.baseline: dict[int, float] = {}  # pid -> its CPU seconds when sampling started
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = [p for p in tree_pids(self.root) if p not in self.exclude]
            self.peak_kib = max(self.peak_kib, sum(rss_kib(p) for p in pids))
            for p in pids:
                c = cpu_seconds(p)
                if c is not None:
                    self.cpu[p] = max(self.cpu.get(p, 0.0), c)
            self._stop.wait(self.every)

    def __enter__(self) -> TreeSampler:
        for p in tree_pids(self.root):
            c = cpu_seconds(p)
            if c is not None and p not in self.exclude:
                self.baseline[p] = c
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def figures(self) -> dict[str, Any]:
        """Peak memory (MiB) and the CPU seconds spent while sampling (processes that existed before
        count from the start of sampling)."""
        cpu = sum(max(c - self.baseline.get(p, 0.0), 0.0) for p, c in self.cpu.items())
        return {"peak_rss_mib_tree": round(self.peak_kib / 1024), "cpu_seconds_tree": round(cpu, 1)}


def ingest_job(data: str, db: str, secret_bytes: bytes) -> dict[str, Any]:
    """Ingest the prepared datasets (as the scale benchmark does)."""
    from hub.ingest import ingest_opened

    t0 = time.perf_counter()
    opened = opened_packages(Path(data), secret_bytes)
    s = ingest_opened(db, opened, now=None)
    return {"records": s.records_total, "ingest_seconds": round(time.perf_counter() - t0, 1)}


def match_job(db: str, engine: str, run_id: str, master: str, model_path: str | None,
              spark_conf: dict[str, str] | None = None) -> dict[str, Any]:
    """One ``run_match`` on ``engine`` (Spark: a session started here and stopped)."""
    from hub.model import run_match
    from hub.runconfig import RunConfig

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("aidlink").setLevel(logging.INFO)
    model = json.loads(Path(model_path).read_text()) if model_path else None
    work = Path(db).with_name(f"work-{run_id}")
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    s = run_match(db, RunConfig(), run_id=run_id, engine=engine, spark_master=master, model=model,
                  work_dir=work, model_path=Path(db).with_name(f"{run_id}.model.json"), spark_conf=spark_conf)
    wall = time.perf_counter() - t0
    session = s.seconds.get("spark_session", 0.0)
    predict = s.seconds.get("predict", 0.0)
    return {"engine": engine, "run_id": run_id, "wall_seconds": round(wall, 1),
            "wall_seconds_without_session_start": round(wall - session, 1),
            "stages": {k: round(v, 1) for k, v in s.seconds.items()},
            "pairs_scored": s.blocking["pairs"], "links": s.links, "clusters": s.clusters,
            "pairs_scored_per_second_in_predict": round(s.blocking["pairs"] / predict) if predict else None,
            "salt_bank_stand_ins": s.training.get("salt_bank_stand_ins"),
            "model_path": s.model_path, "prior": s.training.get("prior"),
            "load_average_1min": [round(load, 2), round(os.getloadavg()[0], 2)]}


def _in_child(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``fn(*args)`` in a fresh process; its tree's peak memory and CPU seconds added."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool, TreeSampler(os.getpid(), exclude=(os.getpid(),)) as sampler:
        out = pool.apply(fn, args)
    return {**out, **sampler.figures()}


def _in_process(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``fn(*args)`` here (the quick run: no process start-up); this tree's peak memory (the whole
    process's, so earlier steps' memory counts too) and the CPU seconds of the call."""
    with TreeSampler(os.getpid()) as sampler:
        out = fn(*args)
    return {**out, **sampler.figures()}


def _stored(db: Path, run_id: str) -> tuple[set, set]:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        links = {tuple(sorted([(a, b), (c, d)])) for a, b, c, d in con.execute(
            "SELECT dataset_l, token_l, dataset_r, token_r FROM pairs WHERE run_id = ?", [run_id]).fetchall()}
        members: dict[str, set] = {}
        for cid, ds, tok in con.execute("SELECT cluster_id, dataset, token FROM clusters WHERE run_id = ?",
                                        [run_id]).fetchall():
            members.setdefault(cid, set()).add((ds, tok))
    finally:
        con.close()
    return links, {frozenset(m) for m in members.values() if len(m) > 1}


def model_distance(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """How far two models (same comparisons) are apart: per level, the difference of m, and of the
    level's match weight log2(m/u) in bits; the largest of each and where."""
    worst_w, worst_m, where_w, where_m, diffs = 0.0, 0.0, None, None, []
    for ca, cb in zip(a["comparisons"], b["comparisons"], strict=True):
        for la, lb in zip(ca["comparison_levels"], cb["comparison_levels"], strict=True):
            ma, mb, ua, ub = (la.get("m_probability"), lb.get("m_probability"), la.get("u_probability"),
                              lb.get("u_probability"))
            if None in (ma, mb, ua, ub):
                continue
            label = f"{ca['output_column_name']}: {la['label_for_charts']}"
            dw = abs(math.log2(ma / ua) - math.log2(mb / ub))
            diffs.append(dw)
            if dw > worst_w:
                worst_w, where_w = dw, label
            if abs(ma - mb) > worst_m:
                worst_m, where_m = abs(ma - mb), label
    diffs.sort()
    return {"levels": len(diffs), "max_weight_difference_bits": round(worst_w, 4), "at": where_w,
            "median_weight_difference_bits": round(diffs[len(diffs) // 2], 4) if diffs else None,
            "max_m_difference": round(worst_m, 6), "m_at": where_m,
            "prior_ratio": b["probability_two_random_records_match"] / a["probability_two_random_records_match"]}


def prepared_data(target: int, tmp: Path) -> tuple[Path, dict[str, Any], bytes]:
    """The directory holding ``target`` prepared records (reused, or prepared now), its
    ``prepared.json`` facts and the linkage secret they were encoded under."""
    keep = os.environ.get("AIDLINK_SPARK_DATA")
    for root in (keep, os.environ.get("AIDLINK_SCALE_DATA")):
        if root and (Path(root) / str(target) / "prepared.json").exists():
            data = Path(root) / str(target)
            prepared = json.loads((data / "prepared.json").read_text())
            log(f"spark: reusing the {prepared['records']} records prepared in {data}")
            return data, prepared, bytes.fromhex(prepared.pop("secret"))
    data = Path(keep) / str(target) if keep else tmp / f"data-{target}"
    data.mkdir(parents=True, exist_ok=True)
    secret_bytes = secrets.token_bytes(32)
    log(f"spark: preparing {target} encoded records in {data} (not timed) ...")
    prepared = prepare(target, data, secret_bytes)
    (data / "prepared.json").write_text(json.dumps({**prepared, "secret": secret_bytes.hex()}))
    return data, prepared, secret_bytes


def compare(records: int, dd: dict[str, Any], sp: dict[str, Any], db: Path, master: str) -> dict[str, Any]:
    """The figures comparing a DuckDB run with a Spark run of the same hub database."""
    links_dd, clusters_dd = _stored(db, dd["run_id"])
    links_sp, clusters_sp = _stored(db, sp["run_id"])
    cores = _cores(master)
    rate_sp, rate_dd = sp["pairs_scored_per_second_in_predict"], dd["pairs_scored_per_second_in_predict"]
    return {
        "records": records, "master": master, "duckdb": dd, "spark": sp,
        "ratio_spark_to_duckdb": round(sp["wall_seconds"] / dd["wall_seconds"], 2),
        "ratio_spark_to_duckdb_without_session_start": round(
            sp["wall_seconds_without_session_start"] / dd["wall_seconds"], 2),
        "spark_pairs_scored_per_second_per_core": round(rate_sp / cores) if rate_sp and cores else None,
        "duckdb_pairs_scored_per_second_per_core": round(rate_dd / (os.cpu_count() or 1)) if rate_dd else None,
        "spark_records_per_cpu_second": round(records / sp["cpu_seconds_tree"]) if sp["cpu_seconds_tree"] else None,
        "duckdb_records_per_cpu_second": round(records / dd["cpu_seconds_tree"]) if dd["cpu_seconds_tree"] else None,
        "links_shared": len(links_dd & links_sp), "links_only_duckdb": len(links_dd - links_sp),
        "links_only_spark": len(links_sp - links_dd), "same_clusters": clusters_dd == clusters_sp,
    }


def run_quick(master: str) -> dict[str, Any]:
    """``QUICK_SIZE`` records, one process: train on DuckDB, then both engines score with that model."""
    with tempfile.TemporaryDirectory(prefix="aidlink-spark-bench-") as tmp:
        data, prepared, secret_bytes = prepared_data(QUICK_SIZE, Path(tmp))
        db = Path(tmp) / "hub" / "hub.duckdb"
        db.parent.mkdir()
        ingest = _in_process(ingest_job, str(data), str(db), secret_bytes)
        log("spark: training the shared model on DuckDB (not compared) ...")
        train = _in_process(match_job, str(db), "duckdb", "train", master, None)
        dd = _in_process(match_job, str(db), "duckdb", "duckdb", master, train["model_path"])
        log(f"spark: DuckDB {json.dumps(dd)}")
        log(f"spark: Spark on {master} ...")
        sp = _in_process(match_job, str(db), "spark", "spark", master, train["model_path"], QUICK_SPARK_CONF)
        log(f"spark: Spark {json.dumps(sp)}")
        out = compare(ingest["records"], dd, sp, db, master)
        return {"runs": [{**out, "data": prepared, "ingest": ingest, "model": "given (trained on DuckDB first)",
                          "training_run": train}]}


def run_size(target: int, master: str, spark: bool = True) -> dict[str, Any]:
    """``target`` records: ingest, then DuckDB and (``spark``) Spark each train and match."""
    with tempfile.TemporaryDirectory(prefix="aidlink-spark-bench-") as tmp:
        data, prepared, secret_bytes = prepared_data(target, Path(tmp))
        db = Path(tmp) / "hub" / "hub.duckdb"
        db.parent.mkdir()
        log(f"spark: ingest {target} ...")
        ingest = _in_child(ingest_job, str(data), str(db), secret_bytes)
        log("spark: DuckDB ...")
        dd = _in_child(match_job, str(db), "duckdb", "duckdb", master, None)
        log(f"spark: DuckDB {json.dumps(dd)}")
        if not spark:
            return {"records": ingest["records"], "data": prepared, "ingest": ingest, "master": master,
                    "duckdb": dd, "model": "trained", "spark": None}
        log(f"spark: Spark on {master} ...")
        sp = _in_child(match_job, str(db), "spark", "spark", master, None)
        log(f"spark: Spark {json.dumps(sp)}")
        out = compare(ingest["records"], dd, sp, db, master)
        out.update({"data": prepared, "ingest": ingest, "model": "trained by each engine",
                    "models": model_distance(json.loads(Path(dd["model_path"]).read_text()),
                                             json.loads(Path(sp["model_path"]).read_text()))})
        return out


def power_law(x0: float, y0: float, x1: float, y1: float, x: float) -> tuple[float, float]:
    """``y`` at ``x`` on the power law through (x0, y0) and (x1, y1), and its exponent."""
    k = math.log(y1 / y0) / math.log(x1 / x0)
    return y1 * (x / x1) ** k, k


def _attempt(target: int, master: str, spark: bool = True) -> dict[str, Any]:
    """:func:`run_size`, or what went wrong (so one failed size does not lose the others' figures)."""
    try:
        return run_size(target, master, spark)
    except Exception as e:  # a child's failure arrives here as its exception
        log(f"spark: {target} records failed: {type(e).__name__}: {str(e)[:500]}")
        return {"records": target, "error": f"{type(e).__name__}: {str(e)[:500]}", "spark": None, "duckdb": None}


def run_full(master: str, sizes: tuple[int, ...], budget: float, spark: bool = True) -> dict[str, Any]:
    """Each size in turn, both engines training and matching; a size whose Spark run is forecast
    (linearly from the largest Spark run so far) to take more than ``budget`` seconds runs on
    DuckDB only, and Spark's time there is extrapolated from the Spark runs measured (a power law
    through the two largest; linear from one), marked as such."""
    runs: list[dict[str, Any]] = []
    extrapolated: list[dict[str, Any]] = []
    for target in sizes:
        measured = [r for r in runs if r.get("spark")]
        forecast = (measured[-1]["spark"]["wall_seconds"] * target / measured[-1]["records"]) if measured else 0.0
        if not spark or forecast > budget:
            if spark:
                log(f"spark: Spark at {target} records forecast {forecast:.0f} s > budget {budget:.0f} s: DuckDB only, "
                    f"Spark extrapolated")
            duck = _attempt(target, master, spark=False)
            runs.append(duck)
            log(f"spark: {target} done: {json.dumps(duck, default=str)}")
            if measured and duck.get("duckdb"):
                a, b = (measured[-2], measured[-1]) if len(measured) >= 2 else (None, measured[-1])
                if a is None:
                    est, k = b["spark"]["wall_seconds"] * duck["records"] / b["records"], 1.0
                else:
                    est, k = power_law(a["records"], a["spark"]["wall_seconds"], b["records"],
                                       b["spark"]["wall_seconds"], duck["records"])
                extrapolated.append({
                    "records": duck["records"], "from_records": [r["records"] for r in (a, b) if r],
                    "how": "power law through two measured sizes" if a else "linear from one measured size",
                    "spark_wall_seconds": round(est), "spark_exponent": round(k, 2),
                    "duckdb_wall_seconds_measured": duck["duckdb"]["wall_seconds"],
                    "ratio_spark_to_duckdb": round(est / duck["duckdb"]["wall_seconds"], 2),
                    "forecast_seconds": round(forecast)})
            continue
        runs.append(_attempt(target, master))
        log(f"spark: {target} done: {json.dumps(runs[-1], default=str)}")
    out: dict[str, Any] = {"runs": runs, "budget_seconds": budget}
    if extrapolated:
        out["extrapolated"] = extrapolated
    both = [r for r in runs if r.get("spark")]
    if len(both) >= 2:
        a, b = both[0], both[-1]
        out["growth"] = {
            "records": [a["records"], b["records"]],
            "records_factor": round(b["records"] / a["records"], 2),
            "pairs_factor": round(b["spark"]["pairs_scored"] / a["spark"]["pairs_scored"], 2),
            "spark_wall_factor": round(b["spark"]["wall_seconds_without_session_start"]
                                       / a["spark"]["wall_seconds_without_session_start"], 2),
            "duckdb_wall_factor": round(b["duckdb"]["wall_seconds"] / a["duckdb"]["wall_seconds"], 2),
        }
    return out


def run(quick: bool) -> dict[str, Any]:
    """``AIDLINK_SPARK_SIZES=100000,1000000`` (full run), ``AIDLINK_SPARK_MASTER=local[2]``,
    ``AIDLINK_SPARK_BUDGET=2100`` (seconds), ``AIDLINK_SPARK_ENGINES=duckdb`` (DuckDB only: its side
    of a size measured in another run), ``AIDLINK_SPARK_DATA=DIR`` / ``AIDLINK_SCALE_DATA=DIR``
    (prepared records to reuse)."""
    master = os.environ.get("AIDLINK_SPARK_MASTER", "local[2]")
    started = time.perf_counter()
    if quick:
        out = run_quick(master)
    else:
        env = os.environ.get("AIDLINK_SPARK_SIZES")
        sizes = tuple(int(x) for x in env.split(",")) if env else FULL_SIZES
        out = run_full(master, sizes, float(os.environ.get("AIDLINK_SPARK_BUDGET", BUDGET_SECONDS)),
                       spark=os.environ.get("AIDLINK_SPARK_ENGINES", "duckdb,spark") != "duckdb")
    return {"machine_cores": os.cpu_count(), **out, "benchmark_wall_seconds": round(time.perf_counter() - started, 1)}


def describe(figures: dict[str, Any]) -> str:
    lines = [f"spark ({'quick' if figures.get('quick') else 'full'}), {figures['machine_cores']} cores, "
             f"{figures['benchmark_wall_seconds']} s in all:"]
    for r in figures["runs"]:
        dd, sp = r["duckdb"], r.get("spark")
        if "error" in r:
            lines.append(f"  {r['records']} records: FAILED ({r['error']})")
            continue
        lines += [
            f"  {r['records']} records (ingest {r['ingest']['ingest_seconds']} s, not compared); model "
            f"{r['model']}; {dd['pairs_scored']} pairs scored",
            f"    DuckDB:        {dd['wall_seconds']} s; {dd['pairs_scored_per_second_in_predict']} pairs/s in "
            f"predict; {dd['cpu_seconds_tree']} CPU s; peak {dd['peak_rss_mib_tree']} MiB; load "
            f"{dd['load_average_1min']}",
            "      stages: " + ", ".join(f"{k} {v}" for k, v in dd["stages"].items()),
        ]
        if sp is None:
            lines.append("    Spark:         not run at this size (see extrapolated)")
            continue
        lines += [
            f"    Spark {r['master']}: {sp['wall_seconds']} s ({sp['wall_seconds_without_session_start']} s "
            f"without starting the session); {sp['pairs_scored_per_second_in_predict']} pairs/s in predict "
            f"({r['spark_pairs_scored_per_second_per_core']} per core); {sp['cpu_seconds_tree']} CPU s; peak "
            f"{sp['peak_rss_mib_tree']} MiB (Python + JVM); load {sp['load_average_1min']}",
            "      stages: " + ", ".join(f"{k} {v}" for k, v in sp["stages"].items()),
            f"    ratio Spark / DuckDB: {r['ratio_spark_to_duckdb']} "
            f"({r['ratio_spark_to_duckdb_without_session_start']} without the session start)",
            f"    links: {r['links_shared']} shared, {r['links_only_duckdb']} only DuckDB, "
            f"{r['links_only_spark']} only Spark; same clusters: {r['same_clusters']}",
        ]
        if "models" in r:
            m = r["models"]
            lines.append(f"    trained models: largest level weight difference {m['max_weight_difference_bits']} "
                         f"bits ({m['at']}), median {m['median_weight_difference_bits']}; largest m difference "
                         f"{m['max_m_difference']} ({m['m_at']}); prior ratio {m['prior_ratio']:.4f}")
    for e in figures.get("extrapolated", []):
        lines.append(f"  EXTRAPOLATED: Spark at {e['records']} records ~{e['spark_wall_seconds']} s ({e['how']} "
                     f"{e['from_records']}, exponent {e['spark_exponent']}) against DuckDB's measured "
                     f"{e['duckdb_wall_seconds_measured']} s (ratio ~{e['ratio_spark_to_duckdb']})")
    if "growth" in figures:
        g = figures["growth"]
        lines.append(f"  growth {g['records']}: records x{g['records_factor']}, pairs x{g['pairs_factor']}: Spark "
                     f"wall x{g['spark_wall_factor']}, DuckDB wall x{g['duckdb_wall_factor']}")
    return "\n".join(lines)
