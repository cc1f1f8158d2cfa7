"""round-robin: references per episode, known answers, reductions, monotone knobs."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
from verifier_logs import Drawn, final_correctness, make_log, random_scored_log, run_env

from allocator.policies import AdaptiveConsistency, RoundRobin
from allocator.policies.self_consistency import beta_stop_probability
from envs.pools import ReplayPools
from training.evaluation.replay import ReplayEvaluator

VERIFY_COST = 0.5


def round_robin_reference(drawn: Drawn, arms: tuple[int, ...], policy: RoundRobin
                          ) -> tuple[float, float]:
    """The arms in turn (skipping empty pools), the policy's stop rules, the env's costs."""
    position = dict.fromkeys(arms, 0)
    draws: list[tuple[int | None, float, bool]] = []
    cost = 0.0
    while True:
        votes = Counter(a for a, _, _ in draws if a is not None)
        if policy.tau is not None and any(
                v and a is not None and s >= policy.tau for a, s, v in draws):
            break
        if policy.threshold is not None and votes:
            top = [*sorted(votes.values(), reverse=True), 0]
            probability = beta_stop_probability(np.array([top[0]]), np.array([top[1]]),
                                                policy.max_samples)[0]
            if probability >= policy.threshold:
                break
        if len(draws) >= policy.max_samples:
            break
        turn = len(draws)
        candidates = [arms[(turn + k) % len(arms)] for k in range(len(arms))]
        arm = next((a for a in candidates if position[a] < len(drawn.arms[a])), None)
        if arm is None:
            break
        answer, score, sample_cost = drawn.arms[arm][position[arm]]
        position[arm] += 1
        verified = policy.tau is not None and not math.isnan(score)
        cost += sample_cost + (drawn.verify_cost if verified else 0.0)
        draws.append((answer, score, verified))
    return final_correctness(draws, drawn.correct_of), cost


ROUND_ROBINS = [
    RoundRobin(max_samples=6, threshold=0.9),
    RoundRobin(max_samples=12, threshold=0.7, arms=(1, 0)),
    RoundRobin(max_samples=5, threshold=None, tau=0.8),
    RoundRobin(max_samples=9, threshold=0.95, tau=0.6, arms=(2, 0, 1)),
    RoundRobin(max_samples=40, threshold=None, tau=1.0, arms=(0, 2)),
]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_round_robin_equals_its_reference_on_every_episode(seed: int) -> None:
    pools = ReplayPools.from_log(random_scored_log(seed, arms=("a0", "a1", "a2"), max_pool=5))
    for query in range(pools.n_queries):
        for episode in range(2):
            drawn = Drawn(pools, 10 * seed + episode, query, VERIFY_COST)
            for policy in ROUND_ROBINS:
                arms = policy.arms or (0, 1, 2)
                correct, cost, actions = run_env(policy, pools, 10 * seed + episode, query,
                                                 VERIFY_COST)
                expected = round_robin_reference(drawn, arms, policy)
                assert (correct, cost) == pytest.approx(expected), (query, policy, actions)


def test_one_arm_round_robin_is_adaptive_consistency() -> None:
    pools = ReplayPools.from_log(random_scored_log(3, arms=("only",), max_pool=12,
                                                   n_queries=25))
    evaluator = ReplayEvaluator(pools, n_orders=6, seed=1)
    for threshold, cap in ((0.6, 4), (0.9, 12), (0.95, 7)):
        ours = evaluator.run(RoundRobin(max_samples=cap, threshold=threshold))
        theirs = evaluator.run(AdaptiveConsistency(threshold=threshold, max_samples=cap))
        np.testing.assert_array_equal(ours.correct, theirs.correct)
        np.testing.assert_array_equal(ours.cost, theirs.cost)


def test_arms_in_turn_until_a_proof_checks_is_any_of_the_turns() -> None:
    """A perfect checker (score = correct), tau = 1: an episode is right exactly when one
    of the first N turns is right; with one correct proof in arm 2's pool of 3 (and none
    elsewhere), N = 3 turns over 3 arms see it with probability 1/3, N = 9 always."""
    rows = [{"query_id": "q", "arm": f"p{arm}", "answer": f"{arm}-{i}",
             "correct": float(arm == 2 and i == 0), "score": float(arm == 2 and i == 0)}
            for arm in range(3) for i in range(3)]
    pools = ReplayPools.from_log(make_log(rows))
    evaluator = ReplayEvaluator(pools, n_orders=3000, seed=5, verify_cost=VERIFY_COST)
    full = evaluator.run(RoundRobin(max_samples=9, threshold=None, tau=1.0))
    assert (full.correct == 1.0).all()
    # Arm 2 is drawn at turns 3, 6, 9: stops after 3, 6 or 9 turns, equally likely.
    turns = full.cost / (1.0 + VERIFY_COST)
    assert set(np.round(turns).ravel().tolist()) == {3.0, 6.0, 9.0}
    assert turns.mean() == pytest.approx(6.0, rel=0.03)
    three = evaluator.run(RoundRobin(max_samples=3, threshold=None, tau=1.0))
    np.testing.assert_array_equal(three.cost, 3 * (1.0 + VERIFY_COST))
    assert three.correct.mean() == pytest.approx(1 / 3, abs=0.03)


def test_a_bigger_budget_never_costs_less_per_episode() -> None:
    pools = ReplayPools.from_log(random_scored_log(8, arms=("a0", "a1"), n_queries=20))
    evaluator = ReplayEvaluator(pools, n_orders=8, seed=2, verify_cost=VERIFY_COST)
    for base in (RoundRobin(threshold=0.9), RoundRobin(threshold=None, tau=0.7)):
        costs = [evaluator.run(base.with_knob(n)).cost for n in (1, 2, 4, 8, 16)]
        for cheaper, dearer in itertools.pairwise(costs):
            assert (dearer >= cheaper - 1e-12).all()
