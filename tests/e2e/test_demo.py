"""The README's demo, end to end at a small size: every step through the real CLIs.

The clue precision/recall floors are checked against the planted truth, and
no clue list or JSON summary leaks another agency's token.  The linkage report
exists in both languages, its JSON validates, and no file of the hub or the
report holds a source file's ID number.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), "--people", "2000", "--seed", "11",
                           "--out", str(out), "--json"], capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)  # --json: stdout holds the summary and nothing else
    score = summary["score"]
    assert score["expected"] > 0
    assert score["precision"] >= 0.9, score
    assert score["recall"] >= 0.8, score
    # every planted rule yields at least one of its clues
    assert all(v["correct"] > 0 for r, v in score["per_rule"].items() if v["expected"]), score["per_rule"]
    assert "clue list" in proc.stderr and "precision" in proc.stderr  # progress goes to stderr
    # outputs exist; nothing of the hub's holds a source file's identifiers
    assert list((out / "clues").rglob("*.clues.xlsx"))
    assert (out / "hub" / "hub.duckdb").exists()
    # the linkage report: both pages and the JSON, which validates and describes the run that was made
    from linkage.documents import validate_document

    report = summary["report"]
    assert "linkage report for the compliance reviewer" in proc.stderr and report["zh"] in proc.stderr
    for lang in ("zh", "en"):
        page = Path(report[lang]).read_text("utf-8")
        assert page.startswith("<!DOCTYPE html>") and summary["match"]["run_id"] in page
    doc = json.loads(Path(report["json"]).read_text("utf-8"))
    validate_document(doc, "report", report["json"])
    assert doc["run"]["run_id"] == summary["match"]["run_id"]
    assert doc["run"]["purpose"] and doc["run"]["legal_basis"]
    assert doc["federation"]["hub"]["operator"]
    assert doc["key_check"]["agree"] and doc["clues"]["status"] == "clues"
    assert doc["audit"]["status"] == "ok" and doc["audit"]["entries"] >= 4  # ingest, match, rules, results
    ids = set()
    import csv

    for export in (out / "county").glob("*.csv"):
        enc = "gb18030" if "civil_affairs" in export.name or "disability" in export.name else "utf-8-sig"
        with open(export, encoding=enc) as f:
            for row in csv.DictReader(f):
                for k, v in row.items():
                    if "身份" in k and v and len(v) >= 15:
                        ids.add(v)
    assert ids
    hub_bytes = b"".join(p.read_bytes() for d in ("hub", "report") for p in (out / d).rglob("*") if p.is_file())
    leaked = [i for i in list(ids)[:500] if i.encode() in hub_bytes]
    assert not leaked
