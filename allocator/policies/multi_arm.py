"""Multi-arm baselines: arms in turn, a vote cascade, a router on the predicted accuracy.

=================  =====================================================  ===============
name               decides                                                knob
=================  =====================================================  ===============
``round-robin``    the arms in turn; stops on Adaptive-Consistency's      ``max_samples``
                   Beta rule on the pooled votes, or (with ``tau``) once
                   a verified candidate scores ``>= tau``
=================  =====================================================  ===============

All decide for a whole batch in a few numpy operations per arm, VERIFY only where VERIFY
is allowed, and STOP where none of their SAMPLEs is allowed: they never return a masked
action.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from allocator.actions import STOP, sample_action, verify_action
from allocator.errors import ParameterError
from allocator.featurizer import StateBatch
from allocator.policies._common import check_fraction, check_int, check_mask, leader_votes
from allocator.policies.base import Policy
from allocator.policies.registry import register_policy
from allocator.policies.self_consistency import beta_stop_probability
from allocator.policies.verifier import accepted, check_score, verify_pending

__all__ = ["RoundRobin", "check_arms", "resolve_arms"]


def _owner(policy: Policy) -> str:
    return f"{type(policy).__name__} ({policy.name!r})"


def check_arms(owner: str, arms: object) -> None:
    """Raise :class:`ParameterError` unless ``arms`` is a tuple of distinct ints >= 0."""
    ok = isinstance(arms, tuple) and all(
        isinstance(a, numbers.Integral) and not isinstance(a, bool) and a >= 0 for a in arms)
    if not ok or len(set(arms)) != len(arms):  # type: ignore[arg-type]
        raise ParameterError(owner, "arms", "a tuple of distinct arm indices >= 0 (empty: "
                             "every arm, in index order)", arms)


def resolve_arms(owner: str, arms: tuple[int, ...], state: StateBatch) -> tuple[int, ...]:
    """``arms``, or every arm of the state when empty; each checked against the state.

    Raises:
        ParameterError: an arm is not one of the state's A arms.
    """
    n_arms = np.shape(state.samples)[1]
    if not arms:
        return tuple(range(n_arms))
    if max(arms) >= n_arms:
        raise ParameterError(owner, "arms", f"arm indices < {n_arms} (the state has "
                             f"{n_arms} arms)", arms)
    return arms


def _check_optional(owner: str, name: str, value: object, check: object) -> None:
    if value is not None:
        check(owner, name, value)  # type: ignore[operator]


def _in_turn(state: StateBatch, mask: np.ndarray, arms: tuple[int, ...]) -> np.ndarray:
    """Per state, SAMPLE of the arm whose turn it is (the next allowed one), else STOP.

    Turn ``t`` (the samples drawn from ``arms`` so far) goes to ``arms[t % m]``; where its
    SAMPLE is masked (its pool is empty), to the next arm in the cycle that is allowed.
    """
    samples = np.asarray(state.samples)
    turn = samples[:, list(arms)].sum(axis=1).astype(np.int64)
    actions = np.full(len(turn), STOP, dtype=np.int64)
    open_ = np.ones(len(turn), dtype=bool)
    order = np.array([sample_action(a) for a in arms], dtype=np.int64)
    rows = np.arange(len(turn))
    for offset in range(len(arms)):
        action = order[(turn + offset) % len(arms)]
        take = open_ & mask[rows, action]
        actions[take] = action[take]
        open_ &= ~take
    return actions


@register_policy
@dataclass(frozen=True)
class RoundRobin(Policy):
    """The arms in turn, under a stopping rule, up to ``max_samples`` samples in all.

    Turn ``t`` samples ``arms[t % m]`` (the next arm whose pool is not empty, where that
    one's is). Without ``tau`` it stops when Adaptive-Consistency's Beta rule on the
    *pooled* votes of every arm reaches ``threshold`` (see
    :class:`~allocator.policies.AdaptiveConsistency`); the environment answers with the
    majority of all votes. With ``tau`` (a log with verifier scores) it VERIFYs each new
    candidate and stops once a verified candidate scores ``>= tau`` (the environment then
    answers with the best verified candidate): "take the arms in turn until a proof
    checks"; ``threshold`` then adds the vote rule as a second way to stop (None: scores
    only).

    Args:
        max_samples: most samples over all arms (>= 1); the knob (the budget).
        threshold: the Beta rule's stop probability in (0, 1], or None (no vote rule).
        tau: the score that accepts a verified candidate, or None (no verifier).
        arms: the arms, in turn order (empty: every arm, in index order).
    """

    name: ClassVar[str] = "round-robin"
    knob: ClassVar[str | None] = "max_samples"
    default_sweep: ClassVar[tuple[int, ...]] = (1, 2, 3, 4, 6, 8, 10, 12, 16, 20, 24, 32, 40)

    max_samples: int = 40
    threshold: float | None = 0.95
    tau: float | None = None
    arms: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        owner = _owner(self)
        check_int(owner, "max_samples", self.max_samples, 1)
        _check_optional(owner, "threshold", self.threshold,
                        lambda o, n, v: check_fraction(o, n, v, open_low=True))
        _check_optional(owner, "tau", self.tau, check_score)
        check_arms(owner, self.arms)

    def act(self, state: StateBatch, mask: np.ndarray) -> np.ndarray:
        """VERIFY what is pending (with ``tau``); SAMPLE the arm in turn until a rule
        stops it; else STOP."""
        owner = _owner(self)
        arms = resolve_arms(owner, self.arms, state)
        mask = check_mask(owner, state, mask, 0)
        done = np.zeros(state.batch_size, dtype=bool)
        if self.threshold is not None:
            voted, top1, top2 = leader_votes(state)
            probability = beta_stop_probability(top1, top2, self.max_samples)
            done |= (voted > 0) & (probability >= self.threshold)
        if self.tau is not None:
            done |= accepted(state, self.tau)
        total = np.asarray(state.samples)[:, list(arms)].sum(axis=1)
        actions = np.where(done | (total >= self.max_samples), STOP,
                           _in_turn(state, mask, arms))
        if self.tau is not None:
            verify = ~accepted(state, self.tau) & verify_pending(state, mask)
            actions[verify] = verify_action(np.shape(state.samples)[1])
        return actions.astype(np.int64)
