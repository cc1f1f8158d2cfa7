"""Row-level validation of an attempt table, before it becomes an :class:`AttemptLog`.

Checks are vectorised over Arrow/numpy columns: a 10-million-row table validates in about
a second. Each check yields a :class:`Violation` with the rows it rejects, so a caller can
either raise on the first bad row (strict) or set the bad rows aside (``--skip-invalid``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from allocator.errors import LogFormatError
from allocator.logs.schema import KINDS, REQUIRED_COLUMNS

__all__ = [
    "RowLocator",
    "Violation",
    "as_numbers",
    "find_violations",
    "raise_first",
    "require_columns",
]

#: Maps a 0-based row index to the line number a user sees (1-based, header aware).
RowLocator = Callable[[int], int]


@dataclass(frozen=True)
class Violation:
    """Rows of a table that break one rule.

    Attributes:
        column: the column that holds the bad values.
        problem: what is wrong, in words.
        fix: how to fix the input.
        rows: 0-based indices of the offending rows, ascending.
        first_seen: for duplicates, the 0-based row the first offending row repeats.
    """

    column: str
    problem: str
    fix: str
    rows: np.ndarray
    first_seen: int | None = None

    def to_error(self, source: str | None, locate: RowLocator) -> LogFormatError:
        """The error for the first offending row."""
        first = int(self.rows[0])
        more = len(self.rows) - 1
        problem = self.problem
        if self.first_seen is not None:
            problem = problem.rstrip(".") + f" (first seen at line {locate(self.first_seen)})."
        problem += f" ({more} more rows have the same problem.)" if more else ""
        return LogFormatError(
            problem, source=source, line=locate(first), column=self.column, fix=self.fix
        )


def require_columns(names: list[str], source: str | None, hint: str = "") -> None:
    """Raise if a required column is missing from ``names``."""
    for column in REQUIRED_COLUMNS:
        if column not in names:
            raise LogFormatError(
                f"missing required column {column!r} (columns present: {sorted(names)}).",
                source=source,
                column=column,
                fix=hint
                or f"rename the column that holds it, or map it with --{column.split('_')[0]}-col.",
            )


def _rows(mask: np.ndarray) -> np.ndarray:
    return np.flatnonzero(mask)


#: The only numeric column where true/false means something (a grade); elsewhere a
#: boolean is a mistake (``cost: true`` is not a cost of 1).
BOOLEAN_COLUMNS = ("correct",)


def _numeric(table: pa.Table, name: str) -> tuple[np.ndarray | None, Violation | None]:
    return as_numbers(table.column(name), name, booleans=name in BOOLEAN_COLUMNS)


def as_numbers(
    column: pa.ChunkedArray, name: str, *, booleans: bool = True
) -> tuple[np.ndarray | None, Violation | None]:
    """A column as float64 (NaN where empty); a violation if it is not numeric.

    Accepts numbers and their text forms (``"1"``, ``"0.5"``), and with ``booleans``
    true/false and their text forms too (as 1/0); without, booleans are a violation.
    """
    kind = column.type
    if pa.types.is_boolean(kind) and not booleans:
        rows = _rows(column.is_valid().to_numpy(zero_copy_only=False))
        return np.full(len(column), np.nan), Violation(
            name, f"holds true/false (type bool), expected a number, found "
            f"{column[int(rows[0])].as_py() if len(rows) else None!r}.",
            f"write {name} as a number; true/false is not one.", rows)
    if pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return column.to_numpy(zero_copy_only=False).astype(np.float64), None
    if pa.types.is_null(kind):
        return np.full(len(column), np.nan), None
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _parse_text_numbers(name, column, booleans)
    rows = np.arange(len(column))
    return None, Violation(
        name, f"has type {kind}, expected a number.", f"write {name} as a number.", rows
    )


def _parse_text_numbers(
    name: str, column: pa.ChunkedArray, booleans: bool = True
) -> tuple[np.ndarray, Violation | None]:
    """Numbers (or, with ``booleans``, true/false) written as text (CSV); empty cells
    stay NaN."""
    lowered = pc.utf8_lower(pc.utf8_trim_whitespace(column))
    flags = pc.is_in(lowered, pa.array(["true", "false"]))
    flags = flags.to_numpy(zero_copy_only=False).astype(bool) & booleans
    as_text = pc.if_else(pc.equal(lowered, ""), None, lowered)
    values = np.full(len(column), np.nan)
    values[flags] = pc.equal(lowered, "true").to_numpy(zero_copy_only=False)[flags]
    texts = as_text.to_numpy(zero_copy_only=False)
    rest = np.flatnonzero(~flags)
    try:
        parsed = pc.cast(pa.array(texts[rest], type=pa.string()), pa.float64())
        values[rest] = parsed.to_numpy(zero_copy_only=False)
        return values, None
    except pa.ArrowInvalid:
        pass
    bad = np.zeros(len(column), dtype=bool)
    for i in rest:
        if texts[i] is None:
            continue
        try:
            values[i] = float(texts[i])
        except ValueError:
            bad[i] = True
    sample = texts[int(np.flatnonzero(bad)[0])]
    expected = "a number or true/false" if booleans else "a number"
    return values, Violation(
        name,
        f"expected {expected}, found {sample!r}.",
        f"write {name} as a number" + (" (or true/false)." if booleans else "."),
        _rows(bad),
    )


def _null_rows(table: pa.Table, name: str) -> np.ndarray:
    return _rows(table.column(name).is_null().to_numpy(zero_copy_only=False))


#: Per numeric column: the valid values, the problem and the fix.
_RANGE_RULES: dict[str, tuple[Callable[[np.ndarray], np.ndarray] | None, str, str]] = {
    "correct": (
        lambda v: (v >= 0) & (v <= 1),
        "correctness must be 0/1, true/false or a score in [0, 1]",
        "grade attempts as 0/1 or a score in [0, 1]; a missing grade is not allowed "
        "(drop the attempt or grade it).",
    ),
    "cost": (
        lambda v: np.isfinite(v) & (v >= 0),
        "cost must be a finite number >= 0",
        "record what the attempt cost (tokens, dollars, turns); use 0 for free attempts.",
    ),
    "round": (
        lambda v: np.isfinite(v) & (v >= 0) & (v == np.round(v)),
        "round must be a whole number >= 0",
        "number refinement rounds 0, 1, 2... (samples are round 0).",
    ),
    "score": (None, "", ""),
    "started_at": (
        lambda v: ~np.isinf(v),
        "started_at must be a finite time in seconds",
        "record when the call started, in seconds (any clock consistent within a query), "
        "or leave the cell empty for an untimed attempt.",
    ),
    "ended_at": (
        lambda v: ~np.isinf(v),
        "ended_at must be a finite time in seconds",
        "record when the call ended, in seconds on the started_at clock, or leave the cell "
        "empty for an untimed attempt.",
    ),
    "wave": (
        lambda v: np.isnan(v) | ((v >= 0) & (v == np.round(v))),
        "wave must be a whole number >= 0",
        "number the executor's launch waves 0, 1, 2... within a query.",
    ),
}


def find_violations(table: pa.Table) -> list[Violation]:
    """Every rule the table breaks, with the rows that break it.

    The table has the canonical column names (after any column mapping). Checked:
    missing query ids, correctness outside [0, 1] or non-numeric, NaN/negative/infinite
    costs, unknown kinds, non-integer rounds, non-numeric scores, true/false outside
    ``correct``, a grade above 0 on an attempt without an answer, duplicate attempt ids.
    """
    found: list[Violation] = []
    names = table.column_names
    null_ids = _null_rows(table, "query_id")
    if len(null_ids):
        found.append(
            Violation("query_id", "the query id is empty.", "give every attempt a query id.",
                      null_ids)
        )
    for name, (valid, problem, fix) in _RANGE_RULES.items():
        if name not in names:
            continue
        values, bad = _numeric(table, name)
        if bad:
            found.append(bad)
        if values is None or valid is None:
            continue
        with np.errstate(invalid="ignore"):
            ok = valid(values)
        if bad:
            ok[bad.rows] = True
        if not ok.all():
            wrong = _rows(~ok)
            found.append(
                Violation(name, f"{problem}, found {float(values[wrong[0]])!r}.", fix, wrong)
            )
        if name == "correct" and values is not None and "answer" in names:
            found += _graded_without_answer(table.column("answer"), values)
    found += _timing_violations(table)
    if "kind" in names:
        kinds = table.column("kind")
        unknown = pc.invert(pc.fill_null(pc.is_in(kinds, pa.array(list(KINDS))), False))
        rows = _rows(unknown.to_numpy(zero_copy_only=False))
        if len(rows):
            found.append(
                Violation(
                    "kind",
                    f"unknown kind {kinds[int(rows[0])].as_py()!r}.",
                    f"use one of {list(KINDS)}.",
                    rows,
                )
            )
    if "attempt_id" in names:
        ids = table.column("attempt_id").cast(pa.string())
        null_ids = _null_rows(table, "attempt_id")
        if len(null_ids):
            found.append(
                Violation("attempt_id", "the attempt id is empty.",
                          "give every attempt an id, or drop the column to number attempts "
                          "automatically.", null_ids)
            )
        ids = pc.fill_null(ids, "\x00null")
        encoded = pc.dictionary_encode(ids).combine_chunks()
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        _, first = np.unique(codes, return_index=True)
        seen_first = np.zeros(len(codes), dtype=bool)
        seen_first[first] = True
        duplicate = ~seen_first
        duplicate[null_ids] = False
        if duplicate.any():
            row = int(np.flatnonzero(duplicate)[0])
            found.append(
                Violation(
                    "attempt_id",
                    f"duplicate attempt id {ids[row].as_py()!r}.",
                    "give every attempt a unique id, or drop the column to number "
                    "attempts automatically.",
                    _rows(duplicate),
                    first_seen=int(first[codes[row]]),
                )
            )
    return found


def _timing_violations(table: pa.Table) -> list[Violation]:
    """A timed row has both times and ends no earlier than it starts."""
    names = table.column_names
    if "started_at" not in names and "ended_at" not in names:
        return []
    if "started_at" not in names or "ended_at" not in names:
        present, missing = (("started_at", "ended_at") if "started_at" in names
                            else ("ended_at", "started_at"))
        return [Violation(missing, f"the log has {present!r} but no {missing!r} column.",
                          "record both started_at and ended_at, or neither.",
                          np.arange(min(table.num_rows, 1)))]
    started, bad_start = _numeric(table, "started_at")
    ended, bad_end = _numeric(table, "ended_at")
    if started is None or ended is None or bad_start or bad_end:
        return []  # the range rules report them
    found = []
    half = _rows(np.isnan(started) != np.isnan(ended))
    if len(half):
        row = int(half[0])
        column = "ended_at" if np.isnan(ended[row]) else "started_at"
        found.append(Violation(column, "the row has only one of started_at and ended_at.",
                               "record both times of a timed call, or neither.", half))
    with np.errstate(invalid="ignore"):
        backwards = _rows(ended < started)
    if len(backwards):
        row = int(backwards[0])
        found.append(Violation(
            "ended_at", f"the call ends before it starts (started_at {started[row]!r}, "
                        f"ended_at {ended[row]!r}).",
            "record ended_at on the same clock as started_at, after it.", backwards))
    return found


def _graded_without_answer(answer: pa.ChunkedArray, correct: np.ndarray) -> list[Violation]:
    """An attempt without an answer never wins a vote: a grade above 0 on it contradicts
    the log (majority vote and pass@k would disagree about it)."""
    empty = answer.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_string(answer.type) or pa.types.is_large_string(answer.type):
        empty |= pc.fill_null(pc.equal(answer, ""), False).to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        rows = _rows(empty & (correct > 0))
    if not len(rows):
        return []
    return [Violation(
        "correct", f"the attempt has no answer but is graded {float(correct[rows[0]])!r}: "
        "an attempt with no answer never votes, so it cannot be correct.",
        "grade attempts without an extracted answer 0, or record the answer they gave.",
        rows)]


def raise_first(violations: list[Violation], source: str | None, locate: RowLocator) -> None:
    """Raise the error of the violation whose first bad row comes earliest."""
    if violations:
        first = min(violations, key=lambda v: int(v.rows[0]))
        raise first.to_error(source, locate)
