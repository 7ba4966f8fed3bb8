"""Results kept across the calls of one run: derived tables (encoding), normalised values.

An export is encoded chunk by chunk.  :class:`RunMemo` (``linkage.encode.
EncodeCache``) keeps, for the run, what every chunk would otherwise derive
again from the secret: the keyed permutations of the filters (a Fisher--Yates
shuffle over an HMAC stream, a few milliseconds each).  Keyed hashes of the
records themselves are not kept: since encoding v3 a batch of messages costs
one AES pass per block (:mod:`.prf`), and measured on the synthetic benchmark
export (975,000 rows, 25,000-row chunks, one process) looking messages up in a
run memo was slower than hashing them again (25.7 against 24.3 CPU-us a row)
while it held up to 24 MiB per process.  The memo holds values derived from the
linkage secret: it belongs to one run in one process and is dropped with it
(``agency_kit.encode`` keeps it for the run only); nothing here is global.

:class:`ValueMemo` does the same for the slow per-value paths of
:mod:`linkage.normalise` (addresses, names with a middle dot), by value, at
most ``max_entries`` values.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


class RunMemo:
    """Small tables derived from the secret, made once per run (the filters' permutations)."""

    def __init__(self) -> None:
        self._derived: dict[object, object] = {}

    def derived(self, what: object, make: Callable[[], object]) -> object:
        """``make()``, once per ``what`` for the run."""
        got = self._derived.get(what)
        if got is None:
            got = self._derived[what] = make()
        return got


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
