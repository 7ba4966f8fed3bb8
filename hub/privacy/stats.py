"""What the hub can see in the encodings it holds, and the attacks run on a sample.

A small, stable API for the linkage report and ``linkage-hub privacy``:

* :func:`bit_statistics` -- one filter column (Bloom filters or the CLK):
  per-position frequency and entropy, the Hamming-weight distribution, and
  how many records share an identical filter (the frequency attack's
  foothold).
* :func:`key_statistics` -- one keyed exact hash or blocking key: how many
  distinct values, the largest classes, the share of records whose value
  is shared (a keyed hash shows each value's frequency).
* :func:`attack_sample` -- every attack that needs only what the hub has
  (the encodings, the schema, a public frequency table) run on a sample of
  the encodings: per column, what the attack could do -- classes aligned,
  patterns mined and labelled, records it would claim to re-identify.
  Whether a claim is *right* needs the plaintext, which the hub never has:
  ``truth`` (a normalised frame, lab use only) adds the measured figures.
* :func:`sample_store` -- a random sample of the hub database's records
  (optionally of some packages only) as the encoded-record table the
  attacks take, salt banks included; :func:`report_public` -- the public
  table the linkage report attacks with (a smaller synthetic one, cached).

Every figure is a count, a share or a statistic of bits: no value, token or
filter leaves these functions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from linkage.schema import LinkageSchema

from . import attacks
from .knowledge import Target, synthetic_public, targets_of, units_of
from .matrix import distinct_rows, packed_column, unpack

__all__ = ["attack_sample", "bit_statistics", "key_statistics", "report_public", "sample_store"]


def _binary_entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def bit_statistics(column, bits: int | None = None, histogram_bins: int = 32) -> dict[str, Any]:
    """Bit-frequency statistics of one filter column.

    ``column``: an Arrow fixed-size binary column (nulls skipped), a packed
    ``(rows, bytes)`` uint8 array, or an unpacked ``(rows, bits)`` 0/1 array
    (``bits`` given or 2-D of 0/1 with more than 8 columns... pass ``bits`` for
    packed input to drop padding).  Returns:

    ``records`` (non-null), ``length`` (bits), ``position_frequency`` (share of
    records with each bit set, one float per position), ``frequency`` summary
    (min, max, mean, sd, share of positions never set / always set),
    ``entropy`` (mean and min per-position entropy in bits; 1 is a fair coin),
    ``hamming_weight`` (mean, sd, min, max, histogram ``{edges, counts}``),
    ``distinct`` (distinct filters), ``shared`` (share of records whose exact
    filter another record also has) and ``largest_class`` (records sharing the
    most common filter).
    """
    if isinstance(column, np.ndarray) and column.ndim == 2 and column.dtype == bool:
        mat = column.astype(np.uint8)
        packed = np.packbits(mat, axis=1)
    elif isinstance(column, np.ndarray) and column.ndim == 2 and bits is None and column.shape[1] > 64 \
            and column.max(initial=0) <= 1:
        mat = column.astype(np.uint8)
        packed = np.packbits(mat, axis=1)
    else:
        packed, valid = packed_column(column)
        packed = packed[valid]
        mat = unpack(packed, bits)
    n, L = mat.shape
    out: dict[str, Any] = {"records": int(n), "length": int(L)}
    if n == 0:
        return out
    freq = mat.mean(0)
    ent = _binary_entropy(freq)
    hw = mat.sum(1)
    counts, edges = np.histogram(hw, bins=min(histogram_bins, max(1, int(hw.max() - hw.min()) + 1)))
    codes, _ = distinct_rows(packed)
    sizes = np.bincount(codes)
    out.update(
        position_frequency=[round(float(x), 5) for x in freq],
        frequency={"min": float(freq.min()), "max": float(freq.max()), "mean": float(freq.mean()),
                   "sd": float(freq.std()), "never_set": float((freq == 0).mean()),
                   "always_set": float((freq == 1).mean())},
        entropy={"mean": float(ent.mean()), "min": float(ent.min())},
        hamming_weight={"mean": float(hw.mean()), "sd": float(hw.std()), "min": int(hw.min()),
                        "max": int(hw.max()),
                        "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}},
        distinct=len(sizes),
        shared=float(sizes[codes].__ge__(2).mean()),
        largest_class=int(sizes.max()),
    )
    return out


def key_statistics(column) -> dict[str, Any]:
    """Frequency statistics of one keyed exact hash or blocking-key column (int64,
    nulls skipped): ``records``, ``distinct``, ``largest_classes`` (the ten
    largest class sizes), ``shared`` (share of records whose value another record
    has), ``in_classes_of_10`` (share in classes of ten or more) and ``entropy``
    (bits) against its maximum ``log2(records)``."""
    if isinstance(column, pa.ChunkedArray | pa.Array):
        arr = column.drop_null().to_numpy(zero_copy_only=False)
    else:
        arr = pd.Series(column).dropna().to_numpy()
    n = len(arr)
    if n == 0:
        return {"records": 0, "distinct": 0}
    _, sizes = np.unique(arr, return_counts=True)
    per_record = np.repeat(sizes, sizes)
    p = sizes / n
    return {
        "records": int(n), "distinct": len(sizes),
        "largest_classes": [int(x) for x in np.sort(sizes)[::-1][:10]],
        "shared": float((per_record >= 2).mean()),
        "in_classes_of_10": float((per_record >= 10).mean()),
        "entropy": float(-(p * np.log2(p)).sum()), "entropy_max": math.log2(n) if n > 1 else 0.0,
    }


def _table(encodings) -> pa.Table:
    if isinstance(encodings, pa.Table):
        return encodings
    if isinstance(encodings, pd.DataFrame):
        return pa.Table.from_pandas(encodings, preserve_index=False)
    raise TypeError("encodings must be an Arrow table or a pandas DataFrame")


def attack_sample(encodings, schema: LinkageSchema, *, public: pd.DataFrame | None = None,
                  sample_size: int = 2000, seed: int = 0, truth: pd.DataFrame | None = None,
                  attacks_to_run: tuple[str, ...] = ("frequency", "pattern_mining", "keyed_hash",
                                                     "bank_linking"),
                  columns: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Run the attacks that need only what the hub has on a sample of ``encodings``.

    ``encodings``: the encoded-record table (``bf_*``, ``eh_*``, ``bk_*``,
    ``clk`` columns; others ignored).  ``public``: the public frequency table,
    normalised with ``schema`` (default: :func:`hub.privacy.knowledge.synthetic_public`).
    ``truth``: the normalised plaintext of the same rows, in the same order --
    for the lab and tests only; without it the result holds what the attack
    claims, not whether it is right.

    ``columns``: the columns to attack (default: the name-like filters -- the
    public table holds name frequencies -- the CLK and every keyed hash and
    blocking key; other filters get statistics only).

    Returns ``{"sample": n, "columns": {column: {"statistics": ..., attack: {...}}}}``.
    The graph attack is not run here: it needs a plaintext reference
    population and known pairs, which the hub does not have (the lab runs it).
    """
    table = _table(encodings)
    n = table.num_rows
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(n, size=min(sample_size, n), replace=False)) if n else np.zeros(0, np.int64)
    table = table.take(pa.array(pick, type=pa.int64()))
    if truth is not None:
        truth = truth.iloc[pick].reset_index(drop=True)
    if public is None:
        public = synthetic_public(schema)
    out: dict[str, Any] = {"sample": len(pick), "records": int(n), "columns": {}}
    for target in targets_of(schema):
        if target.column not in table.column_names:
            continue
        if columns is not None and target.column not in columns:
            continue
        if columns is None and target.kind == "filter" and not _name_like(schema, target):
            res = {"kind": target.kind}
            packed, valid = packed_column(table.column(target.column))
            res["statistics"] = {k: v for k, v in bit_statistics(packed[valid], bits=target.length).items()
                                 if k != "position_frequency"}
            out["columns"][target.column] = res  # statistics only: no public table for IDs, phones
            continue
        out["columns"][target.column] = _attack_column(target, table, schema, public, truth, attacks_to_run,
                                                       rng)
    return out


def _attack_column(target: Target, table: pa.Table, schema: LinkageSchema, public: pd.DataFrame,
                   truth: pd.DataFrame | None, which: tuple[str, ...],
                   rng: np.random.Generator) -> dict[str, Any]:
    column = table.column(target.column)
    res: dict[str, Any] = {"kind": target.kind}
    scored = units_of(target, truth)[1] if truth is not None else None
    if target.kind == "hash":
        res["statistics"] = key_statistics(column)
        if "keyed_hash" in which:
            arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
            valid = arr.is_valid().to_numpy(zero_copy_only=False)
            codes = arr.fill_null(0).to_numpy(zero_copy_only=False)
            g = attacks.keyed_hash_attack(target, codes, valid, public)
            res["keyed_hash"] = _summary(g, target, scored)
        return res
    packed, valid = packed_column(column)
    res["statistics"] = {k: v for k, v in bit_statistics(packed[valid], bits=target.length).items()
                         if k != "position_frequency"}
    if not _public_covers(target, public):
        res["skipped"] = "the public table has no values for this column's fields"
        return res
    if "frequency" in which:
        g = attacks.frequency_attack(target, packed, valid, public, schema, rng=rng)
        res["frequency"] = _summary(g, target, scored)
    if "pattern_mining" in which and target.kind == "filter":
        g = attacks.pattern_mining_attack(target, packed, valid, public, schema, rng=rng)
        res["pattern_mining"] = _summary(g, target, scored)
    bank = f"sb_{target.fields[0]}"
    if "bank_linking" in which and target.kind == "filter" and bank in table.column_names:
        g = attacks.bank_linking_attack(target, packed, valid, table.column(bank), public, schema, rng=rng)
        res["bank_linking"] = _summary(g, target, scored)
    return res


NAME_NORMALISERS = ("chinese_name", "pinyin", "text")


def _name_like(schema: LinkageSchema, target: Target) -> bool:
    """A filter of a name-like field: the attacks' public tables are name frequencies."""
    return all(schema.field(f).normaliser in NAME_NORMALISERS for f in target.fields)


def _public_covers(target: Target, public: pd.DataFrame) -> bool:
    fields = [f for f in target.fields if f in public.columns and public[f].notna().any()]
    if target.kind == "clk":
        return bool(fields)
    return len(fields) == len(target.fields) and (target.salt is None or target.salt in public.columns)


def _summary(g: attacks.Guesses, target: Target, scored: np.ndarray | None) -> dict[str, Any]:
    attacked = int(g.attacked.sum())
    out: dict[str, Any] = {"attacked": attacked, "claimed": int((g.claimed & g.attacked).sum()),
                           "claimed_share": float((g.claimed & g.attacked).sum() / attacked) if attacked else 0.0,
                           "info": g.info}
    if scored is not None:
        out["measured"] = attacks.score(g, target, scored)
    return out


# --------------------------------------------------------------------------- the hub's own records


def sample_records_sql(layout, sample_size: int, seed: int, by_package: bool) -> str:
    """Input: ``records``.  Output: a reservoir sample of ``sample_size`` rows (``rid``, the keyed
    hashes and blocking keys, ``clk``, every filter as signed BIGINT halves ``bf_<f>_w<j>``),
    of the packages in the bound list parameter when ``by_package``."""
    from hub.store import bigint_halves_sql, q

    cols = ["rid", *(q(c) for c in (*layout.exact, *layout.keys)), "clk"]
    for f in layout.filters:
        cols += bigint_halves_sql(f)
    where = " WHERE list_contains(?, package_id)" if by_package else ""
    return (f"SELECT * FROM (SELECT {', '.join(cols)} FROM records{where}) "
            f"USING SAMPLE reservoir({int(sample_size)} ROWS) REPEATABLE ({int(seed)}) ORDER BY rid")


def bank_rows_sql(layout, field_name: str) -> str:
    """Input: ``bank_<field>``.  Output: ``rid``, ``slot`` and the filter's BIGINT halves of every
    slot of the banks of the records in the bound list parameter, by rid and slot."""
    from hub.store import bank_table, bigint_halves_sql, q

    f = layout.filter(field_name)
    return (f"SELECT rid, slot, {', '.join(bigint_halves_sql(f))} FROM {q(bank_table(field_name))}"
            f" WHERE list_contains(?, rid) ORDER BY rid, slot")


def _packed_words(raw: pa.Table, f) -> tuple[np.ndarray, np.ndarray]:
    """``(packed, valid)`` of filter ``f`` from its BIGINT halves in ``raw`` (big-endian words:
    bit *i* of the filter is bit ``7 - i % 8`` of byte ``i // 8``, as the encoder writes it)."""
    words = [c for c in raw.column_names if c.startswith(f"{f.source}_w")]
    words.sort(key=lambda c: int(c.rsplit("_w", 1)[1]))
    n = raw.num_rows
    mat = np.zeros((n, len(words)), dtype=np.int64)
    valid = np.zeros(n, dtype=bool)
    for i, c in enumerate(words):
        arr = raw.column(c).combine_chunks()
        mat[:, i] = arr.fill_null(0).to_numpy(zero_copy_only=False)
        valid |= arr.is_valid().to_numpy(zero_copy_only=False)
    data = mat.astype(">i8").view(np.uint8).reshape(n, len(words) * 8)[:, : f.bits // 8]
    return np.ascontiguousarray(data), valid


def _arrow(result) -> pa.Table:
    raw = result.arrow()
    return raw.read_all() if isinstance(raw, pa.RecordBatchReader) else raw  # DuckDB 2 returns a reader


def sample_store(con, layout, sample_size: int = 2000, seed: int = 0,
                 package_ids: list[str] | None = None) -> pa.Table:
    """A random sample of the hub's ``records`` (of ``package_ids`` only, when given) as the
    encoded-record table, by ``rid``: ``bf_<f>`` fixed-size binary (null where the record has none),
    ``eh_*``/``bk_*`` int64, ``clk`` fixed-size binary and, per field with salt banks, ``sb_<f>``
    (binary: the record's slots concatenated, null without a bank).  Deterministic for ``seed``."""
    from hub.store import table_exists

    params = [list(package_ids)] if package_ids is not None else None
    raw = _arrow(con.sql(sample_records_sql(layout, sample_size, seed, package_ids is not None), params=params))
    n = raw.num_rows
    cols: dict[str, pa.Array] = {"rid": raw.column("rid")}
    for f in layout.filters:
        data, valid = _packed_words(raw, f)
        cols[f.source] = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(f.bits // 8), n, [pa.py_buffer(np.packbits(valid, bitorder="little")), pa.py_buffer(data)])
    for c in (*layout.exact, *layout.keys):
        cols[c] = raw.column(c)
    cols["clk"] = raw.column("clk").cast(pa.binary(layout.clk_bytes))
    rids = raw.column("rid").to_numpy(zero_copy_only=False)
    for field_name in layout.banks:
        from hub.store import bank_table

        values: list[bytes | None] = [None] * n
        if n and table_exists(con, bank_table(field_name)):
            b = _arrow(con.sql(bank_rows_sql(layout, field_name), params=[[int(r) for r in rids]]))
            if b.num_rows:
                data, _ = _packed_words(b, layout.filter(field_name))
                brid = b.column("rid").to_numpy(zero_copy_only=False)
                at = {int(r): i for i, r in enumerate(rids)}
                starts = np.flatnonzero(np.r_[True, brid[1:] != brid[:-1]])
                ends = np.r_[starts[1:], len(brid)]
                for s, e in zip(starts, ends, strict=True):
                    values[at[int(brid[s])]] = data[s:e].tobytes()
        cols[f"sb_{field_name}"] = pa.array(values, type=pa.binary())
    return pa.table(cols)


_REPORT_PUBLIC: dict[str, pd.DataFrame] = {}
REPORT_PUBLIC_PEOPLE = 20_000


def report_public(schema: LinkageSchema, people: int = REPORT_PUBLIC_PEOPLE) -> pd.DataFrame:
    """The public frequency table the linkage report attacks with: :func:`synthetic_public` of
    ``people`` people (the lab's table is ten times larger; name frequencies converge well
    before), normalised with ``schema``, cached per schema fingerprint and size."""
    key = f"{schema.fingerprint}:{int(people)}"
    if key not in _REPORT_PUBLIC:
        _REPORT_PUBLIC.clear()
        _REPORT_PUBLIC[key] = synthetic_public(schema, people=people)
    return _REPORT_PUBLIC[key]
