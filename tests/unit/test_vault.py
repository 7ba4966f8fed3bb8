"""agency_kit.vault: the encrypted token -> row map kept at the agency."""

import hmac
import os
import struct

import numpy as np
import pytest

from agency_kit import vault
from agency_kit.vault import (
    VaultWriter,
    _row_key_mac_key,
    _RowKeyMac,
    open_vault,
    row_key_digest,
    vault_key,
)
from linkage.errors import InputError, IntegrityError, OutputExistsError, StateError

KEY = vault_key(b"\x42" * 32)
ROW_KEY = "A2024-001\x1f110101199003070017"


def tokens(n, seed=1):
    h = np.random.default_rng(seed).integers(0, 256, 16 * n, dtype=np.uint8).tobytes().hex()
    return [h[i:i + 32] for i in range(0, len(h), 32)]


@pytest.fixture
def small_segments(monkeypatch):
    monkeypatch.setattr(vault, "SEGMENT_ROWS", 100)
    return 100


def counter_rng():
    state = {"i": 0}

    def rng(n):
        state["i"] += 1
        return bytes([state["i"]]) * n

    return rng


def write_vault(path, n=10, key=KEY, **kw):
    toks = tokens(n)
    with VaultWriter(path, key=key, package_id="pkg-1", dataset="dibao_2024_06", **kw) as w:
        w.add(toks, list(range(2, n + 2)), [f"HB{i:04d}\x1f{ROW_KEY}" for i in range(n)])
    return toks


def test_full_size_segments(tmp_path):
    p = tmp_path / "full.vault"
    n = vault.SEGMENT_ROWS + 1
    toks = tokens(n, 5)
    with VaultWriter(p, key=KEY, package_id="p", dataset="d") as w:
        w.add(toks, np.arange(2, n + 2), ["k"] * n)
    assert [s[2] for s in segments(p.read_bytes())[1]] == [0, 1]
    assert open_vault(p, key=KEY).lookup([toks[-1]])["row_number"].tolist() == [n + 1]


def test_round_trip(tmp_path):
    p = tmp_path / "v.vault"
    toks = write_vault(p, 25)
    v = open_vault(p, key=KEY)
    assert (v.package_id, v.dataset, len(v)) == ("pkg-1", "dibao_2024_06", 25)
    want = [toks[7], toks[0], "0" * 32, toks[24]]
    df = v.lookup(want)
    assert df["token"].tolist() == [toks[7], toks[0], toks[24]]
    assert df["row_number"].tolist() == [9, 2, 26]
    assert df["row_key"].tolist()[0] == v.row_key_digest(f"HB0007\x1f{ROW_KEY}")
    assert df["row_key"].tolist()[0] == row_key_digest(KEY, f"HB0007\x1f{ROW_KEY}")
    assert toks[3] in v and "f" * 32 not in v and "not-a-token" not in v
    assert oct(p.stat().st_mode & 0o777) == "0o600"


def test_many_segments_and_batches(tmp_path, small_segments):
    p = tmp_path / "big.vault"
    seg = small_segments
    n = seg * 2 + 123
    toks = tokens(n, seed=2)
    with VaultWriter(p, key=KEY, package_id="p", dataset="d") as w:
        for i in range(0, n, 70):
            w.add(np.array(toks[i:i + 70]), np.arange(i + 2, min(n, i + 70) + 2),
                  [str(j) for j in range(i, min(n, i + 70))])
    assert [s[2] for s in segments(p.read_bytes())[1]] == [0, 0, 0, 1]
    v = open_vault(p, key=KEY)
    assert len(v) == n
    sample = [0, seg - 1, seg, n - 1]
    df = v.lookup([toks[i] for i in sample])
    assert df["row_number"].tolist() == [i + 2 for i in sample]


def test_empty_vault(tmp_path):
    p = tmp_path / "e.vault"
    with VaultWriter(p, key=KEY, package_id="p", dataset="d"):
        pass
    v = open_vault(p, key=KEY)
    assert len(v) == 0 and v.lookup(tokens(2)).empty


def test_row_keys_stable_across_runs_and_keyed(tmp_path):
    a, b = tmp_path / "a.vault", tmp_path / "b.vault"
    ta, tb = tokens(1, 3), tokens(1, 4)
    for p, t in ((a, ta), (b, tb)):
        with VaultWriter(p, key=KEY, package_id=p.stem, dataset="d") as w:
            w.add(t, [5], [ROW_KEY])
    ka = open_vault(a, key=KEY).lookup(ta)["row_key"][0]
    kb = open_vault(b, key=KEY).lookup(tb)["row_key"][0]
    assert ka == kb  # fresh tokens, same source row -> same row key
    assert ka != row_key_digest(vault_key(b"\x43" * 32), ROW_KEY)
    assert ka == hmac.digest(_row_key_mac_key(KEY), ROW_KEY.encode(), "sha256")[:16].hex()


def test_fast_hmac_equals_stdlib():
    mac = _RowKeyMac(b"k" * 32)
    for msg in (b"", b"abc", "测试甲乙".encode() * 50):
        assert mac.digest(msg) == hmac.digest(b"k" * 32, msg, "sha256")[:16]
    long_key = _RowKeyMac(b"k" * 100)
    assert long_key.digest(b"x") == hmac.digest(b"k" * 100, b"x", "sha256")[:16]


def test_no_plaintext_in_file(tmp_path):
    p = tmp_path / "v.vault"
    toks = write_vault(p, 50)
    data = p.read_bytes()
    for t in toks:
        assert t.encode() not in data
        assert bytes.fromhex(t) not in data
    assert b"110101199003070017" not in data and b"HB0001" not in data
    assert b"pkg-1" in data  # the header is readable (and authenticated), not secret


@pytest.mark.parametrize("where", ["header", "first", "middle", "tag", "last"])
def test_flipped_byte_is_detected(tmp_path, where):
    p = tmp_path / "v.vault"
    write_vault(p, 20)
    data = bytearray(p.read_bytes())
    hlen = struct.unpack(">I", data[9:13])[0]
    body = 13 + hlen
    pos = {"header": 20, "first": body, "middle": body + 5 + 100, "tag": len(data) - 30, "last": len(data) - 1}[where]
    data[pos] ^= 0x01
    p.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as ei:
        open_vault(p, key=KEY)
    assert str(ei.value) == str(IntegrityError())
    assert ei.value.exit_code == 20


def segments(data):
    hlen = struct.unpack(">I", data[9:13])[0]
    off = 13 + hlen
    out = []
    while off < len(data):
        flag, clen = struct.unpack(">BI", data[off:off + 5])
        out.append((off, 5 + clen, flag))
        off += 5 + clen
    return data[:13 + hlen], out


@pytest.fixture
def multi(tmp_path, small_segments):
    p = tmp_path / "m.vault"
    n = small_segments + 10
    with VaultWriter(p, key=KEY, package_id="p", dataset="d") as w:
        w.add(tokens(n, 9), np.arange(2, n + 2), ["k"] * n)
    data = p.read_bytes()
    head, segs = segments(data)
    assert [s[2] for s in segs] == [0, 1]
    return p, data, head, segs


def test_truncation_detected(multi, tmp_path):
    p, data, head, segs = multi
    for cut in (len(data) - 1, segs[1][0], segs[0][0] + 3, len(head), 5):
        p.write_bytes(data[:cut])
        with pytest.raises(IntegrityError):
            open_vault(p, key=KEY)


def test_reordered_dropped_or_extra_segments_detected(multi):
    p, data, head, segs = multi
    (o0, l0, _), (o1, l1, _) = segs
    s0, s1 = data[o0:o0 + l0], data[o1:o1 + l1]
    for bad in (head + s1 + s0, head + s1, head + s0 + s1 + s1, data + b"\x00"):
        p.write_bytes(bad)
        with pytest.raises(IntegrityError):
            open_vault(p, key=KEY)
    # moving the "last" flag onto the first segment
    forged = bytearray(head + s0)
    forged[len(head)] = 1
    p.write_bytes(bytes(forged))
    with pytest.raises(IntegrityError):
        open_vault(p, key=KEY)


def test_wrong_key_and_not_a_vault(tmp_path):
    p = tmp_path / "v.vault"
    write_vault(p)
    with pytest.raises(IntegrityError) as e1:
        open_vault(p, key=vault_key(b"\x07" * 32))
    junk = tmp_path / "junk.vault"
    junk.write_bytes(b"not a vault at all")
    with pytest.raises(IntegrityError) as e2:
        open_vault(junk, key=KEY)
    assert str(e1.value) == str(e2.value)  # one opaque message
    with pytest.raises(InputError):
        open_vault(tmp_path / "missing.vault", key=KEY)


def test_atomic_exception_leaves_nothing(tmp_path):
    p = tmp_path / "v.vault"
    with pytest.raises(RuntimeError), VaultWriter(p, key=KEY, package_id="p", dataset="d") as w:
        w.add(tokens(3), [2, 3, 4], ["a", "b", "c"])
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_exception_keeps_previous_file(tmp_path):
    p = tmp_path / "v.vault"
    write_vault(p, 4)
    before = p.read_bytes()
    with pytest.raises(RuntimeError), VaultWriter(p, key=KEY, package_id="p2", dataset="d", force=True) as w:
        w.add(tokens(3), [2, 3, 4], ["a", "b", "c"])
        raise RuntimeError("boom")
    assert p.read_bytes() == before
    assert [x.name for x in tmp_path.iterdir()] == ["v.vault"]


def test_nothing_at_path_until_closed(tmp_path):
    p = tmp_path / "v.vault"
    w = VaultWriter(p, key=KEY, package_id="p", dataset="d")
    w.add(tokens(2), [2, 3], ["a", "b"])
    assert not p.exists()
    w.close()
    assert p.exists()
    with pytest.raises(StateError):
        w.add(tokens(1), [4], ["c"])


def test_existing_path_refused_without_force(tmp_path):
    p = tmp_path / "v.vault"
    write_vault(p)
    with pytest.raises(OutputExistsError) as ei:
        VaultWriter(p, key=KEY, package_id="p", dataset="d")
    assert str(p) in str(ei.value) and ei.value.exit_code == 16
    write_vault(p, 3, force=True)
    assert len(open_vault(p, key=KEY)) == 3


def test_bad_arguments(tmp_path):
    p = tmp_path / "v.vault"
    with pytest.raises(TypeError):
        VaultWriter(p, key=b"short", package_id="p", dataset="d")
    with pytest.raises(TypeError):
        vault_key(b"too short")
    with VaultWriter(p, key=KEY, package_id="p", dataset="d") as w:
        for bad in (["XYZ" * 10 + "ab"], ["A" * 32], ["a" * 31], ["a" * 33]):
            with pytest.raises(ValueError):
                w.add(bad, [2], ["k"])
        with pytest.raises(ValueError):
            w.add(tokens(2), [2], ["k", "k"])
        with pytest.raises(ValueError):
            w.add(tokens(1), [0], ["k"])


def test_deterministic_with_injected_rng(tmp_path):
    a, b = tmp_path / "a.vault", tmp_path / "b.vault"
    t = tokens(5)
    for p in (a, b):
        with VaultWriter(p, key=KEY, package_id="p", dataset="d", rng=counter_rng()) as w:
            w.add(t, [2, 3, 4, 5, 6], list("abcde"))
    assert a.read_bytes() == b.read_bytes()


def test_vault_key_is_deterministic_and_separated():
    assert vault_key(b"\x01" * 32) == vault_key(b"\x01" * 32)
    assert vault_key(b"\x01" * 32) != vault_key(b"\x02" * 32)
    assert len(vault_key(os.urandom(64))) == 32
