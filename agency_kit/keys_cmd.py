"""Key and roster commands of ``agency-kit`` (and the passphrase plumbing ``linkage-hub`` shares).

    agency-kit keygen-secret   --out secret.key
    agency-kit keygen-identity --agency ID --out DIR [--pq]
    agency-kit export-public   --identity DIR/ID.identity.key --out ID.pub.json
    agency-kit key-info        --key FILE
    agency-kit passphrase      --key FILE          (change a key file's passphrase)
    agency-kit roster-build    --federation ID --schema-fingerprint HEX --hub hub.pub.json
                               --agency a.pub.json --agency b.pub.json --valid-days 365 --out roster.json
    agency-kit roster-info     --roster roster.json

Passphrases come from a hidden prompt (asked twice when a file is created), or
-- for scripts -- from the environment variable named by ``--passphrase-env``,
or from ``AIDLINK_PASSPHRASE`` when that is set.  Prompts go to stderr, so
``--json`` output on stdout stays one JSON object.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from linkage._crypto._files import check_output
from linkage._crypto._util import b64decode
from linkage.errors import ConfigError, Problem
from linkage.keyfile import (
    Identity,
    change_passphrase,
    create_secret_file,
    read_identity_file,
    read_key_file_info,
    write_identity_file,
)
from linkage.roster import (
    Party,
    build_roster,
    check_party_id,
    format_timestamp,
    load_roster,
    parse_timestamp,
    read_public_identity,
    sign_roster,
    write_public_identity,
    write_roster,
)

from .clitools import Reporter, aidlink_command

DEFAULT_PASSPHRASE_ENV = "AIDLINK_PASSPHRASE"  # noqa: S105 - a variable name
MIN_PASSPHRASE_CHARS = 8
SUITE_CHOICE = {False: "x25519", True: "mlkem768-x25519"}


# ---------------------------------------------------------------- passphrases


def passphrase_option(fn: Callable) -> Callable:
    """``--passphrase-env VAR``: read the passphrase from that environment variable."""
    return click.option(
        "--passphrase-env", "passphrase_env", metavar="VAR", default=None,
        help=f"Read the passphrase from environment variable VAR (default: {DEFAULT_PASSPHRASE_ENV} "
             "if set, else a hidden prompt).")(fn)


def read_passphrase(passphrase_env: str | None, *, new: bool, what: str) -> str:
    """The passphrase from the named variable, AIDLINK_PASSPHRASE, or a hidden prompt.

    ``new``: the passphrase protects a file being created -- asked twice at the
    prompt and at least MIN_PASSPHRASE_CHARS long.
    """
    if passphrase_env:
        value = os.environ.get(passphrase_env)
        if value is None:
            raise click.UsageError(f"environment variable {passphrase_env} is not set")
    elif DEFAULT_PASSPHRASE_ENV in os.environ:
        value = os.environ[DEFAULT_PASSPHRASE_ENV]
    else:
        try:
            value = click.prompt(f"Passphrase for {what}", hide_input=True, confirmation_prompt=new, err=True)
        except click.Abort:
            raise click.UsageError(f"no passphrase given: type it at the prompt, or set {DEFAULT_PASSPHRASE_ENV} "
                                   "or --passphrase-env VAR") from None
    if new and len(value) < MIN_PASSPHRASE_CHARS:
        raise click.BadParameter(f"a new passphrase needs at least {MIN_PASSPHRASE_CHARS} characters",
                                 param_hint="passphrase")
    if not value:
        raise click.BadParameter("the passphrase is empty", param_hint="passphrase")
    return value


NEW_PASSPHRASE_ENV = "AIDLINK_NEW_PASSPHRASE"  # noqa: S105 - a variable name
IDENTITY_PASSPHRASE_ENV = "AIDLINK_IDENTITY_PASSPHRASE"  # noqa: S105 - a variable name


def identity_passphrase_option(fn: Callable) -> Callable:
    """``--identity-passphrase-env VAR``: the identity file's own passphrase, where it is not the secret's."""
    return click.option(
        "--identity-passphrase-env", "identity_passphrase_env", metavar="VAR", default=None,
        help=f"Read the identity file's passphrase from VAR (default: {IDENTITY_PASSPHRASE_ENV} if set, else "
             "the secret's passphrase, else a hidden prompt).")(fn)


def open_identity(path: str | Path, passphrase: str, identity_passphrase_env: str | None,
                  attempt: Future[Identity] | None = None) -> Identity:
    """The agency identity in ``path``, opened with its own passphrase when one is given (the variable
    named, or AIDLINK_IDENTITY_PASSPHRASE), else with ``passphrase`` (the secret's); when that does not
    open it and a terminal is there to ask, with a passphrase typed at a hidden prompt.  ``attempt``:
    :func:`open_identity_unprompted` already running on another thread (its key derivation overlaps
    the caller's), whose outcome is taken instead of trying again."""
    import sys

    from linkage.errors import PassphraseError

    try:
        return attempt.result() if attempt is not None else open_identity_unprompted(
            path, passphrase, identity_passphrase_env)
    except PassphraseError:
        if _identity_env(identity_passphrase_env) is not None or not sys.stdin.isatty():
            raise
    own = click.prompt(f"Passphrase for the identity in {path}", hide_input=True, err=True)
    return read_identity_file(path, own, role="agency")


def open_identity_unprompted(path: str | Path, passphrase: str, identity_passphrase_env: str | None) -> Identity:
    """:func:`open_identity` without the prompt: never reads the terminal (so it may run on a thread)."""
    env = _identity_env(identity_passphrase_env)
    if env is None:
        return read_identity_file(path, passphrase, role="agency")
    own = os.environ.get(env)
    if own is None:
        raise click.UsageError(f"environment variable {env} is not set")
    return read_identity_file(path, own, role="agency")


def _identity_env(identity_passphrase_env: str | None) -> str | None:
    return identity_passphrase_env or (IDENTITY_PASSPHRASE_ENV if IDENTITY_PASSPHRASE_ENV in os.environ else None)


def new_passphrase_option(fn: Callable) -> Callable:
    """``--new-passphrase-env VAR``: read the new passphrase (``passphrase`` command) from VAR."""
    return click.option(
        "--new-passphrase-env", "new_passphrase_env", metavar="VAR", default=None,
        help=f"Read the new passphrase from environment variable VAR (default: {NEW_PASSPHRASE_ENV} "
             "if set, else a hidden prompt, asked twice).")(fn)


def change_passphrase_command(reporter: Reporter, key: str, passphrase_env: str | None,
                              new_passphrase_env: str | None) -> dict[str, Any]:
    """``passphrase``: open ``key`` with the current passphrase, re-seal it under a new one."""
    old = read_passphrase(passphrase_env, new=False, what=f"{key} (current)")
    env = new_passphrase_env or (NEW_PASSPHRASE_ENV if NEW_PASSPHRASE_ENV in os.environ else None)
    if env is not None:
        new = os.environ.get(env)
        if new is None:
            raise click.UsageError(f"environment variable {env} is not set")
    else:  # never from AIDLINK_PASSPHRASE, which holds the current one in scripts
        try:
            new = click.prompt(f"New passphrase for {key}", hide_input=True, confirmation_prompt=True, err=True)
        except click.Abort:
            raise click.UsageError(f"no new passphrase given: type it at the prompt, or set {NEW_PASSPHRASE_ENV} "
                                   "or --new-passphrase-env VAR") from None
    if len(new) < MIN_PASSPHRASE_CHARS:
        raise click.BadParameter(f"a new passphrase needs at least {MIN_PASSPHRASE_CHARS} characters",
                                 param_hint="new passphrase")
    if new == old:
        raise click.BadParameter("the new passphrase is the current one", param_hint="new passphrase")
    info = change_passphrase(key, old, new)
    reporter.say(f"{key}: passphrase changed ({info.kind}; the key itself is unchanged), mode {_mode(key)}")
    return {"path": key, "kind": info.kind, "mode": _mode(key), "changed": True}


def register_passphrase(cli: click.Group, key_help: str) -> None:
    """Add ``passphrase`` (change a key file's passphrase) to ``agency-kit`` or ``linkage-hub``."""

    @aidlink_command(cli, "passphrase")
    @click.option("--key", required=True, type=click.Path(exists=True, dir_okay=False), help=key_help)
    @passphrase_option
    @new_passphrase_option
    def passphrase(reporter, key, passphrase_env, new_passphrase_env):
        """Change a key file's passphrase (the key itself stays the same)."""
        return change_passphrase_command(reporter, key, passphrase_env, new_passphrase_env)


def force_option(fn: Callable) -> Callable:
    return click.option("--force", is_flag=True, help="Replace existing output files.")(fn)


def _mode(path: str | Path) -> str:
    return oct(os.stat(path).st_mode & 0o777)[2:].rjust(4, "0")


def identity_summary(party: Party) -> dict[str, Any]:
    """Public facts about a party (no secret): for --json and for reading out by phone."""
    out: dict[str, Any] = {"role": party.role, "id": party.id, "sealing_suite": party.sealing_suite,
                           "fingerprint": party.fingerprint}
    if party.name:
        out["name"] = party.name
    if party.operator:
        out["operator"] = party.operator
    if party.datasets:
        out["datasets"] = list(party.datasets)
    return out


def write_new_identity(reporter: Reporter, *, role: str, party_id: str, out_dir: str, pq: bool,
                       force: bool, passphrase_env: str | None, name: str | None = None,
                       operator: str | None = None, datasets: tuple[str, ...] = ()) -> dict[str, Any]:
    """Generate an identity; write ``DIR/ID.identity.key`` (0600) and ``DIR/ID.pub.json`` (0644)."""
    try:
        check_party_id(party_id)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--agency" if role == "agency" else "--id") from None
    directory = Path(out_dir)
    key_path, pub_path = directory / f"{party_id}.identity.key", directory / f"{party_id}.pub.json"
    if directory.exists() and not directory.is_dir():
        raise click.BadParameter("must be a directory", param_hint="--out")
    check_output(key_path, force)
    check_output(pub_path, force)
    passphrase = read_passphrase(passphrase_env, new=True, what=f"the {role} identity {party_id}")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    identity = Identity.generate(role, party_id, suite=SUITE_CHOICE[pq], name=name, operator=operator)
    identity.datasets = tuple(datasets)
    write_identity_file(key_path, identity, passphrase, force=force)
    try:
        write_public_identity(pub_path, identity.public(), force=force)
    except BaseException:
        key_path.unlink(missing_ok=True)  # all or nothing
        raise
    party = identity.public()
    reporter.say(f"{role} identity {party_id}: private keys in {key_path} (mode {_mode(key_path)}), "
                 f"public keys in {pub_path}")
    reporter.say(f"sealing suite {party.sealing_suite}; fingerprint {party.fingerprint}")
    reporter.say("Read the fingerprint to the roster builder by phone; keep the .identity.key file "
                 "and its passphrase to yourself.")
    return {"identity": str(key_path), "public": str(pub_path), "identity_mode": _mode(key_path),
            **identity_summary(party)}


# ---------------------------------------------------------------- commands


def _keygen_secret(reporter: Reporter, out: str, force: bool, passphrase_env: str | None) -> dict:
    """Generate the federation's linkage secret, encrypted under a passphrase."""
    check_output(out, force)
    passphrase = read_passphrase(passphrase_env, new=True, what="the linkage secret")
    info = create_secret_file(out, passphrase, force=force)
    kcv = info.public["key_check_value"]
    reporter.say(f"linkage secret written to {out} (mode {_mode(out)}); key-check value {kcv}")
    reporter.say("Give a copy to every agency of the federation, never to the hub; send the "
                 "passphrase by another channel.")
    return {"path": str(out), "mode": _mode(out), "key_check_value": kcv,
            "kdf": {k: info.kdf[k] for k in ("name", "n", "r", "p")}}


def _export_public(reporter: Reporter, identity_path: str, out: str, name: str | None,
                   operator: str | None, datasets: tuple[str, ...], force: bool,
                   passphrase_env: str | None) -> dict:
    """Export the public keys of an identity file (after the passphrase proves it intact)."""
    check_output(out, force)
    passphrase = read_passphrase(passphrase_env, new=False, what=f"the identity in {identity_path}")
    identity = read_identity_file(identity_path, passphrase)
    party = identity.public()
    party = Party(role=party.role, id=party.id, signing_public_key=party.signing_public_key,
                  sealing_suite=party.sealing_suite, sealing_public_key=party.sealing_public_key,
                  name=name or party.name, operator=operator or party.operator,
                  datasets=tuple(datasets) or party.datasets)
    write_public_identity(out, party, force=force)
    reporter.say(f"public identity of {party.role} {party.id} written to {out}; fingerprint {party.fingerprint}")
    return {"public": str(out), **identity_summary(party)}


def _key_info(reporter: Reporter, key: str, no_passphrase: bool, passphrase_env: str | None) -> dict:
    """Show what a key file holds (never the secret); the passphrase check proves it intact."""
    passphrase = None if no_passphrase else read_passphrase(passphrase_env, new=False, what=key)
    info = read_key_file_info(key, passphrase)
    summary = info.summary()
    summary["mode"] = _mode(key)
    reporter.say(f"{key}: {info.kind}, created {info.created_at}, scrypt n={info.kdf['n']} r={info.kdf['r']} "
                 f"p={info.kdf['p']}, mode {summary['mode']}")
    if "key_check_value" in info.public:
        reporter.say(f"key-check value {info.public['key_check_value']}")
    else:
        pub = info.public
        party = Party(role=pub["role"], id=pub["id"], signing_public_key=b64decode(pub["signing_public_key"]),
                      sealing_suite=pub["sealing_suite"], sealing_public_key=b64decode(pub["sealing_public_key"]),
                      name=pub.get("name"), operator=pub.get("operator"))
        summary["fingerprint"] = party.fingerprint
        reporter.say(f"{party.role} {party.id}, sealing suite {party.sealing_suite}, fingerprint {party.fingerprint}")
    reporter.say("passphrase verified: the file is intact" if info.verified
                 else "not verified (no passphrase given): the values above are as the file states them")
    return summary


def _parse_datasets(values: tuple[str, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v in values:
        agency, sep, kinds = v.partition("=")
        if not sep or not agency:
            raise click.BadParameter("use AGENCY=kind1,kind2", param_hint="--datasets")
        out.setdefault(agency, []).extend(k for k in kinds.split(",") if k)
    return out


def _roster_build(reporter: Reporter, federation: str, schema_fingerprint: str | None, schema: str | None,
                  hub: str, agencies: tuple[str, ...], datasets: tuple[str, ...], hub_operator: str | None,
                  valid_from: str | None, valid_days: int, description: str | None, sign_with: str | None,
                  out: str, force: bool, passphrase_env: str | None) -> dict:
    """Assemble the federation roster from the parties' public identity files."""
    if (schema_fingerprint is None) == (schema is None):
        raise click.UsageError("give exactly one of --schema-fingerprint and --schema")
    if schema is not None:
        from linkage.schema import load_schema

        schema_fingerprint = load_schema(schema).fingerprint
    check_output(out, force)
    try:
        start = parse_timestamp(valid_from) if valid_from else datetime.now(UTC).replace(microsecond=0)
    except ValueError:
        raise click.BadParameter("use YYYY-MM-DD or an RFC 3339 date-time with a zone",
                                 param_hint="--valid-from") from None
    hub_party = read_public_identity(hub)
    if hub_operator:
        hub_party = Party(role=hub_party.role, id=hub_party.id, signing_public_key=hub_party.signing_public_key,
                          sealing_suite=hub_party.sealing_suite, sealing_public_key=hub_party.sealing_public_key,
                          operator=hub_operator)
    parties = [read_public_identity(a) for a in agencies]
    doc = build_roster(federation=federation, schema_fingerprint=schema_fingerprint, hub=hub_party,
                       agencies=parties, valid_from=start, valid_until=start + timedelta(days=valid_days),
                       datasets=_parse_datasets(datasets), description=description)
    if sign_with:
        passphrase = read_passphrase(passphrase_env, new=False, what=f"the hub identity in {sign_with}")
        hub_identity = read_identity_file(sign_with, passphrase, role="hub")
        if hub_identity.public().signing_public_key != hub_party.signing_public_key:
            raise ConfigError(str(sign_with), [Problem("$", "this is not the identity of the hub in --hub")])
        doc = sign_roster(doc, hub_identity.signing_key, hub_party.id)
    write_roster(out, doc, force=force)
    roster = load_roster(out, check_time=False)
    reporter.say(f"roster for federation {federation} written to {out}: hub {hub_party.id} "
                 f"({hub_party.operator}), {len(parties)} agencies, valid {doc['valid_from']} to "
                 f"{doc['valid_until']}{', signed by the hub' if sign_with else ', unsigned'}")
    reporter.say(f"roster fingerprint {roster.fingerprint}: every party should compare it out of band")
    return _roster_summary(roster, out)


def _roster_summary(roster: Any, path: str) -> dict[str, Any]:
    return {
        "roster": str(path),
        "federation": roster.federation,
        "fingerprint": roster.fingerprint,
        "schema_fingerprint": roster.schema_fingerprint,
        "valid_from": format_timestamp(roster.valid_from),
        "valid_until": format_timestamp(roster.valid_until),
        "signed": roster.signed,
        "hub": identity_summary(roster.hub),
        "agencies": [identity_summary(a) for a in roster.agencies],
    }


def _roster_info(reporter: Reporter, roster_path: str, hub_key: str | None) -> dict:
    """Validate a roster (schema, keys, signature, validity window) and show who is on it."""
    roster = load_roster(roster_path, hub_signing_key=hub_key)
    reporter.say(f"federation {roster.federation}: valid {format_timestamp(roster.valid_from)} to "
                 f"{format_timestamp(roster.valid_until)}, {'signed by the hub' if roster.signed else 'unsigned'}")
    reporter.say(f"  hub {roster.hub.id} run by {roster.hub.operator}; fingerprint {roster.hub.fingerprint}")
    for a in roster.agencies:
        reporter.say(f"  agency {a.id} ({a.name}): {', '.join(a.datasets) or 'no datasets'}; "
                     f"fingerprint {a.fingerprint}")
    reporter.say(f"roster fingerprint {roster.fingerprint}")
    return _roster_summary(roster, roster_path)


def register(cli: click.Group) -> None:
    """Add the key and roster commands to ``agency-kit``."""

    @aidlink_command(cli, "keygen-secret")
    @click.option("--out", required=True, type=click.Path(dir_okay=False), help="The secret file to write.")
    @force_option
    @passphrase_option
    def keygen_secret(reporter, out, force, passphrase_env):
        """Generate the federation's linkage secret, encrypted under a passphrase."""
        return _keygen_secret(reporter, out, force, passphrase_env)

    @aidlink_command(cli, "keygen-identity")
    @click.option("--agency", "agency_id", required=True, help="Your agency's id on the roster.")
    @click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
                  help="Directory for ID.identity.key (private, 0600) and ID.pub.json (public).")
    @click.option("--name", default=None, help="Your agency's name as the roster should show it.")
    @click.option("--dataset", "datasets", multiple=True, help="A dataset kind you will send (repeatable).")
    @click.option("--pq", is_flag=True, help="Post-quantum receiving key (ML-KEM-768 + X25519 hybrid).")
    @force_option
    @passphrase_option
    def keygen_identity(reporter, agency_id, out_dir, name, datasets, pq, force, passphrase_env):
        """Generate your agency's signing and receiving keys."""
        return write_new_identity(reporter, role="agency", party_id=agency_id, out_dir=out_dir, pq=pq,
                                  force=force, passphrase_env=passphrase_env, name=name, datasets=datasets)

    @aidlink_command(cli, "export-public")
    @click.option("--identity", "identity_path", required=True, type=click.Path(exists=True, dir_okay=False))
    @click.option("--out", required=True, type=click.Path(dir_okay=False))
    @click.option("--name", default=None, help="Override the agency name.")
    @click.option("--operator", default=None, help="Override the hub operator (hub identities).")
    @click.option("--dataset", "datasets", multiple=True, help="Dataset kinds (repeatable; replaces the file's).")
    @force_option
    @passphrase_option
    def export_public(reporter, identity_path, out, name, operator, datasets, force, passphrase_env):
        """Export an identity's public keys as a JSON document for the roster."""
        return _export_public(reporter, identity_path, out, name, operator, datasets, force, passphrase_env)

    @aidlink_command(cli, "key-info")
    @click.option("--key", required=True, type=click.Path(exists=True, dir_okay=False))
    @click.option("--no-passphrase", is_flag=True, help="Show the unverified public part only.")
    @passphrase_option
    def key_info(reporter, key, no_passphrase, passphrase_env):
        """Show what a key file holds -- key-check value or public keys -- never a secret."""
        return _key_info(reporter, key, no_passphrase, passphrase_env)

    register_passphrase(cli, "The key file (linkage secret or identity) whose passphrase to change.")

    @aidlink_command(cli, "roster-build")
    @click.option("--federation", required=True, help="The federation's id.")
    @click.option("--schema-fingerprint", default=None, help="The linkage schema fingerprint (hex).")
    @click.option("--schema", default=None, help="Or: a linkage schema file or built-in name to take it from.")
    @click.option("--hub", required=True, type=click.Path(exists=True, dir_okay=False), help="hub.pub.json")
    @click.option("--agency", "agencies", required=True, multiple=True,
                  type=click.Path(exists=True, dir_okay=False), help="An agency's .pub.json (repeatable).")
    @click.option("--datasets", multiple=True, metavar="AGENCY=KIND,KIND",
                  help="Dataset kinds an agency may send (repeatable; overrides its .pub.json).")
    @click.option("--hub-operator", default=None, help="Who runs the hub (overrides hub.pub.json).")
    @click.option("--valid-from", default=None, help="Start (YYYY-MM-DD or date-time; default now).")
    @click.option("--valid-days", default=365, show_default=True, type=click.IntRange(1, 3660))
    @click.option("--description", default=None)
    @click.option("--sign-with", default=None, type=click.Path(exists=True, dir_okay=False),
                  help="The hub's identity file: sign the roster with the hub key.")
    @click.option("--out", required=True, type=click.Path(dir_okay=False))
    @force_option
    @passphrase_option
    def roster_build(reporter, federation, schema_fingerprint, schema, hub, agencies, datasets, hub_operator,
                     valid_from, valid_days, description, sign_with, out, force, passphrase_env):
        """Assemble the federation roster from the parties' public identity files."""
        return _roster_build(reporter, federation, schema_fingerprint, schema, hub, agencies, datasets,
                             hub_operator, valid_from, valid_days, description, sign_with, out, force,
                             passphrase_env)

    @aidlink_command(cli, "roster-info")
    @click.option("--roster", "roster_path", required=True, type=click.Path(exists=True, dir_okay=False))
    @click.option("--hub-key", default=None,
                  help="Pin the hub's Ed25519 key (base64): require a roster signed by it.")
    def roster_info(reporter, roster_path, hub_key):
        """Check a roster and show who is on it."""
        return _roster_info(reporter, roster_path, hub_key)
