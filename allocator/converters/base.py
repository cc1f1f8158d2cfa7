"""What every converter shares: the :class:`Converter` base, the result it hands to
:func:`allocator.converters.convert`, readers and answer normalisation.

Readers are gzip-aware by content (the ``1f 8b`` magic bytes), not by file name, and
report a truncated gzip stream as such.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json

from allocator.errors import ConverterError, ParameterError
from allocator.logs._formats import (  # the JSON nesting guard every reader shares
    MAX_JSON_DEPTH,
    _count_openers,
    _guard_lines,
    _nesting_depth,
    _Unsafe,
)

__all__ = [
    "Converted",
    "Converter",
    "Problem",
    "answers_match",
    "as_name_set",
    "extract_final_answer",
    "normalize_answer",
    "normalize_target",
    "read_bytes",
    "read_csv_table",
    "read_json_records",
    "read_jsonl_table",
    "refuse_unknown",
    "require_columns",
]

_GZIP_MAGIC = b"\x1f\x8b"
_JSON_FIX = "repair or remove the line (a file cut short by a failed copy often ends mid-line)."


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Problem:
    """A record that could not become an attempt (set aside with ``skip_invalid``).

    Attributes:
        file: the file that holds it.
        line: its 1-based line (for a JSON array: the line where the element starts).
        reason: what is wrong, in words.
    """

    file: str
    line: int
    reason: str


@dataclass
class Converted:
    """A converter's output: the attempt table plus where every row came from.

    Attributes:
        table: canonical columns (``attempt_id`` always present and unique), ``query.*``
            columns and extras.
        files: the files read, as the user should see them.
        file: index into ``files`` of every row, shape (rows,).
        line: 1-based line in that file of every row, shape (rows,).
        problems: records that never became rows (only with ``skip_invalid``).
    """

    table: pa.Table
    files: tuple[str, ...]
    file: np.ndarray
    line: np.ndarray
    problems: list[Problem] = field(default_factory=list)

    @classmethod
    def single(
        cls, table: pa.Table, path: Path, line: np.ndarray, problems: list[Problem]
    ) -> Converted:
        """A result read from one file."""
        return cls(table, (str(path),), np.zeros(table.num_rows, np.int32),
                   np.asarray(line, np.int64), problems)


# ------------------------------------------------------------------------- the base
class Converter(ABC):
    """Turns one third-party log format into the project's attempt table.

    A converter turns a third-party file (or folder) into one Arrow table with the log's
    canonical column names (``attempt_id, query_id, arm, kind, round, answer, correct, cost,
    score``), query-level columns prefixed ``query.`` and any extra per-attempt columns worth
    keeping. It does not validate grades or costs itself: invalid values ride along and are
    rejected (or reported, with ``skip_invalid``) by :meth:`AttemptLog.from_arrow`, so the
    rules live in one place. What a converter does report itself is what never becomes a row:
    a line that is not JSON, a record without the fields that identify an attempt. Such
    records raise :class:`~allocator.errors.ConverterError` naming the file and line, or, with
    ``skip_invalid``, come back as :class:`Problem` entries that end up among the rejected
    rows. Nothing is dropped silently.

    Subclasses set :attr:`name` (the format's registry key) and :attr:`description`
    (one line), and implement :meth:`_read` with their options as keyword-only
    arguments (documented in the subclass). Options arrive by name from the Python API
    or the command line, so list-valued options also accept a comma-separated string.

    Subclasses document their source format (``Source format``), its mapping to the log's
    columns (``Mapping:``) and their options (``Options:``) in the class docstring.
    """

    name: ClassVar[str]
    description: ClassVar[str]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    @property
    def options(self) -> tuple[str, ...]:
        """Names of the options :meth:`read` accepts."""
        parameters = inspect.signature(self._read).parameters
        return tuple(name for name in parameters if name not in ("source", "skip_invalid"))

    def read(self, source: Path, *, skip_invalid: bool = False, **options: Any) -> Converted:
        """Read ``source`` into a :class:`Converted` table.

        Raises:
            ParameterError: for an option this converter does not know.
            ConverterError: for unreadable input (always for a truncated or missing file;
                for a bad record unless ``skip_invalid``).
        """
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ParameterError(
                f"converter {self.name!r}", unknown[0],
                f"one of {list(self.options)}" if self.options else "absent (no options)",
                options[unknown[0]],
            )
        source = Path(source)
        if not source.exists():
            raise ConverterError("no such file or folder.", source=str(source),
                                 fix="check the path (relative paths start at the "
                                     "current directory).")
        return self._read(source, skip_invalid=skip_invalid, **options)

    def to_arrow(self, source: Path, **options: Any) -> pa.Table:
        """The attempt table of ``source`` (strict: the first bad record raises)."""
        return self.read(source, **options).table

    @abstractmethod
    def _read(self, source: Path, *, skip_invalid: bool, **options: Any) -> Converted:
        """Read ``source``; the subclass declares its options as keyword arguments."""


def as_name_set(value: str | Iterable[str] | None, owner: str, parameter: str) -> set[str] | None:
    """A filter option as a set of names (``None`` = no filter).

    Accepts an iterable of strings or one comma-separated string.
    """
    if value is None:
        return None
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [str(name).strip() for name in names if str(name).strip()]
    if not names:
        raise ParameterError(owner, parameter, "a non-empty list of names", value)
    return set(names)


def refuse_unknown(
    chosen: set[str] | None, known: Iterable[str], owner: str, parameter: str
) -> None:
    """Raise if a filter names a value the source does not have (a likely typo)."""
    if chosen is None:
        return
    known = set(known)
    missing = sorted(chosen - known)
    if missing:
        raise ParameterError(owner, parameter, f"names from {sorted(known)}", missing)


# -------------------------------------------------------------------------- reading
def read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when it is gzip (judged by content).

    Raises:
        ConverterError: if the gzip stream is truncated or corrupt.
    """
    with open(path, "rb") as handle:
        magic = handle.read(2)
    if magic != _GZIP_MAGIC:
        return path.read_bytes()
    try:
        with pa.input_stream(str(path), compression="gzip") as stream:
            return stream.read()
    except (OSError, pa.ArrowInvalid) as error:
        raise ConverterError(
            f"the gzip stream is truncated or corrupt ({error}).", source=str(path),
            fix="copy or download the file again; `gzip -t FILE` checks a gzip file.",
        ) from error


def _decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ConverterError(
            f"the file is not UTF-8 text (byte {error.start}).", source=str(path), line=line,
            fix="save the file as UTF-8 (JSON files must be UTF-8).",
        ) from error


def read_json_records(
    path: Path, *, skip_invalid: bool
) -> tuple[list[tuple[int, Any]], list[Problem]]:
    """The records of a JSON Lines file or of a JSON array, with their line numbers.

    A file whose first non-blank character is ``[`` is read as one JSON array (each
    element's line is the line where it starts); anything else as JSON Lines (blank
    lines skipped). Records are returned as parsed (objects, lists, ...).

    Returns:
        ``[(line, record), ...]`` and the lines that were not JSON (only with
        ``skip_invalid``; otherwise the first bad line raises).
    """
    text = _decode(read_bytes(path), path)
    stripped = text.lstrip()
    if stripped.startswith("["):
        return _array_records(text, path), []
    records: list[tuple[int, Any]] = []
    problems: list[Problem] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            records.append((number, _loads_line(raw)))
        except (json.JSONDecodeError, _TooDeep) as error:
            problem = (str(error) if isinstance(error, _TooDeep)
                       else f"invalid JSON ({error.msg} at column {error.colno}).")
            if not skip_invalid:
                raise ConverterError(problem, source=str(path), line=number,
                                     fix=_DEEP_FIX if isinstance(error, _TooDeep)
                                     else _JSON_FIX) from None
            problems.append(Problem(str(path), number, problem))
    return records, problems


class _TooDeep(ValueError):
    """A JSON value nested deeper than :data:`MAX_JSON_DEPTH` (the message says how deep)."""


_DEEP_FIX = "write records as flat objects: store a deep structure as a string, or drop it."


def _loads_line(raw: str) -> Any:
    """One JSON value, refused (:class:`_TooDeep`) when nested deeper than
    :data:`MAX_JSON_DEPTH` (Python's parser would raise RecursionError, Arrow's crash)."""
    data = raw.encode("utf-8", errors="surrogatepass")
    if _count_openers(data, 0, len(data)) >= MAX_JSON_DEPTH:
        depth = _nesting_depth(data)
        if depth > MAX_JSON_DEPTH:
            raise _TooDeep(f"the JSON is nested {depth} levels deep (at most "
                           f"{MAX_JSON_DEPTH} are read).")
    try:
        return json.loads(raw)
    except RecursionError:
        raise _TooDeep(f"the JSON is nested too deep to read (at most {MAX_JSON_DEPTH} "
                       "levels).") from None


def _array_records(text: str, path: Path) -> list[tuple[int, Any]]:
    """Elements of a JSON array, each with the line it starts on."""
    try:
        json.loads(text)
    except RecursionError:
        pass  # the element nested too deep is named below
    except json.JSONDecodeError as error:
        raise ConverterError(
            f"invalid JSON ({error.msg} at column {error.colno}).", source=str(path),
            line=error.lineno, fix="repair the file; a JSON array is valid only as a whole "
                                   "(a truncated copy cannot be read).",
        ) from None
    decoder = json.JSONDecoder()
    records: list[tuple[int, Any]] = []
    position, line, counted = text.index("[") + 1, 1, 0
    whitespace = re.compile(r"[\s,]*")
    while True:
        position = whitespace.match(text, position).end()
        if text[position] == "]":
            return records
        line += text.count("\n", counted, position)
        counted = position
        try:
            value, position = decoder.raw_decode(text, position)
        except RecursionError:
            raise ConverterError(f"the JSON is nested too deep to read (at most "
                                 f"{MAX_JSON_DEPTH} levels).", source=str(path), line=line,
                                 fix=_DEEP_FIX) from None
        records.append((line, value))


def read_jsonl_table(
    path: Path, *, skip_invalid: bool
) -> tuple[pa.Table, np.ndarray, list[Problem]]:
    """A flat JSON Lines file as an Arrow table, fast (Arrow's JSON reader).

    When Arrow cannot read the file (a bad line, a field whose type changes between
    lines) the lines are parsed one by one to name the bad line; with ``skip_invalid``
    bad lines become problems and the rest is read. Fields whose JSON type varies
    between lines are turned into text (JSON for non-strings).

    Returns:
        The table, the 1-based line of every row, and the problems.
    """
    data = read_bytes(path)
    try:
        _guard_lines(data, 0)  # a line that may nest too deep never reaches Arrow
        table = pa_json.read_json(pa.BufferReader(data))
    except (pa.ArrowInvalid, _Unsafe):
        table = None
    if table is not None and table.num_rows:
        if table.num_rows == data.count(b"\n") + (not data.endswith(b"\n")):  # no blank line
            return table, np.arange(1, table.num_rows + 1, dtype=np.int64), []
        lines = _content_lines(data)
        if table.num_rows == len(lines):
            return table, lines, []
    records, problems = read_json_records(path, skip_invalid=skip_invalid)
    if not records:
        raise ConverterError(
            "the file holds no readable records"
            + (f" (first problem: line {problems[0].line}: {problems[0].reason})"
               if problems else "") + ".",
            source=str(path), fix="check this is the right file and that it is not empty.",
        )
    objects = [(number, record) for number, record in records if isinstance(record, dict)]
    for number, record in records:
        if not isinstance(record, dict):
            problem = f"expected a JSON object, found {type(record).__name__}."
            if not skip_invalid:
                raise ConverterError(problem, source=str(path), line=number,
                                     fix="write one JSON object per line.")
            problems.append(Problem(str(path), number, problem))
    table = _table_from_records([record for _, record in objects])
    return table, np.array([number for number, _ in objects], np.int64), problems


def _content_lines(data: bytes) -> np.ndarray:
    """1-based numbers of the lines that hold something (Arrow skips blank lines)."""
    newlines = np.flatnonzero(np.frombuffer(data, np.uint8) == ord("\n"))
    starts = np.concatenate([[0], newlines + 1])
    ends = np.concatenate([newlines, [len(data)]])
    keep = ends > starts
    for line in np.flatnonzero(keep & (ends - starts < 64)):
        keep[line] = bool(data[starts[line]:ends[line]].strip())
    return np.flatnonzero(keep).astype(np.int64) + 1


def _table_from_records(records: list[dict[str, Any]]) -> pa.Table:
    """Python dicts as a table; a key whose values mix JSON types becomes text."""
    names: dict[str, set[type]] = {}
    for record in records:
        for key, value in record.items():
            kind = float if isinstance(value, int) and not isinstance(value, bool) else type(value)
            names.setdefault(key, set()).add(kind)
    columns = {}
    for key, kinds in names.items():
        values = [record.get(key) for record in records]
        kinds.discard(type(None))
        if len(kinds) > 1:
            values = [v if v is None or isinstance(v, str) else json.dumps(v) for v in values]
        columns[key] = pa.array(values)
    return pa.table(columns) if columns else pa.table({"_empty": pa.nulls(len(records))})


def read_csv_table(path: Path) -> pa.Table:
    """A CSV file (gzip-aware) as an Arrow table; row ``r`` is line ``r + 2`` unless
    quoted cells hold line breaks (they are read correctly, but shift the lines).

    Raises:
        ConverterError: if the file cannot be parsed (the message names the row Arrow
            reports).
    """
    data = read_bytes(path)
    try:
        return pa_csv.read_csv(pa.BufferReader(data),
                               parse_options=pa_csv.ParseOptions(newlines_in_values=True))
    except pa.ArrowInvalid as error:
        raise ConverterError(
            f"cannot parse the CSV ({error}).", source=str(path),
            fix="check the quoting and the number of fields on the reported row.",
        ) from error


def require_columns(table: pa.Table, needed: Iterable[str], path: Path, hint: str) -> None:
    """Raise if the table lacks a column the converter needs."""
    missing = [name for name in needed if name not in table.column_names]
    if missing:
        raise ConverterError(
            f"missing field {missing[0]!r} (fields present: {sorted(table.column_names)}).",
            source=str(path), column=missing[0], fix=hint,
        )


# ------------------------------------------------------------------- answer handling
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?")
_NUMBER_IN_TEXT = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_ANSWER_IS = re.compile(r"(?:final\s+)?answer\s*(?:is|:)\s*:?\s*([^\n]+)", re.IGNORECASE)
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm)\{([^{}]*)\}")


def normalize_answer(text: object) -> str | None:
    """A canonical form of a final answer, so that equal answers vote together.

    Rules, in order: ``None`` and blank text give ``None`` (no answer); LaTeX ``\\text{}``
    wrappers, surrounding ``$``, ``\\(``/``\\)``, quotes and a trailing period are
    removed; a number (thousands commas, a leading ``$`` or a trailing ``%`` allowed)
    becomes its shortest decimal form (``"1,000.0"`` -> ``"1000"``, ``"0.50"`` ->
    ``"0.5"``); any other text is lower-cased with whitespace runs collapsed.
    """
    if text is None:
        return None
    if isinstance(text, bool):
        text = str(text)
    if isinstance(text, (int, float)):
        return _canonical_number(float(text))
    value = _TEXT_WRAPPER.sub(r"\1", str(text)).strip()
    for opening, closing in (("\\(", "\\)"), ("$", "$"), ('"', '"'), ("'", "'")):
        if len(value) >= 2 and value.startswith(opening) and value.endswith(closing):
            value = value[len(opening):-len(closing)].strip()
    value = value.rstrip(".").strip()
    number = value.lstrip("$").rstrip("%").strip()
    if number and _NUMBER.fullmatch(number) and any(c.isdigit() for c in number):
        return _canonical_number(float(number.replace(",", "")))
    value = " ".join(value.lower().split())
    return value or None


def _canonical_number(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def extract_final_answer(text: str | None) -> str | None:
    """The final answer stated in a free-text response, normalised; ``None`` if none.

    Looks, in order, for the last ``\\boxed{...}`` (braces balanced), the text after
    the last ``####`` (GSM8K style), the last "The answer is X" / "Answer: X" (the first
    number in X if it has one, else X), and finally the last number in the text.
    """
    if not text:
        return None
    boxed = _last_boxed(text)
    if boxed is not None:
        return normalize_answer(boxed)
    if "####" in text:
        tail = text.rsplit("####", 1)[1].strip().split("\n", 1)[0]
        if tail:
            return normalize_answer(tail)
    stated = _ANSWER_IS.findall(text)
    if stated:
        phrase = stated[-1].strip()
        number = _NUMBER_IN_TEXT.search(phrase)
        if number:
            return normalize_answer(number.group())
        return normalize_answer(phrase.strip(" ()[]*."))
    numbers = _NUMBER_IN_TEXT.findall(text)
    return normalize_answer(numbers[-1]) if numbers else None


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    position, depth = start + len("\\boxed{"), 1
    for index in range(position, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[position:index]
    return None


def normalize_target(value: object) -> str | None:
    """A gold answer in the form :func:`normalize_answer` gives; for a worked solution
    in GSM8K style (``"... #### 18"``) the part after the last ``####``."""
    if isinstance(value, str) and "####" in value:
        value = value.rsplit("####", 1)[1]
    return normalize_answer(value)


def answers_match(answer: str | None, target: str | None, rel_tol: float = 1e-6) -> bool:
    """Whether a normalised answer equals a normalised target (numbers within ``rel_tol``)."""
    if answer is None or target is None:
        return False
    if answer == target:
        return True
    try:
        return math.isclose(float(answer), float(target), rel_tol=rel_tol)
    except ValueError:
        return False
