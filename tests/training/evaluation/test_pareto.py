"""Pareto fronts and headline numbers on constructed points with closed-form answers."""

from __future__ import annotations

import math

import pytest

from training.evaluation.pareto import (
    accuracy_at_cost,
    cost_to_reach,
    gap_closed_curve,
    headline,
    pareto_front,
)
from training.evaluation.results import PolicyPoint


def point(cost: float, accuracy: float, policy: str = "p", value: object = None) -> PolicyPoint:
    """A point with only what the Pareto functions read filled in meaningfully."""
    return PolicyPoint(
        policy=policy, knob="k", value=cost if value is None else value, description=policy,
        deployable=True, accuracy=accuracy, accuracy_ci=(accuracy, accuracy),
        mean_cost=cost, mean_cost_ci=(cost, cost), mean_samples=cost, exhaustion_rate=0.0,
    )


def line(intercept: float, slope: float, costs: list[float], policy: str) -> list[PolicyPoint]:
    """Points on ``accuracy = intercept + slope * cost``."""
    return [point(c, intercept + slope * c, policy) for c in costs]


COSTS = [1.0, 2.0, 4.0, 6.0, 8.0]
FIXED = line(0.5, 0.05, COSTS, "fixed-n")          # 0.55 .. 0.90
ORACLE = line(0.7, 0.03, COSTS, "query-oracle")     # 0.73 .. 0.94


# --- pareto_front -------------------------------------------------------------------------

def test_front_drops_dominated_points_and_sorts_by_cost():
    a, b, c = point(4, 0.8), point(1, 0.5), point(2, 0.6)
    dominated = point(3, 0.55)  # dearer than c and less accurate
    assert pareto_front([a, dominated, b, c]) == [b, c, a]


def test_front_keeps_the_most_accurate_of_equal_costs_and_one_of_duplicates():
    low, high = point(2, 0.6), point(2, 0.7)
    first, duplicate = point(3, 0.8, value="first"), point(3, 0.8, value="second")
    front = pareto_front([low, duplicate, high, first])
    assert [(p.mean_cost, p.accuracy) for p in front] == [(2, 0.7), (3, 0.8)]
    assert front[1].value == "second"  # the first of two identical points given


def test_front_drops_a_dearer_point_of_equal_accuracy():
    assert pareto_front([point(5, 0.8), point(3, 0.8)]) == [point(3, 0.8)]


def test_front_ignores_nan_and_handles_empty():
    assert pareto_front([]) == []
    assert pareto_front([point(1, math.nan), point(math.nan, 0.9), point(2, 0.5)]) == [
        point(2, 0.5)]


# --- accuracy_at_cost ---------------------------------------------------------------------

def test_accuracy_exactly_between_two_points():
    points = [point(2, 0.6), point(4, 0.8)]
    assert accuracy_at_cost(points, 3.0) == pytest.approx(0.7)
    assert accuracy_at_cost(points, 2.5) == pytest.approx(0.65)
    assert accuracy_at_cost(points, 2.0) == pytest.approx(0.6)
    assert accuracy_at_cost(points, 4.0) == pytest.approx(0.8)


def test_accuracy_interpolates_along_the_front_not_through_dominated_points():
    points = [point(2, 0.6), point(3, 0.5), point(4, 0.8)]
    assert accuracy_at_cost(points, 3.0) == pytest.approx(0.7)


def test_accuracy_is_none_outside_the_front():
    points = [point(2, 0.6), point(4, 0.8)]
    assert accuracy_at_cost(points, 1.99) is None
    assert accuracy_at_cost(points, 4.01) is None
    assert accuracy_at_cost([], 3.0) is None
    assert accuracy_at_cost(points, math.nan) is None


def test_accuracy_on_a_linear_front_is_the_line():
    for cost in (1.0, 1.5, 3.3, 7.9):
        assert accuracy_at_cost(FIXED, cost) == pytest.approx(0.5 + 0.05 * cost)


# --- cost_to_reach ------------------------------------------------------------------------

def test_cost_to_reach_interpolates_between_the_points_around_the_target():
    points = [point(2, 0.6), point(4, 0.8), point(8, 0.9)]
    assert cost_to_reach(points, 0.7) == pytest.approx(3.0)
    assert cost_to_reach(points, 0.85) == pytest.approx(6.0)
    assert cost_to_reach(FIXED, 0.8) == pytest.approx(6.0)
    assert cost_to_reach(FIXED, 0.6) == pytest.approx(2.0)
    assert cost_to_reach(FIXED, 0.575) == pytest.approx(1.5)


def test_cost_to_reach_a_point_exactly_is_its_cost():
    assert cost_to_reach([point(2, 0.6), point(4, 0.8)], 0.8) == pytest.approx(4.0)


def test_cost_to_reach_a_target_above_every_point_is_none():
    assert cost_to_reach([point(2, 0.6), point(4, 0.8)], 0.81) is None
    assert cost_to_reach([], 0.5) is None


def test_cost_to_reach_a_target_below_the_cheapest_point_is_its_cost():
    assert cost_to_reach([point(2, 0.6), point(4, 0.8)], 0.3) == pytest.approx(2.0)


def test_cost_to_reach_tolerates_floating_point_noise_at_the_top():
    points = [point(2, 0.6), point(4, 0.8)]
    assert cost_to_reach(points, 0.8 + 1e-12) == pytest.approx(4.0)
    assert cost_to_reach(points, 0.8 + 1e-6) is None


def test_cost_to_reach_ignores_a_dominated_point_that_reaches_the_target():
    # (5, 0.9) reaches 0.85 but (3, 0.95) is cheaper and dominates it.
    points = [point(1, 0.5), point(5, 0.9), point(3, 0.95)]
    assert cost_to_reach(points, 0.85) == pytest.approx(1 + 2 * 0.35 / 0.45)


# --- gap_closed_curve ---------------------------------------------------------------------

def test_the_oracle_closes_the_whole_gap_and_fixed_n_none_of_it():
    oracle_curve = gap_closed_curve(ORACLE, FIXED, ORACLE)
    fixed_curve = gap_closed_curve(FIXED, FIXED, ORACLE)
    assert [c for c, _ in oracle_curve] == COSTS
    assert all(g == pytest.approx(1.0) for _, g in oracle_curve)
    assert all(g == pytest.approx(0.0) for _, g in fixed_curve)


def test_a_policy_halfway_between_closes_half_the_gap():
    halfway = [point(c, 0.5 * (0.5 + 0.05 * c) + 0.5 * (0.7 + 0.03 * c)) for c in (1.5, 3, 7)]
    curve = gap_closed_curve(halfway, FIXED, ORACLE)
    assert [c for c, _ in curve] == [1.5, 3, 7]
    assert all(g == pytest.approx(0.5) for _, g in curve)


def test_gap_closed_skips_points_outside_the_curves_and_where_the_gap_vanishes():
    policy = [point(0.5, 0.6), point(3, 0.8), point(9, 0.99)]
    curve = gap_closed_curve(policy, FIXED, ORACLE)
    assert [c for c, _ in curve] == [3]
    assert curve[0][1] == pytest.approx((0.8 - 0.65) / (0.79 - 0.65))
    # Where the oracle's curve touches fixed-N's, nothing is reported.
    assert gap_closed_curve(policy, FIXED, FIXED) == []


def test_a_policy_below_fixed_n_closes_a_negative_share():
    (cost, gap), = gap_closed_curve([point(2, 0.5)], FIXED, ORACLE)
    assert cost == 2
    assert gap == pytest.approx((0.5 - 0.6) / (0.76 - 0.6))


# --- headline -----------------------------------------------------------------------------

def test_headline_savings_and_costs_to_reach():
    policies = {
        "fixed-n": FIXED,                                       # reaches 0.8 at 6
        "adaptive-consistency": line(0.6, 0.0667, COSTS, "adaptive-consistency"),
        "learned": [point(1, 0.6), point(2, 0.8), point(4, 0.85)],  # reaches 0.8 at 2
        "weak": [point(1, 0.5), point(8, 0.7)],                 # never reaches 0.8
        "query-oracle": ORACLE,
    }
    result = headline(policies, target_accuracy=0.8)
    assert result.target_accuracy == 0.8
    assert set(result.cost_to_reach) == set(policies)
    assert result.cost_to_reach["fixed-n"] == pytest.approx(6.0)
    assert result.cost_to_reach["learned"] == pytest.approx(2.0)
    assert result.cost_to_reach["weak"] is None
    assert result.savings_vs_fixed_n["learned"] == pytest.approx(3.0)
    assert result.savings_vs_fixed_n["fixed-n"] == pytest.approx(1.0)
    assert result.savings_vs_fixed_n["weak"] is None
    ac_cost = 0.2 / 0.0667
    assert result.cost_to_reach["adaptive-consistency"] == pytest.approx(ac_cost)
    assert result.savings_vs_adaptive_consistency["learned"] == pytest.approx(ac_cost / 2)
    assert result.gap_closed["fixed-n"] == pytest.approx(0.0)
    assert result.gap_closed["query-oracle"] == pytest.approx(1.0)


def test_headline_gap_closed_is_the_median_over_the_front():
    # Gaps at costs 2, 4 and 6: 0.2, 0.9 and 0.4 -> median 0.4.
    def at(cost: float, gap: float) -> PolicyPoint:
        low, high = 0.5 + 0.05 * cost, 0.7 + 0.03 * cost
        return point(cost, low + gap * (high - low))

    policies = {"fixed-n": FIXED, "query-oracle": ORACLE,
                "p": [at(2, 0.2), at(4, 0.9), at(6, 0.4)]}
    assert [g for _, g in gap_closed_curve(policies["p"], FIXED, ORACLE)] == pytest.approx(
        [0.2, 0.9, 0.4])
    assert headline(policies, target_accuracy=0.8).gap_closed["p"] == pytest.approx(0.4)


def test_headline_without_baselines_gives_none():
    result = headline({"learned": [point(1, 0.6), point(2, 0.8)]}, target_accuracy=0.7)
    assert result.cost_to_reach == {"learned": pytest.approx(1.5)}
    assert result.savings_vs_fixed_n == {"learned": None}
    assert result.savings_vs_adaptive_consistency == {"learned": None}
    assert result.gap_closed == {"learned": None}


def test_headline_uses_the_fixed_n_name_it_is_given():
    policies = {"fixed-n/strong": FIXED, "query-oracle": ORACLE,
                "learned": [point(1, 0.6), point(2, 0.8)]}
    result = headline(policies, target_accuracy=0.8, fixed_n="fixed-n/strong")
    assert result.savings_vs_fixed_n["learned"] == pytest.approx(3.0)
    assert result.gap_closed["fixed-n/strong"] == pytest.approx(0.0)
