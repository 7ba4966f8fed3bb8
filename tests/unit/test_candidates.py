"""hub.candidates: exact Dice candidates against a naive numpy reference, LSH, packing."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub import candidates as C

# ----------------------------------------------------------------- helpers


def random_bits(rng, n, nbits, lo=0.2, hi=0.45, empty=0):
    """Rows of random density in [lo, hi]; the first ``empty`` rows all zero."""
    dens = rng.uniform(lo, hi, size=(n, 1))
    bits = rng.random((n, nbits)) < dens
    bits[:empty] = False
    return bits


def near_copies(rng, bits, flip):
    return bits ^ (rng.random(bits.shape) < flip)


def dice_matrix(bits_a, bits_b):
    ua = bits_a.astype(np.int64)
    ub = bits_b.astype(np.int64)
    inter = ua @ ub.T
    s = ua.sum(1)[:, None] + ub.sum(1)[None, :]
    return np.where(s > 0, 2.0 * inter / np.maximum(s, 1), 0.0)


def unpack(packed, nbits):
    return np.unpackbits(packed.view(np.uint8), axis=1)[:, :nbits].astype(bool)


def reference(packed_a, packed_b, nbits, threshold, k=None):
    """All (i, j, dice) with dice >= threshold, via np.unpackbits; top-k by (-dice, j)."""
    d = dice_matrix(unpack(packed_a, nbits), unpack(packed_b, nbits))
    out = []
    for i in range(d.shape[0]):
        js = np.flatnonzero(d[i] >= threshold)
        if k is not None:
            js = sorted(js, key=lambda j: (-d[i, j], j))[:k]
        out += [(i, int(j), d[i, j]) for j in sorted(js)]
    return out


def as_triples(res):
    return list(zip(res.left.tolist(), res.right.tolist(), res.score.tolist(), strict=True))


def assert_same(res, ref):
    assert [(i, j) for i, j, _ in as_triples(res)] == [(i, j) for i, j, _ in ref]
    np.testing.assert_array_equal(res.score, np.array([d for _, _, d in ref], np.float32))
    assert res.left.dtype == np.int64 and res.right.dtype == np.int64
    assert res.score.dtype == np.float32


# ----------------------------------------------------------------- exhaustive


@pytest.mark.parametrize("nbits", [64, 200, 512, 1000, 1024, 2048])
@pytest.mark.parametrize("threshold", [0.3, 0.55, 0.8, 1.0])
def test_cross_matches_reference(nbits, threshold):
    rng = np.random.default_rng(nbits + int(threshold * 100))
    ba = random_bits(rng, 70, nbits, empty=3)
    bb = np.concatenate([near_copies(rng, ba[:30], 0.05), random_bits(rng, 60, nbits, empty=2),
                         ba[30:40]])
    a, b = C.pack_filters(ba), C.pack_filters(bb)
    res = C.dice_candidates(a, b, threshold=threshold)
    assert_same(res, reference(a, b, nbits, threshold))


@pytest.mark.parametrize("prune", [True, False])
@pytest.mark.parametrize("flavour", ["vector", "scalar"])
@pytest.mark.parametrize("threads", [1, 2])
def test_pruning_flavour_and_threads_do_not_change_the_result(prune, flavour, threads):
    rng = np.random.default_rng(7)
    ba = random_bits(rng, 90, 1024, lo=0.05, hi=0.5, empty=2)
    bb = np.concatenate([near_copies(rng, ba, 0.04), random_bits(rng, 50, 1024, lo=0.05, hi=0.5)])
    a, b = C.pack_filters(ba), C.pack_filters(bb)
    res = C.dice_candidates(a, b, threshold=0.6, prune=prune, flavour=flavour, threads=threads)
    assert_same(res, reference(a, b, 1024, 0.6))
    stats = res.stats
    assert stats["pairs_total"] == 90 * 140
    assert stats["pairs_scored"] <= stats["pairs_in_window"] <= stats["pairs_total"]
    if not prune:
        assert stats["pairs_scored"] == stats["pairs_total"]


def test_small_tiles_chunks_and_overflowing_buffers(monkeypatch):
    """Tile and chunk edges, several kernel calls, and chunks re-run after overflowing."""
    monkeypatch.setattr(C, "_TILE", 7)
    monkeypatch.setattr(C, "_CHUNK_ROWS", 5)
    monkeypatch.setattr(C, "_CAP", 3)
    monkeypatch.setattr(C, "_MAX_BUFFER_SLOTS", 20)
    rng = np.random.default_rng(11)
    ba = random_bits(rng, 53, 512)
    bb = np.concatenate([near_copies(rng, ba, 0.03), near_copies(rng, ba[:20], 0.03)])
    a, b = C.pack_filters(ba), C.pack_filters(bb)
    for t in (0.5, 0.9):
        assert_same(C.dice_candidates(a, b, threshold=t, threads=2), reference(a, b, 512, t))
    assert_same(C.dice_candidates(a, b, threshold=0.5, k=2, threads=2),
                reference(a, b, 512, 0.5, k=2))


def test_pair_exactly_at_threshold_is_included():
    # a = 11110, b = 11101 (8 bits padded): |a|=|b|=4, |a&b|=3 -> Dice 6/8 = 0.75
    a = C.pack_filters([bytes([0b11110000])])
    b = C.pack_filters([bytes([0b11101000]), bytes([0b11100000])])  # 0.75 and 6/7
    res = C.dice_candidates(a, b, threshold=0.75)
    assert as_triples(res) == [(0, 0, np.float32(0.75)), (0, 1, np.float32(6 / 7))]
    assert len(C.dice_candidates(a, b, threshold=np.nextafter(0.75, 1.0))) == 1
    # 2/3 is not exact in binary: 2c/s computed in float64 equals the threshold literal
    x = C.pack_filters([bytes([0b11100000])])
    y = C.pack_filters([bytes([0b11010000])])  # |x|=|y|=3, |x&y|=2 -> 4/6
    assert len(C.dice_candidates(x, y, threshold=2 / 3)) == 1
    assert len(C.dice_candidates(x, y, threshold=np.nextafter(2 / 3, 1.0))) == 0


@pytest.mark.parametrize("nbits", [64, 256])
@pytest.mark.parametrize("threshold", [0.0, 0.3, 2 / 3, 0.8, 0.95, 1.0])
def test_threshold_tables_match_their_definition(nbits, threshold):
    cmin, lo, hi = C._threshold_tables(threshold, nbits)
    for s in range(2 * nbits + 1):  # least c with float64 2c/s >= threshold (Dice 0 when s == 0)
        ok = [c for c in range(s // 2 + 1) if (2.0 * c / s if s else 0.0) >= threshold]
        assert cmin[s] == (ok[0] if ok else nbits + 1)
    for p in range(nbits + 1):  # the feasible partner popcounts form the interval lo..hi
        qs = [q for q in range(nbits + 1) if min(p, q) >= cmin[p + q]]
        if qs:
            assert qs == list(range(lo[p], hi[p] + 1))
        else:
            assert lo[p] > hi[p]


def test_empty_filters_have_dice_zero():
    a = C.pack_filters([bytes(128), b"\xff" * 128])
    b = C.pack_filters([bytes(128), bytes(128), b"\xff" * 128])
    res = C.dice_candidates(a, b, threshold=0.01)
    assert as_triples(res) == [(1, 2, 1.0)]
    everything = C.dice_candidates(a, b, threshold=0.0)
    assert len(everything) == 6
    assert everything.score.tolist() == [0, 0, 0, 0, 0, 1]
    assert len(C.dice_candidates(a, threshold=0.0)) == 1


def test_dedupe_returns_upper_pairs_only():
    rng = np.random.default_rng(3)
    base = random_bits(rng, 40, 1024, empty=2)
    bits = np.concatenate([base, near_copies(rng, base[:25], 0.05), base[:5]])
    x = C.pack_filters(bits)
    for t in (0.4, 0.85):
        res = C.dice_candidates(x, threshold=t)
        assert (res.left < res.right).all()
        ref = [(i, j, d) for i, j, d in reference(x, x, 1024, t) if i < j]
        assert_same(res, ref)


def test_top_k_matches_reference():
    rng = np.random.default_rng(5)
    ba = random_bits(rng, 40, 1024)
    bb = np.concatenate([near_copies(rng, ba, f) for f in (0.02, 0.05, 0.1, 0.2)])
    a, b = C.pack_filters(ba), C.pack_filters(bb)
    for k in (1, 2, 3, 1000):
        assert_same(C.dice_candidates(a, b, threshold=0.3, k=k), reference(a, b, 1024, 0.3, k=k))


def test_top_k_ties_go_to_the_lower_right_index():
    rng = np.random.default_rng(6)
    ba = random_bits(rng, 3, 1024)
    bb = np.repeat(ba, 9, axis=0)  # nine identical copies of each
    a, b = C.pack_filters(ba), C.pack_filters(bb)
    res = C.dice_candidates(a, b, threshold=0.2, k=4)
    assert_same(res, reference(a, b, 1024, 0.2, k=4))
    assert res.right[res.left == 1].tolist() == [9, 10, 11, 12]


def test_dedupe_top_k_keeps_a_pair_in_either_records_best_k():
    rng = np.random.default_rng(8)
    base = random_bits(rng, 30, 512)
    x = C.pack_filters(np.concatenate([base, near_copies(rng, base, 0.05),
                                       near_copies(rng, base, 0.15)]))
    k = 2
    d = dice_matrix(unpack(x, 512), unpack(x, 512))
    np.fill_diagonal(d, -1.0)
    best = set()
    for i in range(len(d)):
        js = [j for j in np.flatnonzero(d[i] >= 0.3)]
        for j in sorted(js, key=lambda j: (-d[i, j], j))[:k]:
            best.add((min(i, j), max(i, j)))
    res = C.dice_candidates(x, threshold=0.3, k=k)
    assert set(zip(res.left.tolist(), res.right.tolist(), strict=True)) == best
    assert (res.left < res.right).all()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), na=st.integers(1, 40), nb=st.integers(1, 40),
       nbytes=st.integers(1, 48), threshold=st.floats(0.0, 1.0), k=st.none() | st.integers(1, 5))
def test_property_matches_reference(seed, na, nb, nbytes, threshold, k):
    rng = np.random.default_rng(seed)
    nbits = nbytes * 8
    ba = random_bits(rng, na, nbits, lo=0.0, hi=0.6)
    bb = np.concatenate([near_copies(rng, ba, 0.1), random_bits(rng, nb, nbits, lo=0.0, hi=0.6)])
    a, b = C.pack_filters(ba), C.pack_filters(bb)
    assert_same(C.dice_candidates(a, b, threshold=threshold, k=k),
                reference(a, b, nbits, threshold, k=k))


def test_no_pairs_and_empty_inputs():
    z = np.zeros((0, 16), np.uint64)
    one = C.pack_filters([b"\x01" * 128])
    for res in (C.dice_candidates(z, one, threshold=0.5), C.dice_candidates(one, z, threshold=0.5),
                C.dice_candidates(one, threshold=0.5), C.dice_candidates(z, threshold=0.5)):
        assert len(res) == 0 and res.left.dtype == np.int64 and res.score.dtype == np.float32


def test_arguments_are_checked():
    a = C.pack_filters([b"\x01" * 128])
    with pytest.raises(ValueError, match="threshold"):
        C.dice_candidates(a, a, threshold=1.5)
    with pytest.raises(ValueError, match="threshold"):
        C.dice_candidates(a, a, threshold=float("nan"))
    with pytest.raises(ValueError, match="k must"):
        C.dice_candidates(a, a, threshold=0.5, k=0)
    with pytest.raises(ValueError, match="words per filter"):
        C.dice_candidates(a, C.pack_filters([b"\x01" * 64]), threshold=0.5)
    with pytest.raises(TypeError, match="uint64"):
        C.dice_candidates(np.zeros((2, 16), np.int64), threshold=0.5)
    with pytest.raises(ValueError, match="threads"):
        C.dice_candidates(a, a, threshold=0.5, threads=0)


def test_to_arrow():
    a = C.pack_filters([b"\xff" * 8, b"\xfe" * 8])
    t = C.dice_candidates(a, threshold=0.5).to_arrow()
    assert t.column_names == ["left", "right", "score"]
    assert t.to_pylist() == [{"left": 0, "right": 1, "score": pytest.approx(2 * 56 / 120)}]


# ----------------------------------------------------------------- LSH


def planted(rng, n_base, n_dup, nbits=1024, flip=0.02):
    base = random_bits(rng, n_base, nbits, lo=0.3, hi=0.4)
    dups = near_copies(rng, base[:n_dup], flip)
    return base, dups


def test_lsh_finds_planted_near_duplicates():
    rng = np.random.default_rng(12)
    base, dups = planted(rng, 600, 60)
    b_bits = np.concatenate([random_bits(rng, 400, 1024, lo=0.3, hi=0.4), dups])
    a, b = C.pack_filters(base), C.pack_filters(b_bits)
    t = 0.9
    exact = C.dice_candidates(a, b, threshold=t)
    assert len(exact) == 60  # the planted pairs, and nothing else
    bands = C.lsh_bands_for_recall(t, rows_per_band=24, recall=0.999)
    res = C.lsh_candidates(a, b, bands=bands, rows_per_band=24, seed=1, threshold=t)
    assert_same(res, [(i, j, d) for i, j, d in zip(exact.left, exact.right, exact.score,
                                                      strict=True)])
    # far fewer pairs scored than the 600 x 460 of the exhaustive comparison
    assert res.stats["pairs_scored"] < 0.05 * res.stats["pairs_total"]
    again = C.lsh_candidates(a, b, bands=bands, rows_per_band=24, seed=1, threshold=t, threads=1)
    assert as_triples(again) == as_triples(res)


def test_lsh_dedupe_and_subset_of_exhaustive():
    rng = np.random.default_rng(13)
    base, dups = planted(rng, 300, 40, nbits=512, flip=0.03)
    x = C.pack_filters(np.concatenate([base, dups, np.zeros((3, 512), bool)]))
    exact = C.dice_candidates(x, threshold=0.85)
    res = C.lsh_candidates(x, bands=60, rows_per_band=16, seed=2, threshold=0.85)
    assert (res.left < res.right).all()
    assert set(as_triples(res)) == set(as_triples(exact))
    weak = C.lsh_candidates(x, bands=2, rows_per_band=40, seed=2, threshold=0.5)
    assert set(as_triples(weak)) <= set(as_triples(C.dice_candidates(x, threshold=0.5)))
    assert (weak.score >= 0.5).all()


def test_lsh_band_positions_follow_the_bit_order():
    # bit i of a filter is bit 7 - i % 8 of byte i // 8
    pos, word, shift = C._band_positions(4, 16, 1024, seed=3)
    rng = np.random.default_rng(0)
    bits = random_bits(rng, 5, 1024)
    x = C.pack_filters(bits)
    got = (x[np.arange(5)[:, None, None], word[None]] >> shift[None].astype(np.uint64)) & 1
    np.testing.assert_array_equal(got.astype(bool), bits[:, pos])


def test_lsh_probability_and_bands():
    p_at = C.lsh_pair_probability(0.8, bands=50, rows_per_band=16)
    assert C.lsh_pair_probability(0.95, bands=50, rows_per_band=16) > p_at
    assert C.lsh_pair_probability(0.4, bands=50, rows_per_band=16) < 0.05
    for t, r in ((0.8, 16), (0.8, 24), (0.9, 32)):
        bands = C.lsh_bands_for_recall(t, rows_per_band=r, recall=0.99)
        assert C.lsh_pair_probability(t, bands=bands, rows_per_band=r) >= 0.99
        assert C.lsh_pair_probability(t, bands=bands - 1, rows_per_band=r) < 0.99


def test_lsh_arguments_are_checked():
    a = C.pack_filters([b"\x01" * 128])
    with pytest.raises(ValueError, match="rows_per_band"):
        C.lsh_candidates(a, bands=4, rows_per_band=65, seed=0, threshold=0.5)
    with pytest.raises(ValueError, match="bands"):
        C.lsh_candidates(a, bands=0, rows_per_band=8, seed=0, threshold=0.5)


def test_choose_strategy():
    assert C.choose_strategy(10_000, 1_000_000) == "exhaustive"
    assert C.choose_strategy(1_000_000, 1_000_000) == "lsh"
    assert C.choose_strategy(10, 10, max_pairs=50) == "lsh"


# ----------------------------------------------------------------- packing


def test_pack_filters_round_trip_and_bit_order():
    rng = np.random.default_rng(14)
    bits = random_bits(rng, 9, 1000)  # 125 bytes: padded to 16 words
    raw = np.packbits(bits, axis=1)
    blobs = [r.tobytes() for r in raw]
    expect = None
    for col in (blobs, raw, bits, np.array(blobs, dtype="S125"),
                pa.array(blobs, pa.binary(125)), pa.array(blobs, pa.binary()),
                pa.array(blobs, pa.large_binary()),
                pa.chunked_array([pa.array(blobs[:4], pa.binary(125)),
                                  pa.array(blobs[4:], pa.binary(125))])):
        packed = C.pack_filters(col)
        assert packed.dtype == np.uint64 and packed.shape == (9, 16)
        assert packed.flags.c_contiguous
        np.testing.assert_array_equal(packed.view(np.uint8)[:, :125], raw)
        assert not packed.view(np.uint8)[:, 125:].any()
        np.testing.assert_array_equal(unpack(packed, 1000), bits)
        if expect is None:
            expect = packed
        np.testing.assert_array_equal(packed, expect)
    assert C.pack_filters(expect) is not None
    np.testing.assert_array_equal(C.pack_filters(expect), expect)
    np.testing.assert_array_equal(np.bitwise_count(expect).sum(1), bits.sum(1))


def test_pack_filters_arrow_offsets_and_nulls():
    blobs = [bytes([i]) * 16 for i in range(1, 7)]
    for typ in (pa.binary(16), pa.binary()):
        arr = pa.array([*blobs[:2], None, *blobs[2:]], typ).slice(1)
        packed = C.pack_filters(arr)
        assert packed.shape == (6, 2)
        assert packed.view(np.uint8)[0].tobytes() == blobs[1]
        assert not packed[1].any()
        assert packed.view(np.uint8)[2].tobytes() == blobs[2]


def test_pack_filters_rejects_ragged_and_other_types():
    with pytest.raises(ValueError, match="row 2 has 3 bytes") as e:
        C.pack_filters([b"\x01\x02", b"\x03\x04", b"\xaa\xbb\xcc"])
    assert "aa" not in str(e.value).lower()  # never the value itself
    with pytest.raises(ValueError, match="row 1"):
        C.pack_filters(pa.array([b"\x01\x02", b"\x03"], pa.binary()))
    with pytest.raises(TypeError):
        C.pack_filters(pa.array(["x"]))
    with pytest.raises(TypeError):
        C.pack_filters(b"\x00" * 8)
    with pytest.raises(TypeError):
        C.pack_filters(np.zeros((2, 2), np.float64))
