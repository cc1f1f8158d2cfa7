"""Converter for CodeT's HumanEval samples (microsoft/CodeT, CodeGen-16B, 100 per problem).

:class:`CodeTConverter` (registered as ``codet``) documents the source format and its
mapping to the log's columns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from allocator.converters.base import (
    Converted,
    Converter,
    read_jsonl_table,
    require_columns,
)
from allocator.errors import ConverterError

__all__ = ["CodeTConverter"]

_SAMPLES = "samples.jsonl.gz"
_PROBLEMS = "problems.jsonl.gz"
_NEEDED = ("task_id", "sample_idx", "completion", "passed", "completion_chars")


def _normalise_code(column: pa.ChunkedArray) -> pa.ChunkedArray:
    collapsed = pc.replace_substring_regex(column.cast(pa.string()), r"\s+", " ")
    return pc.utf8_trim_whitespace(collapsed)


def _problem_columns(path: Path, task_ids: pa.ChunkedArray) -> dict[str, pa.Array]:
    """``query.text`` and ``query.entry_point`` per row, from the problems file."""
    problems, _, _ = read_jsonl_table(path, skip_invalid=False)
    require_columns(problems, ("task_id", "prompt"), path,
                    "the problems file needs 'task_id' and 'prompt' per line.")
    position = pc.index_in(task_ids, problems.column("task_id"))
    missing = pc.and_(pc.is_null(position), pc.is_valid(task_ids))
    if pc.any(missing).as_py():
        row = int(np.flatnonzero(missing.to_numpy(zero_copy_only=False))[0])
        raise ConverterError(
            f"task {task_ids[row].as_py()!r} has samples but no problem.", source=str(path),
            fix="use the problems file that belongs to these samples.",
        )
    columns = {"query.text": problems.column("prompt").take(position)}
    if "entry_point" in problems.column_names:
        columns["query.entry_point"] = problems.column("entry_point").take(position)
    return columns


class CodeTConverter(Converter):
    """CodeT HumanEval completions graded by the official tests.

    Source format: a folder holding ``samples.jsonl.gz`` (one completion per line:
    ``task_id``, ``sample_idx``, ``completion``, ``passed``, ``completion_chars``) and
    ``problems.jsonl.gz`` (the HumanEval problems: ``task_id``, ``prompt``, ``entry_point``,
    ``test``...), or the samples file itself (the problems file is then looked for beside
    it; without it the queries have no text).

    Mapping:

    - ``query_id`` = ``task_id``; one arm, ``codegen-16b`` (option ``model`` renames it).
    - ``correct`` = ``passed`` (the official ``check()`` run on prompt + completion).
    - ``answer`` = the completion with whitespace normalised (every run of whitespace
      becomes one space, ends stripped), so that completions differing only in layout vote
      together. Majority voting over programs is still a poor selector: this set is meant
      for verifier-based selection (CodeT's generated tests).
    - ``cost`` = ``completion_chars``.
    - ``query.text`` = the problem's prompt, ``query.entry_point``; extra column
      ``sample_idx``.

    Options:
        model: the arm's name (default ``codegen-16b``).
        problems: path of the problems file (default: ``problems.jsonl.gz`` beside the
            samples; none found means no query text).
    """

    name = "codet"
    description = "CodeT HumanEval samples.jsonl.gz (+ problems.jsonl.gz): pass/fail per completion"

    def _read(
        self, source: Path, *, skip_invalid: bool, model: str = "codegen-16b",
        problems: str | Path | None = None,
    ) -> Converted:
        path = source / _SAMPLES if source.is_dir() else source
        if not path.is_file():
            raise ConverterError(f"no {_SAMPLES} in the folder.", source=str(source),
                                 fix="point at the samples file itself.")
        table, lines, issues = read_jsonl_table(path, skip_invalid=skip_invalid)
        require_columns(table, _NEEDED, path, "this does not look like CodeT samples.")
        problem_path = Path(problems) if problems is not None else path.parent / _PROBLEMS
        if problems is not None and not problem_path.is_file():
            raise ConverterError("no such problems file.", source=str(problem_path),
                                 fix="check the 'problems' option.")
        task_ids = table.column("task_id").cast(pa.string())
        columns = {
            "attempt_id": pc.binary_join_element_wise(
                task_ids, table.column("sample_idx").cast(pa.string()), "#"),
            "query_id": task_ids,
            "arm": pa.chunked_array([pa.array([model] * table.num_rows, pa.string())]),
            "answer": _normalise_code(table.column("completion")),
            "correct": table.column("passed"),
            "cost": table.column("completion_chars"),
            "sample_idx": table.column("sample_idx"),
        }
        if problem_path.is_file():
            columns.update(_problem_columns(problem_path, task_ids))
        return Converted.single(pa.table(columns), path, lines, issues)
