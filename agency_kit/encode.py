"""The agency's encode pipeline: export file -> signed, sealed package + local vault.

    read (chunks) -> map columns -> normalise -> encode -> token per row
        -> vault (token -> row key, row number; stays here, encrypted)
        -> package (manifest + Parquet, signed by the agency, sealed to the hub)

Memory is bounded by the chunk size: each chunk is normalised and encoded on
its own (in worker processes when ``workers > 1``) and appended to the Parquet
payload, which goes straight into the package writer: sealed in authenticated
chunks and written to disk as it is produced, the manifest and signature after
it (:class:`linkage.package.PackageWriter`).  Writes are atomic: the package,
the vault and the rejects report appear together at the end of a successful
run, or not at all.

Speed.  ``workers`` is the number of processes, this one included: it reads
the file, writes the outputs and encodes a chunk itself whenever the pool's
oldest chunk is not back yet (so each process takes the share it has time
for).  Chunks travel to the pool as compact Arrow tables.  Each process keeps,
for the run only, the filters' keyed permutations (:class:`linkage.encode.EncodeCache`)
and a cache of normalised addresses (:func:`linkage.normalise.memo_scope`);
both hold values derived from the secret or the data and are dropped when the
run ends (``_WORKER`` is cleared; the pool's processes exit).  Tokens are
drawn fresh for every run.

Peak memory, per process: the libraries (~250 MB resident, counted again in
every process that maps them), the caches (the permutations, a few KiB; the
bit positions of the digit, date and pinyin parts, a few MiB and at most 16 MiB
a part; the distinct addresses),
one chunk being encoded (~100-150 MB at 25,000 rows; a target's parts are
prepared one at a time, see linkage.encode; the CLI's default is 40,000 --
measured, 1,000,000 rows on 2 cores: some 3 % less CPU than 30,000 for ~30 MiB
more, the two processes together at 860-883 MiB), up to 128 MiB of freed heap
not yet handed back (:func:`_release_memory`) and, in this process, the CSV
reader's blocks, up to two results of each kind waiting to be written and the
package writer's queue (at most 8 sealed MiB) -- fixed by the chunk size and
the number of processes, not by the file's size.

Every row of the input is accounted for: ``rows_read = encoded + rejected``;
``flagged`` counts encoded rows with at least one per-cell problem (an ID that
fails its check digit is flagged and still encoded as digits, so a typo can
still match).  The rejects report lists (row, column, rule) for every flagged
cell and every rejected row -- never a value.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import functools
import itertools
import logging
import os
import secrets as _secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from linkage.encode import EncodeCache, encode_records
from linkage.errors import OutputExistsError, RosterError, SchemaMismatchError
from linkage.keys import LinkageSecret
from linkage.normalise import ValueMemo, memo_scope, normalise_records
from linkage.package import PackageWriter
from linkage.roster import Roster
from linkage.schema import LinkageSchema

from .mapping import Mapping, apply_mapping, finish_attributes, row_key_text
from .readers import Chunk, iter_chunks
from .vault import VaultWriter, row_key_mac

log = logging.getLogger(__name__)

# Fields whose presence makes a row linkable at all; a row with none of them is rejected.
IDENTIFYING_NORMALISERS = frozenset({"chinese_name", "pinyin", "id_number", "phone", "text", "digits"})


@dataclass(frozen=True)
class EncodeOutputs:
    package: Path
    vault: Path
    rejects: Path

    @classmethod
    def beside(cls, package: Path) -> EncodeOutputs:
        stem = package.name.removesuffix(".aidpkg")
        return cls(package, package.with_name(stem + ".vault"), package.with_name(stem + ".rejects.csv"))

    def check_free(self, force: bool) -> None:
        if force:
            return
        taken = [p for p in (self.package, self.vault, self.rejects) if p.exists()]
        if taken:
            raise OutputExistsError(
                f"{taken[0]}: output exists (give --force to replace"
                f"{' it' if len(taken) == 1 else f' all {len(taken)} outputs'})")


# -- the per-chunk work (runs in worker processes) ---------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(schema: LinkageSchema, secret_bytes: bytes, mapping: Mapping, reference_date: date,
                 vault_key_bytes: bytes | None = None) -> None:
    """This process's state for one run: what encode_chunk needs, and the run's caches
    (permutations and normalised addresses, see linkage._bits.memo) -- dropped with
    the run (the pool's processes end with it; the main process clears it in _run_chunks)."""
    _WORKER.clear()
    _WORKER.update(schema=schema, secret=LinkageSecret(secret_bytes), mapping=mapping,
                   reference_date=reference_date, cache=EncodeCache(), memo=ValueMemo(),
                   row_key_mac=None if vault_key_bytes is None else row_key_mac(vault_key_bytes))


@dataclass
class ChunkResult:
    first_row: int
    n_rows: int
    kept_offsets: np.ndarray  # offsets (within chunk) of encoded rows
    row_key_digests: bytes | None  # for kept rows, 16 bytes each (the vault's row keys)
    table: pa.Table  # encodings + attributes for kept rows (no token yet)
    problems: pd.DataFrame  # row (file row number), column, rule
    flagged: int
    rejected: int

    def __getstate__(self) -> dict[str, Any]:
        # from a pool process: the all-null columns stay behind -- the 35 typo-key columns are
        # null in nearly every chunk and were half of a pickled result (5.4 of 10.6 MiB at
        # 20,000 rows) -- and are rebuilt, typed, on arrival
        state = dict(self.__dict__)
        t = self.table
        null = [i for i, c in enumerate(t.columns) if len(c) and c.null_count == len(c)]
        if null:
            state["table"] = (t.drop_columns([t.column_names[i] for i in null]), t.schema)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state["table"], tuple):
            compact, schema = state["table"]
            n = compact.num_rows
            state["table"] = pa.Table.from_arrays(
                [compact.column(f.name) if f.name in compact.column_names else _nulls(n, f.type)
                 for f in schema], schema=schema)
        self.__dict__.update(state)


@functools.lru_cache(maxsize=8)
def _nulls(n: int, type_: pa.DataType) -> pa.Array:
    """``n`` nulls of ``type_``; arrays are immutable, so one serves every chunk and column."""
    return pa.nulls(n, type=type_)


def encode_chunk(chunk: Chunk) -> ChunkResult:
    """Map, normalise and encode one chunk; problems carry file row numbers."""
    schema: LinkageSchema = _WORKER["schema"]
    mapping: Mapping = _WORKER["mapping"]
    n = len(chunk.frame)
    fields, attrs_raw, row_problems = apply_mapping(chunk, mapping)
    with memo_scope(_WORKER["memo"]):
        normalised, problems = normalise_records(fields, schema)
    # name problems by the agency's own column header where there is one
    problems = problems.assign(column=problems["column"].map(lambda f: mapping.fields.get(f, f)))

    ident = [f.name for f in schema.fields if f.normaliser in IDENTIFYING_NORMALISERS]
    has_ident = normalised[ident].notna().any(axis=1).to_numpy() if ident else np.ones(n, bool)
    blank = np.zeros(n, bool)
    if len(chunk.blank_rows):
        blank[np.asarray(chunk.blank_rows, dtype=np.int64)] = True
    no_ident = ~has_ident & ~blank
    keep = ~blank & has_ident

    problems = pd.concat([
        problems[keep[problems["row"].to_numpy(dtype=np.int64)]] if len(problems) else problems,
        row_problems[keep[row_problems["row"].to_numpy(dtype=np.int64)]] if len(row_problems) else row_problems,
        pd.DataFrame({"row": np.flatnonzero(blank), "column": "", "rule": "row.blank"}),
        pd.DataFrame({"row": np.flatnonzero(no_ident), "column": "", "rule": "row.no_identifier"}),
    ], ignore_index=True)
    flagged_rows = np.zeros(n, bool)
    if len(problems):
        flagged_rows[problems["row"].to_numpy(dtype=np.int64)] = True
    flagged = int((flagged_rows & keep).sum())

    kept = np.flatnonzero(keep)
    norm_kept = normalised.iloc[kept].reset_index(drop=True)
    table = encode_records(norm_kept, schema, _WORKER["secret"], cache=_WORKER["cache"])
    attrs = finish_attributes(attrs_raw.iloc[kept].reset_index(drop=True), norm_kept, mapping, schema,
                              _WORKER["reference_date"])
    for name in attrs.columns:
        table = table.append_column(name, pa.Array.from_pandas(attrs[name]))
    mac = _WORKER.get("row_key_mac")
    digests = None
    if mac is not None:
        if mapping.row_key:
            keys = row_key_text(chunk, mapping)
            digests = mac.digests([keys[i] for i in kept.tolist()])
        else:
            digests = mac.digests([""]) * len(kept)
    problems = problems.assign(row=problems["row"].astype(np.int64) + chunk.first_row)
    return ChunkResult(chunk.first_row, n, kept, digests, table, problems, flagged,
                       int(blank.sum() + no_ident.sum()))


# -- the whole run --------------------------------------------------------------------------------


@contextlib.contextmanager
def _tuned_allocator() -> Iterator[None]:
    """For one run: the C heap tuned (below) and Arrow allocating from it too (glibc
    only; inherited by the pool's forked processes), Arrow's previous pool restored after.

    Arrow's own allocator (mimalloc) keeps freed pages per thread and returns them on a
    timer of its own; on the C heap they are reused by the next chunk and handed back by
    :func:`_release_memory` with the rest (measured, 1,000,000 rows, 2 processes: peak
    resident 865 MiB against 965, the two processes' sum)."""
    _tune_allocator()
    if _libc() is None:
        yield
        return
    saved = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(saved)


@_tuned_allocator()  # a context manager from contextlib: it decorates too, fresh each call
def encode_export(
    *,
    input_path: Path,
    mapping: Mapping,
    schema: LinkageSchema,
    secret: LinkageSecret,
    outputs: EncodeOutputs,
    package_writer: Callable[[], PackageWriter],
    vault_key: bytes,
    encoding: str | None = None,
    sheet: str | None = None,
    chunk_rows: int = 50_000,
    workers: int = 1,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
    reference_date: date | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Encode one export; returns the summary (counts, paths, package id, timings).

    ``package_writer()`` opens the :class:`~linkage.package.PackageWriter` for
    ``outputs.package`` (the caller binds the keys and the roster): the encoded
    Parquet goes straight into it and is sealed and written as it is produced;
    nothing is under the package's name unless the whole run succeeds.
    """
    t0 = time.perf_counter()
    outputs.check_free(force)
    if mapping.dataset_kind not in schema.datasets:
        raise SchemaMismatchError(f"mapping: dataset kind {mapping.dataset_kind!r} is not in schema {schema.id}")
    now = now or datetime.now(UTC)
    reference_date = reference_date or now.date()
    package_id = _secrets.token_hex(16)
    out_dir = outputs.package.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp_rejects = _temp_file(out_dir, ".aidlink-rej-", ".csv")
    counts = {"rows_read": 0, "encoded": 0, "flagged": 0, "rejected": 0}
    rules: dict[str, int] = {}
    try:
        with VaultWriter(outputs.vault, key=vault_key, package_id=package_id, dataset=mapping.dataset,
                         force=force) as vault, \
                open(tmp_rejects, "w", encoding="utf-8-sig", newline="") as rej_f, \
                package_writer() as package:
            rej = csv.writer(rej_f)
            rej.writerow(["row", "column", "rule"])
            writer: pq.ParquetWriter | None = None
            for res in _run_chunks(input_path, mapping, schema, secret, encoding, sheet, chunk_rows, workers,
                                   reference_date, vault_key):
                n = res.table.num_rows
                raw_tokens = os.urandom(16 * n)  # fresh every run: the package's only row identity
                table = res.table.add_column(0, "token", _token_array(raw_tokens, n))
                if writer is None:
                    # dictionary pages and min/max statistics only where they can serve: the
                    # attributes (few distinct values) and the integer keys; filters and tokens
                    # are random bytes, where both only cost time
                    names = table.schema.names
                    writer = pq.ParquetWriter(
                        package, table.schema, compression=_compression(names),
                        use_dictionary=[c for c in names if c.startswith("attr_")] or False,
                        write_statistics=[c for c in names if c.startswith(("attr_", "eh_", "bk_"))] or False)
                writer.write_table(table)
                del table
                vault.add_records(raw_tokens, (res.kept_offsets + res.first_row).tolist(), res.row_key_digests)
                if len(res.problems):
                    p = res.problems.sort_values(["row", "column"], kind="stable")
                    rej.writerows(p[["row", "column", "rule"]].itertuples(index=False, name=None))
                    for rule, k in p["rule"].value_counts().items():
                        rules[rule] = rules.get(rule, 0) + int(k)
                counts["rows_read"] += res.n_rows
                counts["encoded"] += n
                counts["flagged"] += res.flagged
                counts["rejected"] += res.rejected
                if progress:
                    progress(res.n_rows)
                del res
                _release_memory()
            if writer is None:  # pragma: no cover - readers raise EmptyInputError first
                raise SchemaMismatchError(f"{input_path}: nothing to encode")
            writer.close()
            manifest = package.finish({
                "package_id": package_id,
                "agency": mapping.agency,
                "dataset": mapping.dataset,
                "dataset_kind": mapping.dataset_kind,
                "schema_id": schema.id,
                "schema_fingerprint": schema.fingerprint,
                "key_check_value": secret.key_check_value(),
                "counts": dict(counts),
            }, schema=writer.schema, rows=counts["encoded"])
        os.replace(tmp_rejects, outputs.rejects)
    except BaseException:
        # the package writer is atomic itself; if it finished but the vault failed, remove the package
        if not force:
            with contextlib.suppress(OSError):
                outputs.package.unlink()
        raise
    finally:
        with contextlib.suppress(OSError):
            tmp_rejects.unlink()
    assert counts["rows_read"] == counts["encoded"] + counts["rejected"]
    return {
        "agency": mapping.agency,
        "dataset": mapping.dataset,
        "package": str(outputs.package),
        "vault": str(outputs.vault),
        "rejects": str(outputs.rejects),
        "package_id": manifest.get("package_id", package_id),
        "schema_fingerprint": schema.fingerprint,
        "counts": counts,
        "problems_by_rule": dict(sorted(rules.items())),
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _temp_file(directory: Path, prefix: str, suffix: str) -> Path:
    """A new empty file (mode 0600) for this run's intermediate output; its descriptor closed."""
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    os.close(fd)
    return Path(name)


#: Columns zstd cannot shrink: keyed hashes (exact hashes, blocking and typo keys: 8 uniformly
#: random bytes each) and the XOR-folded CLK (about half its bits set).  Stored uncompressed; measured
#: on 100,000 encoded synthetic rows, zstd took 0.02-0.05 us a row per int64 column and 0.12 us for the
#: CLK to save nothing (eh_phone, mostly distinct, 6.9 -> 6.3 bytes a row).  Filters with few bits set,
#: tokens (hex) and attributes do shrink (bf_name 64 -> 33 bytes a row) and keep zstd.
_UNCOMPRESSED_PREFIXES = ("eh_", "bk_", "vk_", "clk")


def _compression(names: list[str]) -> dict[str, str]:
    """Parquet compression per column of the encoded table."""
    return {c: "none" if c.startswith(_UNCOMPRESSED_PREFIXES) else "zstd" for c in names}


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _token_array(raw: bytes, n: int) -> pa.Array:
    """The ``token`` column: ``n`` 16-byte (128-bit) tokens as 32-char lower-case hex strings."""
    b = np.frombuffer(raw, dtype=np.uint8).reshape(n, 16)
    hexed = np.empty((n, 32), dtype=np.uint8)
    hexed[:, 0::2] = _HEX[b >> 4]
    hexed[:, 1::2] = _HEX[b & 15]
    offsets = np.arange(0, 32 * (n + 1), 32, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(hexed))


def _libc() -> Any:
    """glibc through ctypes, or None (another C library: the tuning below is skipped)."""
    if "libc" not in _LIBC:
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            libc.malloc_trim, libc.mallopt  # noqa: B018 - both must exist
        except (OSError, AttributeError):
            libc = None
        _LIBC["libc"] = libc
    return _LIBC["libc"]


_LIBC: dict[str, Any] = {}
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
_MMAP_THRESHOLD = 4 << 20
_TRIM_THRESHOLD = 256 << 20
_TRIM_SLACK = 128 << 20


def _tune_allocator() -> None:
    """Keep the C heap from holding on to what a chunk freed (glibc only; inherited by the
    pool's forked processes).  Blocks of 4 MiB and more (file blocks, a chunk's larger
    arrays) are mapped and unmapped rather than carved from the heap -- glibc otherwise
    raises that threshold as big blocks are freed, and the heap keeps the holes -- and the
    threads Arrow reads with share two arenas instead of one each.  (At 1 MiB, every
    chunk's many 1-4 MiB arrays were mapped and faulted in afresh: measured 1 s of system
    time per 200,000 rows more for no less memory.)  And the heap is not shrunk each
    time its top is free: setting the mmap threshold fixes glibc's trim threshold at its
    128 KiB default, so every chunk's freed arrays went back to the kernel and were
    faulted in again by the next (measured, 1,000,000 rows, 2 processes: 2.0 million
    page faults and 7.2-9.6 s of system time; with a 256 MiB trim threshold 1.1 million
    and 4.8 s).  :func:`_release_memory` still hands freed heap back once the resident
    size has grown by ``_TRIM_SLACK``."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
        libc.mallopt(_M_ARENA_MAX, 2)


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):  # not Linux: always release
        return 1 << 62


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_RELEASED: dict[str, int] = {}


def _release_memory() -> None:
    """Hand freed heap back to the operating system (glibc only; a no-op elsewhere) once
    this process's resident size is ``_TRIM_SLACK`` above what it was after the last
    release.

    A chunk's many small strings leave the heap fragmented; without this the
    resident size of a long run creeps up chunk after chunk.  Releasing costs the
    next chunks their page faults again -- ``malloc_trim`` hands back every free page
    of the heap, not only its top -- so it is done only when the slack is used up.
    Measured, 1,000,000 rows, 2 processes: with a 16 MiB slack (a trim after nearly
    every chunk) 1.1 million page faults and 6.7 s of system time; with 128 MiB 0.55
    million and 3.0 s, the peak resident size no higher; with none at all 0.40 million.
    """
    if _resident_bytes() < _RELEASED.get("after", -1) + _TRIM_SLACK:
        return
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
    pa.default_memory_pool().release_unused()  # Arrow's allocator (mimalloc/jemalloc) keeps freed pages too
    _RELEASED["after"] = _resident_bytes()


def _encode_chunk_job(chunk: Chunk) -> ChunkResult:
    try:
        return encode_chunk(chunk)
    finally:
        _release_memory()


def _warm_up(schema: LinkageSchema) -> None:
    """Load, in this process, what every chunk needs -- the compiled bit kernels (every
    strategy), the pinyin and traditional-to-simplified tables -- by encoding one made-up
    record, before the pool's processes are forked: they inherit it (about a second of
    CPU and 50 MB each) instead of loading it again.  A throw-away secret and cache:
    nothing of the run is touched, and nothing of it is kept."""
    from linkage._bits import kernels

    made_up = {"chinese_name": "测试", "pinyin": "ce shi", "id_number": "110101199003070011",
               "date": "1990-03-07", "year": "1990", "sex": "M", "phone": "13800000000",
               "address": "测试路1号", "region_code": "110101", "text": "x", "digits": "1"}
    frame = pd.DataFrame({f.name: [made_up.get(f.normaliser)] * 2 for f in schema.fields}, dtype=object)
    normalised, _ = normalise_records(frame, schema)
    throwaway = LinkageSecret(bytes(32))
    saved = kernels.FORCE_STRATEGY
    try:
        for strategy in ("bits", "units", "tokens"):
            kernels.FORCE_STRATEGY = strategy
            encode_records(normalised, schema, throwaway, cache=EncodeCache())
    finally:
        kernels.FORCE_STRATEGY = saved


def _run_chunks(input_path: Path, mapping: Mapping, schema: LinkageSchema, secret: LinkageSecret,
                encoding: str | None, sheet: str | None, chunk_rows: int, workers: int,
                reference_date: date, vault_key: bytes | None = None) -> Iterator[ChunkResult]:
    """Encoded chunks in file order; this process's run state (the secret, the
    caches) is dropped when the run ends, however it ends."""
    chunks = iter_chunks(input_path, columns_needed=mapping.source_columns, encoding=encoding or mapping.encoding,
                         sheet=sheet or mapping.sheet, chunk_rows=chunk_rows, file_type=mapping.file_type)
    try:
        yield from _schedule_chunks(chunks, schema, secret, mapping, chunk_rows, workers, reference_date, vault_key)
    finally:
        chunks.close()  # the reader (and its I/O thread) stops here, whatever happened
        _WORKER.clear()


def _schedule_chunks(chunks: Iterator[Chunk], schema: LinkageSchema, secret: LinkageSecret, mapping: Mapping,
                     chunk_rows: int, workers: int, reference_date: date,
                     vault_key: bytes | None) -> Iterator[ChunkResult]:
    """Encoded chunks in file order.

    With ``workers > 1`` this process is one of the workers: ``workers - 1``
    pool processes are kept busy (each with one chunk running and one queued),
    and this process -- which also reads the file and writes the outputs --
    encodes a chunk itself only while the oldest pool chunk is not back yet.
    The share of chunks each process takes so follows how fast it is; memory
    stays bounded by a few chunks per process.
    """
    init_args = (schema, bytes(secret.value), mapping, reference_date, vault_key)
    first = next(chunks, None)
    if first is None:
        return
    # a short first chunk is the only one: a process pool would only cost start-up time
    if workers <= 1 or len(first) < chunk_rows:
        _init_worker(*init_args)
        for chunk in itertools.chain((first,), chunks):
            yield _encode_chunk_job(chunk)
        return
    _warm_up(schema)
    _init_worker(*init_args)
    pool = ProcessPoolExecutor(max_workers=workers - 1, initializer=_init_worker, initargs=init_args)
    try:
        # items in file order: ["future", Future] | ["done", ChunkResult]
        queue: collections.deque[list[Any]] = collections.deque()
        source = itertools.chain((first,), chunks)
        depth = 2 * (workers - 1)
        exhausted = False
        while True:
            in_pool = sum(1 for kind, obj in queue if kind == "future" and not obj.done())
            while not exhausted and in_pool < depth:
                chunk = next(source, None)
                if chunk is None:
                    exhausted = True
                else:
                    queue.append(["future", pool.submit(_encode_chunk_job, chunk)])
                    in_pool += 1
            if not queue:
                return
            kind, obj = queue[0]
            if kind == "done" or obj.done():
                queue.popleft()
                yield obj if kind == "done" else obj.result()
                continue
            ours = sum(1 for kind, _ in queue if kind == "done")
            chunk = None if exhausted or ours >= 2 else next(source, None)
            if chunk is None:
                exhausted = exhausted or ours < 2
                kind, obj = queue.popleft()
                yield obj.result()  # wait for the oldest
            else:
                queue.append(["done", _encode_chunk_job(chunk)])
    finally:
        # normally every future is done by now; after an error, queued chunks are dropped
        pool.shutdown(wait=True, cancel_futures=True)


def check_agency_on_roster(roster: Roster, agency: str, dataset_kind: str) -> None:
    """The agency must be on the roster and allowed to send this dataset kind."""
    entry = roster.require_agency(agency)
    if dataset_kind not in entry.datasets:
        raise RosterError(f"agency {agency!r} may not send dataset kind {dataset_kind!r} under this roster")
