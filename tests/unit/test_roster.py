"""The federation roster and the public-identity documents (linkage.roster)."""

import copy
import json
from datetime import UTC, datetime, timedelta

import pytest

from linkage._crypto._util import b64encode
from linkage.errors import ConfigError, IntegrityError, OutputExistsError, RosterError
from linkage.keyfile import Identity
from linkage.roster import (
    build_roster,
    load_roster,
    parse_timestamp,
    public_identity_from_document,
    read_public_identity,
    roster_from_document,
    sign_roster,
    write_public_identity,
    write_roster,
)

NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
FP = "5d" * 32


@pytest.fixture(scope="module")
def ids():
    hub = Identity.generate("hub", "hub", operator="County procuratorate, IT office")
    a = Identity.generate("agency", "civil-affairs", name="民政局")
    a.datasets = ("civil_affairs_dibao", "civil_affairs_tekun")
    b = Identity.generate("agency", "court", name="Court", suite="mlkem768-x25519")
    b.datasets = ("court_enforcement",)
    return hub, a, b


@pytest.fixture
def doc(ids):
    hub, a, b = ids
    return build_roster(federation="county-2026", schema_fingerprint=FP, hub=hub.public(),
                        agencies=[a.public(), b.public()], valid_from=NOW, valid_until=NOW + timedelta(days=365),
                        now=NOW)


def test_build_write_load(ids, doc, tmp_path):
    _hub, a, b = ids
    path = tmp_path / "roster.json"
    write_roster(path, doc)
    r = load_roster(path, now=NOW + timedelta(days=1))
    assert r.federation == "county-2026" and r.schema_fingerprint == FP and not r.signed
    assert r.hub.operator == "County procuratorate, IT office" and r.hub.role == "hub"
    assert r.agency("civil-affairs").name == "民政局"
    assert r.agency("civil-affairs").datasets == ("civil_affairs_dibao", "civil_affairs_tekun")
    assert r.agency("court").sealing_suite == "mlkem768-x25519"
    assert r.agency("court").sealing_key() == b.sealing_key.public_key()
    assert r.agency("nobody") is None and r.party("hub") is r.hub
    with pytest.raises(RosterError):
        r.require_agency("nobody")
    assert r.agency("civil-affairs").signing_key().public_bytes_raw() == \
        a.signing_key.public_key().public_bytes_raw()
    assert len(r.fingerprint) == 64 and r.fingerprint == load_roster(path, now=NOW).fingerprint
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    with pytest.raises(OutputExistsError):
        write_roster(path, doc)


def test_validity_window(doc):
    r = roster_from_document(doc, now=NOW)
    with pytest.raises(RosterError, match="expired") as ei:
        roster_from_document(doc, now=NOW + timedelta(days=365))
    assert ei.value.exit_code == 15
    with pytest.raises(RosterError, match="not valid before"):
        roster_from_document(doc, now=NOW - timedelta(seconds=1))
    r.check_valid(NOW + timedelta(days=364, hours=23))
    # a bare date for valid_until means through the end of that day
    d = {**doc, "valid_from": "2026-01-01", "valid_until": "2026-06-30"}
    roster_from_document(d, now=datetime(2026, 6, 30, 23, 59, 59, tzinfo=UTC))
    with pytest.raises(RosterError):
        roster_from_document(d, now=datetime(2026, 7, 1, tzinfo=UTC))
    assert parse_timestamp("2026-06-30", end_of_day=True) == datetime(2026, 7, 1, tzinfo=UTC)
    assert parse_timestamp("2026-06-30T10:00:00+08:00") == datetime(2026, 6, 30, 2, tzinfo=UTC)


def test_all_schema_problems_at_once(doc):
    bad = copy.deepcopy(doc)
    bad["version"] = 2
    del bad["hub"]["operator"]
    bad["agencies"][0]["datasets"] = ["Not A Kind"]
    bad["agencies"][1]["sealing_suite"] = "rsa"
    bad["valid_until"] = "soon"
    bad["extra"] = 1
    with pytest.raises(ConfigError) as ei:
        roster_from_document(bad, "r.json", now=NOW)
    paths = {p.path for p in ei.value.problems}
    assert {"$.version", "$.hub", "$.agencies[0].datasets[0]", "$.agencies[1].sealing_suite", "$.valid_until",
            "$"} <= paths, paths
    assert ei.value.exit_code == 3


def test_meaning_problems(doc):
    bad = copy.deepcopy(doc)
    bad["agencies"][1]["id"] = bad["agencies"][0]["id"]
    bad["agencies"][1]["signing_public_key"] = bad["agencies"][0]["signing_public_key"]
    bad["hub"]["sealing_public_key"] = b64encode(b"\x01" * 31)
    bad["valid_from"], bad["valid_until"] = "2026-02-30", "2025-01-01"
    with pytest.raises(ConfigError) as ei:
        roster_from_document(bad, now=NOW)
    text = str(ei.value)
    assert "repeats the id" in text and "repeats a key" in text and "x25519 public key" in text
    assert "$.valid_from: is not a valid date" in text
    bad2 = {**copy.deepcopy(doc), "valid_until": doc["valid_from"]}
    with pytest.raises(ConfigError, match="later than valid_from"):
        roster_from_document(bad2, now=NOW)


def test_signed_roster_and_pinning(ids, doc):
    hub, a, _ = ids
    signed = sign_roster(doc, hub.signing_key, "hub")
    r = roster_from_document(signed, now=NOW)
    assert r.signed and r.fingerprint == roster_from_document(doc, now=NOW).fingerprint
    pin = hub.signing_key.public_key()
    roster_from_document(signed, now=NOW, hub_signing_key=pin)
    roster_from_document(signed, now=NOW, hub_signing_key=b64encode(pin.public_bytes_raw()))
    # edits after signing, a wrong pin, or no signature under a pin: the opaque IntegrityError
    edited = copy.deepcopy(signed)
    edited["agencies"][0]["datasets"].append("court_enforcement")
    for bad, pinned in ((edited, None), (signed, a.signing_key.public_key()), (doc, pin)):
        with pytest.raises(IntegrityError) as ei:
            roster_from_document(bad, now=NOW, hub_signing_key=pinned)
        assert str(ei.value) == IntegrityError().message
    with pytest.raises(ValueError):
        sign_roster(doc, a.signing_key, "hub")
    wrong_signer = {**signed, "signature": {**signed["signature"], "signer": "civil-affairs"}}
    with pytest.raises(ConfigError, match="only the hub"):
        roster_from_document(wrong_signer, now=NOW)


def test_build_problems(ids):
    hub, a, b = ids
    no_op = Identity.generate("hub", "hub2").public()
    with pytest.raises(ConfigError) as ei:
        build_roster(federation="f", schema_fingerprint=FP, hub=no_op, agencies=[a.public()], valid_from=NOW,
                     valid_until=NOW + timedelta(days=1), datasets={"ghost": ["x"]})
    assert "operator" in str(ei.value) and "ghost" in str(ei.value)
    with pytest.raises(ConfigError):
        build_roster(federation="f", schema_fingerprint=FP, hub=a.public(), agencies=[b.public()],
                     valid_from=NOW, valid_until=NOW + timedelta(days=1))
    d = build_roster(federation="f", schema_fingerprint=FP, hub=hub.public(), agencies=[a.public()], valid_from=NOW,
                     valid_until=NOW + timedelta(days=1), datasets={"civil-affairs": ["education_students"]})
    assert d["agencies"][0]["datasets"] == ["education_students"]


def test_public_identity_documents(ids, tmp_path):
    hub, a, b = ids
    for ident in (hub, a, b):
        path = tmp_path / f"{ident.id}.pub.json"
        write_public_identity(path, ident.public())
        back = read_public_identity(path)
        assert back == ident.public() and back.fingerprint == ident.public().fingerprint
        assert oct(path.stat().st_mode & 0o777) == "0o644"
        assert "private" not in path.read_text()
    doc = json.loads((tmp_path / "civil-affairs.pub.json").read_text("utf-8"))
    doc["signing_public_key"] = b64encode(b"x" * 31)
    with pytest.raises(ConfigError, match="Ed25519"):
        public_identity_from_document(doc)
    doc2 = {**doc, "role": "boss", "surprise": True}
    with pytest.raises(ConfigError) as ei:
        public_identity_from_document(doc2)
    assert {p.path for p in ei.value.problems} >= {"$.role", "$"}


def test_fingerprints_differ_by_party(ids):
    hub, a, b = ids
    assert len({hub.public().fingerprint, a.public().fingerprint, b.public().fingerprint}) == 3
