"""``audit verify`` and ``audit show``: check and read an audit log (both CLIs).

    agency-kit  audit verify --log keys/aidlink-audit.jsonl [--roster roster.json] [--expect-head HASH]
    agency-kit  audit show   --log keys/aidlink-audit.jsonl [--last N] [--action encode]
    linkage-hub audit verify --db hub/hub.duckdb [--roster roster.json] [--expect-head HASH]
    linkage-hub audit show   --db hub/hub.duckdb [--last N]

``verify`` walks the hash chain (:func:`linkage.audit.verify_log`) and exits
0 with the chain head -- entries, head hash, last time, the line to copy into
a report or a paper record -- or 23 (AuditLogError) naming the first broken
position and the kind of break, never an entry's content.  With ``--roster``
(repeatable) or ``--pub`` the entries' signatures are checked against those
parties' public keys; without, they are counted only.  ``--expect-head``
checks a head recorded earlier is still in the log (entries cut off the end
are otherwise invisible).

``show`` lists entries (no chain check: run ``verify`` for that).  Neither
command is itself audited: a log holds no personal data.

The agency's log is ``--log``, else ``$AIDLINK_AUDIT_LOG``; the hub's is
``--log``, else ``<db>.audit.jsonl`` for ``--db``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from linkage.audit import read_entries, verify_log
from linkage.roster import load_roster, read_public_identity

from .clitools import AUDIT_LOG_ENV, Reporter, aidlink_command

SideResolver = Callable[[dict[str, Any]], Path]


def trusted_keys(rosters: Iterable[str], pubs: Iterable[str]) -> dict[str, list[Ed25519PublicKey]] | None:
    """Party id -> Ed25519 public keys from rosters (their own signature checked, dates not) and public
    identities; None when none was given (signatures then go unchecked)."""
    rosters, pubs = list(rosters), list(pubs)
    if not rosters and not pubs:
        return None
    keys: dict[str, list[Ed25519PublicKey]] = {}
    for path in rosters:
        roster = load_roster(path, check_time=False)  # an old log was signed under an old roster
        for party in (roster.hub, *roster.agencies):
            keys.setdefault(party.id, []).append(party.signing_key())
    for path in pubs:
        party = read_public_identity(path)
        keys.setdefault(party.id, []).append(party.signing_key())
    return keys


def _describe(entry: dict[str, Any]) -> str:
    a = entry["actor"]
    who = a["party"] or f"({a['role'] or '?'})"
    who += f" {a['user'] or '?'}@{a['host'] or '?'}"
    o = entry["outcome"]
    outcome = "ok" if o["status"] == "ok" else f"{o['error']} (exit {o['exit_code']})"
    counts = " ".join(f"{k}={v}" for k, v in entry["counts"].items())
    files = (f"in {len(entry['inputs'])} file(s), out {len(entry['outputs'])}"
             + (f"; {counts}" if counts else ""))
    signed = " signed" if "sig" in entry else ""
    return (f"{entry['seq']:>6}  {entry['time']}  {entry['action']:<14} {who}  {outcome}{signed}  {files}  "
            f"{entry['hash'][:16]}")


def register_audit(cli: click.Group, *, resolve: SideResolver, log_options: list[Callable]) -> None:
    """Add the ``audit`` group to ``cli``.  ``log_options`` declare how the log is named; ``resolve``
    turns their values (and nothing else) into the log's path or raises click.UsageError."""

    @cli.group("audit")
    def audit() -> None:
        """Check and read the hash-chained audit log."""

    def with_log(fn: Callable) -> Callable:
        for opt in reversed(log_options):
            fn = opt(fn)
        return fn

    @aidlink_command(audit, "verify")
    @with_log
    @click.option("--roster", "rosters", multiple=True, type=click.Path(exists=True, dir_okay=False),
                  help="Check signed entries against the keys of this roster's parties (repeatable).")
    @click.option("--pub", "pubs", multiple=True, type=click.Path(exists=True, dir_okay=False),
                  help="Check signed entries against this public identity (*.pub.json, repeatable).")
    @click.option("--expect-head", default=None, metavar="HASH",
                  help="A head hash recorded earlier (report, paper record) that must be in the log.")
    def verify(reporter: Reporter, rosters: tuple[str, ...], pubs: tuple[str, ...], expect_head: str | None,
               **kw: Any) -> dict:
        """Check the hash chain (and signatures); print the chain head, or the first broken position."""
        path = resolve(kw)
        signers = trusted_keys(rosters, pubs)
        result = verify_log(path, signers=signers, expect_head=expect_head).raise_if_broken()
        head = result.head
        reporter.say(f"audit log {path}: intact, {head.entries} entr{'y' if head.entries == 1 else 'ies'}"
                     + (f", last {head.last_time}" if head.last_time else ""))
        reporter.say(f"chain head {head.head_hash}")
        if result.signed:
            how = ("signatures verified" if result.signatures_checked else
                   "signatures not checked: give --roster or --pub")
            reporter.say(f"{result.signed} signed entr{'y' if result.signed == 1 else 'ies'} "
                         f"(by {', '.join(result.signers)}; {how})")
        if expect_head is not None:
            reporter.say("the expected head is in the log")
        for g in result.file_gaps:
            reporter.say(f"note: {g.name} as read by entry {g.read_at} is not the file entry {g.written_at} wrote: "
                         "it changed in between without a logged command (or in one that failed)")
        return result.as_doc()

    @aidlink_command(audit, "show")
    @with_log
    @click.option("--last", type=click.IntRange(1), default=None, help="Only the last N entries.")
    @click.option("--action", "actions", multiple=True, help="Only entries of this action (repeatable).")
    def show(reporter: Reporter, last: int | None, actions: tuple[str, ...], **kw: Any) -> dict:
        """List the log's entries (fingerprints, counts and outcomes; no chain check)."""
        path = resolve(kw)
        rows = read_entries(path)
        malformed = [pos for pos, e in rows if e is None]
        entries = [e for _, e in rows if e is not None and (not actions or e["action"] in actions)]
        if last is not None:
            entries = entries[-last:]
        for e in entries:
            reporter.say(_describe(e))
        reporter.say(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'} shown of {len(rows)} line(s) in "
                     f"{path}" + (f"; not well-formed at position(s) {', '.join(map(str, malformed[:20]))}"
                                  if malformed else "") + " (run `audit verify` to check the chain)")
        return {"log": str(path), "lines": len(rows), "malformed_positions": malformed, "entries": entries}


def register(cli: click.Group) -> None:
    """Add ``audit`` to ``agency-kit``."""

    def resolve(kw: dict[str, Any]) -> Path:
        if not kw.get("log_path"):
            raise click.UsageError(f"name the audit log with --log (or set {AUDIT_LOG_ENV}); by default "
                                   "agency-kit keeps it beside the identity key (aidlink-audit.jsonl)")
        return Path(kw["log_path"])

    log_option = click.option("--log", "log_path", envvar=AUDIT_LOG_ENV, show_envvar=True, default=None,
                              type=click.Path(dir_okay=False), help="The audit log (aidlink-audit.jsonl).")
    register_audit(cli, resolve=resolve, log_options=[log_option])
