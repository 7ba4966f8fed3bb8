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


def word_bytes(length: int) -> int:
    """Bytes per word of the position stream for a filter of ``length`` bits: 2 (16-bit words,
    16 a block) when ``length`` is a power of two -- ``w mod length`` is then exactly
    uniform -- else 4 (32-bit words, 8 a block; bias below ``length / 2**32``)."""
    return 2 if length & (length - 1) == 0 and length <= 1 << 16 else 4


def words_per_block(length: int) -> int:
    """Words of the position stream one HMAC block gives, for a filter of ``length`` bits."""
    return 32 // word_bytes(length)


def token_positions(key: bytes, messages: Sequence[bytes], kmax: np.ndarray,
                    length: int) -> tuple[np.ndarray, np.ndarray]:
    """Bit positions of every message: the first ``kmax[i]`` words of its HMAC
    stream, each reduced mod ``length``.

    Stream of message ``m``: block 0 = HMAC(key, m); block j >= 1 =
    HMAC(key, 0xFF || uint32_be(j) || m); words are big-endian, 16-bit when
    ``length`` is a power of two, else 32-bit (:func:`word_bytes`).
    Returns CSR ``(ptr, pos)`` with ``pos[ptr[i]:ptr[i] + kmax[i]]`` for message ``i``.
    """
    kmax = np.asarray(kmax, dtype=np.int64)
    per = words_per_block(length)
    dtype = ">u2" if per == 16 else ">u4"
    if len(kmax) and kmax.min() == kmax.max():  # one k for all: a matrix, sliced
        k = int(kmax[0])
        nb = (k + per - 1) // per
        words = np.empty((len(kmax), nb * per), dtype=np.uint32)
        for j in range(nb):
            msgs = messages if j == 0 else list(map((COUNTER_PREFIX + j.to_bytes(4, "big")).__add__, messages))
            words[:, per * j: per * j + per] = np.frombuffer(hmac_many(key, msgs), dtype=dtype).reshape(-1, per)
        pos = (words[:, :k] % np.uint32(length)).astype(np.int32).ravel()
        return np.arange(0, len(kmax) * k + 1, k, dtype=np.int64), pos
    nblocks = (kmax + per - 1) // per
    wptr = _ptr(nblocks * per)
    words = np.zeros(int(wptr[-1]), dtype=np.uint32)
    top = int(nblocks.max()) if len(nblocks) else 0
    lane = np.arange(per, dtype=np.int64)
    for j in range(top):
        sel = np.flatnonzero(nblocks > j)
        prefix = b"" if j == 0 else COUNTER_PREFIX + j.to_bytes(4, "big")
        digests = hmac_many(key, (prefix + messages[i] for i in sel.tolist()))
        block = np.frombuffer(digests, dtype=dtype).reshape(-1, per)
        words[(wptr[:-1][sel] + per * j)[:, None] + lane] = block
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
