"""The allocation maths against the algorithm it replaced (binomial tails, a hull per
row, one sort of every gain: quadratic in ``max_samples``) and against its closed forms,
and its cost on the largest batch the service accepts (issue 14, item 1)."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from allocator.allocation import (
    batch_allocation,
    concave_majorant_gains,
    greedy_allocation,
    majority_accuracy,
    majority_gains,
)


# ------------------------------------------------------------------ the old algorithm
def old_majority_accuracy(p: np.ndarray, n_max: int) -> np.ndarray:
    """Binomial pmfs grown one sample at a time, tails summed: O(n_max^2)."""
    pmf = np.zeros((*p.shape, n_max + 1))
    pmf[..., 0] = 1.0
    out = np.zeros((*p.shape, n_max + 1))
    q = 1.0 - p
    for n in range(1, n_max + 1):
        pmf[..., 1 : n + 1] = pmf[..., 1 : n + 1] * q[..., None] + pmf[..., :n] * p[..., None]
        pmf[..., 0] *= q
        out[..., n] = pmf[..., n // 2 + 1 : n + 1].sum(axis=-1)
        if n % 2 == 0:
            out[..., n] += 0.5 * pmf[..., n // 2]
    return out


def old_greedy(gains: np.ndarray, units: int) -> np.ndarray:
    """The units largest positive gains by one sort (ties: smaller n, then earlier row)."""
    rows, steps = np.indices(gains.shape)
    flat = gains.ravel()
    order = np.lexsort((rows.ravel(), steps.ravel(), -flat))
    chosen = order[: max(int(units), 0)]
    chosen = chosen[flat[chosen] > 1e-12]
    return np.bincount(rows.ravel()[chosen], minlength=gains.shape[0]).astype(np.int64)


def old_batch(priors: np.ndarray, costs: np.ndarray, total: float, n_max: int):
    best = None
    for a in range(priors.shape[1]):
        gains = concave_majorant_gains(old_majority_accuracy(priors[:, a], n_max))
        units = int(total // costs[a])
        while units > 0 and units * costs[a] > total:
            units -= 1
        counts = old_greedy(gains, units)
        value = float(sum(gains[q, :c].sum() for q, c in enumerate(counts)))
        if best is None or value > best[0] + 1e-12:
            best = (value, a, counts)
    return best[1], best[2]


# ------------------------------------------------------------------ equal results
PRIOR_KINDS = {
    "uniform": lambda rng, q, a: rng.uniform(0, 1, (q, a)),
    "above half": lambda rng, q, a: rng.uniform(0.5, 1, (q, a)),
    "near half": lambda rng, q, a: rng.uniform(0.45, 0.56, (q, a)),
    "repeated": lambda rng, q, a: rng.choice([0.3, 0.6, 0.75, 0.9], (q, a)),
    "edges": lambda rng, q, a: rng.choice([0.0, 0.5, 1.0, 0.8], (q, a)),
}


@pytest.mark.parametrize("kind", sorted(PRIOR_KINDS))
@pytest.mark.parametrize("seed", range(6))
def test_batch_allocation_equals_the_old_algorithm(kind: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    q, a = int(rng.integers(1, 12)), int(rng.integers(1, 4))
    priors = PRIOR_KINDS[kind](rng, q, a)
    costs = rng.choice([0.5, 1.0, 3.0], a)
    n_max = int(rng.integers(1, 40))
    for total in (0.0, 1.0, 7.5, float(rng.uniform(0, q * n_max)), 1e9):
        arm, counts = batch_allocation(priors, costs, total, n_max, range(a))
        old_arm, old_counts = old_batch(priors, costs, total, n_max)
        assert arm == old_arm
        np.testing.assert_array_equal(counts, old_counts)


@pytest.mark.parametrize("n_max", [1, 2, 3, 10, 31, 64])
def test_majority_accuracy_equals_the_binomial_tails(n_max: int) -> None:
    p = np.array([0.0, 0.1, 0.3, 0.5, 0.5001, 0.6, 0.9, 0.999, 1.0])
    np.testing.assert_allclose(majority_accuracy(p, n_max), old_majority_accuracy(p, n_max),
                               rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("n_max", [1, 2, 3, 4, 11, 40])
def test_majority_gains_are_the_concave_majorants_positive_gains(n_max: int) -> None:
    p = np.linspace(0, 1, 41)
    hull = concave_majorant_gains(old_majority_accuracy(p, n_max))
    np.testing.assert_allclose(majority_gains(p, n_max), np.maximum(hull, 0), atol=1e-12)


TIED_GAINS = {
    "integers": lambda rng: -np.sort(-rng.integers(0, 4, (5, 6)).astype(float), axis=1),
    "all equal": lambda rng: np.ones((4, 5)),
    "zeros": lambda rng: np.zeros((3, 4)),
    "negative tails": lambda rng: -np.sort(-rng.integers(-2, 3, (6, 5)).astype(float), axis=1),
}


@pytest.mark.parametrize("kind", sorted(TIED_GAINS))
def test_greedy_breaks_ties_as_the_sort_did(kind: str) -> None:
    rng = np.random.default_rng(3)
    gains = TIED_GAINS[kind](rng)
    for units in range(gains.size + 2):
        np.testing.assert_array_equal(greedy_allocation(gains, units), old_greedy(gains, units))


def test_greedy_is_the_brute_force_optimum_on_tiny_batches() -> None:
    p = np.array([0.62, 0.8, 0.55])
    n_max = 5
    curves = old_majority_accuracy(p, n_max)
    gains = majority_gains(p, n_max)
    hull = curves[:, :1] + np.concatenate([np.zeros((3, 1)), np.cumsum(gains, axis=1)], axis=1)
    for units in range(16):
        counts = greedy_allocation(gains, units)
        best = max(hull[np.arange(3), list(n)].sum()
                   for n in itertools.product(range(n_max + 1), repeat=3) if sum(n) <= units)
        assert hull[np.arange(3), counts].sum() == pytest.approx(best, abs=1e-12)


# ------------------------------------------------------------------ hostile sizes
@pytest.mark.parametrize("kind", ["near half", "uniform"])
def test_the_largest_batch_the_service_accepts_is_fast(kind: str) -> None:
    """1000 queries x 10000 samples: the old algorithm ran for minutes (quadratic)."""
    priors = PRIOR_KINDS[kind](np.random.default_rng(0), 1000, 2)
    start = time.perf_counter()
    arm, counts = batch_allocation(priors, np.array([1.0, 2.0]), 1e9, 10_000, range(2))
    assert time.perf_counter() - start < 20  # ~1 s here; the old code took minutes
    assert counts.max() <= 10_000 and counts.sum() <= 1e9
    # Every query with p > 1/2 gets every sample that still gains (budget unbounded).
    expected = (majority_gains(priors[:, arm], 10_000) > 1e-12).sum(axis=1)
    np.testing.assert_array_equal(counts, expected)
