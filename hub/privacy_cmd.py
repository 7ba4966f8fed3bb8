"""``linkage-hub privacy``: what the hub could learn from the encodings it holds.

    linkage-hub privacy --db hub.duckdb [--sample 2000] [--public FILE] [--attacks ...]
    linkage-hub privacy --lab county [--people 20000] [--variants none,default,...] [--out DIR]

With ``--db``: bit-frequency statistics of every filter column and the CLK,
frequency statistics of every keyed hash and blocking key, and the attacks
that need only what the hub has (frequency, pattern mining, keyed-hash
frequency) run on a sample of the records, against a public frequency
table (the shipped synthetic one unless ``--public`` names a CSV or Parquet
file of normalisable values, one column per schema field).  The hub has no
plaintext, so it reports what each attack *claims*; how often such claims
are right is what ``--lab`` and ``python -m benchmarks privacy`` measure.

With ``--lab``: the attack lab (:mod:`hub.privacy.lab`) on synthetic data
with a known truth: every attack (the graph attack too) against each
hardening variant, re-identification figures per variant; ``--out`` writes
the JSON, CSV and chart.  The linkage F1 cost of each variant is measured by
``python -m benchmarks privacy`` (it runs the full linkage per variant).

Output never holds a value, token or filter: counts, shares and bit statistics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from agency_kit.clitools import aidlink_command
from linkage.errors import ConfigError, InputError, Problem


def read_store_sample(db: str | Path, sample_size: int, seed: int = 0):
    """``(schema, table)``: a random sample of the hub's records as the encoded-record table
    (:func:`hub.privacy.stats.sample_store`: ``bf_*``, ``eh_*``/``bk_*``, ``clk``, ``sb_*``)."""
    from linkage.schema import schema_from_document

    from .privacy.stats import sample_store
    from .store import RecordLayout, connect, read_meta

    con = connect(db, read_only=True)
    try:
        meta = read_meta(con)
        if not meta.initialised:
            from linkage.errors import StateError

            raise StateError(f"{db}: no records ingested yet (run `linkage-hub ingest` first)")
        schema = schema_from_document(meta.schema_document, f"{db}: stored schema")
        layout = RecordLayout.from_schema(schema, meta.lsh)
        table = sample_store(con, layout, sample_size, seed)
    finally:
        con.close()
    return schema, table


def _read_public(path: str, schema):
    import pandas as pd

    from linkage.normalise import normalise_records

    p = Path(path)
    try:
        frame = pd.read_parquet(p) if p.suffix.lower() == ".parquet" else pd.read_csv(p, dtype=str,
                                                                                        keep_default_na=False)
    except (OSError, ValueError) as e:
        raise InputError(f"{p}: cannot read the public table ({type(e).__name__})") from e
    cols = [c for c in frame.columns if c in schema.field_names]
    if not cols:
        raise ConfigError(str(p), [Problem("$", "no column is named after a field of the schema")])
    frame = frame[cols].replace("", None)
    normalised, _ = normalise_records(frame, schema)
    return normalised


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def register(cli: click.Group) -> None:
    """Add ``privacy`` to ``linkage-hub``."""

    @aidlink_command(cli, "privacy")
    @click.option("--db", "db_path", type=click.Path(exists=True, dir_okay=False), default=None,
                  help="The hub database: attack a sample of its records.")
    @click.option("--lab", type=click.Choice(["county", "febrl"]), default=None,
                  help="Run the attack lab on synthetic data with a known truth instead.")
    @click.option("--sample", "sample_size", type=click.IntRange(100, 1_000_000), default=2000, show_default=True,
                  help="Records attacked (--db).")
    @click.option("--public", "public_path", type=click.Path(exists=True, dir_okay=False), default=None,
                  help="Public frequency table (CSV/Parquet, columns named by schema fields); default: the "
                       "shipped synthetic one.")
    @click.option("--attacks", "attack_names", default="frequency,pattern_mining,keyed_hash,bank_linking",
                  show_default=True,
                  help="Attacks to run (--lab also allows graph).")
    @click.option("--people", type=click.IntRange(500, 1_000_000), default=20_000, show_default=True,
                  help="Synthetic county size (--lab county).")
    @click.option("--public-people", type=click.IntRange(1000, 2_000_000), default=200_000, show_default=True,
                  help="Size of the synthetic public table (--lab county).")
    @click.option("--variants", default="none,default", show_default=True,
                  help="Hardening variants (--lab): names from hub.privacy.lab.default_variants, or 'all'.")
    @click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
                  help="Write the lab's JSON, CSV and chart here (--lab).")
    @click.option("--seed", type=int, default=0, show_default=True)
    def privacy(reporter, db_path: str | None, lab: str | None, sample_size: int, public_path: str | None,
                attack_names: str, people: int, public_people: int, variants: str, out_dir: str | None,
                seed: int) -> dict[str, Any]:
        """Measure what frequency, pattern-mining and graph attacks recover from the encodings."""
        which = tuple(a.strip() for a in attack_names.split(",") if a.strip())
        known = {"frequency", "pattern_mining", "keyed_hash", "graph", "bank_linking"}
        if bad := [a for a in which if a not in known]:
            raise click.BadParameter(f"unknown attack(s): {', '.join(bad)}", param_hint="--attacks")
        if (db_path is None) == (lab is None):
            raise click.UsageError("give exactly one of --db and --lab")
        if db_path is not None:
            return _attack_store(reporter, db_path, sample_size, public_path, which, seed)
        return _run_lab(reporter, lab, people, public_people, variants, which, out_dir, seed)


def _attack_store(reporter, db_path: str, sample_size: int, public_path: str | None, which, seed: int):
    from .privacy.stats import attack_sample, bit_statistics

    if "graph" in which:
        raise click.BadParameter("the graph attack needs a plaintext reference population and known pairs: "
                                 "use --lab", param_hint="--attacks")
    schema, table = read_store_sample(db_path, sample_size, seed)
    public = _read_public(public_path, schema) if public_path else None
    out = attack_sample(table, schema, public=public, sample_size=table.num_rows, seed=seed, attacks_to_run=which)
    for col, res in out["columns"].items():
        st = res["statistics"]
        if res["kind"] == "hash":
            line = (f"{col}: {st['records']} values, {st.get('distinct', 0)} distinct, "
                    f"{_pct(st.get('shared'))} shared with another record, largest class "
                    f"{(st.get('largest_classes') or [0])[0]}")
        else:
            line = (f"{col}: {st['records']} filters of {st.get('length')} bits, fill "
                    f"{_pct(st.get('frequency', {}).get('mean'))}, mean entropy "
                    f"{st.get('entropy', {}).get('mean', 0):.3f} bits, Hamming weight "
                    f"{st.get('hamming_weight', {}).get('mean', 0):.1f} +- "
                    f"{st.get('hamming_weight', {}).get('sd', 0):.1f}, {_pct(st.get('shared'))} identical to another")
        reporter.say(line)
        for atk in ("frequency", "pattern_mining", "keyed_hash", "bank_linking"):
            if atk in res:
                r = res[atk]
                reporter.say(f"  {atk}: would claim {r['claimed']} of {r['attacked']} records "
                             f"({_pct(r['claimed_share'])})")
    clk = out["columns"].get("clk")
    if clk is not None:
        clk["position_frequency"] = bit_statistics(table.column("clk"))["position_frequency"]
    return out


def _run_lab(reporter, data_name: str, people: int, public_people: int, variants: str, which,
             out_dir: str | None, seed: int):
    from .privacy import lab

    if data_name == "county":
        data = lab.county_lab_data(people=people, public_people=public_people)
    else:
        data = lab.febrl_lab_data()
    all_v = lab.default_variants(data.salt)
    names = [v.name for v in all_v] if variants.strip() == "all" else [v.strip() for v in variants.split(",")]
    by_name = {v.name: v for v in all_v}
    if bad := [n for n in names if n not in by_name]:
        raise click.BadParameter(f"unknown variant(s): {', '.join(bad)}", param_hint="--variants")
    rows = lab.run_lab(data, [by_name[n] for n in names], attacks_to_run=which, seed=seed,
                       progress=lambda m: reporter.say(m) if not reporter.as_json else None)
    table = lab.tradeoff_table(rows)
    for r in table:
        reporter.say(f"{r['variant']:<20} frequency {_pct(r['frequency_reid'])}  pattern mining "
                     f"{_pct(r['pattern_mining_reid'])}  graph {_pct(r['graph_reid'])}  bank linking "
                     f"{_pct(r['bank_linking_reid'])}  CLK graph {_pct(r['clk_graph_reid'])}")
    for r in rows:
        if r["column"] and not r["column"].startswith("bf_"):
            reporter.say(f"{r['variant']:<20} {r['column']:<16} {r['attack']:<12} {_pct(r['reidentified'])}")
    out: dict[str, Any] = {"data": data_name, "records": len(data.raw), "tradeoff": table, "rows": rows}
    if out_dir:
        meta = {k: v for k, v in data.extra.items() if k not in ("county", "paths")}
        out["files"] = lab.write_outputs(rows, table, Path(out_dir), meta={"data": meta})
    return out
