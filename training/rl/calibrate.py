"""Calibrate a bundle's price to a budget: the lambda that meets a target mean cost.

Users think in budgets ("on average 6 samples' worth per query"), the policy in prices
(lambda, the price of one cost unit). Under the Lagrangian view a target average cost
corresponds to one lambda, found on validation queries:

1. replay the bundle's :class:`~allocator.learned.LearnedPolicy` with the
   :class:`~training.evaluation.replay.ReplayEvaluator` (the same seeded orders for every
   lambda) at a grid of lambdas over the bundle's ``lambda_range``: mean cost per query;
2. take the first adjacent pair of grid points whose costs straddle the target and
   bisect between them, keeping one end above and one below the target, until the mean
   cost is within ``tolerance`` (relative) of the target or the bracket is exhausted.

The mean cost falls with lambda only approximately (a trained policy is not exactly
monotone, and a deterministic policy's mean cost over finitely many episodes is a step
function): the grid finds a bracket even where the curve wiggles, and bisection on a
bracket converges to a crossing whatever happens inside it. Where no lambda comes within
the tolerance (the target lies in a jump, or outside what the policy ever spends), the
nearest measured lambda is kept and a warning says what was reached.

The result is written into the bundle's manifest (the bundle is rewritten with the same
weights and predictor, so every hash is recomputed and it still verifies):

- ``calibrated_lambda``: the lambda found (the oracle's default lambda);
- ``calibrated_mean_cost``: its mean cost per query on the validation queries;
- ``calibration``: the target, tolerance, whether it was met, the settings of the replay,
  and ``table``: every ``[lambda, mean cost]`` measured, by lambda (what
  :meth:`allocator.oracle.BudgetOracle.lambda_for_cost` interpolates for other targets);
- ``arm_mean_cost`` (if the bundle lacks it): each arm's mean sample cost in the log, for
  :meth:`~allocator.oracle.BudgetOracle.budget` and ``allocate``.

Costs are in the log's units (what the evaluator reports: tokens, characters...).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from allocator.bundle import Bundle, read_bundle, write_bundle
from allocator.errors import ParameterError
from allocator.learned import LearnedPolicy
from allocator.logs.schema import KIND_SAMPLE
from allocator.logs.table import AttemptLog
from allocator.oracle import ARM_COST_FIELD, CALIBRATED_LAMBDA_FIELD, CALIBRATION_FIELD
from envs.pools import ReplayPools
from training.evaluation.replay import ReplayEvaluator

__all__ = ["LambdaSearch", "arm_mean_costs", "calibrate", "search_lambda"]

#: Manifest fields ``write_bundle`` fills in itself (dropped before rewriting).
_WRITER_FIELDS = ("format", "format_version", "featurizer_version", "feature_names",
                  "actions", "files", "difficulty")


@dataclass(frozen=True)
class LambdaSearch:
    """The outcome of :func:`search_lambda`.

    Attributes:
        lambda_: the lambda whose mean cost is closest to the target (the smallest such
            lambda on ties).
        mean_cost: its mean cost.
        within_tolerance: whether that cost is within the tolerance of the target.
        table: every ``(lambda, mean cost)`` measured, sorted by lambda.
    """

    lambda_: float
    mean_cost: float
    within_tolerance: bool
    table: list[tuple[float, float]]


def search_lambda(
    mean_cost: Callable[[float], float],
    lambda_range: tuple[float, float],
    target: float,
    *,
    tolerance: float = 0.05,
    grid_size: int = 9,
    max_iterations: int = 30,
) -> LambdaSearch:
    """Find a lambda whose mean cost is within ``tolerance * target`` of ``target``.

    A grid of ``grid_size`` lambdas, then bisection inside the first grid interval whose
    end costs lie on both sides of the target (see the module docstring).

    Args:
        mean_cost: lambda -> mean cost (called once per distinct lambda).
        lambda_range: ``(low, high)``, the lambdas searched.
        target: the mean cost to meet.
        tolerance: relative tolerance.
        grid_size: lambdas of the first pass (>= 2).
        max_iterations: most bisection steps.
    """
    measured: dict[float, float] = {}

    def cost(lam: float) -> float:
        if lam not in measured:
            measured[lam] = float(mean_cost(lam))
        return measured[lam]

    def close(value: float) -> bool:
        return abs(value - target) <= tolerance * target

    low, high = (float(v) for v in lambda_range)
    grid = np.linspace(low, high, grid_size).tolist() if high > low else [low]
    signs = [np.sign(cost(lam) - target) for lam in grid]
    if not any(close(measured[lam]) for lam in grid):
        crossing = next((i for i in range(len(grid) - 1) if signs[i] * signs[i + 1] <= 0),
                        None)
        if crossing is not None:
            _bisect(cost, close, target, grid[crossing], grid[crossing + 1],
                    signs[crossing], max_iterations)
    best = min(measured, key=lambda lam: (abs(measured[lam] - target), lam))
    return LambdaSearch(lambda_=best, mean_cost=measured[best],
                        within_tolerance=close(measured[best]),
                        table=sorted(measured.items()))


def _bisect(cost: Callable[[float], float], close: Callable[[float], bool], target: float,
            left: float, right: float, left_sign: float, max_iterations: int) -> None:
    """Bisect keeping ``sign(cost(left) - target) == left_sign`` (the right end opposite)."""
    for _ in range(max_iterations):
        middle = (left + right) / 2
        if middle in (left, right):
            return
        value = cost(middle)
        if close(value):
            return
        if np.sign(value - target) == left_sign:
            left = middle
        else:
            right = middle


def arm_mean_costs(log: AttemptLog) -> dict[str, float]:
    """Each arm's mean cost of one sample attempt in ``log`` (arms without samples left
    out), for the manifest's ``arm_mean_cost``."""
    samples = log.kind == KIND_SAMPLE
    out = {}
    for index, arm in enumerate(log.arms):
        rows = samples & (log.arm == index)
        if rows.any():
            out[arm] = float(log.cost[rows].mean())
    return out


def calibrate(
    bundle_path: str | os.PathLike[str],
    log: AttemptLog,
    queries: np.ndarray | None,
    target_mean_cost: float,
    *,
    n_orders: int = 4,
    seed: int = 0,
    tolerance: float = 0.05,
    prior: np.ndarray | None = None,
    verify_cost: float = 0.0,
    grid_size: int = 9,
    max_iterations: int = 30,
) -> float:
    """The lambda that meets a target mean cost per query; stored in the bundle.

    Args:
        bundle_path: the bundle directory (rewritten in place, see the module docstring).
        log: a log over the bundle's arms holding the validation queries.
        queries: indices of the validation queries in ``log`` (None: all); queries the
            policy was not trained on.
        target_mean_cost: the mean cost per query to meet, in the log's units.
        n_orders: random orders per query in the replay.
        seed: seed of the orders.
        tolerance: the relative tolerance on the mean cost.
        prior: per-query, per-arm predicted accuracy, shape (log queries, arms); default:
            the bundle's difficulty predictor on ``log`` if it has one, else 0.5.
        verify_cost: the verifier's cost per candidate, in the log's units.
        grid_size: lambdas of the first pass.
        max_iterations: most bisection steps.

    Returns:
        The calibrated lambda.

    Raises:
        BundleError: the bundle is refused.
        ParameterError: an invalid argument, or a log over other arms.

    Warns:
        UserWarning: no lambda in the bundle's range meets the target within the
            tolerance; the nearest measured one is stored.
    """
    bundle = read_bundle(bundle_path)
    target, tolerance = _check_arguments(bundle, log, target_mean_cost, tolerance, grid_size)
    source = "explicit" if prior is not None else "0.5"
    if prior is None and bundle.predictor_dir is not None:
        prior, source = _predicted_prior(bundle, log), "bundle difficulty predictor"
    pools = ReplayPools.from_log(log)
    policy = LearnedPolicy(os.fspath(bundle_path))

    def mean_cost(lam: float) -> float:
        evaluator = ReplayEvaluator(pools, queries, n_orders=n_orders, seed=seed,
                                    lambda_=lam, prior=prior, verify_cost=verify_cost)
        return float(evaluator.run(policy).cost.mean())

    search = search_lambda(mean_cost, tuple(bundle.manifest["lambda_range"]), target,
                           tolerance=tolerance, grid_size=grid_size,
                           max_iterations=max_iterations)
    if not search.within_tolerance:
        warnings.warn(_miss_message(search, target, tolerance), UserWarning, stacklevel=2)
    settings = {"n_queries": pools.n_queries if queries is None else len(np.asarray(queries)),
                "n_orders": int(n_orders), "seed": int(seed),
                "verify_cost": float(verify_cost), "prior": source,
                "log_fingerprint": log.fingerprint()}
    _rewrite(bundle, _manifest_fields(bundle, log, search, target, tolerance, settings))
    return search.lambda_


def _check_arguments(bundle: Bundle, log: AttemptLog, target: object, tolerance: object,
                     grid_size: object) -> tuple[float, float]:
    """The target and tolerance as floats; ParameterError for a bad argument."""
    if tuple(log.arms) != bundle.arms:
        raise ParameterError("calibrate", "log",
                             f"a log over the bundle's arms {list(bundle.arms)}", list(log.arms))
    if isinstance(grid_size, bool) or not isinstance(grid_size, int) or grid_size < 2:
        raise ParameterError("calibrate", "grid_size", "an integer >= 2", grid_size)
    return (_finite("calibrate", "target_mean_cost", target, strict=False),
            _finite("calibrate", "tolerance", tolerance, strict=True))


def _manifest_fields(bundle: Bundle, log: AttemptLog, search: LambdaSearch, target: float,
                     tolerance: float, settings: dict[str, Any]) -> dict[str, Any]:
    """The manifest fields calibration writes (see the module docstring)."""
    fields: dict[str, Any] = {
        CALIBRATED_LAMBDA_FIELD: search.lambda_,
        "calibrated_mean_cost": search.mean_cost,
        CALIBRATION_FIELD: {
            "target_mean_cost": target,
            "tolerance": tolerance,
            "within_tolerance": search.within_tolerance,
            "cost": "mean cost per query, in the log's units",
            **settings,
            "table": [[lam, value] for lam, value in search.table],
        },
    }
    if ARM_COST_FIELD not in bundle.manifest:
        costs = arm_mean_costs(log)
        if set(costs) == set(bundle.arms) and all(v > 0 for v in costs.values()):
            fields[ARM_COST_FIELD] = costs
    return fields


def _finite(owner: str, name: str, value: object, *, strict: bool) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = float("nan")
    if not math.isfinite(number) or number < 0 or (strict and number == 0):
        raise ParameterError(owner, name, f"a finite number {'>' if strict else '>='} 0",
                             value)
    return number


def _predicted_prior(bundle: Bundle, log: AttemptLog) -> np.ndarray:
    """The bundled difficulty predictor's prior on every query of ``log``, in arm order."""
    from training.difficulty import DifficultyPredictor

    predictor = DifficultyPredictor.load(bundle.predictor_dir)
    predicted = predictor.predict(log)
    order = [list(predictor.arms_).index(arm) for arm in log.arms]
    return np.clip(predicted[:, order], 0.0, 1.0)


def _miss_message(search: LambdaSearch, target: float, tolerance: float) -> str:
    costs = [cost for _, cost in search.table]
    return (f"calibrate: no lambda in the bundle's range gives a mean cost within "
            f"{tolerance:.0%} of {target:g}; the nearest is {search.mean_cost:g} at lambda "
            f"{search.lambda_:g} (measured costs range over [{min(costs):g}, "
            f"{max(costs):g}]). It is stored; pick a target inside that range, or retrain "
            "with a wider lambda range.")


def _rewrite(bundle: Bundle, fields: dict[str, Any]) -> Path:
    """Write the bundle again with more manifest fields, the same weights and predictor."""
    manifest = {key: value for key, value in bundle.manifest.items()
                if key not in _WRITER_FIELDS}
    manifest.update(fields)
    return write_bundle(bundle.path, weights=dict(bundle.weights), manifest=manifest,
                        predictor_dir=bundle.predictor_dir)
