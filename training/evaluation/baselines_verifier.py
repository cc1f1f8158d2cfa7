"""Sweep builders of the verifier-aware and multi-arm baselines.

Registered when :mod:`allocator.training.evaluation.baselines` is imported (its last line imports
this module). Every choice (arm, acceptance score, arm order, prices) is made on the
training queries of the :class:`~allocator.training.evaluation.baselines.BaselineContext`; a
baseline that does not apply to the log raises
:class:`~allocator.training.evaluation.baselines.NotApplicable` with the reason.
"""

from __future__ import annotations

import itertools

import numpy as np

from allocator.policies.base import Policy
from allocator.policies.multi_arm import Cascade, RoundRobin, Router
from allocator.policies.self_consistency import FixedN
from allocator.policies.verifier import BestOfN, UntilVerified, WeightedVote
from allocator.training.evaluation.baseline_sweeps import (
    BaselineContext,
    NotApplicable,
    register_sweep,
    train_front,
)

__all__ = ["NO_PRIOR", "NO_SCORES", "ONE_ARM", "arm_sets", "cascade_chains", "cost_order",
           "score_grid", "train_arm_means", "train_prices", "train_scores"]

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


def _verify_all_sweep(policy: type[BestOfN], context: BaselineContext) -> list[Policy]:
    """``policy`` on every arm along ``n`` (capped at the arm's pool); on several arms,
    pruned to the training queries' front."""
    _require_scores(context)
    candidates: list[Policy] = [policy(n=n, arm=arm) for arm in range(context.n_arms)
                                for n in _n_values(context, policy.name, arm)]
    return candidates if context.n_arms == 1 else train_front(context, candidates)


@register_sweep("best-of-n")
def best_of_n_sweep(context: BaselineContext) -> list[Policy]:
    """Best-of-N on every arm along ``n``; on several arms, the training front.

    Raises:
        NotApplicable: the log has no verifier scores.
    """
    return _verify_all_sweep(BestOfN, context)


@register_sweep("weighted-vote")
def weighted_vote_sweep(context: BaselineContext) -> list[Policy]:
    """The score-weighted vote on every arm along ``n``; on several arms, the training
    front.

    Raises:
        NotApplicable: the log has no verifier scores.
    """
    return _verify_all_sweep(WeightedVote, context)


# ------------------------------------------------------------------ multi-arm
#: Why the multi-arm baselines skip a single-arm log.
ONE_ARM = "the log has one arm"

#: Beta-rule thresholds tried by round-robin on logs without scores.
VOTE_THRESHOLDS = (0.8, 0.9, 0.95, 0.99)


def _require_arms(context: BaselineContext) -> None:
    if context.n_arms < 2:
        raise NotApplicable(ONE_ARM)


def _train_candidates(context: BaselineContext) -> np.ndarray:
    """Which candidates belong to the training queries, shape (C,)."""
    pools = context.pools
    query = np.repeat(np.arange(pools.n_queries), pools.n_candidates)
    return np.isin(query, context.train)


def train_arm_means(context: BaselineContext, values: np.ndarray) -> np.ndarray:
    """The mean of a per-candidate array over each arm's training samples, shape (A,).

    NaN for an arm without a sample on the training queries.
    """
    pools = context.pools
    keep = _train_candidates(context) & (pools.cand_group < context.n_arms)
    group = pools.cand_group[keep]
    counts = np.bincount(group, minlength=context.n_arms).astype(np.float64)
    sums = np.bincount(group, weights=values[keep], minlength=context.n_arms)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def cost_order(context: BaselineContext) -> tuple[int, ...]:
    """The arms with training samples, cheapest first (mean sample cost on training
    queries; ties by arm index)."""
    cost = train_arm_means(context, context.pools.cand_cost)
    arms = [a for a in range(context.n_arms) if not np.isnan(cost[a])]
    return tuple(sorted(arms, key=lambda a: (cost[a], a)))


def arm_sets(context: BaselineContext) -> list[tuple[int, ...]]:
    """Arm sets to try, each cheapest first: every arm, and the 2 and 3 arms most
    accurate per sample on the training queries."""
    order = cost_order(context)
    accuracy = train_arm_means(context, context.pools.cand_correct)
    best = sorted(order, key=lambda a: (-accuracy[a], a))
    sets = {order}
    for k in (2, 3):
        if k < len(order):
            sets.add(tuple(a for a in order if a in best[:k]))
    return sorted(sets, key=lambda arms: (-len(arms), arms))


@register_sweep("round-robin")
def round_robin_sweep(context: BaselineContext) -> list[Policy]:
    """Round-robin over arm sets and stop rules along the budget, pruned to the training
    queries' front.

    Arm sets: :func:`arm_sets`. Stop rules: with verifier scores, until a verified score
    reaches ``tau`` (``tau`` from :func:`score_grid` of the training scores of every
    arm); without, the Beta rule at :data:`VOTE_THRESHOLDS`.

    Raises:
        NotApplicable: the log has one arm.
    """
    _require_arms(context)
    rules: list[tuple[float | None, float | None]]
    if context.has_scores:
        scores = np.concatenate([train_scores(context, a) for a in range(context.n_arms)])
        rules = [(None, tau) for tau in score_grid(scores)]
    else:
        rules = [(threshold, None) for threshold in VOTE_THRESHOLDS]
    candidates: list[Policy] = []
    for arms in arm_sets(context):
        budget = sum(context.pool(a) for a in arms)
        caps = [v for v in context.knob_values("round-robin", RoundRobin.default_sweep)
                if v <= budget] or [budget]
        candidates += [RoundRobin(max_samples=cap, threshold=threshold, tau=tau, arms=arms)
                       for threshold, tau in rules for cap in caps]
    return train_front(context, candidates)


#: Samples per arm the cascade's builder tries (capped at the chain's largest pool).
CASCADE_K = (1, 2, 3, 4, 5)

#: Price exponents the router's builder tries (1: accuracy per price; 0: accuracy).
PRICE_WEIGHTS = (0.0, 0.5, 1.0)

#: Why the router skips an evaluation without the difficulty predictor.
NO_PRIOR = "needs the difficulty predictor's prior (evaluation ran without it)"


def cascade_chains(context: BaselineContext) -> list[tuple[int, ...]]:
    """Escalation chains to try, each cheapest first: with at most 4 arms every chain of
    two or more arms in cost order; with more, :func:`arm_sets` (all, best 3, best 2)."""
    order = cost_order(context)
    if len(order) <= 4:
        chains = [tuple(a for a, keep in zip(order, bits, strict=True) if keep)
                  for bits in itertools.product((True, False), repeat=len(order))]
        return sorted({c for c in chains if len(c) >= 2}, key=lambda c: (-len(c), c))
    return [arms for arms in arm_sets(context) if len(arms) >= 2]


@register_sweep("cascade")
def cascade_sweep(context: BaselineContext) -> list[Policy]:
    """The vote cascade over escalation chains (:func:`cascade_chains`), ``k`` in
    :data:`CASCADE_K` and ``tau`` along its sweep (one ``tau`` for ``k = 1``: they all
    decide alike), pruned to the training front.

    Raises:
        NotApplicable: the log has one arm (or one arm with training samples).
    """
    _require_arms(context)
    candidates: list[Policy] = []
    for arms in cascade_chains(context):
        deepest = max(context.pool(a) for a in arms)
        for k in [k for k in CASCADE_K if k <= deepest] or [deepest]:
            taus = context.knob_values("cascade", Cascade.default_sweep)
            if k == 1:  # one sample's share is 1 (or 0 without an answer): tau is moot
                taus = taus[:1]
            candidates += [Cascade(tau=tau, k=k, arms=arms) for tau in taus]
    if not candidates:
        raise NotApplicable("fewer than two arms have samples on the training queries")
    return train_front(context, candidates)


def train_prices(context: BaselineContext) -> tuple[float, ...]:
    """Mean sample cost of each arm on the training queries (> 0).

    An arm without a training sample gets a million times the dearest price (a router
    then never picks it); a free arm gets a millionth of the cheapest positive one.
    """
    prices = train_arm_means(context, context.pools.cand_cost)
    known = prices[np.isfinite(prices) & (prices > 0)]
    low, high = (float(known.min()), float(known.max())) if known.size else (1.0, 1.0)
    prices = np.where(np.isnan(prices), high * 1e6, prices)
    return tuple(float(p) for p in np.where(prices > 0, prices, low * 1e-6))


@register_sweep("router")
def router_sweep(context: BaselineContext) -> list[Policy]:
    """The router at the training queries' prices, for each price exponent in
    :data:`PRICE_WEIGHTS` along the Beta threshold, pruned to the training front.

    Raises:
        NotApplicable: the log has one arm, or the evaluation has no prior.
    """
    _require_arms(context)
    if context.prior is None:
        raise NotApplicable(NO_PRIOR)
    prices = train_prices(context)
    cap = max(context.pool(a) for a in range(context.n_arms))
    thresholds = context.knob_values("router", Router.default_sweep)
    candidates: list[Policy] = [
        Router(threshold=t, max_samples=cap, prices=prices, price_weight=w)
        for w in PRICE_WEIGHTS for t in thresholds]
    return train_front(context, candidates)
