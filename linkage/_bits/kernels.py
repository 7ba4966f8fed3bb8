"""The hot loops: set (and clear) bits of packed filters, OR unit filters into rows (numba).

Bit ``i`` of a filter is bit ``7 - i % 8`` of byte ``i // 8`` (MSB first).

A *unit* is what a row's bits depend on for one field: its distinct value (or
distinct value + salt).  Unit ``u`` owns entries ``unit_ptr[u] .. unit_ptr[u+1]``
(its token occurrences, in order); entry ``e`` names a message ``ent_msg[e]``
and sets that message's first ``k`` positions, where ``k = unit_k[u] + 1`` for
the first ``unit_resid[u]`` entries of the unit and ``unit_k[u]`` after
(clkhash's bitsPerFeature split; the native scheme has ``unit_resid = 0``).
"""

from __future__ import annotations

import numba
import numpy as np

from .tokens import csr_ptr, sorted_ids


@numba.njit(cache=True, nogil=True)
def _set_bits(out, row_unit, unit_ptr, ent_msg, unit_k, unit_resid, pos_ptr, pos_set,
              pos_clear, clear):
    for r in range(row_unit.shape[0]):
        u = row_unit[r]
        if u < 0:
            continue
        e0 = unit_ptr[u]
        kb = unit_k[u]
        rs = unit_resid[u]
        for e in range(e0, unit_ptr[u + 1]):
            k = kb + 1 if e - e0 < rs else kb
            base = pos_ptr[ent_msg[e]]
            for j in range(k):
                p = pos_set[base + j]
                out[r, p >> 3] |= np.uint8(0x80 >> (p & 7))
                if clear:
                    q = pos_clear[base + j]
                    out[r, q >> 3] &= np.uint8(0xFF ^ (0x80 >> (q & 7)))


@numba.njit(cache=True, nogil=True)
def _or_rows(out, row_unit, unit_filters):
    width = out.shape[1]
    for r in range(row_unit.shape[0]):
        u = row_unit[r]
        if u < 0:
            continue
        for b in range(width):
            out[r, b] |= unit_filters[u, b]


@numba.njit(cache=True, nogil=True)
def _entry_keys(row_value, row_salt, value_ptr, tok, ntok, out):
    """Key ``s * ntok + t`` of every (row, token occurrence), rows in order; returns how many."""
    m = 0
    for r in range(row_value.shape[0]):
        v = row_value[r]
        if v < 0:
            continue
        base = row_salt[r] * ntok
        for e in range(value_ptr[v], value_ptr[v + 1]):
            out[m] = base + tok[e]
            m += 1
    return m


@numba.njit(cache=True, nogil=True)
def _message_kmax(row_ptr, row_k, ent_msg, kmax):
    """kmax[m]: the largest k of any entry naming message m."""
    for r in range(row_k.shape[0]):
        k = row_k[r]
        for e in range(row_ptr[r], row_ptr[r + 1]):
            m = ent_msg[e]
            if k > kmax[m]:
                kmax[m] = k


@numba.njit(cache=True, nogil=True)
def _set_bits_entries(out, r0, row_ptr, row_k, ent_msg, pos_ptr, pos_set, pos_clear, clear):
    """Rows ``r0 .. r0 + len(out)``: each entry sets the first ``row_k[r]`` positions of its message."""
    for i in range(out.shape[0]):
        r = r0 + i
        k = row_k[r]
        for e in range(row_ptr[r], row_ptr[r + 1]):
            base = pos_ptr[ent_msg[e]]
            for j in range(k):
                p = pos_set[base + j]
                out[i, p >> 3] |= np.uint8(0x80 >> (p & 7))
                if clear:
                    q = pos_clear[base + j]
                    out[i, q >> 3] &= np.uint8(0xFF ^ (0x80 >> (q & 7)))


@numba.njit(cache=True, nogil=True)
def _or_tokens(out64, row_unit, unit_ptr, ent_msg, filters64):
    width = out64.shape[1]
    for r in range(row_unit.shape[0]):
        u = row_unit[r]
        if u < 0:
            continue
        for e in range(unit_ptr[u], unit_ptr[u + 1]):
            m = ent_msg[e]
            for w in range(width):
                out64[r, w] |= filters64[m, w]


@numba.njit(cache=True, nogil=True)
def _or_entries(out64, r0, row_ptr, ent_msg, filters64):
    """Rows ``r0 .. r0 + len(out64)``: OR in the precomputed filter of every entry's message
    (in a local accumulator: one load and one store of the row)."""
    width = out64.shape[1]
    acc = np.zeros(width, dtype=np.uint64)
    for i in range(out64.shape[0]):
        r = r0 + i
        e0 = row_ptr[r]
        e1 = row_ptr[r + 1]
        if e0 == e1:
            continue
        for w in range(width):
            acc[w] = out64[i, w]
        for e in range(e0, e1):
            m = ent_msg[e]
            for w in range(width):
                acc[w] |= filters64[m, w]
        for w in range(width):
            out64[i, w] = acc[w]


# Rough costs (ns) for choosing a strategy; only their ratios matter.
_NS_PER_BIT = 3.5
_NS_PER_WORD = 0.5
_NS_PER_ROW_BYTE = 0.08
MEMORY_BUDGET = 1 << 28  # bytes of precomputed filters per field
FORCE_STRATEGY: str | None = None  # tests: "bits", "units" or "tokens" wherever allowed


def _token_filters(pos_ptr: np.ndarray, pos_set: np.ndarray, kmax: np.ndarray,
                   width: int) -> np.ndarray:
    """One packed filter per message, with its first ``kmax`` positions set."""
    n = len(kmax)
    filters = np.zeros((n, width), dtype=np.uint8)
    idx = np.arange(n, dtype=np.int64)
    ptr = np.arange(n + 1, dtype=np.int64)
    _set_bits(filters, idx, ptr, idx, np.ascontiguousarray(kmax, dtype=np.int64),
              np.zeros(n, dtype=np.int64), pos_ptr, pos_set, _EMPTY, False)
    return filters


_EMPTY = np.zeros(0, dtype=np.int32)


class SaltedEntries:
    """A salted field: each row's bits depend on its value and its salt slot.

    Row ``r`` with value ``v`` and salt slot ``s`` (0: unsalted) sets, for every
    token ``t`` of ``v``, the first ``value_k[v]`` positions of the message of the
    pair ``(s, t)``.  Every (row, token occurrence) -- an *entry* -- is named by its
    key ``s * ntok + t``; the distinct keys, in increasing order, are the messages
    (``pairs_salt``, ``pairs_tok``, ``kmax``: the most positions any entry needs).
    Keys become message numbers with a table the size of the key space where
    that is small next to the entries, by sorting otherwise.  Each row's entries
    are stored in order with their message number, so setting bits reads them
    front to back.
    """

    DENSE_LIMIT = 1 << 22  # largest key space relabelled with a table (4 bytes a key)

    def __init__(self, row_value: np.ndarray, row_salt: np.ndarray, value_ptr: np.ndarray,
                 tok: np.ndarray, value_k: np.ndarray, slots: int, ntok: int) -> None:
        row_value = np.ascontiguousarray(row_value, dtype=np.int64)
        row_salt = np.ascontiguousarray(row_salt, dtype=np.int64)
        value_ptr = np.ascontiguousarray(value_ptr, dtype=np.int64)
        live = row_value >= 0
        per_row = np.zeros(len(row_value), dtype=np.int64)
        per_row[live] = np.diff(value_ptr)[row_value[live]]
        self.row_ptr = csr_ptr(per_row)
        self.row_k = np.zeros(len(row_value), dtype=np.int64)
        self.row_k[live] = np.asarray(value_k, dtype=np.int64)[row_value[live]]
        keys = np.empty(int(self.row_ptr[-1]), dtype=np.int64)
        _entry_keys(row_value, row_salt, value_ptr, np.ascontiguousarray(tok, dtype=np.int64), ntok, keys)
        space = slots * ntok
        self.ent_msg, flat = sorted_ids(keys, space, space <= self.DENSE_LIMIT and space <= 4 * len(keys) + (1 << 16),
                                        np.int32)
        self.kmax = np.zeros(len(flat), dtype=np.int64)
        _message_kmax(self.row_ptr, self.row_k, self.ent_msg, self.kmax)
        self.pairs_salt, self.pairs_tok = np.divmod(flat, ntok)
        self.pos_ptr = np.zeros(1, dtype=np.int64)
        self.pos_set = _EMPTY
        self.pos_clear: np.ndarray | None = None
        self.filters64: np.ndarray | None = None

    def set_positions(self, pos_ptr: np.ndarray, pos_set: np.ndarray,
                      pos_clear: np.ndarray | None) -> None:
        self.pos_ptr = np.ascontiguousarray(pos_ptr, dtype=np.int64)
        self.pos_set = np.ascontiguousarray(pos_set, dtype=np.int32)
        self.pos_clear = None if pos_clear is None else np.ascontiguousarray(pos_clear, dtype=np.int32)

    def plan(self, width: int, uniform_k: bool) -> None:
        """Use one precomputed filter per message when that is cheaper than setting
        bits row by row (only for a uniform k, no cleared bits, whole 64-bit words)."""
        self.filters64 = None
        if not uniform_k or self.pos_clear is not None or width % 8:
            return
        row_entries = float(self.row_ptr[-1])
        k = float(self.kmax.max(initial=0))
        cost_bits = row_entries * k * _NS_PER_BIT
        cost_tok = len(self.kmax) * k * _NS_PER_BIT + row_entries * (width // 8) * _NS_PER_WORD
        use = cost_tok < cost_bits if FORCE_STRATEGY is None else FORCE_STRATEGY == "tokens"
        if use and len(self.kmax) * width <= MEMORY_BUDGET:
            self.filters64 = _token_filters(self.pos_ptr, self.pos_set, self.kmax, width).view(np.uint64)

    def set_rows(self, out: np.ndarray, rows: slice) -> None:
        """OR into ``out`` the bits of rows ``rows`` (a slice of the whole frame, step 1)."""
        r0 = rows.start or 0
        if self.filters64 is not None:
            _or_entries(out.view(np.uint64), r0, self.row_ptr, self.ent_msg, self.filters64)
            return
        _set_bits_entries(out, r0, self.row_ptr, self.row_k, self.ent_msg, self.pos_ptr, self.pos_set,
                          _EMPTY if self.pos_clear is None else self.pos_clear, self.pos_clear is not None)


class Entries:
    """One field's units, entries and bit positions, ready for the kernels."""

    def __init__(self, unit_ptr: np.ndarray, ent_msg: np.ndarray, unit_k: np.ndarray,
                 unit_resid: np.ndarray | None, pos_ptr: np.ndarray, pos_set: np.ndarray,
                 pos_clear: np.ndarray | None = None) -> None:
        self.unit_ptr = np.ascontiguousarray(unit_ptr, dtype=np.int64)
        self.ent_msg = np.ascontiguousarray(ent_msg, dtype=np.int64)
        self.unit_k = np.ascontiguousarray(unit_k, dtype=np.int64)
        self.unit_resid = (np.zeros(len(self.unit_k), dtype=np.int64) if unit_resid is None
                           else np.ascontiguousarray(unit_resid, dtype=np.int64))
        self.pos_ptr = np.ascontiguousarray(pos_ptr, dtype=np.int64)
        self.pos_set = np.ascontiguousarray(pos_set, dtype=np.int32)
        self.pos_clear = None if pos_clear is None else np.ascontiguousarray(pos_clear, dtype=np.int32)
        self.unit_filters: np.ndarray | None = None
        self.token_filters64: np.ndarray | None = None

    @property
    def units(self) -> int:
        return len(self.unit_k)

    def set_rows(self, out: np.ndarray, row_unit: np.ndarray) -> None:
        """OR into ``out[r]`` the bits of unit ``row_unit[r]`` (skipped when < 0)."""
        row_unit = np.ascontiguousarray(row_unit, dtype=np.int64)
        if self.unit_filters is not None:
            _or_rows(out, row_unit, self.unit_filters)
        elif self.token_filters64 is not None:
            _or_tokens(out.view(np.uint64), row_unit, self.unit_ptr, self.ent_msg,
                       self.token_filters64)
        else:
            _set_bits(out, row_unit, self.unit_ptr, self.ent_msg, self.unit_k, self.unit_resid,
                      self.pos_ptr, self.pos_set,
                      _EMPTY if self.pos_clear is None else self.pos_clear,
                      self.pos_clear is not None)

    def plan(self, row_unit: np.ndarray, width: int, kmax: np.ndarray | None = None) -> str:
        """Pick how rows get their bits, by a rough cost model, and precompute for it.

        ``bits``: set every bit of every row; ``units``: build each unit's filter once
        and OR it into its rows; ``tokens``: build each message's filter once (needs
        one k per message, given as ``kmax``) and OR the row's messages.  Balanced
        filters (cleared bits) always use ``bits``.  Returns the choice.
        """
        self.unit_filters = self.token_filters64 = None
        if self.pos_clear is not None:
            return "bits"
        live = row_unit[row_unit >= 0]
        rows = len(live)
        ent = np.diff(self.unit_ptr)
        unit_bits = ent * self.unit_k + np.minimum(self.unit_resid, ent)
        uses = np.bincount(live, minlength=self.units)
        costs = {"bits": float(uses @ unit_bits) * _NS_PER_BIT}
        if self.units * width <= MEMORY_BUDGET:
            costs["units"] = float(unit_bits.sum()) * _NS_PER_BIT + rows * width * _NS_PER_ROW_BYTE
        if kmax is not None and width % 8 == 0 and len(kmax) * width <= MEMORY_BUDGET:
            costs["tokens"] = (float(kmax.sum()) * _NS_PER_BIT
                               + float(uses @ ent) * (width // 8) * _NS_PER_WORD)
        choice = min(costs, key=costs.get)
        if FORCE_STRATEGY in costs:
            choice = FORCE_STRATEGY
        if choice == "units":
            filters = np.zeros((self.units, width), dtype=np.uint8)
            self.set_rows(filters, np.arange(self.units, dtype=np.int64))
            self.unit_filters = filters
        elif choice == "tokens":
            self.token_filters64 = _token_filters(self.pos_ptr, self.pos_set, kmax, width).view(np.uint64)
        return choice
