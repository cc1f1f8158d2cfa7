"""Multi-arm baselines: arms in turn, a vote cascade, a router on the predicted accuracy.

All decide for a whole batch in a few numpy operations per arm, VERIFY only where VERIFY
is allowed, and STOP where none of their SAMPLEs is allowed: they never return a masked
action. Each class's docstring gives its rule and its reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from allocator._checks import check_number, is_int, is_real
from allocator.actions import STOP, sample_action, verify_action
from allocator.errors import ParameterError
from allocator.featurizer import StateBatch
from allocator.policies._common import (
    check_fraction,
    check_int,
    check_mask,
    check_positive,
    leader_votes,
)
from allocator.policies.base import Policy
from allocator.policies.registry import register_policy
from allocator.policies.self_consistency import beta_stop_probability
from allocator.policies.verifier import accepted, check_score, verify_pending

__all__ = ["Cascade", "RoundRobin", "Router", "check_arms", "resolve_arms"]


def _owner(policy: Policy) -> str:
    return f"{type(policy).__name__} ({policy.name!r})"


def check_arms(owner: str, arms: object) -> None:
    """Raise :class:`ParameterError` unless ``arms`` is a tuple of distinct ints >= 0."""
    ok = isinstance(arms, tuple) and all(
        is_int(a, 0) for a in arms)
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
        found = (accepted(state, self.tau) if self.tau is not None
                 else np.zeros(state.batch_size, dtype=bool))
        done = found.copy()
        if self.threshold is not None:
            voted, top1, top2 = leader_votes(state)
            probability = beta_stop_probability(top1, top2, self.max_samples)
            done |= (voted > 0) & (probability >= self.threshold)
        total = np.asarray(state.samples)[:, list(arms)].sum(axis=1)
        actions = np.where(done | (total >= self.max_samples), STOP,
                           _in_turn(state, mask, arms))
        if self.tau is not None:  # verify each new candidate until one is accepted
            verify = ~found & verify_pending(state, mask)
            actions[verify] = verify_action(np.shape(state.samples)[1])
        return actions.astype(np.int64)


@register_policy
@dataclass(frozen=True)
class Cascade(Policy):
    """The vote cascade of Yue et al. (ICLR 2024): escalate while the arm disagrees.

    Yue et al. 2024, "Large Language Model Cascades with Mixture of Thoughts
    Representations for Cost-efficient Reasoning" (ICLR 2024).

    Arms are taken in the order of ``arms`` (the evaluator orders them by mean cost on
    the training queries, cheapest first). From the current arm it draws ``k`` samples
    (fewer where the arm's pool runs out); it accepts, and STOPs, when the arm's leading
    answer holds a share ``>= tau`` of those samples (``arm_leader / samples``: the
    paper's answer consistency, every sample in the denominator, a sample without an
    answer agreeing with none); otherwise it escalates to the next arm. After the last
    arm it STOPs. An arm with an empty pool is skipped.

    Reads ``state.arm_leader`` (see :class:`allocator.featurizer.StateBatch`), the
    per-arm agreement that the pooled votes do not hold.

    Final answer: as in the paper, the majority among the accepting (or last) arm's own
    samples: the policy's ``answer_rule`` is ``"last-arm"``, which the evaluator replays
    it with (see :class:`allocator.envs.ReplayEnv`); the rejected arms' votes do not count. A
    runtime session answers with its own rule (the majority of every vote), which
    differs only when the rejected arms' votes outweigh the accepting arm's leader.

    Args:
        tau: the share of the arm's samples its leader needs to be accepted, in (0, 1];
            the knob.
        k: samples drawn from each arm before judging it (>= 1); chosen on the training
            queries by the evaluator.
        arms: the arms, in escalation order (empty: every arm, in index order).
    """

    name: ClassVar[str] = "cascade"
    knob: ClassVar[str | None] = "tau"
    answer_rule: ClassVar[str] = "last-arm"
    default_sweep: ClassVar[tuple[float, ...]] = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

    tau: float = 0.7
    k: int = 3
    arms: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        owner = _owner(self)
        check_fraction(owner, "tau", self.tau, open_low=True)
        check_int(owner, "k", self.k, 1)
        check_arms(owner, self.arms)

    def act(self, state: StateBatch, mask: np.ndarray) -> np.ndarray:
        """SAMPLE the current arm below ``k``; accept (STOP) or escalate; STOP at the end.

        Raises:
            ParameterError: ``state.arm_leader`` is None (the state's producer does not
                track it), or an arm is not one of the state's.
        """
        owner = _owner(self)
        arms = resolve_arms(owner, self.arms, state)
        mask = check_mask(owner, state, mask, 0)
        if state.arm_leader is None:
            raise ParameterError(
                owner, "state.arm_leader",
                "each arm's leading vote count (StateBatch.arm_leader, filled by "
                "QueryState.to_batch and BatchedReplayVecEnv.state)", None)
        samples = np.asarray(state.samples)
        leader = np.asarray(state.arm_leader)
        actions = np.full(state.batch_size, STOP, dtype=np.int64)
        open_ = np.ones(state.batch_size, dtype=bool)
        for arm in arms:
            drawn = samples[:, arm]
            draw = open_ & (drawn < self.k) & mask[:, sample_action(arm)]
            actions[draw] = sample_action(arm)
            open_ &= ~draw
            # A division, not leader >= tau * drawn: 2 / 3 >= 2 / 3 but (2 / 3) * 3 > 2.
            share = leader[:, arm] / np.maximum(drawn, 1)
            open_ &= ~((drawn > 0) & (share >= self.tau))  # accepted: STOP
        return actions


@register_policy
@dataclass(frozen=True)
class Router(Policy):
    """Route each query to one arm by predicted accuracy per unit price, then sample it
    under Adaptive-Consistency's Beta rule.

    The arm is ``argmax_a prior[a] / prices[a] ** price_weight`` (``state.prior``: the
    difficulty predictor's per-attempt accuracy of each arm on this query; ties go to
    the lower index): with ``price_weight = 1`` the best predicted accuracy per unit
    price, with 0 the best predicted accuracy whatever it costs. Then, as
    :class:`~allocator.policies.AdaptiveConsistency` on that arm, it samples until
    ``P(leader's share > runner-up's) >= threshold`` or ``max_samples`` samples of the
    arm; it STOPs where the arm's SAMPLE is masked (its pool is exhausted).

    Routing on predicted quality and price follows Ding et al. 2025, "BEST-Route:
    Adaptive LLM Routing with Test-Time Optimal Compute" (arXiv 2506.22716); the Beta
    stopping rule is Aggarwal et al. 2023, "Let's Sample Step by Step:
    Adaptive-Consistency for Efficient Reasoning and Coding with LLMs" (EMNLP 2023).

    Args:
        threshold: the Beta rule's stop probability in (0, 1]; the knob.
        max_samples: most samples of the routed arm (>= 1).
        prices: mean price of one sample of each arm (finite, > 0), in arm order; the
            evaluator measures them on the training queries. Empty: equal prices.
        price_weight: the exponent of the price (>= 0).
    """

    name: ClassVar[str] = "router"
    knob: ClassVar[str | None] = "threshold"
    default_sweep: ClassVar[tuple[float, ...]] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99,
                                                  0.999)

    threshold: float = 0.95
    max_samples: int = 40
    prices: tuple[float, ...] = ()
    price_weight: float = 1.0

    def __post_init__(self) -> None:
        owner = _owner(self)
        check_fraction(owner, "threshold", self.threshold, open_low=True)
        check_int(owner, "max_samples", self.max_samples, 1)
        try:
            if not isinstance(self.prices, tuple):
                raise TypeError
            for price in self.prices:
                check_positive(owner, "prices", price)
        except (TypeError, ParameterError):
            raise ParameterError(owner, "prices", "a tuple of finite prices > 0, one per "
                                 "arm (empty: equal prices)", self.prices) from None
        if not is_real(self.price_weight):
            raise ParameterError(owner, "price_weight", "a finite number >= 0",
                                 self.price_weight)
        check_number(owner, "price_weight", self.price_weight)

    def route(self, state: StateBatch) -> np.ndarray:
        """The arm each state is routed to, int64 of shape (B,).

        Raises:
            ParameterError: ``prices`` does not have one price per arm of the state.
        """
        n_arms = np.shape(state.samples)[1]
        prices = np.ones(n_arms) if not self.prices else np.asarray(self.prices, float)
        if prices.shape != (n_arms,):
            raise ParameterError(_owner(self), "prices",
                                 f"one price per arm ({n_arms} arms)", self.prices)
        value = np.asarray(state.prior, dtype=np.float64) / prices ** self.price_weight
        return np.argmax(value, axis=1).astype(np.int64)

    def act(self, state: StateBatch, mask: np.ndarray) -> np.ndarray:
        """SAMPLE the routed arm until the Beta rule or ``max_samples`` stops it."""
        mask = check_mask(_owner(self), state, mask, 0)
        arm = self.route(state)
        rows = np.arange(state.batch_size)
        voted, top1, top2 = leader_votes(state)
        probability = beta_stop_probability(top1, top2, self.max_samples)
        confident = (voted > 0) & (probability >= self.threshold)
        drawn = np.asarray(state.samples)[rows, arm]
        action = arm + 1  # SAMPLE(arm)
        want = (drawn < self.max_samples) & ~confident & mask[rows, action]
        return np.where(want, action, STOP).astype(np.int64)
