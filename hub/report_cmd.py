"""``linkage-hub report``: the linkage report of one match run, as HTML and JSON.

    linkage-hub report --db hub.duckdb [--run RUN_ID] --out DIR-or-FILE.html [--lang zh|en ...]
                       [--rules judicial-assistance] [--roster roster.json] [--json-only] [--force]

Writes ``DIR/report-<run id>.json`` and ``DIR/report-<run id>.<lang>.html`` for
each ``--lang`` (or ``FILE.json`` and ``FILE.html``, one language), every file
from the same document; see :mod:`hub.report`.  ``--json`` prints the
paths and a few headline counts, never a token.  The command is audited: its
entry is appended to the hub's log after the report quoted the log's head, so
the report's head is the entry just before its own.
"""

from __future__ import annotations

from pathlib import Path

import click

from agency_kit.clitools import aidlink_command, hub_audit

from .report import DEFAULT_LANG, LANGS, gather_report, write_report


def register(cli: click.Group) -> None:
    """Add ``report`` to ``linkage-hub``."""

    @aidlink_command(cli, "report", audit=hub_audit("db_path"))
    @click.option("--db", "db_path", required=True, type=click.Path(exists=True, dir_okay=False),
                  help="The hub database.")
    @click.option("--run", "run_id", default=None, help="The match run (default: the latest).")
    @click.option("--out", "out", required=True, type=click.Path(),
                  help="Directory for report-<run>.<lang>.html and report-<run>.json, or an .html file "
                       "(the JSON goes beside it).")
    @click.option("--lang", "langs", type=click.Choice(LANGS), multiple=True,
                  help=f"Language of the HTML page; repeat for one page per language (default: {DEFAULT_LANG}).")
    @click.option("--rules", "rules", default="judicial-assistance", show_default=True,
                  help="The rule set the run used (file or built-in name).")
    @click.option("--roster", "roster_path", default=None, type=click.Path(exists=True, dir_okay=False),
                  help="The federation roster: names the federation and who runs the hub.")
    @click.option("--json-only", is_flag=True, help="Write the JSON document only.")
    @click.option("--force", is_flag=True, help="Replace existing report files.")
    def report(reporter, db_path: str, run_id: str | None, out: str, langs: tuple[str, ...], rules: str,
               roster_path: str | None, json_only: bool, force: bool) -> dict:
        """Write the linkage report of a match run (HTML and JSON) for the compliance reviewer."""
        langs = () if json_only else tuple(dict.fromkeys(langs or (DEFAULT_LANG,)))
        if len(langs) > 1 and Path(out).suffix.lower() in (".html", ".htm"):
            raise click.BadParameter("an .html file holds one language: give a directory for several",
                                     param_hint="--out")
        reporter.audit_input("database", db_path)
        roster = None
        if roster_path is not None:
            from linkage.roster import load_roster

            reporter.audit_input("roster", roster_path)
            # a report may be made after the roster's validity ended; its signature is still checked
            roster = load_roster(roster_path, check_time=False)
        doc = gather_report(db_path, run_id, rules=rules, roster=roster)
        paths = write_report(doc, out, langs=langs, force=force)
        for kind, p in paths.items():
            reporter.audit_output("report_json" if kind == "json" else "report_html", p)
        reporter.audit_refs(run_id=doc["run"]["run_id"], rule_set_digest=doc["clues"]["rule_set"]["digest"])
        for kind, p in paths.items():
            reporter.say(f"report ({kind.replace('html_', 'html, ')}) of run {doc['run']['run_id']}: {p}")
        th = doc["thresholds"]["link"]
        files = {"json": str(paths["json"]), "html": {k.removeprefix("html_"): str(p) for k, p in paths.items()
                                                      if k != "json"}}
        return {"run_id": doc["run"]["run_id"], "files": files,
                "records": doc["totals"]["records"], "links": doc["totals"]["links"],
                "expected_precision": th["expected_precision"], "expected_recall": th["expected_recall"],
                "clue_status": doc["clues"]["status"], "audit_chain": doc["audit"]["status"]}
