"""Pareto fronts over a policy's knob sweep, and the headline numbers read off them.

Every function here takes :class:`~allocator.training.evaluation.results.PolicyPoint` lists (one
policy's points along its knob sweep) and is pure: no randomness, no I/O.
:func:`pareto_front` states the conventions (front, interpolation, range) and
:func:`headline` defines the numbers measured against the envelope of the baselines.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from allocator.training.evaluation.results import Headline, PolicyPoint

__all__ = [
    "accuracy_at_cost",
    "cheapest_reaching",
    "cost_to_reach",
    "envelope_points",
    "gap_closed_curve",
    "headline",
    "pareto_front",
    "reaches",
    "setting_text",
]

#: Accuracies within this distance count as equal when reaching a target.
TOLERANCE = 1e-9


def pareto_front(points: Sequence[PolicyPoint]) -> list[PolicyPoint]:
    """The non-dominated points (lower mean cost, higher accuracy), sorted by mean cost.

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
        point or above the dearest one (see :func:`pareto_front`), or there are no points.
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
    envelope: Sequence[PolicyPoint],
    query_oracle: Sequence[PolicyPoint],
    *,
    min_gap: float = TOLERANCE,
) -> list[tuple[float, float]]:
    """The share of the envelope-to-oracle gap a policy closes, at each of its front points.

    Args:
        points: the policy's points.
        envelope: the deployable baselines' points (their front is the envelope).
        query_oracle: the query-oracle's points.
        min_gap: points where the oracle beats the envelope by less than this are skipped
            (the ratio is meaningless there).

    Returns:
        ``(mean cost, gap closed)`` per front point of the policy, by cost, skipping points
        outside either curve's range or where the gap is below ``min_gap``.
    """
    curve = []
    for point in pareto_front(points):
        baseline = accuracy_at_cost(envelope, point.mean_cost)
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


#: Policies that are never baselines: the learned policy and the oracles.
NOT_BASELINES = ("learned", "oracle", "query-oracle")


def envelope_points(points_by_policy: Mapping[str, Sequence[PolicyPoint]],
                    exclude: Sequence[str] = NOT_BASELINES) -> list[PolicyPoint]:
    """Every deployable baseline point: the points the envelope is the front of."""
    return [point for name, points in points_by_policy.items() if name not in exclude
            for point in points if point.deployable]


def reaches(point: PolicyPoint, target_accuracy: float,
            reference_accuracy: float | None = None, *, tolerance: float = TOLERANCE) -> bool:
    """Whether a point reaches the target accuracy, non-inferior at 95%.

    With a paired interval against the reference (``point.difference_ci``) and the
    reference's accuracy: the interval's upper end is at least ``target -
    reference_accuracy`` (the point's accuracy could be the target's, given the paired
    uncertainty). Otherwise its accuracy must be at least the target.
    """
    if point.difference_ci is not None and reference_accuracy is not None:
        return point.difference_ci[1] >= target_accuracy - reference_accuracy - tolerance
    return point.accuracy >= target_accuracy - tolerance


def cheapest_reaching(points: Sequence[PolicyPoint], target_accuracy: float,
                      reference_accuracy: float | None = None) -> PolicyPoint | None:
    """The cheapest point that reaches the target (:func:`reaches`), or None."""
    reaching = [p for p in points if math.isfinite(p.mean_cost)
                and reaches(p, target_accuracy, reference_accuracy)]
    return min(reaching, key=lambda p: (p.mean_cost, -p.accuracy), default=None)


def _knob_text(point: PolicyPoint) -> str:
    """``knob=value`` (``default`` without a knob)."""
    if point.knob is None:
        return "default"
    value = point.value.item() if isinstance(point.value, np.generic) else point.value
    return f"{point.knob}={format(value, '.4g') if isinstance(value, float) else value}"


def setting_text(point: PolicyPoint) -> str:
    """A point's setting as compact text: its description (which names the arm, for a
    policy that has one), else ``knob=value`` (``default`` without a knob)."""
    return point.description or _knob_text(point)


def headline(
    points_by_policy: Mapping[str, Sequence[PolicyPoint]],
    *,
    target_accuracy: float | None = None,
    reference_accuracy: float | None = None,
    query_oracle: str = "query-oracle",
    learned: str = "learned",
) -> Headline:
    """The headline numbers of an evaluation.

    The numbers are measured against the **envelope**: the Pareto front of every deployable
    baseline point (every policy but ``learned`` and the oracles) on the same held-out
    queries and orders (guide section 7):

    - ``target_accuracy``: by default the envelope's top, the best accuracy any deployable
      baseline reaches.
    - **Reaching** the target: a point reaches it when it is *non-inferior at 95%*: the upper
      end of its paired difference with the reference (AC(0.95) by default, same queries and
      orders) is at least ``target - accuracy(reference)`` (:func:`reaches`). Without paired
      intervals, its accuracy must be at least the target.
    - ``cost_to_reach``: per policy, the smallest mean cost of its points that reach the
      target; ``None`` if none does.
    - ``best_baseline``: the cheapest deployable baseline point that reaches the target
      (``policy``, ``setting``, ``cost``).
    - ``savings_vs_best_baseline``: that cost divided by the policy's cost to reach (2.0 =
      the policy reaches the target at half the cost of the best baseline).
    - ``gap_closed``: for every front point ``(c, a)`` of the policy where the envelope and
      the query-oracle are both defined at ``c`` and the oracle is above the envelope by at
      least ``min_gap``: ``(a - envelope(c)) / (oracle(c) - envelope(c))``; the median over
      those points (0 = no better than the best baseline at that cost, 1 = the query-oracle).

    Policies missing from ``points_by_policy`` (an evaluation without the baseline or the
    oracle) give ``None`` in every number that needs them.

    Args:
        points_by_policy: per policy name, its points along the knob sweep.
        target_accuracy: the accuracy to reach; default the envelope's top.
        reference_accuracy: the accuracy of the reference the points' paired intervals
            are against (None: reaching is judged on accuracy alone).
        query_oracle: the name of the query-oracle.
        learned: the name of the policy that is not a baseline.

    Returns:
        The :class:`~allocator.training.evaluation.results.Headline`, with an entry per policy in
        every dict.
    """
    baselines = envelope_points(points_by_policy,
                                exclude=(*NOT_BASELINES, learned, query_oracle))
    envelope = pareto_front(baselines)
    given = target_accuracy is not None
    if target_accuracy is None:
        target_accuracy = max((p.accuracy for p in envelope), default=float("nan"))
    cheapest = {name: cheapest_reaching(points, target_accuracy, reference_accuracy)
                for name, points in points_by_policy.items()}
    reach = {name: None if p is None else p.mean_cost for name, p in cheapest.items()}
    best = cheapest_reaching(baselines, target_accuracy, reference_accuracy)
    best_baseline = None if best is None else {
        "policy": best.policy, "setting": setting_text(best), "knob": _knob_text(best),
        "cost": best.mean_cost, "accuracy": best.accuracy}
    gap_closed: dict[str, float | None] = {}
    for name, points in points_by_policy.items():
        values = []
        if envelope and query_oracle in points_by_policy:
            values = [gap for _, gap in gap_closed_curve(
                points, baselines, points_by_policy[query_oracle])]
        gap_closed[name] = float(np.median(values)) if values else None
    return Headline(
        target_accuracy=float(target_accuracy),
        target_source="given" if given else "envelope top",
        reference_accuracy=reference_accuracy,
        cost_to_reach=reach,
        best_baseline=best_baseline,
        savings_vs_best_baseline={
            name: _ratio(None if best is None else best.mean_cost, cost)
            for name, cost in reach.items()},
        gap_closed=gap_closed,
        envelope=[{"policy": p.policy, "setting": setting_text(p), "cost": p.mean_cost,
                   "accuracy": p.accuracy} for p in envelope],
    )
