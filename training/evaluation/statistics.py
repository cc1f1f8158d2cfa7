"""Uncertainty over queries: bootstrap intervals for replayed policies.

Queries, not samples or orders, are the independent units (guide section 2): every
statistic is first averaged over a query's R orders, then resampled over queries.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from allocator.training.evaluation.results import EpisodeResults, PolicyPoint

__all__ = ["bootstrap_mean_ci", "latency_summary", "paired_difference", "policy_point"]

#: Resamples per interval.
N_BOOTSTRAP = 1000


def _resample_indices(n: int, n_bootstrap: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_bootstrap, n))


def bootstrap_mean_ci(
    per_query: np.ndarray, *, n_bootstrap: int = N_BOOTSTRAP, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-query values.

    Args:
        per_query: one value per query, shape (Q,).
        n_bootstrap: number of resamples.
        seed: seed of the resampling (the same seed resamples the same queries, so that
            intervals of different policies are comparable).
        level: coverage of the interval.

    Returns:
        ``(low, high)``.
    """
    values = np.asarray(per_query, dtype=np.float64)
    if len(values) < 2:
        mean = float(values.mean()) if len(values) else float("nan")
        return mean, mean
    means = values[_resample_indices(len(values), n_bootstrap, seed)].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def paired_difference(
    a: EpisodeResults, b: EpisodeResults, *, n_bootstrap: int = N_BOOTSTRAP, seed: int = 0
) -> tuple[float, tuple[float, float]]:
    """Accuracy of ``a`` minus ``b`` on the same queries and orders, with its interval."""
    if a.correct.shape != b.correct.shape:
        raise ValueError(f"paired results must share queries and orders: {a.correct.shape} "
                         f"vs {b.correct.shape}")
    per_query = (a.correct - b.correct).mean(axis=1)
    return float(per_query.mean()), bootstrap_mean_ci(per_query, n_bootstrap=n_bootstrap,
                                                       seed=seed)


def policy_point(
    results: EpisodeResults,
    *,
    policy: str,
    knob: str | None,
    value: object,
    deployable: bool,
    reference: EpisodeResults | None = None,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = 0,
) -> PolicyPoint:
    """Summarise one policy's episodes with 95% intervals over queries."""
    accuracy = results.correct.mean(axis=1)
    cost = results.cost.mean(axis=1)
    samples = results.samples.mean(axis=1)
    exhausted = results.exhausted.mean(axis=1)
    difference, difference_ci = (
        paired_difference(results, reference, n_bootstrap=n_bootstrap, seed=seed)
        if reference is not None else (None, None)
    )
    return PolicyPoint(
        policy=policy,
        knob=knob,
        value=value,
        description=results.policy,
        deployable=deployable,
        accuracy=float(accuracy.mean()),
        accuracy_ci=bootstrap_mean_ci(accuracy, n_bootstrap=n_bootstrap, seed=seed),
        mean_cost=float(cost.mean()),
        mean_cost_ci=bootstrap_mean_ci(cost, n_bootstrap=n_bootstrap, seed=seed),
        mean_samples=float(samples.mean()),
        exhaustion_rate=float(exhausted.mean()),
        difference=difference,
        difference_ci=difference_ci,
        mean_samples_ci=bootstrap_mean_ci(samples, n_bootstrap=n_bootstrap, seed=seed),
        exhaustion_rate_ci=bootstrap_mean_ci(exhausted, n_bootstrap=n_bootstrap, seed=seed),
        **latency_summary(results, n_bootstrap=n_bootstrap, seed=seed),
    )


def latency_summary(results: EpisodeResults, *, n_bootstrap: int = N_BOOTSTRAP,
                    seed: int = 0) -> dict[str, Any]:
    """The latency fields of a :class:`PolicyPoint`: mean episode latency with its 95%
    interval over queries, and the p50 and p95 over every episode; none (unavailable)
    where the episodes have no latency (an untimed log)."""
    if results.latency is None:
        return {}
    per_query = results.latency.mean(axis=1)
    return {"mean_latency": float(per_query.mean()),
            "mean_latency_ci": bootstrap_mean_ci(per_query, n_bootstrap=n_bootstrap,
                                                 seed=seed),
            "p50_latency": float(np.percentile(results.latency, 50)),
            "p95_latency": float(np.percentile(results.latency, 95))}
