"""The federation roster: who takes part, with which public keys, until when.

A roster (``schemas/roster.schema.json``, version 1) names the federation, the
schema fingerprint every package must carry, a validity window, the hub (with
its operator, for the compliance report's separation check) and the agencies
with the dataset kinds each may send.  Each party appears with its Ed25519
signing key and its HPKE sealing key (suite ``x25519`` or ``mlkem768-x25519``).

``load_roster(path, now=None)`` validates on load (JSON Schema, every problem
with its JSON path, raised together as ConfigError), then on meaning (unique
ids, well-formed keys, no key shared by two parties, a window that is not
empty), and refuses a roster outside its window (RosterError, exit 15).

The roster may carry a signature by the hub's signing key.  A signature is
always checked when present (a bad one is the opaque IntegrityError); it
proves the roster was issued by whoever holds the hub key named inside it.
That is worth something only when the reader already trusts that key: pass it
as ``hub_signing_key`` (pinning) to require a valid signature by exactly that
key, e.g. when an agency accepts a renewed roster.  Otherwise compare the
roster's ``fingerprint`` with the hub operator out of band (over the phone).

The public-identity document (``agency.pub.json``, ``hub.pub.json``) that
agencies and the hub exchange to build a roster is defined here too.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import referencing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ._crypto._files import write_atomic
from ._crypto._hpke import SUITES, ReceivingPublicKey
from ._crypto._util import b64decode, b64encode, ct_equal
from .documents import (
    canonical_json,
    describe_error,  # value-free messages, shared with every other document
    json_path,
    read_json,
    schema_document,
    validate_document,
)
from .errors import ConfigError, IntegrityError, Problem, RosterError

ROSTER_VERSION = 1
IDENTITY_FORMAT = "aidlink-public-identity"
ROSTER_SIGNATURE_LABEL = b"aidlink roster signature v1\x00"
ROSTER_FINGERPRINT_LABEL = b"aidlink roster fingerprint v1\x00"
IDENTITY_FINGERPRINT_LABEL = b"aidlink public identity v1\x00"
ROLES = ("agency", "hub")
PARTY_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_party_id(party_id: str) -> str:
    """ValueError unless ``party_id`` is a valid agency or hub id (also safe as a file name)."""
    if not isinstance(party_id, str) or not PARTY_ID_PATTERN.fullmatch(party_id):
        raise ValueError("an id is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return party_id


# ---------------------------------------------------------------- time


def parse_timestamp(text: str, *, end_of_day: bool = False) -> datetime:
    """An ISO date or RFC 3339 date-time as an aware UTC datetime.

    A bare date means 00:00 UTC that day, or -- with ``end_of_day`` -- 00:00 UTC
    the next day, so that ``valid_until: 2026-12-31`` is valid through that day.
    Raises ValueError for an impossible date.
    """
    if "T" not in text:
        d = date.fromisoformat(text)
        start = datetime(d.year, d.month, d.day, tzinfo=UTC)
        return start + timedelta(days=1) if end_of_day else start
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        raise ValueError("a date-time needs a time zone")
    return dt.astimezone(UTC)


def format_timestamp(dt: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, to the second."""
    if dt.tzinfo is None:
        raise ValueError("an aware datetime is needed")
    return dt.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    return now


# ---------------------------------------------------------------- keys


def _signing_key(raw: bytes) -> Ed25519PublicKey:
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def _key_problems(entry: dict[str, Any], here: str) -> list[Problem]:
    problems = []
    try:
        _signing_key(b64decode(entry["signing_public_key"]))
    except ValueError:
        problems.append(Problem(f"{here}.signing_public_key", "is not an Ed25519 public key (32 bytes, base64)"))
    suite = entry["sealing_suite"]
    try:
        ReceivingPublicKey(suite, b64decode(entry["sealing_public_key"]))
    except ValueError:
        problems.append(Problem(f"{here}.sealing_public_key",
                                f"is not a {suite} public key ({SUITES[suite].public_length} bytes, base64)"))
    return problems


# ---------------------------------------------------------------- parties


@dataclass(frozen=True)
class Party:
    """One party of a roster, or one exported public identity."""

    role: str  # "agency" | "hub"
    id: str
    signing_public_key: bytes = field(repr=False)
    sealing_suite: str
    sealing_public_key: bytes = field(repr=False)
    name: str | None = None
    operator: str | None = None
    datasets: tuple[str, ...] = ()

    def signing_key(self) -> Ed25519PublicKey:
        return _signing_key(self.signing_public_key)

    def sealing_key(self) -> ReceivingPublicKey:
        return ReceivingPublicKey(self.sealing_suite, self.sealing_public_key)

    @property
    def fingerprint(self) -> str:
        """sha256 (hex) of role, id and both public keys: read it out to check a key by phone."""
        return hashlib.sha256(IDENTITY_FINGERPRINT_LABEL + canonical_json({
            "role": self.role, "id": self.id, "signing_public_key": b64encode(self.signing_public_key),
            "sealing_suite": self.sealing_suite, "sealing_public_key": b64encode(self.sealing_public_key),
        })).hexdigest()

    def key_fields(self) -> dict[str, str]:
        return {"signing_public_key": b64encode(self.signing_public_key),
                "sealing_public_key": b64encode(self.sealing_public_key),
                "sealing_suite": self.sealing_suite}

    def to_identity_document(self) -> dict[str, Any]:
        """The public-identity document (``*.pub.json``)."""
        doc: dict[str, Any] = {"format": IDENTITY_FORMAT, "version": 1, "role": self.role, "id": self.id}
        if self.name:
            doc["name"] = self.name
        if self.operator:
            doc["operator"] = self.operator
        if self.datasets:
            doc["datasets"] = list(self.datasets)
        doc.update(self.key_fields())
        return doc

    @classmethod
    def _from_entry(cls, role: str, entry: dict[str, Any]) -> Party:
        return cls(role=role, id=entry["id"], signing_public_key=b64decode(entry["signing_public_key"]),
                   sealing_suite=entry["sealing_suite"],
                   sealing_public_key=b64decode(entry["sealing_public_key"]),
                   name=entry.get("name"), operator=entry.get("operator"),
                   datasets=tuple(entry.get("datasets", ())))


PublicIdentity = Party  # the exported form of a party is the same record


@cache
def _identity_validator() -> jsonschema.protocols.Validator:
    roster_schema = schema_document("roster")
    resource = referencing.Resource.from_contents(roster_schema)
    registry = referencing.Registry().with_resource(roster_schema["$id"], resource)
    schema = {"$schema": roster_schema["$schema"], "$ref": roster_schema["$id"] + "#/$defs/public_identity"}
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, registry=registry)


def public_identity_from_document(doc: Any, source: str = "<public identity>") -> Party:
    """Validate a public-identity document and return the party it describes."""
    problems = [Problem(json_path(e), describe_error(e))
                for e in sorted(_identity_validator().iter_errors(doc),
                                key=lambda e: list(map(str, e.absolute_path)))]
    if not problems:
        problems = _key_problems(doc, "$")
    if problems:
        raise ConfigError(source, problems)
    return Party._from_entry(doc["role"], doc)


def read_public_identity(path: str | Path) -> Party:
    """Read and validate a ``*.pub.json`` file."""
    return public_identity_from_document(read_json(path), str(path))


def write_public_identity(path: str | Path, party: Party, *, force: bool = False) -> Path:
    """Write a ``*.pub.json`` file atomically (mode 0644: it holds no secret)."""
    text = canonical_pretty(party.to_identity_document())
    return write_atomic(path, text, force=force, mode=0o644)


def canonical_pretty(doc: Any) -> bytes:
    """Readable JSON (indented, sorted keys, UTF-8) with a final newline."""
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


# ---------------------------------------------------------------- roster


@dataclass(frozen=True)
class Roster:
    """A validated federation roster."""

    federation: str
    schema_fingerprint: str
    valid_from: datetime
    valid_until: datetime  # exclusive
    hub: Party
    agencies: tuple[Party, ...]
    fingerprint: str
    signed: bool = False
    document: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def agency(self, agency_id: str) -> Party | None:
        """The agency with this id, or None."""
        for a in self.agencies:
            if a.id == agency_id:
                return a
        return None

    def party(self, party_id: str) -> Party | None:
        """The hub or the agency with this id, or None."""
        if party_id == self.hub.id:
            return self.hub
        return self.agency(party_id)

    def require_agency(self, agency_id: str) -> Party:
        a = self.agency(agency_id)
        if a is None:
            raise RosterError(f"agency {agency_id!r} is not on the roster of federation {self.federation!r}")
        return a

    def check_valid(self, now: datetime | None = None, source: str = "roster") -> None:
        """RosterError unless ``now`` is inside the validity window."""
        t = _now(now)
        if t < self.valid_from:
            raise RosterError(f"{source}: not valid before {format_timestamp(self.valid_from)}")
        if t >= self.valid_until:
            raise RosterError(f"{source}: expired at {format_timestamp(self.valid_until)}; "
                              f"ask the hub operator for a current roster")


def roster_signature_message(doc: dict[str, Any]) -> bytes:
    """What the hub signs: the label and the canonical roster without ``signature``."""
    return ROSTER_SIGNATURE_LABEL + canonical_json({k: v for k, v in doc.items() if k != "signature"})


def roster_fingerprint(doc: dict[str, Any]) -> str:
    """sha256 (hex) of the canonical roster without its signature: compare it out of band."""
    return hashlib.sha256(ROSTER_FINGERPRINT_LABEL + canonical_json(
        {k: v for k, v in doc.items() if k != "signature"})).hexdigest()


def _meaning_problems(doc: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    window = []
    for name in ("valid_from", "valid_until"):
        try:
            window.append(parse_timestamp(doc[name], end_of_day=name == "valid_until"))
        except ValueError:
            problems.append(Problem(f"$.{name}", "is not a valid date or date-time"))
    if "created_at" in doc:
        try:
            parse_timestamp(doc["created_at"])
        except ValueError:
            problems.append(Problem("$.created_at", "is not a valid date or date-time"))
    if len(window) == 2 and window[0] >= window[1]:
        problems.append(Problem("$.valid_until", "must be later than valid_from"))
    entries = [("$.hub", doc["hub"])] + [(f"$.agencies[{i}]", a) for i, a in enumerate(doc["agencies"])]
    seen_ids: dict[str, str] = {}
    seen_keys: dict[str, str] = {}
    for here, entry in entries:
        if entry["id"] in seen_ids:
            problems.append(Problem(f"{here}.id", f"repeats the id of {seen_ids[entry['id']]}"))
        else:
            seen_ids[entry["id"]] = here
        problems += _key_problems(entry, here)
        for k in ("signing_public_key", "sealing_public_key"):
            if entry[k] in seen_keys:
                problems.append(Problem(f"{here}.{k}", f"repeats a key of {seen_keys[entry[k]]}: "
                                        "every party needs its own keys"))
            else:
                seen_keys[entry[k]] = f"{here}.{k}"
    sig = doc.get("signature")
    if sig and sig["signer"] != doc["hub"]["id"]:
        problems.append(Problem("$.signature.signer", "must be the hub's id: only the hub signs a roster"))
    return problems


def _as_ed25519_public(key: Any) -> Ed25519PublicKey:
    if isinstance(key, Ed25519PublicKey):
        return key
    if isinstance(key, str):
        key = b64decode(key)
    if isinstance(key, bytes | bytearray):
        return _signing_key(bytes(key))
    raise TypeError("hub_signing_key must be an Ed25519 public key, its 32 bytes, or their base64")


def roster_from_document(doc: Any, source: str = "<roster>", *, now: datetime | None = None,
                         hub_signing_key: Any = None, check_time: bool = True) -> Roster:
    """Validate a parsed roster (schema, meaning, signature, window) and build the Roster."""
    validate_document(doc, "roster", source)
    problems = _meaning_problems(doc)
    if problems:
        raise ConfigError(source, problems)
    hub = Party._from_entry("hub", doc["hub"])
    sig = doc.get("signature")
    if sig is not None:
        try:
            hub.signing_key().verify(b64decode(sig["value"]), roster_signature_message(doc))
        except Exception:
            raise IntegrityError() from None
    if hub_signing_key is not None:
        pinned = _as_ed25519_public(hub_signing_key).public_bytes_raw()
        if sig is None or not ct_equal(pinned, hub.signing_public_key):
            raise IntegrityError()
    roster = Roster(
        federation=doc["federation"],
        schema_fingerprint=doc["schema_fingerprint"],
        valid_from=parse_timestamp(doc["valid_from"]),
        valid_until=parse_timestamp(doc["valid_until"], end_of_day=True),
        hub=hub,
        agencies=tuple(Party._from_entry("agency", a) for a in doc["agencies"]),
        fingerprint=roster_fingerprint(doc),
        signed=sig is not None,
        document=doc,
    )
    if check_time:
        roster.check_valid(now, source)
    return roster


def load_roster(path: str | Path, now: datetime | None = None, *, hub_signing_key: Any = None,
                check_time: bool = True) -> Roster:
    """Read, validate and time-check a roster file.

    ConfigError (exit 3) lists every problem; RosterError (exit 15) when ``now``
    is outside the validity window; IntegrityError (exit 20) for a bad
    signature or, with ``hub_signing_key``, a roster not signed by that key.
    """
    return roster_from_document(read_json(path), str(path), now=now, hub_signing_key=hub_signing_key,
                                check_time=check_time)


def build_roster(*, federation: str, schema_fingerprint: str, hub: Party, agencies: Iterable[Party],
                 valid_from: datetime, valid_until: datetime, datasets: dict[str, Iterable[str]] | None = None,
                 description: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Assemble (and validate) a roster document from public identities.

    ``datasets`` overrides the dataset kinds an agency's identity file lists.
    The hub must have an operator.  Raises ConfigError listing every problem.
    """
    if hub.role != "hub":
        raise ConfigError("roster", [Problem("$.hub", "is not a hub's public identity")])
    datasets = {k: list(v) for k, v in (datasets or {}).items()}
    agency_entries = []
    problems = []
    agencies = list(agencies)
    for i, a in enumerate(agencies):
        if a.role != "agency":
            problems.append(Problem(f"$.agencies[{i}]", "is not an agency's public identity"))
        kinds = datasets.pop(a.id, None)
        entry: dict[str, Any] = {"id": a.id, "name": a.name or a.id,
                                 "datasets": sorted(set(kinds if kinds is not None else a.datasets))}
        entry.update(a.key_fields())
        agency_entries.append(entry)
    for unknown in sorted(datasets):
        problems.append(Problem("$.agencies", f"datasets given for {unknown!r}, which is not among the agencies"))
    if not hub.operator:
        problems.append(Problem("$.hub.operator", "the hub's operator (organisation and department) is required"))
    if problems:
        raise ConfigError("roster", problems)
    hub_entry: dict[str, Any] = {"id": hub.id, "operator": hub.operator}
    hub_entry.update(hub.key_fields())
    doc: dict[str, Any] = {"version": ROSTER_VERSION, "federation": federation}
    if description:
        doc["description"] = description
    doc.update({
        "schema_fingerprint": schema_fingerprint,
        "valid_from": format_timestamp(valid_from),
        "valid_until": format_timestamp(valid_until),
        "created_at": format_timestamp(_now(now)),
        "hub": hub_entry,
        "agencies": agency_entries,
    })
    roster_from_document(doc, "roster", check_time=False)
    return doc


def sign_roster(doc: dict[str, Any], signing_key: Ed25519PrivateKey, signer_id: str) -> dict[str, Any]:
    """A copy of ``doc`` with the hub's signature (replacing any earlier one)."""
    if not isinstance(signing_key, Ed25519PrivateKey):
        raise TypeError("signing_key must be an Ed25519PrivateKey")
    unsigned = {k: v for k, v in doc.items() if k != "signature"}
    if signer_id != unsigned["hub"]["id"]:
        raise ValueError("only the hub signs a roster")
    if not ct_equal(signing_key.public_key().public_bytes_raw(), b64decode(unsigned["hub"]["signing_public_key"])):
        raise ValueError("this signing key is not the hub key named in the roster")
    sig = signing_key.sign(roster_signature_message(unsigned))
    return {**unsigned, "signature": {"algorithm": "ed25519", "signer": signer_id, "value": b64encode(sig)}}


def write_roster(path: str | Path, doc: dict[str, Any], *, force: bool = False) -> Path:
    """Validate (not time-checked) and write a roster atomically (mode 0644)."""
    roster_from_document(doc, str(path), check_time=False)
    return write_atomic(path, canonical_pretty(doc), force=force, mode=0o644)
