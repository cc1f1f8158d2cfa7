"""An LLM as a judge: ask a model, ``votes`` times, whether each candidate is correct.

One request per candidate asks for ``n=votes`` completions; candidates are judged
concurrently. Each reply is parsed into a vote in [0, 1] (``VERDICT: correct`` = 1,
``VERDICT: incorrect`` = 0, or ``SCORE: k/10`` mapped to (k - 1) / 9); a reply that
cannot be parsed is a NaN vote, never a pass. The verdict's score is the mean of the
parsed votes (NaN if none parsed) and its cost the tokens the request used.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from allocator._aio import gather_or_cancel
from allocator.errors import LLMError, ParameterError, VerifierError
from allocator.llm.protocol import Completion, LLMClient, as_messages
from allocator.verifiers.base import Candidate, Problem, Verdict

__all__ = ["DEFAULT_TEMPLATE", "LLMJudge", "parse_verdict"]

#: The default grading prompt. Fields: ``question``, ``candidate`` (the candidate's
#: text), ``answer`` (its extracted answer, or ``""``), ``reference`` (or ``""``) and
#: ``reference_block`` (``"Reference answer: ...\n\n"`` when a reference is known).
DEFAULT_TEMPLATE = (
    "You are grading a response to a question.\n\n"
    "Question:\n{question}\n\n"
    "{reference_block}"
    "Response:\n{candidate}\n\n"
    "Is the response's final answer correct? Reason briefly, then finish with one line, "
    "exactly 'VERDICT: correct' or 'VERDICT: incorrect'."
)

_POSITIVE = ("correct", "right", "yes", "pass", "true")
_NEGATIVE = ("incorrect", "wrong", "no", "fail", "false")
_VERDICT = re.compile(
    r"verdict\W{0,6}(not\s+)?(" + "|".join(_NEGATIVE + _POSITIVE) + r")\b", re.IGNORECASE)
_SCORE = re.compile(r"score\W{0,6}(\d+(?:\.\d+)?)(?:\s*/\s*(\d+(?:\.\d+)?))?", re.IGNORECASE)



def parse_verdict(text: str) -> float:
    """A judge's reply as a vote: 1.0, 0.0, a 1-10 score mapped to [0, 1], or NaN.

    The last ``VERDICT: <word>`` wins (``correct``/``right``/``yes``/``pass``/``true`` is
    1, ``incorrect``/``wrong``/``no``/``fail``/``false`` is 0, ``not`` flips it;
    punctuation and markdown around the colon are allowed). Without one, the last
    ``SCORE: k`` or ``SCORE: k/10`` with 1 <= k <= 10 gives (k - 1) / 9. Anything else,
    including a score out of range, is NaN: an unreadable reply never counts as a pass.

    Args:
        text: the judge's reply.
    """
    verdicts = list(_VERDICT.finditer(text))
    if verdicts:
        negated, word = verdicts[-1].group(1), verdicts[-1].group(2).lower()
        vote = 1.0 if word in _POSITIVE else 0.0
        return 1.0 - vote if negated else vote
    scores = list(_SCORE.finditer(text))
    if scores:
        value, scale = float(scores[-1].group(1)), scores[-1].group(2)
        if 1.0 <= value <= 10.0 and (scale is None or float(scale) == 10.0):
            return (value - 1.0) / 9.0
    return math.nan


@dataclass(frozen=True)
class LLMJudge:
    """Grades every candidate with an LLM, ``votes`` times, and averages the votes.

    Attributes:
        client: any :class:`~allocator.llm.protocol.LLMClient`.
        votes: completions requested per candidate (``n`` of one request).
        model: passed to the client as ``model=`` when set.
        template: the grading prompt (see :data:`DEFAULT_TEMPLATE` for its fields).
        system: an optional system message.
        temperature: sampling temperature (votes need some randomness to differ).
        max_tokens: cap on each reply's length, passed to the client when set.
        max_concurrency: candidates judged at once.
        parse: turns one reply into a vote in [0, 1] or NaN (default :func:`parse_verdict`).
        name: recorded in run logs.
    """

    client: LLMClient
    votes: int = 3
    model: str | None = None
    template: str = DEFAULT_TEMPLATE
    system: str | None = None
    temperature: float = 0.7
    max_tokens: int | None = 512
    max_concurrency: int = 8
    parse: Callable[[str], float] = parse_verdict
    name: str = "judge"

    def __post_init__(self) -> None:
        if not isinstance(self.client, LLMClient):
            raise ParameterError("LLMJudge", "client", "an LLMClient (an object with an "
                                 "async complete(messages, n=..., **params))", self.client)
        for name in ("votes", "max_concurrency"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ParameterError("LLMJudge", name, "an integer >= 1", value)
        if not callable(self.parse):
            raise ParameterError("LLMJudge", "parse", "a callable str -> float", self.parse)
        _check_template(self.template)

    def prompt(self, problem: Problem, candidate: Candidate) -> str:
        """The grading prompt for one candidate."""
        return self.template.format_map(_fields(problem, candidate))

    async def verify(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Verdict]:
        """One verdict per candidate, in order; candidates are judged concurrently.

        Raises:
            VerifierError: a request failed for good (the client's ``LLMError``, chained);
                the other requests still in flight are cancelled.
        """
        gate = asyncio.Semaphore(self.max_concurrency)

        async def one(candidate: Candidate) -> Verdict:
            async with gate:
                return await self._judge(problem, candidate)

        return await gather_or_cancel([one(candidate) for candidate in candidates])

    async def _judge(self, problem: Problem, candidate: Candidate) -> Verdict:
        messages = as_messages(self.prompt(problem, candidate), self.system)
        try:
            replies = await self.client.complete(messages, n=self.votes, **self._params())
        except LLMError as error:
            raise VerifierError(f"query {problem.query_id!r}: the judge's request failed: "
                                f"{error}") from error
        return self._verdict(replies)

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"temperature": self.temperature}
        if self.model is not None:
            params["model"] = self.model
        if self.max_tokens is not None:
            params["max_tokens"] = self.max_tokens
        return params

    def _verdict(self, replies: Sequence[Completion]) -> Verdict:
        votes = [self._vote(reply.text) for reply in replies]
        usable = [vote for vote in votes if not math.isnan(vote)]
        score = sum(usable) / len(usable) if usable else math.nan
        cost = float(sum(reply.tokens for reply in replies))
        detail = f"mean of {len(usable)}/{len(votes)} votes"
        if len(usable) < len(votes):
            detail += f" ({len(votes) - len(usable)} unparseable)"
        return Verdict(score, cost, detail)

    def _vote(self, text: str) -> float:
        vote = float(self.parse(text))
        return vote if math.isnan(vote) else min(1.0, max(0.0, vote))


def _fields(problem: Problem, candidate: Candidate) -> Mapping[str, str]:
    reference = problem.reference
    return {
        "question": problem.question,
        "candidate": candidate.text,
        "answer": "" if candidate.answer is None else str(candidate.answer),
        "reference": reference or "",
        "reference_block": f"Reference answer: {reference}\n\n" if reference else "",
    }


def _check_template(template: object) -> None:
    example = _fields(Problem("q", "question", "reference"), Candidate("text", "answer"))
    try:
        if not isinstance(template, str):
            raise TypeError(type(template).__name__)
        template.format_map(example)
    except (KeyError, IndexError, ValueError, TypeError) as error:
        raise ParameterError("LLMJudge", "template",
                             f"a str.format template using only {sorted(example)}",
                             f"{template!r} ({type(error).__name__}: {error})") from error
