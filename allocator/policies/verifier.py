"""Verifier-aware baselines: until-verified, best-of-N by score, the score-weighted vote.

Each samples one arm (field ``arm``) and VERIFYs at ``verify_cost`` per newly verified
candidate, as :class:`allocator.envs.ReplayEnv` counts it; each STOPs where its SAMPLE is
masked and VERIFYs only where VERIFY is allowed (a drawn candidate with a score is still
unverified), so none returns a masked action. On a log without scores VERIFY is always
masked and they reduce to fixed-N; the evaluator does not run them there (their sweep
builders raise ``NotApplicable``). Each class's docstring gives its rule and reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from allocator._checks import is_real
from allocator.actions import verify_action
from allocator.errors import ParameterError
from allocator.featurizer import StateBatch
from allocator.policies._common import check_int, check_mask, sample_or_stop
from allocator.policies.base import Policy
from allocator.policies.registry import register_policy
from allocator.policies.self_consistency import FixedN

__all__ = ["BestOfN", "UntilVerified", "WeightedVote", "accepted", "check_score",
           "verify_pending"]


def _owner(policy: Policy) -> str:
    return f"{type(policy).__name__} ({policy.name!r})"


def check_score(owner: str, name: str, value: object) -> None:
    """Raise :class:`ParameterError` unless ``value`` is a finite real number (a score)."""
    if not is_real(value) or not np.isfinite(float(value)):
        raise ParameterError(owner, name, "a finite number (a verifier score)", value)


def verify_pending(state: StateBatch, mask: np.ndarray) -> np.ndarray:
    """Where VERIFY is allowed and some drawn candidate is not verified yet, shape (B,).

    In the environments VERIFY is allowed only while a drawn candidate with a score is
    unverified; the second condition makes the rule read the same on any state.
    """
    drawn = np.asarray(state.samples).sum(axis=1) + np.asarray(state.refines)
    return mask[:, verify_action(np.shape(state.samples)[1])] & (
        drawn > np.asarray(state.verified))


def accepted(state: StateBatch, tau: float) -> np.ndarray:
    """Where a verified candidate with an answer scores ``>= tau``, shape (B,)."""
    best = np.asarray(state.best_score, dtype=np.float64)
    return np.greater_equal(best, tau, where=~np.isnan(best), out=np.zeros(len(best), bool))


@register_policy
@dataclass(frozen=True)
class UntilVerified(Policy):
    """Sample until a verified candidate scores at least ``tau``, or ``n`` samples.

    After each SAMPLE of ``arm`` it VERIFYs the new candidate (``verify_cost`` per
    candidate, as the environment counts it); it STOPs as soon as a verified candidate
    with an answer scores ``>= tau`` (the final answer is then the best verified
    candidate), or once ``n`` samples are drawn and verified. With a perfect checker
    (scores 0/1, ``tau = 1``) this is "sample until a proof checks"; with a noisy
    verifier ``tau`` trades the verifier's false accepts against more samples. Where the
    log has no score for a candidate, VERIFY is masked and it samples on. On the CodeT
    HumanEval log the verifier is the share of generated tests a program passes (Chen et
    al. 2023, "CodeT: Code Generation with Generated Tests", ICLR 2023).

    Args:
        n: most samples of the arm (>= 1); the knob.
        tau: the score that accepts a candidate (a finite number on the log's score
            scale); the evaluator chooses it on the training queries.
        arm: the arm sampled.
    """

    name: ClassVar[str] = "until-verified"
    knob: ClassVar[str | None] = "n"
    default_sweep: ClassVar[tuple[int, ...]] = FixedN.default_sweep

    n: int = 8
    tau: float = 1.0
    arm: int = 0

    def __post_init__(self) -> None:
        check_int(_owner(self), "n", self.n, 1)
        check_score(_owner(self), "tau", self.tau)
        check_int(_owner(self), "arm", self.arm, 0)

    def act(self, state: StateBatch, mask: np.ndarray) -> np.ndarray:
        """STOP once accepted; else VERIFY what is pending; else SAMPLE(arm) below ``n``."""
        mask = check_mask(_owner(self), state, mask, self.arm)
        done = accepted(state, self.tau)
        drawn = np.asarray(state.samples)[:, self.arm]
        actions = sample_or_stop(~done & (drawn < self.n), mask, self.arm)
        verify = ~done & verify_pending(state, mask)
        actions[verify] = verify_action(np.shape(state.samples)[1])
        return actions


@register_policy
@dataclass(frozen=True)
class BestOfN(FixedN):
    """Best-of-N by verifier score: ``n`` samples of ``arm``, verify all, best score wins.

    The rule of :class:`FixedN` with ``verify=True`` (one VERIFY after the ``n`` samples,
    or once the arm's pool is exhausted; the environment then answers with the
    best-scoring verified candidate; Cobbe et al. 2021, "Training Verifiers to Solve Math
    Word Problems"), registered under its own name so that the evaluator runs it where
    the log has scores, and only there. ``fixed-n`` stays the vote.

    Args:
        n: samples per query (>= 1); the knob.
        arm: the arm sampled.
        verify: must be True (``fixed-n`` is best-of-n without the verifier).
    """

    name: ClassVar[str] = "best-of-n"

    verify: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.verify is not True and not (isinstance(self.verify, np.bool_)
                                            and bool(self.verify)):
            raise ParameterError(_owner(self), "verify",
                                 f"True (without the verifier, {self.name} is fixed-n)",
                                 self.verify)


@register_policy
@dataclass(frozen=True)
class WeightedVote(BestOfN):
    """Score-weighted majority (CISC, Taubenfeld et al. 2025, arXiv 2502.06233).

    The samples and the VERIFY of :class:`BestOfN` (``n`` samples of ``arm``, all
    verified once, ``verify_cost`` each); the final answer is the answer whose verified
    candidates' scores *sum* highest, not the single best-scored candidate: its
    ``answer_rule`` is ``"weighted-vote"``, which the evaluator replays it with (see
    :class:`allocator.envs.ReplayEnv`). CISC weights each sample's vote by the model's own
    confidence; here the weights are the log's verifier scores (expected >= 0). A
    runtime session answers with its own rule (the best verified candidate).

    Args:
        n: samples per query (>= 1); the knob.
        arm: the arm sampled.
        verify: must be True.
    """

    name: ClassVar[str] = "weighted-vote"
    answer_rule: ClassVar[str] = "weighted-vote"
