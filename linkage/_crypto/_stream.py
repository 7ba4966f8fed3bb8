"""STREAM: chunked authenticated encryption (Hoang, Reyhanitabar, Rogaway, Vizár 2015).

A plaintext of any length is cut into chunks of ``chunk_size`` bytes (the last
one may be shorter, or empty when the plaintext is empty) and each chunk is
sealed with ChaCha20-Poly1305 under one key with the nonce

    nonce_i = prefix (7 bytes) || i (4 bytes, big-endian) || last (1 byte: 0x01 on the final chunk, else 0x00)

and the same associated data (the package header) on every chunk.  Each chunk
on disk is ``len(chunk) + 16`` bytes; every chunk but the last is exactly
``chunk_size + 16`` bytes, so a reader needs no lengths: it knows a chunk is
the last one because nothing follows it.  Then:

* reordering or duplicating chunks changes some chunk's counter -> its tag fails;
* dropping chunks at the end (truncation, even exactly at a chunk boundary)
  leaves a final chunk that was sealed with ``last = 0`` -> its tag fails;
* appending data makes the sealed final chunk a non-final one -> its tag fails.

The key and prefix are derived by HKDF-SHA256 from a fresh random 256-bit
content key per package, so (key, nonce) never repeats; the 32-bit counter
allows 2**32 chunks, i.e. 4 PiB at the default 1 MiB chunk.  Memory use is
two chunks whatever the plaintext's size.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import IntegrityError

TAG_BYTES = 16
PREFIX_BYTES = 7
MAX_CHUNKS = 1 << 32
MIN_CHUNK_SIZE = 64
MAX_CHUNK_SIZE = 1 << 26
STREAM_INFO = b"aidlink/v1/package/stream-key"


def derive_stream_key(content_key: bytes) -> tuple[bytes, bytes]:
    """(ChaCha20-Poly1305 key, 7-byte nonce prefix) from a content key, by HKDF-SHA256."""
    okm = HKDF(algorithm=hashes.SHA256(), length=32 + PREFIX_BYTES, salt=None,
               info=STREAM_INFO).derive(content_key)
    return okm[:32], okm[32:]


def chunk_nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    """The 96-bit nonce of chunk number ``counter``."""
    if not 0 <= counter < MAX_CHUNKS:
        raise OverflowError("too many chunks for one stream")
    return prefix + struct.pack(">IB", counter, 1 if last else 0)


def check_chunk_size(chunk_size: int) -> None:
    if not isinstance(chunk_size, int) or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be an integer from {MIN_CHUNK_SIZE} to {MAX_CHUNK_SIZE}")


class StreamSealer:
    """Seals one stream as its plaintext arrives, for a writer that produces it as it
    goes: ``update(data)`` returns (plaintext, sealed) of every chunk ``data``
    completes -- at least one byte stays buffered, so the final chunk is sealed only
    by ``final(data)``, which returns the rest sealed.  ``pending`` is what is
    buffered.  ``seal`` is the one-chunk step both use (counter and last-chunk flag
    kept here)."""

    def __init__(self, key: bytes, prefix: bytes, aad: bytes, chunk_size: int) -> None:
        check_chunk_size(chunk_size)
        self.chunk_size = chunk_size
        self._aead = ChaCha20Poly1305(key)
        self._prefix, self._aad = prefix, aad
        self._counter = 0
        self._done = False
        self._buf = bytearray()

    @property
    def pending(self) -> bytes:
        return bytes(self._buf)

    def update(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self._buf += data
        out = []
        cs = self.chunk_size
        while len(self._buf) > cs:
            plain = bytes(self._buf[:cs])
            del self._buf[:cs]
            out.append((plain, self.seal(plain)))
        return out

    def final(self, data: bytes = b"") -> list[bytes]:
        out = [sealed for _, sealed in self.update(data)]
        out.append(self.seal(bytes(self._buf), last=True))
        self._buf.clear()
        return out

    def seal(self, plain: bytes, last: bool = False) -> bytes:
        if self._done or (not last and len(plain) != self.chunk_size) or len(plain) > self.chunk_size:
            raise ValueError("STREAM: chunks after the last one, or a chunk of the wrong size")
        sealed = self._aead.encrypt(chunk_nonce(self._prefix, self._counter, last), plain, self._aad)
        self._counter += 1
        self._done = last
        return sealed


def encrypt_stream(key: bytes, prefix: bytes, aad: bytes, pieces: Iterable[bytes],
                   chunk_size: int) -> Iterator[bytes]:
    """Sealed chunks of the concatenation of ``pieces`` (any sizes), in order."""
    sealer = StreamSealer(key, prefix, aad, chunk_size)
    for piece in pieces:
        for _, sealed in sealer.update(piece):
            yield sealed
    yield from sealer.final()


def decrypt_stream(key: bytes, prefix: bytes, aad: bytes, src: BinaryIO,
                   chunk_size: int) -> Iterator[bytes]:
    """Plaintext chunks of the sealed stream read from ``src`` to its end.

    Raises the opaque IntegrityError at the first chunk that fails; the caller
    must treat everything yielded before that as unauthenticated and drop it.
    """
    check_chunk_size(chunk_size)
    aead = ChaCha20Poly1305(key)
    sealed_size = chunk_size + TAG_BYTES
    current = _read_exactly(src, sealed_size)
    counter = 0
    while True:
        following = _read_exactly(src, sealed_size)
        last = not following
        if len(current) < TAG_BYTES or (not last and len(current) != sealed_size):
            raise IntegrityError()
        try:
            plain = aead.decrypt(chunk_nonce(prefix, counter, last), current, aad)
        except Exception:  # InvalidTag, or OverflowError past 2**32 chunks
            raise IntegrityError() from None
        yield plain
        if last:
            return
        current = following
        counter += 1


def _read_exactly(src: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes, fewer only at end of file (loops over short reads)."""
    parts = []
    remaining = n
    while remaining:
        b = src.read(remaining)
        if not b:
            break
        parts.append(b)
        remaining -= len(b)
    return b"".join(parts)
