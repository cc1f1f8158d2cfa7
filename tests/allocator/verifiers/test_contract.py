"""Every verifier keeps the same contract: one verdict per candidate, in order.

Table-driven over all verifiers, on one problem that each of them can read: a reference
answer (exact checker, judge) and code tests (code verifier).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

import pytest

from allocator.verifiers import (
    Candidate,
    CodeVerifier,
    ExactChecker,
    Limits,
    LLMJudge,
    Problem,
    Verdict,
    Verifier,
)

PROBLEM = Problem("q1", "def answer():\n", reference="42", metadata={
    "entry_point": "answer", "tests": ["assert answer() == 42", "assert answer() > 0"]})
CANDIDATES = [Candidate("    return 42\n", "42"), Candidate("    return 41\n", "41"),
              Candidate("    return (\n"), Candidate("    return -1\n", "-1")]


def judge_script(prompt: str) -> list[str]:
    if "return 42" in prompt:
        return ["VERDICT: correct"]
    return ["unsure"] if "return (" in prompt else ["VERDICT: incorrect"]


FACTORIES: dict[str, Callable[..., Verifier]] = {
    "exact": lambda client, limits: ExactChecker(),
    "code": lambda client, limits: CodeVerifier(limits=limits),
    "judge": lambda client, limits: LLMJudge(client(judge_script), votes=2),
}


@pytest.fixture(params=sorted(FACTORIES))
def verifier(request, scripted_client, small_limits: Limits) -> Verifier:
    return FACTORIES[request.param](scripted_client, small_limits)


def test_is_a_verifier_with_a_name(verifier: Verifier) -> None:
    assert isinstance(verifier, Verifier) and verifier.name in FACTORIES


def test_one_verdict_per_candidate_in_order(verifier: Verifier) -> None:
    verdicts = asyncio.run(verifier.verify(PROBLEM, CANDIDATES))
    assert len(verdicts) == len(CANDIDATES)
    assert all(isinstance(v, Verdict) for v in verdicts)
    assert all(math.isnan(v.score) or 0.0 <= v.score <= 1.0 for v in verdicts)
    assert all(v.cost >= 0.0 and isinstance(v.detail, str) for v in verdicts)
    assert verdicts[0].score == 1.0  # the right answer
    assert verdicts[1].usable and verdicts[1].score < 1.0  # a wrong one, scored
    assert verdicts[0].score > verdicts[3].score


def test_no_candidates_no_verdicts(verifier: Verifier) -> None:
    assert asyncio.run(verifier.verify(PROBLEM, [])) == []
