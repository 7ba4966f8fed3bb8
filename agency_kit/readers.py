"""Reading an agency's export: CSV (UTF-8 or GB18030), XLSX and Parquet.

``iter_chunks(path, columns_needed=...)`` streams the file in chunks of at most
``chunk_rows`` rows; each :class:`Chunk` holds only the columns the mapping
reads, as a DataFrame of ``str`` cells (``None`` for an empty cell), with the
file's own header spelling as the mapping gives it.  ``sniff(path)`` says what
a file is without reading all of it.

Row numbers
    One convention everywhere, in every message and in ``Chunk.first_row``:
    **the header is row 1 and the first data row is row 2**, as a spreadsheet
    user counts (in Excel, the row number at the left edge).  In a CSV file a
    row is one record: when a quoted cell holds a line break, the record spans
    two lines of text but is still one row.  Where a message can only locate a
    problem by its line of text (an encoding error, a malformed record) it says
    "near row N".

Cells
    Every cell is kept as text: an ID such as ``011234`` or ``...001X`` never
    becomes a number.  A cell that is empty or only whitespace (including the
    ideographic space U+3000) is ``None``; other cells are passed on exactly as
    they are (normalising is the normalisers' job).

Blank rows
    A row whose needed cells are all ``None`` is *blank*.  It is not an error:
    it stays in the frame (so that frame row ``i`` is file row
    ``first_row + i``) and its offset is listed in ``Chunk.blank_rows``; the
    encoder counts it as rejected with rule ``row.blank``.  Blank rows after
    the last non-blank row of the file are padding, not records: they are not
    yielded (a spreadsheet formatted down to row 65536 does not report 60,000
    rejects).  "Blank" looks only at the columns the mapping reads.

Numbers in spreadsheets
    Excel stores every number as a double with 15 significant digits, so an
    18-digit ID typed as a number has already lost its last digits.  XLSX
    number cells are turned into their shortest text (integral values without
    ``.0``) and their offsets are listed in ``Chunk.numeric_cells`` (also in
    ``frame.attrs["aidlink_numeric_cells"]``, so they survive being passed on
    as a bare DataFrame).  :func:`agency_kit.mapping.apply_mapping` turns a
    numeric cell in an ID column into a row problem ``cell.numeric_id`` and
    drops that cell rather than trusting it.  Parquet floating-point columns are
    listed the same way (integer columns are exact and are not).

Size limit
    A cell of a column the mapping reads that is larger than
    ``max_cell_bytes`` (UTF-8 bytes) raises CellTooLargeError naming its row
    and column.  Columns the mapping does not read are not checked -- unless a
    row is too long for the CSV parser's block (about 8 x ``max_cell_bytes``),
    in which case the offending cell is found and reported the same way.

Errors (each one line, naming the file and, where it applies, the row and the
column; never a cell's value -- column names in messages are the mapping's,
never the file's, since a file without a header row would show data there):
MissingColumnError, DuplicateHeaderError, EmptyInputError,
EncodingDetectionError, MixedEncodingError, CellTooLargeError,
SheetSelectionError, FormulaCellError, InputError.

Text encodings (CSV)
    UTF-8 (with or without a byte-order mark) and GB18030 (a superset of GBK
    and GB2312; ``gbk``, ``gb2312`` and ``cp936`` are read as GB18030).  Without
    ``encoding`` the first line holding a non-ASCII byte decides: valid UTF-8
    means UTF-8, else valid GB18030 means GB18030, else EncodingDetectionError.
    The whole file is then decoded strictly as it streams: text further on that
    is not valid in that encoding but is valid in the other one raises
    MixedEncodingError; text valid in neither raises EncodingDetectionError.
    An ``encoding`` given by the user is checked the same way, and a file given
    as GB18030 whose text is valid UTF-8 is refused (UTF-8 Chinese text also
    decodes as GB18030 -- into nonsense -- so such a mistake would otherwise
    pass silently).

Speed and memory: CSV is parsed by pyarrow's streaming reader in blocks of
about 4 MiB (more when ``max_cell_bytes`` is large), GB18030 is transcoded to
UTF-8 block by block; memory is bounded by a few blocks plus one chunk.
Measured: 2.7 s of CPU per million rows of UTF-8 and 3.3 s of GB18030 (ten
columns of Chinese text, nine read; one core) -- more than half of it is
making the Python ``str`` cells.  See
tests/unit/test_readers.py::test_reading_speed_one_million_rows.
XLSX: openpyxl opens the workbook (sheets, shared strings, number formats,
the date system) and the sheet's rows are parsed straight from its XML
(:func:`_xlsx_stream_rows`), converted exactly as openpyxl's read-only cells
would be, only for the columns the mapping reads -- measured about 10,000 rows
(seven columns) per second of CPU against 4,000-6,000 through openpyxl's cells
(tests/unit/test_fast_paths.py checks the two agree); saving a very large
sheet as CSV is still the fastest route.
"""

from __future__ import annotations

import atexit
import codecs
import contextlib
import csv
import datetime as _dt
import io
import os
import threading
import unicodedata
import weakref
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from linkage.errors import (
    CellTooLargeError,
    DuplicateHeaderError,
    EmptyInputError,
    EncodingDetectionError,
    FormulaCellError,
    InputError,
    MissingColumnError,
    MixedEncodingError,
    SheetSelectionError,
)

__all__ = [
    "HEADER_ROW",
    "NUMERIC_CELLS_ATTR",
    "Chunk",
    "SourceInfo",
    "column_letter",
    "detect_file_type",
    "iter_chunks",
    "resolve_encoding",
    "sniff",
]

HEADER_ROW = 1
"""The header's row number; data rows are numbered from ``HEADER_ROW + 1``."""

NUMERIC_CELLS_ATTR = "aidlink_numeric_cells"
"""Key in ``frame.attrs``: ``{column: offsets}`` of cells that were numbers in the source."""

FILE_TYPES = ("csv", "xlsx", "parquet")
_ENCODING_ALIASES = {
    "utf-8": "utf-8", "utf8": "utf-8", "utf-8-sig": "utf-8", "utf_8": "utf-8", "utf_8_sig": "utf-8",
    "gb18030": "gb18030", "gbk": "gb18030", "gb2312": "gb18030", "cp936": "gb18030", "gb_2312": "gb18030",
    "936": "gb18030", "ms936": "gb18030",
}
_OTHER = {"utf-8": "gb18030", "gb18030": "utf-8"}
_SAMPLE_BYTES = 1 << 20
_RAW_BLOCK = 4 << 20


# -- public data types -------------------------------------------------------------------------


class Chunk:
    """Consecutive rows of the file: frame row ``i`` is file row ``first_row + i``.

    ``blank_rows``: offsets (0-based, within ``frame``) of rows whose needed
    cells are all empty; ``numeric_cells``: column -> offsets of cells that were
    numbers in the source (XLSX, Parquet floats).

    The readers make a chunk from an Arrow table of the cells (``table=``,
    string columns in ``columns`` order) and build the pandas ``frame`` -- one
    Python ``str`` per cell, several times the table's size -- only when it is
    first asked for.  A chunk pickled before that (sent to a worker process)
    travels as the compact table, and the process that reads the file never
    holds the cells of the chunks other processes encode.
    """

    __slots__ = ("_columns", "_frame", "_table", "blank_rows", "first_row", "numeric_cells")

    def __init__(self, frame: pd.DataFrame | None, first_row: int, blank_rows: np.ndarray | None = None,
                 numeric_cells: dict[str, np.ndarray] | None = None, *, table: pa.Table | None = None,
                 columns: Sequence[str] | None = None) -> None:
        if (frame is None) == (table is None):
            raise TypeError("a Chunk is made from a frame or from a table (with its columns), not both")
        if table is not None and (columns is None or len(columns) != table.num_columns):
            raise TypeError("a Chunk made from a table needs one column name per table column")
        self._frame = frame
        self._table = table
        self._columns = None if columns is None else tuple(columns)
        self.first_row = first_row
        self.blank_rows = np.zeros(0, np.int64) if blank_rows is None else blank_rows
        self.numeric_cells = {} if numeric_cells is None else numeric_cells

    @property
    def frame(self) -> pd.DataFrame:
        """The cells as a DataFrame of ``str`` (``None`` for an empty cell), built on first use."""
        if self._frame is None:
            frame = self._table.to_pandas(deduplicate_objects=False)
            frame.columns = list(self._columns)
            if self.numeric_cells:
                frame.attrs[NUMERIC_CELLS_ATTR] = self.numeric_cells
            self._frame = frame
        return self._frame

    def __len__(self) -> int:
        return self._table.num_rows if self._table is not None else len(self._frame)

    def __getstate__(self) -> dict[str, Any]:
        state = {k: getattr(self, k) for k in self.__slots__}
        if self._table is not None:
            state["_frame"] = None  # rebuilt from the table on the other side
            # as Arrow IPC: a chunk's table is a slice of the reader's block, and pickled as
            # it is it carries the whole block (measured: 10.6 MiB for a 20,000-row chunk of
            # 2.5 MiB of cells)
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, self._table.schema) as writer:
                writer.write_table(self._table)
            state["_table"] = sink.getvalue()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state.get("_table"), pa.Buffer):
            state["_table"] = pa.ipc.open_stream(state["_table"]).read_all()
        for k, v in state.items():
            object.__setattr__(self, k, v)

    @property
    def row_numbers(self) -> np.ndarray:
        """The file row number of each frame row (header = row 1)."""
        return np.arange(self.first_row, self.first_row + len(self), dtype=np.int64)


@dataclass(frozen=True)
class SourceInfo:
    """What a file is, found cheaply (a sample of a CSV, the metadata of XLSX/Parquet)."""

    path: str
    file_type: str  # csv | xlsx | parquet
    encoding: str | None = None  # CSV: utf-8 | utf-8-sig | gb18030 (ASCII-only samples read as utf-8)
    headers: tuple[str, ...] | None = None  # None for a workbook whose sheet is not determined
    sheet_names: tuple[str, ...] = ()
    sheet: str | None = None
    rows: int | None = None  # data rows (header not counted)
    rows_exact: bool = False


# -- small helpers ------------------------------------------------------------------------------


def column_letter(index: int) -> str:
    """Spreadsheet column letters for a 0-based column index (0 -> A, 26 -> AA)."""
    s = ""
    index += 1
    while index:
        index, r = divmod(index - 1, 26)
        s = chr(65 + r) + s
    return s


def _header_key(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip().strip("\ufeff").strip()


def _is_blank_text(s: str) -> bool:
    return not s or s.isspace()


def resolve_encoding(encoding: str | None, path: str | Path = "") -> str | None:
    """The decoder family for an encoding name (``utf-8`` or ``gb18030``); None = detect."""
    if encoding is None or encoding == "" or encoding == "auto":
        return None
    fam = _ENCODING_ALIASES.get(encoding.strip().lower().replace(" ", ""))
    if fam is None:
        raise EncodingDetectionError(
            f"{path}: unsupported text encoding {encoding!r} (supported: utf-8, utf-8-sig, gb18030, gbk, gb2312)")
    return fam


def detect_file_type(path: str | Path, file_type: str | None = None) -> str:
    """csv, xlsx or parquet: from the file's first bytes, else its extension.

    A given ``file_type`` must agree with the content (a workbook renamed to
    ``.csv`` is still read as a workbook when no type is given).
    """
    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(8)
    except FileNotFoundError as e:
        raise InputError(f"{p}: file not found") from e
    except IsADirectoryError as e:
        raise InputError(f"{p}: is a directory, not a file") from e
    except OSError as e:
        raise InputError(f"{p}: cannot be read ({e.strerror or type(e).__name__})") from e
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise InputError(f"{p}: is an old Excel .xls workbook; save it as .xlsx or CSV first")
    found = "xlsx" if head.startswith(b"PK\x03\x04") else "parquet" if head.startswith(b"PAR1") else None
    if file_type is not None:
        if file_type not in FILE_TYPES:
            raise InputError(f"{p}: unknown file type {file_type!r} (csv, xlsx or parquet)")
        if found and found != file_type:
            raise InputError(f"{p}: the mapping says {file_type} but the file is {found}")
        if not found and file_type != "csv" and head:
            raise InputError(f"{p}: the mapping says {file_type} but the file is not one")
        return file_type
    if found:
        return found
    ext = p.suffix.lower()
    if ext in (".xlsx", ".xlsm", ".parquet", ".pq") and head:
        raise InputError(f"{p}: the name says {ext} but the content is not one")
    return "csv"


def _cell_too_large(path: Path, row: int, column: str, col_index: int, size: int, limit: int,
                    sheet: str | None = None) -> CellTooLargeError:
    where = f"sheet {sheet!r} " if sheet else ""
    return CellTooLargeError(
        f"{path}: {where}row {row}, column {column!r} ({column_letter(col_index)}): the cell holds "
        f"{size:,} bytes, over the {limit:,}-byte limit (rule cell.too_large)")


def _match_columns(path: Path, headers: Sequence[str], needed: Sequence[str],
                   where: str = "") -> list[int]:
    """Column index of every needed column; all missing / duplicated ones raised together."""
    exact: dict[str, list[int]] = {}
    loose: dict[str, list[int]] = {}
    for i, h in enumerate(headers):
        if h is None:
            continue
        exact.setdefault(h.strip(), []).append(i)
        loose.setdefault(_header_key(h), []).append(i)
    missing, dups, idx = [], [], []
    for name in needed:
        hits = exact.get(name.strip()) or loose.get(_header_key(name)) or []
        if not hits:
            missing.append(name)
        elif len(hits) > 1:
            dups.append((name, hits))
        else:
            idx.append(hits[0])
    if missing:
        names = ", ".join(repr(m) for m in missing)
        raise MissingColumnError(
            f"{path}: {where}no column named {names} ({len(missing)} of {len(needed)} mapped "
            f"column{'s' if len(needed) != 1 else ''} missing; the header must be row {HEADER_ROW})")
    if dups:
        parts = "; ".join(f"{n!r} in columns {', '.join(column_letter(i) for i in hits)}" for n, hits in dups)
        raise DuplicateHeaderError(f"{path}: {where}a mapped header appears more than once: {parts}; "
                                   "rename or delete the extra columns")
    return idx


# -- the common tail: pieces -> chunks ---------------------------------------------------------


class _Chunker:
    """Re-cuts pieces of rows into chunks of ``chunk_rows``; holds back trailing blank rows.

    Pieces are Arrow tables of string columns (in ``columns`` order), each with
    its blank-row mask and numeric-cell masks; a chunk is converted to pandas
    once, when it is emitted.
    """

    def __init__(self, columns: Sequence[str], chunk_rows: int) -> None:
        self.columns = list(columns)
        self.chunk_rows = chunk_rows
        self.next_row = HEADER_ROW + 1
        self.pending_blank = 0
        self.buf: list[tuple[pa.Table, np.ndarray, dict[str, np.ndarray]]] = []
        self.buffered = 0
        self.emitted = 0

    def _blank_piece(self, n: int):
        table = pa.table([pa.nulls(n, pa.string()) for _ in self.columns],
                         names=[f"c{j}" for j in range(len(self.columns))])
        return table, np.ones(n, bool), {}

    def push(self, table: pa.Table, blank: np.ndarray, numeric: dict[str, np.ndarray]) -> Iterator[Chunk]:
        n = table.num_rows
        if n == 0:
            return
        nonblank = np.flatnonzero(~blank)
        if len(nonblank) == 0:
            self.pending_blank += n
            return
        while self.pending_blank:
            k = min(self.pending_blank, self.chunk_rows)
            self.pending_blank -= k
            self._append(*self._blank_piece(k))
            yield from self._drain()
        last = int(nonblank[-1]) + 1
        if last < n:
            table, blank = table.slice(0, last), blank[:last]
            numeric = {c: m[:last] for c, m in numeric.items()}
            self.pending_blank = n - last
        self._append(table, blank, numeric)
        yield from self._drain()

    def _append(self, table, blank, numeric) -> None:
        self.buf.append((table, blank, numeric))
        self.buffered += table.num_rows

    def _drain(self, final: bool = False) -> Iterator[Chunk]:
        while self.buffered >= self.chunk_rows or (final and self.buffered):
            take = min(self.chunk_rows, self.buffered)
            tables, blanks, numerics, got = [], [], [], 0
            while got < take:
                table, blank, numeric = self.buf[0]
                need = take - got
                if table.num_rows <= need:
                    self.buf.pop(0)
                else:
                    self.buf[0] = (table.slice(need), blank[need:], {c: m[need:] for c, m in numeric.items()})
                    table, blank = table.slice(0, need), blank[:need]
                    numeric = {c: m[:need] for c, m in numeric.items()}
                tables.append(table)
                blanks.append(blank)
                numerics.append((got, numeric))
                got += table.num_rows
            self.buffered -= take
            yield self._make(tables, blanks, numerics, take)

    def _make(self, tables, blanks, numerics, n) -> Chunk:
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        table = table.combine_chunks()  # one buffer per column: compact to keep and to pickle
        blank = np.concatenate(blanks) if len(blanks) > 1 else blanks[0]
        numeric_cells: dict[str, np.ndarray] = {}
        for col in self.columns:
            parts = [np.flatnonzero(m[col]) + off for off, m in numerics if col in m and m[col].any()]
            if parts:
                numeric_cells[col] = np.concatenate(parts).astype(np.int64)
        chunk = Chunk(None, self.next_row, np.flatnonzero(blank).astype(np.int64), numeric_cells,
                      table=table, columns=self.columns)
        self.next_row += n
        self.emitted += n
        return chunk

    def finish(self) -> Iterator[Chunk]:
        yield from self._drain(final=True)
        self.pending_blank = 0


def _finish_table(path: Path, table: pa.Table, first_row: int, names: Sequence[str], indices: Sequence[int],
                  max_cell_bytes: int, sheet: str | None = None) -> tuple[pa.Table, np.ndarray]:
    """Whitespace-only -> null, the size limit, the blank-row mask (columns renamed c0..cN)."""
    cols = []
    blank = None
    for j, name in enumerate(names):
        col = table.column(j)
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
        if col.null_count < len(col):
            lengths = pc.binary_length(col)
            mx = pc.max(lengths).as_py()
            if mx is not None and mx > max_cell_bytes:
                at = int(pc.index(pc.greater(lengths, max_cell_bytes), True).as_py())
                raise _cell_too_large(path, first_row + at, name, indices[j], int(lengths[at].as_py()),
                                      max_cell_bytes, sheet)
            ws = pc.utf8_is_space(col)
            if pc.any(ws).as_py():
                col = pc.if_else(ws, pa.scalar(None, pa.string()), col)
        isnull = col.is_null()
        blank = isnull if blank is None else pc.and_(blank, isnull)
        cols.append(col)
    out = pa.table(cols, names=[f"c{j}" for j in range(len(cols))])
    mask = blank.to_numpy(zero_copy_only=False) if blank is not None else np.ones(out.num_rows, bool)
    return out, np.asarray(mask, dtype=bool)


# -- CSV ------------------------------------------------------------------------------------------


def _utf8_boundary(buf: bytes) -> int:
    """Length of the longest prefix of ``buf`` that does not end inside a UTF-8 sequence."""
    n = len(buf)
    i, k = n - 1, 0
    while i >= 0 and k < 3 and (buf[i] & 0xC0) == 0x80:
        i -= 1
        k += 1
    if i < 0:
        return n
    lead = buf[i]
    need = 1 if lead < 0x80 else 2 if 0xC0 <= lead < 0xE0 else 3 if 0xE0 <= lead < 0xF0 else 4 if 0xF0 <= lead < 0xF8 else 1
    return n if n - i >= need else i


def _valid_utf8(data: bytes) -> bool:
    if data.isascii():
        return True
    try:
        pa.array([data], pa.binary()).cast(pa.string())
        return True
    except (pa.ArrowInvalid, pa.ArrowException):
        return False


def _decodes(data: bytes, family: str) -> bool:
    """Does ``data`` decode strictly (a sequence cut at the end is allowed)?"""
    dec = codecs.getincrementaldecoder(family)("strict")
    try:
        dec.decode(data, final=False)
        return True
    except UnicodeDecodeError:
        return False


class _Transcoder:
    """Raw CSV bytes -> validated UTF-8 blocks, strict, with encoding detection and mixed-encoding checks."""

    def __init__(self, path: Path, f: io.BufferedReader, family: str | None, forced: bool,
                 block: int | None = None) -> None:
        self.path = path
        self.f = f
        self.family = family  # None while only ASCII has been seen (auto mode)
        self.forced = forced
        self.block = block or _RAW_BLOCK
        self.bom = False
        self.lines_before = 0  # newlines in raw bytes already consumed
        self.saw_non_ascii = False
        self.carry = b""
        self.decoder = None
        self.started = False
        self.raw_read = 0  # raw bytes read from the file so far
        self.decided = False  # has the first non-ASCII text been seen (and the encoding chosen/checked)?

    @property
    def reported_encoding(self) -> str:
        fam = self.family or "utf-8"
        return "utf-8-sig" if (self.bom and fam == "utf-8") else fam

    def _start(self, raw: bytes) -> bytes:
        self.started = True
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise EncodingDetectionError(f"{self.path}: is UTF-16 text; save it as UTF-8 or GB18030 (rule encoding.utf16)")
        if raw.startswith(codecs.BOM_UTF8):
            if self.family == "gb18030" and self.forced:
                raise EncodingDetectionError(
                    f"{self.path}: starts with a UTF-8 byte-order mark but the encoding given is gb18030; "
                    "give utf-8 or leave the encoding out (rule encoding.wrong)")
            self.bom = True
            self.family = "utf-8"
            return raw[3:]
        return raw

    def _decide(self, raw: bytes) -> None:
        """Pick (auto) or check (forced) the encoding on the first line holding a non-ASCII byte."""
        pos = _first_non_ascii(raw)
        line = _line_around(raw, pos)
        row = self.lines_before + raw.count(b"\n", 0, pos) + 1
        if self.family is None:
            if _decodes(line, "utf-8"):
                self.family = "utf-8"
            elif _decodes(line, "gb18030"):
                self.family = "gb18030"
            else:
                raise EncodingDetectionError(
                    f"{self.path}: near row {row}: the text is neither UTF-8 nor GB18030; give its encoding "
                    "or save it as UTF-8 (rule encoding.undetected)")
        elif self.family == "gb18030" and self.forced and _decodes(line, "utf-8"):
            raise EncodingDetectionError(
                f"{self.path}: the encoding given is gb18030 but the text (first non-ASCII text near row {row}) "
                "is UTF-8; give utf-8 or leave the encoding out (rule encoding.wrong)")

    def _fail(self, raw: bytes, pos: int) -> InputError:
        pos = max(0, min(pos, len(raw) - 1))
        row = self.lines_before + raw.count(b"\n", 0, pos) + 1
        line_start = raw.rfind(b"\n", 0, pos) + 1
        line = _line_around(raw, pos)
        other = _OTHER[self.family]
        earlier_ok = self.saw_non_ascii or not raw[:line_start].isascii()
        if _decodes(line, other):
            if earlier_ok:
                return MixedEncodingError(
                    f"{self.path}: mixes text encodings: the text before row {row} is {self.family}, near row "
                    f"{row} it is {other}; save the whole file in one encoding (rule encoding.mixed)")
            return EncodingDetectionError(
                f"{self.path}: is not {self.family} text (first failure near row {row}); it reads as {other}: "
                f"give {other} as the encoding or leave the encoding out (rule encoding.wrong)")
        return EncodingDetectionError(
            f"{self.path}: near row {row}: bytes that are not valid {self.family} text (nor {other}) "
            "(rule encoding.invalid)")

    def _fail_whole(self, raw: bytes) -> MixedEncodingError:
        pos = _first_non_ascii(raw)
        row = self.lines_before + raw.count(b"\n", 0, pos) + 1
        return MixedEncodingError(
            f"{self.path}: mixes text encodings: the text before row {row} is {self.family}, from about row "
            f"{row} it is {_OTHER[self.family]}; save the whole file in one encoding (rule encoding.mixed)")

    def _convert(self, raw: bytes, final: bool) -> bytes:
        """Validate/transcode one raw block (carry already prepended)."""
        if not self.decided:
            if raw.isascii():
                self.lines_before += raw.count(b"\n")
                return raw
            self._decide(raw)
            self.decided = True
        if self.family == "utf-8":
            cut = len(raw) if final else _utf8_boundary(raw)
            body, self.carry = raw[:cut], raw[cut:]
            if not _valid_utf8(body):
                try:
                    body.decode("utf-8")
                    pos = 0
                except UnicodeDecodeError as e:
                    pos = e.start
                raise self._fail(body, pos)
            if not self.saw_non_ascii and not body.isascii():
                self.saw_non_ascii = True
            self.lines_before += body.count(b"\n")
            return body
        if self.decoder is None:
            self.decoder = codecs.getincrementaldecoder(self.family)("strict")
        if self.saw_non_ascii and not raw.isascii():
            # UTF-8 Chinese text often decodes as GB18030 too (into nonsense): a block that is
            # valid UTF-8 after GB18030 text was seen is a block in the other encoding.
            cut = _utf8_boundary(raw)
            if _non_ascii_count(raw[:cut]) >= 16 and _valid_utf8(raw[:cut]):
                raise self._fail_whole(raw)
        try:
            text = self.decoder.decode(raw, final=final)
        except UnicodeDecodeError as e:
            raise self._fail(raw, e.start) from None
        if not self.saw_non_ascii and not text.isascii():
            self.saw_non_ascii = True
        self.lines_before += raw.count(b"\n")
        return text.encode("utf-8")

    def blocks(self) -> Iterator[bytes]:
        """UTF-8 blocks until EOF (the BOM removed)."""
        while True:
            raw = self.f.read(self.block)
            self.raw_read += len(raw)
            final = not raw
            if not self.started:
                if final:
                    return
                raw = self._start(raw)
            data = self.carry + raw
            self.carry = b""
            if not data:
                return
            out = self._convert(data, final)
            if out:
                yield out
            if final:
                if self.carry:
                    raise self._fail(self.carry, 0)
                return


def _non_ascii_count(raw: bytes) -> int:
    return int(np.count_nonzero(np.frombuffer(raw, dtype=np.uint8) >= 0x80)) if raw else 0


def _first_non_ascii(raw: bytes) -> int:
    arr = np.frombuffer(raw, dtype=np.uint8)
    return int(np.argmax(arr >= 0x80))


def _line_around(raw: bytes, pos: int, limit: int = 4096) -> bytes:
    start = raw.rfind(b"\n", max(0, pos - limit), pos) + 1 if pos else 0
    if start == 0 and pos > limit:
        start = pos - limit
    end = raw.find(b"\n", pos, pos + limit)
    if end < 0:
        end = min(len(raw), pos + limit)
    return raw[start:end].rstrip(b"\r")


class _BlockStream(io.RawIOBase):
    """A readable byte stream over an iterator of blocks (for pyarrow and the csv module).

    An aidlink error raised while producing a block (an encoding error) is kept
    in ``error`` as well, since pyarrow may wrap exceptions from Python streams.
    """

    def __init__(self, prefix: bytes, blocks: Iterator[bytes]) -> None:
        self._buf = memoryview(prefix)
        self._blocks = blocks
        self.error: InputError | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not len(self._buf):
            try:
                nxt = next(self._blocks, None)
            except InputError as e:
                self.error = e
                raise
            if nxt is None:
                return 0
            self._buf = memoryview(nxt)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


class _Readahead(io.RawIOBase):
    """Bounds how far pyarrow's streaming CSV reader reads ahead of the batches taken.

    The reader reads on an I/O thread into a queue of up to 32 blocks (9 MiB
    each by default) as fast as the file allows: while the caller is busy with
    a chunk, the whole of a 100 MB file is soon held in memory (measured: all
    106 MB of a 1,000,000-row export three seconds after the first chunk; 27 MB
    with this gate).  Here a read waits until fewer than ``ahead`` blocks are
    read beyond the batches asked for (``allow_one_more`` before each
    ``read_next_batch``).

    No pyarrow thread may touch a Python object once the interpreter has
    begun to exit: a C++ thread that asks for the GIL then is ended by
    Python mid-call, and the process aborts ("terminate called without an
    active exception", exit 134).  So pyarrow is handed only ``arrow_side``, a
    thin file object nothing else refers to, and ``close`` (when the chunk
    generator ends, however it ends, and at interpreter exit for one that was
    abandoned) makes every further read an end of file, waits for reads in
    progress to return, takes what is left from ``reader`` (the CSV reader,
    held only here) so that its thread has seen the end, drops the reader and
    then waits until pyarrow has let go of ``arrow_side`` (its last reference
    may be dropped on a pyarrow thread just after the last read returned).  A
    wait gives up after ``patience`` seconds (the gate then stays open), so
    nothing can deadlock.
    """

    def __init__(self, inner: io.BufferedReader, ahead: int = 2, patience: float = 10.0) -> None:
        self._inner = inner
        self._allowed = ahead
        self._reads = 0
        self._inflight = 0
        self._open = False  # no more gating
        self._ended = False  # reads return end of file
        self._patience = patience
        self._cond = threading.Condition()
        self.reader: Any = None
        self.arrow_side: _ArrowSide | None = _ArrowSide(self)
        self._arrow_gone = threading.Event()
        weakref.finalize(self.arrow_side, self._arrow_gone.set)
        _LIVE_GATES.add(self)

    def readable(self) -> bool:
        return True

    def allow_one_more(self) -> None:
        with self._cond:
            self._allowed += 1
            self._cond.notify_all()

    def readinto(self, b) -> int:
        with self._cond:
            if not (self._open or self._ended) and self._reads >= self._allowed:
                if not self._cond.wait_for(lambda: self._open or self._ended or self._reads < self._allowed,
                                           timeout=self._patience):
                    self._open = True
            if self._ended:
                return 0
            self._reads += 1
            self._inflight += 1
        try:
            return self._inner.readinto(b)
        finally:
            with self._cond:
                self._inflight -= 1
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._inflight == 0, timeout=self._patience)
        reader, self.reader = self.reader, None
        if reader is not None:
            with contextlib.suppress(Exception):
                while True:
                    reader.read_next_batch()
        del reader
        self.arrow_side = None
        self._arrow_gone.wait(self._patience)
        _LIVE_GATES.discard(self)
        super().close()


class _ArrowSide(io.RawIOBase):
    """What pyarrow reads from: forwards to a _Readahead; see there why it is a separate object."""

    def __init__(self, gate: _Readahead) -> None:
        self._gate = gate

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        return self._gate.readinto(b)


_LIVE_GATES: weakref.WeakSet[_Readahead] = weakref.WeakSet()


@atexit.register
def _close_gates() -> None:
    for gate in list(_LIVE_GATES):
        gate.close()


def _split_header(data: bytes, delimiter: str) -> tuple[list[str], int, int] | None:
    """(header cells, byte length of the header record incl. newline, lines in it) or None if incomplete."""
    in_quotes = False
    i, n = 0, len(data)
    while i < n:
        c = data[i]
        if c == 0x22:
            in_quotes = not in_quotes
        elif c == 0x0A and not in_quotes:
            text = data[:i].decode("utf-8").rstrip("\r")
            cells = next(csv.reader([text], delimiter=delimiter), [])
            return cells, i + 1, data.count(b"\n", 0, i + 1)
        i += 1
    return None


class _CsvSource:
    def __init__(self, path: Path, encoding: str | None, delimiter: str) -> None:
        self.path = path
        self.family = resolve_encoding(encoding, path)
        self.delimiter = delimiter
        self.f = open(path, "rb")
        self.tx = _Transcoder(path, self.f, self.family, forced=self.family is not None)
        self._blocks = self.tx.blocks()
        self.eof = False
        self.head = b""
        self.header: list[str] = []
        self.header_len = 0
        self.header_lines = 1

    def next_block(self) -> bytes | None:
        if self.eof:
            return None
        nxt = next(self._blocks, None)
        if nxt is None:
            self.eof = True
        return nxt

    def rest(self) -> Iterator[bytes]:
        while (nxt := self.next_block()) is not None:
            yield nxt

    def close(self) -> None:
        self.f.close()

    def read_header(self, max_bytes: int) -> None:
        got = None
        limit = max(max_bytes, _SAMPLE_BYTES) * 4
        while got is None:
            nxt = self.next_block()
            if nxt is None:
                if self.head.strip(b"\r\n\t "):
                    got = _split_header(self.head + b"\n", self.delimiter)
                    if got is not None:
                        got = (got[0], len(self.head), got[2])
                break
            self.head += nxt
            got = _split_header(self.head, self.delimiter)
            if got is None and len(self.head) > limit:
                raise InputError(f"{self.path}: the header row is not closed within {limit:,} bytes "
                                 "(an unbalanced quote?)")
        if got is None or not any(c.strip() for c in got[0]):
            raise EmptyInputError(f"{self.path}: the file is empty (no header row)")
        self.header, self.header_len, self.header_lines = got

    def sample(self) -> bytes:
        """At least _SAMPLE_BYTES of converted text (or all of it)."""
        while len(self.head) < _SAMPLE_BYTES:
            nxt = self.next_block()
            if nxt is None:
                break
            self.head += nxt
        return self.head


def _csv_chunks(path: Path, needed: Sequence[str], encoding: str | None, chunk_rows: int,
                max_cell_bytes: int, delimiter: str) -> Iterator[Chunk]:
    import pyarrow.csv as pacsv

    src = _CsvSource(path, encoding, delimiter)
    stream: _Readahead | None = None
    try:
        src.read_header(max_cell_bytes)
        indices = _match_columns(path, src.header, needed)
        ncols = len(src.header)
        names = [f"c{i}" for i in range(ncols)]
        invalid: list[tuple[int | None, int, int]] = []

        def on_invalid(row) -> str:
            invalid.append((row.number, row.expected_columns, row.actual_columns))
            return "skip"

        body = src.head[src.header_len:]
        while not body:
            nxt = src.next_block()
            if nxt is None:
                raise EmptyInputError(f"{path}: has a header row but no data rows")
            body = nxt
        raw_stream = _BlockStream(body, src.rest())
        stream = _Readahead(io.BufferedReader(raw_stream, buffer_size=1 << 20))
        block_size = max(_RAW_BLOCK, 8 * max_cell_bytes + (1 << 20))

        def arrow_failed(e: Exception) -> InputError:
            if raw_stream.error is not None:
                return raw_stream.error
            if isinstance(e, InputError):
                return e
            return _diagnose_csv(path, encoding, delimiter, needed, max_cell_bytes, str(e))

        try:
            stream.reader = pacsv.open_csv(
                # read through an Arrow buffer: the blocks pyarrow queues are then its own memory,
                # not Python objects that a pyarrow thread would free under the GIL
                pa.BufferedInputStream(pa.PythonFile(stream.arrow_side, mode="r"), buffer_size=1 << 20),
            read_options=pacsv.ReadOptions(column_names=names, block_size=block_size, use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True,
                                              ignore_empty_lines=False, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={names[i]: pa.string() for i in indices}, include_columns=[names[i] for i in indices],
                strings_can_be_null=True, quoted_strings_can_be_null=True, check_utf8=False),
            )
        except (InputError, pa.ArrowException) as e:
            raise arrow_failed(e) from None
        chunker = _Chunker(needed, chunk_rows)
        seen = 0
        while True:
            try:
                stream.allow_one_more()
                batch = stream.reader.read_next_batch()
            except StopIteration:
                break
            except (InputError, pa.ArrowException) as e:
                raise arrow_failed(e) from None
            if invalid:
                number, expected, actual = invalid[0]
                where = f"near row {number + src.header_lines}" if number is not None else f"after row {seen + HEADER_ROW}"
                raise InputError(f"{path}: {where}: a row has {actual} field{'s' if actual != 1 else ''} where "
                                 f"the header has {expected} (rule csv.field_count)")
            table, blank = _finish_table(path, pa.Table.from_batches([batch]), HEADER_ROW + 1 + seen, needed,
                                         indices, max_cell_bytes)
            seen += table.num_rows
            yield from chunker.push(table, blank, {})
        yield from chunker.finish()
        if chunker.emitted == 0:
            raise EmptyInputError(f"{path}: has a header row but no data rows")
    finally:
        if stream is not None:
            stream.close()
        src.close()


def _diagnose_csv(path: Path, encoding: str | None, delimiter: str, needed: Sequence[str],
                  max_cell_bytes: int, arrow_message: str) -> InputError:
    """pyarrow could not parse the file; find the first oversized cell or bad record with the csv module.

    Slow (pure Python) but only run on the error path.  Never returns a message
    holding a value (pyarrow's own message quotes the row, so it is dropped).
    """
    src = _CsvSource(path, encoding, delimiter)
    try:
        src.read_header(max_cell_bytes)
        indices = _match_columns(path, src.header, needed)
        wanted = dict(zip(indices, needed, strict=True))
        text = io.TextIOWrapper(io.BufferedReader(_BlockStream(src.head[src.header_len:], src.rest())),
                                encoding="utf-8", newline="")
        old = csv.field_size_limit()
        csv.field_size_limit(max(old, 1 << 30))
        try:
            reader = csv.reader(text, delimiter=delimiter)
            for k, rec in enumerate(reader):
                row = HEADER_ROW + 1 + k
                for i, cell in enumerate(rec):
                    if len(cell) * 4 > max_cell_bytes and len(cell.encode("utf-8")) > max_cell_bytes:
                        col = wanted.get(i)
                        if col is not None:
                            return _cell_too_large(path, row, col, i, len(cell.encode("utf-8")), max_cell_bytes)
                        return CellTooLargeError(
                            f"{path}: row {row}, column {column_letter(i)}: the cell holds "
                            f"{len(cell.encode('utf-8')):,} bytes, over the {max_cell_bytes:,}-byte limit "
                            "(rule cell.too_large)")
                if rec and len(rec) != len(src.header):
                    return InputError(f"{path}: row {row}: a row has {len(rec)} fields where the header has "
                                      f"{len(src.header)} (rule csv.field_count)")
        except csv.Error:
            return InputError(f"{path}: near row {HEADER_ROW + 1 + reader.line_num}: not valid CSV (rule csv.syntax)")
        finally:
            csv.field_size_limit(old)
    finally:
        src.close()
    kind = "a record too long to parse" if "straddl" in arrow_message else "a record that cannot be parsed"
    return InputError(f"{path}: holds {kind} (rule csv.syntax)")


def _sniff_csv(path: Path, encoding: str | None, delimiter: str) -> SourceInfo:
    src = _CsvSource(path, encoding, delimiter)
    try:
        src.read_header(_SAMPLE_BYTES)
        sample = src.sample()
        body = sample[src.header_len:]
        lines = body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)
        if src.eof:
            rows, exact = lines, True
        else:
            size = os.path.getsize(path)
            rows, exact = round(lines * size / max(1, src.tx.raw_read)), False
        return SourceInfo(str(path), "csv", src.tx.reported_encoding,
                          tuple(h.strip() for h in src.header), (), None, rows, exact)
    finally:
        src.close()


# -- XLSX -----------------------------------------------------------------------------------------


def _open_workbook(path: Path):
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        return openpyxl.load_workbook(path, read_only=True, data_only=False)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError) as e:
        raise InputError(f"{path}: is not a readable XLSX workbook ({type(e).__name__})") from e


def _sheet_has_data(ws) -> bool:
    ws.reset_dimensions()
    for i, row in enumerate(ws.iter_rows(min_row=1, max_row=5)):
        if any(c.value is not None and not (isinstance(c.value, str) and _is_blank_text(c.value)) for c in row):
            return True
        if i >= 4:
            break
    return False


def _choose_sheet(path: Path, wb, sheet: str | None, strict: bool = True) -> str | None:
    names = list(wb.sheetnames)
    listed = ", ".join(repr(n) for n in names)
    if sheet is not None:
        if sheet not in names:
            raise SheetSelectionError(f"{path}: has no sheet named {sheet!r}; its sheets are {listed}")
        return sheet
    if len(names) == 1:
        return names[0]
    with_data = [n for n in names if _sheet_has_data(wb[n])]
    if len(with_data) == 1:
        return with_data[0]
    if not strict:
        return None
    if not with_data:
        raise EmptyInputError(f"{path}: all {len(names)} sheets ({listed}) are empty")
    raise SheetSelectionError(f"{path}: has {len(names)} sheets ({listed}); choose one with --sheet "
                              "(or source.sheet in the mapping)")


def _xlsx_text(value: Any) -> str | None:
    """A cell value as text (None for empty/whitespace)."""
    if value is None:
        return None
    if isinstance(value, str):
        return None if _is_blank_text(value) else value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 2**63:
            return str(int(value))
        return repr(value)
    if isinstance(value, _dt.datetime):
        if value.time() == _dt.time(0):
            return value.date().isoformat()
        return value.replace(microsecond=0).isoformat()
    if isinstance(value, _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return str(value)
    return str(value)


_XLSX_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_EMPTY_XLSX_CELL = (None, "n")  # what openpyxl gives for a cell that is not in the file


class _XlsxRow:
    """One row of the streaming reader: ``row[i]`` is ``(value, data_type)`` of column ``i``
    (0-based) up to the row's last cell, as openpyxl's read-only cell would have it --
    converted only when asked for (the encoder reads a few of a sheet's columns)."""

    __slots__ = ("_cells", "_convert", "_width")

    def __init__(self, cells: dict[int, Any], width: int, convert: Any) -> None:
        self._cells, self._width, self._convert = cells, width, convert

    def __len__(self) -> int:
        return self._width

    def __getitem__(self, i: int) -> tuple[Any, str]:
        if not 0 <= i < self._width:
            raise IndexError(i)
        c = self._cells.get(i + 1)
        return _EMPTY_XLSX_CELL if c is None else self._convert(c)

    def __iter__(self) -> Iterator[tuple[Any, str]]:
        return (self[i] for i in range(self._width))


def _xlsx_stream_rows(wb: Any, ws: Any) -> Iterator[Sequence[tuple[Any, str]]] | None:
    """The rows of a read-only worksheet, from row 1, parsed straight from the sheet's XML.

    The same rows, cells, values and data types as openpyxl's read-only
    ``ws.iter_rows(min_row=1)`` after ``reset_dimensions()`` (missing rows are
    empty, a row runs to its last cell, missing cells are ``(None, "n")``;
    numbers, dates by the cell's number format, booleans, shared and inline
    strings, ISO dates, errors and formulas converted as openpyxl's
    ``WorkSheetParser.parse_cell`` does, with openpyxl's own helpers and the
    workbook's shared strings, epoch and date formats) -- without building a
    cell object per cell, about five times faster.  None when the workbook
    object lacks what this needs (another openpyxl version): use openpyxl then.
    """
    try:
        archive, path = wb._archive, ws._worksheet_path
        shared, epoch = wb.shared_strings, wb.epoch
        dates, deltas = wb._date_formats, wb._timedelta_formats
        if wb.data_only:
            return None
        from openpyxl.cell.text import Text
        from openpyxl.utils.cell import column_index_from_string
        from openpyxl.utils.datetime import from_excel, from_ISO8601
        from openpyxl.xml.functions import (
            iterparse,  # openpyxl's own parser: defusedxml's if installed
        )
    except (AttributeError, ImportError):
        return None
    row_tag, cell_tag, value_tag = _XLSX_NS + "row", _XLSX_NS + "c", _XLSX_NS + "v"
    formula_tag, inline_tag, data_tag = _XLSX_NS + "f", _XLSX_NS + "is", _XLSX_NS + "sheetData"
    text_tag, run_tag = _XLSX_NS + "t", _XLSX_NS + "r"
    column_of: dict[str, int] = {}

    def inline_text(child: Any) -> str:
        """``openpyxl.cell.text.Text.from_tree(child).content``: the plain text and the text of
        each rich-text run, phonetic runs left out; without building the objects."""
        plain = child.find(text_tag)
        runs = child.findall(run_tag)
        if not runs:
            return "" if plain is None or plain.text is None else plain.text
        return Text.from_tree(child).content

    def cell_value(c: Any) -> tuple[Any, str]:
        data_type = c.get("t", "n")
        style = c.get("s", 0)
        if style:
            style = int(style)
        value = None if data_type == "inlineStr" else (c.findtext(value_tag, None) or None)
        if c.find(formula_tag) is not None:
            return "=", "f"
        if value is not None:
            if data_type == "n":
                value = float(value) if ("." in value or "E" in value or "e" in value) else int(value)
                if style in dates:
                    data_type = "d"
                    try:
                        value = from_excel(value, epoch, timedelta=style in deltas)
                    except (OverflowError, ValueError):
                        data_type, value = "e", "#VALUE!"
            elif data_type == "s":
                value = shared[int(value)]
            elif data_type == "b":
                value = bool(int(value))
            elif data_type == "str":
                data_type = "s"
            elif data_type == "d":
                value = from_ISO8601(value)
        elif data_type == "inlineStr":
            child = c.find(inline_tag)
            if child is not None:
                data_type = "s"
                value = inline_text(child)
        return value, data_type

    def rows() -> Iterator[Sequence[tuple[Any, str]]]:
        counter = row_no = 0
        sheet_data = None
        with archive.open(path) as src:
            for event, el in iterparse(src, events=("start", "end")):
                if event == "start":
                    if el.tag == data_tag:
                        sheet_data = el
                    continue
                if el.tag != row_tag:
                    continue
                r = el.get("r")
                if r is None:
                    row_no += 1
                else:
                    try:
                        row_no = int(r)
                    except ValueError:
                        val = float(r)
                        if not val.is_integer():
                            raise ValueError(f"{r} is not a valid row number") from None
                        row_no = int(val)
                cells: dict[int, Any] = {}
                col = last = 0
                for c in el:
                    if c.tag != cell_tag:
                        continue
                    coord = c.get("r")
                    if coord:
                        letters = coord.rstrip("0123456789")
                        col = column_of.get(letters) or column_of.setdefault(
                            letters, column_index_from_string(letters.lstrip("$")))
                    else:
                        col += 1
                    last = col
                    cells[col] = c
                while counter + 1 < row_no:  # rows missing from the file are empty
                    counter += 1
                    yield ()
                if counter < row_no:
                    counter += 1
                    yield _XlsxRow(cells, last, cell_value) if cells else ()
                if sheet_data is not None:
                    sheet_data.clear()  # rows are done with: keep memory flat

    return rows()


def _xlsx_chunks(path: Path, needed: Sequence[str], sheet: str | None, chunk_rows: int,
                 max_cell_bytes: int, fast: bool = True) -> Iterator[Chunk]:
    wb = _open_workbook(path)
    try:
        name = _choose_sheet(path, wb, sheet)
        ws = wb[name]
        ws.reset_dimensions()
        stream = _xlsx_stream_rows(wb, ws) if fast else None
        if stream is not None:
            rows: Iterator[Sequence[Any]] = stream
        else:  # openpyxl's cells, as (value, data_type)
            rows = (tuple((c.value, c.data_type) for c in r) for r in ws.iter_rows(min_row=1))
        header_row = next(rows, None)
        headers = [_xlsx_text(v) for v, _ in header_row] if header_row else []
        if not any(h for h in headers):
            raise EmptyInputError(f"{path}: sheet {name!r} is empty (no header in row {HEADER_ROW})")
        indices = _match_columns(path, headers, needed,
                                 where=f"sheet {name!r}: ")
        chunker = _Chunker(needed, chunk_rows)
        piece_rows = max(1, min(chunk_rows, 10_000))
        cols: list[list[str | None]] = [[] for _ in needed]
        nums: list[list[bool]] = [[] for _ in needed]
        row_no = HEADER_ROW
        char_limit = max_cell_bytes // 4

        def flush():
            table = pa.table([pa.array(v, pa.string()) for v in cols], names=[f"c{j}" for j in range(len(cols))])
            numeric = {c: np.array(m, bool) for c, m in zip(needed, nums, strict=True) if any(m)}
            blank = np.ones(table.num_rows, bool)
            for v in cols:
                blank &= np.fromiter((x is None for x in v), bool, len(v))
            for lst in (*cols, *nums):
                lst.clear()
            return table, blank, numeric

        for row in rows:
            row_no += 1
            width = len(row)
            for j, i in enumerate(indices):
                if i >= width:
                    cols[j].append(None)
                    nums[j].append(False)
                    continue
                value, dt = row[i]
                if dt == "f":
                    raise FormulaCellError(
                        f"{path}: sheet {name!r} cell {column_letter(i)}{row_no} (column {needed[j]!r}) holds a "
                        "formula, not a value; copy the sheet and paste values only (rule xlsx.formula)")
                text = _xlsx_text(value)
                if text is not None and len(text) > char_limit and len(text.encode("utf-8")) > max_cell_bytes:
                    raise _cell_too_large(path, row_no, needed[j], i, len(text.encode("utf-8")),
                                          max_cell_bytes, name)
                cols[j].append(text)
                nums[j].append(dt == "n" and text is not None)
            if len(cols[0]) >= piece_rows:
                yield from chunker.push(*flush())
        if cols[0]:
            yield from chunker.push(*flush())
        yield from chunker.finish()
        if chunker.emitted == 0:
            raise EmptyInputError(f"{path}: sheet {name!r} has a header row but no data rows")
    finally:
        wb.close()


def _sniff_xlsx(path: Path, sheet: str | None) -> SourceInfo:
    wb = _open_workbook(path)
    try:
        names = tuple(wb.sheetnames)
        name = _choose_sheet(path, wb, sheet, strict=False)
        headers, rows = None, None
        if name is not None:
            ws = wb[name]
            dims = ws.max_row
            ws.reset_dimensions()
            first = next(ws.iter_rows(min_row=1, max_row=1), ())
            headers = tuple((_xlsx_text(c.value) or "") for c in first)
            while headers and not headers[-1]:
                headers = headers[:-1]
            rows = max(0, dims - HEADER_ROW) if dims else None
        return SourceInfo(str(path), "xlsx", None, headers, names, name, rows, False)
    finally:
        wb.close()


# -- Parquet --------------------------------------------------------------------------------------


def _open_parquet(path: Path):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as e:
        raise InputError(f"{path}: is not a readable Parquet file") from e


def _parquet_text(path: Path, arr: pa.Array, name: str) -> tuple[pa.Array, np.ndarray | None]:
    """A column as strings (+ a mask of cells that were floating-point numbers)."""
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return arr.cast(pa.string()), None
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        try:
            return arr.cast(pa.binary()).cast(pa.string()), None
        except pa.ArrowInvalid as e:
            raise EncodingDetectionError(f"{path}: column {name!r} holds bytes that are not UTF-8 text "
                                         "(rule encoding.invalid)") from e
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        f = arr.cast(pa.float64(), safe=False)
        v = f.to_numpy(zero_copy_only=False)
        with np.errstate(invalid="ignore"):
            integral = np.isfinite(v) & (np.floor(v) == v) & (np.abs(v) < 2**63)
        out = pc.cast(f, pa.string())
        if integral.any():
            as_int = pc.cast(pc.if_else(pa.array(integral), f, pa.scalar(0.0)), pa.int64(), safe=False)
            out = pc.if_else(pa.array(integral), pc.cast(as_int, pa.string()), out)
        return out, np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), bool)
    if pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_date(t):
        return pc.cast(arr, pa.string()), None
    if pa.types.is_timestamp(t) or pa.types.is_time(t):
        return pa.array([_xlsx_text(v) for v in arr.to_pylist()], pa.string()), None
    raise InputError(f"{path}: column {name!r} has type {t}, which cannot be read as text")


def _parquet_chunks(path: Path, needed: Sequence[str], chunk_rows: int, max_cell_bytes: int) -> Iterator[Chunk]:
    pf = _open_parquet(path)
    names = list(pf.schema_arrow.names)
    if not names:
        raise EmptyInputError(f"{path}: the Parquet file has no columns")
    indices = _match_columns(path, names, needed)
    chunker = _Chunker(needed, chunk_rows)
    seen = 0
    cols = [names[i] for i in indices]
    try:
        batches = pf.iter_batches(batch_size=max(1, min(chunk_rows, 65_536)), columns=list(dict.fromkeys(cols)))
        for batch in batches:
            arrays, numeric = [], {}
            for name, col in zip(needed, cols, strict=True):
                text, num = _parquet_text(path, batch.column(batch.schema.get_field_index(col)), name)
                arrays.append(text)
                if num is not None and num.any():
                    numeric[name] = num
            table = pa.table(arrays, names=[f"c{j}" for j in range(len(arrays))])
            table, blank = _finish_table(path, table, HEADER_ROW + 1 + seen, needed, indices, max_cell_bytes)
            seen += table.num_rows
            yield from chunker.push(table, blank, numeric)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{path}: the Parquet file cannot be read ({type(e).__name__})") from e
    yield from chunker.finish()
    if chunker.emitted == 0:
        raise EmptyInputError(f"{path}: has no data rows")


# -- entry points ---------------------------------------------------------------------------------


def _delimiter(path: Path) -> str:
    return "\t" if path.suffix.lower() in (".tsv", ".tab") else ","


def iter_chunks(path: str | Path, *, columns_needed: Sequence[str], encoding: str | None = None,
                sheet: str | None = None, chunk_rows: int = 100_000, max_cell_bytes: int = 1 << 20,
                file_type: str | None = None) -> Iterator[Chunk]:
    """Stream ``path`` in chunks of the ``columns_needed`` columns (see the module doc).

    ``encoding`` (CSV only) overrides detection; ``sheet`` picks a workbook sheet;
    ``file_type`` (csv | xlsx | parquet) overrides detection from the content.
    Errors are raised before the first chunk where they can be (header, columns,
    encoding of the first block), otherwise when the offending row is reached.
    """
    if isinstance(columns_needed, str):
        raise TypeError("columns_needed must be a sequence of column names, not one string")
    needed = list(dict.fromkeys(columns_needed))
    if not needed:
        raise ValueError("columns_needed is empty")
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    if max_cell_bytes < 1:
        raise ValueError("max_cell_bytes must be at least 1")
    p = Path(path)
    kind = detect_file_type(p, file_type)
    if kind == "csv":
        return _csv_chunks(p, needed, encoding, chunk_rows, max_cell_bytes, _delimiter(p))
    if kind == "xlsx":
        return _xlsx_chunks(p, needed, sheet, chunk_rows, max_cell_bytes)
    return _parquet_chunks(p, needed, chunk_rows, max_cell_bytes)


def sniff(path: str | Path, encoding: str | None = None, sheet: str | None = None,
          file_type: str | None = None) -> SourceInfo:
    """File type, encoding, headers, sheet names and (approximate) data-row count.

    Reads a CSV's first MiB, a workbook's first row, a Parquet file's metadata.
    A workbook with several non-empty sheets and no ``sheet`` gives
    ``headers=None`` (no error here; :func:`iter_chunks` raises).
    """
    p = Path(path)
    kind = detect_file_type(p, file_type)
    if kind == "csv":
        return _sniff_csv(p, encoding, _delimiter(p))
    if kind == "xlsx":
        return _sniff_xlsx(p, sheet)
    pf = _open_parquet(p)
    return SourceInfo(str(p), "parquet", None, tuple(pf.schema_arrow.names), (), None,
                      pf.metadata.num_rows, True)
