"""Format parsing for :mod:`allocator.logs.readers`: JSONL, CSV and Parquet with user lines.

Arrow parses each file from a stream (gzip is detected by its magic number). Line numbers
are computed only when an error needs them: JSONL counts physical lines, CSV the line where
each record starts (counting the header and values that span lines), Parquet the row. When
Arrow refuses a file, a byte-level path finds the first bad line: JSONL is scanned chunk by
chunk (Arrow still parses the clean chunks), CSV records are walked with Python's
:mod:`csv`.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from allocator.errors import LogFormatError
from allocator.logs.schema import META_SIMULATED
from allocator.logs.validate import RowLocator

__all__ = ["RawTable", "read_raw"]

_GZIP_MAGIC = b"\x1f\x8b"
_UTF8_BOM = b"\xef\xbb\xbf"
_CHUNK_BYTES = 1 << 22  # JSONL slow path: Arrow parses 4 MiB of whole lines at a time
#: Deepest JSON nesting a line may hold. Arrow's JSON parser crashes the process on lines
#: nested some thousands deep and Python's recursion stops below 1,000, so deeper lines are
#: refused (their line named) before either parser sees them.
MAX_JSON_DEPTH = 512
_OPENERS = (b"{", b"[")
#: Lines Arrow may parse in the fast path: fewer brackets and braces than this (well below
#: the depth that crashes it). Deeper nesting that gets through is caught on the parsed
#: schema, and its line named by the line-by-line path.
_GUARD_DEPTH = 2048
_WINDOW_BYTES = 1 << 15
_SURROGATE_ESCAPE = re.compile(rb"\\[uU][dD][89a-fA-F]")
#: The UTF-8 form of a surrogate (U+D800-U+DFFF), which is not valid UTF-8 but which
#: Arrow's validation accepts.
_ENCODED_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")
#: The JSON number -0 (Arrow reads it as the integer 0); -0.5 and 1e-05 do not match.
_MINUS_ZERO = re.compile(rb"-0[,}\]\s]")
_ENCODING_FIX = ("save the file as UTF-8 (text from Latin-1 or Windows-1252 tools: "
                 "`iconv -f latin1 -t utf-8 FILE > FILE.utf8`).")


@dataclass
class RawTable:
    """A parsed file before mapping: the table, its row->line map, parse-level rejects."""

    table: pa.Table
    locate: RowLocator
    rejected: list[tuple[int, str, str]]  # (line, reason, raw text)
    simulated: bool = False


class _LazyLines:
    """Row -> user line, computed on first use (only error paths pay for it)."""

    def __init__(self, compute: Callable[[], np.ndarray]) -> None:
        self._compute = compute
        self._lines: np.ndarray | None = None

    def __call__(self, row: int) -> int:
        if self._lines is None:
            self._lines = self._compute()
        return int(self._lines[row])


def read_raw(path: Path, fmt: str, text_columns: list[str], skip_invalid: bool) -> RawTable:
    """Parse an existing file of a known format, and refuse a repeated column name.

    Args:
        path: the file (JSONL and CSV may be gzipped).
        fmt: ``"jsonl"``, ``"csv"`` or ``"parquet"``.
        text_columns: columns to read as text as written, never through numbers (CSV:
            read as text; JSONL: a number, true/false or null in them is its literal
            text in the file, ``12345678901234567`` stays exactly that; an object or
            array is refused, naming its line).
        skip_invalid: set unparseable lines aside instead of raising on the first one.

    Returns:
        The parsed table, its row -> line map and the lines set aside.

    Raises:
        LogFormatError: naming the file, the line and the fix.
    """
    if fmt == "csv":
        return _read_csv(path, text_columns, skip_invalid)  # checks the header itself
    raw = (_read_parquet(path) if fmt == "parquet"
           else _read_jsonl(path, text_columns, skip_invalid))
    _check_header(raw.table, str(path))
    return raw


def _check_header(table: pa.Table, source: str) -> None:
    names = table.column_names
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise LogFormatError(
            f"the header names columns {repeated} more than once.", source=source, line=1,
            column=repeated[0], fix="give every column a distinct name.",
        )


# --------------------------------------------------------------------------- raw bytes
def _stream(path: Path) -> pa.NativeFile:
    """The file as an Arrow input stream, gunzipped on the fly (detected by magic number).

    Arrow parses from the stream block by block, so the whole file never sits in memory
    beside the table; any trouble sends the caller to the byte-level path, whose errors
    are precise.
    """
    return pa.input_stream(str(path), compression="gzip" if _is_gzip(path) else None)


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped (by magic number) and without a UTF-8 byte order mark."""
    data = path.read_bytes()
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except EOFError as error:
            raise LogFormatError(
                "the gzip stream ends before its end marker: the file is truncated.",
                source=str(path), fix="copy or download the file again, completely.",
            ) from error
        except (gzip.BadGzipFile, zlib.error) as error:
            raise LogFormatError(
                f"the gzip data is corrupt ({error}).", source=str(path),
                fix="copy or download the file again, or recompress it.",
            ) from error
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM):]
    if not data.strip():
        raise _empty(path)
    return data


def _decode_error_line(data: bytes) -> tuple[int, str] | None:
    """The line of the first invalid UTF-8 byte, if any."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        return data.count(b"\n", 0, error.start) + 1, str(error)
    return None


def _content_end(data: bytes) -> int:
    """Length of ``data`` without trailing whitespace (trailing blank lines shift nothing)."""
    end = len(data)
    while end and data[end - 1] in b" \t\r\n":
        end -= 1
    return end


def _refuse_utf16(path: Path) -> None:
    """Refuse a UTF-16 (or UTF-32) file up front: Arrow would read it as garbage names."""
    try:
        with _stream(path) as stream:
            head = stream.read(4096)
    except OSError:  # corrupt gzip: the readers' own paths say so precisely
        return
    utf16 = head[:2] in (b"\xff\xfe", b"\xfe\xff")
    if utf16 or b"\x00" in head:
        raise LogFormatError(
            "the file is UTF-16 encoded" if utf16 else "the file holds NUL bytes (UTF-16 or "
            "UTF-32 text, or not text at all)", source=str(path), line=1,
            fix="save the file as UTF-8 (`iconv -f UTF-16 -t UTF-8 FILE > FILE.utf8`).",
        )


def _empty(path: Path) -> LogFormatError:
    return LogFormatError("the file is empty.", source=str(path),
                          fix="check the path, and that the export that wrote it finished.")


# ----------------------------------------------------------------------------- Parquet
def _read_parquet(path: Path) -> RawTable:
    if path.stat().st_size == 0:
        raise _empty(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        raise LogFormatError(
            f"cannot read Parquet ({error}).", source=str(path),
            fix="check the file is a complete Parquet file: a truncated copy cannot be read; "
            "copy it again.",
        ) from error
    metadata = table.schema.metadata or {}
    simulated = metadata.get(META_SIMULATED, b"false") == b"true"
    return RawTable(table, lambda row: row + 1, [], simulated)


# ------------------------------------------------------------------------------- JSONL
def _read_jsonl(path: Path, text_columns: list[str], skip_invalid: bool) -> RawTable:
    """Arrow parses the stream (each block checked for deep nesting first); any trouble
    (a bad line, a line nested too deep, text that is not UTF-8) sends the file to the
    line-by-line path, whose errors name the line."""
    source = str(path)
    _refuse_utf16(path)
    try:
        table = _parse_guarded(path)
        if table.num_rows == 0:
            _read_bytes(path)  # raises "empty" for a blank file
        _check_utf8(table)
        if max(map(_type_depth, table.schema.types), default=0) >= MAX_JSON_DEPTH:
            raise _Unsafe  # the line-by-line path names the line
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError, _Unsafe):
        data = _read_bytes(path)
        raw, numbers, retyped = _read_jsonl_slowly(data, source, skip_invalid)
        return _text_as_written(raw, text_columns, lambda: (_lines_at(data, numbers), numbers),
                                source, skip_invalid, retyped)
    # Line numbers are only needed on errors: the file is read again then, so that its
    # bytes are not held while the log is built.
    n_rows = table.num_rows
    raw = RawTable(table, _LazyLines(lambda: _jsonl_lines(_read_bytes(path), n_rows, source)),
                   [])
    raw = _integers_as_text(raw, text_columns, path)
    return _text_as_written(raw, text_columns, lambda: _fast_lines(path, n_rows), source,
                            skip_invalid)


def _parse_guarded(path: Path) -> pa.Table:
    """Arrow's parse of a file the guard has passed: a plain file is checked in a first
    pass (from the page cache, cheaper than feeding Arrow through Python), a gzipped one
    as Arrow reads it (so that it is decompressed once)."""
    with _stream(path) as stream:
        guard = _NestingGuard(stream)
        if _is_gzip(path):
            return pa_json.read_json(pa.PythonFile(guard, mode="r"))
        while guard.read(1 << 24):
            pass
    with _stream(path) as stream:
        return pa_json.read_json(stream)


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(2) == _GZIP_MAGIC


class _Unsafe(Exception):
    """Bytes Arrow must not parse: a line that may nest deeper than
    :data:`MAX_JSON_DEPTH`, or surrogates encoded as UTF-8 (Arrow lets them through)."""


class _NestingGuard(io.RawIOBase):
    """The byte stream Arrow parses, checked block by block: a line holding
    ``_GUARD_DEPTH`` brackets and braces or more (a bound on its nesting), or an encoded
    surrogate, stops the read before Arrow sees the block."""

    def __init__(self, stream: pa.NativeFile) -> None:
        super().__init__()
        self._stream = stream
        self._carry = 0  # openers of the line the previous block ended inside
        self._last = b""  # the previous block's last byte

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size if size is not None and size >= 0 else None)
        self._carry = _guard_lines(data, self._carry)
        if _has_encoded_surrogate(self._last + data[:1]) or _has_encoded_surrogate(data):
            raise _Unsafe
        self._last = data[-1:]
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _has_encoded_surrogate(data: bytes) -> bool:
    return b"\xed" in data and _ENCODED_SURROGATE.search(data) is not None


def _count_openers(data: bytes, start: int, stop: int) -> int:
    return sum(data.count(opener, start, stop) for opener in _OPENERS)


def _guard_lines(data: bytes, carry: int) -> int:
    """Raise :class:`_Unsafe` if a line of ``data`` holds ``_GUARD_DEPTH`` openers or more;
    return the openers of its unfinished last line (``carry``: of the line it continues).

    Only lines at least ``_GUARD_DEPTH`` bytes long can, so the scan jumps from newline
    to the last newline within the next ``_GUARD_DEPTH`` bytes (a backwards memchr that
    stops near the window's end) and counts openers only in the long lines.
    """
    limit, end = _GUARD_DEPTH, len(data)
    first = data.find(b"\n")
    if first < 0:
        first = end
    carry += _count_openers(data, 0, first)
    if carry >= limit:
        raise _Unsafe
    if first == end:
        return carry
    position = first + 1
    while True:
        last = data.rfind(b"\n", position, position + limit)
        if last >= 0:
            position = last + 1
            continue
        stop = data.find(b"\n", position)
        openers = _count_openers(data, position, end if stop < 0 else stop)
        if openers >= limit:
            raise _Unsafe
        if stop < 0:
            return openers
        position = stop + 1


def _type_depth(kind: pa.DataType) -> int:
    """How deep list and struct types nest (the parsed JSON's nesting, less one)."""
    deepest, stack = 0, [(kind, 0)]
    while stack:
        kind, depth = stack.pop()
        deepest = max(deepest, depth)
        stack += [(kind.field(i).type, depth + 1) for i in range(kind.num_fields)]
    return deepest


def _few_openers(data: bytes, carry: int) -> int | None:
    """The cheap proof that no line of ``data`` reaches the limit (the openers of its
    unfinished last line), or None when it does not hold.

    When every 32 KiB window holds a newline, a line lies within two adjacent windows
    (the first line within the first window): so if every two adjacent windows hold
    fewer openers than the limit, so does every line. Counting bytes is a memchr-speed
    pass; a block where this fails is checked line by line.
    """
    previous = carry
    for start in range(0, len(data), _WINDOW_BYTES):
        stop = start + _WINDOW_BYTES
        count = _count_openers(data, start, stop)
        if previous + count >= MAX_JSON_DEPTH or data.find(b"\n", start, stop) < 0:
            return None
        previous = count
    return _count_openers(data, data.rfind(b"\n") + 1, len(data))


def _check_openers(data: bytes, carry: int) -> int:
    """Raise :class:`_Unsafe` if a line of ``data`` may nest too deep; return the openers
    of its unfinished last line (``carry``: those of the line it continues)."""
    tail = _few_openers(data, carry)
    if tail is not None:
        return tail
    first_end = data.find(b"\n")
    if first_end < 0:
        carry += _count_openers(data, 0, len(data))
        if carry >= MAX_JSON_DEPTH:
            raise _Unsafe
        return carry
    if carry + _count_openers(data, 0, first_end) >= MAX_JSON_DEPTH:
        raise _Unsafe
    newlines = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    for i in np.flatnonzero(np.diff(newlines) > MAX_JSON_DEPTH).tolist():
        if _count_openers(data, int(newlines[i]) + 1, int(newlines[i + 1])) >= MAX_JSON_DEPTH:
            raise _Unsafe
    tail = _count_openers(data, int(newlines[-1]) + 1, len(data))
    if tail >= MAX_JSON_DEPTH:
        raise _Unsafe
    return tail


def _nesting_depth(text: bytes) -> int:
    """The deepest nesting of brackets and braces outside JSON strings (linear time)."""
    a = np.frombuffer(text, np.uint8)
    if not len(a):
        return 0
    plain = np.where(a != 92, np.arange(len(a)), -1)  # 92: backslash
    np.maximum.accumulate(plain, out=plain)  # the last non-backslash at or before each byte
    quotes = np.flatnonzero(a == 34)
    escapes = np.where(quotes > 0, quotes - 1 - plain[np.maximum(quotes - 1, 0)], 0)
    toggles = np.zeros(len(a), np.int8)
    toggles[quotes[escapes % 2 == 0]] = 1
    inside = np.cumsum(toggles) % 2 == 1
    steps = ((a == 123) | (a == 91)).astype(np.int64) - ((a == 125) | (a == 93))
    steps[inside] = 0
    return int(np.cumsum(steps).max())


def _check_utf8(table: pa.Table) -> None:
    """Raise ArrowInvalid if a text column holds bytes that are not UTF-8 (Arrow's JSON
    reader passes them through); the names are decoded too (UnicodeDecodeError)."""
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            column.validate(full=True)
        name.encode("utf-8")


def _fast_lines(path: Path, n_rows: int) -> tuple[list[bytes], np.ndarray]:
    """The text and line number of every row of a file Arrow parsed in one go."""
    data = _read_bytes(path)
    numbers = _jsonl_lines(data, n_rows, str(path))
    return _lines_at(data, numbers), numbers


def _lines_at(data: bytes, numbers: np.ndarray) -> list[bytes]:
    texts = data.split(b"\n")
    return [texts[number - 1] for number in numbers.tolist()]


class _Literal(str):
    """A JSON number or constant, as its text in the file."""


def _integers_as_text(raw: RawTable, names: list[str], path: Path) -> RawTable:
    """Text columns Arrow read as integers, as text without re-reading the lines: an
    integer's decimal text is its JSON literal, except ``-0`` (Arrow reads 0): when the
    file may hold that number, the lines are re-read instead."""
    table = raw.table
    integers = [n for n in names
                if n in table.column_names and pa.types.is_integer(table.schema.field(n).type)]
    if not integers or _may_hold_minus_zero(path):
        return raw
    for name in integers:
        table = table.set_column(table.column_names.index(name), name,
                                 pc.cast(table.column(name), pa.string()))
    return RawTable(table, raw.locate, raw.rejected, raw.simulated)


def _may_hold_minus_zero(path: Path) -> bool:
    """Whether the number ``-0`` occurs in the file (or ``-0`` before a comma, bracket or
    space inside a string: a harmless false alarm)."""
    last = b""
    with _stream(path) as stream:
        while chunk := stream.read(1 << 24):
            if _MINUS_ZERO.search(last + chunk[:2]) or _MINUS_ZERO.search(chunk):
                return True
            last = chunk[-2:]
    return False


def _text_as_written(
    raw: RawTable,
    names: list[str],
    lines: Callable[[], tuple[list[bytes], np.ndarray]],
    source: str,
    skip_invalid: bool,
    retyped: frozenset[str] = frozenset(),
) -> RawTable:
    """Text columns that Arrow typed otherwise (numbers, booleans, objects), or that the
    line-by-line path turned into text (``retyped``), re-read from the lines as written:
    ``12345678901234567`` and ``5`` stay exactly that text, never a float's. An object or
    array is refused, naming its line (or set aside)."""
    table = raw.table
    pending = [n for n in names if n in table.column_names
               and (n in retyped or not _is_text_type(table.schema.field(n).type))]
    if not pending:
        return raw
    texts, numbers = lines()
    columns, bad = _literal_columns(texts, pending)
    for name, values in columns.items():
        table = table.set_column(table.column_names.index(name), name,
                                 pa.array(values, pa.string()))
    if not bad:
        return RawTable(table, _LazyLines(lambda: numbers), raw.rejected, raw.simulated)
    if not skip_invalid:
        row = min(bad)
        column, problem = bad[row]
        raise LogFormatError(problem, source=source, line=int(numbers[row]), column=column,
                             fix=_literal_fix(column))
    keep = np.setdiff1d(np.arange(len(texts)), sorted(bad))
    kept = numbers[keep]
    rejected = raw.rejected + [
        (int(numbers[row]), f"{column}: {problem}", texts[row].decode("utf-8", "replace"))
        for row, (column, problem) in sorted(bad.items())]
    return RawTable(table.take(pa.array(keep)), _LazyLines(lambda: kept), rejected,
                    raw.simulated)


def _literal_fix(column: str) -> str:
    return (f"write {column!r} as a string (the text that identifies it or votes); "
            "skip_invalid / --skip-invalid sets such lines aside.")


def _literal_columns(
    texts: list[bytes], names: list[str]
) -> tuple[dict[str, list[str | None]], dict[int, tuple[str, str]]]:
    """The named fields of every line as their text; rows holding an object or array."""
    columns: dict[str, list[str | None]] = {name: [] for name in names}
    bad: dict[int, tuple[str, str]] = {}
    for row, text in enumerate(texts):
        record = json.loads(text, parse_int=_Literal, parse_float=_Literal,
                            parse_constant=_Literal)
        for name in names:
            value = record.get(name)
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, dict | list):
                kind = "object" if isinstance(value, dict) else "array"
                bad.setdefault(row, (name, f"a JSON {kind} where text is expected: "
                                           f"{text.decode('utf-8', 'replace')[:80]!r}."))
                value = None
            columns[name].append(None if value is None else str(value))
    return columns, bad


def _is_text_type(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)


def _jsonl_lines(data: bytes, n_rows: int, source: str) -> np.ndarray:
    """Line number of each row, for a file Arrow parsed: its non-blank lines.

    Raises:
        LogFormatError: at the first line that does not hold exactly one JSON object, if
            rows and lines cannot be matched.
    """
    end = _content_end(data)
    lines = _nonblank_lines(data[:end], 1, n_rows)
    if len(lines) == n_rows:
        return lines
    fix = "write one JSON object per line (JSONL): no pretty-printed objects, no two objects " \
          "on one line."
    texts = data[:end].split(b"\n")
    for number in lines:
        problem = _json_problem(texts[number - 1], False)
        if problem is not None:
            raise LogFormatError(problem[0], source=source, line=int(number), fix=fix)
    raise LogFormatError(
        f"the file has {len(lines)} non-blank lines but {n_rows} JSON objects, so rows cannot "
        "be matched to lines.", source=source, fix=fix)


def _read_jsonl_slowly(
    data: bytes, source: str, skip_invalid: bool
) -> tuple[RawTable, np.ndarray, frozenset[str]]:
    """Chunk by chunk: Arrow parses the clean chunks; Python scans only the chunks Arrow
    refuses (or that may nest too deep), line by line, to find the bad lines; chunks whose
    column types differ are unified (mixed columns become text, which validation then
    pins to a line). Returns the table, the line number of each row, and the columns
    whose values were turned into text here (not read as text)."""
    end = _content_end(data)
    unterminated = b"\n" not in data[end:]
    tables: list[pa.Table] = []
    lines: list[np.ndarray] = []
    bad: list[tuple[int, str, str]] = []
    retyped: set[str] = set()
    start, first_line = 0, 1
    while start < end:
        stop = end if start + _CHUNK_BYTES >= end else data.find(b"\n", start + _CHUNK_BYTES)
        stop = end if stop < 0 or stop > end else stop
        chunk = data[start:stop]
        table, numbers = _parse_chunk(chunk, first_line, stop == end and unterminated, source,
                                      skip_invalid, bad, retyped)
        if table is not None:
            tables.append(table)
            lines.append(numbers)
        first_line += chunk.count(b"\n") + 1
        start = stop + 1
    if not tables:
        raise LogFormatError("no line holds a valid JSON object.", source=source,
                             fix="check the file is JSONL (one JSON object per line).")
    good = np.concatenate(lines)
    retyped.update(name for table in tables for name, kind in zip(
        table.column_names, table.schema.types, strict=True) if not _is_text_type(kind))
    return RawTable(_unify(tables), _LazyLines(lambda: good), bad), good, frozenset(retyped)


def _parse_chunk(
    chunk: bytes,
    first_line: int,
    last_is_cut: bool,
    source: str,
    skip_invalid: bool,
    bad: list[tuple[int, str, str]],
    retyped: set[str],
) -> tuple[pa.Table | None, np.ndarray]:
    """Parse whole lines starting at ``first_line``; bad lines raise or go to ``bad``;
    columns of mixed types become text, and their names go to ``retyped``."""
    try:
        _check_openers(chunk, 0)
        if _has_encoded_surrogate(chunk):
            raise _Unsafe
        table = pa_json.read_json(pa.BufferReader(chunk))
        numbers = _nonblank_lines(chunk, first_line, table.num_rows)
        if table.num_rows == len(numbers):
            _check_utf8(table)
            return table, numbers
    except (pa.ArrowInvalid, UnicodeDecodeError, _Unsafe):
        pass
    texts = chunk.split(b"\n")
    kept: list[bytes] = []
    kept_numbers: list[int] = []
    for index, text in enumerate(texts):
        if not text.strip():
            continue
        problem = _json_problem(text, last_is_cut and index == len(texts) - 1)
        if problem is None:
            kept.append(text)
            kept_numbers.append(first_line + index)
        elif skip_invalid:
            bad.append((first_line + index, problem[0], text.decode("utf-8", errors="replace")))
        else:
            raise LogFormatError(problem[0], source=source, line=first_line + index,
                                 fix=problem[1])
    if not kept:
        return None, np.empty(0, dtype=np.int64)
    try:
        table = pa_json.read_json(pa.BufferReader(b"\n".join(kept)))
    except pa.ArrowInvalid:
        table = _table_from_python([json.loads(text) for text in kept], retyped)
    return table, np.array(kept_numbers)


def _nonblank_lines(chunk: bytes, first_line: int, n_rows: int) -> np.ndarray:
    """Numbers of the lines of ``chunk`` (which starts at ``first_line``) with content.

    When there are as many lines as parsed rows, every line holds one row (the only
    exception, a blank line *and* a line holding two objects, is not JSONL and not
    detected); otherwise the blank lines are found one by one.
    """
    n_lines = chunk.count(b"\n") + 1
    if n_lines == n_rows:
        return np.arange(first_line, first_line + n_lines)
    return np.array([first_line + i for i, text in enumerate(chunk.split(b"\n"))
                     if text.strip()], dtype=np.int64)


def _unify(tables: list[pa.Table]) -> pa.Table:
    """Concatenate chunk tables; a column typed differently across chunks becomes float64
    (all numeric) or text."""
    kinds: dict[str, set[pa.DataType]] = {}
    for table in tables:
        for item in table.schema:
            if not pa.types.is_null(item.type):
                kinds.setdefault(item.name, set()).add(item.type)
    targets = {
        name: pa.float64() if all(pa.types.is_integer(k) or pa.types.is_floating(k)
                                  for k in types) else pa.string()
        for name, types in kinds.items() if len(types) > 1
    }
    unified = []
    for table in tables:
        for name, target in targets.items():
            if name in table.column_names and table.schema.field(name).type != target:
                index = table.column_names.index(name)
                table = table.set_column(index, name, _cast(table.column(name), target))
        unified.append(table)
    return pa.concat_tables(unified, promote_options="default")


def _cast(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    """Integers to float64 (large ones rounded: text columns are re-read as written), or
    anything to text."""
    try:
        return pc.cast(column, target, safe=not pa.types.is_floating(target))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        text = [None if v is None else json.dumps(v) for v in column.to_pylist()]
        return pa.chunked_array([pa.array(text, pa.string())])


_SET_ASIDE = "; skip_invalid / --skip-invalid sets such lines aside."


def _json_problem(text: bytes, is_last_unterminated: bool) -> tuple[str, str] | None:
    """What is wrong with one JSONL line and how to fix it, or None."""
    if _count_openers(text, 0, len(text)) >= MAX_JSON_DEPTH:
        depth = _nesting_depth(text)
        if depth > MAX_JSON_DEPTH:
            return (f"the JSON is nested {depth} levels deep (at most {MAX_JSON_DEPTH} are "
                    "read).", "write attempts as flat objects: store a deep structure as a "
                    "string, or drop the field" + _SET_ASIDE)
    try:
        value = json.loads(text.decode("utf-8"))  # strict: json.loads(bytes) passes surrogates
    except UnicodeDecodeError as error:
        return f"the line is not valid UTF-8 ({error}).", _ENCODING_FIX
    except RecursionError:
        return (f"the JSON is nested too deep to read (at most {MAX_JSON_DEPTH} levels).",
                "write attempts as flat objects" + _SET_ASIDE)
    except ValueError as error:
        if is_last_unterminated:
            return (f"the last line is cut off mid-object (invalid JSON: {error}).",
                    "the file looks truncated: copy it again completely, or delete the "
                    "partial last line (skip_invalid / --skip-invalid sets it aside).")
        return f"invalid JSON ({error}).", "write one JSON object per line" + _SET_ASIDE
    if not isinstance(value, dict):
        return (f"expected a JSON object, found {type(value).__name__} {text[:60]!r}.",
                "write one JSON object per line" + _SET_ASIDE)
    if _SURROGATE_ESCAPE.search(text) and _holds_lone_surrogate(value):
        return ("the line holds a lone UTF-16 surrogate escape (such as \\ud800): half of "
                "a character, which is not text.", "write the character itself (or both "
                "halves of its surrogate pair), or drop the escape" + _SET_ASIDE)
    return None


def _holds_lone_surrogate(value: object) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _table_from_python(rows: list[dict[str, object]], retyped: set[str]) -> pa.Table:
    """A table from parsed objects whose columns mix types: mixed columns become text.

    Text keeps every value (``true``, ``18``, ``"yes"``), so row-level validation then
    names the exact line of a value such as ``correct: "yes"``.
    """
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    columns = {}
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            retyped.add(name)
            columns[name] = pa.array(
                [v if v is None or isinstance(v, str) else json.dumps(v) for v in values],
                pa.string(),
            )
    return pa.table(columns)


# --------------------------------------------------------------------------------- CSV
def _read_csv(path: Path, text_columns: list[str], skip_invalid: bool) -> RawTable:
    source = str(path)
    _refuse_utf16(path)
    if _odd_quote_count(path):
        _check_quotes(_read_bytes(path), source)
    invalid: list[str] = []

    def on_invalid(row: pa_csv.InvalidRow) -> str:
        invalid.append(row.text)
        return "skip"

    try:
        with _stream(path) as stream:
            table = pa_csv.read_csv(
                stream,
                parse_options=pa_csv.ParseOptions(newlines_in_values=True,
                                                  invalid_row_handler=on_invalid),
                convert_options=pa_csv.ConvertOptions(
                    column_types=dict.fromkeys(text_columns, pa.string()),
                    strings_can_be_null=True, null_values=[""], quoted_strings_can_be_null=False,
                ),
            )
    except (pa.ArrowInvalid, OSError) as error:
        data = _read_bytes(path)  # raises for an empty or truncated file
        _refuse_undecodable(data, source)
        raise LogFormatError(f"cannot parse CSV ({error}).", source=source,
                             fix="check the file is comma-separated with one header line."
                             ) from error
    _check_header(table, source)  # before any refused record is reported
    if not invalid:
        n_rows = table.num_rows
        return RawTable(table, _LazyLines(lambda: _csv_lines(_read_bytes(path), n_rows)), [])
    data = _read_bytes(path)
    width = table.num_columns
    bad, lines = (_find_short_records(data, invalid, table.num_rows)
                  or _scan_short_records(data, width, table.num_rows))
    if not skip_invalid:
        line, found, _ = bad[0]
        last_record = max(bad[-1][0], int(lines[-1]) if len(lines) else 0)
        at_end = line == last_record and not data.endswith((b"\n", b"\r"))
        raise LogFormatError(
            f"expected {width} fields (as in the header), found {found}"
            + (f" ({len(bad)} such records in all)." if len(bad) > 1 else "."),
            source=source, line=line,
            fix=("the file looks truncated (its last record is incomplete): copy it again"
                 if at_end else "quote values that contain commas or line breaks")
            + "; skip_invalid / --skip-invalid sets such records aside.",
        )
    rejects = [(line, f"expected {width} fields (as in the header), found {found}.", text)
               for line, found, text in bad]
    return RawTable(table, _LazyLines(lambda: lines), rejects)


_ShortRecords = tuple[list[tuple[int, int, str]], np.ndarray]


def _find_short_records(data: bytes, texts: list[str], n_rows: int) -> _ShortRecords | None:
    """Fast path when every record is one line: find the refused records' lines by their
    text. Returns (line, field count, text) of each, and the lines of the kept rows; None
    when records span lines (the caller then scans)."""
    end = _content_end(data)
    n_lines = data.count(b"\n", 0, end) + 1
    if n_lines != 1 + n_rows + len(texts):
        return None
    found: list[tuple[int, str]] = []
    for text in set(texts):
        pattern = b"\n" + text.encode()
        position = data.find(pattern, 0, end)
        while position >= 0:
            after = position + len(pattern)
            if after == end or data[after:after + 1] in (b"\n", b"\r"):
                found.append((position, text))
            position = data.find(pattern, after, end)
    if len(found) != len(texts):
        return None
    bad, newlines, previous = [], 0, 0
    for position, text in sorted(found):
        newlines += data.count(b"\n", previous, position)
        previous = position
        bad.append((newlines + 2, len(next(csv.reader([text]))), text))
    kept = np.setdiff1d(np.arange(2, n_lines + 1), [line for line, _, _ in bad])
    return bad, kept


def _scan_short_records(data: bytes, width: int, n_rows: int) -> _ShortRecords:
    """Slow path (values spanning lines): every record's line, with Python's csv module."""
    records = _csv_records(data)[1:]
    bad = [(line, len(fields_), ",".join(fields_)) for line, fields_ in records
           if len(fields_) != width]
    kept = np.array([line for line, fields_ in records if len(fields_) == width])
    return bad, kept if len(kept) == n_rows else np.arange(2, n_rows + 2)


def _refuse_undecodable(data: bytes, source: str) -> None:
    """Raise at the line of the first byte that is not UTF-8, if any."""
    undecodable = _decode_error_line(data)
    if undecodable:
        raise LogFormatError(f"the text is not valid UTF-8 ({undecodable[1]}).",
                             source=source, line=undecodable[0], fix=_ENCODING_FIX)


def _odd_quote_count(path: Path) -> bool:
    """Whether the file holds an odd number of double quotes (read in chunks); refuses an
    encoded surrogate on the way (Arrow's UTF-8 check lets it through)."""
    count, last = 0, b""
    try:
        with _stream(path) as stream:
            while chunk := stream.read(1 << 24):
                count += chunk.count(b'"')
                if _has_encoded_surrogate(last + chunk[:1]) or _has_encoded_surrogate(chunk):
                    _refuse_undecodable(_read_bytes(path), str(path))
                last = chunk[-1:]
    except OSError:
        _read_bytes(path)  # raises the precise error (truncated or corrupt gzip)
        raise
    return count % 2 == 1


def _check_quotes(data: bytes, source: str) -> None:
    """Refuse a quoted value that never closes (Arrow would swallow the rest of the file)."""
    if data.count(b'"') % 2 == 0:
        return
    start = 1
    reader = csv.reader(io.StringIO(data.decode("utf-8", errors="replace"), newline=""),
                        strict=True)
    try:
        for _ in reader:
            start = reader.line_num + 1
    except csv.Error as error:
        raise LogFormatError(
            f"a quoted value opened in the record starting here never closes ({error}).",
            source=source, line=start,
            fix="close the quote; if the file ends here, it is truncated: copy it again.",
        ) from error


def _csv_records(data: bytes) -> list[tuple[int, list[str]]]:
    """Every non-blank record with the line it starts on (slow path, errors only)."""
    reader = csv.reader(io.StringIO(data.decode("utf-8", errors="replace"), newline=""))
    records, start = [], 1
    for row in reader:
        if row:
            records.append((start, row))
        start = reader.line_num + 1
    return records


def _csv_lines(data: bytes, n_rows: int) -> np.ndarray:
    """Line where each data row starts: header + row when no record spans lines."""
    end = _content_end(data)
    newlines = data.count(b"\n", 0, end)
    if newlines == n_rows:  # no blank line and no value spanning lines
        return np.arange(2, n_rows + 2)
    lines = np.array([line for line, _ in _csv_records(data)[1:]])
    return lines if len(lines) == n_rows else np.arange(2, n_rows + 2)

