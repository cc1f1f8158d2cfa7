"""Upper bounds that no deployable policy can beat: hindsight oracles.

Both read the fixed-N curves of every arm (correctness and cost after t samples, on the
evaluator's own seeded orders) and trade accuracy against cost with a price ``lambda``;
sweeping ``lambda`` traces their accuracy/cost fronts, and the front at a given average
cost is the Lagrangian optimum at that budget.

- ``oracle``: knows each order in hindsight: per query *and order*, it picks the arm and
  the number of samples that maximise ``correct - lambda * cost`` in that very order.
- ``query-oracle``: knows each query's pool but not the order: per query it picks the arm
  and the fixed number of samples that maximise the *expected* (over orders)
  ``correct - lambda * cost``. This is the per-query optimum at a given average budget.

Neither is deployable; reports label them so.
"""

from __future__ import annotations

import numpy as np

from training.evaluation.replay import FixedNCurves
from training.evaluation.results import EpisodeResults

__all__ = ["ORACLES", "default_lambdas", "hindsight_oracle", "query_oracle"]

#: The oracles' registry names.
ORACLES = ("oracle", "query-oracle")


def _stacked(curves: list[FixedNCurves]) -> tuple[np.ndarray, np.ndarray]:
    """Correctness and cost over (arm, t) options: arrays (Q, R, options)."""
    correct = np.concatenate([c.correct for c in curves], axis=2)
    cost = np.concatenate([c.cost for c in curves], axis=2)
    return correct, cost


def _samples(curves: list[FixedNCurves]) -> np.ndarray:
    """Samples drawn by each (arm, t) option, shape (Q, R, options)."""
    return np.concatenate([np.cumsum(c.available, axis=2) - 1 for c in curves], axis=2)


def default_lambdas(curves: list[FixedNCurves], n: int = 25) -> np.ndarray:
    """Prices from "spend everything" (0) to "one sample is worth its cost only if it is
    sure to be right" (1 / the cheapest mean first-sample cost), geometrically spaced."""
    first = np.array([c.cost[:, :, 1].mean() for c in curves if c.cost.shape[2] > 1])
    whole = max(float(c.cost[:, :, -1].mean()) for c in curves)
    first = first[first > 0]
    if first.size == 0 or whole <= 0:
        return np.zeros(1)
    high = 1.0 / first.min()
    low = min(1e-3 / whole, high / 1e3)
    return np.concatenate([[0.0], np.geomspace(low, high, n - 1)])


def hindsight_oracle(curves: list[FixedNCurves], lam: float) -> EpisodeResults:
    """Per query and order, the best (arm, samples) in hindsight at price ``lam``."""
    correct, cost = _stacked(curves)
    samples = _samples(curves)
    best = np.argmax(correct - lam * cost, axis=2)[..., None]
    pick = lambda a: np.take_along_axis(a, best, axis=2)[..., 0]  # noqa: E731
    return EpisodeResults(policy=f"oracle(lambda={lam:.4g})", correct=pick(correct),
                          cost=pick(cost), samples=pick(samples).astype(float),
                          exhausted=np.zeros(correct.shape[:2], dtype=bool))


def query_oracle(curves: list[FixedNCurves], lam: float) -> EpisodeResults:
    """Per query, the (arm, fixed samples) with the best expected value at price ``lam``."""
    correct, cost = _stacked(curves)
    samples = _samples(curves)
    value = (correct - lam * cost).mean(axis=1)  # (Q, options)
    best = np.argmax(value, axis=1)[:, None, None]
    best = np.broadcast_to(best, (*correct.shape[:2], 1))
    pick = lambda a: np.take_along_axis(a, best, axis=2)[..., 0]  # noqa: E731
    return EpisodeResults(policy=f"query-oracle(lambda={lam:.4g})", correct=pick(correct),
                          cost=pick(cost), samples=pick(samples).astype(float),
                          exhausted=np.zeros(correct.shape[:2], dtype=bool))
