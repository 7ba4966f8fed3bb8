"""Known-answer tests (RFC 9180 HPKE, RFC 8032 Ed25519, RFC 7914 scrypt) and the
package-format regression vectors.  Origins: tests/vectors/crypto/README.md."""

import hashlib
import json
import struct
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from cryptography.hazmat.bindings._rust import openssl as rust_openssl
from cryptography.hazmat.primitives import hashes, hpke
from cryptography.hazmat.primitives import hmac as c_hmac
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from linkage._crypto import _hpke, _stream
from linkage._crypto._hpke import SUITES, ReceivingPrivateKey
from linkage.errors import IntegrityError
from linkage.keyfile import Identity
from linkage.package import hpke_info, open_package, write_package
from linkage.roster import load_roster

VEC = Path(__file__).resolve().parents[1] / "vectors" / "crypto"


def load(name):
    return json.loads((VEC / name).read_text("utf-8"))


# ---------------------------------------------------------------- RFC 9180 reference

def _extract(salt: bytes, ikm: bytes) -> bytes:
    h = c_hmac.HMAC(salt or bytes(32), hashes.SHA256())
    h.update(ikm)
    return h.finalize()


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    return HKDFExpand(hashes.SHA256(), length, info).derive(prk)


def labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _extract(salt, b"HPKE-v1" + suite_id + label + ikm)


def labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    return _expand(prk, struct.pack(">H", length) + b"HPKE-v1" + suite_id + label + info, length)


KEM_ID = b"KEM" + struct.pack(">H", 0x20)
HPKE_ID = b"HPKE" + struct.pack(">HHH", 0x20, 1, 3)


def reference_context(dh: bytes, enc: bytes, pk_r: bytes, info: bytes) -> dict:
    """RFC 9180 sections 4.1 and 5.1, base mode, for DHKEM(X25519)/HKDF-SHA256/ChaCha20Poly1305."""
    eae_prk = labeled_extract(KEM_ID, b"", b"eae_prk", dh)
    shared = labeled_expand(KEM_ID, eae_prk, b"shared_secret", enc + pk_r, 32)
    psk_id_hash = labeled_extract(HPKE_ID, b"", b"psk_id_hash", b"")
    info_hash = labeled_extract(HPKE_ID, b"", b"info_hash", info)
    ksc = b"\x00" + psk_id_hash + info_hash
    secret = labeled_extract(HPKE_ID, shared, b"secret", b"")
    return {
        "shared_secret": shared,
        "key_schedule_context": ksc,
        "secret": secret,
        "key": labeled_expand(HPKE_ID, secret, b"key", ksc, 32),
        "base_nonce": labeled_expand(HPKE_ID, secret, b"base_nonce", ksc, 12),
        "exporter_secret": labeled_expand(HPKE_ID, secret, b"exp", ksc, 32),
    }


def seq_nonce(base: bytes, seq: int) -> bytes:
    return bytes(a ^ b for a, b in zip(base, seq.to_bytes(12, "big"), strict=True))


@pytest.fixture(scope="module")
def rfc9180():
    return {k: (bytes.fromhex(v) if isinstance(v, str) and k != "source" else v)
            for k, v in load("rfc9180_a2_1.json").items()}


def test_rfc9180_keys_and_key_schedule(rfc9180):
    v = rfc9180
    sk_e = x25519.X25519PrivateKey.from_private_bytes(v["skEm"])
    sk_r = x25519.X25519PrivateKey.from_private_bytes(v["skRm"])
    assert sk_e.public_key().public_bytes_raw() == v["pkEm"] == v["enc"]
    assert sk_r.public_key().public_bytes_raw() == v["pkRm"]
    dh = sk_e.exchange(x25519.X25519PublicKey.from_public_bytes(v["pkRm"]))
    assert dh == sk_r.exchange(x25519.X25519PublicKey.from_public_bytes(v["enc"]))
    ctx = reference_context(dh, v["enc"], v["pkRm"], v["info"])
    for name in ("shared_secret", "key_schedule_context", "secret", "key", "base_nonce", "exporter_secret"):
        assert ctx[name] == v[name], name


def test_rfc9180_encryptions_and_exports(rfc9180):
    v = rfc9180
    aead = ChaCha20Poly1305(v["key"])
    for e in v["encryptions"]:
        nonce = seq_nonce(v["base_nonce"], e["seq"])
        assert nonce.hex() == e["nonce"]
        ct = aead.encrypt(nonce, bytes.fromhex(e["pt"]), bytes.fromhex(e["aad"]))
        assert ct.hex() == e["ct"]
    for x in v["exports"]:
        out = labeled_expand(HPKE_ID, v["exporter_secret"], b"sec", bytes.fromhex(x["exporter_context"]), x["L"])
        assert out.hex() == x["exported_value"]


def test_rfc9180_ciphertext_opens_with_cryptography_hpke(rfc9180):
    """cryptography's HPKE suite (the one packages use) decrypts the RFC's ciphertext."""
    v = rfc9180
    suite = SUITES["x25519"].hpke_suite()
    first = v["encryptions"][0]
    sk_r = x25519.X25519PrivateKey.from_private_bytes(v["skRm"])
    pt = rust_openssl.hpke._decrypt_with_aad(suite, v["enc"] + bytes.fromhex(first["ct"]), sk_r,
                                             info=v["info"], aad=bytes.fromhex(first["aad"]))
    assert pt == bytes.fromhex(first["pt"]) == b"Beauty is truth, truth beauty"


def test_cryptography_hpke_seal_opens_under_the_reference(rfc9180):
    """What packages seal (single shot, empty aad) is RFC 9180 base mode."""
    v = rfc9180
    pk_r = x25519.X25519PublicKey.from_public_bytes(v["pkRm"])
    sk_r = x25519.X25519PrivateKey.from_private_bytes(v["skRm"])
    blob = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305).encrypt(
        b"content key " * 3, pk_r, info=v["info"])
    enc, ct = blob[:32], blob[32:]
    ctx = reference_context(sk_r.exchange(x25519.X25519PublicKey.from_public_bytes(enc)), enc, v["pkRm"], v["info"])
    assert ChaCha20Poly1305(ctx["key"]).decrypt(ctx["base_nonce"], ct, b"") == b"content key " * 3


# ---------------------------------------------------------------- RFC 8032, RFC 7914

@pytest.mark.parametrize("vec", load("rfc8032_ed25519.json")["vectors"], ids=lambda v: v["name"])
def test_rfc8032_ed25519(vec):
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vec["secret_key"]))
    assert key.public_key().public_bytes_raw().hex() == vec["public_key"]
    msg = bytes.fromhex(vec["message"])
    assert key.sign(msg).hex() == vec["signature"]
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(vec["public_key"])).verify(bytes.fromhex(vec["signature"]), msg)


@pytest.mark.parametrize("vec", load("rfc7914_scrypt.json")["vectors"], ids=lambda v: f"N={v['N']}")
def test_rfc7914_scrypt(vec):
    dk = Scrypt(salt=vec["salt"].encode(), length=vec["dkLen"], n=vec["N"], r=vec["r"], p=vec["p"]).derive(
        vec["password"].encode())
    assert dk.hex() == vec["dk"]


# ---------------------------------------------------------------- STREAM construction

def test_stream_matches_its_specification():
    """Each chunk is ChaCha20-Poly1305(key, prefix || u32 counter || last flag, chunk, aad)."""
    key, prefix, aad, size = bytes(range(32)), bytes(range(7)), b"header", 64
    plain = bytes(range(200))
    sealed = list(_stream.encrypt_stream(key, prefix, aad, [plain[:10], plain[10:]], size))
    aead = ChaCha20Poly1305(key)
    pieces = [plain[0:64], plain[64:128], plain[128:192], plain[192:]]
    want = [aead.encrypt(prefix + struct.pack(">IB", i, int(i == 3)), p, aad) for i, p in enumerate(pieces)]
    assert sealed == want
    okm = HKDFExpand(hashes.SHA256(), 39, b"aidlink/v1/package/stream-key").derive(_extract(b"", b"k" * 32))
    assert _stream.derive_stream_key(b"k" * 32) == (okm[:32], okm[32:])


# ---------------------------------------------------------------- package regression vectors

class FixedRng:
    def __init__(self, label: str) -> None:
        self._stream = hashlib.shake_256(b"aidlink test vector " + label.encode()).digest(1 << 16)
        self._pos = 0

    def __call__(self, n: int) -> bytes:
        out = self._stream[self._pos:self._pos + n]
        self._pos += n
        return out


def seed(label: str, n: int = 32) -> bytes:
    return hashlib.shake_256(b"aidlink test vector " + label.encode()).digest(n)


def vector_parties():
    agency = Identity("agency", "agency-a", Ed25519PrivateKey.from_private_bytes(seed("agency signing")),
                      ReceivingPrivateKey("x25519", seed("agency receiving")), name="Agency A")
    hub = Identity("hub", "hub", Ed25519PrivateKey.from_private_bytes(seed("hub signing")),
                   ReceivingPrivateKey("x25519", seed("hub receiving")), operator="Hub operator, IT office")
    keys = {"x25519": hub.sealing_key, "mlkem768-x25519": ReceivingPrivateKey("mlkem768-x25519",
                                                                              seed("hub receiving pq", 96))}
    return agency, hub, keys


SUITE_NAMES = ["x25519", "mlkem768-x25519"]


@pytest.mark.parametrize("suite", SUITE_NAMES)
def test_stored_package_vector_opens(suite):
    vec = load(f"package_v2_{suite}.json")
    _, hub, keys = vector_parties()
    now = datetime.fromisoformat(vec["now"])
    roster = load_roster(VEC / "roster_v1.json", now=now)
    path = VEC / f"package_v2_{suite}.aidpkg"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == vec["package_sha256"]
    opened = open_package(path, recipient_private_key=keys[suite], roster=roster, recipient_id=hub.id, now=now)
    assert opened.manifest == vec["manifest"]
    assert opened.table.equals(pq.read_table(VEC / "payload.parquet"))


@pytest.mark.parametrize("suite", SUITE_NAMES)
def test_package_vector_rebuilds_bit_for_bit(suite, tmp_path, monkeypatch):
    vec = load(f"package_v2_{suite}.json")
    agency, hub, keys = vector_parties()
    recorded = bytes.fromhex(vec["sealed_key"])
    calls = []

    def replay(spec, public, content_key, info):
        # the recorded blob must really be a sealing of this content key under this info
        assert _hpke.open_content_key(spec, keys[suite].hpke_key(), recorded, info) == content_key
        calls.append(info)
        return recorded

    monkeypatch.setattr(_hpke, "seal_content_key", replay)
    out = tmp_path / "p.aidpkg"
    manifest = write_package(out, VEC / "payload.parquet", dict(vec["fields"]), signing_key=agency.signing_key,
                             sender_id=agency.id, recipient_id=hub.id,
                             recipient_public_key=keys[suite].public_key(), suite=suite,
                             chunk_size=vec["chunk_size"], now=datetime.fromisoformat(vec["now"]),
                             rng=FixedRng(vec["rng_label"]))
    assert manifest == vec["manifest"]
    assert calls and calls[0] == hpke_info(out.read_bytes()[:18])
    assert out.read_bytes() == (VEC / f"package_v2_{suite}.aidpkg").read_bytes()


@pytest.mark.parametrize("suite", SUITE_NAMES)
def test_format_1_package_is_refused(suite):
    """Format 1 (manifest before the payload) is no longer read: a genuine format-1
    package, from the kept vector, gets the one opaque error."""
    vec = load(f"package_v1_{suite}.json")
    _, hub, keys = vector_parties()
    now = datetime.fromisoformat(vec["now"])
    roster = load_roster(VEC / "roster_v1.json", now=now)
    path = VEC / f"package_v1_{suite}.aidpkg"
    assert path.read_bytes()[8:10] == b"\x00\x01"
    with pytest.raises(IntegrityError) as e:
        open_package(path, recipient_private_key=keys[suite], roster=roster, recipient_id=hub.id, now=now)
    assert str(e.value) == str(IntegrityError())
