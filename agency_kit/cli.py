"""``agency-kit``: keys, encode, reveal, clue register."""

from __future__ import annotations

import click

from linkage import __version__
from linkage.schema import load_schema

from . import keys_cmd
from .clitools import LazyGroup, aidlink_command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]},
             lazy={"encode": "agency_kit.encode_cmd", "reveal": "agency_kit.clues_cmd",
                   "clues": "agency_kit.clues_cmd", "audit": "agency_kit.audit_cmd"})
@click.version_option(__version__, prog_name="agency-kit")
def cli() -> None:
    """Encode your agency's records for privacy-preserving linkage."""


@aidlink_command(cli, "schema-info")
@click.option("--schema", "schema_path", default="judicial-assistance", show_default=True,
              help="A linkage schema file or a built-in schema name.")
def schema_info(reporter, schema_path: str) -> dict:
    """Validate a linkage schema and print its fingerprint."""
    schema = load_schema(schema_path)
    reporter.say(f"schema {schema.id} (version {schema.version}) fingerprint {schema.fingerprint}")
    return {"schema_id": schema.id, "fingerprint": schema.fingerprint, "fields": list(schema.field_names)}


keys_cmd.register(cli)


def main() -> None:
    cli(prog_name="agency-kit")
