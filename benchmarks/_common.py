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


_SPIN = "import time\nt = time.perf_counter()\nx = 0\nfor i in range(10_000_000):\n    x += i\nprint(time.perf_counter() - t)"


def cpu_calibration() -> dict[str, float]:
    """How fast this machine is right now: seconds for a fixed pure-Python loop (10 million
    additions) in one process alone, and the slower of two copies run at the same time.

    On the development machine (a 2-vCPU virtual machine) the same loop took 0.35 s at one
    moment and 0.85 s a minute later, and two copies together took twice as long as one
    alone at times (the two vCPUs then give about one core's worth): wall-clock figures are
    only comparable between runs with similar calibrations."""
    def spin(n: int) -> float:
        procs = [subprocess.Popen([sys.executable, "-c", _SPIN], stdout=subprocess.PIPE, text=True)
                 for _ in range(n)]
        return max(float(p.communicate()[0]) for p in procs)

    return {"one_process_s": round(spin(1), 3), "two_processes_s": round(spin(2), 3)}


_PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024 if hasattr(os, "sysconf") else 4


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of one process so far (``/proc/<pid>/stat``); None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, ValueError, IndexError):
        return None


def rss_kib(pid: int) -> int:
    """Resident set size of one process, KiB (``/proc/<pid>/statm``: kernel counters, cheap
    enough to read every few milliseconds); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_KIB
    except (OSError, ValueError, IndexError):
        return 0


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process, KiB; zeros once it is gone.

    Reads ``/proc/<pid>/smaps_rollup``, which walks the process's page tables
    under its memory-map lock: the process's page faults wait meanwhile.  Read
    it seldom (a second apart) while timing something, :func:`rss_kib` often."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            fields = dict(line.split(":", 1) for line in f if line[:4] in ("Rss:", "Pss:"))
        return int(fields["Rss"].split()[0]), int(fields["Pss"].split()[0])
    except (OSError, KeyError, ValueError):
        return 0, 0
