"""Stochastic policies: exploration around a base policy, for logging decisions.

Off-policy estimators (:mod:`allocator.training.evaluation.off_policy`) evaluate a policy only on
actions the logging policy could take; :class:`EpsilonGreedy` (``epsilon-greedy``) wraps
any policy, explores, and says exactly how likely each action was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from allocator._checks import check_int
from allocator.errors import ParameterError
from allocator.featurizer import StateBatch
from allocator.policies._common import check_fraction
from allocator.policies.base import Policy
from allocator.policies.registry import POLICIES, register_policy
from allocator.policies.self_consistency import AdaptiveConsistency

__all__ = ["EpsilonGreedy", "sample_actions"]

_OWNER = "EpsilonGreedy ('epsilon-greedy')"


def sample_actions(probabilities: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Draw one action per row of ``probabilities`` by inverting its cumulative sum.

    Args:
        probabilities: shape (B, n_actions), non-negative rows with a positive sum (they
            are normalised by their sum, so rounding errors do not matter).
        uniforms: one number in [0, 1) per row, shape (B,).

    Returns:
        int64 array of shape (B,): row ``i``'s action is the first ``a`` whose cumulative
        probability exceeds ``uniforms[i]``; an action of probability 0 is never drawn.
    """
    cumulative = np.cumsum(np.asarray(probabilities, dtype=np.float64), axis=1)
    thresholds = np.asarray(uniforms, dtype=np.float64) * cumulative[:, -1]
    return np.argmax(cumulative > thresholds[:, None], axis=1).astype(np.int64)


@register_policy
@dataclass(frozen=True)
class EpsilonGreedy(Policy):
    """Follow a base policy with probability ``1 - epsilon``, else explore uniformly.

    Off-policy estimators (:mod:`allocator.training.evaluation.off_policy`) can only evaluate a
    policy
    from decisions a *logging* policy took if the logging policy gives every action the
    evaluated policy might take a probability above zero. A deterministic baseline gives one
    action probability 1 and every other 0, so logs written by it only evaluate itself.
    :class:`EpsilonGreedy` wraps any policy and explores: it follows the base policy with
    probability ``1 - epsilon`` and picks uniformly among the allowed actions otherwise, and it
    says exactly how likely each action was (:meth:`EpsilonGreedy.probabilities`), which is
    what an off-policy log records.

    In every state, with ``k`` allowed actions (the mask's True entries) the probability
    of action ``a`` is ``(1 - epsilon) * base(a | s) + epsilon / k`` if ``a`` is allowed,
    0 otherwise (``base(a | s)`` is the base policy's :meth:`~Policy.probabilities`: 1 on
    its action for a deterministic baseline). So with ``epsilon > 0`` every allowed action
    has probability at least ``epsilon / k``: logs written by this policy support
    off-policy evaluation of any policy (see :mod:`allocator.training.evaluation.off_policy`). With
    ``epsilon = 0`` it is the base policy.

    Randomness: :meth:`EpsilonGreedy.act` draws one uniform number per state, from the
    ``rng`` it is given, else from the policy's own ``numpy.random.Generator``, created from
    the ``seed`` field when the policy is built. A freshly built policy therefore replays the
    same draws; every call advances its generator (two equal policies that were called a
    different number of times draw differently). :meth:`EpsilonGreedy.probabilities` is
    deterministic. :func:`allocator.training.evaluation.decision_log.record_decisions` does not use
    the policy's generator: it draws every action from :meth:`~EpsilonGreedy.probabilities`
    with generators derived from its own ``seed``, so a decision log is reproducible whatever
    the policy object was used for before.

    Args:
        base: the policy followed, or a registered policy name (built with its defaults).
        epsilon: the exploration probability, in [0, 1]; the knob.
        seed: seed of the policy's own generator (an integer >= 0).

    Example:
        >>> from allocator.policies import make_policy
        >>> logger = make_policy("epsilon-greedy", epsilon=0.3,
        ...                      base=make_policy("adaptive-consistency", threshold=0.8))
        >>> logger.describe()[:40]
        'epsilon-greedy(base=AdaptiveConsistency('
    """

    name: ClassVar[str] = "epsilon-greedy"
    knob: ClassVar[str | None] = "epsilon"
    default_sweep: ClassVar[tuple[float, ...]] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
    #: ``act`` draws at random; ``probabilities`` says how (tests check it, not ``act``).
    stochastic: ClassVar[bool] = True

    base: Policy | str = field(default_factory=AdaptiveConsistency)
    epsilon: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.base, str) and self.base in POLICIES:
            object.__setattr__(self, "base", POLICIES[self.base]())
        if not isinstance(self.base, Policy):
            raise ParameterError(_OWNER, "base",
                                 f"a Policy or a registered policy name (one of "
                                 f"{sorted(POLICIES)})", self.base)
        check_fraction(_OWNER, "epsilon", self.epsilon)
        check_int(_OWNER, "seed", self.seed, minimum=0)
        # Not a field: it is not a hyperparameter (equality, hashing and describe() ignore it).
        object.__setattr__(self, "_rng", np.random.default_rng(int(self.seed)))

    @property
    def arm(self) -> int:
        """The base policy's arm (0 if it has none), for tables and sweeps."""
        return int(getattr(self.base, "arm", 0))

    def probabilities(self, state: StateBatch, mask: np.ndarray) -> np.ndarray:
        """Exact action probabilities, shape (B, A + 3): 0 on masked actions, rows sum to 1.

        Raises:
            ParameterError: the mask does not match the state (from the base policy).
        """
        mask = np.asarray(mask, dtype=bool)
        base = self.base.probabilities(state, mask)  # the base checks the mask's shape
        allowed = mask.sum(axis=1, keepdims=True)
        uniform = np.where(mask, 1.0 / np.maximum(allowed, 1), 0.0)
        return (1.0 - self.epsilon) * base + self.epsilon * uniform

    def act(self, state: StateBatch, mask: np.ndarray,
            rng: np.random.Generator | None = None) -> np.ndarray:
        """Draw one action per state from :meth:`probabilities`.

        Args:
            state: ``B`` query states.
            mask: allowed actions, bool array of shape (B, A + 3).
            rng: the generator to draw from; default: the policy's own (see the module
                docstring).

        Returns:
            int64 array of shape (B,), each an allowed action.
        """
        generator: np.random.Generator = rng if rng is not None else self._rng  # type: ignore[attr-defined]
        probabilities = self.probabilities(state, mask)
        return sample_actions(probabilities, generator.random(len(probabilities)))
