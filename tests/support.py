"""Test support: a whole federation (secret, identities, hub, roster) in a temp directory.

Everything here is synthetic. Keys are generated fresh per call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from linkage.keyfile import Identity, create_secret_file, write_identity_file
from linkage.roster import build_roster, write_roster
from linkage.schema import load_schema

PASSPHRASE = "test-passphrase-1234"


@dataclass
class Federation:
    root: Path
    secret: Path
    roster: Path
    hub_key: Path
    identities: dict[str, Path] = field(default_factory=dict)
    passphrase: str = PASSPHRASE


def make_federation(root: Path, agencies: dict[str, list[str]], *, schema: str = "judicial-assistance",
                    valid_from: datetime | None = None, valid_days: int = 365,
                    hub_id: str = "hub") -> Federation:
    """Create keys and a roster for ``agencies`` ({agency id: [dataset kinds]})."""
    root.mkdir(parents=True, exist_ok=True)
    keys = root / "keys"
    secret = keys / "secret.key"
    create_secret_file(secret, PASSPHRASE)
    hub = Identity.generate("hub", hub_id, operator="test hub operators")
    hub_key = keys / f"{hub_id}.identity.key"
    write_identity_file(hub_key, hub, PASSPHRASE)
    parties = []
    ids = {}
    for agency_id, kinds in agencies.items():
        ident = Identity.generate("agency", agency_id)
        ident.datasets = tuple(kinds)
        path = keys / f"{agency_id}.identity.key"
        write_identity_file(path, ident, PASSPHRASE)
        ids[agency_id] = path
        parties.append(ident.public())
    start = valid_from or datetime.now(UTC) - timedelta(days=1)
    doc = build_roster(federation="test", schema_fingerprint=load_schema(schema).fingerprint,
                       hub=hub.public(), agencies=parties, valid_from=start,
                       valid_until=start + timedelta(days=valid_days))
    roster = root / "roster.json"
    write_roster(roster, doc)
    return Federation(root, secret, roster, hub_key, ids)


def dibao_encode_inputs(root: Path, rows: int, seed: int) -> tuple[Federation, Path, Path]:
    """A federation with the benchmark's civil-affairs agency, a synthetic 低保 export of ``rows``
    rows and its mapping file, under ``root``: what ``agency-kit encode`` needs (the caller sets
    AIDLINK_PASSPHRASE to PASSPHRASE)."""
    import json

    from benchmarks._agency_e2e import AGENCY, MAPPING, write_export

    fed = make_federation(root / "fed", {AGENCY: ["civil_affairs_dibao"]})
    export = root / "dibao.csv"
    write_export(export, rows, seed=seed)
    mapping = root / "mapping.json"
    mapping.write_text(json.dumps(MAPPING, ensure_ascii=False), "utf-8")
    return fed, export, mapping
