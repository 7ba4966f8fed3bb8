"""Encode normalised records: keyed field Bloom filters, exact hashes, blocking keys, CLK.

``encode_records(normalised, schema, secret, rng=None)`` returns the Arrow
table of ``docs/formats/encodings.md`` without the ``token`` and ``attr_*``
columns (agency-kit adds those): ``bf_<field>``, ``eh_<field>``, ``bk_<key>``
and ``clk``, in that order.

The native aidlink encoding, version 3
======================================

This is the whole definition; another client following it produces the same
bits.  ``tests/vectors/native/reference.py`` is an independent plain-Python
implementation of exactly this text, and the vectors made with it are
checked against this module.

**Inputs.**  One normalised value per field and record (a ``str``).  A value
is *missing* when it is ``None``, NaN or the empty string.  Strings are
sequences of Unicode code points; they are hashed as UTF-8.

**Keys.**  ``K(purpose, name) = secret.derive(purpose, schema.id, name)``
(HKDF-SHA256, :mod:`linkage.keys`), one key per use:

=========================== =========================================
field filter of field f      ``K("bloom", f)``
f's share of the CLK         ``K("clk", f)``
permutation of f's filter    ``K("permute", f)``
balancing of f's filter      ``K("permute", f + "#balance")``
permutation of the CLK       ``K("permute", "#clk")``
balancing of the CLK         ``K("permute", "#clk#balance")``
exact hash of f              ``K("exact", f)``
blocking key b               ``K("blocking", b)``
=========================== =========================================

(``#`` never occurs in a field name, so no two uses share a key; the CLK's
keys differ from the field filters', so a CLK reveals nothing reusable
against a field filter and vice versa.)

**1. Tokens** of a present value ``v`` (``T`` = their number, occurrences
counted, duplicates kept -- as clkhash):

- ``char_ngrams(n, padded)``: if ``padded`` and ``n > 1``, ``v`` is padded
  with ``n - 1`` spaces (U+0020) on each side (clkhash's rule).  The tokens
  are the substrings of ``n`` code points starting at offsets ``0 ..
  len - n`` of the (padded) string, in order.  An unpadded value shorter than
  ``n`` gives one token: the value itself.  ``"张三"``, n=2, padded →
  ``" 张"``, ``"张三"``, ``"三 "``.
- ``pinyin_ngrams(n, padded)``: the same rule over the pinyin string as the
  ``pinyin`` normaliser writes it (toneless syllables separated by one
  space): ``"zhang san"`` → ``" z"``, ``"zh"``, ..., ``"g "``, ``" s"``, ...
- ``digit_ngrams(n, padded)``: the ``char_ngrams`` grams made *positional*
  (clkhash's positional n-grams): token ``"<i> <gram>"`` with ``i`` the
  1-based offset of the gram in the (padded) string, in decimal.
  ``"110"``, n=2, padded → ``"1  1"``, ``"2 11"``, ``"3 10"``, ``"4 0 "``.
- ``exact``: the value is one token.

**2. Bits per token.**  ``bits_per_token: k`` → every token gets ``k``;
``bits_per_feature: B`` → every token of the value gets ``k = ceil(B / T)``
(so a value sets at least ``B`` bit positions, counting repeats, whatever its
length).

**3. Message** hashed for a token ``t``: ``UTF-8(t)``.  When the target is
salted (``hardening.salt``), ``UTF-8(s + U+001F + t)`` where ``s`` is the
normalised value of the salt field.  If ``s`` is missing: ``on_missing:
"null"`` makes the field filter null (for the CLK: the record contributes no
bits; the CLK is still produced, all zero before hardening); ``"unsalted"``
hashes the bare token; ``"bank"`` makes the field filter null and adds a
salt bank (section 7).

**4. Positions.**  ``PRF(K, m)`` is AES-256-CMAC (NIST SP 800-38B; RFC
4493's algorithm with AES-256) of ``m`` under the 32-byte key ``K``: 16
bytes.  The stream of message ``m`` under key ``K`` is block 0 = ``PRF(K,
m)``, block ``j >= 1`` = ``PRF(K, 0xFF || uint32_be(j) || m)`` (0xFF never
occurs in UTF-8, so a counter block is never another token's block 0), the
blocks read one after the other as big-endian words ``w0, w1, ...``.  A token
with ``k`` bits sets bits ``w0 mod L, ..., w(k-1) mod L`` of a filter of ``L``
bits: the field's ``filter.length``, or ``clk.length`` for the CLK.  ``L`` is
a multiple of 64 and at most 8192.  Where ``L`` is a power of two the words
are 16-bit (uint16, 8 a block): ``w mod L`` is then exactly uniform.
Otherwise they are 32-bit (uint32, 4 a block), and the modulo bias is below
``L / 2**32 < 2e-6`` per position: negligible.  The filter is the OR over all
tokens (of all contributing fields, for the CLK).  Bit ``i`` of a filter is
bit ``7 - i % 8`` of byte ``i // 8`` (MSB first).  (Version 1 used
HMAC-SHA256 and 32-bit words for every ``L``; version 2 HMAC-SHA256 with
16-bit words where ``L`` is a power of two.  Version 3's CMAC is the same
kind of object -- a PRF keyed by a 256-bit key -- that a batch of messages
costs one AES pass per block index instead of one HMAC call per message.)

**5. Hardening**, in this order, each step only if the schema asks for it:

a. ``permute``: ``p`` = keyed permutation of ``L`` (below) under the
   permutation key; ``out[i] = in[p[i]]``.
b. ``balance``: ``c = F || NOT F`` (``2L`` bits), ``p2`` = keyed permutation
   of ``2L`` under the balancing key, ``out[i] = c[p2[i]]``.  Every balanced
   filter has Hamming weight exactly ``L`` (half its length).
c. ``xor_fold``: ``xor_fold`` times, ``F = F[:len/2] XOR F[len/2:]``.
d. ``blip`` (BLoom-and-flIP; Alaggan, Gambs & Kermarrec, "BLIP:
   non-interactive differentially-private similarity computation on Bloom
   filters", SSS 2012; used for PPRL by Schnell & Borgs, "Randomized
   response and balanced Bloom filters for privacy preserving record
   linkage", ICDMW 2016): every bit is flipped independently with
   probability ``p = 1 / (1 + exp(epsilon / s))`` (:func:`blip_flip_probability`),
   ``s`` being the sensitivity, the most bits one token can change in the
   final filter: ``k_max * (2 if balance else 1)`` with ``k_max`` the field's
   ``bits_per_token`` or ``bits_per_feature`` (a one-token value gets all of
   it), the largest over contributing fields for the CLK.  This is
   epsilon-DP for adding or removing one token; in Schnell & Borgs' notation
   ``f = 2p`` and ``epsilon = s * ln((1 - f/2) / (f/2))``.  (RAPPOR's
   ``epsilon = 2h ln((1 - f/2)/(f/2))`` counts replacing a token, i.e. twice
   the sensitivity.)  The flips use fresh randomness every run and are not
   reproducible across runs, by design.

Keyed permutation of ``N`` under key ``K``: words ``w`` = big-endian uint32
words of ``HMAC-SHA256(K, "aidlink-permutation-v1" || uint32_be(N) ||
uint32_be(c))`` for ``c = 0, 1, ...``; start from ``p = [0, ..., N-1]``; for
``i = N-1`` down to 1: take words until one is below ``2**32 - (2**32 mod
(i+1))``, let ``j = w mod (i+1)``, swap ``p[i]`` and ``p[j]`` (an unbiased
Fisher--Yates shuffle).

**6. Columns.**  ``bf_<f>``: ``fixed_size_binary(output_length / 8)``, null
when the value is missing (or the salt, with ``on_missing: "null"``).
``clk``: ``fixed_size_binary(clk_output_length / 8)``, never null.
``eh_<f>``: the first 8 bytes of ``PRF(K("exact", f), UTF-8(v))``
as a big-endian signed int64, null when ``v`` is missing.  ``bk_<b>``: the
same under ``K("blocking", b)`` over the UTF-8 of the key's field values in
the schema's order joined by U+001F, null when any of them is missing.
``ok_<f>`` (fields with ``validity_flag``, normalised as ``id_number``):
``bool``, true when ``v`` is an 18-character resident ID number whose
region digits, birth-date digits and check character are valid
(:func:`linkage.idnumber.parse_ids`), false otherwise, null when ``v`` is
missing.  ``vk_<f>_<j>``, ``j = 0 .. 34`` (fields with ``typo_keys``: ID
numbers): the keyed exact hashes (the ``eh_<f>`` of the same value) of the ID
numbers one typo away from ``v`` that pass the MOD 11-2 check -- all null
unless ``v`` is 17 digits and a check character that does *not* pass it.
For ``j = 0 .. 16`` (position ``i = j + 1``, 1-based): ``v`` with its
``i``-th digit replaced by the one digit that makes it pass (null when that
would have to be 10); ``j = 17``: ``v`` with the right check character;
for ``j = 18 .. 34`` (``i = j - 17``): ``v`` with characters ``i`` and
``i + 1`` swapped, null unless they differ, the result is still 17 digits
and a check character, and it passes.  So a mistyped ID number carries the
hashes of its one-typo corrections and the hub links it to its true one
(``eh`` of one side among the ``vk`` of the other), while a number that
passes the check -- nearly every one -- sends nothing: two numbers that both
pass never meet here (a single substitution or adjacent transposition
always changes the check character, 11 being prime), and encoding costs
hashes only for the few that fail.  Columns in this order: ``bf``, ``eh``, ``bk``, ``ok``, ``vk``,
``clk``, ``sb``.

**7. Salt banks.**  For a field whose salt has ``on_missing: "bank"`` with
``bank: {from, to}``, column ``sb_<f>``: ``binary`` (variable-size, so
null rows cost nothing) of ``k * output_length / 8`` bytes with ``k = to -
from + 1``, null unless the row has a
value for ``f`` and none for the salt.  It holds ``k`` slots: the field's
filter (steps 1-5, BLIP included) with ``s`` set to each year ``from .. to``
written as four digits, concatenated in a uniformly random order drawn
afresh for every row and run.  The hub compares a pair's other filter with
every slot and keeps the best (the slot of the true year agrees with a true
match); the random order keeps it from learning which year that was.  The
order is the one part of a bank that is not reproducible, by design.

Implementation: per field the values are factorised, the distinct values
tokenised with array operations, each distinct (salt, token) message hashed
once per call -- all of them together, one AES pass per CMAC block
(:mod:`linkage._bits.prf`) -- and bits set row by row in packed output by one
numba loop, in chunks of rows so memory stays bounded.  A caller that encodes
one export in many calls (agency-kit, chunk by chunk) passes one
:class:`EncodeCache` to all of them: the filters' keyed permutations are then
derived once per run, not once per call, and the bit positions of parts with a
small token alphabet (digits, dates, pinyin) are hashed once per run
(:class:`linkage._bits.memo.PositionStore`, at most 16 MiB a part) -- same
output either way.  The cache holds values derived from the secret: keep it for
one run and drop it.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from . import idnumber
from ._bits import hardening, hashing, kernels, tokens
from ._bits.hardening import blip_flip_probability
from ._bits.memo import PositionStore
from ._bits.memo import RunMemo as EncodeCache
from ._bits.prf import pack_bytes, utf8_segments
from .errors import SchemaMismatchError
from .idnumber import CHECK_CHARS, WEIGHTS
from .keys import LinkageSecret
from .schema import FieldSpec, Hardening, LinkageSchema

__all__ = ["CHUNK_ROWS", "EncodeCache", "blip_flip_probability", "blip_sensitivity", "encode_records",
           "encoded_arrow_schema", "typo_corrections"]

CHUNK_ROWS = 1 << 17  # rows encoded together; bounds the working memory
UNIT_SEP = "\x1f"


@dataclass(frozen=True)
class _Column:
    codes: np.ndarray  # int64 per row, -1 = missing
    uniques: list[str]


@dataclass(frozen=True)
class _Part:
    field: FieldSpec
    key: bytes = dataclasses.field(repr=False)  # derived from the secret: never in a repr, a log or a traceback
    bits_per_token: int | None
    bits_per_feature: int | None

    @property
    def k_max(self) -> int:
        return int(self.bits_per_token or self.bits_per_feature)


@dataclass(frozen=True)
class _Target:
    length: int
    hardening: Hardening
    parts: tuple[_Part, ...]
    perm_key: bytes | None = dataclasses.field(repr=False)
    balance_key: bytes | None = dataclasses.field(repr=False)
    nullable: bool  # field filter (null rows) vs CLK (never null)

    @property
    def output_length(self) -> int:
        return self.hardening.output_length(self.length)


def blip_sensitivity(schema: LinkageSchema, field: str | None = None) -> int:
    """Most bits one token can change in a field filter (or, for ``None``, the CLK)."""
    if field is None:
        k = max(int(f.clk.bits_per_token or f.clk.bits_per_feature)
                for f in schema.fields if f.clk is not None)
        hard = schema.clk_hardening
    else:
        spec = schema.field(field)
        if spec.filter is None:
            raise ValueError("field has no filter")
        k = int(spec.filter.bits_per_token or spec.filter.bits_per_feature)
        hard = spec.filter.hardening
    return k * (2 if hard.balance else 1)


def encoded_arrow_schema(schema: LinkageSchema) -> pa.Schema:
    """The Arrow schema of :func:`encode_records`' result."""
    cols = [pa.field(f"bf_{f.name}", pa.binary(f.filter.output_length // 8))
            for f in schema.filter_fields]
    cols += [pa.field(f"eh_{f.name}", pa.int64()) for f in schema.exact_fields]
    cols += [pa.field(f"bk_{b.name}", pa.int64()) for b in schema.blocking_keys]
    cols += [pa.field(f"ok_{f.name}", pa.bool_()) for f in schema.flag_fields]
    cols += [pa.field(c, pa.int64()) for f in schema.typo_fields for c in f.typo_key_columns]
    cols.append(pa.field("clk", pa.binary(schema.clk_output_length // 8), nullable=False))
    cols += [pa.field(f"sb_{f.name}", pa.binary()) for f in schema.bank_fields]  # variable size: nulls are free
    return pa.schema(cols)


def encode_records(normalised: pd.DataFrame, schema: LinkageSchema, secret: LinkageSecret,
                   rng: np.random.Generator | None = None, *, cache: EncodeCache | None = None) -> pa.Table:
    """Encode a normalised frame (one object column per schema field) under ``secret``.

    ``rng`` drives BLIP's random flips only (fresh randomness from ``secrets``
    when omitted); pass a seeded generator in tests.  ``cache``: one
    :class:`EncodeCache` shared by the calls of one run saves deriving the
    permutations again (same result either way).
    """
    if not isinstance(normalised, pd.DataFrame):
        raise TypeError("normalised must be a pandas DataFrame")
    if not isinstance(secret, LinkageSecret):
        raise TypeError("secret must be a LinkageSecret")
    if cache is not None and not isinstance(cache, EncodeCache):
        raise TypeError("cache must be an EncodeCache")
    _check_columns(normalised, schema)
    targets = _targets(schema, secret)
    if rng is None and any(t.hardening.blip_epsilon is not None for t in targets.values()):
        rng = np.random.default_rng(secrets.randbits(128))
    data = _Data(normalised, cache)
    n = len(normalised)
    arrays: list[pa.Array] = []
    for f in schema.filter_fields:
        packed, valid = _encode_target(targets[f.name], data, n, rng)
        arrays.append(_fixed_binary(packed, valid))
    for f in schema.exact_fields:
        arrays.append(_hash_codes(secret.derive("exact", schema.id, f.name), data, f.name))
    for b in schema.blocking_keys:
        arrays.append(_blocking(secret.derive("blocking", schema.id, b.name), data, b.fields, n))
    for f in schema.flag_fields:
        arrays.append(_validity(data, f))
    for f in schema.typo_fields:
        arrays += _typo_keys(secret.derive("exact", schema.id, f.name), data, f)
    packed, _ = _encode_target(targets["#clk"], data, n, rng)
    arrays.append(_fixed_binary(packed, None))
    for f in schema.bank_fields:
        arrays.append(_salt_bank(targets[f.name], data, n, rng, cache))
    return pa.Table.from_arrays(arrays, schema=encoded_arrow_schema(schema))


def _salt_bank(target: _Target, data: _Data, n: int, rng: np.random.Generator | None,
               cache: EncodeCache | None) -> pa.Array:
    """``sb_<f>`` (section 7 of the spec): for each row with a value but no salt, the field's
    filter under every bank salt, slots in a fresh random order; null elsewhere."""
    salt = target.hardening.salt
    field = target.parts[0].field.name
    k = len(salt.bank)
    width = target.output_length // 8
    rows = np.flatnonzero((data.column(field).codes >= 0) & (data.column(salt.field).codes < 0))
    size = k * width
    offsets = np.zeros(n + 1, dtype=np.int32)
    offsets[rows + 1] = size
    np.cumsum(offsets, out=offsets)
    body = np.zeros((rows.size, size), dtype=np.uint8)
    if rows.size:
        values = data.df[field].to_numpy(dtype=object)[rows]
        frame = pd.DataFrame({field: np.repeat(values, k), salt.field: np.tile(np.array(salt.bank, dtype=object),
                                                                               rows.size)}, dtype=object)
        packed, _ = _encode_target(target, _Data(frame, cache), len(frame), rng)
        slots = packed.reshape(rows.size, k, width)
        gen = rng if rng is not None else np.random.default_rng(secrets.randbits(128))
        order = np.argsort(gen.random((rows.size, k)), axis=1)  # an independent shuffle per row
        body[:] = np.take_along_axis(slots, order[:, :, None], axis=1).reshape(rows.size, size)
    valid = np.zeros(n, dtype=bool)
    valid[rows] = True
    return pa.Array.from_buffers(pa.binary(), n, [pa.py_buffer(np.packbits(valid, bitorder="little")),
                                                   pa.py_buffer(offsets), pa.py_buffer(body)],
                                 null_count=n - rows.size)


# --------------------------------------------------------------------------- set-up

def _used_fields(schema: LinkageSchema) -> list[str]:
    names: list[str] = []

    def add(name: str) -> None:
        if name not in names:
            names.append(name)

    for f in schema.fields:
        if f.filter is not None:
            add(f.name)
            if f.filter.hardening.salt is not None:
                add(f.filter.hardening.salt.field)
        if f.clk is not None or f.exact_hash:
            add(f.name)
    if schema.clk_hardening.salt is not None:
        add(schema.clk_hardening.salt.field)
    for b in schema.blocking_keys:
        for name in b.fields:
            add(name)
    return names


def _check_columns(df: pd.DataFrame, schema: LinkageSchema) -> None:
    missing = [name for name in _used_fields(schema) if name not in df.columns]
    if missing:
        raise SchemaMismatchError(
            f"the normalised frame has no column for field{'s' if len(missing) > 1 else ''} "
            + ", ".join(repr(m) for m in missing))


def _targets(schema: LinkageSchema, secret: LinkageSecret) -> dict[str, _Target]:
    sid = schema.id
    out: dict[str, _Target] = {}
    for f in schema.filter_fields:
        h = f.filter.hardening
        out[f.name] = _Target(
            length=f.filter.length, hardening=h,
            parts=(_Part(f, secret.derive("bloom", sid, f.name), f.filter.bits_per_token,
                         f.filter.bits_per_feature),),
            perm_key=secret.derive("permute", sid, f.name) if h.permute else None,
            balance_key=secret.derive("permute", sid, f.name + "#balance") if h.balance else None,
            nullable=True)
    h = schema.clk_hardening
    out["#clk"] = _Target(
        length=schema.clk_length, hardening=h,
        parts=tuple(_Part(f, secret.derive("clk", sid, f.name), f.clk.bits_per_token,
                          f.clk.bits_per_feature) for f in schema.fields if f.clk is not None),
        perm_key=secret.derive("permute", sid, "#clk") if h.permute else None,
        balance_key=secret.derive("permute", sid, "#clk#balance") if h.balance else None,
        nullable=False)
    return out


def _position_maps(target: _Target) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Where bit ``x < L`` of the raw filter ends up before folding: (set map, clear
    map or None, packed balanced empty filter or None)."""
    L = target.length
    pmap = np.arange(L, dtype=np.int32)
    if target.perm_key is not None:
        pmap = hashing.inverse_permutation(hashing.keyed_permutation(target.perm_key, L))
    clear = pattern = None
    if target.balance_key is not None:
        inv2 = hashing.inverse_permutation(hashing.keyed_permutation(target.balance_key, 2 * L))
        clear = inv2[L + pmap]
        pmap = inv2[pmap]
        pattern = hardening.balance_pattern(inv2, L)
    return pmap, clear, pattern


# --------------------------------------------------------------------------- encoding

def _column(df: pd.DataFrame, name: str) -> _Column:
    codes, uniques = pd.factorize(df[name].to_numpy(dtype=object), use_na_sentinel=True)
    codes = codes.astype(np.int64, copy=False)
    values = list(uniques)
    if values and pd.api.types.infer_dtype(uniques, skipna=False) != "string":
        raise TypeError(f"column {name!r} of the normalised frame holds a value that is not a str")
    if "" in values:
        codes = codes.copy()
        codes[codes == values.index("")] = -1
    return _Column(codes, values)


def _token_table(field: FieldSpec, values: list[str]) -> tokens.TokenTable:
    tok = field.tokeniser
    if tok.kind == "exact":
        return tokens.exact_table(values)
    return tokens.ngram_table(values, tok.n, padded=tok.padded,
                              positional=tok.kind == "digit_ngrams", short_whole=True)


class _Data:
    """Factorised columns and token tables, each computed once per call."""

    def __init__(self, df: pd.DataFrame, cache: EncodeCache | None = None) -> None:
        self.df = df
        self.cache = cache
        self._cols: dict[str, _Column] = {}
        self._tables: dict[str, tokens.TokenTable] = {}
        self._segments: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def column(self, name: str) -> _Column:
        if name not in self._cols:
            self._cols[name] = _column(self.df, name)
        return self._cols[name]

    def segments(self, name: str, sep: str = "") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The column's distinct values (each followed by ``sep``) as UTF-8 in one buffer,
        with (start, length) of each."""
        key = (name, sep)
        if key not in self._segments:
            self._segments[key] = utf8_segments(self.column(name).uniques, sep)
        return self._segments[key]

    def table(self, field: FieldSpec) -> tokens.TokenTable:
        if field.name not in self._tables:
            self._tables[field.name] = _token_table(field, self.column(field.name).uniques)
        return self._tables[field.name]


def _encode_target(target: _Target, data: _Data, n: int,
                   rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
    """Packed filters ``(n, output_length / 8)`` and the per-row validity."""
    set_map, clear_map, pattern = (_position_maps(target) if data.cache is None else
                                   data.cache.derived(("maps", target.length, target.perm_key, target.balance_key),
                                                      lambda: _position_maps(target)))
    pre_bits = 2 * target.length if pattern is not None else target.length
    salt = target.hardening.salt
    salt_col = data.column(salt.field) if salt is not None else None
    salt_gate = salt_col.codes >= 0 if salt_col is not None and salt.on_missing in ("null", "bank") else None
    if target.nullable:
        valid = data.column(target.parts[0].field.name).codes >= 0
        if salt_gate is not None:
            valid &= salt_gate
    else:
        valid = np.ones(n, dtype=bool)
    contributes = valid if target.nullable or salt_gate is None else salt_gate

    # parts one at a time over all rows (each part's entries -- up to ~500 bytes a row for a
    # salted name -- are dropped before the next is prepared), into one pre-fold buffer
    pre = np.zeros((n, pre_bits // 8), dtype=np.uint8)
    if pattern is not None:
        pre[valid] = pattern
    for part in target.parts:
        got = _prepare_part(part, data, salt_col, contributes, target.length, set_map, clear_map)
        if got is None:
            continue
        row_unit, entries = got
        if row_unit is None:
            entries.set_rows(pre, slice(0, n))
        else:
            entries.set_rows(pre, row_unit)
        del got, row_unit, entries

    blip_p = None
    if target.hardening.blip_epsilon is not None:
        s = max(p.k_max for p in target.parts) * (2 if pattern is not None else 1)
        blip_p = blip_flip_probability(target.hardening.blip_epsilon, s)
    if blip_p is None and target.hardening.xor_fold == 0 and pre_bits == target.output_length:
        return pre, valid
    out = np.zeros((n, target.output_length // 8), dtype=np.uint8)
    for a in range(0, n, CHUNK_ROWS):
        b = min(n, a + CHUNK_ROWS)
        tmp, nbits = hardening.fold(pre[a:b], pre_bits, target.hardening.xor_fold)
        if blip_p is not None:
            v = valid[a:b]
            hardening.blip(tmp, nbits, blip_p, rng, rows=None if v.all() else v)
        out[a:b] = tmp
    return out, valid


def _prepare_part(part: _Part, data: _Data, salt_col: _Column | None,
                  contributes: np.ndarray, L: int, set_map: np.ndarray, clear_map: np.ndarray | None):
    """``(row_unit, Entries)`` -- each row's unit (its distinct value) and every
    unit's token messages and bit positions -- or, for a salted target,
    ``(None, SaltedEntries)``; None when no row contributes."""
    col = data.column(part.field.name)
    present = (col.codes >= 0) & contributes
    if not present.any():
        return None
    table = data.table(part.field)
    ntok = len(table.strings)
    counts = table.counts
    if part.bits_per_token is not None:
        value_k = np.full(len(counts), part.bits_per_token, dtype=np.int64)
    else:
        value_k = -(-part.bits_per_feature // np.maximum(counts, 1))
    row_value = np.where(present, col.codes, -1)
    if salt_col is not None:
        slots = len(salt_col.uniques) + 1  # slot 0: unsalted
        salted = kernels.SaltedEntries(row_value, salt_col.codes + 1, table.ptr, table.tok,
                                       value_k, slots, ntok)
        pos_ptr, pos = _positions(part, table.strings, salted.pairs_tok, salted.kmax, L,
                                  salt_col.uniques, salted.pairs_salt, data.cache)
        salted.set_positions(pos_ptr, set_map[pos], None if clear_map is None else clear_map[pos])
        salted.plan(len(set_map) // 8, uniform_k=part.bits_per_token is not None)
        return None, salted
    if part.bits_per_token is not None:
        kmax = np.full(ntok, part.bits_per_token, dtype=np.int64)
    else:
        kmax = np.zeros(ntok, dtype=np.int64)
        np.maximum.at(kmax, table.tok, np.repeat(value_k, counts))
    pos_ptr, pos = _positions(part, table.strings, np.arange(ntok, dtype=np.int64), kmax, L, cache=data.cache)
    entries = kernels.Entries(table.ptr, table.tok, value_k, None, pos_ptr, set_map[pos],
                              None if clear_map is None else clear_map[pos])
    entries.plan(row_value, len(set_map) // 8, kmax if part.bits_per_token is not None else None)
    return row_value, entries


def _positions(part: _Part, strings: list[str], msg_tok: np.ndarray, kmax: np.ndarray, L: int,
               salts: list[str] | None = None, msg_salt: np.ndarray | None = None,
               cache: EncodeCache | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`hashing.token_positions` of messages ``(salt, token)`` -- token
    ``strings[msg_tok[i]]``, salt slot ``msg_salt[i]`` (0: unsalted, ``s + 1``:
    ``salts[s]``), ``kmax[i]`` positions each -- through the run's position store
    for the part when there is a cache (:class:`linkage._bits.memo.PositionStore`)."""
    messages = _messages(strings, msg_tok, salts, msg_salt)
    if cache is not None:
        store = cache.derived(("positions", part.key, L), PositionStore)
        got = store.gather(strings, msg_tok, salts, msg_salt, kmax,
                           lambda idx: hashing.token_positions(part.key, messages.take(idx), kmax[idx], L))
        if got is not None:
            return got
    return hashing.token_positions(part.key, messages, kmax, L)


def _messages(strings: list[str], msg_tok: np.ndarray, salts: list[str] | None,
              msg_salt: np.ndarray | None) -> hashing.Messages:
    """Every message -- the token, or the salt, U+001F and the token, as UTF-8 -- as
    segments of two buffers (each distinct token and salt encoded once)."""
    tok_buf, tok_start, tok_len = utf8_segments(strings)
    if salts is None:
        return hashing.Messages(tok_buf, tok_start[msg_tok], tok_len[msg_tok])
    salt_buf, salt_start, salt_len = pack_bytes([b"", *((s + UNIT_SEP).encode("utf-8") for s in salts)])
    return hashing.Messages(salt_buf, salt_start[msg_salt], salt_len[msg_salt],
                            tok_buf, tok_start[msg_tok], tok_len[msg_tok])


def _validity(data: _Data, field: FieldSpec) -> pa.Array:
    """``ok_<f>``: whether each row's value passes its field's check (checked once per distinct value)."""
    col = data.column(field.name)
    valid = col.codes >= 0
    ok = np.zeros(len(col.uniques) + 1, dtype=bool)  # + 1: all-missing column
    if len(col.uniques):
        ok[:-1] = idnumber.ids_valid(np.asarray(col.uniques, dtype=object))
    return pa.array(ok[np.where(valid, col.codes, 0)], type=pa.bool_(), mask=~valid)


def _hash_codes(key: bytes, data: _Data, name: str) -> pa.Array:
    """Keyed exact hash of every row's value (hashed once per distinct value)."""
    codes = data.column(name).codes
    valid = codes >= 0
    used = np.zeros(len(data.column(name).uniques) + 1, dtype=bool)  # + 1: all-missing column
    used[codes[valid]] = True
    idx = np.flatnonzero(used[:-1])
    vals = np.zeros(len(used), dtype=np.int64)
    if len(idx):
        buf, starts, lens = data.segments(name)
        vals[idx] = hashing.keyed_int64(key, hashing.Messages(buf, starts[idx], lens[idx]))
    return pa.array(vals[np.where(valid, codes, 0)], type=pa.int64(), mask=~valid)


def typo_corrections(value: str) -> list[str | None]:
    """The 35 one-typo corrections of an ID number that fails the MOD 11-2 check (section 6): each
    an ID number that passes it, or None; 35 Nones for a value that passes or is not 17 digits and
    a check character."""
    none: list[str | None] = [None] * 35
    if len(value) != 18 or not value[:17].isdigit() or not value[:17].isascii() or value[17] not in CHECK_CHARS:
        return none
    digits = [int(c) for c in value[:17]]
    total = sum(d * w for d, w in zip(digits, WEIGHTS, strict=True))
    want = CHECK_CHARS.index(value[17])  # the remainder the check character stands for
    if total % 11 == want:
        return none
    out = list(none)
    for i, (d, w) in enumerate(zip(digits, WEIGHTS, strict=True)):
        new = (want - total + w * d) * pow(w, -1, 11) % 11
        if new < 10:
            out[i] = value[:i] + str(new) + value[i + 1:]
    out[17] = value[:17] + CHECK_CHARS[total % 11]
    for i in range(17):
        a, b = value[i], value[i + 1]
        swapped = value[:i] + b + a + value[i + 2:]
        if a != b and swapped[:17].isdigit() and swapped[17] in CHECK_CHARS \
                and CHECK_CHARS[sum(int(c) * w for c, w in zip(swapped[:17], WEIGHTS, strict=True)) % 11] \
                == swapped[17]:
            out[18 + i] = swapped
    return out


def _typo_keys(key: bytes, data: _Data, field: FieldSpec) -> list[pa.Array]:
    """``vk_<f>_<j>``: the exact hashes (``key``: the field's exact-hash key) of every row's one-typo
    corrections, computed for the distinct values that fail the check only."""
    cols = field.typo_key_columns
    col = data.column(field.name)
    n = len(col.codes)
    valid = col.codes >= 0
    used = np.zeros(len(col.uniques) + 1, dtype=bool)  # + 1: all-missing column
    used[col.codes[valid]] = True
    idx = np.flatnonzero(used[:-1])
    failing = idx[idnumber.check_fails([col.uniques[i] for i in idx.tolist()])] if len(idx) else idx
    fixes = [typo_corrections(col.uniques[i]) for i in failing.tolist()]
    mask = np.array([[m is not None for m in row] for row in fixes], dtype=bool).reshape(len(fixes), len(cols))
    nulls = pa.nulls(n, type=pa.int64())  # arrays are immutable: one serves every empty column
    if not mask.any():  # no value in the call fails the check: the usual case
        return [nulls] * len(cols)
    # tables over the failing values only (a few in a chunk), not over every distinct value
    vals = np.zeros(mask.shape, dtype=np.int64)
    vals[mask] = hashing.keyed_int64(key, [m.encode() for row in fixes for m in row if m is not None])
    slot = np.full(len(used), -1, dtype=np.int64)  # distinct value -> its row in vals, or -1
    slot[failing] = np.arange(len(failing))
    row_slot = slot[np.where(valid, col.codes, len(used) - 1)]
    hit = np.flatnonzero(row_slot >= 0)
    out = []
    for j in range(len(cols)):
        has = np.zeros(n, dtype=bool)
        has[hit] = mask[row_slot[hit], j]
        present = int(has.sum())
        if present == 0:
            out.append(nulls)
            continue
        data_j = np.zeros(n, dtype=np.int64)
        data_j[has] = vals[row_slot[has], j]
        bitmap = pa.py_buffer(np.packbits(has, bitorder="little"))
        out.append(pa.Array.from_buffers(pa.int64(), n, [bitmap, pa.py_buffer(data_j)], null_count=n - present))
    return out


def _blocking(key: bytes, data: _Data, names: tuple[str, ...], n: int) -> pa.Array:
    """Keyed hash of the U+001F-joined components (once per distinct combination)."""
    cols = [data.column(name) for name in names]
    valid = np.ones(n, dtype=bool)
    for c in cols:
        valid &= c.codes >= 0
    combo = np.zeros(int(valid.sum()), dtype=np.int64)
    for c in cols:
        combo, _ = pd.factorize(combo * (len(c.uniques) + 1) + c.codes[valid])
        combo = combo.astype(np.int64, copy=False)
    ncombo = int(combo.max()) + 1 if len(combo) else 0
    out = np.zeros(n, dtype=np.int64)
    if ncombo:
        rep = np.empty(ncombo, dtype=np.int64)
        rep[combo] = np.flatnonzero(valid)
        if len(cols) == 2:  # the usual key: the first value and U+001F, then the second, as segments
            a_buf, a_start, a_len = data.segments(names[0], UNIT_SEP)
            b_buf, b_start, b_len = data.segments(names[1])
            a, b = cols[0].codes[rep], cols[1].codes[rep]
            messages = hashing.Messages(a_buf, a_start[a], a_len[a], b_buf, b_start[b], b_len[b])
        else:
            parts = [[c.uniques[i] for i in c.codes[rep].tolist()] for c in cols]
            messages = hashing.Messages(*utf8_segments(list(map(UNIT_SEP.join, zip(*parts, strict=True)))))
        out[valid] = hashing.keyed_int64(key, messages)[combo]
    return pa.array(out, type=pa.int64(), mask=~valid)


def _fixed_binary(packed: np.ndarray, valid: np.ndarray | None) -> pa.Array:
    n, width = packed.shape
    data = pa.py_buffer(np.ascontiguousarray(packed))
    if valid is None or valid.all():
        return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, data])
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [bitmap, data],
                                                null_count=int(n - valid.sum()))
