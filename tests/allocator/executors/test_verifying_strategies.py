"""Best-of-N with a verifier, Recursive Tournament Voting and Parallel-Distill-Refine:
what each action does, what is recorded, and how scores reach the session."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest
from executor_scripts import (
    ARMS,
    ScriptedClient,
    ScriptPolicy,
    answer_text,
    extract,
    replay_by_hand,
    run,
    texts,
)

from allocator.errors import ExecutorError, LLMError, VerifierError
from allocator.executors import (
    BestOfN,
    ParallelDistillRefine,
    PolicyOracle,
    TournamentVoting,
    parse_vote,
)
from allocator.executors.tournament import comparisons_needed
from allocator.policies import make_policy
from allocator.session import AttemptResult, Verification
from allocator.verifiers import Candidate, Problem, Verdict

QUESTION = "Which number is best?"


class TableVerifier:
    """Scores candidates by a fixed table of answers (a real object, not a mock)."""

    name = "table"

    def __init__(self, scores: dict[str | None, float], cost: float = 2.0,
                 fail: bool = False) -> None:
        self.scores = scores
        self.cost = cost
        self.fail = fail
        self.calls: list[list[str | None]] = []

    async def verify(self, problem: Problem, candidates: Sequence[Candidate]
                     ) -> list[Verdict]:
        self.calls.append([candidate.answer for candidate in candidates])
        if self.fail:
            raise VerifierError("sandbox unavailable")
        return [Verdict(self.scores.get(candidate.answer, math.nan), self.cost, "table")
                for candidate in candidates]


def largest_judge(prompt: str) -> str:
    """Votes for the candidate whose answer is the largest number."""
    found = [int(a) for a in re.findall(r"The answer is (\d+)", prompt)]
    best = found.index(max(found)) + 1
    return f"Candidate {best} looks right.\nBest: {best}"


# ------------------------------------------------------------------ best-of-N
def test_best_of_n_returns_the_top_verified_candidate_not_the_majority() -> None:
    client = ScriptedClient(samples={QUESTION: texts("3 3 5 3")})
    verifier = TableVerifier({"3": 0.2, "5": 0.9})
    policy = make_policy("fixed-n", n=4, verify=True)
    executor = BestOfN(client, ARMS, extract, verifier=verifier, decider=policy)
    result = run(executor.arun(Problem("q1", QUESTION, reference="5")))
    assert [str(a) for a in result.actions] == ["SAMPLE(small)"] * 4 + ["VERIFY", "STOP"]
    assert result.answer == "5" and result.correct == 1.0
    assert result.text == answer_text("5")
    assert verifier.calls == [["3", "3", "5", "3"]]
    samples = [row for row in result.rows if row["kind"] == "sample"]
    verdicts = [row for row in result.rows if row["kind"] == "verify"]
    assert [row["score"] for row in samples] == [0.2, 0.2, 0.9, 0.2]
    assert [row["target"] for row in verdicts] == [row["attempt_id"] for row in samples]
    assert all(row["role"] == "verdict" and row["cost"] == 2.0 for row in verdicts)
    # Candidate rows come first (held for their scores), verdicts after them.
    assert [row["kind"] for row in result.rows] == ["sample"] * 4 + ["verify"] * 4
    assert result.session.state.verified == 4
    assert result.session_cost == pytest.approx(sum(row["cost"] for row in result.rows))
    replay_by_hand(result.session, PolicyOracle(policy, ["small"]).session(
        supports_verify=True))


def test_a_verifier_failure_writes_the_held_samples_then_raises(tmp_path) -> None:
    from allocator.executors import RunRecorder
    from allocator.logs import read_attempts

    client = ScriptedClient(samples={QUESTION: texts("3 5")})
    path = tmp_path / "runs.jsonl"
    with RunRecorder(path) as recorder, pytest.raises(ExecutorError, match="sandbox"):
        run(BestOfN(client, ARMS, extract, verifier=TableVerifier({}, fail=True),
                    decider=make_policy("fixed-n", n=2, verify=True),
                    recorder=recorder).arun(Problem("q1", QUESTION, reference="5")))
    log, _ = read_attempts(path)
    assert log.n_attempts == 2 and np.isnan(log.score).all()


# ------------------------------------------------------------------ RTV
@pytest.mark.parametrize("k", [2, 3, 5, 8])
def test_rtv_with_pairs_takes_ceil_log2_k_rounds_and_records_every_vote(k: int) -> None:
    answers = [str(10 + (i * 7) % 13) for i in range(k)]  # distinct numbers
    client = ScriptedClient(samples={QUESTION: texts(" ".join(answers))},
                            judge=largest_judge)
    policy = make_policy("fixed-n", n=k, verify=True)
    executor = TournamentVoting(client, ARMS, extract, decider=policy, votes=4,
                                judge={"model": "judge-model", "temperature": 1.0})
    result = run(executor.arun(Problem("q1", QUESTION, reference=max(answers, key=int))))
    assert result.answer == max(answers, key=int) and result.correct == 1.0
    # V = 4 judge requests per comparison, one vote each, every one with its own order.
    judge_calls = client.of_kind("judge")
    assert len(judge_calls) == 4 * (k - 1) == 4 * comparisons_needed(k, 2)
    assert all(call.n == 1 and call.params["model"] == "judge-model" for call in judge_calls)
    # The judge sees one structured summary per rollout, never the raw completions.
    assert len(client.of_kind("rollout summary")) == k
    assert all("Final answer: The answer is" in call.prompt
               and "Let me think" not in call.prompt for call in judge_calls)
    votes = [row for row in result.rows if row["role"] == "vote"]
    assert len(votes) == 4 * (k - 1)
    assert max(row["tournament_round"] for row in votes) == math.ceil(math.log2(k))
    by_comparison: dict[str, list[dict]] = {}
    for row in votes:
        by_comparison.setdefault(row["comparison"], []).append(row)
    for rows in by_comparison.values():
        group = json.loads(rows[0]["candidates"])
        shown = Counter(tuple(json.loads(row["shown"])) for row in rows)
        assert shown == {tuple(group): 2, tuple(reversed(group)): 2}  # balanced swaps
        assert all(row["vote"] == row["winner"] and not row["abstained"]
                   and row["decided_by"] == "majority" for row in rows)
        assert rows[0]["answer"] == max((r["answer"] for r in result.rows
                                         if r["attempt_id"] in group), key=int)
    # Scores: rounds won / rounds played; the champion 1.0.
    samples = {row["answer"]: row["score"] for row in result.rows if row["kind"] == "sample"}
    assert samples[result.answer] == 1.0
    assert all(0.0 <= score < 1.0 for answer, score in samples.items()
               if answer != result.answer)
    assert result.session.final_answer() == result.answer
    assert result.session_cost == pytest.approx(sum(row["cost"] for row in result.rows))
    # The top-K: the champion, then the finalist it beat.
    final = max(votes, key=lambda row: row["tournament_round"])
    [finalist] = set(json.loads(final["candidates"])) - {final["winner"]}
    assert [drawn.attempt_id for drawn in result.ranking] == [final["winner"], finalist]
    assert result.ranking[0].answer == result.answer


def test_rtv_agreeing_twins_share_their_score_and_skip_the_judge() -> None:
    """(7, 7) agree: one advances unjudged; (3, 5) is judged; then 7 beats 5. The 7 left
    behind did not lose: it shares its twin's 1.0 instead of scoring 0."""
    client = ScriptedClient(samples={QUESTION: texts("7 7 3 5")}, judge=largest_judge)
    executor = TournamentVoting(client, ARMS, extract, votes=3,
                                decider=make_policy("fixed-n", n=4, verify=True))
    result = run(executor.arun(Problem("q1", QUESTION, reference="7")))
    assert result.answer == "7" and len(client.of_kind("judge")) == 2 * 3
    scores = sorted((row["answer"], row["score"]) for row in result.rows
                    if row["kind"] == "sample")
    assert scores == [("3", 0.0), ("5", 0.5), ("7", 1.0), ("7", 1.0)]
    byes = [row for row in result.rows if row["role"] == "bye"]
    assert [(row["decided_by"], row["cost"]) for row in byes] == [("agreeing answers", 0.0)]
    assert json.loads(byes[0]["candidates"]) == [row["attempt_id"] for row in result.rows
                                                 if row["answer"] == "7"
                                                 and row["kind"] == "sample"]


def test_rtv_records_byes_abstentions_and_the_rule_that_decided() -> None:
    """Three entrants: (3, 5) is judged, 5 by every vote, and 8 advances alone (a bye);
    in the final the judge's replies name no candidate: every vote is an abstention,
    recorded as such, and the tie rule decides (5 and 8 have one rollout each: the
    seeded draw), never silently."""
    def judge(prompt: str) -> str:
        if "The answer is 3" in prompt:
            return f"Best: {1 + int(prompt.index('is 5') > prompt.index('is 3'))}"
        return "I cannot tell."

    client = ScriptedClient(samples={QUESTION: texts("3 5 8")}, judge=judge)
    executor = TournamentVoting(client, ARMS, extract, votes=2, skip_agreeing=False,
                                decider=make_policy("fixed-n", n=3, verify=True))
    result = run(executor.arun(Problem("q1", QUESTION)))
    rounds: dict[tuple[int, str], set[str]] = {}
    for row in result.rows:
        if row["role"] in ("vote", "bye"):
            rounds.setdefault((row["tournament_round"], row["role"]), set()).add(
                row["decided_by"])
    assert rounds == {(1, "vote"): {"majority"}, (1, "bye"): {"lone candidate"},
                      (2, "vote"): {"no parsable vote: seeded draw"}}
    final = [row for row in result.rows if row["role"] == "vote"
             and row["tournament_round"] == 2]
    assert all(row["abstained"] and row["vote"] is None for row in final)
    assert result.answer in ("5", "8")
    assert json.loads(final[0]["tally"]) == dict.fromkeys(json.loads(final[0]["candidates"]), 0)


def test_a_dethroned_champion_is_rescored_so_the_session_answers_as_the_executor() -> None:
    """Tournament 1: 4 vs 6, 6 reigns. Tournament 2: 6 vs 9 (9 wins), then 9 vs 2. The
    old champion is re-scored 0/1 in the session, whose final answer is then 9 too."""
    client = ScriptedClient(samples={QUESTION: texts("4 6 9 2")}, judge=largest_judge)
    policy = ScriptPolicyTwice()
    executor = TournamentVoting(client, ARMS, extract, votes=1,
                                decider=PolicyOracle(policy, ["small"]))
    result = run(executor.arun(Problem("q1", QUESTION)))
    assert result.answer == "9" and result.session.final_answer() == "9"
    verifications = [event for event in result.session.history
                     if isinstance(event, Verification)]
    assert [v.rescore for v in verifications] == [False, True]
    assert verifications[1].scores[1] == 0.0  # the candidate "6", beaten by 9
    # The champion's summary is made once and reused by the second tournament.
    assert len(client.of_kind("rollout summary")) == 4
    replay_by_hand(result.session, PolicyOracle(policy, ["small"]).session(
        supports_verify=True, supports_refine=True))


def test_rtv_extends_the_tournament_with_the_champion_and_new_candidates() -> None:
    client = ScriptedClient(samples={QUESTION: texts("4 9 6 2")}, judge=largest_judge)
    policy = ScriptPolicyTwice()
    executor = TournamentVoting(client, ARMS, extract, decider=PolicyOracle(policy, ["small"]),
                                votes=1)
    result = run(executor.arun(Problem("q1", QUESTION)))
    assert [str(a) for a in result.actions] == [
        "SAMPLE(small)", "SAMPLE(small)", "VERIFY", "SAMPLE(small)", "SAMPLE(small)",
        "VERIFY", "STOP"]
    votes = [row for row in result.rows if row["role"] == "vote"]
    assert sorted({row["tournament"] for row in votes}) == [1, 2]
    # Tournament 2: champion 9 with 6 and 2: two comparisons.
    assert len([row for row in votes if row["tournament"] == 2]) == 2
    assert result.answer == "9"


class ScriptPolicyTwice(ScriptPolicy):
    """Two samples, VERIFY, two more, VERIFY, STOP."""

    def act(self, state, mask):  # type: ignore[override]
        import numpy as np

        from allocator.actions import STOP, sample_action, verify_action

        drawn, verified = int(state.samples[0, 0]), int(state.verified[0])
        if verified < drawn and mask[0, verify_action(1)] and drawn % 2 == 0:
            return np.array([verify_action(1)])
        return np.array([sample_action(0) if drawn < 4 else STOP])


def test_rtv_recursion_conditions_a_new_wave_on_the_top_k_then_judges_it() -> None:
    """``rtv`` (4 rollouts, a wave of 3): the first REFINE runs a bracket over the
    rollouts and conditions the wave on its top-2's summaries (9 and 7); the final
    tournament judges the wave alone (the rollouts are superseded) and answers."""
    client = ScriptedClient(samples={QUESTION: texts("3 9 5 7")},
                            refinements=texts("8 11 4"), judge=largest_judge)
    policy = make_policy("rtv", n=4, refinements=3)
    executor = TournamentVoting(client, ARMS, extract, votes=2, top_k=2, decider=policy)
    result = run(executor.arun(Problem("q1", QUESTION, reference="11")))
    assert [str(a) for a in result.actions] == ["SAMPLE(small)"] * 4 + ["REFINE"] * 3 + [
        "VERIFY", "STOP"]
    assert result.answer == "11" and result.correct == 1.0
    rows = {row["attempt_id"]: row for row in result.rows}
    drafts = [row for row in result.rows if row["role"] == "sample"]
    [workspace] = [row for row in result.rows if row["role"] == "summary"]
    assert workspace["workspace_mode"] == "tournament"
    assert [rows[i]["answer"] for i in json.loads(workspace["selected"])] == ["9", "7"]
    selection = [row for row in result.rows if row.get("workspace") == workspace["attempt_id"]]
    assert {row["role"] for row in selection} >= {"vote", "rollout summary"}
    assert all(row.get("event") is None for row in selection)
    for call in client.of_kind("refine"):  # conditioned on the winners' summaries only
        assert re.findall(r"The answer is (\d+)", call.prompt) == ["9", "7"]
    # The session pays for the workspace (its bracket) with the wave's first rollout.
    wave = [row for row in result.rows if row["role"] == "refinement"]
    first = next(event for event in result.session.history
                 if isinstance(event, AttemptResult) and event.kind == "refine")
    assert workspace["charged_to"] == wave[0]["attempt_id"] and workspace["cost"] == 0.0
    assert first.cost == pytest.approx(wave[0]["cost"] + sum(row["cost"] for row in selection))
    # The final tournament: the wave only; the first rollouts are superseded (score 0).
    [event] = [row for row in result.rows if row["role"] == "verification"]
    assert json.loads(event["superseded"]) == [row["attempt_id"] for row in drafts]
    assert all(row["score"] == 0.0 for row in drafts)
    final = [row for row in result.rows if row.get("event") == event["event"]
             and row["role"] == "vote"]
    assert {rows[row["vote"]]["round"] for row in final} == {1}
    assert [drawn.answer for drawn in result.ranking] == ["11", "4"]  # 4: a bye, a final
    assert result.session_cost == pytest.approx(sum(row["cost"] for row in result.rows))
    replay_by_hand(result.session, PolicyOracle(policy, ["small"]).session(
        supports_verify=True, supports_refine=True))


def test_parse_vote_reads_the_last_best_line() -> None:
    assert parse_vote("Best: 2", 2) == 1
    assert parse_vote("best candidate #1 ... Best: 3", 3) == 2
    assert parse_vote("2", 2) == 1
    assert parse_vote("Best: 7", 2) is None
    assert parse_vote("no idea", 2) is None
    assert [comparisons_needed(k, 3) for k in (1, 2, 3, 4, 9, 10)] == [0, 1, 1, 2, 4, 5]


def test_rtv_judge_failure_writes_every_vote_already_cast(tmp_path) -> None:
    from allocator.executors import RunRecorder
    from allocator.logs import read_attempts

    client = ScriptedClient(samples={QUESTION: texts("1 2 3 4")}, judge=largest_judge,
                            fail_at={5: LLMError("judge down")})
    path = tmp_path / "runs.jsonl"
    executor = TournamentVoting(client, ARMS, extract, summarise=False, votes=2,
                                decider=make_policy("fixed-n", n=4, verify=True))
    with RunRecorder(path) as recorder, pytest.raises(ExecutorError, match="judge down"):
        executor.recorder = recorder
        run(executor.arun(Problem("q1", QUESTION, reference="4")))
    finished = [call for call in client.of_kind("judge") if call.finished]
    log, _ = read_attempts(path)
    roles = log.extra["role"].tolist()
    assert finished and roles.count("vote") == len(finished)


# ------------------------------------------------------------------ PDR
def test_pdr_records_drafts_summaries_and_refinements_by_round() -> None:
    client = ScriptedClient(samples={QUESTION: texts("3 7 7")},
                            refinements=texts("7 7 7 3"), summary="Most attempts say 7.")
    policy = ScriptPolicy(drafts=3, refines=4)
    executor = ParallelDistillRefine(client, ARMS, extract, decider=policy, width=2,
                                     summary_max_tokens=64)
    result = run(executor.arun(Problem("q1", QUESTION, reference="7")))
    assert [str(a) for a in result.actions] == ["SAMPLE(small)"] * 3 + ["REFINE"] * 4 + [
        "STOP"]
    rows = result.rows  # candidates are held until scored or the run ends: by kind
    assert Counter((row["role"], row["round"]) for row in rows) == Counter({
        ("sample", 0): 3, ("summary", 1): 1, ("refinement", 1): 2, ("summary", 2): 1,
        ("refinement", 2): 2})
    assert len({row["attempt_id"] for row in rows}) == len(rows)
    distills = client.of_kind("distill")
    assert [call.params["max_tokens"] for call in distills] == [64, 64]
    assert distills[0].prompt.count("Attempt ") == 3  # round 1 distils the drafts
    assert distills[1].prompt.count("Attempt ") == 2  # round 2 the round-1 refinements
    assert all("Most attempts say 7." in call.prompt for call in client.of_kind("refine"))
    # Each call's row holds its own cost; the session is charged the summary's cost with
    # the first refinement of its round.
    summaries = [row for row in rows if row["role"] == "summary"]
    refinements = [row for row in rows if row["role"] == "refinement"]
    assert all(row["cost"] == row["call_cost"] > 0 and row["kind"] == "verify"
               for row in summaries)
    assert [row["charged_to"] for row in summaries] == [refinements[0]["attempt_id"],
                                                         refinements[2]["attempt_id"]]
    own = len(answer_text("7"))
    assert [row["cost"] for row in refinements] == [own] * 4
    reported = [event.cost for event in result.session.history
                if isinstance(event, AttemptResult) and event.kind == "refine"]
    assert reported == [own + summaries[0]["cost"], own, own + summaries[1]["cost"], own]
    # What each refinement was conditioned on: the drafts, then round 1's refinements.
    drafts = [row["attempt_id"] for row in rows if row["role"] == "sample"]
    assert [json.loads(row["conditioned_on"]) for row in refinements] == [drafts] * 2 + [
        [row["attempt_id"] for row in refinements[:2]]] * 2
    assert [row["summary"] for row in refinements] == [
        summaries[0]["attempt_id"]] * 2 + [summaries[1]["attempt_id"]] * 2
    assert result.session_cost == pytest.approx(sum(row["cost"] for row in rows))
    assert result.cost == pytest.approx(result.session_cost)
    assert result.answer == "7" and result.session.state.refines == 4
    replay_by_hand(result.session, PolicyOracle(policy, ["small"]).session(
        supports_refine=True))


def test_pdr_answers_from_the_last_round_through_its_final_tournament() -> None:
    """Drafts 3 3 3, refinements 9 5 (one round): the vote says 3 (three to two); the
    final VERIFY judges the last round alone (the drafts are superseded, score 0), and its
    champion, 9, answers."""
    def client() -> ScriptedClient:
        return ScriptedClient(samples={QUESTION: texts("3 3 3")}, refinements=texts("9 5"),
                              summary="Two answers: 3 and 9.", judge=largest_judge)

    voted = ParallelDistillRefine(client(), ARMS, extract, width=2,
                                  decider=ScriptPolicy(drafts=3, refines=2))
    assert run(voted.arun(Problem("q1", QUESTION))).answer == "3"  # no VERIFY: the vote
    scripted = client()
    judged = ParallelDistillRefine(scripted, ARMS, extract, width=2, votes=2,
                                   decider=ScriptPolicy(drafts=3, refines=2, verify=True))
    result = run(judged.arun(Problem("q2", QUESTION)))
    assert [str(a) for a in result.actions][-2:] == ["VERIFY", "STOP"]
    assert result.answer == "9" and result.session.final_answer() == "9"
    judged_texts = " ".join(call.prompt for call in scripted.of_kind("judge"))
    assert "The answer is 3" not in judged_texts and len(scripted.of_kind("judge")) == 2
    scored = {row["answer"]: row["score"] for row in result.rows
              if row["role"] in ("sample", "refinement")}
    assert scored == {"3": 0.0, "9": 1.0, "5": 0.0}


def test_pdr_refinements_run_in_parallel_within_a_round() -> None:
    client = ScriptedClient(samples={QUESTION: texts("3 7 7 7 7 7")},
                            refinements=texts("7 7 7 7 7 7"))
    executor = ParallelDistillRefine(client, ARMS, extract, parallelism=4, width=3,
                                     decider=ScriptPolicy(drafts=2, refines=3))
    result = run(executor.arun(Problem("q1", QUESTION)))
    assert len(client.of_kind("refine")) == 3  # never more than the round's width
    assert [row["round"] for row in result.rows if row["role"] == "refinement"] == [1, 1, 1]
    assert client.max_active >= 2
    assert result.session.state.refines == 3 and result.session.state.drawn == 5


def test_the_call_cap_stops_tournaments_and_summaries_it_cannot_finish() -> None:
    client = ScriptedClient(samples={QUESTION: texts("3 3 5 6")}, judge=largest_judge)
    rtv = TournamentVoting(client, ARMS, extract, max_llm_calls=5,
                           decider=make_policy("fixed-n", n=4, verify=True))
    result = run(rtv.arun(Problem("q1", QUESTION)))
    assert result.stopped_by == "max_llm_calls" and not client.of_kind("judge")
    assert result.answer == "3"  # no tournament: the majority vote
    client = ScriptedClient(samples={QUESTION: texts("3 7")}, refinements=texts("7"))
    pdr = ParallelDistillRefine(client, ARMS, extract, max_llm_calls=3,
                                decider=ScriptPolicy(drafts=2, refines=2))
    result = run(pdr.arun(Problem("q1", QUESTION)))
    # One call left: no room for a summary and a refinement, so no summary is paid for.
    assert [call.kind for call in client.calls] == ["sample", "sample"]
    assert result.stopped_by == "max_llm_calls" and result.session.state.refines == 0
    client = ScriptedClient(samples={QUESTION: texts("3 7")}, refinements=texts("7"))
    pdr = ParallelDistillRefine(client, ARMS, extract, max_llm_calls=4,
                                decider=ScriptPolicy(drafts=2, refines=2))
    result = run(pdr.arun(Problem("q1", QUESTION)))
    assert [call.kind for call in client.calls] == ["sample", "sample", "distill", "refine"]
    assert result.stopped_by == "max_llm_calls" and result.session.state.refines == 1


def test_best_of_n_with_the_projects_exact_checker() -> None:
    exact = pytest.importorskip("allocator.verifiers.exact")
    client = ScriptedClient(samples={QUESTION: texts("3 3 5")})
    executor = BestOfN(client, ARMS, extract, verifier=exact.ExactChecker(),
                       decider=make_policy("fixed-n", n=3, verify=True))
    result = run(executor.arun(Problem("q1", QUESTION, reference="5")))
    assert result.answer == "5"
    assert [row["detail"] for row in result.rows if row["role"] == "verdict"] == [
        "mismatch", "mismatch", "match"]
