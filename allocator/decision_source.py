"""What a :class:`~allocator.session.Session` decides with: the decision-source protocol.

A session asks its source for the policy, the arm names, the cost unit, the
:class:`~allocator.actions.Action` of an index, the prior of a query and the sample caps.
Two classes implement it: :class:`allocator.oracle.BudgetOracle` (a bundle's policy) and
:class:`allocator.executors.PolicyOracle` (any registered baseline). Both open their
sessions with :func:`allocator.session.open_session`, where the arguments they share are
checked once.

This module imports numpy and :mod:`allocator.actions` only: the session and both sources
import it, and it imports none of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

from allocator.actions import Action

__all__ = ["DecidingPolicy", "DecisionSource"]


@runtime_checkable
class DecidingPolicy(Protocol):
    """A policy a session can ask: ``act_one(state, mask) -> action index``.

    A :class:`~allocator.policies.Policy` is one; so is the learned policy. A policy may
    also offer ``decision_function(n_arms, widths=...)`` (a faster ``(state, allowed
    bits) -> index``; see :meth:`allocator.policies.Policy.decision_function`), which the
    session prefers; ``widths`` is passed only for a layout with parallel widths.
    """

    def act_one(self, state: Any, mask: np.ndarray) -> int:
        """The action index chosen for one state under a bool mask of shape (n,) (``A + 3``
        actions without parallel widths)."""
        ...


@runtime_checkable
class DecisionSource(Protocol):
    """What a :class:`~allocator.session.Session` reads of the object that opened it.

    Attributes:
        arms: the arm names, in the policy's arm order.
        cost_unit: the log units one cost unit of the policy's state stands for.
        policy: the deciding policy.
        widths: the parallel widths of the action layout (optional: a source without it
            decides in the default layout, ``(1,)``; see :mod:`allocator.actions`).
    """

    @property
    def arms(self) -> tuple[str, ...]:
        """The arm names, in the policy's arm order."""
        ...

    @property
    def cost_unit(self) -> float:
        """The log units of one cost unit (the policy sees costs divided by it)."""
        ...

    @property
    def policy(self) -> DecidingPolicy:
        """The deciding policy."""
        ...

    def action(self, index: int) -> Action:
        """The :class:`~allocator.actions.Action` of an action index."""
        ...

    def prior_for(self, query: str | None = None, metadata: Mapping[str, Any] | None = None,
                  *, prior: Any = None, owner: str = ...) -> np.ndarray:
        """The per-arm prior the policy sees for one query, shape (A,); an explicit
        ``prior`` wins (checked, errors naming ``owner``)."""
        ...

    def sample_caps(self, max_samples: int | None = None,
                    max_samples_per_arm: Mapping[str, int] | None = None, *,
                    owner: str = ...) -> np.ndarray:
        """The most samples per arm a session allows, int64 over :attr:`arms` (-1: no
        cap), given the checked ``max_samples`` and the caller's per-arm caps."""
        ...
