"""The audit log: an append-only, hash-chained record of every action on personal data.

Format, version 1 (also docs/formats/audit-log.md)
==================================================

One file of JSON Lines (``*.audit.jsonl``), UTF-8: one entry per line, each
line the canonical JSON of the entry (:func:`linkage.documents.canonical_json`:
sorted keys, no spaces, non-ASCII as UTF-8) followed by ``\\n``.  An entry is a
document valid against ``schemas/audit-entry.schema.json``::

    version        1
    seq            position in the log: 1, 2, 3, ...
    started, time  when the command started, and when the entry was appended
                   (UTC, ``YYYY-MM-DDTHH:MM:SS.mmmZ``)
    tool, tool_version, action       e.g. linkage-hub 0.1.0 ingest
    actor          {party, role, user, host}: the agency or hub id where the
                   command knows it (its identity key, its clue register),
                   the operating-system account and the host name
    inputs, outputs  [{role, name, sha256, size}]: fingerprints of the files
                   read (taken before the command read them) and written
                   (taken after); ``name`` is the base name only
    counts         {name: non-negative integer}: rows read, encoded, ...
    refs           {name: identifier or list of identifiers}: run id,
                   package ids, rule-set digest (letters, digits and ``._:-``
                   only, so no free text can slip in)
    outcome        {status: ok} or {status: error, error: <class>, exit_code}
    prev           the previous entry's ``hash`` (64 zeros for the first)
    sig            optional: {signer, value}, see below
    hash           sha256 (hex) of the canonical JSON of the entry without
                   ``hash``

Nothing else is written: never a value from a record, never a path's
directories, never a command's options.  An entry holds fingerprints, counts
and identifiers only.

Chain.  Because each entry names its predecessor's hash and its own hash
covers that, an entry that is edited, removed, duplicated or moved breaks the
chain at a position :func:`verify_log` names, with the kind of break; the
message never quotes the entry.  A plain hash chain has two limits, both
written down in the format page: whoever can write the file can rewrite it
*entirely* (recompute every hash), and entries cut off the *end* leave a
shorter chain that is still whole.  Both are answered by anchoring the head
(:func:`chain_head`: entries, head hash, last time) outside the log -- in the
linkage report, in a paper record -- and checking it later with
``expect_head``.

Signatures.  A command that has opened its party's identity key (encode and
reveal at an agency; ingest and results at the hub) signs its entry:
``sig = {signer: party id, value: base64 Ed25519 signature}`` over
``"aidlink audit entry v1" 0x00 || canonical JSON of the entry without hash
and sig``, made with the party's identity signing key
(:mod:`linkage.keyfile`).  The signature covers ``prev`` and so vouches for
the whole chain before it: rewriting the log needs the key, not only write
access to the file.  ``hash`` covers ``sig``, so removing a signature breaks
the chain.  :func:`verify_log` checks signatures against public keys the
caller trusts (from the roster); it cannot stop the key's holder from
rewriting the log, which only an anchored head can.

Appending (:func:`append_entry`).  The file is opened ``O_APPEND`` (created
with mode 0600), locked with ``flock`` for the whole read-the-tail,
write-the-line, ``fsync`` sequence, so two processes appending at once each
get their own position; existing lines are never rewritten.  A log whose last
line is incomplete (a crash mid-write, a cut file) or whose last entry is
damaged is refused -- nothing is chained onto a broken end -- with
:class:`~linkage.errors.AuditLogError` (exit 23).

This module never prints and knows nothing of click; the commands reach it
through :mod:`agency_kit.clitools`.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import hashlib
import json
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import __version__
from ._crypto._util import b64decode, b64encode
from .documents import canonical_json, validation_problems
from .errors import AuditLogError

__all__ = [
    "AGENCY_LOG_NAME",
    "AUDIT_VERSION",
    "GENESIS",
    "HUB_LOG_SUFFIX",
    "SIGNATURE_LABEL",
    "Actor",
    "AuditBreak",
    "AuditHead",
    "AuditRecord",
    "AuditVerification",
    "FileGap",
    "FileRef",
    "Outcome",
    "append_entry",
    "chain_head",
    "check_appendable",
    "entry_hash",
    "fingerprint_file",
    "format_time",
    "hub_log_path",
    "read_entries",
    "verify_log",
]

AUDIT_VERSION = 1
GENESIS = "0" * 64
SIGNATURE_LABEL = b"aidlink audit entry v1\x00"
HUB_LOG_SUFFIX = ".audit.jsonl"  # the hub's log: <database>.audit.jsonl
AGENCY_LOG_NAME = "aidlink-audit.jsonl"  # an agency's log, see agency_kit.clitools.agency_audit
SCHEMA_NAME = "audit-entry"
_CHUNK = 1 << 20
_TAIL_CHUNK = 1 << 16

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(dt: datetime) -> str:
    """RFC 3339 in UTC to the millisecond, with ``Z``: ``2024-06-30T08:15:02.125Z``."""
    if dt.tzinfo is None:
        raise ValueError("an aware datetime is needed")
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def hub_log_path(db_path: str | Path) -> Path:
    """Where the hub keeps the log of a database by default: ``<db>.audit.jsonl`` beside it."""
    p = Path(db_path)
    return p.with_name(p.name + HUB_LOG_SUFFIX)


# ---------------------------------------------------------------- what an entry records


@dataclass(frozen=True)
class FileRef:
    """A file's fingerprint: role, base name, sha256 of the content, size.  Never the content."""

    role: str
    name: str
    sha256: str
    size: int

    def as_doc(self) -> dict[str, Any]:
        return {"role": self.role, "name": self.name, "sha256": self.sha256, "size": self.size}


def fingerprint_file(role: str, path: str | Path) -> FileRef:
    """Hash a file in 1 MiB chunks (constant memory, about 1 GB/s)."""
    p = Path(path)
    h = hashlib.sha256()
    size = 0
    with p.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return FileRef(role, p.name, h.hexdigest(), size)


def _os_user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # no user name on this system
        return None


def _host() -> str | None:
    try:
        return socket.gethostname() or None
    except OSError:
        return None


@dataclass(frozen=True)
class Actor:
    """Who ran a command: the party where known, the OS account and host."""

    party: str | None = None
    role: str | None = None
    user: str | None = None
    host: str | None = None

    @classmethod
    def current(cls, party: str | None = None, role: str | None = None) -> Actor:
        return cls(party, role, _os_user(), _host())

    def as_doc(self) -> dict[str, Any]:
        return {"party": self.party, "role": self.role, "user": self.user, "host": self.host}


@dataclass(frozen=True)
class Outcome:
    """``ok``, or ``error`` with the error class and the exit code."""

    status: str = "ok"
    error: str | None = None
    exit_code: int | None = None

    @classmethod
    def failed(cls, error: str, exit_code: int) -> Outcome:
        return cls("error", error, exit_code)

    def as_doc(self) -> dict[str, Any]:
        if self.status == "ok":
            return {"status": "ok"}
        return {"status": "error", "error": self.error, "exit_code": self.exit_code}


@dataclass
class AuditRecord:
    """What a command reports; :func:`append_entry` adds seq, time, prev, sig and hash."""

    tool: str
    action: str
    actor: Actor
    started: datetime
    outcome: Outcome = field(default_factory=Outcome)
    inputs: list[FileRef] = field(default_factory=list)
    outputs: list[FileRef] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    refs: dict[str, str | list[str]] = field(default_factory=dict)
    tool_version: str = __version__

    def body(self, *, seq: int, time: datetime, prev: str) -> dict[str, Any]:
        """The entry without ``sig`` and ``hash``."""
        return {
            "version": AUDIT_VERSION, "seq": seq, "time": format_time(time), "started": format_time(self.started),
            "tool": self.tool, "tool_version": self.tool_version, "action": self.action,
            "actor": self.actor.as_doc(), "inputs": [f.as_doc() for f in self.inputs],
            "outputs": [f.as_doc() for f in self.outputs], "counts": dict(self.counts), "refs": dict(self.refs),
            "outcome": self.outcome.as_doc(), "prev": prev,
        }


# ---------------------------------------------------------------- hashing and signing


def entry_hash(entry: Mapping[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of ``entry`` without its ``hash``."""
    return hashlib.sha256(canonical_json({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


def signature_message(entry: Mapping[str, Any]) -> bytes:
    """What a party signs: the label and the canonical entry without ``hash`` and ``sig``."""
    return SIGNATURE_LABEL + canonical_json({k: v for k, v in entry.items() if k not in ("hash", "sig")})


def seal_entry(body: Mapping[str, Any], signer: tuple[str, Ed25519PrivateKey] | None = None) -> dict[str, Any]:
    """``body`` with ``sig`` (when a signer is given) and ``hash``, checked against the entry schema.

    ValueError when the entry would not validate: a command reported a count
    that is not a non-negative integer, an identifier with free text, and so on
    -- a bug, which must not produce a log line the verifier then refuses.
    """
    entry = dict(body)
    if signer is not None:
        party_id, key = signer
        entry["sig"] = {"signer": party_id, "value": b64encode(key.sign(signature_message(entry)))}
    entry["hash"] = entry_hash(entry)
    problems = validation_problems(entry, SCHEMA_NAME)
    if problems:
        raise ValueError("audit entry does not validate: " + "; ".join(map(str, problems)))
    return entry


# ---------------------------------------------------------------- appending


def _read_tail(fd: int) -> bytes:
    """The last line of the file open at ``fd`` (with its newline, if it has one); b"" if empty."""
    pos = os.fstat(fd).st_size
    buf = b""
    while pos > 0:
        start = max(0, pos - _TAIL_CHUNK)
        buf = os.pread(fd, pos - start, start) + buf
        pos = start
        cut = buf.rfind(b"\n", 0, len(buf) - 1)
        if cut >= 0:
            return buf[cut + 1:]
    return buf


def _tail_entry(path: Path, tail: bytes) -> tuple[int, str]:
    """(seq, hash) of the last entry, or AuditLogError when it is incomplete or damaged."""
    if not tail:
        return 0, GENESIS
    if not tail.endswith(b"\n"):
        raise AuditLogError(f"{path}: the audit log ends in an incomplete line (an interrupted write or a cut "
                            "file); run `audit verify`, keep the file as evidence and start a new log",
                            kind="truncated")
    try:
        entry = json.loads(tail[:-1].decode("utf-8"))
        seq, h = entry["seq"], entry["hash"]
        ok = isinstance(seq, int) and isinstance(h, str) and entry_hash(entry) == h
    except (ValueError, TypeError, KeyError, AttributeError):
        ok, seq = False, None
    if not ok:
        raise AuditLogError(f"{path}: the audit log's last entry is damaged; run `audit verify`, keep the file as "
                            "evidence and start a new log", kind="edited")
    return seq, h


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_appendable(path: str | Path) -> None:
    """AuditLogError unless an entry could be appended to ``path`` now (nothing is written).

    Run before a command touches data, so that it is refused rather than done
    and not recorded.
    """
    p = Path(path)
    if p.exists():
        if not p.is_file():
            raise AuditLogError(f"{p}: the audit log path is not a file")
        try:
            fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise AuditLogError(f"{p}: cannot open the audit log ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)  # not while an append is half-written
            _tail_entry(p, _read_tail(fd))
        finally:
            os.close(fd)
        if not os.access(p, os.W_OK):
            raise AuditLogError(f"{p}: the audit log is not writable")
        return
    parent = p.parent if str(p.parent) else Path(".")
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise AuditLogError(f"{p}: cannot create the audit log there (directory not writable)")


def append_entry(path: str | Path, record: AuditRecord, *, clock: Clock = utc_now,
                 signer: tuple[str, Ed25519PrivateKey] | None = None) -> dict[str, Any]:
    """Append ``record`` as the next entry of the log at ``path`` (created if absent); return the entry.

    Safe against concurrent appenders (``flock``) and crashes (one ``write`` of
    the whole line, then ``fsync``).  ``signer`` = (party id, Ed25519 key) signs
    the entry.  AuditLogError when the log cannot be opened or its end is
    damaged.
    """
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    try:
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        created = not p.exists()
        fd = os.open(p, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise AuditLogError(f"{p}: cannot open the audit log for appending ({e.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        seq, prev = _tail_entry(p, _read_tail(fd))
        entry = seal_entry(record.body(seq=seq + 1, time=clock(), prev=prev), signer)
        line = canonical_json(entry) + b"\n"
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as e:
            raise AuditLogError(f"{p}: could not write the audit entry ({e.strerror})") from None
    finally:
        os.close(fd)  # also releases the lock
    if created:
        _fsync_dir(parent)
    return entry


# ---------------------------------------------------------------- reading and verifying


@dataclass(frozen=True)
class AuditHead:
    """The end of an intact chain: how many entries, the last one's hash and time."""

    entries: int
    head_hash: str
    last_time: str | None

    def as_doc(self) -> dict[str, Any]:
        return {"entries": self.entries, "head_hash": self.head_hash, "last_time": self.last_time}

    def __str__(self) -> str:
        return f"{self.entries} entries, head {self.head_hash}" + (f" ({self.last_time})" if self.last_time else "")


BREAK_KINDS = {
    "truncated": "the line is incomplete (an interrupted write, or the file was cut)",
    "malformed": "the line is not a well-formed audit entry",
    "edited": "the entry's content does not match its hash (the entry was edited)",
    "removed": "entries are missing before it (its position number skips ahead)",
    "reordered": "the entry is out of order (it belongs at another position of the log)",
    "duplicated": "the entry repeats an earlier position (an entry was copied in)",
    "unlinked": "the entry does not name the previous entry's hash: the previous entry was replaced "
                "(its hash recomputed), or this one was forged or inserted",
    "bad_signature": "the entry's signature does not verify with its signer's public key",
    "unknown_signer": "the entry is signed by a party whose public key was not given",
    "head_missing": "the expected head is not in the log: entries were cut off its end, or it was rewritten",
}


@dataclass(frozen=True)
class AuditBreak:
    """Where a chain is first broken (1-based line position) and how; never the entry's content."""

    position: int
    kind: str
    detail: str = ""

    def describe(self) -> str:
        what = BREAK_KINDS[self.kind]
        return f"broken at position {self.position}: {self.kind} -- {what}" + (f" ({self.detail})" if self.detail
                                                                                 else "")


@dataclass(frozen=True)
class FileGap:
    """A file an entry read that is not what an earlier entry of the log wrote under that name: it
    changed in between without a logged command (other software, a restore), or in a command that
    failed.  A question for the log's owner, not a break of the chain."""

    name: str
    written_at: int
    read_at: int

    def as_doc(self) -> dict[str, Any]:
        return {"name": self.name, "written_at": self.written_at, "read_at": self.read_at}


@dataclass(frozen=True)
class AuditVerification:
    """The result of :func:`verify_log`.  ``head`` is the end of the intact part before any break;
    ``file_gaps`` lists files changed between the entries that wrote and later read them."""

    path: str
    head: AuditHead
    broken: AuditBreak | None = None
    signed: int = 0
    signatures_checked: bool = False
    signers: tuple[str, ...] = ()
    file_gaps: tuple[FileGap, ...] = ()

    @property
    def ok(self) -> bool:
        return self.broken is None

    def raise_if_broken(self) -> AuditVerification:
        if self.broken is not None:
            raise AuditLogError(f"{self.path}: the audit chain is {self.broken.describe()}",
                                position=self.broken.position, kind=self.broken.kind)
        return self

    def as_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"log": self.path, "intact": self.ok, **self.head.as_doc(),
                               "signed_entries": self.signed, "signatures_checked": self.signatures_checked,
                               "signers": list(self.signers), "file_gaps": [g.as_doc() for g in self.file_gaps]}
        if self.broken is not None:
            doc["broken"] = {"position": self.broken.position, "kind": self.broken.kind,
                             "description": BREAK_KINDS[self.broken.kind]}
        return doc


def _require_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise AuditLogError(f"{p}: there is no audit log at this path", kind="missing")
    return p


def _lines(path: Path) -> list[bytes]:
    """The file's lines, read under a shared lock so that an append in progress is never seen half-written."""
    with path.open("rb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_SH)
        parts = f.read().split(b"\n")  # only "\n" ends a line (bytes.splitlines would also split on "\r")
    return [p + b"\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _parse(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    """(entry, "") for a well-formed complete line, else (None, a value-free reason)."""
    try:
        entry = json.loads(raw[:-1].decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not UTF-8"
    except ValueError:
        return None, "not JSON"
    if not isinstance(entry, dict):
        return None, "not a JSON object"
    problems = validation_problems(entry, SCHEMA_NAME)
    if problems:
        return None, str(problems[0])
    if canonical_json(entry) != raw[:-1]:
        return None, "not in canonical form (sorted keys, no spaces)"
    return entry, ""


def read_entries(path: str | Path) -> list[tuple[int, dict[str, Any] | None]]:
    """Every line as (position, entry), entry None for a line that is not a well-formed entry.  No chain check."""
    out = []
    for pos, raw in enumerate(_lines(_require_file(path)), 1):
        entry, _ = _parse(raw) if raw.endswith(b"\n") else (None, "")
        out.append((pos, entry))
    return out


def _check_signature(entry: Mapping[str, Any], signers: Mapping[str, Sequence[Ed25519PublicKey]] | None
                     ) -> str | None:
    """None if fine (or unchecked), else the break kind."""
    sig = entry["sig"]
    if sig["signer"] != entry["actor"]["party"]:
        return "bad_signature"
    if signers is None:
        return None
    keys = signers.get(sig["signer"])
    if not keys:
        return "unknown_signer"
    raw = b64decode(sig["value"])
    message = signature_message(entry)
    for key in keys:
        try:
            key.verify(raw, message)
            return None
        except InvalidSignature:
            continue
    return "bad_signature"


def verify_log(path: str | Path, *, signers: Mapping[str, Sequence[Ed25519PublicKey]] | None = None,
               expect_head: str | None = None) -> AuditVerification:
    """Walk the chain and report the first broken position, if any (see :data:`BREAK_KINDS`).

    ``signers`` maps party ids to their trusted Ed25519 public keys: signed
    entries are then checked (a signer not in it is a break); without it,
    signatures are counted but not checked.  ``expect_head``: a head hash
    recorded elsewhere (a report, a paper record) that must be one of the
    log's entries.  AuditLogError (kind ``missing``) if there is no file.
    Returns the result; call :meth:`AuditVerification.raise_if_broken` to
    turn a break into AuditLogError.
    """
    p = _require_file(path)
    parsed: list[tuple[int, bytes]] = list(enumerate(_lines(p), 1))
    seq_positions: dict[int, list[int]] = {}
    entries: list[dict[str, Any] | None] = []
    reasons: list[str] = []
    for pos, raw in parsed:
        if raw.endswith(b"\n"):
            entry, reason = _parse(raw)
        else:
            entry, reason = None, ""
        entries.append(entry)
        reasons.append(reason)
        if entry is not None:
            seq_positions.setdefault(entry["seq"], []).append(pos)

    prev, last_time, signed, good = GENESIS, None, 0, 0
    seen_hashes = {GENESIS}
    signer_ids: set[str] = set()
    written: dict[str, tuple[str, int]] = {}  # file name -> (sha256, position that wrote it)
    gaps: list[FileGap] = []

    def result(broken: AuditBreak | None = None) -> AuditVerification:
        return AuditVerification(str(p), AuditHead(good, prev, last_time), broken, signed, signers is not None,
                                 tuple(sorted(signer_ids)), tuple(gaps))

    for (pos, raw), entry, reason in zip(parsed, entries, reasons, strict=True):
        if not raw.endswith(b"\n"):
            return result(AuditBreak(pos, "truncated"))
        if entry is None:
            return result(AuditBreak(pos, "malformed", reason))
        if entry_hash(entry) != entry["hash"]:
            return result(AuditBreak(pos, "edited"))
        seq = entry["seq"]
        if seq > pos:
            if any(q > pos for q in seq_positions.get(pos, ())):
                return result(AuditBreak(pos, "reordered", f"position {pos} holds entry number {seq}"))
            missing = f"entry {pos}" if seq == pos + 1 else f"entries {pos} to {seq - 1}"
            return result(AuditBreak(pos, "removed", f"{missing} missing; position {pos} holds entry number {seq}"))
        if seq < pos:
            kind = "duplicated" if any(q < pos for q in seq_positions[seq]) else "reordered"
            return result(AuditBreak(pos, kind, f"position {pos} holds entry number {seq}"))
        if entry["prev"] != prev:
            return result(AuditBreak(pos, "unlinked"))
        if "sig" in entry:
            bad = _check_signature(entry, signers)
            if bad:
                return result(AuditBreak(pos, bad))
            signed += 1
            signer_ids.add(entry["sig"]["signer"])
        prev, last_time, good = entry["hash"], entry["time"], pos
        seen_hashes.add(prev)
        for f in entry["inputs"]:
            if f["name"] in written and written[f["name"]][0] != f["sha256"]:
                gaps.append(FileGap(f["name"], written[f["name"]][1], pos))
        written.update({f["name"]: (f["sha256"], pos) for f in entry["outputs"]})
    if expect_head is not None and expect_head.lower() not in seen_hashes:
        return result(AuditBreak(good + 1, "head_missing"))
    return result()


def chain_head(path: str | Path) -> AuditHead:
    """The head of the log at ``path`` after verifying its chain; AuditLogError if broken or absent.

    This is what a report quotes: entries, head hash and last time.
    """
    return verify_log(path).raise_if_broken().head
