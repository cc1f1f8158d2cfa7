"""The budget oracle: a trained bundle as a decision service that any executor can drive.

:func:`load` (also ``allocator.load``) reads a bundle and returns a :class:`BudgetOracle`.
The oracle offers three ways to spend test-time compute:

- **Step by step** (:meth:`BudgetOracle.session`): a :class:`Session` per query asks the
  learned policy for the next :class:`Action` (``sample`` an arm, ``refine``, ``verify``
  or ``stop``), the executor performs it and reports an :class:`AttemptResult` (or
  verifier scores), until ``stop``; :meth:`Session.final_answer` is the answer to return.
  The session holds the same :class:`~allocator.featurizer.QueryState` the replay
  environment trained the policy on, so the decisions are the policy's own (the tests
  replay logged queries and compare decision by decision).
- **Up front** (:meth:`BudgetOracle.budget`): one number of samples for one arm, for
  executors that must ask for ``n`` completions in one request.
- **For a batch under a total budget** (:meth:`BudgetOracle.allocate`): samples per
  query by predicted marginal gain (Damani et al. 2024, "Learning How Hard to Think:
  Input-Adaptive Allocation of LM Computation"), never exceeding the total.

Units. Costs an executor reports (:attr:`AttemptResult.cost`, :meth:`Session.verify`)
and every cost the oracle returns or accepts (``target_cost``, ``total_budget``,
:attr:`Session.cost_spent`) are in the *log's* units (tokens, characters, dollars: what
the training log's ``cost`` column held, and what the evaluator reports). The policy
itself sees costs divided by the bundle's ``cost_unit`` (the training log's mean sample
cost), and ``lambda`` is the price of one such unit in units of accuracy.

The prior. The policy's observation starts with a predicted per-attempt accuracy per arm.
An explicit ``prior`` wins; otherwise, when the bundle holds a difficulty predictor and a
query text is given, the predictor predicts it: this imports ``training.difficulty`` and
so scikit-learn and LightGBM, on first use only; otherwise 0.5 per arm.

Light imports. This module imports numpy and the runtime modules (bundle, featurizer,
learned policy) only. The two heavy paths are explicit: an MLflow URI in :func:`load`
imports mlflow (to download the bundle), and a predicted prior imports scikit-learn.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from allocator.actions import STOP, n_actions, refine_action, sample_action, verify_action
from allocator.bundle import BUNDLE_FORMAT, MANIFEST_FILE, Bundle, read_bundle
from allocator.errors import AllocatorError, BundleError, ParameterError
from allocator.featurizer import QueryState
from allocator.learned import LearnedPolicy
from allocator.logs.table import QueryTable

__all__ = [
    "Action",
    "AttemptResult",
    "BudgetOracle",
    "Session",
    "Verification",
    "concave_majorant_gains",
    "greedy_allocation",
    "load",
    "majority_accuracy",
]

#: URI schemes resolved with MLflow's artifact download.
MLFLOW_SCHEMES = ("models:/", "runs:/")
#: Manifest fields this module reads beyond the bundle's required ones.
ARM_COST_FIELD = "arm_mean_cost"
CALIBRATED_LAMBDA_FIELD = "calibrated_lambda"
CALIBRATION_FIELD = "calibration"


# ------------------------------------------------------------------ records
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

    def __str__(self) -> str:
        return f"SAMPLE({self.arm})" if self.kind == "sample" else self.kind.upper()


@dataclass(frozen=True)
class AttemptResult:
    """What one attempt gave, as the executor reports it to :meth:`Session.observe`.

    Attributes:
        kind: ``"sample"`` (an independent attempt of ``arm``) or ``"refine"`` (an
            attempt conditioned on earlier ones).
        arm: the arm that produced a sample. None means the arm the session asked for
            (or the bundle's only arm).
        answer: the extracted answer (any hashable; strings usually); None when the
            attempt gave no answer (it does not vote).
        cost: what the attempt cost, in the log's units (tokens, characters...).
        score: a verifier score the executor already holds for this attempt (e.g. from
            an inline reward model). It stays hidden from the policy until a
            ``verify`` step reveals it (:meth:`Session.verify` without scores), as in
            the replay environment.
    """

    kind: str = "sample"
    arm: str | None = None
    answer: Hashable | None = None
    cost: float = 0.0
    score: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("sample", "refine"):
            raise ParameterError("AttemptResult", "kind", "'sample' or 'refine'", self.kind)
        object.__setattr__(self, "cost", _cost("AttemptResult", "cost", self.cost))
        if self.score is not None:
            score = float(self.score)
            object.__setattr__(self, "score", None if math.isnan(score) else score)
        if not isinstance(self.answer, Hashable):
            raise ParameterError("AttemptResult", "answer", "a hashable answer or None",
                                 self.answer)


@dataclass(frozen=True)
class Verification:
    """A verifier call recorded in :attr:`Session.history`: candidate -> score, and cost."""

    scores: dict[int, float]
    cost: float


def _cost(owner: str, name: str, value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = float("nan")
    if not math.isfinite(number) or number < 0:
        raise ParameterError(owner, name, "a finite cost >= 0 (in the log's units)", value)
    return number


# ------------------------------------------------------------------ the model
def majority_accuracy(p: np.ndarray | float, n_max: int) -> np.ndarray:
    """Majority-vote accuracy after n samples, n = 0..n_max, in a two-answer model.

    Each sample is correct with probability ``p``, independently; every wrong sample
    gives the *same* wrong answer (the pessimistic case of one dominant distractor). With
    ``X ~ Binomial(n, p)`` correct votes, the majority is right when ``X > n - X`` and a
    tie is broken by a fair coin: ``acc(n) = P(X > n/2) + P(X = n/2) / 2``; ``acc(0) = 0``
    (nothing to answer with). Then ``acc(2k) = acc(2k - 1)``, and for ``p > 1/2`` the
    odd-n accuracies rise to 1 with shrinking steps; for ``p < 1/2`` more samples hurt.

    Args:
        p: per-sample accuracies, any shape.
        n_max: the largest n.

    Returns:
        Array of shape ``p.shape + (n_max + 1,)``.
    """
    p = np.asarray(p, dtype=np.float64)
    pmf = np.zeros((*p.shape, n_max + 1))
    pmf[..., 0] = 1.0
    out = np.zeros((*p.shape, n_max + 1))
    q = 1.0 - p
    for n in range(1, n_max + 1):
        # Binomial(n) from Binomial(n - 1): one more sample, right with probability p.
        pmf[..., 1 : n + 1] = pmf[..., 1 : n + 1] * q[..., None] + pmf[..., :n] * p[..., None]
        pmf[..., 0] *= q
        out[..., n] = pmf[..., n // 2 + 1 : n + 1].sum(axis=-1)
        if n % 2 == 0:
            out[..., n] += 0.5 * pmf[..., n // 2]
    return out


def concave_majorant_gains(values: np.ndarray) -> np.ndarray:
    """Marginal gains of the least concave majorant of each row of ``values``.

    Row ``q`` holds a curve ``v(0..N)``; its least concave majorant (upper concave hull)
    is linear between hull vertices, so the gain of the n-th unit, ``h(n) - h(n - 1)``,
    is the slope of the hull segment over it. The gains of a row are non-increasing
    (enforced against rounding). ``values[:, 0] + gains[:, :n].sum(axis=1)`` is ``h(n)``.
    For the majority curves the hull interpolates between odd n; an even n's hull value
    is what randomising between n - 1 and n + 1 samples gets in expectation.

    Args:
        values: shape (Q, N + 1).

    Returns:
        Shape (Q, N).
    """
    values = np.asarray(values, dtype=np.float64)
    gains = np.zeros((values.shape[0], values.shape[1] - 1))
    for row, curve in enumerate(values):
        hull: list[int] = []
        for x in range(len(curve)):
            while len(hull) >= 2 and _not_below(hull[-2], hull[-1], x, curve):
                hull.pop()
            hull.append(x)
        for left, right in itertools.pairwise(hull):
            gains[row, left:right] = (curve[right] - curve[left]) / (right - left)
        gains[row] = np.minimum.accumulate(gains[row])
    return gains


def _not_below(a: int, b: int, c: int, curve: np.ndarray) -> bool:
    """Whether point b lies on or below the chord from a to c (so it is not a vertex)."""
    return (curve[b] - curve[a]) * (c - a) <= (curve[c] - curve[a]) * (b - a)


def greedy_allocation(gains: np.ndarray, units: int) -> np.ndarray:
    """Give ``units`` units one at a time to the row whose next unit gains most.

    Each row's gains must be non-increasing (as :func:`concave_majorant_gains` makes
    them); only positive gains are taken, so fewer than ``units`` may be spent. Computed
    in one sort: the ``units`` largest positive gains, ties going to the smaller n, then
    the earlier row, which takes a prefix of every row. For concave curves this is an
    optimal allocation of ``sum_q h_q(n_q)`` subject to ``sum_q n_q <= units``.

    Args:
        gains: shape (Q, N), non-increasing along each row.
        units: how many units may be given in all.

    Returns:
        int64 units per row, shape (Q,).
    """
    gains = np.asarray(gains, dtype=np.float64)
    rows, steps = np.indices(gains.shape)
    flat = gains.ravel()
    order = np.lexsort((rows.ravel(), steps.ravel(), -flat))
    chosen = order[: max(int(units), 0)]
    chosen = chosen[flat[chosen] > 1e-12]
    return np.bincount(rows.ravel()[chosen], minlength=gains.shape[0]).astype(np.int64)


# ------------------------------------------------------------------ session
class Session:
    """One query's decisions: ask :meth:`next_action`, perform it, report, repeat.

    Create sessions with :meth:`BudgetOracle.session`. The loop::

        session = oracle.session(query, lambda_=0.05)
        while (action := session.next_action()).kind != "stop":
            if action.kind == "verify":
                session.verify(my_verifier(session.state.unverified()), cost=...)
            else:
                answer, cost = my_executor(query, action)
                session.observe(AttemptResult(action.kind, action.arm, answer, cost))
        return session.final_answer()

    Which actions the policy may choose (its mask): ``stop`` always; ``sample(arm)`` for
    arms the executor serves, while fewer than ``max_samples`` attempts were drawn (and
    fewer than the arm's own limit, if given); ``refine`` likewise, when the executor
    supports it; ``verify`` when the executor supports it and candidates were drawn since
    the last verification.

    The executor need not follow the advice: it may report a sample of another arm than
    the one asked, a refinement when a sample was asked, or a verification at any time.
    The session records what actually happened (its state is what the executor reports)
    and the next decision reads that state. Reporting after ``stop`` is refused.

    Attributes:
        query: the query text, if given.
        lambda_: the price of one cost unit the policy sees.
        prior: the per-arm prior the policy sees.
    """

    def __init__(self, oracle: BudgetOracle, *, query: str | None, lambda_: float,
                 prior: np.ndarray, served: np.ndarray, limits: np.ndarray,
                 supports_refine: bool, supports_verify: bool,
                 max_samples: int | None) -> None:
        self._oracle = oracle
        self.query = query
        self.lambda_ = float(lambda_)
        self.prior = prior
        self._served = served
        self._limits = limits
        self._refine = bool(supports_refine)
        self._verify = bool(supports_verify)
        self._max_samples = max_samples
        self._state = QueryState(len(oracle.arms), prior=prior, lam=self.lambda_)
        self._history: list[Action | AttemptResult | Verification] = []
        self._pending: Action | None = None
        self._hidden: dict[int, float] = {}
        self._fresh = 0  # candidates drawn since the last verification
        self._cost = 0.0
        self._done = False

    # ------------------------------------------------------------ reading
    @property
    def state(self) -> QueryState:
        """The query state the policy reads (treat it as read-only)."""
        return self._state

    @property
    def history(self) -> list[Action | AttemptResult | Verification]:
        """Decisions and reports in order: :class:`Action`, :class:`AttemptResult`,
        :class:`Verification` (a copy)."""
        return list(self._history)

    @property
    def cost_spent(self) -> float:
        """Cost reported so far (attempts and verifications), in the log's units."""
        return self._cost

    @property
    def done(self) -> bool:
        """Whether the policy chose ``stop``."""
        return self._done

    def allowed_actions(self) -> np.ndarray:
        """The policy's mask now: bool of shape (A + 3,) in the bundle's action layout."""
        arms = len(self._oracle.arms)
        state = self._state
        room = self._max_samples is None or state.drawn < self._max_samples
        mask = np.zeros(n_actions(arms), dtype=bool)
        mask[STOP] = True
        under = (self._limits < 0) | (state.samples < self._limits)
        mask[sample_action(0) : sample_action(arms)] = room & self._served & under
        mask[refine_action(arms)] = room and self._refine
        mask[verify_action(arms)] = self._verify and self._fresh > 0
        return mask

    # ------------------------------------------------------------ deciding
    def next_action(self) -> Action:
        """The policy's next decision on the current state (deterministic arg max).

        Asking again before reporting returns the same action; after ``stop``, ``stop``.
        """
        if self._pending is not None:
            return self._pending
        mask = self.allowed_actions()
        index = int(self._oracle.policy.act(self._state.to_batch(), mask[None, :])[0])
        action = self._oracle.action(index)
        self._history.append(action)
        self._pending = action
        self._done = action.kind == "stop"
        return action

    def observe(self, result: AttemptResult) -> int:
        """Record an attempt: a sample of an arm, or a refinement.

        Args:
            result: what the attempt gave; ``cost`` in the log's units.

        Returns:
            The candidate's index (for :meth:`verify`).

        Raises:
            AllocatorError: the session has stopped.
            ParameterError: an unknown arm, or a sample without arm where the session
                cannot tell which.
        """
        self._check_open("observe")
        if not isinstance(result, AttemptResult):
            raise ParameterError("Session.observe", "result", "an AttemptResult", result)
        cost = result.cost / self._oracle.cost_unit
        if result.kind == "refine":
            index = self._state.add_refine(result.answer, cost)
        else:
            index = self._state.add_sample(self._arm_of(result), result.answer, cost)
        if result.score is not None:
            self._hidden[index] = result.score
        self._fresh += 1
        self._record(result, result.cost)
        return index

    def verify(self, scores: Mapping[int, float] | None = None, cost: float = 0.0) -> None:
        """Record a verifier call on drawn, unverified candidates.

        Args:
            scores: candidate index (as :meth:`observe` returned) -> score; NaN for a
                candidate verified without a usable score. None: reveal the scores
                reported with the attempts (:attr:`AttemptResult.score`).
            cost: the verifier's cost, in the log's units.

        Raises:
            AllocatorError: the session has stopped.
            ParameterError: an index that is not a drawn, unverified candidate.
        """
        self._check_open("verify")
        cost = _cost("Session.verify", "cost", cost)
        if scores is None:
            scores = dict(self._hidden)
        scores = {int(index): float(score) for index, score in scores.items()}
        self._state.verify(scores, cost / self._oracle.cost_unit)
        for index in scores:
            self._hidden.pop(index, None)
        self._fresh = 0
        self._record(Verification(scores, cost), cost)

    def final_answer(self) -> Hashable | None:
        """The answer to return: the best-scoring verified answer if any candidate with an
        answer was verified, else the majority vote; None if no attempt gave an answer.

        Ties go to the answer seen first (deterministic; the replay environment instead
        credits tied answers with their mean correctness).
        """
        tied = self._state.final_answers()
        if not tied:
            return None
        first_seen = {}
        for position, answer in enumerate(self._state.answers):
            first_seen.setdefault(answer, position)
        return min(tied, key=first_seen.__getitem__)

    # ------------------------------------------------------------ helpers
    def _check_open(self, name: str) -> None:
        if self._done:
            raise AllocatorError(f"Session.{name}: the session has stopped (the policy chose "
                                 "STOP); return session.final_answer(), and start a new "
                                 "session with oracle.session(...) for another query.")

    def _arm_of(self, result: AttemptResult) -> int:
        arms = self._oracle.arms
        if result.arm is None:
            pending = self._pending
            if pending is not None and pending.kind == "sample":
                return arms.index(pending.arm)
            if len(arms) == 1:
                return 0
            raise ParameterError("Session.observe", "result.arm",
                                 f"the arm of the sample, one of {list(arms)} (no sample was "
                                 "asked, so the session cannot tell)", None)
        if result.arm not in arms:
            raise ParameterError("Session.observe", "result.arm",
                                 f"one of the bundle's arms {list(arms)}", result.arm)
        return arms.index(result.arm)

    def _record(self, event: AttemptResult | Verification, cost: float) -> None:
        self._history.append(event)
        self._cost += cost
        self._pending = None

    def __repr__(self) -> str:
        return (f"Session(query={self.query!r}, lambda_={self.lambda_:g}, "
                f"drawn={self._state.drawn}, cost_spent={self._cost:g}, done={self._done})")


# ------------------------------------------------------------------ oracle
class BudgetOracle:
    """A verified bundle's learned policy, served to executors.

    Args:
        path: the bundle directory (read and verified by
            :func:`~allocator.bundle.read_bundle`).

    Attributes:
        policy: the :class:`~allocator.learned.LearnedPolicy` that decides.
        bundle: the verified bundle (its manifest as read at load time: load again
            after calibrating).

    Raises:
        BundleError: the bundle is refused (tampered, made for other code...).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        # Verified here on every load: the policy's own cache is keyed by the manifest's
        # file identity, which tampering with another file leaves unchanged.
        self.bundle: Bundle = read_bundle(path)
        self.policy = LearnedPolicy.from_bundle(path)
        manifest = self.bundle.manifest
        self._arm_costs = self._read_arm_costs(manifest)
        self._table = self._read_calibration(manifest)
        self._predictor: Any = None

    # ------------------------------------------------------------ manifest
    @property
    def arms(self) -> tuple[str, ...]:
        """The arm names, in the policy's arm order."""
        return self.bundle.arms

    @property
    def lambda_range(self) -> tuple[float, float]:
        """The range of lambda the policy was trained on."""
        low, high = self.bundle.manifest["lambda_range"]
        return float(low), float(high)

    @property
    def cost_unit(self) -> float:
        """The cost one unit of lambda prices, in the log's units (its mean sample cost)."""
        return float(self.bundle.manifest["cost_unit"])

    @property
    def default_lambda(self) -> float:
        """The calibrated lambda (``calibrated_lambda`` in the manifest), else the middle
        of the lambda range."""
        value = self.bundle.manifest.get(CALIBRATED_LAMBDA_FIELD)
        if value is not None:
            return float(value)
        low, high = self.lambda_range
        return (low + high) / 2

    @property
    def arm_costs(self) -> dict[str, float]:
        """Mean cost of one sample per arm, in the log's units: the manifest's
        ``arm_mean_cost``, else ``cost_unit`` for every arm."""
        return dict(zip(self.arms, self._arm_costs.tolist(), strict=True))

    @property
    def calibration_table(self) -> list[tuple[float, float]] | None:
        """``(lambda, mean cost)`` pairs measured by calibration, by lambda; None if the
        bundle was not calibrated."""
        return None if self._table is None else [tuple(row) for row in self._table.tolist()]

    def action(self, index: int) -> Action:
        """The :class:`Action` of an action index."""
        arms = self.arms
        if index == STOP:
            return Action("stop", None, index)
        if index <= len(arms):
            return Action("sample", arms[index - 1], index)
        kind = "refine" if index == refine_action(len(arms)) else "verify"
        return Action(kind, None, index)

    # ------------------------------------------------------------ lambda
    def lambda_for_cost(self, target_cost: float) -> float:
        """The lambda whose calibrated mean cost per query is ``target_cost``.

        Reads the calibration table written by :func:`training.rl.calibrate.calibrate`:
        the calibrated target maps to the calibrated lambda exactly; other targets are
        interpolated linearly on the table made non-increasing in lambda (a running
        minimum), and targets outside the measured costs get the end of the range (the
        most or the least the policy spends).

        Args:
            target_cost: mean cost per query, in the log's units.

        Raises:
            ParameterError: the bundle has no calibration, or the target is not a cost.
        """
        target = _cost("BudgetOracle.lambda_for_cost", "target_cost", target_cost)
        if self._table is None:
            raise ParameterError(
                "BudgetOracle", "target_cost",
                "used with a calibrated bundle only: this bundle has no calibration table. "
                "Run training.rl.calibrate.calibrate(bundle, log, queries, target) on "
                "validation queries first, or pass lambda_=...", target_cost)
        calibration = self.bundle.manifest[CALIBRATION_FIELD]
        if target == calibration.get("target_mean_cost"):
            return float(self.bundle.manifest[CALIBRATED_LAMBDA_FIELD])
        lambdas, costs = self._table[:, 0], np.minimum.accumulate(self._table[:, 1])
        reached = np.flatnonzero(costs <= target)
        if len(reached) == 0:
            return float(lambdas[-1])
        i = int(reached[0])
        if i == 0:
            return float(lambdas[0])
        share = (costs[i - 1] - target) / (costs[i - 1] - costs[i])
        return float(lambdas[i - 1] + share * (lambdas[i] - lambdas[i - 1]))

    def _lambda(self, owner: str, lambda_: float | None,
                target_cost: float | None = None) -> float:
        if lambda_ is not None and target_cost is not None:
            raise ParameterError(owner, "target_cost", "None when lambda_ is given "
                                 "(give one of lambda_ and target_cost)", target_cost)
        if target_cost is not None:
            return self.lambda_for_cost(target_cost)
        if lambda_ is None:
            return self.default_lambda
        low, high = self.lambda_range
        try:
            value = float(lambda_)
        except (TypeError, ValueError):
            value = float("nan")
        if not low - 1e-12 <= value <= high + 1e-12:
            raise ParameterError(owner, "lambda_", f"in the policy's training range [{low:g}, "
                                 f"{high:g}] (it never saw other prices)", lambda_)
        return value

    # ------------------------------------------------------------ priors
    def predict_priors(self, queries: Sequence[str | None],
                       metadata: Sequence[Mapping[str, Any]] | None = None) -> np.ndarray:
        """Per-attempt accuracy per arm of each query, shape (Q, A).

        With the bundle's difficulty predictor when it has one (imports
        ``training.difficulty``, hence scikit-learn and LightGBM, on first use); else 0.5.

        Args:
            queries: query texts.
            metadata: per query, the metadata columns the predictor was fitted with
                (``task``...); missing columns are treated as missing values.
        """
        texts = list(queries)
        if self.bundle.predictor_dir is None or not texts:
            return np.full((len(texts), len(self.arms)), 0.5)
        if metadata is not None and len(metadata) != len(texts):
            raise ParameterError("BudgetOracle.predict_priors", "metadata",
                                 f"one mapping per query ({len(texts)})", len(metadata))
        predictor = self._load_predictor()
        if predictor.features_.n_user_features:
            raise ParameterError("BudgetOracle", "prior", "given explicitly: the bundled "
                                 "predictor needs user feature columns a query text cannot "
                                 "supply", None)
        columns = [column.name for column in predictor.features_.metadata]
        rows = metadata or [{}] * len(texts)
        table = QueryTable(
            text=np.array(texts, dtype=object),
            metadata={name: np.array([row.get(name) for row in rows], dtype=object)
                      for name in columns})
        predicted = predictor.predict(_QueriesOnly(table), np.arange(len(texts)))
        order = [list(predictor.arms_).index(arm) for arm in self.arms]
        return np.clip(predicted[:, order], 0.0, 1.0)

    def _load_predictor(self) -> Any:
        if self._predictor is None:
            from training.difficulty import DifficultyPredictor  # scikit-learn: on demand

            predictor = DifficultyPredictor.load(self.bundle.predictor_dir)
            missing = sorted(set(self.arms) - set(predictor.arms_))
            if missing:
                raise BundleError(f"the bundled difficulty predictor has no arms {missing}; "
                                  "re-export the bundle with the predictor of its training "
                                  "run.", path=self.bundle.path)
            self._predictor = predictor
        return self._predictor

    def _prior(self, owner: str, query: str | None, prior: Any,
               metadata: Mapping[str, Any] | None) -> np.ndarray:
        if prior is not None:
            return _check_prior(owner, prior, (len(self.arms),))
        if query is None:
            return np.full(len(self.arms), 0.5)
        return self.predict_priors([query], None if metadata is None else [metadata])[0]

    def _served(self, owner: str, arms: Sequence[str] | None) -> np.ndarray:
        if arms is None:
            return np.ones(len(self.arms), dtype=bool)
        names = [arms] if isinstance(arms, str) else list(arms)
        unknown = [arm for arm in names if arm not in self.arms]
        if unknown or not names:
            raise ParameterError(owner, "arms", f"a non-empty list of the bundle's arms "
                                 f"{list(self.arms)}", arms)
        return np.isin(np.array(self.arms), names)

    # ------------------------------------------------------------ the three APIs
    def session(
        self,
        query: str | None = None,
        *,
        lambda_: float | None = None,
        target_cost: float | None = None,
        prior: np.ndarray | Sequence[float] | None = None,
        arms: Sequence[str] | None = None,
        supports_refine: bool = False,
        supports_verify: bool = False,
        max_samples: int | None = None,
        max_samples_per_arm: Mapping[str, int] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Session:
        """Start deciding for one query.

        Args:
            query: the query text (used to predict the prior, see below).
            lambda_: the price of one cost unit (the bundle's ``cost_unit``), in the
                policy's training range; default :attr:`default_lambda`.
            target_cost: instead of ``lambda_``, the mean cost per query to aim at (log
                units), mapped to a lambda by the bundle's calibration table
                (:meth:`lambda_for_cost`); needs a calibrated bundle.
            prior: predicted per-attempt accuracy per arm, shape (A,). Default: the
                bundle's difficulty predictor on ``query`` (imports scikit-learn) if both
                exist, else 0.5 per arm.
            arms: the arms the executor can serve (default all); others are never asked.
            supports_refine: whether the executor can refine (else REFINE is masked).
            supports_verify: whether the executor can verify (else VERIFY is masked).
            max_samples: most attempts (samples + refinements) for this query.
            max_samples_per_arm: most samples per arm (e.g. a cache of precomputed
                samples); arms not listed are unlimited.
            metadata: the query's metadata for the predictor (``{"task": ...}``).

        Raises:
            ParameterError: an invalid argument, or ``target_cost`` on a bundle without
                calibration.
        """
        owner = "BudgetOracle.session"
        lam = self._lambda(owner, lambda_, target_cost)
        served = self._served(owner, arms)
        if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(
                max_samples, int | np.integer) or max_samples < 0):
            raise ParameterError(owner, "max_samples", "an integer >= 0 or None", max_samples)
        limits = np.full(len(self.arms), -1, dtype=np.int64)
        for arm, limit in (max_samples_per_arm or {}).items():
            if arm not in self.arms or isinstance(limit, bool) or not isinstance(
                    limit, int | np.integer) or limit < 0:
                raise ParameterError(owner, "max_samples_per_arm",
                                     f"arm -> integer >= 0 for arms in {list(self.arms)}",
                                     {arm: limit})
            limits[self.arms.index(arm)] = int(limit)
        return Session(self, query=query, lambda_=lam,
                       prior=self._prior(owner, query, prior, metadata), served=served,
                       limits=limits, supports_refine=supports_refine,
                       supports_verify=supports_verify, max_samples=max_samples)

    def budget(
        self,
        query: str | None = None,
        *,
        prior: np.ndarray | Sequence[float] | None = None,
        lambda_: float | None = None,
        max_samples: int = 40,
        arms: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, int]:
        """An up-front number of samples for one arm, for executors that ask for n at once.

        The model: arm ``a``'s samples are right with probability ``p_a`` (the prior), and
        majority voting over ``n`` of them is right with :func:`majority_accuracy`
        (two-answer model); a sample costs the arm's mean cost (:attr:`arm_costs`). The
        budget is the ``(a, n)``, ``1 <= n <= max_samples``, that maximises
        ``acc_a(n) - lambda * n * cost_a / cost_unit`` (the policy's own reward);
        ties go to the cheaper choice, then the earlier arm.

        Args:
            query: the query text (for the prior, as in :meth:`session`).
            prior: per-arm accuracy, shape (A,); overrides the predicted prior.
            lambda_: the price of one cost unit; default :attr:`default_lambda`.
            max_samples: the largest n considered.
            arms: the arms the executor can serve (default all).
            metadata: the query's metadata for the predictor.

        Returns:
            ``{arm: n}`` for every arm, with one arm nonzero.
        """
        owner = "BudgetOracle.budget"
        lam = self._lambda(owner, lambda_)
        n_max = _positive_int(owner, "max_samples", max_samples)
        p = self._prior(owner, query, prior, metadata)
        served = self._served(owner, arms)
        n = np.arange(n_max + 1)
        spend = n[None, :] * (self._arm_costs / self.cost_unit)[:, None]
        value = majority_accuracy(p, n_max) - lam * spend
        value[:, 0] = -np.inf
        value[~served] = -np.inf
        best = value >= value.max() - 1e-12
        # Cheapest among the best, then the earliest arm (row-major order).
        arm, count = np.unravel_index(np.argmin(np.where(best, spend, np.inf)), value.shape)
        return {name: int(count) if i == arm else 0 for i, name in enumerate(self.arms)}

    def allocate(
        self,
        queries: Sequence[str] | int,
        total_budget: float,
        *,
        priors: np.ndarray | None = None,
        max_samples: int = 40,
        arm: str | None = None,
        metadata: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[dict[str, int]]:
        """Split a total budget across a batch by predicted marginal gain.

        After Damani et al. (2024): each query's predicted majority@n curve
        (:func:`majority_accuracy` of its prior) is made concave (its least concave
        majorant, :func:`concave_majorant_gains`), and samples go one at a time to the
        query whose next sample gains most (:func:`greedy_allocation`), which maximises
        the batch's predicted accuracy under the budget; a sample that gains nothing is
        not spent. All queries sample one arm: ``arm``, or else the arm whose allocation
        predicts the most correct answers for this batch.

        Args:
            queries: the query texts (for their priors), or the number of queries.
            total_budget: the batch's total cost, in the log's units: each sample of
                an arm costs its mean cost (:attr:`arm_costs`), so
                ``sum(n_q) * cost_arm <= total_budget``.
            priors: per-query, per-arm accuracy, shape (Q, A); default: predicted from
                the texts by the bundle's predictor, else 0.5.
            max_samples: most samples per query.
            arm: the arm to sample (default: the best for this batch, see above).
            metadata: per-query metadata for the predictor.

        Returns:
            Per query, ``{arm: n}`` for every arm (only the chosen arm nonzero).
        """
        owner = "BudgetOracle.allocate"
        n_max = _positive_int(owner, "max_samples", max_samples)
        budget = _cost(owner, "total_budget", total_budget)
        p = self._batch_priors(owner, queries, priors, metadata)
        candidates = range(len(self.arms)) if arm is None else [
            int(np.flatnonzero(self._served(owner, [arm]))[0])]
        best: tuple[float, int, np.ndarray] | None = None
        for a in candidates:
            curves = majority_accuracy(p[:, a], n_max)
            gains = concave_majorant_gains(curves)
            units = int(budget // self._arm_costs[a])
            while units > 0 and units * self._arm_costs[a] > budget:
                units -= 1  # floating point: never exceed the total
            counts = greedy_allocation(gains, units)
            value = float(sum(gains[q, :c].sum() for q, c in enumerate(counts)))
            if best is None or value > best[0] + 1e-12:
                best = (value, a, counts)
        assert best is not None
        _, chosen, counts = best
        return [{name: int(c) if i == chosen else 0 for i, name in enumerate(self.arms)}
                for c in counts]

    def _batch_priors(self, owner: str, queries: Sequence[str] | int, priors: Any,
                      metadata: Sequence[Mapping[str, Any]] | None) -> np.ndarray:
        if isinstance(queries, bool | str) or not isinstance(queries,
                                                              int | np.integer | Sequence):
            raise ParameterError(owner, "queries", "a list of query texts or a count",
                                 queries)
        count = int(queries) if isinstance(queries, int | np.integer) else len(queries)
        if priors is not None:
            return _check_prior(owner, priors, (count, len(self.arms)))
        if isinstance(queries, int | np.integer):
            return np.full((count, len(self.arms)), 0.5)
        return self.predict_priors(list(queries), metadata)

    # ------------------------------------------------------------ reading helpers
    def _read_arm_costs(self, manifest: Mapping[str, Any]) -> np.ndarray:
        costs = manifest.get(ARM_COST_FIELD)
        if costs is None:
            return np.full(len(self.arms), self.cost_unit)
        try:
            values = np.array([float(costs[arm]) for arm in self.arms])
        except (KeyError, TypeError, ValueError) as error:
            raise BundleError(f"manifest field {ARM_COST_FIELD!r} must map every arm "
                              f"{list(self.arms)} to its mean sample cost ({error!r}); "
                              "re-export or re-calibrate the bundle.",
                              path=self.bundle.path) from error
        if not (np.isfinite(values).all() and (values > 0).all()):
            raise BundleError(f"manifest field {ARM_COST_FIELD!r} must hold finite costs > 0, "
                              f"got {costs!r}.", path=self.bundle.path)
        return values

    def _read_calibration(self, manifest: Mapping[str, Any]) -> np.ndarray | None:
        calibration = manifest.get(CALIBRATION_FIELD)
        if calibration is None:
            return None
        try:
            table = np.array(calibration["table"], dtype=np.float64).reshape(-1, 2)
            float(manifest[CALIBRATED_LAMBDA_FIELD])
        except (KeyError, TypeError, ValueError) as error:
            raise BundleError(f"manifest field {CALIBRATION_FIELD!r} must hold a 'table' of "
                              f"(lambda, mean cost) pairs beside {CALIBRATED_LAMBDA_FIELD!r} "
                              f"({error!r}); calibrate the bundle again.",
                              path=self.bundle.path) from error
        if len(table) == 0 or not np.isfinite(table).all():
            raise BundleError(f"manifest field {CALIBRATION_FIELD!r} has an empty or "
                              "non-finite table; calibrate the bundle again.",
                              path=self.bundle.path)
        return table[np.argsort(table[:, 0], kind="stable")]

    def __repr__(self) -> str:
        return (f"BudgetOracle({str(self.bundle.path)!r}, arms={list(self.arms)}, "
                f"lambda_range={list(self.lambda_range)}, default_lambda="
                f"{self.default_lambda:g})")


class _QueriesOnly:
    """What :meth:`DifficultyPredictor.predict` reads of a log: the query table only."""

    def __init__(self, queries: QueryTable) -> None:
        self.queries = queries
        self.n_queries = len(queries.text)


def _check_prior(owner: str, prior: Any, shape: tuple[int, ...]) -> np.ndarray:
    try:
        array = np.asarray(prior, dtype=np.float64)
    except (TypeError, ValueError):
        array = np.full(1, np.nan)
    if array.shape != shape or not ((array >= 0) & (array <= 1)).all():
        raise ParameterError(owner, "prior" if len(shape) == 1 else "priors",
                             f"an array of shape {shape} with values in [0, 1]", prior)
    return array.copy()


def _positive_int(owner: str, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ParameterError(owner, name, "an integer >= 1", value)
    return int(value)


# ------------------------------------------------------------------ loading
def load(path_or_uri: str | os.PathLike[str], *, dst_path: str | os.PathLike[str] | None = None,
         tracking_uri: str | None = None) -> BudgetOracle:
    """Load a bundle as a :class:`BudgetOracle` (this is ``allocator.load``).

    Args:
        path_or_uri: a bundle directory, or an MLflow URI: ``models:/NAME@ALIAS`` (or
            ``models:/NAME/VERSION``) of a registered model, ``runs:/RUN_ID/PATH`` of a
            run's artifacts. A URI is the one heavy path: it imports mlflow and downloads
            the artifacts, then loads the bundle found in them (the directory holding a
            bundle ``manifest.json``; exactly one is expected).
        dst_path: where to download an MLflow URI's artifacts (default: MLflow's
            choice, a new temporary directory unless the artifacts are local already).
        tracking_uri: the MLflow tracking URI, also used as the model registry's URI
            (default: ``MLFLOW_TRACKING_URI`` / ``MLFLOW_REGISTRY_URI`` or MLflow's
            defaults).

    Raises:
        BundleError: no bundle there, the download failed, or the bundle is refused
            (tampered, made for other code...).
    """
    if isinstance(path_or_uri, str) and path_or_uri.startswith(MLFLOW_SCHEMES):
        folder = _find_bundle(_download(path_or_uri, dst_path, tracking_uri), path_or_uri)
    else:
        folder = Path(path_or_uri)
    return BudgetOracle(folder)


def _download(uri: str, dst_path: str | os.PathLike[str] | None,
              tracking_uri: str | None) -> Path:
    """Download an MLflow URI's artifacts (imports mlflow: seconds)."""
    import mlflow.artifacts  # the one heavy import of the runtime, for URIs only
    from mlflow.exceptions import MlflowException

    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=None if dst_path is None else os.fspath(dst_path),
            tracking_uri=tracking_uri, registry_uri=tracking_uri)
    except (MlflowException, OSError) as error:
        raise BundleError(f"could not download the MLflow artifacts ({error}); check the URI "
                          "and MLFLOW_TRACKING_URI (or pass tracking_uri=...).",
                          path=uri) from error
    return Path(local)


def _find_bundle(root: Path, uri: str) -> Path:
    """The one directory under ``root`` (itself included) holding a bundle manifest."""
    found = [file.parent for file in sorted(root.rglob(MANIFEST_FILE)) if _is_bundle(file)]
    if (root / MANIFEST_FILE).is_file() and _is_bundle(root / MANIFEST_FILE):
        found = [root]
    if len(found) == 1:
        return found[0]
    where = "no policy bundle" if not found else f"{len(found)} policy bundles {found}"
    raise BundleError(f"the artifacts downloaded to {root} hold {where}; pass the URI of "
                      "one bundle directory (runs:/RUN_ID/PATH/TO/BUNDLE).", path=uri)


def _is_bundle(manifest: Path) -> bool:
    try:
        content = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(content, dict) and content.get("format") == BUNDLE_FORMAT
