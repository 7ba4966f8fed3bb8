"""Results kept across the calls of one run: keyed hashes (encoding), normalised values.

An export is encoded chunk by chunk, and the same messages come back chunk
after chunk: a name bigram under the same birth-year salt, a positional digit
gram of a phone number, a (birth date, sex) blocking key.  Hashing each one
once per *run* rather than once per chunk is the largest saving there is,
since HMAC-SHA256 (about 1.3 us a call through ``cryptography``) is most of
the encoder's work.

Exactness first: a message is known by exact integer ids, never by a hash of
it -- a token's id comes from a dict of the token strings seen so far (per
field), a salt's from a dict of the salt values (per salt field), and the
memo key of a (salt, token) message is ``salt_id << 32 | token_id``.  What is
stored is exactly what :func:`.hashing.token_positions` returned for that
message under that key, so a result from the memo is the result of hashing.

Positions are kept as a row of uint16 per message -- ``k`` of them for a
``bits_per_token`` part (42 bytes a message with k = 15), up to 32 for a
``bits_per_feature`` part (an address bigram: its ``k`` depends on the
length of the address it is in), with the number kept; exact hashes and
blocking keys as int64 by message, where they repeat (a birth date and sex --
not an ID number: that memo switches itself off).

Memory is bounded: a :class:`RunMemo` stops storing new results once its
tables reach ``max_bytes`` (lookups go on); int results stop within a call
too (a chunk's typo keys alone are 35 distinct messages a row), positions
after the call that reaches it (a chunk's new positions: a few MB).  32 MiB by default: on the
synthetic benchmark export (a process encoding every other 25,000-row chunk of
1,000,000 rows), 7.0 HMAC calls a row against 12.3 with no memo, 8.1 with
16 MiB and 6.9 with 64 MiB (encoding v1; with v2's 16-bit words a name bigram
needs one call instead of two).  The memo holds derived keys (as dict keys) and
values derived from the linkage secret: it belongs to one run in one process
and is dropped with it (``agency_kit.encode`` keeps it for the run only);
nothing here is global.

:class:`ValueMemo` does the same for the slow per-value paths of
:mod:`linkage.normalise` (addresses, names with a middle dot), by value, at
most ``max_entries`` values.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np

_GROW = 1.5
_INT_ENTRY_BYTES = 110  # an IntMemo entry besides its message's bytes: the bytes object, dict slot, int (rough)


class TokenIds:
    """Dense, stable ids for strings (the distinct tokens or salt values of one field)."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self.nbytes = 0

    def ids(self, strings: Sequence[str], add: bool = True) -> np.ndarray:
        """The id of every string (-1 for a string not seen before, unless ``add``)."""
        d = self._ids
        out = np.array(list(map(d.get, strings, itertools.repeat(-1, len(strings)))), dtype=np.int64)
        new = np.flatnonzero(out < 0)
        if len(new) and add:
            for i in new.tolist():
                s = strings[i]
                got = d.get(s)  # a string may be listed twice
                if got is None:
                    got = d[s] = len(d)
                    self.nbytes += 2 * len(s) + 120  # the str, its dict slot and int (rough)
                out[i] = got
        return out

    def __len__(self) -> int:
        return len(self._ids)


class PositionMemo:
    """Bit positions (up to ``width`` per message, each below 2**16) by integer message key.

    Row ``r`` holds a message's first ``have[r]`` positions (the rest of the row
    is unused): a message hashed for a smaller ``k`` than the one now asked
    for is hashed again and its row replaced.  Keys are kept sorted
    (``np.searchsorted`` to look up, ``np.insert`` to add, both linear at
    worst), positions in an append-only array.
    """

    def __init__(self, width: int) -> None:
        self.width = width
        self.keys = np.zeros(0, dtype=np.int64)
        self.rows = np.zeros(0, dtype=np.int32)
        self.store = np.zeros((0, width), dtype=np.uint16)
        self.have = np.zeros(0, dtype=np.uint16)
        self.size = 0

    @property
    def k(self) -> int:  # the width, under its old name
        return self.width

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.rows.nbytes + self.store.nbytes + self.have.nbytes

    def lookup(self, q: np.ndarray) -> np.ndarray:
        """Row in the store of every key of ``q`` (-1 where not stored)."""
        n = len(self.keys)
        if not n or not len(q):
            return np.full(len(q), -1, dtype=np.int64)
        i = np.searchsorted(self.keys, q)
        j = np.minimum(i, n - 1)
        hit = self.keys[j] == q
        return np.where(hit, self.rows[j].astype(np.int64), -1)

    def add(self, q: np.ndarray, pos: np.ndarray, have: np.ndarray | None = None) -> None:
        """Store ``pos[i]`` (a row of ``width`` positions, the first ``have[i]`` of them
        real; all of them when ``have`` is None) under key ``q[i]``; ``q`` unique and
        not stored yet."""
        m = len(q)
        if not m:
            return
        if have is None:
            have = np.full(m, self.width, dtype=np.uint16)
        order = np.argsort(q, kind="stable")
        q, pos, have = q[order], pos[order], have[order]
        if self.size + m > len(self.store):
            cap = max(int(len(self.store) * _GROW), self.size + m, 1024)
            grown = np.empty((cap, self.width), dtype=np.uint16)
            grown[:self.size] = self.store[:self.size]
            self.store = grown
            grown_have = np.zeros(cap, dtype=np.uint16)
            grown_have[:self.size] = self.have[:self.size]
            self.have = grown_have
        self.store[self.size:self.size + m] = pos
        self.have[self.size:self.size + m] = have
        rows = np.arange(self.size, self.size + m, dtype=np.int32)
        self.size += m
        at = np.searchsorted(self.keys, q)
        self.keys = np.insert(self.keys, at, q)
        self.rows = np.insert(self.rows, at, rows)

    def replace(self, rows: np.ndarray, pos: np.ndarray, have: np.ndarray) -> None:
        """Rows ``rows`` (stored already) get longer prefixes of their positions."""
        self.store[rows] = pos
        self.have[rows] = have

    def take(self, rows: np.ndarray) -> np.ndarray:
        return self.store[rows]


class IntMemo:
    """int64 results (exact hashes, blocking keys) by message bytes.

    Only worth it where messages repeat across chunks (a birth date and sex,
    not an ID number): after a call (not the first) in which fewer than
    ``min_hit_rate`` of the messages were found, with ``min_size`` or more
    stored, the memo empties itself and stays off.
    """

    def __init__(self, min_hit_rate: float = 0.1, min_size: int = 20_000,
                 budget: Callable[[], int] | None = None) -> None:
        self._d: dict[bytes, int] = {}
        self.on = True
        self.calls = 0
        self.nbytes = 0
        self._min_hit_rate = min_hit_rate
        self._min_size = min_size
        self._budget = budget  # bytes this memo may still add (its run's room), None: no limit

    def compute(self, messages: list[bytes], fn: Callable[[list[bytes]], np.ndarray],
                store: bool) -> np.ndarray:
        """``fn(messages)``, calling ``fn`` only on the messages not stored."""
        if not self.on or not messages:
            return fn(messages)
        d = self._d
        found = list(map(d.get, messages))
        miss = [i for i, v in enumerate(found) if v is None]
        if miss:
            values = fn([messages[i] for i in miss])
            for i, v in zip(miss, values.tolist(), strict=True):
                found[i] = v
            if store:
                # within the run's budget, however many messages one call brings (a chunk's typo
                # keys: 35 distinct messages a row)
                room = self._budget() if self._budget is not None else 1 << 62
                added = 0
                for i, v in zip(miss, values.tolist(), strict=True):
                    if added >= room:
                        break
                    m = messages[i]
                    d[m] = v
                    added += len(m) + _INT_ENTRY_BYTES
                self.nbytes += added
        self.calls += 1
        if (self.calls > 1 and len(d) >= self._min_size
                and len(messages) - len(miss) < self._min_hit_rate * len(messages)):
            self._d = {}
            self.nbytes = 0
            self.on = False
        return np.array(found, dtype=np.int64)


class RunMemo:
    """Everything memoised for one run, within ``max_bytes`` (roughly) of tables."""

    def __init__(self, max_bytes: int = 32 << 20) -> None:
        self.max_bytes = max_bytes
        self._tokens: dict[object, TokenIds] = {}
        self._positions: dict[tuple[bytes, int, int], PositionMemo] = {}
        self._ints: dict[bytes, IntMemo] = {}
        self._derived: dict[object, object] = {}

    @property
    def nbytes(self) -> int:
        return (sum(t.nbytes for t in self._tokens.values())
                + sum(p.nbytes for p in self._positions.values())
                + sum(i.nbytes for i in self._ints.values()))

    @property
    def room(self) -> bool:
        """Is there room to store more?"""
        return self.nbytes < self.max_bytes

    def token_ids(self, what: object) -> TokenIds:
        """The id table for ``what`` (a hashable naming a field's tokens or its salt values)."""
        t = self._tokens.get(what)
        if t is None:
            t = self._tokens[what] = TokenIds()
        return t

    def positions(self, key: bytes, width: int, length: int) -> PositionMemo:
        """The positions kept for messages hashed under ``key`` into ``length`` bits,
        up to ``width`` a message."""
        p = self._positions.get((key, width, length))
        if p is None:
            p = self._positions[(key, width, length)] = PositionMemo(width)
        return p

    def derived(self, what: object, make: Callable[[], object]) -> object:
        """``make()``, once per ``what`` for the run (small derived tables: permutations)."""
        got = self._derived.get(what)
        if got is None:
            got = self._derived[what] = make()
        return got

    def ints(self, key: bytes) -> IntMemo:
        m = self._ints.get(key)
        if m is None:
            m = self._ints[key] = IntMemo(budget=lambda: self.max_bytes - self.nbytes)
        return m


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
