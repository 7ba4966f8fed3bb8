"""Results kept across the calls of one run: derived tables (encoding), normalised values.

An export is encoded chunk by chunk.  :class:`RunMemo` (``linkage.encode.
EncodeCache``) keeps, for the run, what every chunk would otherwise derive
again from the secret: the keyed permutations of the filters (a Fisher--Yates
shuffle over an HMAC stream, a few milliseconds each), and one
:class:`PositionStore` per filter part -- the bit positions of its messages,
for the parts whose tokens come from a small alphabet (digits, dates, pinyin):
there nearly every message of a chunk was hashed for an earlier one.  Names are
not kept (tens of thousands of distinct bigrams times the birth years; a store
turns itself off past ``max_tokens``).  An earlier memo that looked every
message up in a dict was slower than hashing again (since encoding v3 a batch
costs one AES pass per block, :mod:`.prf`): the store numbers the distinct
tokens and salts of a call through two dicts and finds its messages by array
indexing.  Measured on one process, 20,000-row chunks of the benchmark export:
the positions went from 3.7-4.3 to 2.6 us a row.  The memo holds values
derived from the linkage secret: it belongs to one run in one process and is
dropped with it (``agency_kit.encode`` keeps it for the run only); nothing here
is global.

:class:`ValueMemo` does the same for the slow per-value paths of
:mod:`linkage.normalise` (addresses, names with a middle dot), by value, at
most ``max_entries`` values.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .tokens import csr_ptr


class RunMemo:
    """Tables derived from the secret, made once per run (the filters' permutations, the
    position stores)."""

    def __init__(self) -> None:
        self._derived: dict[object, object] = {}

    def derived(self, what: object, make: Callable[[], object]) -> object:
        """``make()``, once per ``what`` for the run."""
        got = self._derived.get(what)
        if got is None:
            got = self._derived[what] = make()
        return got


class PositionStore:
    """Bit positions of one filter part's messages ``(salt, token)``, kept across the
    calls of one run -- for parts with few distinct tokens only.

    A part whose tokens come from a small alphabet (the digits of ID numbers, phones
    and dates, pinyin, a county's address characters) sends nearly the same messages
    in every chunk: some 100 birth years times a few hundred tokens.  Hashing them
    again for each chunk was about half of the encoder's hashing; here each is hashed
    once per run and later chunks gather its positions by table look-up (salt and
    token strings get run-wide numbers through two dicts, one look-up per distinct
    token of a chunk, not per message).  Names are the opposite case (tens of
    thousands of distinct bigrams times the years): once a part has more than
    ``max_tokens`` distinct tokens, or its table would pass ``max_bytes``, the store
    is emptied and turned off, and that part is hashed per call as before.

    ``gather(strings, msg_tok, salts, msg_salt, kmax, compute)`` returns the CSR
    ``(ptr, pos)`` of :func:`linkage._bits.hashing.token_positions` for the call's
    messages; ``compute(idx)`` hashes messages ``idx`` of the call (with their
    ``kmax``).  Results are the same as hashing every message.
    """

    def __init__(self, max_tokens: int = 4096, max_bytes: int = 16 << 20) -> None:
        self.max_tokens = max_tokens
        self.max_bytes = max_bytes
        self.enabled = True
        self._tok: dict[str, int] = {}
        self._salt: dict[str, int] = {}
        self._slot = np.full((1, 0), -1, dtype=np.int32)  # [run salt id (0: unsalted), run token id]
        self._pos = np.zeros((0, 0), dtype=np.uint16)  # [slot, j]: positions (< 2**16)
        self._k = np.zeros(0, dtype=np.int64)  # positions held per slot
        self._used = 0
        self.hashed = 0  # messages hashed through the store (a measure for tests)
        self.served = 0  # messages served from it

    def _ids(self, d: dict[str, int], strings: list[str], base: int) -> np.ndarray:
        get = d.get
        out = np.fromiter((get(s, -1) for s in strings), dtype=np.int64, count=len(strings))
        for i in np.flatnonzero(out < 0).tolist():
            out[i] = d.setdefault(strings[i], len(d) + base)
        return out

    def _disable(self) -> None:
        self.enabled = False
        self._tok, self._salt = {}, {}
        self._slot = np.full((1, 0), -1, dtype=np.int32)
        self._pos = np.zeros((0, 0), dtype=np.uint16)
        self._k = np.zeros(0, dtype=np.int64)

    def gather(self, strings: list[str], msg_tok: np.ndarray, salts: list[str] | None,
               msg_salt: np.ndarray | None, kmax: np.ndarray,
               compute: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray] | None:
        """Positions of the call's messages, or None when the store is (now) off."""
        if not self.enabled:
            return None
        tok = self._ids(self._tok, strings, 0)
        if len(self._tok) > self.max_tokens:
            self._disable()
            return None
        salt = np.zeros(1, dtype=np.int64) if salts is None else \
            np.concatenate([[0], self._ids(self._salt, salts, 1)])
        ms = salt[msg_salt] if msg_salt is not None else np.zeros(len(msg_tok), dtype=np.int64)
        mt = tok[msg_tok]
        kmax = np.asarray(kmax, dtype=np.int64)
        width = max(self._pos.shape[1], int(kmax.max(initial=0)))
        rows, cols = len(self._salt) + 1, len(self._tok)
        if (rows * cols * 4 + (self._used + len(kmax)) * width * 2) > self.max_bytes:
            self._disable()
            return None
        if self._slot.shape != (rows, cols):
            grown = np.full((rows, cols), -1, dtype=np.int32)
            grown[:self._slot.shape[0], :self._slot.shape[1]] = self._slot
            self._slot = grown
        slot = self._slot[ms, mt]
        have = slot >= 0
        have[have] = self._k[slot[have]] >= kmax[have]
        miss = np.flatnonzero(~have)
        if len(miss):
            _, pos = compute(miss)
            fresh = slot[miss] < 0
            new = np.arange(self._used, self._used + int(fresh.sum()), dtype=np.int64)
            self._used += len(new)
            slot[miss[fresh]] = new
            self._slot[ms[miss[fresh]], mt[miss[fresh]]] = new.astype(np.int32)
            if self._used > len(self._k) or width > self._pos.shape[1]:
                cap = max(self._used, 2 * len(self._k), 1024)
                grown_pos = np.zeros((cap, width), dtype=np.uint16)
                grown_pos[:len(self._k), :self._pos.shape[1]] = self._pos
                grown_k = np.zeros(cap, dtype=np.int64)
                grown_k[:len(self._k)] = self._k
                self._pos, self._k = grown_pos, grown_k
            target = slot[miss]
            km = kmax[miss]
            r, j = np.nonzero(np.arange(width, dtype=np.int64)[None, :] < km[:, None])  # CSR order
            self._pos[target[r], j] = pos
            self._k[target] = km
            self.hashed += len(miss)
        self.served += len(kmax) - len(miss)
        ptr = csr_ptr(kmax)
        if len(kmax) and kmax.min() == kmax.max():
            return ptr, self._pos[slot, :int(kmax[0])].astype(np.int32).ravel()
        lane = np.arange(self._pos.shape[1], dtype=np.int64)
        return ptr, self._pos[slot][lane[None, :] < kmax[:, None]].astype(np.int32)


class ValueMemo:
    """Per-value results of pure normalising functions, across the chunks of one run.

    ``apply(kind, uniques, fn)`` returns ``fn(uniques)`` -- a list of object
    arrays, one entry per unique -- calling ``fn`` only on the values not seen
    before under ``kind`` (which names the function and every argument it
    depends on, such as today's date).  Only ``str`` values are memoised (an
    int and a float that compare equal may normalise differently).  At most
    ``max_entries`` results are kept; after that, new values are computed and
    not stored.  The memo holds an export's values: it belongs to one run and
    is dropped with it.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._d: dict[object, dict[str, tuple]] = {}
        self.entries = 0

    def one(self, kind: object, value: object, fn: Callable[[object], tuple]) -> tuple:
        """``fn(value)`` for a single value, through the memo."""
        if type(value) is not str:
            return fn(value)
        d = self._d.get(kind)
        if d is None:
            d = self._d[kind] = {}
        got = d.get(value)
        if got is None:
            got = fn(value)
            if self.entries < self.max_entries:
                d[value] = got
                self.entries += 1
        return got

    def apply(self, kind: object, uniques: np.ndarray,
              fn: Callable[[np.ndarray], list[np.ndarray]]) -> list[np.ndarray]:
        d = self._d.get(kind)
        if d is None:
            d = self._d[kind] = {}
        values = uniques.tolist()
        found = [d.get(v) if type(v) is str else None for v in values]
        miss = [i for i, f in enumerate(found) if f is None]
        if len(miss) == len(values):
            out = fn(uniques)
        else:
            got = fn(uniques[np.array(miss, dtype=np.int64)]) if miss else None
            width = len(got) if got is not None else len(next(f for f in found if f is not None))
            out = [np.empty(len(values), dtype=object) for _ in range(width)]
            hit = [i for i, f in enumerate(found) if f is not None]
            hit_idx = np.array(hit, dtype=np.int64)
            for k in range(width):
                col = np.empty(len(hit), dtype=object)
                col[:] = [found[i][k] for i in hit]
                out[k][hit_idx] = col
                if got is not None:
                    out[k][np.array(miss, dtype=np.int64)] = got[k]
        room = self.max_entries - self.entries
        if room > 0 and miss:
            cols = [o.tolist() for o in out]
            stored = 0
            for i in miss:
                v = values[i]
                if type(v) is str:
                    d[v] = tuple(c[i] for c in cols)
                    stored += 1
                    if stored >= room:
                        break
            self.entries += stored
        return out
