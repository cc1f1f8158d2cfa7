"""Pareto fronts over a policy's knob sweep, and the headline numbers read off them.

Every function here takes :class:`~training.evaluation.results.PolicyPoint` lists (one
policy's points along its knob sweep) and is pure: no randomness, no I/O.

Conventions:

- **Front.** A point is *dominated* when another point of the same policy costs no more
  and is at least as accurate, and is strictly better in one of the two. The front is the
  non-dominated points, sorted by mean cost; along it cost and accuracy both increase
  strictly. Points with a NaN accuracy or cost are ignored.
- **Interpolation.** Between two consecutive front points the curve is the straight line
  joining them. It is attainable: a deployment that runs the cheaper setting on a share
  ``1 - t`` of queries and the dearer one on a share ``t`` (chosen at random) has, in
  expectation, exactly the interpolated mean cost and accuracy.
- **Range.** A curve is defined on ``[cheapest front cost, dearest front cost]`` only.
  Below its cheapest point the policy has no setting and no mixture that spends less
  (spending nothing returns no answer), so :func:`accuracy_at_cost` returns ``None``
  there rather than extrapolating towards an invented zero-cost accuracy. Above its
  dearest point it returns ``None`` too: the sweep does not say what more budget buys,
  and a caller comparing curves should not credit a policy with accuracy it was never
  measured at.

Headline numbers (:func:`headline`):

- ``cost_to_reach``: the smallest mean cost at which the policy's front reaches the target
  accuracy (majority-of-all), interpolated between the two front points around the
  target; ``None`` if no point reaches it. When the cheapest front point already reaches
  it, that point's cost (no downward extrapolation).
- ``savings_vs_fixed_n`` / ``savings_vs_adaptive_consistency``: the baseline's cost to
  reach divided by the policy's (2.0 = the policy reaches the target at half the cost);
  ``None`` where either cost is ``None`` (or the policy's is not positive).
- ``gap_closed``: for every point ``(c, a)`` of the policy's front, where the fixed-N and
  query-oracle curves are both defined at ``c`` and the oracle is above fixed-N by at
  least ``min_gap``: ``(a - fixedN(c)) / (oracle(c) - fixedN(c))``, with both curves
  interpolated at ``c`` (:func:`gap_closed_curve`); the headline is the median over those
  points, ``None`` where there are none. 0 = no better than fixed-N at the same cost,
  1 = as good as knowing each query's answer pool in hindsight. Values outside ``[0, 1]``
  are kept (a policy below fixed-N is negative). The median, not the mean, so that one
  point where the gap is tiny (and the ratio explodes) does not dominate.
- **Best fixed-N.** ``fixed_n`` names the fixed-N curve. With several arms, evaluate each
  arm's fixed-N under its own name and pass the name of the best one (the one whose front
  lies highest over the costs of interest); the headline does not choose it.

Policies missing from ``points_by_policy`` (an evaluation without the baseline or the
oracle) give ``None`` in every number that needs them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from training.evaluation.results import Headline, PolicyPoint

__all__ = [
    "accuracy_at_cost",
    "cost_to_reach",
    "gap_closed_curve",
    "headline",
    "pareto_front",
]

#: Accuracies within this distance count as equal when reaching a target.
TOLERANCE = 1e-9


def pareto_front(points: Sequence[PolicyPoint]) -> list[PolicyPoint]:
    """The non-dominated points (lower mean cost, higher accuracy), sorted by mean cost.

    Of several points with the same cost and accuracy, the first one given is kept.

    Args:
        points: one policy's points (any order).

    Returns:
        The front: strictly increasing in both mean cost and accuracy.
    """
    finite = [p for p in points if math.isfinite(p.mean_cost) and math.isfinite(p.accuracy)]
    # Cheapest first; at equal cost the most accurate first, so that it dominates the rest.
    ordered = sorted(finite, key=lambda p: (p.mean_cost, -p.accuracy))
    front: list[PolicyPoint] = []
    for point in ordered:
        if not front or point.accuracy > front[-1].accuracy:
            front.append(point)
    return front


def _curve(points: Sequence[PolicyPoint]) -> tuple[np.ndarray, np.ndarray]:
    """The front as two arrays, costs and accuracies."""
    front = pareto_front(points)
    costs = np.array([p.mean_cost for p in front], dtype=float)
    accuracies = np.array([p.accuracy for p in front], dtype=float)
    return costs, accuracies


def accuracy_at_cost(points: Sequence[PolicyPoint], cost: float) -> float | None:
    """The policy's accuracy at a mean cost, linearly interpolated along its front.

    Args:
        points: one policy's points.
        cost: the mean cost per query.

    Returns:
        The interpolated accuracy; ``None`` when ``cost`` lies below the cheapest front
        point or above the dearest one (see the module docstring), or there are no points.
    """
    costs, accuracies = _curve(points)
    if costs.size == 0 or not math.isfinite(cost) or cost < costs[0] or cost > costs[-1]:
        return None
    return float(np.interp(cost, costs, accuracies))


def cost_to_reach(
    points: Sequence[PolicyPoint], target_accuracy: float, *, tolerance: float = TOLERANCE
) -> float | None:
    """The smallest mean cost at which the policy's front reaches an accuracy.

    Args:
        points: one policy's points.
        target_accuracy: the accuracy to reach.
        tolerance: accuracies within this of the target count as reaching it (fixed-N at
            the whole pool equals majority-of-all up to floating-point summation).

    Returns:
        The cost, linearly interpolated between the last front point below the target and
        the first one at or above it; the cheapest point's cost when it already reaches
        the target; ``None`` when no point does.
    """
    costs, accuracies = _curve(points)
    reached = np.flatnonzero(accuracies >= target_accuracy - tolerance)
    if reached.size == 0:
        return None
    i = int(reached[0])
    if i == 0:
        return float(costs[0])
    share = (target_accuracy - accuracies[i - 1]) / (accuracies[i] - accuracies[i - 1])
    share = min(max(share, 0.0), 1.0)
    return float(costs[i - 1] + share * (costs[i] - costs[i - 1]))


def gap_closed_curve(
    points: Sequence[PolicyPoint],
    fixed_n: Sequence[PolicyPoint],
    query_oracle: Sequence[PolicyPoint],
    *,
    min_gap: float = TOLERANCE,
) -> list[tuple[float, float]]:
    """The share of the fixed-N-to-oracle gap a policy closes, at each of its front points.

    Args:
        points: the policy's points.
        fixed_n: the (best) fixed-N baseline's points.
        query_oracle: the query-oracle's points.
        min_gap: points where the oracle beats fixed-N by less than this are skipped (the
            ratio is meaningless there).

    Returns:
        ``(mean cost, gap closed)`` per front point of the policy, by cost, skipping points
        outside either curve's range or where the gap is below ``min_gap``.
    """
    curve = []
    for point in pareto_front(points):
        baseline = accuracy_at_cost(fixed_n, point.mean_cost)
        oracle = accuracy_at_cost(query_oracle, point.mean_cost)
        if baseline is None or oracle is None or oracle - baseline < min_gap:
            continue
        curve.append((point.mean_cost, (point.accuracy - baseline) / (oracle - baseline)))
    return curve


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None where either is None or the division is not
    meaningful (non-positive denominator)."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def headline(
    points_by_policy: Mapping[str, Sequence[PolicyPoint]],
    *,
    target_accuracy: float,
    fixed_n: str = "fixed-n",
    adaptive: str = "adaptive-consistency",
    query_oracle: str = "query-oracle",
) -> Headline:
    """The headline numbers of an evaluation (definitions in the module docstring).

    Args:
        points_by_policy: per policy name, its points along the knob sweep.
        target_accuracy: the accuracy to reach (majority-of-all on the evaluation queries).
        fixed_n: the name of the (best) fixed-N policy.
        adaptive: the name of the Adaptive-Consistency policy.
        query_oracle: the name of the query-oracle.

    Returns:
        The :class:`~training.evaluation.results.Headline`, with an entry per policy in
        every dict.
    """
    reach = {name: cost_to_reach(points, target_accuracy)
             for name, points in points_by_policy.items()}
    fixed_reach = reach.get(fixed_n)
    adaptive_reach = reach.get(adaptive)
    gap_closed: dict[str, float | None] = {}
    for name, points in points_by_policy.items():
        values = []
        if fixed_n in points_by_policy and query_oracle in points_by_policy:
            values = [gap for _, gap in gap_closed_curve(
                points, points_by_policy[fixed_n], points_by_policy[query_oracle])]
        gap_closed[name] = float(np.median(values)) if values else None
    return Headline(
        target_accuracy=float(target_accuracy),
        cost_to_reach=reach,
        savings_vs_fixed_n={name: _ratio(fixed_reach, cost) for name, cost in reach.items()},
        savings_vs_adaptive_consistency={
            name: _ratio(adaptive_reach, cost) for name, cost in reach.items()},
        gap_closed=gap_closed,
    )
