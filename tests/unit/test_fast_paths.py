"""The encode pipeline's fast paths agree with the slow ones they stand in for.

* the generated pinyin table (linkage/pinyin_table.txt) with pypinyin itself,
  on every character it covers;
* the run caches (linkage._bits.memo: permutations across chunks, address
  normalisation across chunks) with encoding / normalising each chunk afresh;
* a pool run (two processes) with a one-process run, end to end;
* the streaming XLSX reader with openpyxl.

All data are synthetic (the project's ``synthetic`` package or invented literals).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from linkage import _cjk
from linkage.encode import EncodeCache, encode_records
from linkage.keys import LinkageSecret
from linkage.normalise import ValueMemo, memo_scope, normalise_records
from linkage.schema import load_schema, schema_from_document
from linkage.versions import component_versions

ROOT = Path(__file__).resolve().parents[2]
SECRET = LinkageSecret(bytes(range(32)))


# -- pinyin table --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def table() -> _cjk.PinyinTable:
    return _cjk.read_pinyin_table()


def test_table_is_made_from_the_installed_pypinyin(table):
    # the fingerprint names the installed pypinyin; the table must be that version's
    assert table.pypinyin_version == _cjk.pinyin_version()
    assert component_versions()["pinyin_table"] == f"pypinyin-{table.pypinyin_version}"
    assert _cjk._pinyin_table() is not None, "the shipped table is not in use"


def test_table_covers_every_han_character_the_normalisers_look_up(table):
    assert table.ranges == _cjk.class_ranges(_cjk.HAN_CLASS)
    assert all(table.covers(ord(ch)) for ch in "〇㐀一鿿豈𠀀")


def test_table_agrees_with_pypinyin_on_every_character_it_covers(table):
    differ = []
    for lo, hi in table.ranges:
        for cp in range(lo, hi + 1):
            ch = chr(cp)
            if table.readings.get(ch, "") != _cjk.pypinyin_reading(ch):
                differ.append(f"U+{cp:04X}")
    assert not differ, f"{len(differ)} characters differ, first {differ[:10]}: run tools/make_pinyin_table.py"
    assert len(table.readings) > 40_000


def test_table_syllables_are_pypinyins(table):
    assert table.syllables == _cjk.pypinyin_syllables()
    assert _cjk.pinyin_syllables() == table.syllables


def test_char_pinyin_reads_the_table_for_covered_and_pypinyin_for_other_characters(table, monkeypatch):
    asked: list[str] = []
    real = _cjk.pypinyin_reading

    def spy(ch: str) -> str:
        asked.append(ch)
        return real(ch)

    monkeypatch.setattr(_cjk, "pypinyin_reading", spy)
    monkeypatch.setattr(_cjk, "CHAR_PINYIN", {})
    _cjk._pinyin_table.cache_clear()
    try:
        assert _cjk.char_pinyin("张") == "zhang"
        assert _cjk.char_pinyin("\U00033479") == real("\U00033479")  # covered: from the table either way
        assert asked == []
        _cjk.char_pinyin("\U00034000")  # outside HAN_CLASS: pypinyin is asked
        assert asked == ["\U00034000"]
    finally:
        _cjk._pinyin_table.cache_clear()


def test_a_table_from_another_pypinyin_version_is_not_used(tmp_path, monkeypatch):
    text = _cjk.PINYIN_TABLE_FILE.read_text("utf-8")
    mark = f"pypinyin\t{_cjk.pinyin_version()}\n"
    assert mark in text
    old = tmp_path / "pinyin_table.txt"
    old.write_text(text.replace(mark, "pypinyin\t0.0.1\n"), "utf-8")
    monkeypatch.setattr(_cjk, "PINYIN_TABLE_FILE", old)
    _cjk._pinyin_table.cache_clear()
    try:
        assert _cjk.read_pinyin_table().pypinyin_version == "0.0.1"
        assert _cjk._pinyin_table() is None
    finally:
        _cjk._pinyin_table.cache_clear()


def test_encoding_a_name_does_not_import_pypinyin():
    code = ("import sys, pandas as pd\n"
            "from linkage.normalise import normalise_column\n"
            "v = normalise_column('pinyin', pd.Series(['测试', 'ceshi', '样例名'])).values.tolist()\n"
            "assert v == ['ce shi', 'ce shi', 'yang li ming'], v\n"
            "assert 'pypinyin' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# -- run caches: the same output chunk by chunk ---------------------------------------------------


@pytest.fixture(scope="module")
def export_chunks(tmp_path_factory):
    """A synthetic 低保 export (3,000 people) read in chunks of 500 rows, mapped."""
    from agency_kit.mapping import apply_mapping, mapping_from_document
    from agency_kit.readers import iter_chunks
    from benchmarks._agency_e2e import MAPPING, write_export

    path = tmp_path_factory.mktemp("export") / "dibao.csv"
    write_export(path, 3000, seed=11)
    schema = load_schema("judicial-assistance")
    mapping = mapping_from_document(MAPPING, schema)
    chunks = list(iter_chunks(path, columns_needed=mapping.source_columns, chunk_rows=500))
    return [apply_mapping(c, mapping)[0] for c in chunks]


def _schemas():
    doc = json.loads((ROOT / "schemas" / "judicial-assistance.linkage.json").read_text("utf-8"))
    variant = json.loads(json.dumps(doc))
    # a salted CLK, an unsalted fallback, bits_per_feature on a salted field: every cache path
    variant["clk"]["hardening"] = {"permute": True, "salt": {"field": "birth_year", "on_missing": "unsalted"}}
    for f in variant["fields"]:
        if f["name"] == "name_pinyin":
            f["filter"]["bits_per_feature"] = f["filter"].pop("bits_per_token") * 3
    return [load_schema("judicial-assistance"), schema_from_document(variant)]


def test_encode_cache_gives_the_same_encodings_chunk_by_chunk(export_chunks):
    for schema in _schemas():
        cache = EncodeCache()
        rng_seed = 5
        for fields in export_chunks:
            normalised, _ = normalise_records(fields, schema)
            cached = encode_records(normalised, schema, SECRET, np.random.default_rng(rng_seed), cache=cache)
            fresh = encode_records(normalised, schema, SECRET, np.random.default_rng(rng_seed))
            assert cached.equals(fresh)
        assert cache._derived  # the permutations were derived once and served the later chunks
        stores = [v for k, v in cache._derived.items() if k[0] == "positions"]
        assert sum(s.served for s in stores) > 0 and sum(s.hashed for s in stores) > 0


def test_position_store_serves_what_hashing_gives_and_turns_itself_off():
    from linkage._bits import hashing
    from linkage._bits.memo import PositionStore
    from linkage.encode import _messages

    key, length = bytes(range(32)), 1024
    store = PositionStore(max_tokens=50)
    rng = np.random.default_rng(1)
    for call in range(8):
        strings = [f"t{i}" for i in rng.choice(40, 30, replace=False)]
        salts = None if call == 3 else [str(1950 + y) for y in rng.choice(10, 4, replace=False)]
        n = 80
        msg_tok = rng.integers(0, 30, n)
        msg_salt = None if salts is None else rng.integers(0, 5, n)  # 0: unsalted
        kmax = np.full(n, 8, dtype=np.int64) if call % 2 else rng.integers(1, 30, n)  # k grows too
        messages = _messages(strings, msg_tok, salts, msg_salt)
        want = hashing.token_positions(key, messages, kmax, length)
        got = store.gather(strings, msg_tok, salts, msg_salt, kmax,
                           lambda idx: hashing.token_positions(key, messages.take(idx), kmax[idx], length))
        assert got is not None
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), call
    assert store.served > 0 and store.hashed > 0
    many = [f"u{i}" for i in range(60)]  # past max_tokens: the store empties itself and says so
    assert store.gather(many, np.arange(60), None, None, np.full(60, 4), lambda idx: None) is None
    assert not store.enabled


def test_cache_rejects_another_type(export_chunks):
    schema = load_schema("judicial-assistance")
    normalised, _ = normalise_records(export_chunks[0], schema)
    with pytest.raises(TypeError):
        encode_records(normalised, schema, SECRET, cache={})


@pytest.mark.parametrize("max_entries", [100_000, 50])
def test_value_memo_gives_the_same_normalised_frames(export_chunks, max_entries):
    schema = load_schema("judicial-assistance")
    memo = ValueMemo(max_entries=max_entries)
    for fields in export_chunks:
        with memo_scope(memo):
            got, got_problems = normalise_records(fields, schema)
        want, want_problems = normalise_records(fields, schema)
        pd.testing.assert_frame_equal(got, want)
        pd.testing.assert_frame_equal(got_problems, want_problems)
    assert 0 < memo.entries <= max_entries


def test_value_memo_keys_by_type_and_argument():
    memo = ValueMemo()
    seen = []

    def fn(u):
        seen.extend(u.tolist())
        return [np.array([f"{type(v).__name__}:{v}" for v in u], dtype=object)]

    u = np.array(["1", 1, 1.0, None], dtype=object)
    assert memo.apply(("k", 1), u, fn)[0].tolist() == ["str:1", "int:1", "float:1.0", "NoneType:None"]
    assert memo.apply(("k", 1), u, fn)[0].tolist() == ["str:1", "int:1", "float:1.0", "NoneType:None"]
    assert seen.count("1") == 1 and seen.count(1) == 4  # only str values are kept (1 == 1.0 == True)
    memo.apply(("k", 2), np.array(["1"], dtype=object), fn)
    assert seen.count("1") == 2  # another argument, another entry


# -- the whole run: pool scheduling and caches change nothing --------------------------------------


def test_a_pool_run_encodes_exactly_as_one_process(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from agency_kit import encode as agency_encode
    from agency_kit.cli import cli
    from agency_kit.vault import open_vault, vault_key
    from benchmarks._agency_e2e import AGENCY
    from linkage.keyfile import read_identity_file
    from linkage.package import open_package
    from linkage.roster import load_roster
    from tests.support import PASSPHRASE, dibao_encode_inputs

    fed, export, mapping = dibao_encode_inputs(tmp_path, 4500, seed=3)
    monkeypatch.setenv("AIDLINK_PASSPHRASE", PASSPHRASE)
    hub = read_identity_file(fed.hub_key, PASSPHRASE, role="hub")
    roster = load_roster(fed.roster)
    tables, vaults = [], []
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}" / "dibao.aidpkg"
        res = CliRunner().invoke(cli, [
            "encode", "--input", str(export), "--mapping", str(mapping), "--secret", str(fed.secret),
            "--identity", str(fed.identities[AGENCY]), "--roster", str(fed.roster), "--out", str(out),
            "--workers", workers, "--chunk-rows", "1000", "--reference-date", "2024-06-30", "--json"])
        assert res.exit_code == 0, res.output
        assert agency_encode._WORKER == {}  # the run's secret and caches are gone with it
        tables.append(open_package(out, recipient_private_key=hub.sealing_key, roster=roster,
                                   recipient_id="hub").table)
        key = vault_key(read_identity_file(fed.identities[AGENCY], PASSPHRASE, role="agency")
                        .signing_key.private_bytes_raw())
        vaults.append(open_vault(out.with_name("dibao.vault"), key=key))
    one, two = tables
    assert one.num_rows == two.num_rows == 4500
    assert one.drop_columns(["token"]).equals(two.drop_columns(["token"]))
    assert not set(one["token"].to_pylist()) & set(two["token"].to_pylist())  # fresh tokens every run
    for table, vault in zip(tables, vaults, strict=True):
        found = vault.lookup(table["token"].to_pylist())
        assert found["row_number"].tolist() == list(range(2, 4502))  # token i is file row i + 2, in order
    assert vaults[0].lookup(one["token"].to_pylist())["row_key"].tolist() == \
        vaults[1].lookup(two["token"].to_pylist())["row_key"].tolist()


# -- the streaming XLSX reader ---------------------------------------------------------------------


def _workbook(path: Path) -> Path:
    import openpyxl
    from openpyxl.cell.rich_text import CellRichText, TextBlock
    from openpyxl.cell.text import InlineFont

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "名册"
    ws.append(["序号", "姓名", "出生日期", "金额", "备注", "登记时间", "是否", "公式"])
    ws.append([1, "测试甲", dt.date(1990, 3, 7), 12000, "样例", dt.datetime(2024, 5, 6, 7, 8, 9), True, "=A2+1"])
    ws.append([2.0, CellRichText(["测试", TextBlock(InlineFont(b=True), "乙")]), "1990-03-07", 1.5, None,
               dt.time(7, 8, 9), False, "=A3*2"])
    ws.append([None] * 8)
    ws.cell(row=6, column=2, value="测试丙")  # row 5 missing from the file, row 6 short
    ws.cell(row=6, column=3, value=dt.datetime(1990, 3, 7))
    ws.cell(row=7, column=1, value=12345678901234567)
    ws.cell(row=7, column=4, value=-0.25)
    ws.cell(row=7, column=5, value="#N/A").data_type = "e"
    ws.cell(row=7, column=10, value="beyond the header")
    ws.cell(row=8, column=2, value="  ")
    wb.save(path)
    return path


def _chunks(path: Path, needed, fast: bool, chunk_rows: int = 3):
    from agency_kit.readers import _xlsx_chunks

    return [(c.first_row, c.frame, c.blank_rows.tolist(), {k: v.tolist() for k, v in c.numeric_cells.items()})
            for c in _xlsx_chunks(path, needed, None, chunk_rows, 1 << 20, fast=fast)]


def _same(a, b):
    assert len(a) == len(b)
    for (r1, f1, b1, n1), (r2, f2, b2, n2) in zip(a, b, strict=True):
        assert (r1, b1, n1) == (r2, b2, n2)
        pd.testing.assert_frame_equal(f1, f2)


def test_streaming_xlsx_reader_agrees_with_openpyxl(tmp_path):
    p = _workbook(tmp_path / "book.xlsx")
    needed = ["序号", "姓名", "出生日期", "金额", "备注", "登记时间", "是否"]
    fast, slow = _chunks(p, needed, True), _chunks(p, needed, False)
    _same(fast, slow)
    frame = pd.concat([pd.DataFrame(f.to_dict("list")) for _, f, _, _ in fast], ignore_index=True)
    assert frame["姓名"].tolist()[:2] == ["测试甲", "测试乙"]  # a rich-text cell is its plain text
    assert frame["登记时间"].tolist()[:2] == ["2024-05-06T07:08:09", "07:08:09"]
    assert frame["备注"].tolist()[5] == "#N/A"


def test_streaming_xlsx_reader_agrees_without_cell_references(tmp_path):
    import re
    import zipfile

    p = _workbook(tmp_path / "book.xlsx")
    bare = tmp_path / "bare.xlsx"
    with zipfile.ZipFile(p) as src, zipfile.ZipFile(bare, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.startswith("xl/worksheets/sheet"):
                # rows 1-3 lose their cells' r="A1" references (cells then count from 1)
                text = data.decode("utf-8")
                text = re.sub(r'(<c) r="[A-Z]+[1-3]"', r"\1", text)
                data = text.encode("utf-8")
            dst.writestr(item, data)
    needed = ["序号", "姓名", "金额"]
    _same(_chunks(bare, needed, True), _chunks(bare, needed, False))


def test_streaming_xlsx_reader_refuses_a_formula_as_openpyxl_did(tmp_path):
    from agency_kit.readers import FormulaCellError

    p = _workbook(tmp_path / "book.xlsx")
    errors = []
    for fast in (True, False):
        with pytest.raises(FormulaCellError) as ei:
            _chunks(p, ["姓名", "公式"], fast)
        errors.append(str(ei.value))
    assert errors[0] == errors[1] and "H2" in errors[0]


# -- the CSV reader's bounded read-ahead -----------------------------------------------------------


def test_csv_read_ahead_is_bounded_and_an_abandoned_reader_exits_cleanly(tmp_path):
    path = tmp_path / "big.csv"
    n = 600_000  # ~25 MB: several 4 MiB blocks
    ids = np.char.zfill(np.arange(n).astype(str), 18)
    lines = np.char.add(np.char.add(np.arange(n).astype(str), ",测试样例名,"), ids)
    path.write_text("序号,姓名,身份证号\n" + "\n".join(lines.tolist()) + "\n", encoding="utf-8")
    code = f"""
import sys, time
import agency_kit.readers as R
read = [0]
inner = R._BlockStream.readinto
def counting(self, b):
    got = inner(self, b)
    read[0] += got
    return got
R._BlockStream.readinto = counting
chunks = R.iter_chunks({str(path)!r}, columns_needed=["姓名", "身份证号"], chunk_rows=1000,
                       max_cell_bytes=1 << 16)
first = next(chunks)
time.sleep(float(sys.argv[1]))  # the reader's I/O thread would read the whole file meanwhile
assert len(first) == 1000
print(read[0])
"""  # exits with the generator still open, its reader mid-file
    # A pyarrow thread that frees a Python-owned buffer once the interpreter has begun to exit aborts the
    # process ("terminate called without an active exception"): a race, seen in about 1 run in 20 before
    # the fix, so several exits are raced here at once, at different points of the read-ahead.
    delays = ["1.0", "0", "0", "0.01", "0.01", "0.1"]
    procs = [subprocess.Popen([sys.executable, "-c", code, d], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT) for d in delays]
    results = [(p.communicate(timeout=120), p.returncode) for p in procs]
    for (out, err), code_ in results:
        assert code_ == 0 and "terminate" not in err and "Fatal" not in err, err[-2000:]
    res_stdout = results[0][0][0]
    block = 4 << 20  # block size for max_cell_bytes = 64 KiB
    assert int(res_stdout) <= 4 * block < path.stat().st_size  # a few blocks, not the whole file


# -- the ID check behind ok_<field>: the problem column alone ----------------------------------------


def test_id_problems_is_parse_ids_problem_column():
    from linkage import idnumber

    values = np.array(["11010119900307001X", "110101199003070011", "11010119900307001x", "110101900307001",
                       "99010119900307001X", "110101199013070011", None, "", "abc", 110101199003070011.0,
                       "１１０１０１１９９００３０７００１X"], dtype=object)
    want = idnumber.parse_ids(values).problem.tolist()
    assert idnumber.id_problems(values).tolist() == want
    assert want.count(None) >= 1 and len(set(want)) > 2  # valid numbers and several distinct rules


def test_csv_reader_lets_go_of_what_pyarrow_reads_from_when_closed(tmp_path):
    import weakref

    path = tmp_path / "small.csv"
    path.write_text("序号,姓名\n" + "".join(f"{i},测试样例名\n" for i in range(5000)), encoding="utf-8")
    from agency_kit.readers import iter_chunks

    chunks = iter_chunks(path, columns_needed=["姓名"], chunk_rows=100)
    assert len(next(chunks)) == 100
    gate = chunks.gi_frame.f_locals["stream"]
    side = weakref.ref(gate.arrow_side)
    assert side() is not None
    chunks.close()
    # nothing a pyarrow thread could free later (under the GIL, perhaps while the interpreter exits)
    assert side() is None and gate.reader is None


def test_a_chunk_result_travels_without_its_null_columns(tmp_path):
    """A pool process's result leaves its all-null columns (the typo keys of numbers that pass
    their check) behind and they are rebuilt, typed, on arrival: the same table."""
    import pickle
    from datetime import date

    from agency_kit import encode as agency_encode
    from agency_kit.mapping import mapping_from_document
    from agency_kit.readers import iter_chunks
    from benchmarks._agency_e2e import MAPPING, write_export

    schema = load_schema("judicial-assistance")
    mapping = mapping_from_document(MAPPING, schema)
    path = tmp_path / "dibao.csv"
    write_export(path, 400, seed=3)
    chunks = list(iter_chunks(path, columns_needed=mapping.source_columns, chunk_rows=300))  # read to the end
    chunk = chunks[0]
    agency_encode._init_worker(schema, bytes(SECRET.value), mapping, date(2026, 11, 30), bytes(32))
    try:
        result = agency_encode.encode_chunk(chunk)
    finally:
        agency_encode._WORKER.clear()
    null = [n for n in result.table.column_names if result.table.column(n).null_count == result.table.num_rows]
    assert any(n.startswith("vk_") for n in null)
    sent = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    got = pickle.loads(sent)
    assert got.table.equals(result.table) and got.table.schema.equals(result.table.schema)
    assert np.array_equal(got.kept_offsets, result.kept_offsets) and got.row_key_digests == result.row_key_digests
    assert len(sent) < len(pickle.dumps(result.table.drop_columns(null))) + 100_000
