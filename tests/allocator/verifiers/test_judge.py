"""The LLM judge, against a scripted in-process LLM client (no HTTP).

The client's replies depend on the grading prompt (whether the candidate's text holds the
right answer), so these tests check what the judge sends as well as how it reads.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from allocator.errors import ParameterError, VerifierError
from allocator.verifiers import Candidate, LLMJudge, Problem, parse_verdict

PROBLEM = Problem("q7", "What is 6 x 7?", reference="42")


@pytest.mark.parametrize(("reply", "vote"), [
    ("The answer is right.\nVERDICT: correct", 1.0),
    ("VERDICT: incorrect", 0.0),
    ("**Verdict:** Correct", 1.0),
    ("verdict - WRONG.", 0.0),
    ("Verdict: not correct", 0.0),
    ("I first thought VERDICT: incorrect, but on reflection VERDICT: correct", 1.0),
    ("VERDICT: yes", 1.0),
    ("VERDICT: no", 0.0),
    ("SCORE: 10/10", 1.0),
    ("Score: 1", 0.0),
    ("score = 7 / 10", 6 / 9),
    ("Score: 11", math.nan),
    ("Score: 9/100", math.nan),  # a score out of 100 (or 5) is not one out of 10
    ("Score: 4/5", math.nan),
    ("Score: 4 / 5, VERDICT: maybe", math.nan),
    ("Looks correct to me!", math.nan),
    ("VERDICT: maybe", math.nan),
    ("", math.nan),
])
def test_parse_verdict(reply: str, vote: float) -> None:
    parsed = parse_verdict(reply)
    assert (math.isnan(parsed) and math.isnan(vote)) or parsed == pytest.approx(vote)


def by_content(prompt: str) -> list[str]:
    """Two right votes and one garbled reply when the response says 42, else mostly wrong."""
    if "Response:\nThe answer is 42" in prompt:
        return ["VERDICT: correct", "verdict: CORRECT.", "I cannot decide."]
    if "Response:\nI refuse" in prompt:
        return ["hmm", "no verdict here"]
    return ["VERDICT: incorrect", "VERDICT: correct", "VERDICT: incorrect"]


def judge_all(judge: LLMJudge, texts: list[str]):
    return asyncio.run(judge.verify(PROBLEM, [Candidate(text) for text in texts]))


def test_votes_are_averaged_and_unparseable_ones_never_pass(scripted_client) -> None:
    client = scripted_client(by_content)
    judge = LLMJudge(client, votes=3)
    right, wrong, refusal = judge_all(judge, ["The answer is 42", "The answer is 41",
                                              "I refuse"])
    assert right.score == 1.0 and right.detail == "mean of 2/3 votes (1 unparseable)"
    assert wrong.score == pytest.approx(1 / 3) and wrong.detail == "mean of 3/3 votes"
    assert math.isnan(refusal.score) and not refusal.usable


def test_one_request_of_n_votes_per_candidate_and_token_cost(scripted_client) -> None:
    client = scripted_client(by_content, completion_tokens=7, prompt_tokens=30)
    judge = LLMJudge(client, votes=5, model="judge-model", temperature=0.3, max_tokens=64,
                     system="Be strict.")
    verdicts = judge_all(judge, ["The answer is 42", "The answer is 41"])
    assert len(client.calls) == 2 and all(call["n"] == 5 for call in client.calls)
    assert client.calls[0]["params"] == {"model": "judge-model", "temperature": 0.3,
                                         "max_tokens": 64}
    messages = client.calls[0]["messages"]
    assert messages[0] == {"role": "system", "content": "Be strict."}
    assert "What is 6 x 7?" in messages[1]["content"]
    assert "Reference answer: 42" in messages[1]["content"]
    # 5 completions x 7 tokens + the 30 prompt tokens split over them
    assert [v.cost for v in verdicts] == [pytest.approx(65.0)] * 2


def test_candidates_are_judged_concurrently_within_the_limit(scripted_client) -> None:
    client = scripted_client(by_content, delay=0.05)
    judge_all(LLMJudge(client, votes=1), [f"The answer is {i}" for i in range(6)])
    assert client.max_in_flight == 6  # all six requests overlapped
    limited = scripted_client(by_content, delay=0.05)
    judge_all(LLMJudge(limited, votes=1, max_concurrency=2), [f"{i}" for i in range(6)])
    assert limited.max_in_flight == 2


def test_a_failed_request_raises_and_cancels_the_others(scripted_client) -> None:
    client = scripted_client(by_content, delay=0.05, fail_when="poison")
    with pytest.raises(VerifierError, match=r"q7.*scripted failure"):
        judge_all(LLMJudge(client, votes=2), ["poison", "The answer is 42", "41"])
    assert client.cancelled == 2 and client.in_flight == 0


def test_a_custom_template_and_parser(scripted_client) -> None:
    client = scripted_client(lambda prompt: ["7"] if "[42]" in prompt else ["2"])
    judge = LLMJudge(client, votes=2, template="Rate [{answer}] for {question} from 0 to 10",
                     parse=lambda text: float(text) / 10)
    verdicts = asyncio.run(judge.verify(PROBLEM, [Candidate("...", "42"), Candidate("...")]))
    assert [v.score for v in verdicts] == [pytest.approx(0.7), pytest.approx(0.2)]
    assert client.calls[0]["messages"][0]["content"] == "Rate [42] for What is 6 x 7? from 0 to 10"


def test_out_of_range_votes_are_clipped(scripted_client) -> None:
    judge = LLMJudge(scripted_client(lambda prompt: ["x"]), votes=1, parse=lambda text: 3.0)
    assert judge_all(judge, ["a"])[0].score == 1.0


@pytest.mark.parametrize(("field", "value"), [
    ("votes", 0), ("votes", 2.0), ("max_concurrency", 0), ("template", "Grade {candidat}"),
    ("template", "Grade {0}"), ("template", 3), ("parse", "VERDICT"),
])
def test_bad_arguments(scripted_client, field: str, value: object) -> None:
    with pytest.raises(ParameterError, match=field):
        LLMJudge(scripted_client(by_content), **{field: value})


def test_refuses_an_object_that_is_not_a_client() -> None:
    with pytest.raises(ParameterError, match="client"):
        LLMJudge(object())  # type: ignore[arg-type]
