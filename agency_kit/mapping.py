"""The mapping document: which source column feeds which schema field and attribute.

``load_mapping(path, schema)`` validates the document in the three usual
steps, each reporting every problem it finds at once with its JSON path:

1. on load, against ``schemas/mapping.schema.json`` -> :class:`ConfigError`;
2. internal consistency (map keys that coincide once trimmed, a sheet named
   for a CSV) -> :class:`ConfigError`;
3. on meaning, against the linkage schema -> :class:`SchemaMismatchError`:
   every ``fields`` key is a schema field, ``dataset_kind`` is in the
   schema's ``datasets``, every attribute is allowed for that kind
   (minimisation: an attribute the schema does not list for the kind is
   refused, all of them named), and every mapped value / threshold /
   derivation fits the attribute's type and enum.

Per chunk the encoder calls::

    fields, attrs_raw, problems = apply_mapping(chunk, mapping)      # or chunk.frame
    normalised, more = normalise_records(fields, schema)
    attrs = finish_attributes(attrs_raw, normalised, mapping, schema, reference_date)

``problems`` is a DataFrame ``(row, column, rule)``: ``row`` is the 0-based
offset in the chunk (add ``chunk.first_row`` for the file row), ``column`` the
source header.  Row problems never reject a row; they drop one value:

======================== =====================================================
rule                      what happened
======================== =====================================================
attribute.unmapped_value  a non-empty cell is not a key of the attribute's map;
                          the attribute is null for that row
attribute.not_a_number    a threshold attribute's cell is not a number; null
attribute.invalid_value   a cell does not read as the attribute's type (or is
                          not in its enum); null
attribute.out_of_range    an integer outside the attribute's minimum/maximum; null
cell.numeric_id           an ID cell was a *number* in the spreadsheet (Excel
                          keeps 15 significant digits, so an 18-digit ID has lost
                          digits); the ID is treated as missing for that row
======================== =====================================================

Cell text is compared after NFKC (full-width -> half-width), trimming and, for
Latin letters, case folding: ``"是 "``, ``"是"`` and ``"TRUE"``/``"true"`` match.

Attribute forms: ``{"column", "map"}``, ``{"column", "threshold"}`` (a number,
``12,000``, ``1.2万`` or ``5000元``, >= threshold -> true), ``{"column"}`` (cast
to the attribute's type: boolean from 是/否/1/0/true/false/yes/no/y/n,
integer, date, string -- an enum string matched case-insensitively),
``{"constant": value}`` (every row), and ``{"derive": ...}``:

* ``months_between`` with ``"columns": [start, end]`` -- completed calendar
  months between two date columns (Jan 31 -> Feb 28 is 0), in
  :func:`apply_mapping`; an end before the start is ``attribute.out_of_range``;
* ``female_from_id``, ``age_band_from_id`` (``minor`` < 18 <= ``adult`` < 60 <=
  ``senior``, age at ``reference_date``) and ``minor_from_id``, computed by
  :func:`finish_attributes` from the *normalised* fields.  The source is an
  18-digit ID number that passes its GB 11643 check digit (or a 15-digit one);
  when there is none, the normalised ``birth_date`` / ``sex`` fields if mapped;
  otherwise null.  The functions are public so that the encoder (or a test)
  can call them on columns.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from linkage.documents import read_json, validate_document
from linkage.errors import ConfigError, Problem, SchemaMismatchError
from linkage.idnumber import parse_ids
from linkage.schema import LinkageSchema

from .readers import NUMERIC_CELLS_ATTR, Chunk

__all__ = [
    "ADULT_AGE",
    "DERIVATIONS",
    "ROW_KEY_SEPARATOR",
    "SENIOR_AGE",
    "AttributeMapping",
    "IdFacts",
    "Mapping",
    "age_band_from_id",
    "age_from_id",
    "apply_mapping",
    "birth_dates_from_id",
    "derive_attribute",
    "female_from_id",
    "finish_attributes",
    "id_facts",
    "load_mapping",
    "mapping_from_document",
    "minor_from_id",
    "row_key_text",
]

ADULT_AGE = 18
SENIOR_AGE = 60
ROW_KEY_SEPARATOR = "\x1f"
DERIVATIONS: dict[str, tuple[str, frozenset[str] | None]] = {
    # derive -> (attribute type it yields, enum values it yields)
    "female_from_id": ("boolean", None),
    "minor_from_id": ("boolean", None),
    "age_band_from_id": ("string", frozenset({"minor", "adult", "senior"})),
    "months_between": ("integer", None),
}
FIELD_DERIVATIONS = frozenset({"female_from_id", "minor_from_id", "age_band_from_id"})
"""Derivations computed from normalised fields (in finish_attributes); the others from source columns."""
TRUE_WORDS = frozenset({"是", "1", "true", "yes", "y"})
FALSE_WORDS = frozenset({"否", "0", "false", "no", "n"})
ATTR_DTYPES = {"boolean": "boolean", "integer": "Int64", "string": "string"}


def _cell_key(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip().casefold()


# -- the frozen mapping ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AttributeMapping:
    """How one minimised attribute is computed.

    ``how``: ``map`` | ``threshold`` | ``cast`` (from ``column``), ``constant``,
    or ``derive`` (``derive`` names the derivation; ``months_between`` reads
    ``columns``).
    """

    name: str
    type: str  # boolean | integer | string | date (from the linkage schema)
    how: str
    column: str | None = None
    map: dict[str, Any] | None = None  # cell key (NFKC, trimmed, casefolded) -> typed value
    threshold: float | None = None
    constant: Any = None
    derive: str | None = None
    columns: tuple[str, ...] = ()
    enum: tuple[Any, ...] | None = None
    minimum: int | None = None
    maximum: int | None = None

    @property
    def from_fields(self) -> bool:
        """Computed from normalised fields by finish_attributes (not from source cells)."""
        return self.derive in FIELD_DERIVATIONS


@dataclass(frozen=True)
class Mapping:
    version: int
    agency: str
    dataset: str
    dataset_kind: str
    row_key: tuple[str, ...]
    fields: dict[str, str]  # schema field -> source header
    attributes: dict[str, AttributeMapping]  # in the schema's order for the dataset kind
    file_type: str | None = None
    encoding: str | None = None
    sheet: str | None = None
    schema_id: str = ""
    id_fields: tuple[str, ...] = ()  # mapped fields whose normaliser is id_number
    source: str = ""
    document: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def source_columns(self) -> tuple[str, ...]:
        """Every source column the encoder reads: fields, attribute columns, row key (no repeats)."""
        cols = list(self.fields.values())
        for a in self.attributes.values():
            cols += [a.column] if a.column else []
            cols += list(a.columns)
        cols += list(self.row_key)
        return tuple(dict.fromkeys(cols))

    @property
    def columns_needed(self) -> tuple[str, ...]:
        return self.source_columns


# -- loading and validation -----------------------------------------------------------------------


def _mismatch(source: str, schema_id: str, problems: list[Problem]) -> SchemaMismatchError:
    n = len(problems)
    lines = "\n".join(f"  - {p}" for p in problems)
    err = SchemaMismatchError(f"{source}: {n} problem{'s' if n != 1 else ''} against linkage schema "
                              f"{schema_id}\n{lines}")
    err.source = source  # type: ignore[attr-defined]
    err.problems = problems  # type: ignore[attr-defined]
    return err


def _parse_date(text: str) -> _dt.date | None:
    t = unicodedata.normalize("NFKC", text).strip()
    m = re.fullmatch(r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?", t)
    if not m:
        m = re.fullmatch(r"(\d{4})(\d{2})(\d{2})", t)
    if not m:
        return None
    try:
        return _dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def _parse_number(text: str) -> float | None:
    t = unicodedata.normalize("NFKC", text).strip().replace(",", "").replace(" ", "")
    scale = 1.0
    if t.endswith("元"):
        t = t[:-1]
    if t.endswith("万"):
        t, scale = t[:-1], 10_000.0
    if not _NUMBER.fullmatch(t):
        return None
    v = float(t) * scale
    return v if math.isfinite(v) else None


def _parse_int(text: str) -> int | None:
    t = unicodedata.normalize("NFKC", text).strip()
    if re.fullmatch(r"[+-]?\d+", t):
        return int(t)
    if re.fullmatch(r"[+-]?\d+\.0*", t):
        return int(t.split(".")[0])
    return None


def _value_problem(value: Any, spec: Any) -> str | None:
    """Why a mapped value does not fit the attribute spec (None if it does)."""
    t = spec.type
    if t == "boolean" and not isinstance(value, bool):
        return "must be true or false (the attribute is boolean)"
    if t == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be an integer (the attribute is integer)"
        if spec.minimum is not None and value < spec.minimum:
            return f"is below the attribute's minimum {spec.minimum}"
        if spec.maximum is not None and value > spec.maximum:
            return f"is above the attribute's maximum {spec.maximum}"
    if t == "string" and not isinstance(value, str):
        return "must be a string (the attribute is string)"
    if t == "date" and not (isinstance(value, str) and _parse_date(value) is not None):
        return "must be a date YYYY-MM-DD (the attribute is date)"
    if spec.enum is not None and t != "date" and value not in spec.enum:
        return f"must be one of {list(spec.enum)}"
    return None


def _meaning_problems(doc: dict[str, Any], schema: LinkageSchema) -> list[Problem]:
    problems: list[Problem] = []
    field_names = set(schema.field_names)
    for name in doc["fields"]:
        if name not in field_names:
            problems.append(Problem(f"$.fields.{name}", f"is not a field of linkage schema {schema.id}"))
    kind = schema.datasets.get(doc["dataset_kind"])
    if kind is None:
        known = ", ".join(sorted(schema.datasets)) or "none"
        problems.append(Problem("$.dataset_kind", f"is not a dataset kind of linkage schema {schema.id} "
                                                  f"(known: {known})"))
        return problems
    allowed = list(kind.attributes)
    mapped_fields = set(doc["fields"])
    for name, a in (doc.get("attributes") or {}).items():
        here = f"$.attributes.{name}"
        spec = kind.attributes.get(name)
        if spec is None:
            problems.append(Problem(here, f"is not allowed for dataset kind {kind.name} (minimisation: the "
                                          f"schema allows {', '.join(allowed) if allowed else 'no attributes'})"))
            continue
        if "map" in a:
            for key, value in a["map"].items():
                why = _value_problem(value, spec)
                if why:
                    problems.append(Problem(f"{here}.map.{key}", why))
        if "constant" in a:
            why = _value_problem(a["constant"], spec)
            if why:
                problems.append(Problem(f"{here}.constant", why))
        if "threshold" in a and spec.type != "boolean":
            problems.append(Problem(f"{here}.threshold", f"only boolean attributes take a threshold "
                                                         f"(this one is {spec.type})"))
        if "derive" in a:
            dtype, values = DERIVATIONS[a["derive"]]
            if spec.type != dtype:
                problems.append(Problem(f"{here}.derive", f"{a['derive']} gives a {dtype}; the attribute is "
                                                          f"{spec.type}"))
            elif values is not None and spec.enum is not None and not values <= set(spec.enum):
                problems.append(Problem(f"{here}.derive", f"{a['derive']} gives {sorted(values)}, not all in "
                                                          f"the attribute's enum"))
            backup = "sex" if a["derive"] == "female_from_id" else "birth_date"
            if a["derive"] in FIELD_DERIVATIONS and "id_number" not in mapped_fields and backup not in mapped_fields:
                problems.append(Problem(f"{here}.derive", f"needs fields.id_number (or fields.{backup})"))
    return problems


def _internal_problems(doc: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    src = doc.get("source") or {}
    if src.get("sheet") and src.get("file_type") in ("csv", "parquet"):
        problems.append(Problem("$.source.sheet", f"a {src['file_type']} file has no sheets"))
    if src.get("encoding") and src.get("file_type") in ("xlsx", "parquet"):
        problems.append(Problem("$.source.encoding", f"a {src['file_type']} file has no text encoding to give"))
    for name, a in (doc.get("attributes") or {}).items():
        seen: dict[str, str] = {}
        for key in a.get("map") or {}:
            k = _cell_key(key)
            if not k:
                problems.append(Problem(f"$.attributes.{name}.map.{key}", "is empty once trimmed"))
            elif k in seen:
                problems.append(Problem(f"$.attributes.{name}.map.{key}",
                                        f"is the same cell text as {seen[k]!r} once trimmed"))
            else:
                seen[k] = key
    return problems


def mapping_from_document(doc: Any, schema: LinkageSchema, source: str = "<mapping>") -> Mapping:
    """Validate a parsed mapping document against its JSON Schema and ``schema``; build the Mapping."""
    validate_document(doc, "mapping", source)
    problems = _internal_problems(doc)
    if problems:
        raise ConfigError(source, problems)
    problems = _meaning_problems(doc, schema)
    if problems:
        raise _mismatch(source, schema.id, problems)
    kind = schema.datasets[doc["dataset_kind"]]
    given = doc.get("attributes") or {}
    attributes: dict[str, AttributeMapping] = {}
    for name in [n for n in kind.attributes if n in given]:
        a, spec = given[name], kind.attributes[name]
        amap = None
        if "map" in a:
            amap = {_cell_key(k): (_parse_date(v) if spec.type == "date" else v) for k, v in a["map"].items()}
        how = ("derive" if "derive" in a else "constant" if "constant" in a else "map" if "map" in a
               else "threshold" if "threshold" in a else "cast")
        constant = a.get("constant")
        if how == "constant" and spec.type == "date":
            constant = _parse_date(constant)
        attributes[name] = AttributeMapping(
            name=name, type=spec.type, how=how, column=a.get("column"), map=amap,
            threshold=float(a["threshold"]) if "threshold" in a else None, constant=constant,
            derive=a.get("derive"), columns=tuple(a.get("columns") or ()),
            enum=spec.enum, minimum=spec.minimum, maximum=spec.maximum)
    src = doc.get("source") or {}
    id_fields = tuple(f for f in doc["fields"] if schema.field(f).normaliser == "id_number")
    return Mapping(
        version=doc["version"], agency=doc["agency"], dataset=doc["dataset"], dataset_kind=doc["dataset_kind"],
        row_key=tuple(doc["row_key"]), fields=dict(doc["fields"]), attributes=attributes,
        file_type=src.get("file_type"), encoding=src.get("encoding"), sheet=src.get("sheet"),
        schema_id=schema.id, id_fields=id_fields, source=source, document=doc)


def load_mapping(path: str | Path, schema: LinkageSchema) -> Mapping:
    """Read, validate (JSON Schema, then against ``schema``) and build a mapping."""
    return mapping_from_document(read_json(path), schema, str(path))


# -- per chunk ------------------------------------------------------------------------------------


def _convert_one(text: str, a: AttributeMapping) -> tuple[Any, str | None]:
    """(value, None) or (None, rule) for one non-empty cell."""
    how = a.how
    if how == "map":
        key = _cell_key(text)
        if key in a.map:  # type: ignore[operator]
            return a.map[key], None  # type: ignore[index]
        return None, "attribute.unmapped_value"
    if how == "threshold":
        v = _parse_number(text)
        return (None, "attribute.not_a_number") if v is None else (v >= a.threshold, None)
    key = _cell_key(text)
    if a.type == "boolean":
        if key in TRUE_WORDS:
            return True, None
        if key in FALSE_WORDS:
            return False, None
        return None, "attribute.invalid_value"
    if a.type == "integer":
        v = _parse_int(text)
        if v is None:
            return None, "attribute.invalid_value"
        if (a.minimum is not None and v < a.minimum) or (a.maximum is not None and v > a.maximum):
            return None, "attribute.out_of_range"
        if a.enum is not None and v not in a.enum:
            return None, "attribute.invalid_value"
        return v, None
    if a.type == "date":
        d = _parse_date(text)
        return (None, "attribute.invalid_value") if d is None else (d, None)
    value = unicodedata.normalize("NFKC", text).strip()
    if a.enum is not None:
        for e in a.enum:
            if isinstance(e, str) and e.casefold() == key:
                return e, None
        return None, "attribute.invalid_value"
    return value, None


def _plain_numbers(uniques: np.ndarray) -> np.ndarray:
    """float per unique cell that is a plain ASCII decimal number (NaN for any other), vectorised."""
    num = np.full(len(uniques), np.nan)
    try:
        arr = pa.array(uniques, pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return num
    ok = pc.match_substring_regex(arr, r"^[+-]?[0-9]{1,15}(\.[0-9]{1,15})?$").fill_null(False)
    idx = np.flatnonzero(ok.to_numpy(zero_copy_only=False))
    if len(idx):
        num[idx] = pc.cast(arr.filter(ok), pa.float64()).to_numpy(zero_copy_only=False)
    return num


def _convert_column(cells: pd.Series, a: AttributeMapping) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Typed values (object array, None where empty/invalid) and rule -> offsets of problem cells."""
    codes, uniques = pd.factorize(cells, use_na_sentinel=True)
    uniques = np.asarray(uniques, dtype=object)
    k = len(uniques)
    values = np.empty(k + 1, dtype=object)
    values[-1] = None
    rule_of = np.zeros(k + 1, dtype=np.int8)  # 0 = fine, else index into rule_names
    rule_names: list[str] = [""]
    todo = range(k)
    if a.how == "threshold" and k:
        num = _plain_numbers(uniques)
        fast = np.flatnonzero(~np.isnan(num))
        values[fast] = (num[fast] >= a.threshold).tolist()
        todo = np.flatnonzero(np.isnan(num)).tolist()
    for i in todo:
        u = uniques[i]
        if isinstance(u, str) and not u.strip():
            v, rule = None, None
        else:
            v, rule = _convert_one(str(u), a)
        values[i] = v
        if rule:
            if rule not in rule_names:
                rule_names.append(rule)
            rule_of[i] = rule_names.index(rule)
    out = values[codes]  # code -1 picks the trailing None
    bad: dict[str, np.ndarray] = {}
    if len(rule_names) > 1:
        per_cell = rule_of[codes]
        for r, rule in enumerate(rule_names[1:], start=1):
            bad[rule] = np.flatnonzero(per_cell == r)
    return out, bad


def _date_parts(cells: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ok, bad, year, month, day) per cell; ``bad`` = non-empty but not a date."""
    codes, uniques = pd.factorize(cells, use_na_sentinel=True)
    k = len(uniques)
    ok_u, bad_u = np.zeros(k + 1, bool), np.zeros(k + 1, bool)
    y_u, m_u, d_u = (np.zeros(k + 1, np.int64) for _ in range(3))
    for i, u in enumerate(uniques):
        d = _parse_date(str(u)) if str(u).strip() else None
        if d is None:
            bad_u[i] = bool(str(u).strip())
        else:
            ok_u[i], y_u[i], m_u[i], d_u[i] = True, d.year, d.month, d.day
    return ok_u[codes], bad_u[codes], y_u[codes], m_u[codes], d_u[codes]


def _months_between(start: pd.Series, end: pd.Series, a: AttributeMapping
                    ) -> tuple[np.ndarray, dict[tuple[str, str], np.ndarray]]:
    """Completed calendar months from ``start`` to ``end`` (Jan 31 -> Feb 28 is 0), with problems."""
    sok, sbad, sy, sm, sd = _date_parts(start)
    eok, ebad, ey, em, ed = _date_parts(end)
    months = (ey - sy) * 12 + (em - sm) - (ed < sd).astype(np.int64)
    both = sok & eok
    negative = both & (months < 0)
    out_of_range = both & ~negative & (
        (months < a.minimum if a.minimum is not None else False)
        | (months > a.maximum if a.maximum is not None else False))
    good = both & ~negative & ~out_of_range
    values = np.full(len(months), None, dtype=object)
    values[good] = months[good].tolist()
    bad: dict[tuple[str, str], np.ndarray] = {}
    for column, mask, rule in ((a.columns[0], sbad, "attribute.invalid_value"),
                               (a.columns[1], ebad, "attribute.invalid_value"),
                               (a.columns[1], negative | out_of_range, "attribute.out_of_range")):
        if mask.any():
            bad[(column, rule)] = np.flatnonzero(mask)
    return values, bad


def apply_mapping(data: Chunk | pd.DataFrame, mapping: Mapping
                  ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Map one chunk: ``(fields, attributes_raw, row_problems)`` (see the module doc).

    ``fields``: columns = the mapped schema field names, cells str/None.
    ``attributes_raw``: one column per column-based attribute, typed Python
    values (bool/int/str/date) or None -- :func:`finish_attributes` adds the
    derived ones and the pandas dtypes.  All three have a 0..n-1 index.
    """
    if isinstance(data, Chunk):
        frame, numeric = data.frame, data.numeric_cells
    else:
        frame, numeric = data, data.attrs.get(NUMERIC_CELLS_ATTR) or {}
    n = len(frame)
    missing = [c for c in mapping.source_columns if c not in frame.columns]
    if missing:
        raise KeyError(f"the frame lacks mapped columns {missing} (read it with columns_needed="
                       "mapping.source_columns)")
    index = pd.RangeIndex(n)
    fields = pd.DataFrame({f: frame[col].to_numpy(dtype=object) for f, col in mapping.fields.items()},
                          index=index, columns=list(mapping.fields))
    problems: list[pd.DataFrame] = []

    def report(offsets: np.ndarray, column: str, rule: str) -> None:
        if len(offsets):
            problems.append(pd.DataFrame({"row": np.asarray(offsets, dtype=np.int64), "column": column,
                                          "rule": rule}))

    for f in mapping.id_fields:
        col = mapping.fields[f]
        offs = numeric.get(col)
        if offs is not None and len(offs):
            offs = np.asarray(offs, dtype=np.int64)
            fields.iloc[offs, fields.columns.get_loc(f)] = None
            report(offs, col, "cell.numeric_id")
    attrs: dict[str, np.ndarray] = {}
    for a in mapping.attributes.values():
        if a.from_fields:
            continue
        if a.how == "constant":
            values = np.empty(n, dtype=object)
            values[:] = [a.constant] * n if n else []
            attrs[a.name] = values
            continue
        if a.how == "derive":  # months_between
            values, bad_cells = _months_between(frame[a.columns[0]], frame[a.columns[1]], a)
            attrs[a.name] = values
            for (column, rule), offs in sorted(bad_cells.items()):
                report(offs, column, rule)
            continue
        values, bad = _convert_column(frame[a.column], a)  # type: ignore[index]
        attrs[a.name] = values
        for rule, offs in sorted(bad.items()):
            report(offs, a.column, rule)  # type: ignore[arg-type]
    attributes_raw = pd.DataFrame(attrs, index=index, columns=list(attrs), dtype=object)
    if problems:
        row_problems = pd.concat(problems, ignore_index=True).sort_values(["row", "column"], kind="stable")
        row_problems = row_problems.reset_index(drop=True)
    else:
        row_problems = pd.DataFrame({"row": np.zeros(0, np.int64), "column": pd.Series([], dtype=object),
                                     "rule": pd.Series([], dtype=object)})
    return fields, attributes_raw, row_problems


def row_key_text(data: Chunk | pd.DataFrame, mapping: Mapping) -> list[str]:
    """The row-key text of each row: the row-key cells, NFKC-normalised and trimmed, joined by U+001F.

    Normalising here means a key re-typed with a full-width digit or a stray
    space in the next export still matches.  The vault stores only an HMAC of it.
    """
    frame = data.frame if isinstance(data, Chunk) else data
    parts = []
    for col in mapping.row_key:
        cells = frame[col].to_numpy(dtype=object)
        try:
            arr = pa.array(cells, pa.string(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # non-str cells (not from our readers)
            arr = pa.array([None if c is None else str(c) for c in cells], pa.string())
        ascii_ = pc.string_is_ascii(arr)
        if not pc.all(ascii_).as_py():  # NFKC changes no ASCII text: normalise only the other cells
            other = pc.invert(ascii_.fill_null(True))
            arr = pc.replace_with_mask(arr, other, pc.utf8_normalize(arr.filter(other), "NFKC"))
        parts.append(pc.utf8_trim_whitespace(arr).fill_null(""))
    joined = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, ROW_KEY_SEPARATOR)
    return joined.to_pylist()


# -- derivations ----------------------------------------------------------------------------------


def _as_object(values: Any, n: int | None = None) -> np.ndarray:
    if values is None:
        return np.full(n or 0, None, dtype=object)
    arr = values.to_numpy(dtype=object) if isinstance(values, pd.Series | pd.Index) else np.asarray(values, dtype=object)
    return arr


class IdFacts(NamedTuple):
    """Per ID number: ``ok`` (valid by :func:`linkage.idnumber.parse_ids`: check character,
    region, a real birth date; 15-digit numbers upgraded), and its birth year, month, day and sex
    digit (odd = male)."""

    ok: np.ndarray
    year: np.ndarray
    month: np.ndarray
    day: np.ndarray
    sex_digit: np.ndarray


def id_facts(id_numbers: Any) -> IdFacts:
    """What an ID column says about birth date and sex; pass the result to the ``*_from_id``
    functions instead of the IDs to parse them once for several attributes."""
    if isinstance(id_numbers, IdFacts):
        return id_numbers
    return IdFacts(*_id_facts(id_numbers))


def _id_facts(id_numbers: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse with :func:`linkage.idnumber.parse_ids` (the one definition of a valid number):
    birth date and sex digit of the valid numbers, ``ok`` False elsewhere."""
    if isinstance(id_numbers, IdFacts):
        return tuple(id_numbers)  # type: ignore[return-value]
    ids = _as_object(id_numbers)
    n = len(ids)
    ok = np.zeros(n, bool)
    year = np.zeros(n, np.int64)
    month = np.zeros(n, np.int64)
    day = np.zeros(n, np.int64)
    sexd = np.zeros(n, np.int64)
    if n == 0:
        return ok, year, month, day, sexd
    batch = parse_ids(ids)
    codes, dates = pd.factorize(pd.Series(batch.birth_date, dtype=object), use_na_sentinel=True)
    ymd = np.array([[int(t[:4]), int(t[5:7]), int(t[8:10])] for t in dates] + [[0, 0, 0]], dtype=np.int64)
    picked = ymd[codes]  # code -1 picks the last row: zeros
    ok = codes >= 0
    year, month, day = picked[:, 0], picked[:, 1], picked[:, 2]
    sexd = np.where(batch.sex == "M", 1, 0).astype(np.int64)
    return ok, year, month, day, sexd


def _valid_dates(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    ok = (year >= 1800) & (year <= 2200) & (month >= 1) & (month <= 12) & (day >= 1)
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    dim = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[np.clip(month, 0, 12)]
    dim = dim + ((month == 2) & leap)
    return ok & (day <= dim)


def _dates_from_text(values: Any, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    arr = _as_object(values, n)
    ok = np.zeros(n, bool)
    y = np.zeros(n, np.int64)
    m = np.zeros(n, np.int64)
    d = np.zeros(n, np.int64)
    for i, v in enumerate(arr):
        if isinstance(v, _dt.date):
            dd: _dt.date | None = v
        elif isinstance(v, str):
            dd = _parse_date(v)
        else:
            dd = None
        if dd is not None:
            ok[i], y[i], m[i], d[i] = True, dd.year, dd.month, dd.day
    return ok, y, m, d


def birth_dates_from_id(id_numbers: Any, birth_dates: Any = None) -> pd.Series:
    """Birth date per row (``datetime64[ns]``, NaT when unknown): from the ID, else ``birth_dates``."""
    ok, y, m, d, _ = _id_facts(id_numbers)
    if birth_dates is not None:
        bok, by, bm, bd = _dates_from_text(birth_dates, len(ok))
        use = ~ok & bok
        y, m, d = np.where(use, by, y), np.where(use, bm, m), np.where(use, bd, d)
        ok = ok | bok
    out = pd.to_datetime(pd.DataFrame({"year": np.where(ok, y, 2000), "month": np.where(ok, m, 1),
                                       "day": np.where(ok, d, 1)}))
    return out.where(ok)


def female_from_id(id_numbers: Any, sex: Any = None) -> pd.Series:
    """True for female (the ID's 17th digit is even), False for male; else from ``sex``; else NA."""
    ok, _, _, _, sexd = _id_facts(id_numbers)
    female = (sexd % 2) == 0
    known = ok.copy()
    if sex is not None and not ok.all():
        rest = np.flatnonzero(~ok)
        codes, uniques = pd.factorize(pd.Series(_as_object(sex, len(ok))[rest], dtype=object))
        table = np.zeros(len(uniques) + 1, dtype=np.int8)  # 0 unknown, 1 female, 2 male
        for i, v in enumerate(uniques):
            k = v.strip().casefold() if isinstance(v, str) else ""
            table[i] = 1 if k in ("f", "female", "女", "2") else 2 if k in ("m", "male", "男", "1") else 0
        got = table[codes]
        known[rest] = got > 0
        female[rest] = got == 1
    return pd.Series(pd.arrays.BooleanArray(female & known, ~known))


def age_from_id(id_numbers: Any, reference_date: _dt.date, birth_dates: Any = None) -> pd.Series:
    """Age in whole years at ``reference_date`` (Int64; NA when unknown or born after it)."""
    if not isinstance(reference_date, _dt.date):
        raise TypeError("reference_date must be a datetime.date")
    ok, y, m, d, _ = _id_facts(id_numbers)
    if birth_dates is not None:
        bok, by, bm, bd = _dates_from_text(birth_dates, len(ok))
        use = ~ok & bok
        y, m, d = np.where(use, by, y), np.where(use, bm, m), np.where(use, bd, d)
        ok = ok | bok
    r = reference_date
    age = r.year - y - ((m > r.month) | ((m == r.month) & (d > r.day))).astype(np.int64)
    ok &= age >= 0
    return pd.Series(pd.array(np.where(ok, age, 0), dtype="Int64")).mask(~ok)


def age_band_from_id(id_numbers: Any, reference_date: _dt.date, birth_dates: Any = None) -> pd.Series:
    """``minor`` (< 18), ``adult`` (18-59), ``senior`` (>= 60) at ``reference_date``; NA when unknown."""
    age = age_from_id(id_numbers, reference_date, birth_dates)
    a = age.to_numpy(dtype=np.float64, na_value=np.nan)
    out = np.where(a < ADULT_AGE, "minor", np.where(a < SENIOR_AGE, "adult", "senior")).astype(object)
    out[np.isnan(a)] = None
    return pd.Series(pd.array(out, dtype="string"))


def minor_from_id(id_numbers: Any, reference_date: _dt.date, birth_dates: Any = None) -> pd.Series:
    """True when under 18 at ``reference_date``; NA when unknown."""
    age = age_from_id(id_numbers, reference_date, birth_dates)
    return (age < ADULT_AGE).astype("boolean")


def derive_attribute(derive: str, normalised_fields: pd.DataFrame, reference_date: _dt.date,
                     facts: IdFacts | None = None) -> pd.Series:
    """One derived attribute from the normalised fields (columns id_number, birth_date, sex as mapped).

    ``facts``: :func:`id_facts` of the ``id_number`` column, if already computed.
    """
    n = len(normalised_fields)
    ids = facts if facts is not None else (
        normalised_fields["id_number"] if "id_number" in normalised_fields else np.full(n, None, object))
    if derive == "female_from_id":
        return female_from_id(ids, normalised_fields.get("sex"))
    births = normalised_fields.get("birth_date")
    if derive == "age_band_from_id":
        return age_band_from_id(ids, reference_date, births)
    if derive == "minor_from_id":
        return minor_from_id(ids, reference_date, births)
    raise ValueError(f"unknown derivation {derive!r}")


def _typed(values: Any, type_: str, n: int) -> Any:
    """A pandas extension array of the attribute's dtype from Python values (None = missing)."""
    if type_ != "date" and isinstance(values, pd.Series) and str(values.dtype) == ATTR_DTYPES[type_]:
        return values.array
    arr = _as_object(values, n)
    if type_ == "date":
        return pd.array(list(arr), dtype=pd.ArrowDtype(pa.date32()))
    missing = pd.isna(arr)
    if type_ == "boolean":
        data = np.zeros(len(arr), bool)
        data[~missing] = arr[~missing].astype(bool)
        return pd.arrays.BooleanArray(data, missing)
    if type_ == "integer":
        data = np.zeros(len(arr), np.int64)
        data[~missing] = arr[~missing].astype(np.int64)
        return pd.arrays.IntegerArray(data, missing)
    return pd.array(arr, dtype="string")


def finish_attributes(attributes_raw: pd.DataFrame, normalised_fields: pd.DataFrame | None, mapping: Mapping,
                      schema: LinkageSchema, reference_date: _dt.date) -> pd.DataFrame:
    """The ``attr_<name>`` columns, typed (``boolean``, ``Int64``, ``string``, ``date32[pyarrow]``).

    ``attributes_raw`` comes from :func:`apply_mapping` (possibly with rows
    dropped, index reset); ``normalised_fields`` is the normalised fields frame
    for the same rows, in the same order (needed only for derived attributes).
    Columns come in the schema's order for the dataset kind.
    """
    if schema.id != mapping.schema_id:
        raise SchemaMismatchError(f"{mapping.source}: the mapping was checked against linkage schema "
                                  f"{mapping.schema_id}, not {schema.id}")
    n = len(attributes_raw)
    if normalised_fields is not None and len(normalised_fields) != n:
        raise ValueError("attributes_raw and normalised_fields must hold the same rows")
    out: dict[str, Any] = {}
    facts = None
    for a in mapping.attributes.values():
        if a.from_fields:
            if normalised_fields is None:
                raise ValueError(f"attribute {a.name!r} is derived: pass the normalised fields")
            nf = normalised_fields.reset_index(drop=True)
            if facts is None:
                facts = id_facts(nf["id_number"] if "id_number" in nf else np.full(n, None, object))
            series = derive_attribute(a.derive, nf, reference_date, facts)
            out[f"attr_{a.name}"] = _typed(series, a.type, n)
        else:
            out[f"attr_{a.name}"] = _typed(attributes_raw[a.name], a.type, n)
    return pd.DataFrame(out, index=pd.RangeIndex(n))
