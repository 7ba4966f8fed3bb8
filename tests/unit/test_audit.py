"""linkage.audit: the entry hash (known answer), tamper detection by position and kind, signatures,
refusing to extend a damaged log, and two processes appending at once.

Everything here is synthetic: party ids, user and host names and file names are made up.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from linkage.audit import (
    GENESIS,
    SIGNATURE_LABEL,
    Actor,
    AuditRecord,
    FileRef,
    Outcome,
    append_entry,
    chain_head,
    check_appendable,
    entry_hash,
    fingerprint_file,
    format_time,
    read_entries,
    seal_entry,
    verify_log,
)
from linkage.documents import canonical_json
from linkage.errors import AuditLogError

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2024, 6, 30, 8, 15, 0, tzinfo=UTC)


def fixed_clock(start: datetime = T0, step: timedelta = timedelta(seconds=1)):
    state = {"t": start}

    def clock() -> datetime:
        state["t"] += step
        return state["t"]

    return clock


def record(i: int = 0, **over) -> AuditRecord:
    kw = dict(tool="linkage-hub", action="ingest", actor=Actor("hub", "hub", "operator01", "hub-host"),
              started=T0, inputs=[FileRef("package", f"p{i}.aidpkg", f"{i:064x}", 1000 + i)],
              outputs=[FileRef("database", "hub.duckdb", "e" * 64, 4096)],
              counts={"records_loaded": 10 + i}, refs={"package_ids": [f"{i:032x}"]}, tool_version="0.1.0")
    kw.update(over)
    return AuditRecord(**kw)


def make_log(path: Path, n: int = 5, signer=None) -> list[dict]:
    clock = fixed_clock()
    return [append_entry(path, record(i), clock=clock, signer=signer) for i in range(n)]


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def write_lines(path: Path, ls: list[bytes]) -> None:
    path.write_bytes(b"".join(ls))


def broken(path: Path, **kw):
    result = verify_log(path, **kw)
    assert not result.ok
    return result.broken.position, result.broken.kind


# ---------------------------------------------------------------- known answer


# The first entry of an agency's log with everything fixed.  The expected hash was computed once with
# linkage.audit and checked independently with `jq -cS 'del(.hash)' | tr -d '\n' | sha256sum`; the test
# recomputes it from the literal document below with hashlib and json only, as docs/formats/audit-log.md
# tells another implementation to.
KAT_HASH = "d1458fe1841fe8959fa4f9b5962612bd02c40ba33a23e4a14f609d9c3a8df012"
KAT_DOC = {
    "version": 1, "seq": 1, "time": "2024-06-30T08:15:02.125Z", "started": "2024-06-30T08:15:00.000Z",
    "tool": "agency-kit", "tool_version": "0.1.0", "action": "encode",
    "actor": {"party": "civil-affairs-bureau", "role": "agency", "user": "clerk01", "host": "pc-07"},
    "inputs": [{"role": "export", "name": "低保_2024_06.csv", "sha256": "a" * 64, "size": 123456}],
    "outputs": [{"role": "package", "name": "dibao_2024_06.aidpkg", "sha256": "b" * 64, "size": 98765}],
    "counts": {"rows_read": 260, "encoded": 260, "flagged": 1, "rejected": 0},
    "refs": {"package_id": "0123456789abcdef0123456789abcdef"},
    "outcome": {"status": "ok"}, "prev": "0" * 64,
}


def test_entry_hash_known_answer(tmp_path):
    rec = AuditRecord(tool="agency-kit", action="encode",
                      actor=Actor("civil-affairs-bureau", "agency", "clerk01", "pc-07"),
                      started=datetime(2024, 6, 30, 8, 15, 0, tzinfo=UTC),
                      inputs=[FileRef("export", "低保_2024_06.csv", "a" * 64, 123456)],
                      outputs=[FileRef("package", "dibao_2024_06.aidpkg", "b" * 64, 98765)],
                      counts={"rows_read": 260, "encoded": 260, "flagged": 1, "rejected": 0},
                      refs={"package_id": "0123456789abcdef0123456789abcdef"}, tool_version="0.1.0")
    log = tmp_path / "a.audit.jsonl"
    entry = append_entry(log, rec, clock=lambda: datetime(2024, 6, 30, 8, 15, 2, 125000, tzinfo=UTC))

    independent = hashlib.sha256(json.dumps(KAT_DOC, sort_keys=True, separators=(",", ":"),
                                            ensure_ascii=False).encode("utf-8")).hexdigest()
    assert independent == KAT_HASH
    assert entry == {**KAT_DOC, "hash": KAT_HASH}
    # the line is the canonical JSON of the whole entry: sorted keys, no spaces, UTF-8 (not \u escapes)
    line = json.dumps({**KAT_DOC, "hash": KAT_HASH}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert log.read_bytes() == line.encode("utf-8") + b"\n"
    assert "低保".encode() in log.read_bytes()
    assert chain_head(log).as_doc() == {"entries": 1, "head_hash": KAT_HASH, "last_time": "2024-06-30T08:15:02.125Z"}


def test_the_format_page_example_hashes_as_documented():
    """The example entry on docs/formats/audit-log.md carries its true hash and validates."""
    text = (ROOT / "docs" / "formats" / "audit-log.md").read_text("utf-8")
    blocks = re.findall(r"^```json schema=audit-entry\n(.*?)^```", text, re.M | re.S)
    assert blocks, "docs/formats/audit-log.md has no ```json schema=audit-entry example"
    for body in blocks:
        doc = json.loads(body)
        assert doc["hash"] == hashlib.sha256(json.dumps({k: v for k, v in doc.items() if k != "hash"},
                                                        sort_keys=True, separators=(",", ":"),
                                                        ensure_ascii=False).encode()).hexdigest()
        # signed with the test key of private bytes 00 01 .. 1f, as the page says (Ed25519 is deterministic)
        signer = ("hub", Ed25519PrivateKey.from_private_bytes(bytes(range(32)))) if "sig" in doc else None
        assert seal_entry({k: v for k, v in doc.items() if k not in ("hash", "sig")}, signer) == doc


def test_format_time_is_utc_milliseconds():
    cst = datetime(2024, 6, 30, 16, 15, 2, 999999, tzinfo=UTC).astimezone(
        __import__("datetime").timezone(timedelta(hours=8)))
    assert format_time(cst) == "2024-06-30T16:15:02.999Z"
    with pytest.raises(ValueError):
        format_time(datetime(2024, 6, 30))


def test_fingerprint_is_sha256_of_content_and_base_name_only(tmp_path):
    p = tmp_path / "sub" / "x.csv"
    p.parent.mkdir()
    p.write_bytes(b"a,b\n1,2\n" * 300_000)
    ref = fingerprint_file("export", p)
    assert ref == FileRef("export", "x.csv", hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_size)


# ---------------------------------------------------------------- a whole chain


def test_intact_chain_and_head(tmp_path):
    log = tmp_path / "hub.duckdb.audit.jsonl"
    entries = make_log(log, 5)
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0]["prev"] == GENESIS
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(entries))
    assert all(entry_hash(e) == e["hash"] for e in entries)
    result = verify_log(log)
    assert result.ok and result.head.entries == 5 and result.head.head_hash == entries[-1]["hash"]
    assert result.head.last_time == entries[-1]["time"] == "2024-06-30T08:15:05.000Z"
    assert verify_log(log, expect_head=entries[2]["hash"]).ok
    assert verify_log(log, expect_head=entries[4]["hash"].upper()).ok
    assert log.stat().st_mode & 0o777 == 0o600
    assert [pos for pos, e in read_entries(log) if e] == [1, 2, 3, 4, 5]


def test_empty_and_missing_logs(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert chain_head(empty).as_doc() == {"entries": 0, "head_hash": GENESIS, "last_time": None}
    with pytest.raises(AuditLogError) as e:
        chain_head(tmp_path / "nothing.jsonl")
    assert e.value.kind == "missing" and e.value.exit_code == 23


def test_error_outcome_is_recorded(tmp_path):
    log = tmp_path / "a.jsonl"
    e = append_entry(log, record(outcome=Outcome.failed("IntegrityError", 20)), clock=fixed_clock())
    assert e["outcome"] == {"status": "error", "error": "IntegrityError", "exit_code": 20}
    assert verify_log(log).ok


# ---------------------------------------------------------------- tampering: position and kind


@pytest.fixture
def log5(tmp_path):
    log = tmp_path / "hub.duckdb.audit.jsonl"
    return log, make_log(log, 5)


def test_edited_field(log5):
    log, entries = log5
    ls = lines(log)
    doc = json.loads(ls[2])
    doc["counts"]["records_loaded"] += 1  # still canonical, still valid: only the hash gives it away
    ls[2] = canonical_json(doc) + b"\n"
    write_lines(log, ls)
    assert broken(log) == (3, "edited")
    with pytest.raises(AuditLogError) as e:
        verify_log(log).raise_if_broken()
    assert (e.value.position, e.value.kind) == (3, "edited")
    assert "position 3" in e.value.message and "edited" in e.value.message
    # the message names position and kind, never the entry's content
    for value in ("p2.aidpkg", "operator01", "hub-host", "records_loaded", entries[2]["hash"]):
        assert value not in e.value.message
    assert verify_log(log).head.entries == 2  # the intact part


def test_edited_entry_with_recomputed_hash_breaks_the_next_link(log5):
    log, _ = log5
    ls = lines(log)
    doc = json.loads(ls[1])
    doc["counts"]["records_loaded"] = 0
    doc["hash"] = entry_hash(doc)
    ls[1] = canonical_json(doc) + b"\n"
    write_lines(log, ls)
    assert broken(log) == (3, "unlinked")


def test_removed_entry(log5):
    log, _ = log5
    ls = lines(log)
    del ls[2]
    write_lines(log, ls)
    result = verify_log(log)
    assert (result.broken.position, result.broken.kind) == (3, "removed")
    assert "entry 3 missing" in result.broken.detail


def test_removed_first_entry(log5):
    log, _ = log5
    write_lines(log, lines(log)[1:])
    assert broken(log) == (1, "removed")


def test_swapped_entries(log5):
    log, _ = log5
    ls = lines(log)
    ls[1], ls[2] = ls[2], ls[1]
    write_lines(log, ls)
    assert broken(log) == (2, "reordered")


def test_duplicated_entry(log5):
    log, _ = log5
    ls = lines(log)
    ls.insert(2, ls[1])
    write_lines(log, ls)
    assert broken(log) == (3, "duplicated")


def test_truncated_mid_line(log5):
    log, _ = log5
    data = log.read_bytes()
    log.write_bytes(data[: len(data) - 40])
    assert broken(log) == (5, "truncated")


def test_truncated_newline_only(log5):
    log, _ = log5
    log.write_bytes(log.read_bytes()[:-1])
    assert broken(log) == (5, "truncated")


def test_entries_cut_off_the_end_need_an_anchored_head(log5):
    log, entries = log5
    write_lines(log, lines(log)[:3])
    assert verify_log(log).ok  # a shorter chain is still a whole chain ...
    assert broken(log, expect_head=entries[4]["hash"]) == (4, "head_missing")  # ... unless its head was recorded


def test_forged_entry_appended_with_wrong_prev(log5):
    log, _ = log5
    forged = record(9).body(seq=6, time=T0 + timedelta(hours=1), prev=hashlib.sha256(b"not the head").hexdigest())
    forged = seal_entry(forged)
    with log.open("ab") as f:
        f.write(canonical_json(forged) + b"\n")
    assert broken(log) == (6, "unlinked")


def test_malformed_lines(log5):
    log, _ = log5
    ls = lines(log)
    for bad in (b"not json\n", b"\n", b"[1, 2]\n", b"\xff\xfe\n"):
        write_lines(log, [*ls[:3], bad, *ls[3:]])
        assert broken(log) == (4, "malformed")
    # valid content, but not canonical (spaces): refused, the line is the record
    doc = json.loads(ls[3])
    write_lines(log, [*ls[:3], json.dumps(doc).encode() + b"\n", *ls[4:]])
    assert broken(log) == (4, "malformed")
    # an unknown field, hash recomputed: the schema refuses it
    doc2 = {**doc, "note": "x"}
    doc2["hash"] = entry_hash(doc2)
    write_lines(log, [*ls[:3], canonical_json(doc2) + b"\n", *ls[4:]])
    result = verify_log(log)
    assert (result.broken.position, result.broken.kind) == (4, "malformed")
    assert "note" in result.broken.detail  # a property name is named; values never are


# ---------------------------------------------------------------- signatures


def test_signed_entries_verify_and_resist_rewriting_without_the_key(tmp_path):
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    log = tmp_path / "a.jsonl"
    entries = make_log(log, 3, signer=("hub", key))
    trusted = {"hub": [key.public_key()]}
    result = verify_log(log, signers=trusted)
    assert result.ok and result.signed == 3 and result.signatures_checked and result.signers == ("hub",)
    # the signature covers the entry without hash and sig, behind a label
    e = entries[1]
    body = {k: v for k, v in e.items() if k not in ("hash", "sig")}
    import base64
    key.public_key().verify(base64.b64decode(e["sig"]["value"]), SIGNATURE_LABEL + canonical_json(body))

    # someone with write access but not the key rewrites the last entry and recomputes its hash
    ls = lines(log)
    doc = json.loads(ls[2])
    doc["counts"]["records_loaded"] = 0
    doc["hash"] = entry_hash(doc)
    write_lines(log, [*ls[:2], canonical_json(doc) + b"\n"])
    assert verify_log(log).ok  # the bare chain cannot tell (documented limit) ...
    assert broken(log, signers=trusted) == (3, "bad_signature")  # ... the signature can

    # stripping the signature (hash recomputed) is no better
    del doc["sig"]
    doc["counts"]["records_loaded"] = 12
    doc["hash"] = entry_hash(doc)
    write_lines(log, [*ls[:2], canonical_json(doc) + b"\n"])
    assert verify_log(log, signers=trusted).signed == 2

    write_lines(log, ls)
    assert broken(log, signers={"other-party": [key.public_key()]}) == (1, "unknown_signer")
    other = Ed25519PrivateKey.generate().public_key()
    assert broken(log, signers={"hub": [other]}) == (1, "bad_signature")
    assert verify_log(log, signers={"hub": [other, key.public_key()]}).ok  # a rotated key: either will do


def test_signer_must_be_the_actor(tmp_path):
    key = Ed25519PrivateKey.generate()
    log = tmp_path / "a.jsonl"
    append_entry(log, record(), clock=fixed_clock(), signer=("someone-else", key))
    assert broken(log) == (1, "bad_signature")


# ---------------------------------------------------------------- appending


def test_append_refuses_a_damaged_end_and_writes_nothing(log5):
    log, _ = log5
    data = log.read_bytes()
    log.write_bytes(data[:-25])
    for check in (lambda: check_appendable(log), lambda: append_entry(log, record(7), clock=fixed_clock())):
        with pytest.raises(AuditLogError) as e:
            check()
        assert e.value.kind == "truncated" and "incomplete" in e.value.message
    assert log.read_bytes() == data[:-25]

    ls = data.splitlines(keepends=True)
    doc = json.loads(ls[-1])
    doc["counts"]["records_loaded"] = 99
    damaged = b"".join(ls[:-1]) + canonical_json(doc) + b"\n"
    log.write_bytes(damaged)
    with pytest.raises(AuditLogError) as e:
        append_entry(log, record(7), clock=fixed_clock())
    assert e.value.kind == "edited"
    assert log.read_bytes() == damaged


def test_check_appendable_on_new_paths(tmp_path):
    check_appendable(tmp_path / "new" / "deeper" / "log.jsonl")  # will be created
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(AuditLogError):
        check_appendable(tmp_path / "dir.jsonl")


def test_seal_refuses_what_the_verifier_would_refuse():
    body = record().body(seq=1, time=T0, prev=GENESIS)
    for bad in ({"counts": {"rows": 1.5}}, {"counts": {"rows": -1}}, {"counts": {"Rows": 1}},
                {"refs": {"run_id": "has a space"}}, {"action": "DROP TABLE"}):
        with pytest.raises(ValueError):
            seal_entry({**body, **bad})


def test_large_tail_is_found(tmp_path):
    """An entry longer than the tail-reading chunk (many package fingerprints) still chains."""
    log = tmp_path / "a.jsonl"
    clock = fixed_clock()
    many = [FileRef("package", f"p{i:04d}.aidpkg", f"{i:064x}", i) for i in range(800)]
    append_entry(log, record(inputs=many), clock=clock)
    assert log.stat().st_size > 1 << 16
    second = append_entry(log, record(1), clock=clock)
    assert second["seq"] == 2 and verify_log(log).ok


APPENDER = r"""
import sys
from datetime import UTC, datetime
from linkage.audit import Actor, AuditRecord, FileRef, append_entry
path, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    rec = AuditRecord(tool="linkage-hub", action="match", actor=Actor(who, "hub", "u", "h"),
                      started=datetime.now(UTC), counts={"i": i})
    append_entry(path, rec)
"""


def test_two_processes_appending_at_once(tmp_path):
    log = tmp_path / "shared.audit.jsonl"
    n = 60
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, str(log), who, str(n)], cwd=ROOT)
             for who in ("writer-a", "writer-b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    result = verify_log(log)
    assert result.ok and result.head.entries == 2 * n
    entries = [e for _, e in read_entries(log)]
    for who in ("writer-a", "writer-b"):  # each writer's entries all there, in its own order
        assert [e["counts"]["i"] for e in entries if e["actor"]["party"] == who] == list(range(n))


def test_files_changed_between_logged_commands_are_noted(tmp_path):
    log = tmp_path / "hub.duckdb.audit.jsonl"
    clock = fixed_clock()
    db = lambda h: [FileRef("database", "hub.duckdb", h * 64, 10)]  # noqa: E731
    append_entry(log, record(inputs=[], outputs=db("1")), clock=clock)
    append_entry(log, record(inputs=db("1"), outputs=db("2")), clock=clock)  # continuous
    append_entry(log, record(inputs=db("3"), outputs=db("4")), clock=clock)  # changed after entry 2 wrote it
    result = verify_log(log)
    assert result.ok  # a question, not a break of the chain
    assert [g.as_doc() for g in result.file_gaps] == [{"name": "hub.duckdb", "written_at": 2, "read_at": 3}]


def test_only_newline_ends_a_line(log5):
    """A carriage return inside a line does not split it: positions are the file's line numbers."""
    log, _ = log5
    ls = lines(log)
    ls[1] = ls[1][:10] + b"\r" + ls[1][10:]
    write_lines(log, ls)
    assert broken(log) == (2, "malformed")
