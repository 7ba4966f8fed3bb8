"""Splink comparisons built from the linkage schema, on encodings only.

Per schema field with a Bloom filter, one comparison with the levels

1. null -- either filter is null (the value, or a salted filter's salt, was missing);
2. exact -- the keyed hashes are equal (fields with ``exact_hash``), with a
   term-frequency adjustment where the schema says ``frequency_adjust``;
   then, for a field with ``validity_flag`` (ID numbers), "different, both
   pass the check" (:func:`validity_levels`);
3. Dice >= each of the run's ``dice_levels`` (default 0.95, 0.85, 0.7);
4. else.

A field with a keyed hash but no filter gets null / exact / else.  A field
with typo keys (``typo_keys``: ID numbers) gets the level "one typo apart"
after its exact level -- one side's keyed hash among the other's typo keys,
the hashes of its one-typo corrections (:func:`typo_sql`) -- in place of the
similarity its filter would give: a single substitution or adjacent
transposition of a number that then fails the check, so unlike an ID
filter's Dice it never calls two people's different (valid) IDs similar.

Household values (phone, address) are compared together in one comparison
(:func:`household_comparison`): family members share them, so separate
comparisons would count "same phone" and "same address" as independent
evidence and link a family's members to each other.  Likewise the pinyin of a
name is a fallback level of the name's comparison (:func:`fallback_comparison`),
not a second comparison counting the same agreement twice; and the birth date,
which an ID number embeds, is compared only where the ID number cannot be
(:func:`guarded_fallback_comparison`).

A field with a salt bank (``on_missing: "bank"``, :mod:`hub.saltbank`) gets
*bank levels* in front of its Dice levels: the same Dice tests, reached only by
a pair scored through a stand-in (input column :data:`STAND_IN_FLAG`, true on
stand-ins only).  A bank slot agrees with a salted filter when the names agree
under *some* year, so chance agreement (u) is far likelier than for two
filters salted with their own years; the bank levels get their u by sampling
(bank record, random record) pairs (:func:`hub.saltbank.bank_level_u`) and the
m of their twin level (:func:`hub.model.fill_bank_levels`).  Training never
sees a stand-in, so it never reaches them.

Level SQL names the two sides as Splink does in comparisons: ``"<column>_l"``
and ``"<column>_r"`` (blocking rules, by contrast, use ``l.<column>``).

The Dice similarity is computed in SQL from the filter's HUGEINT words and
precomputed popcounts (see :mod:`hub.store`): ``|A & B|`` is the sum of
``bit_count`` over the words, and ``Dice >= t`` is tested in integers as
``20000 * |A & B| >= greatest(round(10000 t) * (|A| + |B|), 1)`` -- no
division, no float, exact for thresholds of four decimals, and false when both
filters are empty (0/0 counts as 0).

Measured on DuckDB 2.0.1 (one thread, 1.3 M pairs, 512-bit filter): DuckDB
computes an expression shared by several WHENs of a CASE once
(common-subexpression elimination) -- but only when it is evaluated
unconditionally, i.e. in the first WHEN and not behind an AND/OR short circuit.
Hence the null level is written ``|A & B| IS NULL`` (a null filter has null
words) and the 0/0 guard as ``greatest(..., 1)`` rather than ``|A|+|B| > 0 AND``:
the comparison then costs 0.09 s instead of 0.18 s, one intersection instead of
three.  HUGEINT words (128 bits) beat BIGINT words (about 2x) and the BIT type
(about 5x, it allocates); integer thresholds beat a float Dice (about 1.6x).

Spark (``--engine spark``) has no 128-bit integer.  Its comparisons
(:func:`spark_comparison_specs`) are the same builders over the Parquet copy of
``records`` that ingest writes, where each filter is held as signed BIGINT
words ``bf_<f>_w<k>`` (64 bits each, :class:`BigintFilterColumns`: 16 words
for a 1024-bit filter), with identifiers quoted for Spark SQL
(:func:`spark_sql`).  Spark's ``bit_count`` of a BIGINT counts its 64 bits
(two's complement), so ``|A & B|`` and every integer threshold test are the
same numbers on both engines.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from linkage.schema import FieldSpec, LinkageSchema

from .store import FilterColumns, RecordLayout, q, staging_word_columns

DICE_SCALE = 10000

# Input column that is true on salt-bank stand-ins (hub.saltbank) and false on every record.
STAND_IN_FLAG = "aidlink_stand_in"
# Label prefix of a bank level; the rest of the label is its twin level's (whose m it shares).
BANK_LABEL = "salt bank: "


def side(column: str, which: str) -> str:
    """A column of one side of a pair, as Splink names it in comparison levels: ``"<column>_l"``."""
    return q(f"{column}_{which}")


def intersection_sql(f: FilterColumns, left: str = "l", right: str = "r") -> str:
    """``|A & B|`` of filter ``f`` between columns suffixed ``_<left>`` and ``_<right>`` (INTEGER)."""
    terms = " + ".join(f"bit_count({side(w, left)} & {side(w, right)})" for w in f.words)
    return f"CAST({terms} AS INTEGER)"


def popcount_sum_sql(f: FilterColumns, left: str = "l", right: str = "r") -> str:
    """``|A| + |B|`` of filter ``f`` (INTEGER)."""
    return f"({side(f.popcount, left)} + {side(f.popcount, right)})"


def dice_scaled_threshold(threshold: float) -> int:
    """A Dice threshold in units of 1/10000; refuses thresholds with more than four decimals."""
    t = round(threshold * DICE_SCALE)
    if abs(t - threshold * DICE_SCALE) > 1e-6 or not 0 < t <= DICE_SCALE:
        raise ValueError("Dice thresholds must lie in (0, 1] with at most four decimals")
    return t


def dice_at_least_sql(f: FilterColumns, threshold: float, left: str = "l", right: str = "r") -> str:
    """SQL condition ``Dice(A, B) >= threshold`` for filter ``f`` (false for two empty filters:
    the right side is at least 1, the left 0)."""
    s = popcount_sum_sql(f, left, right)
    return (f"{2 * DICE_SCALE} * {intersection_sql(f, left, right)}"
            f" >= greatest({dice_scaled_threshold(threshold)} * {s}, 1)")


def filter_null_sql(f: FilterColumns, left: str = "l", right: str = "r") -> str:
    """SQL condition: filter ``f`` is null on either side -- written as ``|A & B| IS NULL`` (a null
    filter has null words) so that the intersection is evaluated unconditionally in the first
    WHEN of the CASE, which lets DuckDB compute it once for all the Dice levels."""
    return f"{intersection_sql(f, left, right)} IS NULL"


def dice_sql(f: FilterColumns, left: str = "l", right: str = "r") -> str:
    """The Dice similarity of filter ``f`` as DOUBLE (0 for two empty filters); for diagnostics."""
    s = popcount_sum_sql(f, left, right)
    return f"(CASE WHEN {s} > 0 THEN 2.0 * {intersection_sql(f, left, right)} / {s} ELSE 0.0 END)"


def null_sql(column: str, left: str = "l", right: str = "r") -> str:
    """SQL condition: ``column`` is null on either side."""
    return f"{side(column, left)} IS NULL OR {side(column, right)} IS NULL"


def exact_sql(column: str, left: str = "l", right: str = "r") -> str:
    """SQL condition: ``column`` equal on both sides."""
    return f"{side(column, left)} = {side(column, right)}"


def typo_sql(field: FieldSpec, left: str = "l", right: str = "r") -> str:
    """SQL condition: one side's keyed hash is among the other side's typo keys (the hashes of its
    one-typo corrections; a null equals nothing)."""
    eh = f"eh_{field.name}"

    def among(a: str, b: str) -> str:
        return f"{side(eh, a)} IN ({', '.join(side(c, b) for c in field.typo_key_columns)})"

    return f"({among(left, right)} OR {among(right, left)})"


def field_null_sql(field: FieldSpec, layout: RecordLayout) -> str:
    """SQL condition: ``field`` cannot be compared (null on either side) -- its filter's, else its
    keyed hash's."""
    if field.filter is not None:
        return filter_null_sql(layout.filter(field.name))
    return null_sql(f"eh_{field.name}")


def comparison_columns(field: FieldSpec, layout: RecordLayout) -> tuple[str, ...]:
    """Every ``records`` column the comparison of ``field`` reads."""
    cols: list[str] = []
    if field.filter is not None:
        fc = layout.filter(field.name)
        cols += [*fc.words, fc.popcount]
    if field.exact_hash:
        cols.append(f"eh_{field.name}")
    if field.validity_flag:
        cols.append(f"ok_{field.name}")
    cols += field.typo_key_columns
    return tuple(cols)


def typo_levels(field: FieldSpec) -> list[dict[str, Any]]:
    """The level "one typo apart" (:func:`typo_sql`) for a field with typo keys, placed after the
    exact level; none for other fields."""
    if not field.typo_keys:
        return []
    return [{"sql_condition": typo_sql(field), "label_for_charts": "one typo apart (typo keys)"}]


def identity_levels(field: FieldSpec) -> list[dict[str, Any]]:
    """The levels that say "the same value", "the same but for a typo" or "certainly another":
    exact (keyed hash), :func:`typo_levels`, then :func:`validity_levels`; for the primary field of
    a two-field comparison (no term frequencies)."""
    exact = ([{"sql_condition": exact_sql(f"eh_{field.name}"), "label_for_charts": "exact (keyed hash)"}]
             if field.exact_hash else [])
    return exact + typo_levels(field) + validity_levels(field)


def validity_levels(field: FieldSpec) -> list[dict[str, Any]]:
    """The level "both values pass their check" for a field with a validity flag (placed after the
    exact level, so the values differ): two different ID numbers that both pass the check character
    are two people, where a typo would have failed it.  No level for other fields."""
    if not field.validity_flag:
        return []
    ok = f"ok_{field.name}"
    return [{"sql_condition": f"{side(ok, 'l')} AND {side(ok, 'r')}",
             "label_for_charts": "different, both pass the check"}]


def stand_in_sql() -> str:
    """SQL condition: the pair is scored through a salt-bank stand-in (on either side)."""
    return f"({side(STAND_IN_FLAG, 'l')} OR {side(STAND_IN_FLAG, 'r')})"


def bank_levels(levels: list[dict[str, Any]], banked: frozenset[str] | set[str]) -> list[dict[str, Any]]:
    """``levels`` (null first, else last) with a bank level in front of the first Dice level for each
    Dice level in ``banked`` (labels of the levels testing a banked field): the same condition ANDed
    with :func:`stand_in_sql` (after it, so the shared intersections stay unconditional), labelled
    :data:`BANK_LABEL` + the twin's label."""
    twins = [lv for lv in levels if lv["label_for_charts"] in banked]
    if not twins:
        return levels
    first = levels.index(twins[0])
    bank = [{"sql_condition": f"({lv['sql_condition']}) AND {stand_in_sql()}",
             "label_for_charts": BANK_LABEL + lv["label_for_charts"]} for lv in twins]
    return [*levels[:first], *bank, *levels[first:]]


def field_comparison(field: FieldSpec, layout: RecordLayout, dice_levels: tuple[float, ...]) -> dict[str, Any]:
    """The Splink comparison (a CustomComparison dict) for one schema field."""
    levels: list[dict[str, Any]] = []
    eh = f"eh_{field.name}"
    if field.filter is not None:
        fc = layout.filter(field.name)
        levels.append({"sql_condition": filter_null_sql(fc), "label_for_charts": "null", "is_null_level": True})
    else:
        levels.append({"sql_condition": null_sql(eh), "label_for_charts": "null", "is_null_level": True})
    if field.exact_hash:
        level: dict[str, Any] = {"sql_condition": exact_sql(eh), "label_for_charts": "exact (keyed hash)"}
        if field.frequency_adjust:
            level["tf_adjustment_column"] = eh
            level["tf_adjustment_weight"] = 1.0
        levels.append(level)
    levels += typo_levels(field)
    levels += validity_levels(field)
    if field.filter is not None:
        for t in dice_levels:
            levels.append({"sql_condition": dice_at_least_sql(fc, t), "label_for_charts": f"Dice >= {t:g}"})
    levels.append({"sql_condition": "ELSE", "label_for_charts": "else"})
    if field.name in layout.banks:
        levels = bank_levels(levels, {f"Dice >= {t:g}" for t in dice_levels})
    return {
        "output_column_name": field.name,
        "comparison_description": f"{field.name}: keyed hash / Dice of keyed Bloom filters",
        "comparison_levels": levels,
    }


def compared_fields(schema: LinkageSchema) -> tuple[FieldSpec, ...]:
    """The fields that get compared: those with a filter or a keyed hash."""
    return tuple(f for f in schema.fields if f.filter is not None or f.exact_hash)


# Values one household shares (normalisers): family members agree on them as a matter of course, so
# their agreements are not independent evidence for non-matching pairs -- the Fellegi-Sunter model,
# which multiplies per-comparison Bayes factors, would take "same phone and same address" for about
# twice the evidence it is.  They are compared together, in one comparison whose u is estimated for
# the combination.
SHARED_NORMALISERS = frozenset({"phone", "address"})
HOUSEHOLD = "household"


@dataclass(frozen=True)
class ComparisonSpec:
    """One Splink comparison: its name, the schema fields and ``records`` columns it reads."""

    name: str
    fields: tuple[str, ...]
    columns: tuple[str, ...]
    doc: dict[str, Any] = field(repr=False, compare=False)


def _null_flag_sql(f: FieldSpec, layout: RecordLayout) -> str:
    """1 when field ``f`` cannot be compared (null on either side), else 0 -- evaluated for every pair."""
    if f.filter is not None:
        return f"CAST({filter_null_sql(layout.filter(f.name))} AS INTEGER)"
    return f"CAST(({null_sql(f'eh_{f.name}')}) AS INTEGER)"


def household_comparison(fields: tuple[FieldSpec, ...], layout: RecordLayout,
                         dice_levels: tuple[float, ...], name: str = HOUSEHOLD) -> dict[str, Any]:
    """One comparison over the household values (e.g. phone and address), levels in this order:

    null (none comparable); all agree; each one agrees (exact hash, or Dice >= the second
    level); each filter similar (Dice >= the last level); else.  The null level adds the
    per-field null flags, so every intersection is computed in the first WHEN and shared.
    """
    strong_t = dice_levels[min(1, len(dice_levels) - 1)]
    weak_t = dice_levels[-1]
    strong: dict[str, str] = {}
    for f in fields:
        if f.exact_hash:
            strong[f.name] = exact_sql(f"eh_{f.name}")
        else:
            strong[f.name] = dice_at_least_sql(layout.filter(f.name), strong_t)
    flags = " + ".join(_null_flag_sql(f, layout) for f in fields)
    levels: list[dict[str, Any]] = [
        {"sql_condition": f"{flags} = {len(fields)}", "label_for_charts": "null", "is_null_level": True},
        {"sql_condition": " AND ".join(f"({strong[f.name]})" for f in fields),
         "label_for_charts": "all agree: " + " + ".join(f.name for f in fields)},
    ]
    for f in fields:
        level = {"sql_condition": strong[f.name], "label_for_charts": f"{f.name} agrees"}
        if f.exact_hash and f.frequency_adjust:
            level.update(tf_adjustment_column=f"eh_{f.name}", tf_adjustment_weight=1.0)
        levels.append(level)
    for f in fields:
        if f.filter is not None and (f.exact_hash or weak_t != strong_t):
            levels.append({"sql_condition": dice_at_least_sql(layout.filter(f.name), weak_t),
                           "label_for_charts": f"{f.name} Dice >= {weak_t:g}"})
    levels.append({"sql_condition": "ELSE", "label_for_charts": "else"})
    return {"output_column_name": name,
            "comparison_description": "household values compared together: " + ", ".join(f.name for f in fields),
            "comparison_levels": levels}


# Derivations that make a field a function of its source: its agreement adds nothing once the
# source agrees (toneless pinyin of the same name is the same pinyin) -- it only tells something
# where the source disagrees (a homophone, a mistyped character).
TOTAL_DERIVATIONS = frozenset({"pinyin"})

# Derivations that embed the field in its source: an ID number holds the birth date.  Two IDs
# that are similar (same region and birth date, a digit or two apart in the sequence code: twins,
# or two children born the same day in the same county) agree on the birth date as a matter of
# course, so comparing both would count one agreement twice -- measured on the synthetic county,
# that double count linked such pairs of different people (+14.6 bits for "ID Dice >= 0.85" plus
# +13.2 for "same birth date" against -8 for different names).  The derived field is therefore
# compared only where its source cannot be (:func:`guarded_fallback_comparison`).
EMBEDDED_DERIVATIONS = frozenset({"birth_date"})


def fallback_comparison(primary: FieldSpec, fallback: FieldSpec, layout: RecordLayout,
                        dice_levels: tuple[float, ...]) -> dict[str, Any]:
    """One comparison of ``primary`` with ``fallback`` (derived from it) as second-best evidence at
    each Dice level: primary >= t1, fallback >= t1, primary >= t2, fallback >= t2, ..., else.

    Two separate comparisons would count a name agreement twice (once as characters, once as
    pinyin).  The null level reads both intersections (arithmetic, no short circuit), so both are
    computed once and shared by every level.
    """
    p, f = layout.filter(primary.name), layout.filter(fallback.name)
    null = f"CAST({filter_null_sql(p)} AS INTEGER) * 2 + CAST({filter_null_sql(f)} AS INTEGER) >= 2"
    levels: list[dict[str, Any]] = [{"sql_condition": null, "label_for_charts": "null", "is_null_level": True}]
    levels += identity_levels(primary)
    for t in dice_levels:
        levels.append({"sql_condition": dice_at_least_sql(p, t), "label_for_charts": f"Dice >= {t:g}"})
        levels.append({"sql_condition": dice_at_least_sql(f, t),
                       "label_for_charts": f"{fallback.name} Dice >= {t:g}"})
    levels.append({"sql_condition": "ELSE", "label_for_charts": "else"})
    banked = ({f"Dice >= {t:g}" for t in dice_levels} if primary.name in layout.banks else set()) | (
        {f"{fallback.name} Dice >= {t:g}" for t in dice_levels} if fallback.name in layout.banks else set())
    levels = bank_levels(levels, banked)
    return {"output_column_name": primary.name,
            "comparison_description": f"{primary.name}, with {fallback.name} where it disagrees",
            "comparison_levels": levels}


def guarded_fallback_comparison(primary: FieldSpec, fallback: FieldSpec, layout: RecordLayout,
                                dice_levels: tuple[float, ...]) -> dict[str, Any]:
    """One comparison of ``primary`` that falls back to ``fallback`` (embedded in it, e.g. the
    birth date in an ID number) only where ``primary`` is null on either side.  Levels: null (both
    null); primary exact, one typo apart (typo keys), both pass the check (validity flag); primary
    Dice >= each t (a primary with a filter); primary else (both present); fallback exact (a
    fallback with a keyed hash); fallback Dice >= each t (with a filter); else.  Both null tests
    are read in the null level (arithmetic, no short circuit), so each intersection is computed
    once.
    """
    p_null, f_null = field_null_sql(primary, layout), field_null_sql(fallback, layout)
    null = f"CAST({p_null} AS INTEGER) + CAST({f_null} AS INTEGER) >= 2"
    levels: list[dict[str, Any]] = [{"sql_condition": null, "label_for_charts": "null", "is_null_level": True}]
    levels += identity_levels(primary)
    if primary.filter is not None:
        p = layout.filter(primary.name)
        for t in dice_levels:
            levels.append({"sql_condition": dice_at_least_sql(p, t), "label_for_charts": f"Dice >= {t:g}"})
    levels.append({"sql_condition": f"NOT ({p_null})", "label_for_charts": "else"})
    if fallback.exact_hash:
        levels.append({"sql_condition": exact_sql(f"eh_{fallback.name}"),
                       "label_for_charts": f"no {primary.name}: {fallback.name} exact (keyed hash)"})
    if fallback.filter is not None:
        f = layout.filter(fallback.name)
        for t in dice_levels:
            levels.append({"sql_condition": dice_at_least_sql(f, t),
                           "label_for_charts": f"no {primary.name}: {fallback.name} Dice >= {t:g}"})
    levels.append({"sql_condition": "ELSE", "label_for_charts": f"no {primary.name}: {fallback.name} else"})
    return {"output_column_name": primary.name,
            "comparison_description": f"{primary.name}, with {fallback.name} where {primary.name} is missing",
            "comparison_levels": levels}


def comparison_specs(schema: LinkageSchema, layout: RecordLayout,
                     dice_levels: tuple[float, ...]) -> list[ComparisonSpec]:
    """The model's comparisons, in schema order: one per compared field, except that

    * a field wholly derived from another compared field (pinyin from the name) is a fallback
      level of its source's comparison (:func:`fallback_comparison`);
    * a field embedded in another compared field (the birth date in the ID number) is compared
      only where its source is missing (:func:`guarded_fallback_comparison`);
    * two or more household values (phone, address) share one comparison, placed where the
      first of them is (:func:`household_comparison`).
    """
    fields = compared_fields(schema)
    by_name = {f.name: f for f in fields}
    fallbacks = {f.derive_from: f for f in fields
                 if f.derive_via in TOTAL_DERIVATIONS and f.derive_from in by_name and f.filter is not None
                 and by_name[f.derive_from].filter is not None and not f.exact_hash}
    guarded = {f.derive_from: f for f in fields
               if f.derive_via in EMBEDDED_DERIVATIONS and f.derive_from in by_name
               and f.derive_from not in fallbacks}
    merged = {f.name for f in fallbacks.values()} | {f.name for f in guarded.values()}
    shared = tuple(f for f in fields if f.normaliser in SHARED_NORMALISERS and f.name not in merged)
    joint = len(shared) >= 2
    name = HOUSEHOLD if HOUSEHOLD not in schema.field_names else f"{HOUSEHOLD}_values"
    out: list[ComparisonSpec] = []
    for f in fields:
        if f.name in merged:
            continue
        if joint and f in shared:
            if f is shared[0]:
                cols = tuple(c for g in shared for c in comparison_columns(g, layout))
                out.append(ComparisonSpec(name, tuple(g.name for g in shared), cols,
                                          household_comparison(shared, layout, dice_levels, name)))
            continue
        if f.name in fallbacks:
            g = fallbacks[f.name]
            out.append(ComparisonSpec(f.name, (f.name, g.name),
                                      comparison_columns(f, layout) + comparison_columns(g, layout),
                                      fallback_comparison(f, g, layout, dice_levels)))
            continue
        if f.name in guarded:
            g = guarded[f.name]
            out.append(ComparisonSpec(f.name, (f.name, g.name),
                                      comparison_columns(f, layout) + comparison_columns(g, layout),
                                      guarded_fallback_comparison(f, g, layout, dice_levels)))
            continue
        out.append(ComparisonSpec(f.name, (f.name,), comparison_columns(f, layout),
                                  field_comparison(f, layout, dice_levels)))
    # a comparison with bank levels reads the stand-in flag too
    return [dataclasses.replace(c, columns=(*c.columns, STAND_IN_FLAG))
            if any(lv["label_for_charts"].startswith(BANK_LABEL) for lv in c.doc["comparison_levels"]) else c
            for c in out]


def schema_comparisons(schema: LinkageSchema, layout: RecordLayout,
                       dice_levels: tuple[float, ...]) -> list[dict[str, Any]]:
    """The Splink comparison dicts of :func:`comparison_specs`."""
    return [c.doc for c in comparison_specs(schema, layout, dice_levels)]


# ---------------------------------------------------------------- Spark: BIGINT words, backquoted names


@dataclass(frozen=True)
class BigintFilterColumns(FilterColumns):
    """A filter as the Parquet copy of ``records`` holds it (and the Spark engine reads it): signed
    BIGINT words ``bf_<f>_w<k>``, 64 bits each, in the filter's bit order (:func:`hub.store.parquet_export_sql`)."""

    @property
    def words(self) -> tuple[str, ...]:
        halves = staging_word_columns(FilterColumns(self.field, self.bits))
        return tuple(w for pair in halves for w in pair if w is not None)


def bigint_layout(layout: RecordLayout) -> RecordLayout:
    """``layout`` with every filter as BIGINT words (:class:`BigintFilterColumns`)."""
    return dataclasses.replace(layout, filters=tuple(BigintFilterColumns(f.field, f.bits) for f in layout.filters))


_QUOTED = re.compile(r'"([^"]*)"')


def spark_sql(sql: str) -> str:
    """The hub's generated SQL (identifiers double-quoted by :func:`hub.store.q`, no string literals) with
    every identifier backquoted, as Spark SQL reads them (a double-quoted token is a string in Spark)."""
    if "'" in sql or "`" in sql:
        raise ValueError("only the hub's generated SQL (no string literals) can be requoted")

    def requote(m: re.Match[str]) -> str:
        q(m.group(1))  # refuses anything that is not a schema identifier
        return f"`{m.group(1)}`"

    out = _QUOTED.sub(requote, sql)
    if '"' in out:
        raise ValueError("unbalanced quotes in generated SQL")
    return out


def spark_comparison_specs(schema: LinkageSchema, layout: RecordLayout,
                           dice_levels: tuple[float, ...]) -> list[ComparisonSpec]:
    """The comparisons of :func:`comparison_specs` for Spark: the same levels, in the same order, over
    BIGINT words, in Spark SQL."""
    out = []
    for c in comparison_specs(schema, bigint_layout(layout), dice_levels):
        doc = {**c.doc, "comparison_levels": [
            {**lv, "sql_condition": lv["sql_condition"] if lv["sql_condition"] == "ELSE" else spark_sql(lv["sql_condition"])}
            for lv in c.doc["comparison_levels"]]}
        out.append(dataclasses.replace(c, doc=doc))
    return out


def engine_comparison_specs(schema: LinkageSchema, layout: RecordLayout, dice_levels: tuple[float, ...],
                            engine: str = "duckdb") -> list[ComparisonSpec]:
    """The model's comparisons for ``engine`` (``duckdb``: HUGEINT words; ``spark``: BIGINT words)."""
    if engine == "spark":
        return spark_comparison_specs(schema, layout, dice_levels)
    return comparison_specs(schema, layout, dice_levels)
