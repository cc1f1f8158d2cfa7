"""The allocation maths behind the budget oracle's up-front and batch budgets.

A two-answer model of majority voting (:func:`majority_accuracy`), the least concave
majorant of its accuracy curves (:func:`concave_majorant_gains`) and the greedy split of
a budget by marginal gain (:func:`greedy_allocation`), after Damani et al. (2024),
"Learning How Hard to Think: Input-Adaptive Allocation of LM Computation".
:func:`best_budget` and :func:`batch_allocation` are the computations behind
:meth:`~allocator.oracle.BudgetOracle.budget` and
:meth:`~allocator.oracle.BudgetOracle.allocate`, on arrays already checked.

Pure numpy: no I/O, no bundle, no policy.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import numpy as np

__all__ = [
    "batch_allocation",
    "best_budget",
    "concave_majorant_gains",
    "greedy_allocation",
    "majority_accuracy",
    "majority_gains",
]


def majority_accuracy(p: np.ndarray | float, n_max: int) -> np.ndarray:
    """Majority-vote accuracy after n samples, n = 0..n_max, in a two-answer model.

    Each sample is correct with probability ``p``, independently; every wrong sample
    gives the *same* wrong answer (the pessimistic case of one dominant distractor). With
    ``X ~ Binomial(n, p)`` correct votes, the majority is right when ``X > n - X`` and a
    tie is broken by a fair coin: ``acc(n) = P(X > n/2) + P(X = n/2) / 2``; ``acc(0) = 0``
    (nothing to answer with). Then ``acc(2k) = acc(2k - 1)``, and for ``p > 1/2`` the
    odd-n accuracies rise to 1 with shrinking steps; for ``p < 1/2`` more samples hurt.

    Computed in O(n_max) per ``p`` by the recurrence of the Condorcet jury theorem,
    ``acc(2k + 3) = acc(2k + 1) + C(2k + 1, k) (pq)^(k + 1) (p - q)`` with ``q = 1 - p``
    (:func:`_odd_increments`), not by summing binomial tails (O(n_max^2)).

    Args:
        p: per-sample accuracies, any shape.
        n_max: the largest n.

    Returns:
        Array of shape ``p.shape + (n_max + 1,)``.
    """
    p = np.asarray(p, dtype=np.float64)
    out = np.zeros((*p.shape, n_max + 1))
    if n_max < 1:
        return out
    odd_n = np.arange(1, n_max + 1, 2)  # 1, 3, 5, ...
    increments = _odd_increments(p, len(odd_n) - 1)
    odd = p[..., None] + np.concatenate(
        [np.zeros((*p.shape, 1)), np.cumsum(increments, axis=-1)], axis=-1)
    out[..., odd_n] = odd
    even_n = np.arange(2, n_max + 1, 2)
    out[..., even_n] = out[..., even_n - 1]
    return out


def _odd_increments(p: np.ndarray, count: int) -> np.ndarray:
    """``acc(2k + 3) - acc(2k + 1)``, k = 0..count-1, shape ``p.shape + (count,)``.

    The k-th is ``C(2k + 1, k) (pq)^(k + 1) (p - q)``; the factor ``C(2k + 1, k)
    (pq)^(k + 1)`` is a running product of ``(2k + 3)(2k + 2) / ((k + 2)(k + 1)) * pq``
    (each below 1, since ``pq <= 1/4``): it shrinks smoothly and underflows to 0, never
    overflows.
    """
    p = np.asarray(p, dtype=np.float64)
    pq = (p * (1.0 - p))[..., None]
    k = np.arange(count, dtype=np.float64)
    ratio = np.empty(count)
    ratio[:1] = 1.0  # C(1, 0) = 1
    ratio[1:] = (2 * k[1:] + 1) * (2 * k[1:]) / ((k[1:] + 1) * k[1:])
    return np.cumprod(ratio * pq, axis=-1) * (2.0 * p - 1.0)[..., None]


def majority_gains(p: np.ndarray, n_max: int) -> np.ndarray:
    """The positive gains of the concave majorant of each ``p``'s majority curve.

    Equal (up to rounding) to ``np.maximum(concave_majorant_gains(majority_accuracy(p,
    n_max)), 0)``, in O(n_max) per query instead of O(n_max^2): for ``p > 1/2`` the odd-n
    accuracies are concave (their increments shrink), so the majorant's vertices are
    0, 1, 3, 5, ... (and ``n_max``): the first unit gains ``p``, units ``2k`` and
    ``2k + 1`` gain half the odd increment between ``2k - 1`` and ``2k + 1``, and an
    even last unit gains 0. For ``p <= 1/2`` only the first unit gains (``p``): later
    samples do not raise the majority's accuracy.

    Args:
        p: per-query accuracy of one sample, shape (Q,).
        n_max: units per query (>= 1).

    Returns:
        Shape (Q, n_max), non-negative and non-increasing along each row.
    """
    p = np.asarray(p, dtype=np.float64)
    gains = np.zeros((p.shape[0], n_max))
    gains[:, 0] = p
    pairs = (n_max - 1) // 2  # the pairs of units (2k, 2k + 1) within n_max
    if pairs:
        half = 0.5 * np.maximum(_odd_increments(p, pairs), 0.0)
        gains[:, 1 : 2 * pairs + 1] = np.repeat(half, 2, axis=1)
    return np.minimum.accumulate(gains, axis=1)


def concave_majorant_gains(values: np.ndarray) -> np.ndarray:
    """Marginal gains of the least concave majorant of each row of ``values``.

    Row ``q`` holds a curve ``v(0..N)``; its least concave majorant (upper concave hull)
    is linear between hull vertices, so the gain of the n-th unit, ``h(n) - h(n - 1)``,
    is the slope of the hull segment over it. The gains of a row are non-increasing
    (enforced against rounding). ``values[:, 0] + gains[:, :n].sum(axis=1)`` is ``h(n)``.
    For the majority curves the hull interpolates between odd n; an even n's hull value
    is what randomising between n - 1 and n + 1 samples gets in expectation.

    Args:
        values: shape (Q, N + 1).

    Returns:
        Shape (Q, N).
    """
    values = np.asarray(values, dtype=np.float64)
    gains = np.zeros((values.shape[0], values.shape[1] - 1))
    for row, curve in enumerate(values):
        hull: list[int] = []
        for x in range(len(curve)):
            while len(hull) >= 2 and _not_below(hull[-2], hull[-1], x, curve):
                hull.pop()
            hull.append(x)
        for left, right in itertools.pairwise(hull):
            gains[row, left:right] = (curve[right] - curve[left]) / (right - left)
        gains[row] = np.minimum.accumulate(gains[row])
    return gains


def _not_below(a: int, b: int, c: int, curve: np.ndarray) -> bool:
    """Whether point b lies on or below the chord from a to c (so it is not a vertex)."""
    return (curve[b] - curve[a]) * (c - a) <= (curve[c] - curve[a]) * (b - a)


def greedy_allocation(gains: np.ndarray, units: int) -> np.ndarray:
    """Give ``units`` units one at a time to the row whose next unit gains most.

    Each row's gains must be non-increasing (as :func:`concave_majorant_gains` makes
    them); only positive gains (> 1e-12) are taken, so fewer than ``units`` may be
    spent. The result is that of taking the ``units`` largest positive gains, ties going
    to the smaller n, then the earlier row, which takes a prefix of every row; it is
    computed in linear time (a selection of the threshold gain, then the ties at it in
    that order), not by sorting every gain. For concave curves this is an optimal
    allocation of ``sum_q h_q(n_q)`` subject to ``sum_q n_q <= units``.

    Args:
        gains: shape (Q, N), non-increasing along each row.
        units: how many units may be given in all.

    Returns:
        int64 units per row, shape (Q,).
    """
    gains = np.asarray(gains, dtype=np.float64)
    positive = gains > 1e-12
    budget = max(int(units), 0)
    if int(positive.sum()) <= budget:
        return positive.sum(axis=1).astype(np.int64)
    if budget == 0:
        return np.zeros(gains.shape[0], dtype=np.int64)
    values = gains[positive]
    threshold = np.partition(values, len(values) - budget)[len(values) - budget]
    counts = (gains > threshold).sum(axis=1)  # a prefix of each row (rows non-increasing)
    left = budget - int(counts.sum())
    ties_row, ties_step = np.nonzero(gains == threshold)
    order = np.lexsort((ties_row, ties_step))[:left]  # smaller n first, then earlier row
    return (counts + np.bincount(ties_row[order], minlength=gains.shape[0])).astype(np.int64)


def best_budget(p: np.ndarray, unit_costs: np.ndarray, lam: float,
                n_max: int | np.ndarray, served: np.ndarray) -> tuple[int, int]:
    """The arm and number of samples that maximise the majority-vote reward.

    The ``(a, n)``, ``1 <= n <= n_max[a]``, ``a`` served, maximising
    ``majority_accuracy(p_a, n) - lam * n * unit_costs[a]``; ties go to the cheaper
    choice, then the earlier arm.

    Args:
        p: per-arm accuracy of one sample, shape (A,).
        unit_costs: cost of one sample per arm, in the units ``lam`` prices, shape (A,).
        lam: the price of one cost unit, in units of accuracy.
        n_max: the largest n considered: one for every arm, or per arm, shape (A,)
            (an arm capped at 0 is never chosen).
        served: bool per arm, shape (A,): the arms that may be chosen (at least one
            served arm with a cap >= 1).

    Returns:
        ``(arm index, n)``.
    """
    caps = np.broadcast_to(np.asarray(n_max, dtype=np.int64), p.shape)
    n = np.arange(int(caps.max()) + 1)
    spend = n[None, :] * unit_costs[:, None]
    value = majority_accuracy(p, int(caps.max())) - lam * spend
    value[:, 0] = -np.inf
    value[n[None, :] > caps[:, None]] = -np.inf
    value[~served] = -np.inf
    best = value >= value.max() - 1e-12
    # Cheapest among the best, then the earliest arm (row-major order).
    arm, count = np.unravel_index(np.argmin(np.where(best, spend, np.inf)), value.shape)
    return int(arm), int(count)


def batch_allocation(priors: np.ndarray, arm_costs: np.ndarray, total_budget: float,
                     n_max: int | np.ndarray, candidates: Iterable[int]
                     ) -> tuple[int, np.ndarray]:
    """Split a total budget across a batch, all queries sampling one arm.

    For each candidate arm, each query's majority curve (:func:`majority_accuracy` of
    its prior) is made concave (:func:`majority_gains`, the closed form of
    :func:`concave_majorant_gains` for these curves) and the samples the budget buys go
    by marginal gain (:func:`greedy_allocation`): O(Q * n_max) time and memory per arm.
    The arm whose allocation predicts the most correct answers wins (the earlier arm on
    ties).

    Args:
        priors: per-query, per-arm accuracy of one sample, shape (Q, A).
        arm_costs: cost of one sample per arm, in the units of ``total_budget``, > 0.
        total_budget: the batch's total cost (>= 0); never exceeded.
        n_max: most samples per query (>= 1): one for every arm, or per arm, shape (A,)
            (arms capped at 0 are skipped).
        candidates: the arm indices to consider (at least one with a cap >= 1).

    Returns:
        ``(arm index, samples per query)``, the counts int64 of shape (Q,).
    """
    best: tuple[float, int, np.ndarray] | None = None
    caps = np.broadcast_to(np.asarray(n_max, dtype=np.int64), arm_costs.shape)
    for a in candidates:
        cap = int(caps[a])
        if cap < 1:
            continue
        gains = majority_gains(priors[:, a], cap)
        units = int(total_budget // arm_costs[a])
        while units > 0 and units * arm_costs[a] > total_budget:
            units -= 1  # floating point: never exceed the total
        counts = greedy_allocation(gains, units)
        value = float(gains[np.arange(cap)[None, :] < counts[:, None]].sum())
        if best is None or value > best[0] + 1e-12:
            best = (value, a, counts)
    assert best is not None
    _, chosen, counts = best
    return chosen, counts
