"""The Fellegi-Sunter model in Splink 5 (DuckDB): settings, training, prediction.

Link type.  The hub links every ingested dataset with every other AND finds
duplicates within each (link_and_dedupe semantics).  It does so as Splink's
``dedupe_only`` over the single ``records`` table (which holds all datasets,
with a BIGINT ``rid``): the pairs scored are exactly those of link_and_dedupe
over per-dataset tables, but join keys stay integers instead of Splink's
``source_dataset || '-__-' || id`` strings, which matters at a million records.

Blocked pairs come from :mod:`hub.block` and are handed to Splink with
``register_blocked_pairs_for_predict`` (Splink 5); Splink's own blocking rules
are not used for prediction.

Training.

* u by random sampling (``estimate_u_using_random_sampling``): records are
  sampled uniformly (seeded) and every pair among them compared, so the
  estimate is unbiased; ``u_max_pairs`` (default 1e6) bounds the pairs, and
  ``num_chunks=1`` with ``min_count_per_level=None`` switches off Splink's
  probe-and-stop, which costs an extra pass and stops on a data-dependent rule.
  Measured on FEBRL: 1e6 pairs give u within 0.02-0.03 bits (mean) of a 2e7
  reference; ten times the pairs cost ten times the time for 0.01 bits.
* m by EM over blocking rules chosen so that no comparison is trained on a
  sample selected by its own field -- or by a field it is derived from, derived
  with, or salted by (:func:`field_dependencies`) -- and so that a block of one
  household (same phone, same address) trains none of the household values, or
  EM learns "same household" instead of "same person" (:func:`rule_conflicts`).
  Splink itself only holds a comparison fixed when the rule's SQL names one of
  the comparison's columns; each EM rule therefore also names a column of every
  other comparison it must not train, in an always-true term
  (``l.c IS NOT DISTINCT FROM l.c``), and :func:`em_plan` records which
  comparisons each rule trains.
* m and u are then smoothed (Jeffreys' prior, :func:`smooth_model`) so that a
  level never seen in a sample does not get a weight of minus infinity.
* the prior (probability two random records match) is re-estimated without
  labels by EM over the blocked pairs with m and u held fixed
  (:func:`estimate_prior`); pairs outside blocking count as non-matches.

Thresholds.  The default link threshold is match probability 0.9 under that
prior, chosen without labels; ``{"auto": "max_expected_f1"}`` picks the
threshold that maximises the model's own expected F1.  The model-estimated
precision and recall at the threshold are reported either way: the expected
share of matches among the links, and the expected share of the blocked
pairs' expected matches that the links hold.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import secrets
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from linkage.errors import ConfigError, Problem, StateError
from linkage.schema import LinkageSchema, schema_from_document

from . import saltbank
from .comparisons import (
    BANK_LABEL,
    SHARED_NORMALISERS,
    STAND_IN_FLAG,
    ComparisonSpec,
    comparison_specs,
    engine_comparison_specs,
)
from .runconfig import DEFAULT_DICE_LEVELS, RunConfig, Threshold
from .saltbank import resolve_salt_banks
from .store import (
    RecordLayout,
    bank_table,
    connect,
    export_parquet,
    parquet_path_for,
    q,
    read_meta,
    staging_word_columns,
)

log = logging.getLogger("aidlink.hub.model")

MIN_EM_PAIRS = 50
MAX_EM_PAIRS_PER_RECORD = 50.0
MAX_EM_RULES = 4
INITIAL_PRIOR = 1e-4


# ---------------------------------------------------------------- dependencies


def field_dependencies(schema: LinkageSchema) -> dict[str, frozenset[str]]:
    """Each field with every field its encoding depends on: itself, the fields it is derived
    from, and the salt of its filter -- transitively."""
    direct: dict[str, set[str]] = {}
    for f in schema.fields:
        d = {f.name}
        for source, _via in f.derive_chain:
            d.add(source)
        if f.filter is not None and f.filter.hardening.salt is not None:
            d.add(f.filter.hardening.salt.field)
        direct[f.name] = d
    out: dict[str, frozenset[str]] = {}
    for name in direct:
        seen: set[str] = set()
        todo = [name]
        while todo:
            x = todo.pop()
            if x in seen:
                continue
            seen.add(x)
            todo.extend(direct.get(x, ()))
        out[name] = frozenset(seen)
    return out


def column_fields(column: str, schema: LinkageSchema, layout: RecordLayout) -> frozenset[str]:
    """The schema fields a keyed-hash or band column is made from."""
    if column.startswith("eh_"):
        return frozenset({column[3:]})
    if column.startswith("bk_"):
        for k in schema.blocking_keys:
            if f"bk_{k.name}" == column:
                return frozenset(k.fields)
    if column.startswith("lsh_"):
        for b in layout.lsh:
            if column in b.columns:
                return frozenset({b.field})
    raise ConfigError("run config", [Problem("$.training.em_rules", f"{column} is not a keyed-hash or band column")])


def specs(schema: LinkageSchema, layout: RecordLayout) -> list[ComparisonSpec]:
    """The comparisons (names, fields, columns; the levels do not matter here)."""
    return comparison_specs(schema, layout, DEFAULT_DICE_LEVELS)


def rule_conflicts(rule_columns: Sequence[str], schema: LinkageSchema, layout: RecordLayout) -> frozenset[str]:
    """The comparisons an EM rule must not train (Splink holds them out of that session): those
    reading a field that shares a dependency with a rule field, and -- for a rule on a household
    value (phone, address), which selects household members who agree on the others too, far
    more often than random pairs (u) -- every household value, or EM takes "same household"
    for "same person"."""
    deps = field_dependencies(schema)
    rule_fields = {f for c in rule_columns for f in column_fields(c, schema, layout)}
    shared = {f.name for f in schema.fields if f.normaliser in SHARED_NORMALISERS}
    if rule_fields & shared:
        rule_fields |= shared
    rule_deps: set[str] = set()
    for f in rule_fields:
        rule_deps |= deps[f]
    return frozenset(c.name for c in specs(schema, layout) if any(deps[f] & rule_deps for f in c.fields))


# ---------------------------------------------------------------- EM plan


@dataclass(frozen=True)
class EmRule:
    """One EM session: equality on ``columns``; trains ``trains``, holds ``fixed`` fixed."""

    columns: tuple[str, ...]
    trains: tuple[str, ...]
    fixed: tuple[str, ...]
    pairs: int | None = None

    def sql(self, schema: LinkageSchema, layout: RecordLayout) -> str:
        """The Splink blocking rule: equality on the columns, and an always-true term naming a
        column of every comparison it must not train (so Splink holds them fixed)."""
        terms = [f"l.{q(c)} = r.{q(c)}" for c in self.columns]
        by_name = {c.name: c for c in specs(schema, layout)}
        for name in self.fixed:
            col = by_name[name].columns[-1]
            if col not in self.columns:
                terms.append(f"l.{q(col)} IS NOT DISTINCT FROM l.{q(col)}")
        return " AND ".join(terms)

    def as_doc(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "trains": list(self.trains), "fixed": list(self.fixed),
                "pairs": self.pairs}


def em_rule(columns: Sequence[str], schema: LinkageSchema, layout: RecordLayout, pairs: int | None = None) -> EmRule:
    fixed = rule_conflicts(columns, schema, layout)
    names = [c.name for c in specs(schema, layout)]
    return EmRule(tuple(columns), tuple(n for n in names if n not in fixed), tuple(n for n in names if n in fixed),
                  pairs)


def em_plan(schema: LinkageSchema, layout: RecordLayout, pair_counts: dict[str, int], n_records: int,
            configured: Sequence[Sequence[str]] | None = None) -> tuple[list[EmRule], list[str]]:
    """EM rules so that every comparison is trained at least once on a rule not touching it.

    ``pair_counts`` gives, per candidate column, the pairs its equality yields.  A
    candidate is usable when it yields at least ``MIN_EM_PAIRS`` pairs and at most
    ``MAX_EM_PAIRS_PER_RECORD`` per record (more means mostly non-matches).  Greedy
    cover, aiming at two trainings per comparison (Splink takes the median over
    sessions): take the usable rule training the most comparisons not yet trained,
    then the most trained only once (ties: fewer pairs, i.e. the more selective key),
    at most ``MAX_EM_RULES`` rules.  Returns the rules and the comparisons no rule
    can train (left at Splink's defaults, and reported).
    """
    names = [c.name for c in specs(schema, layout)]
    if configured is not None:
        rules = [em_rule(cols, schema, layout, pair_counts.get(cols[0]) if len(cols) == 1 else None)
                 for cols in configured]
    else:
        usable = [c for c, n in pair_counts.items()
                  if n >= MIN_EM_PAIRS and n <= MAX_EM_PAIRS_PER_RECORD * max(n_records, 1)]
        candidates = [em_rule([c], schema, layout, pair_counts[c]) for c in usable]
        rules = []
        times = dict.fromkeys(names, 0)

        def gain(r: EmRule) -> tuple[int, int, int]:
            return (sum(times[n] == 0 for n in r.trains), sum(times[n] == 1 for n in r.trains), -(r.pairs or 0))

        while candidates and len(rules) < MAX_EM_RULES:
            best = max(candidates, key=gain)
            if gain(best)[:2] == (0, 0):
                break
            rules.append(best)
            candidates.remove(best)
            for n in best.trains:
                times[n] += 1
    trained = {n for r in rules for n in r.trains}
    return rules, [n for n in names if n not in trained]


def candidate_pairs_sql(source: str, columns: Sequence[str]) -> str:
    """Input: ``source(<columns>)``.  Output: the number of pairs equal on all ``columns``
    (what an EM session blocked on their equality compares)."""
    cols = ", ".join(q(c) for c in columns)
    not_null = " AND ".join(f"{q(c)} IS NOT NULL" for c in columns)
    return (f"SELECT coalesce(sum(n * (n - 1) / 2), 0) FROM (SELECT count(*) AS n FROM {q(source)}"
            f" WHERE {not_null} GROUP BY {cols})")


# ---------------------------------------------------------------- smoothing


SMOOTHING_PSEUDOCOUNT = 0.5  # Jeffreys: Dirichlet(1/2, ..., 1/2)


def smoothed(probabilities: Sequence[float | None], n: float, pseudo: float = SMOOTHING_PSEUDOCOUNT) -> list[float]:
    """Posterior-mean proportions under a symmetric Dirichlet(``pseudo``) prior, from the proportions
    ``probabilities`` (None: level never seen) observed over ``n`` draws."""
    k = len(probabilities)
    return [((p or 0.0) * n + pseudo) / (n + k * pseudo) for p in probabilities]


def smooth_model(model: dict[str, Any], u_pairs: float, m_matches: dict[str, float]) -> dict[str, Any]:
    """The model with every m and u replaced by its smoothed estimate (a copy).

    Splink's estimates are raw proportions: a level never seen among the sampled
    pairs gets no u (Splink then uses 1e-6), and a level never seen among the
    EM sample's expected matches gets m = 0 -- a weight of minus infinity, so
    one mistyped field vetoes a true match.  With Jeffreys' prior the unseen
    level gets about ``1 / (2 n)``: u over the ``u_pairs`` random pairs, m over
    the expected matches ``m_matches[comparison]`` of the EM sessions that
    trained it.  Well-observed levels barely move.
    """
    out = json.loads(json.dumps(model))
    for comp in out["comparisons"]:
        levels = [lv for lv in comp["comparison_levels"] if not lv.get("is_null_level")]
        us = [lv.get("u_probability") for lv in levels]
        if any(u is not None for u in us) and u_pairs > 0:
            for lv, u in zip(levels, smoothed(us, u_pairs), strict=True):
                lv["u_probability"] = u
        n = m_matches.get(comp["output_column_name"], 0.0)
        ms = [lv.get("m_probability") for lv in levels]
        if any(m is not None for m in ms) and n > 0:
            for lv, m in zip(levels, smoothed(ms, n), strict=True):
                lv["m_probability"] = m
    return out


def correct_u_for_matches(model: dict[str, Any], u_pairs: float, prior: float) -> dict[str, Any]:
    """Take the matches out of u estimated by random sampling.

    Splink's random sampling counts every sampled pair as a non-match.  Where the datasets
    overlap heavily (a county's rosters: about 5e-5 of all pairs are matches) the sample holds
    about ``prior * u_pairs`` matches, and for an identifier's agreement levels they outnumber
    the true chance agreements: u(ID exact) came out near the prior itself (5.5e-5, where 1e-7
    is right), so an ID agreement only cancelled the prior.  The expected matched share of each
    level, ``prior * m``, is removed from the observed share ``u`` and the rest renormalised:
    ``u' ∝ max(u - prior * m, 0)``.  Run it on EM's m before :func:`smooth_model`, which then
    gives a level emptied this way a pseudo-count instead of zero.  Comparisons without m or u
    are left alone.
    """
    if not 0.0 <= prior < 1.0:
        raise ValueError("prior must lie in [0, 1)")
    out = json.loads(json.dumps(model))
    for comp in out["comparisons"]:
        levels = [lv for lv in comp["comparison_levels"] if not lv.get("is_null_level")]
        us = [lv.get("u_probability") for lv in levels]
        ms = [lv.get("m_probability") for lv in levels]
        if all(u is None for u in us) or all(m is None for m in ms) or u_pairs <= 0:
            continue
        rest = [max((u or 0.0) - prior * (m or 0.0), 0.0) for u, m in zip(us, ms, strict=True)]
        total = sum(rest)
        if total <= 0:
            continue
        for lv, r in zip(levels, rest, strict=True):
            lv["u_probability"] = r / total if r > 0 else None
    return out


BANK_U_PAIRS = 100_000  # (bank record, other record) pairs sampled for the bank levels' u


def bank_level_counts(con: duckdb.DuckDBPyConnection, schema: LinkageSchema, layout: RecordLayout,
                      cfg: RunConfig, columns: Sequence[str], max_pairs: int = BANK_U_PAIRS,
                      records: str = "hub.records") -> tuple[dict[tuple[str, str], int], int]:
    """Level counts of the bank levels among random (bank record, other record) pairs, each scored
    through its stand-in as prediction scores it (:mod:`hub.saltbank`).  Returns ({(comparison,
    bank level label): pairs}, pairs with a non-null level); ({}, 0) without banks or bank records.

    On the connection of :func:`run_match` (hub attached as ``hub``), the DuckDB comparisons
    whatever the engine: the levels are matched by label, which both engines share."""
    bank_specs = [c for c in comparison_specs(schema, layout, cfg.dice_levels)
                  if any(lv["label_for_charts"].startswith(BANK_LABEL) for lv in c.doc["comparison_levels"])]
    if not layout.banks or not bank_specs:
        return {}, 0
    bank_rids = " UNION ".join(f"SELECT rid FROM hub.{q(bank_table(f))}" for f in layout.banks)
    nb = con.execute(f"SELECT count(*) FROM ({bank_rids})").fetchall()[0][0]
    n = con.execute(f"SELECT count(*) FROM {records}").fetchall()[0][0]
    if nb == 0 or n <= nb:
        return {}, 0
    banks, others = min(nb, 2000), min(n - nb, max(1, max_pairs // 5))
    share = min(1.0, max_pairs / (banks * others))
    pre = saltbank.BANK_U_PREFIX
    con.execute(saltbank.bank_u_pairs_sql(layout, records), [cfg.seed, banks, others, share])
    resolved, _ = saltbank.resolve_salt_banks(con, layout, f"{pre}_pairs", columns, records, prefix=pre)
    con.execute(stand_in_view_sql(columns, f"{pre}_stand_ins", records, view=f"{pre}_input"))
    counts: dict[tuple[str, str], int] = {}
    total = 0
    for spec in bank_specs:
        levels = spec.doc["comparison_levels"]
        case = " ".join(f"ELSE {i}" if lv["sql_condition"] == "ELSE" else f"WHEN {lv['sql_condition']} THEN {i}"
                        for i, lv in enumerate(levels))
        sides = ", ".join(f"{s}.{q(c)} AS {q(f'{c}_{s}')}" for c in spec.columns for s in ("l", "r"))
        rows = con.execute(
            f"SELECT CASE {case} END AS level, count(*) FROM (SELECT {sides} FROM {q(resolved)} p"
            f" JOIN {q(pre + '_input')} l ON l.rid = p.join_key_l JOIN {q(pre + '_input')} r ON r.rid = p.join_key_r"
            f" WHERE l.{q(STAND_IN_FLAG)} OR r.{q(STAND_IN_FLAG)}) GROUP BY level").fetchall()
        seen = {int(i): int(k) for i, k in rows}
        total = max(total, sum(k for i, k in seen.items() if not levels[i].get("is_null_level")))
        for i, lv in enumerate(levels):
            if lv["label_for_charts"].startswith(BANK_LABEL):
                counts[(spec.name, lv["label_for_charts"])] = seen.get(i, 0)
    return counts, total


def fill_bank_levels(model: dict[str, Any], counts: dict[tuple[str, str], int], pairs: int) -> dict[str, Any]:
    """The model (a copy) with every bank level's m taken from its twin level (the level of the
    same test on a plain pair: for a true match the best slot is the slot of the true year, the
    filter the other side's salt gives) and its u from ``counts`` over ``pairs`` sampled bank pairs
    (:func:`bank_level_counts`), smoothed as :func:`smoothed` smooths (an unseen level gets about
    ``1 / (2 pairs)``).  Without a sample the bank level keeps its twin's u: the old behaviour,
    which overrates a bank agreement."""
    out = json.loads(json.dumps(model))
    for comp in out["comparisons"]:
        levels = comp["comparison_levels"]
        by_label = {lv.get("label_for_charts"): lv for lv in levels}
        bank = [lv for lv in levels if str(lv.get("label_for_charts", "")).startswith(BANK_LABEL)]
        for lv in bank:
            twin = by_label.get(lv["label_for_charts"][len(BANK_LABEL):])
            if twin is None:
                continue
            lv["m_probability"] = twin.get("m_probability")
            if pairs > 0:
                k = len([x for x in levels if not x.get("is_null_level")])
                c = counts.get((comp["output_column_name"], lv["label_for_charts"]), 0)
                lv["u_probability"] = (c + SMOOTHING_PSEUDOCOUNT) / (pairs + k * SMOOTHING_PSEUDOCOUNT)
            else:
                lv["u_probability"] = twin.get("u_probability")
    return out


# ---------------------------------------------------------------- settings


def settings_dict(schema: LinkageSchema, layout: RecordLayout, cfg: RunConfig,
                  engine: str = "duckdb") -> dict[str, Any]:
    """The Splink settings (as a dict) for this schema and run, comparisons in ``engine``'s SQL."""
    return {
        "link_type": "dedupe_only",
        "unique_id_column_name": "rid",
        "comparisons": [c.doc for c in engine_comparison_specs(schema, layout, cfg.dice_levels, engine)],
        "blocking_rules_to_generate_predictions": [],
        "probability_two_random_records_match": INITIAL_PRIOR,
        "retain_matching_columns": False,
        "retain_intermediate_calculation_columns": False,
        "max_iterations": cfg.training.em_max_iterations,
        "em_convergence": 1e-4,
    }


def input_columns(schema: LinkageSchema, layout: RecordLayout, em_columns: Sequence[str]) -> list[str]:
    """The ``records`` columns Splink reads: rid, comparison columns, EM rule columns."""
    cols = ["rid"]
    for spec in specs(schema, layout):
        cols += [c for c in spec.columns if c not in cols]
    cols += [c for c in em_columns if c not in cols]
    return cols


# ---------------------------------------------------------------- prior and thresholds


def prior_weight(prior: float) -> float:
    return math.log2(prior / (1.0 - prior))


def probability(weight: np.ndarray | float) -> np.ndarray | float:
    return 1.0 / (1.0 + np.exp2(-np.asarray(weight, dtype=np.float64)))


def estimate_prior(bayes_weights: np.ndarray, total_pairs: float, start: float = INITIAL_PRIOR,
                   iterations: int = 200, tol: float = 1e-10) -> float:
    """EM for the prior alone, m and u fixed: the prior that makes the expected number of matches
    among all pairs equal the sum of the blocked pairs' match probabilities under it.

    ``bayes_weights`` are log2 Bayes factors (match weight without the prior) of the blocked
    pairs; pairs outside blocking are taken as non-matches.
    """
    lam = start
    w = np.asarray(bayes_weights, dtype=np.float64)
    for _ in range(iterations):
        p = probability(w + prior_weight(lam))
        new = float(np.clip(p.sum() / total_pairs, 1e-15, 0.5))
        if abs(new - lam) <= tol * max(lam, 1e-15):
            lam = new
            break
        lam = new
    return lam


@dataclass(frozen=True)
class ThresholdChoice:
    match_weight: float
    match_probability: float
    how: str
    expected_precision: float
    expected_recall: float
    expected_links: int

    def as_doc(self) -> dict[str, Any]:
        return {"match_weight": self.match_weight, "match_probability": self.match_probability, "how": self.how,
                "expected_precision": self.expected_precision, "expected_recall": self.expected_recall,
                "links": self.expected_links}


def choose_threshold(weights: np.ndarray, threshold: Threshold) -> ThresholdChoice:
    """The link threshold as a match weight, with the model's expected precision and recall there.

    ``weights`` are the final match weights (prior included) of the blocked pairs.
    """
    w = np.sort(np.asarray(weights, dtype=np.float64))[::-1]
    p = probability(w)
    expected_matches = float(p.sum())
    if threshold.auto:
        tp = np.cumsum(p)
        k = np.arange(1, len(p) + 1)
        f1 = 2 * tp / (k + expected_matches) if len(p) else np.zeros(0)
        best = int(np.argmax(f1)) if len(p) else -1
        tw = float(w[best]) if best >= 0 else math.inf
        how = "auto: maximises the model's expected F1"
    elif threshold.match_weight is not None:
        tw = float(threshold.match_weight)
        how = "configured match weight"
    else:
        pr = float(threshold.match_probability)
        tw = math.log2(pr / (1.0 - pr))
        how = "configured match probability"
    sel = w >= tw
    n = int(sel.sum())
    tp = float(p[sel].sum())
    return ThresholdChoice(
        match_weight=tw, match_probability=float(probability(tw)) if math.isfinite(tw) else 1.0, how=how,
        expected_precision=tp / n if n else 1.0,
        expected_recall=tp / expected_matches if expected_matches > 0 else 1.0,
        expected_links=n,
    )


WEIGHT_BIN_BITS = 0.5


def weight_distribution(weights: np.ndarray, floor: float, bin_bits: float = WEIGHT_BIN_BITS) -> dict[str, Any]:
    """The scored pairs' final match weights as a histogram, for the report's threshold diagnostics.

    Bins of ``bin_bits`` aligned on its multiples (``low`` = k * bin_bits), each with its pair count and
    expected matches (sum of match probabilities); empty bins are left out.  Counts only.  Pairs below
    ``floor`` (the prediction floor) were never scored and are not counted.
    """
    w = np.asarray(weights, dtype=np.float64)
    w = w[np.isfinite(w)]
    bins = []
    if len(w):
        k = np.floor(w / bin_bits).astype(np.int64)
        k0 = int(k.min())
        counts = np.bincount(k - k0)
        expected = np.bincount(k - k0, weights=probability(w))
        bins = [{"low": (k0 + i) * bin_bits, "pairs": int(c), "expected_matches": round(float(e), 6)}
                for i, (c, e) in enumerate(zip(counts, expected, strict=True)) if c]
    return {"bin_width": bin_bits, "floor_match_weight": floor, "pairs": len(w), "bins": bins}


@dataclass
class TrainingReport:
    u_seconds: float = 0.0
    em_seconds: float = 0.0
    em_rules: list[EmRule] = field(default_factory=list)
    untrained: list[str] = field(default_factory=list)
    em_expected_matches: dict[str, float] = field(default_factory=dict)
    failed_rules: list[list[str]] = field(default_factory=list)
    prior: float | None = None
    model_source: str = "trained"  # or "given": m and u from a model file, not trained in this run
    u_corrected_with_prior: float | None = None  # the prior correct_u_for_matches used, if it ran
    salt_bank_stand_ins: int = 0  # stand-in records made for salt banks (hub.saltbank)
    salt_bank_u_pairs: int = 0  # sampled (bank record, other record) pairs behind the bank levels' u

    def as_doc(self) -> dict[str, Any]:
        return {"model_source": self.model_source,
                "u_seconds": round(self.u_seconds, 3), "em_seconds": round(self.em_seconds, 3),
                "em_rules": [r.as_doc() for r in self.em_rules], "untrained_comparisons": self.untrained,
                "em_expected_matches": self.em_expected_matches, "failed_em_rules": self.failed_rules,
                "prior": self.prior, "u_corrected_with_prior": self.u_corrected_with_prior,
                "salt_bank_stand_ins": self.salt_bank_stand_ins, "salt_bank_u_pairs": self.salt_bank_u_pairs}


# ---------------------------------------------------------------- SQL of a run


def input_view_sql(columns: Sequence[str], records: str = "hub.records", view: str = "linkage_input") -> str:
    """Input: ``records``.  Output: view ``view`` with the columns Splink reads (the stand-in flag,
    :data:`hub.comparisons.STAND_IN_FLAG`, false: these are the records themselves)."""
    cols = ", ".join(f"FALSE AS {q(c)}" if c == STAND_IN_FLAG else q(c) for c in columns)
    return f"CREATE OR REPLACE VIEW {q(view)} AS SELECT {cols} FROM {q(records)}"


def stand_in_view_sql(columns: Sequence[str], stand_ins: str, records: str = "hub.records",
                      view: str = "linkage_input_predict") -> str:
    """Input: ``records`` and ``stand_ins`` (:func:`hub.saltbank.stand_ins_sql`).  Output: view
    ``view`` of both with the columns Splink reads."""
    cols = ", ".join(q(c) for c in columns)
    record_cols = ", ".join(f"FALSE AS {q(c)}" if c == STAND_IN_FLAG else q(c) for c in columns)
    return (f"CREATE OR REPLACE VIEW {q(view)} AS SELECT {record_cols} FROM {q(records)}"
            f" UNION ALL SELECT {cols} FROM {q(stand_ins)}")


def scored_pairs_sql(predictions: str, output: str = "scored_pairs") -> str:
    """Input: Splink's predictions ``predictions(rid_l, rid_r, match_weight)``; bound: the weight shift
    (new prior weight minus the prior weight predicted with).  Output: table ``output(rid_l, rid_r,
    match_weight, match_probability)`` under the re-estimated prior."""
    return (f"CREATE OR REPLACE TABLE {q(output)} AS SELECT rid_l, rid_r, w AS match_weight,"
            f" 1.0 / (1.0 + pow(2.0, -w)) AS match_probability"
            f" FROM (SELECT rid_l, rid_r, match_weight + CAST(? AS DOUBLE) AS w FROM {predictions})")


def weights_sql(predictions: str) -> str:
    """Input: Splink's predictions table (its physical name, made by Splink).  Output: match_weight."""
    return f"SELECT match_weight FROM {predictions}"


def insert_pairs_sql(scored: str = "scored_pairs", records: str = "hub.records", target: str = "hub.pairs") -> str:
    """Input: ``scored(rid_l, rid_r, match_weight, match_probability)`` and ``records``; bound: run id,
    link threshold weight.  Output: the links appended to ``target``, tokens and datasets on both sides."""
    return (f"INSERT INTO {q(target)} (run_id, token_l, dataset_l, token_r, dataset_r, match_weight,"
            f" match_probability)"
            f" SELECT CAST(? AS VARCHAR), l.token, l.dataset, r.token, r.dataset, s.match_weight, s.match_probability"
            f" FROM {q(scored)} s JOIN {q(records)} l ON l.rid = s.rid_l JOIN {q(records)} r ON r.rid = s.rid_r"
            f" WHERE s.match_weight >= ?")


def insert_run_sql(target: str = "hub.runs") -> str:
    """Input: bound run fields.  Output: one row of ``target``."""
    return (f"INSERT INTO {q(target)} (run_id, started_at, finished_at, delete_after, purpose, legal_basis,"
            f" config, model, summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")


def labels_to_rids_sql(labels: str, records: str = "hub.records", output: str = "label_pairs") -> str:
    """Input: ``labels(dataset_l, token_l, dataset_r, token_r)`` and ``records``.
    Output: table ``output(rid_l, rid_r)`` of the labelled pairs, ``rid_l < rid_r``, deduplicated."""
    return (f"CREATE OR REPLACE TABLE {q(output)} AS SELECT DISTINCT least(a.rid, b.rid) AS rid_l,"
            f" greatest(a.rid, b.rid) AS rid_r FROM {q(labels)} t"
            f" JOIN {q(records)} a ON a.dataset = t.dataset_l AND a.token = t.token_l"
            f" JOIN {q(records)} b ON b.dataset = t.dataset_r AND b.token = t.token_r WHERE a.rid <> b.rid")


def measured_quality_sql(scored: str = "scored_pairs", labels: str = "label_pairs") -> str:
    """Input: ``scored(rid_l, rid_r, match_weight)`` and ``labels(rid_l, rid_r)``; bound: threshold weight.
    Output: (links, true links, labelled pairs)."""
    return (f"SELECT (SELECT count(*) FROM {q(scored)} WHERE match_weight >= ?),"
            f" (SELECT count(*) FROM {q(scored)} s JOIN {q(labels)} t USING (rid_l, rid_r) WHERE s.match_weight >= ?),"
            f" (SELECT count(*) FROM {q(labels)})")


def count_records_sql(records: str = "hub.records") -> str:
    """Input: ``records``.  Output: its row count."""
    return f"SELECT count(*) FROM {q(records)}"


# ---------------------------------------------------------------- a run


@dataclass
class MatchSummary:
    run_id: str
    records: int
    blocking: dict[str, Any]
    training: dict[str, Any]
    link_threshold: dict[str, Any]
    cluster_threshold: dict[str, Any]
    links: int
    clusters: dict[str, Any]
    seconds: dict[str, float]
    model_path: str | None = None
    measured: dict[str, Any] | None = None
    weights: dict[str, Any] | None = None  # weight_distribution() of the scored pairs (for the report)
    engine: str = "duckdb"

    def as_doc(self) -> dict[str, Any]:
        d = {"run_id": self.run_id, "engine": self.engine, "records": self.records, "blocking": self.blocking,
             "training": self.training, "link_threshold": self.link_threshold,
             "cluster_threshold": self.cluster_threshold, "links": self.links, "clusters": self.clusters,
             "seconds": {k: round(v, 3) for k, v in self.seconds.items()}, "model_path": self.model_path}
        if self.measured is not None:
            d["measured"] = self.measured
        if self.weights is not None:
            d["weights"] = self.weights
        return d


def new_run_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def model_path_for(db_path: str | Path, run_id: str) -> Path:
    """Where a run's model JSON goes by default: ``<db>.run-<run_id>.model.json`` beside the database."""
    p = Path(db_path)
    return p.with_name(f"{p.name}.run-{run_id}.model.json")


ENGINES = ("duckdb", "spark")


def model_for_engine(model: dict[str, Any], schema: LinkageSchema, layout: RecordLayout, cfg: RunConfig,
                     engine: str = "duckdb") -> dict[str, Any]:
    """A model's numbers on ``engine``'s comparisons.

    The Splink settings of :func:`settings_dict` for ``engine`` with the prior and every level's m
    and u taken from ``model`` (a model JSON as :func:`run_match` writes it, trained on either
    engine).  Nothing else of ``model`` is used -- its SQL least of all, so a model file cannot
    bring SQL of its own.  Refuses (ConfigError, every problem with its JSON path) a model whose
    comparisons or levels (by label, so Dice thresholds included) are not this schema's and run's.
    """
    out = settings_dict(schema, layout, cfg, engine)
    out["sql_dialect"] = engine
    problems: list[Problem] = []

    def number(v: Any, at: str) -> float | None:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0:
            return float(v)
        problems.append(Problem(at, "must be a number in [0, 1]"))
        return None

    given = model.get("comparisons") if isinstance(model, dict) else None
    if not isinstance(given, list) or len(given) != len(out["comparisons"]):
        problems.append(Problem("$.comparisons", "expected the comparisons " + ", ".join(
            c["output_column_name"] for c in out["comparisons"])))
        given = []
    for i, (comp, g) in enumerate(zip(out["comparisons"], given, strict=False)):
        at = f"$.comparisons[{i}]"
        levels = g.get("comparison_levels") if isinstance(g, dict) else None
        if not isinstance(g, dict) or g.get("output_column_name") != comp["output_column_name"]:
            problems.append(Problem(f"{at}.output_column_name", f"expected {comp['output_column_name']}"))
            continue
        if not isinstance(levels, list) or len(levels) != len(comp["comparison_levels"]):
            problems.append(Problem(f"{at}.comparison_levels", f"expected {len(comp['comparison_levels'])} levels"))
            continue
        for j, (lv, gl) in enumerate(zip(comp["comparison_levels"], levels, strict=True)):
            if not isinstance(gl, dict) or gl.get("label_for_charts") != lv["label_for_charts"]:
                problems.append(Problem(f"{at}.comparison_levels[{j}].label_for_charts",
                                        f"expected {lv['label_for_charts']!r}"))
                continue
            for key in ("m_probability", "u_probability"):
                if gl.get(key) is not None:
                    v = number(gl[key], f"{at}.comparison_levels[{j}].{key}")
                    if v is not None:
                        lv[key] = v
    prior = number(model.get("probability_two_random_records_match") if isinstance(model, dict) else None,
                   "$.probability_two_random_records_match")
    if problems:
        raise ConfigError("model", problems)
    out["probability_two_random_records_match"] = prior
    return out


def records_parquet(con: duckdb.DuckDBPyConnection, db_path: str | Path, layout: RecordLayout) -> Path:
    """The Parquet copy of ``records`` that ingest wrote beside the database (``con``: the database,
    read-only), written again when it is missing or holds another number of rows than ``records``
    (``records`` is only ever appended to, so the count tells a stale copy)."""
    import pyarrow.parquet as pq

    path = parquet_path_for(db_path)
    n = con.execute(count_records_sql("records")).fetchall()[0][0]
    if path.is_file():
        try:
            if pq.ParquetFile(path).metadata.num_rows == n:
                return path
        except (OSError, pa.ArrowException):
            pass
    log.info("writing the Parquet copy of records for Spark: %s", path.name)
    return export_parquet(con, layout, path)


def bigint_words_sql(source: str, columns: Sequence[str], layout: RecordLayout) -> str:
    """Input: ``source`` with filters as HUGEINT words (``layout``: the DuckDB engine's).  Output: a
    query of ``columns`` (the Spark engine's input columns: filters as signed BIGINT words
    ``bf_<f>_w<k>``), each BIGINT word cut from its HUGEINT word as :func:`hub.store.parquet_export_sql`
    cuts the Parquet copy's."""
    cut: dict[str, str] = {}
    for f in layout.filters:
        for w, (hi, lo) in zip(f.words, staging_word_columns(f), strict=True):
            if lo is None:  # a 64-bit word, held unsigned in its HUGEINT
                cut[hi] = (f"CAST(CASE WHEN {q(w)} >= CAST(9223372036854775808 AS HUGEINT)"
                           f" THEN {q(w)} - CAST(18446744073709551616 AS HUGEINT) ELSE {q(w)} END AS BIGINT)")
                continue
            cut[hi] = f"CAST({q(w)} >> 64 AS BIGINT)"
            cut[lo] = (f"CAST(CAST({q(w)} & CAST(9223372036854775807 AS HUGEINT) AS BIGINT)"
                       f" | (CASE WHEN ({q(w)} >> 63) & 1 = 1 THEN CAST(-9223372036854775808 AS BIGINT)"
                       f" ELSE CAST(0 AS BIGINT) END) AS BIGINT)")
    sel = ", ".join(f"{cut[c]} AS {q(c)}" if c in cut else q(c) for c in columns)
    return f"SELECT {sel} FROM {q(source)}"


def parquet_table_sql(output: str, columns: Sequence[str]) -> str:
    """Input: bound path of Parquet files (a glob).  Output: table ``output(<columns>)`` holding them."""
    return (f"CREATE OR REPLACE TABLE {q(output)} AS SELECT {', '.join(q(c) for c in columns)}"
            f" FROM read_parquet(?)")


class DuckDBEngine:
    """Splink on the run's own DuckDB connection (the hub database attached as ``hub``)."""

    name = "duckdb"

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        from splink import DuckDBAPI

        self.con = con
        self.db_api = DuckDBAPI(connection=con)
        self.predictions = 0  # scoring passes so far: each registers its pairs under a fresh name

    def layout(self, layout: RecordLayout) -> RecordLayout:
        return layout

    def rule_sql(self, sql: str) -> str:
        return sql

    def register_input(self, columns: Sequence[str]) -> Any:
        self.con.execute(input_view_sql(columns))
        return self.db_api.register("linkage_input")

    def register_predict_input(self, columns: Sequence[str], stand_ins: str) -> Any:
        """The input for prediction: the records and the salt-bank stand-ins (:mod:`hub.saltbank`)."""
        self.con.execute(stand_in_view_sql(columns, stand_ins))
        return self.db_api.register("linkage_input_predict")

    def predict(self, linker: Any, blocked: str, threshold_weight: float) -> str:
        """Score the pairs of DuckDB table ``blocked``; the name of the DuckDB table of predictions."""
        self.predictions += 1
        bp = self.db_api.register(blocked, table_name=f"aidlink_blocked_pairs_{self.predictions}")
        linker.table_management.register_blocked_pairs_for_predict(bp)
        return linker.inference.predict(threshold_match_weight=threshold_weight, warning_mode="never").physical_name

    def cluster(self, linker: Any, scored: str, threshold_weight: float) -> str:
        """Cluster DuckDB table ``scored``; the name of the DuckDB table ``(cluster_id, rid, ...)``."""
        from .cluster import cluster_links

        return cluster_links(linker, self.db_api, scored, threshold_weight)


class SparkEngine:
    """Splink on a Spark session; DuckDB keeps what needs one machine's view.

    Spark reads the records from the Parquet copy ingest wrote and does the work that grows with
    the pairs: u sampling, EM, scoring, clustering.  Blocking (keyed-hash and LSH SQL, numba CLK
    candidates) runs on DuckDB as for the DuckDB engine, so both engines score exactly the same
    pairs; its pair list travels to Spark as Parquet.  The predictions come back as Parquet for the
    prior, thresholds and storing (DuckDB, small: only pairs with a Bayes factor of at least 1), and
    the scored pairs go to Spark once more for clustering, which comes back as Parquet too.  The
    files live in a run directory that is removed afterwards (:func:`hub.spark.run_directory`).
    """

    name = "spark"

    def __init__(self, con: duckdb.DuckDBPyConnection, session: Any, run_dir: Path, records: Path,
                 layout: RecordLayout) -> None:
        from splink.backends.spark import SparkAPI

        from .spark import lineage_method

        self.con = con
        self.session = session
        self.run_dir = run_dir
        self.records = records
        self.duckdb_layout = layout
        self.files = 0
        self.db_api = SparkAPI(spark_session=session, register_udfs_automatically=True,
                               break_lineage_method=lineage_method(session.sparkContext.master))

    def _path(self, name: str) -> Path:
        """A fresh exchange file or directory in the run directory (a table may travel more than once)."""
        self.files += 1
        return self.run_dir / f"{self.files:03d}-{name}"

    def layout(self, layout: RecordLayout) -> RecordLayout:
        from .comparisons import bigint_layout

        return bigint_layout(layout)

    def rule_sql(self, sql: str) -> str:
        from .comparisons import spark_sql

        return spark_sql(sql)

    def register_input(self, columns: Sequence[str]) -> Any:
        from pyspark.sql import functions as F

        from .spark import read_parquet_view

        read_parquet_view(self.session, self.records, "linkage_input", [c for c in columns if c != STAND_IN_FLAG])
        if STAND_IN_FLAG in columns:  # the records themselves: no stand-in among them
            self.session.table("linkage_input").withColumn(STAND_IN_FLAG, F.lit(False)).select(
                *columns).createOrReplaceTempView("linkage_input")
        return self.db_api.register("linkage_input")

    def register_predict_input(self, columns: Sequence[str], stand_ins: str) -> Any:
        """The records and the salt-bank stand-ins (:mod:`hub.saltbank`, made on DuckDB with HUGEINT
        words; their words are cut into BIGINT words on the way to Spark)."""
        from .spark import read_parquet_view

        path = self._path(f"{stand_ins}.parquet")
        self.con.sql(bigint_words_sql(stand_ins, columns, self.duckdb_layout)).write_parquet(str(path))
        read_parquet_view(self.session, path, stand_ins)
        both = self.session.table("linkage_input").unionByName(self.session.table(stand_ins))
        both.createOrReplaceTempView("linkage_input_predict")
        return self.db_api.register("linkage_input_predict")

    def _to_spark(self, table: str) -> None:
        from .spark import read_parquet_view

        path = self._path(f"{table}.parquet")
        self.con.table(table).write_parquet(str(path))
        read_parquet_view(self.session, path, table)

    def _from_spark(self, physical: str, columns: list[str], output: str,
                    at_least: tuple[str, float] | None = None) -> str:
        from .spark import write_parquet

        path = write_parquet(self.session, physical, columns, self._path(output), at_least)
        self.con.execute(parquet_table_sql(output, columns), [str(path / "*.parquet")])
        return output

    def predict(self, linker: Any, blocked: str, threshold_weight: float) -> str:
        self._to_spark(blocked)
        bp = self.db_api.register(blocked, table_name=f"aidlink_blocked_pairs_{self.files}")
        linker.table_management.register_blocked_pairs_for_predict(bp)
        # No threshold inside Splink's predict: Spark pushes that filter down into the scoring and
        # repeats every comparison's CASE in it for each use of its gamma (measured: scoring 6x
        # slower); the pairs are scored first and cut at the threshold on the way out instead.
        predictions = linker.inference.predict(warning_mode="never")
        return self._from_spark(predictions.physical_name, ["rid_l", "rid_r", "match_weight"], "spark_predictions",
                                at_least=("match_weight", threshold_weight))

    def cluster(self, linker: Any, scored: str, threshold_weight: float) -> str:
        from .cluster import cluster_nodes

        self._to_spark(scored)
        self.session.table("linkage_input").select("rid").createOrReplaceTempView("aidlink_nodes")
        clusters = cluster_nodes(self.db_api, "aidlink_nodes", scored, threshold_weight)
        return self._from_spark(clusters, ["cluster_id", "rid"], "spark_clusters")


def run_match(db_path: str | Path, cfg: RunConfig, *, run_id: str | None = None, now: datetime | None = None,
              model_path: str | Path | None = None, memory_limit: str | None = "6GB",
              threads: int | None = None, labels: pa.Table | None = None,
              work_dir: str | Path | None = None, engine: str = "duckdb", model: dict[str, Any] | None = None,
              spark_session: Any | None = None, spark_master: str = "local[*]",
              spark_conf: dict[str, str] | None = None) -> MatchSummary:
    """Block, train, predict and cluster everything ingested into ``db_path``; store the run.

    ``labels`` (dataset_l, token_l, dataset_r, token_r), when given, only adds measured blocking
    recall, precision and recall to the summary: nothing is chosen with them.

    ``engine="spark"`` trains, scores and clusters on Spark (:class:`SparkEngine`): on
    ``spark_session`` if given (left running), else on a session started on ``spark_master`` with
    ``spark_conf`` (:mod:`hub.spark`) and stopped at the end.  Blocking, the prior, the thresholds
    and the stored results are the DuckDB engine's, in the same hub database.

    ``model`` (a model JSON as this function writes it, from either engine) skips training: its m,
    u are used as they are (:func:`model_for_engine`); the prior is re-estimated as usual.
    """
    from splink import Linker

    from .block import build_blocked_pairs
    from .cluster import cluster_sizes_sql, insert_clusters_sql

    if engine not in ENGINES:
        raise ConfigError("match", [Problem("engine", f"must be one of {', '.join(ENGINES)}")])
    started = (now or datetime.now(UTC)).replace(tzinfo=None)
    run_id = run_id or new_run_id(started)
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("splink").setLevel(logging.ERROR)  # its training chatter; --debug shows it
        logging.getLogger("py4j").setLevel(logging.ERROR)
    seconds: dict[str, float] = {}
    t_all = time.perf_counter()

    meta_con = connect(db_path, read_only=True)
    try:
        meta = read_meta(meta_con)
        if not meta.initialised:
            raise StateError(f"{db_path}: nothing has been ingested yet (run `linkage-hub ingest` first)")
        schema = schema_from_document(meta.schema_document, "hub database schema")
        if schema.fingerprint != meta.schema_fingerprint:
            raise StateError("the schema stored in this hub database no longer has its recorded fingerprint "
                             "(this linkage-hub's normaliser or encoding versions differ from those that made "
                             "the data)")
        layout = RecordLayout.from_schema(schema, meta.lsh)
        given = model_for_engine(model, schema, layout, cfg, "duckdb") if model is not None else None
        parquet = records_parquet(meta_con, db_path, layout) if engine == "spark" else None
    finally:
        meta_con.close()

    config: dict[str, Any] = {}
    if memory_limit:
        config["memory_limit"] = memory_limit
    if threads:
        config["threads"] = threads
    scratch = Path(work_dir) if work_dir else Path(db_path).with_name(Path(db_path).name + ".tmp")
    scratch_is_ours = not scratch.exists()
    config["temp_directory"] = str(scratch)
    con = duckdb.connect(":memory:", config=config)
    engines = contextlib.ExitStack()
    try:
        con.execute("SET enable_progress_bar = false")  # it would print on stdout
        con.execute("ATTACH ? AS hub", [str(db_path)])
        n = con.execute(count_records_sql()).fetchall()[0][0]
        if n < 2:
            raise StateError(f"{db_path}: fewer than two records ingested; nothing to link")

        t = time.perf_counter()
        blocking = build_blocked_pairs(con, "hub.records", layout, cfg.blocking)
        seconds["blocking"] = time.perf_counter() - t
        log.info("blocking: %d pairs in %.1f s (%s)", blocking.pairs, seconds["blocking"],
                 ", ".join(f"{r.description}: {r.pairs_first_found} in {r.seconds:.1f} s" for r in blocking.rules))

        # EM plan from the candidate keys' pair counts
        t = time.perf_counter()
        if given is not None:
            rules, untrained = [], []
        elif cfg.training.em_rules is None:
            candidates = list(layout.exact + layout.keys) + [b.columns[0] for b in layout.lsh]
            counts = {c: int(con.execute(candidate_pairs_sql("hub.records", [c])).fetchall()[0][0])
                      for c in candidates}
            rules, untrained = em_plan(schema, layout, counts, n)
        else:
            rules, untrained = em_plan(schema, layout, {}, n, cfg.training.em_rules)
            rules = [EmRule(r.columns, r.trains, r.fixed,
                            int(con.execute(candidate_pairs_sql("hub.records", r.columns)).fetchall()[0][0]))
                     for r in rules]
        em_columns = [c for r in rules for c in r.columns]
        if engine == "spark":
            from .spark import hub_spark, run_directory

            t_spark = time.perf_counter()
            hs = engines.enter_context(hub_spark(spark_session, spark_master, spark_conf))
            eng: DuckDBEngine | SparkEngine = SparkEngine(
                con, hs.session, engines.enter_context(run_directory(hs.session, scratch)), parquet, layout)
            seconds["spark_session"] = time.perf_counter() - t_spark
        else:
            eng = DuckDBEngine(con)
        sdf = eng.register_input(input_columns(schema, eng.layout(layout), em_columns))
        # validate_settings=False: Splink's check only logs columns missing from the input, and parses every
        # level's SQL with sqlglot to do so -- seconds per Linker for the 16-word Dice levels, for nothing:
        # the settings are built from the schema, over the very columns registered
        linker = Linker(sdf, settings_dict(schema, layout, cfg, engine), log_level=None, validate_settings=False)
        seconds["setup"] = time.perf_counter() - t

        report = TrainingReport(em_rules=rules, untrained=untrained)
        if given is not None:
            report.model_source = "given"
            native = model_for_engine(given, schema, layout, cfg, engine)
            native["probability_two_random_records_match"] = INITIAL_PRIOR
            model = given
        else:
            t = time.perf_counter()
            linker.training.estimate_u_using_random_sampling(
                max_pairs=cfg.training.u_max_pairs, seed=cfg.seed, min_count_per_level=None, num_chunks=1)
            report.u_seconds = seconds["u"] = time.perf_counter() - t
            log.info("u estimated in %.1f s", seconds["u"])
            t = time.perf_counter()
            m_matches: dict[str, float] = {}
            for r in rules:
                session = em_session(linker, eng.rule_sql(r.sql(schema, layout)), cfg.training.em_max_pairs,
                                     cfg.training.em_max_iterations)
                if session is None:
                    log.warning("EM on %s failed; its session is skipped", "+".join(r.columns))
                    report.failed_rules.append(list(r.columns))
                    continue
                pairs = min(r.pairs or 0, cfg.training.em_max_pairs or math.inf)
                expected = session.core_model_settings.probability_two_random_records_match * pairs
                for name in r.trains:
                    m_matches[name] = m_matches.get(name, 0.0) + expected
            report.em_seconds = seconds["em"] = time.perf_counter() - t
            log.info("EM (%d sessions) in %.1f s", len(rules), seconds["em"])
            trained = {name for r in rules if list(r.columns) not in report.failed_rules for name in r.trains}
            report.untrained = [c.name for c in specs(schema, layout) if c.name not in trained]
            u_pairs = min(cfg.training.u_max_pairs, n * (n - 1) / 2)
            trained_raw = linker.misc.save_model_to_json()
            native = smooth_model(trained_raw, u_pairs, m_matches)
            report.em_expected_matches = {k: round(v, 1) for k, v in m_matches.items()}
        linker = Linker(sdf, native, log_level=None, validate_settings=False)

        # salt banks: a stand-in record per bank and chosen slots, pairs rewritten to it (hub.saltbank)
        predict_sdf, predict_pairs = sdf, blocking.table
        if layout.banks:
            t = time.perf_counter()
            predict_pairs, stand_ins = resolve_salt_banks(  # on DuckDB, over hub.records: its own layout
                con, layout, blocking.table, input_columns(schema, layout, em_columns))
            report.salt_bank_stand_ins = stand_ins
            predict_sdf = eng.register_predict_input(input_columns(schema, eng.layout(layout), em_columns),
                                                     saltbank.STAND_INS)
            if given is None:  # the bank levels' u by sampling, their m from their twins
                bank_counts, bank_pairs = bank_level_counts(con, schema, layout, cfg,
                                                            input_columns(schema, layout, em_columns))
                report.salt_bank_u_pairs = bank_pairs
                native = fill_bank_levels(native, bank_counts, bank_pairs)
            seconds["salt_banks"] = time.perf_counter() - t

        def predict(model_json: dict[str, Any]) -> tuple[str, np.ndarray, float]:
            plinker = Linker(predict_sdf, model_json, log_level=None, validate_settings=False)
            pred = eng.predict(plinker, predict_pairs, w0 + BAYES_FLOOR_BITS)
            raw = con.execute(weights_sql(pred)).fetchnumpy()["match_weight"]
            bayes = np.asarray(raw, dtype=np.float64) - w0
            return pred, bayes, estimate_prior(bayes, n * (n - 1) / 2)

        t = time.perf_counter()
        w0 = prior_weight(INITIAL_PRIOR)
        predictions, bayes, prior = predict(native)
        seconds["predict"] = time.perf_counter() - t
        log.info("predict: %d pairs in %.1f s", blocking.pairs, seconds["predict"])
        predict_rate = blocking.pairs / seconds["predict"] if seconds["predict"] > 0 else None
        if given is None and cfg.training.correct_u:
            # take the sampled matches out of u under this prior, then score again (correct_u_for_matches)
            t = time.perf_counter()
            native = smooth_model(correct_u_for_matches(trained_raw, u_pairs, prior), u_pairs, m_matches)
            if layout.banks:
                native = fill_bank_levels(native, bank_counts, bank_pairs)
            report.u_corrected_with_prior = prior
            predictions, bayes, prior = predict(native)
            seconds["predict_u_corrected"] = time.perf_counter() - t
            linker = Linker(sdf, native, log_level=None, validate_settings=False)
        if given is None:
            # the model is stored as the DuckDB engine writes it, whichever engine trained it
            model = native if engine == "duckdb" else model_for_engine(native, schema, layout, cfg, "duckdb")

        t = time.perf_counter()
        report.prior = prior
        shift = prior_weight(prior) - w0
        con.execute(scored_pairs_sql(predictions), [shift])
        if layout.banks:
            con.execute(saltbank.stand_in_map_sql())
            con.execute(saltbank.map_back_sql("scored_pairs"))
        final = bayes + prior_weight(prior)
        link = choose_threshold(final, cfg.link_threshold)
        cluster_th = link if cfg.cluster_threshold is None else choose_threshold(final, cfg.cluster_threshold)
        model["probability_two_random_records_match"] = prior
        clusters_table = eng.cluster(linker, "scored_pairs", cluster_th.match_weight)
        sizes = dict(con.execute(cluster_sizes_sql(clusters_table)).fetchall())
        seconds["prior_threshold_cluster"] = time.perf_counter() - t
        engines.close()  # the Spark session (if ours) is not needed any more

        measured = None
        if labels is not None:
            measured = _measure(con, labels, blocking.table, link.match_weight)

        t = time.perf_counter()
        mpath = Path(model_path) if model_path else model_path_for(db_path, run_id)
        summary = MatchSummary(
            run_id=run_id, records=int(n), blocking=blocking.as_doc(), training=report.as_doc(),
            link_threshold=link.as_doc(), cluster_threshold=cluster_th.as_doc(), links=link.expected_links,
            clusters={"count": int(sum(sizes.values())), "linked_records": int(sum(k * v for k, v in sizes.items() if k > 1)),
                      "largest": int(max(sizes) if sizes else 0)},
            seconds=seconds, model_path=str(mpath), measured=measured,
            weights=weight_distribution(final, prior_weight(prior) + BAYES_FLOOR_BITS), engine=engine)
        summary.blocking["pairs_scored_per_second"] = round(predict_rate) if predict_rate else None
        finished = datetime.now(UTC).replace(tzinfo=None)
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(insert_pairs_sql(), [run_id, link.match_weight])
            con.execute(insert_clusters_sql(clusters_table), [run_id])
            con.execute(insert_run_sql(), [
                run_id, started, finished, (started + timedelta(days=cfg.retention_days)).date(),
                cfg.purpose, cfg.legal_basis, json.dumps(cfg.as_doc(), sort_keys=True),
                json.dumps(model, sort_keys=True), json.dumps(summary.as_doc(), sort_keys=True, default=str)])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        write_json_atomic(mpath, model)
        seconds["store"] = time.perf_counter() - t
        seconds["total"] = time.perf_counter() - t_all
        return summary
    finally:
        engines.close()
        con.close()
        if scratch_is_ours:
            shutil.rmtree(scratch, ignore_errors=True)


BAYES_FLOOR_BITS = 0.0


def _start_from_defaults(core_model_settings: Any) -> None:
    """Clear the current m of every level (Splink then starts EM from its defaults); the trained
    estimates of earlier sessions stay in each level's history."""
    for comparison in core_model_settings.comparisons:
        for level in comparison._comparison_levels_excluding_null:
            level._m_probability = None


def em_session(linker: Any, rule_sql: str, max_pairs: float | None, max_iterations: int) -> Any | None:
    """One EM session, robust to two Splink 5 behaviours (the session, or None if it cannot run).

    * A level that only non-matches reach in the block sees its m shrink each
      iteration until it underflows to exactly 0.0, which Splink's own setter
      refuses (ValueError), aborting the session.  The session is then re-run
      with half the iterations (stopping before the collapse), down to 2.
    * A failed session leaves the linker's comparisons filtered to the ones it
      was training; the settings are restored from a copy before retrying.
    * Every session starts from Splink's default m values, not from the median
      of the earlier sessions: an m that an earlier session drove towards 0
      would otherwise start this one at the collapse.  The earlier sessions'
      estimates are kept (Splink takes the median over all of them afterwards).
    """
    from splink.internals.exceptions import SplinkException

    settings = linker._settings_obj
    saved = copy.deepcopy(settings.core_model_settings)
    original = settings.training_settings
    iterations = max_iterations
    try:
        while True:
            _start_from_defaults(settings.core_model_settings)
            settings.training_settings = dataclasses.replace(original, max_iterations=iterations)
            try:
                return linker.training.estimate_parameters_using_expectation_maximisation(
                    rule_sql, estimate_without_term_frequencies=True, max_pairs=max_pairs)
            except (ValueError, SplinkException):
                settings.core_model_settings = copy.deepcopy(saved)
                if iterations <= 2:
                    return None
                iterations = max(2, iterations // 2)
    finally:
        settings.training_settings = original


def _measure(con: duckdb.DuckDBPyConnection, labels: pa.Table, blocked: str, link_weight: float) -> dict[str, Any]:
    from .block import blocking_recall_sql

    con.register("aidlink_labels", labels)
    try:
        con.execute(labels_to_rids_sql("aidlink_labels"))
    finally:
        con.unregister("aidlink_labels")
    n_true, n_found = con.execute(blocking_recall_sql(blocked, "label_pairs")).fetchall()[0]
    links, true_links, n_labels = con.execute(measured_quality_sql(), [link_weight, link_weight]).fetchall()[0]
    precision = true_links / links if links else 1.0
    recall = true_links / n_labels if n_labels else 1.0
    return {"labelled_pairs": int(n_labels), "blocking_recall": n_found / n_true if n_true else 1.0,
            "links": int(links), "true_links": int(true_links), "precision": precision, "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0}


def write_json_atomic(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(path)
