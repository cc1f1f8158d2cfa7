"""The body of ``allocator grade``: fill the grades of a run log the executors recorded.

Runs served without a reference answer are recorded with ``correct`` null, and
``allocator ingest`` refuses them. Once references are known (labels, a later check),
this grades every row against its query's reference
(:func:`allocator.executors.grade_run_log`), so that ``ingest`` and ``train`` accept the
file: the loop run, log, grade, train closes from the shell.
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import IO, Any

from allocator.errors import LogFormatError

__all__ = ["read_references", "run_grade"]


def _open(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8", newline="")


def read_references(path: Path, query_col: str, reference_col: str) -> dict[str, str]:
    """Query id -> reference answer, from a JSONL or CSV file (optionally gzipped).

    Raises:
        LogFormatError: a line that is not a JSON object, a missing column, or one query
            given two different references (naming the file and line).
    """
    is_csv = ".csv" in path.suffixes
    references: dict[str, str] = {}
    with _open(path) as file:
        rows = csv.DictReader(file) if is_csv else file
        for line, raw in enumerate(rows, start=2 if is_csv else 1):
            row = raw if is_csv else _json_row(raw, path, line)
            if row is None:
                continue
            for column in (query_col, reference_col):
                if row.get(column) in (None, ""):
                    raise LogFormatError(f"no value in column {column!r}.", source=str(path),
                                         line=line, column=column,
                                         fix="name the columns with --query-col and "
                                             "--reference-col.")
            query, reference = str(row[query_col]), str(row[reference_col])
            if references.setdefault(query, reference) != reference:
                raise LogFormatError(
                    f"query {query!r} has two references ({references[query]!r} and "
                    f"{reference!r}).", source=str(path), line=line, column=reference_col,
                    fix="give each query one reference answer.")
    return references


def _json_row(raw: str, path: Path, line: int) -> dict[str, Any] | None:
    if not raw.strip():
        return None
    try:
        row = json.loads(raw)
    except json.JSONDecodeError as error:
        raise LogFormatError(f"not valid JSON ({error.msg}).", source=str(path), line=line,
                             fix="one JSON object per line.") from error
    if not isinstance(row, dict):
        raise LogFormatError("not a JSON object.", source=str(path), line=line,
                             fix="one JSON object per line.")
    return row


def run_grade(runs: Path, references_path: Path, *, out: Path | None, query_col: str,
              reference_col: str, extract: str | None, regrade: bool,
              drop_ungraded: bool) -> Any:
    """Grade ``runs`` (in place, or into ``out``) and print what was done.

    Returns:
        The :class:`~allocator.executors.GradeReport`.
    """
    from allocator.console import stderr_console
    from allocator.executors import grade_run_log

    normalise = None
    if extract is not None:
        from allocator.answers import get_extractor

        normalise = get_extractor(extract)
    references = read_references(references_path, query_col, reference_col)
    report = grade_run_log(runs, references, out=out, normalise=normalise, regrade=regrade,
                           drop_ungraded=drop_ungraded)
    console = stderr_console()
    console.print(f"graded {report.graded:,} of {report.rows:,} rows in {report.path}"
                  + (f"; dropped {report.dropped:,}" if report.dropped else ""))
    if report.ungraded:
        console.print(f"[yellow]{report.ungraded:,} rows still have no grade (no reference "
                      "for their query): ingest refuses them until they are graded, or "
                      "pass --drop-ungraded.[/]")
    return report
