"""A deterministic in-process LLM client for the executor tests, and a scripted policy.

:class:`ScriptedClient` implements the :class:`~allocator.llm.LLMClient` protocol with
scripted replies: sampling requests get the next text of their question's script, judge,
distillation and refinement requests are told apart by their prompt. Each request waits
a scripted number of event-loop ticks (``asyncio.sleep(0)``), never wall time, so the
order in which concurrent requests finish is deterministic. It records every call, the
most calls in flight at once, and the calls cancelled; a reply can be :data:`HANG`
(never finishes until cancelled) or an exception to raise.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from allocator.actions import STOP, refine_action, sample_action, verify_action
from allocator.featurizer import StateBatch
from allocator.llm.protocol import Completion, Message
from allocator.policies.base import Policy
from allocator.session import Action, AttemptResult, Session, Verification

#: A reply that never arrives (until the request is cancelled).
HANG = object()

Reply = Any  # str | BaseException | HANG


@dataclass
class Call:
    """One request the client received."""

    number: int
    kind: str  # "sample", "judge", "rollout summary", "distill", "refine"
    prompt: str
    n: int
    params: dict[str, Any]
    finished: bool = False
    cancelled: bool = False
    failed: bool = False


@dataclass
class ScriptedClient:
    """Scripted replies; see the module docstring.

    Args:
        samples: question -> the texts its sampling requests return, in call order.
        refinements: the texts refinement requests return, in call order.
        judge: ``prompt -> one vote's text`` for judge requests.
        summary: the text of distillation requests.
        ticks: event-loop ticks a request of call number ``i`` waits (an int or
            ``i -> int``).
        fail_at: call number (0-based) -> an exception to raise instead of replying.
    """

    samples: Mapping[str, Sequence[Reply]] = field(default_factory=dict)
    refinements: Sequence[Reply] = ()
    judge: Callable[[str], str] = lambda prompt: "Best: 1"
    summary: str = "SUMMARY: most attempts say 7."
    ticks: int | Callable[[int], int] = 1
    fail_at: Mapping[int, BaseException] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    active: int = 0
    max_active: int = 0

    def __post_init__(self) -> None:
        self._next_sample: dict[str, int] = {}
        self._next_refine = 0

    async def complete(self, messages: Sequence[Message], *, n: int = 1,
                       **params: Any) -> list[Completion]:
        prompt = messages[-1]["content"]
        call = Call(len(self.calls), _kind(prompt), prompt, n, dict(params))
        self.calls.append(call)
        replies = [self._reply(call) for _ in range(n)]
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            ticks = self.ticks(call.number) if callable(self.ticks) else self.ticks
            for _ in range(ticks):
                await asyncio.sleep(0)
            if call.number in self.fail_at:
                call.failed = True
                raise self.fail_at[call.number]
            if any(reply is HANG for reply in replies):
                await asyncio.Event().wait()
            for reply in replies:
                if isinstance(reply, BaseException):
                    call.failed = True
                    raise reply
            call.finished = True
            return [Completion(text=reply, completion_tokens=len(reply), finish_reason="stop")
                    for reply in replies]
        except asyncio.CancelledError:
            call.cancelled = True
            raise
        finally:
            self.active -= 1

    def _reply(self, call: Call) -> Reply:
        if call.kind == "judge":
            return self.judge(call.prompt)
        if call.kind == "distill":
            return self.summary
        if call.kind == "rollout summary":
            return rollout_summary(call.prompt)
        if call.kind == "refine":
            self._next_refine += 1
            return self.refinements[self._next_refine - 1]
        position = self._next_sample.get(call.prompt, 0)
        self._next_sample[call.prompt] = position + 1
        return self.samples[call.prompt][position]

    def of_kind(self, kind: str) -> list[Call]:
        """The calls of one kind, in arrival order."""
        return [call for call in self.calls if call.kind == kind]


def _kind(prompt: str) -> str:
    if prompt.startswith("Candidate solutions"):
        return "judge"
    if "Summarise this attempt" in prompt:
        return "rollout summary"
    if "attempted solutions" in prompt:
        return "distill"
    if "Summary of earlier attempts" in prompt or "strongest earlier attempts" in prompt:
        return "refine"
    return "sample"


def rollout_summary(prompt: str) -> str:
    """A structured summary of the attempt a summary prompt shows: its last answer line
    kept verbatim (so judges that read answers read the same in summaries)."""
    found = re.findall(r"The answer is \S+", prompt)
    return "Approach: scripted.\nFinal answer: " + (found[-1] if found else "none")


def answer_text(answer: str) -> str:
    """A generation ending with an answer the tests' extractor reads."""
    return f"Let me think step by step. The answer is {answer}"


def texts(answers: str) -> list[str]:
    """Generations answering each of the space-separated ``answers``."""
    return [answer_text(answer) for answer in answers.split()]


#: The arm every executor test serves.
ARMS = {"small": {"model": "small-model", "temperature": 0.7}}


def extract(text: str) -> str | None:
    """The tests' answer extractor: what follows the last 'The answer is'."""
    marker = "The answer is "
    return text.rsplit(marker, 1)[1].strip() if marker in text else None


@dataclass(frozen=True)
class ScriptPolicy(Policy):
    """Draws ``drafts`` samples of arm 0, then ``refines`` refinements, VERIFYs once if
    asked and allowed, then STOPs (a test policy; not registered)."""

    name: ClassVar[str] = "script"
    drafts: int = 2
    refines: int = 0
    verify: bool = False

    def act(self, state: StateBatch, mask: np.ndarray) -> np.ndarray:
        arms = np.shape(state.samples)[1]
        out = np.full(state.batch_size, STOP, dtype=np.int64)
        for b in range(state.batch_size):
            if state.samples[b, 0] < self.drafts and mask[b, sample_action(0)]:
                out[b] = sample_action(0)
            elif state.refines[b] < self.refines and mask[b, refine_action(arms)]:
                out[b] = refine_action(arms)
            elif self.verify and mask[b, verify_action(arms)]:
                out[b] = verify_action(arms)
        return out


def replay_by_hand(session: Session, fresh: Session) -> list[Action]:
    """Drive ``fresh`` by hand with what ``session`` was told; check each decision agrees.

    Returns:
        The decisions, in order.
    """
    decisions = []
    for event in session.history:
        if isinstance(event, Action):
            decision = fresh.next_action()
            assert decision == event, (len(decisions), decision, event)
            decisions.append(decision)
        elif isinstance(event, AttemptResult):
            fresh.observe(event)
        else:
            assert isinstance(event, Verification)
            fresh.verify(event.scores, event.cost, rescore=event.rescore)
    return decisions


def run(coroutine: Any) -> Any:
    """Run a coroutine and check no task it started is left running."""

    async def checked() -> Any:
        result = await coroutine
        current = asyncio.current_task()
        left = [task for task in asyncio.all_tasks() if task is not current]
        assert not left, f"tasks left running: {left}"
        return result

    return asyncio.run(checked())
