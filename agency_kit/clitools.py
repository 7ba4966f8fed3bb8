"""Shared command-line plumbing for ``agency-kit`` and ``linkage-hub``.

Every command takes ``--json`` (print one JSON object summarising what it did
on stdout and nothing else there) and ``--debug`` (show a traceback on error).
Errors from :mod:`linkage.errors` print ``Error: <message>`` on stderr and exit
with the error's own code; anything unexpected exits 1 with a one-line message.

Audit.  A command that reads or writes personal data or encodings is declared
audited -- ``aidlink_command(group, name, audit=hub_audit("db"))`` or
``audit=agency_audit("identity_path")`` -- and gets an ``--audit-log PATH``
option (see :func:`hub_audit` and :func:`agency_audit` for where the log is
by default).  It then reports what it touched through its reporter::

    reporter.audit_input("export", path)     # fingerprinted now, before reading
    reporter.audit_output("package", path)   # fingerprinted when the command ends
    reporter.audit_counts(rows_read=n, encoded=m)   # non-negative integers only
    reporter.audit_refs(run_id=run)          # identifiers only (no free text)
    reporter.audit_identity(identity)        # actor = its party; the entry is signed
    reporter.audit_party(agency_id, "agency")  # actor known without a key
    reporter.audit_log                       # the log's path, e.g. for linkage.audit.chain_head

All of them are no-ops for a command that is not audited.  Before the command
runs, the log is checked to be appendable (else exit 23, nothing done).  When
it ends -- successfully, or with an error after it reported touching data --
one entry is appended (:func:`linkage.audit.append_entry`) with the outcome
(``ok``, or the error class and exit code).  ``--json`` summaries gain
``audit: {log, seq, hash}``.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from linkage.audit import (
    AGENCY_LOG_NAME,
    Actor,
    AuditRecord,
    FileRef,
    Outcome,
    append_entry,
    check_appendable,
    fingerprint_file,
    hub_log_path,
    utc_now,
)
from linkage.errors import AidlinkError
from linkage.roster import PARTY_ID_PATTERN

log = logging.getLogger("aidlink")

AUDIT_LOG_ENV = "AIDLINK_AUDIT_LOG"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_REF = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


# ---------------------------------------------------------------- audit


@dataclass(frozen=True)
class AuditSpec:
    """How an audited command finds its log: ``--audit-log``, else ``envvar``, else beside a file.

    ``beside`` names the command's keyword argument holding that file's path;
    ``name`` is a fixed file name in its directory, or None for
    ``<file>.audit.jsonl`` (the hub's database).
    """

    tool: str  # "agency-kit" | "linkage-hub"
    beside: str
    name: str | None = None
    envvar: str | None = None

    def default_log(self, kw: Mapping[str, Any]) -> Path:
        anchor = kw.get(self.beside)
        if anchor is None:
            return Path(self.name or AGENCY_LOG_NAME)
        if self.name is None:
            return hub_log_path(anchor)
        return Path(anchor).parent / self.name

    def option_help(self) -> str:
        what = self.beside.removesuffix("_path")
        if self.name is None:
            where = f"<{what}>.audit.jsonl beside the database"
        else:
            where = f"{self.name} beside the {what.replace('_', ' ')} file"
        return f"The audit log to append to (default: {where})."


def hub_audit(db_param: str = "db") -> AuditSpec:
    """A hub command: its log is ``<database>.audit.jsonl`` beside the database named by ``db_param``."""
    return AuditSpec("linkage-hub", db_param)


def agency_audit(beside_param: str) -> AuditSpec:
    """An agency command: ``$AIDLINK_AUDIT_LOG``, else ``aidlink-audit.jsonl`` beside ``beside_param``'s file
    (the identity key for encode and reveal, the clue register for the register commands)."""
    return AuditSpec("agency-kit", beside_param, name=AGENCY_LOG_NAME, envvar=AUDIT_LOG_ENV)


@dataclass
class AuditSession:
    """What one run of an audited command touched; becomes one log entry when it ends."""

    spec: AuditSpec
    log_path: Path
    action: str
    started: datetime
    inputs: list[Future[FileRef]] = field(default_factory=list)
    outputs: list[tuple[str, Path, tuple[bytes, int] | None]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    refs: dict[str, str | list[str]] = field(default_factory=dict)
    party: str | None = None
    role: str | None = None
    signer: tuple[str, Any] | None = None
    touched: bool = False
    clock: Callable[[], datetime] = utc_now
    _hasher: ThreadPoolExecutor | None = None

    def add_input(self, role: str, path: str | Path) -> None:
        """Fingerprinted from now on, on a thread (hashing releases the GIL: a large export's
        0.1 s overlap the command's start); the entry waits for it."""
        _check_name(role)
        p = Path(path)
        if p.is_file():
            if self._hasher is None:
                self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aidlink-audit")
            self.inputs.append(self._hasher.submit(fingerprint_file, role, p))
            self.touched = True

    def add_output(self, role: str, path: str | Path, known: tuple[bytes, int] | None = None) -> None:
        _check_name(role)
        self.touched = True
        self.outputs.append((role, Path(path), known))

    def finish(self, outcome: Outcome) -> dict[str, Any]:
        try:
            inputs = [f.result() for f in self.inputs]
        finally:
            if self._hasher is not None:
                self._hasher.shutdown()
        outputs = [_output_ref(role, p, known) for role, p, known in self.outputs if p.is_file()]
        record = AuditRecord(tool=self.spec.tool, action=self.action,
                             actor=Actor.current(self.party, self.role or _default_role(self.spec)),
                             started=self.started, outcome=outcome, inputs=inputs, outputs=outputs,
                             counts=self.counts, refs=self.refs)
        return append_entry(self.log_path, record, clock=self.clock, signer=self.signer)


def _output_ref(role: str, path: Path, known: tuple[bytes, int] | None) -> FileRef:
    """An output's fingerprint: the digest its writer took of the bytes it wrote when the
    file still has that size, else the file hashed now."""
    if known is not None and known[0] is not None and path.stat().st_size == known[1]:
        return FileRef(role, path.name, known[0].hex(), known[1])
    return fingerprint_file(role, path)


def _default_role(spec: AuditSpec) -> str:
    return "hub" if spec.tool == "linkage-hub" else "agency"


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError("an audit role or count name is lower-case snake_case (a-z, 0-9, _)")
    return name


class Reporter:
    """What a command tells the user: human lines on stderr/stdout, or one JSON object.

    The ``audit_*`` methods tell the audit log what an audited command touched
    (see the module docstring); for other commands they do nothing.
    """

    def __init__(self, as_json: bool, audit: AuditSession | None = None) -> None:
        self.as_json = as_json
        self._audit = audit

    def say(self, message: str) -> None:
        """A human-readable line: on stdout normally, on stderr under --json."""
        click.echo(message, err=self.as_json)

    @property
    def interactive(self) -> bool:
        return not self.as_json and sys.stderr.isatty()

    # -- audit

    @property
    def audit_log(self) -> Path | None:
        """The log this command appends to (None when it is not audited)."""
        return self._audit.log_path if self._audit else None

    def audit_input(self, role: str, path: str | Path) -> None:
        """A file the command is about to read: fingerprinted now (a missing file is skipped)."""
        if self._audit:
            self._audit.add_input(role, path)

    def audit_output(self, role: str, path: str | Path, known: tuple[bytes, int] | None = None) -> None:
        """A file the command writes: fingerprinted when the command ends, if it exists then.
        ``known``: (sha256, size) its writer took of the bytes as it wrote them, used when the
        file is that size then (the file is not read again)."""
        if self._audit:
            self._audit.add_output(role, path, known)

    def audit_counts(self, counts: Mapping[str, int] | None = None, **more: int) -> None:
        """Counts (non-negative integers; bools refused), added to or replacing earlier ones."""
        if not self._audit:
            return
        for k, v in {**(counts or {}), **more}.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError("audit counts are non-negative integers")
            self._audit.counts[_check_name(k)] = v
        self._audit.touched = True

    def audit_refs(self, **refs: str | list[str]) -> None:
        """Identifiers (run id, package ids, a digest): letters, digits and ``._:-`` only.  None or "" is
        left out (an identifier the command does not have)."""
        if self._audit:
            for k, v in refs.items():
                if v is None or v == "":
                    continue
                values = list(v) if isinstance(v, list | tuple) else [v]
                if not all(isinstance(x, str) and _REF.fullmatch(x) for x in values):
                    raise ValueError("audit refs are identifiers: 1-128 letters, digits, '.', '_', ':' or '-'")
                self._audit.refs[_check_name(k)] = values if isinstance(v, list | tuple) else v

    def audit_identity(self, identity: Any) -> None:
        """The party's identity (:class:`linkage.keyfile.Identity`) was opened: it is the actor, and signs."""
        if self._audit:
            self._audit.party, self._audit.role = identity.id, identity.role
            self._audit.signer = (identity.id, identity.signing_key)

    def audit_party(self, party_id: str | None, role: str) -> None:
        """The actor's party, known without its key (e.g. from the clue register)."""
        if self._audit and party_id and PARTY_ID_PATTERN.fullmatch(party_id):
            self._audit.party, self._audit.role = party_id, role


def json_default(o: Any) -> Any:
    if hasattr(o, "isoformat"):
        return o.isoformat()
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    return str(o)


def _action_name(ctx: click.Context) -> str:
    """The command's path below the program: ``encode``, ``clues update``."""
    names = []
    while ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(reversed(names))


def _failure(e: BaseException) -> Outcome:
    """The outcome recorded for a command that raised ``e``: the error class and the exit code."""
    if isinstance(e, AidlinkError):
        return Outcome.failed(type(e).__name__, e.exit_code)
    if isinstance(e, click.exceptions.Exit):
        return Outcome() if e.exit_code == 0 else Outcome.failed("Exit", min(max(e.exit_code, 1), 255))
    if isinstance(e, click.exceptions.ClickException):
        return Outcome.failed(type(e).__name__, e.exit_code)
    if isinstance(e, click.exceptions.Abort):
        return Outcome.failed("Aborted", 2)
    if isinstance(e, KeyboardInterrupt):
        return Outcome.failed("KeyboardInterrupt", 130)
    return Outcome.failed(type(e).__name__, 1)


def _start_audit(spec: AuditSpec, kw: dict[str, Any]) -> AuditSession:
    log_path = kw.pop("audit_log", None)
    path = Path(log_path) if log_path else spec.default_log(kw)
    session = AuditSession(spec, path, _action_name(click.get_current_context()), utc_now())
    check_appendable(path)  # refuse now rather than act unrecorded
    return session


def aidlink_command(group: click.Group, name: str | None = None, *, audit: AuditSpec | None = None,
                    **kwargs: Any) -> Callable:
    """Register ``fn`` as a command of ``group`` with --json/--debug and error handling.

    ``fn`` receives a ``reporter`` keyword and returns a dict summary (printed as
    JSON under --json) or None.  ``audit`` (:func:`hub_audit`, :func:`agency_audit`)
    makes it an audited command: ``--audit-log`` is added (and not passed to
    ``fn``), and one entry is appended to the log when it ends (module docstring).
    """

    def decorate(fn: Callable[..., dict[str, Any] | None]) -> click.Command:
        @click.option("--json", "as_json", is_flag=True, help="Print one JSON summary on stdout and nothing else there.")
        @click.option("--debug", is_flag=True, help="Show a traceback on error.")
        @functools.wraps(fn)
        def wrapper(as_json: bool, debug: bool, **kw: Any) -> None:
            logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, stream=sys.stderr,
                                format="%(levelname)s %(name)s: %(message)s")
            reporter = Reporter(as_json)
            entry = None
            try:
                session = _start_audit(audit, kw) if audit is not None else None
                reporter = Reporter(as_json, session)
                try:
                    summary = fn(reporter=reporter, **kw)
                except BaseException as e:
                    if session is not None and session.touched:
                        try:
                            session.finish(_failure(e))
                        except Exception as ae:  # the command's own error matters more; say both
                            msg = ae.message if isinstance(ae, AidlinkError) else type(ae).__name__
                            click.echo(f"Warning: the failure was not recorded in the audit log: {msg}", err=True)
                    raise
                if session is not None:
                    try:
                        entry = session.finish(Outcome())
                    except AidlinkError as ae:
                        ae.message = f"the command completed, but its audit entry was not written: {ae.message}"
                        raise
            except AidlinkError as e:
                if debug:
                    traceback.print_exc()
                click.echo(f"Error: {e.message}", err=True)
                if as_json:
                    details = e.details() if hasattr(e, "details") else {}
                    click.echo(json.dumps({"ok": False, "error": type(e).__name__, "exit_code": e.exit_code,
                                           "message": e.message, **details}, ensure_ascii=False))
                sys.exit(e.exit_code)
            except (click.exceptions.ClickException, click.exceptions.Exit):
                raise
            except click.exceptions.Abort:
                click.echo("Error: aborted (no input)", err=True)
                if as_json:
                    click.echo(json.dumps({"ok": False, "error": "Aborted", "exit_code": 2}))
                sys.exit(2)
            except Exception as e:  # a bug: never echo data, name the type only
                if debug:
                    traceback.print_exc()
                click.echo(f"Error: unexpected {type(e).__name__} (run with --debug for details; please report it)",
                           err=True)
                if as_json:
                    click.echo(json.dumps({"ok": False, "error": type(e).__name__, "exit_code": 1}))
                sys.exit(1)
            if as_json:
                out = {"ok": True, "command": name or fn.__name__.replace("_", "-")}
                out.update(summary or {})
                if entry is not None:
                    out["audit"] = {"log": str(session.log_path), "seq": entry["seq"], "hash": entry["hash"]}
                click.echo(json.dumps(out, ensure_ascii=False, default=json_default))

        if audit is not None:  # listed last in --help (click shows its parameter list reversed)
            option = click.Option(["--audit-log", "audit_log"], type=click.Path(dir_okay=False), default=None,
                                  envvar=audit.envvar, show_envvar=audit.envvar is not None,
                                  help=audit.option_help())
            wrapper.__click_params__ = [option, *getattr(wrapper, "__click_params__", [])]
        return group.command(name, **kwargs)(wrapper)

    return decorate


class LazyGroup(click.Group):
    """A click group whose heavier commands are registered only when used.

    ``lazy`` maps a command name to the module whose ``register(group)``
    defines it, so ``agency-kit keygen-secret`` does not pay for importing
    pandas and numba, which only ``encode`` needs.
    """

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def _load(self, name: str) -> None:
        module = self.lazy.get(name)
        if module is None:
            return
        import importlib

        mod = importlib.import_module(module)
        for key in [k for k, m in self.lazy.items() if m == module]:
            del self.lazy[key]
        mod.register(self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            self._load(cmd_name)
        return super().get_command(ctx, cmd_name)
