"""The verifier contract: score candidates of one problem, behind one interface.

Code runners, exact checkers and LLM judges all take a :class:`Problem` and candidate
texts and return one :class:`Verdict` per candidate. Executors call them on VERIFY and
record every verdict (score and cost) in the run log.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["Candidate", "Problem", "Verdict", "Verifier"]


@dataclass(frozen=True)
class Problem:
    """What a verifier needs to know about the query.

    Attributes:
        query_id: the query's id in the run log.
        question: the question (or code prompt) as the model saw it.
        reference: a reference answer, when one is known (exact checkers need it).
        metadata: anything task-specific (for code: ``entry_point``, ``tests``...).
    """

    query_id: str
    question: str
    reference: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Candidate:
    """One candidate to verify: the generated text and its extracted answer."""

    text: str
    answer: Hashable | None = None


@dataclass(frozen=True)
class Verdict:
    """A verifier's judgement of one candidate.

    Attributes:
        score: in [0, 1] (higher is better); NaN when the verifier could not score it.
        cost: what this verdict cost, in the run's cost units (tokens for an LLM judge,
            CPU seconds for a code runner, 0 for an exact checker).
        detail: a short human-readable reason (``"3/5 tests passed"``, ``"timeout"``).
    """

    score: float
    cost: float = 0.0
    detail: str = ""

    @property
    def usable(self) -> bool:
        """Whether the score is a number (not NaN)."""
        return not math.isnan(self.score)


@runtime_checkable
class Verifier(Protocol):
    """Anything that scores candidates of a problem.

    Attributes:
        name: a short name recorded in the run log (``"exact"``, ``"code"``, ``"judge"``).
    """

    name: str

    async def verify(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Verdict]:
        """One verdict per candidate, in order."""
        ...
