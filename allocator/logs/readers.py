"""Generic readers: any flat table of graded attempts (JSONL, CSV, Parquet) becomes a log.

A :class:`ColumnMapping` says which of the file's columns holds each canonical column, so
that a table exported from any evaluation harness loads without code;
:func:`read_attempts` reads the file (its docstring says how errors are found and named)
and :func:`write_rejected` saves the rows set aside.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from allocator.errors import LogFormatError, ParameterError
from allocator.logs._formats import RawTable, read_raw
from allocator.logs.schema import QUERY_PREFIX, REQUIRED_COLUMNS
from allocator.logs.table import AttemptLog, Rejected
from allocator.logs.validate import RowLocator, find_violations

__all__ = ["FORMATS", "ColumnMapping", "infer_format", "read_attempts", "write_rejected"]

#: File formats :func:`read_attempts` understands.
FORMATS = ("jsonl", "csv", "parquet")

_SUFFIXES = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet",
}
_ATTEMPT_FIELDS = ("query_id", "arm", "kind", "round", "answer", "correct", "cost", "score",
                   "attempt_id")
_TEXT_FIELDS = ("query_id", "arm", "kind", "answer", "attempt_id", "text")


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

    Example::

        log, rejected = read_attempts(
            "runs.jsonl.gz", mapping=ColumnMapping(query_id="problem", correct="is_correct")
        )

    Parsing (in :mod:`allocator.logs._formats`) uses Arrow's multi-threaded readers (their
    speed: README, "Performance", ``benchmarks/log_loading.py``). When Arrow refuses a
    file, a line-by-line scan finds the first bad line, so that every error names the
    file, the user's own line number (JSONL: the physical line; CSV: the line where the
    record starts, counting the header and values that span lines) or the column, and how
    to fix it. Nothing is silently dropped: with ``skip_invalid`` the rows set aside come
    back as :class:`~allocator.logs.table.Rejected` and :func:`write_rejected` saves them.

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
) -> RawTable:
    """Check the format and that the file exists, then parse it (see :func:`read_raw`)."""
    fmt = file_format or infer_format(path)
    if fmt not in FORMATS:
        raise ParameterError("read_attempts", "file_format", f"one of {list(FORMATS)}", fmt)
    if not path.is_file():
        raise LogFormatError("no such file.", source=str(path), fix="check the path.")
    raw = read_raw(path, fmt, text_columns, skip_invalid)
    # Parsers leave freed blocks cached in Arrow's pool; returning them keeps the peak
    # while the log is built lower (about 200 MB for a million JSONL rows).
    pa.default_memory_pool().release_unused()
    return raw



# ---------------------------------------------------------------------------- mapping
def _apply_mapping(
    table: pa.Table, mapping: ColumnMapping, source: str, has_query_table: bool
) -> tuple[pa.Table, list[str]]:
    """Rename the source columns to canonical ones; unmapped columns ride along.

    Returns the table and the mapped query-level columns left for the query table to
    hold (only when there is one).
    """
    present = table.column_names
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
    if name in _ATTEMPT_FIELDS:
        mapped = getattr(mapping, name)
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
