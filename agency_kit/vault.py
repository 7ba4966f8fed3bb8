"""The vault: the agency's local map from tokens to its own rows, encrypted at rest.

Each encode run gives every row a fresh random token (128 bits, 32 hex chars);
the package carries only tokens.  The vault, which never leaves the agency,
records for each token the file row number and a *row key* -- an
HMAC-SHA256 (first 16 bytes) of the row-key cells (the mapping's ``row_key``
columns, see :func:`agency_kit.mapping.row_key_text`) under a key derived from
the agency's vault key.  The row key is the same from one run to the next for
the same source row, so a clue that comes back in a later run (under a fresh
token) is recognised as the same person's row, while the vault never holds the
raw cells.

Keys
    :func:`vault_key` derives the 32-byte vault key from agency-private bytes
    -- the agency's long-term signing key (its raw private bytes) is the
    intended input.  Not the linkage secret: every agency holds that, so a
    vault encrypted under it would be readable by all of them.  ``VaultWriter``
    and ``open_vault`` take the derived 32-byte key.  From it, HKDF-SHA256
    derives (a) a fresh encryption key per vault file, salted with 16 random
    bytes from the file header, and (b) one row-key MAC key, the same for every
    file, so row keys compare across runs.  A new signing key means new row
    keys: clues from vaults made under the old key are no longer recognised.

File format (version 1), all integers big-endian::

    b"AIDVAULT" | 0x01 | u32 header length | header (JSON, UTF-8)
    segment*    where segment = u8 flag (0 more, 1 last) | u32 length | AES-256-GCM ciphertext+tag

The header holds ``package_id``, ``dataset``, the cipher, the salt and the
7-byte nonce prefix.  It is not secret but is authenticated: the bytes from
the magic to the end of the header are the associated data of every segment.
Each segment encrypts up to 65,536 records of 40 bytes (token 16 bytes | row
number i64 | row key 16 bytes) under the nonce ``prefix(7) | counter(4) |
flag(1)`` -- the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár
2015): a reordered, dropped, duplicated or truncated segment, a moved "last"
flag, bytes after the last segment or a changed header all fail
authentication.  The last segment is always written (empty if need be).  Any
failure at all, including a wrong key or a file that is not a vault, raises
:class:`IntegrityError` with one opaque message.

Memory: the writer holds at most one segment (2.6 MB) besides the caller's
batch.  Opening a vault reads and verifies the whole file, then keeps the
records as fixed-width NumPy arrays -- 40 bytes a row plus an 8-byte sort
index, about 50 MB for 1,000,000 rows -- and looks tokens up by binary search.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as c_hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from linkage.errors import InputError, IntegrityError, OutputExistsError, StateError
from linkage.keys import hkdf_sha256

__all__ = ["KEY_BYTES", "SEGMENT_ROWS", "Vault", "VaultWriter", "open_vault", "row_key_digest", "row_key_mac",
           "vault_key"]

MAGIC = b"AIDVAULT"
FORMAT_VERSION = 1
KEY_BYTES = 32
SEGMENT_ROWS = 65_536
RECORD_BYTES = 40  # token 16 | row number 8 | row key 16
_TAG = 16
_NONCE_PREFIX = 7
_SALT = 16
_VAULT_SALT = b"aidlink-vault-v1"
_MAX_HEADER = 64 * 1024
_RECORD = np.dtype([("token", "V16"), ("row", ">i8"), ("key", "V16")])
assert _RECORD.itemsize == RECORD_BYTES
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UNHEX = np.full(256, 255, dtype=np.uint8)
_UNHEX[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = np.arange(16, dtype=np.uint8)


def vault_key(secret_or_identity_bytes: bytes) -> bytes:
    """The 32-byte vault key from agency-private bytes (e.g. its signing key's raw private bytes).

    Deterministic: the same input gives the same key, hence the same row keys,
    run after run.  At least 32 bytes of secret input are required.
    """
    if not isinstance(secret_or_identity_bytes, bytes | bytearray) or len(secret_or_identity_bytes) < KEY_BYTES:
        raise TypeError(f"vault_key needs at least {KEY_BYTES} bytes of agency-private secret input")
    return hkdf_sha256(bytes(secret_or_identity_bytes), b"aidlink/v1/vault/master", KEY_BYTES, salt=_VAULT_SALT)


def _check_key(key: Any) -> bytes:
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
        raise TypeError(f"a vault key is exactly {KEY_BYTES} bytes (see vault_key())")
    return bytes(key)


def _row_key_mac_key(key: bytes) -> bytes:
    return hkdf_sha256(key, b"aidlink/v1/vault/row-key", KEY_BYTES, salt=_VAULT_SALT)


def _file_key(key: bytes, salt: bytes) -> bytes:
    return hkdf_sha256(key, b"aidlink/v1/vault/file-encryption", KEY_BYTES, salt=salt)


class _RowKeyMac:
    """HMAC-SHA256 (``cryptography``), keyed once and copied per message, first 16 bytes kept.

    Equal to ``hmac.digest(key, msg, "sha256")[:16]`` (checked in the tests).
    """

    def __init__(self, mac_key: bytes) -> None:
        self._base = c_hmac.HMAC(mac_key, hashes.SHA256())

    def digest(self, message: bytes) -> bytes:
        h = self._base.copy()
        h.update(message)
        return h.finalize()[:16]

    def digests(self, texts: Sequence[str]) -> bytes:
        """The digests of many row-key texts (UTF-8), concatenated."""
        copy = self._base.copy
        out: list[bytes] = []
        append = out.append
        for t in texts:
            h = copy()
            h.update((t if isinstance(t, str) else str(t)).encode("utf-8"))
            append(h.finalize()[:16])
        return b"".join(out)


def row_key_mac(key: bytes) -> _RowKeyMac:
    """The row-key MAC of a vault key: ``.digests(texts)`` gives what :meth:`VaultWriter.add`
    stores for those row-key texts (for :meth:`VaultWriter.add_records`)."""
    return _RowKeyMac(_row_key_mac_key(_check_key(key)))


def row_key_digest(key: bytes, row_key: str) -> str:
    """The stored row key (32 hex chars) for row-key text under a vault key."""
    return _RowKeyMac(_row_key_mac_key(_check_key(key))).digest(row_key.encode("utf-8")).hex()


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", counter, 1 if last else 0)


def _tokens_to_bytes(tokens: Sequence[str]) -> np.ndarray:
    """32-hex-char tokens -> (n,) 'V16' array; ValueError for anything else."""
    arr = np.asarray(tokens, dtype=object) if not isinstance(tokens, np.ndarray) else tokens
    n = len(arr)
    if n == 0:
        return np.zeros(0, dtype="V16")
    try:
        s = np.asarray(arr, dtype="U")
        if s.dtype.itemsize != 32 * 4 or (np.char.str_len(s) != 32).any():
            raise ValueError
        raw = s.astype("S32").view(np.uint8).reshape(n, 32)
    except (ValueError, UnicodeEncodeError, TypeError):
        raise ValueError("tokens must be 32 lower-case hex characters") from None
    nib = _UNHEX[raw]
    if (nib == 255).any():
        raise ValueError("tokens must be 32 lower-case hex characters")
    out = (nib[:, 0::2] << 4) | nib[:, 1::2]
    return np.ascontiguousarray(out).view("V16").ravel()


def _bytes_to_hex(values: np.ndarray) -> list[str]:
    n = len(values)
    if n == 0:
        return []
    raw = np.ascontiguousarray(values).view(np.uint8).reshape(n, 16)
    out = np.empty((n, 32), dtype=np.uint8)
    out[:, 0::2] = _HEX[raw >> 4]
    out[:, 1::2] = _HEX[raw & 15]
    return out.view("S32").ravel().astype(str).tolist()


class VaultWriter:
    """Writes a vault atomically: a temporary file beside ``path``, renamed on a clean close.

    Use as a context manager; an exception inside the ``with`` block (or
    :meth:`abort`) deletes the temporary file and leaves ``path`` untouched.
    ``path`` existing is refused unless ``force``.
    """

    def __init__(self, path: str | Path, *, key: bytes, package_id: str, dataset: str, force: bool = False,
                 rng: Callable[[int], bytes] = os.urandom) -> None:
        key = _check_key(key)
        if not isinstance(package_id, str) or not package_id:
            raise TypeError("package_id must be a non-empty string")
        if not isinstance(dataset, str) or not dataset:
            raise TypeError("dataset must be a non-empty string")
        self.path = Path(path)
        self.force = force
        if self.path.exists() and not force:
            raise OutputExistsError(f"{self.path}: output exists (give --force to replace it)")
        salt, prefix = rng(_SALT), rng(_NONCE_PREFIX)
        if len(salt) != _SALT or len(prefix) != _NONCE_PREFIX:
            raise ValueError("rng returned the wrong number of bytes")
        header = json.dumps({"version": FORMAT_VERSION, "package_id": package_id, "dataset": dataset,
                             "cipher": "AES-256-GCM", "kdf": "HKDF-SHA256", "record": "token16|row_i64|row_key16",
                             "segment_rows": SEGMENT_ROWS, "salt": salt.hex(), "nonce_prefix": prefix.hex()},
                            sort_keys=True, separators=(",", ":")).encode("utf-8")
        self._aad = MAGIC + bytes([FORMAT_VERSION]) + struct.pack(">I", len(header)) + header
        self._aead = AESGCM(_file_key(key, salt))
        self._mac = _RowKeyMac(_row_key_mac_key(key))
        self._prefix = prefix
        self._counter = 0
        self._pending: list[bytes] = []
        self._pending_rows = 0
        self.rows = 0
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.{rng(6).hex()}.tmp")
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._f = os.fdopen(fd, "wb")
        try:
            self._f.write(self._aad)
        except BaseException:
            self.abort()
            raise

    # -- writing --
    def add(self, tokens: Sequence[str], row_numbers: Sequence[int], row_keys: Sequence[str]) -> None:
        """Record a batch: token i belongs to file row ``row_numbers[i]`` whose row-key text is ``row_keys[i]``."""
        n = len(tokens)
        if len(row_numbers) != n or len(row_keys) != n:
            raise ValueError("tokens, row_numbers and row_keys must have the same length")
        self.add_records(_tokens_to_bytes(tokens).tobytes(), row_numbers, self._mac.digests(row_keys))

    def add_records(self, tokens: bytes, row_numbers: Sequence[int], row_key_digests: bytes) -> None:
        """:meth:`add` with the tokens as raw bytes (16 a token) and the row keys already
        digested (16 bytes each, by :func:`row_key_mac` of this vault's key)."""
        if self._closed:
            raise StateError(f"{self.path}: the vault writer is closed")
        n = len(row_numbers)
        if len(tokens) != 16 * n or len(row_key_digests) != 16 * n:
            raise ValueError("16 token bytes and 16 row-key digest bytes are needed per row number")
        if n == 0:
            return
        rec = np.empty(n, dtype=_RECORD)
        rec["token"] = np.frombuffer(tokens, dtype="V16")
        rows = np.asarray(row_numbers, dtype=np.int64)
        if (rows < 1).any():
            raise ValueError("row numbers start at 1")
        rec["row"] = rows
        rec["key"] = np.frombuffer(row_key_digests, dtype="V16")
        data = rec.tobytes()
        off = 0
        while off < len(data):
            room = (SEGMENT_ROWS - self._pending_rows) * RECORD_BYTES
            piece = data[off:off + room]
            self._pending.append(piece)
            self._pending_rows += len(piece) // RECORD_BYTES
            off += len(piece)
            if self._pending_rows == SEGMENT_ROWS:
                self._write_segment(last=False)
        self.rows += n

    def _write_segment(self, last: bool) -> None:
        plain = b"".join(self._pending)
        self._pending, self._pending_rows = [], 0
        ct = self._aead.encrypt(_nonce(self._prefix, self._counter, last), plain, self._aad)
        self._f.write(struct.pack(">BI", 1 if last else 0, len(ct)))
        self._f.write(ct)
        self._counter += 1

    # -- finishing --
    def close(self) -> Path:
        """Write the last segment, sync, and move the file into place."""
        if self._closed:
            return self.path
        try:
            self._write_segment(last=True)
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            if self.path.exists() and not self.force:
                raise OutputExistsError(f"{self.path}: output exists (give --force to replace it)")
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Discard everything written; ``path`` is left as it was."""
        self._closed = True
        with contextlib.suppress(OSError):
            self._f.close()
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)

    def __enter__(self) -> VaultWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class Vault:
    """An opened, fully verified vault."""

    def __init__(self, package_id: str, dataset: str, records: np.ndarray, mac_key: bytes) -> None:
        self.package_id = package_id
        self.dataset = dataset
        self._tokens = records["token"].copy()
        self._rows = records["row"].astype(np.int64)
        self._keys = records["key"].copy()
        self._order = np.argsort(self._tokens.view("S16"), kind="stable")
        self._sorted = self._tokens.view("S16")[self._order]
        self._mac = _RowKeyMac(mac_key)

    def __len__(self) -> int:
        return len(self._tokens)

    def __repr__(self) -> str:
        return f"Vault(package_id={self.package_id!r}, dataset={self.dataset!r}, rows={len(self)})"

    def _positions(self, tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        want = _tokens_to_bytes(tokens).view("S16")
        if not len(want) or not len(self._sorted):
            return np.zeros(len(want), bool), np.zeros(len(want), np.int64)
        at = np.searchsorted(self._sorted, want)
        at_c = np.minimum(at, len(self._sorted) - 1)
        # compare as raw bytes ('S' comparison ignores trailing NULs; lengths are equal, so equality is exact)
        found = self._sorted[at_c].view(np.uint8).reshape(-1, 16) == want.view(np.uint8).reshape(-1, 16)
        found = found.all(axis=1) & (at < len(self._sorted))
        return found, self._order[at_c]

    def lookup(self, tokens: Sequence[str]) -> pd.DataFrame:
        """Rows for the given tokens, in the order given: columns token, row_number, row_key (hex).

        Tokens not in this vault are left out (compare lengths to notice them).
        """
        found, pos = self._positions(tokens)
        pos = pos[found]
        return pd.DataFrame({
            "token": _bytes_to_hex(self._tokens[pos]),
            "row_number": self._rows[pos],
            "row_key": _bytes_to_hex(self._keys[pos]),
        })

    def __contains__(self, token: object) -> bool:
        if not isinstance(token, str):
            return False
        try:
            return bool(self._positions([token])[0][0])
        except ValueError:
            return False

    def row_key_digest(self, row_key: str) -> str:
        """The stored form (hex) of a row-key text, to compare with ``lookup(...)["row_key"]``."""
        return self._mac.digest(row_key.encode("utf-8")).hex()


def open_vault(path: str | Path, *, key: bytes) -> Vault:
    """Read and verify a whole vault file; any failure raises IntegrityError (one opaque message)."""
    key = _check_key(key)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as e:
        raise InputError(f"{path}: vault file not found") from e
    except OSError as e:
        raise InputError(f"{path}: the vault file cannot be read ({e.strerror or type(e).__name__})") from e
    try:
        return _parse(data, key)
    except IntegrityError:
        raise
    except (InvalidTag, ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError,
            json.JSONDecodeError) as e:
        raise IntegrityError() from e


def _parse(data: bytes, key: bytes) -> Vault:
    head = len(MAGIC) + 1 + 4
    if len(data) < head or data[:len(MAGIC)] != MAGIC or data[len(MAGIC)] != FORMAT_VERSION:
        raise IntegrityError()
    (hlen,) = struct.unpack(">I", data[len(MAGIC) + 1:head])
    if hlen > _MAX_HEADER or head + hlen > len(data):
        raise IntegrityError()
    aad = data[:head + hlen]
    header = json.loads(data[head:head + hlen].decode("utf-8"))
    salt, prefix = bytes.fromhex(header["salt"]), bytes.fromhex(header["nonce_prefix"])
    if len(salt) != _SALT or len(prefix) != _NONCE_PREFIX or header.get("version") != FORMAT_VERSION:
        raise IntegrityError()
    aead = AESGCM(_file_key(key, salt))
    max_ct = SEGMENT_ROWS * RECORD_BYTES + _TAG
    off, counter, done = head + hlen, 0, False
    parts: list[bytes] = []
    while off < len(data):
        if done or off + 5 > len(data):
            raise IntegrityError()
        flag, clen = struct.unpack(">BI", data[off:off + 5])
        off += 5
        if flag not in (0, 1) or clen < _TAG or clen > max_ct or off + clen > len(data):
            raise IntegrityError()
        plain = aead.decrypt(_nonce(prefix, counter, flag == 1), data[off:off + clen], aad)
        if len(plain) % RECORD_BYTES:
            raise IntegrityError()
        parts.append(plain)
        off += clen
        counter += 1
        done = flag == 1
    if not done:
        raise IntegrityError()
    records = np.frombuffer(b"".join(parts), dtype=_RECORD)
    return Vault(str(header["package_id"]), str(header["dataset"]), records, _row_key_mac_key(key))
