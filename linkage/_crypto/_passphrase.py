"""Passphrase-sealed key files: scrypt (RFC 7914) -> ChaCha20-Poly1305 (RFC 8439).

The container is a JSON document, version 1 (docs/formats/package.md, "Key files")::

    {"format": "aidlink-key-file", "version": 1, "kind": "...", "created_at": "...",
     "public": {...non-secret metadata...},
     "kdf": {"name": "scrypt", "n": 32768, "r": 8, "p": 1, "length": 32, "salt": "<base64, 16 bytes>"},
     "cipher": {"name": "chacha20-poly1305", "nonce": "<base64, 12 bytes>"},
     "ciphertext": "<base64>"}

key = scrypt(NFC(passphrase) as UTF-8, salt, n, r, p, 32); ciphertext =
ChaCha20-Poly1305(key, nonce, plaintext, aad) with aad = ``AAD_LABEL`` ||
canonical JSON of the document without ``ciphertext``.  So every field --
the kind, the public metadata, the KDF parameters -- is authenticated: a
wrong passphrase and an edited file are the same failure, ``PassphraseError``,
which says nothing more.
"""

from __future__ import annotations

import os
import unicodedata
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ..documents import canonical_json
from ..errors import ConfigError, PassphraseError, Problem
from ._hpke import Rng
from ._util import b64decode, b64encode

FORMAT = "aidlink-key-file"
VERSION = 1
AAD_LABEL = b"aidlink key file v1\x00"
KINDS = ("linkage-secret", "agency-identity", "hub-identity")
DEFAULT_SCRYPT_N = 1 << 15
MIN_SCRYPT_N = 1 << 15
MAX_SCRYPT_N = 1 << 22
SALT_BYTES = 16
NONCE_BYTES = 12


def normalise_passphrase(passphrase: str | bytes) -> bytes:
    """UTF-8 of the NFC form, so the same passphrase typed anywhere gives the same key."""
    if isinstance(passphrase, bytes | bytearray):
        return bytes(passphrase)
    if not isinstance(passphrase, str):
        raise TypeError("a passphrase is a str")
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def _derive(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase)


def _aad(doc: dict[str, Any]) -> bytes:
    return AAD_LABEL + canonical_json({k: v for k, v in doc.items() if k != "ciphertext"})


def seal_key_file(kind: str, public: dict[str, Any], plaintext: bytes, passphrase: str | bytes, *,
                  scrypt_n: int = DEFAULT_SCRYPT_N, rng: Rng = os.urandom,
                  now: datetime | None = None) -> dict[str, Any]:
    """The key-file document holding ``plaintext`` sealed under ``passphrase``."""
    if kind not in KINDS:
        raise ValueError(f"unknown key-file kind; use one of {list(KINDS)}")
    if not isinstance(scrypt_n, int) or scrypt_n < MIN_SCRYPT_N or scrypt_n > MAX_SCRYPT_N \
            or scrypt_n & (scrypt_n - 1):
        raise ValueError(f"scrypt n must be a power of two from {MIN_SCRYPT_N} to {MAX_SCRYPT_N}")
    pw = normalise_passphrase(passphrase)
    if not pw:
        raise ValueError("the passphrase is empty")
    now = now or datetime.now(UTC)
    salt, nonce = rng(SALT_BYTES), rng(NONCE_BYTES)
    doc: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "created_at": now.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "public": public,
        "kdf": {"name": "scrypt", "n": scrypt_n, "r": 8, "p": 1, "length": 32, "salt": b64encode(salt)},
        "cipher": {"name": "chacha20-poly1305", "nonce": b64encode(nonce)},
    }
    key = _derive(pw, salt, scrypt_n, 8, 1)
    doc["ciphertext"] = b64encode(ChaCha20Poly1305(key).encrypt(nonce, plaintext, _aad(doc)))
    return doc


def key_file_problems(doc: Any) -> list[Problem]:
    """Structural problems of a key-file document (value-free messages)."""
    if not isinstance(doc, dict):
        return [Problem("$", "must be a JSON object")]
    problems = []
    if doc.get("format") != FORMAT:
        problems.append(Problem("$.format", f"must be {FORMAT!r}"))
    if doc.get("version") != VERSION:
        problems.append(Problem("$.version", f"unsupported key-file version (this aidlink reads {VERSION})"))
    if doc.get("kind") not in KINDS:
        problems.append(Problem("$.kind", f"must be one of {list(KINDS)}"))
    if not isinstance(doc.get("public"), dict):
        problems.append(Problem("$.public", "must be an object"))
    if not isinstance(doc.get("created_at"), str):
        problems.append(Problem("$.created_at", "must be a string"))
    kdf = doc.get("kdf")
    if not isinstance(kdf, dict) or kdf.get("name") != "scrypt":
        problems.append(Problem("$.kdf", "must be an scrypt parameter object"))
    else:
        n, r, p = kdf.get("n"), kdf.get("r"), kdf.get("p")
        if not (isinstance(n, int) and MIN_SCRYPT_N <= n <= MAX_SCRYPT_N and not n & (n - 1)):
            problems.append(Problem("$.kdf.n", f"must be a power of two from {MIN_SCRYPT_N} to {MAX_SCRYPT_N}"))
        if not (isinstance(r, int) and 1 <= r <= 32):
            problems.append(Problem("$.kdf.r", "must be an integer from 1 to 32"))
        if not (isinstance(p, int) and 1 <= p <= 16):
            problems.append(Problem("$.kdf.p", "must be an integer from 1 to 16"))
        if kdf.get("length") != 32:
            problems.append(Problem("$.kdf.length", "must be 32"))
        if not _b64_of_length(kdf.get("salt"), SALT_BYTES):
            problems.append(Problem("$.kdf.salt", f"must be base64 of {SALT_BYTES} bytes"))
    cipher = doc.get("cipher")
    if not isinstance(cipher, dict) or cipher.get("name") != "chacha20-poly1305":
        problems.append(Problem("$.cipher", "must name chacha20-poly1305"))
    elif not _b64_of_length(cipher.get("nonce"), NONCE_BYTES):
        problems.append(Problem("$.cipher.nonce", f"must be base64 of {NONCE_BYTES} bytes"))
    if not _b64_of_length(doc.get("ciphertext"), None):
        problems.append(Problem("$.ciphertext", "must be base64"))
    extra = sorted(set(doc) - {"format", "version", "kind", "created_at", "public", "kdf", "cipher",
                               "ciphertext"})
    if extra:
        problems.append(Problem("$", f"unknown properties {', '.join(map(repr, extra))}"))
    return problems


def _b64_of_length(value: Any, length: int | None) -> bool:
    try:
        raw = b64decode(value)
    except ValueError:
        return False
    return length is None or len(raw) == length


def check_key_file(doc: Any, source: str) -> dict[str, Any]:
    problems = key_file_problems(doc)
    if problems:
        raise ConfigError(source, problems)
    return doc


def open_key_file(doc: dict[str, Any], passphrase: str | bytes) -> bytes:
    """The sealed plaintext, or PassphraseError (wrong passphrase or edited file)."""
    kdf, cipher = doc["kdf"], doc["cipher"]
    key = _derive(normalise_passphrase(passphrase), b64decode(kdf["salt"]), kdf["n"], kdf["r"], kdf["p"])
    try:
        return ChaCha20Poly1305(key).decrypt(b64decode(cipher["nonce"]), b64decode(doc["ciphertext"]),
                                             _aad(doc))
    except Exception:
        raise PassphraseError() from None
