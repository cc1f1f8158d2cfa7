"""until-verified and best-of-n: known answers, references per episode, monotone knobs."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from verifier_logs import Drawn, final_correctness, make_log, random_scored_log, run_env

from allocator.actions import STOP, sample_action, verify_action
from allocator.envs.pools import ReplayPools
from allocator.featurizer import QueryState
from allocator.policies import BestOfN, FixedN, UntilVerified, WeightedVote, make_policy
from allocator.training.evaluation.replay import ReplayEvaluator

VERIFY_COST = 0.5


def until_verified_reference(drawn: Drawn, arm: int, n: int, tau: float) -> tuple[float, float]:
    """Sample, verify each scored sample, stop at a score >= tau or n samples."""
    cost, draws = 0.0, []
    for answer, score, sample_cost in drawn.arms[arm][:n]:
        scored = not math.isnan(score)
        cost += sample_cost + (drawn.verify_cost if scored else 0.0)
        draws.append((answer, score, scored))
        if any(v and a is not None and s >= tau for a, s, v in draws):
            break
    return final_correctness(draws, drawn.correct_of), cost


def best_of_n_reference(drawn: Drawn, arm: int, n: int) -> tuple[float, float]:
    """The first n samples, every scored one verified once at the end."""
    taken = drawn.arms[arm][:n]
    scored = [not math.isnan(s) for _, s, _ in taken]
    cost = sum(c for _, _, c in taken) + drawn.verify_cost * sum(scored)
    draws = [(a, s, v) for (a, s, _), v in zip(taken, scored, strict=True)]
    return final_correctness(draws, drawn.correct_of), cost


# --------------------------------------------------------------- known answers
@pytest.fixture(scope="module")
def one_right() -> ReplayPools:
    """One query, three samples of cost 2: only the correct one scores above 0.5."""
    return ReplayPools.from_log(make_log([
        {"query_id": "q", "answer": "7", "correct": 0, "score": 0.2, "cost": 2.0},
        {"query_id": "q", "answer": "9", "correct": 1, "score": 0.9, "cost": 2.0},
        {"query_id": "q", "answer": "8", "correct": 0, "score": 0.4, "cost": 2.0},
    ]))


def test_until_verified_always_finds_the_one_right_sample(one_right: ReplayPools) -> None:
    results = ReplayEvaluator(one_right, n_orders=3000, seed=1, verify_cost=VERIFY_COST).run(
        UntilVerified(n=3, tau=0.5))
    assert (results.correct == 1.0).all()
    per_sample = 2.0 + VERIFY_COST  # each sample is verified as soon as it is drawn
    positions = results.cost / per_sample
    np.testing.assert_allclose(positions, np.round(positions))
    assert set(np.round(positions).ravel().tolist()) == {1.0, 2.0, 3.0}
    # The right sample is equally likely at each position: mean position 2.
    assert results.cost.mean() == pytest.approx(2 * per_sample, rel=0.03)


def test_best_of_n_known_accuracy_and_exact_cost(one_right: ReplayPools) -> None:
    evaluator = ReplayEvaluator(one_right, n_orders=3000, seed=2, verify_cost=VERIFY_COST)
    everything = evaluator.run(BestOfN(n=3))
    assert (everything.correct == 1.0).all()
    np.testing.assert_array_equal(everything.cost, 3 * (2.0 + VERIFY_COST))
    one = evaluator.run(BestOfN(n=1))
    np.testing.assert_array_equal(one.cost, 2.0 + VERIFY_COST)
    assert one.correct.mean() == pytest.approx(1 / 3, abs=0.03)


def test_a_perfect_checker_gives_pass_at_n() -> None:
    """Scores = correctness, tau = 1: accuracy is pass@n = 1 - C(m - c, n) / C(m, n)."""
    rows = [{"query_id": "q", "answer": str(i), "correct": float(i < 2), "score": float(i < 2)}
            for i in range(6)]
    pools = ReplayPools.from_log(make_log(rows))
    evaluator = ReplayEvaluator(pools, n_orders=4000, seed=3)
    for n in (1, 2, 3, 5):
        accuracy = evaluator.run(UntilVerified(n=n, tau=1.0)).correct.mean()
        assert accuracy == pytest.approx(1 - math.comb(4, n) / math.comb(6, n), abs=0.025)


# ------------------------------------------------------- references per episode
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_until_verified_equals_its_reference_on_every_episode(seed: int) -> None:
    pools = ReplayPools.from_log(random_scored_log(seed))
    for query in range(pools.n_queries):
        for episode in range(3):
            drawn = Drawn(pools, 100 * seed + episode, query, VERIFY_COST)
            for arm in range(pools.n_arms):
                for n, tau in ((1, 0.5), (3, 0.6), (4, 0.9), (8, 1.0), (8, 0.0)):
                    policy = UntilVerified(n=n, tau=tau, arm=arm)
                    correct, cost, _ = run_env(policy, pools, 100 * seed + episode, query,
                                               VERIFY_COST)
                    expected = until_verified_reference(drawn, arm, n, tau)
                    assert (correct, cost) == pytest.approx(expected), (query, policy)


@pytest.mark.parametrize("seed", [0, 1])
def test_best_of_n_equals_its_reference_on_every_episode(seed: int) -> None:
    pools = ReplayPools.from_log(random_scored_log(seed, score_rate=0.7))
    for query in range(pools.n_queries):
        drawn = Drawn(pools, seed, query, VERIFY_COST)
        for arm in range(pools.n_arms):
            for n in (1, 2, 4, 9):
                correct, cost, _ = run_env(BestOfN(n=n, arm=arm), pools, seed, query,
                                           VERIFY_COST)
                assert (correct, cost) == pytest.approx(best_of_n_reference(drawn, arm, n))


def test_batched_replay_equals_the_single_env_episodes() -> None:
    """The evaluator (batched env) replays what the single env does, verify costs included."""
    pools = ReplayPools.from_log(random_scored_log(4))
    evaluator = ReplayEvaluator(pools, n_orders=2, seed=0, verify_cost=VERIFY_COST)
    for policy in (UntilVerified(n=4, tau=0.7, arm=1), BestOfN(n=3)):
        results = evaluator.run(policy)
        for query in range(pools.n_queries):
            for order in range(2):
                seed = query * 2 + order  # the evaluator's seeds (seed 0)
                correct, cost, _ = run_env(policy, pools, seed, query, VERIFY_COST)
                assert results.correct[query, order] == pytest.approx(correct)
                assert results.cost[query, order] == pytest.approx(cost)


# ------------------------------------------------------------------ knobs, rules
def test_more_samples_or_a_higher_tau_never_cost_less_per_episode() -> None:
    pools = ReplayPools.from_log(random_scored_log(7, n_queries=20))
    evaluator = ReplayEvaluator(pools, n_orders=10, seed=4, verify_cost=VERIFY_COST)
    for tau in (0.5, 0.8):
        costs = [evaluator.run(UntilVerified(n=n, tau=tau)).cost for n in (1, 2, 4, 8)]
        for cheaper, dearer in itertools.pairwise(costs):
            assert (dearer >= cheaper - 1e-12).all()
    by_tau = [evaluator.run(UntilVerified(n=6, tau=tau)).cost for tau in (0.0, 0.5, 0.8, 1.0)]
    for cheaper, dearer in itertools.pairwise(by_tau):
        assert (dearer >= cheaper - 1e-12).all()
    best = [evaluator.run(BestOfN(n=n)).cost for n in (1, 2, 4, 8)]
    for cheaper, dearer in itertools.pairwise(best):
        assert (dearer >= cheaper - 1e-12).all()


def test_until_verified_verifies_after_every_sample_and_stops_when_accepted() -> None:
    state = QueryState(1)
    policy = UntilVerified(n=5, tau=0.8)
    mask = np.ones((1, 4), dtype=bool)
    assert policy.act(state.to_batch(), mask)[0] == sample_action(0)
    state.add_sample(0, "a")
    assert policy.act(state.to_batch(), mask)[0] == verify_action(1)
    mask[0, verify_action(1)] = False  # what the env does once nothing is pending
    state.verify({0: 0.5})
    assert policy.act(state.to_batch(), mask)[0] == sample_action(0)
    state.add_sample(0, "b")
    state.verify({1: 0.8})
    assert policy.act(state.to_batch(), np.ones((1, 4), dtype=bool))[0] == STOP


def test_best_of_n_is_fixed_n_with_the_verifier() -> None:
    pools = ReplayPools.from_log(random_scored_log(5))
    evaluator = ReplayEvaluator(pools, n_orders=4, seed=9, verify_cost=VERIFY_COST)
    for n in (1, 3, 6):
        ours = evaluator.run(make_policy("best-of-n", n=n, arm=1))
        theirs = evaluator.run(FixedN(n=n, arm=1, verify=True))
        np.testing.assert_array_equal(ours.correct, theirs.correct)
        np.testing.assert_array_equal(ours.cost, theirs.cost)
    assert make_policy("best-of-n").describe() == "best-of-n(n=5, arm=0, verify=True)"


# ------------------------------------------------------------------ weighted vote
def weighted_vote_reference(drawn: Drawn, arm: int, n: int) -> tuple[float, float]:
    """The first n samples, all verified; the answer with the largest score sum (the
    majority when none has a score); ties share the credit."""
    taken = drawn.arms[arm][:n]
    cost = sum(c for _, _, c in taken) + drawn.verify_cost * sum(
        not math.isnan(s) for _, s, _ in taken)
    sums: dict[int, float] = {}
    for answer, score, _ in taken:
        if answer is not None and not math.isnan(score):
            sums[answer] = sums.get(answer, 0.0) + score
    if not sums:
        return final_correctness([(a, s, False) for a, s, _ in taken], drawn.correct_of), cost
    top = max(sums.values())
    tied = [a for a, v in sums.items() if v == top]  # the env sums in the same order
    return float(np.mean([drawn.correct_of[a] for a in tied])), cost


@pytest.mark.parametrize("seed", [0, 3])
def test_weighted_vote_equals_its_reference_on_every_episode(seed: int) -> None:
    pools = ReplayPools.from_log(random_scored_log(seed, score_rate=0.7))
    for query in range(pools.n_queries):
        drawn = Drawn(pools, seed, query, VERIFY_COST)
        for arm in range(pools.n_arms):
            for n in (1, 3, 9):
                correct, cost, _ = run_env(WeightedVote(n=n, arm=arm), pools, seed, query,
                                           VERIFY_COST)
                assert (correct, cost) == pytest.approx(
                    weighted_vote_reference(drawn, arm, n))


def test_weighted_vote_and_best_of_n_differ_where_sums_and_maxima_do() -> None:
    """Answer "a" scores 0.4 twice (sum 0.8, right), "b" 0.7 once (the best, wrong)."""
    pools = ReplayPools.from_log(make_log([
        {"query_id": "q", "answer": "a", "correct": 1, "score": 0.4},
        {"query_id": "q", "answer": "a", "correct": 1, "score": 0.4},
        {"query_id": "q", "answer": "b", "correct": 0, "score": 0.7},
    ]))
    evaluator = ReplayEvaluator(pools, n_orders=10, seed=0, verify_cost=VERIFY_COST)
    weighted, best = evaluator.run(WeightedVote(n=3)), evaluator.run(BestOfN(n=3))
    np.testing.assert_array_equal(weighted.correct, 1.0)
    np.testing.assert_array_equal(best.correct, 0.0)
    np.testing.assert_array_equal(weighted.cost, best.cost)
    np.testing.assert_array_equal(weighted.cost, 3 * (1.0 + VERIFY_COST))
