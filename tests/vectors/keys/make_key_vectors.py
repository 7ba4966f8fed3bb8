"""Make tests/vectors/keys/keys.json: known answers for linkage/keys.py.

    .venv/bin/python tests/vectors/keys/make_key_vectors.py

Independent of ``linkage`` and of ``cryptography``: HKDF is written out here
from RFC 5869 over Python's ``hmac``/``hashlib``, and checked against RFC 5869
test case 1 and RFC 4231 test cases 1-2 (HMAC-SHA256) before anything is
written.  The labels (HKDF salt, info layout, key-check label) are copied from
the documented key-derivation scheme of ``linkage/keys.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

OUT = Path(__file__).resolve().parent / "keys.json"

HKDF_SALT = b"aidlink-linkage-secret-v1"
KCV_INFO = b"aidlink/v1/key-check-value"
KCV_LABEL = b"aidlink key-check value v1"

RFC5869_TC1 = {
    "ikm": "0b" * 22,
    "salt": "000102030405060708090a0b0c",
    "info": "f0f1f2f3f4f5f6f7f8f9",
    "length": 42,
    "prk": "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
    "okm": "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
}
RFC4231 = [
    {"key": "0b" * 20, "data": b"Hi There".hex(),
     "mac": "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
    {"key": b"Jefe".hex(), "data": b"what do ya want for nothing?".hex(),
     "mac": "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
]


def hmac_sha256(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac_sha256(salt if salt else bytes(32), ikm)


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    okm, t, i = b"", b"", 1
    while len(okm) < length:
        t = hmac_sha256(prk, t + info + bytes([i]))
        okm += t
        i += 1
    return okm[:length]


def hkdf(ikm: bytes, info: bytes, length: int = 32, salt: bytes = HKDF_SALT) -> bytes:
    return hkdf_expand(hkdf_extract(salt, ikm), info, length)


def derive(secret: bytes, purpose: str, schema_id: str, field: str, length: int = 32) -> bytes:
    info = b"aidlink/v1/" + purpose.encode() + b"/" + schema_id.encode() + b"/" + field.encode()
    return hkdf(secret, info, length)


def self_check() -> None:
    tc = RFC5869_TC1
    prk = hkdf_extract(bytes.fromhex(tc["salt"]), bytes.fromhex(tc["ikm"]))
    assert prk.hex() == tc["prk"], "RFC 5869 test case 1: PRK"
    okm = hkdf_expand(prk, bytes.fromhex(tc["info"]), tc["length"])
    assert okm.hex() == tc["okm"], "RFC 5869 test case 1: OKM"
    for v in RFC4231:
        assert hmac_sha256(bytes.fromhex(v["key"]), bytes.fromhex(v["data"])).hex() == v["mac"]


SECRETS = [bytes(range(32)), bytes([0xA5]) * 32,
           bytes.fromhex("9f1c2e7d4b6a08f3e5d1c0b2a4968778695a4b3c2d1e0f1a2b3c4d5e6f708192")]
PURPOSES = ["bloom", "clk", "exact", "blocking", "permute", "salt"]
SCHEMAS = ["judicial-assistance-v1", "febrl-v1"]
FIELDS = ["", "name", "id_number", "#clk", "name#balance", "姓名"]


def main() -> None:
    self_check()
    derives = []
    for s in SECRETS:
        for purpose in PURPOSES:
            for sid in SCHEMAS:
                for field in FIELDS:
                    derives.append({"secret": s.hex(), "purpose": purpose, "schema_id": sid,
                                    "field": field, "length": 32,
                                    "key": derive(s, purpose, sid, field).hex()})
    derives.append({"secret": SECRETS[0].hex(), "purpose": "bloom", "schema_id": "x", "field": "f",
                    "length": 64, "key": derive(SECRETS[0], "bloom", "x", "f", 64).hex()})
    kcv = [{"secret": s.hex(),
            "kcv": hmac_sha256(hkdf(s, KCV_INFO), KCV_LABEL)[:16].hex()} for s in SECRETS]
    macs = [{"key": k.hex(), "message": m.hex(), "mac": hmac_sha256(k, m).hex()}
            for k, m in [(SECRETS[0], b""), (SECRETS[1], "张三".encode()), (b"k", b"\x00" * 100)]]
    payload = {
        "description": "Known answers for linkage/keys.py, made by tests/vectors/keys/make_key_vectors.py "
                       "(stdlib hmac/hashlib, HKDF written out per RFC 5869)",
        "rfc5869_test_case_1": RFC5869_TC1,
        "rfc4231": RFC4231,
        "hkdf_salt": HKDF_SALT.hex(),
        "derive": derives,
        "key_check_value": kcv,
        "hmac_sha256": macs,
    }
    OUT.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
