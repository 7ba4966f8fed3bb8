"""Independent reference implementation of the native aidlink encoding v3.

Written from the specification in the docstring of ``linkage/encode.py`` using
the Python standard library (``hmac``, ``hashlib``, ``math``) and, since the
standard library has no AES, the AES-256 block function alone from
``cryptography`` (one 16-byte block at a time): no numpy, nothing imported
from ``linkage``.  HKDF is written out per RFC 5869 and CMAC per NIST SP
800-38B (subkeys, padding, chaining).  One record at a time, obviously slow,
meant to be read.

BLIP is random by design and is not reproduced here: ``encode_record`` returns
the filters before BLIP (tests check BLIP statistically).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import math

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

HKDF_SALT = b"aidlink-linkage-secret-v1"
US = "\x1f"


def hkdf_sha256(ikm: bytes, info: bytes, length: int = 32, salt: bytes = HKDF_SALT) -> bytes:
    """RFC 5869: extract then expand, HMAC-SHA256."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, t, i = b"", b"", 1
    while len(okm) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        okm += t
        i += 1
    return okm[:length]


def derive(secret: bytes, purpose: str, schema_id: str, name: str) -> bytes:
    info = f"aidlink/v1/{purpose}/{schema_id}/{name}".encode()
    return hkdf_sha256(secret, info)


def mac(key: bytes, msg: bytes) -> bytes:
    """HMAC-SHA256: the keyed permutations only."""
    return hmac.new(key, msg, hashlib.sha256).digest()


def aes_block(key: bytes, block: bytes) -> bytes:
    """AES-256 of one 16-byte block."""
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _dbl(b: bytes) -> bytes:
    v = int.from_bytes(b, "big") << 1
    if v >= 2 ** 128:
        v = (v - 2 ** 128) ^ 0x87
    return v.to_bytes(16, "big")


def cmac(key: bytes, msg: bytes) -> bytes:
    """AES-256-CMAC (NIST SP 800-38B, section 6.2): every per-record keyed value."""
    k1 = _dbl(aes_block(key, bytes(16)))
    k2 = _dbl(k1)
    n = max(1, math.ceil(len(msg) / 16))
    blocks = [msg[16 * i:16 * i + 16] for i in range(n)]
    if len(msg) > 0 and len(msg) % 16 == 0:
        blocks[-1] = _xor(blocks[-1], k1)
    else:
        last = blocks[-1] + b"\x80"
        blocks[-1] = _xor(last + bytes(16 - len(last)), k2)
    c = bytes(16)
    for b in blocks:
        c = aes_block(key, _xor(c, b))
    return c


def missing(v) -> bool:
    return v is None or v == ""


def tokenise(value: str, kind: str, n: int, padded: bool) -> list[str]:
    if kind == "exact":
        return [value]
    s = value
    if padded and n > 1:
        s = " " * (n - 1) + value + " " * (n - 1)
    if len(s) < n:
        grams = [s]
    else:
        grams = [s[i:i + n] for i in range(len(s) - n + 1)]
    if kind == "digit_ngrams":
        return [f"{i + 1} {g}" for i, g in enumerate(grams)]
    return grams


def words(key: bytes, msg: bytes, k: int, length: int) -> list[int]:
    size = 2 if length & (length - 1) == 0 and length <= 65536 else 4  # 16-bit words for a power of two
    out: list[int] = []
    j = 0
    while len(out) < k:
        block = cmac(key, msg) if j == 0 else cmac(key, b"\xff" + j.to_bytes(4, "big") + msg)
        out += [int.from_bytes(block[i:i + size], "big") for i in range(0, 16, size)]
        j += 1
    return out[:k]


def permutation(key: bytes, n: int) -> list[int]:
    label = b"aidlink-permutation-v1" + n.to_bytes(4, "big")
    stream: list[int] = []
    counter = 0

    def word() -> int:
        nonlocal counter
        if not stream:
            block = mac(key, label + counter.to_bytes(4, "big"))
            stream.extend(int.from_bytes(block[i:i + 4], "big") for i in range(0, 32, 4))
            counter += 1
        return stream.pop(0)

    p = list(range(n))
    for i in range(n - 1, 0, -1):
        limit = 2 ** 32 - (2 ** 32 % (i + 1))
        w = word()
        while w >= limit:
            w = word()
        j = w % (i + 1)
        p[i], p[j] = p[j], p[i]
    return p


def harden(bits: list[int], hard: dict, perm_key: bytes, balance_key: bytes) -> list[int]:
    if hard.get("permute"):
        p = permutation(perm_key, len(bits))
        bits = [bits[p[i]] for i in range(len(bits))]
    if hard.get("balance"):
        c = bits + [1 - b for b in bits]
        p2 = permutation(balance_key, len(c))
        bits = [c[p2[i]] for i in range(len(c))]
    for _ in range(hard.get("xor_fold", 0)):
        h = len(bits) // 2
        bits = [a ^ b for a, b in zip(bits[:h], bits[h:], strict=True)]
    return bits


def to_bytes(bits: list[int]) -> bytes:
    out = bytearray(len(bits) // 8)
    for i, b in enumerate(bits):
        if b:
            out[i // 8] |= 0x80 >> (i % 8)
    return bytes(out)


def add_field(bits: list[int], value: str, field: dict, weights: dict, key: bytes,
              salt: str | None) -> None:
    tok = field["tokeniser"]
    toks = tokenise(value, tok["kind"], tok.get("n", 2), tok.get("padded", True))
    if "bits_per_token" in weights:
        k = weights["bits_per_token"]
    else:
        k = math.ceil(weights["bits_per_feature"] / len(toks))
    for t in toks:
        msg = (t if salt is None else salt + US + t).encode("utf-8")
        for w in words(key, msg, k, len(bits)):
            bits[w % len(bits)] = 1


# GB 11643-1999 / GB/T 2260: province-level region codes (first two digits)
PROVINCES = {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46,
             50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83}


def id_passes_check(v: str, today: str) -> bool:
    """An 18-character ID number whose province digits, birth date (1900-01-01 .. ``today``,
    YYYYMMDD) and ISO 7064 MOD 11-2 check character are valid."""
    if len(v) != 18 or not v[:17].isdigit() or v[17] not in "0123456789X":
        return False
    if int(v[:2]) not in PROVINCES:
        return False
    try:
        born = datetime.date(int(v[6:10]), int(v[10:12]), int(v[12:14]))
    except ValueError:
        return False
    if not "19000101" <= born.strftime("%Y%m%d") <= today:
        return False
    total = sum(int(c) * w for c, w in zip(v[:17], (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)))
    return v[17] == "10X98765432"[total % 11]


def check_shape(v: str) -> bool:
    """17 ASCII digits and a check character."""
    return len(v) == 18 and all(c in "0123456789" for c in v[:17]) and v[17] in "0123456789X"


def check_ok(v: str) -> bool:
    """The ISO 7064 MOD 11-2 check character of an 18-character number is right."""
    weights = [2 ** (17 - i) % 11 for i in range(17)]
    return v[17] == "10X98765432"[sum(int(c) * w for c, w in zip(v[:17], weights)) % 11]


def encode_record(record: dict, doc: dict, secret: bytes) -> dict:
    """Column name -> bytes (filters), int (hashes) or None, for one record (before BLIP)."""
    sid = doc["id"]
    out: dict = {}
    for f in doc["fields"]:
        flt = f.get("filter")
        if not flt:
            continue
        name = f["name"]
        hard = flt.get("hardening", {})
        v = record.get(name)
        salt = None
        null = missing(v)
        if hard.get("salt") and not null:
            s = record.get(hard["salt"]["field"])
            if missing(s):
                null = hard["salt"].get("on_missing", "null") in ("null", "bank")  # a bank: section 7
            else:
                salt = s
        if null:
            out["bf_" + name] = None
            continue
        bits = [0] * flt["length"]
        add_field(bits, v, f, flt, derive(secret, "bloom", sid, name), salt)
        bits = harden(bits, hard, derive(secret, "permute", sid, name),
                      derive(secret, "permute", sid, name + "#balance"))
        out["bf_" + name] = to_bytes(bits)
    for f in doc["fields"]:
        if f.get("exact_hash"):
            v = record.get(f["name"])
            out["eh_" + f["name"]] = None if missing(v) else int.from_bytes(
                cmac(derive(secret, "exact", sid, f["name"]), v.encode())[:8], "big", signed=True)
    for b in doc.get("blocking_keys", []):
        vs = [record.get(x) for x in b["fields"]]
        out["bk_" + b["name"]] = None if any(missing(v) for v in vs) else int.from_bytes(
            cmac(derive(secret, "blocking", sid, b["name"]), US.join(vs).encode())[:8], "big",
            signed=True)
    for f in doc["fields"]:
        if f.get("validity_flag"):
            v = record.get(f["name"])
            out["ok_" + f["name"]] = None if missing(v) else id_passes_check(
                v, datetime.date.today().strftime("%Y%m%d"))
    for f in doc["fields"]:
        if f.get("typo_keys"):  # section 6: the exact hashes of a failing ID number's corrections
            v = record.get(f["name"])
            key = derive(secret, "exact", sid, f["name"])
            fixes = [None] * 35
            if not missing(v) and check_shape(v) and not check_ok(v):
                for i in range(17):  # a substitution at position i + 1: every digit tried
                    for d in "0123456789":
                        w = v[:i] + d + v[i + 1:]
                        if d != v[i] and check_ok(w):
                            fixes[i] = w
                fixes[17] = next(v[:17] + c for c in "0123456789X" if check_ok(v[:17] + c))
                for i in range(17):  # positions i + 1 and i + 2 swapped
                    w = v[:i] + v[i + 1] + v[i] + v[i + 2:]
                    if v[i] != v[i + 1] and check_shape(w) and check_ok(w):
                        fixes[18 + i] = w
            for j, w in enumerate(fixes):
                out[f"vk_{f['name']}_{j}"] = None if w is None else int.from_bytes(
                    cmac(key, w.encode())[:8], "big", signed=True)
    clk = doc["clk"]
    hard = clk.get("hardening", {})
    bits = [0] * clk["length"]
    salt = None
    contribute = True
    if hard.get("salt"):
        s = record.get(hard["salt"]["field"])
        if missing(s):
            contribute = hard["salt"].get("on_missing", "null") != "null"
        else:
            salt = s
    if contribute:
        for f in doc["fields"]:
            if f.get("clk") and not missing(record.get(f["name"])):
                add_field(bits, record[f["name"]], f, f["clk"],
                          derive(secret, "clk", sid, f["name"]), salt)
    bits = harden(bits, hard, derive(secret, "permute", sid, "#clk"),
                  derive(secret, "permute", sid, "#clk#balance"))
    out["clk"] = to_bytes(bits)
    return out
