"""The parallel fixed-N baseline: ``n`` samples launched as one wave, then STOP.

Fixed-N (:class:`~allocator.policies.FixedN`) at its best latency: in a layout with a
parallel width ``n`` (:mod:`allocator.actions`, ``widths=(1, n)``) it asks
SAMPLE(arm)×n once, so the executor launches the ``n`` calls together and the query
waits for the slowest of them instead of their sum; it draws what fixed-N draws and
votes the same way, so the two differ in latency only. Where the layout has no width
``n`` it takes the widest width that fits the samples it still lacks, then the next,
and in the default layout it samples one at a time (fixed-N exactly).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from allocator.actions import DEFAULT_WIDTHS, STOP, check_widths, n_actions, wide_action
from allocator.errors import ParameterError
from allocator.featurizer import QueryState, StateBatch
from allocator.policies._common import check_int, check_mask
from allocator.policies.base import Policy
from allocator.policies.registry import register_policy

__all__ = ["ParallelN"]

_OWNER = "ParallelN ('parallel-n')"


@register_policy
@dataclass(frozen=True)
class ParallelN(Policy):
    """Fixed-N launched in parallel: SAMPLE(arm)×w for the widest allowed width ``w`` that
    does not pass ``n`` samples of ``arm``, until ``n`` are drawn, then STOP.

    With widths ``(1, n)`` that is one wave of ``n`` and STOP; with ``(1,)`` it is
    fixed-N's ``n`` sequential samples. Where a width is masked (the arm's pool or cap
    cannot give that many more, or ``max_samples`` has no room) the next narrower one is
    tried; with no SAMPLE of the arm allowed it STOPs.

    Args:
        n: samples per query (>= 1); the knob.
        arm: the arm sampled.
        widths: the parallel widths of the layout its masks come from. None (the
            default): read from the mask's shape, which holds ``A + 3`` actions plus ``A``
            per extra width: no extra width means ``(1,)``, one means ``(1, n)`` (the
            layout this policy is meant for); a session passes its own widths (see
            :meth:`decision_function`).

    Raises:
        ParameterError: a bad field; at decision time, a mask with several extra widths
            and no ``widths`` to name them.
    """

    name: ClassVar[str] = "parallel-n"
    knob: ClassVar[str | None] = "n"
    default_sweep: ClassVar[tuple[int, ...]] = (1, 2, 4, 8, 16, 32)

    n: int = 4
    arm: int = 0
    widths: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        check_int(_OWNER, "n", self.n, 1)
        check_int(_OWNER, "arm", self.arm, 0)
        if self.widths is not None:
            object.__setattr__(self, "widths", check_widths(_OWNER, self.widths))

    @property
    def layout_widths(self) -> tuple[int, ...]:
        """The widths of the layout this policy is meant for: ``widths`` when given, else
        ``(1, n)`` (one wave of ``n``; ``(1,)`` for ``n == 1``). The replay evaluator
        replays it in this layout, so its latency is one wave's."""
        if self.widths is not None:
            return self.widths
        return DEFAULT_WIDTHS if self.n == 1 else (1, self.n)

    def act(self, state: StateBatch, mask: np.ndarray) -> np.ndarray:
        """The widest allowed SAMPLE(arm)×w with ``w`` at most the samples still lacking,
        STOP once ``n`` are drawn (or no SAMPLE of the arm is allowed)."""
        mask = check_mask(_OWNER, state, mask, self.arm)
        n_arms = np.shape(state.samples)[1]
        widths = self._layout_widths(n_arms, mask.shape[1])
        lacking = self.n - np.asarray(state.samples)[:, self.arm]
        actions = np.full(len(lacking), STOP, dtype=np.int64)
        chosen = np.zeros(len(lacking), dtype=bool)
        for k in range(len(widths) - 1, -1, -1):  # widest first
            action = wide_action(n_arms, self.arm, k)
            take = ~chosen & (lacking >= widths[k]) & mask[:, action]
            actions[take] = action
            chosen |= take
        return actions

    def decision_function(self, n_arms: int, widths: tuple[int, ...] = DEFAULT_WIDTHS
                          ) -> Callable[[QueryState, int], int]:
        """A session's decisions in its layout of ``widths`` (they replace a ``widths``
        of None; given ones must match).

        Raises:
            ParameterError: the policy's ``widths`` are not the session's.
        """
        if self.widths is not None and self.widths != tuple(widths):
            raise ParameterError(_OWNER, "widths", f"the session's parallel widths "
                                 f"{list(widths)} (or None)", self.widths)
        policy = self if self.widths is not None else ParallelN(self.n, self.arm,
                                                                tuple(widths))
        return Policy.decision_function(policy, n_arms, widths)

    def _layout_widths(self, n_arms: int, size: int) -> tuple[int, ...]:
        """The widths of a layout with ``size`` actions (see the class's ``widths``)."""
        if self.widths is not None:
            if size != n_actions(n_arms, self.widths):
                raise ParameterError(_OWNER, "mask", f"a mask of the layout of widths "
                                     f"{list(self.widths)}: {n_actions(n_arms, self.widths)} "
                                     "actions", f"{size} actions")
            return self.widths
        extra = (size - n_actions(n_arms)) // n_arms
        if extra == 0:
            return DEFAULT_WIDTHS
        if extra == 1 and self.n > 1:
            return (1, self.n)
        raise ParameterError(_OWNER, "widths", f"the layout's parallel widths (a mask with "
                             f"{extra} extra widths does not say which they are)", None)
