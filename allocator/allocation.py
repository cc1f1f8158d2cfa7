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
]


def majority_accuracy(p: np.ndarray | float, n_max: int) -> np.ndarray:
    """Majority-vote accuracy after n samples, n = 0..n_max, in a two-answer model.

    Each sample is correct with probability ``p``, independently; every wrong sample
    gives the *same* wrong answer (the pessimistic case of one dominant distractor). With
    ``X ~ Binomial(n, p)`` correct votes, the majority is right when ``X > n - X`` and a
    tie is broken by a fair coin: ``acc(n) = P(X > n/2) + P(X = n/2) / 2``; ``acc(0) = 0``
    (nothing to answer with). Then ``acc(2k) = acc(2k - 1)``, and for ``p > 1/2`` the
    odd-n accuracies rise to 1 with shrinking steps; for ``p < 1/2`` more samples hurt.

    Args:
        p: per-sample accuracies, any shape.
        n_max: the largest n.

    Returns:
        Array of shape ``p.shape + (n_max + 1,)``.
    """
    p = np.asarray(p, dtype=np.float64)
    pmf = np.zeros((*p.shape, n_max + 1))
    pmf[..., 0] = 1.0
    out = np.zeros((*p.shape, n_max + 1))
    q = 1.0 - p
    for n in range(1, n_max + 1):
        # Binomial(n) from Binomial(n - 1): one more sample, right with probability p.
        pmf[..., 1 : n + 1] = pmf[..., 1 : n + 1] * q[..., None] + pmf[..., :n] * p[..., None]
        pmf[..., 0] *= q
        out[..., n] = pmf[..., n // 2 + 1 : n + 1].sum(axis=-1)
        if n % 2 == 0:
            out[..., n] += 0.5 * pmf[..., n // 2]
    return out


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
    them); only positive gains are taken, so fewer than ``units`` may be spent. Computed
    in one sort: the ``units`` largest positive gains, ties going to the smaller n, then
    the earlier row, which takes a prefix of every row. For concave curves this is an
    optimal allocation of ``sum_q h_q(n_q)`` subject to ``sum_q n_q <= units``.

    Args:
        gains: shape (Q, N), non-increasing along each row.
        units: how many units may be given in all.

    Returns:
        int64 units per row, shape (Q,).
    """
    gains = np.asarray(gains, dtype=np.float64)
    rows, steps = np.indices(gains.shape)
    flat = gains.ravel()
    order = np.lexsort((rows.ravel(), steps.ravel(), -flat))
    chosen = order[: max(int(units), 0)]
    chosen = chosen[flat[chosen] > 1e-12]
    return np.bincount(rows.ravel()[chosen], minlength=gains.shape[0]).astype(np.int64)


def best_budget(p: np.ndarray, unit_costs: np.ndarray, lam: float, n_max: int,
                served: np.ndarray) -> tuple[int, int]:
    """The arm and number of samples that maximise the majority-vote reward.

    The ``(a, n)``, ``1 <= n <= n_max``, ``a`` served, maximising
    ``majority_accuracy(p_a, n) - lam * n * unit_costs[a]``; ties go to the cheaper
    choice, then the earlier arm.

    Args:
        p: per-arm accuracy of one sample, shape (A,).
        unit_costs: cost of one sample per arm, in the units ``lam`` prices, shape (A,).
        lam: the price of one cost unit, in units of accuracy.
        n_max: the largest n considered (>= 1).
        served: bool per arm, shape (A,): the arms that may be chosen (at least one).

    Returns:
        ``(arm index, n)``.
    """
    n = np.arange(n_max + 1)
    spend = n[None, :] * unit_costs[:, None]
    value = majority_accuracy(p, n_max) - lam * spend
    value[:, 0] = -np.inf
    value[~served] = -np.inf
    best = value >= value.max() - 1e-12
    # Cheapest among the best, then the earliest arm (row-major order).
    arm, count = np.unravel_index(np.argmin(np.where(best, spend, np.inf)), value.shape)
    return int(arm), int(count)


def batch_allocation(priors: np.ndarray, arm_costs: np.ndarray, total_budget: float,
                     n_max: int, candidates: Iterable[int]) -> tuple[int, np.ndarray]:
    """Split a total budget across a batch, all queries sampling one arm.

    For each candidate arm, each query's majority curve (:func:`majority_accuracy` of
    its prior) is made concave (:func:`concave_majorant_gains`) and the samples the
    budget buys go by marginal gain (:func:`greedy_allocation`). The arm whose
    allocation predicts the most correct answers wins (the earlier arm on ties).

    Args:
        priors: per-query, per-arm accuracy of one sample, shape (Q, A).
        arm_costs: cost of one sample per arm, in the units of ``total_budget``, > 0.
        total_budget: the batch's total cost (>= 0); never exceeded.
        n_max: most samples per query (>= 1).
        candidates: the arm indices to consider (at least one).

    Returns:
        ``(arm index, samples per query)``, the counts int64 of shape (Q,).
    """
    best: tuple[float, int, np.ndarray] | None = None
    for a in candidates:
        curves = majority_accuracy(priors[:, a], n_max)
        gains = concave_majorant_gains(curves)
        units = int(total_budget // arm_costs[a])
        while units > 0 and units * arm_costs[a] > total_budget:
            units -= 1  # floating point: never exceed the total
        counts = greedy_allocation(gains, units)
        value = float(sum(gains[q, :c].sum() for q, c in enumerate(counts)))
        if best is None or value > best[0] + 1e-12:
            best = (value, a, counts)
    assert best is not None
    _, chosen, counts = best
    return chosen, counts
