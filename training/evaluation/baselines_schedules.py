"""Sweep builders of the fixed schedules of RTV and PDR (``rtv``, ``pdr``).

Registered when :mod:`allocator.training.evaluation.baselines` is imported. They apply only to logs
that replay their actions exactly: ``rtv`` to logs with tournament verification events
(written by :class:`~allocator.executors.TournamentVoting` or
:class:`~allocator.executors.ParallelDistillRefine`), ``pdr`` to logs with refinements
that record what they were conditioned on; elsewhere they raise
:class:`~allocator.training.evaluation.baselines.NotApplicable` with the reason.
"""

from __future__ import annotations

from allocator.policies.base import Policy
from allocator.policies.pdr import PDRSchedule
from allocator.policies.rtv import RTVSchedule
from allocator.training.evaluation.baseline_sweeps import (
    BaselineContext,
    NotApplicable,
    register_sweep,
    train_front,
)

__all__ = ["NO_EVENTS", "NO_REFINEMENTS"]

#: Why ``rtv`` skips a log.
NO_EVENTS = ("the log has no tournament verifications replay can apply (an RTV or PDR "
             "executor log records them)")
#: Why ``pdr`` skips a log.
NO_REFINEMENTS = ("the log has no refinements replay can draw (a PDR executor log records "
                  "what each was conditioned on)")


def _front(context: BaselineContext, candidates: list[Policy]) -> list[Policy]:
    return candidates if context.n_arms == 1 else train_front(context, candidates)


@register_sweep("rtv")
def rtv_sweep(context: BaselineContext) -> list[Policy]:
    """``rtv`` on every arm along ``n`` (2 up to the arm's largest training pool).

    Raises:
        NotApplicable: the log has no tournament verification events.
    """
    if not context.pools.branches.has_events:
        raise NotApplicable(NO_EVENTS)
    candidates: list[Policy] = []
    for arm in range(context.n_arms):
        pool = context.pool(arm)
        values = [n for n in context.knob_values("rtv", RTVSchedule.default_sweep)
                  if 2 <= n <= pool] or [max(2, pool)]
        candidates += [RTVSchedule(n=n, arm=arm) for n in values]
    return _front(context, candidates)


@register_sweep("pdr")
def pdr_sweep(context: BaselineContext) -> list[Policy]:
    """``pdr`` on every arm along ``refinements``, with the paper's 8 drafts (capped at
    the arm's largest training pool) and the final tournament.

    Raises:
        NotApplicable: the log has no refinements replay can draw.
    """
    if not context.pools.supports_refine:
        raise NotApplicable(NO_REFINEMENTS)
    candidates: list[Policy] = []
    for arm in range(context.n_arms):
        drafts = min(PDRSchedule.drafts, context.pool(arm))
        candidates += [PDRSchedule(drafts=drafts, refinements=r, arm=arm)
                       for r in context.knob_values("pdr", PDRSchedule.default_sweep)]
    return _front(context, candidates)
