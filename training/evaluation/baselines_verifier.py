"""Sweep builders of the verifier-aware and multi-arm baselines.

Registered when :mod:`training.evaluation.baselines` is imported (its last line imports
this module). Every choice (arm, acceptance score, arm order, prices) is made on the
training queries of the :class:`~training.evaluation.baselines.BaselineContext`; a
baseline that does not apply to the log raises
:class:`~training.evaluation.baselines.NotApplicable` with the reason.
"""

from __future__ import annotations

import numpy as np

from allocator.policies.base import Policy
from allocator.policies.self_consistency import FixedN
from allocator.policies.verifier import BestOfN, UntilVerified
from training.evaluation.baselines import (
    BaselineContext,
    NotApplicable,
    register_sweep,
    train_front,
)

__all__ = ["NO_SCORES", "score_grid", "train_scores"]

#: Why the verifier baselines skip a log without scores.
NO_SCORES = "the log has no verifier scores"

#: Quantiles of the training scores tried as acceptance thresholds (1.0: the best score).
SCORE_QUANTILES = (0.5, 0.75, 0.9, 1.0)


def _require_scores(context: BaselineContext) -> None:
    if not context.has_scores:
        raise NotApplicable(NO_SCORES)


def train_scores(context: BaselineContext, arm: int) -> np.ndarray:
    """The verifier scores of ``arm``'s samples on the training queries (NaN dropped)."""
    pools = context.pools
    query = np.repeat(np.arange(pools.n_queries), pools.n_candidates)
    keep = np.isin(query, context.train) & (pools.cand_group == arm)
    scores = pools.cand_score[keep]
    return scores[~np.isnan(scores)]


def score_grid(scores: np.ndarray, quantiles: tuple[float, ...] = SCORE_QUANTILES
               ) -> list[float]:
    """Acceptance thresholds to try: the distinct ``quantiles`` of ``scores``, increasing.

    A perfect checker's 0/1 scores give ``[0.0, 1.0]`` at most (or ``[1.0]``); continuous
    scores give up to ``len(quantiles)`` values, the last the best score seen.
    """
    if scores.size == 0:
        return []
    values = np.quantile(scores, quantiles, method="inverted_cdf")
    return sorted({float(v) for v in values})


def _n_values(context: BaselineContext, name: str, arm: int) -> list[int]:
    """The knob ``n`` of policy ``name`` on ``arm``: the sweep, capped at the arm's pool."""
    pool = context.pool(arm)
    values = context.knob_values(name, FixedN.default_sweep)
    return [v for v in values if v <= pool] or [pool]


@register_sweep("until-verified")
def until_verified_sweep(context: BaselineContext) -> list[Policy]:
    """Until-verified at every (arm, tau, n), pruned to the training queries' front.

    ``tau`` runs over :func:`score_grid` of the arm's training scores and ``n`` over the
    knob sweep (capped at the arm's largest training pool).

    Raises:
        NotApplicable: the log has no verifier scores.
    """
    _require_scores(context)
    candidates: list[Policy] = []
    for arm in range(context.n_arms):
        for tau in score_grid(train_scores(context, arm)):
            candidates += [UntilVerified(n=n, tau=tau, arm=arm)
                           for n in _n_values(context, "until-verified", arm)]
    if not candidates:
        raise NotApplicable("no sample of the training queries has a verifier score")
    return train_front(context, candidates)


@register_sweep("best-of-n")
def best_of_n_sweep(context: BaselineContext) -> list[Policy]:
    """Best-of-N on every arm along ``n`` (capped at the arm's pool); on several arms,
    pruned to the training queries' front.

    Raises:
        NotApplicable: the log has no verifier scores.
    """
    _require_scores(context)
    candidates: list[Policy] = [BestOfN(n=n, arm=arm) for arm in range(context.n_arms)
                                for n in _n_values(context, "best-of-n", arm)]
    return candidates if context.n_arms == 1 else train_front(context, candidates)
