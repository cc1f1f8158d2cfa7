"""The final-answer rules ("default", "weighted-vote", "last-arm"): known answers on
hand-made queries, and the batched env equal to the single env under each."""

from __future__ import annotations

import numpy as np
import pytest
from replay_fixtures import make_log, random_log
from test_vec_replay_env import assert_agree

from allocator.envs import BatchedReplayVecEnv, ReplayEnv
from allocator.envs.replay_env import ANSWER_RULES
from allocator.errors import ParameterError

#: One query: answer "a" twice at 0.4 (sum 0.8, right), "b" once at 0.7 (wrong).
SPLIT = [
    {"query_id": "q", "arm": "x", "answer": "a", "correct": 1, "score": 0.4},
    {"query_id": "q", "arm": "x", "answer": "a", "correct": 1, "score": 0.4},
    {"query_id": "q", "arm": "x", "answer": "b", "correct": 0, "score": 0.7},
]

#: One query, two arms: arm "cheap" says "w" (wrong) three times, arm "strong" says "r"
#: (right) twice: the pooled majority is "w", the last arm's is "r".
TWO_ARMS = ([{"query_id": "q", "arm": "cheap", "answer": "w", "correct": 0}] * 3
            + [{"query_id": "q", "arm": "strong", "answer": "r", "correct": 1}] * 2)


def play(log, actions: list[int], rule: str) -> tuple[float, float]:
    """(correct, stop_correctness of the batched env) after ``actions`` then STOP."""
    env = ReplayEnv(log, answer_rule=rule)
    env.reset(seed=0)
    for action in actions:
        env.step(action)
    venv = BatchedReplayVecEnv(log, n_envs=1, answer_rule=rule)
    venv.seed(0)
    venv.reset()
    for action in actions:
        venv.step(np.array([action]))
    predicted = float(venv.stop_correctness()[0])
    return env.step(0)[4]["correct"], predicted


@pytest.mark.parametrize(("rule", "expected"), [
    ("default", 0.0),  # the best single verified score: "b"
    ("weighted-vote", 1.0),  # the largest sum of verified scores: "a"
    ("last-arm", 1.0),  # the only arm's majority: "a"
])
def test_rules_on_a_query_where_they_disagree(rule: str, expected: float) -> None:
    log = make_log(SPLIT)
    sample, verify = 1, 3
    assert play(log, [sample, sample, sample, verify], rule) == (expected, expected)


def test_weighted_vote_without_verification_is_the_majority() -> None:
    log = make_log(SPLIT)
    assert play(log, [1, 1, 1], "weighted-vote") == (1.0, 1.0)  # "a" has two votes


def test_weighted_vote_counts_only_verified_candidates() -> None:
    """Verify after two draws, then draw the third unverified: sums count what was
    verified only. Whichever two came first, the answer is the verified sums' top."""
    log = make_log(SPLIT)
    for seed in range(12):
        env = ReplayEnv(log, answer_rule="weighted-vote")
        env.reset(seed=seed)
        env.step(1)
        env.step(1)
        env.step(3)
        state = env.query_state
        verified = [(a, s) for a, s in zip(state.answers, state.scores, strict=True)
                    if not np.isnan(s)]
        sums: dict = {}
        for answer, score in verified:
            sums[answer] = sums.get(answer, 0.0) + score
        top = max(sums.values())
        winners = [a for a, v in sums.items() if v == top]
        env.step(1)
        correct = env.step(0)[4]["correct"]
        truth = {a: float(c) for a, c in zip(
            env.pools.answer_code[env.pools.answer_offsets[0]:env.pools.answer_offsets[1]],
            env.pools.answer_correct[env.pools.answer_offsets[0]:
                                     env.pools.answer_offsets[1]], strict=True)}
        assert correct == pytest.approx(np.mean([truth[env.pools.answer_code[a]]
                                                 for a in winners]))


def test_last_arm_answers_with_the_escalated_arm() -> None:
    log = make_log(TWO_ARMS)
    cheap, strong = 1 + log.arms.index("cheap"), 1 + log.arms.index("strong")
    draws = [cheap, cheap, cheap, strong, strong]
    assert play(log, draws, "default") == (0.0, 0.0)  # pooled: "w" 3 - 2
    assert play(log, draws, "last-arm") == (1.0, 1.0)
    assert play(log, [strong, cheap], "last-arm") == (0.0, 0.0)  # cheap sampled last
    assert play(log, [], "last-arm") == (0.0, 0.0)  # nothing sampled


@pytest.mark.parametrize("rule", ANSWER_RULES)
def test_batched_env_equals_the_single_env_under_each_rule(rule: str) -> None:
    episodes = assert_agree(
        random_log(seed=21, n_queries=14, arms=("cheap", "mid", "strong"), max_pool=7),
        n_envs=10, seed=50, steps=400, invalid_rate=0.03, verify_cost=0.4,
        answer_rule=rule)
    assert episodes > 100


def test_unknown_rule_is_refused_by_both_envs() -> None:
    log = make_log(SPLIT)
    with pytest.raises(ParameterError, match="'answer_rule'"):
        ReplayEnv(log, answer_rule="majority")
    with pytest.raises(ParameterError, match="'answer_rule'"):
        BatchedReplayVecEnv(log, answer_rule=None)
