"""Shared machinery of the strategy executors: the decision loop, LLM calls, recording.

:class:`Executor` implements the loop, SAMPLE (with speculative parallelism), the
bookkeeping of candidates, the ``max_llm_calls`` safety cap, the recording of every call
(:mod:`allocator.executors.recorder`) and the error contract; its docstring gives the
loop, the parallelism and the errors. Each strategy adds what REFINE and VERIFY mean for
it and how the final answer is chosen.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

from allocator._checks import check_int
from allocator.errors import (
    AllocatorError,
    ExecutorError,
    LLMError,
    ParameterError,
    VerifierError,
)
from allocator.executors._pipeline import CallOutcome
from allocator.executors.recorder import (
    Grader,
    QueryLog,
    RunRecorder,
    exact_grade,
    normalise_reference,
)
from allocator.executors.run import Drawn, RunResult, RunState, completion_columns
from allocator.executors.sessions import SessionFactory, session_factory
from allocator.llm.protocol import Completion, LLMClient, Message, as_messages
from allocator.session import Action, AttemptResult, Session
from allocator.verifiers.base import Problem

__all__ = ["DEFAULT_PROMPT", "Drawn", "Executor", "RunResult", "as_problem"]

#: The default sampling prompt: the question as the user message.
DEFAULT_PROMPT = "{question}"

#: ``extract(text) -> answer`` (None: no answer); answers are compared as ``str(answer)``.
Extractor = Callable[[str], Hashable | None]
#: ``cost(completion) -> cost in the log's units``.
CostFunction = Callable[[Completion], float]


def completion_tokens(completion: Completion) -> float:
    """The default cost: prompt share plus completion tokens (:attr:`Completion.tokens`)."""
    return float(completion.tokens)


def as_problem(problem: Problem | str) -> Problem:
    """A :class:`Problem`; a bare question gets a query id from its text's hash."""
    if isinstance(problem, Problem):
        return problem
    if isinstance(problem, str):
        digest = hashlib.sha1(problem.encode("utf-8")).hexdigest()[:12]
        return Problem(query_id=f"q-{digest}", question=problem)
    raise ParameterError("Executor.arun", "problem", "a Problem or a question string", problem)


# ------------------------------------------------------------------ the executor
class Executor:
    """Base class of strategy executors: the policy decides, the executor calls the LLM.

    An executor turns the policy's actions into LLM calls for one query at a time::

        while (action := session.next_action()).kind != "stop":
            perform(action)            # LLM calls; report to the session; record rows
        return session.final_answer()

    Speculative parallelism. With ``parallelism=k`` the executor keeps up to ``k`` sample
    requests in flight while the policy keeps asking for samples of the same arm, and
    reports them to the session one at a time, in the order they finish: every decision
    is still the policy's decision on the results reported so far, exactly as when
    driving the session by hand. When the policy says STOP (or an error ends the run) the
    requests still running are cancelled (``task.cancel()``; no row is written for them,
    their count is :attr:`RunResult.cancelled`); those that had already finished are
    recorded with ``reported = false`` (they were paid for and are valid independent
    samples of their arm) and counted in :attr:`RunResult.cost`, but never shown to the
    session. A query thus costs up to ``k - 1`` extra requests.

    Waves. A ``SAMPLE(arm)×w`` decision (a layout with parallel widths, see
    :class:`~allocator.actions.ActionLayout`) launches its ``w`` requests at once as one
    wave (within the ``max_llm_calls`` cap: a wave that does not fit stops the run as the
    cap does), waits for all of them, and reports them to the session in launch order,
    with no decision in between. Every row records its timing: ``started_at`` and
    ``ended_at`` (seconds since the run started, ``time.monotonic()``), ``wave``
    (requests launched together share one; a REFINE or VERIFY step's requests are their
    own waves) and ``parent`` (the attempt a call waited on); see ``data/README.md``,
    "Timing".

    Errors. An :class:`~allocator.errors.LLMError` the client gave up on (or a
    :class:`~allocator.errors.VerifierError`) ends the run: requests in flight are
    cancelled, the rows of every completed call are written (held rows included), then
    :class:`~allocator.errors.ExecutorError` is raised with the query id. The log stays
    valid. The ``max_llm_calls`` cap is not an error: the run stops as if the policy had
    said STOP and :attr:`RunResult.stopped_by` says ``"max_llm_calls"``.

    Args:
        client: the LLM client (:class:`~allocator.llm.LLMClient`), e.g.
            :class:`allocator.llm.OpenAIClient`.
        arms: arm name -> request parameters for :meth:`LLMClient.complete`
            (``{"model": ..., "temperature": ...}``); the session's arms must be among them.
        extract: ``text -> answer`` (None when the text has no answer), e.g.
            ``functools.partial(allocator.answers.extract, kind="number")``; answers vote
            and are logged as ``str(answer)``.
        decider: who decides: a :class:`~allocator.oracle.BudgetOracle` (the learned
            policy, ``allocator.load(bundle)``), a
            :class:`~allocator.executors.PolicyOracle`, a
            :class:`~allocator.policies.Policy` (over ``arms``' names in order, e.g.
            ``make_policy("adaptive-consistency")``) or a
            :class:`~allocator.executors.SessionFactory`; optional when every call of
            :meth:`arun` passes a session.
        recorder: where to log every call (:class:`~allocator.executors.RunRecorder`);
            None keeps the rows in :attr:`RunResult.rows` only.
        prompt: the sampling prompt template (``str.format`` fields: ``question`` and
            the problem's metadata keys).
        system: an optional system message.
        parallelism: sample requests kept in flight while the policy keeps sampling
            (see above); 1 = strictly sequential.
        max_llm_calls: the most LLM requests one query may start (a safety cap).
        cost: ``completion -> cost`` in the log's units; tokens by default.
        grade: ``grade(answer, reference) -> [0, 1]`` for rows of problems with a
            reference; exact equality of normalised strings by default.
    """

    #: The ``strategy`` column.
    name: ClassVar[str] = "executor"
    #: Whether the strategy performs REFINE / VERIFY (sessions are made accordingly).
    supports_refine: ClassVar[bool] = False
    supports_verify: ClassVar[bool] = False
    #: Hold candidate rows until their score is known (strategies that verify).
    holds_candidates: ClassVar[bool] = False

    def __init__(
        self,
        client: LLMClient,
        arms: Mapping[str, Mapping[str, Any]],
        extract: Extractor,
        *,
        decider: Any = None,
        recorder: RunRecorder | None = None,
        prompt: str = DEFAULT_PROMPT,
        system: str | None = None,
        parallelism: int = 1,
        max_llm_calls: int = 64,
        cost: CostFunction = completion_tokens,
        grade: Grader = exact_grade,
    ) -> None:
        owner = type(self).__name__
        if not callable(getattr(client, "complete", None)):
            raise ParameterError(owner, "client", "an LLMClient (an object with async "
                                 "complete(messages, n=..., **params))", client)
        if not isinstance(arms, Mapping) or not arms or not all(
                isinstance(name, str) and isinstance(params, Mapping)
                for name, params in arms.items()):
            raise ParameterError(owner, "arms", "a non-empty mapping arm name -> request "
                                 "parameters ({'model': ..., 'temperature': ...})", arms)
        if not callable(extract):
            raise ParameterError(owner, "extract", "a callable text -> answer or None",
                                 extract)
        parallelism = check_int(owner, "parallelism", parallelism, minimum=1)
        max_llm_calls = check_int(owner, "max_llm_calls", max_llm_calls, minimum=1)
        self.client = client
        self.arms = {name: dict(params) for name, params in arms.items()}
        self.extract = extract
        self.decider = decider
        self.sessions: SessionFactory | None = (
            None if decider is None else session_factory(decider, list(self.arms)))
        self.recorder = recorder
        self.prompt = prompt
        self.system = system
        self.parallelism = parallelism
        self.max_llm_calls = max_llm_calls
        self.cost = cost
        self.grade = grade

    # ------------------------------------------------------------ public API
    async def arun(self, problem: Problem | str, *, session: Session | None = None
                   ) -> RunResult:
        """Run one query to the policy's STOP.

        Args:
            problem: the query (:class:`~allocator.verifiers.Problem`; a string is a
                question without reference).
            session: the session to drive; default: a new one from ``decider``, made
                with this strategy's ``supports_refine`` / ``supports_verify``.

        Returns:
            The :class:`RunResult`.

        Raises:
            ExecutorError: the LLM client (or the verifier) failed for good; the rows of
                every completed call are written first.
            ParameterError: no session and no decider, or the session asks for an arm
                the executor does not serve.
        """
        problem = as_problem(problem)
        session = session if session is not None else self._new_session(problem)
        run = RunState(problem, session, self._query_log(problem),
                       max_llm_calls=self.max_llm_calls, request=self._request,
                       record_unused=self._record_unused)
        try:
            await self._drive(run)
            answer, text = self._final(run)
        except (LLMError, VerifierError) as error:
            await run.finish()
            raise ExecutorError(
                f"{self.name}: {type(error).__name__}: {error} (the run log holds the "
                f"{len(run.log.rows)} rows of this run's completed calls)",
                query_id=problem.query_id) from error
        finally:
            await run.finish()
        return self._result(run, answer, text)

    def run(self, problem: Problem | str, *, session: Session | None = None) -> RunResult:
        """:meth:`arun` from synchronous code (starts an event loop).

        Raises:
            AllocatorError: called from a running event loop (``await arun()`` there).
        """
        _no_running_loop("run")
        return asyncio.run(self.arun(problem, session=session))

    async def arun_many(self, problems: Iterable[Problem | str], *, concurrency: int = 8
                        ) -> list[RunResult]:
        """Run many queries, ``concurrency`` at a time; results in the problems' order.

        Raises:
            ExecutorError: the first query that failed (the others are cancelled; their
                completed calls are recorded).
        """
        concurrency = check_int(f"{type(self).__name__}.arun_many", "concurrency",
                                concurrency, minimum=1)
        from allocator._aio import gather_or_cancel

        gate = asyncio.Semaphore(concurrency)

        async def one(problem: Problem | str) -> RunResult:
            async with gate:
                return await self.arun(problem)

        return await gather_or_cancel(one(problem) for problem in problems)

    def run_many(self, problems: Iterable[Problem | str], *, concurrency: int = 8
                 ) -> list[RunResult]:
        """:meth:`arun_many` from synchronous code."""
        _no_running_loop("run_many")
        return asyncio.run(self.arun_many(problems, concurrency=concurrency))

    # ------------------------------------------------------------ the loop
    async def _drive(self, run: RunState) -> None:
        while True:
            action = run.decide()
            if action.kind == "stop":
                run.performed.append(action)
                return
            if not await self._perform(run, action):
                run.stopped_by = "max_llm_calls"
                return
            run.performed.append(action)

    async def _perform(self, run: RunState, action: Action) -> bool:
        """Perform one action; False when the call cap leaves no room for it."""
        if action.kind == "sample" and action.width > 1:
            return await self._sample_wave(run, action.arm, action.width)
        if action.kind == "sample":
            return await self._sample(run, action.arm)
        if action.kind == "refine" and self.supports_refine:
            return await self._refine(run)
        if action.kind == "verify" and self.supports_verify:
            return await self._verify(run)
        flag = f"supports_{action.kind}"
        raise ParameterError(f"{type(self).__name__}.arun", "session",
                             f"a session made with {flag}=False: {self.name} cannot "
                             f"perform {action!s} (let the executor make its sessions)",
                             action)

    async def _refine(self, run: RunState) -> bool:  # pragma: no cover - strategies override
        raise NotImplementedError

    async def _verify(self, run: RunState) -> bool:  # pragma: no cover - strategies override
        raise NotImplementedError

    def _final(self, run: RunState) -> tuple[str | None, str | None]:
        """The final answer and a text that gave it: the session's answer by default."""
        answer = run.session.final_answer()
        return (None if answer is None else str(answer)), self._text_of(run, answer)

    # ------------------------------------------------------------ SAMPLE
    async def _sample(self, run: RunState, arm: str | None) -> bool:
        self._check_arm(arm)
        key = ("sample", arm)
        self._top_up(run, key, lambda: self._sample_messages(run, arm), self.arms[arm])
        if not run.inflight.available(key):
            return False
        outcome = await run.inflight.take(key)
        self._report(run, outcome, kind="sample", arm=arm)
        return True

    async def _sample_wave(self, run: RunState, arm: str | None, width: int) -> bool:
        """SAMPLE(arm)×``width``: ``width`` requests launched together as one wave,
        reported in launch order once all have ended; False when the cap has no room."""
        self._check_arm(arm)
        if run.calls_left < width:
            return False
        wave = run.new_wave()
        key = ("sample", arm, wave)
        for _ in range(width):
            run.launch(key, self._sample_messages(run, arm), self.arms[arm], wave=wave)
        for outcome in await run.inflight.take_all(key):
            self._report(run, outcome, kind="sample", arm=arm)
        return True

    def _check_arm(self, arm: str | None) -> None:
        if arm not in self.arms:
            raise ParameterError(f"{type(self).__name__}.arun", "arms",
                                 f"arms that include {arm!r} (the session asked for it; "
                                 f"the executor serves {list(self.arms)})", list(self.arms))

    def _top_up(self, run: RunState, key: Hashable, messages: Callable[[], Sequence[Message]],
                params: Mapping[str, Any], *, limit: int | None = None,
                info: Mapping[str, Any] | None = None) -> None:
        """Launch requests of ``key``: at least one available, up to ``parallelism``
        running (and at most ``limit`` available), within the call cap. The requests
        one top-up launches share a wave."""
        most = self.parallelism if limit is None else min(self.parallelism, limit)
        wave = None
        while run.calls_left > 0 and (
                not run.inflight.available(key)
                or (run.inflight.pending() < self.parallelism
                    and run.inflight.available(key) < most)):
            wave = run.new_wave() if wave is None else wave
            run.launch(key, messages(), params, info=info, wave=wave)

    def _sample_messages(self, run: RunState, arm: str | None) -> list[Message]:
        del arm
        return self._messages(self.prompt, run.problem)

    def _report(self, run: RunState, outcome: CallOutcome, *, kind: str, arm: str,
                round_: int = 0, role: str | None = None, extra_cost: float = 0.0,
                extra: Mapping[str, Any] | None = None) -> Drawn:
        """Record a finished attempt and report it to the session.

        ``extra_cost`` (a PDR round's summary) is added to the cost reported to the
        session, not to the row: the call that cost it has its own row.
        """
        completion = outcome.completions[0]
        answer = self._answer(completion.text)
        cost = float(self.cost(completion))
        row = run.record({
            "kind": kind, "arm": arm, "round": round_, "answer": answer, "cost": cost,
            "role": role or ("sample" if kind == "sample" else "refinement"),
            "step": run.step, **completion_columns(outcome, completion), **(extra or {}),
        }, hold=self.holds_candidates)
        index = run.observe(AttemptResult(kind, arm if kind == "sample" else None, answer,
                                          cost + extra_cost))
        drawn = Drawn(index, row["attempt_id"], completion.text, answer, arm, kind, round_)
        run.candidates.append(drawn)
        return drawn

    def _record_unused(self, run: RunState, outcome: CallOutcome) -> None:
        """A speculative result that finished but was never reported: recorded, flagged."""
        kind, detail = (outcome.key[:2] if isinstance(outcome.key, tuple)
                        else (outcome.key, None))
        if kind not in ("sample", "refine"):
            return
        for completion in outcome.completions:
            arm = detail if kind == "sample" else outcome.info.get("arm")
            run.record({
                "kind": kind, "arm": arm, "round": outcome.info.get("round", 0),
                "answer": self._answer(completion.text),
                "cost": float(self.cost(completion)), "reported": False,
                "role": "sample" if kind == "sample" else "refinement",
                "parent": outcome.info.get("summary"),
                **{key: outcome.info[key] for key in ("summary", "conditioned_on")
                   if key in outcome.info},
                **completion_columns(outcome, completion)})

    # ------------------------------------------------------------ helpers
    async def _request(self, key: Hashable, seq: int, messages: Sequence[Message],
                       params: Mapping[str, Any], n: int, info: dict[str, Any]
                       ) -> CallOutcome:
        start = time.perf_counter()
        completions = list(await self.client.complete(messages, n=n, **params))
        if len(completions) != n:
            raise LLMError(f"asked for {n} completions, the client returned "
                           f"{len(completions)}")
        return CallOutcome(key, seq, completions, time.perf_counter() - start, info)

    def _answer(self, text: str) -> str | None:
        value = self.extract(text)
        return None if value is None else str(value)

    def _messages(self, template: str, problem: Problem, **fields: Any) -> list[Message]:
        return as_messages(render(template, problem, type(self).__name__, **fields),
                           self.system)

    def _text_of(self, run: RunState, answer: Hashable | None) -> str | None:
        if answer is None:
            return None
        state = run.session.state
        matching = [drawn for drawn in run.candidates if drawn.answer == answer]
        if not matching:
            return None
        scored = [drawn for drawn in matching if state.is_verified[drawn.index]
                  and state.scores[drawn.index] == state.scores[drawn.index]]
        if scored:
            return max(scored, key=lambda drawn: state.scores[drawn.index]).text
        return matching[0].text

    def _new_session(self, problem: Problem) -> Session:
        if self.sessions is None:
            raise ParameterError(f"{type(self).__name__}.arun", "session",
                                 "a Session, since the executor has no decider (pass "
                                 "decider=allocator.load(...) or a policy)", None)
        return self.sessions(problem, arms=list(self.arms),
                             supports_refine=self.supports_refine,
                             supports_verify=self.supports_verify)

    def _query_log(self, problem: Problem) -> QueryLog:
        grade = None
        if problem.reference is not None:
            reference = normalise_reference(problem.reference, self.extract)
            grade = lambda answer: self.grade(answer, reference)  # noqa: E731
        return QueryLog(self.recorder, problem, strategy=self.name, grade=grade)

    def _result(self, run: RunState, answer: str | None, text: str | None) -> RunResult:
        return RunResult(
            query_id=run.problem.query_id, answer=answer, text=text,
            correct=run.log.grade(answer), cost=run.cost,
            session_cost=run.session.cost_spent, llm_calls=run.calls,
            cancelled=run.inflight.cancelled, unused=run.unused,
            actions=tuple(run.performed), stopped_by=run.stopped_by,
            rows=tuple(run.log.rows), session=run.session, decision_s=run.decision_s,
            wall_s=time.perf_counter() - run.started,
            ranking=tuple(run.extra.get("top_k", ())))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(arms={list(self.arms)}, decider={self.decider!r}, "
                f"parallelism={self.parallelism}, max_llm_calls={self.max_llm_calls})")


# ------------------------------------------------------------------ functions
class _Fields(dict[str, Any]):
    def __missing__(self, key: str) -> Any:
        raise KeyError(key)


def render(template: str, problem: Problem, owner: str, **fields: Any) -> str:
    """Fill a prompt template with ``question``, the problem's metadata and ``fields``.

    Raises:
        ParameterError: the template names a field that is not available.
    """
    values = _Fields({**problem.metadata, "question": problem.question, **fields})
    try:
        return template.format_map(values)
    except (KeyError, IndexError, ValueError) as error:
        raise ParameterError(owner, "prompt template", f"a str.format template using only "
                             f"the fields {sorted(values)} ({error!r}; write literal braces "
                             "as {{ }})", template) from error


def _no_running_loop(name: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise AllocatorError(f"Executor.{name}() starts its own event loop and cannot run inside "
                         f"one: use 'await executor.a{name}(...)' there.")
