"""Calibrate a bundle's price: the lambda that meets a budget, or reaches an accuracy.

Users think in budgets ("on average 6 samples' worth per query"), the policy in prices
(lambda, the price of one cost unit). :func:`calibrate` finds the lambda that meets a
target mean cost on validation queries (:func:`search_lambda`: a grid, then bisection);
:func:`calibrate_to_accuracy`, what ``allocator train`` does by default, the cheapest
lambda whose accuracy reaches majority-of-all. Both write the result into a *new* bundle
(the source is only read); :func:`calibrate` lists the fields it records.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from allocator._checks import check_int
from allocator.bundle import Bundle, _check_writable, read_bundle, write_bundle
from allocator.envs.pools import ReplayPools
from allocator.errors import BundleError, ParameterError
from allocator.learned import LearnedPolicy
from allocator.logs.schema import KIND_SAMPLE
from allocator.logs.table import AttemptLog
from allocator.oracle import ARM_COST_FIELD, CALIBRATED_LAMBDA_FIELD, CALIBRATION_FIELD
from allocator.training.evaluation.replay import ReplayEvaluator

__all__ = ["ACCURACY_MARGIN", "CALIBRATED_FROM_FIELD", "VALIDATION_FRACTION", "LambdaSearch",
           "arm_mean_costs",
           "bundle_log_prior", "calibrate", "calibrate_to_accuracy", "majority_of_all",
           "search_lambda",
           "validation_split"]

#: Non-inferiority margin of :func:`calibrate_to_accuracy` (absolute accuracy).
ACCURACY_MARGIN = 0.01
#: Share of the training queries ``allocator train`` holds out to calibrate on.
VALIDATION_FRACTION = 0.25

#: The manifest field of a calibrated bundle naming its source (``{"sha256": ...}``).
CALIBRATED_FROM_FIELD = "calibrated_from"

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

    1. measure the mean cost at a grid of ``grid_size`` lambdas over ``lambda_range``;
    2. take the first adjacent pair of grid points whose costs straddle the target and
       bisect between them, keeping one end above and one below the target, until the
       mean cost is within ``tolerance`` (relative) of the target or the bracket is
       exhausted.

    The mean cost falls with lambda only approximately (a trained policy is not exactly
    monotone, and a deterministic policy's mean cost over finitely many episodes is a
    step function): the grid finds a bracket even where the curve wiggles, and bisection
    on a bracket converges to a crossing whatever happens inside it. Where no lambda
    comes within the tolerance (the target lies in a jump, or outside what the policy
    ever spends), the nearest measured lambda is kept (``within_tolerance`` false).

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
    bundle_path: str | os.PathLike[str] | Bundle,
    log: AttemptLog,
    queries: np.ndarray | None,
    target_mean_cost: float,
    *,
    output: str | os.PathLike[str],
    overwrite: bool = False,
    n_orders: int = 4,
    seed: int = 0,
    tolerance: float = 0.05,
    prior: np.ndarray | None = None,
    verify_cost: float = 0.0,
    grid_size: int = 9,
    max_iterations: int = 30,
) -> float:
    """The lambda that meets a target mean cost per query; stored in a new bundle.

    Under the Lagrangian view a target average cost corresponds to one lambda, found on
    validation queries: the bundle's :class:`~allocator.learned.LearnedPolicy` is
    replayed with the :class:`~allocator.training.evaluation.replay.ReplayEvaluator`
    (the same seeded orders for every lambda) over the bundle's ``lambda_range``, and
    :func:`search_lambda` finds the lambda; where none comes within the tolerance, the
    nearest measured one is kept and a warning says what was reached. Costs are in the
    log's units (what the evaluator reports: tokens, characters...).

    Validation queries are never test queries: ``allocator train`` holds out
    :func:`validation_split` of its training queries from the policy's training and
    calibrates on them (``allocator calibrate`` on the training log finds the same
    split).

    Bundles are immutable: the result is written into a *new* bundle (``output``; the
    source is only read). The new bundle holds the source's weights and difficulty
    predictor (the bytes verified when the source was read, never read from the disk
    again), the source's manifest, and:

    - ``calibrated_from``: ``{"sha256": ...}``, the source's
      :attr:`~allocator.bundle.Bundle.sha256` (of its ``manifest.json``, which lists
      every file's): the provenance (not its path, a detail of the machine that
      calibrated);
    - ``calibrated_lambda``: the lambda found (the oracle's default lambda);
    - ``calibrated_mean_cost``: its mean cost per query on the validation queries;
    - ``calibration``: the target, tolerance, whether it was met, the settings of the
      replay, and ``table``: every ``[lambda, mean cost]`` measured, by lambda (what
      :meth:`allocator.oracle.BudgetOracle.lambda_for_cost` interpolates for other
      targets);
    - ``arm_mean_cost`` (if the bundle lacks it): each arm's mean sample cost in the
      log, for :meth:`~allocator.oracle.BudgetOracle.budget` and ``allocate``.

    The output is written to a temporary sibling directory and renamed into place (see
    :func:`allocator.bundle.write_bundle`), so a failure never leaves a half-written
    bundle there; an existing directory at ``output`` is refused unless ``overwrite`` is
    set.

    Args:
        bundle_path: the source bundle's directory (only read), or the bundle verified
            by :func:`~allocator.bundle.read_bundle`.
        log: a log over the bundle's arms holding the validation queries.
        queries: indices of the validation queries in ``log`` (None: all); queries the
            policy was not trained on.
        target_mean_cost: the mean cost per query to meet, in the log's units.
        n_orders: random orders per query in the replay.
        seed: seed of the orders.
        tolerance: the relative tolerance on the mean cost.
        prior: per-query, per-arm predicted accuracy, shape (log queries, arms); default:
            :func:`bundle_log_prior` (what training gave the policy for such queries).
        verify_cost: the verifier's cost per candidate, in the log's units.
        grid_size: lambdas of the first pass.
        max_iterations: most bisection steps.
        output: the new bundle's directory (see above).
        overwrite: replace a bundle already at ``output`` (atomically); without it an
            existing ``output`` is refused before anything is replayed.

    Returns:
        The calibrated lambda.

    Raises:
        BundleError: the bundle is refused, or ``output`` holds something that is not
            a bundle.
        ParameterError: an invalid argument, a log over other arms, or an existing
            ``output`` without ``overwrite``.

    Warns:
        UserWarning: no lambda in the bundle's range meets the target within the
            tolerance; the nearest measured one is stored.
    """
    bundle = _source(bundle_path)
    target, tolerance = _check_arguments(bundle, log, target_mean_cost, tolerance, grid_size)
    destination = _check_output("calibrate", output, overwrite)
    source = "explicit"
    if prior is None:
        prior, source = bundle_log_prior(bundle, log)
    pools = ReplayPools.from_log(log)
    policy = LearnedPolicy.from_bundle(bundle)

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
    _write_calibrated(bundle, _manifest_fields(bundle, log, search, target, tolerance,
                                               settings), destination, overwrite)
    return search.lambda_


def validation_split(train: np.ndarray, seed: int,
                     fraction: float = VALIDATION_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Split training query indices into (fit, validation), both sorted, seeded.

    At least one query stays on each side when there are two or more; with fewer, the
    validation side is empty. The one split of the training queries that the safety net
    and the calibration share (its fraction and seed are recorded in the bundle, so that
    ``allocator calibrate`` finds the same queries again).

    Raises:
        ParameterError: ``fraction`` is not in (0, 1).
    """
    if isinstance(fraction, bool) or not 0.0 < fraction < 1.0:
        raise ParameterError("validation_split", "fraction", "a number in (0, 1)", fraction)
    train = np.sort(np.asarray(train, dtype=np.int64))
    if len(train) < 2:
        return train, train[:0]
    order = np.random.default_rng([int(seed), 7]).permutation(len(train))
    n_validation = min(max(1, round(fraction * len(train))), len(train) - 1)
    return np.sort(train[order[n_validation:]]), np.sort(train[order[:n_validation]])


def majority_of_all(pools: ReplayPools, queries: np.ndarray | None, *, n_orders: int,
                    seed: int) -> float:
    """The best arm's majority-vote accuracy over its whole pool on ``queries``."""
    evaluator = ReplayEvaluator(pools, queries, n_orders=n_orders, seed=seed)
    return max(float(evaluator.fixed_n_curves(arm).correct[:, :, -1].mean())
               for arm in range(pools.n_arms))


def calibrate_to_accuracy(
    bundle_path: str | os.PathLike[str] | Bundle,
    log: AttemptLog,
    queries: np.ndarray | None,
    *,
    output: str | os.PathLike[str],
    overwrite: bool = False,
    target_accuracy: float | None = None,
    margin: float = ACCURACY_MARGIN,
    n_orders: int = 4,
    seed: int = 0,
    prior: np.ndarray | None = None,
    verify_cost: float = 0.0,
    grid_size: int = 9,
    max_iterations: int = 10,
) -> float:
    """The cheapest lambda whose accuracy reaches a target non-inferiorly; stored.

    A grid over the bundle's range (``grid_size`` lambdas evenly spaced, and eight
    log-spaced), then bisection between the largest grid lambda that reaches
    ``target_accuracy - margin`` and the next grid lambda; among every lambda measured
    that reaches it, the one of least mean cost is kept. If none does, the
    most accurate (then cheapest) is kept and a warning says so.

    The default target is *majority-of-all*, the accuracy of the majority vote over an
    arm's whole pool (the best arm's), which a user gets without any allocator.
    Non-inferior means at least the target minus :data:`ACCURACY_MARGIN` (``margin``).
    The new bundle gets the fields :func:`calibrate` writes (the table holds mean costs,
    so ``target_cost`` still works), and ``calibration.goal`` says what was aimed at and
    reached.

    Args:
        bundle_path: the source bundle's directory (only read), or the verified bundle.
        log: a log over the bundle's arms holding the validation queries.
        queries: the validation queries (None: all), never test queries.
        output: the new bundle's directory (see :func:`calibrate`).
        overwrite: replace a bundle already at ``output`` (atomically).
        target_accuracy: the accuracy to reach; default :func:`majority_of_all` on them.
        margin: the non-inferiority margin (absolute accuracy, >= 0).
        n_orders: random orders per query.
        seed: seed of the orders.
        prior: per-query, per-arm prior; default :func:`bundle_log_prior`.
        verify_cost: the verifier's cost per candidate, in the log's units.
        grid_size: lambdas of the first pass (>= 2).
        max_iterations: most bisection steps.

    Returns:
        The calibrated lambda.

    Raises:
        BundleError: the bundle is refused, or ``output`` holds something that is not
            a bundle.
        ParameterError: an invalid argument, a log over other arms, or an existing
            ``output`` without ``overwrite``.
    """
    bundle = _source(bundle_path)
    _check_arguments(bundle, log, 0.0, 1.0, grid_size)
    margin = _finite("calibrate_to_accuracy", "margin", margin, strict=False)
    destination = _check_output("calibrate_to_accuracy", output, overwrite)
    source = "explicit"
    if prior is None:
        prior, source = bundle_log_prior(bundle, log)
    pools = ReplayPools.from_log(log)
    goal = "explicit accuracy"
    if target_accuracy is None:
        target_accuracy = majority_of_all(pools, queries, n_orders=n_orders, seed=seed)
        goal = "majority-of-all (best arm)"
    target = _finite("calibrate_to_accuracy", "target_accuracy", target_accuracy,
                     strict=False)
    policy = LearnedPolicy.from_bundle(bundle)
    measured: dict[float, tuple[float, float]] = {}

    def measure(lam: float) -> tuple[float, float]:
        if lam not in measured:
            results = ReplayEvaluator(pools, queries, n_orders=n_orders, seed=seed,
                                      lambda_=lam, prior=prior,
                                      verify_cost=verify_cost).run(policy)
            measured[lam] = float(results.correct.mean()), float(results.cost.mean())
        return measured[lam]

    best, reached = _accuracy_search(measure, measured, tuple(bundle.manifest["lambda_range"]),
                                     target - margin, grid_size, max_iterations)
    accuracy, cost = measured[best]
    if not reached:
        warnings.warn(f"calibrate_to_accuracy: no lambda in the bundle's range reaches "
                      f"accuracy {target:.4g} - {margin:g} on the validation queries; the "
                      f"most accurate ({accuracy:.4g} at lambda {best:g}) is stored.",
                      UserWarning, stacklevel=2)
    settings = {"n_queries": pools.n_queries if queries is None else len(np.asarray(queries)),
                "n_orders": int(n_orders), "seed": int(seed),
                "verify_cost": float(verify_cost), "prior": source,
                "log_fingerprint": log.fingerprint(),
                "goal": (f"{goal}: accuracy {target:.4g} (margin {margin:g}) at least cost; "
                         f"reached {accuracy:.4g} at mean cost {cost:.6g}"),
                "target_accuracy": target, "margin": margin, "accuracy": accuracy,
                "accuracy_table": [[lam, acc] for lam, (acc, _) in sorted(measured.items())]}
    search = LambdaSearch(lambda_=best, mean_cost=cost, within_tolerance=reached,
                          table=sorted((lam, c) for lam, (_, c) in measured.items()))
    _write_calibrated(bundle, _manifest_fields(bundle, log, search, cost, 0.0, settings),
                      destination, overwrite)
    return best


def _accuracy_search(measure: Callable[[float], tuple[float, float]],
                     measured: dict[float, tuple[float, float]],
                     lambda_range: tuple[float, float], floor: float, grid_size: int,
                     max_iterations: int) -> tuple[float, bool]:
    """The least-cost lambda with accuracy >= ``floor`` (and whether one was found)."""
    from allocator.training.evaluation.prices import lambda_grid

    low, high = (float(v) for v in lambda_range)
    grid = sorted(set(np.linspace(low, high, grid_size).tolist())
                  | set(lambda_grid((low, high))))
    ok = [lam for lam in grid if measure(lam)[0] >= floor]
    if ok:
        left = max(ok)
        right = next((lam for lam in grid if lam > left), None)
        for _ in range(max_iterations if right is not None else 0):
            middle = (left + right) / 2  # type: ignore[operator]
            if middle in (left, right):
                break
            if measure(middle)[0] >= floor:
                left = middle
            else:
                right = middle
        passing = [lam for lam, (accuracy, _) in measured.items() if accuracy >= floor]
        return min(passing, key=lambda lam: (measured[lam][1], -lam)), True
    return min(measured, key=lambda lam: (-measured[lam][0], measured[lam][1])), False


def _check_arguments(bundle: Bundle, log: AttemptLog, target: object, tolerance: object,
                     grid_size: object) -> tuple[float, float]:
    """The target and tolerance as floats; ParameterError for a bad argument."""
    if tuple(log.arms) != bundle.arms:
        raise ParameterError("calibrate", "log",
                             f"a log over the bundle's arms {list(bundle.arms)}", list(log.arms))
    check_int("calibrate", "grid_size", grid_size, minimum=2)
    return (_finite("calibrate", "target_mean_cost", target, strict=False),
            _finite("calibrate", "tolerance", tolerance, strict=True))


def _manifest_fields(bundle: Bundle, log: AttemptLog, search: LambdaSearch, target: float,
                     tolerance: float, settings: dict[str, Any]) -> dict[str, Any]:
    """The manifest fields calibration writes (see :func:`calibrate`)."""
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


def bundle_log_prior(bundle_path: str | os.PathLike[str] | Bundle, log: AttemptLog
                     ) -> tuple[np.ndarray, str]:
    """The prior of every query of ``log`` for a bundle, by the runtime's one rule, and
    its source in words.

    With the bundle's difficulty predictor: its predictions on the log's queries (texts,
    metadata; a missing text is empty), which is what training gave held-out queries;
    without one: the bundle's uninformed prior
    (:attr:`allocator.oracle.BudgetOracle.default_prior`) for every query.

    Args:
        bundle_path: the bundle directory, or the bundle already verified.
        log: the log whose queries get a prior.

    Returns:
        ``(prior of shape (log queries, arms) in the log's arm order, source)``.
    """
    from allocator.oracle import BudgetOracle

    oracle = BudgetOracle(bundle_path)
    if oracle.bundle.predictor_dir is None:
        return (np.tile(oracle.default_prior, (log.n_queries, 1)),
                f"uninformed prior ({oracle.prior_source})")
    predictor = oracle._load_predictor()
    predicted = predictor.predict(log)
    order = [list(predictor.arms_).index(arm) for arm in log.arms]
    return np.clip(predicted[:, order], 0.0, 1.0), "bundle difficulty predictor"


def _miss_message(search: LambdaSearch, target: float, tolerance: float) -> str:
    costs = [cost for _, cost in search.table]
    return (f"calibrate: no lambda in the bundle's range gives a mean cost within "
            f"{tolerance:.0%} of {target:g}; the nearest is {search.mean_cost:g} at lambda "
            f"{search.lambda_:g} (measured costs range over [{min(costs):g}, "
            f"{max(costs):g}]). It is stored; pick a target inside that range, or retrain "
            "with a wider lambda range.")


def _source(bundle: str | os.PathLike[str] | Bundle) -> Bundle:
    """The source bundle, verified (read once here unless it already is)."""
    return bundle if isinstance(bundle, Bundle) else read_bundle(bundle)


def _check_output(owner: str, output: str | os.PathLike[str], overwrite: bool) -> Path:
    """The new bundle's path, refused before any replay where writing would fail: an
    existing path without ``overwrite``, or (with it) anything but a bundle."""
    if not isinstance(output, str | os.PathLike) or not os.fspath(output):
        raise ParameterError(owner, "output", "the new bundle's directory", output)
    destination = Path(output)
    if not (destination.exists() or destination.is_symlink()):
        return destination
    if not overwrite:
        raise ParameterError(owner, "output", "a path where nothing exists yet (bundles are "
                             "immutable: calibration writes a new one); choose another "
                             "path, or pass overwrite=True (allocator calibrate "
                             "--overwrite) to replace the bundle there", str(destination))
    _check_writable(destination)
    return destination


def _write_calibrated(bundle: Bundle, fields: dict[str, Any], output: Path,
                      overwrite: bool) -> Path:
    """Write the new bundle: the source's manifest with ``fields`` and the provenance,
    its verified weights and predictor files (atomically, see :func:`calibrate`)."""
    manifest = {key: value for key, value in bundle.manifest.items()
                if key not in _WRITER_FIELDS}
    manifest.update(fields)
    manifest[CALIBRATED_FROM_FIELD] = {"sha256": bundle.sha256}
    if not overwrite and (output.exists() or output.is_symlink()):  # appeared meanwhile
        raise BundleError("was created while calibrating; refusing to overwrite it (pass "
                          "overwrite=True, or choose another path).", path=output)
    with tempfile.TemporaryDirectory(prefix="ttc-predictor-") as folder:
        predictor = _verified_predictor(bundle, Path(folder))
        return write_bundle(output, weights=dict(bundle.weights), manifest=manifest,
                            predictor_dir=predictor)


def _verified_predictor(bundle: Bundle, folder: Path) -> Path | None:
    """The source's difficulty predictor as verified at load (its bytes written to
    ``folder``), or None: never the files on disk, which may have changed since."""
    if not bundle.predictor_files:
        return None
    for name, data in bundle.predictor_files.items():
        (folder / name).write_bytes(data)
    return folder
