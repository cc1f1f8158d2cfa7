"""One executor run of one query: its mutable state (:class:`RunState`), the candidates it
drew (:class:`Drawn`) and what it returns (:class:`RunResult`).

:class:`RunState` wraps every call into the session and the recorder with a timer
(:attr:`RunResult.decision_s`: the allocator's own time) and keeps the cost ledger:
rows held for their scores count once they are written. It is given what it needs of
the executor (how to make a request, how to record an unused result, the call cap) and
knows nothing else of it.

Timing (the log's ``started_at``, ``ended_at``, ``wave`` and ``parent`` columns, see
``data/README.md``, "Timing"): the run's clock is ``time.monotonic()`` minus its value
when the run started, in seconds. Every LLM request is timed from the moment its task
starts to its reply (:attr:`CallOutcome.started_at` / ``ended_at``) and belongs to a
*wave*: a per-run counter (0, 1, 2...) that :meth:`RunState.new_wave` advances; the
requests launched together (a SAMPLE(arm)×w, the speculative samples one top-up
launches, the judge votes of one bracket level) share one. A row no request made (a
bye, a verification event, a top-k workspace) gets the time it was recorded as both
start and end, and the current wave; ``parent`` is what the caller names (the attempt
a call waited on), else null.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from allocator.executors._pipeline import CallOutcome, InFlight
from allocator.executors.recorder import QueryLog
from allocator.llm.protocol import Completion, Message
from allocator.session import Action, AttemptResult, Session
from allocator.verifiers.base import Problem

__all__ = ["Drawn", "Request", "RunResult", "RunState", "UnusedRecorder", "completion_columns"]

#: ``request(key, seq, messages, params, n, info)``: one LLM request, awaited to its
#: :class:`~allocator.executors._pipeline.CallOutcome`.
Request = Callable[[Hashable, int, Sequence[Message], Mapping[str, Any], int, dict[str, Any]],
                   Awaitable[CallOutcome]]
#: ``record_unused(run, outcome)``: record a result that finished but was never reported.
UnusedRecorder = Callable[["RunState", CallOutcome], None]


@dataclass(frozen=True)
class Drawn:
    """A candidate the session knows: its index, row and text.

    Attributes:
        index: the session's candidate index.
        attempt_id: its row's ``attempt_id``.
        text: the generated text.
        answer: the normalised answer (None: no answer).
        arm: the arm that produced it (or refined it).
        kind: ``"sample"`` or ``"refine"``.
        round: 0 for samples, the refinement round otherwise.
    """

    index: int
    attempt_id: str
    text: str
    answer: str | None
    arm: str
    kind: str = "sample"
    round: int = 0


@dataclass(frozen=True)
class RunResult:
    """What one executor run of one query gave.

    Attributes:
        query_id: the query.
        answer: the final answer (normalised string), None if no candidate had one.
        text: the text of a candidate that gave the final answer.
        correct: the answer's grade against the reference, None without a reference.
        cost: everything this run paid, in the log's units (completed calls, verifier
            costs, speculative samples that finished after STOP included).
        session_cost: the cost reported to the session (its ``cost_spent``).
        llm_calls: LLM requests started (cancelled ones included).
        cancelled: requests cancelled unfinished (no rows; their cost is unknown).
        unused: speculative results that finished but were never reported.
        actions: the decisions performed, in order, ending with the STOP (absent when
            the cap stopped the run).
        stopped_by: ``"policy"`` or ``"max_llm_calls"``.
        rows: the log rows written by this run, in order.
        session: the session (its history, state, final answer).
        decision_s: seconds spent in the session and the recorder.
        wall_s: seconds the run took.
        ranking: the last tournament's top-K, champion first (RTV, PDR; empty
            before any tournament and for the other strategies).
    """

    query_id: str
    answer: str | None
    text: str | None
    correct: float | None
    cost: float
    session_cost: float
    llm_calls: int
    cancelled: int
    unused: int
    actions: tuple[Action, ...]
    stopped_by: str
    rows: tuple[dict[str, Any], ...] = field(repr=False)
    session: Session = field(repr=False)
    decision_s: float = 0.0
    wall_s: float = 0.0
    ranking: tuple[Drawn, ...] = field(default=(), repr=False)


class RunState:
    """The mutable state of one run: session, log, requests, candidates, timings.

    Strategies read :attr:`session`, :attr:`problem`, :attr:`candidates` and keep their
    own state in :attr:`extra`; every session call and row goes through the timed
    methods below.

    Args:
        problem: the query.
        session: its session.
        log: where its rows go.
        max_llm_calls: the most LLM requests the run may start.
        request: makes one LLM request (see :data:`Request`).
        record_unused: records a speculative result never reported (see
            :data:`UnusedRecorder`); called by :meth:`finish`.
    """

    def __init__(self, problem: Problem, session: Session, log: QueryLog, *,
                 max_llm_calls: int, request: Request, record_unused: UnusedRecorder
                 ) -> None:
        self.max_llm_calls = max_llm_calls
        self._request = request
        self._record_unused = record_unused
        self.problem = problem
        self.session = session
        self.log = log
        self.inflight = InFlight()
        self.candidates: list[Drawn] = []
        self.performed: list[Action] = []
        self.calls = 0
        self.step = 0
        self.cost = 0.0
        self.unused = 0
        self.stopped_by = "policy"
        self.decision_s = 0.0
        self.started = time.perf_counter()
        self._t0 = time.monotonic()
        self.waves = 0  # waves opened so far (the next wave's number)
        self.wave = 0  # the current wave: rows without a call of their own join it
        self.extra: dict[str, Any] = {}  # strategy-specific state
        self._held_cost: dict[str, float] = {}

    # ------------------------------------------------------------ timed bookkeeping
    def decide(self) -> Action:
        """The session's next action (timed); counts the step of a non-STOP action."""
        start = time.perf_counter()
        action = self.session.next_action()
        self.decision_s += time.perf_counter() - start
        if action.kind != "stop":
            self.step += 1
        return action

    def observe(self, result: AttemptResult) -> int:
        """Report an attempt to the session (timed); its candidate index."""
        start = time.perf_counter()
        index = self.session.observe(result)
        self.decision_s += time.perf_counter() - start
        return index

    def verify(self, scores: Mapping[int, float], cost: float, *,
               rescore: bool = False) -> None:
        """Report verifier scores and their cost to the session (timed)."""
        start = time.perf_counter()
        self.session.verify(scores, cost, rescore=rescore)
        self.decision_s += time.perf_counter() - start

    # ------------------------------------------------------------ the run's clock
    def clock(self) -> float:
        """Seconds since the run started (``time.monotonic()``), to the microsecond."""
        return round(time.monotonic() - self._t0, 6)

    def new_wave(self) -> int:
        """Open the next launch wave and make it current; its number."""
        self.wave = self.waves
        self.waves += 1
        return self.wave

    def record(self, row: Mapping[str, Any], *, hold: bool = False) -> dict[str, Any]:
        """Write (or hold) a log row (timed) and book its cost; the full row.

        A row without ``started_at`` (one no request made) is stamped with the time now
        as both start and end, and the current wave; ``parent`` defaults to null.
        """
        start = time.perf_counter()
        if "started_at" not in row:
            now = self.clock()
            row = {"started_at": now, "ended_at": now, "wave": self.wave, **row}
        full = self.log.add({"parent": None, **row}, hold=hold)
        self.cost += float(full["cost"] or 0.0) if not hold else 0.0
        if hold:
            self._held_cost[full["attempt_id"]] = float(full["cost"] or 0.0)
        self.decision_s += time.perf_counter() - start
        return full

    def update(self, attempt_id: str, **fields: Any) -> None:
        """Change a held row (its ``score``, its ``cost``...)."""
        if "cost" in fields and attempt_id in self._held_cost:
            self._held_cost[attempt_id] = float(fields["cost"] or 0.0)
        self.log.update(attempt_id, **fields)

    def release(self, attempt_ids: Iterable[str] | None = None) -> None:
        """Write held rows (all by default) and book their costs."""
        start = time.perf_counter()
        ids = list(self._held_cost) if attempt_ids is None else list(attempt_ids)
        for attempt_id in ids:
            self.cost += self._held_cost.pop(attempt_id, 0.0)
        self.log.release(ids)
        self.decision_s += time.perf_counter() - start

    # ------------------------------------------------------------ calls
    @property
    def calls_left(self) -> int:
        """LLM requests this run may still start (``max_llm_calls`` minus started)."""
        return self.max_llm_calls - self.calls

    def launch(self, key: Hashable, messages: Sequence[Message], params: Mapping[str, Any],
               *, n: int = 1, info: Mapping[str, Any] | None = None,
               wave: int | None = None) -> None:
        """Start a request in the background (counted against the cap), in ``wave``
        (None: a new wave)."""
        self.calls += 1
        seq = self.inflight.next_seq()
        wave = self.new_wave() if wave is None else wave
        attached = dict(info or {})
        self.inflight.launch(key, self._timed(
            lambda: self._request(key, seq, messages, params, n, attached), wave))

    async def call(self, key: Hashable, messages: Sequence[Message],
                   params: Mapping[str, Any], *, n: int = 1,
                   wave: int | None = None) -> CallOutcome:
        """One request, awaited now (counted against the cap), in ``wave`` (None: a new
        wave)."""
        self.calls += 1
        seq = self.inflight.next_seq()
        wave = self.new_wave() if wave is None else wave
        return await self._timed(lambda: self._request(key, seq, messages, params, n, {}),
                                 wave)

    async def _timed(self, request: Callable[[], Awaitable[CallOutcome]], wave: int
                     ) -> CallOutcome:
        """``request()`` awaited (made only once the task runs: a task cancelled before
        it starts leaves no coroutine unawaited), stamped with its start, end and wave."""
        started = self.clock()
        outcome = await request()
        return dataclasses.replace(outcome, started_at=started, ended_at=self.clock(),
                                   wave=wave)

    async def finish(self) -> None:
        """Cancel what is in flight, record finished-but-unreported results, write held
        rows (idempotent)."""
        for outcome in await self.inflight.cancel_all():
            self.unused += 1
            self._record_unused(self, outcome)
        self.release()


def completion_columns(outcome: CallOutcome, completion: Completion) -> dict[str, Any]:
    """The columns a request gives its row: the text, latency, finish reason and timing
    (``started_at``, ``ended_at``, ``wave``)."""
    return {"completion": completion.text, "latency_s": round(outcome.latency_s, 6),
            "finish_reason": completion.finish_reason, "started_at": outcome.started_at,
            "ended_at": outcome.ended_at, "wave": outcome.wave}
