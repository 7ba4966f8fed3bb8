"""Strict base64 and constant-time comparison."""

from __future__ import annotations

import base64
import binascii
import hmac


def b64encode(data: bytes) -> str:
    """Standard base64 with padding (RFC 4648 section 4), as text."""
    return base64.b64encode(bytes(data)).decode("ascii")


def b64decode(text: str) -> bytes:
    """Strict base64: raises ValueError on any character outside the alphabet."""
    if not isinstance(text, str):
        raise ValueError("base64 text expected")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise ValueError("not valid base64") from e


def ct_equal(a: bytes | str, b: bytes | str) -> bool:
    """Compare without leaking where two values differ."""
    if isinstance(a, str):
        a = a.encode("utf-8")
    if isinstance(b, str):
        b = b.encode("utf-8")
    return hmac.compare_digest(a, b)
