"""Tokenise many distinct values at once into a CSR table of distinct tokens.

All values are joined into one string, turned into one array of code points,
and every n-gram becomes an integer code formed with array operations; the
codes are factorised so each distinct token string is built (and later hashed)
once.  No Python work is done per record or per token occurrence -- only per
distinct value (its length) and per distinct token (its string).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd

_CHAR_BITS = 21  # every code point is < 2**21
_NO_CHAR = np.uint64(0x1FFFFF)  # not a code point: "no character here" (short tokens)


@dataclass(frozen=True)
class TokenTable:
    """Tokens of ``m`` values: value ``v`` has ``tok[ptr[v]:ptr[v+1]]`` (occurrence
    order, duplicates kept), each an index into ``strings`` (distinct tokens)."""

    ptr: np.ndarray  # int64, shape (m + 1,)
    tok: np.ndarray  # int64, shape (nnz,)
    strings: list[str]

    @property
    def counts(self) -> np.ndarray:
        """Number of token occurrences per value."""
        return np.diff(self.ptr)

    @property
    def occurrence(self) -> np.ndarray:
        """0-based index of every occurrence within its value."""
        counts = self.counts
        return np.arange(len(self.tok), dtype=np.int64) - np.repeat(self.ptr[:-1], counts)


def csr_ptr(counts: np.ndarray) -> np.ndarray:
    """CSR offsets: ``ptr[i]:ptr[i + 1]`` is item ``i``'s slice for ``counts[i]`` entries (int64,
    ``len(counts) + 1``).  Every CSR table in this package is built with it."""
    ptr = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    return ptr


def sorted_ids(keys: np.ndarray, space: int, dense: bool,
               dtype: type = np.int64) -> tuple[np.ndarray, np.ndarray]:
    """(id of every key, the distinct keys in increasing order): ids number the distinct
    non-negative ``keys`` (all below ``space``) in increasing order of key -- with a table the
    size of the key space when ``dense`` (cheaper where the space is small next to the keys),
    by sorting otherwise; both give the same ids, as ``dtype`` (int32 where ``space`` allows:
    the table is then half the size)."""
    if dense:
        seen = np.zeros(space, dtype=bool)
        seen[keys] = True
        relabel = np.cumsum(seen, dtype=dtype)
        relabel -= 1
        return relabel[keys], np.flatnonzero(seen)
    uniques, ids = np.unique(keys, return_inverse=True)
    return ids.astype(dtype, copy=False).ravel(), uniques


def _factorize(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense ids for ``codes`` and one representative index per id (any occurrence)."""
    ids, uniques = pd.factorize(codes, sort=False)
    ids = ids.astype(np.int64, copy=False)
    rep = np.empty(len(uniques), dtype=np.int64)
    rep[ids] = np.arange(len(ids), dtype=np.int64)  # any writer wins: all equal tokens
    return ids, rep


_DENSE_LIMIT = 1 << 25  # largest gram-code space relabelled with a table instead of hashing


@numba.njit(cache=True, nogil=True)
def _gram_codes(chars, starts, plen, counts, ptr, n, radix, positional, out):
    """Code of every gram in base ``radix``: its 0-based offset (when ``positional``),
    then its ``n`` character ids (0 past the end of a short value)."""
    for v in range(starts.shape[0]):
        s0 = starts[v]
        stop = plen[v]
        e0 = ptr[v]
        for i in range(counts[v]):
            code = np.int64(i) if positional else np.int64(0)
            for j in range(n):
                c = np.int64(chars[s0 + i + j]) if i + j < stop else np.int64(0)
                code = code * radix + c
            out[e0 + i] = code


def _fast_ids(arr: np.ndarray, starts: np.ndarray, plen: np.ndarray, counts: np.ndarray,
              ptr: np.ndarray, n: int, positional: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """Dense token ids and representatives via small integer gram codes, or None when
    the code space does not fit in an int64."""
    used = np.zeros(int(arr.max()) + 1, dtype=bool)
    used[arr] = True
    alphabet = np.cumsum(used, dtype=np.int32)  # code point -> 1..A (0: no character)
    radix = int(alphabet[-1]) + 1
    space = (int(counts.max(initial=0)) if positional else 1) * radix ** n
    if space >= 1 << 62:
        return None
    nnz = int(ptr[-1])
    code = np.empty(nnz, dtype=np.int64)
    _gram_codes(alphabet[arr], starts, plen, counts, ptr, n, radix, positional, code)
    # a sparse code space (a chunk's names: thousands of characters, so millions of
    # possible bigrams) is sorted instead of tabled
    ids, uniques = sorted_ids(code, space, space <= _DENSE_LIMIT and space <= 8 * nnz + (1 << 16))
    rep = np.empty(len(uniques), dtype=np.int64)
    rep[ids] = np.arange(nnz, dtype=np.int64)
    return ids, rep


def exact_table(values: Sequence[str]) -> TokenTable:
    """Each non-empty value is one token; an empty value has none."""
    m = len(values)
    counts = np.fromiter((1 if v else 0 for v in values), dtype=np.int64, count=m)
    kept = [v for v in values if v]
    ids, uniques = pd.factorize(pd.Series(kept, dtype=object), sort=False)
    return TokenTable(csr_ptr(counts), ids.astype(np.int64, copy=False), list(uniques))


def ngram_table(values: Sequence[str], n: int, *, padded: bool, positional: bool,
                short_whole: bool, fast: bool = True) -> TokenTable:
    """n-grams of every value.

    ``padded`` (and ``n > 1``): the value is padded with ``n - 1`` spaces on each
    side, as clkhash does.  ``positional``: the token is ``"<i> <gram>"`` with the
    1-based start ``i`` of the gram in the (padded) value, as clkhash does.
    ``short_whole``: an unpadded value shorter than ``n`` characters yields one
    token, the whole value (clkhash yields none).  An empty value yields none.
    ``fast=False`` forces the plain-numpy path (tests compare the two).
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    m = len(values)
    lens = np.fromiter(map(len, values), dtype=np.int64, count=m)
    pad = n - 1 if (padded and n > 1) else 0
    sep = " " * pad
    text = sep + (sep + sep).join(values) + sep if m else ""
    arr = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    plen = lens + 2 * pad
    starts = np.zeros(m, dtype=np.int64)
    if m:
        np.cumsum(plen[:-1], out=starts[1:])
    counts = np.maximum(plen - n + 1, 0)
    if short_whole and not pad:
        counts = np.where((lens > 0) & (lens < n), 1, counts)
    counts = np.where(lens > 0, counts, 0)
    ptr = csr_ptr(counts)
    nnz = int(ptr[-1])
    fast_ids = _fast_ids(arr, starts, plen, counts, ptr, n, positional) if fast and nnz else None
    if fast_ids is not None:
        ids, rep = fast_ids
        rep_owner = np.searchsorted(ptr, rep, side="right") - 1
        rep_within = rep - ptr[:-1][rep_owner]
        gstart = starts[rep_owner] + rep_within
        gstop = gstart + np.minimum(plen[rep_owner] - rep_within, n)
        grams = [text[a:b] for a, b in zip(gstart.tolist(), gstop.tolist(), strict=True)]
        if positional:
            grams = [f"{p + 1} {g}" for p, g in zip(rep_within.tolist(), grams, strict=True)]
        return TokenTable(ptr, ids, grams)

    owner = np.repeat(np.arange(m, dtype=np.int64), counts)
    within = np.arange(nnz, dtype=np.int64) - ptr[:-1][owner]
    start = starts[owner] + within
    stop = starts[owner] + plen[owner]
    gram_len = np.minimum(stop - start, n)
    last = max(len(arr) - 1, 0)
    if n * _CHAR_BITS <= 64:
        code = np.zeros(nnz, dtype=np.uint64)
        for j in range(n):
            idx = start + j
            ch = arr[np.minimum(idx, last)].astype(np.uint64) if len(arr) else np.zeros(nnz, np.uint64)
            ch = np.where(idx < stop, ch, _NO_CHAR)
            code = (code << np.uint64(_CHAR_BITS)) | ch
        ids, rep = _factorize(code)
    else:  # long grams: extend dense ids one character at a time
        ids = np.zeros(nnz, dtype=np.int64)
        for j in range(n):
            idx = start + j
            ch = arr[np.minimum(idx, last)].astype(np.int64) if len(arr) else np.zeros(nnz, np.int64)
            ch = np.where(idx < stop, ch, np.int64(_NO_CHAR))
            ids, rep = _factorize((ids << _CHAR_BITS) | ch)

    gram_start = start[rep]
    gram_stop = gram_start + gram_len[rep]
    grams = [text[a:b] for a, b in zip(gram_start.tolist(), gram_stop.tolist(), strict=True)]
    if not positional:
        return TokenTable(ptr, ids, grams)
    key = within * np.int64(len(grams)) + ids
    ids2, rep2 = _factorize(key)
    strings = [f"{p + 1} {grams[g]}" for p, g in zip(within[rep2].tolist(), ids[rep2].tolist(),
                                                      strict=True)]
    return TokenTable(ptr, ids2, strings)
