"""The rules of the papers' RTV and PDR: balanced vote orders, the majority and its tie
rule, the top-K ranking, a judge that prefers a position cannot decide, a judge that
prefers a candidate is read the same in both orders (over real HTTP, on the replay
server with a hand-made pool of fixed judge replies), and PDR's rounds: workspaces
rebuilt from everything drawn since the last (late drafts included), per-round widths,
top-k selection, REFINE masked before a draft, exact replay."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
from replay_server import start_replay_server

from allocator.envs import ReplayEnv
from allocator.executors import (
    ParallelDistillRefine,
    PolicyOracle,
    RunRecorder,
    RunResult,
    TournamentVoting,
)
from allocator.executors.base import render
from allocator.executors.bracket import (
    DEFAULT_JUDGE_PROMPT,
    comparison_rng,
    decide,
    numbered,
    numbers,
    rank,
    vote_orders,
)
from allocator.logs import read_attempts
from allocator.policies import make_policy
from allocator.verifiers import Problem

QUESTION = "Which number is best?"


# ------------------------------------------------------------------ pure rules
@pytest.mark.parametrize(("size", "votes"), [(2, 2), (2, 8), (3, 3), (3, 6), (4, 8)])
def test_vote_orders_show_every_candidate_in_every_position_equally_often(
        size: int, votes: int) -> None:
    firsts = Counter()
    for seed in range(40):
        orders = vote_orders(size, votes, np.random.default_rng(seed))
        assert len(orders) == votes and all(sorted(o) == list(range(size)) for o in orders)
        seen = Counter((position, shown) for order in orders
                       for position, shown in enumerate(order))
        assert seen == {(p, c): votes // size for p in range(size) for c in range(size)}
        firsts[orders[0]] += 1
    assert len(firsts) >= size  # the first vote's order is drawn, not fixed


def test_comparison_generators_are_seeded_by_seed_query_and_label() -> None:
    def draws(*key: Any) -> list[int]:
        return comparison_rng(*key).integers(0, 2**32, size=4).tolist()

    assert draws(0, "q", "t1r1c0") == draws(0, "q", "t1r1c0")
    assert len({tuple(draws(*key)) for key in itertools.product(
        (0, 1), ("q", "r"), ("t1r1c0", "t1r1c1"))}) == 8


@pytest.mark.parametrize(("choices", "support", "winner", "rule"), [
    ([0, 0, 1], [1, 5], 0, "majority"),
    ([1, None, None, 1, 0], [9, 1], 1, "majority"),  # abstentions do not count
    ([0, 1, 0, 1], [1, 3], 1, "tie: answer support"),
    ([None, None], [4, 2], 0, "no parsable vote: answer support"),
    ([2, 2, 0, 0, 1], [1, 1, 9], 2, "tie: answer support"),  # only the tied compete
])
def test_decide_takes_the_majority_then_the_tie_rule(choices: list[int | None],
                                                     support: list[int], winner: int,
                                                     rule: str) -> None:
    assert decide(choices, support, np.random.default_rng(0)) == (winner, rule)


def test_a_tie_the_support_cannot_break_is_a_fair_seeded_draw() -> None:
    wins = Counter(decide([0, 1, None], [2, 2, 7], np.random.default_rng(seed))
                   for seed in range(400))
    assert set(wins) == {(0, "tie: seeded draw"), (1, "tie: seeded draw")}
    assert abs(wins[(0, "tie: seeded draw")] - 200) < 50  # 5 sigma of a fair coin


def test_rank_puts_the_champion_first_then_depth_then_vote_share() -> None:
    order = [10, 11, 12, 13, 14]
    depth = Counter({10: 1, 11: 0, 12: 2, 13: 0, 14: 1})
    share = {10: 0.25, 11: 0.5, 12: 1.0, 13: 0.5, 14: 0.75}
    assert rank(order, depth, share, champion=12) == [12, 14, 10, 11, 13]


# ------------------------------------------------------------------ position bias, HTTP
A, B = answer_text("3"), answer_text("5")
SUMMARY = "Summarise this solution:\n{solution}"
SUMMARIES = {A: "It claims 3. The answer is 3", B: "It claims 5. The answer is 5"}
PROBLEM = Problem("q-bias", "Which is larger, 3 or 5?", reference="5")


def judge_prompt(first: str, second: str) -> str:
    """The judge prompt the executor sends for one order (the default template)."""
    return render(DEFAULT_JUDGE_PROMPT, PROBLEM, "test", candidates=numbered([first, second]),
                  numbers=numbers(2))


def fixed_pool(judge: Callable[[str, str], str]) -> list[dict[str, Any]]:
    """Two rollouts (3, then 5), their summaries, and the judge's one reply to each of
    the two orders: every request the run makes has exactly one logged reply."""
    records = [{"question": PROBLEM.question, "answer": "5", "generated": [A, B]}]
    for text in (A, B):
        records.append({"question": render(SUMMARY, PROBLEM, "test", solution=text),
                        "answer": "", "generated": [SUMMARIES[text]]})
    for first, second in ((SUMMARIES[A], SUMMARIES[B]), (SUMMARIES[B], SUMMARIES[A])):
        records.append({"question": judge_prompt(first, second), "answer": "",
                        "generated": [judge(first, second)]})
    return records


JUDGES: dict[str, Callable[[str, str], str]] = {
    # Prefers the candidate that says 5, wherever it is shown.
    "content": lambda first, second: f"5 > 3.\nBest: {1 if 'claims 5' in first else 2}",
    # Always names the first position shown.
    "position": lambda first, second: "The first one.\nBest: 1",
    # Never names a candidate.
    "mute": lambda first, second: "Both look plausible to me.",
}


def judged_run(url: str, model: str, seed: int) -> RunResult:
    from allocator.llm import OpenAIClient

    async def serve() -> RunResult:
        async with OpenAIClient(model, base_url=url) as client:
            executor = TournamentVoting(
                client, {model: {"temperature": 0.0}}, extract, summary_prompt=SUMMARY,
                seed=seed, decider=make_policy("fixed-n", n=2, verify=True))
            return await executor.arun(PROBLEM)

    return asyncio.run(serve())


def test_swapped_orders_agree_on_a_fixed_judge_and_position_bias_decides_nothing() -> None:
    with start_replay_server({name: fixed_pool(judge) for name, judge in JUDGES.items()},
                             wrap=True) as server:
        for seed in range(2):
            results = {name: judged_run(server.url, name, seed) for name in JUDGES}
            # Per run: 2 rollouts, 2 summaries, 8 votes; nothing else was asked.
            assert len(server.requests_seen()) == 3 * (2 + 2 + 8)
            server.reset()  # every run reads its rollouts from the start
            for name, result in results.items():
                samples = [row["attempt_id"] for row in result.rows if row["role"] == "sample"]
                votes = [row for row in result.rows if row["role"] == "vote"]
                # V = 8 requests, four in each order, each a vote on the summaries.
                assert len(votes) == 8
                assert Counter(tuple(json.loads(row["shown"])) for row in votes) == {
                    tuple(samples): 4, tuple(reversed(samples)): 4}
                assert len([r for r in result.rows if r["role"] == "rollout summary"]) == 2
                tally = json.loads(votes[0]["tally"])
                if name == "content":  # both orders read as a vote for the same rollout
                    assert {row["vote"] for row in votes} == {samples[1]}
                    assert tally == {samples[0]: 0, samples[1]: 8}
                    assert votes[0]["decided_by"] == "majority" and result.answer == "5"
                elif name == "position":  # "Best: 1" is whoever was shown first
                    assert all(row["vote"] == json.loads(row["shown"])[0] for row in votes)
                    assert tally == {samples[0]: 4, samples[1]: 4}
                    assert votes[0]["decided_by"].startswith("tie: ")
                else:  # abstentions, recorded; the tie rule decides, and says so
                    assert all(row["abstained"] and row["vote"] is None for row in votes)
                    assert votes[0]["decided_by"].startswith("no parsable vote: ")


# ------------------------------------------------------------------ PDR rounds
class LateDraft(ScriptPolicy):
    """Two drafts, two refinements, one more draft, two more refinements, STOP."""

    def act(self, state, mask):  # type: ignore[override]
        from allocator.actions import STOP, refine_action, sample_action

        drafts, refines = int(state.samples[0, 0]), int(state.refines[0])
        if drafts < 2 or (refines == 2 and drafts < 3):
            return np.array([sample_action(0)])
        return np.array([refine_action(1) if refines < 4 else STOP])


def test_pdr_distils_drafts_drawn_after_round_one_into_the_next_workspace(
        tmp_path: Path) -> None:
    client = ScriptedClient(samples={QUESTION: texts("3 7 5")}, refinements=texts("7 7 7 7"))
    path = tmp_path / "runs.jsonl"
    with RunRecorder(path) as recorder:
        executor = ParallelDistillRefine(client, ARMS, extract, width=2, decider=LateDraft(),
                                         recorder=recorder)
        result = run(executor.arun(Problem("q1", QUESTION, reference="7")))
    assert [str(a) for a in result.actions] == (["SAMPLE(small)"] * 2 + ["REFINE"] * 2
                                                + ["SAMPLE(small)"] + ["REFINE"] * 2
                                                + ["STOP"])
    drafts = {row["answer"]: row["attempt_id"] for row in result.rows
              if row["role"] == "sample"}
    refinements = [row["attempt_id"] for row in result.rows if row["role"] == "refinement"]
    workspaces = [row for row in result.rows if row["role"] == "summary"]
    assert [json.loads(row["conditioned_on"]) for row in workspaces] == [
        [drafts["3"], drafts["7"]], [*refinements[:2], drafts["5"]]]
    assert [call.prompt.count("Attempt ") for call in client.of_kind("distill")] == [2, 3]
    replay_by_hand(result.session, PolicyOracle(LateDraft(), ["small"]).session(
        supports_refine=True, supports_verify=True))
    # Replay in the logged order takes the same decisions at the same cost.
    log, _ = read_attempts(path)
    env = ReplayEnv(log, lambda_=0.0, cost_unit=1.0)
    env.reset(seed=0, options={"query": 0, "order": "logged"})
    for action in result.actions[:-1]:
        assert env.action_masks()[action.index], action
        *_, info = env.step(action.index)
    *_, info = env.step(0)
    assert info["cost"] == pytest.approx(result.cost)


def test_pdr_per_round_widths_and_a_last_round_of_one_answer_without_a_judge() -> None:
    client = ScriptedClient(samples={QUESTION: texts("3 3")}, refinements=texts("5 9 5 9"))
    executor = ParallelDistillRefine(client, ARMS, extract, width=(3, 1),
                                     decider=ScriptPolicy(drafts=2, refines=4, verify=True))
    result = run(executor.arun(Problem("q1", QUESTION, reference="9")))
    assert [row["round"] for row in result.rows if row["role"] == "refinement"] == [1, 1, 1, 2]
    assert not client.of_kind("judge")  # one entrant in the final: a bye
    assert result.answer == "9" and result.session.final_answer() == "9"
    assert [row["decided_by"] for row in result.rows if row["role"] == "bye"] == [
        "lone candidate"]


def test_pdr_top_k_workspace_lists_the_best_supported_drafts_verbatim() -> None:
    client = ScriptedClient(samples={QUESTION: texts("3 7 7 9")}, refinements=texts("7 7"))
    executor = ParallelDistillRefine(client, ARMS, extract, width=2, workspace="top-k",
                                     top_k=2, decider=ScriptPolicy(drafts=4, refines=2))
    result = run(executor.arun(Problem("q1", QUESTION)))
    assert not client.of_kind("distill")
    [workspace] = [row for row in result.rows if row["role"] == "summary"]
    by_id = {row["attempt_id"]: row["answer"] for row in result.rows}
    assert [by_id[i] for i in json.loads(workspace["selected"])] == ["7", "3"]
    assert workspace["cost"] == 0.0 and workspace["workspace_mode"] == "top-k"
    for call in client.of_kind("refine"):
        assert call.prompt.count("Let me think step by step.") == 2


def test_refine_is_masked_until_a_draft_exists() -> None:
    client = ScriptedClient(samples={QUESTION: texts("3")}, refinements=texts("5"))
    executor = ParallelDistillRefine(client, ARMS, extract,
                                     decider=ScriptPolicy(drafts=0, refines=1))
    result = run(executor.arun(Problem("q1", QUESTION)))
    assert [str(a) for a in result.actions] == ["STOP"] and not client.calls
