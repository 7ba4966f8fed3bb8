"""Behaviour, tamper and misuse tests for signed + sealed packages (linkage.package).

Every authenticity failure must raise the one IntegrityError with the one
message, chain no cause, and leave no file behind.
"""

import hashlib
import io
import json
import os
import struct
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from linkage._crypto import _hpke, _stream
from linkage._crypto._hpke import ReceivingPrivateKey
from linkage.documents import canonical_json
from linkage.errors import (
    ConfigError,
    FingerprintMismatchError,
    IntegrityError,
    OutputExistsError,
    ReplayError,
    RosterError,
)
from linkage.keyfile import Identity
from linkage.package import (
    FIXED_HEADER_BYTES,
    SIGNATURE_BYTES,
    PackageWriter,
    _read_header,
    body_trailer,
    encode_header,
    hpke_info,
    open_package,
    read_package_header,
    signature_message,
    write_package,
)
from linkage.roster import build_roster, roster_from_document

NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
FP = "5d" * 32
CHUNK = 256
OPAQUE = IntegrityError().message
FIELDS = {
    "dataset": "2026q1",
    "dataset_kind": "civil_affairs_dibao",
    "schema_id": "judicial-assistance",
    "schema_fingerprint": FP,
    "key_check_value": "0123456789abcdef0123456789abcdef",
    "counts": {"rows_read": 40, "encoded": 40, "flagged": 0, "rejected": 0},
}


class Parties:
    def __init__(self):
        self.hub = Identity.generate("hub", "hub", operator="Procuratorate IT office")
        self.hub_pq = ReceivingPrivateKey.generate("mlkem768-x25519")
        self.other_hub = Identity.generate("hub", "hub-b", operator="Somebody else")
        self.a = Identity.generate("agency", "agency-a", name="A")
        self.a.datasets = ("civil_affairs_dibao",)
        self.b = Identity.generate("agency", "agency-b", name="B")
        self.b.datasets = ("court_enforcement",)
        self.outsider = Identity.generate("agency", "agency-x", name="X")
        self.roster = self.make_roster(self.hub)
        self.other_roster = self.make_roster(self.other_hub)

    def make_roster(self, hub, **kw):
        doc = build_roster(federation="fed", schema_fingerprint=kw.get("fp", FP), hub=hub.public(),
                           agencies=[self.a.public(), self.b.public()], valid_from=NOW - timedelta(days=10),
                           valid_until=NOW + timedelta(days=364), now=NOW)
        return roster_from_document(doc, now=NOW)


@pytest.fixture(scope="module")
def parties():
    return Parties()


def table(rows=40):
    return pa.table({
        "token": pa.array([hashlib.md5(str(i).encode()).hexdigest() for i in range(rows)], pa.string()),
        "bf_name": pa.array([os.urandom(16) for _ in range(rows)], pa.binary(16)),
        "eh_id": pa.array(list(range(rows)), pa.int64()),
    })


def seal(parties, path, *, t=None, fields=None, sender=None, sender_id=None, recipient_id="hub",
         recipient_key=None, suite="x25519", chunk=CHUNK, now=NOW, **kw):
    sender = sender or parties.a
    return write_package(path, table() if t is None else t, dict(FIELDS if fields is None else fields),
                         signing_key=sender.signing_key, sender_id=sender_id or sender.id, recipient_id=recipient_id,
                         recipient_public_key=recipient_key or parties.hub.sealing_key.public_key(), suite=suite,
                         chunk_size=chunk, now=now, **kw)


def open_(parties, path, *, key=None, roster=None, recipient_id="hub", now=NOW, **kw):
    return open_package(path, recipient_private_key=key or parties.hub.sealing_key,
                        roster=roster or parties.roster, recipient_id=recipient_id, now=now, **kw)


def assert_opaque(fn, directory=None):
    before = sorted(os.listdir(directory)) if directory else None
    with pytest.raises(IntegrityError) as ei:
        fn()
    assert str(ei.value) == OPAQUE
    # no chained exception tells which check failed
    assert ei.value.__cause__ is None
    assert ei.value.__context__ is None or ei.value.__suppress_context__
    if directory:
        assert sorted(os.listdir(directory)) == before


@pytest.fixture
def package(parties, tmp_path):
    p = tmp_path / "p.aidpkg"
    manifest = seal(parties, p)
    return p, manifest


def parquet_file(path, t):
    pq.write_table(t, path)
    return hashlib.sha256(path.read_bytes()).digest()


@pytest.mark.parametrize("piece", [1, 7, CHUNK - 1, CHUNK, CHUNK + 1, 10 * CHUNK])
def test_package_written_piece_by_piece(parties, tmp_path, piece):
    """PackageWriter takes the payload in pieces of any size (here cut across chunk
    boundaries every way), seals as it goes, and knows the finished file's digest."""
    t = table(300)
    src = tmp_path / "payload.parquet"
    payload = parquet_file(src, t) and src.read_bytes()
    p = tmp_path / "p.aidpkg"
    with PackageWriter(p, signing_key=parties.a.signing_key, sender_id=parties.a.id, recipient_id="hub",
                       recipient_public_key=parties.hub.sealing_key.public_key(), chunk_size=CHUNK,
                       now=NOW) as w:
        for i in range(0, len(payload), piece):
            assert w.write(payload[i:i + piece]) == len(payload[i:i + piece])
        assert not p.exists()  # nothing under the name before finish
        m = w.finish(dict(FIELDS), schema=t.schema, rows=t.num_rows)
    assert m["content_sha256"] == hashlib.sha256(payload).hexdigest()
    assert (w.sha256, w.size) == (hashlib.sha256(p.read_bytes()).digest(), p.stat().st_size)
    assert open_(parties, p).table.equals(t)
    with pytest.raises(ValueError):
        w.write(b"more")


def test_package_writer_left_unfinished_leaves_nothing(parties, tmp_path):
    args = dict(signing_key=parties.a.signing_key, sender_id=parties.a.id, recipient_id="hub",
                recipient_public_key=parties.hub.sealing_key.public_key(), chunk_size=CHUNK, now=NOW)
    with PackageWriter(tmp_path / "p.aidpkg", **args) as w:
        w.write(os.urandom(10 * CHUNK))
    assert os.listdir(tmp_path) == []
    with pytest.raises(RuntimeError), PackageWriter(tmp_path / "p.aidpkg", **args) as w:
        w.write(os.urandom(3 * CHUNK))
        raise RuntimeError("the encoder failed")
    assert os.listdir(tmp_path) == []
    # a manifest the writer refuses at finish: no package either
    with PackageWriter(tmp_path / "p.aidpkg", **args) as w:
        w.write(b"x")
        with pytest.raises(ValueError, match="sender"):
            w.finish({**FIELDS, "sender": "x"}, schema=table().schema, rows=1)
    assert os.listdir(tmp_path) == []


def test_a_failing_disk_write_leaves_no_package(parties, tmp_path, monkeypatch):
    import linkage.package as package_module

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(package_module, "_datasync", full)
    monkeypatch.setattr(package_module._SealWriter, "SYNC_EVERY", 4096)
    src = tmp_path / "payload.parquet"
    parquet_file(src, table(3000))
    p = tmp_path / "p.aidpkg"
    with pytest.raises(OSError, match="No space"):
        write_package(p, src, dict(FIELDS), signing_key=parties.a.signing_key, sender_id=parties.a.id,
                      recipient_id="hub", recipient_public_key=parties.hub.sealing_key.public_key(),
                      chunk_size=CHUNK, now=NOW)
    assert not p.exists() and sorted(os.listdir(tmp_path)) == ["payload.parquet"]


def chunks_of(data: bytes, header_len: int, chunk: int = CHUNK):
    body = data[header_len:]
    step = chunk + 16
    return [body[i:i + step] for i in range(0, len(body), step)]


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("suite", ["x25519", "mlkem768-x25519"])
def test_round_trip_both_suites(parties, tmp_path, suite):
    key = parties.hub.sealing_key if suite == "x25519" else parties.hub_pq
    t = table()
    p = tmp_path / "p.aidpkg"
    m = seal(parties, p, t=t, suite=suite, recipient_key=key.public_key())
    opened = open_(parties, p, key=key)
    assert opened.table.equals(t)
    assert opened.manifest == m
    assert opened.suite == suite
    assert m["sender"] == "agency-a" and m["recipient"] == "hub" and m["agency"] == "agency-a"
    assert m["direction"] == "to_hub" and m["row_count"] == 40 and len(m["package_id"]) == 32
    assert m["expires_at"] == "2026-03-31T08:00:00Z" and m["created_at"] == "2026-03-01T08:00:00Z"
    assert [c["name"] for c in m["columns"]] == ["token", "bf_name", "eh_id"]
    assert os.stat(p).st_mode & 0o777 == 0o600
    assert sorted(os.listdir(tmp_path)) == ["p.aidpkg"]


def test_results_package_from_hub_to_agency(parties, tmp_path):
    p = tmp_path / "r.aidpkg"
    t = pa.table({"token": ["ab" * 16], "rule": ["R1"]})
    m = write_package(p, t, {"schema_id": "judicial-assistance", "schema_fingerprint": FP, "direction": "to_agency",
                             "run_id": "run-1", "in_reply_to": ["00" * 16], "extensions": {"clues": 1}},
                      signing_key=parties.hub.signing_key, sender_id="hub", recipient_id="agency-a",
                      recipient_public_key=parties.a.sealing_key.public_key(), now=NOW)
    assert m["agency"] == "agency-a"
    opened = open_(parties, p, key=parties.a.sealing_key, recipient_id="agency-a")
    assert opened.table.equals(t)
    # agency B cannot open it, and agency A cannot pass it off as addressed to B
    assert_opaque(lambda: open_(parties, p, key=parties.b.sealing_key, recipient_id="agency-b"))
    assert_opaque(lambda: open_(parties, p, key=parties.a.sealing_key, recipient_id="agency-b"))


def test_parquet_file_input_is_streamed(parties, tmp_path):
    t = table(100)
    src = tmp_path / "in.parquet"
    pq.write_table(t, src)
    p = tmp_path / "p.aidpkg"
    m = seal(parties, p, t=src, chunk=1024)
    assert m["content_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert open_(parties, p).table.equals(t)


def test_empty_table_and_spool_to_disk(parties, tmp_path):
    p = tmp_path / "e.aidpkg"
    t = table(0)
    seal(parties, p, t=t)
    assert open_(parties, p).table.num_rows == 0
    big = tmp_path / "big.aidpkg"
    t = table(2000)
    seal(parties, big, t=t, chunk=4096)
    spool = tmp_path / "spool"
    spool.mkdir()
    assert open_(parties, big, spool_bytes=1024, spool_dir=spool).table.equals(t)
    assert os.listdir(spool) == []


def test_read_package_header(package):
    p, _ = package
    h = read_package_header(p)
    assert h["suite"] == "x25519" and h["chunk_size"] == CHUNK and h["version"] == 2
    assert h["header_bytes"] == 18 + 80 and h["file_bytes"] == p.stat().st_size
    assert h["chunks"] == len(chunks_of(p.read_bytes(), 98))
    assert not any("key" in k and isinstance(v, bytes) for k, v in h.items())
    garbage = p.with_name("garbage.aidpkg")
    garbage.write_bytes(b"PK\x03\x04 not a package at all")
    assert_opaque(lambda: read_package_header(garbage))


# ---------------------------------------------------------------- tampering


def test_flipped_byte_in_every_header_position(parties, package):
    p, _ = package
    data = p.read_bytes()
    header_len = FIXED_HEADER_BYTES + 80
    for i in range(header_len):
        bad = bytearray(data)
        bad[i] ^= 0x01
        p.write_bytes(bytes(bad))
        assert_opaque(lambda: open_(parties, p), p.parent)
    p.write_bytes(data)
    open_(parties, p)


def test_flipped_byte_in_every_chunk_and_tag(parties, package):
    p, _ = package
    data = p.read_bytes()
    header_len = 98
    chunks = chunks_of(data, header_len)
    assert len(chunks) >= 4
    offset = header_len
    for c in chunks:
        for j in (0, len(c) // 2, len(c) - 16, len(c) - 1):  # first byte, middle, first and last tag byte
            bad = bytearray(data)
            bad[offset + j] ^= 0x80
            p.write_bytes(bytes(bad))
            assert_opaque(lambda: open_(parties, p), p.parent)
        offset += len(c)


def test_truncation_anywhere_including_chunk_boundaries(parties, package):
    p, _ = package
    data = p.read_bytes()
    header_len = 98
    boundaries = [header_len + k * (CHUNK + 16) for k in range(len(chunks_of(data, header_len)))]
    cuts = {0, 5, 17, 18, 50, header_len - 1, header_len, header_len + 1, len(data) - 1, len(data) - 16,
            len(data) - 17, *boundaries, *(b + 16 for b in boundaries), *(b - 1 for b in boundaries[1:])}
    for cut in sorted(c for c in cuts if c < len(data)):
        p.write_bytes(data[:cut])
        assert_opaque(lambda: open_(parties, p), p.parent)


def test_reordered_duplicated_dropped_and_appended_chunks(parties, package):
    p, _ = package
    data = p.read_bytes()
    header, chunks = data[:98], chunks_of(data, 98)
    variants = [
        chunks[1:2] + chunks[0:1] + chunks[2:],          # swap first two
        chunks[:-2] + chunks[-1:] + chunks[-2:-1],       # swap last two (last is short)
        chunks[:2] + chunks[1:],                         # duplicate one
        chunks[:1] + chunks[2:],                         # drop one in the middle
        chunks[:-1],                                     # drop the final chunk exactly
        chunks + chunks[-1:],                            # append a copy of the final chunk
        list(reversed(chunks)),
    ]
    for v in variants:
        p.write_bytes(header + b"".join(v))
        assert_opaque(lambda: open_(parties, p), p.parent)


def test_chunks_spliced_from_another_package(parties, tmp_path):
    p1, p2 = tmp_path / "1.aidpkg", tmp_path / "2.aidpkg"
    seal(parties, p1)
    seal(parties, p2)
    d1, d2 = p1.read_bytes(), p2.read_bytes()
    c1, c2 = chunks_of(d1, 98), chunks_of(d2, 98)
    p1.write_bytes(d1[:98] + c1[0] + c2[1] + b"".join(c1[2:]))
    assert_opaque(lambda: open_(parties, p1))
    p1.write_bytes(d2[:98] + b"".join(c1))  # header of one, body of the other
    assert_opaque(lambda: open_(parties, p1))


def test_package_for_another_hub_or_wrong_recipient(parties, tmp_path):
    p = tmp_path / "p.aidpkg"
    seal(parties, p, recipient_id="hub-b", recipient_key=parties.other_hub.sealing_key.public_key())
    # our hub cannot decrypt it
    assert_opaque(lambda: open_(parties, p))
    # hub-b can, under its own roster
    open_(parties, p, key=parties.other_hub.sealing_key, roster=parties.other_roster, recipient_id="hub-b")
    # sealed to our key but naming hub-b as recipient: refused by us
    q = tmp_path / "q.aidpkg"
    seal(parties, q, recipient_id="hub-b")
    assert_opaque(lambda: open_(parties, q))
    # a key of the other suite, or of another party, cannot open it
    assert_opaque(lambda: open_(parties, q, key=parties.hub_pq))
    assert_opaque(lambda: open_(parties, q, key=parties.a.sealing_key))


def _decrypt(parties, path, key=None):
    """Attacker's view once it holds the recipient key: header, content key, plaintext parts."""
    data = path.read_bytes()
    f = io.BytesIO(data)
    header = _read_header(f)
    spec = _hpke.SUITES[header.suite]
    ck = _hpke.open_content_key(spec, (key or parties.hub.sealing_key).hpke_key(), header.sealed_key,
                                hpke_info(header.fixed))
    k, prefix = _stream.derive_stream_key(ck)
    plain = b"".join(_stream.decrypt_stream(k, prefix, header.raw, f, header.chunk_size))
    (mlen,) = struct.unpack(">I", plain[-4:])
    cut = len(plain) - 4 - SIGNATURE_BYTES - mlen
    manifest, sig, payload = plain[cut:cut + mlen], plain[cut + mlen:-4], plain[:cut]
    assert len(sig) == SIGNATURE_BYTES
    return header, ck, manifest, sig, payload


def _reseal(path, header_raw, content_key, manifest, sig, payload, chunk=CHUNK):
    k, prefix = _stream.derive_stream_key(content_key)
    body = b"".join(_stream.encrypt_stream(k, prefix, header_raw, [payload, body_trailer(manifest, sig)], chunk))
    path.write_bytes(header_raw + body)


def test_surreptitious_forwarding_to_another_hub_fails(parties, package, tmp_path):
    """Our hub decrypts a genuine package and re-seals it, unchanged, to hub-b."""
    p, _ = package
    _, _, manifest, sig, payload = _decrypt(parties, p)
    spec = _hpke.SUITES["x25519"]
    ck = os.urandom(32)
    fixed = p.read_bytes()[:FIXED_HEADER_BYTES]
    sealed = _hpke.seal_content_key(spec, parties.other_hub.sealing_key.public_key().hpke_key(), ck, hpke_info(fixed))
    fwd = tmp_path / "fwd.aidpkg"
    _reseal(fwd, encode_header("x25519", CHUNK, sealed), ck, manifest, sig, payload)
    assert_opaque(lambda: open_(parties, fwd, key=parties.other_hub.sealing_key, roster=parties.other_roster,
                                recipient_id="hub-b"))
    # and with the recipient in the manifest rewritten too, the signature still fails
    m = canonical_json({**json.loads(manifest), "recipient": "hub-b"})
    _reseal(fwd, encode_header("x25519", CHUNK, sealed), ck, m, sig, payload)
    assert_opaque(lambda: open_(parties, fwd, key=parties.other_hub.sealing_key, roster=parties.other_roster,
                                recipient_id="hub-b"))


def test_manifest_edited_after_signing(parties, package):
    """The recipient (who knows the content key) edits the manifest and re-encrypts validly."""
    p, _ = package
    header, ck, manifest, sig, payload = _decrypt(parties, p)
    _reseal(p, header.raw, ck, manifest, sig, payload)
    open_(parties, p)  # the re-encryption itself is valid
    for edit in ({"counts": {"rows_read": 1, "encoded": 1, "flagged": 0, "rejected": 0}},
                 {"dataset_kind": "court_enforcement"}, {"expires_at": "2030-01-01T00:00:00Z"},
                 {"package_id": "ff" * 16}):
        edited = canonical_json({**json.loads(manifest), **edit})
        _reseal(p, header.raw, ck, edited, sig, payload)
        assert_opaque(lambda: open_(parties, p), p.parent)
    # payload swapped, manifest and signature kept
    _reseal(p, header.raw, ck, manifest, sig, payload[:-1] + bytes([payload[-1] ^ 1]))
    assert_opaque(lambda: open_(parties, p))
    # non-canonical manifest bytes (same JSON, different spelling) are refused too
    _reseal(p, header.raw, ck, json.dumps(json.loads(manifest), indent=1).encode(), sig, payload)
    assert_opaque(lambda: open_(parties, p))
    # a signature that is valid but made over the forged manifest by an outsider key
    forged = canonical_json({**json.loads(manifest), "dataset": "x"})
    digest = hashlib.sha256(payload).digest()
    _reseal(p, header.raw, ck, forged, parties.outsider.signing_key.sign(signature_message(header.raw, forged, digest)),
            payload)
    assert_opaque(lambda: open_(parties, p))


def test_garbage_body_layouts(parties, package):
    p, _ = package
    header, ck, _manifest, sig, payload = _decrypt(parties, p)
    k, prefix = _stream.derive_stream_key(ck)
    for plain in (b"", b"\x00\x00", b"x" * 100 + b"\xff\xff\xff\xff", b"{}" + struct.pack(">I", 10),
                  payload + sig + struct.pack(">I", 0), payload[:-1] + body_trailer(_manifest, sig),
                  payload + body_trailer(b"not json", sig), payload + body_trailer(b"[1,2]", sig)):
        body = b"".join(_stream.encrypt_stream(k, prefix, header.raw, [plain], CHUNK))
        p.write_bytes(header.raw + body)
        assert_opaque(lambda: open_(parties, p))


def test_signer_not_on_roster_or_impersonated(parties, tmp_path):
    p = tmp_path / "p.aidpkg"
    seal(parties, p, sender=parties.outsider)
    assert_opaque(lambda: open_(parties, p))
    # an outsider claiming to be agency-a
    seal(parties, p, sender=parties.outsider, sender_id="agency-a", force=True)
    assert_opaque(lambda: open_(parties, p))
    # agency-b's key signing as agency-a
    seal(parties, p, sender=parties.b, sender_id="agency-a", force=True)
    assert_opaque(lambda: open_(parties, p))


def test_agency_field_must_name_the_sender(parties, package):
    """agency-a signs (validly) a manifest claiming the data is agency-b's."""
    p, _ = package
    header, ck, manifest, _sig, payload = _decrypt(parties, p)
    forged = canonical_json({**json.loads(manifest), "agency": "agency-b"})
    sig = parties.a.signing_key.sign(signature_message(header.raw, forged, hashlib.sha256(payload).digest()))
    _reseal(p, header.raw, ck, forged, sig, payload)
    assert_opaque(lambda: open_(parties, p))


def test_direction_must_match_roles(parties, tmp_path):
    p = tmp_path / "p.aidpkg"
    # an agency sending "results" to another agency
    write_package(p, table(), {"schema_id": "judicial-assistance", "schema_fingerprint": FP, "direction": "to_agency"},
                  signing_key=parties.a.signing_key, sender_id="agency-a", recipient_id="agency-b",
                  recipient_public_key=parties.b.sealing_key.public_key(), now=NOW)
    assert_opaque(lambda: open_(parties, p, key=parties.b.sealing_key, recipient_id="agency-b"))
    # the hub posing as an agency sending to itself
    q = tmp_path / "q.aidpkg"
    write_package(q, table(), dict(FIELDS), signing_key=parties.hub.signing_key, sender_id="hub", recipient_id="hub",
                  recipient_public_key=parties.hub.sealing_key.public_key(), now=NOW)
    assert_opaque(lambda: open_(parties, q))


# ---------------------------------------------------------------- authentic but refused


def test_replayed_package_id(parties, package):
    p, m = package
    with pytest.raises(ReplayError) as ei:
        open_(parties, p, seen_package_ids={m["package_id"]})
    assert ei.value.exit_code == 18 and m["package_id"] in str(ei.value)
    open_(parties, p, seen_package_ids={"00" * 16})


def test_expired_and_future_dated_packages(parties, package):
    p, _ = package
    with pytest.raises(ReplayError, match="expired"):
        open_(parties, p, now=NOW + timedelta(days=30))
    open_(parties, p, now=NOW + timedelta(days=29, hours=23))
    with pytest.raises(ReplayError, match="future"):
        open_(parties, p, now=NOW - timedelta(days=1, seconds=1))
    open_(parties, p, now=NOW - timedelta(hours=23))  # a clock a little behind is tolerated


def test_expired_roster(parties, package):
    p, _ = package
    with pytest.raises(RosterError) as ei:
        open_(parties, p, now=NOW + timedelta(days=400))
    assert ei.value.exit_code == 15


def test_dataset_kind_not_allowed_and_fingerprint_mismatch(parties, tmp_path):
    p = tmp_path / "p.aidpkg"
    seal(parties, p, fields={**FIELDS, "dataset_kind": "court_enforcement"})
    with pytest.raises(RosterError, match="does not allow"):
        open_(parties, p)
    q = tmp_path / "q.aidpkg"
    seal(parties, q, fields={**FIELDS, "schema_fingerprint": "ee" * 32})
    with pytest.raises(FingerprintMismatchError):
        open_(parties, q)


# ---------------------------------------------------------------- writing


def test_existing_output_refused_unless_force(parties, package):
    p, m = package
    before = p.read_bytes()
    with pytest.raises(OutputExistsError) as ei:
        seal(parties, p)
    assert ei.value.exit_code == 16
    assert p.read_bytes() == before
    m2 = seal(parties, p, force=True)
    assert m2["package_id"] != m["package_id"] and p.read_bytes() != before


def test_failure_mid_write_leaves_nothing(parties, tmp_path, monkeypatch):
    real = _stream.StreamSealer.seal
    calls = []

    def broken(self, plain, last=False):
        calls.append(last)
        if len(calls) > 2:
            raise OSError("disk full")
        return real(self, plain, last)

    monkeypatch.setattr(_stream.StreamSealer, "seal", broken)
    with pytest.raises(OSError):
        seal(parties, tmp_path / "p.aidpkg")
    assert os.listdir(tmp_path) == []


def test_manifest_misuse(parties, tmp_path):
    p = tmp_path / "p.aidpkg"
    with pytest.raises(ValueError, match="sender"):
        seal(parties, p, fields={**FIELDS, "sender": "x"})
    with pytest.raises(ValueError, match="package_id"):
        seal(parties, p, fields={**FIELDS, "package_id": "XYZ"})
    with pytest.raises(ValueError, match="agency"):
        seal(parties, p, fields={**FIELDS, "agency": "agency-b"})
    with pytest.raises(ConfigError) as ei:
        seal(parties, p, fields={k: v for k, v in FIELDS.items() if k not in ("counts", "dataset_kind")})
    assert "counts" in str(ei.value) and "dataset_kind" in str(ei.value)
    with pytest.raises(TypeError):
        seal(parties, p, recipient_key=parties.hub.sealing_key)  # a private key
    with pytest.raises(TypeError):
        seal(parties, p, suite="mlkem768-x25519")  # x25519 key for the hybrid suite
    with pytest.raises(ValueError):
        seal(parties, p, suite="rsa")
    with pytest.raises(ValueError):
        seal(parties, p, chunk=10)
    with pytest.raises(TypeError):
        open_(parties, p, key=parties.a.signing_key)
    assert os.listdir(tmp_path) == []


def test_caller_package_id_and_rng(parties, tmp_path):
    m = seal(parties, tmp_path / "p.aidpkg", fields={**FIELDS, "package_id": "ab" * 16})
    assert m["package_id"] == "ab" * 16
    m = seal(parties, tmp_path / "q.aidpkg", rng=lambda n: b"\x07" * n)
    assert m["package_id"] == "07" * 16


# ---------------------------------------------------------------- STREAM edge cases


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 128, 129, 640])
def test_stream_lengths_and_boundary_truncation(n):
    key, prefix, aad, size = os.urandom(32), os.urandom(7), b"h", 64
    plain = os.urandom(n)
    sealed = b"".join(_stream.encrypt_stream(key, prefix, aad, [plain], size))
    assert len(sealed) == n + 16 * max(1, -(-n // size))
    assert b"".join(_stream.decrypt_stream(key, prefix, aad, io.BytesIO(sealed), size)) == plain
    for cut in range(0, len(sealed), size + 16):
        if cut < len(sealed):
            with pytest.raises(IntegrityError):
                b"".join(_stream.decrypt_stream(key, prefix, aad, io.BytesIO(sealed[:cut]), size))
    with pytest.raises(IntegrityError):
        b"".join(_stream.decrypt_stream(key, prefix, b"other header", io.BytesIO(sealed), size))
