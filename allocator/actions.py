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
output layout does not depend on the log. :class:`ActionLayout` names the positions for
``A`` arms.

The mask rule, for the session and both replay environments (each says what is
*available*: an arm served and under its cap or with samples left in its pool; a
refinement the executor or the log can give; candidates to verify):

- ``STOP`` is always allowed;
- ``SAMPLE(arm)`` where the arm is available and there is *room* (fewer attempts, samples
  and refinements, than ``max_samples``; always without a cap);
- ``REFINE`` where a refinement is available and there is room;
- ``VERIFY`` where verification is available (room does not matter: it draws nothing).

:meth:`ActionLayout.allowed_bits` (one state, as a bit set),
:meth:`ActionLayout.allowed_mask` (one state, as a bool array) and
:meth:`ActionLayout.allowed_masks` (a batch of states, as bool arrays) apply it. A mask
is a bool array of shape (A + 3,) (or (B, A + 3)); a session's decision takes one as an
int bit set instead (bit ``a`` set: action ``a`` allowed): :func:`mask_bits` and
:func:`mask_of_bits` convert.
:class:`Action` names an index for an executor (``Action.of_index``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np

__all__ = ["STOP", "Action", "ActionLayout", "action_layout", "action_names", "has_room",
           "mask_bits", "mask_of_bits", "n_actions", "refine_action", "sample_action",
           "verify_action"]

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


def has_room(drawn: Any, max_samples: int | None) -> Any:
    """Whether another attempt may be drawn: fewer than ``max_samples`` were (no cap: yes).

    ``drawn`` is a count (a bool is returned) or an array of counts (a bool array).
    """
    return max_samples is None or drawn < max_samples


class ActionLayout:
    """The action positions for ``n_arms`` arms, and the mask rule of the module docstring.

    Get one with :func:`action_layout` (cached).

    Attributes:
        n_arms: number of arms ``A``.
        n: number of actions (``A + 3``).
        stop: the index of STOP.
        samples: the slice of the SAMPLE actions (``SAMPLE(arm)`` is ``samples.start +
            arm``).
        refine: the index of REFINE.
        verify: the index of VERIFY.
        sample_bits: per arm, the bit of its SAMPLE action.
    """

    def __init__(self, n_arms: int) -> None:
        self.n_arms = n_arms
        self.n = n_actions(n_arms)
        self.stop = STOP
        self.samples = slice(sample_action(0), sample_action(n_arms))
        self.refine = refine_action(n_arms)
        self.verify = verify_action(n_arms)
        self.sample_bits = tuple(1 << sample_action(arm) for arm in range(n_arms))
        self._stop_bit = 1 << STOP
        self._refine_bit = 1 << self.refine
        self._verify_bit = 1 << self.verify

    def arm_of(self, action: int) -> int:
        """The arm a SAMPLE action draws from (-1 for any other action)."""
        arm = action - self.samples.start
        return arm if 0 <= arm < self.n_arms else -1

    def allowed_bits(self, sample_bits: int, *, room: bool, refine: bool,
                     verify: bool) -> int:
        """The mask rule on one state, as a bit set (bit ``a``: action ``a`` allowed).

        Args:
            sample_bits: the :attr:`sample_bits` of the available arms, or-ed.
            room: whether another attempt may be drawn (:func:`has_room`).
            refine: whether a refinement is available.
            verify: whether verification is available.
        """
        allowed = self._stop_bit
        if room:
            allowed |= sample_bits
            if refine:
                allowed |= self._refine_bit
        if verify:
            allowed |= self._verify_bit
        return allowed

    def allowed_mask(self, sample: np.ndarray | list[bool], *, room: bool, refine: bool,
                     verify: bool) -> np.ndarray:
        """The mask rule on one state, as a bool array of shape (A + 3,) (what
        :meth:`allowed_bits` gives; element writes: faster than :meth:`allowed_masks` on one
        state).

        Args:
            sample: whether each arm is available.
            room: whether another attempt may be drawn (:func:`has_room`).
            refine: whether a refinement is available.
            verify: whether verification is available.
        """
        mask = np.zeros(self.n, dtype=bool)
        mask[self.stop] = True
        if room:
            mask[self.samples] = sample
            mask[self.refine] = refine
        mask[self.verify] = verify
        return mask

    def allowed_masks(self, out: np.ndarray, sample: np.ndarray, *,
                      room: np.ndarray | bool | None, refine: np.ndarray | bool,
                      verify: np.ndarray | bool) -> np.ndarray:
        """The mask rule on a batch of states (or one), written into ``out``.

        Args:
            out: bool, shape (B, A + 3) (or (A + 3,)): the masks, overwritten.
            sample: whether each arm is available, shape (B, A) (or (A,)).
            room: whether another attempt may be drawn, shape (B,) (or a bool); None: no
                cap, always.
            refine: whether a refinement is available, shape (B,) (or a bool).
            verify: whether verification is available, shape (B,) (or a bool).

        Returns:
            ``out``.
        """
        out[..., self.stop] = True
        out[..., self.samples] = sample
        out[..., self.refine] = refine
        if room is not None:
            out[..., self.samples.start : self.refine + 1] &= np.asarray(room)[..., None]
        out[..., self.verify] = verify
        return out


def action_layout(n_arms: int) -> ActionLayout:
    """The :class:`ActionLayout` for ``n_arms`` arms (cached: treat it as read-only)."""
    layout = _LAYOUTS.get(n_arms)
    if layout is None:
        layout = _LAYOUTS[n_arms] = ActionLayout(n_arms)
    return layout


_LAYOUTS: dict[int, ActionLayout] = {}


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
