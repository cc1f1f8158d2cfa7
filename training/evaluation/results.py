"""The evaluator's result types: what replay produces and what reports, plots and
MLflow consume. Plain frozen dataclasses of numpy arrays and floats, JSON-ready through
``to_dict``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["EpisodeResults", "EvaluationReport", "Headline", "PolicyPoint"]


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
    """

    policy: str
    correct: np.ndarray
    cost: np.ndarray
    samples: np.ndarray
    exhausted: np.ndarray

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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        out = dict(self.__dict__)
        for key in ("accuracy_ci", "mean_cost_ci", "difference_ci", "mean_samples_ci",
                    "exhaustion_rate_ci"):
            if out[key] is not None:
                out[key] = [float(v) for v in out[key]]
        if isinstance(out["value"], np.generic):
            out["value"] = out["value"].item()
        return out


@dataclass(frozen=True)
class Headline:
    """The numbers a reader wants first.

    Attributes:
        target_accuracy: the accuracy to reach: majority-of-all on the evaluation queries.
        cost_to_reach: per policy, the (interpolated) mean cost at which its sweep first
            reaches the target accuracy; None where it never does.
        savings_vs_fixed_n: per policy, fixed-N's cost to reach the target divided by the
            policy's (2.0 = half the cost).
        savings_vs_adaptive_consistency: the same against adaptive-consistency.
        gap_closed: per policy, at its own mean cost, (its accuracy - best fixed-N's) /
            (query-oracle's - best fixed-N's), each interpolated at that cost.
    """

    target_accuracy: float
    cost_to_reach: dict[str, float | None]
    savings_vs_fixed_n: dict[str, float | None]
    savings_vs_adaptive_consistency: dict[str, float | None]
    gap_closed: dict[str, float | None]

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
