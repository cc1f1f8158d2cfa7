"""Self-consistency baselines: fixed-N, Adaptive-Consistency, ESC, confidence threshold.

Each samples one arm (field ``arm``) until its stopping rule fires, then STOPs; the
environment (or the runtime) returns the majority vote. All decide for a whole batch in
a few numpy operations, and all STOP where their SAMPLE is masked (the arm's pool is
exhausted, or the episode's cap on attempts is reached): they never return a masked
action. Each class's docstring gives its rule and its reference.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import numpy as np

from allocator.actions import STOP, verify_action
from allocator.errors import ParameterError
from allocator.featurizer import StateBatch
from allocator.policies._common import (
    check_fraction,
    check_int,
    check_mask,
    leader_votes,
    sample_or_stop,
)
from allocator.policies.base import Policy
from allocator.policies.registry import register_policy

__all__ = [
    "AdaptiveConsistency",
    "ConfidenceThreshold",
    "EarlyStoppingSC",
    "FixedN",
    "beta_stop_probability",
]


def _owner(policy: Policy) -> str:
    return f"{type(policy).__name__} ({policy.name!r})"


def _arm_samples(state: StateBatch, arm: int) -> np.ndarray:
    return np.asarray(state.samples)[:, arm]


# --------------------------------------------------------------------------- fixed-N
@register_policy
@dataclass(frozen=True)
class FixedN(Policy):
    """Self-consistency with a fixed number of samples (best-of-N with ``verify``).

    Draws ``n`` samples from ``arm``, then STOPs: the environment takes the majority vote
    (Wang et al. 2023, "Self-Consistency Improves Chain of Thought Reasoning in Language
    Models", ICLR 2023). With ``verify=True``, after the ``n`` samples (or once the arm's pool is
    exhausted) it VERIFYs once where VERIFY is allowed and nothing has been verified yet,
    then STOPs: the final answer is then the best verified candidate (best-of-N with a
    verifier, as in Cobbe et al. 2021, "Training Verifiers to Solve Math Word Problems").

    Args:
        n: samples per query (>= 1); the knob.
        arm: the arm sampled.
        verify: VERIFY the candidates once before stopping.
    """

    name: ClassVar[str] = "fixed-n"
    knob: ClassVar[str | None] = "n"
    default_sweep: ClassVar[tuple[int, ...]] = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24,
                                                32, 40)

    n: int = 5
    arm: int = 0
    verify: bool = False

    def __post_init__(self) -> None:
        check_int(_owner(self), "n", self.n, 1)
        check_int(_owner(self), "arm", self.arm, 0)
        if not isinstance(self.verify, bool | np.bool_):
            raise ParameterError(_owner(self), "verify", "a bool", self.verify)

    def act(self, state: StateBatch, mask: np.ndarray) -> np.ndarray:
        """SAMPLE(arm) below ``n`` samples, then (VERIFY once, if ``verify``) STOP."""
        mask = check_mask(_owner(self), state, mask, self.arm)
        actions = sample_or_stop(_arm_samples(state, self.arm) < self.n, mask, self.arm)
        if self.verify:
            verify = verify_action(np.shape(state.samples)[1])
            check = ((actions == STOP) & (np.asarray(state.verified) == 0)
                     & mask[:, verify])
            actions[check] = verify
        return actions


# ------------------------------------------------------------- adaptive consistency
def _reference_probability(a: float, b: float, quad: object) -> float:
    """The ``BetaStoppingCriteria`` integral of the ``adaptiveconsistency`` package.

    ``P(p > 1/2)`` for ``p ~ Beta(a + 1, b + 1)``, computed exactly as the reference
    does (two ``scipy.integrate.quad`` calls over the same integrand, same floating-point
    operations), so that the decisions agree to the last bit. -1 (never stop) where the
    integration fails, as the reference does.
    """

    def density(x: float) -> float:
        return x**(a) * (1 - x)**(b)

    try:
        return quad(density, 0.5, 1)[0] / quad(density, 0, 1)[0]  # type: ignore[operator]
    except Exception:  # the reference catches everything and does not stop
        return -1.0


@lru_cache(maxsize=8)
def _beta_table(size: int) -> np.ndarray:
    """``table[a, b]``: the reference's stop probability for ``b <= a``, ``a + b <= size``.

    Built once per size (441 integrals for ``size=40``, about 10 ms) and read-only.
    Entries outside the triangle are NaN (never read: ``top2 <= top1``).
    """
    from scipy.integrate import quad  # scipy comes with scikit-learn; imported lazily

    table = np.full((size + 1, size + 1), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quad's accuracy warnings; the values stay as is
        for a in range(size + 1):
            for b in range(min(a, size - a) + 1):
                table[a, b] = _reference_probability(float(a), float(b), quad)
    table.flags.writeable = False
    return table


def beta_stop_probability(top1: np.ndarray, top2: np.ndarray,
                          min_size: int = 40) -> np.ndarray:
    """Adaptive-Consistency's stop probability for vote counts of leader and runner-up.

    ``P(p > 1/2)`` with ``p ~ Beta(top1 + 1, top2 + 1)``: the posterior probability that
    the leader's share exceeds the runner-up's when only these two answers are compared
    under a uniform prior (Aggarwal et al. 2023, Beta stopping criterion). Mathematically
    this is ``P(Binomial(top1 + top2 + 1, 1/2) <= top1)``; the values are the reference
    package's numerical integrals (they differ from that closed form by up to 1e-8 for
    counts up to 40), read from a table.

    Args:
        top1: votes of the leading answer, shape (B,).
        top2: votes of the runner-up (0 if none), shape (B,); ``top2 <= top1``.
        min_size: the table covers ``top1 + top2 <= max(min_size, observed)``.

    Returns:
        float64 array of shape (B,).
    """
    a = np.asarray(top1).astype(np.int64)
    b = np.asarray(top2).astype(np.int64)
    needed = int((a + b).max(initial=0))
    size = min_size if needed <= min_size else 1 << (needed - 1).bit_length()
    return _beta_table(size)[a, b]


@register_policy
@dataclass(frozen=True)
class AdaptiveConsistency(Policy):
    """Adaptive-Consistency with the Beta stopping criterion (Aggarwal et al. 2023).

    "Let's Sample Step by Step: Adaptive-Consistency for Efficient Reasoning and Coding
    with LLMs" (EMNLP 2023): after each sample, with ``a`` votes for the leading answer
    and ``b`` for the runner-up, stop when ``P(p > 1/2) >= threshold`` for
    ``p ~ Beta(a + 1, b + 1)`` (see :func:`beta_stop_probability`); otherwise sample
    again, up to ``max_samples`` samples of the arm.

    The rule is the one of the authors' package (``adaptiveconsistency``,
    ``BetaStoppingCriteria(conf_thresh).should_stop(answers)``): no minimum number of
    samples (one answer gives 0.75, so thresholds <= 0.75 stop after one sample), ties
    ``a == b`` give 1/2 up to the integration's rounding, and the probabilities are the
    package's own integrals, so the decisions agree state by state (a test checks every
    state of the date/GPT-3.5 log). Votes are the attempts with an answer; without any
    vote (the package cannot decide: it raises) the policy samples again.

    Args:
        threshold: stop when the posterior probability reaches it, in (0, 1]; the knob.
        max_samples: samples of the arm after which it stops regardless (>= 1); the
            paper's maximum is 40.
        arm: the arm sampled.
    """

    name: ClassVar[str] = "adaptive-consistency"
    knob: ClassVar[str | None] = "threshold"
    default_sweep: ClassVar[tuple[float, ...]] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99,
                                                  0.999)

    threshold: float = 0.95
    max_samples: int = 40
    arm: int = 0

    def __post_init__(self) -> None:
        check_fraction(_owner(self), "threshold", self.threshold, open_low=True)
        check_int(_owner(self), "max_samples", self.max_samples, 1)
        check_int(_owner(self), "arm", self.arm, 0)

    def stop_probability(self, state: StateBatch) -> np.ndarray:
        """The posterior probability the rule compares with ``threshold``, shape (B,)."""
        _, top1, top2 = leader_votes(state)
        return beta_stop_probability(top1, top2, self.max_samples)

    def act(self, state: StateBatch, mask: np.ndarray) -> np.ndarray:
        """SAMPLE(arm) until the Beta criterion or ``max_samples`` stops it."""
        mask = check_mask(_owner(self), state, mask, self.arm)
        voted, top1, top2 = leader_votes(state)
        probability = beta_stop_probability(top1, top2, self.max_samples)
        confident = (voted > 0) & (probability >= self.threshold)
        want = (_arm_samples(state, self.arm) < self.max_samples) & ~confident
        return sample_or_stop(want, mask, self.arm)


# ---------------------------------------------------------------------------- ESC
@register_policy
@dataclass(frozen=True)
class EarlyStoppingSC(Policy):
    """Early-stopping self-consistency (ESC, Li et al. 2024).

    "Escape Sky-high Cost: Early-stopping Self-Consistency for Multi-step Reasoning"
    (ICLR 2024): sample in windows of ``window`` samples; at each window boundary (the
    samples drawn from the arm are a positive multiple of ``window``) stop if the window
    was unanimous, i.e. its ``window`` answers are one and the same answer (an attempt
    without an answer breaks unanimity); otherwise draw the next window, up to
    ``max_samples`` samples. The paper's defaults: ``window=5``, ``max_samples=40``.

    Reads ``state.streak`` (see :class:`allocator.featurizer.StateBatch`): the window
    is unanimous exactly when ``streak >= window`` at the boundary, since only this arm
    is sampled.

    Args:
        window: the window size (>= 1); the knob.
        max_samples: samples of the arm after which it stops regardless (>= 1).
        arm: the arm sampled.
    """

    name: ClassVar[str] = "esc"
    knob: ClassVar[str | None] = "window"
    default_sweep: ClassVar[tuple[int, ...]] = (1, 2, 3, 4, 5, 6, 8, 10, 16, 20)

    window: int = 5
    max_samples: int = 40
    arm: int = 0

    def __post_init__(self) -> None:
        check_int(_owner(self), "window", self.window, 1)
        check_int(_owner(self), "max_samples", self.max_samples, 1)
        check_int(_owner(self), "arm", self.arm, 0)

    def act(self, state: StateBatch, mask: np.ndarray) -> np.ndarray:
        """SAMPLE(arm) until a unanimous window or ``max_samples`` stops it.

        Raises:
            ParameterError: ``state.streak`` is None (the state's producer does not
                track it).
        """
        mask = check_mask(_owner(self), state, mask, self.arm)
        if state.streak is None:
            raise ParameterError(
                _owner(self), "state.streak",
                "the run length of identical latest answers (StateBatch.streak, filled by "
                "QueryState.to_batch; environments must pass it for ESC)", None)
        drawn = _arm_samples(state, self.arm)
        boundary = (drawn > 0) & (drawn % self.window == 0)
        unanimous = boundary & (np.asarray(state.streak) >= self.window)
        want = (drawn < self.max_samples) & ~unanimous
        return sample_or_stop(want, mask, self.arm)


# ---------------------------------------------------------------- confidence threshold
@register_policy
@dataclass(frozen=True)
class ConfidenceThreshold(Policy):
    """Stop once the leading answer holds a share ``>= tau`` of the votes.

    The simplest adaptive self-consistency rule (the "majority" criterion of Aggarwal
    et al. 2023, "Let's Sample Step by Step: Adaptive-Consistency for Efficient Reasoning
    and Coding with LLMs"): after at least ``min_samples`` samples of the arm, stop when
    ``top1 / votes >= tau`` (the featurizer's ``leader_share``: votes are the attempts
    with an answer; no votes never stop); stop at ``max_samples`` regardless.

    Args:
        tau: the share that stops, in (0, 1]; the knob.
        min_samples: samples of the arm before the rule applies (>= 1).
        max_samples: samples of the arm after which it stops regardless
            (>= ``min_samples``).
        arm: the arm sampled.
    """

    name: ClassVar[str] = "confidence-threshold"
    knob: ClassVar[str | None] = "tau"
    default_sweep: ClassVar[tuple[float, ...]] = (0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 0.95, 1.0)

    tau: float = 0.7
    min_samples: int = 3
    max_samples: int = 40
    arm: int = 0

    def __post_init__(self) -> None:
        check_fraction(_owner(self), "tau", self.tau, open_low=True)
        check_int(_owner(self), "min_samples", self.min_samples, 1)
        check_int(_owner(self), "max_samples", self.max_samples, 1)
        if self.max_samples < self.min_samples:
            raise ParameterError(_owner(self), "max_samples",
                                 f">= min_samples ({self.min_samples})", self.max_samples)
        check_int(_owner(self), "arm", self.arm, 0)

    def act(self, state: StateBatch, mask: np.ndarray) -> np.ndarray:
        """SAMPLE(arm) until the leader's share or ``max_samples`` stops it."""
        mask = check_mask(_owner(self), state, mask, self.arm)
        voted, top1, _ = leader_votes(state)
        # A division, not top1 >= tau * voted: 7 / 10 == 0.7 but 0.7 * 10 > 7.
        share = top1 / np.maximum(voted, 1.0)
        drawn = _arm_samples(state, self.arm)
        confident = (drawn >= self.min_samples) & (voted > 0) & (share >= self.tau)
        want = (drawn < self.max_samples) & ~confident
        return sample_or_stop(want, mask, self.arm)
