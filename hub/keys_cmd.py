"""``linkage-hub keygen``: the hub's signing and sealing keys.

    linkage-hub keygen --out DIR --operator "County procuratorate, IT office" [--id hub] [--pq]

writes ``DIR/ID.identity.key`` (the private keys, passphrase-encrypted, mode
0600) and ``DIR/ID.pub.json`` (the public identity, with the operator, for
``agency-kit roster-build --hub``).  Same formats as the agencies' keys.
"""

from __future__ import annotations

import click

from agency_kit.clitools import aidlink_command
from agency_kit.keys_cmd import (
    force_option,
    passphrase_option,
    register_passphrase,
    write_new_identity,
)


def register(cli: click.Group) -> None:
    """Add ``keygen`` and ``passphrase`` to ``linkage-hub``."""

    @aidlink_command(cli, "keygen")
    @click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
                  help="Directory for ID.identity.key (private, 0600) and ID.pub.json (public).")
    @click.option("--id", "hub_id", default="hub", show_default=True, help="The hub's id on the roster.")
    @click.option("--operator", required=True,
                  help="Who runs the hub (organisation and department), named in the roster and the report.")
    @click.option("--pq", is_flag=True, help="Post-quantum sealing key (ML-KEM-768 + X25519 hybrid).")
    @force_option
    @passphrase_option
    def keygen(reporter, out_dir, hub_id, operator, pq, force, passphrase_env):
        """Generate the hub's signing key and HPKE sealing key pair."""
        return write_new_identity(reporter, role="hub", party_id=hub_id, out_dir=out_dir, pq=pq, force=force,
                                  passphrase_env=passphrase_env, operator=operator)

    register_passphrase(cli, "The hub's identity key file whose passphrase to change.")
