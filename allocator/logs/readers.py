"""Generic readers: any flat table of graded attempts (JSONL, CSV, Parquet) becomes a log.

A :class:`ColumnMapping` says which of the file's columns holds each canonical column, so
that a table exported from any evaluation harness loads without code::

    log, rejected = read_attempts(
        "runs.jsonl.gz", mapping=ColumnMapping(query_id="problem", correct="is_correct")
    )

Parsing uses Arrow's multi-threaded readers (a million rows load in about a second). When
Arrow refuses a file, a line-by-line scan finds the first bad line, so that every error
names the file, the user's own line number (JSONL: the physical line; CSV: the line where
the record starts, counting the header and values that span lines) or the column, and how
to fix it. Nothing is silently dropped: with ``skip_invalid`` the rows set aside come back
as :class:`~allocator.logs.table.Rejected` and :func:`write_rejected` saves them.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import os
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from allocator.errors import LogFormatError, ParameterError
from allocator.logs.schema import META_SIMULATED, QUERY_PREFIX, REQUIRED_COLUMNS
from allocator.logs.table import AttemptLog, Rejected
from allocator.logs.validate import RowLocator, find_violations

__all__ = ["FORMATS", "ColumnMapping", "infer_format", "read_attempts", "write_rejected"]

#: File formats :func:`read_attempts` understands.
FORMATS = ("jsonl", "csv", "parquet")

_SUFFIXES = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet",
}
_GZIP_MAGIC = b"\x1f\x8b"
_UTF8_BOM = b"\xef\xbb\xbf"
_ATTEMPT_FIELDS = ("query_id", "arm", "kind", "round", "answer", "correct", "cost", "score",
                   "attempt_id")
_TEXT_FIELDS = ("query_id", "arm", "kind", "answer", "attempt_id", "text")
_CHUNK_BYTES = 1 << 22  # JSONL slow path: Arrow parses 4 MiB of whole lines at a time


@dataclass(frozen=True)
class ColumnMapping:
    """Which column of the source file holds each canonical column.

    Every field names a column of the source file; the defaults are the canonical names,
    so a file that already uses them needs no mapping. ``None`` for an optional column
    means the file has no such column (the documented default applies: one arm, kind
    ``sample``, round 0, cost 1, no score, attempts numbered in file order, no text).

    Attributes:
        query_id: the query identifier (required).
        arm: the generator (model, prompt, temperature...) that produced the attempt.
        kind: ``sample``, ``refine`` or ``verify``.
        round: the refinement round.
        answer: the extracted final answer (attempts vote on it; empty = no answer).
        correct: the grade, 0/1, true/false or a score in [0, 1] (required).
        cost: what the attempt cost (tokens, dollars, turns).
        score: a verifier or confidence score.
        attempt_id: a unique attempt identifier.
        text: the query text (query-level: the same on every attempt of a query).
        metadata: further query-level columns, stored as ``query.<name>``.
    """

    query_id: str = "query_id"
    arm: str | None = "arm"
    kind: str | None = "kind"
    round: str | None = "round"
    answer: str = "answer"
    correct: str = "correct"
    cost: str | None = "cost"
    score: str | None = "score"
    attempt_id: str | None = "attempt_id"
    text: str | None = "text"
    metadata: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for name in (*_ATTEMPT_FIELDS, "text"):
            value = getattr(self, name)
            if value is None and name in REQUIRED_COLUMNS:
                raise ParameterError("ColumnMapping", name, "a column name (required)", None)
            if value is not None and (not isinstance(value, str) or not value):
                raise ParameterError("ColumnMapping", name, "a non-empty column name", value)
        if isinstance(self.metadata, str):
            object.__setattr__(self, "metadata", (self.metadata,))
        object.__setattr__(self, "metadata", tuple(self.metadata))
        for name in self.metadata:
            if not isinstance(name, str) or not name:
                raise ParameterError("ColumnMapping", "metadata", "non-empty column names",
                                     self.metadata)

    @classmethod
    def from_dict(
        cls, mapping: Mapping[str, object], *, source: str | None = None
    ) -> ColumnMapping:
        """Build a mapping from ``{canonical name: source column}``.

        Raises:
            LogFormatError: if a key is not a canonical column.
        """
        known = [f.name for f in fields(cls)]
        for target in mapping:
            if target not in known:
                raise LogFormatError(
                    f"unknown mapping target {target!r} (targets: {known}).", source=source,
                    column=str(target), fix="map onto one of the canonical column names.",
                )
        return cls(**mapping)  # type: ignore[arg-type]

    def pairs(self) -> list[tuple[str, str]]:
        """``(output column, source column)`` for every mapped column, text included."""
        out = [(name, getattr(self, name)) for name in _ATTEMPT_FIELDS]
        out.append((QUERY_PREFIX + "text", self.text))
        out += [(QUERY_PREFIX + name, name) for name in self.metadata]
        return [(target, src) for target, src in out if src is not None]

    def is_default(self, target: str) -> bool:
        """Whether the column of ``target`` (an output column) is left at its default."""
        name = target[len(QUERY_PREFIX):] if target == QUERY_PREFIX + "text" else target
        if name not in _ATTEMPT_FIELDS and name != "text":
            return False
        return getattr(self, name) == next(f.default for f in fields(self) if f.name == name)

    def text_columns(self) -> list[str]:
        """Source columns that must be read as text (ids, answers), never as numbers."""
        return [src for src in (getattr(self, n) for n in _TEXT_FIELDS) if src is not None]


@dataclass
class _Raw:
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


# ----------------------------------------------------------------------------- public API
def infer_format(path: str | os.PathLike[str]) -> str:
    """The format of a file from its suffix (``.gz`` is looked through).

    Raises:
        LogFormatError: for an unknown suffix.
    """
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in _SUFFIXES:
        return _SUFFIXES[suffixes[-1]]
    raise LogFormatError(
        f"cannot tell the file format from the name (suffixes {suffixes}).", source=str(path),
        fix=f"name the file .jsonl/.ndjson, .csv (optionally .gz) or .parquet, or pass "
        f"file_format= one of {list(FORMATS)}.",
    )


def read_attempts(
    path: str | os.PathLike[str],
    *,
    file_format: str | None = None,
    mapping: ColumnMapping | None = None,
    queries: str | os.PathLike[str] | None = None,
    skip_invalid: bool = False,
) -> tuple[AttemptLog, Rejected]:
    """Read a flat table of graded attempts into a log.

    Args:
        path: the attempt file (JSONL, CSV, Parquet; JSONL and CSV may be gzipped).
        file_format: ``"jsonl"``, ``"csv"`` or ``"parquet"``; inferred from the suffix.
        mapping: which source columns hold the canonical columns (defaults: same names).
        queries: an optional query table file (``query_id``, ``text``, metadata columns),
            in any of the formats; every listed query must have attempts.
        skip_invalid: set invalid rows aside (returned, see :func:`write_rejected`)
            instead of raising on the first one.

    Returns:
        The log and the rejected rows (empty unless ``skip_invalid``).

    Raises:
        LogFormatError: naming the file, the line or column, and the fix.
    """
    path, mapping = Path(path), mapping or ColumnMapping()
    source = str(path)
    raw = _read_file(path, file_format, mapping.text_columns(), skip_invalid)
    table, deferred = _apply_mapping(raw.table, mapping, source, queries is not None)
    locate, early = raw.locate, [_parse_rejects(raw.rejected)]
    query_table = None
    if queries is not None:
        query_table, qlocate = _read_query_table(Path(queries), mapping, deferred, raw.table)
        table, locate, query_table, linked = _link_queries(
            table, locate, query_table, qlocate, source, str(queries), skip_invalid
        )
        early += [_restore_names(t, mapping) for t in linked]
    try:
        log, rejected = AttemptLog.from_arrow(
            table, query_table, source=source, locate=locate, skip_invalid=skip_invalid,
            simulated=raw.simulated,
        )
    except LogFormatError as error:
        raise _in_user_terms(error, mapping) from error
    return log, _merge_rejected([*early, _restore_names(rejected.rows, mapping)])


def write_rejected(rejected: Rejected, path: str | os.PathLike[str]) -> Path:
    """Write rejected rows as JSONL (one object per row, with ``_line`` and ``_reason``).

    Non-finite numbers are written as the strings ``"nan"``/``"inf"`` so the file stays
    valid JSON; bytes and other non-JSON values as their text.
    """
    path = Path(path)
    with path.open("w", encoding="utf-8") as out:
        for row in rejected.rows.to_pylist():
            out.write(json.dumps({k: _jsonable(v) for k, v in row.items()}, default=str))
            out.write("\n")
    return path


def _jsonable(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


# ------------------------------------------------------------------------- raw reading
def _read_file(
    path: Path, file_format: str | None, text_columns: list[str], skip_invalid: bool
) -> _Raw:
    fmt = file_format or infer_format(path)
    if fmt not in FORMATS:
        raise ParameterError("read_attempts", "file_format", f"one of {list(FORMATS)}", fmt)
    if not path.is_file():
        raise LogFormatError("no such file.", source=str(path), fix="check the path.")
    if fmt == "parquet":
        raw = _read_parquet(path)
    elif fmt == "jsonl":
        raw = _read_jsonl(path, skip_invalid)
    else:
        raw = _read_csv(path, text_columns, skip_invalid)
    # Parsers leave freed blocks cached in Arrow's pool; returning them keeps the peak
    # while the log is built lower (about 200 MB for a million JSONL rows).
    pa.default_memory_pool().release_unused()
    return raw


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
        raise LogFormatError("the file is empty.", source=str(path),
                             fix="check the path, and that the export that wrote it finished.")
    return data


def _read_parquet(path: Path) -> _Raw:
    if path.stat().st_size == 0:
        raise LogFormatError("the file is empty.", source=str(path),
                             fix="check the path, and that the export that wrote it finished.")
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
    return _Raw(table, lambda row: row + 1, [], simulated)


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


# ------------------------------------------------------------------------------- JSONL
def _read_jsonl(path: Path, skip_invalid: bool) -> _Raw:
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
    return _Raw(table, _LazyLines(lambda: _jsonl_lines(_read_bytes(path), n_rows, str(path))),
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


def _read_jsonl_slowly(data: bytes, source: str, skip_invalid: bool) -> _Raw:
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
    return _Raw(_unify(tables), _LazyLines(lambda: good), bad)


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
def _read_csv(path: Path, text_columns: list[str], skip_invalid: bool) -> _Raw:
    source = str(path)
    if _odd_quote_count(path):
        _check_quotes(_read_bytes(path), source)
    invalid: list[str] = []

    def on_invalid(row: pa_csv.InvalidRow) -> str:
        invalid.append(row.text)
        return "skip"

    try:
        stream = _stream(path)
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
    finally:
        stream.close()
    _check_header(table, source)
    if not invalid:
        n_rows = table.num_rows
        return _Raw(table, _LazyLines(lambda: _csv_lines(_read_bytes(path), n_rows)), [])
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
    return _Raw(table, _LazyLines(lambda: lines), rejects)


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


def _check_header(table: pa.Table, source: str) -> None:
    names = table.column_names
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise LogFormatError(
            f"the header names columns {repeated} more than once.", source=source, line=1,
            column=repeated[0], fix="give every column a distinct name.",
        )


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


# ---------------------------------------------------------------------------- mapping
def _apply_mapping(
    table: pa.Table, mapping: ColumnMapping, source: str, has_query_table: bool
) -> tuple[pa.Table, list[str]]:
    """Rename the source columns to canonical ones; unmapped columns ride along.

    Returns the table and the mapped query-level columns left for the query table to
    hold (only when there is one).
    """
    present = table.column_names
    _check_header(table, source)
    columns: dict[str, pa.ChunkedArray] = {}
    used: set[str] = set()
    deferred: list[str] = []
    for target, src in mapping.pairs():
        if src in present:
            columns[target] = table.column(src)
            used.add(src)
        elif has_query_table and target.startswith(QUERY_PREFIX):
            deferred.append(src)
        elif target in REQUIRED_COLUMNS or not mapping.is_default(target):
            raise _missing_column(target, src, present, source)
    for name in present:
        if name in used:
            continue
        if name in _ATTEMPT_FIELDS or name in columns:
            raise _collision(name, mapping, present, source)
        columns[name] = table.column(name)
    if table.num_rows == 0:
        raise LogFormatError("the file holds column names but no rows.", source=source,
                             fix="check the export that wrote it finished.")
    answer = columns["answer"]
    is_text = pa.types.is_string(answer.type) or pa.types.is_large_string(answer.type)
    if is_text and pc.any(pc.equal(answer, "")).as_py():
        columns["answer"] = pc.if_else(pc.equal(answer, ""), None, answer)
    return pa.table(columns), deferred


def _collision(
    name: str, mapping: ColumnMapping, present: list[str], source: str
) -> LogFormatError:
    """A column that has a canonical name but is not the one the mapping reads."""
    mapped = getattr(mapping, name, None) if name in _ATTEMPT_FIELDS else None
    if name in _ATTEMPT_FIELDS:
        said = (f"the mapping reads {name!r} from column {mapped!r}" if mapped
                else f"the mapping says the file has no {name!r} column")
    else:
        said = f"column {name!r} is also produced by the mapping"
    return LogFormatError(
        f"column {name!r} has a canonical name, but {said} (columns present: {present}).",
        source=source, column=name,
        fix=f"rename or drop column {name!r}, or map {name!r} to it.",
    )


def _missing_column(target: str, src: str, present: list[str], source: str) -> LogFormatError:
    name = target[len(QUERY_PREFIX):] if target.startswith(QUERY_PREFIX) else target
    via = "" if src == target else f" (mapped to {target!r})"
    if name in REQUIRED_COLUMNS:
        fix = (f"name the column {name!r}, or map yours: "
               f"ColumnMapping({name}='<your column>') / --{name.split('_')[0]}-col.")
    elif target.startswith(QUERY_PREFIX) and name != "text":
        fix = f"remove {name!r} from the metadata columns, or add the column."
    else:
        fix = f"correct the mapping, or set {name}=None if the file has no such column."
    return LogFormatError(
        f"column {src!r}{via} is not in the file (columns present: {present}).",
        source=source, column=src, fix=fix,
    )


def _in_user_terms(error: LogFormatError, mapping: ColumnMapping) -> LogFormatError:
    """Re-word an error about a canonical column in terms of the user's column name."""
    names = dict(mapping.pairs())
    column = error.column
    if column is None or column not in names or names[column] == column:
        return error
    problem = f"{error.problem} (column {names[column]!r} is read as {column!r}.)"
    fix = error.fix
    if column.startswith(QUERY_PREFIX):
        fix = (f"{names[column]!r} is read as a query-level column, the same for every attempt "
               f"of a query; if it varies per attempt, leave it out of the mapping"
               + (" (text=None)." if column == QUERY_PREFIX + "text" else "."))
    return type(error)(problem, source=error.source, line=error.line, column=names[column],
                       fix=fix)


def _restore_names(rows: pa.Table, mapping: ColumnMapping) -> pa.Table:
    """Rejected rows under the user's column names (so they can be fixed and re-read)."""
    names = dict(mapping.pairs())
    renamed = [names.get(n, n) for n in rows.column_names]
    if len(set(renamed)) != len(renamed):
        return rows
    return rows.rename_columns(renamed)


# ----------------------------------------------------------------------- query table
def _read_query_table(
    path: Path, mapping: ColumnMapping, deferred: list[str], attempts: pa.Table
) -> tuple[pa.Table, RowLocator]:
    """The query table with ``query_id`` and ``text`` named canonically; every other
    column is query metadata."""
    raw = _read_file(path, None, [c for c in (mapping.query_id, mapping.text) if c], False)
    table, present = raw.table, raw.table.column_names
    _check_header(table, str(path))
    renames = {mapping.query_id: "query_id"}
    if mapping.text:
        renames[mapping.text] = "text"
    if mapping.query_id not in present:
        raise _missing_column("query_id", mapping.query_id, present, str(path))
    for src in deferred:
        if src not in present:
            target = QUERY_PREFIX + ("text" if src == mapping.text else src)
            raise _missing_column(target, src, sorted({*present, *attempts.column_names}),
                                  f"{path} (nor in the attempts)")
    table = table.rename_columns([renames.get(n, n) for n in present])
    return table, raw.locate


def _link_queries(
    table: pa.Table,
    locate: RowLocator,
    queries: pa.Table,
    qlocate: RowLocator,
    source: str,
    qsource: str,
    skip_invalid: bool,
) -> tuple[pa.Table, RowLocator, pa.Table, list[pa.Table]]:
    """Check attempts and the query table agree.

    Strict, the first disagreement raises. With ``skip_invalid``, attempts of unknown
    queries are set aside, and so are queries whose every attempt is invalid.

    Returns:
        The attempts and their locator, the query table, and the rows set aside.
    """
    qids = queries.column("query_id").cast(pa.string())
    if qids.null_count:
        row = int(np.flatnonzero(_mask(qids.is_null()))[0])
        raise LogFormatError("the query id is empty.", source=qsource, line=qlocate(row),
                             column="query_id", fix="give every query in the query table an id.")
    codes = pc.dictionary_encode(pc.fill_null(qids, "\x00")).combine_chunks().indices
    _, first, counts = np.unique(codes.to_numpy(zero_copy_only=False), return_index=True,
                                 return_counts=True)
    if (counts > 1).any():
        row = int(np.sort(np.setdiff1d(np.arange(len(qids)), first))[0])
        raise LogFormatError(f"query {qids[row].as_py()!r} is listed twice.", source=qsource,
                             line=qlocate(row), column="query_id", fix="keep one row per query.")
    ids = table.column("query_id").cast(pa.string())
    unknown = _mask(pc.invert(pc.fill_null(pc.is_in(ids, qids), True)))
    rejected: list[pa.Table] = []
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        if not skip_invalid:
            raise LogFormatError(
                f"query {ids[row].as_py()!r} has attempts but no row in the query table "
                f"{qsource} ({int(unknown.sum())} such attempts).", source=source,
                line=locate(row), column="query_id",
                fix="add the query to the query table, or drop its attempts.")
        rows = np.flatnonzero(unknown)
        rejected.append(_with_reasons(table.take(pa.array(rows)), [locate(int(r)) for r in rows],
                                      f"query_id: not in the query table {qsource}."))
        kept = np.flatnonzero(~unknown)
        table = table.take(pa.array(kept))
        locate = _compose(locate, kept)
        ids = table.column("query_id").cast(pa.string())
    surviving = ids
    if skip_invalid:
        bad = np.zeros(table.num_rows, dtype=bool)
        for violation in find_violations(table):
            bad[violation.rows] = True
        surviving = ids.filter(pa.array(~bad))
    empty = _mask(pc.invert(pc.is_in(qids, surviving)))
    if empty.any():
        row = int(np.flatnonzero(empty)[0])
        if not skip_invalid:
            raise LogFormatError(
                f"query {qids[row].as_py()!r} has an empty pool: the query table lists it but "
                f"no attempt in {source} belongs to it ({int(empty.sum())} such queries).",
                source=qsource, line=qlocate(row), column="query_id",
                fix="add its attempts, or remove it from the query table.")
        rows = np.flatnonzero(empty)
        rejected.append(_with_reasons(
            queries.take(pa.array(rows)), [None] * len(rows),
            f"query table {qsource}: every attempt of this query was rejected, so its pool "
            f"is empty; the query is left out."))
        queries = queries.filter(pa.array(~empty))
    return table, locate, queries, rejected


def _mask(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=bool)


def _compose(locate: RowLocator, kept: np.ndarray) -> RowLocator:
    return lambda row: locate(int(kept[row]))


def _with_reasons(rows: pa.Table, lines: list[int | None], reason: str) -> pa.Table:
    return rows.append_column("_line", pa.array(lines, pa.int64())).append_column(
        "_reason", pa.array([reason] * rows.num_rows, pa.string()))


def _parse_rejects(rejected: list[tuple[int, str, str]]) -> pa.Table:
    return pa.table({
        "_line": pa.array([r[0] for r in rejected], pa.int64()),
        "_reason": pa.array([r[1] for r in rejected], pa.string()),
        "_raw": pa.array([r[2] for r in rejected], pa.string()),
    })


def _merge_rejected(tables: list[pa.Table]) -> Rejected:
    """One table of every rejected row, ordered by line (query-table rows last)."""
    tables = [t for t in tables if t.num_rows] or tables[-1:]
    types: dict[str, set[pa.DataType]] = {}
    for table in tables:
        for name, kind in zip(table.column_names, table.schema.types, strict=True):
            types.setdefault(name, set()).add(kind)
    mixed = {name for name, kinds in types.items() if len(kinds - {pa.null()}) > 1}
    tables = [_as_text(t, mixed) for t in tables]
    merged = pa.concat_tables(tables, promote_options="permissive")
    if "_line" not in merged.column_names:
        return Rejected(merged)
    lines = merged.column("_line").to_numpy(zero_copy_only=False).astype(np.float64)
    merged = merged.take(pa.array(np.argsort(lines, kind="stable")))  # unknown lines last
    tail = [n for n in ("_line", "_reason", "_raw") if n in merged.column_names]
    return Rejected(merged.select([n for n in merged.column_names if n not in tail] + tail))


def _as_text(table: pa.Table, names: set[str]) -> pa.Table:
    """Turn the named columns into text (rejected rows from different sources)."""
    for name in names & set(table.column_names):
        values = table.column(name).to_pylist()
        text = pa.array([None if v is None else str(v) for v in values], pa.string())
        table = table.set_column(table.column_names.index(name), name, text)
    return table
