"""Keyed hashing for the native scheme: HMAC-SHA256 (``cryptography``) only.

Every function hashes *distinct* messages; callers de-duplicate first.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as c_hmac

PERMUTATION_LABEL = b"aidlink-permutation-v1"
COUNTER_PREFIX = b"\xff"  # never a byte of UTF-8: counter blocks cannot equal a token's block 0


def hmac_many(key: bytes, messages: Iterable[bytes]) -> bytes:
    """Concatenated HMAC-SHA256 digests (32 bytes each) of ``messages`` under ``key``."""
    copy = c_hmac.HMAC(key, hashes.SHA256()).copy  # the keyed state, set up once
    out: list[bytes] = []
    append = out.append
    for m in messages:
        h = copy()
        h.update(m)
        append(h.finalize())
    return b"".join(out)


def _ptr(counts: np.ndarray) -> np.ndarray:
    ptr = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    return ptr


def token_positions(key: bytes, messages: Sequence[bytes], kmax: np.ndarray,
                    length: int) -> tuple[np.ndarray, np.ndarray]:
    """Bit positions of every message: the first ``kmax[i]`` 32-bit words of its
    HMAC stream, each reduced mod ``length``.

    Stream of message ``m``: block 0 = HMAC(key, m); block j >= 1 =
    HMAC(key, 0xFF || uint32_be(j) || m); words are big-endian uint32, 8 per block.
    Returns CSR ``(ptr, pos)`` with ``pos[ptr[i]:ptr[i] + kmax[i]]`` for message ``i``.
    """
    kmax = np.asarray(kmax, dtype=np.int64)
    if len(kmax) and kmax.min() == kmax.max():  # one k for all: a matrix, sliced
        k = int(kmax[0])
        nb = (k + 7) // 8
        words = np.empty((len(kmax), nb * 8), dtype=np.uint32)
        for j in range(nb):
            prefix = b"" if j == 0 else COUNTER_PREFIX + j.to_bytes(4, "big")
            msgs = messages if j == 0 else [prefix + m for m in messages]
            words[:, 8 * j: 8 * j + 8] = np.frombuffer(hmac_many(key, msgs), dtype=">u4").reshape(-1, 8)
        pos = (words[:, :k] % np.uint32(length)).astype(np.int32).ravel()
        return np.arange(0, len(kmax) * k + 1, k, dtype=np.int64), pos
    nblocks = (kmax + 7) // 8
    wptr = _ptr(nblocks * 8)
    words = np.zeros(int(wptr[-1]), dtype=np.uint32)
    top = int(nblocks.max()) if len(nblocks) else 0
    lane = np.arange(8, dtype=np.int64)
    for j in range(top):
        sel = np.flatnonzero(nblocks > j)
        prefix = b"" if j == 0 else COUNTER_PREFIX + j.to_bytes(4, "big")
        digests = hmac_many(key, (prefix + messages[i] for i in sel.tolist()))
        block = np.frombuffer(digests, dtype=">u4").reshape(-1, 8)
        words[(wptr[:-1][sel] + 8 * j)[:, None] + lane] = block
    pptr = _ptr(kmax)
    total = int(pptr[-1])
    src = np.repeat(wptr[:-1], kmax) + (np.arange(total, dtype=np.int64) - np.repeat(pptr[:-1], kmax))
    pos = (words[src] % np.uint32(length)).astype(np.int32)
    return pptr, pos


def hmac_int64(key: bytes, messages: Iterable[bytes]) -> np.ndarray:
    """First 8 bytes, big-endian signed, of HMAC-SHA256 of every message."""
    digests = hmac_many(key, messages)
    return np.frombuffer(digests, dtype=">i8").reshape(-1, 4)[:, 0].astype(np.int64)


def _stream_words(key: bytes, label: bytes):
    base = c_hmac.HMAC(key, hashes.SHA256())
    counter = 0
    while True:
        h = base.copy()
        h.update(label + counter.to_bytes(4, "big"))
        yield from struct.unpack(">8I", h.finalize())
        counter += 1


def keyed_permutation(key: bytes, length: int) -> np.ndarray:
    """Fisher--Yates permutation ``p`` of ``range(length)`` driven by a keyed stream.

    Stream: big-endian uint32 words of HMAC-SHA256(key, "aidlink-permutation-v1" ||
    uint32_be(length) || uint32_be(c)) for c = 0, 1, ...  For i = length-1 down to 1:
    draw words until one is below 2**32 - (2**32 mod (i+1)) (rejection: exactly
    uniform), j = word mod (i+1), swap p[i] and p[j].  Applied as out[i] = in[p[i]].
    """
    words = _stream_words(key, PERMUTATION_LABEL + length.to_bytes(4, "big"))
    p = list(range(length))
    for i in range(length - 1, 0, -1):
        bound = i + 1
        limit = (1 << 32) - ((1 << 32) % bound)
        w = next(words)
        while w >= limit:
            w = next(words)
        j = w % bound
        p[i], p[j] = p[j], p[i]
    arr = np.array(p, dtype=np.int32)
    arr.flags.writeable = False
    return arr


def inverse_permutation(p: np.ndarray) -> np.ndarray:
    """``inv`` with ``inv[p[i]] = i``: input bit ``x`` lands at output bit ``inv[x]``."""
    inv = np.empty_like(p)
    inv[p] = np.arange(len(p), dtype=p.dtype)
    return inv
