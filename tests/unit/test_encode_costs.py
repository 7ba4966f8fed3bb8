"""What the encoder's speed rests on, checked by counting rather than timing.

* a token of up to 8 bits costs one CMAC block where the filter length is a
  power of two (16-bit words), two where it is not (32-bit words), and every
  block of a batch is hashed in one call per block index, never one call per
  message;
* the encoded Parquet file leaves uncompressed only the columns zstd cannot
  shrink (keyed hashes and the CLK) and compresses the rest.

All data are synthetic (the project's ``synthetic`` package or invented literals).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from linkage._bits import hashing, prf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vectors" / "native"))
import reference  # the independent implementation of the encoding (tests/vectors/native)

KEY = bytes(range(32))
MESSAGES = [f"{i} 测{i % 10}".encode() for i in range(40)]


@pytest.mark.parametrize(("k", "length", "blocks"), [
    (15, 512, 2), (16, 1024, 2), (8, 256, 1), (17, 512, 3), (32, 8192, 4),  # 16-bit words, 8 a block
    (4, 192, 1), (15, 192, 4), (10, 576, 3),  # not a power of two: 32-bit words, 4 a block
])
def test_cmac_blocks_per_token(monkeypatch, k, length, blocks):
    calls = []

    def counting(self, buf_a, start_a, len_a, *args, **kwargs):
        calls.append(len(len_a))
        return real(self, buf_a, start_a, len_a, *args, **kwargs)

    real = prf.Cmac.segments
    monkeypatch.setattr(prf.Cmac, "segments", counting)
    for kmax in (np.full(len(MESSAGES), k), np.arange(len(MESSAGES)) % k + 1):  # uniform k, and k up to k
        calls.clear()
        ptr, pos = hashing.token_positions(KEY, MESSAGES, kmax, length)
        needed = sum(-(-int(x) // hashing.words_per_block(length)) for x in kmax)
        assert sum(calls) == needed
        assert len(calls) == -(-k // hashing.words_per_block(length))  # one batch per block index
        if kmax.min() == k:
            assert sum(calls) == blocks * len(MESSAGES)
        for i, m in enumerate(MESSAGES):
            assert pos[ptr[i]:ptr[i + 1]].tolist() == [w % length for w in
                                                       reference.words(KEY, m, int(kmax[i]), length)]


def test_word_size_follows_the_length():
    assert [hashing.word_bytes(n) for n in (64, 128, 256, 512, 1024, 2048, 4096, 8192)] == [2] * 8
    assert [hashing.word_bytes(n) for n in (192, 320, 576, 1000, 8128)] == [4] * 5


def test_encoded_parquet_compresses_only_what_shrinks(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from agency_kit import encode_cmd
    from agency_kit.cli import cli
    from benchmarks._agency_e2e import AGENCY
    from tests.support import PASSPHRASE, dibao_encode_inputs

    fed, export, mapping = dibao_encode_inputs(tmp_path, 300, seed=4)
    monkeypatch.setenv("AIDLINK_PASSPHRASE", PASSPHRASE)
    payload = bytearray()

    class Inspecting(encode_cmd.PackageWriter):
        def write(self, b):
            payload.extend(b)
            return super().write(b)

    monkeypatch.setattr(encode_cmd, "PackageWriter", Inspecting)
    res = CliRunner().invoke(cli, [
        "encode", "--input", str(export), "--mapping", str(mapping), "--secret", str(fed.secret),
        "--identity", str(fed.identities[AGENCY]), "--roster", str(fed.roster),
        "--out", str(tmp_path / "out" / "dibao.aidpkg"), "--workers", "1", "--json"])
    assert res.exit_code == 0, res.output
    group = pq.ParquetFile(pa.BufferReader(bytes(payload))).metadata.row_group(0)
    seen = {group.column(i).path_in_schema: group.column(i).compression for i in range(group.num_columns)}
    plain = {c for c in seen if c.startswith(("eh_", "bk_", "vk_")) or c == "clk"}
    assert "clk" in plain and any(c.startswith("eh_") for c in plain) and any(c.startswith("bk_") for c in plain)
    assert {seen[c] for c in plain} == {"UNCOMPRESSED"}
    squeezed = set(seen) - plain
    assert "token" in squeezed and any(c.startswith("bf_") for c in squeezed)
    assert {seen[c] for c in squeezed} == {"ZSTD"}
