"""Converters: third-party logs in, the project's :class:`~allocator.logs.AttemptLog` out.

Each converter (one module per format) turns its source into an Arrow table with the
log's canonical columns; :func:`convert` then runs the shared validation
(:meth:`AttemptLog.from_arrow`) so every format obeys the same rules and reports bad
rows the same way: strict mode raises on the first one, naming the file and line;
``skip_invalid=True`` sets bad rows aside and returns them, each with ``_file``,
``_line`` and ``_reason``.

>>> from allocator.converters import available_formats
>>> available_formats()
['codet', 'lm-eval', 'mot-cascade', 'openai', 'reasoning-gym', 'swe-bench-pro']
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from allocator.converters.base import Converted, Converter, Problem
from allocator.converters.codet import CodeTConverter
from allocator.converters.lm_eval import LmEvalConverter
from allocator.converters.mot_cascade import MotCascadeConverter
from allocator.converters.openai import OpenAIConverter
from allocator.converters.reasoning_gym import ReasoningGymConverter
from allocator.converters.swe_bench_pro import SweBenchProConverter
from allocator.errors import ConverterError, LogFormatError, ParameterError
from allocator.logs import AttemptLog, Rejected

__all__ = ["CONVERTERS", "Converted", "Converter", "available_formats", "convert"]

#: The registry: format name -> converter.
CONVERTERS: dict[str, Converter] = {
    converter.name: converter
    for converter in (
        CodeTConverter(),
        LmEvalConverter(),
        MotCascadeConverter(),
        OpenAIConverter(),
        ReasoningGymConverter(),
        SweBenchProConverter(),
    )
}


def available_formats() -> list[str]:
    """Names of the formats :func:`convert` reads, sorted."""
    return sorted(CONVERTERS)


def convert(
    source: str | os.PathLike[str],
    format: str,
    *,
    skip_invalid: bool = False,
    **options: Any,
) -> tuple[AttemptLog, Rejected]:
    """Convert a third-party log into an :class:`AttemptLog`.

    Args:
        source: the file or folder to read.
        format: one of :func:`available_formats`.
        skip_invalid: set invalid records and rows aside instead of raising.
        **options: the converter's own options (see its class docstring).

    Returns:
        The log and the rows set aside (empty unless ``skip_invalid``); rejected rows
        carry ``_file``, ``_line`` and ``_reason``.

    Raises:
        ParameterError: for an unknown format or option.
        ConverterError: for unreadable input; in strict mode for the first invalid
            record or row, naming its file and line.
    """
    converter = CONVERTERS.get(format)
    if converter is None:
        raise ParameterError("convert", "format", f"one of {available_formats()}", format)
    path = Path(source)
    converted = converter.read(path, skip_invalid=skip_invalid, **options)
    if converted.table.num_rows == 0:
        raise _empty_error(converted, path)
    locator = _Locator(converted)
    try:
        log, rejected = AttemptLog.from_arrow(
            converted.table, source=str(path), locate=locator, skip_invalid=skip_invalid
        )
    except LogFormatError as error:
        raise locator.relocate(error) from error
    return log, _rejected(converted, rejected)


class _Locator:
    """Maps table rows to source lines, remembering the last row it was asked about so
    that an error raised by the shared validation can name the right file."""

    def __init__(self, converted: Converted) -> None:
        self.converted = converted
        self.last_row: int | None = None

    def __call__(self, row: int) -> int:
        self.last_row = row
        return int(self.converted.line[row])

    def relocate(self, error: LogFormatError) -> ConverterError:
        converted, row = self.converted, self.last_row
        source = error.source
        if error.line is not None and row is not None and converted.line[row] == error.line:
            source = converted.files[int(converted.file[row])]
        return ConverterError(error.problem, source=source, line=error.line,
                              column=error.column, fix=error.fix)


def _empty_error(converted: Converted, path: Path) -> ConverterError:
    detail = ""
    if converted.problems:
        first = converted.problems[0]
        detail = (f" {len(converted.problems)} records were set aside; the first, "
                  f"{first.file} line {first.line}: {first.reason}")
    return ConverterError(
        "the source holds no attempts." + detail, source=str(path),
        fix="check the path, the format and the filter options.",
    )


def _rejected(converted: Converted, rejected: Rejected) -> Rejected:
    """Rows rejected by the validation plus records the converter could not read,
    in one table with ``_file``, ``_line`` and ``_reason``."""
    schema = converted.table.schema
    rows = rejected.rows
    if rows.num_rows:
        rows = rows.append_column("_file", _files_of(converted, rows))
    else:
        rows = _empty_rejections(schema)
    if converted.problems:
        rows = pa.concat_tables([rows, _problem_rows(schema, converted.problems)])
    return Rejected(rows)


def _files_of(converted: Converted, rows: pa.Table) -> pa.Array:
    """The source file of each rejected row, found through its attempt id."""
    if len(converted.files) == 1:
        return pa.array([converted.files[0]] * rows.num_rows, pa.string())
    index = pc.index_in(rows.column("attempt_id"), converted.table.column("attempt_id"))
    index = pc.fill_null(index, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    names = [converted.files[int(converted.file[i])] if i >= 0 else None for i in index]
    return pa.array(names, pa.string())


def _empty_rejections(schema: pa.Schema) -> pa.Table:
    return schema.empty_table().append_column("_line", pa.array([], pa.int64())).append_column(
        "_reason", pa.array([], pa.string())).append_column("_file", pa.array([], pa.string()))


def _problem_rows(schema: pa.Schema, problems: list[Problem]) -> pa.Table:
    n = len(problems)
    columns = {f.name: pa.nulls(n, f.type) for f in schema}
    columns["_line"] = pa.array([p.line for p in problems], pa.int64())
    columns["_reason"] = pa.array([p.reason for p in problems], pa.string())
    columns["_file"] = pa.array([p.file for p in problems], pa.string())
    return pa.table(columns)
