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
        text_columns: CSV columns to read as text, never as numbers.
        skip_invalid: set unparseable lines aside instead of raising on the first one.

    Returns:
        The parsed table, its row -> line map and the lines set aside.

    Raises:
        LogFormatError: naming the file, the line and the fix.
    """
    if fmt == "csv":
        return _read_csv(path, text_columns, skip_invalid)  # checks the header itself
    raw = _read_parquet(path) if fmt == "parquet" else _read_jsonl(path, skip_invalid)
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
    with path.open("rb") as file:
        magic = file.read(2)
    return pa.input_stream(str(path), compression="gzip" if magic == _GZIP_MAGIC else None)


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
def _read_jsonl(path: Path, skip_invalid: bool) -> RawTable:
    try:
        with _stream(path) as stream:
            table = pa_json.read_json(stream)
        if table.num_rows == 0:
            _read_bytes(path)  # raises "empty" for a blank file
    except (pa.ArrowInvalid, OSError):
        return _read_jsonl_slowly(_read_bytes(path), str(path), skip_invalid)
    # Line numbers are only needed on errors: the file is read again then, so that its
    # bytes are not held while the log is built.
    n_rows = table.num_rows
    return RawTable(table, _LazyLines(lambda: _jsonl_lines(_read_bytes(path), n_rows, str(path))),
                [])


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
            raise LogFormatError(problem, source=source, line=int(number), fix=fix)
    raise LogFormatError(
        f"the file has {len(lines)} non-blank lines but {n_rows} JSON objects, so rows cannot "
        "be matched to lines.", source=source, fix=fix)


def _read_jsonl_slowly(data: bytes, source: str, skip_invalid: bool) -> RawTable:
    """Chunk by chunk: Arrow parses the clean chunks; Python scans only the chunks Arrow
    refuses, line by line, to find the bad lines; chunks whose column types differ are
    unified (mixed columns become text, which validation then pins to a line)."""
    end = _content_end(data)
    unterminated = b"\n" not in data[end:]
    tables: list[pa.Table] = []
    lines: list[np.ndarray] = []
    bad: list[tuple[int, str, str]] = []
    start, first_line = 0, 1
    while start < end:
        stop = end if start + _CHUNK_BYTES >= end else data.find(b"\n", start + _CHUNK_BYTES)
        stop = end if stop < 0 or stop > end else stop
        chunk = data[start:stop]
        table, numbers = _parse_chunk(chunk, first_line, stop == end and unterminated, source,
                                      skip_invalid, bad)
        if table is not None:
            tables.append(table)
            lines.append(numbers)
        first_line += chunk.count(b"\n") + 1
        start = stop + 1
    if not tables:
        raise LogFormatError("no line holds a valid JSON object.", source=source,
                             fix="check the file is JSONL (one JSON object per line).")
    good = np.concatenate(lines)
    return RawTable(_unify(tables), _LazyLines(lambda: good), bad)


def _parse_chunk(
    chunk: bytes,
    first_line: int,
    last_is_cut: bool,
    source: str,
    skip_invalid: bool,
    bad: list[tuple[int, str, str]],
) -> tuple[pa.Table | None, np.ndarray]:
    """Parse whole lines starting at ``first_line``; bad lines raise or go to ``bad``."""
    try:
        table = pa_json.read_json(pa.BufferReader(chunk))
        numbers = _nonblank_lines(chunk, first_line, table.num_rows)
        if table.num_rows == len(numbers):
            return table, numbers
    except pa.ArrowInvalid:
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
            bad.append((first_line + index, problem, text.decode("utf-8", errors="replace")))
        else:
            raise LogFormatError(
                problem, source=source, line=first_line + index,
                fix="the file looks truncated: copy it again completely, or delete the partial "
                "last line (skip_invalid / --skip-invalid sets it aside)." if "cut off" in problem
                else "write one JSON object per line; skip_invalid / --skip-invalid sets bad "
                "lines aside.",
            )
    if not kept:
        return None, np.empty(0, dtype=np.int64)
    try:
        table = pa_json.read_json(pa.BufferReader(b"\n".join(kept)))
    except pa.ArrowInvalid:
        table = _table_from_python([json.loads(text) for text in kept])
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
    try:
        return pc.cast(column, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        text = [None if v is None else json.dumps(v) for v in column.to_pylist()]
        return pa.chunked_array([pa.array(text, pa.string())])


def _json_problem(text: bytes, is_last_unterminated: bool) -> str | None:
    """What is wrong with one JSONL line, or None."""
    try:
        value = json.loads(text)
    except UnicodeDecodeError as error:
        return f"the line is not valid UTF-8 ({error})."
    except ValueError as error:
        if is_last_unterminated:
            return f"the last line is cut off mid-object (invalid JSON: {error})."
        return f"invalid JSON ({error})."
    if not isinstance(value, dict):
        return f"expected a JSON object, found {type(value).__name__} {text[:60]!r}."
    return None


def _table_from_python(rows: list[dict[str, object]]) -> pa.Table:
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
            columns[name] = pa.array(
                [v if v is None or isinstance(v, str) else json.dumps(v) for v in values],
                pa.string(),
            )
    return pa.table(columns)


# --------------------------------------------------------------------------------- CSV
def _read_csv(path: Path, text_columns: list[str], skip_invalid: bool) -> RawTable:
    source = str(path)
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
        undecodable = _decode_error_line(data)
        if undecodable:
            raise LogFormatError(f"the text is not valid UTF-8 ({undecodable[1]}).",
                                 source=source, line=undecodable[0],
                                 fix="save the file as UTF-8.") from error
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


def _odd_quote_count(path: Path) -> bool:
    """Whether the file holds an odd number of double quotes (read in chunks)."""
    count = 0
    try:
        with _stream(path) as stream:
            while chunk := stream.read(1 << 24):
                count += chunk.count(b'"')
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

