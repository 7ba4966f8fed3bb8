"""Packages: one table, signed by its sender and sealed to one recipient.

Specification, format version 2 (also docs/formats/package.md)
================================================================

A package is one file (``*.aidpkg``)::

    package = header || body
    header  = magic "AIDLPKG" 0x00        (8 bytes)
              format version = 2          (u16, big-endian, as every integer here)
              suite id                    (u16: 1 = x25519, 2 = mlkem768-x25519)
              chunk size                  (u32: plaintext bytes per body chunk, 64 .. 2**26)
              sealed key length           (u16: 80 for suite 1, 1168 for suite 2)
              sealed key                  (HPKE enc || HPKE ciphertext of the 32-byte content key)
    body    = STREAM(content key, aad = header, plaintext)
    plaintext = Parquet payload || manifest || signature (64 bytes) || u32 len(manifest)

The manifest comes after the payload (format 1 had it first): its counts and
the payload's digest are known only once the payload is written, and with them
last a sender seals the payload as it produces it -- encryption and disk writes
overlap the encoding, and the payload is never written twice.  A reader knows
the manifest's length from the last four bytes of the plaintext.

Sealing.  The sender draws a random 256-bit content key and seals it to the
recipient's receiving key with HPKE (RFC 9180) base mode, single shot, empty
aad, ``info = "aidlink package v1 content key" 0x00 || header[0:18]`` (the
fixed header fields, so the suite and chunk size are bound to the key).
Suites: DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / ChaCha20Poly1305 by default,
or the hybrid MLKEM768-X25519 KEM with the same KDF and AEAD for protection of
today's packages against a future quantum computer.  ChaCha20-Poly1305 rather
than AES-256-GCM: it is constant-time in software on agency PCs without AES
instructions, and within 10 % of AES-GCM where they exist.  ``cryptography``
offers single-shot HPKE only (no secret export), hence the sealed content key.

Body.  HKDF-SHA256(content key, info "aidlink/v1/package/stream-key") gives a
ChaCha20-Poly1305 key and a 7-byte nonce prefix; the plaintext is cut into
``chunk size`` pieces, each sealed with nonce prefix || u32 counter || u8
last-chunk flag and the whole header as associated data (STREAM, Hoang,
Reyhanitabar, Rogaway, Vizár 2015; see ``linkage/_crypto/_stream.py``).  Every
sealed chunk but the last is ``chunk size + 16`` bytes.  Truncation (also at a
chunk boundary), reordering, duplication or an appended chunk fail a tag;
memory stays at two chunks however large the package.

Signature (sign-then-encrypt).  Ed25519 by the sender over::

    "aidlink package signature v1" 0x00 || u32 len(header) || header
        || u32 len(manifest) || manifest || sha256(Parquet payload)

The signed header contains the sealed key, which only this sealing to this
recipient produced, and the manifest names the recipient: a recipient that
decrypts a package cannot re-seal it to another party (surreptitious
forwarding) without breaking the signature.  ``manifest`` is the canonical
JSON (sorted keys, no spaces, UTF-8) of a document valid against
``schemas/manifest.schema.json``; the reader insists it is canonical.

Opening verifies everything before returning anything, in this order:

1. header, HPKE, every chunk, the body layout, the manifest's JSON, the
   sender on the roster, the signature, the payload hash, the recipient id,
   and the direction (to_hub: agency -> hub; to_agency: hub -> agency; the
   ``agency`` field naming the agency end) --
   any failure is the one opaque :class:`~linkage.errors.IntegrityError`,
   whatever failed, so the check that failed is never an attacker's oracle;
2. then, the package being authentic, what is wrong with it may be said:
   manifest against its schema (ConfigError), a package id seen before or a
   package past ``expires_at`` or dated more than a day ahead (ReplayError,
   exit 18: freshness, not tampering), a dataset kind the roster does not
   allow the agency (RosterError), a schema fingerprint other than the
   roster's (FingerprintMismatchError);
3. the Parquet payload parses and matches the manifest's columns and row
   count (else IntegrityError).

Randomness (content key, package id) comes from ``rng`` and the clock from
``now`` so tests are exact; HPKE's ephemeral key comes from ``cryptography``
and cannot be fixed.  Writes are atomic (temporary file, fsync, rename; mode
0600); on any failure nothing is left behind.  Decrypted payloads larger than
``spool_bytes`` go to an anonymous temporary file (unlinked, mode 0600) and
never under a name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import re
import struct
import tempfile
import threading
from collections.abc import Container
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ._crypto import _hpke
from ._crypto._files import atomic_output, check_output
from ._crypto._hpke import SUITES, SUITES_BY_ID, ReceivingPrivateKey
from ._crypto._stream import (
    MAX_CHUNK_SIZE,
    MIN_CHUNK_SIZE,
    TAG_BYTES,
    StreamSealer,
    check_chunk_size,
    decrypt_stream,
    derive_stream_key,
)
from ._crypto._util import ct_equal
from .documents import canonical_json, validation_problems
from .errors import ConfigError, FingerprintMismatchError, IntegrityError, ReplayError, RosterError
from .roster import Roster, check_party_id, format_timestamp, parse_timestamp

MAGIC = b"AIDLPKG\x00"
FORMAT_VERSION = 2
_FIXED = struct.Struct(">8sHHIH")  # magic, version, suite id, chunk size, sealed key length
FIXED_HEADER_BYTES = _FIXED.size  # 18
HPKE_INFO_LABEL = b"aidlink package v1 content key\x00"
SIGNATURE_LABEL = b"aidlink package signature v1\x00"
SIGNATURE_BYTES = 64
MAX_MANIFEST_BYTES = 1 << 20
DEFAULT_CHUNK_SIZE = 1 << 20
DEFAULT_TTL_DAYS = 30
DEFAULT_SPOOL_BYTES = 256 << 20
FUTURE_SKEW = timedelta(days=1)
DIRECTIONS = ("to_hub", "to_agency")
# set by write_package; a caller's manifest may not set them (package_id and direction it may)
_WRITER_FIELDS = ("version", "sender", "recipient", "created_at", "expires_at", "content_sha256",
                  "columns", "row_count")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")


# ---------------------------------------------------------------- header


@dataclass(frozen=True)
class Header:
    """The outer header: public, unauthenticated until the body opens."""

    version: int
    suite: str
    chunk_size: int
    sealed_key: bytes = field(repr=False)
    raw: bytes = field(repr=False)

    @property
    def fixed(self) -> bytes:
        return self.raw[:FIXED_HEADER_BYTES]


def encode_header(suite: str, chunk_size: int, sealed_key: bytes) -> bytes:
    spec = SUITES[suite]
    if len(sealed_key) != spec.sealed_key_length:
        raise ValueError("sealed key has the wrong length for the suite")
    return _FIXED.pack(MAGIC, FORMAT_VERSION, spec.suite_id, chunk_size, len(sealed_key)) + sealed_key


def _fixed_header(suite: str, chunk_size: int) -> bytes:
    spec = SUITES[suite]
    return _FIXED.pack(MAGIC, FORMAT_VERSION, spec.suite_id, chunk_size, spec.sealed_key_length)


def hpke_info(fixed_header: bytes) -> bytes:
    """HPKE ``info`` for the content key: the label and the fixed header fields."""
    return HPKE_INFO_LABEL + fixed_header


def _read_header(f: BinaryIO) -> Header:
    """Parse the header; anything malformed is the opaque IntegrityError."""
    fixed = f.read(FIXED_HEADER_BYTES)
    if len(fixed) != FIXED_HEADER_BYTES:
        raise IntegrityError()
    magic, version, suite_id, chunk_size, sealed_len = _FIXED.unpack(fixed)
    spec = SUITES_BY_ID.get(suite_id)
    if (not ct_equal(magic, MAGIC) or version != FORMAT_VERSION or spec is None
            or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE or sealed_len != spec.sealed_key_length):
        raise IntegrityError()
    sealed = f.read(sealed_len)
    if len(sealed) != sealed_len:
        raise IntegrityError()
    return Header(version, spec.name, chunk_size, sealed, fixed + sealed)


def read_package_header(path: str | Path) -> dict[str, Any]:
    """The outer header as a dict -- format, suite, chunk size, sizes.  No secret, and
    not authenticated: only :func:`open_package` says whether the package is genuine."""
    p = Path(path)
    with open(p, "rb") as f:
        header = _read_header(f)
    size = p.stat().st_size
    body = size - len(header.raw)
    sealed_chunk = header.chunk_size + TAG_BYTES
    return {
        "format": "aidlink-package",
        "version": header.version,
        "suite": header.suite,
        "suite_description": SUITES[header.suite].description,
        "chunk_size": header.chunk_size,
        "header_bytes": len(header.raw),
        "body_bytes": body,
        "chunks": max(1, -(-body // sealed_chunk)),
        "file_bytes": size,
    }


# ---------------------------------------------------------------- signature


def signature_message(header: bytes, manifest: bytes, content_digest: bytes) -> bytes:
    """The bytes the sender signs (see the module docstring)."""
    if len(content_digest) != 32:
        raise ValueError("content_digest is a sha256 digest")
    return (SIGNATURE_LABEL + struct.pack(">I", len(header)) + header
            + struct.pack(">I", len(manifest)) + manifest + content_digest)


def body_trailer(manifest: bytes, signature: bytes) -> bytes:
    """The plaintext after the Parquet payload."""
    if len(manifest) > MAX_MANIFEST_BYTES or len(signature) != SIGNATURE_BYTES:
        raise ValueError("manifest too large or signature of the wrong length")
    return manifest + signature + struct.pack(">I", len(manifest))


# ---------------------------------------------------------------- write


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC).replace(microsecond=0)
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    return now.astimezone(UTC)


def _columns(schema: pa.Schema) -> list[dict[str, str]]:
    return [{"name": f.name, "type": str(f.type)} for f in schema]


def _final_manifest(fields: dict[str, Any], *, sender_id: str, recipient_id: str, now: datetime,
                    ttl_days: int, digest: bytes, schema: pa.Schema, rows: int, rng: _hpke.Rng) -> dict[str, Any]:
    if not isinstance(fields, dict):
        raise TypeError("manifest must be a dict")
    clash = [k for k in _WRITER_FIELDS if k in fields]
    if clash:
        raise ValueError(f"manifest fields set by write_package may not be given: {', '.join(clash)}")
    m = dict(fields)
    direction = m.setdefault("direction", "to_hub")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {list(DIRECTIONS)}")
    own_agency = sender_id if direction == "to_hub" else recipient_id
    if m.setdefault("agency", own_agency) != own_agency:
        raise ValueError(f"agency must be the {'sender' if direction == 'to_hub' else 'recipient'} for {direction}")
    pid = m.get("package_id")
    if pid is None:
        m["package_id"] = rng(16).hex()
    elif not isinstance(pid, str) or not _HEX32.fullmatch(pid):
        raise ValueError("package_id must be 32 lower-case hex characters")
    m.update({
        "version": FORMAT_VERSION,
        "sender": sender_id,
        "recipient": recipient_id,
        "created_at": format_timestamp(now),
        "expires_at": format_timestamp(now + timedelta(days=ttl_days)),
        "content_sha256": digest.hex(),
        "columns": _columns(schema),
        "row_count": rows,
    })
    problems = validation_problems(m, "manifest")
    if problems:
        raise ConfigError("package manifest", problems)
    return m


_datasync = getattr(os, "fdatasync", os.fsync)  # macOS and Windows have no fdatasync


class _SealWriter:
    """Writes the sealed chunks and hashes (the payload, the whole file) on a second thread.

    File writes, ``fdatasync`` and SHA-256 of large buffers all release the GIL, so
    the disk and the hashes keep pace while the calling thread goes on; the file
    is pushed to disk every ``SYNC_EVERY`` bytes on the way (the final fsync of
    :func:`atomic_output` then has little left).  At most ``depth`` pieces wait.
    An error on the thread is raised by the next call or by ``close``; ``close``
    always waits for the thread.
    """

    SYNC_EVERY = 32 << 20

    def __init__(self, out: BinaryIO, depth: int = 8) -> None:
        self._out, self._sync_every = out, self.SYNC_EVERY
        self.payload_sha, self.file_sha = hashlib.sha256(), hashlib.sha256()
        self.file_bytes = 0
        self._queue: queue.Queue[tuple[str, Any] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="aidlink-seal-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        unsynced = 0
        while (item := self._queue.get()) is not None:
            kind, b = item
            if kind == "drained":
                b.set()
                continue
            if self._error is not None:
                continue  # drain: the caller learns of the error and stops
            try:
                if kind == "hash":
                    self.payload_sha.update(b)
                    continue
                self._out.write(b)
                self.file_sha.update(b)
                self.file_bytes += len(b)
                unsynced += len(b)
                if unsynced >= self._sync_every:
                    self._out.flush()
                    _datasync(self._out.fileno())
                    unsynced = 0
            except BaseException as e:  # handed to the calling thread
                self._error = e

    def _put(self, item: tuple[str, Any]) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(item)

    def write(self, b: bytes) -> None:
        self._put(("write", b))

    def hash(self, b: bytes) -> None:
        self._put(("hash", b))

    def drain(self) -> None:
        """Wait until everything queued so far is written and hashed."""
        done = threading.Event()
        self._put(("drained", done))
        done.wait()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


class _Aborted(Exception):
    """Handed to atomic_output when a package is abandoned (never raised out of here)."""


class PackageWriter:
    """A package written while its Parquet payload is produced.

    ``write(bytes)`` takes the payload (it is a writable file object: give it to
    ``pyarrow.parquet.ParquetWriter``); every full chunk is sealed at once and
    written, hashed and pushed to disk on a second thread.  ``finish(manifest,
    schema=, rows=)`` builds the final manifest (the payload's digest is known
    by then), signs, seals the rest with the manifest and signature after it,
    and moves the file into place; it returns the final manifest.  Leaving the
    ``with`` block without ``finish`` (an error, or not finishing) removes
    everything written: no partial package, ever.  ``sha256`` and ``size`` of
    the finished file are kept, for the audit log (it need not read the file
    again).
    """

    def __init__(self, path: str | Path, *, signing_key: Ed25519PrivateKey, sender_id: str, recipient_id: str,
                 recipient_public_key: Any, suite: str = "x25519", chunk_size: int = DEFAULT_CHUNK_SIZE,
                 now: datetime | None = None, ttl_days: int = DEFAULT_TTL_DAYS, force: bool = False,
                 rng: _hpke.Rng = os.urandom) -> None:
        if not isinstance(signing_key, Ed25519PrivateKey):
            raise TypeError("signing_key must be an Ed25519PrivateKey")
        spec = _hpke.suite_spec(suite)
        hpke_public = _hpke.public_hpke_key(recipient_public_key, suite)
        check_chunk_size(chunk_size)
        check_party_id(sender_id)
        check_party_id(recipient_id)
        if not isinstance(ttl_days, int) or not 1 <= ttl_days <= 366:
            raise ValueError("ttl_days must be an integer from 1 to 366")
        self._signing_key, self._sender, self._recipient = signing_key, sender_id, recipient_id
        self._when, self._ttl_days, self._rng = _utc(now), ttl_days, rng
        self.sha256: bytes | None = None
        self.size: int | None = None
        self._state = "open"
        self._stack = contextlib.ExitStack()
        out = self._stack.enter_context(atomic_output(check_output(path, force), force=force, mode=0o600))
        try:
            content_key = rng(_hpke.CONTENT_KEY_BYTES)
            fixed = _fixed_header(spec.name, chunk_size)
            sealed_key = _hpke.seal_content_key(spec, hpke_public, content_key, hpke_info(fixed))
            self._header = encode_header(spec.name, chunk_size, sealed_key)
            self._sealer = StreamSealer(*derive_stream_key(content_key), self._header, chunk_size)
            self._io = _SealWriter(out)
        except BaseException as e:
            self._stack.__exit__(type(e), e, e.__traceback__)
            raise
        self._io.write(self._header)

    # a writable file object, as far as pyarrow needs one
    closed = False

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        pass

    def write(self, b: Any) -> int:
        if self._state != "open":
            raise ValueError("package writer is finished or aborted")
        for plain, sealed in self._sealer.update(b):
            self._io.hash(plain)
            self._io.write(sealed)
        return len(b)

    def finish(self, manifest: dict[str, Any], *, schema: pa.Schema, rows: int) -> dict[str, Any]:
        """Sign and seal; the package is in place when this returns the final manifest."""
        if self._state != "open":
            raise ValueError("package writer is finished or aborted")
        self._state = "finishing"
        try:
            self._io.hash(self._sealer.pending)  # the payload's last bytes, not yet sealed
            self._io.drain()
            digest = self._io.payload_sha.digest()
            final = _final_manifest(manifest, sender_id=self._sender, recipient_id=self._recipient,
                                    now=self._when, ttl_days=self._ttl_days, digest=digest, schema=schema,
                                    rows=rows, rng=self._rng)
            manifest_bytes = canonical_json(final)
            if len(manifest_bytes) > MAX_MANIFEST_BYTES:
                raise ValueError("manifest too large")
            signature = self._signing_key.sign(signature_message(self._header, manifest_bytes, digest))
            for sealed in self._sealer.final(body_trailer(manifest_bytes, signature)):
                self._io.write(sealed)
            self._io.close()
            self.sha256, self.size = self._io.file_sha.digest(), self._io.file_bytes
            self._stack.close()  # fsync, then into place
        except BaseException:
            self.abort()
            raise
        self._state = "finished"
        return final

    def abort(self) -> None:
        """Stop and remove what was written (nothing to do once finished)."""
        if self._state == "finished":
            return
        self._state = "aborted"
        with contextlib.suppress(BaseException):
            self._io.close()  # the thread stops; its error, if any, is not the one to raise
        stop = _Aborted()
        self._stack.__exit__(_Aborted, stop, None)  # atomic_output removes its temporary file

    def __enter__(self) -> PackageWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._state != "finished":
            self.abort()


def write_package(path: str | Path, table: pa.Table | str | Path, manifest: dict[str, Any], *,
                  signing_key: Ed25519PrivateKey, sender_id: str, recipient_id: str,
                  recipient_public_key: Any, suite: str = "x25519", chunk_size: int = DEFAULT_CHUNK_SIZE,
                  now: datetime | None = None, ttl_days: int = DEFAULT_TTL_DAYS, force: bool = False,
                  rng: _hpke.Rng = os.urandom) -> dict[str, Any]:
    """Sign ``table`` with its manifest and seal it to the recipient; returns the final manifest.

    ``table`` is a pyarrow.Table or the path of a Parquet file (streamed, never
    loaded).  ``manifest`` gives the caller's fields (agency, dataset,
    dataset_kind, schema_id, schema_fingerprint, key_check_value, counts, and
    optionally package_id and direction -- "to_hub" by default); the writer
    adds version, sender, recipient, created_at, expires_at, content_sha256,
    columns and row_count.  ``recipient_public_key`` is a
    :class:`~linkage._crypto._hpke.ReceivingPublicKey` (``party.sealing_key()``)
    or a ``cryptography`` X25519 / MLKEM768X25519 public key of ``suite``.
    A payload produced piece by piece goes through :class:`PackageWriter`.
    """
    if isinstance(table, pa.Table):
        schema, rows = table.schema, table.num_rows
    elif isinstance(table, str | Path):
        meta = pq.ParquetFile(table)
        schema, rows = meta.schema_arrow, meta.metadata.num_rows
        meta.close()
    else:
        raise TypeError("table must be a pyarrow.Table or the path of a Parquet file")
    with PackageWriter(path, signing_key=signing_key, sender_id=sender_id, recipient_id=recipient_id,
                       recipient_public_key=recipient_public_key, suite=suite, chunk_size=chunk_size, now=now,
                       ttl_days=ttl_days, force=force, rng=rng) as out:
        if isinstance(table, pa.Table):
            pq.write_table(table, out)
        else:
            with open(table, "rb") as f:
                while b := f.read(DEFAULT_CHUNK_SIZE):
                    out.write(b)
        return out.finish(manifest, schema=schema, rows=rows)


# ---------------------------------------------------------------- open


@dataclass(frozen=True)
class OpenedPackage:
    """An authenticated package: its manifest and its table."""

    manifest: dict[str, Any]
    table: pa.Table = field(repr=False)
    suite: str = "x25519"


class _Spool:
    """Bytes in memory up to a limit, then in an anonymous temporary file.

    pyarrow never gets Python-owned bytes from here: a buffer wrapping a Python
    object is freed under the GIL by whichever pyarrow thread drops it last,
    and one that does so after the interpreter began to exit (a CLI exiting on
    an IntegrityError while reads are in flight) aborts the process.  Bytes in
    memory are copied into Arrow's own memory; the temporary file is read on
    the calling thread only (``read_table``).
    """

    def __init__(self, limit: int, directory: str | Path | None) -> None:
        self._limit = limit
        self._dir = directory
        self._size = 0
        self._file: BinaryIO | None = None
        self._memory: Any = None  # pa.BufferOutputStream until spilled

    def write(self, b: bytes) -> None:
        if self._file is not None:
            self._file.write(b)
            return
        if self._memory is None:
            self._memory = pa.BufferOutputStream()
        self._memory.write(b)
        self._size += len(b)
        if self._size > self._limit:
            self._file = tempfile.TemporaryFile(dir=self._dir)  # closed in close()
            self._file.write(memoryview(self._memory.getvalue()))
            self._memory = None

    def read_table(self) -> pa.Table:
        if self._file is not None:
            self._file.flush()
            self._file.seek(0)
            reader = pq.ParquetFile(self._file, pre_buffer=False)
            try:
                return reader.read(use_threads=False)
            finally:
                reader.close()
        data = self._memory.getvalue() if self._memory is not None else pa.allocate_buffer(0)
        self._memory = None
        return pq.read_table(pa.BufferReader(data))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._memory = None


def _decrypt_body(f: BinaryIO, header: Header, content_key: bytes, spool: _Spool) -> tuple[bytes, bytes, bytes]:
    """(manifest bytes, signature, sha256 of payload); payload bytes go to ``spool``.

    The trailer (manifest, signature, length) is at most ``hold`` bytes, so all
    but the last ``hold`` bytes seen are payload; the rest is split at the end."""
    key, prefix = derive_stream_key(content_key)
    hold = 4 + SIGNATURE_BYTES + MAX_MANIFEST_BYTES
    tail = bytearray()
    h = hashlib.sha256()
    for plain in decrypt_stream(key, prefix, header.raw, f, header.chunk_size):
        tail += plain
        if len(tail) > hold:
            out = bytes(tail[:-hold])
            del tail[:-hold]
            h.update(out)
            spool.write(out)
    if len(tail) < 4 + SIGNATURE_BYTES:
        raise IntegrityError()
    (mlen,) = struct.unpack(">I", tail[-4:])
    if mlen > MAX_MANIFEST_BYTES or len(tail) < 4 + SIGNATURE_BYTES + mlen:
        raise IntegrityError()
    cut = len(tail) - 4 - SIGNATURE_BYTES - mlen
    out = bytes(tail[:cut])
    h.update(out)
    spool.write(out)
    return bytes(tail[cut:cut + mlen]), bytes(tail[cut + mlen:cut + mlen + SIGNATURE_BYTES]), h.digest()


def _authentic_manifest(header: Header, manifest_bytes: bytes, signature: bytes, digest: bytes,
                        roster: Roster, recipient_id: str) -> dict[str, Any]:
    """Steps that must all pass, each failing with the same opaque IntegrityError."""
    try:
        manifest = json.loads(manifest_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise IntegrityError() from None
    if not isinstance(manifest, dict) or not ct_equal(canonical_json(manifest), manifest_bytes):
        raise IntegrityError()
    sender_id, claimed_recipient = manifest.get("sender"), manifest.get("recipient")
    if not isinstance(sender_id, str) or not isinstance(claimed_recipient, str):
        raise IntegrityError()
    sender = roster.party(sender_id)
    if sender is None:
        raise IntegrityError()
    try:
        sender.signing_key().verify(signature, signature_message(header.raw, manifest_bytes, digest))
    except Exception:
        raise IntegrityError() from None
    if not ct_equal(str(manifest.get("content_sha256", "")), digest.hex()):
        raise IntegrityError()
    if not ct_equal(claimed_recipient, recipient_id):
        raise IntegrityError()
    direction, agency = manifest.get("direction"), manifest.get("agency")
    if direction == "to_hub":
        routed = sender.role == "agency" and claimed_recipient == roster.hub.id and agency == sender_id
    elif direction == "to_agency":
        routed = (sender.role == "hub" and roster.agency(claimed_recipient) is not None
                  and agency == claimed_recipient)
    else:
        routed = False
    if not routed:
        raise IntegrityError()
    return manifest


def _check_policy(manifest: dict[str, Any], path: Path, roster: Roster, now: datetime,
                  seen_package_ids: Container[str]) -> None:
    """Checks on an authentic package, whose failures may be named."""
    problems = validation_problems(manifest, "manifest")
    if problems:
        raise ConfigError(f"{path}: manifest", problems)
    pid = manifest["package_id"]
    if pid in seen_package_ids:
        raise ReplayError(f"{path}: package {pid} was received before; it is refused as a replay")
    try:
        expires, created = parse_timestamp(manifest["expires_at"]), parse_timestamp(manifest["created_at"])
    except ValueError:
        raise ConfigError(f"{path}: manifest", ["created_at or expires_at is not a valid date-time"]) from None
    if now >= expires:
        raise ReplayError(f"{path}: package {pid} expired at {format_timestamp(expires)}; "
                          f"ask the sender for a fresh one")
    if created > now + FUTURE_SKEW:
        raise ReplayError(f"{path}: package {pid} is dated {format_timestamp(created)}, in the future; "
                          f"check both clocks")
    if manifest["direction"] == "to_hub":
        agency = roster.agency(manifest["sender"])
        if agency is None or manifest["dataset_kind"] not in agency.datasets:
            raise RosterError(f"{path}: the roster does not allow agency {manifest['sender']!r} to send "
                              f"dataset kind {manifest['dataset_kind']!r}")
    if manifest["schema_fingerprint"] != roster.schema_fingerprint:
        raise FingerprintMismatchError(
            f"{path}: made with schema fingerprint {manifest['schema_fingerprint'][:16]}..., but federation "
            f"{roster.federation!r} uses {roster.schema_fingerprint[:16]}...")


def _read_payload(spool: _Spool, manifest: dict[str, Any]) -> pa.Table:
    try:
        table = spool.read_table()
    except Exception:
        raise IntegrityError() from None
    if table.num_rows != manifest["row_count"] or _columns(table.schema) != manifest["columns"]:
        raise IntegrityError()
    return table


def open_package(path: str | Path, *, recipient_private_key: Any, roster: Roster, recipient_id: str,
                 now: datetime | None = None, seen_package_ids: Container[str] = (),
                 spool_bytes: int = DEFAULT_SPOOL_BYTES, spool_dir: str | Path | None = None) -> OpenedPackage:
    """Authenticate, decrypt and parse a package sealed to ``recipient_id``.

    ``recipient_private_key`` is a ReceivingPrivateKey (``identity.sealing_key``)
    or a ``cryptography`` X25519 / MLKEM768X25519 private key.  Nothing is
    returned unless every check passes (see the module docstring for the order
    and for which failures are opaque).
    """
    if not isinstance(roster, Roster):
        raise TypeError("roster must be a linkage.roster.Roster")
    if not isinstance(recipient_private_key, ReceivingPrivateKey) and all(
            _hpke.private_hpke_key(recipient_private_key, s) is None for s in SUITES):
        raise TypeError("recipient_private_key must be an HPKE receiving private key")
    when = _utc(now)
    roster.check_valid(when)
    p = Path(path)
    spool = _Spool(spool_bytes, spool_dir)
    try:
        with open(p, "rb") as f:
            header = _read_header(f)
            spec = SUITES[header.suite]
            content_key = _hpke.open_content_key(
                spec, _hpke.private_hpke_key(recipient_private_key, header.suite), header.sealed_key,
                hpke_info(header.fixed))
            manifest_bytes, signature, digest = _decrypt_body(f, header, content_key, spool)
        manifest = _authentic_manifest(header, manifest_bytes, signature, digest, roster, recipient_id)
        _check_policy(manifest, p, roster, when, seen_package_ids)
        table = _read_payload(spool, manifest)
    finally:
        spool.close()
    return OpenedPackage(manifest=manifest, table=table, suite=header.suite)
