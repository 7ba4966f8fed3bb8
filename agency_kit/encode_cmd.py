"""``agency-kit encode``: one export in, one signed + sealed package (and a local vault) out."""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import click

from linkage.errors import FingerprintMismatchError, RosterError
from linkage.keyfile import read_secret_file
from linkage.package import PackageWriter
from linkage.roster import load_roster
from linkage.schema import load_schema

from .clitools import Reporter, agency_audit, aidlink_command
from .encode import EncodeOutputs, check_agency_on_roster, encode_export
from .keys_cmd import (
    force_option,
    identity_passphrase_option,
    open_identity,
    open_identity_unprompted,
    passphrase_option,
    read_passphrase,
)
from .mapping import load_mapping
from .vault import vault_key


def _progress(reporter: Reporter, total_hint: int | None):
    """A progress callback: a bar on a terminal, nothing in scripts or under --json."""
    if not reporter.interactive:
        return None, None
    bar = click.progressbar(length=total_hint or 0, label="encoding", file=sys.stderr,
                            show_pos=True, show_percent=total_hint is not None)
    bar.__enter__()
    return bar.update, bar


def register(cli: click.Group) -> None:
    @aidlink_command(cli, "encode", audit=agency_audit("identity_path"))
    @click.option("--input", "input_path", required=True, type=click.Path(dir_okay=False),
                  help="The export: CSV (UTF-8, UTF-8 with BOM, GB18030), XLSX or Parquet.")
    @click.option("--mapping", "mapping_path", required=True, type=click.Path(dir_okay=False),
                  help="Mapping file: which column feeds which schema field and attribute.")
    @click.option("--schema", "schema_path", default="judicial-assistance", show_default=True,
                  help="Linkage schema file or built-in name; must match the roster's fingerprint.")
    @click.option("--secret", "secret_path", required=True, type=click.Path(dir_okay=False),
                  help="The encrypted linkage-secret file.")
    @click.option("--identity", "identity_path", required=True, type=click.Path(dir_okay=False),
                  help="This agency's identity key file (signs the package, keys the vault).")
    @click.option("--roster", "roster_path", required=True, type=click.Path(dir_okay=False),
                  help="The federation roster (names the hub this package is sealed to).")
    @click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
                  help="Package file to write (.aidpkg); the vault and rejects report go beside it.")
    @click.option("--encoding", default=None, help="Force the text encoding (utf-8, utf-8-sig, gb18030).")
    @click.option("--sheet", default=None, help="XLSX sheet to read when there are several.")
    @click.option("--workers", type=click.IntRange(1, 64), default=None,
                  help="Processes to encode with, this one included (default: the number of cores).")
    @click.option("--chunk-rows", type=click.IntRange(1000, 1_000_000), default=40_000, show_default=True,
                  help="Rows per chunk; peak memory grows with it.")
    @click.option("--reference-date", type=click.DateTime(["%Y-%m-%d"]), default=None,
                  help="Date ages are computed at (default: today).")
    @click.option("--pq", is_flag=True, help="Seal with the post-quantum hybrid suite ML-KEM-768+X25519 "
                  "(the hub's key must be of that suite).")
    @force_option
    @passphrase_option
    @identity_passphrase_option
    def encode(reporter: Reporter, input_path: str, mapping_path: str, schema_path: str, secret_path: str,
               identity_path: str, roster_path: str, out_path: str, encoding: str | None, sheet: str | None,
               workers: int | None, chunk_rows: int, reference_date: Any, pq: bool, force: bool,
               passphrase_env: str | None, identity_passphrase_env: str | None) -> dict[str, Any]:
        """Encode an export into a signed package sealed to the hub."""
        schema = load_schema(schema_path)
        roster = load_roster(roster_path)
        mapping = load_mapping(mapping_path, schema)
        outputs = EncodeOutputs.beside(Path(out_path))
        outputs.check_free(force)
        check_agency_on_roster(roster, mapping.agency, mapping.dataset_kind)
        if roster.schema_fingerprint != schema.fingerprint:
            raise FingerprintMismatchError(
                f"{schema_path}: schema fingerprint differs from the roster's; every agency must use the "
                "federation's schema (and the same aidlink normaliser and table versions)")
        passphrase = read_passphrase(passphrase_env, new=False, what="the linkage secret")
        # the two scrypt derivations at once (they release the GIL), the secret's error first as ever
        with ThreadPoolExecutor(max_workers=1) as pool:
            attempt = pool.submit(open_identity_unprompted, identity_path, passphrase, identity_passphrase_env)
            secret = read_secret_file(secret_path, passphrase)
            identity = open_identity(identity_path, passphrase, identity_passphrase_env, attempt)
        if identity.id != mapping.agency:
            raise RosterError(f"{identity_path}: the identity is agency {identity.id!r} but the mapping says "
                              f"{mapping.agency!r}")
        hub = roster.hub
        raw_signing = identity.signing_key.private_bytes_raw()

        opened: list[PackageWriter] = []

        def package_writer() -> PackageWriter:
            opened.append(PackageWriter(outputs.package, signing_key=identity.signing_key, sender_id=identity.id,
                                        recipient_id=hub.id, recipient_public_key=hub.sealing_key(),
                                        suite=hub.sealing_suite, force=force))
            return opened[-1]

        if pq and hub.sealing_suite != "mlkem768-x25519":
            raise click.BadParameter("the hub's sealing key in the roster is not ML-KEM-768+X25519",
                                     param_hint="--pq")
        reporter.audit_identity(identity)
        for role, path in (("export", input_path), ("mapping", mapping_path), ("roster", roster_path)):
            reporter.audit_input(role, path)
        update, bar = _progress(reporter, None)
        try:
            summary = encode_export(
                input_path=Path(input_path), mapping=mapping, schema=schema, secret=secret, outputs=outputs,
                package_writer=package_writer, vault_key=vault_key(raw_signing), encoding=encoding, sheet=sheet,
                chunk_rows=chunk_rows, workers=workers or os.cpu_count() or 1, force=force, progress=update,
                reference_date=reference_date.date() if reference_date else None,
            )
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)
        package = opened[-1]
        # the writer hashed the package as it wrote it: the audit need not read it again
        reporter.audit_output("package", summary["package"], known=(package.sha256, package.size))
        for role in ("vault", "rejects"):
            if summary.get(role):
                reporter.audit_output(role, summary[role])
        reporter.audit_counts({k: v for k, v in summary["counts"].items() if isinstance(v, int)})
        if summary.get("package_id"):
            reporter.audit_refs(package_id=summary["package_id"])
        c = summary["counts"]
        reporter.say(f"{mapping.dataset}: {c['rows_read']} rows read, {c['encoded']} encoded "
                     f"({c['flagged']} flagged), {c['rejected']} rejected")
        reporter.say(f"package {summary['package']} -> send it to the hub ({hub.id})")
        reporter.say(f"vault {summary['vault']} and rejects report {summary['rejects']} stay here")
        summary["hub"] = hub.id
        summary["reference_date"] = (reference_date.date() if reference_date else date.today()).isoformat()
        return summary
