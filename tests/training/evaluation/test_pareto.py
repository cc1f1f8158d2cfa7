"""Pareto fronts and headline numbers on constructed points with closed-form answers."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from allocator.training.evaluation.pareto import (
    accuracy_at_cost,
    cost_to_reach,
    gap_closed_curve,
    headline,
    pareto_front,
    reaches,
)
from allocator.training.evaluation.results import PolicyPoint


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

def test_headline_against_the_envelope():
    policies = {
        "fixed-n": FIXED,                                       # 0.55 .. 0.90
        "adaptive-consistency": [point(1, 0.7, "adaptive-consistency"),
                                 point(3, 0.88, "adaptive-consistency")],
        "learned": [point(1, 0.6), point(2, 0.9), point(4, 0.95)],
        "weak": [point(1, 0.5), point(8, 0.7)],                 # never reaches the top
        "query-oracle": [point(1, 0.97, "query-oracle"), point(2, 0.98, "query-oracle"),
                         point(8, 0.99, "query-oracle")],
    }
    result = headline(policies)
    # The target is the envelope's top: fixed-N's 0.90 at cost 8 (the learned policy and
    # the oracle are not baselines).
    assert result.target_accuracy == pytest.approx(0.9)
    assert result.target_source == "envelope top"
    assert result.best_baseline["policy"] == "fixed-n"
    assert result.best_baseline["cost"] == pytest.approx(8.0)
    assert result.cost_to_reach["learned"] == pytest.approx(2.0)
    assert result.cost_to_reach["weak"] is None
    assert result.savings_vs_best_baseline["learned"] == pytest.approx(4.0)
    assert result.savings_vs_best_baseline["fixed-n"] == pytest.approx(1.0)
    assert result.savings_vs_best_baseline["weak"] is None
    # The envelope: AC at cost 1 (0.70), AC at 3 (0.88) and fixed-N at 8 (0.90).
    assert [e["cost"] for e in result.envelope] == pytest.approx([1.0, 3.0, 8.0])
    assert [e["accuracy"] for e in result.envelope] == pytest.approx([0.7, 0.88, 0.9])
    # Gap closed from the envelope, at the learned front's costs 1, 2 and 4 (envelope
    # 0.70, 0.79 and 0.884; oracle 0.97, 0.98, 0.98 + 0.01 / 3): the median of three.
    oracle_4 = 0.98 + 0.01 / 3
    assert result.gap_closed["learned"] == pytest.approx(np.median(
        [(0.6 - 0.7) / 0.27, (0.9 - 0.79) / 0.19, (0.95 - 0.884) / (oracle_4 - 0.884)]))
    assert result.gap_closed["adaptive-consistency"] == pytest.approx(0.0)


def test_reaching_is_non_inferior_at_95_percent_on_the_paired_difference():
    # Reference accuracy 0.8; target 0.9: a point reaches it when the upper end of its
    # paired difference is >= 0.1.
    near = replace(point(2, 0.87), difference=0.07, difference_ci=(0.02, 0.12))
    short = replace(point(1, 0.86), difference=0.06, difference_ci=(0.03, 0.09))
    assert reaches(near, 0.9, 0.8) and not reaches(short, 0.9, 0.8)
    assert not reaches(near, 0.9)  # without the reference: accuracy alone
    result = headline({"fixed-n": [short, near]}, target_accuracy=0.9, reference_accuracy=0.8)
    assert result.best_baseline["cost"] == 2.0 and result.target_source == "given"


def test_headline_gap_closed_is_the_median_over_the_front():
    # Gaps at costs 2, 4 and 6: 0.2, 0.9 and 0.4 -> median 0.4.
    def at(cost: float, gap: float) -> PolicyPoint:
        low, high = 0.5 + 0.05 * cost, 0.7 + 0.03 * cost
        return point(cost, low + gap * (high - low))

    policies = {"fixed-n": FIXED, "query-oracle": ORACLE,
                "learned": [at(2, 0.2), at(4, 0.9), at(6, 0.4)]}
    assert [g for _, g in gap_closed_curve(policies["learned"], FIXED, ORACLE)
            ] == pytest.approx([0.2, 0.9, 0.4])
    assert headline(policies, target_accuracy=0.8).gap_closed["learned"] == pytest.approx(0.4)


def test_headline_without_baselines_gives_none():
    result = headline({"learned": [point(1, 0.6), point(2, 0.8)]}, target_accuracy=0.7)
    assert result.cost_to_reach == {"learned": 2.0}
    assert result.best_baseline is None
    assert result.savings_vs_best_baseline == {"learned": None}
    assert result.gap_closed == {"learned": None}
