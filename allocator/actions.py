"""The action layout shared by the environments, the policies and the runtime.

For ``A`` arms the layout is STOP, SAMPLE(arm) for each arm, REFINE, VERIFY (``A + 3``
actions), then, for each extra *width* ``w`` a layout opts into, SAMPLE(arm)×w for each
arm: ``w`` attempts launched as one parallel wave. :class:`ActionLayout` holds the
positions and the mask rule; :class:`Action` names an index for an executor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from allocator._checks import is_int
from allocator.errors import ParameterError

__all__ = ["DEFAULT_WIDTHS", "STOP", "Action", "ActionLayout", "action_layout",
           "action_names", "check_widths", "has_room", "mask_bits", "mask_of_bits",
           "n_actions", "refine_action", "sample_action", "verify_action", "wide_action"]

STOP: Final = 0

#: The widths of a layout that does not opt into parallel waves: one attempt per SAMPLE.
DEFAULT_WIDTHS: Final = (1,)


def check_widths(owner: str, widths: object) -> tuple[int, ...]:
    """``widths`` as a layout's canonical tuple: distinct integers >= 1, ascending, from 1.

    Raises:
        ParameterError: naming ``owner`` when ``widths`` is not such a sequence.
    """
    values = tuple(widths) if isinstance(widths, Sequence) and not isinstance(widths, str) \
        else None
    if (not values or not all(is_int(w, 1) for w in values)
            or list(values) != sorted(set(values)) or values[0] != 1):
        raise ParameterError(owner, "widths", "distinct whole numbers >= 1 in ascending "
                             "order, starting with 1 (e.g. (1, 2, 4))", widths)
    return tuple(int(w) for w in values)


def n_actions(n_arms: int, widths: tuple[int, ...] = DEFAULT_WIDTHS) -> int:
    """Number of actions for ``n_arms`` arms (and the layout's ``widths``)."""
    return n_arms + 3 + n_arms * (len(widths) - 1)


def sample_action(arm: int) -> int:
    """The index of SAMPLE(arm)."""
    return 1 + arm


def refine_action(n_arms: int) -> int:
    """The index of REFINE."""
    return n_arms + 1


def verify_action(n_arms: int) -> int:
    """The index of VERIFY."""
    return n_arms + 2


def wide_action(n_arms: int, arm: int, width_index: int) -> int:
    """The index of SAMPLE(arm)×``widths[width_index]`` (``width_index >= 1``; index 0
    is the plain :func:`sample_action`)."""
    if width_index == 0:
        return sample_action(arm)
    return n_arms + 3 + (width_index - 1) * n_arms + arm


def has_room(drawn: Any, max_samples: int | None) -> Any:
    """Whether another attempt may be drawn: fewer than ``max_samples`` were (no cap: yes).

    ``drawn`` is a count (a bool is returned) or an array of counts (a bool array).
    """
    return max_samples is None or drawn < max_samples


class ActionLayout:
    """The action positions for ``n_arms`` arms and ``widths``, and the mask rule.

    Get one with :func:`action_layout` (cached).

    Positions: 0 is STOP; ``1..A`` are SAMPLE(arm); ``A + 1`` is REFINE; ``A + 2`` is
    VERIFY; then, for each width ``w`` after the first (1), ``A`` actions SAMPLE(arm)×w
    (:func:`wide_action`). The default layout (``widths=(1,)``) has exactly ``A + 3``
    actions, so a layout's first ``A + 3`` positions never depend on its widths.

    Mask rule, for the session and both replay environments (each says what is
    *available*: an arm served and under its cap or with samples left in its pool; a
    refinement the executor or the log can give; candidates to verify):

    - STOP is always allowed;
    - SAMPLE(arm) where the arm is available and there is *room* (fewer attempts,
      samples and refinements, than ``max_samples``; always without a cap);
    - SAMPLE(arm)×w where the arm can give ``w`` more attempts and there is room for
      ``w`` more (the caller decides both: the ``wide`` argument);
    - REFINE where a refinement is available and there is room;
    - VERIFY where verification is available (room does not matter: it draws nothing).

    A mask is a bool array of shape (n,) (or (B, n)); a session's decision takes one as
    an int bit set instead (bit ``a`` set: action ``a`` allowed): :func:`mask_bits` and
    :func:`mask_of_bits` convert.

    Attributes:
        n_arms: number of arms ``A``.
        widths: the widths, ascending from 1.
        n: number of actions.
        stop: the index of STOP.
        samples: the slice of the width-1 SAMPLE actions (``SAMPLE(arm)`` is
            ``samples.start + arm``).
        wide: the slice of the SAMPLE(arm)×w actions (empty for the default widths).
        refine: the index of REFINE.
        verify: the index of VERIFY.
        sample_bits: per arm, the bit of its SAMPLE action.
        wide_bits: per arm, per extra width (``widths[1:]``), the bit of its action.
    """

    def __init__(self, n_arms: int, widths: tuple[int, ...] = DEFAULT_WIDTHS) -> None:
        self.n_arms = n_arms
        self.widths = widths
        self.n = n_actions(n_arms, widths)
        self.stop = STOP
        self.samples = slice(sample_action(0), sample_action(n_arms))
        self.refine = refine_action(n_arms)
        self.verify = verify_action(n_arms)
        self.wide = slice(n_arms + 3, self.n)
        self.sample_bits = tuple(1 << sample_action(arm) for arm in range(n_arms))
        self.wide_bits = tuple(
            tuple(1 << wide_action(n_arms, arm, k) for k in range(1, len(widths)))
            for arm in range(n_arms))
        self._stop_bit = 1 << STOP
        self._refine_bit = 1 << self.refine
        self._verify_bit = 1 << self.verify

    @property
    def has_widths(self) -> bool:
        """Whether the layout offers SAMPLE(arm)×w for some ``w > 1``."""
        return len(self.widths) > 1

    def arm_of(self, action: int) -> int:
        """The arm a SAMPLE action (of any width) draws from (-1 for any other action)."""
        arm = action - self.samples.start
        if 0 <= arm < self.n_arms:
            return arm
        if self.wide.start <= action < self.n:
            return (action - self.wide.start) % self.n_arms
        return -1

    def width_of(self, action: int) -> int:
        """How many attempts a SAMPLE action launches at once (0 for any other action)."""
        if self.samples.start <= action < self.samples.stop:
            return 1
        if self.wide.start <= action < self.n:
            return self.widths[1 + (action - self.wide.start) // self.n_arms]
        return 0

    def sample_of(self, arm: int, width: int) -> int:
        """The index of SAMPLE(arm)×``width`` (``width`` one of :attr:`widths`).

        Raises:
            ParameterError: when ``width`` is not one of the layout's widths.
        """
        if width not in self.widths:
            raise ParameterError("ActionLayout.sample_of", "width",
                                 f"one of the layout's widths {list(self.widths)}", width)
        return wide_action(self.n_arms, arm, self.widths.index(width))

    def allowed_bits(self, sample_bits: int, *, room: bool, refine: bool,
                     verify: bool, wide_bits: int = 0) -> int:
        """The mask rule on one state, as a bit set (bit ``a``: action ``a`` allowed).

        Args:
            sample_bits: the :attr:`sample_bits` of the available arms, or-ed.
            room: whether another attempt may be drawn (:func:`has_room`).
            refine: whether a refinement is available.
            verify: whether verification is available.
            wide_bits: the :attr:`wide_bits` of the SAMPLE(arm)×w actions that can be
                drawn (arm able to give ``w``, room for ``w``), or-ed.
        """
        allowed = self._stop_bit
        if room:
            allowed |= sample_bits | wide_bits
            if refine:
                allowed |= self._refine_bit
        if verify:
            allowed |= self._verify_bit
        return allowed

    def allowed_mask(self, sample: np.ndarray | list[bool], *, room: bool, refine: bool,
                     verify: bool, wide: np.ndarray | None = None) -> np.ndarray:
        """The mask rule on one state, as a bool array of shape (n,) (what
        :meth:`allowed_bits` gives; element writes: faster than :meth:`allowed_masks` on one
        state).

        Args:
            sample: whether each arm is available.
            room: whether another attempt may be drawn (:func:`has_room`).
            refine: whether a refinement is available.
            verify: whether verification is available.
            wide: shape (len(widths) - 1, A): whether SAMPLE(arm)×w can be drawn (arm
                able to give ``w``, room for ``w``); None: none can.
        """
        mask = np.zeros(self.n, dtype=bool)
        mask[self.stop] = True
        if room:
            mask[self.samples] = sample
            mask[self.refine] = refine
            if wide is not None:
                mask[self.wide] = np.asarray(wide, dtype=bool).reshape(-1)
        mask[self.verify] = verify
        return mask

    def allowed_masks(self, out: np.ndarray, sample: np.ndarray, *,
                      room: np.ndarray | bool | None, refine: np.ndarray | bool,
                      verify: np.ndarray | bool, wide: np.ndarray | None = None
                      ) -> np.ndarray:
        """The mask rule on a batch of states (or one), written into ``out``.

        Args:
            out: bool, shape (B, n) (or (n,)): the masks, overwritten.
            sample: whether each arm is available, shape (B, A) (or (A,)).
            room: whether another attempt may be drawn, shape (B,) (or a bool); None: no
                cap, always.
            refine: whether a refinement is available, shape (B,) (or a bool).
            verify: whether verification is available, shape (B,) (or a bool).
            wide: whether SAMPLE(arm)×w can be drawn, shape (B, len(widths) - 1, A) (or
                without B); None: none can.

        Returns:
            ``out``.
        """
        out[..., self.stop] = True
        out[..., self.samples] = sample
        out[..., self.refine] = refine
        if self.has_widths:
            if wide is None:
                out[..., self.wide] = False
            else:
                shape = np.shape(wide)
                out[..., self.wide] = np.reshape(wide, (*shape[:-2], shape[-2] * shape[-1]))
        if room is not None:
            out[..., self.samples.start : self.refine + 1] &= np.asarray(room)[..., None]
            if self.has_widths:
                out[..., self.wide] &= np.asarray(room)[..., None]
        out[..., self.verify] = verify
        return out


def action_layout(n_arms: int, widths: tuple[int, ...] = DEFAULT_WIDTHS) -> ActionLayout:
    """The :class:`ActionLayout` for ``n_arms`` arms and ``widths`` (cached: treat it as
    read-only; ``widths`` as :func:`check_widths` returns them)."""
    key = (n_arms, widths)
    layout = _LAYOUTS.get(key)
    if layout is None:
        layout = _LAYOUTS[key] = ActionLayout(n_arms, widths)
    return layout


_LAYOUTS: dict[tuple[int, tuple[int, ...]], ActionLayout] = {}


def action_names(arms: tuple[str, ...] | list[str],
                 widths: tuple[int, ...] = DEFAULT_WIDTHS) -> list[str]:
    """Readable names of every action, in index order (``SAMPLE(arm)x4`` for a wave of 4)."""
    return ["STOP", *(f"SAMPLE({arm})" for arm in arms), "REFINE", "VERIFY",
            *(f"SAMPLE({arm})x{width}" for width in widths[1:] for arm in arms)]


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
        index: the action's index in the bundle's layout (see :class:`ActionLayout`).
        width: for a sample, how many attempts to launch at once as one wave (1 unless
            the layout has widths); 1 for the other kinds.
    """

    kind: str
    arm: str | None
    index: int
    width: int = 1

    @classmethod
    def of_index(cls, index: int, arms: tuple[str, ...],
                 widths: tuple[int, ...] = DEFAULT_WIDTHS) -> Action:
        """The action of an index in the layout of :class:`ActionLayout`.

        Args:
            index: the action index, in ``[0, n_actions(len(arms), widths))``.
            arms: the arm names, in the policy's arm order.
            widths: the layout's widths.
        """
        layout = action_layout(len(arms), widths)
        if index == STOP:
            return cls("stop", None, index)
        if index == layout.refine:
            return cls("refine", None, index)
        if index == layout.verify:
            return cls("verify", None, index)
        return cls("sample", arms[layout.arm_of(index)], index, layout.width_of(index))

    def __str__(self) -> str:
        if self.kind != "sample":
            return self.kind.upper()
        return f"SAMPLE({self.arm})" + (f"x{self.width}" if self.width > 1 else "")
