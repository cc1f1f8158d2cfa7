"""Sweep builders of the vote-only stopping baselines fitted on the training queries.

``blend-asc`` (:func:`blend_asc_sweep`) and ``bayes-stop`` (:func:`bayes_stop_sweep`) read
only ``context.train`` (the held-out queries are never looked at) and are swept on every
arm; on a multi-arm log the settings on the training queries' front are kept
(:func:`allocator.training.evaluation.baselines.train_front`). Registered on import (the last line
of
:mod:`allocator.training.evaluation.baselines` imports this module).
"""

from __future__ import annotations

import numpy as np

from allocator.policies import BayesStop, BlendASC
from allocator.policies.base import Policy
from allocator.policies.bayes_stop import MAX_HORIZON
from allocator.training.evaluation.baseline_sweeps import (
    BaselineContext,
    NotApplicable,
    register_sweep,
    train_front,
)

__all__ = ["arm_answers", "bayes_stop_sweep", "blend_asc_sweep", "vote_counts"]


def arm_answers(context: BaselineContext, arm: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per training query: the arm's samples' answer codes (-1: none) and correctness."""
    pools = context.pools
    out = []
    for q in context.train.tolist():
        start = int(pools.cand_offsets[q] + pools.arm_start[q, arm])
        stop = start + int(pools.arm_count[q, arm])
        out.append((pools.cand_answer[start:stop], pools.cand_correct[start:stop]))
    return out


def vote_counts(answers: np.ndarray, correct: np.ndarray) -> tuple[int, int, int]:
    """``(x_A, x_B, x_D)`` of one pool: the correct answer, the main wrong one, the rest.

    The correct answer is the answer with the highest mean correctness if that is at
    least 1/2 (the most voted among equals), else there is none (``x_A = 0``); ``x_B``
    is the most voted other answer; attempts without an answer do not vote.
    """
    voted = answers >= 0
    if not voted.any():
        return 0, 0, 0
    codes, votes = np.unique(answers[voted], return_counts=True)
    quality = np.array([correct[answers == c].mean() for c in codes])
    best = np.lexsort((-votes, -quality))[0]
    x_a = int(votes[best]) if quality[best] >= 0.5 else 0
    others = np.delete(votes, best) if x_a else votes
    x_b = int(others.max(initial=0))
    return x_a, x_b, int(votes.sum()) - x_a - x_b


@register_sweep("blend-asc")
def blend_asc_sweep(context: BaselineContext) -> list[Policy]:
    """Blend-ASC per arm, its thresholds calibrated on the training queries' pools."""
    candidates: list[Policy] = []
    for arm in range(context.n_arms):
        pool = context.pool(arm)
        sequences = [answers for answers, _ in arm_answers(context, arm) if len(answers)]
        if not any((answers >= 0).any() for answers in sequences):
            continue
        fitted = BlendASC.fit(sequences, max_samples=pool, arm=arm,
                              n_orders=context.n_orders, seed=context.seed + 1)
        budgets = [b for b in context.knob_values("blend-asc", BlendASC.default_sweep)
                   if b <= pool] or [float(pool)]
        swept = [fitted.with_knob(b) for b in budgets]
        candidates += _distinct_thresholds(swept)
    if not candidates:
        raise NotApplicable("no arm has a vote (a sample with an answer) on the training "
                            "queries")
    return candidates if context.n_arms == 1 else train_front(context, candidates)


def _distinct_thresholds(policies: list[BlendASC]) -> list[Policy]:
    """One policy per distinct threshold (budgets the calibration cannot tell apart give
    the same rule; the smallest such budget is kept)."""
    seen: set[float] = set()
    kept: list[Policy] = []
    for policy in policies:
        if policy.log_threshold not in seen:
            seen.add(policy.log_threshold)
            kept.append(policy)
    return kept


@register_sweep("bayes-stop")
def bayes_stop_sweep(context: BaselineContext) -> list[Policy]:
    """Bayes-optimal stopping per arm, the prior fitted on the training queries' votes.

    With :class:`allocator.policies.BayesStop`'s default objective (the majority vote should be
    the answer distribution's mode, the paper's target), its prior fitted by maximum
    likelihood on the training queries' vote counts, swept along the price.
    """
    candidates: list[Policy] = []
    for arm in range(context.n_arms):
        counts = np.array([vote_counts(a, c) for a, c in arm_answers(context, arm)],
                          dtype=np.float64).reshape(-1, 3)
        if counts.sum() == 0:
            continue
        horizon = min(context.pool(arm), MAX_HORIZON)
        fitted = BayesStop.fit(counts, horizon=horizon, arm=arm)
        prices = context.knob_values("bayes-stop", BayesStop.default_sweep)
        candidates += [fitted.with_knob(p) for p in prices]
    if not candidates:
        raise NotApplicable("no arm has a vote on the training queries")
    return candidates if context.n_arms == 1 else train_front(context, candidates)
