"""Passphrase-encrypted key files (linkage.keyfile)."""

import json
import os
import unicodedata
from datetime import UTC, datetime

import pytest

from linkage._crypto import _files
from linkage._crypto._util import b64decode, b64encode
from linkage.errors import ConfigError, IntegrityError, OutputExistsError, PassphraseError
from linkage.keyfile import (
    Identity,
    create_secret_file,
    read_identity_file,
    read_key_file_info,
    read_secret_file,
    write_identity_file,
)
from linkage.keys import LinkageSecret

PW = "correct horse battery staple"
NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def counter_rng():
    state = {"i": 0}

    def rng(n):
        out = bytes((state["i"] + k) % 256 for k in range(n))
        state["i"] += n
        return out

    return rng


def test_secret_round_trip_mode_and_no_leak(tmp_path):
    path = tmp_path / "secret.key"
    secret = LinkageSecret(bytes(range(32)))
    info = create_secret_file(path, PW, secret=secret, now=NOW)
    assert info.public == {"key_check_value": secret.key_check_value()} and info.verified
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    text = path.read_text()
    assert secret.value.hex() not in text and b64encode(secret.value) not in text and PW not in text
    doc = json.loads(text)
    assert doc["kdf"] == {**doc["kdf"], "name": "scrypt", "n": 2 ** 15, "r": 8, "p": 1, "length": 32}
    assert doc["format"] == "aidlink-key-file" and doc["version"] == 1 and doc["created_at"] == "2026-03-01T08:00:00Z"
    back = read_secret_file(path, PW)
    assert back.value == secret.value and "redacted" in repr(back)
    assert os.listdir(tmp_path) == ["secret.key"]


def test_deterministic_with_fixed_rng_and_clock(tmp_path):
    a, b = tmp_path / "a.key", tmp_path / "b.key"
    create_secret_file(a, PW, rng=counter_rng(), now=NOW)
    create_secret_file(b, PW, rng=counter_rng(), now=NOW)
    assert a.read_bytes() == b.read_bytes()
    assert read_secret_file(a, PW).value == bytes(range(32))


def test_wrong_passphrase_says_nothing_more(tmp_path):
    path = tmp_path / "secret.key"
    create_secret_file(path, PW)
    for wrong in ("", "correct horse battery stapl", PW + " ", PW.upper()):
        with pytest.raises(PassphraseError) as ei:
            read_secret_file(path, wrong)
        assert str(ei.value) == PassphraseError().message and ei.value.exit_code == 14
        assert ei.value.__cause__ is None


def test_edited_file_is_the_same_failure(tmp_path):
    path = tmp_path / "secret.key"
    create_secret_file(path, PW)
    original = json.loads(path.read_text())
    edits = [
        ("public", {"key_check_value": "00" * 16}),
        ("kdf", {**original["kdf"], "n": 2 ** 16}),
        ("created_at", "2020-01-01T00:00:00Z"),
        ("cipher", {**original["cipher"], "nonce": b64encode(b"\x00" * 12)}),
    ]
    ct = bytearray(b64decode(original["ciphertext"]))
    ct[3] ^= 1
    edits.append(("ciphertext", b64encode(bytes(ct))))
    for field, value in edits:
        path.write_text(json.dumps({**original, field: value}))
        with pytest.raises(PassphraseError):
            read_secret_file(path, PW)


def test_malformed_files_list_every_problem(tmp_path):
    path = tmp_path / "bad.key"
    path.write_text(json.dumps({"format": "x", "version": 9, "kind": "nope", "kdf": {"name": "scrypt", "n": 3},
                                "cipher": {}, "ciphertext": "!!", "more": 1}))
    with pytest.raises(ConfigError) as ei:
        read_secret_file(path, PW)
    paths = {p.path for p in ei.value.problems}
    assert {"$.format", "$.version", "$.kind", "$.kdf.n", "$.kdf.salt", "$.cipher", "$.ciphertext", "$"} <= paths
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="invalid JSON"):
        read_secret_file(path, PW)


def test_scrypt_parameters_enforced(tmp_path):
    with pytest.raises(ValueError):
        create_secret_file(tmp_path / "s.key", PW, scrypt_n=2 ** 14)
    with pytest.raises(ValueError):
        create_secret_file(tmp_path / "s.key", "")
    info = create_secret_file(tmp_path / "s.key", PW, scrypt_n=2 ** 16)
    assert info.kdf["n"] == 2 ** 16 and read_secret_file(tmp_path / "s.key", PW)


def test_passphrase_is_nfc_normalised(tmp_path):
    path = tmp_path / "s.key"
    composed = "caf\u00e9 passphrase"
    create_secret_file(path, composed)
    assert read_secret_file(path, unicodedata.normalize("NFD", composed))


def test_existing_output_and_force(tmp_path):
    path = tmp_path / "s.key"
    create_secret_file(path, PW)
    before = path.read_bytes()
    with pytest.raises(OutputExistsError) as ei:
        create_secret_file(path, PW)
    assert ei.value.exit_code == 16 and path.read_bytes() == before
    create_secret_file(path, PW, force=True)
    assert path.read_bytes() != before and os.listdir(tmp_path) == ["s.key"]


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def fail(fd):
        raise OSError("no space")

    monkeypatch.setattr(_files.os, "fsync", fail)
    with pytest.raises(OSError):
        create_secret_file(tmp_path / "s.key", PW)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("suite", ["x25519", "mlkem768-x25519"])
def test_identity_round_trip(tmp_path, suite):
    ident = Identity.generate("agency", "civil-affairs", suite=suite, name="民政局")
    path = tmp_path / "id.key"
    info = write_identity_file(path, ident, PW)
    assert info.kind == "agency-identity" and oct(path.stat().st_mode & 0o777) == "0o600"
    back = read_identity_file(path, PW)
    assert back.public() == ident.public() and back.name == "民政局"
    assert back.signing_key.private_bytes_raw() == ident.signing_key.private_bytes_raw()
    assert back.sealing_key.private_bytes() == ident.sealing_key.private_bytes()
    assert "redacted" in repr(back) and "redacted" in repr(back.sealing_key)
    text = path.read_text()
    assert b64encode(ident.signing_key.private_bytes_raw()) not in text
    assert b64encode(ident.sealing_key.private_bytes()) not in text
    with pytest.raises(PassphraseError):
        read_identity_file(path, "wrong passphrase")
    with pytest.raises(ConfigError, match="hub-identity"):
        read_identity_file(path, PW, role="hub")
    with pytest.raises(ConfigError, match="not a linkage secret"):
        read_secret_file(path, PW)


def test_identity_generation_is_deterministic_under_fixed_rng():
    a = Identity.generate("hub", "hub", suite="mlkem768-x25519", operator="x", rng=counter_rng())
    b = Identity.generate("hub", "hub", suite="mlkem768-x25519", operator="x", rng=counter_rng())
    assert a.public() == b.public()
    with pytest.raises(ValueError):
        Identity.generate("agency", "../etc")
    with pytest.raises(ValueError):
        Identity.generate("boss", "x")


def test_key_file_info_with_and_without_passphrase(tmp_path):
    s, i = tmp_path / "s.key", tmp_path / "i.key"
    secret_info = create_secret_file(s, PW)
    ident = Identity.generate("hub", "hub", operator="IT office")
    write_identity_file(i, ident, PW)
    unverified = read_key_file_info(s)
    assert not unverified.verified and unverified.public == secret_info.public
    assert read_key_file_info(s, PW).verified
    info = read_key_file_info(i, PW)
    assert info.verified and info.public["operator"] == "IT office" and info.kind == "hub-identity"
    summary = info.summary()
    assert "salt" not in json.dumps(summary) and "ciphertext" not in summary
    with pytest.raises(PassphraseError):
        read_key_file_info(i, "nope nope")


def test_identity_public_part_must_match_keys(tmp_path):
    """A file whose public part names other keys than it seals is refused (even with the passphrase)."""
    ident, other = Identity.generate("agency", "a"), Identity.generate("agency", "a")
    path = tmp_path / "i.key"
    write_identity_file(path, ident, PW)
    from linkage._crypto._passphrase import seal_key_file

    doc = json.loads(path.read_text())
    forged = seal_key_file("agency-identity", {**doc["public"], "signing_public_key":
                           b64encode(other.signing_key.public_key().public_bytes_raw())},
                           json.dumps({"signing_private_key": b64encode(ident.signing_key.private_bytes_raw()),
                                       "sealing_private_key": b64encode(ident.sealing_key.private_bytes())}).encode(),
                           PW)
    path.write_text(json.dumps(forged))
    with pytest.raises(IntegrityError):
        read_identity_file(path, PW)
