"""The budget oracle: a trained bundle as a decision service that any executor can drive.

:func:`load` (also ``allocator.load``) reads a bundle and returns a :class:`BudgetOracle`,
which decides step by step (:meth:`~BudgetOracle.session`), up front
(:meth:`~BudgetOracle.budget`) or for a batch under a total budget
(:meth:`~BudgetOracle.allocate`). The session's classes and the allocation functions are
re-exported here. Example::

    oracle = allocator.load("runs/first/bundle")
    session = oracle.session("What is 17 * 24?", lambda_=0.01)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from allocator._checks import check_cost, check_int, check_prior
from allocator.actions import n_actions
from allocator.allocation import (
    batch_allocation,
    best_budget,
    concave_majorant_gains,
    greedy_allocation,
    majority_accuracy,
)
from allocator.baseline_bundle import bundle_policy
from allocator.bundle import MANIFEST_FILE, Bundle, _is_bundle_dir, read_bundle
from allocator.defaults import predict_with, read_default_prior, read_max_pool
from allocator.errors import AllocatorError, BundleError, ParameterError
from allocator.session import (
    UNINFORMED_PRIOR,
    Action,
    AttemptResult,
    Session,
    Verification,
    open_session,
    sample_limits,
    served_mask,
)

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



# ------------------------------------------------------------------ oracle
class BudgetOracle:
    """A verified bundle's policy, served to executors.

    The policy is the learned network of a learned bundle, or the registered baseline of
    a baseline bundle (:mod:`allocator.baseline_bundle`, exported by ``allocator train``'s
    safety net where a baseline beat the learned policy on validation queries); every
    method below works the same for both. A baseline does not read lambda: its knob is
    fixed in the bundle (see :mod:`allocator.baseline_bundle`).

    Three ways to spend test-time compute:

    - **Step by step** (:meth:`session`): a :class:`~allocator.session.Session` per query
      asks the policy for the next :class:`~allocator.session.Action`, the executor
      performs it and reports an :class:`~allocator.session.AttemptResult` (or verifier
      scores), until ``stop`` (see :mod:`allocator.session`). The tests replay logged
      queries and compare decision by decision with the replay environment.
    - **Up front** (:meth:`budget`): one number of samples for one arm, for executors
      that must ask for ``n`` completions in one request.
    - **For a batch under a total budget** (:meth:`allocate`): samples per query by
      predicted marginal gain (Damani et al. 2024, "Learning How Hard to Think:
      Input-Adaptive Allocation of LM Computation"), never exceeding the total. The maths
      of both lives in :mod:`allocator.allocation`.

    Units. Costs an executor reports (:attr:`AttemptResult.cost`, :meth:`Session.verify`)
    and every cost the oracle returns or accepts (``target_cost``, ``total_budget``,
    :attr:`Session.cost_spent`) are in the *log's* units (tokens, characters, dollars:
    what the training log's ``cost`` column held, and what the evaluator reports). The
    policy itself sees costs divided by the bundle's ``cost_unit`` (the training log's
    mean sample cost), and ``lambda`` is the price of one such unit in units of accuracy.

    The prior of every entry point (sessions, :meth:`budget`, :meth:`allocate`,
    :class:`~allocator.executors.PolicyOracle` given this oracle, the HTTP service)
    follows one rule, :meth:`prior_for`'s. The sample cap: a session masks
    ``SAMPLE(arm)`` once the arm has drawn its cap, as the replay environment masks an
    exhausted pool (:meth:`sample_caps`). :meth:`defaults` lists every default and where
    it came from (``allocator inspect BUNDLE`` prints it, ``GET /v1/health`` returns it
    to a caller with the token).

    Light imports: this class imports numpy and the runtime modules (bundle,
    featurizer, learned policy, session, allocation) only; a predicted prior imports
    scikit-learn and LightGBM on first use (and an MLflow URI in :func:`load` imports
    mlflow).

    Args:
        path: the bundle directory (read and verified by
            :func:`~allocator.bundle.read_bundle`), or a bundle already verified by it
            (used as it is, not read again).

    Attributes:
        policy: the policy that decides: a :class:`~allocator.learned.LearnedPolicy`,
            or the baseline of a baseline bundle.
        bundle: the verified bundle, read once at load time: the oracle never looks at
            the files again (bundles are immutable: a recalibrated or retrained
            bundle is a new directory, loaded with a new :func:`load`).

    Raises:
        BundleError: the bundle is refused (tampered, made for other code...).
    """

    def __init__(self, path: str | os.PathLike[str] | Bundle) -> None:
        # Read and verified once: the policy decides with this very bundle, and nothing
        # here looks at the files again (a loaded oracle is immutable; load again).
        self.bundle: Bundle = path if isinstance(path, Bundle) else read_bundle(path)
        self.policy = bundle_policy(self.bundle)
        manifest = self.bundle.manifest
        self._arm_costs = self._read_arm_costs(manifest)
        self._table = self._read_calibration(manifest)
        self._max_pool, self._max_pool_source = read_max_pool(manifest, self.arms,
                                                              self.bundle.path)
        self._predictor: Any = None
        self._default_prior: tuple[np.ndarray, str] | None = read_default_prior(
            manifest, self.arms, self.bundle.path)
        self._actions = tuple(Action.of_index(index, self.arms, self.widths)
                              for index in range(n_actions(len(self.arms), self.widths)))

    # ------------------------------------------------------------ manifest
    @property
    def widths(self) -> tuple[int, ...]:
        """The parallel widths of the policy's action layout (the bundle's manifest
        ``widths``; ``(1,)``: one attempt per SAMPLE). Sessions offer SAMPLE(arm)×w for
        each ``w`` after the first."""
        return self.bundle.widths

    @property
    def arms(self) -> tuple[str, ...]:
        """The arm names, in the policy's arm order."""
        return self.bundle.arms

    @property
    def policy_kind(self) -> str:
        """``"network"`` (a learned policy) or ``"baseline"`` (see
        :mod:`allocator.baseline_bundle`)."""
        return self.bundle.policy_kind

    @property
    def decision_backend(self) -> str:
        """What computes a decision: ``"compiled"`` or ``"numpy"`` (the learned network,
        see :attr:`allocator.learned.MLPPolicyNetwork.backend`), or ``"baseline"``."""
        network = getattr(self.policy, "network", None)
        return "baseline" if network is None else network.backend

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
    def lambda_source(self) -> str:
        """Where :attr:`default_lambda` comes from, in words."""
        if self.bundle.manifest.get(CALIBRATED_LAMBDA_FIELD) is None:
            return ("the middle of the lambda range (the bundle is not calibrated: run "
                    "`allocator calibrate BUNDLE LOG -o NEW_BUNDLE`)")
        calibration = self.bundle.manifest.get(CALIBRATION_FIELD) or {}
        if calibration.get("goal"):
            return f"calibration: {calibration['goal']}"
        target = calibration.get("target_mean_cost")
        if isinstance(target, int | float):
            return f"calibration: mean cost {target:g} per query"
        return "calibration"

    @property
    def default_prior(self) -> np.ndarray:
        """The uninformed prior per arm (rule 3 of :meth:`prior_for`), shape (A,)."""
        return self._uninformed()[0].copy()

    @property
    def prior_source(self) -> str:
        """Where :attr:`default_prior` comes from, in words."""
        return self._uninformed()[1]

    @property
    def max_pool(self) -> dict[str, int]:
        """The default sample cap per arm: the largest pool of each arm the policy was
        trained on (the manifest's ``max_pool``), else
        :data:`~allocator.defaults.LEGACY_MAX_POOL`."""
        return dict(zip(self.arms, self._max_pool.tolist(), strict=True))

    @property
    def max_pool_source(self) -> str:
        """Where :attr:`max_pool` comes from, in words."""
        return self._max_pool_source

    @property
    def calibrated_cost_range(self) -> tuple[float, float] | None:
        """The least and the most mean cost per query calibration measured (the range
        ``target_cost`` may ask for), None if the bundle was not calibrated."""
        if self._table is None:
            return None
        return float(self._table[:, 1].min()), float(self._table[:, 1].max())

    def defaults(self) -> dict[str, Any]:
        """Every default the oracle uses, with where it came from (JSON-ready).

        Returns:
            ``{"lambda": {"value", "source", "range"}, "prior": {"values", "source"},
            "max_samples_per_arm": {"values", "source"}, "target_cost_range": [lo, hi] or
            None, "arm_mean_cost": {arm: cost}}``.
        """
        return {
            "lambda": {"value": self.default_lambda, "source": self.lambda_source,
                       "range": list(self.lambda_range)},
            "prior": {"values": dict(zip(self.arms, self.default_prior.tolist(),
                                         strict=True)),
                      "source": self.prior_source},
            "max_samples_per_arm": {"values": self.max_pool, "source": self.max_pool_source},
            "target_cost_range": (None if self.calibrated_cost_range is None
                                   else list(self.calibrated_cost_range)),
            "arm_mean_cost": self.arm_costs,
        }

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
        if not 0 <= index < len(self._actions):
            raise ParameterError("BudgetOracle.action", "index",
                                 f"an action index in [0, {len(self._actions)})", index)
        return self._actions[index]

    # ------------------------------------------------------------ lambda
    def lambda_for_cost(self, target_cost: float) -> float:
        """The lambda whose calibrated mean cost per query is ``target_cost``.

        Reads the calibration table written by :func:`allocator.training.rl.calibrate.calibrate`:
        the calibrated target maps to the calibrated lambda exactly; other targets are
        interpolated linearly on the table made non-increasing in lambda (a running
        minimum). A target outside the measured costs (:attr:`calibrated_cost_range`)
        is refused: the policy was never seen to spend it, and clamping it silently
        would answer another question.

        Args:
            target_cost: mean cost per query, in the log's units.

        Raises:
            ParameterError: the bundle has no calibration, the target is not a cost, or
                it lies outside the calibrated range (the message names the range).
        """
        target = check_cost("BudgetOracle.lambda_for_cost", "target_cost", target_cost)
        if self._table is None:
            raise ParameterError(
                "BudgetOracle", "target_cost",
                "used with a calibrated bundle only: this bundle has no calibration table. "
                "Calibrate it on validation queries first (allocator calibrate BUNDLE LOG "
                "-o NEW_BUNDLE, which writes a calibrated copy), or pass lambda_=...",
                target_cost)
        calibration = self.bundle.manifest[CALIBRATION_FIELD]
        if target == calibration.get("target_mean_cost"):
            return float(self.bundle.manifest[CALIBRATED_LAMBDA_FIELD])
        low, high = self.calibrated_cost_range or (0.0, 0.0)
        if not low <= target <= high:
            raise ParameterError(
                "BudgetOracle", "target_cost",
                f"within the calibrated range [{low:.6g}, {high:.6g}] (mean cost per query "
                "the policy was measured to spend over its lambda range); calibrate again "
                "on other queries or retrain with a wider lambda_range for other targets",
                target_cost)
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
    def prior_for(self, query: str | None = None, metadata: Mapping[str, Any] | None = None,
                  *, prior: Any = None, owner: str = "BudgetOracle.prior_for") -> np.ndarray:
        """The prior the policy sees for one query (the policy's observation starts with
        a predicted per-attempt accuracy per arm); one rule for every entry point:

        1. an explicit ``prior`` wins;
        2. a query with a text or metadata, on a bundle with a difficulty predictor: the
           predictor's prediction (a missing text reads as the empty text, as in
           training, where the log's missing texts are empty strings); this imports
           :mod:`allocator.predictor` and so scikit-learn and LightGBM, on first use only;
        3. otherwise (no text and no metadata, or no predictor): the bundle's *uninformed
           prior* (:attr:`default_prior`), the manifest's ``default_prior``: recorded at
           export as the predictor's prediction for an empty text without metadata,
           which is exactly what rule 2 gives and what the policy saw in training for
           such a query. A bundle trained without a predictor records the replay
           environment's prior (:data:`~allocator.session.UNINFORMED_PRIOR`, what its
           policy always saw). Older bundles without the field derive it the same way
           (the predictor on an empty text, else
           :data:`~allocator.session.UNINFORMED_PRIOR`).

        Args:
            query: the query text (None or empty: no text).
            metadata: the query's metadata for the predictor (``{"task": ...}``).
            prior: an explicit per-arm prior, shape (A,): it wins.
            owner: who is asking (named in errors).

        Returns:
            Per-arm per-attempt accuracy, shape (A,).

        Raises:
            ParameterError: an invalid explicit prior, or a text for a predictor that
                needs user feature columns.
        """
        if prior is not None:
            return check_prior(owner, "prior", prior, (len(self.arms),))
        return self.predict_priors([query], None if metadata is None else [metadata])[0]

    def predict_priors(self, queries: Sequence[str | None],
                       metadata: Sequence[Mapping[str, Any] | None] | None = None
                       ) -> np.ndarray:
        """Per-attempt accuracy per arm of each query, shape (Q, A), by the rule of
        :meth:`prior_for` (:meth:`prior_for` of each query).

        Args:
            queries: query texts (None: no text).
            metadata: per query, the metadata columns the predictor was fitted with
                (``task``...); missing columns are treated as missing values.
        """
        texts = list(queries)
        if metadata is not None and len(metadata) != len(texts):
            raise ParameterError("BudgetOracle.predict_priors", "metadata",
                                 f"one mapping per query ({len(texts)})", len(metadata))
        rows = list(metadata) if metadata is not None else [None] * len(texts)
        out = np.tile(self._uninformed()[0], (len(texts), 1))
        informed = [i for i, (text, row) in enumerate(zip(texts, rows, strict=True))
                    if text or row]
        if informed and self.bundle.predictor_dir is not None:
            predictor = self._load_predictor()
            if predictor.features_.n_user_features:
                raise ParameterError("BudgetOracle", "prior", "given explicitly: the bundled "
                                     "predictor needs user feature columns a query text "
                                     "cannot supply", None)
            out[informed] = predict_with(predictor, self.arms, [texts[i] for i in informed],
                                         [rows[i] or {} for i in informed])
        return out

    def _uninformed(self) -> tuple[np.ndarray, str]:
        """The uninformed prior and its source (derived on first use for old bundles)."""
        if self._default_prior is None:
            if self.bundle.predictor_dir is None:
                self._default_prior = (np.full(len(self.arms), UNINFORMED_PRIOR),
                                       "the replay environment's prior (the bundle records "
                                       "none and has no difficulty predictor)")
            else:
                self._default_prior = (
                    predict_with(self._load_predictor(), self.arms, [""], [{}])[0],
                    "the difficulty predictor on an empty text without metadata (derived: "
                    "the bundle records no default_prior)")
        return self._default_prior

    def _load_predictor(self) -> Any:
        if self._predictor is None:
            from allocator.predictor import DifficultyModel  # LightGBM: on demand

            try:  # from the bytes verified at load, never from the files on disk
                predictor = DifficultyModel.from_files(self.bundle.predictor_files,
                                                           source=str(self.bundle.predictor_dir))
            except AllocatorError as error:
                raise BundleError(f"the bundled difficulty predictor cannot be loaded "
                                  f"({error}); re-export the bundle.",
                                  path=self.bundle.path) from error
            missing = sorted(set(self.arms) - set(predictor.arms_))
            if missing:
                raise BundleError(f"the bundled difficulty predictor has no arms {missing}; "
                                  "re-export the bundle with the predictor of its training "
                                  "run.", path=self.bundle.path)
            self._predictor = predictor
        return self._predictor

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
            prior: predicted per-attempt accuracy per arm, shape (A,). Default:
                :meth:`prior_for` (its rule).
            arms: the arms the executor can serve (default all); others are never asked.
            supports_refine: whether the executor can refine (else REFINE is masked).
            supports_verify: whether the executor can verify (else VERIFY is masked).
            max_samples: most attempts (samples + refinements) for this query. Given, it
                replaces the default per-arm caps (:attr:`max_pool`).
            max_samples_per_arm: most samples per arm (e.g. a cache of precomputed
                samples); arms not listed keep the default cap (:attr:`max_pool`, none
                when ``max_samples`` is given).
            metadata: the query's metadata for the predictor (``{"task": ...}``).

        Raises:
            ParameterError: an invalid argument, or ``target_cost`` on a bundle without
                calibration or outside its calibrated range.
        """
        owner = "BudgetOracle.session"
        return open_session(self, owner, query=query,
                            lambda_=self._lambda(owner, lambda_, target_cost), prior=prior,
                            metadata=metadata, arms=arms, supports_refine=supports_refine,
                            supports_verify=supports_verify, max_samples=max_samples,
                            max_samples_per_arm=max_samples_per_arm)

    def sample_caps(self, max_samples: int | None = None,
                    max_samples_per_arm: Mapping[str, int] | None = None, *,
                    owner: str = "BudgetOracle.sample_caps") -> np.ndarray:
        """The most samples per arm a session allows, int64 over :attr:`arms` (-1: none).

        The default is :attr:`max_pool` (the largest pool the policy was trained on, so a
        policy never runs past what it ever saw: the replay environment masks SAMPLE
        there too; bundles without ``max_pool``: :data:`~allocator.defaults.LEGACY_MAX_POOL`);
        a ``max_samples`` given lifts these defaults (the caller caps the attempts in
        all); ``max_samples_per_arm`` sets the cap of the arms it names.

        Raises:
            ParameterError: an arm not in the bundle, or a cap that is not an integer >= 0.
        """
        given = sample_limits(owner, self.arms, max_samples_per_arm)
        caps = (np.full(len(self.arms), -1, dtype=np.int64) if max_samples is not None
                else self._max_pool.copy())
        named = [self.arms.index(arm) for arm in (max_samples_per_arm or {})]
        caps[named] = given[named]
        return caps

    def budget(
        self,
        query: str | None = None,
        *,
        prior: np.ndarray | Sequence[float] | None = None,
        lambda_: float | None = None,
        max_samples: int | None = None,
        arms: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, int]:
        """An up-front number of samples for one arm, for executors that ask for n at once.

        The model: arm ``a``'s samples are right with probability ``p_a`` (the prior), and
        majority voting over ``n`` of them is right with :func:`majority_accuracy`
        (two-answer model); a sample costs the arm's mean cost (:attr:`arm_costs`). The
        budget is the ``(a, n)``, ``1 <= n <=`` the arm's cap, that maximises
        ``acc_a(n) - lambda * n * cost_a / cost_unit`` (the policy's own reward);
        ties go to the cheaper choice, then the earlier arm.

        Args:
            query: the query text (for the prior, as in :meth:`session`).
            prior: per-arm accuracy, shape (A,); overrides the predicted prior.
            lambda_: the price of one cost unit; default :attr:`default_lambda`.
            max_samples: the largest n considered for every arm; default: each arm's
                sample cap (:attr:`max_pool`, the largest pool the policy was trained
                on), as in :meth:`session`.
            arms: the arms the executor can serve (default all).
            metadata: the query's metadata for the predictor.

        Returns:
            ``{arm: n}`` for every arm, with one arm nonzero.
        """
        owner = "BudgetOracle.budget"
        lam = self._lambda(owner, lambda_)
        n_max = self._budget_caps(owner, max_samples)
        p = self.prior_for(query, metadata, prior=prior, owner=owner)
        served = served_mask(owner, self.arms, arms)
        if not (n_max[served] >= 1).any():
            raise ParameterError(owner, "arms", "at least one arm whose sample cap is >= 1 "
                                 f"(caps {dict(zip(self.arms, n_max.tolist(), strict=True))};"
                                 " pass max_samples)", arms)
        arm, count = best_budget(p, self._arm_costs / self.cost_unit, lam, n_max, served)
        return {name: count if i == arm else 0 for i, name in enumerate(self.arms)}

    def allocate(
        self,
        queries: Sequence[str] | int,
        total_budget: float,
        *,
        priors: np.ndarray | None = None,
        max_samples: int | None = None,
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
            priors: per-query, per-arm accuracy, shape (Q, A); default: each query's
                :meth:`prior_for` (the uninformed prior for a count of queries).
            max_samples: most samples per query; default: the arm's sample cap
                (:attr:`max_pool`), as in :meth:`session`.
            arm: the arm to sample (default: the best for this batch, see above).
            metadata: per-query metadata for the predictor.

        Returns:
            Per query, ``{arm: n}`` for every arm (only the chosen arm nonzero).
        """
        owner = "BudgetOracle.allocate"
        n_max = self._budget_caps(owner, max_samples)
        budget = check_cost(owner, "total_budget", total_budget)
        p = self._batch_priors(owner, queries, priors, metadata)
        candidates = [a for a in (range(len(self.arms)) if arm is None else [
            int(np.flatnonzero(served_mask(owner, self.arms, [arm]))[0])]) if n_max[a] >= 1]
        if not candidates:
            raise ParameterError(owner, "arm", "an arm whose sample cap is >= 1 (caps "
                                 f"{dict(zip(self.arms, n_max.tolist(), strict=True))}; "
                                 "pass max_samples)", arm)
        chosen, counts = batch_allocation(p, self._arm_costs, budget, n_max, candidates)
        return [{name: int(c) if i == chosen else 0 for i, name in enumerate(self.arms)}
                for c in counts]

    def _budget_caps(self, owner: str, max_samples: int | None) -> np.ndarray:
        """Per-arm most samples for :meth:`budget` and :meth:`allocate`: ``max_samples``
        for every arm, else the sessions' default caps (:attr:`max_pool`)."""
        if max_samples is None:
            return self._max_pool.copy()
        return np.full(len(self.arms), check_int(owner, "max_samples", max_samples, minimum=1),
                       dtype=np.int64)

    def _batch_priors(self, owner: str, queries: Sequence[str] | int, priors: Any,
                      metadata: Sequence[Mapping[str, Any]] | None) -> np.ndarray:
        if isinstance(queries, bool | str) or not isinstance(queries,
                                                              int | np.integer | Sequence):
            raise ParameterError(owner, "queries", "a list of query texts or a count",
                                 queries)
        count = int(queries) if isinstance(queries, int | np.integer) else len(queries)
        if priors is not None:
            return check_prior(owner, "priors", priors, (count, len(self.arms)))
        if isinstance(queries, int | np.integer):
            return self.predict_priors([None] * count)
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
    from allocator.extras import require_extra

    require_extra("mlflow", f"loading {uri!r}")
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
    found = [file.parent for file in sorted(root.rglob(MANIFEST_FILE))
             if _is_bundle_dir(file.parent)]
    if _is_bundle_dir(root):
        found = [root]
    if len(found) == 1:
        return found[0]
    where = "no policy bundle" if not found else f"{len(found)} policy bundles {found}"
    raise BundleError(f"the artifacts downloaded to {root} hold {where}; pass the URI of "
                      "one bundle directory (runs:/RUN_ID/PATH/TO/BUNDLE).", path=uri)


