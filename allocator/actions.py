"""The action layout shared by the environments, the policies and the runtime.

For a problem with ``A`` arms there are ``A + 3`` actions, always in this order:

======  ==============  =====================================================
index   action          meaning
======  ==============  =====================================================
0       ``STOP``        return the final answer
1..A    ``SAMPLE(arm)`` draw one more independent attempt from arm ``index - 1``
A + 1   ``REFINE``      draw a refinement conditioned on earlier attempts
A + 2   ``VERIFY``      pay for verifier scores of the drawn, unverified candidates
======  ==============  =====================================================

Actions a log (or an executor) cannot support are masked, never removed, so a policy's
output layout does not depend on the log. A mask is a bool array of shape (A + 3,) (or
(B, A + 3)); a session's decision takes one as an int bit set instead (bit ``a`` set:
action ``a`` allowed): :func:`mask_bits` and :func:`mask_of_bits` convert.
:class:`Action` names an index for an executor (``Action.of_index``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

__all__ = ["STOP", "Action", "action_names", "mask_bits", "mask_of_bits", "n_actions",
           "refine_action", "sample_action", "verify_action"]

STOP: Final = 0


def n_actions(n_arms: int) -> int:
    """Number of actions for ``n_arms`` arms."""
    return n_arms + 3


def sample_action(arm: int) -> int:
    """The index of SAMPLE(arm)."""
    return 1 + arm


def refine_action(n_arms: int) -> int:
    """The index of REFINE."""
    return n_arms + 1


def verify_action(n_arms: int) -> int:
    """The index of VERIFY."""
    return n_arms + 2


def action_names(arms: tuple[str, ...] | list[str]) -> list[str]:
    """Readable names of every action, in index order."""
    return ["STOP", *(f"SAMPLE({arm})" for arm in arms), "REFINE", "VERIFY"]


def mask_bits(mask: np.ndarray) -> int:
    """The bit set of a bool mask of shape (n_actions,): bit ``a`` set where allowed."""
    return sum(1 << int(action) for action in np.flatnonzero(mask))


def mask_of_bits(allowed: int, n: int) -> np.ndarray:
    """The bool mask of shape (``n``,) of a bit set (bits beyond ``n`` are ignored)."""
    return np.array([(allowed >> action) & 1 for action in range(n)], dtype=bool)


@dataclass(frozen=True)
class Action:
    """What the policy asks the executor to do next.

    Attributes:
        kind: ``"stop"``, ``"sample"``, ``"refine"`` or ``"verify"``.
        arm: the arm to sample (``kind == "sample"``), else None.
        index: the action's index in the bundle's layout (see :mod:`allocator.actions`).
    """

    kind: str
    arm: str | None
    index: int

    @classmethod
    def of_index(cls, index: int, arms: tuple[str, ...]) -> Action:
        """The action of an index in the layout of :mod:`allocator.actions`.

        Args:
            index: the action index, in ``[0, A + 3)``.
            arms: the arm names, in the policy's arm order.
        """
        if index == STOP:
            return cls("stop", None, index)
        if index < refine_action(len(arms)):
            return cls("sample", arms[index - sample_action(0)], index)
        kind = "refine" if index == refine_action(len(arms)) else "verify"
        return cls(kind, None, index)

    def __str__(self) -> str:
        return f"SAMPLE({self.arm})" if self.kind == "sample" else self.kind.upper()
