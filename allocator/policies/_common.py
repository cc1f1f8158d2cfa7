"""Shared pieces of the baseline policies: field validation and the sample-or-stop step.

Private: the baselines import these; users do not need them.
"""

from __future__ import annotations

import numpy as np

from allocator import _checks
from allocator.actions import STOP, n_actions, sample_action
from allocator.errors import ParameterError
from allocator.featurizer import StateBatch

__all__ = ["check_fraction", "check_int", "check_mask", "check_positive", "leader_votes",
           "sample_or_stop"]


def check_int(owner: str, name: str, value: object, minimum: int) -> None:
    """Raise :class:`ParameterError` unless ``value`` is an integer ``>= minimum``."""
    _checks.check_int(owner, name, value, minimum=minimum)


def check_fraction(owner: str, name: str, value: object, *, low: float = 0.0,
                   high: float = 1.0, open_low: bool = False) -> None:
    """Raise :class:`ParameterError` unless ``value`` is a real number in the interval.

    The interval is ``[low, high]``, or ``(low, high]`` with ``open_low``.
    """
    bracket = "(" if open_low else "["
    ok = _checks.is_real(value)
    if ok:
        number = float(value)  # type: ignore[arg-type]
        ok = (number > low if open_low else number >= low) and number <= high
    if not ok:
        raise ParameterError(owner, name, f"a number in {bracket}{low}, {high}]", value)


def check_positive(owner: str, name: str, value: object) -> None:
    """Raise :class:`ParameterError` unless ``value`` is a finite real number > 0."""
    if not _checks.is_real(value):
        raise ParameterError(owner, name, "a finite number > 0", value)
    _checks.check_number(owner, name, value, strict=True)


def check_mask(owner: str, state: StateBatch, mask: np.ndarray, arm: int) -> np.ndarray:
    """Check the mask's shape against the state and the policy's arm; return it as bool.

    A layout with parallel widths (:mod:`allocator.actions`) appends ``A`` actions per
    extra width after the first ``A + 3``, so ``(B, A + 3 + k * A)`` is accepted too: the
    first ``A + 3`` positions never depend on the widths.

    Raises:
        ParameterError: the mask is not (B, A + 3 + k * A), or ``arm`` is not one of the
            A arms.
    """
    mask = np.asarray(mask, dtype=bool)
    batch, arms = np.shape(state.samples)
    base = n_actions(arms)
    if (mask.ndim != 2 or mask.shape[0] != batch or mask.shape[1] < base
            or (mask.shape[1] - base) % max(arms, 1)):
        raise ParameterError(owner, "mask", f"a bool array of shape ({batch}, {base}) (or "
                             f"({batch}, {base} + k * {arms}) in a layout with k extra "
                             "parallel widths)", mask.shape)
    if arm >= arms:
        raise ParameterError(owner, "arm", f"an arm index < {arms} (the state has {arms} arms)",
                             arm)
    return mask


def sample_or_stop(want: np.ndarray, mask: np.ndarray, arm: int) -> np.ndarray:
    """SAMPLE(arm) where wanted and allowed, STOP elsewhere, as int64 of shape (B,).

    A wanted but masked SAMPLE (the arm's pool is exhausted, or the episode's cap on
    attempts is reached) becomes STOP.
    """
    action = sample_action(arm)
    return np.where(want & mask[:, action], action, STOP).astype(np.int64)


def leader_votes(state: StateBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(voted, top1, top2)`` of every state, each shape (B,).

    From ``state.stats`` when the caller maintains them; otherwise computed from the
    votes matrix (only these three: the rest of :class:`VoteStats` costs as much again).
    """
    if state.stats is not None:
        return state.stats.voted, state.stats.top1, state.stats.top2
    votes = np.asarray(state.votes, dtype=np.float64)
    batch, width = votes.shape
    if width < 2:
        top1 = votes[:, 0] if width else np.zeros(batch)
        return top1.copy(), top1, np.zeros(batch)
    part = np.partition(votes, width - 2, axis=1)
    return votes.sum(axis=1), part[:, -1], part[:, -2]
