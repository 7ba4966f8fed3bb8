"""Encrypted key files: the linkage secret and the agencies' and hub's private keys.

The safe surface over :mod:`linkage._crypto`.  Every key file is a versioned
JSON container (docs/formats/package.md, "Key files"): scrypt (n = 2**15 by default, r = 8,
p = 1, parameters and salt stored in the file) turns the passphrase into a
key, ChaCha20-Poly1305 seals the secret with the rest of the file as
associated data.  Files are written atomically with mode 0600 and an existing
file is refused unless ``force`` (OutputExistsError).  A wrong passphrase --
or an edited file, which is indistinguishable -- raises PassphraseError and
nothing more.

Kinds:

* ``linkage-secret``: the 32-byte :class:`~linkage.keys.LinkageSecret`; the
  public part holds its key-check value.
* ``agency-identity`` / ``hub-identity``: an Ed25519 signing key and an HPKE
  receiving key (``x25519``, or ``mlkem768-x25519`` for post-quantum); the
  public part holds the id, name/operator and both public keys, so the public
  identity can be exported -- after the passphrase has proved the file intact.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ._crypto._files import check_output, write_atomic
from ._crypto._hpke import DEFAULT_SUITE, ReceivingPrivateKey, Rng, suite_spec
from ._crypto._passphrase import (
    DEFAULT_SCRYPT_N,
    check_key_file,
    open_key_file,
    seal_key_file,
)
from ._crypto._util import b64decode, b64encode, ct_equal
from .documents import read_json
from .errors import ConfigError, IntegrityError, Problem
from .keys import LinkageSecret
from .roster import Party, canonical_pretty, check_party_id

SECRET_KIND = "linkage-secret"  # noqa: S105 - a kind name, not a password
IDENTITY_KINDS = {"agency": "agency-identity", "hub": "hub-identity"}


@dataclass(frozen=True)
class KeyFileInfo:
    """What a key file says about itself without the passphrase (no secret here).

    ``verified`` is True only when the passphrase opened the file, which proves
    the public part was not edited.
    """

    path: str
    kind: str
    created_at: str
    public: dict[str, Any]
    kdf: dict[str, Any] = field(repr=False)
    verified: bool = False

    def summary(self) -> dict[str, Any]:
        kdf = {k: v for k, v in self.kdf.items() if k != "salt"}
        return {"path": self.path, "kind": self.kind, "created_at": self.created_at, "kdf": kdf,
                "verified": self.verified, **self.public}


def _read_container(path: str | Path) -> dict[str, Any]:
    return check_key_file(read_json(path), str(path))


def _info(path: str | Path, doc: dict[str, Any], verified: bool) -> KeyFileInfo:
    return KeyFileInfo(str(path), doc["kind"], doc["created_at"], dict(doc["public"]), dict(doc["kdf"]),
                       verified)


def read_key_file_info(path: str | Path, passphrase: str | bytes | None = None) -> KeyFileInfo:
    """The public part of any key file; opened (and so verified) when a passphrase is given."""
    doc = _read_container(path)
    if passphrase is None:
        return _info(path, doc, False)
    if doc["kind"] == SECRET_KIND:
        read_secret_file(path, passphrase)
    else:
        read_identity_file(path, passphrase)
    return _info(path, doc, True)


def change_passphrase(path: str | Path, old: str | bytes, new: str | bytes, *,
                      scrypt_n: int | None = None, rng: Rng = os.urandom) -> KeyFileInfo:
    """Re-seal the key file ``path`` under passphrase ``new`` (fresh salt and nonce; scrypt ``n`` as
    before unless given), in place, atomically, mode 0600.  The key itself, the public part and the
    creation time stay as they were.  PassphraseError if ``old`` does not open it (nothing written)."""
    doc = _read_container(path)
    if doc["kind"] == SECRET_KIND:
        read_secret_file(path, old)  # the same checks as every reader: kind, key-check value
    else:
        read_identity_file(path, old)  # ... public part matching its keys
    plaintext = open_key_file(doc, old)
    created = datetime.fromisoformat(doc["created_at"].replace("Z", "+00:00"))
    fresh = seal_key_file(doc["kind"], doc["public"], plaintext, new,
                          scrypt_n=int(doc["kdf"]["n"]) if scrypt_n is None else scrypt_n, rng=rng, now=created)
    write_atomic(path, canonical_pretty(fresh), force=True, mode=0o600)
    return _info(path, fresh, True)


# ---------------------------------------------------------------- linkage secret


def create_secret_file(path: str | Path, passphrase: str | bytes, *, secret: LinkageSecret | None = None,
                       force: bool = False, scrypt_n: int = DEFAULT_SCRYPT_N, rng: Rng = os.urandom,
                       now: datetime | None = None) -> KeyFileInfo:
    """Generate (or take) a linkage secret and write it encrypted under ``passphrase``."""
    check_output(path, force)
    if secret is None:
        secret = LinkageSecret(rng(32))
    if not isinstance(secret, LinkageSecret):
        raise TypeError("secret must be a LinkageSecret")
    doc = seal_key_file(SECRET_KIND, {"key_check_value": secret.key_check_value()}, bytes(secret.value),
                        passphrase, scrypt_n=scrypt_n, rng=rng, now=now)
    write_atomic(path, canonical_pretty(doc), force=force, mode=0o600)
    return _info(path, doc, True)


def read_secret_file(path: str | Path, passphrase: str | bytes) -> LinkageSecret:
    """The linkage secret in ``path``; PassphraseError if the passphrase does not open it."""
    doc = _read_container(path)
    if doc["kind"] != SECRET_KIND:
        raise ConfigError(str(path), [Problem("$.kind", f"this file holds {doc['kind']}, not a linkage secret")])
    raw = open_key_file(doc, passphrase)
    try:
        secret = LinkageSecret(raw)
    except TypeError:
        raise IntegrityError() from None
    if not ct_equal(secret.key_check_value(), str(doc["public"].get("key_check_value", ""))):
        raise IntegrityError()
    return secret


# ---------------------------------------------------------------- identities


class Identity:
    """A party's private keys: Ed25519 for signing, HPKE for receiving.  Repr is redacted."""

    __slots__ = ("datasets", "id", "name", "operator", "role", "sealing_key", "signing_key")

    def __init__(self, role: str, party_id: str, signing_key: Ed25519PrivateKey,
                 sealing_key: ReceivingPrivateKey, *, name: str | None = None,
                 operator: str | None = None, datasets: tuple[str, ...] = ()) -> None:
        if role not in IDENTITY_KINDS:
            raise ValueError("role must be 'agency' or 'hub'")
        if not isinstance(signing_key, Ed25519PrivateKey):
            raise TypeError("signing_key must be an Ed25519PrivateKey")
        if not isinstance(sealing_key, ReceivingPrivateKey):
            raise TypeError("sealing_key must be a ReceivingPrivateKey")
        self.role = role
        self.id = check_party_id(party_id)
        self.signing_key = signing_key
        self.sealing_key = sealing_key
        self.name = name
        self.operator = operator
        self.datasets = tuple(datasets)

    @classmethod
    def generate(cls, role: str, party_id: str, *, suite: str = DEFAULT_SUITE, name: str | None = None,
                 operator: str | None = None, rng: Rng = os.urandom) -> Identity:
        """Fresh keys; ``suite="mlkem768-x25519"`` for a post-quantum receiving key."""
        suite_spec(suite)
        signing = Ed25519PrivateKey.from_private_bytes(rng(32))
        return cls(role, party_id, signing, ReceivingPrivateKey.generate(suite, rng), name=name,
                   operator=operator)

    def public(self) -> Party:
        """The public identity to export for the roster."""
        return Party(role=self.role, id=self.id,
                     signing_public_key=self.signing_key.public_key().public_bytes_raw(),
                     sealing_suite=self.sealing_key.suite,
                     sealing_public_key=self.sealing_key.public_key().raw,
                     name=self.name, operator=self.operator, datasets=self.datasets)

    def __repr__(self) -> str:
        return f"Identity({self.role}, {self.id!r}, <redacted>)"


def _identity_public_part(identity: Identity) -> dict[str, Any]:
    doc = identity.public().to_identity_document()
    return {k: v for k, v in doc.items() if k not in ("format", "version")}


def write_identity_file(path: str | Path, identity: Identity, passphrase: str | bytes, *,
                        force: bool = False, scrypt_n: int = DEFAULT_SCRYPT_N, rng: Rng = os.urandom,
                        now: datetime | None = None) -> KeyFileInfo:
    """Write ``identity``'s private keys encrypted under ``passphrase`` (mode 0600)."""
    check_output(path, force)
    plaintext = json.dumps({
        "signing_private_key": b64encode(identity.signing_key.private_bytes_raw()),
        "sealing_private_key": b64encode(identity.sealing_key.private_bytes()),
    }, sort_keys=True).encode("ascii")
    doc = seal_key_file(IDENTITY_KINDS[identity.role], _identity_public_part(identity), plaintext,
                        passphrase, scrypt_n=scrypt_n, rng=rng, now=now)
    write_atomic(path, canonical_pretty(doc), force=force, mode=0o600)
    return _info(path, doc, True)


def read_identity_file(path: str | Path, passphrase: str | bytes, *, role: str | None = None) -> Identity:
    """The identity in ``path``; PassphraseError for a wrong passphrase or an edited file."""
    doc = _read_container(path)
    kinds = {v: k for k, v in IDENTITY_KINDS.items()}
    if doc["kind"] not in kinds or (role is not None and kinds[doc["kind"]] != role):
        want = IDENTITY_KINDS[role] if role else "an agency or hub identity"
        raise ConfigError(str(path), [Problem("$.kind", f"this file holds {doc['kind']}, not {want}")])
    raw = open_key_file(doc, passphrase)
    pub = doc["public"]
    try:
        keys = json.loads(raw)
        identity = Identity(
            kinds[doc["kind"]], pub["id"],
            Ed25519PrivateKey.from_private_bytes(b64decode(keys["signing_private_key"])),
            ReceivingPrivateKey(pub["sealing_suite"], b64decode(keys["sealing_private_key"])),
            name=pub.get("name"), operator=pub.get("operator"), datasets=tuple(pub.get("datasets", ())))
    except Exception:
        raise IntegrityError() from None
    if _identity_public_part(identity) != pub:  # public part must match the keys it was sealed with
        raise IntegrityError()
    return identity

