"""``agency-kit reveal`` and the clue register commands.

    agency-kit reveal --result R.aidpkg --identity ID.identity.key --roster roster.json --vault X.vault
                      --input export.csv --mapping X.mapping.json --out clues.xlsx [--csv clues.csv]
                      [--schema judicial-assistance] [--encoding E] [--sheet S] [--all-columns]
                      [--register FILE] [--actor NAME] [--force]
    agency-kit clues list   [--status S ...] [--rule R ...] [--register FILE]
    agency-kit clues update CLUE_ID --actor NAME [--status S] [--amount N] [--referral-dept X]
                            [--visit-date YYYY-MM-DD ...] [--note TEXT] [--register FILE]
    agency-kit clues export --out register.xlsx [--force] [--register FILE]

The register file is ``--register``, else the environment variable
``AIDLINK_REGISTER``, else ``aidlink-register.duckdb`` in the current
directory.  Every command takes ``--json`` and ``--debug``.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from typing import Any

import click

from linkage.keyfile import read_identity_file
from linkage.roster import load_roster
from linkage.schema import load_schema

from .clitools import Reporter, agency_audit, aidlink_command
from .keys_cmd import force_option, passphrase_option, read_passphrase
from .mapping import load_mapping
from .register import (
    DEFAULT_REGISTER,
    HISTORY_HEADERS,
    REGISTER_HEADERS,
    STATUS_LABELS_ZH,
    STATUSES,
    history_rows,
    open_register,
    parse_amount,
    register_rows,
    write_sheets,
)
from .reveal import CLUE_TYPE_LABELS_ZH, CONFIDENCE_LABELS_ZH, reveal_results

REGISTER_ENV = "AIDLINK_REGISTER"


def register_option(fn: Callable) -> Callable:
    return click.option("--register", "register_path", envvar=REGISTER_ENV, default=DEFAULT_REGISTER,
                        show_default=True, type=click.Path(dir_okay=False),
                        help=f"The clue register file (or set {REGISTER_ENV}).")(fn)


def _default_actor() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name on this system
        return "unknown"


def _reveal(reporter: Reporter, **kw: Any) -> dict[str, Any]:
    schema = load_schema(kw["schema_name"])
    roster = load_roster(kw["roster_path"])
    if schema.fingerprint != roster.schema_fingerprint:
        raise click.BadParameter(f"schema {schema.id} is not the schema of federation {roster.federation} "
                                 "(fingerprints differ)", param_hint="--schema")
    mapping = load_mapping(kw["mapping_path"], schema)
    passphrase = read_passphrase(kw["passphrase_env"], new=False, what=f"the identity in {kw['identity_path']}")
    identity = read_identity_file(kw["identity_path"], passphrase, role="agency")
    reporter.audit_identity(identity)
    for role, key in (("result_package", "result"), ("vault", "vault"), ("export", "input_path"),
                      ("mapping", "mapping_path"), ("roster", "roster_path"), ("register", "register_path")):
        reporter.audit_input(role, kw[key])
    summary = reveal_results(
        result_path=kw["result"], identity=identity, roster=roster, vault_path=kw["vault"],
        input_path=kw["input_path"], mapping=mapping, out_xlsx=kw["out"], out_csv=kw["csv_out"],
        register_path=kw["register_path"], actor=kw["actor"] or _default_actor(), all_columns=kw["all_columns"],
        encoding=kw["encoding"], sheet=kw["sheet"], force=kw["force"])
    for role, path in (("clue_list", summary["outputs"]["xlsx"]), ("clue_list_csv", summary["outputs"].get("csv")),
                       ("register", summary["register"]["path"])):
        if path:
            reporter.audit_output(role, path)
    reporter.audit_counts(clue_rows=summary["clue_rows"], revealed=summary["revealed"],
                          other_package_rows=summary["other_package_rows"], relocated_rows=summary["relocated_rows"],
                          register_new=summary["register"]["new"], register_seen_again=summary["register"]["seen_again"])
    reporter.audit_refs(package_id=summary["package_id"], run_id=summary["run_id"])
    reporter.say(f"result {summary['package_id']} of run {summary['run_id']}: {summary['revealed']} clue row(s) "
                 f"of dataset {summary['dataset']} revealed into {summary['outputs']['xlsx']}"
                 + (f" and {summary['outputs']['csv']}" if "csv" in summary["outputs"] else ""))
    if summary["other_package_rows"]:
        reporter.say(f"{summary['other_package_rows']} row(s) are for your other dataset(s): reveal them with "
                     "their own vault and export")
    if summary["relocated_rows"]:
        reporter.say(f"{summary['relocated_rows']} row(s) had moved in the export and were found by their row key")
    reg = summary["register"]
    if reg["already_recorded"]:
        reporter.say(f"register {reg['path']}: this result was recorded before; nothing changed")
    else:
        reporter.say(f"register {reg['path']}: {reg['new']} new clue(s), {reg['seen_again']} seen again")
    return summary


def _update(reporter: Reporter, register_path: str, clue_id: str, actor: str, status: str | None,
            amount: str | None, referral_dept: str | None, visit_dates: tuple[Any, ...], note: str | None) -> dict:
    try:
        value = parse_amount(amount) if amount is not None else None
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--amount") from None
    reporter.audit_input("register", register_path)
    with open_register(register_path) as reg:
        reporter.audit_party(reg.meta().get("agency"), "agency")
        try:
            result = reg.update(clue_id, actor=actor, status=status, amount=value, referral_dept=referral_dept,
                                visit_dates=[d.date() for d in visit_dates], note=note)
        except ValueError as e:
            raise click.UsageError(str(e)) from None
    change = (f"{STATUS_LABELS_ZH[result['from_status']]} -> {STATUS_LABELS_ZH[result['status']]}"
              if result["from_status"] != result["status"] else f"status {STATUS_LABELS_ZH[result['status']]}")
    reporter.audit_output("register", register_path)
    reporter.audit_counts(clues_changed=1, fields_changed=len(result["changed"]))
    reporter.audit_refs(clue_id=clue_id)
    reporter.say(f"clue {clue_id}: {change}; recorded {', '.join(result['changed']) or 'nothing else'}")
    return {"register": register_path, **result}


def _list(reporter: Reporter, register_path: str, statuses: tuple[str, ...], rules: tuple[str, ...]) -> dict:
    reporter.audit_input("register", register_path)
    with open_register(register_path, read_only=True) as reg:
        reporter.audit_party(reg.meta().get("agency"), "agency")
        clues = reg.list(statuses, rules)
        counts = reg.counts()
    reporter.audit_counts(clues_listed=len(clues))
    for c in clues:
        reporter.say(f"{c['clue_id']}  {STATUS_LABELS_ZH[c['status']]:<4}  {c['rule_id']:<4} "
                     f"{CLUE_TYPE_LABELS_ZH.get(c['clue_type'], c['clue_type'])}  -> "
                     f"{c['receiver_name'] or c['receiver']}  置信度 "
                     f"{CONFIDENCE_LABELS_ZH.get(c['confidence'], c['confidence'])}  {c['dataset']} 第{c['row_number']}行"
                     f"  last seen {c['last_seen_run']}")
    reporter.say(f"{len(clues)} clue(s) listed; register: "
                 + ", ".join(f"{STATUS_LABELS_ZH[s]} {n}" for s, n in counts.items()))
    return {"register": register_path, "count": len(clues), "by_status": counts, "clues": clues}


def _export(reporter: Reporter, register_path: str, out: str, force: bool) -> dict:
    reporter.audit_input("register", register_path)
    with open_register(register_path, read_only=True) as reg:
        head = reg.verify_history()
        clues = reg.list()
        history = reg.history()
        counts = reg.counts()
        meta = reg.meta()
    labels = {"clue_type": CLUE_TYPE_LABELS_ZH, "confidence": CONFIDENCE_LABELS_ZH}
    about = [["登记簿", register_path], ["单位", meta.get("agency", "")], ["线索数", len(clues)],
             *[[f"状态: {STATUS_LABELS_ZH[s]}", n] for s, n in counts.items()],
             ["历史记录条数", len(history)], ["历史校验链头", head]]
    reporter.audit_party(meta.get("agency"), "agency")
    write_sheets(out, [("线索登记簿", REGISTER_HEADERS, register_rows(clues, labels)),
                       ("状态历史", HISTORY_HEADERS, history_rows(history)),
                       ("说明", ("项目", "内容"), about)], force=force)
    reporter.audit_output("register_export", out)
    reporter.audit_counts(clues=len(clues), history_entries=len(history))
    reporter.say(f"register exported to {out}: {len(clues)} clue(s), {len(history)} history entr"
                 f"{'y' if len(history) == 1 else 'ies'}; history chain head {head}")
    return {"register": register_path, "out": out, "clues": len(clues), "history": len(history),
            "by_status": counts, "history_head": head}


def register(cli: click.Group) -> None:
    """Add ``reveal`` and the ``clues`` group to ``agency-kit``."""

    @aidlink_command(cli, "reveal", audit=agency_audit("identity_path"))
    @click.option("--result", required=True, type=click.Path(exists=True, dir_okay=False),
                  help="The result package the hub sent you (*.aidpkg).")
    @click.option("--identity", "identity_path", required=True, type=click.Path(exists=True, dir_okay=False),
                  help="Your agency's identity key file.")
    @click.option("--roster", "roster_path", required=True, type=click.Path(exists=True, dir_okay=False))
    @click.option("--vault", required=True, type=click.Path(exists=True, dir_okay=False),
                  help="The vault written when the dataset was encoded.")
    @click.option("--input", "input_path", required=True, type=click.Path(exists=True, dir_okay=False),
                  help="The export file that was encoded.")
    @click.option("--mapping", "mapping_path", required=True, type=click.Path(exists=True, dir_okay=False))
    @click.option("--schema", "schema_name", default="judicial-assistance", show_default=True,
                  help="The linkage schema (file or built-in name) the mapping was written for.")
    @click.option("--out", required=True, type=click.Path(dir_okay=False), help="The clue list to write (XLSX).")
    @click.option("--csv", "csv_out", default=None, type=click.Path(dir_okay=False),
                  help="Also write the clue list as CSV (UTF-8 with BOM, for Excel).")
    @click.option("--encoding", default=None, help="Force the text encoding (as given to encode).")
    @click.option("--sheet", default=None, help="XLSX sheet to read (as given to encode).")
    @click.option("--all-columns", is_flag=True,
                  help="Show every column of the export, not only the columns the mapping reads.")
    @click.option("--actor", default=None, help="Who is revealing (for the register's history; default: "
                                                "your user name).")
    @register_option
    @force_option
    @passphrase_option
    def reveal(reporter, **kw):
        """Open a result package and list your clues with your own rows; add them to the register."""
        return _reveal(reporter, **kw)

    @cli.group("clues")
    def clues() -> None:
        """The clue register: follow each clue to closure."""

    @aidlink_command(clues, "list", audit=agency_audit("register_path"))
    @click.option("--status", "statuses", multiple=True, type=click.Choice(STATUSES),
                  help="Only clues with this status (repeatable).")
    @click.option("--rule", "rules", multiple=True, help="Only clues of this rule id (repeatable).")
    @register_option
    def list_clues(reporter, statuses, rules, register_path):
        """List the clues in the register."""
        return _list(reporter, register_path, statuses, rules)

    @aidlink_command(clues, "update", audit=agency_audit("register_path"))
    @click.argument("clue_id")
    @click.option("--actor", required=True, help="Who makes the change (recorded in the history).")
    @click.option("--status", default=None, type=click.Choice([s for s in STATUSES if s != "new"]),
                  help="The new status.")
    @click.option("--amount", default=None, help="Assistance granted, in yuan (assisted clues).")
    @click.option("--referral-dept", default=None, help="The department the clue was referred to.")
    @click.option("--visit-date", "visit_dates", multiple=True, type=click.DateTime(formats=["%Y-%m-%d"]),
                  help="A follow-up visit date, YYYY-MM-DD (repeatable).")
    @click.option("--note", default=None, help="A note (required to reject or reopen a clue).")
    @register_option
    def update(reporter, clue_id, actor, status, amount, referral_dept, visit_dates, note, register_path):
        """Change a clue's status or record assistance, referral, visits and notes."""
        return _update(reporter, register_path, clue_id, actor, status, amount, referral_dept, visit_dates, note)

    @aidlink_command(clues, "export", audit=agency_audit("register_path"))
    @click.option("--out", required=True, type=click.Path(dir_okay=False), help="The workbook to write (XLSX).")
    @register_option
    @force_option
    def export(reporter, out, register_path, force):
        """Export the register (clues, history, chain head) to an XLSX workbook."""
        return _export(reporter, register_path, out, force)
