"""round-robin, cascade, router: references per episode, known answers, reductions,
monotone knobs."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
from verifier_logs import Drawn, final_correctness, make_log, random_scored_log, run_env

from allocator.envs.pools import ReplayPools
from allocator.errors import ParameterError
from allocator.featurizer import QueryState, StateBatch
from allocator.policies import AdaptiveConsistency, Cascade, RoundRobin, Router
from allocator.policies.self_consistency import beta_stop_probability
from allocator.training.evaluation.replay import ReplayEvaluator

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


# ------------------------------------------------------------------------ cascade
def cascade_reference(drawn: Drawn, arms: tuple[int, ...], tau: float, k: int
                      ) -> tuple[float, float]:
    """k samples per arm in order; accept when the arm's leader holds >= tau of them;
    answer with the majority of the last arm's samples (the paper's answer)."""
    last: list[tuple[int | None, float, bool]] = []
    cost = 0.0
    for arm in arms:
        taken = drawn.arms[arm][:k]
        if not taken:
            continue
        cost += sum(c for _, _, c in taken)
        last = [(a, s, False) for a, s, _ in taken]
        counts = Counter(a for a, _, _ in taken if a is not None)
        if max(counts.values(), default=0) / len(taken) >= tau:
            break
    return final_correctness(last, drawn.correct_of), cost


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cascade_equals_its_reference_on_every_episode(seed: int) -> None:
    pools = ReplayPools.from_log(random_scored_log(seed, arms=("a0", "a1", "a2"), max_pool=5))
    for query in range(pools.n_queries):
        for episode in range(2):
            drawn = Drawn(pools, 10 * seed + episode, query, 0.0)
            for tau, k, arms in ((0.5, 3, (0, 1, 2)), (0.7, 2, (2, 0)), (1.0, 4, (1, 2, 0)),
                                 (0.3, 1, (0, 1, 2)), (0.67, 3, (1, 0))):
                policy = Cascade(tau=tau, k=k, arms=arms)
                correct, cost, actions = run_env(policy, pools, 10 * seed + episode, query,
                                                 0.0)
                assert (correct, cost) == pytest.approx(
                    cascade_reference(drawn, arms, tau, k)), (query, policy, actions)


def test_cascade_accepts_agreement_and_escalates_disagreement() -> None:
    """q0: the cheap arm agrees (on a wrong answer): accepted at 3 cheap samples. q1: the
    cheap arm splits three ways: escalated; the strong arm's 3 right votes win."""
    rows = ([{"query_id": "q0", "arm": "cheap", "answer": "a", "correct": 0, "cost": 1.0}] * 3
            + [{"query_id": "q0", "arm": "strong", "answer": "x", "correct": 1, "cost": 5.0}] * 3
            + [{"query_id": "q1", "arm": "cheap", "answer": s, "correct": 0, "cost": 1.0}
               for s in "abc"]
            + [{"query_id": "q1", "arm": "strong", "answer": "x", "correct": 1, "cost": 5.0}] * 3)
    pools = ReplayPools.from_log(make_log(rows))
    cheap, strong = pools.arms.index("cheap"), pools.arms.index("strong")
    evaluator = ReplayEvaluator(pools, n_orders=20, seed=0)
    results = evaluator.run(Cascade(tau=0.6, k=3, arms=(cheap, strong)))
    np.testing.assert_array_equal(results.correct, [[0.0] * 20, [1.0] * 20])
    np.testing.assert_array_equal(results.cost, [[3.0] * 20, [18.0] * 20])
    # A share of 1/3 is enough at tau = 0.3: q1 stops on the cheap arm (a 3-way tie).
    low = evaluator.run(Cascade(tau=0.3, k=3, arms=(cheap, strong)))
    np.testing.assert_array_equal(low.cost, 3.0)


def test_cascade_answers_with_the_accepting_arm_not_the_pooled_votes() -> None:
    """The cheap arm says "w" 3 times but only 3 of 5 (rejected at tau 0.8), the strong
    arm "r" twice: the pooled majority would be "w" (3 - 2), the paper's answer is "r"."""
    rows = ([{"query_id": "q", "arm": "cheap", "answer": "w", "correct": 0}] * 3
            + [{"query_id": "q", "arm": "cheap", "answer": a, "correct": 0} for a in "xy"]
            + [{"query_id": "q", "arm": "strong", "answer": "r", "correct": 1}] * 2)
    pools = ReplayPools.from_log(make_log(rows))
    arms = (pools.arms.index("cheap"), pools.arms.index("strong"))
    results = ReplayEvaluator(pools, n_orders=30, seed=0).run(
        Cascade(tau=0.8, k=5, arms=arms))
    np.testing.assert_array_equal(results.correct, 1.0)
    np.testing.assert_array_equal(results.samples, 7)


def test_cascade_needs_the_per_arm_leader() -> None:
    state = QueryState(2).to_batch()
    fields = {f: getattr(state, f) for f in ("samples", "votes", "no_answer", "refines",
                                             "verified", "best_score", "cost", "lam", "prior")}
    with pytest.raises(ParameterError, match="arm_leader"):
        Cascade().act(StateBatch(**fields), np.ones((1, 5), dtype=bool))


def test_a_higher_tau_never_costs_less_per_episode() -> None:
    pools = ReplayPools.from_log(random_scored_log(9, arms=("a0", "a1", "a2"), n_queries=20))
    evaluator = ReplayEvaluator(pools, n_orders=8, seed=3)
    for k in (1, 3):
        costs = [evaluator.run(Cascade(tau=tau, k=k)).cost for tau in Cascade.default_sweep]
        for cheaper, dearer in itertools.pairwise(costs):
            assert (dearer >= cheaper - 1e-12).all()


# ------------------------------------------------------------------------- router
def test_router_is_adaptive_consistency_on_the_arm_of_best_accuracy_per_price() -> None:
    pools = ReplayPools.from_log(random_scored_log(6, arms=("a0", "a1", "a2"), max_pool=9,
                                                   n_queries=12))
    rng = np.random.default_rng(0)
    prior = rng.random((pools.n_queries, 3))
    prices = (1.0, 2.5, 4.0)
    evaluator = ReplayEvaluator(pools, n_orders=5, seed=2, prior=prior)
    for weight, threshold in ((1.0, 0.9), (0.0, 0.8), (0.5, 0.95)):
        routed = evaluator.run(Router(threshold=threshold, max_samples=6, prices=prices,
                                      price_weight=weight))
        by_hand = [int(np.argmax([p / c**weight for p, c in zip(row, prices, strict=True)]))
                   for row in prior]
        assert len(set(by_hand)) > 1  # the prior routes queries to different arms
        for arm in range(3):
            ac = evaluator.run(AdaptiveConsistency(threshold=threshold, max_samples=6, arm=arm))
            rows = [q for q, chosen in enumerate(by_hand) if chosen == arm]
            np.testing.assert_array_equal(routed.correct[rows], ac.correct[rows])
            np.testing.assert_array_equal(routed.cost[rows], ac.cost[rows])


def test_router_prices_must_match_the_arms() -> None:
    state = QueryState(3).to_batch()
    with pytest.raises(ParameterError, match="'prices'"):
        Router(prices=(1.0, 2.0)).act(state, np.ones((1, 6), dtype=bool))


def test_a_higher_router_threshold_never_costs_less_per_episode() -> None:
    pools = ReplayPools.from_log(random_scored_log(10, arms=("a0", "a1"), n_queries=20))
    prior = np.random.default_rng(1).random((pools.n_queries, 2))
    evaluator = ReplayEvaluator(pools, n_orders=8, seed=3, prior=prior)
    costs = [evaluator.run(Router(threshold=t, prices=(1.0, 3.0))).cost
             for t in Router.default_sweep]
    for cheaper, dearer in itertools.pairwise(costs):
        assert (dearer >= cheaper - 1e-12).all()
