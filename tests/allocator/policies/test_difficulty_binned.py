"""DifficultyBinned: bins, the exact plan, the budget and the knob."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from policy_states import run_episode

from allocator.errors import ParameterError
from allocator.policies import DifficultyBinned
from allocator.policies.difficulty_binned import binary_majority_curve, solve_plan

N_MAX = 20


def known_example() -> tuple[np.ndarray, np.ndarray]:
    """Five groups of 20 queries whose compute-optimal plan is worked out by hand.

    Curves (accuracy with N samples): hopeless 0; hard 0.2 for any N; medium
    min(1, 0.1 N); fair min(1, 0.5 + 0.05 N); easy 1.
    """
    rng = np.random.default_rng(0)
    n = np.arange(1, N_MAX + 1)
    groups = [(0.1, np.zeros(N_MAX)), (0.3, np.full(N_MAX, 0.2)),
              (0.5, np.minimum(1, 0.1 * n)), (0.7, np.minimum(1, 0.5 + 0.05 * n)),
              (0.9, np.ones(N_MAX))]
    prior = np.concatenate([p + rng.uniform(-0.05, 0.05, 20) for p, _ in groups])
    curves = np.concatenate([np.tile(c, (20, 1)) for _, c in groups])
    return prior, curves


def accuracy_of(prior: np.ndarray, curves: np.ndarray, policy: DifficultyBinned) -> float:
    """Mean accuracy and samples on the queries when the policy runs on each of them."""
    drawn = [run_episode(policy, ["x"] * N_MAX, prior=float(p))[0] for p in prior]
    return float(np.mean([c[k - 1] if k else 0.0 for c, k in zip(curves, drawn,
                                                                   strict=True)]))


def test_fit_finds_the_known_optimum_and_beats_uniform() -> None:
    prior, curves = known_example()
    policy = DifficultyBinned.fit(prior, curves, target_mean_samples=4.0)
    assert policy.bin_counts == (20,) * 5
    # Budget 5 x 4 = 20 samples per five queries: 1 each to hopeless, hard and easy; the
    # medium bin gains 0.1 a sample up to 10; the fair one 0.05 a sample with the 7 left.
    assert policy.samples_per_bin == (1, 1, 10, 7, 1)
    assert policy.planned_mean_samples() == 4.0
    assert policy.planned_accuracy() == pytest.approx((0 + 0.2 + 1 + 0.85 + 1) / 5)
    assert accuracy_of(prior, curves, policy) == pytest.approx(policy.planned_accuracy())
    uniform = curves[:, 3].mean()  # 4 samples for every query
    assert uniform == pytest.approx(0.46)
    assert policy.planned_accuracy() > uniform + 0.1


def test_min_samples_zero_gives_up_on_hopeless_queries() -> None:
    prior, curves = known_example()
    policy = DifficultyBinned.fit(prior, curves, 4.0, min_samples=0)
    assert policy.samples_per_bin == (0, 1, 10, 8, 1)
    drawn, _ = run_episode(policy, ["x"] * 5, prior=0.1)
    assert drawn == 0


@pytest.mark.parametrize("seed", range(6))
def test_plan_is_the_brute_force_optimum(seed: int) -> None:
    rng = np.random.default_rng(seed)
    bins, length = int(rng.integers(1, 4)), int(rng.integers(1, 7))
    curves = tuple(tuple(np.sort(rng.random(length)).tolist()) if rng.random() < 0.5
                   else tuple(rng.random(length).tolist()) for _ in range(bins))
    counts = tuple(int(c) for c in rng.integers(0, 9, bins))
    target = float(rng.uniform(1, length + 1))
    minimum = int(rng.integers(0, 2))
    plan = solve_plan(curves, counts, target, minimum)

    def value(choice: tuple[int, ...]) -> float:
        return sum(c * (curve[n - 1] if n else 0.0)
                   for curve, c, n in zip(curves, counts, choice, strict=True))

    def cost(choice: tuple[int, ...]) -> int:
        return sum(c * n for c, n in zip(counts, choice, strict=True))

    feasible = [p for p in itertools.product(range(minimum, length + 1), repeat=bins)
                if cost(p) <= target * sum(counts) + 1e-9]
    best = max(value(p) for p in feasible)
    assert cost(plan) <= target * sum(counts) + 1e-9
    assert value(plan) == pytest.approx(best, abs=1e-12)


def test_fit_respects_the_budget_on_random_queries() -> None:
    rng = np.random.default_rng(1)
    prior = rng.beta(2, 2, 500)
    p = prior[:, None]
    n = np.arange(1, 41)[None, :]
    curves = np.clip(p + (1 - p) * (1 - np.exp(-n * (p - 0.3).clip(0))), 0, 1)
    previous = -1.0
    policy = DifficultyBinned.fit(prior, curves, 1.0)
    for target in policy.default_sweep:
        swept = policy.with_knob(target)
        assert swept.planned_mean_samples() <= target + 1e-12
        bins = np.searchsorted(swept.edges, prior, side="right")
        assert np.asarray(swept.samples_per_bin)[bins].mean() <= target + 1e-12
        assert swept.planned_accuracy() >= previous - 1e-12
        previous = swept.planned_accuracy()
    assert len(policy.edges) == 4


def test_bins_follow_the_edges() -> None:
    policy = DifficultyBinned(edges=(0.5,), samples_per_bin=(2, 6), target=None)
    assert run_episode(policy, ["x"] * 10, prior=0.3)[0] == 2
    assert run_episode(policy, ["x"] * 10, prior=0.5)[0] == 6  # an edge opens its bin
    assert run_episode(policy, ["x"] * 4, prior=0.9)[0] == 4  # pool exhausted: stop
    assert run_episode(DifficultyBinned(edges=(), samples_per_bin=(3,), target=None),
                       ["x"] * 10, prior=0.0)[0] == 3


def test_replace_keeps_a_fitted_plan_and_the_knob_resolves_it() -> None:
    prior, curves = known_example()
    policy = DifficultyBinned.fit(prior, curves, 4.0)
    moved = dataclasses.replace(policy, arm=1)
    assert moved.samples_per_bin == policy.samples_per_bin and moved.arm == 1
    assert policy.with_knob(2.0).samples_per_bin == (1, 1, 6, 1, 1)
    with pytest.raises(ParameterError, match="samples_per_bin"):
        dataclasses.replace(policy, samples_per_bin=(1, 1, 1, 1, 1))
    fixed = DifficultyBinned(samples_per_bin=(1, 2, 3, 4, 5), target=None)
    assert fixed.with_knob(3.0).target == 3.0  # analytic curves when unfitted


def test_fit_validates_its_inputs() -> None:
    with pytest.raises(ParameterError, match="solve_curves"):
        DifficultyBinned.fit(np.ones(3), np.ones((4, 2)), 2.0)
    with pytest.raises(ParameterError, match="'prior'"):
        DifficultyBinned.fit(np.array([np.nan]), np.ones((1, 2)), 2.0)
    with pytest.raises(ParameterError, match="'target'"):
        DifficultyBinned.fit(np.ones(3), np.ones((3, 2)), 0.5)


def test_discrete_priors_give_fewer_bins() -> None:
    prior = np.repeat([0.2, 0.8], 10)
    policy = DifficultyBinned.fit(prior, np.ones((20, 3)), 2.0)
    assert policy.edges == (0.8,) and policy.bin_counts == (10, 10)


def test_binary_majority_curve() -> None:
    curve = binary_majority_curve(0.7, 5)
    assert curve[0] == pytest.approx(0.7)
    assert curve[1] == pytest.approx(0.7)  # 0.49 + tie 0.42 / 2
    assert curve[2] == pytest.approx(0.7**3 + 3 * 0.7**2 * 0.3)


def test_describe_says_where_the_plan_comes_from() -> None:
    assert "analytic curves" in DifficultyBinned().describe()
    prior, curves = known_example()
    text = DifficultyBinned.fit(prior, curves, 4.0).describe()
    assert "fitted on 100 queries" in text and "(1, 1, 10, 7, 1)" in text
