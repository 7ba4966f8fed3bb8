"""The whole story on a synthetic county, through the real command-line tools.

    python scripts/demo.py [--people N] [--out DIR] [--seed S] [--keep]

1. generate a synthetic county (population, seven agency exports, truth);
2. create the linkage secret, every agency's identity, the hub's keys, the roster;
3. every agency encodes its export into a signed package sealed to the hub;
4. the hub ingests the packages, links them with Splink, clusters, applies the
   rules, writes one sealed result package per receiving agency and the
   linkage report (HTML in Chinese and English, and JSON) for the reviewer;
5. every receiving agency reveals its clues against its own vault and export;
6. the clues are scored against the planted truth.

It ends by printing where the clue lists and the report are and the clue
precision/recall.
Every step is a subprocess running ``agency-kit`` / ``linkage-hub`` with
``--json``, exactly as an operator would run them.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PASSPHRASE = "demo-passphrase-not-for-production"
REFERENCE_DATE = "2024-06-30"  # the synthetic county's "as of" date: ages are computed at it
HUB_OPERATOR = "county procuratorate technical office (hub operators; holds no linkage secret)"
RUN_CONFIG = {  # why the run is made: the report states it
    "version": 1,
    "purpose": "筛查未获赔偿且生活困难的刑事被害人等司法救助线索（演示县，合成数据）",
    "legal_basis": "《人民检察院国家司法救助工作细则》；县司法救助与社会救助衔接工作协议",
    "retention_days": 180,
}


class StepFailed(RuntimeError):
    pass


def run(tool: str, *args: str, log: list | None = None) -> dict:
    """Run one CLI command with --json; return its JSON summary."""
    cmd = [str(BIN / tool), *args, "--json"]
    t0 = time.perf_counter()
    env = dict(os.environ, AIDLINK_PASSPHRASE=PASSPHRASE)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise StepFailed(f"{tool} {args[0]} failed (exit {proc.returncode}):\n{proc.stderr.strip()}")
    out = json.loads(proc.stdout)
    if log is not None:
        log.append({"command": f"{tool} {args[0]}", "seconds": round(dt, 2)})
    return out


PROGRESS = sys.stdout  # stderr with --json: stdout then holds the one JSON summary and nothing else


def say(msg: str) -> None:
    print(msg, file=PROGRESS, flush=True)


def score_clues(truth_dir: Path, revealed: list[tuple[str, str, int]]) -> dict:
    """Precision/recall of (rule, person) clues: revealed rows are (rule_id, dataset, file_row)."""
    person_of: dict[tuple[str, int], int] = {}
    with open(truth_dir / "person_of_row.csv", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            person_of[(r["dataset"], int(r["file_row"]))] = int(r["person_id"])
    expected: set[tuple[str, int]] = set()
    with open(truth_dir / "expected_clues.csv", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            expected.add((r["rule_id"], int(r["person_id"])))
    found = {(rule, person_of[(ds, row)]) for rule, ds, row in revealed if (ds, row) in person_of}
    tp = len(found & expected)
    per_rule = {}
    for rule in sorted({r for r, _ in expected | found}):
        e = {p for r, p in expected if r == rule}
        g = {p for r, p in found if r == rule}
        per_rule[rule] = {"expected": len(e), "found": len(g), "correct": len(e & g)}
    return {
        "expected": len(expected), "found": len(found), "correct": tp,
        "precision": round(tp / len(found), 4) if found else None,
        "recall": round(tp / len(expected), 4) if expected else None,
        "per_rule": per_rule,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=ROOT / "demo-out")
    ap.add_argument("--json", action="store_true", help="print one JSON summary at the end")
    args = ap.parse_args(argv)
    global PROGRESS
    PROGRESS = sys.stderr if args.json else sys.stdout
    out: Path = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    county, keys, packages, hubdir, results, clues_dir, report_dir = (
        out / d for d in ("county", "keys", "packages", "hub", "results", "clues", "report"))
    steps: list = []
    t0 = time.perf_counter()

    say(f"1. generating a synthetic county of {args.people:,} people (seed {args.seed}) ...")
    gen = subprocess.run([sys.executable, "-m", "synthetic", "--people", str(args.people), "--seed", str(args.seed),
                          "--out", str(county), "--json"], capture_output=True, text=True, cwd=ROOT)
    if gen.returncode != 0:
        raise StepFailed(f"generator failed:\n{gen.stderr}")
    meta = json.loads((county / "truth" / "meta.json").read_text("utf-8"))
    mappings = sorted(county.glob("*.mapping.json"))
    datasets = {}
    for m in mappings:
        doc = json.loads(m.read_text("utf-8"))
        base = doc["dataset"] if doc["dataset"] in meta["datasets"] else doc["dataset_kind"]
        datasets[doc["dataset"]] = {"mapping": m, "agency": doc["agency"], "kind": doc["dataset_kind"],
                                    "export": county / meta["datasets"][base]["file"]}
    agencies: dict[str, set[str]] = defaultdict(set)
    for d in datasets.values():
        agencies[d["agency"]].add(d["kind"])
    for receiver_only in ("womens-federation",):
        agencies.setdefault(receiver_only, set())

    say("2. keys: one linkage secret for the agencies, an identity per agency, the hub's keys, the roster ...")
    run("agency-kit", "keygen-secret", "--out", str(keys / "secret.key"), log=steps)
    pubs = []
    for agency, kinds in sorted(agencies.items()):
        kind_args = [a for k in sorted(kinds) for a in ("--dataset", k)]
        run("agency-kit", "keygen-identity", "--agency", agency, "--out", str(keys), *kind_args, log=steps)
        pubs += ["--agency", str(keys / f"{agency}.pub.json")]
    run("linkage-hub", "keygen", "--out", str(hubdir), "--operator", HUB_OPERATOR, log=steps)
    run("agency-kit", "roster-build", "--federation", "demo-county", "--schema", "judicial-assistance",
        "--hub", str(hubdir / "hub.pub.json"), *pubs, "--sign-with", str(hubdir / "hub.identity.key"),
        "--out", str(out / "roster.json"), log=steps)

    say("3. every agency encodes its export (read, normalise, encode, vault, sign, seal) ...")
    encoded = {}
    for name, d in sorted(datasets.items()):
        s = run("agency-kit", "encode", "--input", str(d["export"]), "--mapping", str(d["mapping"]),
                "--secret", str(keys / "secret.key"), "--identity", str(keys / f"{d['agency']}.identity.key"),
                "--roster", str(out / "roster.json"), "--out", str(packages / f"{name}.aidpkg"),
                "--reference-date", REFERENCE_DATE, log=steps)
        encoded[name] = s["counts"]
        d["package_id"] = s["package_id"]
        c = s["counts"]
        say(f"   {name:26s} {c['rows_read']:>7,} rows  {c['encoded']:>7,} encoded  {c['flagged']:>6,} flagged  "
            f"{c['rejected']:>4,} rejected")

    say("4. the hub ingests, links (Splink on DuckDB), clusters, applies the rules, writes results and the report ...")
    db = hubdir / "hub.duckdb"
    hub_key = hubdir / "hub.identity.key"
    run("linkage-hub", "ingest", "--db", str(db), "--roster", str(out / "roster.json"), "--hub-key", str(hub_key),
        *[str(p) for p in sorted(packages.glob("*.aidpkg"))], log=steps)
    run_config = hubdir / "run-config.json"
    run_config.write_text(json.dumps(RUN_CONFIG, ensure_ascii=False, indent=2), "utf-8")
    m = run("linkage-hub", "match", "--db", str(db), "--config", str(run_config), log=steps)
    r = run("linkage-hub", "rules", "--db", str(db), log=steps)
    res = run("linkage-hub", "results", "--db", str(db), "--roster", str(out / "roster.json"),
              "--hub-key", str(hub_key), "--out", str(results), log=steps)
    rep = run("linkage-hub", "report", "--db", str(db), "--roster", str(out / "roster.json"), "--lang", "zh",
              "--lang", "en", "--out", str(report_dir), log=steps)
    reports = {**rep["files"]["html"], "json": rep["files"]["json"]}
    say(f"   linkage report: {reports['zh']} (English: {reports['en']}; JSON: {reports['json']})")

    say("5. every receiving agency reveals its clues locally ...")
    revealed: list[tuple[str, str, int]] = []
    clue_files = {}
    for p in res["packages"]:
        agency = p["agency"]
        for name, d in sorted(datasets.items()):
            if d["agency"] != agency or not p["rows_by_package"].get(d["package_id"]):
                continue
            target = clues_dir / agency / f"{name}.clues.xlsx"
            csv_target = target.with_suffix(".csv")
            s = run("agency-kit", "reveal", "--result", p["file"], "--identity",
                    str(keys / f"{agency}.identity.key"), "--roster", str(out / "roster.json"),
                    "--vault", str(packages / f"{name}.vault"), "--input", str(d["export"]),
                    "--mapping", str(d["mapping"]), "--out", str(target), "--csv", str(csv_target),
                    "--register", str(clues_dir / agency / "register.duckdb"), log=steps)
            if not s.get("revealed"):
                continue
            clue_files[name] = s["outputs"]["xlsx"]
            truth_name = name  # the truth lists rows per dataset (the guardians' rows apart from the students')
            with open(csv_target, encoding="utf-8-sig") as f:
                for row in csv.DictReader(f):
                    revealed.append((row["规则编号"], truth_name, int(row["源文件行号"])))

    score = score_clues(county / "truth", revealed)
    total = time.perf_counter() - t0
    say("6. result")
    say(f"   records linked: {m.get('records')}, links: {m.get('links')}, clusters: {m.get('clusters', {}).get('count')}")
    say(f"   clues for the procuratorate and others: {sum(sum(v.values()) for v in r['clues'].values())}")
    for name, f in sorted(clue_files.items()):
        say(f"   clue list ({name}): {f}")
    say(f"   linkage report for the compliance reviewer: {reports['zh']}")
    say(f"   clue precision {score['precision']}, recall {score['recall']} "
        f"({score['correct']} of {score['expected']} planted/true clues found, {score['found']} reported)")
    say(f"   finished in {total:.0f} s; everything is under {out}")
    if args.json:
        print(json.dumps({"out": str(out), "seconds": round(total, 1), "encoded": encoded, "match": m,
                          "rules": r["clues"], "score": score, "report": reports, "steps": steps},
                         ensure_ascii=False))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except StepFailed as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(1)
