"""Regenerate the package-format regression vectors (run from the project root).

    .venv/bin/python tests/vectors/crypto/generate_package_vectors.py

Only needed when the package format changes on purpose -- and then the format
version must change too.  Writes, next to this script:

* ``payload.parquet``        -- the table every vector package carries (fixed bytes:
  written only when missing, so a pyarrow upgrade does not change it);
* ``roster_v1.json``         -- the roster the vector packages are opened with;
* ``package_v<format>_<suite>.aidpkg`` and ``.json`` -- the package
  and its inputs and expectations (key seeds, rng seed, clock, the HPKE
  sealed key that cryptography's random ephemeral key produced, the manifest
  and the sha256 of the file).

These are regression vectors made with this code, not known answers.
"""

from __future__ import annotations

import hashlib
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from linkage._crypto import _hpke  # noqa: E402
from linkage._crypto._hpke import ReceivingPrivateKey  # noqa: E402
from linkage.keyfile import Identity  # noqa: E402
from linkage.package import FORMAT_VERSION, write_package  # noqa: E402
from linkage.roster import build_roster, canonical_pretty  # noqa: E402


def seed(label: str, n: int = 32) -> bytes:
    return hashlib.shake_256(b"aidlink test vector " + label.encode()).digest(n)


class FixedRng:
    """A deterministic byte stream: SHAKE-256 of a label, handed out in order."""

    def __init__(self, label: str) -> None:
        self._stream = seed(label, 1 << 16)
        self._pos = 0

    def __call__(self, n: int) -> bytes:
        out = self._stream[self._pos:self._pos + n]
        self._pos += n
        assert len(out) == n
        return out


NOW = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)
FINGERPRINT = "5d" * 32
CHUNK = 256
FIELDS = {
    "dataset": "2026q1-dibao",
    "dataset_kind": "civil_affairs_dibao",
    "schema_id": "judicial-assistance",
    "schema_fingerprint": FINGERPRINT,
    "key_check_value": "0123456789abcdef0123456789abcdef",
    "counts": {"rows_read": 6, "encoded": 5, "flagged": 1, "rejected": 1},
}


def identities() -> tuple[Identity, Identity, ReceivingPrivateKey]:
    agency = Identity("agency", "agency-a", Ed25519PrivateKey.from_private_bytes(seed("agency signing")),
                      ReceivingPrivateKey("x25519", seed("agency receiving")), name="Agency A",
                      datasets=("civil_affairs_dibao",))
    hub = Identity("hub", "hub", Ed25519PrivateKey.from_private_bytes(seed("hub signing")),
                   ReceivingPrivateKey("x25519", seed("hub receiving")), operator="Hub operator, IT office")
    hub_pq = ReceivingPrivateKey("mlkem768-x25519", seed("hub receiving pq", 96))
    return agency, hub, hub_pq


def payload_table() -> pa.Table:
    return pa.table({
        "token": pa.array([f"{i:032x}" for i in range(5)], pa.string()),
        "bf_name": pa.array([bytes([i]) * 16 for i in range(4)] + [None], pa.binary(16)),
        "eh_id_number": pa.array([1, -2, 3, None, 5], pa.int64()),
        "attr_disability_grade": pa.array([1, 2, None, 4, 1], pa.int64()),
    })


def main() -> None:
    agency, hub, hub_pq = identities()
    if not (HERE / "payload.parquet").exists():
        pq.write_table(payload_table(), HERE / "payload.parquet", compression="none")
    roster = build_roster(federation="vector-federation", schema_fingerprint=FINGERPRINT, hub=hub.public(),
                          agencies=[agency.public()], valid_from=NOW - timedelta(days=1),
                          valid_until=NOW + timedelta(days=364), now=NOW)
    (HERE / "roster_v1.json").write_bytes(canonical_pretty(roster))
    for suite, key in (("x25519", hub.sealing_key), ("mlkem768-x25519", hub_pq)):
        recorded: dict[str, bytes] = {}
        real_seal = _hpke.seal_content_key

        def spy(spec, public, content_key, info, _rec=recorded, _real=real_seal):
            blob = _real(spec, public, content_key, info)
            _rec["sealed_key"] = blob
            return blob

        _hpke.seal_content_key = spy
        try:
            out = HERE / f"package_v{FORMAT_VERSION}_{suite}.aidpkg"
            manifest = write_package(out, HERE / "payload.parquet", dict(FIELDS), signing_key=agency.signing_key,
                                     sender_id=agency.id, recipient_id=hub.id,
                                     recipient_public_key=key.public_key(), suite=suite, chunk_size=CHUNK,
                                     now=NOW, rng=FixedRng(f"package rng {suite}"), force=True)
        finally:
            _hpke.seal_content_key = real_seal
        vector = {
            "note": "Regression vector made with aidlink itself (see README.md here), not a known answer.",
            "suite": suite,
            "seeds": "SHAKE-256('aidlink test vector ' + label); see generate_package_vectors.py",
            "rng_label": f"package rng {suite}",
            "now": NOW.isoformat().replace("+00:00", "Z"),
            "chunk_size": CHUNK,
            "fields": FIELDS,
            "sealed_key": recorded["sealed_key"].hex(),
            "manifest": manifest,
            "package_sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
            "package_bytes": out.stat().st_size,
        }
        (HERE / f"package_v{FORMAT_VERSION}_{suite}.json").write_bytes(canonical_pretty(vector))
        out.chmod(0o644)
    print("vectors written to", HERE)


if __name__ == "__main__":
    main()
