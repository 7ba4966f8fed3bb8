"""Hardening on packed filters: XOR-folding, BLIP flips, the balancing pattern."""

from __future__ import annotations

import math

import numpy as np


def fold(packed: np.ndarray, nbits: int, folds: int) -> tuple[np.ndarray, int]:
    """XOR-fold ``folds`` times: each time, first half XOR second half.

    ``packed`` is ``(rows, ceil(nbits / 8))`` uint8, MSB first.  Returns the folded
    array and its length in bits.  Byte-wise when the halves are whole bytes,
    bit-wise otherwise.
    """
    for _ in range(folds):
        if nbits % 2:
            raise ValueError("cannot fold a filter of odd length")
        half = nbits // 2
        if half % 8 == 0:
            hb = half // 8
            packed = packed[:, :hb] ^ packed[:, hb: 2 * hb]
        else:
            bits = np.unpackbits(packed, axis=1, count=nbits)
            packed = np.packbits(bits[:, :half] ^ bits[:, half:], axis=1)
        nbits = half
    return np.ascontiguousarray(packed), nbits


def blip_flip_probability(epsilon: float, sensitivity: int) -> float:
    """Per-bit flip probability of BLIP for ``epsilon``-differential privacy.

    ``p = 1 / (1 + exp(epsilon / sensitivity))`` (Alaggan, Gambs & Kermarrec 2012),
    where ``sensitivity`` is the most bits one token can change.
    """
    if not epsilon > 0:
        raise ValueError("epsilon must be positive")
    if sensitivity < 1:
        raise ValueError("sensitivity must be at least 1")
    return 1.0 / (1.0 + math.exp(epsilon / sensitivity))


def blip(packed: np.ndarray, nbits: int, p: float, rng: np.random.Generator,
         rows: np.ndarray | None = None) -> None:
    """Flip every bit of the selected rows independently with probability ``p``, in place.

    One ``rng.random()`` double per bit, rows in order, bits in order; a bit flips
    when its double is ``< p``.  ``rows`` (bool mask) limits the flips to some rows
    (the others draw no randomness).
    """
    idx = np.arange(packed.shape[0]) if rows is None else np.flatnonzero(rows)
    step = max(1, (1 << 22) // max(nbits, 1))
    for a in range(0, len(idx), step):
        sel = idx[a: a + step]
        flips = rng.random((len(sel), nbits)) < p
        packed[sel] ^= np.packbits(flips, axis=1)


def balance_pattern(inv2: np.ndarray, length: int) -> np.ndarray:
    """Packed balanced filter of the empty set: the complement half all ones, permuted.

    With ``cat = F || ~F`` and ``out[i] = cat[p2[i]]``, the empty filter has
    ``out[inv2[length + x]] = 1`` for every ``x``.
    """
    bits = np.zeros(2 * length, dtype=np.uint8)
    bits[inv2[length:]] = 1
    return np.packbits(bits)
