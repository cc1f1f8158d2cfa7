"""The in-memory log: a columnar attempt table grouped by query, plus its query table.

Attempts are stored as flat numpy arrays sorted by query (a CSR layout: the attempts of
query ``q`` are rows ``offsets[q]:offsets[q + 1]``, in their original file order). Strings
(query ids, arms, answers) are dictionary-encoded once, so that replay, voting and
featurisation work on small integers. About 30 bytes per attempt plus the attempt ids:
10 million attempts fit in well under 1 GiB.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from allocator.errors import LogFormatError, ParameterError
from allocator.logs.schema import (
    DEFAULT_ARM,
    KIND_REFINE,
    KIND_SAMPLE,
    KINDS,
    NO_ANSWER,
    QUERY_PREFIX,
    TIMING_COLUMNS,
)
from allocator.logs.validate import (
    RowLocator,
    Violation,
    as_numbers,
    find_violations,
    raise_first,
    require_columns,
)

__all__ = ["AttemptLog", "QueryTable", "Rejected"]


@dataclass(frozen=True, eq=False)
class QueryTable:
    """Per-query columns, aligned with :attr:`AttemptLog.query_ids`.

    Attributes:
        text: the query text (``None`` where the log has none), shape (Q,).
        metadata: further per-query columns (task, category, user features...).
    """

    text: np.ndarray
    metadata: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Rejected:
    """Rows set aside by ``skip_invalid``: the rows themselves plus ``_line`` and ``_reason``."""

    rows: pa.Table

    def __len__(self) -> int:
        return self.rows.num_rows


def _default_locate(row: int) -> int:
    return row + 1


def _as_float(column: pa.ChunkedArray | None, default: float, length: int) -> np.ndarray:
    """A validated numeric column as float64, ``default`` where absent or empty."""
    if column is None:
        return np.full(length, default)
    values, _ = as_numbers(column, "")
    return np.where(np.isnan(values), default, values)


def _encode(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Dictionary-encode strings: (codes with -1 for null, vocabulary in first-seen order)."""
    encoded = pc.dictionary_encode(column).combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    if encoded.indices.null_count:
        codes = np.where(np.isnan(codes), NO_ANSWER, codes)
    vocabulary = encoded.dictionary.to_numpy(zero_copy_only=False)
    return codes.astype(np.int64), vocabulary.astype(object)


def _sorted_vocabulary(codes: np.ndarray, vocabulary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Re-code so the vocabulary is sorted: arm indices then do not depend on row order."""
    rank = np.argsort(vocabulary.astype(str), kind="stable")
    remap = np.empty(len(rank), dtype=np.int64)
    remap[rank] = np.arange(len(rank))
    return remap[codes], vocabulary[rank]


def _answer_strings(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return column
    if pa.types.is_null(column.type):
        return column.cast(pa.string())
    # Numbers and other scalars vote by their text: 18 and 18.0 differ, as they would
    # in any string comparison. Converters normalise answers before this point.
    return pa.chunked_array(
        [pa.array([None if v is None else str(v) for v in column.to_pylist()], pa.string())]
    )


class AttemptLog:
    """A graded log of LLM attempts, grouped by query.

    Build one with :meth:`from_arrow` (or a reader/converter); do not mutate its arrays.

    Attributes:
        query_ids: query identifiers, shape (Q,), in first-seen order.
        arms: arm names, sorted (so arm indices do not depend on row order).
        offsets: attempts of query ``q`` are rows ``offsets[q]:offsets[q+1]``; shape (Q+1,).
        arm: arm code per attempt (index into ``arms``), int16.
        kind: kind code per attempt (index into :data:`KINDS`), int8.
        round: refinement round per attempt, int32.
        answer: answer code per attempt (index into ``answers``; -1 = no answer), int32.
        answers: answer vocabulary, object array of str, in first-seen order of the
            query-grouped attempts.
        correct: correctness per attempt in [0, 1], float32.
        cost: cost per attempt, float64.
        score: verifier/confidence score per attempt, NaN where absent, float32.
        attempt_id: attempt identifiers, object array of str.
        queries: the per-query table.
        extra: further attempt columns, untouched, aligned with the attempt order.
        simulated: True for logs made by the synthetic generator.
        source: where the log came from (file name or description).
    """

    def __init__(
        self,
        *,
        query_ids: np.ndarray,
        arms: tuple[str, ...],
        offsets: np.ndarray,
        arm: np.ndarray,
        kind: np.ndarray,
        round: np.ndarray,
        answer: np.ndarray,
        answers: np.ndarray,
        correct: np.ndarray,
        cost: np.ndarray,
        score: np.ndarray,
        attempt_id: np.ndarray,
        queries: QueryTable,
        extra: dict[str, np.ndarray] | None = None,
        simulated: bool = False,
        source: str | None = None,
    ) -> None:
        self.query_ids = query_ids
        self.arms = tuple(arms)
        self.offsets = offsets
        self.arm = arm
        self.kind = kind
        self.round = round
        self.answer = answer
        self.answers = answers
        self.correct = correct
        self.cost = cost
        self.score = score
        self.attempt_id = attempt_id
        self.queries = queries
        self.extra = extra or {}
        self.simulated = simulated
        self.source = source

    # ------------------------------------------------------------------ shape
    @property
    def n_queries(self) -> int:
        """Number of queries."""
        return len(self.query_ids)

    @property
    def n_attempts(self) -> int:
        """Number of attempts."""
        return len(self.arm)

    def __len__(self) -> int:
        return self.n_attempts

    def __repr__(self) -> str:
        label = ", simulated" if self.simulated else ""
        return (
            f"AttemptLog({self.n_queries} queries, {self.n_attempts} attempts, "
            f"arms={list(self.arms)}{label})"
        )

    @property
    def attempt_query(self) -> np.ndarray:
        """Query index of every attempt, shape (N,), int32."""
        return np.repeat(np.arange(self.n_queries, dtype=np.int32), np.diff(self.offsets))

    def pool(self, query: int) -> slice:
        """The rows of one query's attempts."""
        return slice(int(self.offsets[query]), int(self.offsets[query + 1]))

    @property
    def has_timing(self) -> bool:
        """Whether every attempt has ``started_at`` and ``ended_at`` (see
        :data:`~allocator.logs.schema.TIMING_COLUMNS`): what latency prices need."""
        duration = self.duration
        return bool(len(duration)) and not np.isnan(duration).any()

    @property
    def duration(self) -> np.ndarray:
        """Wall-clock seconds of every attempt (``ended_at - started_at``), NaN where the
        log does not say; shape (N,), float64."""
        if "started_at" not in self.extra or "ended_at" not in self.extra:
            return np.full(self.n_attempts, np.nan)
        return (np.asarray(self.extra["ended_at"], dtype=np.float64)
                - np.asarray(self.extra["started_at"], dtype=np.float64))

    @property
    def supports_refine(self) -> bool:
        """Whether any query has logged refinement attempts."""
        return bool(np.any(self.kind == KIND_REFINE))

    @property
    def supports_verify(self) -> bool:
        """Whether any sample carries a verifier score."""
        return bool(np.any(~np.isnan(self.score[self.kind == KIND_SAMPLE])))

    # ------------------------------------------------------------- selection
    def select_queries(self, indices: np.ndarray) -> AttemptLog:
        """A new log holding the given queries (in the given order)."""
        indices = np.asarray(indices, dtype=np.int64)
        starts, stops = self.offsets[indices], self.offsets[indices + 1]
        lengths = stops - starts
        rows = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        rows = rows + np.arange(int(lengths.sum()))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return self._with_rows(rows, indices, offsets)

    def select_arms(self, names: list[str] | tuple[str, ...]) -> AttemptLog:
        """A new log holding only the attempts of the named arms (queries left empty go)."""
        unknown = [name for name in names if name not in self.arms]
        if unknown:
            raise LogFormatError(
                f"unknown arms {unknown}; the log has {list(self.arms)}.", source=self.source,
                column="arm", fix="pass arm names exactly as the log spells them.",
            )
        codes = np.array([self.arms.index(name) for name in names])
        keep = np.isin(self.arm, codes)
        counts = np.bincount(self.attempt_query[keep], minlength=self.n_queries)
        queries = np.flatnonzero(counts)
        rows = np.flatnonzero(keep)
        offsets = np.concatenate([[0], np.cumsum(counts[queries])]).astype(np.int64)
        remap = np.full(len(self.arms), -1, dtype=np.int16)
        remap[codes] = np.arange(len(codes))
        log = self._with_rows(rows, queries, offsets)
        log.arm = remap[log.arm]
        log.arms = tuple(names)
        return log

    def with_prices(self, prices: Mapping[str, float]) -> AttemptLog:
        """A new log whose costs are multiplied by a price per arm.

        Logs usually record what an attempt *used* (tokens, characters); what a user pays
        differs by model. ``log.with_prices({"gpt-4": 30.0, "llama-2-13b": 0.1})``
        turns tokens into money, so that routing and cascades trade accuracy against the
        real bill. Arms not named keep their costs (a price of 1).

        Args:
            prices: arm name -> price per unit of the logged cost (finite, >= 0).

        Raises:
            LogFormatError: an arm the log does not have (the message lists its arms).
            ParameterError: a price that is not a finite number >= 0, or one whose
                products with the arm's costs are not finite (``1e308`` times 10 tokens).
        """
        unknown = [name for name in prices if name not in self.arms]
        if unknown:
            raise LogFormatError(
                f"prices for unknown arms {unknown}; the log has {list(self.arms)}.",
                source=self.source, column="arm",
                fix="name arms exactly as the log spells them (allocator summarize lists them).",
            )
        factor = np.ones(len(self.arms))
        for name, price in prices.items():
            value = float(price) if isinstance(price, int | float) else float("nan")
            if isinstance(price, bool) or not np.isfinite(value) or value < 0:
                raise ParameterError("AttemptLog.with_prices", f"prices[{name!r}]",
                                     "a finite price >= 0", price)
            factor[self.arms.index(name)] = value
        log = self._with_rows(np.arange(self.n_attempts), np.arange(self.n_queries),
                              self.offsets.copy())
        with np.errstate(over="ignore", invalid="ignore"):
            log.cost = self.cost * factor[self.arm]
        overflow = ~np.isfinite(log.cost)
        if overflow.any():
            name = self.arms[int(self.arm[np.flatnonzero(overflow)[0]])]
            largest = float(self.cost[self.arm == self.arms.index(name)].max())
            raise ParameterError(
                "AttemptLog.with_prices", f"prices[{name!r}]", f"a price whose products with "
                f"the arm's costs stay finite (its largest cost {largest:g} times it "
                "overflows): express costs in a larger unit", prices[name])
        return log

    def common_queries(self) -> np.ndarray:
        """Indices of the queries that every arm present in the log has sampled.

        Comparisons across arms (routing, cascades) need them: ``select_queries`` of this
        keeps only queries where every arm can be replayed.
        """
        samples = self.kind == KIND_SAMPLE
        width = len(self.arms)
        pairs = np.unique(self.attempt_query[samples].astype(np.int64) * width + self.arm[samples])
        arms_per_query = np.bincount(pairs // width, minlength=self.n_queries)
        present = len(np.unique(pairs % width))
        return np.flatnonzero(arms_per_query == present)

    def _with_rows(self, rows: np.ndarray, queries: np.ndarray, offsets: np.ndarray) -> AttemptLog:
        return AttemptLog(
            query_ids=self.query_ids[queries],
            arms=self.arms,
            offsets=offsets,
            arm=self.arm[rows],
            kind=self.kind[rows],
            round=self.round[rows],
            answer=self.answer[rows],
            answers=self.answers,
            correct=self.correct[rows],
            cost=self.cost[rows],
            score=self.score[rows],
            attempt_id=self.attempt_id[rows],
            queries=QueryTable(
                text=self.queries.text[queries],
                metadata={k: v[queries] for k, v in self.queries.metadata.items()},
            ),
            extra={k: v[rows] for k, v in self.extra.items()},
            simulated=self.simulated,
            source=self.source,
        )

    # ------------------------------------------------------------ identity
    def fingerprint(self) -> str:
        """SHA-256 over the replay-relevant content (ids, arms, kinds, answers, grades, costs)."""
        digest = hashlib.sha256()
        for array in (self.offsets, self.arm, self.kind, self.round, self.answer,
                      self.correct, self.cost, self.score):
            digest.update(np.ascontiguousarray(array).tobytes())
        for strings in (self.query_ids, np.asarray(self.arms, dtype=object), self.answers):
            digest.update("\x1f".join(map(str, strings)).encode())
        return digest.hexdigest()

    # ------------------------------------------------------------ building
    @classmethod
    def from_arrow(
        cls,
        attempts: pa.Table,
        queries: pa.Table | None = None,
        *,
        source: str | None = None,
        locate: RowLocator = _default_locate,
        skip_invalid: bool = False,
        simulated: bool = False,
    ) -> tuple[AttemptLog, Rejected]:
        """Validate a table with canonical column names and build the log.

        Args:
            attempts: one row per attempt; columns as in ``data/README.md``. Query-level
                columns may ride along with the ``query.`` prefix.
            queries: optional query table (``query_id`` plus ``text`` and metadata).
            source: file name used in error messages.
            locate: maps a 0-based row to the line number users see.
            skip_invalid: set invalid rows aside instead of raising.
            simulated: label the log as generated rather than logged.

        Returns:
            The log and the rejected rows (empty unless ``skip_invalid``).

        Raises:
            LogFormatError: on the first invalid row (strict mode), a missing column, an
                empty table, a query without attempts, or query-level columns that vary
                within a query.
        """
        require_columns(attempts.column_names, source)
        violations = find_violations(attempts)
        rejected = Rejected(attempts.schema.empty_table())
        if violations and not skip_invalid:
            raise_first(violations, source, locate)
        if violations:
            attempts, rejected = _set_aside(attempts, violations, locate)
        if attempts.num_rows == 0:
            raise LogFormatError(
                "the log holds no valid attempts.", source=source,
                fix="check the file is the right one and not empty or truncated.",
            )
        return _build(attempts, queries, source, locate, simulated), rejected


def _set_aside(
    table: pa.Table, violations: list[Violation], locate: RowLocator
) -> tuple[pa.Table, Rejected]:
    reason = np.full(table.num_rows, None, dtype=object)
    for violation in violations:
        text = f"{violation.column}: {violation.problem}"
        todo = violation.rows[reason[violation.rows] == None]  # noqa: E711
        reason[todo] = text
    bad = reason != None  # noqa: E711
    rows = np.flatnonzero(bad)
    rejected = table.take(pa.array(rows)).append_column(
        "_line", pa.array([locate(int(r)) for r in rows], pa.int64())
    ).append_column("_reason", pa.array(reason[rows].tolist(), pa.string()))
    return table.filter(pa.array(~bad)), Rejected(rejected)


def _build(
    attempts: pa.Table,
    queries: pa.Table | None,
    source: str | None,
    locate: RowLocator,
    simulated: bool,
) -> AttemptLog:
    n = attempts.num_rows
    names = attempts.column_names
    query_codes, query_ids = _encode(attempts.column("query_id").cast(pa.string()))
    if queries is not None:
        query_ids, query_codes = _align_with_query_table(queries, query_ids, query_codes, source)
    order = np.argsort(query_codes, kind="stable")
    counts = np.bincount(query_codes, minlength=len(query_ids))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def column(name: str) -> pa.ChunkedArray | None:
        return attempts.column(name) if name in names else None

    arm_codes, arms = (
        _encode(column("arm").cast(pa.string()).fill_null(DEFAULT_ARM))
        if "arm" in names
        else (np.zeros(n, np.int64), np.array([DEFAULT_ARM], dtype=object))
    )
    kind = np.zeros(n, np.int8)
    if "kind" in names:
        kind_codes, kind_names = _encode(column("kind"))
        lookup = np.array([KINDS.index(k) for k in kind_names], dtype=np.int8)
        kind = lookup[kind_codes]
    arm_codes, arms = _sorted_vocabulary(arm_codes, arms)
    answer_codes, answers = _encode(_answer_strings(column("answer")).take(pa.array(order)))
    answer_codes = answer_codes[np.argsort(order, kind="stable")]
    attempt_id = (
        column("attempt_id").cast(pa.string()).to_numpy(zero_copy_only=False).astype(object)
        if "attempt_id" in names
        else np.arange(n).astype(str).astype(object)
    )
    canonical = {"attempt_id", "query_id", "arm", "kind", "round", "answer", "correct",
                 "cost", "score"}
    extra_names = [c for c in names if c not in canonical and not c.startswith(QUERY_PREFIX)]
    extra = {c: attempts.column(c).to_numpy(zero_copy_only=False)[order] for c in extra_names}
    for name in TIMING_COLUMNS[:3]:  # the times and the wave, as numbers
        if name in names:
            extra[name] = _as_float(column(name), np.nan, n)[order]
    query_table = _query_table(attempts, queries, query_ids, query_codes, order, offsets,
                               source, locate)
    return AttemptLog(
        query_ids=query_ids,
        arms=tuple(str(a) for a in arms),
        offsets=offsets,
        arm=arm_codes[order].astype(np.int16),
        kind=kind[order],
        round=_as_float(column("round"), 0.0, n)[order].astype(np.int32),
        answer=answer_codes[order].astype(np.int32),
        answers=answers,
        correct=_as_float(column("correct"), np.nan, n)[order].astype(np.float32),
        cost=_as_float(column("cost"), 1.0, n)[order],
        score=_as_float(column("score"), np.nan, n)[order].astype(np.float32),
        attempt_id=attempt_id[order],
        queries=query_table,
        extra=extra,
        simulated=simulated,
        source=source,
    )


def _align_with_query_table(
    queries: pa.Table, query_ids: np.ndarray, query_codes: np.ndarray, source: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """Order queries as the query table does; refuse attempts of unknown queries and
    queries with empty pools."""
    if "query_id" not in queries.column_names:
        raise LogFormatError("the query table has no 'query_id' column.", source=source,
                             column="query_id", fix="add the query id to the query table.")
    table_ids = queries.column("query_id").cast(pa.string()).to_numpy(zero_copy_only=False)
    position = {qid: i for i, qid in enumerate(table_ids)}
    if len(position) != len(table_ids):
        raise LogFormatError("the query table lists a query id twice.", source=source,
                             column="query_id", fix="keep one row per query.")
    remap = np.array([position.get(qid, -1) for qid in query_ids], dtype=np.int64)
    if (remap < 0).any():
        missing = query_ids[np.flatnonzero(remap < 0)[0]]
        raise LogFormatError(
            f"query {missing!r} has attempts but no row in the query table.", source=source,
            column="query_id", fix="add the query to the query table, or drop its attempts.",
        )
    present = np.zeros(len(table_ids), dtype=bool)
    present[remap] = True
    if not present.all():
        empty = table_ids[np.flatnonzero(~present)[0]]
        raise LogFormatError(
            f"query {empty!r} has an empty pool: the query table lists it but no attempt "
            f"belongs to it ({int((~present).sum())} such queries).",
            source=source, column="query_id",
            fix="add its attempts, or remove it from the query table.",
        )
    return table_ids.astype(object), remap[query_codes]


def _query_table(
    attempts: pa.Table,
    queries: pa.Table | None,
    query_ids: np.ndarray,
    query_codes: np.ndarray,
    order: np.ndarray,
    offsets: np.ndarray,
    source: str | None,
    locate: RowLocator,
) -> QueryTable:
    columns: dict[str, np.ndarray] = {}
    if queries is not None:
        for name in queries.column_names:
            if name != "query_id":
                columns[name] = queries.column(name).to_numpy(zero_copy_only=False)
    first_rows = order[offsets[:-1]]
    for name in attempts.column_names:
        if not name.startswith(QUERY_PREFIX):
            continue
        column = attempts.column(name)
        values = column.to_numpy(zero_copy_only=False)
        if _is_text(column):
            codes, _ = _encode(column)
            varies = codes != codes[first_rows][query_codes]
        else:
            firsts = values[first_rows][query_codes]
            varies = ~((values == firsts) | (_isnan(values) & _isnan(firsts)))
        if varies.any():
            row = int(np.flatnonzero(varies)[0])
            raise LogFormatError(
                f"query-level column takes different values within query "
                f"{query_ids[query_codes[row]]!r}.",
                source=source, line=locate(row), column=name,
                fix="per-attempt values belong in a column without the 'query.' prefix.",
            )
        columns[name[len(QUERY_PREFIX):]] = values[first_rows]
    text = columns.pop("text", np.full(len(query_ids), None, dtype=object))
    return QueryTable(text=np.asarray(text, dtype=object), metadata=columns)


def _is_text(column: pa.ChunkedArray) -> bool:
    return pa.types.is_string(column.type) or pa.types.is_large_string(column.type)


def _isnan(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "f":
        return np.isnan(values)
    return np.zeros(len(values), dtype=bool)
