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

from .comparisons import SHARED_NORMALISERS, ComparisonSpec, comparison_specs, schema_comparisons
from .runconfig import DEFAULT_DICE_LEVELS, RunConfig, Threshold
from .store import RecordLayout, connect, q, read_meta

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
        if f.derive_from:
            d.add(f.derive_from)
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


# ---------------------------------------------------------------- settings


def settings_dict(schema: LinkageSchema, layout: RecordLayout, cfg: RunConfig) -> dict[str, Any]:
    """The Splink settings (backend-free, as a dict) for this schema and run."""
    return {
        "link_type": "dedupe_only",
        "unique_id_column_name": "rid",
        "comparisons": schema_comparisons(schema, layout, cfg.dice_levels),
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


@dataclass
class TrainingReport:
    u_seconds: float = 0.0
    em_seconds: float = 0.0
    em_rules: list[EmRule] = field(default_factory=list)
    untrained: list[str] = field(default_factory=list)
    em_expected_matches: dict[str, float] = field(default_factory=dict)
    failed_rules: list[list[str]] = field(default_factory=list)
    prior: float | None = None

    def as_doc(self) -> dict[str, Any]:
        return {"u_seconds": round(self.u_seconds, 3), "em_seconds": round(self.em_seconds, 3),
                "em_rules": [r.as_doc() for r in self.em_rules], "untrained_comparisons": self.untrained,
                "em_expected_matches": self.em_expected_matches, "failed_em_rules": self.failed_rules,
                "prior": self.prior}


# ---------------------------------------------------------------- SQL of a run


def input_view_sql(columns: Sequence[str], records: str = "hub.records", view: str = "linkage_input") -> str:
    """Input: ``records``.  Output: view ``view`` with the columns Splink reads."""
    return f"CREATE OR REPLACE VIEW {q(view)} AS SELECT {', '.join(q(c) for c in columns)} FROM {q(records)}"


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

    def as_doc(self) -> dict[str, Any]:
        d = {"run_id": self.run_id, "records": self.records, "blocking": self.blocking,
             "training": self.training, "link_threshold": self.link_threshold,
             "cluster_threshold": self.cluster_threshold, "links": self.links, "clusters": self.clusters,
             "seconds": {k: round(v, 3) for k, v in self.seconds.items()}, "model_path": self.model_path}
        if self.measured is not None:
            d["measured"] = self.measured
        return d


def new_run_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def model_path_for(db_path: str | Path, run_id: str) -> Path:
    """Where a run's model JSON goes by default: ``<db>.run-<run_id>.model.json`` beside the database."""
    p = Path(db_path)
    return p.with_name(f"{p.name}.run-{run_id}.model.json")


def run_match(db_path: str | Path, cfg: RunConfig, *, run_id: str | None = None, now: datetime | None = None,
              model_path: str | Path | None = None, memory_limit: str | None = "6GB",
              threads: int | None = None, labels: pa.Table | None = None,
              work_dir: str | Path | None = None) -> MatchSummary:
    """Block, train, predict and cluster everything ingested into ``db_path``; store the run.

    ``labels`` (dataset_l, token_l, dataset_r, token_r), when given, only adds measured blocking
    recall, precision and recall to the summary: nothing is chosen with them.
    """
    from splink import DuckDBAPI, Linker

    from .block import build_blocked_pairs
    from .cluster import cluster_links, cluster_sizes_sql, insert_clusters_sql

    started = (now or datetime.now(UTC)).replace(tzinfo=None)
    run_id = run_id or new_run_id(started)
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("splink").setLevel(logging.ERROR)  # its training chatter; --debug shows it
    seconds: dict[str, float] = {}
    t_all = time.perf_counter()

    meta_con = connect(db_path, read_only=True)
    try:
        meta = read_meta(meta_con)
    finally:
        meta_con.close()
    if not meta.initialised:
        raise StateError(f"{db_path}: nothing has been ingested yet (run `linkage-hub ingest` first)")
    schema = schema_from_document(meta.schema_document, "hub database schema")
    if schema.fingerprint != meta.schema_fingerprint:
        raise StateError("the schema stored in this hub database no longer has its recorded fingerprint "
                         "(this linkage-hub's normaliser or encoding versions differ from those that made the data)")
    layout = RecordLayout.from_schema(schema, meta.lsh)

    config: dict[str, Any] = {}
    if memory_limit:
        config["memory_limit"] = memory_limit
    if threads:
        config["threads"] = threads
    scratch = Path(work_dir) if work_dir else Path(db_path).with_name(Path(db_path).name + ".tmp")
    scratch_is_ours = not scratch.exists()
    config["temp_directory"] = str(scratch)
    con = duckdb.connect(":memory:", config=config)
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
        if cfg.training.em_rules is None:
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
        con.execute(input_view_sql(input_columns(schema, layout, em_columns)))

        db_api = DuckDBAPI(connection=con)
        sdf = db_api.register("linkage_input")
        linker = Linker(sdf, settings_dict(schema, layout, cfg), log_level=None)
        seconds["setup"] = time.perf_counter() - t

        report = TrainingReport(em_rules=rules, untrained=untrained)
        t = time.perf_counter()
        linker.training.estimate_u_using_random_sampling(
            max_pairs=cfg.training.u_max_pairs, seed=cfg.seed, min_count_per_level=None, num_chunks=1)
        report.u_seconds = seconds["u"] = time.perf_counter() - t
        log.info("u estimated in %.1f s", seconds["u"])
        t = time.perf_counter()
        m_matches: dict[str, float] = {}
        for r in rules:
            session = em_session(linker, r.sql(schema, layout), cfg.training.em_max_pairs,
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
        model = smooth_model(linker.misc.save_model_to_json(), u_pairs, m_matches)
        report.em_expected_matches = {k: round(v, 1) for k, v in m_matches.items()}
        linker = Linker(sdf, model, log_level=None)

        t = time.perf_counter()
        bp = db_api.register(blocking.table, table_name="aidlink_blocked_pairs")
        linker.table_management.register_blocked_pairs_for_predict(bp)
        w0 = prior_weight(INITIAL_PRIOR)
        predictions = linker.inference.predict(threshold_match_weight=w0 + BAYES_FLOOR_BITS, warning_mode="never")
        seconds["predict"] = time.perf_counter() - t
        log.info("predict: %d pairs in %.1f s", blocking.pairs, seconds["predict"])
        predict_rate = blocking.pairs / seconds["predict"] if seconds["predict"] > 0 else None

        t = time.perf_counter()
        raw = con.execute(weights_sql(predictions.physical_name)).fetchnumpy()["match_weight"]
        bayes = np.asarray(raw, dtype=np.float64) - w0
        total_pairs = n * (n - 1) / 2
        prior = estimate_prior(bayes, total_pairs)
        report.prior = prior
        shift = prior_weight(prior) - w0
        con.execute(scored_pairs_sql(predictions.physical_name), [shift])
        final = bayes + prior_weight(prior)
        link = choose_threshold(final, cfg.link_threshold)
        cluster_th = link if cfg.cluster_threshold is None else choose_threshold(final, cfg.cluster_threshold)
        model["probability_two_random_records_match"] = prior
        clusters_table = cluster_links(linker, db_api, "scored_pairs", cluster_th.match_weight)
        sizes = dict(con.execute(cluster_sizes_sql(clusters_table)).fetchall())
        seconds["prior_threshold_cluster"] = time.perf_counter() - t

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
            seconds=seconds, model_path=str(mpath), measured=measured)
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
