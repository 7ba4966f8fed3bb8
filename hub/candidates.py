"""Candidate pairs from a direct Dice comparison of record-level CLKs.

Blocking loses a pair when every key it would share is broken at once (an ID
typo, a homophone name, a changed phone).  This module finds such pairs from
the record CLKs alone and hands them to the model as extra candidates:

* :func:`dice_candidates` compares exhaustively -- every pair of ``a`` x ``b``
  (or of ``a`` with itself) with Dice at or above a threshold, optionally only
  the best ``k`` per left record;
* :func:`lsh_candidates` compares only pairs that share a bit-sampling LSH
  band, for when both sides are large;
* :func:`choose_strategy` says which of the two a pair of dataset sizes calls for.

Dice of filters ``x`` and ``y`` is ``2 |x & y| / (|x| + |y|)`` with ``|.|`` the
popcount; the Dice of two empty filters is defined as 0.  Whether a pair
reaches the threshold is decided exactly (integer arithmetic equivalent to
comparing the float64 ratio with the threshold), so a pair exactly at the
threshold is included; ``score`` is that ratio rounded to float32.

Filters are the ``fixed_size_binary`` columns of the encoded-record table
(``docs/formats/encodings.md``); :func:`pack_filters` turns a column into the
``(n, words)`` uint64 matrix the functions take.

Speed (see ``python -m benchmarks dice``): rows of both sides are sorted by
popcount, so each left record scans only the right records whose popcount can
still reach the threshold (``Dice <= 2 min(pa, pb) / (pa + pb)``); the first
half of each filter is scored first and the pair dropped when even a perfect
second half could not reach the threshold; ``b`` is scanned in cache-sized
tiles; chunks of left records run on all cores (``nogil`` numba kernels on a
pool of threads).  The kernels compile on first use -- about 9 s of CPU on the
development machine (Zen 3), another 1-2 s for the first LSH call -- and are
cached next to ``hub/_kernels.py`` (numba falls back to a per-user cache
directory when that is read-only); from the cache a first call takes < 1 s.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from . import _kernels as K

__all__ = [
    "CandidatePairs",
    "choose_strategy",
    "dice_candidates",
    "lsh_bands_for_recall",
    "lsh_candidates",
    "lsh_pair_probability",
    "pack_filters",
]

# Exhaustive comparison is chosen while n_a * n_b stays within this many pairs.
# Measured on the 2-core development machine (AMD EPYC Zen 3, AVX2; shared,
# load average 4-5 at the time) with CLK-like 1024-bit filters at threshold
# 0.8: 10^4 x 10^6 = 1e10 pairs took 70 s exhaustively (all pairs found) and
# 24-28 s with LSH at r = 16-20 rows per band tuned for 99 % recall at the
# threshold (lsh_bands_for_recall).  So the procuratorate's ~10^4 records
# against a county roster of ~10^6 stay exhaustive (a minute or two at worst,
# nothing missed); beyond ~2e10 pairs exhaustive time keeps growing with
# n_a * n_b while LSH grows with n_a + n_b, and LSH is chosen.
EXHAUSTIVE_MAX_PAIRS = 2e10

_CHUNK_ROWS = 64  # left records per work item (each tile of b is reused this often)
_TILE = 512  # right records per cache tile (64 KiB of 1024-bit filters)
_CAP = 4096  # pair slots per chunk before a chunk is re-run with more
_MAX_BUFFER_SLOTS = 1 << 23  # slots (12 bytes each) per kernel call, ~100 MB
_ALIGN = 64


@dataclass(frozen=True, eq=False)
class CandidatePairs:
    """Pairs ``(left[t], right[t])`` with Dice ``score[t]``, sorted by left then right.

    ``left`` indexes ``a``; ``right`` indexes ``b`` (or ``a`` in dedupe mode,
    where ``left < right``).  ``stats`` says how much work was done:
    ``pairs_total`` (all pairs of the inputs), ``pairs_in_window`` (pairs whose
    popcounts could reach the threshold; for LSH, pairs sharing a band, counted
    once per band), ``pairs_scored`` (pairs whose full intersection was
    computed).  In dedupe mode with ``k`` every pair is looked at from both of
    its records and counted twice.
    """

    left: np.ndarray
    right: np.ndarray
    score: np.ndarray
    stats: dict = field(default_factory=dict, compare=False)

    def __len__(self) -> int:
        return len(self.left)

    def to_arrow(self) -> pa.Table:
        """The pairs as an Arrow table ``(left int64, right int64, score float32)``."""
        return pa.table({"left": self.left, "right": self.right, "score": self.score})


# ------------------------------------------------------------------ packing


def pack_filters(col: pa.Array | pa.ChunkedArray | Sequence[bytes] | np.ndarray) -> np.ndarray:
    """Filters as an ``(n, words)`` uint64 matrix for the Dice functions.

    Accepts an Arrow ``fixed_size_binary`` / ``binary`` column (chunked or
    not), a sequence of bytes-like objects (``bytes``, ``bitarray``, ...), a 2-D
    uint8 array of filter bytes, a 2-D bool array of bits (bit ``i`` of a
    filter at column ``i``, packed most significant bit first), a 1-D ``S``
    array, or an already packed 2-D uint64 array (returned as a C-contiguous
    array).  The bytes are reinterpreted, not reordered, and zero-padded to
    whole words: AND and popcount do not depend on the order of bits, and
    ``out.view(np.uint8)[:, :nbytes]`` gives the original bytes back.  A null
    filter becomes all zeros (Dice 0 with anything).  All filters must have the
    same length.
    """
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if isinstance(col, pa.Array):
        return _pack_arrow(col)
    if isinstance(col, np.ndarray):
        return _pack_numpy(col)
    if isinstance(col, (bytes, bytearray, memoryview, str)):
        raise TypeError("pack_filters takes a column of filters, not a single filter")
    items = [bytes(x) for x in col]
    if not items:
        return np.zeros((0, 0), np.uint64)
    nbytes = len(items[0])
    for r, x in enumerate(items):
        if len(x) != nbytes:
            raise ValueError(f"filter at row {r} has {len(x)} bytes, row 0 has {nbytes}")
    raw = np.frombuffer(b"".join(items), np.uint8).reshape(len(items), nbytes)
    return _pad_words(raw)


def _pack_arrow(col: pa.Array) -> np.ndarray:
    t = col.type
    n = len(col)
    if pa.types.is_fixed_size_binary(t):
        nbytes = t.byte_width
        buf = col.buffers()[1]
        raw = np.frombuffer(buf, np.uint8, count=(col.offset + n) * nbytes)
        raw = raw[col.offset * nbytes:].reshape(n, nbytes)
        if col.null_count:
            raw = raw.copy()
            raw[col.is_null().to_numpy(zero_copy_only=False)] = 0
        return _pad_words(raw)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        valid = col.is_valid().to_numpy(zero_copy_only=False)
        off_type = np.int64 if pa.types.is_large_binary(t) else np.int32
        offsets = np.frombuffer(col.buffers()[1], off_type)[col.offset:col.offset + n + 1]
        lengths = np.diff(offsets)
        good = lengths[valid]
        if len(good) == 0:
            return np.zeros((n, 0), np.uint64)
        nbytes = int(good[0])
        bad = np.flatnonzero(valid & (lengths != nbytes))
        if len(bad):
            r = int(bad[0])
            raise ValueError(f"filter at row {r} has {int(lengths[r])} bytes, others have {nbytes}")
        data = np.frombuffer(col.buffers()[2], np.uint8)
        raw = np.zeros((n, nbytes), np.uint8)
        raw[valid] = data[offsets[:-1][valid, None] + np.arange(nbytes)]
        return _pad_words(raw)
    raise TypeError(f"pack_filters needs a binary Arrow column, got {t}")


def _pack_numpy(x: np.ndarray) -> np.ndarray:
    if x.ndim == 2 and x.dtype == np.uint64:
        return np.ascontiguousarray(x)
    if x.ndim == 2 and x.dtype == np.bool_:
        return _pad_words(np.packbits(x, axis=1))
    if x.ndim == 2 and x.dtype == np.uint8:
        return _pad_words(x)
    if x.ndim == 1 and x.dtype.kind in "SV":
        nbytes = x.dtype.itemsize
        raw = np.frombuffer(np.ascontiguousarray(x).tobytes(), np.uint8).reshape(len(x), nbytes)
        return _pad_words(raw)
    raise TypeError(f"pack_filters cannot take a {x.ndim}-D {x.dtype} array")


def _pad_words(raw: np.ndarray) -> np.ndarray:
    n, nbytes = raw.shape
    words = -(-nbytes // 8)
    out = np.zeros((n, words * 8), np.uint8)
    out[:, :nbytes] = raw
    return out.view(np.uint64)


# ------------------------------------------------------------------ helpers


def _check_filters(name: str, x: np.ndarray) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.ndim != 2 or x.dtype != np.uint64:
        raise TypeError(f"{name} must be a 2-D uint64 array (use pack_filters)")
    if x.shape[0] >= 2**31:
        raise ValueError(f"{name} has {x.shape[0]} rows; at most 2**31 - 1 are supported")
    return x


def _check_threshold(threshold: float) -> float:
    t = float(threshold)
    if not 0.0 <= t <= 1.0:  # also rejects NaN
        raise ValueError("threshold must be between 0 and 1")
    return t


def _aligned_rows(n: int, words: int) -> np.ndarray:
    """A zeroed (n, words) uint64 array whose rows start on 64-byte boundaries when words % 8 == 0."""
    nbytes = max(n * words * 8, 1)
    buf = np.zeros(nbytes + _ALIGN, np.uint8)
    off = (-buf.ctypes.data) % _ALIGN
    return buf[off:off + n * words * 8].view(np.uint64).reshape(n, words)


def _padded(x: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """Rows of ``x`` (in ``order``) in an aligned copy padded to a multiple of 4 words."""
    words = -(-x.shape[1] // K.VEC_WORDS) * K.VEC_WORDS
    out = _aligned_rows(x.shape[0], words)
    out[:, :x.shape[1]] = x if order is None else x[order]
    return out


def _popcounts(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(x).sum(axis=1, dtype=np.int64)


def _need_table(threshold: float, nbits: int) -> np.ndarray:
    """``cmin[s]``: least intersection ``c`` with float64 ``2c/s >= threshold``; s = popcount sum.

    Unreachable entries (``c`` would exceed ``s/2 >= min(pa, pb)``) hold ``nbits + 1``.
    """
    s = np.arange(2 * nbits + 1, dtype=np.int64)
    sd = np.maximum(s, 1).astype(np.float64)
    c = np.ceil(threshold * s / 2.0).astype(np.int64)
    for _ in range(2):  # settle float rounding either way
        c -= (c > 0) & (2.0 * (c - 1) / sd >= threshold)
    for _ in range(2):
        c += 2.0 * c / sd < threshold
    c[0] = 0 if threshold <= 0.0 else nbits + 1  # both filters empty: Dice is 0
    c[c > s // 2] = nbits + 1
    return c


def _window_tables(cmin: np.ndarray, nbits: int) -> tuple[np.ndarray, np.ndarray]:
    """For each popcount p, the partner popcounts q with ``min(p, q) >= cmin[p + q]``.

    That set is an interval ``lo[p]..hi[p]`` (empty: ``lo > hi``): ``q - cmin[p+q]``
    does not decrease in q and ``cmin`` does not decrease.
    """
    q = np.arange(nbits + 1)
    lo = np.full(nbits + 1, nbits + 1, np.int64)
    hi = np.full(nbits + 1, nbits, np.int64)  # with lo = nbits + 1: start[lo] == start[hi + 1] == n
    for p0 in range(0, nbits + 1, 256):
        p = np.arange(p0, min(nbits + 1, p0 + 256))[:, None]
        ok = np.minimum(p, q[None, :]) >= cmin[p + q[None, :]]
        any_ok = ok.any(axis=1)
        rows = p[:, 0][any_ok]
        lo[rows] = ok[any_ok].argmax(axis=1)
        hi[rows] = nbits - ok[any_ok][:, ::-1].argmax(axis=1)
    return lo, hi


@functools.lru_cache(maxsize=32)
def _threshold_tables(threshold: float, nbits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(cmin, lo, hi)`` for a threshold and filter width, computed once.

    Shared between calls, so never written to (they stay writeable only
    because numba compiles read-only arrays as a separate type).
    """
    cmin = _need_table(threshold, nbits)
    lo, hi = _window_tables(cmin, nbits)
    return cmin, lo, hi


def _n_threads(threads: int | None) -> int:
    if threads is None:
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                   else (os.cpu_count() or 1))
    if int(threads) != threads or threads < 1:
        raise ValueError("threads must be a positive integer")
    return int(threads)


def _run_parallel(fn, n_items: int, threads: int) -> None:
    """Call ``fn(first, last)`` over slices covering ``range(n_items)`` on ``threads`` threads.

    ``fn`` wraps a ``nogil`` kernel, so the threads run in parallel; a few
    slices per thread keep them busy when slices differ in cost.
    """
    if threads <= 1 or n_items <= 1:
        fn(0, n_items)
        return
    n_slices = min(n_items, threads * 8)
    bounds = np.linspace(0, n_items, n_slices + 1).astype(np.int64)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(fn, int(bounds[t]), int(bounds[t + 1])) for t in range(n_slices)
                   if bounds[t + 1] > bounds[t]]
        for f in futures:
            f.result()


def _chunk_order(nchunks: int) -> np.ndarray:
    """A fixed shuffle of chunk ids, so every slice of the chunk list gets mixed work."""
    return np.random.default_rng(0x5EED).permutation(nchunks).astype(np.int64)


# ------------------------------------------------------------------ exhaustive


def dice_candidates(a: np.ndarray, b: np.ndarray | None = None, *, threshold: float,
                    k: int | None = None, threads: int | None = None,
                    prune: bool = True, flavour: str = "vector") -> CandidatePairs:
    """All pairs with Dice >= ``threshold`` (optionally only the ``k`` best per left record).

    ``a``, ``b``: packed filters of equal width (:func:`pack_filters`).  With
    ``b`` None, pairs within ``a`` (``left < right``); with ``k`` there, a
    pair is kept when it is among the ``k`` best of either of its records.
    Ties for the k-th place go to the lower right index.  ``threads``: threads
    for this call (default: every CPU this process may use).

    Two switches exist for benchmarks and give the same result:
    ``prune=False`` scores every pair in full (no popcount window, no
    half-filter bound); ``flavour="scalar"`` uses one ``popcnt`` per 64-bit
    word instead of vector popcount.
    """
    a = _check_filters("a", a)
    dedupe = b is None
    if not dedupe:
        b = _check_filters("b", b)
        if b.shape[1] != a.shape[1]:
            raise ValueError(f"a has {a.shape[1]} words per filter, b has {b.shape[1]}")
    t = _check_threshold(threshold)
    if k is not None and (int(k) != k or k < 1):
        raise ValueError("k must be a positive integer or None")
    fl = {"vector": K.VECTOR, "scalar": K.SCALAR}.get(flavour)
    if fl is None:
        raise ValueError("flavour must be 'vector' or 'scalar'")
    nthreads = _n_threads(threads)
    na = a.shape[0]
    nb = na if dedupe else b.shape[0]
    total = na * (na - 1) // 2 if dedupe else na * nb
    if na == 0 or nb == 0 or (dedupe and na < 2):
        return _empty(total)
    nbits = a.shape[1] * 64
    kk = 0 if k is None else int(min(k, nb))

    order_a = np.argsort(_popcounts(a), kind="stable")
    A = _padded(a, order_a)
    pa_ = _popcounts(A)
    nvec = A.shape[1] // K.VEC_WORDS
    nv1 = nvec // 2 if nvec >= 2 else nvec
    nv2 = nvec - nv1
    ra = _popcounts(A[:, nv1 * K.VEC_WORDS:]) if nv2 else np.zeros(na, np.int64)
    if dedupe:
        order_b, B, pb_, rb = order_a, A, pa_, ra
        mode = K.SYMMETRIC if kk else K.UPPER
    else:
        order_b = np.argsort(_popcounts(b), kind="stable")
        B = _padded(b, order_b)
        pb_ = _popcounts(B)
        rb = _popcounts(B[:, nv1 * K.VEC_WORDS:]) if nv2 else np.zeros(nb, np.int64)
        mode = K.CROSS
    cmin, lo, hi = _threshold_tables(t, nbits)
    start = np.searchsorted(pb_, np.arange(nbits + 2), side="left").astype(np.int64)
    rorig = order_b.astype(np.int64)

    rows = _CHUNK_ROWS
    nchunks = -(-na // rows)
    chunk_list = _chunk_order(nchunks)
    cap = rows * 2 * kk if kk else _CAP
    per_call = max(1, _MAX_BUFFER_SLOTS // cap)
    li_parts, lj_parts, lc_parts = [], [], []
    in_window = scored = 0
    for s0 in range(0, nchunks, per_call):
        chunks = chunk_list[s0:s0 + per_call]
        res, st = _run_sorted(A, pa_, ra, B, pb_, rb, rorig, cmin, lo, hi, start, chunks, nv1,
                              nv2, mode, prune, fl, kk, cap, nthreads)
        in_window += st[0]
        scored += st[1]
        li_parts.append(res[0])
        lj_parts.append(res[1])
        lc_parts.append(res[2])
    ii = np.concatenate(li_parts)
    jj = np.concatenate(lj_parts)
    cc = np.concatenate(lc_parts).astype(np.float64)
    s = pa_[ii] + pb_[jj]
    score = np.where(s > 0, 2.0 * cc / np.where(s > 0, s, 1), 0.0).astype(np.float32)
    left = order_a[ii].astype(np.int64)
    right = order_b[jj].astype(np.int64)
    if dedupe:
        left, right = np.minimum(left, right), np.maximum(left, right)
    o = np.lexsort((right, left))
    left, right, score = left[o], right[o], score[o]
    if dedupe and kk:
        keep = np.ones(len(left), bool)
        keep[1:] = (left[1:] != left[:-1]) | (right[1:] != right[:-1])
        left, right, score = left[keep], right[keep], score[keep]
    stats = {"pairs_total": int(total), "pairs_in_window": int(in_window),
             "pairs_scored": int(scored)}
    return CandidatePairs(left, right, score, stats)


def _run_sorted(A, pa_, ra, B, pb_, rb, rorig, cmin, lo, hi, start, chunks, nv1, nv2, mode,
                prune, fl, kk, cap, nthreads):
    """Run :func:`_kernels.scan_sorted` over ``chunks``; re-run chunks that overflowed."""
    rows = _CHUNK_ROWS
    n = len(chunks)
    out_i = np.empty(n * cap, np.int32)
    out_j = np.empty(n * cap, np.int32)
    out_c = np.empty(n * cap, np.int32)
    counts = np.zeros(n * rows, np.int64)
    stats = np.zeros((n, 2), np.int64)

    def work(first: int, last: int) -> None:
        K.scan_sorted(A, pa_, ra, B, pb_, rb, rorig, cmin, lo, hi, start, chunks, first, last,
                      rows, _TILE, nv1, nv2, mode, prune, fl, kk, cap, out_i, out_j, out_c, counts,
                      stats)

    _run_parallel(work, n, nthreads)
    st = stats.sum(axis=0)
    if kk:
        per_row = counts.reshape(n, rows)
        mask = (np.arange(2 * kk)[None, None, :] < per_row[:, :, None]).reshape(-1)
        return (out_i[mask], out_j[mask], out_c[mask]), st
    per_chunk = counts.reshape(n, rows)[:, 0]
    over = per_chunk > cap  # these are re-run whole with room for all their pairs
    mask = (np.arange(cap)[None, :] < np.where(over, 0, per_chunk)[:, None]).reshape(-1)
    parts = [(out_i[mask], out_j[mask], out_c[mask])]
    if over.any():
        big = int(per_chunk[over].max())
        res, _ = _run_sorted(A, pa_, ra, B, pb_, rb, rorig, cmin, lo, hi, start, chunks[over],
                             nv1, nv2, mode, prune, fl, kk, big, nthreads)
        parts.append(res)
    return tuple(np.concatenate([p[x] for p in parts]) for x in range(3)), st


def _empty(total: int = 0) -> CandidatePairs:
    return CandidatePairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32),
                          {"pairs_total": int(total), "pairs_in_window": 0, "pairs_scored": 0})


# ------------------------------------------------------------------ LSH


def lsh_pair_probability(dice: float, *, bands: int, rows_per_band: int,
                         ones_fraction: float = 0.35, nbits: int = 1024) -> float:
    """Probability that a pair with this Dice shares at least one band (becomes a candidate).

    A band samples ``rows_per_band`` distinct bit positions; two filters agree
    on a sampled position unless it is one of the ``h`` positions where they
    differ.  With popcounts summing to ``s`` and Dice ``d``, ``h = s (1 - d)``;
    taking ``s = 2 * ones_fraction * nbits`` (the typical pair), a position
    agrees with probability ``p = 1 - h / nbits``, a band matches with
    ``p ** rows_per_band`` (positions drawn without replacement make it a
    little higher), and the pair is found with ``1 - (1 - p**r) ** bands``.
    """
    h = 2.0 * ones_fraction * nbits * (1.0 - dice)
    p = max(0.0, 1.0 - h / nbits)
    return 1.0 - (1.0 - p ** rows_per_band) ** bands


def lsh_bands_for_recall(threshold: float, *, rows_per_band: int, recall: float = 0.99,
                         ones_fraction: float = 0.35, nbits: int = 1024) -> int:
    """Bands needed so a pair exactly at ``threshold`` is found with probability ``recall``.

    Pairs above the threshold are found more often.  More rows per band
    makes each band more selective (fewer non-matching pairs compared: a
    random pair at Dice ~0.35 agrees on a position with probability ~0.55)
    and needs more bands; e.g. at Dice 0.8 with 35 % ones, ``r = 24`` needs
    about 170 bands for 99 %, ``r = 16`` about 50.  Cost per record grows
    with ``bands``; comparisons of non-matching pairs grow with
    ``bands * p_random ** r``.
    """
    h = 2.0 * ones_fraction * nbits * (1.0 - threshold)
    p = max(1e-12, 1.0 - h / nbits) ** rows_per_band
    if p >= 1.0:
        return 1
    return max(1, math.ceil(math.log(1.0 - recall) / math.log1p(-p)))


def _band_positions(bands: int, rows_per_band: int, nbits: int, seed: int):
    """Sampled positions per band and where each sits in the packed uint64 words."""
    rng = np.random.default_rng(seed)
    pos = np.stack([np.sort(rng.choice(nbits, size=rows_per_band, replace=False))
                    for _ in range(bands)]).astype(np.int64)
    # bit i is bit 7 - i % 8 of byte i // 8; byte m of a little-endian word is bits 8m..8m+7
    word = pos // 64
    shift = 8 * ((pos // 8) % 8) + (7 - pos % 8)
    return pos, word, shift


def lsh_candidates(a: np.ndarray, b: np.ndarray | None = None, *, bands: int,
                   rows_per_band: int, seed: int, threshold: float,
                   threads: int | None = None) -> CandidatePairs:
    """Pairs with Dice >= ``threshold`` among those sharing a bit-sampling LSH band.

    Each of ``bands`` bands samples ``rows_per_band`` (1..64) distinct bit
    positions, fixed by ``seed``; records whose bits at those positions are
    equal share the band's key.  Every pair sharing at least one key is scored
    with the exact Dice kernel and kept at or above the threshold, so the
    result is a subset of :func:`dice_candidates`' with no false positives;
    a true pair is missed with probability about ``(1 - p**r) ** bands`` (see
    :func:`lsh_pair_probability`; pick ``bands`` with
    :func:`lsh_bands_for_recall`).  Empty filters are never candidates.
    """
    a = _check_filters("a", a)
    dedupe = b is None
    if not dedupe:
        b = _check_filters("b", b)
        if b.shape[1] != a.shape[1]:
            raise ValueError(f"a has {a.shape[1]} words per filter, b has {b.shape[1]}")
    t = _check_threshold(threshold)
    nthreads = _n_threads(threads)
    if int(bands) != bands or bands < 1:
        raise ValueError("bands must be a positive integer")
    nbits = a.shape[1] * 64
    if int(rows_per_band) != rows_per_band or not 1 <= rows_per_band <= min(64, nbits):
        raise ValueError("rows_per_band must be between 1 and 64")
    na = a.shape[0]
    nb = na if dedupe else b.shape[0]
    total = na * (na - 1) // 2 if dedupe else na * nb
    if na == 0 or nb == 0:
        return _empty(total)

    A = _padded(a)
    B = A if dedupe else _padded(b)
    pa_ = _popcounts(A)
    pb_ = pa_ if dedupe else _popcounts(B)
    nvec = A.shape[1] // K.VEC_WORDS
    cmin, lo, hi = _threshold_tables(t, nbits)
    _, word, shift = _band_positions(int(bands), int(rows_per_band), nbits, int(seed))
    live_a = np.flatnonzero(pa_ > 0) if t > 0 else np.arange(na)
    live_b = live_a if dedupe else (np.flatnonzero(pb_ > 0) if t > 0 else np.arange(nb))

    group = max(1, min(int(bands), (1 << 24) // max(1, na + nb)))
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    in_window = 0
    for g0 in range(0, int(bands), group):
        w, sh = word[g0:g0 + group], shift[g0:g0 + group]
        ka = _band_keys(A, w, sh, nthreads)
        kb = ka if dedupe else _band_keys(B, w, sh, nthreads)
        for band in range(len(w)):
            kal = ka[live_a, band]
            if dedupe:
                o = np.argsort(kal, kind="stable")
                perm = live_a[o]
                rows = perm
                lo_u = np.arange(1, len(perm) + 1, dtype=np.int64)
                hi_u = K.run_ends(kal[o])
            else:
                kbl = kb[live_b, band]
                o = np.argsort(kbl, kind="stable")
                ks = kbl[o]
                perm = live_b[o]
                rows = live_a
                lo_u = np.searchsorted(ks, kal, side="left").astype(np.int64)
                hi_u = np.searchsorted(ks, kal, side="right").astype(np.int64)
            sizes = hi_u - lo_u
            keep = sizes > 0
            if not keep.any():
                continue
            in_window += int(sizes[keep].sum())
            parts.append(_run_lists(A, pa_, B, pb_, rows[keep], lo_u[keep], hi_u[keep],
                                    perm.astype(np.int64), cmin, lo, hi, nvec, nthreads))
    if parts:
        ii = np.concatenate([p[0] for p in parts]).astype(np.int64)
        jj = np.concatenate([p[1] for p in parts]).astype(np.int64)
        cc = np.concatenate([p[2] for p in parts]).astype(np.float64)
    else:
        ii = jj = np.zeros(0, np.int64)
        cc = np.zeros(0, np.float64)
    if dedupe:
        ii, jj = np.minimum(ii, jj), np.maximum(ii, jj)
    key = ii * nb + jj
    _, first = np.unique(key, return_index=True)  # sorted by (left, right)
    ii, jj, cc = ii[first], jj[first], cc[first]
    s = pa_[ii] + pb_[jj]
    score = np.where(s > 0, 2.0 * cc / np.where(s > 0, s, 1), 0.0).astype(np.float32)
    stats = {"pairs_total": int(total), "pairs_in_window": in_window,
             "pairs_scored": in_window}
    return CandidatePairs(ii, jj, score, stats)


def _band_keys(X: np.ndarray, word: np.ndarray, shift: np.ndarray, nthreads: int) -> np.ndarray:
    out = np.empty((X.shape[0], word.shape[0]), np.uint64)

    def work(first: int, last: int) -> None:
        K.band_keys(X, word, shift, out, first, last)

    _run_parallel(work, X.shape[0], nthreads)
    return out


def _run_lists(A, pa_, B, pb_, rows, lo_u, hi_u, perm, cmin, lo, hi, nvec, nthreads):
    """Run :func:`_kernels.scan_lists` over all rows; re-run chunks that overflowed."""
    crows = _CHUNK_ROWS
    nchunks = -(-len(rows) // crows)
    chunk_list = np.arange(nchunks, dtype=np.int64)
    rows = rows.astype(np.int64)
    out = []
    cap = _CAP
    while len(chunk_list):
        n = len(chunk_list)
        out_i = np.empty(n * cap, np.int32)
        out_j = np.empty(n * cap, np.int32)
        out_c = np.empty(n * cap, np.int32)
        counts = np.zeros(n, np.int64)

        def work(first: int, last: int, chunk_list=chunk_list, cap=cap, out_i=out_i,
                 out_j=out_j, out_c=out_c, counts=counts) -> None:
            K.scan_lists(A, pa_, B, pb_, rows, lo_u, hi_u, perm, cmin, lo, hi, nvec, K.VECTOR,
                         chunk_list, first, last, crows, cap, out_i, out_j, out_c, counts)

        _run_parallel(work, n, nthreads)
        over = counts > cap  # re-run whole with room for all their pairs
        mask = (np.arange(cap)[None, :] < np.where(over, 0, counts)[:, None]).reshape(-1)
        out.append((out_i[mask], out_j[mask], out_c[mask]))
        chunk_list = chunk_list[over]
        if len(chunk_list):
            cap = int(counts[over].max())
    return tuple(np.concatenate([p[x] for p in out]) for x in range(3))


# ------------------------------------------------------------------ strategy


def choose_strategy(n_a: int, n_b: int, *, max_pairs: float = EXHAUSTIVE_MAX_PAIRS) -> str:
    """``"exhaustive"`` while ``n_a * n_b <= max_pairs``, else ``"lsh"``.

    Exhaustive comparison finds every pair above the threshold; LSH trades a
    little recall for time and only pays off for large products (the default
    crossover was measured on the development machine, see
    :data:`EXHAUSTIVE_MAX_PAIRS`).
    """
    if n_a < 0 or n_b < 0:
        raise ValueError("dataset sizes must not be negative")
    return "exhaustive" if float(n_a) * float(n_b) <= max_pairs else "lsh"
