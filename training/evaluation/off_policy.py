"""Off-policy estimators: the value of a policy from decisions another policy took.

A decision log (:class:`allocator.training.evaluation.decision_log.DecisionLog`) holds one path per
episode, taken by a *logging* policy that recorded the probability of every action. The
estimators (:class:`IPS`, :class:`SNIPS`, :class:`PerDecisionIPS`, :class:`DoublyRobust`)
give the mean value of a *target* policy from it, in the style of Open Bandit Pipeline:
small frozen dataclasses (hyperparameters as fields), the data as call arguments, all run
side by side by :func:`estimate_all`. :class:`OffPolicyEstimator` documents the formulas,
clipping, intervals and the support check. Their accuracy is checked on pool logs, where
exact replay gives the truth (``tests/training/evaluation/test_off_policy.py``).
"""

from __future__ import annotations

import dataclasses
import numbers
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np

from allocator._checks import check_int
from allocator.errors import OffPolicySupportError, ParameterError
from allocator.featurizer import feature_layout, featurize
from allocator.policies.base import Policy
from allocator.training.evaluation.decision_log import OUTCOMES, DecisionLog, policy_probabilities

__all__ = [
    "DEFAULT_ESTIMATORS",
    "IPS",
    "SNIPS",
    "DoublyRobust",
    "OffPolicyData",
    "OffPolicyEstimate",
    "OffPolicyEstimator",
    "PerDecisionIPS",
    "check_support",
    "estimate_all",
    "prepare",
]

CLUSTERS = ("episode", "query")


@dataclass(frozen=True)
class OffPolicyEstimate:
    """One estimator's estimate of a target policy's value.

    Attributes:
        estimator: the estimator's label (``"ips"``, ``"dr"``, ``"ips(clip=20.0)"`` ...).
        target: the target policy's ``describe()``.
        outcome: ``"return"``, ``"correct"`` or ``"cost"``.
        value: the estimate.
        ci_low: lower end of the bootstrap interval.
        ci_high: upper end of the bootstrap interval.
        confidence: the interval's level (0.95).
        std_error: standard deviation of the bootstrap replicates.
        n_episodes: episodes in the log.
        n_decisions: decisions in the log.
        effective_sample_size: ``(sum W)^2 / sum W^2`` over the trajectory weights used
            (after clipping): about how many on-policy episodes the estimate is worth.
        max_weight: the largest weight used (after clipping).
        clipped_share: share of the weights (trajectory or per-decision, as the
            estimator uses them) that were clipped.
        matched_episodes: episodes whose trajectory weight is > 0 (the target could have
            taken the logged path).
        mean_weight: the mean trajectory weight used. Its expectation is 1 (without
            clipping); far below 1, the paths the target is likely to take were rarely
            logged, and the estimate and its interval are unreliable (typically too low
            and too narrow): log more, with more exploration, or with shorter episodes.
    """

    estimator: str
    target: str
    outcome: str
    value: float
    ci_low: float
    ci_high: float
    confidence: float
    std_error: float
    n_episodes: int
    n_decisions: int
    effective_sample_size: float
    max_weight: float
    clipped_share: float
    matched_episodes: int
    mean_weight: float

    @property
    def ci_width(self) -> float:
        """``ci_high - ci_low``."""
        return self.ci_high - self.ci_low

    def covers(self, value: float) -> bool:
        """Whether ``value`` lies in the interval."""
        return self.ci_low <= value <= self.ci_high

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)


class OffPolicyData(NamedTuple):
    """What every estimator reads, computed once per (log, target, outcome).

    Attributes:
        decisions: the log.
        target_probs: the target's probabilities in every logged state, (N, A + 3).
        ratio: ``pi(a_t | s_t) / mu(a_t | s_t)`` per decision, (N,).
        rewards: the outcome's per-decision rewards, (N,).
        episode: each decision's episode position ``0..E-1``, (N,).
        step: each decision's step, (N,).
        units: the bootstrap unit of each episode (itself, or its query), (E,).
        outcome: what ``rewards`` measure (see :data:`OUTCOMES`).
        cluster: what ``units`` are (``"episode"`` or ``"query"``).
        target: the target's ``describe()`` (checked when the data is reused).
    """

    decisions: DecisionLog
    target_probs: np.ndarray
    ratio: np.ndarray
    rewards: np.ndarray
    episode: np.ndarray
    step: np.ndarray
    units: np.ndarray
    outcome: str
    cluster: str
    target: str

    @property
    def n_episodes(self) -> int:
        """Number of episodes ``E``."""
        return int(self.units.shape[0])

    def per_episode(self, values: np.ndarray) -> np.ndarray:
        """Sum a per-decision array over each episode, shape (E,)."""
        return np.bincount(self.episode, weights=values, minlength=self.n_episodes)

    def cumulative_weights(self) -> np.ndarray:
        """``w_t = rho_0 ... rho_t`` per decision (exact products), shape (N,)."""
        grid = np.ones((self.n_episodes, int(self.step.max()) + 1))
        grid[self.episode, self.step] = self.ratio
        return np.cumprod(grid, axis=1)[self.episode, self.step]

    def trajectory_weights(self) -> np.ndarray:
        """``W = w_{T-1}`` per episode, shape (E,)."""
        weights = np.ones(self.n_episodes)
        np.multiply.at(weights, self.episode, self.ratio)
        return weights

    def returns_to_go(self) -> np.ndarray:
        """``sum_{k >= t} r_k`` within each episode, per decision, shape (N,)."""
        before = np.cumsum(self.rewards) - self.rewards  # rewards of all earlier rows
        first = np.flatnonzero(self.step == 0)
        start = np.repeat(before[first], np.diff(np.append(first, len(self.rewards))))
        return self.per_episode(self.rewards)[self.episode] - (before - start)


class _Terms(NamedTuple):
    """An estimator's per-episode numerators and denominators, and its weight diagnostics.

    The estimate is ``sum(numerator) / sum(denominator)`` over the (resampled) units.
    """

    numerator: np.ndarray
    denominator: np.ndarray
    trajectory_weights: np.ndarray
    max_weight: float
    clipped_share: float


def _clip(weights: np.ndarray, clip: float | None) -> tuple[np.ndarray, float]:
    """Weights capped at ``clip`` and the share that was capped."""
    if clip is None:
        return weights, 0.0
    return np.minimum(weights, clip), float(np.mean(weights > clip))


def _check_clip(owner: str, clip: object) -> None:
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, numbers.Real)
                             or not float(clip) >= 1.0):
        raise ParameterError(owner, "clip", "None or a number >= 1", clip)


# ------------------------------------------------------------------ the support
def check_support(decisions: DecisionLog, target_probs: np.ndarray, target: str) -> None:
    """Refuse a target that puts probability on actions the logging policy never allows.

    Every logged state is checked, including states the target would not have reached
    on that episode's path (conservative: the same state may be reached on other paths).

    Args:
        decisions: the decision log (with the logging probability of every action).
        target_probs: the target's probabilities in every logged state, (N, A + 3).
        target: the target's description, for the message.

    Raises:
        OffPolicySupportError: in some logged state the target gives probability > 0 to
            an action of logging probability 0; the message counts the states, names the
            actions and says how to fix it.
    """
    violation = (target_probs > 0) & (decisions.logging_probabilities() <= 0)
    states = violation.any(axis=1)
    if not states.any():
        return
    names = decisions.action_names()
    per_action = {names[a]: int(n) for a, n in enumerate(violation.sum(axis=0)) if n}
    episodes = np.unique(decisions.episode_index[states]).size
    listed = ", ".join(f"{name} in {n} state(s)" for name, n in per_action.items())
    raise OffPolicySupportError(
        f"the target policy {target} leaves the logged support: in {int(states.sum())} of "
        f"{decisions.n_decisions} logged states ({episodes} of {decisions.n_episodes} "
        f"episodes) it gives probability > 0 to actions the logging policy "
        f"({decisions.metadata.get('policy', 'unknown')}) gave probability 0: {listed}. "
        "Importance weights cannot account for actions that were never possible, so no "
        "off-policy estimate is valid. Fix: log with exploration (e.g. "
        "EpsilonGreedy(base, epsilon=0.1) gives every allowed action probability > 0), "
        "or evaluate a policy closer to the logging one.",
        n_states=int(states.sum()), actions=per_action)


def prepare(decisions: DecisionLog, target: Policy, *, outcome: str = "return",
            cluster: str = "episode") -> OffPolicyData:
    """Compute what every estimator needs (and refuse targets outside the support).

    Raises:
        ParameterError: a bad ``outcome`` or ``cluster``, or a target whose probabilities
            are not distributions over the allowed actions.
        OffPolicySupportError: see :func:`check_support`; also when no logged episode has
            a trajectory weight > 0 (no path the target could have taken was logged).
    """
    owner = "off-policy estimate"
    if outcome not in OUTCOMES:
        raise ParameterError(owner, "outcome", f"one of {OUTCOMES}", outcome)
    if cluster not in CLUSTERS:
        raise ParameterError(owner, "cluster", f"one of {CLUSTERS}", cluster)
    probs = policy_probabilities(target, decisions.states(), decisions.masks(), owner)
    check_support(decisions, probs, target.describe())
    rows = np.arange(decisions.n_decisions)
    episode = decisions.episode_index
    units = (np.arange(decisions.n_episodes) if cluster == "episode"
             else np.unique(decisions.episode_queries, return_inverse=True)[1])
    data = OffPolicyData(
        decisions=decisions, target_probs=probs,
        ratio=probs[rows, decisions.actions()] / decisions.propensities(),
        rewards=decisions.rewards(outcome), episode=episode,
        step=decisions.columns["step"], units=units, outcome=outcome, cluster=cluster,
        target=target.describe())
    if not (data.trajectory_weights() > 0).any():
        raise OffPolicySupportError(
            f"none of the {decisions.n_episodes} logged episodes follows a path the target "
            f"policy {target.describe()} could take (every trajectory weight is 0). Fix: log "
            "more episodes or with more exploration, or evaluate a policy closer to the "
            "logging one.")
    return data


# ------------------------------------------------------------- the estimators
@dataclass(frozen=True)
class OffPolicyEstimator(ABC):
    """Base class: hyperparameters as fields, ``estimate`` on the data.

    Notation: episode ``i`` takes decisions ``t = 0..T_i - 1`` with rewards ``r_t``; the
    per-decision ratio is ``rho_t = pi(a_t | s_t) / mu(a_t | s_t)``, the cumulative weight
    ``w_t = rho_0 ... rho_t`` (``w_{-1} = 1``) and the trajectory weight ``W = w_{T-1}``; the
    return is ``G = sum_t r_t`` (correctness at STOP minus ``lambda`` times the cost of every
    action, so per-decision weighting is valid).

    ================  =====================================================================
    estimator         value
    ================  =====================================================================
    :class:`IPS`      ``mean_i W_i G_i`` (trajectory-wise importance sampling; unbiased)
    :class:`SNIPS`    ``sum_i W_i G_i / sum_i W_i`` (self-normalised; consistent, lower
                      variance, a small bias)
    :class:`PerDecisionIPS`  ``mean_i sum_t w_t r_t`` (a reward is weighted only by the
                      decisions before it; unbiased, lower variance than IPS)
    :class:`DoublyRobust`    ``mean_i sum_t [w_t (r_t - Q(s_t, a_t)) + w_{t-1} V(s_t)]``
                      with ``V(s) = sum_a pi(a | s) Q(s, a)`` (per-decision doubly robust,
                      Jiang & Li 2016, "Doubly Robust Off-policy Value Evaluation for
                      Reinforcement Learning"; Thomas & Brunskill 2016); unbiased whatever
                      ``Q``, lower variance the better ``Q`` is
    ================  =====================================================================

    ``Q`` is a LightGBM regression of the return-to-go ``sum_{k >= t} r_k`` on the
    featurised state (:func:`allocator.featurizer.featurize`) and the one-hot action,
    cross-fitted over episodes (the model that predicts an episode never saw it).

    Clipping (``clip``): weights above ``clip`` are set to ``clip`` (trajectory weights for
    IPS and SNIPS, cumulative per-decision weights for the others). It trades variance for a
    bias (downwards for non-negative rewards); the share clipped is reported.

    Confidence intervals: percentile bootstrap, seeded, over episodes (each episode drew its
    query independently, so episodes are independent units; the estimand is the value over the
    log's query distribution) or, with ``cluster="query"``, over queries (all episodes of a
    resampled query together: the value for new queries from the same population, wider).
    The outcome model of :class:`DoublyRobust` is fitted once, not per bootstrap replicate.

    Support: an estimate is refused (:class:`allocator.errors.OffPolicySupportError`) when the
    target gives probability > 0 to an action the logging policy gave probability 0 in some
    logged state: importance weights cannot account for actions that were never possible, so
    every estimator here would be biased there. The fix is to log with exploration
    (:class:`allocator.policies.stochastic.EpsilonGreedy`) or to evaluate a policy closer to the
    logging one.

    Subclasses implement :meth:`terms`.
    """

    name: ClassVar[str]

    @property
    def label(self) -> str:
        """The name, with the fields that differ from their defaults."""
        changed = [f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)
                   if getattr(self, f.name) != f.default]
        return f"{self.name}({', '.join(changed)})" if changed else self.name

    @abstractmethod
    def terms(self, data: OffPolicyData, seed: int) -> _Terms:
        """Per-episode numerators, denominators and weight diagnostics."""

    def estimate(self, decisions: DecisionLog | OffPolicyData, target: Policy, *,
                 outcome: str = "return", n_bootstrap: int = 1000, seed: int = 0,
                 confidence: float = 0.95, cluster: str = "episode") -> OffPolicyEstimate:
        """Estimate ``target``'s mean ``outcome`` from ``decisions``.

        Args:
            decisions: the decision log, or :func:`prepare`'s result for it and
                ``target`` (to share the preparation between estimators; its outcome and
                cluster then apply, and ``outcome`` and ``cluster`` are ignored).
            target: the policy evaluated.
            outcome: ``"return"``, ``"correct"`` (accuracy) or ``"cost"`` (cost units).
            n_bootstrap: bootstrap replicates of the interval (>= 10).
            seed: seed of the bootstrap (and of the outcome model's folds).
            confidence: level of the interval, in (0, 1).
            cluster: bootstrap unit, ``"episode"`` or ``"query"`` (see the module
                docstring).

        Raises:
            ParameterError: a bad argument (named).
            OffPolicySupportError: the target leaves the logged support.
        """
        _check_call(n_bootstrap, seed, confidence)
        data = (decisions if isinstance(decisions, OffPolicyData)
                else prepare(decisions, target, outcome=outcome, cluster=cluster))
        if data.target != target.describe():
            raise ParameterError(f"{type(self).__name__}.estimate", "decisions",
                                 f"the decisions, or data prepared for this target "
                                 f"({target.describe()})", data.target)
        terms = self.terms(data, seed)
        value = float(terms.numerator.sum() / terms.denominator.sum())
        replicates = _bootstrap(terms, data.units, n_bootstrap, seed)
        low, high = np.nanquantile(replicates, [(1 - confidence) / 2, (1 + confidence) / 2])
        weights = terms.trajectory_weights
        return OffPolicyEstimate(
            estimator=self.label, target=target.describe(), outcome=data.outcome, value=value,
            ci_low=float(low), ci_high=float(high), confidence=float(confidence),
            std_error=float(np.nanstd(replicates)), n_episodes=data.n_episodes,
            n_decisions=data.decisions.n_decisions,
            effective_sample_size=float(weights.sum() ** 2 / np.sum(weights**2)),
            max_weight=terms.max_weight, clipped_share=terms.clipped_share,
            matched_episodes=int((weights > 0).sum()), mean_weight=float(weights.mean()))


def _check_call(n_bootstrap: object, seed: object, confidence: object) -> None:
    owner = "OffPolicyEstimator.estimate"
    check_int(owner, "n_bootstrap", n_bootstrap, minimum=10)
    check_int(owner, "seed", seed, minimum=0)
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real) or not (
            0 < float(confidence) < 1):
        raise ParameterError(owner, "confidence", "a number in (0, 1)", confidence)


def _bootstrap(terms: _Terms, units: np.ndarray, n_bootstrap: int, seed: int) -> np.ndarray:
    """Estimates on ``n_bootstrap`` resamplings of the units (with replacement)."""
    n_units = int(units.max()) + 1
    numerator = np.bincount(units, weights=terms.numerator, minlength=n_units)
    denominator = np.bincount(units, weights=terms.denominator, minlength=n_units)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_units, np.full(n_units, 1.0 / n_units),
                             size=n_bootstrap).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (counts @ numerator) / (counts @ denominator)


@dataclass(frozen=True)
class IPS(OffPolicyEstimator):
    """Trajectory-wise importance sampling: ``mean_i W_i G_i``.

    Args:
        clip: cap on the trajectory weight ``W`` (None: no cap; else >= 1).
    """

    name: ClassVar[str] = "ips"
    clip: float | None = None

    def __post_init__(self) -> None:
        _check_clip(f"{type(self).__name__}", self.clip)

    def terms(self, data: OffPolicyData, seed: int) -> _Terms:
        """``W_i G_i`` over 1 per episode."""
        weights, clipped = _clip(data.trajectory_weights(), self.clip)
        returns = data.per_episode(data.rewards)
        return _Terms(weights * returns, np.ones_like(weights), weights,
                      float(weights.max()), clipped)


@dataclass(frozen=True)
class SNIPS(IPS):
    """Self-normalised trajectory-wise importance sampling: ``sum W G / sum W``.

    Args:
        clip: cap on the trajectory weight ``W`` (None: no cap; else >= 1).
    """

    name: ClassVar[str] = "snips"

    def terms(self, data: OffPolicyData, seed: int) -> _Terms:
        """``W_i G_i`` over ``W_i`` per episode."""
        terms = super().terms(data, seed)
        return terms._replace(denominator=terms.trajectory_weights)


@dataclass(frozen=True)
class PerDecisionIPS(OffPolicyEstimator):
    """Per-decision importance sampling: ``mean_i sum_t w_t r_t``.

    Args:
        clip: cap on every cumulative weight ``w_t`` (None: no cap; else >= 1).
    """

    name: ClassVar[str] = "pdis"
    clip: float | None = None

    def __post_init__(self) -> None:
        _check_clip(type(self).__name__, self.clip)

    def terms(self, data: OffPolicyData, seed: int) -> _Terms:
        """``sum_t w_t r_t`` over 1 per episode."""
        weights, clipped = _clip(data.cumulative_weights(), self.clip)
        final = _final_weights(data, weights)
        return _Terms(data.per_episode(weights * data.rewards), np.ones(data.n_episodes),
                      final, float(weights.max()), clipped)


def _final_weights(data: OffPolicyData, weights: np.ndarray) -> np.ndarray:
    """The weight of each episode's last decision, shape (E,)."""
    return weights[data.decisions.columns["terminal"]]  # one per episode, in episode order


@dataclass(frozen=True)
class DoublyRobust(OffPolicyEstimator):
    """Per-decision doubly robust estimation with a cross-fitted LightGBM outcome model.

    ``mean_i sum_t [w_t (r_t - Q(s_t, a_t)) + w_{t-1} V(s_t)]``, ``V(s) = sum_a
    pi(a | s) Q(s, a)``: the recursive estimator of Jiang & Li (2016), unrolled as in
    Thomas & Brunskill (2016). ``Q`` regresses the logged return-to-go on the featurised
    state and the one-hot action; it is fitted ``folds`` times, each time on the other
    folds' episodes, and predicts the held-out fold (cross-fitting), so that it is never
    evaluated on episodes it was trained on.

    Args:
        clip: cap on every cumulative weight (None: no cap; else >= 1).
        folds: cross-fitting folds over episodes (>= 2).
        n_estimators: boosting rounds of the outcome model.
        num_leaves: leaves per tree.
        learning_rate: shrinkage.
        min_child_samples: least decisions per leaf.
    """

    name: ClassVar[str] = "dr"
    clip: float | None = None
    folds: int = 2
    n_estimators: int = 100
    num_leaves: int = 15
    learning_rate: float = 0.1
    min_child_samples: int = 20

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_clip(owner, self.clip)
        for name, low in (("folds", 2), ("n_estimators", 1), ("num_leaves", 2),
                          ("min_child_samples", 1)):
            value = getattr(self, name)
            check_int(owner, name, value, minimum=low)
        if not (isinstance(self.learning_rate, numbers.Real) and 0 < self.learning_rate <= 1):
            raise ParameterError(owner, "learning_rate", "a number in (0, 1]",
                                 self.learning_rate)

    def terms(self, data: OffPolicyData, seed: int) -> _Terms:
        """Per episode: ``sum_t w_t (r_t - Q_t) + w_{t-1} V_t`` over 1."""
        q_all = self.outcome_model(data, seed)  # (N, A + 3)
        rows = np.arange(len(data.ratio))
        q_taken = q_all[rows, data.decisions.actions()]
        v = (data.target_probs * q_all).sum(axis=1)
        weights, clipped = _clip(data.cumulative_weights(), self.clip)
        previous = np.where(data.step == 0, 1.0, np.roll(weights, 1))
        contributions = weights * (data.rewards - q_taken) + previous * v
        return _Terms(data.per_episode(contributions), np.ones(data.n_episodes),
                      _final_weights(data, weights), float(weights.max()), clipped)

    def outcome_model(self, data: OffPolicyData, seed: int) -> np.ndarray:
        """Cross-fitted ``Q(s_t, a)`` for every logged state and every action, (N, A + 3).

        Folds are a seeded random partition of the episodes.
        """
        import lightgbm as lgb  # training-time dependency, imported when used

        decisions = data.decisions
        # The outcome model reads the featurizer's columns up to version 2's: version 3's
        # leader_posterior (a steep function of the vote counts those columns already
        # carry) widened DR's interval past IPS's on a 49-effective-episode target of
        # date/GPT-3.5 (tests/training/evaluation/test_off_policy.py); revisit with a
        # larger check before adding it.
        states = decisions.states()
        end = outcome_features_end(states.samples.shape[1])
        features = featurize(states)[:, :end].astype(np.float64)
        n_rows, n_act = decisions.n_decisions, decisions.masks().shape[1]
        target = data.returns_to_go()
        fold_of_episode = np.random.default_rng(seed).permutation(data.n_episodes) % self.folds
        fold = fold_of_episode[data.episode]
        params = {"objective": "regression", "num_leaves": self.num_leaves,
                  "learning_rate": self.learning_rate,
                  "min_data_in_leaf": self.min_child_samples, "num_threads": 1,
                  "deterministic": True, "seed": int(seed), "verbosity": -1}
        out = np.zeros((n_rows, n_act))
        for k in range(self.folds):
            train, held = fold != k, fold == k
            design = _design(features[train], decisions.actions()[train], n_act)
            booster = lgb.train(params, lgb.Dataset(design, target[train]),
                                num_boost_round=self.n_estimators)
            for action in range(n_act):
                out[held, action] = booster.predict(
                    _design(features[held], np.full(int(held.sum()), action), n_act))
        return out


def outcome_features_end(n_arms: int) -> int:
    """The outcome model's features end before this column: it reads every featurizer
    column before ``leader_posterior`` (the version-2 features)."""
    return feature_layout(n_arms).leader_posterior  # type: ignore[return-value]


def _design(features: np.ndarray, actions: np.ndarray, n_act: int) -> np.ndarray:
    """Features beside the one-hot action."""
    return np.hstack([features, np.eye(n_act)[actions]])


#: The estimators :func:`estimate_all` runs by default.
DEFAULT_ESTIMATORS: tuple[OffPolicyEstimator, ...] = (IPS(), SNIPS(), PerDecisionIPS(),
                                                      DoublyRobust())


def estimate_all(decisions: DecisionLog, target: Policy,
                 estimators: Sequence[OffPolicyEstimator] = DEFAULT_ESTIMATORS, *,
                 outcome: str = "return", n_bootstrap: int = 1000, seed: int = 0,
                 confidence: float = 0.95,
                 cluster: str = "episode") -> dict[str, OffPolicyEstimate]:
    """Run several estimators side by side on the same decisions and target.

    The target's probabilities and the support check are computed once. Arguments as
    :meth:`OffPolicyEstimator.estimate`.

    Returns:
        Estimator label -> estimate, in the order of ``estimators``.

    Raises:
        ParameterError: two estimators share a label, or a bad argument.
        OffPolicySupportError: the target leaves the logged support.
    """
    labels = [estimator.label for estimator in estimators]
    if len(set(labels)) != len(labels):
        raise ParameterError("estimate_all", "estimators", "estimators with distinct labels",
                             labels)
    data = prepare(decisions, target, outcome=outcome, cluster=cluster)
    return {estimator.label: estimator.estimate(data, target, outcome=outcome,
                                                n_bootstrap=n_bootstrap, seed=seed,
                                                confidence=confidence, cluster=cluster)
            for estimator in estimators}
