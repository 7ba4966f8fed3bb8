"""The linkage report: what a compliance reviewer needs to judge one match run, and nothing more.

Two steps, kept apart so that each can be checked on its own:

* :func:`gather_report` reads the hub database (read-only) and returns the
  **report document**: a plain dict validated by ``schemas/report.schema.json``
  (reference ``docs/formats/report.md``).  It is a function of the database,
  the run id, the rule set, the roster (optional), the audit log beside the
  database and the clock, and of nothing else.  Counts, parameters,
  fingerprints and aggregate statistics only: never a token, a filter, a
  keyed hash or a raw identifier (none reaches the hub; the tokens, filters
  and hashes that do are read only through counts and aggregates).
* :func:`render_html` turns a document into one self-contained HTML page, in
  Chinese or English (``lang``; a message catalogue, ``report_messages.json``,
  holds every string of the page in both).  The page makes no request to any
  other host: styles and scripts are inline, and the charts are Vega-Lite
  specifications (part of the document, ``charts``) drawn by the Vega,
  Vega-Lite and Vega-Embed builds that Splink itself ships for its offline
  charts (``splink/internals/files/external_js``), inlined.

Charts.  The model's match weights, its m and u, the histogram of match
weights and the waterfall come from Splink's own chart classes, fed from the
stored model and counts.  The waterfall shows a few **synthetic** comparison
vectors (agreement patterns made up from the model's levels, not pairs of
the run), built with Splink's ``remove_sensitive_data`` path (no column
value).  The threshold curve, the bit-frequency and the clue charts are
small Vega-Lite specifications written here.

Threshold diagnostics come from the run's weight distribution
(``summary.weights``, :func:`hub.model.weight_distribution`): pairs and expected
matches per half-bit of match weight over every scored pair.  A run stored
before that existed has only its links; the curve then starts at the link
threshold and says so (``diagnostics.source``).

Sections that other parts of the hub fill in are isolated, one function each:
:func:`gather_bit_statistics` (filters' bit frequencies; computed here, the
privacy lab having no statistics module yet), :func:`gather_attacks` (the
privacy lab's attacks that need only what the hub holds, run on a sample of the run's
encodings: what each would claim; :mod:`hub.privacy`),
:func:`gather_audit` (the audit log's chain, verified, and its head:
:mod:`linkage.audit`).

Why the page cannot leak: it is rendered from the document alone (never from
the database), the document holds counts, names of fields and
datasets, parameters and fingerprints only, and the tests scan every report
for every token, keyed hash, filter word, CLK and raw identifier of a run.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from linkage import __version__
from linkage.documents import canonical_json, validate_document
from linkage.errors import FingerprintMismatchError, StateError
from linkage.roster import Roster
from linkage.schema import Hardening, LinkageSchema, schema_from_document
from linkage.versions import component_versions

from .retention import PURGES, purge_history_sql
from .rules import RuleSet, _attributes_used, load_rules
from .store import FilterColumns, RecordLayout, connect, q, read_meta, table_exists

REPORT_FORMAT = "aidlink-linkage-report"
REPORT_VERSION = 1
LANGS = ("zh", "en")
DEFAULT_LANG = "zh"
VEGA_LITE_SCHEMA = "https://vega.github.io/schema/vega-lite/v5.2.0.json"
BIT_FREQUENCY_BINS = 20
CLUSTER_SIZE_CAP = 10  # sizes above are counted together as "10 or more"


# ---------------------------------------------------------------- small helpers


def _f(x: Any, digits: int = 6) -> float | None:
    """A float rounded to ``digits`` significant digits (None stays None; inf/nan become None)."""
    if x is None:
        return None
    x = float(x)
    if not math.isfinite(x):
        return None
    if x == 0:
        return 0.0
    return float(f"{x:.{digits}g}")


def _ts(x: Any) -> str | None:
    """A timestamp or date as ISO text (timestamps as UTC with Z)."""
    if x is None:
        return None
    if isinstance(x, datetime):
        return x.replace(microsecond=0, tzinfo=None).isoformat() + "Z"
    if isinstance(x, date):
        return x.isoformat()
    return str(x)


def _digest(doc: Any, label: bytes) -> str:
    return hashlib.sha256(label + b"\x00" + canonical_json(doc)).hexdigest()


def _log2(x: float) -> float:
    return math.log2(x)


# ---------------------------------------------------------------- SQL builders


def select_run_sql() -> str:
    """Input: ``runs``; bound: run id.  Output: that run's row."""
    return ("SELECT run_id, started_at, finished_at, delete_after, purpose, legal_basis, config, model, summary"
            " FROM runs WHERE run_id = ?")


def latest_run_sql() -> str:
    """Input: ``runs``.  Output: the id of the run that finished last."""
    return "SELECT run_id FROM runs ORDER BY finished_at DESC LIMIT 1"


def run_packages_sql() -> str:
    """Input: ``packages``, ``records``; bound: the run's start.  Output: every package ingested before
    the run started, with its records in the hub (one row each)."""
    return ("SELECT p.package_id, p.agency, p.dataset, p.dataset_kind, p.content_sha256, p.n_records,"
            " p.created_at, p.expires_at, p.ingested_at, p.manifest, coalesce(r.n, 0)"
            " FROM packages p LEFT JOIN (SELECT package_id, count(*) AS n FROM records GROUP BY package_id) r"
            " USING (package_id) WHERE p.ingested_at <= ? ORDER BY p.agency, p.dataset, p.package_id")


def cluster_sizes_sql() -> str:
    """Input: ``clusters``; bound: run id.  Output: (size, clusters of that size)."""
    return ("SELECT n, count(*) FROM (SELECT cluster_id, count(*) AS n FROM clusters WHERE run_id = ?"
            " GROUP BY cluster_id) GROUP BY n ORDER BY n")


def cluster_spans_sql() -> str:
    """Input: ``clusters``; bound: run id.  Output: (distinct datasets in a cluster, clusters)."""
    return ("SELECT n, count(*) FROM (SELECT cluster_id, count(DISTINCT dataset) AS n FROM clusters"
            " WHERE run_id = ? GROUP BY cluster_id) GROUP BY n ORDER BY n")


def clue_clusters_sql() -> str:
    """Input: ``clues``; bound: run id.  Output: (rule, receiver, clusters with a clue)."""
    return ("SELECT rule_id, receiver, count(DISTINCT cluster_id) FROM clues WHERE run_id = ?"
            " GROUP BY ALL ORDER BY ALL")


def clue_rows_sql() -> str:
    """Input: ``clues``; bound: run id.  Output: (rule, agency the rows go to, token rows)."""
    return "SELECT rule_id, deliver_to, count(*) FROM clues WHERE run_id = ? GROUP BY ALL ORDER BY ALL"


def receiver_clusters_sql() -> str:
    """Input: ``clues``; bound: run id.  Output: (receiver, distinct clusters with any clue for it)."""
    return ("SELECT receiver, count(DISTINCT cluster_id) FROM clues WHERE run_id = ?"
            " GROUP BY ALL ORDER BY ALL")


def result_packages_sql() -> str:
    """Input: ``result_packages``; bound: run id.  Output: the run's result packages."""
    return ("SELECT agency, package_id, file, clue_rows, created_at, expires_at, rule_set, rule_set_digest"
            " FROM result_packages WHERE run_id = ? ORDER BY agency, created_at")


def stored_rows_sql(table: str) -> str:
    """Input: ``table`` (``pairs`` or ``clusters``); bound: run id.  Output: its rows of the run."""
    return f"SELECT count(*) FROM {q(table)} WHERE run_id = ?"


def link_weights_sql() -> str:
    """Input: ``pairs``; bound: run id.  Output: every stored link's (match weight, match probability)."""
    return "SELECT match_weight, match_probability FROM pairs WHERE run_id = ?"


def filter_words_sql(f: FilterColumns) -> str:
    """Input: ``records``; bound: a list of package ids.  Output: the words of filter ``f`` of those
    packages' records that carry it, every 128-bit word as two UBIGINT halves (high, low) and a
    64-bit last word as one UBIGINT -- for counting set bits per position outside SQL."""
    cols = []
    for i, w in enumerate(f.words):
        if f.word_bits(i) == 128:
            cols.append(f"CAST(({q(w)} >> 64) & CAST(18446744073709551615 AS HUGEINT) AS UBIGINT)")
        cols.append(f"CAST({q(w)} & CAST(18446744073709551615 AS HUGEINT) AS UBIGINT)")
    return (f"SELECT {', '.join(cols)} FROM records WHERE {q(f.words[0])} IS NOT NULL"
            f" AND list_contains(?, package_id)")


def clk_rows_sql() -> str:
    """Input: ``records``; bound: a list of package ids.  Output: the record CLKs of those packages."""
    return "SELECT clk FROM records WHERE clk IS NOT NULL AND list_contains(?, package_id)"


# ---------------------------------------------------------------- sections


def count_set_bits(batches: Any, width_bytes: int) -> tuple[int, np.ndarray]:
    """Rows and per-position set-bit counts over Arrow record batches of UBIGINT columns (one 64-bit
    slice of the filter each, :func:`filter_words_sql`) or of one binary column of ``width_bytes`` per
    row (the CLK).  Filter lengths are multiples of 64 (the linkage schema requires it), so no
    position is padding."""
    counts = np.zeros(width_bytes * 8, dtype=np.int64)
    n = 0
    for batch in batches:
        if not batch.num_rows:
            continue
        if batch.num_columns == 1 and not str(batch.schema.types[0]).startswith("uint64"):
            raw = np.frombuffer(b"".join(batch.column(0).to_pylist()), dtype=np.uint8)
        else:
            words = np.column_stack([c.to_numpy(zero_copy_only=False).astype(np.uint64) for c in batch.columns])
            raw = words.astype(">u8").view(np.uint8)
        bits = np.unpackbits(raw.reshape(batch.num_rows, width_bytes), axis=1)
        counts += bits.sum(axis=0, dtype=np.int64)
        n += batch.num_rows
    return n, counts




def gather_run(row: Sequence[Any]) -> dict[str, Any]:
    """The run: id, times, purpose and legal basis, the effective configuration and its digest."""
    run_id, started, finished, _delete_after, purpose, legal_basis, config, _model, _summary = row
    cfg = json.loads(config)
    return {"run_id": run_id, "started_at": _ts(started), "finished_at": _ts(finished),
            "purpose": purpose or "", "legal_basis": legal_basis or "",
            "config_sha256": _digest(cfg, b"aidlink-run-config"), "config": cfg}


def gather_federation(roster: Roster | None, fingerprint: str) -> dict[str, Any] | None:
    """Who takes part and who runs the hub, from the roster (None when no roster was given)."""
    if roster is None:
        return None
    if roster.schema_fingerprint != fingerprint:
        raise FingerprintMismatchError(
            f"the roster of federation {roster.federation!r} names schema fingerprint "
            f"{roster.schema_fingerprint[:16]}..., but the hub database holds {fingerprint[:16]}...")
    return {
        "federation": roster.federation,
        "roster_fingerprint": roster.fingerprint,
        "signed": roster.signed,
        "valid_from": _ts(roster.valid_from.astimezone(UTC).replace(tzinfo=None)),
        "valid_until": _ts(roster.valid_until.astimezone(UTC).replace(tzinfo=None)),
        "hub": {"id": roster.hub.id, "operator": roster.hub.operator or "", "fingerprint": roster.hub.fingerprint},
        "agencies": [{"id": a.id, "name": a.name or "", "datasets": list(a.datasets), "fingerprint": a.fingerprint}
                     for a in roster.agencies],
    }


def gather_datasets(con: duckdb.DuckDBPyConnection, started: datetime) -> list[dict[str, Any]]:
    """Every package the run linked: sender, dataset, counts, fingerprints (counts only, never values)."""
    out = []
    for (pid, agency, dataset, kind, sha, _n, created, expires, ingested, manifest,
         in_hub) in con.execute(run_packages_sql(), [started]).fetchall():
        m = json.loads(manifest)
        c = m.get("counts") or {}
        attrs = sorted(col["name"].removeprefix("attr_") for col in m.get("columns", [])
                       if col["name"].startswith("attr_"))
        out.append({
            "agency": agency, "dataset": dataset, "dataset_kind": kind, "package_id": pid,
            "content_sha256": sha, "created_at": created, "expires_at": expires, "ingested_at": _ts(ingested),
            "counts": {k: int(c.get(k, 0)) for k in ("rows_read", "encoded", "flagged", "rejected")},
            "records": int(in_hub), "key_check_value": m.get("key_check_value", ""),
            "schema_fingerprint": m.get("schema_fingerprint", ""), "attributes_sent": attrs,
        })
    if not out:
        raise StateError("no package was ingested before this run started")
    return out


def _hardening_doc(h: Hardening) -> dict[str, Any]:
    return {"balance": h.balance, "xor_fold": h.xor_fold, "salt": h.salt.field if h.salt else None,
            "salt_on_missing": h.salt.on_missing if h.salt else None,
            "salt_bank_slots": len(getattr(h.salt, "bank", ()) or ()) if h.salt else 0,
            "blip_epsilon": h.blip_epsilon, "permute": h.permute}


def gather_minimisation(schema: LinkageSchema, ruleset: RuleSet, datasets: Sequence[dict[str, Any]]
                        ) -> dict[str, Any]:
    """Which identifying fields were encoded, and per dataset kind which attributes the schema allows,
    which the packages carried and which the rules read."""
    fields = []
    for f in schema.fields:
        enc = []
        if f.filter is not None:
            enc.append("bloom_filter")
        if f.exact_hash:
            enc.append("keyed_hash")
        if f.clk is not None:
            enc.append("record_clk")
        fields.append({"name": f.name, "normaliser": f.normaliser, "encodings": enc,
                       "derived_from": f.derive_from})
    used: dict[str, set[str]] = {}
    for rule in ruleset.rules:
        for kind, attr in _attributes_used(rule.condition):
            used.setdefault(kind, set()).add(attr)
    sent: dict[str, set[str]] = {}
    for d in datasets:
        sent.setdefault(d["dataset_kind"], set()).update(d["attributes_sent"])
    kinds = []
    for kind in sorted(sent):
        allowed = set(schema.datasets[kind].attributes) if kind in schema.datasets else set()
        kinds.append({"dataset_kind": kind, "allowed": sorted(allowed), "sent": sorted(sent[kind]),
                      "used_by_rules": sorted(used.get(kind, set())),
                      "sent_not_used": sorted(sent[kind] - used.get(kind, set())),
                      "sent_not_allowed": sorted(sent[kind] - allowed)})
    return {"fields": fields, "attributes": kinds}


def gather_encoding(schema: LinkageSchema, meta_fingerprint: str, layout: RecordLayout) -> dict[str, Any]:
    """The encoding and hardening parameters and the schema fingerprint (never a key: the filters'
    keys are derived from the linkage secret, which the hub never holds)."""
    filters = []
    for f in schema.filter_fields:
        spec = f.filter
        filters.append({
            "field": f.name,
            "tokeniser": {"kind": f.tokeniser.kind, "n": f.tokeniser.n, "padded": f.tokeniser.padded},
            "length": spec.length, "output_length": spec.output_length,
            "bits_per_token": spec.bits_per_token, "bits_per_feature": spec.bits_per_feature,
            "hardening": _hardening_doc(spec.hardening),
        })
    return {
        "schema_id": schema.id, "schema_version": schema.version, "schema_fingerprint": meta_fingerprint,
        "components": component_versions(),
        "filters": filters,
        "keyed_hashes": [f.name for f in schema.exact_fields],
        "clk": {"length": schema.clk_length, "output_length": schema.clk_output_length,
                "fields": [f.name for f in schema.fields if f.clk is not None],
                "hardening": _hardening_doc(schema.clk_hardening)},
        "blocking_keys": [{"name": k.name, "fields": list(k.fields)} for k in schema.blocking_keys],
        "lsh": [{"field": b.field, "bits_per_band": b.bits_per_band, "n_bands": b.n_bands} for b in layout.lsh],
    }


def gather_key_check(datasets: Sequence[dict[str, Any]], store_kcv: str | None, fingerprint: str) -> dict[str, Any]:
    """Whether every package was made with the same linkage secret (key-check value) and schema."""
    values = sorted({d["key_check_value"] for d in datasets})
    fps = sorted({d["schema_fingerprint"] for d in datasets})
    return {"values": values, "store_value": store_kcv or "", "agree": values == [store_kcv],
            "schema_fingerprints_agree": fps == [fingerprint], "packages": len(datasets)}


def gather_blocking(summary: dict[str, Any]) -> dict[str, Any]:
    """The blocking rules, in order, with the pairs each found first, and the total scored."""
    b = summary.get("blocking") or {}
    rules = [{"rule": r.get("rule", ""), "kind": r.get("kind", ""), "pairs": int(r.get("pairs_first_found") or 0)}
             for r in b.get("rules", [])]
    clk = b.get("clk") or {}
    return {"pairs": int(b.get("pairs") or 0), "rules": rules,
            "clk_pairs_compared": int(clk.get("exhaustive_pairs_compared") or 0)}


def gather_model(model: dict[str, Any], summary: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    """Prior, and m, u and match weight of every level of every comparison; the training plan."""
    prior = float(model["probability_two_random_records_match"])
    comps = []
    for c in model["comparisons"]:
        levels = []
        non_null = [lv for lv in c["comparison_levels"] if not lv.get("is_null_level")]
        for i, lv in enumerate(non_null):
            m, u = lv.get("m_probability"), lv.get("u_probability")
            w = _log2(m / u) if m and u else None
            levels.append({"label": lv.get("label_for_charts", ""), "gamma": len(non_null) - 1 - i,
                           "m": _f(m), "u": _f(u), "match_weight": _f(w, 4)})
        comps.append({"name": c["output_column_name"], "levels": levels})
    t = summary.get("training") or {}
    tr = cfg.get("training") or {}
    return {
        "prior": _f(prior), "prior_match_weight": _f(_log2(prior / (1 - prior)), 4),
        "comparisons": comps,
        "training": {
            "u_max_pairs": tr.get("u_max_pairs"), "em_max_pairs": tr.get("em_max_pairs"),
            "em_rules": [{"columns": r["columns"], "trains": r["trains"], "fixed": r["fixed"],
                          "pairs": r.get("pairs")} for r in t.get("em_rules", [])],
            "untrained": list(t.get("untrained_comparisons", [])),
            "failed_em_rules": [list(r) for r in t.get("failed_em_rules", [])],
        },
    }


def _threshold(d: dict[str, Any]) -> dict[str, Any]:
    return {"how": d.get("how", ""), "match_weight": _f(d.get("match_weight"), 6),
            "match_probability": _f(d.get("match_probability"), 6),
            "expected_precision": _f(d.get("expected_precision"), 6),
            "expected_recall": _f(d.get("expected_recall"), 6), "links": int(d.get("links") or 0)}


def gather_thresholds(summary: dict[str, Any]) -> dict[str, Any]:
    """The link and cluster thresholds with the model's expected precision and recall, and the
    measured ones when the run was given labels (evaluation only)."""
    measured = summary.get("measured")
    return {"link": _threshold(summary["link_threshold"]), "cluster": _threshold(summary["cluster_threshold"]),
            "measured": None if measured is None else {
                k: (_f(v) if isinstance(v, float) else v) for k, v in measured.items()}}


def _curve(bins: list[dict[str, Any]], total_expected: float) -> list[dict[str, Any]]:
    """From bins of (low, pairs, expected_matches): links, expected precision and recall at each
    bin's lower edge taken as the threshold."""
    out = []
    links = 0
    tp = 0.0
    for b in sorted(bins, key=lambda b: -b["low"]):
        links += b["pairs"]
        tp += b["expected_matches"]
        w = b["low"]
        out.append({"match_weight": _f(w, 6), "match_probability": _f(1 / (1 + 2.0 ** -w), 6), "links": links,
                    "expected_precision": _f(tp / links if links else 1.0),
                    "expected_recall": _f(tp / total_expected if total_expected > 0 else 1.0)})
    return sorted(out, key=lambda r: r["match_weight"])


def gather_diagnostics(con: duckdb.DuckDBPyConnection, run_id: str, summary: dict[str, Any]) -> dict[str, Any]:
    """Match-weight histogram and the links / expected precision / expected recall a threshold at each
    half bit would give: the diagnostics for choosing a threshold without labels."""
    wd = summary.get("weights")
    if wd and wd.get("bins") is not None:
        bins = [{"low": _f(b["low"], 6), "high": _f(b["low"] + wd["bin_width"], 6), "pairs": int(b["pairs"]),
                 "expected_matches": _f(b["expected_matches"])} for b in wd["bins"]]
        source, floor, width = "scored_pairs", wd.get("floor_match_weight"), wd["bin_width"]
    else:  # a run stored before the weight distribution was: only its links (above the link threshold)
        rows = con.execute(link_weights_sql(), [run_id]).fetchall()
        width = 0.5
        agg: dict[int, list[float]] = {}
        for w, p in rows:
            k = math.floor(w / width)
            a = agg.setdefault(k, [0, 0.0])
            a[0] += 1
            a[1] += p
        bins = [{"low": _f(k * width, 6), "high": _f((k + 1) * width, 6), "pairs": int(a[0]),
                 "expected_matches": _f(a[1])} for k, a in sorted(agg.items())]
        source, floor = "links_only", summary["link_threshold"].get("match_weight")
    total = sum(b["expected_matches"] or 0.0 for b in bins)
    return {"source": source, "bin_width": width, "floor_match_weight": _f(floor, 6),
            "pairs": sum(b["pairs"] for b in bins), "expected_matches": _f(total), "bins": bins,
            "curve": _curve(bins, total)}


def gather_clusters(con: duckdb.DuckDBPyConnection, run_id: str, summary: dict[str, Any]) -> dict[str, Any]:
    """Cluster counts, sizes and how many datasets each cluster spans (counts of clusters only)."""
    sizes: dict[int, int] = {}
    for n, c in con.execute(cluster_sizes_sql(), [run_id]).fetchall():
        key = min(int(n), CLUSTER_SIZE_CAP)
        sizes[key] = sizes.get(key, 0) + int(c)
    spans: dict[int, int] = {}
    for n, c in con.execute(cluster_spans_sql(), [run_id]).fetchall():
        key = min(int(n), CLUSTER_SIZE_CAP)
        spans[key] = spans.get(key, 0) + int(c)
    cl = summary.get("clusters") or {}
    return {"count": int(cl.get("count") or sum(sizes.values())), "linked_records": int(cl.get("linked_records") or 0),
            "largest": int(cl.get("largest") or 0), "size_cap": CLUSTER_SIZE_CAP,
            "sizes": [{"size": k, "clusters": v} for k, v in sorted(sizes.items())],
            "datasets_spanned": [{"datasets": k, "clusters": v} for k, v in sorted(spans.items())]}


def gather_clues(con: duckdb.DuckDBPyConnection, run_id: str, ruleset: RuleSet) -> dict[str, Any]:
    """Clue counts per rule and receiving agency (clusters), and token rows per agency they go to.

    ``status``: ``clues`` (the run has clue rows), ``no_clues`` (none: the rules found nothing or were
    not applied to this run), ``not_applied`` (no rules were ever applied in this database).
    """
    names = {r.agency: (r.name, r.name_en) for r in ruleset.receivers.values()}
    agency_of = {role: r.agency for role, r in ruleset.receivers.items()}
    clusters: dict[str, dict[str, int]] = {}
    rows: dict[str, dict[str, int]] = {}
    totals: dict[str, int] = {}
    status = "not_applied"
    if table_exists(con, "clues"):
        for rule_id, receiver, n in con.execute(clue_clusters_sql(), [run_id]).fetchall():
            clusters.setdefault(rule_id, {})[receiver] = int(n)
        for rule_id, holder, n in con.execute(clue_rows_sql(), [run_id]).fetchall():
            rows.setdefault(rule_id, {})[holder] = int(n)
        totals = {a: int(n) for a, n in con.execute(receiver_clusters_sql(), [run_id]).fetchall()}
        status = "clues" if rows else "no_clues"
    rules = [{"id": r.id, "title": r.title, "title_en": r.title_en, "clue_type": r.clue_type,
              "receiver": agency_of.get(r.receiver) if r.receiver else None,
              "legal_basis": r.legal_basis, "excludes": list(r.excludes),
              "clusters": sum(clusters.get(r.id, {}).values()),
              "clusters_by_receiver": clusters.get(r.id, {}), "rows_by_agency": rows.get(r.id, {})}
             for r in ruleset.rules]
    receivers = [{"agency": a, "name": names.get(a, ("", ""))[0], "name_en": names.get(a, ("", ""))[1],
                  "clusters": totals.get(a, 0)} for a in sorted({*totals, *agency_of.values()})]
    return {"status": status, "rule_set": {"id": ruleset.id, "version": ruleset.version, "digest": ruleset.digest},
            "rules": rules, "receivers": receivers}


def gather_results(con: duckdb.DuckDBPyConnection, run_id: str) -> list[dict[str, Any]]:
    """The result packages sent for the run: who received how many clue rows, until when."""
    if not table_exists(con, "result_packages"):
        return []
    return [{"agency": agency, "package_id": pid, "file_name": Path(file).name, "clue_rows": int(n),
             "created_at": created, "expires_at": expires, "rule_set": rs, "rule_set_digest": digest}
            for agency, pid, file, n, created, expires, rs, digest in
            con.execute(result_packages_sql(), [run_id]).fetchall()]


def check_rule_set(ruleset: RuleSet, results: Sequence[dict[str, Any]]) -> None:
    """The report must describe the rule set the run's results were made with."""
    digests = {r["rule_set_digest"] for r in results}
    if digests and digests != {ruleset.digest}:
        raise StateError(f"the run's result packages were made with rule set digest "
                         f"{', '.join(sorted(d[:16] + '...' for d in digests))}, not {ruleset.digest[:16]}... "
                         f"({ruleset.id}): pass that rule set with --rules")


def _frequency_stats(n: int, counts: np.ndarray, name: str, kind: str) -> dict[str, Any]:
    bits = len(counts)
    if n == 0:
        return {"field": name, "kind": kind, "bits": bits, "records": 0}
    freq = counts / n
    hist, _ = np.histogram(freq, bins=BIT_FREQUENCY_BINS, range=(0.0, 1.0))
    mean = float(freq.mean())
    return {
        "field": name, "kind": kind, "bits": bits, "records": int(n),
        "mean_fill": _f(mean, 4),
        "frequency_min": _f(freq.min(), 4), "frequency_max": _f(freq.max(), 4),
        "frequency_std": _f(freq.std(), 4),
        "max_over_mean": _f(freq.max() / mean, 4) if mean > 0 else None,
        "never_set": int((counts == 0).sum()), "always_set": int((counts == n).sum()),
        "histogram": [int(h) for h in hist],
    }


def gather_bit_statistics(con: duckdb.DuckDBPyConnection, layout: RecordLayout,
                          package_ids: Sequence[str]) -> dict[str, Any]:
    """Bit-frequency statistics of the run's filters, one entry per Bloom-filter field and one for
    the record CLK: over the records that carry it, the share of records setting each bit, summarised
    (min, max, spread, positions never or always set) and as a histogram over frequency -- never per
    position, so that no statistic describes one record's filter.  A hardened filter shows flat
    frequencies (a narrow histogram around its fill rate); peaks are what frequency attacks use.

    Computed here (the privacy lab's ``hub/privacy/stats.py`` was not available when this was written).
    """
    ids = list(package_ids)
    fields = []
    for f in layout.filters:
        n, counts = count_set_bits(con.sql(filter_words_sql(f), params=[ids]).to_arrow_reader(50_000),
                                   -(-f.bits // 64) * 8)
        fields.append(_frequency_stats(n, counts, f.field, "bloom_filter"))
    if layout.clk_bytes:
        n, counts = count_set_bits(con.sql(clk_rows_sql(), params=[ids]).to_arrow_reader(50_000), layout.clk_bytes)
        fields.append(_frequency_stats(n, counts, "clk", "record_clk"))
    return {"source": "hub.report", "bins": BIT_FREQUENCY_BINS, "fields": fields}


ATTACK_SAMPLE = 2000  # records of the run attacked for the report
ATTACK_SEED = 0


def gather_attacks(con: duckdb.DuckDBPyConnection, schema: LinkageSchema, layout: RecordLayout,
                   package_ids: Sequence[str]) -> dict[str, Any]:
    """The attacks that need only what the hub holds, run on a sample of the run's own encodings.

    :func:`hub.privacy.stats.attack_sample` (what ``linkage-hub privacy --db`` runs) on
    ``ATTACK_SAMPLE`` records of the run's packages, drawn with a fixed seed, against the shipped
    synthetic public frequency table (:func:`hub.privacy.stats.report_public`): frequency and
    pattern mining on the name filters, frequency on the CLK, the keyed-hash frequency attack on
    every keyed hash and blocking key, salt-bank linking where the schema has banks.  The hub has
    no plaintext, so each result says how many records the attack would *claim* to re-identify
    (``claimed``); whether claims are right (``reidentified``, ``claimed_precision``,
    ``frequent_recovered``) is measured only in the lab (``python -m benchmarks privacy``) and
    left null here.  The graph attack needs a plaintext reference population and is not run.
    Counts and shares only.
    """
    from .privacy.stats import REPORT_PUBLIC_PEOPLE, attack_sample, report_public, sample_store

    table = sample_store(con, layout, ATTACK_SAMPLE, ATTACK_SEED, list(package_ids))
    if table.num_rows == 0:
        return {"status": "not_run", "results": []}
    out = attack_sample(table, schema, public=report_public(schema), sample_size=table.num_rows,
                        seed=ATTACK_SEED)
    results = []
    for column, res in out["columns"].items():
        for attack in ("frequency", "pattern_mining", "keyed_hash", "bank_linking"):
            r = res.get(attack)
            if r is None:
                continue
            results.append({"attack": attack, "target": column, "records": int(r["attacked"]),
                            "claimed": int(r["claimed"]), "claimed_share": _f(r["claimed_share"], 4),
                            "reidentified": None, "claimed_precision": None, "frequent_recovered": None})
    return {"status": "ok", "source": "hub.privacy.stats.attack_sample", "sample": int(out["sample"]),
            "seed": ATTACK_SEED, "public_table": {"kind": "synthetic", "people": REPORT_PUBLIC_PEOPLE},
            "results": results}


def gather_audit(db_path: Path, roster: Roster | None = None) -> dict[str, Any]:
    """The hub's audit log (``<db>.audit.jsonl``, :mod:`linkage.audit`): its chain verified and its head
    -- entries, head hash, last time -- for the reviewer to anchor.  With a roster, signed entries are
    checked against its parties' keys.  A broken chain is reported (where and how), not raised: the
    reviewer must see it."""
    from linkage.audit import hub_log_path, verify_log

    log_path = hub_log_path(db_path)
    out: dict[str, Any] = {"status": "no_log", "log": log_path.name, "entries": 0, "head_hash": None,
                           "last_time": None, "signed_entries": 0, "signatures_checked": False, "broken": None}
    if not log_path.is_file():
        return out
    signers = None
    if roster is not None:
        signers = {p.id: [p.signing_key()] for p in (roster.hub, *roster.agencies)}
    v = verify_log(log_path, signers=signers).as_doc()
    out.update({"status": "ok" if v["intact"] else "broken", "entries": int(v["entries"]),
                "head_hash": v["head_hash"], "last_time": v["last_time"], "signed_entries": int(v["signed_entries"]),
                "signatures_checked": bool(v["signatures_checked"]), "broken": v.get("broken")})
    return out


def gather_retention(con: duckdb.DuckDBPyConnection, row: Sequence[Any], cfg: dict[str, Any],
                     datasets: Sequence[dict[str, Any]], results: Sequence[dict[str, Any]],
                     today: date) -> dict[str, Any]:
    """The retention period, the deletion date, what of the run is still stored, and package expiry."""
    run_id, delete_after = row[0], row[3]
    pairs = con.execute(stored_rows_sql("pairs"), [run_id]).fetchall()[0][0]
    clusters = con.execute(stored_rows_sql("clusters"), [run_id]).fetchall()[0][0]
    purged = None
    if table_exists(con, PURGES):  # linkage-hub purge (hub.retention) has run on this database
        purged = con.execute(purge_history_sql(), [run_id]).fetchall()[0][0]
    return {
        "retention_days": int(cfg.get("retention_days") or 0), "delete_after": _ts(delete_after),
        "overdue": bool(delete_after is not None and today > delete_after and (pairs or clusters)),
        "purged_at": _ts(purged) if purged is not None else None,
        "stored": {"pairs": int(pairs), "cluster_rows": int(clusters)},
        "packages_expire": sorted({d["expires_at"] for d in datasets if d.get("expires_at")}),
        "results_expire": sorted({r["expires_at"] for r in results if r.get("expires_at")}),
    }


# ---------------------------------------------------------------- charts


def _synthetic_vectors(comparisons: Sequence[Any]) -> list[dict[str, int]]:
    """Three made-up agreement patterns (comparison -> gamma): all agree; first comparison at a
    middle level, last missing (null); only the last-but-one agrees.  Not pairs of the run."""
    tops = {c._gamma_column_name: c._num_levels - 1 for c in comparisons}
    names = list(tops)
    a = dict(tops)
    b = dict(tops)
    b[names[0]] = max(tops[names[0]] // 2, 0)
    b[names[-1]] = -1
    c = dict.fromkeys(names, 0)
    c[names[-2] if len(names) > 1 else names[0]] = tops[names[-2] if len(names) > 1 else names[0]]
    return [a, b, c]


def waterfall_records(settings: Any) -> list[dict[str, Any]]:
    """Splink waterfall data for the synthetic vectors, built by Splink with sensitive data removed
    (its ``remove_sensitive_data`` path): weights and level labels only, no column value."""
    from splink.internals.waterfall_chart import records_to_waterfall_data

    comparisons = settings.comparisons
    prior = settings._probability_two_random_records_match
    records = []
    for vec in _synthetic_vectors(comparisons):
        rec: dict[str, Any] = dict(vec)
        w = _log2(prior / (1 - prior))
        for c in comparisons:
            level = c._get_comparison_level_by_comparison_vector_value(vec[c._gamma_column_name])
            if not level.is_null_level:
                w += level._log2_bayes_factor
            if c._has_tf_adjustments:
                rec[c._mw_tf_adj_column_name] = 0.0  # no term-frequency adjustment in a made-up pair
        rec["match_weight"] = w
        rec["match_probability"] = 1 / (1 + 2.0 ** -w)
        records.append(rec)
    data = records_to_waterfall_data(records, settings, True)
    for d in data:
        if d.get("value_l") or d.get("value_r"):  # pragma: no cover - Splink's contract
            raise StateError("the waterfall would show column values")
        d["sql_condition"] = None
    return data


def _splink_settings(model: dict[str, Any]) -> Any:
    from splink.internals.settings_creator import SettingsCreator

    return SettingsCreator.from_path_or_dict(json.loads(json.dumps(model))).get_settings("duckdb")


def _own_spec(**spec: Any) -> dict[str, Any]:
    return {"$schema": VEGA_LITE_SCHEMA, **spec}


def threshold_curve_spec(diag: dict[str, Any], link_weight: float | None) -> dict[str, Any]:
    """Links, expected precision and expected recall against the threshold (match weight)."""
    rows = diag["curve"]
    rule = [{"match_weight": link_weight}] if link_weight is not None else []
    x = {"field": "match_weight", "type": "quantitative", "title": "match weight"}
    links = {"layer": [
        {"mark": {"type": "line", "point": True}, "encoding": {
            "x": x, "y": {"field": "links", "type": "quantitative", "title": "links", "scale": {"type": "symlog"}},
            "tooltip": [{"field": "match_weight"}, {"field": "match_probability"}, {"field": "links"}]}},
        {"data": {"values": rule}, "mark": {"type": "rule", "color": "#c0392b", "strokeDash": [4, 3]},
         "encoding": {"x": {"field": "match_weight", "type": "quantitative"}}},
    ], "width": 560, "height": 180}
    quality = {"layer": [
        {"transform": [{"fold": ["expected_precision", "expected_recall"], "as": ["measure", "value"]}],
         "mark": {"type": "line"},
         "encoding": {"x": x, "y": {"field": "value", "type": "quantitative", "title": "expected",
                                    "scale": {"domain": [0, 1]}},
                      "color": {"field": "measure", "type": "nominal", "title": None},
                      "tooltip": [{"field": "match_weight"}, {"field": "measure"}, {"field": "value"}]}},
        {"data": {"values": rule}, "mark": {"type": "rule", "color": "#c0392b", "strokeDash": [4, 3]},
         "encoding": {"x": {"field": "match_weight", "type": "quantitative"}}},
    ], "width": 560, "height": 160}
    return _own_spec(data={"values": rows}, vconcat=[links, quality], title="Links against threshold")


def bit_frequency_spec(bits: dict[str, Any]) -> dict[str, Any]:
    """Per filter, how many bit positions have each share of records setting them (a histogram over
    frequency, not over positions)."""
    width = 1.0 / bits["bins"]
    rows = []
    for f in bits["fields"]:
        for i, n in enumerate(f.get("histogram", [])):
            if n:
                rows.append({"field": f["field"], "low": round(i * width, 4), "high": round((i + 1) * width, 4),
                             "positions": n})
    return _own_spec(
        data={"values": rows}, title="Bit frequencies of the filters",
        facet={"field": "field", "type": "nominal", "title": None}, columns=4,
        spec={"width": 170, "height": 110, "mark": "bar", "encoding": {
            "x": {"field": "low", "type": "quantitative", "bin": {"binned": True, "step": width},
                  "scale": {"domain": [0, 1]}, "title": "share of records setting the bit"},
            "x2": {"field": "high"},
            "y": {"field": "positions", "type": "quantitative", "title": "bit positions"},
            "tooltip": [{"field": "field"}, {"field": "low"}, {"field": "high"}, {"field": "positions"}]}},
        resolve={"scale": {"y": "independent"}})


def clues_spec(clues: dict[str, Any]) -> dict[str, Any]:
    """Clusters with a clue, per rule, coloured by receiving agency."""
    rows = [{"rule": r["id"], "receiver": a, "clusters": n}
            for r in clues["rules"] for a, n in r["clusters_by_receiver"].items()]
    return _own_spec(data={"values": rows}, title="Clues per rule and receiver", mark="bar", width=560, height=200,
                     encoding={"x": {"field": "rule", "type": "nominal", "title": "rule", "sort": None},
                               "y": {"field": "clusters", "type": "quantitative", "title": "clusters with a clue"},
                               "color": {"field": "receiver", "type": "nominal", "title": "receiver"},
                               "tooltip": [{"field": "rule"}, {"field": "receiver"}, {"field": "clusters"}]})


def build_charts(doc: dict[str, Any], model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every chart of the report as a Vega-Lite specification with its data (aggregates only)."""
    from splink.internals.charts import MatchWeightsHistogramChart, WaterfallChart

    settings = _splink_settings(model)
    charts: dict[str, dict[str, Any]] = {
        "match_weights": settings.match_weights_chart().chart_dict,
        "m_u_parameters": settings.m_u_parameters_chart().chart_dict,
    }
    diag = doc["diagnostics"]
    hist = MatchWeightsHistogramChart([
        {"splink_score_bin_low": b["low"], "splink_score_bin_high": b["high"], "count_rows": b["pairs"]}
        for b in diag["bins"]])
    hist.set_width_height(width=560, height=220)
    charts["weight_histogram"] = hist.chart_dict
    charts["waterfall"] = WaterfallChart(waterfall_records(settings), filter_nulls=False).chart_dict
    charts["threshold_curve"] = threshold_curve_spec(diag, doc["thresholds"]["link"]["match_weight"])
    charts["clues"] = clues_spec(doc["clues"])
    charts["bit_frequencies"] = bit_frequency_spec(doc["privacy"]["bit_statistics"])
    return json.loads(json.dumps(charts, default=_json_default))


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, datetime | date):
        return o.isoformat()
    return float(o) if hasattr(o, "__float__") else str(o)


# ---------------------------------------------------------------- the document


def resolve_run_id(con: duckdb.DuckDBPyConnection, run_id: str | None) -> str:
    """``run_id`` if the database has it, else the run that finished last; StateError when none."""
    if not table_exists(con, "runs"):
        raise StateError("no match run in this database: run `linkage-hub match` first")
    if run_id is None:
        rows = con.execute(latest_run_sql()).fetchall()
        if not rows:
            raise StateError("no match run in this database: run `linkage-hub match` first")
        return rows[0][0]
    if con.execute("SELECT count(*) FROM runs WHERE run_id = ?", [run_id]).fetchall()[0][0] == 0:
        raise StateError(f"the hub database has no run {run_id!r}")
    return run_id


def gather_report(db_path: str | Path, run_id: str | None = None, *,
                  rules: RuleSet | str | Path = "judicial-assistance", roster: Roster | None = None,
                  now: datetime | None = None) -> dict[str, Any]:
    """The report document of one run (default: the latest), validated against its JSON Schema."""
    db = Path(db_path)
    when = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0, tzinfo=None)
    con = connect(db, read_only=True)
    try:
        meta = read_meta(con)
        if not meta.initialised or meta.schema_document is None:
            raise StateError(f"{db}: nothing has been ingested yet")
        schema = schema_from_document(meta.schema_document, "hub database schema")
        layout = RecordLayout.from_schema(schema, meta.lsh)
        run = resolve_run_id(con, run_id)
        row = con.execute(select_run_sql(), [run]).fetchall()[0]
        cfg, model, summary = json.loads(row[6]), json.loads(row[7]), json.loads(row[8])
        ruleset = rules if isinstance(rules, RuleSet) else load_rules(rules, schema)
        results = gather_results(con, run)
        check_rule_set(ruleset, results)
        datasets = gather_datasets(con, row[1])
        doc: dict[str, Any] = {
            "version": REPORT_VERSION,
            "format": REPORT_FORMAT,
            "generated_at": _ts(when),
            "generator": {"aidlink": __version__, "splink": _splink_version()},
            "run": gather_run(row),
            "federation": gather_federation(roster, meta.schema_fingerprint),
            "datasets": datasets,
            "totals": {"agencies": len({d["agency"] for d in datasets}), "datasets": len(datasets),
                       "records": int(summary.get("records") or sum(d["records"] for d in datasets)),
                       "links": int(summary.get("links") or 0)},
            "minimisation": gather_minimisation(schema, ruleset, datasets),
            "encoding": gather_encoding(schema, meta.schema_fingerprint, layout),
            "key_check": gather_key_check(datasets, meta.key_check_value, meta.schema_fingerprint),
            "blocking": gather_blocking(summary),
            "model": gather_model(model, summary, cfg),
            "thresholds": gather_thresholds(summary),
            "diagnostics": gather_diagnostics(con, run, summary),
            "clusters": gather_clusters(con, run, summary),
            "clues": gather_clues(con, run, ruleset),
            "results": results,
            "privacy": {"bit_statistics": gather_bit_statistics(con, layout, [d["package_id"] for d in datasets]),
                        "attacks": gather_attacks(con, schema, layout, [d["package_id"] for d in datasets])},
            "retention": gather_retention(con, row, cfg, datasets, results, when.date()),
            "audit": gather_audit(db, roster),
        }
    finally:
        con.close()
    doc["charts"] = build_charts(doc, model)
    validate_document(doc, "report", "linkage report")
    return doc


def _splink_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("splink")
    except metadata.PackageNotFoundError:  # pragma: no cover - a hub dependency
        return "absent"


# ---------------------------------------------------------------- rendering


@cache
def messages() -> dict[str, dict[str, str]]:
    """The message catalogue: ``{"zh": {key: text}, "en": {key: text}}``."""
    return json.loads(resources.files("hub").joinpath("report_messages.json").read_text("utf-8"))


@cache
def _chart_libraries() -> dict[str, str]:
    """Vega, Vega-Lite and Vega-Embed as shipped in Splink's package (no download, no CDN)."""
    from splink.internals.html_utils import load_chart_libraries

    return load_chart_libraries()


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element: no ``<``, ``>`` or ``&`` that HTML could read."""
    return (json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _script_js(code: str) -> str:
    """A library's code, safe to inline in a <script> element."""
    return code.replace("</script", "<\\/script").replace("<!--", "<\\!--")


CHART_TITLES = {name: f"chart.{name}" for name in (
    "match_weights", "m_u_parameters", "weight_histogram", "waterfall", "threshold_curve", "clues",
    "bit_frequencies")}


# Axis and legend titles of the charts written here (English in the document), by message key.
AXIS_TITLES = {"match weight": "axis.match_weight", "links": "axis.links", "expected": "axis.expected",
               "share of records setting the bit": "axis.bit_share", "bit positions": "axis.bit_positions",
               "rule": "axis.rule", "clusters with a clue": "axis.clue_clusters", "receiver": "axis.receiver"}
# How a threshold was chosen (hub.model.choose_threshold's words), by message key.
HOW = {"configured match probability": "th.how_probability", "configured match weight": "th.how_weight",
       "auto: maximises the model's expected F1": "th.how_auto"}


def _localise_titles(node: Any, msg: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: (msg[AXIS_TITLES[v]] if k == "title" and isinstance(v, str) and v in AXIS_TITLES
                    else _localise_titles(v, msg)) for k, v in node.items()}
    if isinstance(node, list):
        return [_localise_titles(v, msg) for v in node]
    return node


def localised_charts(doc: dict[str, Any], lang: str) -> dict[str, dict[str, Any]]:
    """The document's charts with titles in ``lang`` and the $schema of the inlined Vega-Lite."""
    msg = messages()[lang]
    out = {}
    for name, spec in doc["charts"].items():
        s = _localise_titles(json.loads(json.dumps(spec)), msg)
        s["$schema"] = VEGA_LITE_SCHEMA
        key = CHART_TITLES.get(name)
        if key:
            s["title"] = {"text": msg[key], "anchor": "start"}
        if name == "threshold_curve":
            legend = (f"datum.label == 'expected_precision' ? {json.dumps(msg['axis.expected_precision'])}"
                      f" : {json.dumps(msg['axis.expected_recall'])}")
            for part in s.get("vconcat", []):
                for layer in part.get("layer", []):
                    color = layer.get("encoding", {}).get("color")
                    if color is not None:
                        color["legend"] = {"labelExpr": legend}
        out[name] = s
    return out


def render_html(doc: dict[str, Any], lang: str = DEFAULT_LANG) -> str:
    """The report as one self-contained HTML page in ``lang`` (``zh`` or ``en``)."""
    import jinja2

    if lang not in LANGS:
        raise ValueError(f"lang must be one of {LANGS}")
    msg = messages()[lang]
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    template = env.from_string(resources.files("hub").joinpath("report_template.html").read_text("utf-8"))

    def t(key: str, **kw: Any) -> str:
        return msg[key].format(**kw) if kw else msg[key]

    def num(x: Any, digits: int = 4) -> str:
        if x is None:
            return "—"
        if isinstance(x, bool):
            return t("yes") if x else t("no")
        if isinstance(x, int):
            return f"{x:,}"
        return f"{x:.{digits}g}"

    def pct(x: Any) -> str:
        return "—" if x is None else f"{100 * x:.2f}%"

    def how(text: str) -> str:
        return t(HOW[text]) if text in HOW else text

    libs = _chart_libraries()
    charts = localised_charts(doc, lang)
    return template.render(
        doc=doc, lang=lang, t=t, num=num, pct=pct, how=how,
        charts_json=_script_json(charts),
        vega=_script_js(libs["vega"]), vega_lite=_script_js(libs["vega-lite"]),
        vega_embed=_script_js(libs["vega-embed"]),
        chart_names=list(charts),
    )


# ---------------------------------------------------------------- writing


def report_paths(out: str | Path, run_id: str, langs: Sequence[str]) -> dict[str, Path]:
    """Where the JSON and the HTML pages go: ``{"json": path, "html_<lang>": path, ...}``.

    ``out`` naming an .html file: that page (one language only) and the JSON beside it (.json);
    else the directory ``out``: ``report-<run id>.json`` and ``report-<run id>.<lang>.html``.
    """
    p = Path(out)
    if p.suffix.lower() in (".html", ".htm"):
        if len(langs) > 1:
            raise ValueError("an .html output holds one language; give a directory for several")
        return {"json": p.with_suffix(".json"), **{f"html_{lang}": p for lang in langs}}
    return {"json": p / f"report-{run_id}.json", **{f"html_{lang}": p / f"report-{run_id}.{lang}.html"
                                                    for lang in langs}}


def write_report(doc: dict[str, Any], out: str | Path, *, langs: Sequence[str] = (DEFAULT_LANG,),
                 force: bool = False) -> dict[str, Path]:
    """Write the report's JSON document and one HTML page per language in ``langs`` (none: the JSON
    only), all from the same document; returns their paths (:func:`report_paths`).  Existing files
    are refused unless ``force``; each file is written atomically."""
    from linkage._crypto._files import check_output

    for lang in langs:
        if lang not in LANGS:
            raise ValueError(f"lang must be one of {LANGS}")
    targets = report_paths(out, doc["run"]["run_id"], langs)
    for path in targets.values():
        check_output(path, force)
    texts = {"json": json.dumps(doc, ensure_ascii=False, indent=1) + "\n"}  # in section order
    texts |= {f"html_{lang}": render_html(doc, lang) for lang in langs}
    for key, path in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(texts[key], encoding="utf-8")
        tmp.replace(path)
    return targets
