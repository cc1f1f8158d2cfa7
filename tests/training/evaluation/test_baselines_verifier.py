"""Sweep builders of the verifier and multi-arm baselines: chosen on training queries only,
skipped with a reason where the log lacks what they need."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from allocator.envs.pools import ReplayPools
from allocator.logs.synthetic import SyntheticArm, SyntheticConfig, generate
from allocator.policies import UntilVerified
from allocator.training.evaluation.baselines import BaselineContext, NotApplicable, build_sweep
from allocator.training.evaluation.baselines_verifier import (
    NO_PRIOR,
    NO_SCORES,
    ONE_ARM,
    arm_sets,
    cascade_chains,
    cost_order,
    score_grid,
    train_arm_means,
    train_prices,
    train_scores,
)
from allocator.training.evaluation.evaluate import EvaluationConfig, evaluate, split_queries

VERIFIER = ("until-verified", "best-of-n", "weighted-vote")
MULTI_ARM = ("round-robin", "cascade", "router")


def context_of(pools: ReplayPools, seed: int = 0, prior: np.ndarray | None = None,
               **kwargs: object) -> BaselineContext:
    train, _ = split_queries(pools.n_queries, 0.5, seed)
    return BaselineContext(pools, train, prior, n_orders=4, seed=seed, **kwargs)


def random_prior(pools: ReplayPools, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((pools.n_queries, pools.n_arms))


@pytest.fixture(scope="module")
def scored() -> ReplayPools:
    """Two simulated arms with verifier scores (AUROC about 0.86)."""
    arms = (SyntheticArm("small", 0.45, 1.0, 10), SyntheticArm("large", 0.7, 6.0, 6))
    return ReplayPools.from_log(generate(SyntheticConfig(n_queries=60, arms=arms,
                                                         with_scores=True), seed=3))


@pytest.fixture(scope="module")
def unscored() -> ReplayPools:
    return ReplayPools.from_log(generate(SyntheticConfig(n_queries=40), seed=3))


@pytest.mark.parametrize("name", VERIFIER)
def test_verifier_baselines_skip_logs_without_scores(name: str, unscored: ReplayPools) -> None:
    with pytest.raises(NotApplicable, match=NO_SCORES):
        build_sweep(name, context_of(unscored))


def test_score_grid_of_a_checker_and_of_continuous_scores() -> None:
    assert score_grid(np.array([0.0, 1.0, 1.0, 0.0, 0.0])) == [0.0, 1.0]
    assert score_grid(np.ones(4)) == [1.0]
    assert score_grid(np.array([])) == []
    grid = score_grid(np.arange(1, 101) / 100)
    assert grid == [0.5, 0.75, 0.9, 1.0]


def test_train_scores_read_only_the_arm_on_training_queries(scored: ReplayPools) -> None:
    context = context_of(scored)
    for arm in range(scored.n_arms):
        expected = [s for q in context.train
                    for g, s in zip(scored.cand_group[scored.cand_offsets[q]:
                                                      scored.cand_offsets[q + 1]],
                                    scored.cand_score[scored.cand_offsets[q]:
                                                      scored.cand_offsets[q + 1]], strict=True)
                    if g == arm and not np.isnan(s)]
        np.testing.assert_array_equal(np.sort(train_scores(context, arm)), np.sort(expected))


@pytest.mark.parametrize("name", MULTI_ARM)
def test_multi_arm_baselines_skip_single_arm_logs(name: str) -> None:
    one = generate(SyntheticConfig(n_queries=20, arms=(SyntheticArm("only", 0.5),),
                                   with_scores=True), seed=2)
    pools = ReplayPools.from_log(one)
    with pytest.raises(NotApplicable, match=ONE_ARM):
        build_sweep(name, context_of(pools, prior=random_prior(pools)))


def test_router_skips_an_evaluation_without_a_prior(scored: ReplayPools) -> None:
    with pytest.raises(NotApplicable, match="prior"):
        build_sweep("router", context_of(scored))
    assert NO_PRIOR == "needs the difficulty predictor's prior (evaluation ran without it)"


def test_cascade_chains_and_router_prices_come_from_training_costs() -> None:
    arms = (SyntheticArm("dear", 0.8, 9.0, 4), SyntheticArm("cheap", 0.3, 1.0, 4),
            SyntheticArm("mid", 0.6, 3.0, 4))
    pools = ReplayPools.from_log(generate(SyntheticConfig(n_queries=60, arms=arms), seed=5))
    cheap, dear, mid = (pools.arms.index(n) for n in ("cheap", "dear", "mid"))
    context = context_of(pools)
    assert cascade_chains(context) == sorted(
        [(cheap, mid, dear), (cheap, mid), (cheap, dear), (mid, dear)],
        key=lambda c: (-len(c), c))
    prices = train_prices(context)
    for arm in range(3):
        train_rows = np.isin(np.repeat(np.arange(pools.n_queries), pools.n_candidates),
                             context.train) & (pools.cand_group == arm)
        assert prices[arm] == pytest.approx(pools.cand_cost[train_rows].mean())
    assert prices[cheap] < prices[mid] < prices[dear]


def test_arms_ordered_by_training_cost_and_sets_by_training_accuracy() -> None:
    arms = (SyntheticArm("dear", 0.8, 9.0, 4), SyntheticArm("cheap", 0.3, 1.0, 4),
            SyntheticArm("mid", 0.6, 3.0, 4), SyntheticArm("weak", 0.1, 2.0, 4))
    pools = ReplayPools.from_log(generate(SyntheticConfig(n_queries=80, arms=arms), seed=4))
    cheap, dear, mid, weak = (pools.arms.index(n) for n in ("cheap", "dear", "mid", "weak"))
    context = context_of(pools)
    assert cost_order(context) == (cheap, weak, mid, dear)
    accuracy = train_arm_means(context, pools.cand_correct)
    assert accuracy[dear] > accuracy[mid] > accuracy[cheap] > accuracy[weak]
    # every arm; the best 3 and the best 2 per sample: each cheapest first
    assert arm_sets(context) == [(cheap, weak, mid, dear), (cheap, mid, dear), (mid, dear)]
    # A held-out query's costs do not move the order.
    held_out = ~np.isin(np.repeat(np.arange(pools.n_queries), pools.n_candidates),
                        context.train)
    dear_test = dataclasses.replace(pools, cand_cost=np.where(held_out, 1e6, pools.cand_cost))
    assert cost_order(context_of(dear_test)) == (cheap, weak, mid, dear)


@pytest.mark.parametrize("name", VERIFIER + MULTI_ARM)
def test_settings_do_not_depend_on_the_held_out_queries(name: str, scored: ReplayPools) -> None:
    prior = random_prior(scored)
    context = context_of(scored, prior=prior, verify_cost=0.3)
    settings = build_sweep(name, context)
    assert settings and all(p.name == name for p in settings)
    # Scramble everything the held-out queries hold: the settings must not move.
    rng = np.random.default_rng(0)
    query = np.repeat(np.arange(scored.n_queries), scored.n_candidates)
    held_out = ~np.isin(query, context.train)
    scrambled = dataclasses.replace(
        scored,
        cand_score=np.where(held_out, rng.random(len(query)), scored.cand_score),
        cand_correct=np.where(held_out, 1.0 - scored.cand_correct, scored.cand_correct),
        cand_cost=np.where(held_out, 100 * rng.random(len(query)), scored.cand_cost))
    other_prior = prior.copy()
    test_queries = np.setdiff1d(np.arange(scored.n_queries), context.train)
    other_prior[test_queries] = rng.random((len(test_queries), scored.n_arms))
    assert build_sweep(name, context_of(scrambled, prior=other_prior,
                                        verify_cost=0.3)) == settings


def test_cascade_settings_one_tau_for_one_sample_and_k_within_the_pools() -> None:
    arms = (SyntheticArm("cheap", 0.3, 1.0, 3), SyntheticArm("dear", 0.7, 5.0, 2))
    pools = ReplayPools.from_log(generate(SyntheticConfig(n_queries=40, arms=arms), seed=6))
    settings = build_sweep("cascade", context_of(pools))
    assert {p.k for p in settings} <= {1, 2, 3}
    assert len([p for p in settings if p.k == 1]) <= 1
    assert all(p.arms == (pools.arms.index("cheap"), pools.arms.index("dear"))
               for p in settings)


def test_until_verified_settings_are_the_training_front(scored: ReplayPools) -> None:
    context = context_of(scored, verify_cost=0.3)
    kept = build_sweep("until-verified", context)
    assert len({p.tau for p in kept}) >= 1 and len({p.n for p in kept}) > 1
    points = {p: context.replay_on_train(p) for p in kept}
    accuracy = {p: r.correct.mean() for p, r in points.items()}
    cost = {p: r.cost.mean() for p, r in points.items()}
    # No kept setting is dominated by another candidate of the grid.
    for tau in score_grid(train_scores(context, 0)):
        for n in (1, 3, 8):
            other = context.replay_on_train(UntilVerified(n=n, tau=tau, arm=0))
            for p in kept:
                assert not (other.cost.mean() < cost[p] and other.correct.mean() > accuracy[p])


def test_evaluate_runs_the_verifier_baselines_or_says_why_not(
        scored: ReplayPools, unscored: ReplayPools) -> None:
    config = EvaluationConfig(policies=("fixed-n", *VERIFIER, *MULTI_ARM), n_orders=3,
                              n_bootstrap=50, difficulty=False, oracles=False)
    log = generate(SyntheticConfig(n_queries=60, with_scores=True), seed=1)
    # With the difficulty predictor's prior every baseline applies.
    report, _ = evaluate(log, dataclasses.replace(config, difficulty=True))
    for name in VERIFIER + MULTI_ARM:
        assert report.points[name] and all(p.policy == name for p in report.points[name])
    assert "skipped" not in report.extra
    report, _ = evaluate(generate(SyntheticConfig(n_queries=30), seed=1), config)
    assert report.extra["skipped"] == {**{name: NO_SCORES for name in VERIFIER},
                                       "router": NO_PRIOR}
    assert report.points["round-robin"] and report.points["cascade"]
    one_arm = SyntheticConfig(n_queries=30, arms=(SyntheticArm("only", 0.5),))
    report, _ = evaluate(generate(one_arm, seed=1), config)
    assert report.extra["skipped"] == {**{name: NO_SCORES for name in VERIFIER},
                                       **{name: ONE_ARM for name in MULTI_ARM}}
