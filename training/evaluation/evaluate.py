"""``allocator evaluate``: every policy, swept along its knob, on held-out queries.

The steps, in order: split the log by query (seeded); fit the difficulty predictor on the
training queries (out-of-fold predictions there, held-out predictions on the test
queries); replay every baseline along its knob on the same seeded orders of the test
queries; trace the oracles' fronts; compute the headline numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from allocator.envs.pools import ReplayPools
from allocator.errors import AllocatorError, ParameterError
from allocator.logs.table import AttemptLog
from allocator.policies import POLICIES
from allocator.policies.base import Policy
from allocator.training.evaluation.baselines import BaselineContext, base_policy, build_sweeps
from allocator.training.evaluation.oracles import (
    MAX_STATES,
    QueryOracleFit,
    default_lambdas,
    hindsight_oracle,
    hindsight_values,
    query_oracle,
)
from allocator.training.evaluation.pareto import headline, pareto_front
from allocator.training.evaluation.prices import lambda_grid
from allocator.training.evaluation.replay import FixedNCurves, ReplayEvaluator
from allocator.training.evaluation.results import EpisodeResults, EvaluationReport, PolicyPoint
from allocator.training.evaluation.statistics import policy_point

__all__ = [
    "DEFAULT_POLICIES",
    "EvaluationConfig",
    "LogInProcess",
    "LogTooSmallError",
    "TestReplays",
    "check_split_size",
    "evaluate",
    "fit_prior",
    "lambda_grid",
    "log_verify_cost",
    "prior_predictor",
    "split_queries",
]

DEFAULT_POLICIES = (
    "fixed-n", "parallel-n", "adaptive-consistency", "esc", "confidence-threshold",
    "difficulty-binned", "blend-asc", "bayes-stop",
    "until-verified", "best-of-n", "weighted-vote", "round-robin", "cascade", "router",
    "rtv", "pdr",
)


@dataclass(frozen=True)
class EvaluationConfig:
    """Settings of an evaluation (all have defaults that suit the public logs).

    Attributes:
        policies: registry names of the policies to sweep.
        arm: the arm single-arm baselines sample (default: the arm with the most samples
            per query).
        test_fraction: share of queries held out for evaluation.
        n_orders: seeded random orders replayed per test query.
        seed: seed of the split, the orders, the predictor and the bootstrap.
        n_bootstrap: bootstrap resamples per interval.
        reference: the policy paired differences are measured against (at its defaults).
        oracles: trace the hindsight and query oracles.
        difficulty: fit the difficulty predictor (needed by difficulty-binned; its
            predictions are the policies' prior).
        sweeps: knob values per policy, overriding the policy's default sweep.
        bundle: an exported allocator bundle to evaluate beside the baselines (registered
            as ``learned``), swept along ``learned_lambdas``. Its prior is the difficulty
            predictor fitted here on the training split (for a bundle trained on this log
            with the same seed, exactly the predictions it was trained and exported with).
        learned_lambdas: the prices the learned policy is replayed at (default: sixteen
            log-spaced over the bundle's lambda range).
        verify_cost: the verifier's cost per verified candidate, in the log's cost units,
            passed to every replay and the oracles. Default (None): read from the log
            (:func:`log_verify_cost`: the mean cost of its ``verify`` rows, one verdict
            per verified candidate; 0 when it has none).
        target_accuracy: the accuracy the headline's costs are measured at; default
            (None): the envelope's top, the best accuracy any deployable baseline reaches.
        oracle_max_states: the state cap of one query's query-oracle DP (past it the query
            falls back to the hindsight bound; the report counts them).
        cost_unit: the name of the log's cost unit (``"chars"``, ``"$ per 1M queries"``),
            shown in tables and plots; default "cost units".
    """

    policies: tuple[str, ...] = DEFAULT_POLICIES
    arm: str | None = None
    test_fraction: float = 0.5
    n_orders: int = 20
    seed: int = 0
    n_bootstrap: int = 1000
    reference: str = "adaptive-consistency"
    oracles: bool = True
    difficulty: bool = True
    sweeps: dict[str, tuple] = field(default_factory=dict)
    bundle: str | None = None
    learned_lambdas: tuple[float, ...] | None = None
    verify_cost: float | None = None
    target_accuracy: float | None = None
    oracle_max_states: int = MAX_STATES
    cost_unit: str | None = None

    def __post_init__(self) -> None:
        unknown = [p for p in self.policies if p not in POLICIES]
        if unknown:
            raise ParameterError("EvaluationConfig", "policies",
                                 f"names from {sorted(POLICIES)}", unknown)
        if not 0.0 < self.test_fraction < 1.0:
            raise ParameterError("EvaluationConfig", "test_fraction", "in (0, 1)",
                                 self.test_fraction)
        if self.verify_cost is not None and not (
                isinstance(self.verify_cost, int | float) and self.verify_cost >= 0):
            raise ParameterError("EvaluationConfig", "verify_cost",
                                 "a number >= 0 (log cost units) or None (read from the log)",
                                 self.verify_cost)


def split_queries(n_queries: int, test_fraction: float, seed: int) -> tuple[np.ndarray,
                                                                           np.ndarray]:
    """A seeded split of query indices into (train, test), both sorted."""
    order = np.random.default_rng(seed).permutation(n_queries)
    n_test = max(1, round(test_fraction * n_queries))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def log_verify_cost(log: AttemptLog) -> float:
    """The log's verifier cost per verified candidate: :func:`allocator.envs.pools.log_verify_cost`
    (the one rule the environments and ``allocator train`` default to)."""
    from allocator.envs.pools import log_verify_cost as rule

    return rule(log)


def _default_arm(log: AttemptLog) -> int:
    counts = np.bincount(log.arm, minlength=len(log.arms))
    return int(np.argmax(counts))


#: Folds of the cross-fitted prior on the training queries.
PRIOR_FOLDS = 3


class LogTooSmallError(AllocatorError, ValueError):
    """Too few queries: for any training query after the split, or for the cross-fitted
    difficulty predictor.

    Attributes:
        source: the log's name (its file where known).
        n_queries: queries in the log.
        n_train: its training queries.
        needed: training queries needed.
        total: queries the log needs at the split's test fraction (None: unknown).
        why: what needs them, in words.
        predictor: whether skipping the predictor is a fix.
    """

    def __init__(self, source: str, n_queries: int, n_train: int, needed: int,
                 total: int | None, why: str, *, predictor: bool) -> None:
        self.source, self.n_queries, self.n_train = source, n_queries, n_train
        self.needed, self.total, self.why, self.predictor = needed, total, why, predictor
        super().__init__(self.message(source))

    def message(self, source: str) -> str:
        """The error's text, naming the log as ``source``."""
        total = (f"at least {self.total} queries (at this test fraction)"
                 if self.total is not None else f"at least {self.needed} training queries")
        skip = (", or skip the predictor: `allocator train --no-predictor` (a constant "
                "prior), `allocator evaluate --no-difficulty`" if self.predictor else "")
        return (f"the log {source} is too small: it has {self.n_queries} queries, "
                f"{self.n_train} of them for training, and {self.why} needs "
                f"{self.needed} training queries. Use a log with {total}{skip}.")


def check_split_size(log: AttemptLog, n_train: int, test_fraction: float) -> None:
    """Refuse a split without a training query.

    Raises:
        LogTooSmallError: naming the log, its size and the size needed.
    """
    if n_train < 1:
        raise LogTooSmallError(log.source or "(in memory)", log.n_queries, n_train, 1,
                               min_log_queries(1, test_fraction),
                               "a split into training and held-out queries",
                               predictor=False)


def fit_prior(log: AttemptLog, train: np.ndarray, test: np.ndarray, seed: int, *,
              test_fraction: float | None = None) -> tuple[Any, np.ndarray]:
    """The difficulty predictor fitted on the training queries, and the prior of every query.

    The prior holds out-of-fold predictions on the training queries (what a policy may
    train on) and the fitted predictor's predictions on the held-out queries. On a
    simulated log the columns and text that hold the true difficulty are left out.

    Args:
        log: the log.
        train: the training queries.
        test: the held-out queries.
        seed: seed of the folds and the predictor.
        test_fraction: the split's held-out share, to state the log size needed when it
            is too small.

    Returns:
        ``(predictor, prior)``, prior of shape (queries, arms); 0.5 outside both sets.

    Raises:
        LogTooSmallError: too few training queries for the cross-fitted predictor (the
            message names the log, the sizes, and the fixes).
    """
    from allocator.training.difficulty import cross_fit_predict

    predictor = prior_predictor(log.simulated, seed)
    check_prior_size(log, len(train), predictor, test_fraction)
    prior = np.full((log.n_queries, len(log.arms)), 0.5)
    prior[train] = cross_fit_predict(predictor, log, train, n_splits=PRIOR_FOLDS,
                                     random_state=seed)
    prior[test] = predictor.fit(log, train).predict(log, test)
    return predictor, prior


def prior_predictor(simulated: bool, seed: int) -> Any:
    """The unfitted difficulty predictor :func:`fit_prior` fits: on a simulated log, the
    columns and text that hold the true difficulty are left out."""
    from allocator.training.difficulty import SIMULATED_TRUTH, DifficultyPredictor

    if simulated:
        return DifficultyPredictor(random_state=seed, exclude_metadata=SIMULATED_TRUTH,
                                   text_features=False)
    return DifficultyPredictor(random_state=seed)


def prior_min_training_queries(predictor: Any) -> int:
    """The fewest training queries the cross-fitted prior can be fitted on: each of its
    :data:`PRIOR_FOLDS` fits sees the queries outside the largest fold, and must hold
    two queries per calibration fold of the predictor (one without calibration)."""
    per_fit = (2 * int(predictor.calibration_splits)
               if getattr(predictor, "calibration", None) is not None else 1)
    n = PRIOR_FOLDS
    while n - -(-n // PRIOR_FOLDS) < per_fit:
        n += 1
    return n


def min_log_queries(training_needed: int, test_fraction: float) -> int:
    """The fewest queries a log needs for :func:`split_queries` to leave
    ``training_needed`` training queries."""
    n = training_needed + 1
    while n - max(1, round(test_fraction * n)) < training_needed:
        n += 1
    return n


def check_prior_size(log: AttemptLog, n_train: int, predictor: Any,
                     test_fraction: float | None) -> None:
    """Refuse a split whose training queries are too few for the cross-fitted prior.

    Raises:
        LogTooSmallError: with the log, its number of queries, the number needed, and
            the fixes (a larger log, or no predictor).
    """
    needed = prior_min_training_queries(predictor)
    if n_train >= needed:
        return
    raise LogTooSmallError(log.source or "(in memory)", log.n_queries, n_train, needed,
                           None if test_fraction is None
                           else min_log_queries(needed, test_fraction),
                           f"the difficulty predictor's cross-fitted prior ({PRIOR_FOLDS} "
                           f"folds, each fitted with {predictor.calibration_splits}-fold "
                           "calibration)", predictor=True)


class TestReplays:
    """Replays on the test queries in this process: the policies at any price, the
    fixed-N curves, the oracles (every replay on the same seeded orders).

    :class:`allocator.training.evaluation.shard_log.ShardedTestReplays` gives the same results with
    the test queries spread over Ray workers.
    """

    def __init__(self, pools: ReplayPools, test: np.ndarray, *, n_orders: int, seed: int,
                 prior: np.ndarray | None, verify_cost: float) -> None:
        self.pools, self.test, self.prior, self.verify_cost = pools, test, prior, verify_cost
        self.n_orders, self.seed = n_orders, seed
        self._evaluators: dict[float, ReplayEvaluator] = {}

    def evaluator(self, lambda_: float = 0.0) -> ReplayEvaluator:
        """The evaluator of the test queries at price ``lambda_`` (built once)."""
        if lambda_ not in self._evaluators:
            self._evaluators[lambda_] = ReplayEvaluator(
                self.pools, self.test, n_orders=self.n_orders, seed=self.seed,
                lambda_=lambda_, prior=self.prior, verify_cost=self.verify_cost)
        return self._evaluators[lambda_]

    def run(self, policy: Policy, lambda_: float = 0.0) -> EpisodeResults:
        """``policy`` replayed on every test episode, seeing price ``lambda_``."""
        return self.evaluator(lambda_).run(policy)

    def curves(self, arm: int) -> FixedNCurves:
        """Fixed-N curves of ``arm`` on the test episodes."""
        return self.evaluator().fixed_n_curves(arm)

    def oracles(self, lambdas: np.ndarray, max_states: int
                ) -> tuple[dict[str, np.ndarray], QueryOracleFit]:
        """The hindsight oracle's values and the query-oracle's fit at ``lambdas``."""
        evaluator = self.evaluator()
        hindsight = hindsight_values(evaluator, lambdas, verify_cost=self.verify_cost)
        return hindsight, query_oracle(evaluator, lambdas, verify_cost=self.verify_cost,
                                       max_states=max_states, hindsight=hindsight)


class LogInProcess:
    """What the evaluation reads of a log held whole in this process (the default view;
    :class:`allocator.training.evaluation.shard_log.ShardedLog` is the one over Parquet shards read
    by Ray workers, with the same results).

    Args:
        log: the log.
    """

    def __init__(self, log: AttemptLog) -> None:
        self.log = log
        self.source, self.n_queries, self.arms = log.source, log.n_queries, log.arms
        self.simulated = log.simulated
        self.pools = ReplayPools.from_log(log)

    def default_arm(self) -> int:
        """The arm with the most attempts."""
        return _default_arm(self.log)

    def verify_cost(self) -> float:
        """:func:`log_verify_cost` of the log."""
        return log_verify_cost(self.log)

    def training(self, train: np.ndarray) -> tuple[ReplayPools, np.ndarray]:
        """Pools holding the training queries, and their indices there."""
        return self.pools, train

    def fit_prior(self, train: np.ndarray, test: np.ndarray, seed: int,
                  test_fraction: float) -> np.ndarray:
        """:func:`fit_prior`'s prior of every query."""
        return fit_prior(self.log, train, test, seed, test_fraction=test_fraction)[1]

    def difficulty(self, prior: np.ndarray, test: np.ndarray) -> dict:
        """The difficulty predictor's metrics on the test queries."""
        from allocator.training.difficulty_metrics import evaluate_difficulty

        return evaluate_difficulty(prior[test], self.log, test)

    def bundle_prior(self, bundle: str, queries: np.ndarray) -> np.ndarray:
        """A bundle's own prior (:func:`~allocator.training.rl.calibrate.bundle_log_prior`), shape
        (log queries, arms), at least on ``queries``."""
        from allocator.training.rl.calibrate import bundle_log_prior

        return bundle_log_prior(bundle, self.log)[0]

    def test_replays(self, test: np.ndarray, **settings: Any) -> TestReplays:
        """The replays on the test queries (``n_orders``, ``seed``, ``prior``,
        ``verify_cost``)."""
        return TestReplays(self.pools, test, **settings)

    def describe(self) -> dict[str, Any]:
        """The report's ``log`` entries (less the cost unit)."""
        return {"source": self.log.source, "fingerprint": self.log.fingerprint(),
                "queries": self.log.n_queries, "attempts": self.log.n_attempts,
                "arms": list(self.log.arms), "simulated": self.log.simulated}


def _learned_points(view: Any, replays: Any, reference: EpisodeResults,
                    config: EvaluationConfig) -> tuple[list[PolicyPoint], EpisodeResults]:
    """The bundle's policy at each lambda, on the baselines' queries and orders; and the
    episodes of the point whose cost is nearest the reference's (for the plots)."""
    from allocator.learned import LearnedPolicy

    policy = LearnedPolicy.from_bundle(config.bundle)
    if replays.prior is None:  # no predictor fitted here: the bundle's own rule, as at run time
        replays = view.test_replays(replays.test, n_orders=replays.n_orders,
                                    seed=replays.seed,
                                    prior=view.bundle_prior(config.bundle, replays.test),
                                    verify_cost=replays.verify_cost)
    points, runs = [], []
    for lam in lambda_grid(policy.bundle.manifest["lambda_range"], config.learned_lambdas):
        results = replays.run(policy, lam)
        runs.append(results)
        points.append(policy_point(results, policy="learned", knob="lambda", value=lam,
                                   deployable=True, reference=reference,
                                   n_bootstrap=config.n_bootstrap, seed=config.seed))
    nearest = int(np.argmin([abs(p.mean_cost - float(reference.cost.mean())) for p in points]))
    return points, runs[nearest]


def _oracle_points(replays: Any, n_arms: int, reference: EpisodeResults,
                   config: EvaluationConfig
                   ) -> tuple[dict[str, list[PolicyPoint]], dict[str, Any]]:
    """Both oracles' fronts on the test episodes, and the query-oracle's summary
    (how many queries it solved exactly, with coarser cost classes, or by fallback)."""
    lambdas = default_lambdas([replays.curves(a) for a in range(n_arms)])
    hindsight, fit = replays.oracles(lambdas, config.oracle_max_states)
    points: dict[str, list[PolicyPoint]] = {"oracle": [], "query-oracle": []}
    for k, lam in enumerate(lambdas):
        for name, results in (("oracle", hindsight_oracle(hindsight, lambdas, k)),
                              ("query-oracle", fit.results(k))):
            previous = points[name][-1] if points[name] else None
            if previous and (previous.accuracy, previous.mean_cost) == (
                    float(results.correct.mean()), float(results.cost.mean())):
                continue  # the same choice at a higher price: nothing new on the front
            points[name].append(policy_point(
                results, policy=name, knob="lambda", value=float(lam), deployable=False,
                reference=reference, n_bootstrap=config.n_bootstrap, seed=config.seed))
    points = {name: pareto_front(front) for name, front in points.items()}  # fronts only
    summary = {**fit.summary(), "max_states": config.oracle_max_states,
               "hindsight_exact_queries": int(hindsight["exact"].sum())}
    return points, summary


def evaluate(
    log: Any,
    config: EvaluationConfig | None = None,
    *,
    progress: Callable[[str], None] = lambda message: None,
    prior: np.ndarray | None = None,
) -> tuple[EvaluationReport, dict[str, EpisodeResults]]:
    """Evaluate every configured policy on held-out queries of ``log``.

    Args:
        log: a pool log (an :class:`~allocator.logs.table.AttemptLog`), or a view of one
            with :class:`LogInProcess`'s methods: a
            :class:`allocator.training.evaluation.shard_log.ShardedLog` replays the test queries
            on Ray workers that read their own Parquet shards (the same report).
        config: settings (defaults if omitted).
        progress: called with a short message before each step (for progress bars).
        prior: the prior of :func:`fit_prior` on this config's split, if the caller has
            it already (the training pipeline does); fitted here otherwise.

    Returns:
        The report, and per policy the episodes of its reference-setting point (for the
        cost-distribution plot).
    """
    config = config or EvaluationConfig()
    view = LogInProcess(log) if isinstance(log, AttemptLog) else log
    if config.arm is not None and config.arm not in view.arms:
        raise ParameterError("EvaluationConfig", "arm",
                             f"one of the log's arms {list(view.arms)}", config.arm)
    arm = view.arms.index(config.arm) if config.arm is not None else view.default_arm()
    train, test = split_queries(view.n_queries, config.test_fraction, config.seed)
    check_split_size(view, len(train), config.test_fraction)
    difficulty_metrics: dict = {}
    if config.difficulty:
        if prior is None:
            progress("fitting the difficulty predictor")
            prior = view.fit_prior(train, test, config.seed, config.test_fraction)
        difficulty_metrics = view.difficulty(prior, test)
    else:
        prior = None
    verify_cost = (view.verify_cost() if config.verify_cost is None
                   else float(config.verify_cost))
    replays = view.test_replays(test, n_orders=config.n_orders, seed=config.seed,
                                prior=prior, verify_cost=verify_cost)
    train_pools, train_queries = view.training(train)
    context = BaselineContext(train_pools, train_queries,
                              None if prior is None else _training_prior(
                                  prior, train, train_queries, train_pools.n_queries),
                              n_orders=config.n_orders, seed=config.seed,
                              verify_cost=verify_cost, sweeps=dict(config.sweeps))
    progress("replaying the reference")
    reference = replays.run(base_policy(config.reference, arm, context.pool(arm)))
    points: dict[str, list[PolicyPoint]] = {}
    chosen: dict[str, EpisodeResults] = {config.reference: reference}
    sweeps, skipped = build_sweeps(config.policies, context,
                                   progress=lambda name: progress(f"sweeping {name}"))
    for name, policies in sweeps.items():
        points[name] = []
        for policy in policies:
            results = replays.run(policy)
            points[name].append(policy_point(
                results, policy=name, knob=type(policy).knob,
                value=getattr(policy, type(policy).knob) if type(policy).knob else None,
                deployable=type(policy).deployable, reference=reference,
                n_bootstrap=config.n_bootstrap, seed=config.seed))
            chosen.setdefault(name, results)
    if config.bundle is not None:
        progress("replaying the learned policy")
        points["learned"], chosen["learned"] = _learned_points(view, replays, reference,
                                                               config)
    oracle_summary: dict[str, Any] = {}
    if config.oracles:
        progress("tracing the oracles")
        oracle_points, oracle_summary = _oracle_points(replays, len(view.arms), reference,
                                                       config)
        points.update(oracle_points)
    timed = any(point.has_latency for front in points.values() for point in front)
    report = EvaluationReport(
        log={**view.describe(), "cost_unit": config.cost_unit or "cost units",
             "latency": ("seconds: started_at / ended_at of every replayed row" if timed
                         else "unavailable: the log does not time every row (started_at, "
                              "ended_at)")},
        config={**{k: v for k, v in asdict(config).items() if k != "sweeps"},
                "arm": view.arms[arm], "train_queries": len(train), "test_queries": len(test),
                "verify_cost": verify_cost,
                "verify_cost_source": ("given" if config.verify_cost is not None else
                                       "the log's verify rows (mean cost per verdict)"
                                       if verify_cost > 0 else "the log has no verify rows: 0"),
                "policies": [*config.policies, *(["learned"] if config.bundle else [])]},
        points=points,
        reference=reference.policy,
        headline=headline(points, target_accuracy=config.target_accuracy,
                          reference_accuracy=float(reference.correct.mean())),
        extra={**({"difficulty": difficulty_metrics} if difficulty_metrics else {}),
               **({"skipped": skipped} if skipped else {}),
               **({"query_oracle": oracle_summary} if oracle_summary else {})},
    )
    return report, chosen


def _training_prior(prior: np.ndarray, train: np.ndarray, train_queries: np.ndarray,
                    n_queries: int) -> np.ndarray:
    """The training queries' prior, indexed as the training pools index them
    (``train_queries``; 0.5 for any other query: the baselines never read it)."""
    local = np.full((n_queries, prior.shape[1]), 0.5)
    local[train_queries] = prior[train]
    return local
