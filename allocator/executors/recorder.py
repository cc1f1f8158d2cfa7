"""The run recorder: every branch of every executor run, in the project's log format (JSONL).

:class:`RunRecorder` appends whole records to a file that :func:`allocator.logs.read_attempts`
(and ``allocator ingest``) reads with no conversion once it is graded; :class:`QueryLog`
fills the shared columns of one run's rows; :func:`grade_run_log` grades a recorded file
afterwards. The rows and their columns are documented in ``data/README.md``, "Logs
written by the executors".
"""

from __future__ import annotations

import json
import math
import os
import stat
import threading
import uuid
import warnings
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from allocator.errors import ExecutorError, LogFormatError, ParameterError
from allocator.logs.schema import QUERY_PREFIX
from allocator.verifiers.base import Problem

__all__ = [
    "GradeReport",
    "QueryLog",
    "RunRecorder",
    "exact_grade",
    "grade_run_log",
]

#: Column order of every row (extras and query columns follow).
ROW_COLUMNS = ("query_id", "attempt_id", "arm", "kind", "round", "answer", "correct", "cost",
               "score", "strategy", "run", "role", "step", "completion", "latency_s",
               "finish_reason", "reported", "started_at", "ended_at", "wave", "parent")
ON_PARTIAL = ("truncate", "refuse")
TORN_SUFFIX = ".torn"

#: ``grade(answer, reference) -> grade in [0, 1]``.
Grader = Callable[[str | None, str], float]


def exact_grade(answer: str | None, reference: str) -> float:
    """1.0 when the normalised answer equals the normalised reference, else 0.0."""
    return float(answer is not None and answer == reference)


# ------------------------------------------------------------------ the file
class RunRecorder:
    """Appends executor rows to a JSONL log file, one whole record per write.

    Each record is serialised first and written with one ``os.write`` on a file opened in
    append mode, so a crash never leaves half a record behind a whole one; several
    executors (tasks of one event loop, or threads) may share one recorder.

    Torn last line. A file that does not end with a newline ends with the remains of a
    record an earlier process was killed while writing. ``on_partial="truncate"`` (the
    default) cuts the file back to its last whole record, saves the cut bytes to
    ``<file>.torn`` (appended, so nothing is lost) and warns; ``on_partial="refuse"``
    raises :class:`~allocator.errors.LogFormatError` instead.

    Full disk. A record that does not fit (ENOSPC, the file-size limit, an I/O error) is
    cut back to the last whole record before :class:`~allocator.errors.ExecutorError` is
    raised: the file stays a valid log, and the recorder can write on once there is room.

    Args:
        path: the JSONL file (created if missing; appended to otherwise).
        on_partial: what to do when the file ends with a torn record from a crash:
            ``"truncate"`` (cut it back to the last whole record, keep the cut bytes in
            ``<path>.torn``, warn) or ``"refuse"`` (raise).
        fsync: also ``os.fsync`` after every record (survives power loss; slower).
        query_columns: keys of :attr:`Problem.metadata` written as ``query.<key>``
            columns (scalar values only).

    Attributes:
        path: the file.
        run_id: a random id of this recorder (part of every run id and attempt id, so
            that appending to an old file never repeats an attempt id).
        rows_written: records written by this recorder.

    Raises:
        LogFormatError: the file ends with a torn record and ``on_partial="refuse"``.
        ParameterError: an invalid argument.
    """

    def __init__(self, path: str | os.PathLike[str], *, on_partial: str = "truncate",
                 fsync: bool = False, query_columns: Sequence[str] = ()) -> None:
        if on_partial not in ON_PARTIAL:
            raise ParameterError("RunRecorder", "on_partial", f"one of {list(ON_PARTIAL)}",
                                 on_partial)
        self.path = Path(path)
        self.run_id = uuid.uuid4().hex[:8]
        self.rows_written = 0
        self.query_columns = tuple(query_columns)
        self._fsync = bool(fsync)
        self._lock = threading.Lock()
        self._runs = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _repair_torn_tail(self.path, on_partial)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                                       0o644)

    # ------------------------------------------------------------ writing
    def write(self, row: Mapping[str, Any]) -> None:
        """Append one record (serialised first, then one write and flush).

        Raises:
            ParameterError: the recorder is closed, or the row is not JSON-serialisable.
            ExecutorError: the record could not be written (disk full...); the file was
                cut back to its last whole record, so it stays valid.
        """
        try:
            data = (json.dumps(_clean(row), ensure_ascii=False, allow_nan=False)
                    + "\n").encode("utf-8")
        except (TypeError, ValueError) as error:
            raise ParameterError("RunRecorder.write", "row", f"a JSON-serialisable mapping "
                                 f"({error})", row) from error
        with self._lock:
            if self._fd is None:
                raise ParameterError("RunRecorder.write", "self", "an open recorder (it was "
                                     "closed)", str(self.path))
            try:
                _write_all(self._fd, data)
                if self._fsync:
                    os.fsync(self._fd)
            except OSError as error:
                raise self._failed(error) from error
            self.rows_written += 1

    def _failed(self, error: OSError) -> ExecutorError:
        """Cut a partly written record back, and say so."""
        reason = error.strerror or str(error)
        try:
            cut = _cut_to_last_record(self.path)
        except OSError as second:
            state = (f"cutting it back failed too ({second.strerror or second}): the next "
                     "RunRecorder to open it cuts the torn record")
        else:
            state = ("it was cut back to its last whole record" if cut else
                     "it still ends with its last whole record")
        return ExecutorError(
            f"{self.path}: a record could not be written ({reason}); {state}, so it stays a "
            f"valid log ({self.rows_written} records written by this recorder, the failed one "
            "not among them). Fix: free disk space (or move the log to a larger disk), then "
            "write on or run the query again.")

    def new_run(self) -> str:
        """A fresh run id (``<recorder id>-<n>``)."""
        with self._lock:
            self._runs += 1
            return f"{self.run_id}-{self._runs}"

    def close(self) -> None:
        """Close the file (idempotent)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._fd is None

    def __enter__(self) -> RunRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"RunRecorder({str(self.path)!r}, run_id={self.run_id!r}, "
                f"rows_written={self.rows_written})")


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte (a regular file takes one write; a short one is continued)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written == 0:
            raise OSError(28, os.strerror(28))  # a device that takes nothing: ENOSPC
        view = view[written:]


def _cut_to_last_record(path: Path) -> bool:
    """Truncate a regular file after its last newline; whether anything was cut."""
    with path.open("r+b") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            return False
        end = file.seek(0, os.SEEK_END)
        position = end
        while position > 0:
            step = min(1 << 16, position)
            file.seek(position - step)
            newline = file.read(step).rfind(b"\n")
            if newline >= 0:
                position = position - step + newline + 1
                break
            position -= step
        if position == end:
            return False
        file.truncate(position)
        return True


def _repair_torn_tail(path: Path, on_partial: str) -> None:
    """Cut a torn last record (a file not ending with a newline), or refuse."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb") as file:
        file.seek(-1, os.SEEK_END)
        if file.read(1) == b"\n":
            return
        data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    torn = data[keep:]
    where = f"{path}: the last {len(torn)} bytes are a torn record (an earlier run was " \
            "killed while writing it)"
    if on_partial == "refuse":
        raise LogFormatError(f"{where}.", source=str(path), line=data.count(b"\n") + 1,
                             fix="open it with RunRecorder(..., on_partial='truncate') to cut "
                             "it back to the last whole record, or delete the last line.")
    with Path(str(path) + TORN_SUFFIX).open("ab") as aside:
        aside.write(torn + b"\n")
    with path.open("r+b") as file:
        file.truncate(keep)
    warnings.warn(f"{where}; cut back to the last whole record, the cut bytes are in "
                  f"{path}{TORN_SUFFIX}.", RuntimeWarning, stacklevel=3)


def _clean(row: Mapping[str, Any]) -> dict[str, Any]:
    """Non-finite floats as null (JSON has no NaN)."""
    return {key: None if isinstance(value, float) and not math.isfinite(value) else value
            for key, value in row.items()}


# ------------------------------------------------------------------ one run of one query
class QueryLog:
    """The rows of one executor run of one query: fills the shared columns, writes or holds.

    Executors create one per run (:class:`~allocator.executors.base.Executor`); without a
    recorder the rows are only kept in memory (:attr:`rows`).

    Held rows. Strategies that verify hold a candidate's row until its score is known (its
    verification, or the end of the run), so that the ``score`` column of samples carries
    the verifier's score, which is what replay reads. Held rows are written when the run
    ends, including by an error; only a process killed mid-run loses the held rows of the
    queries it was running (the file stays valid: whole records only).

    Args:
        recorder: the file to append to, or None.
        problem: the query.
        strategy: the executor's name (the ``strategy`` column).
        grade: ``answer -> grade``, or None when the reference is unknown (``correct``
            stays null).

    Attributes:
        run: the run id (the ``run`` column).
        rows: the rows written so far, in write order (held rows once released).
    """

    def __init__(self, recorder: RunRecorder | None, problem: Problem, *, strategy: str,
                 grade: Callable[[str | None], float] | None) -> None:
        self.recorder = recorder
        self.problem = problem
        self.strategy = strategy
        self.run = recorder.new_run() if recorder is not None else uuid.uuid4().hex[:10]
        self.rows: list[dict[str, Any]] = []
        self._grade = grade
        self._held: dict[str, dict[str, Any]] = {}
        self._seq = 0
        self._query = self._query_columns(problem, recorder)

    def new_id(self) -> str:
        """A fresh attempt id, unique in the file: ``<query_id>:<run>:<n>``."""
        self._seq += 1
        return f"{self.problem.query_id}:{self.run}:{self._seq}"

    def grade(self, answer: str | None) -> float | None:
        """The grade of an answer (None when the reference is unknown)."""
        return None if self._grade is None else float(self._grade(answer))

    def add(self, row: Mapping[str, Any], *, hold: bool = False) -> dict[str, Any]:
        """Complete a row with the shared columns and write it (or hold it).

        Args:
            row: at least ``kind``, ``arm``, ``answer``, ``cost`` and ``role``; an
                ``attempt_id`` is made if absent; ``correct`` is graded from ``answer``.
            hold: keep the row until :meth:`release` (its score may still change).

        Returns:
            The full row (mutable until released, if held).
        """
        full: dict[str, Any] = dict.fromkeys(ROW_COLUMNS)
        full.update(query_id=self.problem.query_id, round=0, strategy=self.strategy,
                    run=self.run, reported=True)
        full.update(row)
        if full["attempt_id"] is None:
            full["attempt_id"] = self.new_id()
        if "correct" not in row:
            full["correct"] = self.grade(full["answer"])
        full.update(self._query)
        if hold:
            self._held[full["attempt_id"]] = full
        else:
            self._write(full)
        return full

    def update(self, attempt_id: str, **fields: Any) -> None:
        """Change columns of a held row (e.g. its ``score``); ignored once written."""
        row = self._held.get(attempt_id)
        if row is not None:
            row.update(fields)

    def release(self, attempt_ids: Iterable[str] | None = None) -> None:
        """Write held rows (all by default), in the order they were added."""
        wanted = None if attempt_ids is None else set(attempt_ids)
        for key in list(self._held):
            if wanted is None or key in wanted:
                self._write(self._held.pop(key))

    @property
    def held(self) -> int:
        """Rows held, not written yet."""
        return len(self._held)

    def _write(self, row: dict[str, Any]) -> None:
        if self.recorder is not None:
            self.recorder.write(row)
        self.rows.append(row)

    @staticmethod
    def _query_columns(problem: Problem, recorder: RunRecorder | None) -> dict[str, Any]:
        columns: dict[str, Any] = {QUERY_PREFIX + "text": problem.question}
        for key in recorder.query_columns if recorder is not None else ():
            value = problem.metadata.get(key)
            if value is not None and not isinstance(value, str | int | float | bool):
                raise ParameterError("RunRecorder", "query_columns", "metadata keys with "
                                     f"scalar values ({key!r} holds a "
                                     f"{type(value).__name__})", key)
            columns[QUERY_PREFIX + key] = value
        return columns


# ------------------------------------------------------------------ grading afterwards
@dataclass(frozen=True)
class GradeReport:
    """What :func:`grade_run_log` did.

    Attributes:
        path: the graded file.
        rows: records read.
        graded: rows given a grade now.
        ungraded: rows still without a grade (their query has no reference); the file
            will not ingest until they are graded or dropped (``drop_ungraded=True``).
        dropped: rows dropped.
    """

    path: Path
    rows: int
    graded: int
    ungraded: int
    dropped: int


def grade_run_log(
    path: str | os.PathLike[str],
    references: Mapping[str, str],
    *,
    out: str | os.PathLike[str] | None = None,
    grade: Grader = exact_grade,
    normalise: Callable[[str], Hashable | None] | None = None,
    regrade: bool = False,
    drop_ungraded: bool = False,
) -> GradeReport:
    """Fill the ``correct`` column of a recorded run log from reference answers.

    Each row is graded by its ``answer`` (the normalised answer string) against its
    query's reference: ``grade(answer, normalised reference)``. The output is written to
    a temporary file and renamed into place, so a failure never damages the input. Grade
    a file no :class:`RunRecorder` has open (one appending during the rename would write
    to the replaced file).

    Args:
        path: the JSONL file a :class:`RunRecorder` wrote.
        references: query id -> reference answer.
        out: where to write (default: replace ``path``).
        grade: ``grade(answer, reference) -> [0, 1]``; exact string equality by default.
        normalise: the executor's answer extractor, applied to each reference (as the
            executors do when they grade); a reference it cannot parse is compared as
            written (stripped).
        regrade: grade rows that have a grade already too.
        drop_ungraded: drop rows that end up without a grade.

    Raises:
        LogFormatError: a line is not a JSON object (a torn file: open it with a
            :class:`RunRecorder` first to cut the torn record).
    """
    source = Path(path)
    target = Path(out) if out is not None else source
    refs = {str(key): normalise_reference(value, normalise)
            for key, value in references.items()}
    kept: list[bytes] = []
    rows = graded = ungraded = dropped = 0
    with source.open("rb") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            row = _parse_line(line, source, number)
            rows += 1
            query = str(row.get("query_id"))
            if (regrade or row.get("correct") is None) and query in refs:
                row["correct"] = float(grade(row.get("answer"), refs[query]))
                graded += 1
            if row.get("correct") is None:
                if drop_ungraded:
                    dropped += 1
                    continue
                ungraded += 1
            kept.append((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
    temporary = target.with_name(target.name + ".grading")
    try:
        temporary.write_bytes(b"".join(kept))
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return GradeReport(target, rows, graded, ungraded, dropped)


def normalise_reference(reference: str,
                        normalise: Callable[[str], Hashable | None] | None) -> str:
    """A reference answer as executors compare it: ``str(normalise(reference))`` when the
    extractor parses it, else the reference stripped."""
    if normalise is not None:
        value = normalise(str(reference))
        if value is not None:
            return str(value)
    return str(reference).strip()


def _parse_line(line: bytes, source: Path, number: int) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        row = error
    if not isinstance(row, dict):
        raise LogFormatError("not a JSON object (a torn record?).", source=str(source),
                             line=number, fix="open the file with RunRecorder(path) once: it "
                             "cuts a torn last record; otherwise delete the line.")
    return row
