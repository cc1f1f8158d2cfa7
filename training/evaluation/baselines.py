"""Deployable baselines as the evaluator runs them: every setting chosen on training queries.

The machinery (:class:`BaselineContext`, the sweep registry, :func:`per_arm_sweep`,
:func:`train_front`) lives in :mod:`allocator.training.evaluation.baseline_sweeps`; this module
re-exports it and imports the modules whose sweep builders register there
(:mod:`~allocator.training.evaluation.baselines_schedules`,
:mod:`~allocator.training.evaluation.baselines_verifier`,
:mod:`~allocator.training.evaluation.baselines_vote`),
so that importing it gives every builder. They import the machinery, not this module: no
import cycle.
"""

from __future__ import annotations

import allocator.training.evaluation.baselines_schedules
import allocator.training.evaluation.baselines_verifier
import allocator.training.evaluation.baselines_vote  # noqa: F401
from allocator.training.evaluation.baseline_sweeps import (
    BASELINE_SWEEPS,
    TRAIN_SEED_OFFSET,
    BaselineContext,
    NotApplicable,
    SweepBuilder,
    base_policy,
    build_sweep,
    build_sweeps,
    per_arm_sweep,
    register_sweep,
    train_front,
)

__all__ = [
    "BASELINE_SWEEPS",
    "TRAIN_SEED_OFFSET",
    "BaselineContext",
    "NotApplicable",
    "SweepBuilder",
    "base_policy",
    "build_sweep",
    "build_sweeps",
    "per_arm_sweep",
    "register_sweep",
    "train_front",
]
