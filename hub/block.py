"""Blocking: which record pairs the model scores.

Three generators, unioned and deduplicated into ``blocked_pairs(match_key,
join_key_l, join_key_r)`` (the table Splink's
``register_blocked_pairs_for_predict`` takes; join keys are ``rid``s with
``join_key_l < join_key_r``):

1. keyed-hash equality on every exact hash (``eh_*``) and blocking key
   (``bk_*``) of the schema -- a value shared by more than ``max_block_size``
   records (a placeholder phone, a default date) is skipped;
   and, for a field with typo keys whose exact hash blocks, equality of any
   of its exact hash and typo keys (``vk_<f>_<j>``, the hashes of a mistyped
   ID number's one-typo corrections) across the columns: a mistyped ID number
   meets its true one, and two typos of one number meet each other;
2. LSH bands over the name and address filters, computed at ingest: a band is
   ``bits_per_band`` bit positions of a filter, sampled once per hub database
   from a seed in ``meta``, hashed together (bit-sampling LSH for Hamming
   distance).  A band with fewer than ``MIN_SET_BITS`` set bits is left null:
   sparse filters agree mostly on zeros, which says nothing;
3. record-CLK candidates from :mod:`hub.candidates` (numba Dice): every pair
   of two datasets at or above the CLK threshold when the datasets' size
   product is small enough to compare exhaustively (a small roster against a
   large one); for two large datasets, optionally (``clk_candidates.lsh``) the
   pairs found by one bit-sampling LSH pass over all CLKs.

So a pair whose ID number was mistyped and whose phone is missing is still
found through its name/address bands or its CLK.

Every keyed and LSH generator yields at most ``max_pairs_per_record`` pairs per
record: its block-size cap is lowered (from the block-size histogram, one
GROUP BY) until its pairs fit, keeping the small, informative blocks.  Without
it, blocks on birth date + sex or on a name band grow with the population and
the pairs quadratically -- fine in a county, not at a million records.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numba
import numpy as np
import pyarrow as pa

from linkage.errors import ConfigError, Problem
from linkage.schema import LinkageSchema

from .runconfig import BlockingConfig, ClkCandidateConfig
from .store import LshBands, RecordLayout, q

MIN_SET_BITS = 2
LSH_TOKENISERS = ("char_ngrams", "pinyin_ngrams")
DEFAULT_BANDS = 8
TARGET_SET_BITS = 8.0  # expected set bits per band: chooses bits_per_band from the filter density
MIN_BAND_BITS, MAX_BAND_BITS = 16, 256
LSH_CLK_ROWS = 24


# ---------------------------------------------------------------- LSH bands


def default_lsh_fields(schema: LinkageSchema) -> tuple[str, ...]:
    """The filter fields banded at ingest: names and addresses (character / pinyin n-grams)."""
    return tuple(f.name for f in schema.filter_fields if f.tokeniser.kind in LSH_TOKENISERS)


def choose_bands(field: str, packed: np.ndarray, valid: np.ndarray, bits: int, seed: int,
                 n_bands: int = DEFAULT_BANDS) -> LshBands:
    """Band parameters for one field from its observed bit density (first ingest only).

    ``bits_per_band`` is chosen so a band holds about ``TARGET_SET_BITS`` set bits.
    """
    rows = packed[valid]
    if len(rows):
        density = float(np.bitwise_count(rows).sum()) / (len(rows) * bits)
    else:
        density = 0.25
    density = min(max(density, 1e-3), 0.5)
    k = int(np.clip(round(TARGET_SET_BITS / density), MIN_BAND_BITS, min(MAX_BAND_BITS, bits)))
    return LshBands(field=field, bits_per_band=k, n_bands=n_bands, seed=seed)


def band_positions(bands: LshBands, bits: int) -> np.ndarray:
    """The sampled bit positions, ``(n_bands, bits_per_band)`` int32, fixed by the seed and field."""
    rng = np.random.default_rng([bands.seed, zlib.crc32(bands.field.encode())])
    out = np.empty((bands.n_bands, bands.bits_per_band), dtype=np.int32)
    for j in range(bands.n_bands):
        out[j] = np.sort(rng.choice(bits, size=bands.bits_per_band, replace=False))
    return out


@numba.njit(cache=True, nogil=True)
def _mix(h):
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


@numba.njit(cache=True, nogil=True)
def _band_values(packed, valid, positions, min_set, out, out_valid):
    n = packed.shape[0]
    n_bands, k = positions.shape
    for r in range(n):
        if not valid[r]:
            continue
        for j in range(n_bands):
            h = np.uint64(0x9E3779B97F4A7C15) * np.uint64(j + 1)
            acc = np.uint64(0)
            ones = 0
            for t in range(k):
                p = positions[j, t]
                bit = (packed[r, p >> 3] >> (7 - (p & 7))) & 1
                ones += bit
                acc |= np.uint64(bit) << np.uint64(t & 63)
                if (t & 63) == 63:
                    h = _mix(h ^ acc)
                    acc = np.uint64(0)
            h = _mix(h ^ acc)
            if ones >= min_set:
                out[r, j] = np.int64(h)
                out_valid[r, j] = True


def band_values(packed: np.ndarray, valid: np.ndarray, bands: LshBands, bits: int,
                min_set_bits: int = MIN_SET_BITS) -> tuple[np.ndarray, np.ndarray]:
    """Band hashes ``(n, n_bands)`` int64 and their validity for packed filters ``(n, bits/8)`` uint8."""
    n = packed.shape[0]
    out = np.zeros((n, bands.n_bands), dtype=np.int64)
    ok = np.zeros((n, bands.n_bands), dtype=np.bool_)
    if n:
        _band_values(np.ascontiguousarray(packed, dtype=np.uint8), np.ascontiguousarray(valid, dtype=np.bool_),
                     band_positions(bands, bits), min_set_bits, out, ok)
    return out, ok


# ---------------------------------------------------------------- pair SQL


def keyed_pairs_sql(source: str, column: str) -> str:
    """Input: ``source(rid, <column>)``; bound: match key, max block size.
    Output: (mk, rid_l, rid_r) for every pair sharing ``column``, ``rid_l < rid_r``,
    values held by more than max block size records skipped."""
    c = q(column)
    return (
        f"WITH k AS (SELECT rid, {c} AS v FROM {q(source)} WHERE {c} IS NOT NULL"
        f" QUALIFY count(*) OVER (PARTITION BY {c}) <= ?)"
        f" SELECT CAST(? AS INTEGER) AS mk, l.rid AS rid_l, r.rid AS rid_r"
        f" FROM k l JOIN k r ON l.v = r.v AND l.rid < r.rid"
    )


def banded_pairs_sql(source: str, columns: Sequence[str], across: bool = False) -> str:
    """Input: ``source(rid, <band columns>)``; bound: max block size, match key.
    Output: (mk, rid_l, rid_r) for every pair sharing the value of at least one band column
    (duplicates across bands removed), band values held by more than max block size records skipped.
    ``across``: a value in one column also meets the same value in another (keyed hashes of one
    field: an exact hash and typo keys)."""
    cols = ", ".join(q(c) for c in columns)
    band = "" if across else "band, "
    return (
        f"WITH long AS (UNPIVOT (SELECT rid, {cols} FROM {q(source)}) ON {cols} INTO NAME band VALUE v),"
        f" k AS (SELECT rid, {band}v FROM long QUALIFY count(*) OVER (PARTITION BY {band}v) <= ?)"
        f" SELECT DISTINCT CAST(? AS INTEGER) AS mk, l.rid AS rid_l, r.rid AS rid_r"
        f" FROM k l JOIN k r ON {'l.band = r.band AND ' if not across else ''}l.v = r.v AND l.rid < r.rid"
    )


def keyed_block_sizes_sql(source: str, column: str) -> str:
    """Input: ``source(<column>)``.  Output: (block size n, number of values held by n records), n >= 2."""
    c = q(column)
    return (f"SELECT n, count(*) AS blocks FROM (SELECT count(*) AS n FROM {q(source)} WHERE {c} IS NOT NULL"
            f" GROUP BY {c}) WHERE n >= 2 GROUP BY n ORDER BY n")


def banded_block_sizes_sql(source: str, columns: Sequence[str], across: bool = False) -> str:
    """Input: ``source(<band columns>)``.  Output: (block size n, number of (band, value) -- or, ``across``,
    of values -- held by n records)."""
    cols = ", ".join(q(c) for c in columns)
    group = "v" if across else "band, v"
    return (f"WITH long AS (UNPIVOT (SELECT {cols} FROM {q(source)}) ON {cols} INTO NAME band VALUE v)"
            f" SELECT n, count(*) AS blocks FROM (SELECT count(*) AS n FROM long GROUP BY {group})"
            f" WHERE n >= 2 GROUP BY n ORDER BY n")


def block_size_cap(histogram: Sequence[tuple[int, int]], budget: float, ceiling: int) -> tuple[int, int]:
    """The largest block size ``cap <= ceiling`` whose blocks (all of size <= cap) yield at most
    ``budget`` pairs, and those pairs.  ``histogram``: (block size, number of blocks), ascending.

    Small blocks are the informative ones (a rare value); capping keeps them and drops the
    common values first, so every generator's pairs stay linear in the number of records.
    """
    cap, pairs = 1, 0
    for n, blocks in histogram:
        if n > ceiling:
            break
        more = blocks * n * (n - 1) // 2
        if pairs + more > budget:
            break
        cap, pairs = n, pairs + more
    return cap, pairs


def union_pairs_sql(parts: Sequence[str], output: str) -> str:
    """Input: ``parts``, tables of (mk, rid_l, rid_r).  Output: table ``output(match_key, join_key_l,
    join_key_r)``, one row per distinct pair with the smallest match key that found it."""
    union = " UNION ALL ".join(f"SELECT mk, rid_l, rid_r FROM {q(p)}" for p in parts)
    return (
        f"CREATE OR REPLACE TABLE {q(output)} AS"
        f" SELECT CAST(min(mk) AS VARCHAR) AS match_key, rid_l AS join_key_l, rid_r AS join_key_r"
        f" FROM ({union}) GROUP BY rid_l, rid_r"
    )


def pairs_per_rule_sql(blocked: str) -> str:
    """Input: ``blocked(match_key, ...)``.  Output: (match_key, pairs) found first by each rule."""
    return f"SELECT match_key, count(*) AS n FROM {q(blocked)} GROUP BY match_key ORDER BY CAST(match_key AS INTEGER)"


def blocking_recall_sql(blocked: str, truth: str) -> str:
    """Input: ``blocked(join_key_l, join_key_r)`` and ``truth(rid_l, rid_r)`` with rid_l < rid_r.
    Output: (true pairs, true pairs found by blocking)."""
    return (
        f"SELECT count(*) AS n_true, count(b.join_key_l) AS n_found FROM {q(truth)} t"
        f" LEFT JOIN {q(blocked)} b ON b.join_key_l = t.rid_l AND b.join_key_r = t.rid_r"
    )


@dataclass(frozen=True)
class BlockingRuleInfo:
    """One generator of blocked pairs, as reported."""

    match_key: int
    kind: str  # keyed | lsh | clk
    description: str
    pairs_first_found: int = 0
    seconds: float = 0.0

    def as_doc(self) -> dict:
        return {"match_key": self.match_key, "kind": self.kind, "rule": self.description,
                "pairs_first_found": self.pairs_first_found, "seconds": round(self.seconds, 3)}


# ---------------------------------------------------------------- running it


def clk_candidate_pairs(con: duckdb.DuckDBPyConnection, source: str, clk_bytes: int,
                        cfg: ClkCandidateConfig, seed: int) -> tuple[pa.Table, pa.Table, dict]:
    """Record-CLK candidates (:mod:`hub.candidates`): (exhaustive pairs, LSH pairs) as (rid_l, rid_r).

    Two datasets (or one with itself) whose pair count is at most
    ``exhaustive_max_pairs`` are compared exhaustively; if any two are larger
    and ``cfg.lsh`` is set, one bit-sampling LSH pass over all records covers
    them (tuned for 99 % recall at the threshold).  Measured at a million
    records in seven datasets: the LSH pass scored 1.5e10 pairs in 7.8 minutes
    on two cores (CLKs of one county agree on many bits), so it is off by
    default and the field bands stand in.  Both keep only pairs at or above the
    CLK Dice threshold, and at most ``k`` per record where ``k`` is set.
    """
    from .candidates import (
        choose_strategy,
        dice_candidates,
        lsh_bands_for_recall,
        lsh_candidates,
        pack_filters,
    )

    rows = con.sql(select_clk_sql(source)).to_arrow_table()
    rids = rows.column("rid").to_numpy()
    words = pack_filters(rows.column("clk").cast(pa.binary(clk_bytes)))
    datasets = np.asarray(rows.column("dataset").to_pylist(), dtype=object)
    groups = {d: np.flatnonzero(datasets == d) for d in sorted(set(datasets.tolist()))}
    names = sorted(groups)
    stats: dict = {"exhaustive_dataset_pairs": 0, "exhaustive_pairs_compared": 0, "exhaustive_candidates": 0,
                   "dataset_pairs_not_compared": 0, "lsh": None}
    ex_l: list[np.ndarray] = []
    ex_r: list[np.ndarray] = []
    large = False
    for i, a in enumerate(names):
        for b in names[i:]:
            na, nb = len(groups[a]), len(groups[b])
            n_pairs = na * (na - 1) // 2 if a == b else na * nb
            if n_pairs == 0:
                continue
            if choose_strategy(n_pairs, 1, max_pairs=cfg.exhaustive_max_pairs) != "exhaustive":
                large = True
                stats["dataset_pairs_not_compared"] += 1
                continue
            ga = groups[a]
            res = dice_candidates(words[ga], None if a == b else words[groups[b]], threshold=cfg.threshold, k=cfg.k)
            ex_l.append(rids[ga[res.left]])
            ex_r.append(rids[(ga if a == b else groups[b])[res.right]])
            stats["exhaustive_dataset_pairs"] += 1
            stats["exhaustive_pairs_compared"] += int(n_pairs)
            stats["exhaustive_candidates"] += len(res)
    lsh_l: list[np.ndarray] = []
    lsh_r: list[np.ndarray] = []
    if large and cfg.lsh:
        ones = float(np.bitwise_count(words).sum()) / max(1, words.size * 64)
        bands = lsh_bands_for_recall(cfg.threshold, rows_per_band=LSH_CLK_ROWS, recall=0.99,
                                     ones_fraction=min(max(ones, 0.05), 0.5), nbits=words.shape[1] * 64)
        res = lsh_candidates(words, None, bands=bands, rows_per_band=LSH_CLK_ROWS, seed=seed,
                             threshold=cfg.threshold)
        lsh_l.append(rids[res.left])
        lsh_r.append(rids[res.right])
        stats["lsh"] = {"bands": bands, "rows_per_band": LSH_CLK_ROWS, "candidates": len(res),
                        "pairs_scored": res.stats.get("pairs_scored")}
    return _ordered_pairs(ex_l, ex_r), _ordered_pairs(lsh_l, lsh_r), stats


def _ordered_pairs(left: list[np.ndarray], right: list[np.ndarray]) -> pa.Table:
    if not left:
        return pa.table({"rid_l": pa.array([], pa.int64()), "rid_r": pa.array([], pa.int64())})
    a = np.concatenate(left).astype(np.int64)
    b = np.concatenate(right).astype(np.int64)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    keep = lo != hi
    return pa.table({"rid_l": lo[keep], "rid_r": hi[keep]})


def select_clk_sql(source: str) -> str:
    """Input: ``source(rid, dataset, clk)``.  Output: those columns ordered by rid."""
    return f"SELECT rid, dataset, clk FROM {q(source)} ORDER BY rid"


def arrow_pairs_sql(arrow_name: str) -> str:
    """Input: a registered Arrow table ``arrow_name(rid_l, rid_r)``; bound: match key.
    Output: (mk, rid_l, rid_r)."""
    return f"SELECT CAST(? AS INTEGER) AS mk, rid_l, rid_r FROM {q(arrow_name)}"


def create_table_as_sql(name: str, query: str) -> str:
    """Output: table ``name`` holding ``query`` (whose input tables its builder names)."""
    return f"CREATE OR REPLACE TABLE {q(name)} AS {query}"


@dataclass
class BlockingResult:
    table: str
    rules: list[BlockingRuleInfo]
    pairs: int
    seconds: float
    clk_stats: dict

    def as_doc(self) -> dict:
        return {"pairs": self.pairs, "seconds": round(self.seconds, 3),
                "rules": [r.as_doc() for r in self.rules], "clk": self.clk_stats}


def build_blocked_pairs(con: duckdb.DuckDBPyConnection, source: str, layout: RecordLayout,
                        cfg: BlockingConfig, output: str = "blocked_pairs") -> BlockingResult:
    """Run every pair generator over ``source`` (the ``records`` columns) into table ``output``."""
    t0 = time.perf_counter()
    rules: list[BlockingRuleInfo] = []
    parts: list[str] = []
    keys = cfg.keys if cfg.keys is not None else layout.exact + layout.keys
    unknown = [c for c in keys if c not in layout.exact + layout.keys]
    if unknown:
        raise ConfigError("run config", [Problem("$.blocking.keys", f"{c} is not a keyed-hash column of the schema")
                                         for c in unknown])
    n_records = con.execute(count_rows_sql(source)).fetchall()[0][0]
    budget = cfg.max_pairs_per_record * n_records
    for c in keys:
        mk = len(rules)
        name = f"bp_{mk}"
        t = time.perf_counter()
        cap, _ = block_size_cap(con.execute(keyed_block_sizes_sql(source, c)).fetchall(), budget, cfg.max_block_size)
        con.execute(create_table_as_sql(name, keyed_pairs_sql(source, c)), [cap, mk])
        rules.append(BlockingRuleInfo(mk, "keyed", f"{c} equal (blocks of at most {cap})",
                                      seconds=time.perf_counter() - t))
        parts.append(name)
    for fname, cols in layout.typo.items():
        if f"eh_{fname}" not in keys:
            continue
        mk = len(rules)
        name = f"bp_{mk}"
        t = time.perf_counter()
        both = (f"eh_{fname}", *cols)
        cap, _ = block_size_cap(con.execute(banded_block_sizes_sql(source, both, across=True)).fetchall(),
                                budget, cfg.max_block_size)
        con.execute(create_table_as_sql(name, banded_pairs_sql(source, both, across=True)), [cap, mk])
        rules.append(BlockingRuleInfo(mk, "keyed", f"{fname}: exact hash or one of {len(cols)} typo keys"
                                      f" shared (blocks of at most {cap})", seconds=time.perf_counter() - t))
        parts.append(name)
    if cfg.lsh.enabled:
        fields = cfg.lsh.fields if cfg.lsh.fields is not None else tuple(b.field for b in layout.lsh)
        by_field = {b.field: b for b in layout.lsh}
        for fname in fields:
            if fname not in by_field:
                raise ConfigError("run config", [Problem("$.blocking.lsh.fields",
                                                         f"{fname} has no LSH bands in this hub database")])
            b = by_field[fname]
            mk = len(rules)
            name = f"bp_{mk}"
            t = time.perf_counter()
            cap, _ = block_size_cap(con.execute(banded_block_sizes_sql(source, b.columns)).fetchall(), budget,
                                    cfg.lsh.max_block_size)
            con.execute(create_table_as_sql(name, banded_pairs_sql(source, b.columns)), [cap, mk])
            rules.append(BlockingRuleInfo(mk, "lsh", f"{fname}: {b.n_bands} bands of {b.bits_per_band} sampled bits"
                                          f" (blocks of at most {cap})", seconds=time.perf_counter() - t))
            parts.append(name)
    clk_stats: dict = {}
    if cfg.clk_candidates.enabled:
        seed = layout.lsh[0].seed if layout.lsh else 0
        t = time.perf_counter()
        exhaustive, lsh, clk_stats = clk_candidate_pairs(con, source, layout.clk_bytes, cfg.clk_candidates, seed)
        clk_stats["seconds"] = round(time.perf_counter() - t, 3)
        for label, tbl in (("exhaustive", exhaustive), ("lsh", lsh)):
            mk = len(rules)
            name = f"bp_{mk}"
            con.register("bp_arrow", tbl)
            try:
                con.execute(create_table_as_sql(name, arrow_pairs_sql("bp_arrow")), [mk])
            finally:
                con.unregister("bp_arrow")
            rules.append(BlockingRuleInfo(mk, "clk", f"record CLK Dice >= {cfg.clk_candidates.threshold:g} ({label})"))
            parts.append(name)
    if not parts:
        raise ConfigError("run config", [Problem("$.blocking", "no pair generator is enabled")])
    con.execute(union_pairs_sql(parts, output))
    counts = dict(con.execute(pairs_per_rule_sql(output)).fetchall())
    rules = [BlockingRuleInfo(r.match_key, r.kind, r.description, int(counts.get(str(r.match_key), 0)), r.seconds)
             for r in rules]
    for p in parts:
        con.execute(drop_table_sql(p))
    total = con.execute(count_rows_sql(output)).fetchall()[0][0]
    return BlockingResult(output, rules, int(total), time.perf_counter() - t0, clk_stats)


def drop_table_sql(name: str) -> str:
    """Output: table ``name`` dropped."""
    return f"DROP TABLE IF EXISTS {q(name)}"


def count_rows_sql(name: str) -> str:
    """Input: table ``name``.  Output: its row count."""
    return f"SELECT count(*) FROM {q(name)}"
