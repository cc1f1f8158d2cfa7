"""Deployable baselines as the evaluator runs them: every setting chosen on training queries.

A baseline is a registered policy (:mod:`allocator.policies`) plus a *sweep builder*: a
function of the :class:`BaselineContext` (the log's pools, the training queries, the
prior) that returns the settings to replay on the held-out queries, deciding everything
(arm, thresholds, a fitted prior) on the training queries only. :func:`per_arm_sweep` is
the default builder, :func:`register_sweep` registers others. This module holds the
machinery; import :mod:`allocator.training.evaluation.baselines`, which also registers the builders
of :mod:`~allocator.training.evaluation.baselines_schedules`,
:mod:`~allocator.training.evaluation.baselines_verifier` and
:mod:`~allocator.training.evaluation.baselines_vote`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from allocator.envs.pools import ReplayPools
from allocator.policies import POLICIES, make_policy
from allocator.policies.base import Policy
from allocator.training.evaluation.replay import FixedNCurves, ReplayEvaluator
from allocator.training.evaluation.results import EpisodeResults

__all__ = [
    "BASELINE_SWEEPS",
    "NO_TIMES",
    "BaselineContext",
    "NotApplicable",
    "base_policy",
    "build_sweep",
    "build_sweeps",
    "per_arm_sweep",
    "register_sweep",
    "train_front",
]

#: Offset of the training queries' order seed from the evaluation seed, so that the
#: training replays never share orders with the held-out ones.
TRAIN_SEED_OFFSET = 1


class NotApplicable(Exception):
    """A baseline does not apply to this log; the message says why (e.g. "no scores")."""


@dataclass(frozen=True, eq=False)
class BaselineContext:
    """What a sweep builder may use: the pools, the training split and its prior.

    Attributes:
        pools: the log's replay pools (every query; builders read only ``train``).
        train: indices of the training queries.
        prior: per-query per-arm predicted accuracy, shape (Q, A), out-of-fold on the
            training queries; ``None`` when the difficulty predictor was not fitted.
        n_orders: seeded orders per query (the training replays use as many).
        seed: the evaluation's seed (training replays use ``seed + 1``).
        verify_cost: the verifier's cost per candidate, in log cost units.
        sweeps: knob values per policy name, overriding a policy's default sweep.
    """

    pools: ReplayPools
    train: np.ndarray
    prior: np.ndarray | None
    n_orders: int
    seed: int
    verify_cost: float = 0.0
    sweeps: dict[str, tuple] = field(default_factory=dict)

    @property
    def n_arms(self) -> int:
        """Number of arms of the log."""
        return self.pools.n_arms

    @property
    def has_scores(self) -> bool:
        """Whether the log's candidates carry independent verifier scores (VERIFY by
        score is possible; a tournament's events are ``rtv``'s business)."""
        return bool(self.pools.cand_verifiable.any())

    def pool(self, arm: int) -> int:
        """The largest pool of ``arm`` over the training queries (at least 1)."""
        counts = self.pools.group_count[self.train, arm]
        return max(int(counts.max(initial=0)), 1)

    def knob_values(self, name: str, default: Sequence) -> list:
        """The knob values of policy ``name``: the user's sweep if given, else ``default``."""
        return list(self.sweeps.get(name, default))

    @cached_property
    def train_evaluator(self) -> ReplayEvaluator:
        """The replay evaluator on the training queries (its own seeded orders)."""
        return ReplayEvaluator(self.pools, self.train, n_orders=self.n_orders,
                               seed=self.seed + TRAIN_SEED_OFFSET, prior=self.prior,
                               verify_cost=self.verify_cost)

    def train_curves(self, arm: int) -> FixedNCurves:
        """Fixed-N curves of ``arm`` on the training queries (cached per arm)."""
        cache = self.__dict__.setdefault("_curves", {})
        if arm not in cache:
            cache[arm] = self.train_evaluator.fixed_n_curves(arm)
        return cache[arm]

    def replay_on_train(self, policy: Policy) -> EpisodeResults:
        """One policy replayed on the training queries."""
        return self.train_evaluator.run(policy)


#: A sweep builder: the settings of one baseline, chosen on the training queries.
SweepBuilder = Callable[[BaselineContext], list[Policy]]

#: Registered sweep builders by policy name; policies without one use
#: :func:`per_arm_sweep`.
BASELINE_SWEEPS: dict[str, SweepBuilder] = {}


def register_sweep(name: str) -> Callable[[SweepBuilder], SweepBuilder]:
    """Decorator: register the sweep builder of policy ``name``.

    Policies that need fitting (a prior, a threshold table) or that do not apply to every log
    register their own builder; a builder that does not apply to a log raises
    :class:`NotApplicable` with the reason, which the report lists.
    """
    def decorate(builder: SweepBuilder) -> SweepBuilder:
        BASELINE_SWEEPS[name] = builder
        return builder
    return decorate


def build_sweep(name: str, context: BaselineContext) -> list[Policy]:
    """The settings of baseline ``name`` to replay on the held-out queries.

    Raises:
        NotApplicable: the baseline does not apply to this log.
    """
    builder = BASELINE_SWEEPS.get(name)
    if builder is not None:
        return builder(context)
    return per_arm_sweep(name, context)


def build_sweeps(names: Sequence[str], context: BaselineContext,
                 progress: Callable[[str], None] = lambda name: None
                 ) -> tuple[dict[str, list[Policy]], dict[str, str]]:
    """The settings of every baseline of ``names`` that applies to the log, and the
    reason each other one was skipped.

    Args:
        names: registry names, in the order to build them.
        context: the training split.
        progress: called with each name before its settings are built.

    Returns:
        ``(settings by name, skip reason by name)``.
    """
    sweeps: dict[str, list[Policy]] = {}
    skipped: dict[str, str] = {}
    for name in names:
        progress(name)
        try:
            sweeps[name] = build_sweep(name, context)
        except NotApplicable as reason:
            skipped[name] = str(reason)
    return sweeps, skipped


def base_policy(name: str, arm: int, pool: int, **params: object) -> Policy:
    """Policy ``name`` at its defaults on ``arm``, capped at ``pool`` where it has a cap."""
    fields = POLICIES[name].__dataclass_fields__
    params = dict(params)
    if "arm" in fields:
        params.setdefault("arm", arm)
    if "max_samples" in fields:
        params.setdefault("max_samples", pool)
    if "min_samples" in fields:  # a pool smaller than the default minimum (agent runs)
        params.setdefault("min_samples", min(fields["min_samples"].default, pool))
    return make_policy(name, **params)


def _knob_sweep(name: str, context: BaselineContext, arm: int) -> list[Policy]:
    """Policy ``name`` on one arm along its knob (fixed-n capped at the arm's pool)."""
    pool = context.pool(arm)
    base = base_policy(name, arm, pool)
    knob = type(base).knob
    values = context.knob_values(name, type(base).default_sweep)
    if name in ("fixed-n", "parallel-n"):
        values = [v for v in values if v <= pool] or [pool]
    if knob is None or not values:
        return [base]
    return [base.with_knob(value) for value in values]


def per_arm_sweep(name: str, context: BaselineContext) -> list[Policy]:
    """The knob sweep of ``name`` on every arm, pruned to the training queries' front.

    The default builder: it keeps the ``(arm, knob)`` settings that lie on the Pareto front of
    the *training* queries.

    A policy without an ``arm`` field is swept once. On a single-arm log nothing is
    pruned (the plain knob sweep).
    """
    if "arm" not in POLICIES[name].__dataclass_fields__ or context.n_arms == 1:
        return _knob_sweep(name, context, 0)
    candidates = [policy for arm in range(context.n_arms)
                  for policy in _knob_sweep(name, context, arm)]
    return train_front(context, candidates)


def train_front(context: BaselineContext, candidates: Sequence[Policy]) -> list[Policy]:
    """The candidates on the accuracy/cost Pareto front of the training queries.

    A candidate is kept unless another one costs no more on the training queries and is
    at least as accurate, strictly better in one of the two. The kept candidates keep
    their given order.
    """
    if len(candidates) <= 1:
        return list(candidates)
    results = [context.replay_on_train(policy) for policy in candidates]
    accuracy = np.array([r.correct.mean() for r in results])
    cost = np.array([r.cost.mean() for r in results])
    kept = []
    for i, policy in enumerate(candidates):
        dominated = ((cost <= cost[i]) & (accuracy >= accuracy[i])
                     & ((cost < cost[i]) | (accuracy > accuracy[i])))
        if not dominated.any():
            kept.append(policy)
    return kept


#: Why parallel-n is skipped on a log without call times.
NO_TIMES = ("the log records no call times (started_at, ended_at): one wave of N is "
            "fixed-N in correctness and cost")


@register_sweep("parallel-n")
def _parallel_n(context: BaselineContext) -> list[Policy]:
    """Fixed-N launched as one wave of N, on every arm: only on a timed log, where its
    latency differs from fixed-N's (its correctness and cost are fixed-N's)."""
    if not context.pools.timed:
        raise NotApplicable(NO_TIMES)
    return per_arm_sweep("parallel-n", context)


@register_sweep("difficulty-binned")
def _difficulty_binned(context: BaselineContext) -> list[Policy]:
    """Difficulty-binned plans fitted on the training queries' fixed-N curves and prior."""
    from allocator.policies.difficulty_binned import DifficultyBinned

    if context.prior is None:
        raise NotApplicable("needs the difficulty predictor's prior (evaluation ran "
                            "without it)")
    candidates = []
    for arm in range(context.n_arms):
        pool = context.pool(arm)
        solve = context.train_curves(arm).correct.mean(axis=1)[:, 1:]
        fitted = DifficultyBinned.fit(context.prior[context.train, arm], solve,
                                      target_mean_samples=min(8.0, pool), arm=arm)
        values = context.knob_values("difficulty-binned", DifficultyBinned.default_sweep)
        candidates += [fitted.with_knob(value) for value in values if value <= pool]
    return candidates if context.n_arms == 1 else train_front(context, candidates)
