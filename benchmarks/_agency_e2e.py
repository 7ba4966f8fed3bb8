"""End-to-end ``agency-kit encode`` of a large synthetic CSV: read, normalise,
encode, vault, package, seal -- through the real command, as agency IT runs it.

Wall time and the peak resident memory of the whole process tree (the command
and its worker processes, sampled every 100 ms from /proc) are reported.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from ._common import log

PASSPHRASE = "benchmark-passphrase-123"
AGENCY = "civil-affairs-bureau"
HEADER = ["序号", "姓名", "身份证号", "性别", "出生日期", "联系电话", "住址"]
MAPPING = {
    "version": 1, "agency": AGENCY, "dataset": "dibao", "dataset_kind": "civil_affairs_dibao",
    "row_key": ["序号"],
    "fields": {"name": "姓名", "id_number": "身份证号", "sex": "性别", "birth_date": "出生日期",
               "phone": "联系电话", "address": "住址"},
}


def write_export(path: Path, people: int, seed: int = 5) -> None:
    """A 低保-style export of ``people`` synthetic rows (UTF-8 with BOM)."""
    from synthetic.population import generate_population

    pop, _ = generate_population(np.random.default_rng(seed), people, dt.date(2024, 6, 30))
    births = pop["birth_date"].dt.strftime("%Y/%-m/%-d").to_numpy()
    sex = np.where(pop["sex"].to_numpy() == "M", "男", "女")
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerows(zip(range(1, people + 1), pop["name"], pop["id_number"], sex, births, pop["phone"],
                        pop["address"], strict=True))


def make_federation(root: Path) -> dict[str, Path]:
    from linkage.keyfile import Identity, create_secret_file, write_identity_file
    from linkage.roster import build_roster, write_roster
    from linkage.schema import load_schema

    keys = root / "keys"
    create_secret_file(keys / "secret.key", PASSPHRASE)
    hub = Identity.generate("hub", "hub", operator="benchmark")
    agency = Identity.generate("agency", AGENCY)
    agency.datasets = ("civil_affairs_dibao",)
    write_identity_file(keys / "agency.key", agency, PASSPHRASE)
    start = datetime.now(UTC) - timedelta(days=1)
    doc = build_roster(federation="bench", schema_fingerprint=load_schema("judicial-assistance").fingerprint,
                       hub=hub.public(), agencies=[agency.public()], valid_from=start,
                       valid_until=start + timedelta(days=30))
    write_roster(root / "roster.json", doc)
    (root / "mapping.json").write_text(json.dumps(MAPPING, ensure_ascii=False), "utf-8")
    return {"secret": keys / "secret.key", "identity": keys / "agency.key", "roster": root / "roster.json",
            "mapping": root / "mapping.json"}


def _tree_rss_kib(root_pid: int) -> int:
    """Resident memory of ``root_pid`` and all its descendants, KiB (from /proc)."""
    parent: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                status = f.read()
        except OSError:
            continue
        pid = int(entry)
        for line in status.splitlines():
            if line.startswith("PPid:"):
                parent[pid] = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss[pid] = int(line.split()[1])
    tree = {root_pid}
    changed = True
    while changed:
        changed = False
        for pid, pp in parent.items():
            if pp in tree and pid not in tree:
                tree.add(pid)
                changed = True
    return sum(rss.get(p, 0) for p in tree)


def run_encode(rows: int, workers: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="aidlink-bench-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        export = root / "dibao.csv"
        write_export(export, rows)
        log(f"wrote a {rows:,}-row export ({export.stat().st_size / 2**20:.0f} MiB) in "
            f"{time.perf_counter() - t0:.1f} s")
        fed = make_federation(root)
        cmd = [str(Path(sys.executable).parent / "agency-kit"), "encode", "--input", str(export),
               "--mapping", str(fed["mapping"]), "--secret", str(fed["secret"]), "--identity", str(fed["identity"]),
               "--roster", str(fed["roster"]), "--out", str(root / "out" / "dibao.aidpkg"), "--workers",
               str(workers), "--json"]
        env = dict(os.environ, AIDLINK_PASSPHRASE=PASSPHRASE)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        peak = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _tree_rss_kib(proc.pid))
                done.wait(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out, err = proc.communicate()
        wall = time.perf_counter() - t0
        done.set()
        sampler.join()
        if proc.returncode != 0:
            raise RuntimeError(f"agency-kit encode failed: {err[-2000:]}")
        summary = json.loads(out)
        pkg = root / "out" / "dibao.aidpkg"
        return {
            "rows": rows,
            "workers": workers,
            "wall_s": round(wall, 2),
            "rows_per_s": round(rows / wall, 0),
            "peak_rss_mib": round(peak / 1024, 0),
            "package_mib": round(pkg.stat().st_size / 2**20, 1),
            "encoded": summary["counts"]["encoded"],
            "flagged": summary["counts"]["flagged"],
            "rejected": summary["counts"]["rejected"],
        }
