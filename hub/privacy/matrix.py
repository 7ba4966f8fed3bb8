"""Filter columns as matrices: unpacking, distinct rows, Dice similarities.

Everything the attacks and statistics need from a column of filters, on
numpy arrays: packed ``(n, bytes)`` uint8 rows (bit *i* is bit ``7 - i % 8``
of byte ``i // 8``, as the encoder writes them) or unpacked ``(n, bits)``
bool/uint8 rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = ["dice", "distinct_rows", "packed_column", "unpack"]


def packed_column(column) -> tuple[np.ndarray, np.ndarray]:
    """``(packed, valid)`` of a filter column: an Arrow fixed-size binary (chunked)
    array, a numpy ``(n, bytes)`` uint8 array, or a list of ``bytes``/None.
    Null rows are all zero in ``packed``."""
    if isinstance(column, np.ndarray):
        if column.ndim != 2:
            raise ValueError("a packed filter array has two dimensions (rows, bytes)")
        return np.ascontiguousarray(column, dtype=np.uint8), np.ones(len(column), dtype=bool)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if isinstance(column, pa.Array):
        if not pa.types.is_fixed_size_binary(column.type):
            if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
                return packed_column(column.to_pylist())
            raise TypeError("a filter column is fixed-size binary")
        width = column.type.byte_width
        n = len(column)
        valid = (np.ones(n, dtype=bool) if column.null_count == 0
                 else column.is_valid().to_numpy(zero_copy_only=False))
        buf = column.buffers()[1]
        data = np.frombuffer(buf, dtype=np.uint8, count=(column.offset + n) * width)
        packed = data[column.offset * width:].reshape(n, width).copy()
        packed[~valid] = 0
        return packed, valid
    values = list(column)
    width = max((len(v) for v in values if v is not None), default=0)
    packed = np.zeros((len(values), width), dtype=np.uint8)
    valid = np.zeros(len(values), dtype=bool)
    for i, v in enumerate(values):
        if v is not None:
            packed[i] = np.frombuffer(v, dtype=np.uint8)
            valid[i] = True
    return packed, valid


def unpack(packed: np.ndarray, bits: int | None = None) -> np.ndarray:
    """Bits of packed rows as a ``(n, bits)`` uint8 0/1 matrix."""
    return np.unpackbits(packed, axis=1, count=bits)


def distinct_rows(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, first)``: a dense class id per row (equal rows, equal id; ids in
    order of first appearance) and the first row of each class."""
    if len(packed) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    keys = np.empty(len(packed), dtype=object)
    keys[:] = [r.tobytes() for r in np.ascontiguousarray(packed)]
    codes, _ = pd.factorize(keys)
    codes = codes.astype(np.int64)
    first = np.full(codes.max() + 1, -1, dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)
    return codes, first


def dice(a: np.ndarray, b: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Dice similarity of every row of ``a`` with every row of ``b`` (0/1 matrices),
    float32 ``(len(a), len(b))``; 0 where both rows are empty."""
    af = a.astype(np.float32, copy=False)
    bf = b.astype(np.float32, copy=False)
    wa = af.sum(1)
    wb = bf.sum(1)
    out = np.empty((len(a), len(b)), dtype=np.float32)
    for s in range(0, len(a), chunk):
        inter = af[s:s + chunk] @ bf.T
        den = wa[s:s + chunk, None] + wb[None, :]
        out[s:s + chunk] = np.divide(2.0 * inter, den, out=np.zeros_like(inter), where=den > 0)
    return out
