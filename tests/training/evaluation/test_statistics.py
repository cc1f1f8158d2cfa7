"""Paired differences and bootstrap intervals: hand-computed cases of known sign, and
interval widths against the analytic standard error."""

from __future__ import annotations

import numpy as np
import pytest

from allocator.training.evaluation.results import EpisodeResults
from allocator.training.evaluation.statistics import (
    bootstrap_mean_ci,
    paired_difference,
    policy_point,
)


def episodes(correct: list[list[float]], cost: float = 1.0) -> EpisodeResults:
    array = np.asarray(correct, dtype=float)
    return EpisodeResults("p", array, np.full(array.shape, cost), np.ones(array.shape),
                          np.zeros(array.shape, dtype=bool))


def test_paired_difference_is_a_minus_b_on_a_hand_computed_case() -> None:
    # Three queries, two orders. a - b per query (mean over orders): 0.5, 1.0, 0.0
    a = episodes([[1, 1], [1, 1], [0, 1]])
    b = episodes([[1, 0], [0, 0], [0, 1]])
    difference, (low, high) = paired_difference(a, b, n_bootstrap=2000, seed=0)
    assert difference == pytest.approx(0.5)
    # Every resample's mean lies in [0, 1] and the interval holds the estimate.
    assert 0.0 <= low <= 0.5 <= high <= 1.0
    # The sign: b is worse than a, so b - a is -0.5 with the mirrored interval.
    reverse, (rlow, rhigh) = paired_difference(b, a, n_bootstrap=2000, seed=0)
    assert reverse == pytest.approx(-0.5)
    assert (rlow, rhigh) == pytest.approx((-high, -low))


def test_policy_point_difference_is_against_the_reference() -> None:
    better = episodes([[1, 1]] * 10 + [[0, 0]] * 10)
    reference = episodes([[1, 0]] * 10 + [[0, 0]] * 10)
    point = policy_point(better, policy="p", knob=None, value=None, deployable=True,
                         reference=reference, n_bootstrap=500)
    assert point.difference == pytest.approx(0.25)
    assert point.difference_ci[0] > 0.0  # every query is at least as good: CI above 0


@pytest.mark.parametrize("n", [50, 400])
@pytest.mark.parametrize("spread", [0.1, 0.4])
def test_interval_width_is_bounded_by_the_analytic_standard_error(n: int,
                                                                  spread: float) -> None:
    """A 95% percentile interval of a mean is about 2 x 1.96 standard errors wide; it is
    never more than 25% wider (nor narrower) than that on these samples."""
    values = np.random.default_rng(n).normal(0.3, spread, size=n)
    se = values.std(ddof=1) / np.sqrt(n)
    low, high = bootstrap_mean_ci(values, n_bootstrap=2000, seed=1)
    assert high - low <= 1.25 * 2 * 1.96 * se
    assert high - low >= 0.75 * 2 * 1.96 * se
    # paired: the interval of a - b is that of the per-query differences
    a = episodes(values[:, None] + 1.0)
    b = episodes(np.ones((n, 1)))
    _, (plow, phigh) = paired_difference(a, b, n_bootstrap=2000, seed=1)
    assert phigh - plow <= 1.25 * 2 * 1.96 * se
