"""Sweep builders of blend-asc and bayes-stop: fitted on training queries only, monotone."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from allocator.envs.pools import ReplayPools
from allocator.logs.synthetic import SyntheticArm, SyntheticConfig, generate
from allocator.policies import BayesStop, BlendASC
from allocator.training.evaluation.baselines import BaselineContext, NotApplicable, build_sweep
from allocator.training.evaluation.baselines_vote import vote_counts
from allocator.training.evaluation.replay import ReplayEvaluator

NAMES = ("blend-asc", "bayes-stop")


@pytest.fixture(scope="module")
def one_arm() -> ReplayPools:
    config = SyntheticConfig(n_queries=240, arms=(SyntheticArm("only", 0.5, 1.0, 24),))
    return ReplayPools.from_log(generate(config, seed=11))


def context(pools: ReplayPools, **sweeps: tuple) -> BaselineContext:
    return BaselineContext(pools, np.arange(0, pools.n_queries, 2), None, n_orders=6,
                           seed=0, sweeps={k.replace("_", "-"): v for k, v in sweeps.items()})


@pytest.mark.parametrize(("answers", "correct", "expected"), [
    ([0, 0, 1, 1, 1, 2, -1], [1, 1, 0, 0, 0, 0, 0], (2, 3, 1)),  # correct answer outvoted
    ([0, 0, 1, 1, 1, 2], [0, 0, 0, 0, 0, 0], (0, 3, 3)),          # no correct answer
    ([2, 2, 2, 0, 1], [1, 1, 1, 0, 0], (3, 1, 1)),
    ([0, 1, 1], [0.4, 0, 0], (0, 2, 1)),                         # 0.4 is not correct
    ([-1, -1], [0, 0], (0, 0, 0)),                               # nothing voted
])
def test_vote_counts(answers: list, correct: list, expected: tuple) -> None:
    assert vote_counts(np.array(answers), np.array(correct, dtype=float)) == expected


@pytest.mark.parametrize("name", NAMES)
def test_the_held_out_queries_are_never_read(name: str, one_arm: ReplayPools) -> None:
    """Rewriting every held-out answer (all one correct answer) changes no setting."""
    held_out = np.zeros(len(one_arm.cand_answer), dtype=bool)
    for q in range(1, one_arm.n_queries, 2):
        held_out[one_arm.cand_offsets[q]: one_arm.cand_offsets[q + 1]] = True
    rewritten = dataclasses.replace(
        one_arm, cand_answer=np.where(held_out, 0, one_arm.cand_answer),
        cand_correct=np.where(held_out, 1.0, one_arm.cand_correct))
    original = build_sweep(name, context(one_arm))
    assert original == build_sweep(name, context(rewritten))
    assert len(original) >= 4


def test_more_budget_and_a_lower_price_buy_more_samples(one_arm: ReplayPools) -> None:
    """Monotone knobs on held-out queries: more samples, accuracy no lower (within noise)."""
    test = np.arange(1, one_arm.n_queries, 2)
    evaluator = ReplayEvaluator(one_arm, test, n_orders=6, seed=3)
    sweeps = {"blend-asc": (1.0, 5.0, 8.0, 12.0, 20.0),
              "bayes-stop": (0.05, 0.01, 0.002, 5e-4, 1e-4, 1e-5)}
    for name, values in sweeps.items():
        policies = build_sweep(name, context(one_arm, **{name.replace("-", "_"): values}))
        assert [getattr(p, p.knob) for p in policies] == list(values)
        runs = [evaluator.run(p) for p in policies]
        samples = [r.samples.mean() for r in runs]
        accuracy = [r.correct.mean() for r in runs]
        assert all(b >= a for a, b in itertools.pairwise(samples)), (name, samples)
        assert samples[-1] > samples[0] + 2, (name, samples)
        assert all(b >= a - 0.01 for a, b in itertools.pairwise(accuracy)), (name, accuracy)
        assert accuracy[-1] > accuracy[0], (name, accuracy)


def test_every_arm_is_fitted_and_pruned_on_a_multi_arm_log() -> None:
    pools = ReplayPools.from_log(generate(SyntheticConfig(n_queries=80), seed=2))
    for name in NAMES:
        policies = build_sweep(name, context(pools))
        assert policies and {p.arm for p in policies} <= {0, 1}
        assert all(isinstance(p, BlendASC | BayesStop) for p in policies)
    horizons = {p.arm: p.horizon for p in build_sweep("bayes-stop", context(pools))}
    for arm, horizon in horizons.items():  # the table covers the arm's largest pool
        assert horizon == int(pools.group_count[np.arange(0, 80, 2), arm].max())


@pytest.mark.parametrize("name", NAMES)
def test_no_vote_on_the_training_queries_is_not_applicable(name: str,
                                                           one_arm: ReplayPools) -> None:
    mute = dataclasses.replace(one_arm, cand_answer=np.full_like(one_arm.cand_answer, -1))
    with pytest.raises(NotApplicable, match="no arm has a vote"):
        build_sweep(name, context(mute))
