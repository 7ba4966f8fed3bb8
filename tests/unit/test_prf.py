"""Known answers for the encoding's PRF: batched AES-256-CMAC (linkage._bits.prf).

* NIST SP 800-38B, appendix D.3 (CMAC-AES256, examples 1-4: messages of 0,
  16, 40 and 64 bytes) -- for the batch code and for the independent
  reference implementation (tests/vectors/native/reference.py);
* message by message agreement with ``cryptography``'s own CMAC over every
  length from 0 to 80 bytes (both padding cases, 1 to 6 blocks, mixed in one
  batch) and with a header and two segments;
* the position stream and the int64 hash built on it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC

from linkage._bits import hashing, prf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vectors" / "native"))
import reference  # the independent implementation of the encoding (tests/vectors/native)

NIST_KEY = bytes.fromhex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
NIST_MSG = bytes.fromhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
                         "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710")
NIST = [(0, "028962f61b7bf89efc6b551f4667d983"), (16, "28a7023f452e8f82bd4bf28d8c37c35c"),
        (40, "aaf3d8f1de5640c232f5b169b9c911e6"), (64, "e1992190549f6ed5696a2c056c315410")]


def _cryptography_cmac(key: bytes, msg: bytes) -> bytes:
    c = CMAC(algorithms.AES(key))
    c.update(msg)
    return c.finalize()


def test_nist_sp800_38b_aes256_examples():
    tags = prf.cmac_many(NIST_KEY, [NIST_MSG[:n] for n, _ in NIST])
    assert [t.tobytes().hex() for t in tags] == [hexed for _, hexed in NIST]
    assert [reference.cmac(NIST_KEY, NIST_MSG[:n]).hex() for n, _ in NIST] == [hexed for _, hexed in NIST]


def test_agrees_with_cryptography_for_every_length_in_one_batch():
    rng = np.random.default_rng(7)
    key = rng.bytes(32)
    msgs = [rng.bytes(n) for n in range(81)] * 2
    order = rng.permutation(len(msgs))
    msgs = [msgs[i] for i in order]  # lengths interleaved: every block count in one call
    tags = prf.cmac_many(key, msgs)
    assert tags.shape == (len(msgs), 16)
    for m, t in zip(msgs, tags, strict=True):
        assert t.tobytes() == _cryptography_cmac(key, m)


def test_header_and_two_segments_are_concatenated_in_order():
    key = bytes(range(32))
    salts = [b"", b"1987\x1f", b"2001\x1f"]
    toks = ["张三".encode(), " 张".encode(), b"x" * 20]
    sb, ss, sl = prf.pack_bytes(salts)
    tb, ts, tl = prf.pack_bytes(toks)
    pairs = [(s, t) for s in range(3) for t in range(3)]
    si = np.array([p[0] for p in pairs])
    ti = np.array([p[1] for p in pairs])
    header = b"\xff\x00\x00\x00\x02"
    got = prf.Cmac(key).segments(sb, ss[si], sl[si], tb, ts[ti], tl[ti], header=header)
    for (s, t), tag in zip(pairs, got, strict=True):
        assert tag.tobytes() == _cryptography_cmac(key, header + salts[s] + toks[t])


def test_different_keys_and_messages_give_different_tags():
    a, b = prf.cmac_many(bytes(32), [b"a", b"b"]), prf.cmac_many(bytes(31) + b"\x01", [b"a"])
    assert a[0].tobytes() != a[1].tobytes() and a[0].tobytes() != b[0].tobytes()


def test_key_must_be_256_bits():
    with pytest.raises(ValueError, match="32 bytes"):
        prf.Cmac(bytes(16))


@pytest.mark.parametrize("length", [512, 1024, 192, 1000])
def test_positions_and_int64_follow_the_reference(length):
    key = bytes(range(1, 33))
    msgs = [f"{i} 测{i % 7}".encode() for i in range(30)] + [b"", b"y" * 31]
    kmax = np.arange(len(msgs)) % 19 + 1
    ptr, pos = hashing.token_positions(key, msgs, kmax, length)
    for i, m in enumerate(msgs):
        assert pos[ptr[i]:ptr[i + 1]].tolist() == [w % length for w in reference.words(key, m, int(kmax[i]), length)]
    ints = hashing.keyed_int64(key, msgs)
    assert ints.tolist() == [int.from_bytes(reference.cmac(key, m)[:8], "big", signed=True) for m in msgs]


def test_utf8_segments_equal_encoding_each_string():
    strings = ["", "abc", "张三", "1990\x1f张", "𠀀x", "", "é" * 5, "522199199003071234"]
    buf, starts, lens = prf.utf8_segments(strings)
    assert [buf[a:a + n].tobytes() for a, n in zip(starts, lens, strict=True)] == [s.encode() for s in strings]
    ascii_only = prf.utf8_segments(["12", "", "345"])
    assert ascii_only[1].tolist() == [0, 2, 2] and ascii_only[2].tolist() == [2, 0, 3]
    assert [len(x) for x in prf.utf8_segments([])] == [0, 0, 0]
    for sep in ("\x1f", "张", "::"):
        buf, starts, lens = prf.utf8_segments(strings, sep)
        assert [buf[a:a + n].tobytes() for a, n in zip(starts, lens, strict=True)] == \
            [(s + sep).encode() for s in strings]
