"""The run configuration of ``linkage-hub match`` (``schemas/run-config.schema.json``).

Validated on load (JSON Schema, every problem with its JSON path), then on
meaning (cross-field checks), into frozen dataclasses.  Every key is optional
except ``version``; the defaults link well without tuning and choose no
threshold with labels.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linkage.documents import read_json, validate_document
from linkage.errors import ConfigError, Problem

DEFAULT_DICE_LEVELS = (0.95, 0.85, 0.7)


@dataclass(frozen=True)
class Threshold:
    """One threshold: a match probability, a match weight, or ``auto``."""

    match_probability: float | None = None
    match_weight: float | None = None
    auto: str | None = None

    @classmethod
    def from_doc(cls, doc: dict[str, Any] | None, default: Threshold) -> Threshold:
        if not doc:
            return default
        return cls(doc.get("match_probability"), doc.get("match_weight"), doc.get("auto"))

    def as_doc(self) -> dict[str, Any]:
        if self.auto:
            return {"auto": self.auto}
        if self.match_weight is not None:
            return {"match_weight": self.match_weight}
        return {"match_probability": self.match_probability}


@dataclass(frozen=True)
class LshConfig:
    enabled: bool = True
    fields: tuple[str, ...] | None = None  # None: the schema's choice (see hub.block)
    max_block_size: int = 200


@dataclass(frozen=True)
class ClkCandidateConfig:
    enabled: bool = True
    threshold: float = 0.8
    k: int | None = 10
    exhaustive_max_pairs: float = 2e9
    lsh: bool = False  # one bit-sampling LSH pass over all CLKs for the larger dataset pairs


@dataclass(frozen=True)
class BlockingConfig:
    keys: tuple[str, ...] | None = None  # None: every eh_ and bk_ column of the schema
    max_block_size: int = 1000
    max_pairs_per_record: float = 5.0
    lsh: LshConfig = field(default_factory=LshConfig)
    clk_candidates: ClkCandidateConfig = field(default_factory=ClkCandidateConfig)


@dataclass(frozen=True)
class TrainingConfig:
    u_max_pairs: float = 1e6
    em_max_pairs: float | None = 2e6
    em_max_iterations: int = 25
    em_rules: tuple[tuple[str, ...], ...] | None = None  # None: chosen from the schema
    correct_u: bool = True  # take the sampled matches out of u (hub.model.correct_u_for_matches)


@dataclass(frozen=True)
class RunConfig:
    version: int = 1
    purpose: str = ""
    legal_basis: str = ""
    retention_days: int = 180
    seed: int = 20240601
    link_threshold: Threshold = field(default_factory=lambda: Threshold(match_probability=0.9))
    cluster_threshold: Threshold | None = None  # None: the link threshold
    dice_levels: tuple[float, ...] = DEFAULT_DICE_LEVELS
    blocking: BlockingConfig = field(default_factory=BlockingConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    document: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def effective_cluster_threshold(self) -> Threshold:
        return self.cluster_threshold or self.link_threshold

    def as_doc(self) -> dict[str, Any]:
        """The effective configuration as a document (defaults filled in)."""
        b, t = self.blocking, self.training
        return {
            "version": self.version,
            "purpose": self.purpose,
            "legal_basis": self.legal_basis,
            "retention_days": self.retention_days,
            "seed": self.seed,
            "thresholds": {"link": self.link_threshold.as_doc(),
                           "cluster": self.effective_cluster_threshold.as_doc()},
            "comparisons": {"dice_levels": list(self.dice_levels)},
            "blocking": {
                "keys": list(b.keys) if b.keys is not None else "schema",
                "max_block_size": b.max_block_size,
                "max_pairs_per_record": b.max_pairs_per_record,
                "lsh": {"enabled": b.lsh.enabled,
                        "fields": list(b.lsh.fields) if b.lsh.fields is not None else "schema",
                        "max_block_size": b.lsh.max_block_size},
                "clk_candidates": {"enabled": b.clk_candidates.enabled, "threshold": b.clk_candidates.threshold,
                                   "k": b.clk_candidates.k,
                                   "exhaustive_max_pairs": b.clk_candidates.exhaustive_max_pairs,
                                   "lsh": b.clk_candidates.lsh},
            },
            "training": {
                "u_max_pairs": t.u_max_pairs,
                "em_max_pairs": t.em_max_pairs, "em_max_iterations": t.em_max_iterations,
                "em_rules": [list(r) for r in t.em_rules] if t.em_rules is not None else "auto",
                "correct_u": t.correct_u,
            },
        }


def _meaning_problems(doc: dict[str, Any]) -> list[Problem]:
    problems = []
    levels = (doc.get("comparisons") or {}).get("dice_levels")
    if levels is not None:
        if any(b >= a for a, b in itertools.pairwise(levels)):
            problems.append(Problem("$.comparisons.dice_levels", "levels must be strictly decreasing"))
        for i, x in enumerate(levels):
            if abs(round(x * 10000) - x * 10000) > 1e-6:
                problems.append(Problem(f"$.comparisons.dice_levels[{i}]", "at most four decimals"))
    return problems


def run_config_from_document(doc: Any, source: str = "<run config>") -> RunConfig:
    """Validate a parsed run-config document and build the frozen RunConfig."""
    validate_document(doc, "run-config", source)
    problems = _meaning_problems(doc)
    if problems:
        raise ConfigError(source, problems)
    base = RunConfig()
    th = doc.get("thresholds") or {}
    bl = doc.get("blocking") or {}
    lsh = bl.get("lsh") or {}
    clk = bl.get("clk_candidates") or {}
    tr = doc.get("training") or {}
    b0, t0 = base.blocking, base.training
    keys = bl.get("keys", "schema")
    lsh_fields = lsh.get("fields", "schema")
    em_rules = tr.get("em_rules", "auto")
    return RunConfig(
        version=doc["version"],
        purpose=doc.get("purpose", base.purpose),
        legal_basis=doc.get("legal_basis", base.legal_basis),
        retention_days=doc.get("retention_days", base.retention_days),
        seed=doc.get("seed", base.seed),
        link_threshold=Threshold.from_doc(th.get("link"), base.link_threshold),
        cluster_threshold=Threshold.from_doc(th.get("cluster"), None) if th.get("cluster") else None,
        dice_levels=tuple(float(x) for x in (doc.get("comparisons") or {}).get("dice_levels", base.dice_levels)),
        blocking=BlockingConfig(
            keys=None if keys == "schema" else tuple(keys),
            max_block_size=bl.get("max_block_size", b0.max_block_size),
            max_pairs_per_record=bl.get("max_pairs_per_record", b0.max_pairs_per_record),
            lsh=LshConfig(enabled=lsh.get("enabled", b0.lsh.enabled),
                          fields=None if lsh_fields == "schema" else tuple(lsh_fields),
                          max_block_size=lsh.get("max_block_size", b0.lsh.max_block_size)),
            clk_candidates=ClkCandidateConfig(
                enabled=clk.get("enabled", b0.clk_candidates.enabled),
                threshold=clk.get("threshold", b0.clk_candidates.threshold),
                k=clk.get("k", b0.clk_candidates.k),
                exhaustive_max_pairs=clk.get("exhaustive_max_pairs", b0.clk_candidates.exhaustive_max_pairs),
                lsh=clk.get("lsh", b0.clk_candidates.lsh)),
        ),
        training=TrainingConfig(
            u_max_pairs=tr.get("u_max_pairs", t0.u_max_pairs),
            em_max_pairs=tr.get("em_max_pairs", t0.em_max_pairs),
            em_max_iterations=tr.get("em_max_iterations", t0.em_max_iterations),
            em_rules=None if em_rules == "auto" else tuple(tuple(r) for r in em_rules),
            correct_u=tr.get("correct_u", t0.correct_u),
        ),
        document=doc,
    )


def load_run_config(path: str | Path | None) -> RunConfig:
    """Load a run config file, or the defaults when ``path`` is None."""
    if path is None:
        return RunConfig(document={"version": 1})
    return run_config_from_document(read_json(path), str(path))
