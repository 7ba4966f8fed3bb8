"""HPKE (RFC 9180) base mode through ``cryptography``, and the receiving keys.

Two suites, both with HKDF-SHA256 and ChaCha20-Poly1305:

=================== ======== ============================================ ===== ====== =======
name                suite id KEM                                          enc   public private
=================== ======== ============================================ ===== ====== =======
``x25519``          1        DHKEM(X25519, HKDF-SHA256), KEM id 0x0020    32    32     32
``mlkem768-x25519`` 2        MLKEM768-X25519 hybrid (X-Wing construction) 1120  1216   96
=================== ======== ============================================ ===== ====== =======

Byte encodings of the keys (ours, documented in docs/formats/package.md):
X25519 keys are their 32 raw bytes.  A hybrid public key is the ML-KEM-768
encapsulation key (1184 bytes) followed by the X25519 public key (32 bytes),
the order X-Wing uses; a hybrid private key is the 64-byte ML-KEM seed
followed by the 32-byte X25519 private key.

``cryptography`` exposes single-shot HPKE only (no context export, no
caller-chosen ephemeral key), so packages seal a random 256-bit content key
with it and encrypt the body with :mod:`._stream` under keys derived from that.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from ..errors import IntegrityError

Rng = Callable[[int], bytes]

CONTENT_KEY_BYTES = 32
_TAG = 16


@dataclass(frozen=True)
class SuiteSpec:
    """One HPKE suite aidlink uses."""

    name: str
    suite_id: int
    kem: Any
    kdf: Any
    aead: Any
    enc_length: int
    public_length: int
    private_length: int
    description: str

    def hpke_suite(self) -> hpke.Suite:
        return hpke.Suite(self.kem, self.kdf, self.aead)

    @property
    def sealed_key_length(self) -> int:
        """Length of HPKE's output when sealing one content key: enc || ct || tag."""
        return self.enc_length + CONTENT_KEY_BYTES + _TAG


SUITES: dict[str, SuiteSpec] = {
    "x25519": SuiteSpec(
        "x25519", 1, hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305,
        32, 32, 32, "DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / ChaCha20Poly1305"),
    "mlkem768-x25519": SuiteSpec(
        "mlkem768-x25519", 2, hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256,
        hpke.AEAD.CHACHA20_POLY1305, 1120, 1216, 96,
        "MLKEM768-X25519 (hybrid, post-quantum) / HKDF-SHA256 / ChaCha20Poly1305"),
}
SUITES_BY_ID: dict[int, SuiteSpec] = {s.suite_id: s for s in SUITES.values()}
DEFAULT_SUITE = "x25519"


def suite_spec(name: str) -> SuiteSpec:
    """The suite called ``name``; ValueError naming the allowed ones otherwise."""
    try:
        return SUITES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown sealing suite; use one of {sorted(SUITES)}") from None


class ReceivingPublicKey:
    """An HPKE public key of one suite, with its byte encoding."""

    __slots__ = ("_key", "raw", "suite")

    def __init__(self, suite: str, raw: bytes) -> None:
        spec = suite_spec(suite)
        raw = bytes(raw)
        if len(raw) != spec.public_length:
            raise ValueError(f"a {suite} public key is {spec.public_length} bytes")
        try:
            if suite == "x25519":
                key: Any = x25519.X25519PublicKey.from_public_bytes(raw)
            else:
                key = hpke.MLKEM768X25519PublicKey(
                    mlkem.MLKEM768PublicKey.from_public_bytes(raw[:1184]),
                    x25519.X25519PublicKey.from_public_bytes(raw[1184:]))
        except ValueError as e:
            raise ValueError(f"not a valid {suite} public key") from e
        self.suite = suite
        self.raw = raw
        self._key = key

    def hpke_key(self) -> Any:
        return self._key

    @property
    def fingerprint(self) -> str:
        """sha256 (hex) of the suite name and the key bytes, for out-of-band checks."""
        return hashlib.sha256(self.suite.encode() + b"\x00" + self.raw).hexdigest()

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ReceivingPublicKey) and other.suite == self.suite
                and other.raw == self.raw)

    def __hash__(self) -> int:
        return hash((self.suite, self.raw))

    def __repr__(self) -> str:
        return f"ReceivingPublicKey({self.suite}, {self.fingerprint[:16]})"


class ReceivingPrivateKey:
    """An HPKE private key of one suite.  Its repr never shows key material."""

    __slots__ = ("_key", "_public", "_raw", "suite")

    def __init__(self, suite: str, raw: bytes) -> None:
        spec = suite_spec(suite)
        raw = bytes(raw)
        if len(raw) != spec.private_length:
            raise ValueError(f"a {suite} private key is {spec.private_length} bytes")
        if suite == "x25519":
            xk = x25519.X25519PrivateKey.from_private_bytes(raw)
            key: Any = xk
            public_raw = xk.public_key().public_bytes_raw()
        else:
            mk = mlkem.MLKEM768PrivateKey.from_seed_bytes(raw[:64])
            xk = x25519.X25519PrivateKey.from_private_bytes(raw[64:])
            key = hpke.MLKEM768X25519PrivateKey(mk, xk)
            public_raw = mk.public_key().public_bytes_raw() + xk.public_key().public_bytes_raw()
        self.suite = suite
        self._raw = raw
        self._key = key
        self._public = ReceivingPublicKey(suite, public_raw)

    @classmethod
    def generate(cls, suite: str = DEFAULT_SUITE, rng: Rng = os.urandom) -> ReceivingPrivateKey:
        return cls(suite, rng(suite_spec(suite).private_length))

    def private_bytes(self) -> bytes:
        return self._raw

    def public_key(self) -> ReceivingPublicKey:
        return self._public

    def hpke_key(self) -> Any:
        return self._key

    def __repr__(self) -> str:
        return f"ReceivingPrivateKey({self.suite}, <redacted>)"


def public_hpke_key(key: Any, suite: str) -> Any:
    """The ``cryptography`` HPKE public key object for ``suite``, type-checked."""
    suite_spec(suite)
    if isinstance(key, ReceivingPublicKey):
        if key.suite != suite:
            raise TypeError(f"the recipient's key is a {key.suite} key, not a {suite} key")
        return key.hpke_key()
    if isinstance(key, ReceivingPrivateKey):
        raise TypeError("pass the recipient's public key, not a private key")
    expected = x25519.X25519PublicKey if suite == "x25519" else hpke.MLKEM768X25519PublicKey
    if not isinstance(key, expected):
        raise TypeError(f"the recipient's key must be a {suite} public key")
    return key


def private_hpke_key(key: Any, suite: str) -> Any | None:
    """The HPKE private key object for ``suite``, or None if ``key`` is not one."""
    if isinstance(key, ReceivingPrivateKey):
        return key.hpke_key() if key.suite == suite else None
    expected = x25519.X25519PrivateKey if suite == "x25519" else hpke.MLKEM768X25519PrivateKey
    return key if isinstance(key, expected) else None


def seal_content_key(spec: SuiteSpec, public_key: Any, content_key: bytes, info: bytes) -> bytes:
    """HPKE single-shot Seal (base mode, empty aad) of a content key: enc || ct."""
    if len(content_key) != CONTENT_KEY_BYTES:
        raise ValueError("a content key is 32 bytes")
    blob = spec.hpke_suite().encrypt(content_key, public_key, info=info)
    if len(blob) != spec.sealed_key_length:  # pragma: no cover - library contract
        raise RuntimeError("unexpected HPKE output length")
    return blob


def open_content_key(spec: SuiteSpec, private_key: Any, blob: bytes, info: bytes) -> bytes:
    """HPKE single-shot Open; any failure is the one opaque IntegrityError."""
    if private_key is None or len(blob) != spec.sealed_key_length:
        raise IntegrityError()
    try:
        key = spec.hpke_suite().decrypt(blob, private_key, info=info)
    except Exception:
        raise IntegrityError() from None
    if len(key) != CONTENT_KEY_BYTES:
        raise IntegrityError()
    return key
