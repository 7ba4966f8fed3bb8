"""Numba kernels behind :mod:`hub.candidates` (private: call that module instead).

The hot operation is ``popcount(a & b)`` over two packed filters.  Filters are
handled as rows of uint64 words, zero-padded to a multiple of four words (one
256-bit vector), so a row is ``nvec`` vectors of 32 bytes.

Two popcount flavours, chosen at run time by ``flavour``:

``VECTOR`` (default)
    LLVM IR written by hand: load ``<4 x i64>``, ``and``, bitcast to
    ``<32 x i8>``, ``llvm.ctpop.v32i8``, add the byte counts of all vectors and
    reduce once (``zext`` to ``<32 x i16>`` + ``llvm.vector.reduce.add``).
    LLVM lowers that per target: on AVX2 to the nibble look-up (``vpshufb``)
    and a single ``vpsadbw``; on AVX-512 BITALG to ``vpopcntb``; on AArch64 to
    ``cnt``.  When the target has AVX-512 VPOPCNTDQ the lanes are 64-bit
    (``llvm.ctpop.v4i64`` -> ``vpopcntq``) instead.  Nothing in it is
    x86-specific.
``SCALAR``
    ``llvm.ctpop.i64`` per word, i.e. the ``popcnt`` instruction on x86-64.
    Kept for comparison (``benchmarks/dice.py`` reports both).

Measured on the development machine (Zen 3, AVX2, no AVX-512): every pair
scored in full, the vector flavour runs at ~1.2-1.3x the scalar one (a
16-word pair is ~40 vector instructions against 16 x and/popcnt/add, and
Zen 3 issues ``popcnt`` four per cycle).  A plain numba loop over the 16
words lets LLVM's loop vectoriser vectorise the *outer* loop over pairs
instead, which was slower than scalar ``popcnt``.  Compiled for
``icelake-server`` (``NUMBA_CPU_NAME``), the vector flavour becomes
``vpopcntq``; that could not be run here.

Thresholds are integers: ``cmin[s]`` is the smallest intersection count ``c``
with ``2c/s >= threshold`` in float64 arithmetic, where ``s`` is the sum of the
two popcounts.  So the kernels never divide, ``fastmath`` cannot change a
decision, and a pair exactly at the threshold is kept.

Output goes to per-chunk regions of preallocated buffers (one writer per
region, so no locks); a chunk that finds more pairs than its region holds keeps
counting and is re-run by the caller with a bigger region.

The kernels are sequential and release the GIL (``nogil``); the caller runs
slices of the chunk list on a pool of Python threads.  That is the same
parallelism ``parallel=True`` + ``prange`` gives, with dynamic scheduling,
and without the parfor pass, which took several seconds of compile time per
kernel.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

VECTOR, SCALAR = 0, 1
CROSS, UPPER, SYMMETRIC = 0, 1, 2  # a x b; a x a with i < j; a x a with i != j (top-k)
VEC_WORDS = 4  # uint64 words per 256-bit vector
MAX_LITERAL_VECS = 8  # byte counters hold 8 per vector: 8 vectors -> at most 64 per byte


_I64 = ir.IntType(64)
_V4I64 = ir.VectorType(_I64, 4)
_V32I8 = ir.VectorType(ir.IntType(8), 32)
_V32I16 = ir.VectorType(ir.IntType(16), 32)


def _target_has_vpopcntq(context) -> bool:
    """Whether the CPU numba compiles for has AVX-512 VPOPCNTDQ (a popcount per 64-bit lane)."""
    features = getattr(context.codegen(), "_tm_features", "") or ""
    return "+avx512vpopcntdq" in features.split(",")


@intrinsic(prefer_literal=True)
def _and_popcount_vec(typingctx, pa, pb, nvec):
    """popcount(a & b) over ``nvec`` (a literal, 0..8) 32-byte vectors at addresses pa, pb.

    Byte lanes (``ctpop.v32i8``, one reduction at the end) suit AVX2, AVX-512
    BITALG and NEON; with AVX-512 VPOPCNTDQ the 64-bit lanes (``ctpop.v4i64``)
    map straight onto ``vpopcntq``, so those are used there.
    """
    if not isinstance(nvec, types.IntegerLiteral):
        return None
    if not (isinstance(pa, types.Integer) and isinstance(pb, types.Integer)):
        return None
    n = int(nvec.literal_value)
    if not 0 <= n <= MAX_LITERAL_VECS:
        return None
    sig = types.int64(pa, pb, nvec)

    def codegen(context, builder, signature, args):
        if n == 0:
            return ir.Constant(_I64, 0)
        mod = builder.module
        if _target_has_vpopcntq(context):
            ctpop = cgutils.get_or_insert_function(mod, ir.FunctionType(_V4I64, [_V4I64]),
                                                   "llvm.ctpop.v4i64")
            reduce_add = cgutils.get_or_insert_function(mod, ir.FunctionType(_I64, [_V4I64]),
                                                        "llvm.vector.reduce.add.v4i64")
            xa = builder.inttoptr(args[0], _V4I64.as_pointer())
            xb = builder.inttoptr(args[1], _V4I64.as_pointer())
            acc = None
            for k in range(n):
                idx = [ir.Constant(_I64, k)]
                va = builder.load(builder.gep(xa, idx), align=8)
                vb = builder.load(builder.gep(xb, idx), align=8)
                pc = builder.call(ctpop, [builder.and_(va, vb)])
                acc = pc if acc is None else builder.add(acc, pc)
            return builder.call(reduce_add, [acc])
        ctpop = cgutils.get_or_insert_function(mod, ir.FunctionType(_V32I8, [_V32I8]),
                                               "llvm.ctpop.v32i8")
        reduce_add = cgutils.get_or_insert_function(
            mod, ir.FunctionType(ir.IntType(16), [_V32I16]), "llvm.vector.reduce.add.v32i16")
        xa = builder.inttoptr(args[0], _V4I64.as_pointer())
        xb = builder.inttoptr(args[1], _V4I64.as_pointer())
        acc = None
        for k in range(n):
            idx = [ir.Constant(_I64, k)]
            va = builder.load(builder.gep(xa, idx), align=8)
            vb = builder.load(builder.gep(xb, idx), align=8)
            pc = builder.call(ctpop, [builder.bitcast(builder.and_(va, vb), _V32I8)])
            acc = pc if acc is None else builder.add(acc, pc)
        total = builder.call(reduce_add, [builder.zext(acc, _V32I16)])
        return builder.zext(total, _I64)

    return sig, codegen


@intrinsic(prefer_literal=True)
def _and_popcount_words(typingctx, pa, pb, nwords):
    """popcount(a & b) over ``nwords`` (a literal) uint64 words, one ``ctpop.i64`` per word."""
    if not isinstance(nwords, types.IntegerLiteral):
        return None
    if not (isinstance(pa, types.Integer) and isinstance(pb, types.Integer)):
        return None
    n = int(nwords.literal_value)
    sig = types.int64(pa, pb, nwords)

    def codegen(context, builder, signature, args):
        xa = builder.inttoptr(args[0], _I64.as_pointer())
        xb = builder.inttoptr(args[1], _I64.as_pointer())
        acc = ir.Constant(_I64, 0)
        for k in range(n):
            idx = [ir.Constant(_I64, k)]
            w = builder.and_(builder.load(builder.gep(xa, idx), align=8),
                             builder.load(builder.gep(xb, idx), align=8))
            acc = builder.add(acc, builder.ctpop(w))
        return acc

    return sig, codegen


@intrinsic
def _load_i64(typingctx, addr):
    """The int64 at address ``addr`` (no bounds or negative-index handling: callers own that)."""
    if not isinstance(addr, types.Integer):
        return None
    sig = types.int64(addr)

    def codegen(context, builder, signature, args):
        return builder.load(builder.inttoptr(args[0], _I64.as_pointer()), align=8)

    return sig, codegen


def and_popcount(pa, pb, nvec, flavour):
    """popcount(a & b) over ``nvec`` 32-byte vectors starting at addresses pa, pb (jitted only).

    With literal ``nvec`` and ``flavour`` this is a single straight-line
    intrinsic inlined into the caller (a call to a separately jitted function
    in the inner loop cost ~2x); otherwise it calls
    :func:`_and_popcount_runtime` (not inlined: inlining its branches into every
    caller cost seconds of compile time).
    """
    raise NotImplementedError("and_popcount is only callable from jitted code")


@overload(and_popcount, prefer_literal=True, inline="always")
def _and_popcount_overload(pa, pb, nvec, flavour):
    if isinstance(nvec, types.IntegerLiteral) and isinstance(flavour, types.IntegerLiteral):
        n = int(nvec.literal_value)
        if flavour.literal_value == SCALAR:
            nwords = VEC_WORDS * n

            def scalar_impl(pa, pb, nvec, flavour):
                return _and_popcount_words(pa, pb, nwords)

            return scalar_impl
        if n <= MAX_LITERAL_VECS:

            def vector_impl(pa, pb, nvec, flavour):
                return _and_popcount_vec(pa, pb, n)

            return vector_impl

    def runtime_impl(pa, pb, nvec, flavour):
        return _and_popcount_runtime(pa, pb, nvec, flavour)

    return runtime_impl


@njit(cache=True, nogil=True)
def _and_popcount_runtime(pa, pb, nvec, flavour):
    """:func:`and_popcount` for run-time ``nvec``/``flavour``: branches, and not inlined."""
    if flavour == VECTOR:
        if nvec == 2:
            return _and_popcount_vec(pa, pb, 2)
        if nvec == 4:
            return _and_popcount_vec(pa, pb, 4)
        if nvec == 1:
            return _and_popcount_vec(pa, pb, 1)
    if flavour == SCALAR:
        c = 0
        for v in range(nvec):
            c += _and_popcount_words(pa + 32 * v, pb + 32 * v, 4)
        return c
    c = 0
    while nvec >= 4:
        c += _and_popcount_vec(pa, pb, 4)
        pa += 128
        pb += 128
        nvec -= 4
    if nvec >= 2:
        c += _and_popcount_vec(pa, pb, 2)
        pa += 64
        pb += 64
        nvec -= 2
    if nvec == 1:
        c += _and_popcount_vec(pa, pb, 1)
    return c


@njit(inline="always")
def _next_hit(ai, bj, rowbytes, j, whi, p, rai, pb0, rb0, cmin0, nv1, nv2, flavour, prune):
    """Scan right rows ``j..whi-1`` (row ``j`` at address ``bj``) for the next pair reaching its need.

    Returns ``(j, c, scored)``: the first such row and its intersection count
    (``j == whi`` if none) and how many pairs were scored in full on the way.
    ``pb0``, ``rb0``, ``cmin0``: addresses of the int64 arrays ``pb``, ``rb``,
    ``cmin``.  Called with literal ``nv1, nv2, flavour, prune`` so that the
    loop compiles without branches on them.
    """
    off2 = nv1 * 32
    scored = 0
    while j < whi:
        need = _load_i64(cmin0 + 8 * (p + _load_i64(pb0 + 8 * j)))
        c = and_popcount(ai, bj, nv1, flavour)
        if prune:
            if c + min(rai, _load_i64(rb0 + 8 * j)) >= need:
                c += and_popcount(ai + off2, bj + off2, nv2, flavour)
                scored += 1
                if c >= need:
                    return j, c, scored
        else:
            c += and_popcount(ai + off2, bj + off2, nv2, flavour)
            scored += 1
            if c >= need:
                return j, c, scored
        j += 1
        bj += rowbytes
    return whi, 0, scored


def _specialise_next_hit(nv1, nv2, flavour, prune):
    """:func:`_next_hit` compiled for fixed literal widths, flavour and pruning.

    Each specialisation is a small function of its own (compiled and cached
    separately), called once per window segment or hit, not per pair; inlining
    them all into the scan kernel made its first compilation several times
    slower.
    """

    @njit(cache=True, nogil=True, fastmath=True)
    def next_hit(ai, bj, rowbytes, j, whi, p, rai, pb0, rb0, cmin0):
        return _next_hit(ai, bj, rowbytes, j, whi, p, rai, pb0, rb0, cmin0, nv1, nv2, flavour,
                         prune)

    return next_hit


@njit(cache=True, nogil=True, fastmath=True)
def _next_hit_any(ai, bj, rowbytes, j, whi, p, rai, pb0, rb0, cmin0, nv1, nv2, flavour, prune):
    """:func:`_next_hit` for run-time widths, flavour and pruning (a branch per stage)."""
    return _next_hit(ai, bj, rowbytes, j, whi, p, rai, pb0, rb0, cmin0, nv1, nv2, flavour, prune)


# Straight-line scanners: 1024-bit filters (2 + 2 vectors) with pruning, the
# hub's case; and the two unpruned 1024-bit variants the benchmark reports.
# Every scanner referenced here compiles on first use of the scan kernel, so
# the list is kept short; other widths use _next_hit_any.
_NH_1024 = _specialise_next_hit(2, 2, VECTOR, True)
_NH_1024_RAW = _specialise_next_hit(2, 2, VECTOR, False)
_NH_1024_RAW_SCALAR = _specialise_next_hit(2, 2, SCALAR, False)


@njit(cache=True, nogil=True)
def _better(c1, s1, r1, c2, s2, r2):
    """Whether entry 1 ranks before entry 2: higher Dice 2c/s (exactly), then lower index."""
    x = c1 * s2
    y = c2 * s1
    if x != y:
        return x > y
    return r1 < r2


@njit(cache=True, nogil=True)
def _compact_top_k(out_j, out_c, pos0, m, k, p, pb, rorig, kc, ks, li):
    """Keep the ``k`` best of the ``m`` entries at ``pos0``: by score, then original right index.

    Sets ``kc[li], ks[li]`` to the ``(c, s)`` of the k-th kept entry (its
    score is ``2c/s``), or to ``(-1, 1)`` when fewer than ``k`` remain.  An
    insertion sort on exact integer comparisons: segments hold at most ``2k``
    entries and are compacted once per ``k`` new entries, so this costs O(k)
    per emitted pair; numba's own sorts took seconds to compile.
    """
    cc = np.empty(m, np.int64)
    ss = np.empty(m, np.int64)
    rr = np.empty(m, np.int64)
    jj = np.empty(m, np.int64)
    for t in range(m):
        j = out_j[pos0 + t]
        c = np.int64(out_c[pos0 + t])
        s = max(p + pb[j], 1)  # s == 0 means c == 0: Dice 0 either way
        r = rorig[j]
        u = t
        while u > 0 and _better(c, s, r, cc[u - 1], ss[u - 1], rr[u - 1]):
            cc[u] = cc[u - 1]
            ss[u] = ss[u - 1]
            rr[u] = rr[u - 1]
            jj[u] = jj[u - 1]
            u -= 1
        cc[u] = c
        ss[u] = s
        rr[u] = r
        jj[u] = j
    keep = min(k, m)
    for t in range(keep):
        out_j[pos0 + t] = jj[t]
        out_c[pos0 + t] = cc[t]
    if keep < k:
        kc[li] = -1
        ks[li] = 1
    else:
        kc[li] = cc[keep - 1]
        ks[li] = ss[keep - 1]


@njit(fastmath=True, cache=True, nogil=True)
def scan_sorted(A, pa, ra, B, pb, rb, rorig, cmin, lo_tab, hi_tab, start, chunks, first, last,
                chunk_rows, tile, nv1, nv2, mode, prune, flavour, k, cap, out_i, out_j, out_c, counts, stats):
    """All pairs with ``popcount(a & b) >= cmin[pa + pb]`` between popcount-sorted ``A`` and ``B``.

    ``A``/``B``: (n, 4*nvec) uint64, rows sorted by popcount ``pa``/``pb``
    (int64); ``ra``/``rb``: popcount of the words after the first ``nv1``
    vectors.  ``start[q]``: first row of ``B`` with popcount ``>= q``;
    ``lo_tab[p]..hi_tab[p]``: the popcounts a partner of a popcount-``p`` row
    can have and still reach the threshold.  ``chunks``: which chunks of
    ``chunk_rows`` rows of ``A`` to process, this call doing ``chunks[first:last]``
    (callers run disjoint slices on several threads; the GIL is released);
    chunk ``ci`` writes to
    ``[ci*cap, (ci+1)*cap)`` of the outputs.  Without top-k (``k == 0``)
    ``counts[ci*chunk_rows]`` is the chunk's pair count (may exceed ``cap``:
    re-run it); with top-k each row owns ``2k`` slots of its chunk's region
    and ``counts[ci*chunk_rows + r]`` is row ``r``'s count (at most ``k``).
    ``mode``: CROSS, UPPER (``B is A``, j > i), SYMMETRIC (``B is A``, j != i).
    ``prune``: use the popcount window and the bound after the first ``nv1``
    vectors; without it every pair is scored in full.  ``rorig``: original
    index of each ``B`` row (top-k tie-break).  ``stats[ci]``: pairs in the
    popcount windows, pairs scored in full.
    """
    for ci in range(first, last):
        _scan_chunk(A, pa, ra, B, pb, rb, rorig, cmin, lo_tab, hi_tab, start, chunks[ci],
                    chunk_rows, tile, nv1, nv2, mode, prune, flavour, k, ci * cap, cap, out_i,
                    out_j, out_c, counts[ci * chunk_rows:(ci + 1) * chunk_rows], stats[ci])


@njit(fastmath=True, cache=True, nogil=True)
def _scan_chunk(A, pa, ra, B, pb, rb, rorig, cmin, lo_tab, hi_tab, start, chunk, chunk_rows,
                tile, nv1, nv2, mode, prune, flavour, k, base, cap, out_i, out_j, out_c, counts,
                stats):
    """One chunk of :func:`scan_sorted`; writes from ``base``, its counts and its stats."""
    na = A.shape[0]
    nb = B.shape[0]
    rowbytes = A.shape[1] * 8
    a0 = A.ctypes.data
    b0 = B.ctypes.data
    pb0 = pb.ctypes.data
    rb0 = rb.ctypes.data
    cmin0 = cmin.ctypes.data
    k2 = 2 * k
    sel = 0  # which straight-line scanner (0: run-time widths)
    if nv1 == 2 and nv2 == 2:
        if prune:
            sel = 1 if flavour == VECTOR else 0
        else:
            sel = 2 if flavour == VECTOR else 3
    r0 = chunk * chunk_rows
    r1 = min(na, r0 + chunk_rows)
    nrows = r1 - r0
    n_out = 0
    rowcnt = np.zeros(nrows, np.int64)
    kc = np.full(nrows, -1, np.int64)  # k-th best so far: score 2*kc/ks; -1: fewer than k
    ks = np.ones(nrows, np.int64)
    in_window = 0
    scored = 0
    if prune:  # union of the rows' windows (a row with an empty window adds nothing)
        jlo = nb
        jhi = 0
        for i in range(r0, r1):
            wl = start[lo_tab[pa[i]]]
            wh = start[hi_tab[pa[i]] + 1]
            if wl < wh:
                jlo = min(jlo, wl)
                jhi = max(jhi, wh)
    else:
        jlo = 0
        jhi = nb
    if mode == UPPER:
        jlo = max(jlo, r0 + 1)
    for t0 in range(jlo, jhi, tile):
        t1 = min(jhi, t0 + tile)
        for i in range(r0, r1):
            p = pa[i]
            wlo = t0
            whi = t1
            if prune:
                wlo = max(wlo, start[lo_tab[p]])
                whi = min(whi, start[hi_tab[p] + 1])
            if mode == UPPER:
                wlo = max(wlo, i + 1)
            if whi <= wlo:
                continue
            in_window += whi - wlo
            li = i - r0
            ai = a0 + i * rowbytes
            rai = ra[i]
            j = wlo
            while j < whi:
                bj = b0 + j * rowbytes
                if sel == 1:
                    j, c, sc = _NH_1024(ai, bj, rowbytes, j, whi, p, rai, pb0, rb0, cmin0)
                elif sel == 2:
                    j, c, sc = _NH_1024_RAW(ai, bj, rowbytes, j, whi, p, rai, pb0, rb0, cmin0)
                elif sel == 3:
                    j, c, sc = _NH_1024_RAW_SCALAR(ai, bj, rowbytes, j, whi, p, rai, pb0, rb0,
                                                   cmin0)
                else:
                    j, c, sc = _next_hit_any(ai, bj, rowbytes, j, whi, p, rai, pb0, rb0, cmin0,
                                             nv1, nv2, flavour, prune)
                scored += sc
                if j >= whi:
                    break
                if mode == SYMMETRIC and j == i:  # a record with itself
                    j += 1
                    continue
                s = p + pb[j]
                if k > 0:
                    if kc[li] < 0 or c * ks[li] >= kc[li] * s:
                        pos = base + li * k2 + rowcnt[li]
                        out_i[pos] = i
                        out_j[pos] = j
                        out_c[pos] = c
                        rowcnt[li] += 1
                        if rowcnt[li] == k2:
                            _compact_top_k(out_j, out_c, base + li * k2, k2, k, p, pb, rorig, kc,
                                           ks, li)
                            rowcnt[li] = k
                else:
                    if n_out < cap:
                        pos = base + n_out
                        out_i[pos] = i
                        out_j[pos] = j
                        out_c[pos] = c
                    n_out += 1
                j += 1
    if k > 0:
        for li in range(nrows):
            if rowcnt[li] > k:
                _compact_top_k(out_j, out_c, base + li * k2, rowcnt[li], k, pa[r0 + li], pb, rorig,
                               kc, ks, li)
                rowcnt[li] = k
            counts[li] = rowcnt[li]
    else:
        counts[0] = n_out
    stats[0] = in_window
    stats[1] = scored


@njit(fastmath=True, cache=True, nogil=True)
def scan_lists(A, pa, B, pb, rows, lo, hi, perm, cmin, lo_tab, hi_tab, nvec, flavour, chunks,
               first, last, chunk_rows, cap, out_i, out_j, out_c, counts):
    """Score listed pairs: for ``t`` in a chunk, ``A[rows[t]]`` against ``B[perm[lo[t]:hi[t]]]``.

    The LSH path: ``perm[lo[t]:hi[t]]`` are the records sharing a band key
    with ``rows[t]``.  Partners outside the popcount window are skipped without
    scoring.  Emits ``(rows[t], perm[u], c)`` for ``c >= cmin[pa + pb]`` into
    chunk regions as :func:`scan_sorted` does without top-k, for ``chunks[first:last]``.
    """
    for ci in range(first, last):
        counts[ci] = _scan_list_chunk(A, pa, B, pb, rows, lo, hi, perm, cmin, lo_tab, hi_tab,
                                      nvec, flavour, chunks[ci], chunk_rows, ci * cap, cap, out_i,
                                      out_j, out_c)


@njit(fastmath=True, cache=True, nogil=True)
def _scan_list_chunk(A, pa, B, pb, rows, lo, hi, perm, cmin, lo_tab, hi_tab, nvec, flavour,
                     chunk, chunk_rows, base, cap, out_i, out_j, out_c):
    """One chunk of :func:`scan_lists`; returns its pair count (may exceed ``cap``)."""
    rowbytes = A.shape[1] * 8
    a0 = A.ctypes.data
    b0 = B.ctypes.data
    r0 = chunk * chunk_rows
    r1 = min(rows.shape[0], r0 + chunk_rows)
    n_out = 0
    for t in range(r0, r1):
        i = rows[t]
        p = pa[i]
        plo = lo_tab[p]
        phi = hi_tab[p]
        ai = a0 + i * rowbytes
        for u in range(lo[t], hi[t]):
            j = perm[u]
            q = pb[j]
            if q < plo or q > phi:
                continue
            c = and_popcount(ai, b0 + j * rowbytes, nvec, flavour)
            if c >= cmin[p + q]:
                if n_out < cap:
                    out_i[base + n_out] = i
                    out_j[base + n_out] = j
                    out_c[base + n_out] = c
                n_out += 1
    return n_out


@njit(cache=True, nogil=True)
def band_keys(A, word, shift, out, r0, r1):
    """``out[i, b]`` for rows ``r0..r1``: the bits of row ``i`` at band ``b``'s sampled positions.

    ``word[b, t]``/``shift[b, t]``: where sampled position ``t`` of band ``b``
    sits in the row's uint64 words; bit ``t`` of the key is that bit.
    """
    nb, r = word.shape
    for i in range(r0, r1):
        for b in range(nb):
            key = np.uint64(0)
            for t in range(r):
                bit = (A[i, word[b, t]] >> np.uint64(shift[b, t])) & np.uint64(1)
                key |= bit << np.uint64(t)
            out[i, b] = key


@njit(cache=True, nogil=True)
def run_ends(sorted_keys):
    """For each position, the end (exclusive) of the run of equal keys it belongs to."""
    n = sorted_keys.shape[0]
    out = np.empty(n, np.int64)
    i = 0
    while i < n:
        j = i + 1
        while j < n and sorted_keys[j] == sorted_keys[i]:
            j += 1
        for t in range(i, j):
            out[t] = j
        i = j
    return out
