"""What the attacker knows: the schema, the public encoder, public frequency tables.

The threat model of every attack in :mod:`hub.privacy.attacks`: the attacker
is the hub (honest but curious).  It holds the encodings, knows the linkage
schema (it is in every manifest) and the open-source encoder, and has a
*public frequency table* -- plaintext values drawn from the same population
as the encoded records, but not those records.  It does not hold the linkage
secret, so it cannot build a filter for a guessed value under the agencies'
keys; it can build filters under a key of its own (:func:`emulate`), which
have the same statistics (fill, Hamming weights, similarities) as the real
ones -- the standard trick of the published attacks.

Public surface:

* :class:`Target` and :func:`targets_of` -- one attackable column of the
  encoded table (``bf_<f>``, ``clk``, ``eh_<f>``, ``bk_<k>``, the typo keys
  ``vk_<f>_<j>``) and what it
  encodes: which plaintext fields, salt, length, hardening.
* :func:`units_of` -- the *unit* each row encodes (the salted value, the
  hashed key tuple ...) as one string, and the value re-identification is
  scored on (the name for a CLK).
* :func:`unit_items` -- each unit's items: the (field-tagged, salted) tokens
  that set its bits, as the schema's tokenisers cut them.
* :func:`emulate` -- the column computed under an attacker's own key.
* :func:`synthetic_public` -- the shipped public frequency table: a sample
  from the synthetic population's frequency tables (``synthetic.names``),
  drawn with a seed the county generator never uses, normalised with the
  schema's normalisers.  The attacker knowing the true population
  distribution is the standard, pessimistic assumption.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from linkage.encode import blip_flip_probability, blip_sensitivity, encode_records, typo_corrections
from linkage.keys import LinkageSecret
from linkage.schema import LinkageSchema, Tokeniser

__all__ = ["PUBLIC_SEED", "SEP", "Target", "emulate", "synthetic_public", "targets_of", "unit_items",
           "units_of"]

SEP = "\x1f"  # joins the components of a unit (never in a normalised value)
TAG = "\x1e"  # joins a field name and a token in a CLK item
#: Seed of the shipped public table (the county generator's seeds are small integers).
PUBLIC_SEED = 0x5EED_0F_50
PUBLIC_AS_OF = dt.date(2024, 6, 30)


@dataclass(frozen=True)
class Target:
    """One attackable column and what it encodes."""

    column: str  # bf_<f> | clk | eh_<f> | bk_<k> | vk_<f>_<j>
    kind: str  # "filter" | "clk" | "hash"
    fields: tuple[str, ...]  # plaintext fields the column is made of
    score_field: str | None  # the field whose value counts as re-identified (None: the whole unit)
    salt: str | None = None
    on_missing: str = "null"
    length: int = 0  # output bits (filters)
    balance: bool = False
    xor_fold: int = 0
    blip_p: float | None = None
    tokenisers: tuple[Tokeniser, ...] = ()
    bits: tuple[int, ...] = ()  # k (bits_per_token) or B (bits_per_feature), per field
    per_feature: tuple[bool, ...] = ()
    typo: int | None = None  # a typo key: its index j (linkage.encode.typo_corrections)

    @property
    def noise(self) -> float:
        """BLIP flip probability (0 when none)."""
        return float(self.blip_p or 0.0)


def targets_of(schema: LinkageSchema) -> list[Target]:
    """Every filter, the CLK, every keyed exact hash and blocking key of ``schema``."""
    out: list[Target] = []
    for f in schema.filter_fields:
        h = f.filter.hardening
        out.append(Target(
            column=f"bf_{f.name}", kind="filter", fields=(f.name,), score_field=f.name,
            salt=h.salt.field if h.salt else None, on_missing=h.salt.on_missing if h.salt else "null",
            length=f.filter.output_length, balance=h.balance, xor_fold=h.xor_fold,
            blip_p=(blip_flip_probability(h.blip_epsilon, blip_sensitivity(schema, f.name))
                    if h.blip_epsilon is not None else None),
            tokenisers=(f.tokeniser,), bits=(int(f.filter.bits_per_token or f.filter.bits_per_feature),),
            per_feature=(f.filter.bits_per_token is None,)))
    h = schema.clk_hardening
    clk_fields = [f for f in schema.fields if f.clk is not None]
    names = [f.name for f in clk_fields]
    out.append(Target(
        column="clk", kind="clk", fields=tuple(names),
        score_field="name" if "name" in names else names[0],
        salt=h.salt.field if h.salt else None, on_missing=h.salt.on_missing if h.salt else "null",
        length=schema.clk_output_length, balance=h.balance, xor_fold=h.xor_fold,
        blip_p=(blip_flip_probability(h.blip_epsilon, blip_sensitivity(schema, None))
                if h.blip_epsilon is not None else None),
        tokenisers=tuple(f.tokeniser for f in clk_fields),
        bits=tuple(int(f.clk.bits_per_token or f.clk.bits_per_feature) for f in clk_fields),
        per_feature=tuple(f.clk.bits_per_token is None for f in clk_fields)))
    for f in schema.exact_fields:
        out.append(Target(column=f"eh_{f.name}", kind="hash", fields=(f.name,), score_field=None))
    for b in schema.blocking_keys:
        out.append(Target(column=f"bk_{b.name}", kind="hash", fields=tuple(b.fields), score_field=None))
    for f in schema.typo_fields:
        out += [Target(column=c, kind="hash", fields=(f.name,), score_field=None, typo=j)
                for j, c in enumerate(f.typo_key_columns)]
    return out


def _missing(a: np.ndarray) -> np.ndarray:
    return np.array([v is None or (isinstance(v, float) and v != v) or v == "" for v in a], dtype=bool)


def units_of(target: Target, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``(units, scored)`` for every row of a normalised frame: the unit the row's
    column encodes (object array, None where the column is null) and the value
    re-identification is scored on (None likewise).

    A filter's unit is its value, prefixed by the salt (``salt SEP value``) when
    salted; a CLK's unit is every contributing field's value (missing ones
    empty); a hash's unit is its fields' values joined by SEP.
    """
    n = len(frame)
    cols = [frame[f].to_numpy(dtype=object) if f in frame.columns else np.full(n, None, dtype=object)
            for f in target.fields]
    miss = [_missing(c) for c in cols]
    if target.kind == "hash" and target.typo is not None:  # the correction the key hashes (encode, section 6)
        units = np.array([None if m else typo_corrections(str(v))[target.typo]
                          for v, m in zip(cols[0], miss[0], strict=True)], dtype=object)
        return units, units.copy()
    if target.kind == "hash":
        null = np.logical_or.reduce(miss)
        units = np.array([SEP.join(parts) for parts in zip(*[c.astype(str) for c in cols], strict=True)],
                         dtype=object)
        units[null] = None
        return units, units.copy()
    salt_null = np.zeros(n, dtype=bool)
    prefix = None
    if target.salt is not None:
        s = frame[target.salt].to_numpy(dtype=object) if target.salt in frame.columns else np.full(n, None)
        salt_null = _missing(s)
        prefix = np.where(salt_null, "", s.astype(str))
    if target.kind == "filter":
        null = miss[0] | (salt_null if target.on_missing == "null" else False)
        vals = np.where(miss[0], "", cols[0].astype(str))
        units = vals if prefix is None else np.char.add(np.char.add(prefix.astype(str), SEP), vals.astype(str))
        units = units.astype(object)
        units[null] = None
        scored = cols[0].copy()
        scored[null] = None
        return units, scored
    # clk: never null, but a row with every field missing encodes nothing
    parts = [np.where(m, "", c.astype(str)) for c, m in zip(cols, miss, strict=True)]
    if prefix is not None:
        parts = [prefix, *parts]
    units = np.array([SEP.join(p) for p in zip(*parts, strict=True)], dtype=object)
    units[np.logical_and.reduce(miss)] = None
    i = target.fields.index(target.score_field)
    scored = cols[i].copy()
    scored[miss[i]] = None
    return units, scored


def tokens_of(value: str, tok: Tokeniser) -> list[str]:
    """The tokens of one normalised value (duplicates kept), per the native spec."""
    if tok.kind == "exact":
        return [value]
    s = value
    if tok.padded and tok.n > 1:
        s = " " * (tok.n - 1) + s + " " * (tok.n - 1)
    if len(s) < tok.n:
        grams = [s]
    else:
        grams = [s[i:i + tok.n] for i in range(len(s) - tok.n + 1)]
    if tok.kind == "digit_ngrams":
        return [f"{i + 1} {g}" for i, g in enumerate(grams)]
    return grams


def unit_items(target: Target, units: list[str] | np.ndarray) -> tuple[list[frozenset[str]], np.ndarray]:
    """``(items, n_tokens)`` of distinct units: every unit's set of items (tokens,
    salted as ``salt SEP token``; field-tagged in a CLK) and its token count with
    repeats (what ``bits_per_feature`` divides by; summed over fields for a CLK)."""
    if target.kind == "hash":
        raise ValueError("a keyed hash has no items")
    out: list[frozenset[str]] = []
    counts = np.zeros(len(units), dtype=np.int64)
    cache: list[dict[str, list[str]]] = [{} for _ in target.fields]
    for u_i, u in enumerate(units):
        parts = u.split(SEP)
        salt = ""
        if target.salt is not None:
            salt, parts = parts[0], parts[1:]
        items: set[str] = set()
        for j, (v, tok) in enumerate(zip(parts, target.tokenisers, strict=True)):
            if not v:
                continue
            toks = cache[j].get(v)
            if toks is None:
                toks = cache[j][v] = tokens_of(v, tok)
            counts[u_i] += len(toks)
            tag = f"{target.fields[j]}{TAG}" if target.kind == "clk" else ""
            pre = f"{salt}{SEP}" if target.salt is not None and salt else ""
            items.update(f"{pre}{tag}{t}" for t in toks)
        out.append(frozenset(items))
    return out, counts


def emulate(target: Target, schema: LinkageSchema, frame: pd.DataFrame, secret: LinkageSecret | None = None,
            rng: np.random.Generator | None = None) -> np.ndarray:
    """``target``'s column for the rows of a normalised ``frame``, encoded under the
    attacker's own key (unless given: drawn from ``rng`` when one is passed, so that a seeded
    attack is reproducible, else a fresh one): packed uint8 rows, a row of zeros where the column
    is null."""
    if secret is None:
        secret = LinkageSecret(rng.bytes(32)) if rng is not None else LinkageSecret.generate()
    full = frame.copy()
    for f in schema.field_names:
        if f not in full.columns:
            full[f] = None
    full = full[list(schema.field_names)].astype(object)
    full = full.where(full.notna(), None)
    table = encode_records(full.reset_index(drop=True), schema, secret, rng=rng)
    from .matrix import packed_column

    packed, _ = packed_column(table.column(target.column))
    return packed


@lru_cache(maxsize=4)
def _public_population(people: int, seed: int) -> pd.DataFrame:
    from synthetic.population import generate_population

    pop, _ = generate_population(np.random.default_rng(seed), people, PUBLIC_AS_OF)
    raw = pop[["name", "id_number", "sex", "birth_date", "phone", "address"]].copy()
    raw["phone"] = raw["phone"].replace("", None)
    return raw


def synthetic_public(schema: LinkageSchema, people: int = 200_000, seed: int = PUBLIC_SEED) -> pd.DataFrame:
    """The public frequency table for the synthetic population: ``people`` people
    drawn from the same frequency tables as the synthetic county (another seed),
    normalised with ``schema`` (only the fields the population has: name, ID
    number, sex, birth date, phone, address and what derives from them)."""
    from linkage.normalise import normalise_records

    raw = _public_population(int(people), int(seed))
    cols = [c for c in raw.columns if c in schema.field_names]
    normalised, _ = normalise_records(raw[cols], schema)
    return normalised
