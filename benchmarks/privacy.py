"""Privacy: what published attacks recover from the encodings, per hardening setting, and what
each setting costs the linkage.

``python -m benchmarks privacy [--quick] [--json]``

The attack lab (:mod:`hub.privacy.lab`) on three data sets:

1. ``county``: a synthetic county of 6,000 people (every record of the
   seven agency exports, errors included); attacker's public table: 50,000
   other people from the same frequency tables; graph attacker's reference:
   the county's population register, 50 known records;
2. ``county_yearless``: the same county with the victims' (50 %) and wage
   claimants' (30 %) exports lacking the ID number -- and so the birth year --
   far more often: the records a salt bank is for (finding 3), against
   what to do without a salt (bank, no filter, unsalted, bank under BLIP);
3. ``febrl``: FEBRL4 (both files); public table: FEBRL1-3; graph reference:
   file A's originals plus FEBRL3; 50 known records.

Per hardening variant (none -- name filters and CLK unhardened --, the schema
as shipped, permutation, bits per feature, balancing, XOR-folding, salting,
BLIP at several epsilons, combinations, the issue's 1024-bit/20-bit geometry,
and the CLK permuted only, salted or under BLIP) it runs the frequency,
pattern-mining, graph and salt-bank attacks on the name filters; the
frequency and graph attacks on the CLK where the variant sets it; and for
the schema as shipped everything: the CLK, every other filter (frequency,
graph), every keyed hash and blocking key.  The linkage F1 of each variant
comes from the hub's own linkage harness (``benchmarks/quality.py``: ingest,
``run_match`` with the default run configuration, pairwise F1 against the
truth) on the same data.

Output: the trade-off table on stdout, and ``bench-out/privacy/``
(``AIDLINK_BENCH_OUT`` overrides ``bench-out``): ``privacy-lab.json`` (every
row), ``privacy-tradeoff.csv``, ``privacy-tradeoff.svg`` and
``privacy-tradeoff.html`` (chart and table; no script, no network).
``--quick``: a county of 2,000 people, a public table of 20,000, two
variants (none, the schema as shipped), the name filter only among the name
fields, no other filter, no FEBRL, no yearless county.  ``AIDLINK_PRIVACY_DATA``
(e.g. ``county,febrl``) limits a full run to some data sets, so that they can
run as parallel processes.  ``AIDLINK_PRIVACY_PEOPLE`` (default 6,000) and
``AIDLINK_PRIVACY_PUBLIC`` (default 50,000) set a full run's county size and
public-table size (both counties; FEBRL has its own), so that a complete sweep
fits the time there is: the graph attack and a full linkage per variant grow
with the county.  Every row records what it ran with (``sizes``: people,
public people and records for a county, records for FEBRL; and the encoding
version), in ``privacy-rows.jsonl`` as it goes and in ``privacy-lab.json``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from ._common import ROOT, log


def _county_f1(data, tmp: Path):
    from . import quality as q

    county, paths = data.extra["county"], data.extra["paths"]
    seen: dict[str, float] = {}

    def f1(schema) -> float | None:
        key = schema.fingerprint
        if key not in seen:
            try:
                res = q._county_run(county, paths, schema, tmp, f"v{len(seen)}", with_plaintext=False)
            except Exception as e:  # a hub failure: no F1 for this variant, said so on stderr
                log(f"privacy: linkage failed for this variant ({type(e).__name__}: {str(e)[:200]})")
                seen[key] = None
            else:
                seen[key] = res["ours"]["f1"]
        return seen[key]

    return f1


def _febrl_f1(quick: bool, tmp: Path):
    """F1 of the hub's linkage of FEBRL4 under a schema (the quality benchmark's steps)."""
    import numpy as np
    import pyarrow as pa

    from hub.ingest import ingest_opened
    from hub.model import run_match
    from hub.runconfig import RunConfig
    from linkage.keys import LinkageSecret

    from . import quality as q

    a, b, links = q._febrl(quick)
    counter = [0]

    def f1(schema) -> float:
        counter[0] += 1
        secret = LinkageSecret.generate()
        rng = np.random.default_rng(q.SEED)
        ta, _ = q._encode_frame(a, schema, secret, rng)
        tb, _ = q._encode_frame(b, schema, secret, rng)
        db = tmp / f"febrl{counter[0]}.duckdb"
        kcv = secret.key_check_value()
        ingest_opened(db, [q._opened(schema, ta, "febrl_a", "people", kcv),
                           q._opened(schema, tb, "febrl_b", "people", kcv)], schema=schema, write_parquet=False)
        tok_a = dict(zip(a.index, ta.column("token").to_pylist(), strict=True))
        tok_b = dict(zip(b.index, tb.column("token").to_pylist(), strict=True))
        truth = {q._norm_pair(("febrl_a", tok_a[x]), ("febrl_b", tok_b[y])) for x, y in links}
        labels = pa.table({"dataset_l": ["febrl_a"] * len(links), "token_l": [tok_a[x] for x, _ in links],
                           "dataset_r": ["febrl_b"] * len(links), "token_r": [tok_b[y] for _, y in links]})
        s = run_match(db, RunConfig(), labels=labels, work_dir=tmp / f"work{counter[0]}")
        found = {q._norm_pair((dl, tl), (dr, tr)) for dl, tl, dr, tr in q._hub_links(db, s.run_id)}
        return q._quality(found, truth)["f1"]

    return f1


def _timed(t0: float):
    return lambda m: log(f"[{time.perf_counter() - t0:6.0f} s] {m}")


YEARLESS_ID_MISSING = {"procuratorate_victims": 0.5, "wage_claimants": 0.3}
FULL_PEOPLE = 6000  # the full sweep's county (the graph attack on every variant is the cost)
FULL_PUBLIC = 50_000
DATA_SETS = ("county", "county_yearless", "febrl")
COUNTY_ORDER = ("none", "default", "clk_permute", "salt", "balance", "xor_fold", "blip_eps8", "bits_per_feature",
                "clk_salt", "clk_xor_fold", "salt+xor_fold", "blip_eps4", "blip_eps16", "salt+blip_eps8",
                "balance+xor_fold", "reference_1024_20")
FEBRL_VARIANTS = ("none", "default", "bits_per_feature", "balance", "xor_fold", "salt", "blip_eps8", "blip_eps16",
                  "salt+xor_fold", "salt+blip_eps8")


def _data_sets() -> tuple[str, ...]:
    """``AIDLINK_PRIVACY_DATA`` (comma-separated, default all): which data sets a full run covers,
    so that they can run as parallel processes (each with its own ``AIDLINK_BENCH_OUT``)."""
    env = os.environ.get("AIDLINK_PRIVACY_DATA", "")
    names = tuple(x.strip() for x in env.split(",") if x.strip()) or DATA_SETS
    if bad := [n for n in names if n not in DATA_SETS]:
        raise SystemExit(f"Error: AIDLINK_PRIVACY_DATA: unknown data set(s) {', '.join(bad)}")
    return names


def _size(var: str, default: int) -> int:
    """A positive whole number from environment variable ``var`` (default when unset or empty)."""
    env = os.environ.get(var, "").strip().replace("_", "").replace(",", "")
    if not env:
        return default
    if not env.isdigit() or int(env) <= 0:
        raise SystemExit(f"Error: {var}: expected a positive whole number")
    return int(env)


def _sizes(extra: dict[str, Any], *keys: str) -> dict[str, Any]:
    """What a row records of the run: its data set's size and the encoding version."""
    from linkage.versions import ENCODING_VERSION

    return {**{k: extra[k] for k in keys if k in extra}, "encoding": ENCODING_VERSION}


def run(quick: bool) -> dict[str, Any]:
    from hub.privacy import lab

    t0 = time.perf_counter()
    say = _timed(t0)
    out_dir = Path(os.environ.get("AIDLINK_BENCH_OUT", ROOT / "bench-out")) / "privacy"
    rows: list[dict[str, Any]] = []
    meta: dict[str, Any] = {}
    which = ("county",) if quick else _data_sets()
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / "privacy-rows.jsonl"
    partial.write_text("", "utf-8")

    def keeper(sizes: dict[str, Any]):
        def keep(row: dict[str, Any]) -> None:  # every row as it comes: a long run can be read early
            row["sizes"] = sizes  # the row is also run_lab's: privacy-lab.json has the sizes too
            with partial.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(lab._jsonable(row), ensure_ascii=False, default=str) + "\n")

        return keep

    people = 2000 if quick else _size("AIDLINK_PRIVACY_PEOPLE", FULL_PEOPLE)
    public_people = 20_000 if quick else _size("AIDLINK_PRIVACY_PUBLIC", FULL_PUBLIC)
    county_keys = ("people", "public_people", "records")
    with tempfile.TemporaryDirectory(prefix="aidlink-privacy-") as d:
        tmp = Path(d)
        if "county" in which:
            data = lab.county_lab_data(people=people, public_people=public_people, work_dir=tmp / "c")
            meta["county"] = {k: v for k, v in data.extra.items() if k not in ("county", "paths")}
            variants = lab.default_variants(data.salt, quick=quick)
            if not quick:  # the most telling first: a run cut short still has them
                variants.sort(key=lambda v: COUNTY_ORDER.index(v.name) if v.name in COUNTY_ORDER else 99)
            say(f"privacy: county of {people} people, {len(data.raw)} records, {len(variants)} variants")
            rows += lab.run_lab(data, variants, f1=_county_f1(data, tmp), progress=say,
                                on_row=keeper(_sizes(data.extra, *county_keys)),
                                name_columns=("bf_name",) if quick else None, other_filters=not quick)
        if "county_yearless" in which:
            ydata = lab.county_lab_data(people=people, public_people=public_people, id_missing=YEARLESS_ID_MISSING,
                                        work_dir=tmp / "y", name="county_yearless")
            meta["county_yearless"] = {k: v for k, v in ydata.extra.items() if k not in ("county", "paths")}
            yvariants = lab.bank_variants(ydata.salt)
            say(f"privacy: county with more yearless records ({len(ydata.raw)} records), {len(yvariants)} variants")
            rows += lab.run_lab(ydata, yvariants, f1=_county_f1(ydata, tmp), progress=say, full_columns_for=(),
                                attacks_to_run=("frequency", "graph", "bank_linking"),
                                on_row=keeper(_sizes(ydata.extra, *county_keys)))
        if "febrl" in which:
            fdata = lab.febrl_lab_data()
            meta["febrl"] = fdata.extra
            fvariants = [v for v in lab.default_variants(fdata.salt, clk=False) if v.name in FEBRL_VARIANTS]
            say(f"privacy: FEBRL4 {len(fdata.raw)} records, {len(fvariants)} variants")
            rows += lab.run_lab(fdata, fvariants, f1=_febrl_f1(False, tmp), progress=say,
                                on_row=keeper(_sizes(fdata.extra, "records")),
                                other_filters=False)
    table = lab.tradeoff_table(rows)
    files = lab.write_outputs(rows, table, out_dir, meta={**meta, "quick": quick,
                                                          "encoding": _sizes({})["encoding"]})
    floors = {}
    default = [r for r in table if r["variant"] == "default" and r["data"] == "county"]
    if default:
        r = default[0]
        floors["county_default_every_attack_at_most_0.01"] = r["max_reid"] is not None and r["max_reid"] <= 0.01
        floors["county_default_clk_graph_at_most_0.01"] = (r["clk_graph_reid"] is not None
                                                           and r["clk_graph_reid"] <= 0.01)
        floors["county_default_f1_within_0.005"] = r["f1_cost"] is not None and r["f1_cost"] <= 0.005
        # what the graph attacks add beyond the known people's own records (the known-person floor)
        beyond = [x.get("reidentified_other_people") for x in rows if x["data"] == "county"
                  and x["variant"] == "default" and x["attack"] == "graph" and x.get("role") in ("name", "clk")]
        if beyond and None not in beyond:
            floors["county_default_name_and_clk_graph_beyond_known_people_at_most_0.01"] = max(beyond) <= 0.01
    none = [r for r in table if r["variant"] == "none" and r["data"] == "county"]
    if none:
        floors["county_unhardened_names_vulnerable"] = (none[0]["graph_reid"] or 0) >= 0.05
    floors = {k: bool(v) for k, v in floors.items()}  # numpy bools would be written to JSON as "False"
    return {"tradeoff": table, "rows": rows, "files": files, "floors": floors, "meta": meta,
            "seconds": round(time.perf_counter() - t0, 1)}


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def describe(figures: dict[str, Any]) -> str:
    lines = [f"privacy ({'quick' if figures.get('quick') else 'full'}, {figures['seconds']} s): top-1 "
             f"re-identification, best over the name filters per attack; CLK graph; everything else attacked "
             f"(default variants); F1 cost against no hardening",
             f"{'data':<16}{'variant':<20}{'freq':>8}{'pattern':>8}{'graph':>8}{'bank':>8}{'CLK gr':>8}"
             f"{'other':>8}{'hashes':>8}{'max':>8}{'F1':>8}{'cost':>9}"]
    for r in figures["tradeoff"]:
        f1 = "       -" if r["f1"] is None else f"{r['f1']:8.4f}"
        cost = "        -" if r["f1_cost"] is None else f"{r['f1_cost']:+9.4f}"
        lines.append(f"{r['data']:<16}{r['variant']:<20}{_pct(r['frequency_reid']):>8}"
                     f"{_pct(r['pattern_mining_reid']):>8}{_pct(r['graph_reid']):>8}"
                     f"{_pct(r['bank_linking_reid']):>8}{_pct(r['clk_graph_reid']):>8}"
                     f"{_pct(r['other_filters_max_reid']):>8}{_pct(r['keyed_hash_max_reid']):>8}"
                     f"{_pct(r['max_reid']):>8}{f1}{cost}")
    other = [r for r in figures["rows"] if r.get("role") in ("filter", "hash", "clk")]
    if other:
        lines.append("columns other than the name filters (top-1 re-identification; typo keys: the most of a field's):")
        typo: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for r in other:
            head = str(r["column"]).rsplit("_", 1)[0]
            if str(r["column"]).startswith("vk_"):  # 35 typo keys of an ID number: one line
                if (r["data"], r["variant"], head) not in typo:
                    typo[(r["data"], r["variant"], head)] = []
                    lines.append((r["data"], r["variant"], head))
                typo[(r["data"], r["variant"], head)].append(r)
                continue
            lines.append(f"  {r['data']:<16}{r['variant']:<20}{r['column']:<18}{r['attack']:<22}"
                         f"{_pct(r['reidentified'])}")
        for i, line in enumerate(lines):
            if isinstance(line, tuple):
                rs = typo[line]
                lines[i] = (f"  {line[0]:<16}{line[1]:<20}{line[2] + '_*':<18}{rs[0]['attack']:<22}"
                            f"{_pct(max(r['reidentified'] for r in rs))} ({len(rs)} typo keys)")
    lines.append("files: " + ", ".join(f"{k} {v}" for k, v in figures["files"].items()))
    lines.append("floors: " + ", ".join(f"{k} {'ok' if v else 'MISSED'}" for k, v in figures["floors"].items()))
    return "\n".join(lines)
