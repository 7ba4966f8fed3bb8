"""``linkage-hub``: ingest, match, rules, results, report."""

from __future__ import annotations

import click

from agency_kit.clitools import aidlink_command
from linkage import __version__
from linkage.schema import load_schema

from . import keys_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="linkage-hub")
def cli() -> None:
    """Link agencies' encodings and turn links into clues."""


@aidlink_command(cli, "schema-info")
@click.option("--schema", "schema_path", default="judicial-assistance", show_default=True)
def schema_info(reporter, schema_path: str) -> dict:
    """Validate a linkage schema and print its fingerprint."""
    schema = load_schema(schema_path)
    reporter.say(f"schema {schema.id} fingerprint {schema.fingerprint}")
    return {"schema_id": schema.id, "fingerprint": schema.fingerprint}


keys_cmd.register(cli)


def main() -> None:
    cli(prog_name="linkage-hub")
