"""Attacks on the encodings the hub holds, implemented from the papers' descriptions.

Every attack takes what the hub has (one column of the encoded table), the
schema (public), and the attacker's plaintext knowledge, and returns a top-1
guess per record (:class:`Guesses`); :func:`score` measures the guesses
against the truth -- which only the lab has, never the hub.

1. **Frequency attack** (:func:`frequency_attack`; Kuzu, Kantarcioglu,
   Durham & Malin, "A constraint satisfaction cryptanalysis of Bloom filters
   in private record linkage", PETS 2011, reduced to its frequency core).
   Records with identical encodings form classes; classes sorted by size are
   aligned rank for rank with the public values sorted by frequency, within
   each length class the Hamming weight gives away (Kuzu's length
   constraint; the attacker learns which weights go with which token counts
   by encoding public values under a key of its own).  Threat model: the
   attacker knows the public frequency table, nothing else.
2. **Pattern mining** (:func:`pattern_mining_attack`; Christen, Schnell,
   Vatsalan & Ranbaduge, "Efficient cryptanalysis of Bloom filters for PPRL",
   PAKDD 2017, and Christen, Ranbaduge, Vatsalan & Schnell, "Precise and fast
   cryptanalysis for Bloom filter based PPRL", TKDE 2018).  The most frequent
   token of the public values is set in the same bit positions in every filter
   that holds it: those positions are the maximal frequent itemset of the
   filters, with support matching the token's frequency.  Found, the filters
   and the public values are split by it and the search goes on in each part
   (the next most frequent token there).  Then every filter gets the public
   value whose identified tokens are exactly those the filter shows
   (ties: the length constraint, then the most frequent).  The attacker knows
   the schema (so it undoes a balancing it can see, by pairing complementary
   columns, and sets its thresholds for folding and BLIP noise) and the
   public frequency table.
3. **Graph matching** (:func:`graph_attack`; Culnane, Rubinstein & Teague,
   "Vulnerabilities in the use of similarity tables in combination with
   pseudonymisation to preserve data privacy in the UK Office for National
   Statistics' PPRL", 2017; Vidanage, Ranbaduge, Christen & Schnell, "A graph
   matching attack on PPRL", CIKM 2020).  The attacker holds a plaintext
   reference population that overlaps the encoded one, encodes it under its
   own key, and knows the plaintext of a few encoded records (seeds).  Each
   node's similarities to the known pairs are its coordinates in both graphs;
   nodes are matched by nearest coordinates, confident mutual matches join
   the known pairs, and the matching repeats (percolation).
4. **Frequency attack on keyed hashes** (:func:`keyed_hash_attack`): a keyed
   exact hash or blocking key shows the hub each value's frequency; aligned
   with the public frequencies of the same value (or value combination).

Nothing here prints, and no plaintext value ever leaves through ``info``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from linkage.schema import LinkageSchema

from .knowledge import SEP, TAG, Target, emulate, unit_items, units_of
from .matrix import distinct_rows, unpack

__all__ = [
    "Guesses",
    "debalance",
    "discover_patterns",
    "frequency_attack",
    "graph_attack",
    "keyed_hash_attack",
    "label_patterns",
    "mine_items",
    "pattern_mining_attack",
    "reported_values",
    "score",
    "seeds_for",
]


@dataclass
class Guesses:
    """An attack's top-1 guess of the unit behind every record.

    ``guess[i]`` is a unit (see :func:`hub.privacy.knowledge.units_of`) or None;
    ``attacked[i]`` says whether record ``i`` was attacked (non-null and not a
    seed the attacker already knew); ``claimed[i]`` that the attack found exactly
    one candidate (what an attacker would act on).  ``info`` holds counts only.
    """

    attack: str
    column: str
    guess: np.ndarray
    attacked: np.ndarray
    claimed: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def reported_values(target: Target, units: np.ndarray) -> np.ndarray:
    """The scored value of each unit: a filter's value without its salt, a CLK's
    ``score_field``, a hash's whole unit."""
    out = np.full(len(units), None, dtype=object)
    if target.kind == "hash":
        out[:] = units
        return out
    if target.kind == "filter":
        pos = 1 if target.salt is not None else 0
    else:
        pos = target.fields.index(target.score_field) + (1 if target.salt is not None else 0)
    for i, u in enumerate(units):
        if u is not None:
            v = u.split(SEP)[pos]
            out[i] = v or None
    return out


def score(guesses: Guesses, target: Target, truth: np.ndarray, top_n: int = 20,
          blind_guess: Any = None) -> dict[str, Any]:
    """Re-identification figures of ``guesses`` against the true scored values.

    ``reidentified``: share of attacked records (with a true value) whose top-1
    guess is right; ``claimed_precision``: share right among those the attack
    claimed; ``frequent_recovered``: share of the ``top_n`` most frequent true
    values for which most of their records were guessed right;
    ``blind_guess``: share an attacker gets right with no encoding at all, by
    guessing the value ``blind_guess`` (the public table's commonest) for
    everyone -- what ``reidentified`` must be read against.
    """
    truth = np.asarray(truth, dtype=object)
    rows = guesses.attacked & np.array([t is not None for t in truth], dtype=bool)
    got = reported_values(target, guesses.guess)
    ok = rows & np.array([g is not None and g == t for g, t in zip(got, truth, strict=True)], dtype=bool)
    n = int(rows.sum())
    claimed = rows & guesses.claimed
    vc = pd.Series(truth[rows]).value_counts()
    top = vc.index[:top_n]
    per_value = pd.Series(ok[rows]).groupby(pd.Series(truth[rows])).mean()
    recovered = int((per_value.reindex(top) > 0.5).sum()) if len(top) else 0
    blind = float(np.mean(truth[rows] == blind_guess)) if blind_guess is not None and n else None
    return {
        "records": n,
        "correct": int(ok.sum()),
        "blind_guess": blind,
        "reidentified": ok.sum() / n if n else 0.0,
        "claimed": int(claimed.sum()),
        "claimed_precision": (ok & claimed).sum() / claimed.sum() if claimed.sum() else None,
        "frequent_values": len(top),
        "frequent_recovered": recovered / len(top) if len(top) else 0.0,
    }


def commonest(target: Target, public_frame: pd.DataFrame) -> Any:
    """The scored value most frequent in the public table (the blind guess)."""
    units, _ = units_of(target, public_frame)
    vals = pd.Series(reported_values(target, units)).dropna()
    return vals.value_counts().index[0] if len(vals) else None


# --------------------------------------------------------------------------- length model


def _hamming(bits: np.ndarray) -> np.ndarray:
    return bits.sum(1, dtype=np.int64)


def _length_model(target: Target, schema: LinkageSchema, public_units: pd.Series, public_frame: pd.DataFrame,
                  units_col: np.ndarray, rng: np.random.Generator, sample: int = 4000):
    """How the attacker reads a token count off a Hamming weight, or None.

    It encodes a sample of public values under its own key and learns the
    median weight per token count; a weight is read as the nearest median.  Used
    only where that reading is right for at least 90 % of the sample (not under
    ``bits_per_feature``, balancing or heavy noise).  Returns ``(classify,
    token_count_of_unit)``: a function weights -> classes, and a dict unit -> class.
    """
    if target.kind != "filter" or target.balance:
        return None
    distinct = public_units.index.to_numpy(dtype=object)
    _, counts = unit_items(target, distinct)
    tcount = dict(zip(distinct, counts, strict=True))
    pick = rng.choice(len(distinct), size=min(sample, len(distinct)), replace=False)
    rows = pd.Series(np.arange(len(units_col))).groupby(pd.Series(units_col)).first()
    rows = rows.reindex(distinct[pick]).dropna().astype(np.int64).to_numpy()
    if len(rows) < 50:
        return None
    packed = emulate(target, schema, public_frame.iloc[rows], rng=np.random.default_rng(rng.integers(1 << 62)))
    hw = _hamming(unpack(packed, target.length))
    t = np.array([tcount[u] for u in units_col[rows]])
    classes = np.unique(t)
    med = np.array([np.median(hw[t == c]) for c in classes])

    def classify(w: np.ndarray) -> np.ndarray:
        return classes[np.abs(np.asarray(w)[:, None] - med[None, :]).argmin(1)]

    if (classify(hw) == t).mean() < 0.9:
        return None
    return classify, tcount


# --------------------------------------------------------------------------- 1. frequency


def _rank_align(codes: np.ndarray, public_units: pd.Series, enc_group: np.ndarray | None = None,
                unit_group: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Guess per row by aligning class sizes with public frequencies, rank for rank,
    within groups.  ``codes`` -1 = not attacked.  Returns (guess, claimed)."""
    n = len(codes)
    guess = np.full(n, None, dtype=object)
    claimed = np.zeros(n, dtype=bool)
    ok = codes >= 0
    if not ok.any():
        return guess, claimed
    cls_size = np.bincount(codes[ok])
    cls_group = np.zeros(len(cls_size), dtype=np.int64)
    if enc_group is not None:
        cls_group[codes[ok]] = enc_group[ok]
    pub = public_units.sort_values(ascending=False, kind="stable")
    pub_group = (np.array([unit_group.get(u, -1) for u in pub.index], dtype=np.int64) if unit_group is not None
                 else np.zeros(len(pub), dtype=np.int64))
    assigned = np.full(len(cls_size), None, dtype=object)
    for g in np.unique(cls_group):
        cls = np.flatnonzero(cls_group == g)
        cls = cls[np.argsort(-cls_size[cls], kind="stable")]
        units = pub.index.to_numpy(dtype=object)[pub_group == g]
        m = min(len(cls), len(units))
        assigned[cls[:m]] = units[:m]
    guess[ok] = assigned[codes[ok]]
    # an attacker acts on a class that stands out: bigger than the next class and more than one record
    order = np.argsort(-cls_size, kind="stable")
    gap = np.zeros(len(cls_size), dtype=bool)
    if len(order) > 1:
        gap[order[:-1]] = (cls_size[order[:-1]] > cls_size[order[1:]]) & (cls_size[order[:-1]] > 1)
    claimed[ok] = gap[codes[ok]]
    return guess, claimed


def frequency_attack(target: Target, packed: np.ndarray, valid: np.ndarray, public_frame: pd.DataFrame,
                     schema: LinkageSchema, rng: np.random.Generator | None = None) -> Guesses:
    """Align the frequencies of identical filters with public value frequencies.

    ``packed``/``valid``: the column as :func:`hub.privacy.matrix.packed_column`
    returns it.  ``public_frame``: the public table, normalised with the schema.
    """
    rng = rng or np.random.default_rng()
    units_col, _ = units_of(target, public_frame)
    public_units = pd.Series(units_col).dropna().value_counts()
    codes = np.full(len(packed), -1, dtype=np.int64)
    if valid.any():
        c, _ = distinct_rows(packed[valid])
        codes[valid] = c
    enc_group = unit_group = None
    model = _length_model(target, schema, public_units, public_frame, units_col, rng)
    if model is not None:
        classify, tcount = model
        enc_group = np.zeros(len(packed), dtype=np.int64)
        enc_group[valid] = classify(_hamming(unpack(packed[valid], target.length)))
        unit_group = tcount
    guess, claimed = _rank_align(codes, public_units, enc_group, unit_group)
    n_cls = int(codes.max()) + 1 if valid.any() else 0
    return Guesses("frequency", target.column, guess, valid.copy(), claimed,
                   {"classes": n_cls, "length_classes": model is not None,
                    "largest_class": int(np.bincount(codes[valid]).max()) if valid.any() else 0})


def keyed_hash_attack(target: Target, codes_col: np.ndarray, valid: np.ndarray,
                      public_frame: pd.DataFrame) -> Guesses:
    """Align the frequencies of a keyed hash's values with the public frequencies
    of the same value (or value combination)."""
    units_col, _ = units_of(target, public_frame)
    public_units = pd.Series(units_col).dropna().value_counts()
    codes = np.full(len(codes_col), -1, dtype=np.int64)
    if valid.any():
        c, _ = pd.factorize(np.asarray(codes_col)[valid])
        codes[valid] = c
    guess, claimed = _rank_align(codes, public_units)
    sizes = np.bincount(codes[valid]) if valid.any() else np.zeros(0, dtype=np.int64)
    return Guesses("keyed_hash_frequency", target.column, guess, valid.copy(), claimed,
                   {"classes": len(sizes), "largest_class": int(sizes.max()) if len(sizes) else 0})


# --------------------------------------------------------------------------- 2. pattern mining


def debalance(bits: np.ndarray, min_agreement: float = 0.75) -> tuple[np.ndarray, bool]:
    """Undo a balancing the attacker can see: every original bit sits in two columns,
    one the negation of the other in every record.  Pairs each dense column
    (set in more than half the records) with the column that disagrees with it
    most, and keeps the sparse member of each pair.  Returns ``(bits, done)``;
    unchanged when fewer than ``min_agreement`` of the pairs are clean (folding
    after balancing destroys the pairs)."""
    n, L = bits.shape
    if L % 2 or n < 20:
        return bits, False
    x = bits.astype(np.float32) * 2 - 1  # +-1
    agree = (x.T @ x) / n  # +1 equal, -1 complementary
    np.fill_diagonal(agree, 1.0)
    partner = agree.argmin(1)
    mutual = partner[partner] == np.arange(L)
    clean = mutual & (agree[np.arange(L), partner] < -0.5)
    if clean.mean() < min_agreement:
        return bits, False
    fill = bits.mean(0)
    keep = np.array([i for i in range(L) if clean[i] and (fill[i] < fill[partner[i]] or
                                                       (fill[i] == fill[partner[i]] and i < partner[i]))],
                    dtype=np.int64)
    return bits[:, keep], True


@dataclass
class _Noise:
    """Per-position probabilities the miner expects: set when the item is present
    (``present``) and the background fill (``fill``)."""

    present: float
    fill: float

    @property
    def member(self) -> float:  # share of an itemset a holder shows
        return (self.present + self.fill) / 2

    @property
    def include(self) -> float:  # share of holders that show a position of the itemset
        return (self.present + self.fill) / 2


def _noise(target: Target, bits: np.ndarray) -> _Noise:
    fill = float(bits.mean()) if bits.size else 0.0
    p = target.noise
    pre = (fill - p) / (1 - 2 * p) if p else fill  # fill before BLIP
    pre = min(max(pre, 1e-6), 0.5)
    present = 1.0
    if target.xor_fold:
        m = 2 ** target.xor_fold
        one_minus_2r = max(1 - 2 * pre, 1e-9) ** (1 / m)  # raw fill r from the folded fill
        present = (1 + one_minus_2r ** (m - 1)) / 2
    present = present * (1 - p) + (1 - present) * p
    return _Noise(present=present, fill=fill)


def _grow(bits: np.ndarray, bitsf: np.ndarray, T: np.ndarray, seed: int, noise: _Noise, lo: float,
          min_positions: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Grow the itemset of ``seed`` inside the rows ``T``: three greedy steps (the
    position most often set with the itemset so far), then a fixed point of
    "positions most holders show" / "rows that show most of the positions"."""
    items = [int(seed)]
    for _ in range(3):
        co = bitsf[T].sum(0)
        co[items] = -1
        q = int(co.argmax())
        if co[q] < lo:
            break
        items.append(q)
        T = T & bits[:, q]
    if len(items) < min_positions:
        return None
    for _ in range(6):
        if T.sum() < 2:
            return None
        frac = bitsf[T].mean(0)
        new_i = np.flatnonzero(frac >= noise.include)
        if len(new_i) < min_positions:
            return None
        member = bitsf[:, new_i].mean(1) >= noise.member
        if np.array_equal(new_i, np.sort(items)) and np.array_equal(member, T):
            break
        items, T = list(new_i), member
    return np.sort(np.asarray(items, dtype=np.int64)), T


def discover_patterns(bits: np.ndarray, noise: _Noise, *, min_support: int = 8, min_positions: int = 3,
                      max_patterns: int = 1000) -> list[tuple[np.ndarray, np.ndarray]]:
    """Frequent bit patterns of a filter matrix, most frequent first, without labels.

    Peeling: take the position set most often *unexplained* (set in a record by
    no pattern found so far that the record shows), grow its itemset among
    those records (:func:`_grow`), record the pattern and mark its positions
    explained in the records that show it; a seed that grows nothing is
    dropped.  Each pattern is ``(positions, holders)``.
    """
    L = bits.shape[1]
    bitsf = bits.astype(np.float32)
    explained = np.zeros_like(bits)
    dead = np.zeros(L, dtype=bool)
    out: list[tuple[np.ndarray, np.ndarray]] = []
    lo = max(2.0, 0.5 * noise.present * min_support)
    while len(out) < max_patterns:
        counts = (bits & ~explained).sum(0)
        counts[dead] = 0
        p = int(counts.argmax())
        if counts[p] < min_support:
            break
        got = _grow(bits, bitsf, bits[:, p] & ~explained[:, p], p, noise, lo, min_positions)
        if got is None or got[1].sum() < min_support:
            dead[p] = True
            continue
        P, holders = got
        if not (explained[np.ix_(holders, P)] == 0).any():  # nothing new: a pattern found before
            dead[p] = True
            continue
        explained[np.ix_(holders, P)] = True
        if p not in set(P.tolist()):
            dead[p] = True
        out.append((P, holders))
    return out


def _public_items(target: Target, public_frame: pd.DataFrame):
    units_col, _ = units_of(target, public_frame)
    vc = pd.Series(units_col).dropna().value_counts()
    units = vc.index.to_numpy(dtype=object)
    weights = vc.to_numpy(dtype=np.float64)
    items, tcounts = unit_items(target, units)
    vocab: dict[str, int] = {}
    ptr = np.zeros(len(units) + 1, dtype=np.int64)
    flat: list[int] = []
    for i, s in enumerate(items):
        for it in s:
            flat.append(vocab.setdefault(it, len(vocab)))
        ptr[i + 1] = len(flat)
    return units, weights, np.asarray(flat, dtype=np.int64), ptr, vocab, tcounts, units_col, vc


def _cooccurrence(flat: np.ndarray, ptr: np.ndarray, weights: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Weighted co-occurrence of the items ``keep`` (indices) over the public units."""
    col = np.full(int(flat.max()) + 1 if len(flat) else 0, -1, dtype=np.int64)
    col[keep] = np.arange(len(keep))
    E = np.zeros((len(keep), len(keep)), dtype=np.float64)
    deg = np.diff(ptr)
    for k in range(int(deg.max()) if len(deg) else 0):
        for m in range(k + 1, int(deg.max())):
            u = np.flatnonzero(deg > m)
            a, b = col[flat[ptr[u] + k]], col[flat[ptr[u] + m]]
            ok = (a >= 0) & (b >= 0)
            np.add.at(E, (a[ok], b[ok]), weights[u[ok]])
    return E + E.T


def _poisson(x: np.ndarray, lam: np.ndarray) -> np.ndarray:
    lam = np.maximum(lam, 0.05)
    return x * np.log(lam) - lam


def label_patterns(holders: np.ndarray, freq: np.ndarray, cooc: np.ndarray, *, lengths: np.ndarray | None = None,
                   item_lengths: np.ndarray | None = None, sweeps: int = 8, window: float = 3.0,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """Give every pattern an item: the assignment (one item per pattern) that best
    explains the patterns' supports and pairwise co-supports by the items' expected
    counts ``freq`` and co-occurrences ``cooc`` (Poisson likelihood).

    Starts greedily (the most frequent pattern first, each taking the free item
    that best explains it and its co-supports with the patterns labelled
    before it), then improves the assignment by moves and swaps, pattern by
    pattern, among items whose expected count is within a factor ``window`` of
    the pattern's support.  With ``lengths`` (a
    length class per record) and ``item_lengths`` (items x classes: the public
    distribution of the length classes of the values holding each item), the
    holders' lengths are evidence too: a token that ends two-character names
    is not one that ends three-character names.
    """
    rng = rng or np.random.default_rng()
    hf = holders.astype(np.float32)
    node_len = None
    if lengths is not None and item_lengths is not None:
        k = item_lengths.shape[1]
        hist = np.stack([np.bincount(lengths[h], minlength=k)[:k] for h in holders]).astype(np.float64)
        q = (item_lengths + 0.5) / (item_lengths + 0.5).sum(1, keepdims=True)
        node_len = hist @ np.log(q).T  # patterns x items
    s = hf.sum(1).astype(np.float64)
    C = (hf @ hf.T).astype(np.float64)
    np.fill_diagonal(C, 0.0)
    m, n_items = len(s), len(freq)
    N = _poisson(s[:, None], freq[None, :])  # patterns x items
    if node_len is not None:
        N = N + node_len
    logf = np.log(np.maximum(freq, 1e-9))
    near = np.abs(np.log(np.maximum(s, 1.0))[:, None] - logf[None, :]) <= math.log(window)

    # greedy start: most frequent pattern first, each the best free item given those before it
    sigma = np.full(m, -1, dtype=np.int64)
    owner = np.full(n_items, -1, dtype=np.int64)
    done: list[int] = []
    for i in np.argsort(-s, kind="stable"):
        cands = np.flatnonzero(near[i] & (owner < 0))
        if len(cands) == 0:
            cands = np.flatnonzero(owner < 0)
            if len(cands) == 0:
                break
        sc = N[i, cands].copy()
        if done:
            sc += _poisson(C[i, done][None, :], cooc[np.ix_(cands, sigma[done])]).sum(1)
        a = int(cands[int(sc.argmax())])
        sigma[i], owner[a] = a, i
        done.append(int(i))
    ok = sigma >= 0
    idx = np.arange(m)

    def current() -> np.ndarray:
        L = _poisson(C, cooc[np.ix_(np.maximum(sigma, 0), np.maximum(sigma, 0))])
        L[:, ~ok] = 0.0
        np.fill_diagonal(L, 0.0)
        return L.sum(1)

    cur = current()
    for _ in range(sweeps):
        moved = 0
        for i in rng.permutation(np.flatnonzero(ok)):
            a0 = int(sigma[i])
            cands = np.flatnonzero(near[i])
            cands = cands[cands != a0]
            if len(cands) == 0:
                continue
            others = ok & (idx != i)
            so = sigma[others]
            Pa = _poisson(C[i, others][None, :], cooc[np.ix_(cands, so)]).sum(1)
            P0 = float(_poisson(C[i, others], cooc[a0, so]).sum())
            delta = N[i, cands] - N[i, a0] + Pa - P0
            js = owner[cands]
            sw = np.flatnonzero(js >= 0)
            if len(sw):
                j = js[sw]
                a = cands[sw]
                cij = C[i, j]
                mask = ok.copy()
                mask[i] = False
                r0 = (_poisson(C[j][:, mask], cooc[a0, sigma[mask]][None, :]).sum(1)
                      - _poisson(0.0, cooc[a0, a]))  # the k == j column (C[j, j] = 0)
                r = cur[j] - _poisson(cij, cooc[a, a0])
                delta[sw] = (N[i, a] + N[j, a0] - N[i, a0] - N[j, a]
                             + (Pa[sw] - _poisson(cij, cooc[a, a])) - (P0 - _poisson(cij, cooc[a0, a]))
                             + r0 - r)
            k = int(delta.argmax())
            if delta[k] <= 1e-9:
                continue
            a, j = int(cands[k]), int(owner[cands[k]])
            sigma[i], owner[a] = a, i
            if j >= 0:
                sigma[j], owner[a0] = a0, j
            else:
                owner[a0] = -1
            cur = current()
            moved += 1
        if moved == 0:
            break
    return sigma


@dataclass
class MinedItems:
    """What the mining found: each labelled item's bit positions (in the mined,
    possibly de-balanced, column space)."""

    positions: dict[str, np.ndarray]
    bits: np.ndarray  # the mined matrix (records x positions), bool
    rows: np.ndarray  # record index of each row of ``bits``
    noise: _Noise
    debalanced: bool
    patterns: int
    public: tuple | None = None  # _public_items of the public table
    model: tuple | None = None  # _length_model (classify, token count of unit), if any


def mine_items(target: Target, packed: np.ndarray, valid: np.ndarray, public_frame: pd.DataFrame,
               schema: LinkageSchema, *, min_support: int = 8,
               rng: np.random.Generator | None = None) -> MinedItems:
    """Discover frequent bit patterns (:func:`discover_patterns`) and label them with
    public items (:func:`label_patterns`)."""
    rows_all = np.flatnonzero(valid)
    bits = unpack(packed[rows_all], target.length).astype(bool)
    debalanced = False
    if target.balance:
        bits, debalanced = debalance(bits)
    noise = _noise(target, bits)
    pats = discover_patterns(bits, noise, min_support=min_support)
    if not pats:
        return MinedItems({}, bits, rows_all, noise, debalanced, 0)
    rng = rng or np.random.default_rng()
    public = _public_items(target, public_frame)
    units, weights, flat, ptr, vocab, _, units_col, vc = public
    names = np.empty(len(vocab), dtype=object)
    for it, j in vocab.items():
        names[j] = it
    item_w = np.bincount(flat, weights=np.repeat(weights, np.diff(ptr)), minlength=len(vocab))
    scale = len(bits) / weights.sum()
    expected = item_w * scale
    keep = np.flatnonzero(expected >= min_support / 3.0)
    keep = keep[np.argsort(-expected[keep], kind="stable")][: max(4 * len(pats), 200)]
    if len(keep) == 0:
        return MinedItems({}, bits, rows_all, noise, debalanced, len(pats), public)
    cooc = _cooccurrence(flat, ptr, weights, keep) * scale
    holders = np.array([h for _, h in pats])
    lengths = item_lengths = None
    model = None if debalanced else _length_model(target, schema, vc, public_frame, units_col, rng)
    if model is not None:
        classify, tcount = model
        classes = np.unique(np.fromiter(tcount.values(), dtype=np.int64))
        idx = {c: i for i, c in enumerate(classes)}
        lengths = np.array([idx[c] for c in classify(_hamming(bits))], dtype=np.int64)
        ucls = np.array([idx.get(int(tcount[u]), 0) for u in units], dtype=np.int64)
        col = np.full(len(vocab), -1, dtype=np.int64)
        col[keep] = np.arange(len(keep))
        unit_of_nnz = np.repeat(np.arange(len(units)), np.diff(ptr))
        sel = col[flat] >= 0
        item_lengths = np.zeros((len(keep), len(classes)), dtype=np.float64)
        np.add.at(item_lengths, (col[flat[sel]], ucls[unit_of_nnz[sel]]), weights[unit_of_nnz[sel]])
    sigma = label_patterns(holders, expected[keep], cooc, lengths=lengths, item_lengths=item_lengths, rng=rng)
    positions = {names[keep[a]]: pats[i][0] for i, a in enumerate(sigma) if a >= 0}
    return MinedItems(positions, bits, rows_all, noise, debalanced, len(pats), public, model)


def pattern_mining_attack(target: Target, packed: np.ndarray, valid: np.ndarray, public_frame: pd.DataFrame,
                          schema: LinkageSchema, *, min_support: int = 8,
                          rng: np.random.Generator | None = None) -> Guesses:
    """Mine and label frequent items' positions (:func:`mine_items`), then give every
    filter the public value whose identified items are exactly those it shows."""
    rng = rng or np.random.default_rng()
    n_all = len(packed)
    guess = np.full(n_all, None, dtype=object)
    claimed = np.zeros(n_all, dtype=bool)
    if not valid.any():
        return Guesses("pattern_mining", target.column, guess, valid.copy(), claimed, {"items_identified": 0})
    mined = mine_items(target, packed, valid, public_frame, schema, min_support=min_support, rng=rng)
    info: dict[str, Any] = {"debalanced": mined.debalanced, "patterns": mined.patterns,
                            "items_identified": len(mined.positions)}
    if not mined.positions:
        return Guesses("pattern_mining", target.column, guess, valid.copy(), claimed, info)
    units, _, flat, ptr, vocab, *_ = mined.public
    unit_of_nnz = np.repeat(np.arange(len(units)), np.diff(ptr))
    known = sorted(mined.positions)
    bits = mined.bits
    shows = np.zeros((len(bits), len(known)), dtype=bool)
    for j, it in enumerate(known):
        shows[:, j] = bits[:, mined.positions[it]].mean(1) >= mined.noise.member
    col_of = np.full(len(vocab), -1, dtype=np.int64)
    for j, it in enumerate(known):
        col_of[vocab[it]] = j
    usig = np.zeros((len(units), len(known)), dtype=bool)
    sel = col_of[flat] >= 0
    usig[unit_of_nnz[sel], col_of[flat[sel]]] = True
    by_sig: dict[bytes, list[int]] = {}
    for i, k in enumerate(np.packbits(usig, axis=1)):  # units come in descending frequency
        by_sig.setdefault(k.tobytes(), []).append(i)
    tclass = tcount = None
    if mined.model is not None and not mined.debalanced:
        classify, tcount = mined.model
        tclass = classify(_hamming(bits))
    n_guessed = 0
    for r, k in enumerate(np.packbits(shows, axis=1)):
        if not shows[r].any():
            continue
        cands = by_sig.get(k.tobytes())
        if not cands:
            continue
        if tclass is not None:
            cands = [c for c in cands if tcount[units[c]] == tclass[r]] or cands
        guess[mined.rows[r]] = units[cands[0]]
        claimed[mined.rows[r]] = len(cands) == 1
        n_guessed += 1
    info["guessed"] = n_guessed
    return Guesses("pattern_mining", target.column, guess, valid.copy(), claimed, info)


# --------------------------------------------------------------------------- salt banks


def bank_slots(column, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, slots)`` of a salt-bank column (``sb_<f>``, binary): the rows that
    carry a bank and their slots as ``(banks, k, width)`` uint8."""
    import pyarrow as pa

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(valid)
    if not len(rows):
        return rows, np.zeros((0, 0, width), dtype=np.uint8)
    vals = arr.take(pa.array(rows)).to_pylist()
    k = len(vals[0]) // width
    slots = np.frombuffer(b"".join(vals), dtype=np.uint8).reshape(len(rows), k, width)
    return rows, slots


def _same_value_dice(target: Target, schema: LinkageSchema | None, public_frame: pd.DataFrame,
                     rng: np.random.Generator, n: int = 400, comparisons: int = 1000) -> float:
    """The Dice above which the attacker takes two filters for one value: 1.0 without noise;
    under BLIP, half-way between the Dice of one value encoded twice (median) and what the best
    of ``comparisons`` pairs of different values reaches -- and never below the latter (under
    heavy noise the two overlap and hardly anything links) --, learnt on public values it
    encodes itself."""
    if not target.noise or schema is None:
        return 1.0
    from .knowledge import emulate

    units, _ = units_of(target, public_frame)
    has = pd.notna(units)
    if target.salt is not None:  # values the encoder salts (a missing salt gives a bank, not a filter)
        has &= public_frame[target.salt].notna().to_numpy() if target.salt in public_frame.columns else False
    rows = np.flatnonzero(has)
    if len(rows) < 20:
        return 1.0
    rows = rng.choice(rows, size=min(n, len(rows)), replace=False)
    frame = public_frame.iloc[rows].reset_index(drop=True)
    from linkage.keys import LinkageSecret

    key = LinkageSecret(rng.bytes(32))
    a = unpack(emulate(target, schema, frame, key, rng=np.random.default_rng(rng.integers(1 << 62))), target.length)
    b = unpack(emulate(target, schema, frame, key, rng=np.random.default_rng(rng.integers(1 << 62))), target.length)
    from .matrix import dice

    d = dice(a, b)
    same = np.diag(d)
    u = np.asarray(units[rows], dtype=object)
    diff = d[u[:, None] != u[None, :]]
    if not diff.size:
        return float(np.median(same))
    # never link what two different values reach: the best of ``comparisons`` unrelated slots
    top = float(np.quantile(diff, 1.0 - 1.0 / max(1000, min(comparisons, diff.size))))
    return max(float((np.median(same) + top) / 2), top + 1e-6)


def bank_linking_attack(target: Target, packed: np.ndarray, valid: np.ndarray, bank_column,
                        public_frame: pd.DataFrame, schema: LinkageSchema | None = None,
                        rng: np.random.Generator | None = None) -> Guesses:
    """Undo salting through salt banks, then run the frequency attack on names.

    A bank holds one name's filter under every salt; a record of year ``y``
    with that name has the bank's year-``y`` slot (exactly, without BLIP; a
    near copy with it).  So the hub can join every bank's slots, every slot of
    another bank that is the same filter (same name) and every record filter
    that is a slot (same name, some year) into one group per name -- across all
    years: the unsalted frequency class of that name.  "The same filter" is a
    Dice at or above a cut the attacker learns by encoding public values twice
    under the schema's settings (:func:`_same_value_dice`: 1.0 without noise);
    it is what the hub's own linkage does with a bank, so BLIP that stops it
    stops the linkage through banks too.  The groups' sizes are then aligned
    with the public name frequencies (the frequency attack).  ``info`` says how
    many salted records the banks de-salt this way.
    """
    from hub.candidates import dice_candidates, pack_filters

    rng = rng or np.random.default_rng()
    n = len(packed)
    width = packed.shape[1]
    brow, slots = bank_slots(bank_column, width)
    cut = _same_value_dice(target, schema, public_frame, rng, comparisons=max(1, slots.shape[0] * slots.shape[1]))
    regular = np.flatnonzero(valid)
    k = slots.shape[1] if len(brow) else 0
    # nodes: every slot (bank b, slot j -> b * k + j), then every salted record
    n_slots = len(brow) * k
    parent = np.arange(n_slots + len(regular))

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb

    linked = np.zeros(len(regular), dtype=bool)
    if n_slots:
        flat = slots.reshape(n_slots, width)
        for b in range(len(brow)):
            for j in range(1, k):
                union(b * k, b * k + j)
        if cut >= 1.0:  # exact: hash joins
            first: dict[bytes, int] = {}
            for i in range(n_slots):
                key = flat[i].tobytes()
                if key in first:
                    union(first[key], i)
                else:
                    first[key] = i
            for r_i, r in enumerate(regular):
                hit = first.get(packed[r].tobytes())
                if hit is not None:
                    union(n_slots + r_i, hit)
                    linked[r_i] = True
        else:  # near copies: Dice over every slot pair and record-slot pair
            W = pack_filters(np.ascontiguousarray(flat))
            # one slot of a bank finds the same year's slot of every bank of the same name
            res = dice_candidates(pack_filters(np.ascontiguousarray(slots[:, 0])), W, threshold=cut, k=None)
            for x, y in zip(res.left, res.right, strict=True):
                union(int(x) * k, int(y))
            if len(regular):
                res = dice_candidates(pack_filters(np.ascontiguousarray(packed[regular])), W, threshold=cut, k=1)
                for x, y in zip(res.left, res.right, strict=True):
                    union(n_slots + int(x), int(y))
                    linked[int(x)] = True
    codes = np.full(n, -1, dtype=np.int64)
    ids: dict[int, int] = {}
    for r_i, r in enumerate(regular):
        if linked[r_i]:
            codes[r] = ids.setdefault(find(n_slots + r_i), len(ids))
    for b, r in enumerate(brow):
        codes[r] = ids.setdefault(find(b * k), len(ids))
    names = pd.Series(reported_values(target, units_of(target, public_frame)[0])).dropna()
    public_units = (SEP + names).value_counts() if target.salt is not None else names.value_counts()
    guess, claimed = _rank_align(codes, public_units)
    attacked = valid.copy()
    attacked[brow] = True
    sizes = np.bincount(codes[codes >= 0]) if (codes >= 0).any() else np.zeros(0, dtype=np.int64)
    return Guesses("bank_linking", target.column, guess, attacked, claimed, {
        "bank_rows": len(brow), "slots_per_bank": int(k), "same_value_dice": round(cut, 3),
        "name_groups": len(ids), "salted_records": len(regular),
        "salted_records_desalted": int(linked.sum()),
        "desalted_share": float(linked.mean()) if len(regular) else 0.0,
        "largest_group": int(sizes.max()) if len(sizes) else 0})


# --------------------------------------------------------------------------- 3. graph matching


def _nearest(A: np.ndarray, B: np.ndarray, rng: np.random.Generator, dims: int = 256, shortlist: int = 4,
             chunk: int = 1024):
    """Nearest row of ``B`` (squared L2) for every row of ``A``, the distances to the
    nearest and second nearest, and for every row of ``B`` its nearest row of ``A``.

    With more than ``dims`` coordinates the search runs on a random Gaussian
    projection to ``dims`` (distances kept within a few per cent,
    Johnson--Lindenstrauss) and the ``shortlist`` closest are re-ranked exactly.
    """
    if A.shape[1] > dims:
        R = rng.standard_normal((A.shape[1], dims)).astype(np.float32) / np.float32(math.sqrt(dims))
        Ap, Bp = A @ R, B @ R
    else:
        Ap, Bp = A, B
    k = min(shortlist, len(B))
    a2 = (Ap * Ap).sum(1)
    b2 = (Bp * Bp).sum(1)
    short = np.zeros((len(A), k), dtype=np.int64)
    col_best = np.full(len(B), -1, dtype=np.int64)
    col_d = np.full(len(B), np.inf, dtype=np.float32)
    for s in range(0, len(A), chunk):
        d = a2[s:s + chunk, None] + b2[None, :] - 2.0 * (Ap[s:s + chunk] @ Bp.T)
        short[s:s + chunk] = np.argpartition(d, k - 1, axis=1)[:, :k] if k < d.shape[1] else np.arange(k)
        cmin = d.argmin(0)
        cval = d[cmin, np.arange(d.shape[1])]
        better = cval < col_d
        col_d[better] = cval[better]
        col_best[better] = cmin[better] + s
    exact = np.zeros((len(A), k), dtype=np.float32)
    for s in range(0, len(A), chunk):
        for j in range(k):
            diff = A[s:s + chunk] - B[short[s:s + chunk, j]]
            exact[s:s + chunk, j] = (diff * diff).sum(1)
    order = np.argsort(exact, axis=1)
    short = np.take_along_axis(short, order, 1)
    exact = np.take_along_axis(exact, order, 1)
    best = short[:, 0]
    d1 = exact[:, 0]
    d2 = exact[:, 1] if k > 1 else np.full(len(A), np.inf, dtype=np.float32)
    return best, d1, d2, col_best


def _excess(M: np.ndarray, anchors: np.ndarray, length: int) -> np.ndarray:
    """Bits two filters share beyond chance, every row of ``M`` with every anchor row:
    ``|x AND y| - |x| |y| / L``.  A shared token adds about its bits per token; two
    unrelated filters scatter around zero."""
    inter = M @ anchors.T
    return inter - np.outer(M.sum(1), anchors.sum(1)) / float(length)


def _item_bits(target: Target, vocab: dict[str, int], tcounts: np.ndarray) -> np.ndarray:
    """Bits each item sets (its field's bits per token; for ``bits_per_feature``, the
    field's bits over its median token count)."""
    per_field = {}
    med = max(1.0, float(np.median(tcounts))) if len(tcounts) else 1.0
    for f, b, pf in zip(target.fields, target.bits, target.per_feature, strict=True):
        per_field[f] = math.ceil(b / med) if pf else b
    out = np.zeros(len(vocab), dtype=np.float32)
    for it, j in vocab.items():
        if target.kind == "clk":
            f = it.split(SEP)[-1].split(TAG)[0] if TAG in it else target.fields[0]
            out[j] = per_field.get(f, 1)
        else:
            out[j] = per_field[target.fields[0]]
    return out


class _SharedBits:
    """Bits two plaintext units would share: the bits of their common items."""

    def __init__(self, target: Target, units: np.ndarray) -> None:
        items, tcounts = unit_items(target, units)
        self.vocab: dict[str, int] = {}
        self.unit_items: list[np.ndarray] = []
        for its in items:
            self.unit_items.append(np.array([self.vocab.setdefault(i, len(self.vocab)) for i in its],
                                            dtype=np.int64))
        self.bits = _item_bits(target, self.vocab, tcounts)
        flat = np.concatenate(self.unit_items) if self.unit_items else np.zeros(0, dtype=np.int64)
        owner = np.repeat(np.arange(len(units)), [len(x) for x in self.unit_items])
        order = np.argsort(flat, kind="stable")
        self.ptr = np.searchsorted(flat[order], np.arange(len(self.vocab) + 1))
        self.holders = owner[order]
        self.n = len(units)

    def cover(self, anchors: list[int], dims: int, times: int = 2) -> list[int]:
        """Indices into ``anchors`` of at most ``dims`` anchors chosen greedily so that
        as many items as possible are held by ``times`` of them (the coordinates
        that carry information; more anchors holding the same tokens only add noise)."""
        if len(anchors) <= dims:
            return list(range(len(anchors)))
        need = np.full(len(self.vocab), times, dtype=np.int64)
        gain = np.array([len(self.unit_items[a]) for a in anchors], dtype=np.int64)
        chosen: list[int] = []
        taken = np.zeros(len(anchors), dtype=bool)
        while len(chosen) < dims:
            k = int(np.argmax(np.where(taken, -1, gain)))
            if taken[k]:
                break
            its = self.unit_items[anchors[k]]
            real = int((need[its] > 0).sum())
            if real < gain[k]:  # stale gain: refresh and retry
                gain[k] = real
                continue
            taken[k] = True
            chosen.append(k)
            need[its] -= 1
        return sorted(chosen)

    def with_units(self, cols: list[int]) -> np.ndarray:
        """``(units, len(cols))`` float32: bits unit ``i`` shares with unit ``cols[j]``."""
        out = np.zeros((self.n, len(cols)), dtype=np.float32)
        for j, c in enumerate(cols):
            for it in self.unit_items[c]:
                h = self.holders[self.ptr[it]:self.ptr[it + 1]]
                out[h, j] += self.bits[it]
        return out


def _calibrate(target: Target, schema: LinkageSchema, shared: _SharedBits, units: np.ndarray,
               rng: np.random.Generator, n: int = 1500, anchors: int = 150) -> tuple[float, float, float]:
    """``(b1, b0, cut)``: the line ``excess overlap ~ b0 + b1 * shared bits`` and the
    noise floor ``cut`` (the line's intercept plus three robust SDs of what it does
    not explain: collisions, flips, folding), fitted on reference units the
    attacker encodes under its own key with the schema's settings."""
    pick = rng.choice(len(units), size=min(n, len(units)), replace=False)
    frame = _frame_of_units(target, list(units[pick]), list(schema.field_names))
    Y = unpack(emulate(target, schema, frame, rng=np.random.default_rng(rng.integers(1 << 62))),
               target.length).astype(bool)
    if target.balance:
        Y = debalance(Y)[0]
    Yf = Y.astype(np.float32)
    k = min(anchors, len(pick))
    y = _excess(Yf, Yf[:k], Y.shape[1])
    x = shared.with_units([int(i) for i in pick[:k]])[pick]
    off = ~np.eye(len(pick), k, dtype=bool)
    x, y = x[off], y[off]
    if np.ptp(x) <= 0:
        return 0.0, float(np.median(y)), float(np.median(y))
    b1, b0 = np.polyfit(x, y, 1)
    res = y - (b0 + b1 * x)
    cut = float(b0 + 3 * 1.4826 * np.median(np.abs(res - np.median(res))))
    return float(b1), float(b0), cut


def graph_attack(target: Target, packed: np.ndarray, valid: np.ndarray, reference_frame: pd.DataFrame,
                 schema: LinkageSchema, seed_rows: np.ndarray, seed_units: np.ndarray, *, max_anchors: int = 4000, rounds: int = 12,
                 accept: float = 0.5, dims: int = 100000, rng: np.random.Generator | None = None) -> Guesses:
    """Seeded similarity-graph matching between the encoded records and a plaintext
    reference population.

    ``seed_rows``: records whose unit the attacker knows (``seed_units``).
    Nodes are distinct encodings on one side and distinct reference units on
    the other; a node's coordinates are its similarities to the known pairs.
    On the encoded side the similarity is the bits two filters share beyond
    chance (``|x AND y| - |x| |y| / L``, after undoing a visible balancing);
    on the plaintext side it is predicted from the bits of the tokens two
    values share, through a line the attacker fits on reference values it
    encodes under its own key with the schema's settings (the calibration of
    Culnane et al. and Vidanage et al.: it absorbs collisions, folding and
    flips).
    Similarities below the chance level are zeroed on both sides.  Each round
    matches every node to the nearest node of the other side and adds the
    confident mutual matches to the known pairs (percolation).
    """
    rng = rng or np.random.default_rng()
    n_all = len(packed)
    guess = np.full(n_all, None, dtype=object)
    claimed = np.zeros(n_all, dtype=bool)
    attacked = valid.copy()
    attacked[seed_rows] = False
    rows_all = np.flatnonzero(valid)
    info: dict[str, Any] = {"seeds": len(seed_rows)}
    if len(rows_all) == 0:
        return Guesses("graph", target.column, guess, attacked, claimed, info)
    codes, first = distinct_rows(packed[rows_all])
    Xd = unpack(packed[rows_all[first]], target.length).astype(bool)
    if target.balance:
        Xd, info["debalanced"] = debalance(Xd)
    length = Xd.shape[1]
    Xf = Xd.astype(np.float32)
    row_code = np.full(n_all, -1, dtype=np.int64)
    row_code[rows_all] = codes

    ref_units, _ = units_of(target, reference_frame)
    ref_distinct = np.asarray(list(dict.fromkeys(u for u in ref_units if u is not None)), dtype=object)
    known = set(ref_distinct.tolist())
    extra = [u for u in dict.fromkeys(seed_units) if u is not None and u not in known]
    if extra:  # the attacker knows its seeds' plaintext: they join its reference
        ref_distinct = np.concatenate([ref_distinct, np.asarray(extra, dtype=object)])
    shared = _SharedBits(target, ref_distinct)
    ref_index = {u: i for i, u in enumerate(ref_distinct)}
    info.update(encoded_distinct=len(Xd), reference_distinct=len(ref_distinct))

    a_enc: list[int] = []
    a_ref: list[int] = []
    used_e: set[int] = set()
    used_r: set[int] = set()

    def add(e: int, j: int) -> None:
        a_enc.append(e)
        a_ref.append(j)
        used_e.add(e)
        used_r.add(j)

    for r, u in zip(seed_rows, seed_units, strict=True):
        e, j = int(row_code[r]), ref_index.get(u)
        if e >= 0 and j is not None and e not in used_e and j not in used_r:
            add(e, j)
    if len(a_enc) < 2:
        return Guesses("graph", target.column, guess, attacked, claimed, info)
    b1, b0, cut = _calibrate(target, schema, shared, ref_distinct, rng)
    info.update(calibration=[round(b1, 3), round(b0, 2)], noise_cut_bits=round(cut, 2))
    S_cols = shared.with_units(a_ref)  # reference units x anchors: shared bits
    best = np.zeros(len(Xd), dtype=np.int64)
    ratio = np.ones(len(Xd), dtype=np.float32)
    for rnd in range(rounds + 1):
        cols = shared.cover([a_ref[k] for k in range(len(a_ref))], dims)  # coordinates: anchors that
        ea = _excess(Xf, Xf[[a_enc[k] for k in cols]], length)  # cover most tokens
        A = np.maximum(ea - cut, 0.0)
        B = np.maximum(b0 + b1 * S_cols[:, cols] - cut, 0.0)
        best, d1, d2, col_best = _nearest(A, B, rng)
        ratio = (d1 + 1.0) / (d2 + 1.0)
        if rnd == rounds or len(a_enc) >= max_anchors:
            break
        has = best >= 0
        mutual = has & (col_best[np.maximum(best, 0)] == np.arange(len(Xd)))
        active = (A > 0).sum(1) + (B[np.maximum(best, 0)] > 0).sum(1)
        informative = (A > 0).any(1)
        # the residual a true match leaves, per active coordinate, learnt on the known pairs
        resid = d1 / np.maximum(active, 1)
        own = resid[[a_enc[k] for k in cols]]
        own = own[np.isfinite(own)]
        noise_max = float(np.median(own) + 3 * 1.4826 * np.median(np.abs(own - np.median(own))))
        order = np.argsort(ratio, kind="stable")
        grow = min(max_anchors - len(a_enc), max(len(a_enc), 20))
        new: list[int] = []
        for e in order:
            if len(new) >= grow or ratio[e] > accept:
                break
            j = int(best[e])
            if (not mutual[e] or not informative[e] or resid[e] > noise_max or e in used_e
                    or j in used_r):
                continue
            add(int(e), j)
            new.append(j)
        info.setdefault("anchors_by_round", []).append(len(a_enc))
        if not new:
            break
        S_cols = np.concatenate([S_cols, shared.with_units(new)], axis=1)
    info["anchors"] = len(a_enc)
    g_cls = np.where(best >= 0, ref_distinct[np.maximum(best, 0)], None)
    ok = row_code >= 0
    guess[ok] = g_cls[row_code[ok]]
    claimed[ok] = ratio[row_code[ok]] < accept
    return Guesses("graph", target.column, guess, attacked, claimed, info)


def _frame_of_units(target: Target, units: list[str], columns) -> pd.DataFrame:
    """Normalised rows that encode to ``units`` (inverse of :func:`units_of`)."""
    rows = []
    for u in units:
        parts = u.split(SEP)
        row = dict.fromkeys(columns)
        if target.salt is not None:
            row[target.salt] = parts[0] or None
            parts = parts[1:]
        for f, v in zip(target.fields, parts, strict=True):
            row[f] = v or None
        rows.append(row)
    return pd.DataFrame(rows, columns=list(columns), dtype=object)


def seeds_for(truth_units: np.ndarray, valid: np.ndarray, count: int, rng: np.random.Generator,
              reference_units: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random records the attacker is assumed to know (lab use: needs the truth)."""
    pool = np.flatnonzero(valid & np.array([u is not None for u in truth_units], dtype=bool))
    if reference_units is not None:
        ref = set(u for u in reference_units if u is not None)
        pool = pool[[truth_units[i] in ref for i in pool]]
    pick = rng.choice(pool, size=min(count, len(pool)), replace=False) if len(pool) else pool
    return np.sort(pick), truth_units[np.sort(pick)]
