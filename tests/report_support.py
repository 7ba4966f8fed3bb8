"""A small, complete hub run for the report tests: a synthetic county through every step.

``report_run()`` builds it once per test session (cached) in a temporary
directory: a synthetic county of 500 people, keys and a roster
(:func:`tests.support.make_federation`), every agency's export encoded by
``agency-kit encode`` (in process), ingest, match (with a run configuration
carrying purpose, legal basis and retention), rules and result packages.

It also collects everything the report must never contain (:attr:`ReportRun.forbidden`):
every token, every raw ID number, phone and name of the exports, and every keyed hash, blocking key,
filter word and record CLK the hub holds -- so a test can scan a report for each of them.
All synthetic.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import duckdb

from tests.support import PASSPHRASE, make_federation

PEOPLE = 500
SEED = 5
PURPOSE = "筛查未获赔偿且生活困难的刑事被害人等司法救助线索（测试县）"
LEGAL_BASIS = "《人民检察院国家司法救助工作细则》；测试县司法救助与社会救助衔接工作协议"
RECEIVER_ONLY = ("womens-federation",)


@dataclass
class ReportRun:
    root: Path
    db: Path
    run_id: str
    roster: Path
    hub_key: Path
    results_dir: Path
    forbidden: set[str] = field(default_factory=set)  # strings no report may contain


def _hub_secrets(db: Path) -> set[str]:
    """Every token, keyed hash, blocking key, LSH band, filter word and CLK in the hub database (table
    ``records`` and any salt-bank table ``bank_*``), as text."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_name = 'records'"
            " OR table_name LIKE 'bank\\_%' ESCAPE '\\'").fetchall()]
        out: set[str] = {t for (t,) in con.execute("SELECT token FROM records").fetchall()}
        for table in tables:
            for c, typ in con.execute(f'SELECT column_name, data_type FROM information_schema.columns'
                                      f" WHERE table_name = '{table}'").fetchall():
                if typ == "BLOB":
                    for (v,) in con.execute(f'SELECT "{c}" FROM "{table}" WHERE "{c}" IS NOT NULL').fetchall():
                        out.add(bytes(v).hex())
                        out.add(bytes(v)[:16].hex())
                elif c.startswith(("eh_", "bk_", "lsh_", "bf_")) and not c.endswith("_pc"):
                    least = 10**9 if c.startswith("bf_") else 10**6  # short numbers occur in any text
                    for (v,) in con.execute(f'SELECT DISTINCT "{c}" FROM "{table}" WHERE "{c}" IS NOT NULL').fetchall():
                        if abs(v) >= least:
                            out.add(str(v))
                            if not c.startswith("bf_"):
                                out.add(format(v & 0xFFFFFFFFFFFFFFFF, "016x"))
        return out
    finally:
        con.close()


def _raw_identifiers(exports) -> set[str]:
    """ID and certificate numbers, phones, names (3 characters or more) and addresses of every export
    (``County.exports``)."""
    out: set[str] = set()
    for table in exports.values():
        for col in table.columns:
            least = (15 if any(w in col for w in ("身份", "证号", "学籍号")) else
                     7 if "电话" in col else
                     3 if any(w in col for w in ("姓名", "执行人")) else
                     8 if "地址" in col or "住址" in col else 0)
            if not least:
                continue
            out |= {str(v).strip() for v in table[col].dropna() if len(str(v).strip()) >= least}
    return out


@cache
def report_run() -> ReportRun:
    """The shared run (built on first use, removed at exit)."""
    from click.testing import CliRunner

    from agency_kit.cli import cli as agency_cli
    from hub.ingest import ingest_packages
    from hub.model import run_match
    from hub.results import write_results
    from hub.rules import apply_rules, load_rules
    from hub.runconfig import run_config_from_document
    from linkage.documents import read_json
    from linkage.keyfile import read_identity_file
    from linkage.roster import load_roster, sign_roster, write_roster
    from linkage.schema import load_schema
    from synthetic.county import generate_county, write_county

    root = Path(tempfile.mkdtemp(prefix="aidlink-report-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    county = generate_county(PEOPLE, SEED)
    paths = write_county(county, root / "county", "csv", population=False)
    mappings = {ds: json.loads(p.read_text("utf-8")) for ds, p in paths["mappings"].items()}
    agencies: dict[str, list[str]] = {}
    for doc in mappings.values():
        agencies.setdefault(doc["agency"], []).append(doc["dataset_kind"])
    for a in RECEIVER_ONLY:
        agencies.setdefault(a, [])
    fed = make_federation(root / "fed", {a: sorted(set(k)) for a, k in agencies.items()})

    runner = CliRunner()
    packages = []
    for ds, mp in sorted(paths["mappings"].items()):
        doc = mappings[ds]
        export = paths["exports"].get(ds) or paths["exports"][doc["dataset_kind"]]
        out = root / "packages" / f"{doc['dataset']}.aidpkg"
        res = runner.invoke(agency_cli, [
            "encode", "--input", str(export), "--mapping", str(mp), "--secret", str(fed.secret),
            "--identity", str(fed.identities[doc["agency"]]), "--roster", str(fed.roster), "--out", str(out),
            "--workers", "1", "--reference-date", county.as_of.isoformat(), "--json"],
            env={"AIDLINK_PASSPHRASE": PASSPHRASE}, catch_exceptions=False)
        assert res.exit_code == 0, res.output
        packages.append(out)

    hub = read_identity_file(fed.hub_key, PASSPHRASE, role="hub")
    # result packages are sealed only to the keys of a roster this hub signed
    write_roster(fed.roster, sign_roster(read_json(fed.roster), hub.signing_key, hub.id), force=True)
    roster = load_roster(fed.roster, hub_signing_key=hub.signing_key.public_key())
    db = root / "hub" / "hub.duckdb"
    db.parent.mkdir()
    ingest_packages(db, packages, hub_identity=hub, roster=roster)
    cfg = run_config_from_document({"version": 1, "purpose": PURPOSE, "legal_basis": LEGAL_BASIS,
                                    "retention_days": 90})
    summary = run_match(db, cfg, memory_limit="1GB", threads=2)
    rules = load_rules("judicial-assistance", load_schema("judicial-assistance"))
    con = duckdb.connect(str(db))
    try:
        apply_rules(con, rules, summary.run_id)
    finally:
        con.close()
    results_dir = root / "results"
    write_results(db, results_dir, roster=roster, hub=hub, rules=rules, run_id=summary.run_id,
                  now=datetime.now(UTC).replace(microsecond=0))
    forbidden = _hub_secrets(db) | _raw_identifiers(county.exports)
    return ReportRun(root=root, db=db, run_id=summary.run_id, roster=fed.roster, hub_key=fed.hub_key,
                     results_dir=results_dir, forbidden=forbidden)


def find_leaks(forbidden: set[str], text: str) -> list[str]:
    """The strings of ``forbidden`` that occur in ``text`` (exact, fast for thousands of strings).

    Every occurrence of a forbidden string lies inside one maximal run of characters that occur in some
    forbidden string; so the text is cut into such runs, and each string is looked up among the runs
    as long as itself (a set) and searched in the longer ones only.
    """
    import re

    chars = "".join(sorted(set("".join(forbidden))))
    runs = re.findall(f"[{re.escape(chars)}]+", text)
    exact = set(runs)
    longer: dict[int, str] = {}
    leaks = []
    for s in forbidden:
        if s in exact:
            leaks.append(s)
            continue
        n = len(s)
        if n not in longer:
            longer[n] = "\x00".join(r for r in runs if len(r) > n)
        if s in longer[n]:
            leaks.append(s)
    return leaks
