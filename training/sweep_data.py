"""What every trial of ``allocator sweep`` shares: :class:`SweepData`.

A module of its own so that the search (:mod:`allocator.training.sweep`, which builds it) and its
results (:mod:`allocator.training.sweep_results`, which reads it) both import it without importing
each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from allocator.logs.table import AttemptLog

__all__ = ["SweepData"]


@dataclass(frozen=True)
class SweepData:
    """What every trial shares: the log, its one split and the difficulty prior.

    Attributes:
        log: the pool log.
        fit: the training queries the policies train on.
        validation: the training queries that score the trials.
        test: the held-out queries (only the best trial is evaluated on them).
        prior: per query, per arm, the difficulty predictor's output (cross-fitted on
            the training queries).
        seed: the split's seed (``[base]``'s).
        verify_cost: the verifier's cost per candidate (log units).
    """

    log: AttemptLog
    fit: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    prior: np.ndarray
    seed: int
    verify_cost: float
