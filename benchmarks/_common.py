"""Shared benchmark plumbing: peers in their own virtual environment, timing, memory.

The peers (clkhash 0.18.x and anonlink 0.15.x) pull numpy<2 and must stay out
of the project's environment.  ``peer_python()`` creates ``.peers/venv`` on
first use (needs the package index) and returns its interpreter, or None when
it cannot be created -- benchmarks then report the peer as unavailable rather
than inventing a figure.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEER_DIR = Path(os.environ.get("AIDLINK_PEER_DIR", ROOT / ".peers"))
PEER_REQUIREMENTS = ["clkhash==0.18.3", "anonlink==0.15.3", "recordlinkage==0.16", "pandas",
                     "setuptools<81"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def peer_python() -> Path | None:
    """The peers' interpreter, creating the environment if needed; None if impossible."""
    venv = PEER_DIR / "venv"
    py = venv / "bin" / "python"
    stamp = venv / ".ok"
    if stamp.exists():
        return py
    try:
        log(f"creating peer environment in {venv} (clkhash, anonlink) ...")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *PEER_REQUIREMENTS], check=True,
                       capture_output=True, timeout=900)
        subprocess.run([str(py), "-c", "import clkhash, anonlink"], check=True, capture_output=True)
    except (subprocess.SubprocessError, OSError) as e:
        log(f"peer environment unavailable: {type(e).__name__}")
        return None
    stamp.write_text("ok")
    return py


def run_peer(script: str, payload: dict, timeout: int = 1800) -> dict | None:
    """Run ``script`` (Python source) under the peers' interpreter.

    The script reads one JSON object on stdin and prints one JSON object on its
    last stdout line.  Returns that object, or None if the peer is unavailable.
    """
    py = peer_python()
    if py is None:
        return None
    proc = subprocess.run([str(py), "-c", script], input=json.dumps(payload), capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        log(f"peer run failed:\n{proc.stderr[-2000:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peak_rss_mib(children: bool = False) -> float:
    """Peak resident set size of this process (or its finished children), MiB."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024.0


@contextmanager
def timer():
    """``with timer() as t: ...`` then ``t()`` is the elapsed seconds."""
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def best_of(fn, repeat: int = 3) -> float:
    """Best wall time of ``repeat`` calls of ``fn()``, seconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def tree_pids(root_pid: int) -> list[int]:
    """``root_pid`` and all its descendants (from /proc)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    tree = [root_pid]
    for pid in tree:  # grows while walking
        tree.extend(p for p, pp in parent.items() if pp == pid and p not in tree)
    return tree


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process, KiB; zeros once it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            fields = dict(line.split(":", 1) for line in f if line[:4] in ("Rss:", "Pss:"))
        return int(fields["Rss"].split()[0]), int(fields["Pss"].split()[0])
    except (OSError, KeyError, ValueError):
        return 0, 0
