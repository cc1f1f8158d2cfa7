"""The one narrow decision interface every allocation policy implements.

A policy decides for a *batch* of query states at once: numpy in, actions out. The same
object is called by the replay evaluator (thousands of states per call), by the training
environment's baselines, and by the runtime (a batch of one). Policies are small frozen
dataclasses (hyperparameters as fields, data as call arguments), so they are hashable,
comparable and printable, and a Pareto sweep is ``policy.with_knob(value)``.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from allocator.actions import DEFAULT_WIDTHS, mask_of_bits, n_actions
from allocator.featurizer import QueryState, StateBatch

__all__ = ["Policy"]


class Policy(ABC):
    """Base class of allocation policies (subclasses are frozen dataclasses).

    Class attributes:
        name: the registry name (``"fixed-n"``, ``"adaptive-consistency"``...).
        knob: the field swept to trace an accuracy/cost curve (``None``: no knob).
        default_sweep: knob values swept by default.
        deployable: False for hindsight oracles, which are upper bounds only.
        stochastic: True when :meth:`act` draws at random (then :meth:`probabilities`
            is the policy's definition, and two calls of ``act`` may differ).
        answer_rule: the final-answer rule the policy is replayed with (an
            ``answer_rule`` of :class:`allocator.envs.ReplayEnv`: ``"default"``, ``"weighted-vote"``
            or ``"last-arm"``); the evaluator reads it.
    """

    name: ClassVar[str]
    knob: ClassVar[str | None] = None
    default_sweep: ClassVar[tuple[Any, ...]] = ()
    deployable: ClassVar[bool] = True
    stochastic: ClassVar[bool] = False
    answer_rule: ClassVar[str] = "default"

    @abstractmethod
    def act(self, state: StateBatch, mask: np.ndarray) -> np.ndarray:
        """Choose one action per state.

        Args:
            state: ``B`` query states.
            mask: allowed actions, bool array of shape (B, n): ``A + 3`` actions, or
                more in a layout with parallel widths (see :mod:`allocator.actions`;
                a policy that does not launch waves never picks those); STOP is always
                allowed.

        Returns:
            int64 array of shape (B,), each an allowed action.
        """

    def probabilities(self, state: StateBatch, mask: np.ndarray) -> np.ndarray:
        """Probability of each action per state, shape (B, A + 3).

        Deterministic policies put all mass on :meth:`act`'s choice; stochastic ones
        override this (off-policy estimators need it).
        """
        actions = self.act(state, mask)
        out = np.zeros(mask.shape, dtype=np.float64)
        out[np.arange(len(actions)), actions] = 1.0
        return out

    def act_one(self, state: QueryState, mask: np.ndarray) -> int:
        """One decision on one query's state: the runtime's path (a session's next action).

        The same decision as :meth:`act` on ``state.to_batch()``; policies with a faster
        single-state path (the learned one) override it.

        Args:
            state: the query's state.
            mask: allowed actions, bool array of shape (A + 3,).
        """
        return int(self.act(state.to_batch(), np.asarray(mask, dtype=bool)[None, :])[0])

    def decision_function(self, n_arms: int, widths: tuple[int, ...] = DEFAULT_WIDTHS
                          ) -> Callable[[QueryState, int], int]:
        """What a session calls for each decision: ``decide(state, allowed) -> action``.

        ``allowed`` is the mask as an int bit set (bit ``a`` set: action ``a`` allowed).
        A session binds the function once, when it starts, so a policy can resolve what
        it needs up front (the learned policy: its loaded network, kept for the whole
        session). By default it calls :meth:`act_one` with the mask as a bool array.

        A session passes ``widths`` only when its layout has parallel widths (so a policy
        overriding this with ``decision_function(self, n_arms)`` keeps working in the
        default layout); the mask then has ``n_actions(n_arms, widths)`` actions.

        Args:
            n_arms: the arms of the states it will see.
            widths: the parallel widths of the layout (see :mod:`allocator.actions`).
        """
        size = n_actions(n_arms, widths)

        def decide(state: QueryState, allowed: int) -> int:
            return self.act_one(state, mask_of_bits(allowed, size))

        return decide

    def with_knob(self, value: Any) -> Policy:
        """A copy with the knob set to ``value``."""
        if self.knob is None:
            raise TypeError(f"policy {self.name!r} has no knob to sweep")
        return dataclasses.replace(self, **{self.knob: value})  # type: ignore[type-var]

    def describe(self) -> str:
        """``name(field=value, ...)``, for tables and reports."""
        fields = ", ".join(f"{f.name}={getattr(self, f.name)!r}"
                           for f in dataclasses.fields(self))  # type: ignore[arg-type]
        return f"{self.name}({fields})"
