"""Keyed hashing for the native scheme.

Per-record values (filter positions, exact hashes, blocking and typo keys):
AES-256-CMAC (:mod:`.prf`), a batch of messages a call.  The keyed
permutations (a few per run) stay on HMAC-SHA256 (``cryptography``).

Every function hashes *distinct* messages; callers de-duplicate first.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as c_hmac

from .prf import BLOCK, Cmac, pack_bytes
from .tokens import csr_ptr

PERMUTATION_LABEL = b"aidlink-permutation-v1"
COUNTER_PREFIX = b"\xff"  # never a byte of UTF-8: counter blocks cannot equal a token's block 0


@dataclass(frozen=True)
class Messages:
    """Messages without concatenating them: message ``i`` is ``a[i] || b[i]`` with ``a[i] =
    buf_a[start_a[i]:start_a[i] + len_a[i]]`` and ``b[i]`` likewise (no b-part when ``buf_b``
    is None) -- e.g. a salt prefix and a token, each stored once."""

    buf_a: np.ndarray
    start_a: np.ndarray
    len_a: np.ndarray
    buf_b: np.ndarray | None = None
    start_b: np.ndarray | None = None
    len_b: np.ndarray | None = None

    @classmethod
    def of(cls, messages: Sequence[bytes] | Messages) -> Messages:
        if isinstance(messages, Messages):
            return messages
        return cls(*pack_bytes(messages))

    def take(self, idx: np.ndarray) -> Messages:
        if self.buf_b is None:
            return Messages(self.buf_a, self.start_a[idx], self.len_a[idx])
        return Messages(self.buf_a, self.start_a[idx], self.len_a[idx], self.buf_b, self.start_b[idx],
                        self.len_b[idx])

    def tags(self, cmac: Cmac, header: bytes = b"") -> np.ndarray:
        """AES-256-CMAC of ``header || message`` for every message: ``(n, 16)`` uint8."""
        return cmac.segments(self.buf_a, self.start_a, self.len_a, self.buf_b, self.start_b, self.len_b,
                             header=header)


def word_bytes(length: int) -> int:
    """Bytes per word of the position stream for a filter of ``length`` bits: 2 (16-bit words,
    8 a block) when ``length`` is a power of two -- ``w mod length`` is then exactly
    uniform -- else 4 (32-bit words, 4 a block; bias below ``length / 2**32``)."""
    return 2 if length & (length - 1) == 0 and length <= 1 << 16 else 4


def words_per_block(length: int) -> int:
    """Words of the position stream one CMAC block gives, for a filter of ``length`` bits."""
    return BLOCK // word_bytes(length)


def _header(j: int) -> bytes:
    return b"" if j == 0 else COUNTER_PREFIX + j.to_bytes(4, "big")


def token_positions(key: bytes, messages: Sequence[bytes] | Messages, kmax: np.ndarray,
                    length: int) -> tuple[np.ndarray, np.ndarray]:
    """Bit positions of every message: the first ``kmax[i]`` words of its
    stream, each reduced mod ``length``.

    Stream of message ``m``: block 0 = CMAC(key, m); block j >= 1 =
    CMAC(key, 0xFF || uint32_be(j) || m) (AES-256-CMAC, 16 bytes a block);
    words are big-endian, 16-bit when ``length`` is a power of two, else
    32-bit (:func:`word_bytes`).  Returns CSR ``(ptr, pos)`` with
    ``pos[ptr[i]:ptr[i] + kmax[i]]`` for message ``i``.
    """
    msgs = Messages.of(messages)
    kmax = np.asarray(kmax, dtype=np.int64)
    per = words_per_block(length)
    dtype = ">u2" if word_bytes(length) == 2 else ">u4"
    cmac = Cmac(key)
    if len(kmax) and kmax.min() == kmax.max():  # one k for all: a matrix, sliced
        k = int(kmax[0])
        nb = (k + per - 1) // per
        words = np.empty((len(kmax), nb * per), dtype=np.uint32)
        for j in range(nb):
            words[:, per * j: per * j + per] = msgs.tags(cmac, _header(j)).view(dtype)
        pos = (words[:, :k] % np.uint32(length)).astype(np.int32).ravel()
        return np.arange(0, len(kmax) * k + 1, k, dtype=np.int64), pos
    nblocks = (kmax + per - 1) // per
    wptr = csr_ptr(nblocks * per)
    words = np.zeros(int(wptr[-1]), dtype=np.uint32)
    top = int(nblocks.max()) if len(nblocks) else 0
    lane = np.arange(per, dtype=np.int64)
    for j in range(top):
        sel = np.flatnonzero(nblocks > j)
        block = msgs.take(sel).tags(cmac, _header(j)).view(dtype)
        words[(wptr[:-1][sel] + per * j)[:, None] + lane] = block
    pptr = csr_ptr(kmax)
    total = int(pptr[-1])
    src = np.repeat(wptr[:-1], kmax) + (np.arange(total, dtype=np.int64) - np.repeat(pptr[:-1], kmax))
    pos = (words[src] % np.uint32(length)).astype(np.int32)
    return pptr, pos


def keyed_int64(key: bytes, messages: Sequence[bytes] | Messages) -> np.ndarray:
    """First 8 bytes, big-endian signed, of AES-256-CMAC of every message."""
    tags = Messages.of(messages).tags(Cmac(key))
    return tags[:, :8].copy().view(">i8").ravel().astype(np.int64)


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
