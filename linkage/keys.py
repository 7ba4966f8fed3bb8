"""The linkage secret and the keys derived from it.

One 256-bit linkage secret is shared by the agencies (never by the hub).
Every use gets its own key, derived with HKDF-SHA256 (RFC 5869) with an
``info`` string naming the purpose, the schema id and the field, so that no
two uses share a key.  A key-check value (a MAC of a fixed label under a key
derived for that purpose alone) travels in every package manifest: the hub can
see that all agencies used the same secret without learning anything about it.
"""

from __future__ import annotations

import hmac as _hmac
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as c_hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SECRET_BYTES = 32
HKDF_SALT = b"aidlink-linkage-secret-v1"
KCV_LABEL = b"aidlink key-check value v1"
PURPOSES = ("bloom", "clk", "exact", "blocking", "permute", "salt")


def hkdf_sha256(ikm: bytes, info: bytes, length: int = 32, salt: bytes = HKDF_SALT) -> bytes:
    """HKDF-SHA256 (RFC 5869) from ``cryptography``."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 from ``cryptography``."""
    h = c_hmac.HMAC(key, hashes.SHA256())
    h.update(message)
    return h.finalize()


@dataclass(frozen=True, repr=False)
class LinkageSecret:
    """A 256-bit linkage secret.  Its repr never shows the bytes."""

    value: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.value, bytes | bytearray) or len(self.value) != SECRET_BYTES:
            raise TypeError(f"a linkage secret is exactly {SECRET_BYTES} bytes")

    def __repr__(self) -> str:
        return "LinkageSecret(<redacted>)"

    @classmethod
    def generate(cls) -> LinkageSecret:
        return cls(secrets.token_bytes(SECRET_BYTES))

    def derive(self, purpose: str, schema_id: str, field: str = "", length: int = 32) -> bytes:
        """The key for one purpose of one field of one schema."""
        if purpose not in PURPOSES:
            raise ValueError(f"unknown key purpose {purpose!r}")
        info = b"aidlink/v1/" + purpose.encode() + b"/" + schema_id.encode() + b"/" + field.encode()
        return hkdf_sha256(bytes(self.value), info, length)

    def key_check_value(self) -> str:
        """Hex MAC of a fixed label: equal for equal secrets, reveals nothing else."""
        k = hkdf_sha256(bytes(self.value), b"aidlink/v1/key-check-value")
        return hmac_sha256(k, KCV_LABEL)[:16].hex()


def constant_time_equal(a: bytes | str, b: bytes | str) -> bool:
    """Compare two MACs or digests without leaking where they differ."""
    if isinstance(a, str):
        a = a.encode()
    if isinstance(b, str):
        b = b.encode()
    return _hmac.compare_digest(a, b)
