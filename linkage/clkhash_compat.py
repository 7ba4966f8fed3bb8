"""clkhash linkage-schema v3: CLKs bit-identical to ``clkhash.clk.generate_clks`` (0.18.x).

``load_clkhash_schema(doc_or_path)`` reads a clkhash v3 linkage schema and
checks it (every problem with its JSON path, raised together);
``encode_clks(rows, schema, secret)`` returns one CLK (``bytes``) per row, the
bytes clkhash's ``serialize_bitarray`` would base64-encode;
``encode_clks_packed`` returns them as one ``(rows, ceil(l / 8))`` uint8 array.
Shown bit for bit by the known-answer vectors in ``tests/vectors/clkhash/``,
made with clkhash 0.18.3 (``tools/make_clkhash_vectors.py``).

What clkhash 0.18 does, and so what this module does:

- **Keys**: HKDF (``clkConfig.kdf``: hash SHA256/SHA512, base64 ``salt`` and
  ``info``, ``keySize`` default 64) over the secret (a ``str`` is UTF-8
  encoded) derives ``2 * len(features) * keySize`` bytes, cut into
  ``keySize``-byte keys; feature ``i`` (ignored features count) gets keys
  ``2i`` and ``2i + 1``.
- **Values**: a value equal to ``missingValue.sentinel`` is replaced by
  ``replaceWith`` (default: the sentinel itself) and neither validated nor
  formatted.  Otherwise it is validated (unless ``validate=False``) and
  formatted: ``integer`` → ``str(int(v, 10))``; ``date`` → ``strptime(v,
  format)`` written ``%Y%m%d``; ``string``/``enum`` unchanged.
- **Tokens**: ``ngram`` pads with ``n - 1`` spaces each side when ``n > 1``,
  positional tokens are ``"<i> <gram>"`` (1-based); ``exact`` is the whole
  value; ``numeric`` is Vatsalan & Christen's neighbourhood tokens; an empty
  value has no tokens.  Duplicates are kept.
- **Bits per token**: ``bitsPerToken: k``; ``bitsPerFeature: B`` gives the
  first ``B mod T`` tokens ``B // T + 1`` bits and the rest ``B // T``.
- **Positions** in a filter of ``L = l * 2**xor_folds`` bits, token bytes in the
  field's ``encoding``: ``blakeHash`` -- the little-endian uint16 words of
  ``blake2b(token, key=key[0], salt=str(i))`` for ``i = 0, 1, ...`` (32 per
  digest), each mod ``L`` (``L`` must be a power of two); ``doubleHash`` --
  ``(h1 + j * h2) mod L`` for ``j < k`` with ``h1 = HMAC-SHA1(key[0]) mod L``,
  ``h2 = HMAC-MD5(key[1]) mod L``, and with ``prevent_singularity`` ``h2`` is
  re-drawn from HMAC-MD5 over ``token || chr(i)`` (i = 0, 1, ...) while it is 0.
- **Folding**: clkhash 0.18's loader reads ``clkConfig.xor_folds`` (snake
  case) and ignores ``xorFolds``, the spelling its own v3 master schema
  documents.  This module does the same, so a ``xorFolds`` key has no effect
  here either (``ClkhashSchema.ignored_xor_folds`` tells you it was there).
- **Bit order**: MSB first within each byte; a length that is not a multiple of
  8 is zero-padded at the end (``bitarray.tobytes``).

The per-token hashes here are exactly clkhash's: keyed BLAKE2b, HMAC-SHA1 and
HMAC-MD5 from Python's ``hashlib``/``hmac``.  They are used *only* for
compatibility; the native scheme (:mod:`linkage.encode`) uses HMAC-SHA256.

Errors never show a value: an invalid entry is reported by row, column and the
rule it breaks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ._bits import hardening, kernels, tokens
from .documents import read_json
from .errors import ConfigError, InputError, Problem

__all__ = ["ClkhashFeature", "ClkhashSchema", "derive_clkhash_keys", "encode_clks",
           "encode_clks_packed", "load_clkhash_schema"]

_HKDF_HASHES = {"SHA256": hashes.SHA256, "SHA512": hashes.SHA512}
_DEFAULT_KEY_SIZE = 64


@dataclass(frozen=True)
class ClkhashFeature:
    """One feature of a clkhash v3 schema (``ignored`` features carry only their name)."""

    identifier: str
    ignored: bool = False
    type: str = "string"  # string | integer | date | enum
    encoding: str = "utf-8"
    pattern: str | None = None
    case: str = "mixed"
    min_length: int | None = None
    max_length: int | None = None
    minimum: int | None = None
    maximum: int | None = None
    date_format: str | None = None
    enum_values: frozenset[str] = frozenset()
    comparison: str = "ngram"  # ngram | exact | numeric
    n: int = 2
    positional: bool = False
    threshold_distance: float = 0.0
    resolution: int = 0
    fractional_precision: int = 0
    hash_type: str = "blakeHash"  # blakeHash | doubleHash
    prevent_singularity: bool = False
    bits_per_token: int | None = None
    bits_per_feature: int | None = None
    missing_sentinel: str | None = None
    missing_replace: str | None = None


@dataclass(frozen=True)
class ClkhashSchema:
    features: tuple[ClkhashFeature, ...]
    l: int  # noqa: E741 - clkhash's name for the CLK length
    xor_folds: int = 0
    kdf_hash: str = "SHA256"
    kdf_salt: bytes | None = None
    kdf_info: bytes | None = None
    kdf_key_size: int = _DEFAULT_KEY_SIZE
    ignored_xor_folds: bool = False
    document: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def hash_length(self) -> int:
        """Bits hashed into before folding: ``l * 2**xor_folds``."""
        return self.l * 2 ** self.xor_folds


# --------------------------------------------------------------------------- loading

def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _b64(v: Any, path: str, problems: list[Problem]) -> bytes | None:
    if v is None:
        return None
    if not isinstance(v, str):
        problems.append(Problem(path, "must be a base64 string"))
        return None
    try:
        return base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        problems.append(Problem(path, "is not valid base64"))
        return None


def _feature(doc: Any, here: str, problems: list[Problem]) -> ClkhashFeature | None:
    if not isinstance(doc, dict):
        problems.append(Problem(here, "must be an object"))
        return None
    ident = doc.get("identifier")
    if not isinstance(ident, str):
        problems.append(Problem(f"{here}.identifier", "must be a string"))
        ident = ""
    if doc.get("ignored") is True:
        extra = set(doc) - {"identifier", "ignored", "description"}
        if extra:
            problems.append(Problem(here, f"an ignored feature has unknown properties {sorted(extra)}"))
        return ClkhashFeature(ident, ignored=True)
    start = len(problems)
    kw: dict[str, Any] = {"identifier": ident}
    fmt = doc.get("format")
    hashing = doc.get("hashing")
    if not isinstance(fmt, dict):
        problems.append(Problem(f"{here}.format", "missing required object"))
        fmt = {}
    if not isinstance(hashing, dict):
        problems.append(Problem(f"{here}.hashing", "missing required object"))
        hashing = {}
    _format(fmt, f"{here}.format", kw, problems)
    _hashing(hashing, f"{here}.hashing", kw, problems)
    if len(problems) > start:
        return None
    return ClkhashFeature(**kw)


_FORMAT_KEYS = {
    "string": {"type", "encoding", "case", "minLength", "maxLength", "description", "pattern"},
    "integer": {"type", "minimum", "maximum", "description"},
    "date": {"type", "format", "description"},
    "enum": {"type", "values", "description"},
}


def _format(fmt: dict, here: str, kw: dict, problems: list[Problem]) -> None:
    typ = fmt.get("type")
    if typ not in _FORMAT_KEYS:
        problems.append(Problem(f"{here}.type", "must be one of string, integer, date, enum"))
        return
    kw["type"] = typ
    extra = set(fmt) - _FORMAT_KEYS[typ]
    if extra:
        problems.append(Problem(here, f"unknown properties {sorted(extra)}"))
    if typ == "string":
        enc = fmt.get("encoding", "utf-8")
        if enc not in ("ascii", "utf-8", "utf-16", "utf-32"):
            problems.append(Problem(f"{here}.encoding", "must be one of ascii, utf-8, utf-16, utf-32"))
        kw["encoding"] = enc
        if "pattern" in fmt:
            if set(fmt) & {"case", "minLength", "maxLength"}:
                problems.append(Problem(here, "pattern cannot be combined with case, minLength or maxLength"))
            try:
                re.compile(fmt["pattern"])
                kw["pattern"] = fmt["pattern"]
            except (re.error, TypeError):
                problems.append(Problem(f"{here}.pattern", "is not a valid regular expression"))
        else:
            case = fmt.get("case", "mixed")
            if case not in ("upper", "lower", "mixed"):
                problems.append(Problem(f"{here}.case", "must be one of upper, lower, mixed"))
            kw["case"] = case
            for key, name, low in (("minLength", "min_length", 0), ("maxLength", "max_length", 1)):
                if key in fmt:
                    if not _is_int(fmt[key]) or fmt[key] < low:
                        problems.append(Problem(f"{here}.{key}", f"must be an integer >= {low}"))
                    else:
                        kw[name] = fmt[key]
    elif typ == "integer":
        for key in ("minimum", "maximum"):
            if key in fmt:
                if not _is_int(fmt[key]):
                    problems.append(Problem(f"{here}.{key}", "must be an integer"))
                else:
                    kw[key] = fmt[key]
    elif typ == "date":
        if not isinstance(fmt.get("format"), str):
            problems.append(Problem(f"{here}.format", "must be a strptime format string"))
        else:
            kw["date_format"] = fmt["format"]
    else:
        vals = fmt.get("values")
        if not isinstance(vals, list) or not all(isinstance(v, str) for v in vals):
            problems.append(Problem(f"{here}.values", "must be a list of strings"))
        else:
            kw["enum_values"] = frozenset(vals)


def _hashing(h: dict, here: str, kw: dict, problems: list[Problem]) -> None:
    extra = set(h) - {"hash", "strategy", "comparison", "missingValue"}
    if extra:
        problems.append(Problem(here, f"unknown properties {sorted(extra)}"))
    comp = h.get("comparison")
    if not isinstance(comp, dict):
        problems.append(Problem(f"{here}.comparison", "missing required object"))
    elif comp.get("type") == "ngram":
        n = comp.get("n")
        if not _is_int(n) or n < 1:
            problems.append(Problem(f"{here}.comparison.n", "must be an integer >= 1"))
        pos = comp.get("positional", False)
        if not isinstance(pos, bool):
            problems.append(Problem(f"{here}.comparison.positional", "must be a boolean"))
        kw.update(comparison="ngram", n=n, positional=bool(pos))
    elif comp.get("type") == "exact":
        kw["comparison"] = "exact"
    elif comp.get("type") == "numeric":
        td, res = comp.get("thresholdDistance"), comp.get("resolution")
        fp = comp.get("fractional_precision", 0)
        if not isinstance(td, int | float) or isinstance(td, bool) or not td > 0:
            problems.append(Problem(f"{here}.comparison.thresholdDistance", "must be a number > 0"))
        if not _is_int(res) or res < 1:
            problems.append(Problem(f"{here}.comparison.resolution", "must be an integer >= 1"))
        if not _is_int(fp) or fp < 0:
            problems.append(Problem(f"{here}.comparison.fractional_precision", "must be an integer >= 0"))
        elif isinstance(td, int | float) and td > 0 and round(td * 10 ** fp) == 0:
            problems.append(Problem(f"{here}.comparison", "not enough fractional precision for thresholdDistance"))
        kw.update(comparison="numeric", threshold_distance=td, resolution=res, fractional_precision=fp)
    else:
        problems.append(Problem(f"{here}.comparison.type", "must be one of ngram, exact, numeric"))
    strat = h.get("strategy")
    if not isinstance(strat, dict) or len(strat) != 1 or not (set(strat) & {"bitsPerToken", "bitsPerFeature"}):
        problems.append(Problem(f"{here}.strategy", "must hold exactly one of bitsPerToken, bitsPerFeature"))
    else:
        (key, val), = strat.items()
        if not _is_int(val) or val < 1:
            problems.append(Problem(f"{here}.strategy.{key}", "must be an integer >= 1"))
        kw["bits_per_token" if key == "bitsPerToken" else "bits_per_feature"] = val
    hsh = h.get("hash", {"type": "blakeHash"})
    if not isinstance(hsh, dict) or hsh.get("type") not in ("blakeHash", "doubleHash"):
        problems.append(Problem(f"{here}.hash.type", "must be one of blakeHash, doubleHash"))
    else:
        kw["hash_type"] = hsh["type"]
        ps = hsh.get("prevent_singularity")
        if ps is not None:
            if hsh["type"] != "doubleHash":
                problems.append(Problem(f"{here}.hash.prevent_singularity", "only allowed with doubleHash"))
            elif not isinstance(ps, bool):
                problems.append(Problem(f"{here}.hash.prevent_singularity", "must be a boolean"))
            else:
                kw["prevent_singularity"] = ps
    mv = h.get("missingValue")
    if mv is not None:
        if not isinstance(mv, dict) or not isinstance(mv.get("sentinel"), str):
            problems.append(Problem(f"{here}.missingValue.sentinel", "must be a string"))
        elif "replaceWith" in mv and not isinstance(mv["replaceWith"], str):
            problems.append(Problem(f"{here}.missingValue.replaceWith", "must be a string"))
        else:
            kw["missing_sentinel"] = mv["sentinel"]
            kw["missing_replace"] = mv.get("replaceWith", mv["sentinel"])


def load_clkhash_schema(doc_or_path: dict[str, Any] | str | Path) -> ClkhashSchema:
    """Read (a path) or take (a parsed dict) a clkhash v3 schema and check it."""
    if isinstance(doc_or_path, dict):
        doc, source = doc_or_path, "<clkhash schema>"
    else:
        doc, source = read_json(doc_or_path), str(doc_or_path)
    problems: list[Problem] = []
    if not isinstance(doc, dict):
        raise ConfigError(source, [Problem("$", "must be an object")])
    if doc.get("version") != 3:
        problems.append(Problem("$.version", "only clkhash linkage-schema version 3 is supported"))
    cfg = doc.get("clkConfig")
    if not isinstance(cfg, dict):
        problems.append(Problem("$.clkConfig", "missing required object"))
        cfg = {}
    l_bits = cfg.get("l")
    if not _is_int(l_bits) or l_bits < 1:
        problems.append(Problem("$.clkConfig.l", "must be an integer >= 1"))
        l_bits = 1
    folds = cfg.get("xor_folds", 0)
    if not _is_int(folds) or folds < 0:
        problems.append(Problem("$.clkConfig.xor_folds", "must be an integer >= 0"))
        folds = 0
    kdf = cfg.get("kdf")
    if not isinstance(kdf, dict) or kdf.get("type") != "HKDF":
        problems.append(Problem("$.clkConfig.kdf.type", "must be 'HKDF'"))
        kdf = {}
    kdf_hash = kdf.get("hash", "SHA256")
    if kdf_hash not in _HKDF_HASHES:
        problems.append(Problem("$.clkConfig.kdf.hash", "must be one of SHA256, SHA512"))
        kdf_hash = "SHA256"
    salt = _b64(kdf.get("salt"), "$.clkConfig.kdf.salt", problems)
    info = _b64(kdf.get("info"), "$.clkConfig.kdf.info", problems)
    key_size = kdf.get("keySize", _DEFAULT_KEY_SIZE)
    if not _is_int(key_size) or key_size < 1:
        problems.append(Problem("$.clkConfig.kdf.keySize", "must be an integer >= 1"))
        key_size = _DEFAULT_KEY_SIZE
    feats = doc.get("features")
    if not isinstance(feats, list):
        problems.append(Problem("$.features", "missing required array"))
        feats = []
    features = []
    for i, fdoc in enumerate(feats):
        f = _feature(fdoc, f"$.features[{i}]", problems)
        if f is not None:
            features.append(f)
            if not f.ignored and f.hash_type == "blakeHash" and key_size > 64:
                problems.append(Problem("$.clkConfig.kdf.keySize", "blakeHash keys are at most 64 bytes"))
    hash_l = l_bits * 2 ** folds
    if any(f.hash_type == "blakeHash" for f in features if not f.ignored) and hash_l & (hash_l - 1):
        problems.append(Problem("$.clkConfig.l", "blakeHash needs l * 2**xor_folds to be a power of two"))
    if hash_l % 2 ** folds:
        problems.append(Problem("$.clkConfig.xor_folds", "l is not divisible by 2**xor_folds"))
    hash_len = {"SHA256": 32, "SHA512": 64}[kdf_hash]
    if 2 * len(feats) * key_size > 255 * hash_len:
        problems.append(Problem("$.clkConfig.kdf.keySize", "HKDF cannot derive that many key bytes"))
    if problems:
        raise ConfigError(source, problems)
    return ClkhashSchema(tuple(features), l_bits, folds, kdf_hash, salt, info, key_size,
                         ignored_xor_folds="xorFolds" in cfg, document=doc)


def derive_clkhash_keys(secret: bytes | str, schema: ClkhashSchema) -> list[tuple[bytes, bytes]]:
    """clkhash's ``generate_key_lists``: two keys per feature, ignored ones included."""
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if not isinstance(secret, bytes | bytearray):
        raise TypeError("the secret must be bytes or str")
    nf, size = len(schema.features), schema.kdf_key_size
    okm = HKDF(algorithm=_HKDF_HASHES[schema.kdf_hash](), length=2 * nf * size,
               salt=schema.kdf_salt, info=schema.kdf_info).derive(bytes(secret))
    return [(okm[2 * i * size:(2 * i + 1) * size], okm[(2 * i + 1) * size:(2 * i + 2) * size])
            for i in range(nf)]


# --------------------------------------------------------------------------- values

class _Invalid(Exception):
    def __init__(self, rule: str) -> None:
        super().__init__(rule)
        self.rule = rule


def _validate(f: ClkhashFeature, v: str) -> None:
    try:
        v.encode(f.encoding)
    except UnicodeEncodeError:
        raise _Invalid(f"cannot be encoded as {f.encoding}") from None
    if f.type == "string":
        if f.pattern is not None:
            if re.fullmatch(f.pattern, v) is None:
                raise _Invalid("does not match the pattern")
            return
        if f.min_length is not None and len(v) < f.min_length:
            raise _Invalid(f"shorter than minLength {f.min_length}")
        if f.max_length is not None and len(v) > f.max_length:
            raise _Invalid(f"longer than maxLength {f.max_length}")
        if f.case == "upper" and v.upper() != v:
            raise _Invalid("not upper case")
        if f.case == "lower" and v.lower() != v:
            raise _Invalid("not lower case")
    elif f.type == "integer":
        try:
            x = int(v, 10)
        except ValueError:
            raise _Invalid("not an integer") from None
        if f.minimum is not None and x < f.minimum:
            raise _Invalid(f"below minimum {f.minimum}")
        if f.maximum is not None and x > f.maximum:
            raise _Invalid(f"above maximum {f.maximum}")
    elif f.type == "date":
        try:
            datetime.strptime(v, f.date_format)
        except ValueError:
            raise _Invalid("not a date in the schema's format") from None
    elif v not in f.enum_values:
        raise _Invalid("not one of the enum values")


def _format_value(f: ClkhashFeature, v: str) -> str:
    if f.type == "integer":
        try:
            return str(int(v, 10))
        except ValueError:
            raise _Invalid("not an integer") from None
    if f.type == "date":
        try:
            return datetime.strptime(v, f.date_format).strftime("%Y%m%d")
        except ValueError:
            raise _Invalid("not a date in the schema's format") from None
    return v


def _format_all(f: ClkhashFeature, uniques: list[str], validate: bool) -> tuple[list[str], dict[int, str]]:
    """Formatted value of every distinct value, and the rule broken by each invalid one.

    Plain strings (no pattern, no case rule) are checked in bulk: one encode of all
    values, lengths as an array; everything else goes value by value."""
    sentinel = f.missing_sentinel
    bulk = (validate and f.type == "string" and f.pattern is None and f.case == "mixed")
    if bulk:
        try:
            "".join(uniques).encode(f.encoding)
        except UnicodeEncodeError:
            bulk = False
    if bulk:
        lens = np.fromiter(map(len, uniques), dtype=np.int64, count=len(uniques))
        too_short = lens < f.min_length if f.min_length is not None else np.zeros(len(lens), bool)
        too_long = lens > f.max_length if f.max_length is not None else np.zeros(len(lens), bool)
        bad: dict[int, str] = {}
        for u in np.flatnonzero(too_short | too_long).tolist():
            if uniques[u] != sentinel:
                bad[u] = (f"shorter than minLength {f.min_length}" if too_short[u]
                          else f"longer than maxLength {f.max_length}")
        if sentinel is None:
            return list(uniques), bad
        return [f.missing_replace if v == sentinel else v for v in uniques], bad
    if f.type == "integer":
        return _format_integers(f, uniques, validate)
    formatted: list[str] = []
    bad = {}
    for u, v in enumerate(uniques):
        try:
            if sentinel is not None and v == sentinel:
                formatted.append(f.missing_replace)
                continue
            if validate:
                _validate(f, v)
            formatted.append(_format_value(f, v))
        except _Invalid as e:
            bad[u] = e.rule
            formatted.append("")
    return formatted, bad


def _format_integers(f: ClkhashFeature, uniques: list[str],
                     validate: bool) -> tuple[list[str], dict[int, str]]:
    """``str(int(v, 10))`` of every value, with IntegerSpec's checks (one parse each)."""
    sentinel, lo, hi = f.missing_sentinel, f.minimum, f.maximum
    if validate:
        try:
            "".join(uniques).encode(f.encoding)
        except UnicodeEncodeError:
            for u, v in enumerate(uniques):
                try:
                    v.encode(f.encoding)
                except UnicodeEncodeError:
                    if v != sentinel:
                        return [], {u: f"cannot be encoded as {f.encoding}"}
    formatted: list[str] = []
    bad: dict[int, str] = {}
    for u, v in enumerate(uniques):
        if v == sentinel:
            formatted.append(f.missing_replace)
            continue
        try:
            x = int(v, 10)
        except ValueError:
            bad[u] = "not an integer"
            formatted.append("")
            continue
        if validate and lo is not None and x < lo:
            bad[u] = f"below minimum {lo}"
        elif validate and hi is not None and x > hi:
            bad[u] = f"above maximum {hi}"
        formatted.append(str(x))
    return formatted, bad


def _numeric_tokens(f: ClkhashFeature, word: str) -> list[str]:
    """clkhash's NumericComparison.tokenize, same arithmetic."""
    if len(word) == 0:
        return []
    interval = round(f.threshold_distance * pow(10, f.fractional_precision))  # an int, as clkhash's int(round())
    try:
        v = int(word, base=10)
        if f.fractional_precision > 0:
            v *= pow(10, f.fractional_precision)
    except ValueError:
        try:
            vf = float(word)
        except ValueError:
            raise _Invalid("not a number") from None
        if f.fractional_precision > 0:
            v = round(vf * pow(10, f.fractional_precision))
        else:
            v = int(vf)
    v = v * 2 * f.resolution
    residue = v % interval
    if residue == 0:
        pass
    elif residue < interval / 2:
        v = v - residue
    else:
        v = v + (interval - residue)
    return [str(v + i * interval) for i in range(-f.resolution, f.resolution + 1)]


def _table_from_lists(token_lists: list[list[str]]) -> tokens.TokenTable:
    counts = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
    flat = [t for ts in token_lists for t in ts]
    ids, uniques = pd.factorize(pd.Series(flat, dtype=object), sort=False)
    return tokens.TokenTable(tokens.csr_ptr(counts), ids.astype(np.int64, copy=False), list(uniques))


def _tokenise(f: ClkhashFeature, values: list[str]) -> tokens.TokenTable:
    if f.comparison == "ngram":
        return tokens.ngram_table(values, f.n, padded=True, positional=f.positional,
                                  short_whole=False)
    if f.comparison == "exact":
        return tokens.exact_table(values)
    return _table_from_lists([_numeric_tokens(f, v) for v in values])


# --------------------------------------------------------------------------- hashing

def _blake_positions(key: bytes, messages: list[bytes], kmax: np.ndarray, L: int):
    """clkhash's blake_hash_token: uint16 words (native order, little-endian on the
    platforms clkhash runs on) of keyed BLAKE2b with salt str(i), mod L."""
    nmacs = (kmax + 31) // 32
    chunks = []
    for m, c in zip(messages, nmacs.tolist(), strict=True):
        for i in range(c):
            # hashlib's keyed BLAKE2b, exactly as clkhash does (compatibility only)
            chunks.append(hashlib.blake2b(m, key=key, salt=str(i).encode()).digest())
    words = np.frombuffer(b"".join(chunks), dtype="<u2")
    wptr = tokens.csr_ptr(nmacs * 32)
    return _take_prefix(words, wptr, kmax, L)


def _take_prefix(words: np.ndarray, wptr: np.ndarray, kmax: np.ndarray, L: int):
    pptr = tokens.csr_ptr(kmax)
    total = int(pptr[-1])
    src = np.repeat(wptr[:-1], kmax) + (np.arange(total, dtype=np.int64) - np.repeat(pptr[:-1], kmax))
    return pptr, (words[src].astype(np.int64) % L).astype(np.int32)


def _double_positions(keys: tuple[bytes, bytes], messages: list[bytes], kmax: np.ndarray, L: int,
                      non_singular: bool):
    """clkhash's double hashing: (HMAC-SHA1 + j * HMAC-MD5) mod L (compatibility only)."""
    key_sha1, key_md5 = keys
    # hashlib HMAC-SHA1 / HMAC-MD5, exactly as clkhash does (compatibility only)
    sha1 = hmac.new(key_sha1, digestmod=hashlib.sha1)
    md5 = hmac.new(key_md5, digestmod=hashlib.md5)
    h1 = np.empty(len(messages), dtype=np.int64)
    h2 = np.empty(len(messages), dtype=np.int64)
    for i, m in enumerate(messages):
        a = sha1.copy()
        a.update(m)
        h1[i] = int.from_bytes(a.digest(), "big") % L
        b = md5.copy()
        b.update(m)
        x = int.from_bytes(b.digest(), "big") % L
        j = 0
        while non_singular and x == 0:
            x = int.from_bytes(hmac.digest(key_md5, m + chr(j).encode(), "md5"), "big") % L
            j += 1
        h2[i] = x
    pptr = tokens.csr_ptr(kmax)
    total = int(pptr[-1])
    owner = np.repeat(np.arange(len(kmax)), kmax)
    j = np.arange(total, dtype=np.int64) - pptr[:-1][owner]
    pos = (h1[owner] + j * h2[owner]) % L
    return pptr, pos.astype(np.int32)


# --------------------------------------------------------------------------- encoding

def _columns(rows: Sequence[Sequence[str]] | pd.DataFrame, schema: ClkhashSchema) -> tuple[int, list]:
    feats = schema.features
    if isinstance(rows, pd.DataFrame):
        n = len(rows)
        cols = []
        for f in feats:
            if f.identifier in rows.columns:
                cols.append(rows[f.identifier].to_numpy(dtype=object))
            elif f.ignored:
                cols.append(None)
            else:
                raise InputError(f"the frame has no column {f.identifier!r}")
        return n, cols
    n = len(rows)
    if set(map(len, rows)) - {len(feats)}:
        i, row = next((i, r) for i, r in enumerate(rows) if len(r) != len(feats))
        raise InputError(f"row {i} has {len(row)} entries when {len(feats)} are expected")
    cols = []
    for f, values in zip(feats, zip(*rows, strict=True) if n else [()] * len(feats), strict=True):
        if f.ignored:
            cols.append(None)
            continue
        col = np.empty(n, dtype=object)
        col[:] = values
        cols.append(col)
    return n, cols


def _factorize_column(values: np.ndarray, f: ClkhashFeature) -> tuple[np.ndarray, list[str]]:
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    uniques = list(uniques)
    if not all(isinstance(v, str) for v in uniques):
        raise TypeError(f"column {f.identifier!r} holds a value that is not a str")
    if (codes < 0).any():  # None / NaN: an empty cell, as in clkhash's CSV path
        codes = np.where(codes < 0, len(uniques), codes)
        uniques.append("")
    return codes.astype(np.int64, copy=False), uniques


def _prepare(f: ClkhashFeature, values: np.ndarray, keys: tuple[bytes, bytes], L: int,
             validate: bool) -> tuple[np.ndarray, kernels.Entries] | None:
    codes, uniques = _factorize_column(values, f)
    formatted, bad = _format_all(f, uniques, validate)
    if bad:
        is_bad = np.zeros(len(uniques), dtype=bool)
        is_bad[list(bad)] = True
        row = int(np.flatnonzero(is_bad[codes])[0])
        raise InputError(f"row {row}, column {f.identifier!r}: invalid entry ({bad[int(codes[row])]})")
    try:
        table = _tokenise(f, formatted)
    except _Invalid as e:
        raise InputError(f"column {f.identifier!r}: invalid entry ({e.rule})") from None
    counts = table.counts
    if f.bits_per_token is not None:
        unit_k = np.full(len(counts), f.bits_per_token, dtype=np.int64)
        unit_resid = np.zeros(len(counts), dtype=np.int64)
    else:
        safe = np.maximum(counts, 1)
        unit_k = f.bits_per_feature // safe
        unit_resid = f.bits_per_feature % safe
    if not len(table.tok):
        return None
    occ = table.occurrence
    ent_k = np.repeat(unit_k, counts) + (occ < np.repeat(unit_resid, counts))
    kmax = np.zeros(len(table.strings), dtype=np.int64)
    np.maximum.at(kmax, table.tok, ent_k)
    try:
        messages = [t.encode(f.encoding) for t in table.strings]
    except UnicodeEncodeError:
        raise InputError(f"column {f.identifier!r}: a token cannot be encoded as {f.encoding}") from None
    if f.hash_type == "blakeHash":
        pos_ptr, pos = _blake_positions(keys[0], messages, kmax, L)
    else:
        pos_ptr, pos = _double_positions(keys, messages, kmax, L, f.prevent_singularity)
    entries = kernels.Entries(table.ptr, table.tok, unit_k, unit_resid, pos_ptr, pos)
    entries.plan(codes, (L + 7) // 8, kmax if f.bits_per_token is not None else None)
    return codes, entries


def encode_clks_packed(rows: Sequence[Sequence[str]] | pd.DataFrame, schema: ClkhashSchema,
                       secret: bytes | str, validate: bool = True) -> np.ndarray:
    """CLKs as a ``(rows, ceil(l / 8))`` uint8 array, MSB first.

    ``rows``: sequences with one string per feature in schema order (ignored
    features included), as clkhash takes them; or a DataFrame with a column per
    feature identifier (ignored features may be absent).  None/NaN counts as an
    empty string (what a CSV empty cell gives clkhash).
    """
    if not isinstance(schema, ClkhashSchema):
        raise TypeError("schema must be a ClkhashSchema (see load_clkhash_schema)")
    keys = derive_clkhash_keys(secret, schema)
    n, cols = _columns(rows, schema)
    L = schema.hash_length
    out = np.zeros((n, (L + 7) // 8), dtype=np.uint8)
    for f, col, k in zip(schema.features, cols, keys, strict=True):
        if f.ignored:
            continue
        got = _prepare(f, col, k, L, validate)
        if got is not None:
            codes, entries = got
            entries.set_rows(out, codes)
    out, _ = hardening.fold(out, L, schema.xor_folds)
    return out


def encode_clks(rows: Sequence[Sequence[str]] | pd.DataFrame, schema: ClkhashSchema,
                secret: bytes | str, validate: bool = True) -> list[bytes]:
    """One CLK per row, as the bytes of clkhash's bitarray (``tobytes()``)."""
    packed = encode_clks_packed(rows, schema, secret, validate)
    width = packed.shape[1]
    buf = packed.tobytes()
    return [buf[i:i + width] for i in range(0, len(buf), width)] if width else [b""] * len(packed)
