"""``python -m synthetic --people N --seed S --out DIR [--formats mixed|csv|parquet]``.

Writes a synthetic county (exports, mapping documents, truth) to DIR.
Errors print ``Error: <message>`` on stderr and exit with the error's code
(:mod:`linkage.errors`); usage errors exit 2.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path

import click

from linkage.errors import OutputExistsError


@click.command(name="synthetic", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--people", type=click.IntRange(min=500), default=20_000, show_default=True,
              help="Population size.")
@click.option("--seed", type=int, default=7, show_default=True, help="Random seed (same seed, same files).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output directory.")
@click.option("--formats", default="mixed", show_default=True,
              help="mixed (CSV UTF-8 BOM / GB18030, court XLSX), csv, parquet; or overrides such as "
                   "'mixed,court_enforcement=csv'.")
@click.option("--as-of", "as_of", type=click.DateTime(formats=["%Y-%m-%d"]), default="2024-06-30",
              show_default=True, help="Reference date for ages and case dates.")
@click.option("--per-rule", type=click.IntRange(min=1), default=None,
              help="People planted per rule (default max(6, people / 2000)).")
@click.option("--no-population", is_flag=True, help="Do not write truth/population.csv.")
@click.option("--force", is_flag=True, help="Write into a non-empty output directory.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary on stdout.")
def main(people: int, seed: int, out_dir: Path, formats: str, as_of: dt.datetime, per_rule: int | None,
         no_population: bool, force: bool, as_json: bool) -> None:
    """Generate a synthetic county for aidlink tests, benchmarks and the demo."""
    from synthetic.county import generate_county, resolve_formats, write_county

    try:
        resolve_formats(formats)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--formats") from e
    try:
        if out_dir.exists() and any(out_dir.iterdir()) and not force:
            raise OutputExistsError(f"{out_dir} exists and is not empty (use --force)")
        t0 = time.perf_counter()
        county = generate_county(people, seed, as_of=as_of.date(), per_rule=per_rule)
        t1 = time.perf_counter()
        paths = write_county(county, out_dir, formats, population=not no_population)
        t2 = time.perf_counter()
    except OutputExistsError as e:
        click.echo(f"Error: {e.message}", err=True)
        sys.exit(e.exit_code)
    summary = {
        "ok": True, "people": people, "seed": seed, "out": str(out_dir),
        "rows": {ds: len(t) for ds, t in county.exports.items()},
        "expected_clues": county.expected_clues["rule_id"].value_counts().sort_index().to_dict(),
        "seconds": {"generate": round(t1 - t0, 2), "write": round(t2 - t1, 2)},
        "files": {k: {n: str(p) for n, p in v.items()} for k, v in paths.items()},
    }
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False))
        return
    click.echo(f"synthetic county: {people} people, seed {seed} -> {out_dir} "
               f"({summary['seconds']['generate']} s + {summary['seconds']['write']} s)")
    for ds, n in summary["rows"].items():
        click.echo(f"  {ds:<26} {n:>8} rows  {paths['exports'][ds].name}")
    click.echo("  expected clues: " + ", ".join(f"{r} {n}" for r, n in summary["expected_clues"].items()))


if __name__ == "__main__":  # pragma: no cover
    main(prog_name="python -m synthetic")
