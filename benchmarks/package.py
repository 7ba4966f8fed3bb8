"""Seal and open throughput and peak memory of packages, for both HPKE suites.

``python -m benchmarks package [--quick] [--json]``

A random encoded-like table (token + two 128-byte filters + an exact hash:
~300 bytes a row; 1,000,000 rows, or 50,000 with --quick) is

* sealed from the in-memory Table (Parquet written to an anonymous temporary
  file, hashed, then encrypted chunk by chunk),
* sealed from a Parquet file on disk (the agency-kit path: the payload is
  streamed, so memory stays at a few chunks),
* opened (every chunk authenticated, the signature checked, the Parquet
  parsed into a Table).

Throughput is payload megabytes (10^6 bytes of Parquet) per second of wall
time; peak memory is the rise of the process's peak resident set above its
resident set just before the operation (Linux ``/proc/self/clear_refs``
resets the peak; elsewhere the figure is omitted), each operation run in a
fresh process so that no allocator keeps memory from an earlier one.  Times
are the best of three runs (one with --quick), since the machine may be
shared; the 1-minute load average at the start is reported with them.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from linkage._crypto._hpke import SUITES as SUITE_SPECS
from linkage._crypto._hpke import ReceivingPrivateKey
from linkage.keyfile import Identity
from linkage.package import open_package, write_package
from linkage.roster import build_roster, roster_from_document

from ._agency_e2e import describe as describe_end_to_end
from ._agency_e2e import run_encode
from ._common import log

SUITES = ("x25519", "mlkem768-x25519")
FINGERPRINT = "5d" * 32


def _status(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])  # kB
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _measure(fn) -> tuple[float, float | None, Any]:
    """(seconds, peak MiB above the start, result)."""
    can = _reset_peak()
    before = _status("VmRSS")
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    peak = _status("VmHWM")
    rise = (peak - before) / 1024 if can and peak is not None and before is not None else None
    return dt, rise, out


def random_table(rows: int, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    hexed = rng.bytes(16 * rows).hex().encode("ascii")  # 32 hex characters a row
    offsets = np.arange(0, 32 * (rows + 1), 32, dtype=np.int32)
    token_strings = pa.StringArray.from_buffers(rows, pa.py_buffer(offsets.tobytes()), pa.py_buffer(hexed))

    def fsb(width: int) -> pa.Array:
        buf = rng.integers(0, 256, size=rows * width, dtype=np.uint8).tobytes()
        return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), rows, [None, pa.py_buffer(buf)])

    return pa.table({
        "token": token_strings,
        "bf_name": fsb(128),
        "clk": fsb(128),
        "eh_id_number": pa.array(rng.integers(-(2 ** 63), 2 ** 63 - 1, size=rows, dtype=np.int64)),
    })


def _seed(label: str, n: int = 32) -> bytes:
    return hashlib.shake_256(b"aidlink benchmark " + label.encode()).digest(n)


def _parties(now: datetime):
    """Fixed keys, so that a fresh process can open what another one sealed."""
    hubs = {s: Identity("hub", "hub", Ed25519PrivateKey.from_private_bytes(_seed("hub signing")),
                        ReceivingPrivateKey(s, _seed(f"hub {s}", SUITE_SPECS[s].private_length)),
                        operator="benchmark") for s in SUITES}
    agency = Identity("agency", "agency-a", Ed25519PrivateKey.from_private_bytes(_seed("agency signing")),
                      ReceivingPrivateKey("x25519", _seed("agency x25519")), name="A",
                      datasets=("civil_affairs_dibao",))
    rosters = {}
    for s, hub in hubs.items():
        doc = build_roster(federation="bench", schema_fingerprint=FINGERPRINT, hub=hub.public(),
                           agencies=[agency.public()], valid_from=now - timedelta(days=1),
                           valid_until=now + timedelta(days=30), now=now)
        rosters[s] = roster_from_document(doc, now=now)
    return hubs, agency, rosters


def _fields(rows: int) -> dict[str, Any]:
    return {"dataset": "bench", "dataset_kind": "civil_affairs_dibao", "schema_id": "judicial-assistance",
            "schema_fingerprint": FINGERPRINT, "key_check_value": "00" * 16,
            "counts": {"rows_read": rows, "encoded": rows, "flagged": 0, "rejected": 0}}


def _child(op: str, suite: str, rows: int, workdir: str, now_iso: str) -> tuple[float, float | None]:
    """One measured operation in a fresh process: (seconds, peak MiB above the start)."""
    now = datetime.fromisoformat(now_iso)
    hubs, agency, rosters = _parties(now)
    hub = hubs[suite]
    out = Path(workdir) / f"{suite}.aidpkg"
    common = dict(signing_key=agency.signing_key, sender_id=agency.id, recipient_id="hub",
                  recipient_public_key=hub.sealing_key.public_key(), suite=suite, now=now, force=True)
    # warm up (imports, schema validators, Parquet machinery) so only the operation is measured
    warm = Path(workdir) / f"warm-{op}-{suite}.aidpkg"
    write_package(warm, random_table(10), _fields(10), **common)
    open_package(warm, recipient_private_key=hub.sealing_key, roster=rosters[suite], recipient_id="hub", now=now)
    warm.unlink()
    if op == "seal_table":
        table = random_table(rows)
        fn = partial(write_package, out, table, _fields(rows), **common)
    elif op == "seal_file":
        fn = partial(write_package, out, Path(workdir) / "payload.parquet", _fields(rows), **common)
    else:
        fn = partial(open_package, out, recipient_private_key=hub.sealing_key, roster=rosters[suite],
                     recipient_id="hub", now=now)
    seconds, peak, result = _measure(fn)
    if op == "open":
        assert result.table.num_rows == rows
    return seconds, peak


def _in_fresh_process(*args: Any) -> tuple[float, float | None]:
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_child, *args).result()


def _aead_baseline(mb: int = 256) -> float:
    """Raw ChaCha20-Poly1305 on 1 MiB chunks, MB/s: the ceiling for sealing."""
    key, chunk = os.urandom(32), os.urandom(1 << 20)
    aead = ChaCha20Poly1305(key)
    n = max(1, mb)
    t0 = time.perf_counter()
    for i in range(n):
        aead.encrypt(i.to_bytes(12, "big"), chunk, b"header")
    return n * (1 << 20) / 1e6 / (time.perf_counter() - t0)


def run(quick: bool = False) -> dict[str, Any]:
    rows = 50_000 if quick else 1_000_000
    repeat = 1 if quick else 3
    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    log(f"package benchmark: {rows:,} rows, suites {', '.join(SUITES)}; each operation in a fresh process")
    table = random_table(rows)
    figures: dict[str, Any] = {"rows": rows, "table_mb": round(table.nbytes / 1e6, 1), "repeat": repeat,
                               "chunk_size": 1 << 20, "cpu_count": os.cpu_count(),
                               "load_average_1min": round(os.getloadavg()[0], 1)}
    with tempfile.TemporaryDirectory(prefix="aidlink-bench-") as d:
        src = Path(d) / "payload.parquet"
        pq.write_table(table, src)
        del table
        payload_mb = src.stat().st_size / 1e6
        figures["payload_mb"] = round(payload_mb, 1)
        figures["aead_baseline_mb_s"] = round(_aead_baseline(64 if quick else 256), 0)
        for suite in SUITES:
            f: dict[str, Any] = {}
            for op in ("seal_table", "seal_file", "open"):
                log(f"  {suite}: {op} ...")
                runs = [_in_fresh_process(op, suite, rows, d, now) for _ in range(repeat)]
                seconds = min(r[0] for r in runs)  # best of: the machine may be shared
                peaks = [r[1] for r in runs if r[1] is not None]
                peak = max(peaks) if peaks else None
                f[f"{op}_s"] = round(seconds, 2)
                f[f"{op}_mb_s"] = round(payload_mb / seconds, 0)
                f[f"{op}_peak_mib"] = None if peak is None else round(peak, 0)
            f["package_mb"] = round((Path(d) / f"{suite}.aidpkg").stat().st_size / 1e6, 1)
            figures[suite] = f
    log("end to end: agency-kit encode of a synthetic CSV (read, normalise, encode, vault, package, seal) ...")
    figures["end_to_end"] = run_encode(rows, workers=os.cpu_count() or 1)
    return figures


def describe(figures: dict[str, Any]) -> str:
    lines = [
        f"package: {figures['rows']:,} rows, table {figures['table_mb']} MB, Parquet payload "
        f"{figures['payload_mb']} MB, 1 MiB chunks; raw ChaCha20-Poly1305 {figures['aead_baseline_mb_s']:.0f} MB/s; "
        f"best of {figures['repeat']}, load average {figures['load_average_1min']} on {figures['cpu_count']} CPUs",
        f"{'suite':<18}{'seal Table':>18}{'seal file':>18}{'open':>18}   peak MiB (Table / file / open)",
    ]
    for suite in SUITES:
        f = figures[suite]
        lines.append(
            f"{suite:<18}{f['seal_table_mb_s']:>10.0f} MB/s {f['seal_table_s']:>5}s"
            f"{f['seal_file_mb_s']:>8.0f} MB/s {f['seal_file_s']:>5}s"
            f"{f['open_mb_s']:>8.0f} MB/s {f['open_s']:>5}s   "
            f"{f['seal_table_peak_mib']} / {f['seal_file_peak_mib']} / {f['open_peak_mib']}")
    e = figures.get("end_to_end")
    if e:
        lines.append(describe_end_to_end(e))
    lines.append("peak = rise of the peak resident set over the resident set just before the operation, "
                 "each operation in a fresh process (seal Table: the table is already in memory)")
    return "\n".join(lines)
