"""The evaluator's result types: what replay produces and what reports, plots and
MLflow consume. Plain frozen dataclasses of numpy arrays and floats, JSON-ready through
``to_dict``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["LATENCY_FIELDS", "EpisodeResults", "EvaluationReport", "Headline", "PolicyPoint"]

#: The latency fields of a :class:`PolicyPoint` (in its JSON only where measured).
LATENCY_FIELDS = ("mean_latency", "mean_latency_ci", "p50_latency", "p95_latency")


@dataclass(frozen=True, eq=False)
class EpisodeResults:
    """Every episode of one policy on the evaluation queries: arrays of shape (Q, R).

    Queries are the independent units (bootstrap over rows); the R columns are the seeded
    random orders, identical for every policy evaluated by the same evaluator.

    Attributes:
        policy: the policy's ``describe()`` string.
        correct: correctness of the final answer (tie-averaged).
        cost: cost spent, in the log's cost units.
        samples: attempts drawn (samples + refinements).
        exhausted: whether a pool ran dry during the episode.
        latency: the episode's latency in seconds (the sum of its waves', see
            :class:`allocator.envs.ReplayEnv`), or None where the log is not timed
            (unavailable, never 0).
    """

    policy: str
    correct: np.ndarray
    cost: np.ndarray
    samples: np.ndarray
    exhausted: np.ndarray
    latency: np.ndarray | None = None

    @property
    def n_queries(self) -> int:
        """Q, the number of evaluation queries."""
        return int(self.correct.shape[0])


@dataclass(frozen=True)
class PolicyPoint:
    """One policy at one knob setting, with 95% bootstrap intervals over queries.

    Attributes:
        policy: registry name.
        knob: the knob's name (``None`` for a policy without one).
        value: the knob's value.
        description: the policy's ``describe()``.
        deployable: False for hindsight oracles.
        accuracy: mean correctness.
        accuracy_ci: its 95% interval.
        mean_cost: mean cost per query (log units).
        mean_cost_ci: its 95% interval.
        mean_samples: mean attempts drawn per query.
        mean_samples_ci: its 95% interval.
        exhaustion_rate: share of episodes whose pool ran dry.
        exhaustion_rate_ci: its 95% interval.
        difference: accuracy minus the reference policy's, paired by query and order.
        difference_ci: its 95% interval (paired bootstrap over queries).
        mean_latency: mean episode latency in seconds (None: the log is not timed, or an
            oracle, whose latency is not replayed).
        mean_latency_ci: its 95% interval (bootstrap over queries).
        p50_latency, p95_latency: the median and 95th percentile of episode latency over
            every episode (queries and orders).
    """

    policy: str
    knob: str | None
    value: Any
    description: str
    deployable: bool
    accuracy: float
    accuracy_ci: tuple[float, float]
    mean_cost: float
    mean_cost_ci: tuple[float, float]
    mean_samples: float
    exhaustion_rate: float
    difference: float | None = None
    difference_ci: tuple[float, float] | None = None
    mean_samples_ci: tuple[float, float] | None = None
    exhaustion_rate_ci: tuple[float, float] | None = None
    mean_latency: float | None = None
    mean_latency_ci: tuple[float, float] | None = None
    p50_latency: float | None = None
    p95_latency: float | None = None

    @property
    def has_latency(self) -> bool:
        """Whether the point's latency was measured (a timed log)."""
        return self.mean_latency is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists); the latency fields only where measured."""
        out = dict(self.__dict__)
        if not self.has_latency:
            for key in LATENCY_FIELDS:
                out.pop(key)
        for key in ("accuracy_ci", "mean_cost_ci", "difference_ci", "mean_samples_ci",
                    "exhaustion_rate_ci", "mean_latency_ci"):
            if out.get(key) is not None:
                out[key] = [float(v) for v in out[key]]
        if isinstance(out["value"], np.generic):
            out["value"] = out["value"].item()
        return out


@dataclass(frozen=True)
class Headline:
    """The numbers a reader wants first, against the envelope of every deployable baseline
    (definitions in :mod:`allocator.training.evaluation.pareto`).

    Attributes:
        target_accuracy: the accuracy to reach: by default the envelope's top (the best
            accuracy any deployable baseline reaches on the held-out queries).
        target_source: ``"envelope top"`` or ``"given"``.
        reference_accuracy: the accuracy of the reference policy (AC(0.95) by default)
            that paired intervals, hence "reaching" (non-inferior at 95%), are against.
        cost_to_reach: per policy, the smallest mean cost of its points that reach the
            target; None where none does.
        best_baseline: the cheapest deployable baseline point reaching the target:
            ``policy``, ``setting``, ``cost``, ``accuracy``; None if none does.
        savings_vs_best_baseline: per policy, the best baseline's cost over the policy's
            cost to reach (2.0 = half the cost).
        gap_closed: per policy, the median over its front points of (its accuracy - the
            envelope's) / (the query-oracle's - the envelope's), each at the same cost.
        envelope: the envelope's front points (``policy``, ``setting``, ``cost``,
            ``accuracy``), by cost.
    """

    target_accuracy: float
    cost_to_reach: dict[str, float | None]
    savings_vs_best_baseline: dict[str, float | None]
    gap_closed: dict[str, float | None]
    best_baseline: dict[str, Any] | None = None
    target_source: str = "envelope top"
    reference_accuracy: float | None = None
    envelope: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class EvaluationReport:
    """A whole evaluation: every policy's sweep, the reference, the headline numbers.

    Attributes:
        log: description of the log (source, fingerprint, queries, arms, simulated).
        config: evaluation settings (seed, orders, split, arm, lambda, bootstrap).
        points: per policy name, its points along the knob sweep.
        reference: the reference policy's description (paired differences are against it).
        headline: the headline numbers.
        extra: anything else worth keeping (difficulty-predictor metrics...).
    """

    log: dict[str, Any]
    config: dict[str, Any]
    points: dict[str, list[PolicyPoint]]
    reference: str
    headline: Headline
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON report."""
        return {
            "log": self.log,
            "config": self.config,
            "reference": self.reference,
            "policies": {name: [p.to_dict() for p in points]
                         for name, points in self.points.items()},
            "headline": self.headline.to_dict(),
            **({"extra": self.extra} if self.extra else {}),
        }
