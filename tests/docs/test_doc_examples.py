"""Every shell command example in docs/*.md and docs/formats/*.md runs, for real, in order per page.

How a page is read
    ```console            lines starting with ``$ `` are commands (a trailing
                          ``\\`` continues one); every other line is sample
                          output and is not compared.
    ```bash               every non-blank line that is not a ``#`` comment is a
                          command (a trailing ``\\`` continues one).
    ```console exit=16    the block holds one command, which must exit 16 and
                          print ``Error: ...`` on stderr (errors.md's codes).
    ```console norun      installation commands that would change the machine
                          (pip, venv, scripts/setup.sh, the full demo); only
                          those are allowed in a norun block.
    ```json file=X        the block is written to ``X`` (relative to the page's
                          working directory) before the commands after it run:
                          the page tells the reader to save it under that name.
    <!-- test-setup       hidden from rendered pages: setup lines (bash syntax)
    ...                   that stand for what *another* party does (an agency
    -->                   encodes, the hub sends the roster).  They run in one
                          Python process calling the CLIs in-process, which is
                          much faster than a process per command.

Each page runs in its own temporary directory holding ``county/``, a synthetic
county made once per session with ``python -m synthetic --people 1500 --seed 3
--out county``.  Pages that continue another page's story (the procuratorate
officer reveals what the hub operator produced) start from a copy of that
page's finished directory (:data:`CONTINUES`); the full pipeline therefore runs
once, in guide-hub-operator.md.  Every command runs in its own ``bash -c`` with
``AIDLINK_PASSPHRASE`` set, so ``cd`` and ``export`` do not carry over between
commands: examples give paths relative to the working directory.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PASSPHRASE = "docs-example-passphrase"
COUNTY_ARGS = ["--people", "1500", "--seed", "3", "--out", "county"]
COMMAND_TIMEOUT = 600

# page -> the page whose finished working directory it starts from
CONTINUES = {
    "guide-procuratorate-officer.md": "guide-hub-operator.md",
    "guide-compliance-reviewer.md": "guide-hub-operator.md",
}

# Pages of other owners whose examples are known not to run yet: page -> why.  The test is a strict
# xfail for them, so it fails as soon as the page is fixed (then remove the entry).
KNOWN_BROKEN: dict = {}

NORUN_ALLOWED = re.compile(
    r"^(python3? -m (venv|pip)\b|pip3? install\b|\. \.?venv/bin/activate$|source \.?venv/bin/activate$"
    r"|bash scripts/(setup|demo|test)\.sh\b|(AIDLINK_EXTRAS=\S* )?bash scripts/setup\.sh\b"
    r"|python3? scripts/demo\.py\b|git clone\b|cd \S+$)")
FENCE = re.compile(r"^(`{3,}|~{3,})\s*([^\s`{]*)\s*(.*?)\s*$")
SETUP_OPEN = re.compile(r"^<!--\s*test-setup\b")


# ---------------------------------------------------------------- reading a page


@dataclass
class Commands:
    line: int
    commands: list[str]
    expect: int = 0
    hidden: bool = False
    norun: bool = False


@dataclass
class WriteFile:
    line: int
    path: str
    content: str


@dataclass
class Page:
    name: str  # relative to docs/
    steps: list = field(default_factory=list)
    unmarked_shell: list[int] = field(default_factory=list)  # lines of shell-looking blocks not console/bash

    @property
    def runnable(self) -> bool:
        return any(isinstance(s, Commands) and not s.norun for s in self.steps)


def parse_attrs(info: str) -> dict[str, str]:
    attrs = {}
    for tok in info.split():
        k, _, v = tok.partition("=")
        attrs[k] = v if _ else "true"
    return attrs


def join_continuations(lines: list[str]) -> list[str]:
    out: list[str] = []
    buf = ""
    for ln in lines:
        if buf:
            ln = ln.lstrip()
            ln = ln[2:] if ln.startswith("> ") else ln
        if ln.rstrip().endswith("\\"):
            buf += ln.rstrip()[:-1].rstrip() + " "
            continue
        out.append((buf + ln).strip())
        buf = ""
    if buf:
        out.append(buf.strip())
    return out


def console_commands(body: list[str]) -> list[str]:
    cmds: list[str] = []
    cur: list[str] | None = None
    for ln in body:
        if cur is not None and cur[-1].rstrip().endswith("\\"):
            cur.append(ln)
            continue
        if cur is not None:
            cmds.extend(join_continuations(cur))
            cur = None
        if ln.startswith("$ "):
            cur = [ln[2:]]
    if cur is not None:
        cmds.extend(join_continuations(cur))
    return [c for c in cmds if c and not c.startswith("#")]


def bash_commands(body: list[str]) -> list[str]:
    lines = [ln for ln in body if ln.strip() and not ln.lstrip().startswith("#")]
    return [c for c in join_continuations(lines) if c]


def read_page(path: Path) -> Page:
    return parse_page(path.relative_to(DOCS).as_posix(), path.read_text("utf-8"))


def parse_page(name: str, text: str) -> Page:
    page = Page(name)
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        ln = lines[i]
        if SETUP_OPEN.match(ln):
            start = i + 1
            body = []
            i += 1
            while i < len(lines) and "-->" not in lines[i]:
                body.append(lines[i])
                i += 1
            page.steps.append(Commands(start, bash_commands(body), hidden=True))
            i += 1
            continue
        m = FENCE.match(ln)
        if not m:
            i += 1
            continue
        fence, lang, info = m.group(1), m.group(2).lower(), m.group(3)
        start = i + 1
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence[:3]):
            body.append(lines[i])
            i += 1
        i += 1
        attrs = parse_attrs(info)
        if "file" in attrs:
            page.steps.append(WriteFile(start, attrs["file"], "\n".join(body) + "\n"))
        if lang == "console":
            cmds = console_commands(body)
        elif lang == "bash":
            cmds = bash_commands(body)
        else:
            if any(b.startswith("$ ") or re.match(r"^(agency-kit|linkage-hub)\b", b)
                                           for b in body):
                page.unmarked_shell.append(start)
            continue
        if not cmds:
            continue
        page.steps.append(Commands(start, cmds, expect=int(attrs.get("exit", 0)), norun="norun" in attrs))
    return page


def doc_pages() -> list[Path]:
    return sorted([*DOCS.glob("*.md"), *DOCS.glob("formats/*.md")])


# ---------------------------------------------------------------- running a page


class DocCommandFailed(AssertionError):
    pass


def command_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIDLINK_")}
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    # `python -m synthetic` runs from a source checkout; the editable install may predate the package
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["AIDLINK_PASSPHRASE"] = PASSPHRASE
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def _where(page: Page, step) -> str:
    return f"docs/{page.name}:{step.line}"


def run_page(page: Page, workdir: Path, log: list[str]) -> None:
    env = command_env()
    for step in page.steps:
        if isinstance(step, WriteFile):
            target = workdir / step.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(step.content, "utf-8")
            continue
        if step.norun:
            continue
        if step.hidden:
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--hidden-setup"],
                                  input=json.dumps(step.commands), cwd=workdir, env=env, capture_output=True,
                                  text=True, timeout=COMMAND_TIMEOUT)
            log.append(f"{time.perf_counter() - t0:6.1f}s  {_where(page, step)} (hidden setup, "
                       f"{len(step.commands)} commands)")
            if proc.returncode != 0:
                raise DocCommandFailed(f"{_where(page, step)}: hidden setup failed (exit {proc.returncode})\n"
                                       f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
            continue
        if step.expect and len(step.commands) != 1:
            raise DocCommandFailed(f"{_where(page, step)}: a block with exit={step.expect} must hold one command")
        for cmd in step.commands:
            t0 = time.perf_counter()
            proc = subprocess.run(["bash", "-c", cmd], cwd=workdir, env=env, capture_output=True, text=True,
                                  timeout=COMMAND_TIMEOUT)
            log.append(f"{time.perf_counter() - t0:6.1f}s  {_where(page, step)}  {cmd[:90]}")
            if proc.returncode != step.expect:
                raise DocCommandFailed(
                    f"{_where(page, step)}: `{cmd}` exited {proc.returncode}, the page expects {step.expect}\n"
                    f"--- stdout\n{proc.stdout[-2000:]}\n--- stderr\n{proc.stderr[-3000:]}")
            if step.expect not in (0, 2) and "Error: " not in proc.stderr:
                raise DocCommandFailed(f"{_where(page, step)}: `{cmd}` exited {step.expect} without an "
                                       f"'Error: ...' line on stderr:\n{proc.stderr[-2000:]}")


# ---------------------------------------------------------------- the hidden-setup runner


def _hidden_setup_main() -> int:
    """Run setup commands (a JSON list on stdin) in this one process: the CLIs are called in-process."""
    import glob

    commands = json.loads(sys.stdin.read())
    clis = {}
    for cmd in commands:
        argv = shlex.split(cmd)
        expanded = []
        for arg in argv:
            matches = sorted(glob.glob(arg)) if any(c in arg for c in "*?[") else []
            expanded.extend(matches or [arg])
        argv = expanded
        if argv[0] in ("agency-kit", "linkage-hub"):
            if argv[0] not in clis:
                if argv[0] == "agency-kit":
                    from agency_kit.cli import cli
                else:
                    from hub.cli import cli
                clis[argv[0]] = cli
            print(f"$ {cmd}", flush=True)
            try:
                clis[argv[0]].main(args=argv[1:], prog_name=argv[0], standalone_mode=True)
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        else:
            print(f"$ {cmd}", flush=True)
            code = subprocess.run(["bash", "-c", cmd]).returncode
        if code != 0:
            print(f"setup command failed with exit {code}: {cmd}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__" and sys.argv[1:] == ["--hidden-setup"]:
    sys.exit(_hidden_setup_main())


# ---------------------------------------------------------------- the tests

import pytest  # noqa: E402

PAGES = {p.relative_to(DOCS).as_posix(): p for p in doc_pages()}


class Workspaces:
    """Finished working directories per page, so continuing pages reuse them (the pipeline runs once)."""

    def __init__(self, factory) -> None:
        self.factory = factory
        self.done: dict[str, Path] = {}
        self.failed: dict[str, str] = {}
        self.county: Path | None = None
        self.log: list[str] = []

    def make_county(self) -> Path:
        if self.county is None:
            base = self.factory.mktemp("county")
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "synthetic", *COUNTY_ARGS], cwd=base, env=command_env(),
                                  capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
            assert proc.returncode == 0, proc.stderr
            self.log.append(f"{time.perf_counter() - t0:6.1f}s  python -m synthetic {' '.join(COUNTY_ARGS)}")
            self.county = base / "county"
        return self.county

    def run(self, name: str) -> Path:
        if name in self.done:
            return self.done[name]
        if name in self.failed:
            pytest.fail(f"docs/{name} failed earlier: {self.failed[name]}")
        base = CONTINUES.get(name)
        workdir = self.factory.mktemp(re.sub(r"\W", "_", name))
        if base:
            try:
                src = self.run(base)
            except (DocCommandFailed, pytest.fail.Exception) as e:  # reported as this page's failure
                pytest.fail(f"docs/{name} continues docs/{base}, which failed: {str(e)[:500]}")
            shutil.copytree(src, workdir, dirs_exist_ok=True)
        else:
            shutil.copytree(self.make_county(), workdir / "county")
        page = read_page(PAGES[name])
        try:
            run_page(page, workdir, self.log)
        except DocCommandFailed as e:
            self.failed[name] = str(e).splitlines()[0]
            raise
        self.done[name] = workdir
        return workdir


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory):
    ws = Workspaces(tmp_path_factory)
    yield ws
    if ws.log:
        print("\ndocs examples, time per command:\n" + "\n".join(ws.log))


def _page_params():
    for name in PAGES:
        marks = []
        if name in KNOWN_BROKEN:
            marks.append(pytest.mark.xfail(reason=KNOWN_BROKEN[name], raises=DocCommandFailed, strict=True))
        yield pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", list(_page_params()))
def test_page_examples_run(name, workspaces):
    page = read_page(PAGES[name])
    if not page.runnable:
        pytest.skip("no runnable command examples on this page")
    workspaces.run(name)


@pytest.mark.parametrize("name", list(PAGES))
def test_shell_examples_are_marked(name):
    """A block that looks like a shell session is marked console or bash, so it is run."""
    page = read_page(PAGES[name])
    assert not page.unmarked_shell, (
        f"docs/{name}: lines {page.unmarked_shell}: shell examples must be ```console or ```bash blocks")


@pytest.mark.parametrize("name", list(PAGES))
def test_norun_blocks_only_install(name):
    """``norun`` is for installing (pip, venv, setup.sh, the full demo) and nothing else."""
    page = read_page(PAGES[name])
    bad = [c for s in page.steps if isinstance(s, Commands) and s.norun for c in s.commands
           if not NORUN_ALLOWED.match(c)]
    assert not bad, f"docs/{name}: commands in a norun block that should run: {bad}"


def test_guides_exist_and_have_an_example():
    for guide in ("guide-agency-it.md", "guide-hub-operator.md", "guide-procuratorate-officer.md",
                  "guide-compliance-reviewer.md"):
        assert guide in PAGES, f"docs/{guide} is missing"
        assert read_page(PAGES[guide]).runnable, f"docs/{guide} has no runnable example"


def test_reader_understands_the_markup():
    """The page reader itself, on a literal page."""
    text = "\n".join([
        "```console", "$ agency-kit encode --input a.csv \\", "    --out b.aidpkg", "output line", "$ ls", "```",
        "<!-- test-setup", "linkage-hub keygen --out hub \\", "  --operator x", "-->",
        "```console exit=16", "$ agency-kit encode --input a.csv", "Error: exists", "```",
        '```json file=m.json schema=mapping', '{"version": 1}', "```",
        "```bash", "# comment", "agency-kit key-info --key k", "```",
        "```text", "$ not run", "```",
    ])
    page = parse_page("selftest.md", text)
    kinds = [(type(s).__name__, getattr(s, "commands", getattr(s, "path", None)), getattr(s, "expect", None),
              getattr(s, "hidden", None)) for s in page.steps]
    assert kinds == [
        ("Commands", ["agency-kit encode --input a.csv --out b.aidpkg", "ls"], 0, False),
        ("Commands", ["linkage-hub keygen --out hub --operator x"], 0, True),
        ("Commands", ["agency-kit encode --input a.csv"], 16, False),
        ("WriteFile", "m.json", None, None),
        ("Commands", ["agency-kit key-info --key k"], 0, False),
    ]
    assert page.unmarked_shell == [22]


# ---------------------------------------------------------------- links between pages


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors for a page's headings (lower case, punctuation dropped, spaces to hyphens)."""
    anchors: set[str] = set()
    in_fence = False
    for ln in text.splitlines():
        if FENCE.match(ln):
            in_fence = not in_fence
            continue
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", ln)
        if in_fence or not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        n, base = 0, slug
        while slug in anchors:
            n += 1
            slug = f"{base}-{n}"
        anchors.add(slug)
    return anchors


@pytest.mark.parametrize("name", list(PAGES))
def test_links_resolve(name):
    """Relative links point at files that exist, and at headings that exist."""
    path = PAGES[name]
    text = path.read_text("utf-8")
    text = re.sub(r"^(`{3,}).*?^\1\s*$", "", text, flags=re.M | re.S)  # no links inside code blocks
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in heading_anchors(dest.read_text("utf-8")):
            broken.append(f"{target}: no such heading")
    assert not broken, f"docs/{name}: broken links: {broken}"
