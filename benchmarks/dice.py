"""Dice candidate generation: hub.candidates against anonlink's C++ Dice, same data, same run.

``python -m benchmarks dice [--quick] [--json]``

Data: random but CLK-like record filters (1024 bits).  Each record is a bag of
28-44 tokens drawn from a Zipf-distributed vocabulary of 50,000 (common
surname characters, birth years and places recur as in real rosters), and
each token sets 12 fixed bit positions, as a q-gram does in a CLK; that gives
30-40 % ones and non-matching pairs that share common tokens (Dice mostly
0.3-0.6, not the 0.35 +- 0.02 of uniform random bits).  A planted set of
``b`` records are near-duplicates of ``a`` records (1-4 tokens replaced:
a typo, a homophone, a changed phone), Dice about 0.85-0.97.

Measured: our kernel on one thread and on all threads, with pruning
(popcount window + half-filter bound; "effective" comparisons/s count all
``n_a x n_b`` pairs) and without (``prune=False``: every pair scored in full;
"raw" comparisons/s), with vector popcount and with scalar ``popcnt``; and
``anonlink.similarities.dice_coefficient_accelerated`` (C++, one thread) in the
peer environment on the same bytes and threshold.  Both must find the same
pairs.  Each timing is repeated; best and spread are reported with the load
average, since the machine may be shared; single-threaded runs also report
CPU time (thread CPU time for ours, process CPU time for anonlink's), which a
busy machine distorts less than wall time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ._common import log, run_peer

THRESHOLD = 0.8
NBITS = 1024
VOCAB = 50_000
BITS_PER_TOKEN = 12
TOKENS = (28, 44)
PLANTED_FRACTION = 0.1


# ---------------------------------------------------------------- data


def make_clks(n_a: int, n_b: int, seed: int = 20240601) -> tuple[np.ndarray, np.ndarray, int]:
    """CLK-like filters ``(a, b)`` as (n, 128) uint8 rows, and the number of planted pairs."""
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, VOCAB + 1, dtype=np.float64)
    p = 1.0 / (ranks + 20.0)
    cdf = np.cumsum(p / p.sum())
    token_bits = rng.integers(0, NBITS, size=(VOCAB, BITS_PER_TOKEN))

    def draw_tokens(n: int) -> np.ndarray:
        toks = np.searchsorted(cdf, rng.random((n, TOKENS[1])))
        toks = np.minimum(toks, VOCAB - 1)
        used = rng.integers(TOKENS[0], TOKENS[1] + 1, size=n)
        toks[np.arange(TOKENS[1])[None, :] >= used[:, None]] = -1  # unused slots
        return toks

    def to_bits(toks: np.ndarray) -> np.ndarray:
        n = len(toks)
        out = np.zeros((n, NBITS), bool)
        rows = np.repeat(np.arange(n), toks.shape[1] * BITS_PER_TOKEN)
        cols = token_bits[np.maximum(toks, 0)].reshape(-1)
        keep = np.repeat((toks >= 0).reshape(-1), BITS_PER_TOKEN)
        out[rows[keep], cols[keep]] = True
        return out

    ta = draw_tokens(n_a)
    tb = draw_tokens(n_b)
    n_planted = min(n_b, int(PLANTED_FRACTION * n_a))
    src = rng.choice(n_a, size=n_planted, replace=False)
    dst = rng.choice(n_b, size=n_planted, replace=False)
    dup = ta[src].copy()
    for r in range(n_planted):  # replace 1-4 of the record's tokens
        used = np.flatnonzero(dup[r] >= 0)
        k = rng.integers(1, 5)
        dup[r, rng.choice(used, size=k, replace=False)] = rng.integers(0, VOCAB, size=k)
    tb[dst] = dup
    a = np.packbits(to_bits(ta), axis=1)
    b = np.packbits(to_bits(tb), axis=1)
    return a, b, n_planted


# ---------------------------------------------------------------- peer

PEER_SCRIPT = r"""
import json, sys, time
import numpy as np
from bitarray import bitarray
import anonlink
from anonlink.similarities import dice_coefficient_accelerated

req = json.loads(sys.stdin.read())
nbytes = req["nbytes"]
def load(path):
    raw = open(path, "rb").read()
    out = []
    for i in range(len(raw) // nbytes):
        x = bitarray(endian="big")
        x.frombytes(raw[i * nbytes:(i + 1) * nbytes])
        out.append(x)
    return out
A = load(req["a"]); B = load(req["b"])
times, cpu = [], []
for _ in range(req["repeat"]):
    t0, c0 = time.perf_counter(), time.process_time()
    sims, (i0, i1) = dice_coefficient_accelerated((A, B), req["threshold"])
    times.append(time.perf_counter() - t0)
    cpu.append(time.process_time() - c0)
pairs = sorted(zip(list(i0), list(i1)))
print(json.dumps({"times": times, "cpu": cpu, "pairs": pairs, "anonlink": anonlink.__version__,
                  "function": "anonlink.similarities.dice_coefficient_accelerated"}))
"""


def run_anonlink(a: np.ndarray, b: np.ndarray, threshold: float, repeat: int) -> dict | None:
    with tempfile.TemporaryDirectory() as d:
        pa_, pb_ = Path(d, "a.bin"), Path(d, "b.bin")
        pa_.write_bytes(a.tobytes())
        pb_.write_bytes(b.tobytes())
        return run_peer(PEER_SCRIPT, {"a": str(pa_), "b": str(pb_), "nbytes": a.shape[1],
                                      "threshold": threshold, "repeat": repeat})


# ---------------------------------------------------------------- assembly

ASM_SCRIPT = r"""
import json, re
import numpy as np
import llvmlite.binding as llvm
from hub import candidates as C, _kernels as K
x = C.pack_filters(np.random.default_rng(0).random((40, 1024)) < 0.35)
C.dice_candidates(x, x[:8], threshold=0.8)
C.dice_candidates(x, x[:8], threshold=0.8, prune=False, flavour="scalar")
out = {"cpu": llvm.get_host_cpu_name(),
       "cpu_features": sorted(k for k, v in llvm.get_host_cpu_features().items()
                              if v and (k.startswith("avx512") or k in ("avx2", "popcnt")))}
for name in ("_NH_1024", "_NH_1024_RAW_SCALAR"):
    f = getattr(K, name)
    asm = f.inspect_asm(f.signatures[0])
    out[name] = {m: len(re.findall(r"\b" + m + r"\b", asm))
                 for m in ("popcntq", "vpopcntq", "vpopcntb", "vpshufb", "vpsadbw")}
print(json.dumps(out))
"""


def inspect_kernels() -> dict:
    """Popcount instructions in the compiled 1024-bit scanners (fresh compile: numba
    does not keep assembly for cached code)."""
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "NUMBA_CACHE_DIR": d}
        proc = subprocess.run([sys.executable, "-c", ASM_SCRIPT], capture_output=True, text=True,
                              env=env, cwd=Path(__file__).resolve().parent.parent, timeout=600)
    if proc.returncode != 0:
        log(f"assembly inspection failed:\n{proc.stderr[-1000:]}")
        return {}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- ours


def _timed(fn, repeat: int) -> tuple[list[float], list[float], object]:
    """Wall times and this thread's CPU times of ``repeat`` calls (CPU time only means
    something for single-threaded runs, which execute in this thread)."""
    times, cpu, res = [], [], None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.thread_time()
        res = fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    return times, cpu, res


def _figure(times: list[float], pairs: int, cpu: list[float] | None = None) -> dict:
    best = min(times)
    out = {"times_s": [round(t, 4) for t in times], "best_s": round(best, 4),
           "spread_pct": round(100.0 * (max(times) - best) / best, 1),
           "pairs_per_s": pairs / best}
    if cpu:
        out["cpu_best_s"] = round(min(cpu), 4)
        out["pairs_per_cpu_s"] = pairs / min(cpu)
    return out


def run(quick: bool) -> dict:
    from hub import _kernels as K
    from hub import candidates as C

    n_a, n_b = (2_000, 20_000) if quick else (10_000, 100_000)
    repeat = 3 if quick else 5
    pairs = n_a * n_b
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load_before = os.getloadavg()
    log(f"dice: generating {n_a:,} x {n_b:,} CLK-like filters ...")
    a_raw, b_raw, n_planted = make_clks(n_a, n_b)
    a, b = C.pack_filters(a_raw), C.pack_filters(b_raw)
    ones = float(np.concatenate([np.unpackbits(a_raw[:500], axis=1),
                                 np.unpackbits(b_raw[:500], axis=1)]).mean())

    log("dice: first call (compiles the kernels, or loads them from numba's cache) ...")
    t0 = time.perf_counter()
    C.dice_candidates(a[:64], b[:256], threshold=THRESHOLD)
    first_call = time.perf_counter() - t0
    cache = {"hits": sum(K.scan_sorted.stats.cache_hits.values()),
             "misses": sum(K.scan_sorted.stats.cache_misses.values())}

    figures: dict = {"n_a": n_a, "n_b": n_b, "pairs": pairs, "threshold": THRESHOLD,
                     "filter_bits": NBITS, "ones_fraction": round(ones, 3),
                     "planted_pairs": n_planted, "threads_all": threads,
                     "first_call_s": round(first_call, 2), "kernel_cache": cache}
    ours: dict = {}
    runs = [("effective_1t", {"threads": 1}), ("effective_all", {"threads": threads}),
            ("raw_1t", {"threads": 1, "prune": False}),
            ("raw_all", {"threads": threads, "prune": False}),
            ("raw_scalar_popcnt_1t", {"threads": 1, "prune": False, "flavour": "scalar"})]
    result = None
    for name, kw in runs:
        log(f"dice: ours {name} ...")
        times, cpu, res = _timed(
            lambda kw=kw: C.dice_candidates(a, b, threshold=THRESHOLD, **kw),
            repeat if name.startswith("effective") else max(2, repeat - 2))
        ours[name] = _figure(times, pairs, cpu if kw["threads"] == 1 else None)
        if result is None:
            result = res
        elif len(res) != len(result):
            raise AssertionError(f"{name} found {len(res)} pairs, effective_1t {len(result)}")
    ours["found"] = len(result)
    ours["pairs_in_window"] = result.stats["pairs_in_window"]
    ours["pairs_scored_full"] = result.stats["pairs_scored"]
    figures["ours"] = ours

    log("dice: anonlink (peer environment, one thread) ...")
    peer = run_anonlink(a_raw, b_raw, THRESHOLD, max(2, repeat - 2))
    if peer is None:
        figures["anonlink"] = {"available": False}
    else:
        fig = _figure(peer["times"], pairs, peer["cpu"])
        fig.update(available=True, version=peer["anonlink"], function=peer["function"],
                   found=len(peer["pairs"]))
        figures["anonlink"] = fig
        theirs = {tuple(p) for p in peer["pairs"]}
        mine = set(zip(result.left.tolist(), result.right.tolist(), strict=True))
        figures["agreement"] = {"same_count": len(theirs) == len(mine),
                                "ours_contains_anonlink": theirs <= mine,
                                "identical": theirs == mine}
        base = fig["pairs_per_s"]
        figures["ratio_vs_anonlink_1t"] = {
            name: round(ours[name]["pairs_per_s"] / base, 2)
            for name, _ in runs}
        figures["ratio_vs_anonlink_1t_cpu_time"] = {
            name: round(ours[name]["pairs_per_cpu_s"] / fig["pairs_per_cpu_s"], 2)
            for name, kw in runs if kw["threads"] == 1}
    log("dice: popcount instructions in the compiled kernels ...")
    figures["kernel_asm"] = inspect_kernels()
    figures["load_avg_before"] = [round(x, 2) for x in load_before]
    figures["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    return figures


def describe(f: dict) -> str:
    def rate(x):
        txt = (f"{x['pairs_per_s'] / 1e6:8.1f} M/s  (best {x['best_s']:.3f} s, "
               f"spread {x['spread_pct']:.0f} %)")
        if "pairs_per_cpu_s" in x:
            txt += f"  CPU time: {x['pairs_per_cpu_s'] / 1e6:.1f} M/s"
        return txt

    o = f["ours"]
    lines = [
        f"Dice candidates, {f['n_a']:,} x {f['n_b']:,} = {f['pairs']:.3g} pairs of "
        f"{f['filter_bits']}-bit CLK-like filters ({100 * f['ones_fraction']:.0f} % ones), "
        f"threshold {f['threshold']}, {f['planted_pairs']} planted near-duplicates",
        f"first call {f['first_call_s']:.1f} s (numba cache hits {f['kernel_cache']['hits']}, "
        f"misses {f['kernel_cache']['misses']})",
        "comparisons/s, 'effective' = all n_a x n_b pairs / time with pruning; "
        "'raw' = every pair scored in full",
        f"  ours effective, 1 thread     {rate(o['effective_1t'])}",
        f"  ours effective, {f['threads_all']} threads    {rate(o['effective_all'])}",
        f"  ours raw, 1 thread           {rate(o['raw_1t'])}",
        f"  ours raw, {f['threads_all']} threads          {rate(o['raw_all'])}",
        f"  ours raw scalar popcnt, 1 t  {rate(o['raw_scalar_popcnt_1t'])}",
    ]
    an = f["anonlink"]
    if an.get("available"):
        lines.append(f"  anonlink {an['version']} C++, 1 t  {rate(an)}")
        r = f["ratio_vs_anonlink_1t"]
        lines.append("ratio to anonlink (same run, wall): " + ", ".join(f"{k} {v:.2f}x"
                                                                     for k, v in r.items()))
        r = f["ratio_vs_anonlink_1t_cpu_time"]
        lines.append("ratio to anonlink (same run, CPU time): "
                     + ", ".join(f"{k} {v:.2f}x" for k, v in r.items()))
        ag = f["agreement"]
        lines.append(f"pairs found: ours {o['found']}, anonlink {an['found']}; same count "
                     f"{ag['same_count']}, ours contain anonlink's {ag['ours_contains_anonlink']}")
    else:
        lines.append("  anonlink: peer environment unavailable (no figure)")
        lines.append(f"pairs found: ours {o['found']}")
    lines.append(f"pruning: {o['pairs_in_window'] / f['pairs']:.1%} of pairs in the popcount "
                 f"window, {o['pairs_scored_full'] / f['pairs']:.1%} scored in full")
    asm = f.get("kernel_asm") or {}
    if asm:
        lines.append(f"CPU {asm['cpu']} ({', '.join(asm['cpu_features'])}); instructions in the "
                     f"1024-bit scanners: vector {asm['_NH_1024']}, scalar "
                     f"{asm['_NH_1024_RAW_SCALAR']}")
    lines.append(f"load average before {f['load_avg_before']}, after {f['load_avg_after']}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(json.dumps(run(quick=True), default=str))
