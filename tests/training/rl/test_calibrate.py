"""Calibration: the lambda that meets a target mean cost on validation queries, stored in
a new bundle (the source is only read), and used by the oracle for ``target_cost``.

A real (small) MaskablePPO is trained on a simulated log (about 2 s on one thread) with
the simulation's true per-arm accuracies as its prior, so that its mean cost falls with
lambda over many small steps; validation queries are held out from training.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sb3_contrib import MaskablePPO
from tiny_policy import LAMBDA_RANGE, fit_tiny_predictor, train_tiny_policy

import allocator
import allocator.bundle
from allocator.bundle import WEIGHTS_FILE, read_bundle
from allocator.envs.pools import ReplayPools
from allocator.errors import BundleError, ParameterError
from allocator.learned import LearnedPolicy
from allocator.logs.synthetic import SyntheticArm, SyntheticConfig, generate, p_correct
from allocator.logs.table import AttemptLog
from allocator.training.difficulty import DifficultyPredictor
from allocator.training.evaluation.replay import ReplayEvaluator
from allocator.training.rl.calibrate import (
    ACCURACY_MARGIN,
    VALIDATION_FRACTION,
    _accuracy_search,
    arm_mean_costs,
    calibrate,
    calibrate_to_accuracy,
    majority_of_all,
    search_lambda,
    validation_split,
)
from allocator.training.rl.export import export_bundle

TRAIN = np.arange(100)
VALIDATION = np.arange(100, 150)


@dataclass
class Trained:
    log: AttemptLog
    prior: np.ndarray
    model: MaskablePPO
    arms: tuple[str, ...]
    cost_unit: float
    predictor_dir: Path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    config = SyntheticConfig(n_queries=150)
    log = generate(config)
    difficulty = np.asarray(log.queries.metadata["difficulty"], dtype=np.float64)
    skills = {arm.name: arm.skill for arm in config.arms}
    prior = np.column_stack([p_correct(skills[arm], difficulty, config.sharpness)
                             for arm in log.arms])
    model, venv = train_tiny_policy(log, prior, queries=TRAIN)
    predictor = fit_tiny_predictor(log, TRAIN)
    predictor_dir = predictor.save(tmp_path_factory.mktemp("calibrate") / "predictor")
    return Trained(log, prior, model, venv.pools.arms, venv.settings.cost_unit,
                   predictor_dir)


def export(trained: Trained, path: Path, *, predictor: bool = False) -> Path:
    return export_bundle(trained.model, path, arms=trained.arms, lambda_range=LAMBDA_RANGE,
                         cost_unit=trained.cost_unit, log_fingerprint=trained.log.fingerprint(),
                         run_id="calibrate-test",
                         predictor_dir=trained.predictor_dir if predictor else None)


def mean_cost(trained: Trained, bundle: Path, lam: float) -> float:
    evaluator = ReplayEvaluator(trained.log, VALIDATION, n_orders=4, seed=0, lambda_=lam,
                                prior=trained.prior)
    return float(evaluator.run(LearnedPolicy(str(bundle))).cost.mean())


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path -> sha256 of its bytes)."""
    return {file.relative_to(folder).as_posix(): hashlib.sha256(file.read_bytes()).hexdigest()
            for file in sorted(folder.rglob("*")) if file.is_file()}


@pytest.mark.slow
def test_calibrated_lambda_meets_the_target_and_is_stored(trained: Trained,
                                                          tmp_path: Path) -> None:
    bundle = export(trained, tmp_path / "bundle")
    before, files = read_bundle(bundle), tree(bundle)
    target, tolerance = mean_cost(trained, bundle, 0.138), 0.01
    assert mean_cost(trained, bundle, 0.0) > target > mean_cost(trained, bundle, 0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lam = calibrate(bundle, trained.log, VALIDATION, target, tolerance=tolerance,
                        prior=trained.prior, output=tmp_path / "calibrated")
    assert tree(bundle) == files  # the source is byte for byte what it was
    assert read_bundle(bundle).manifest.get("calibrated_lambda") is None
    achieved = mean_cost(trained, tmp_path / "calibrated", lam)
    assert achieved == mean_cost(trained, bundle, lam)  # the same weights decide
    assert abs(achieved - target) <= tolerance * target
    after = read_bundle(tmp_path / "calibrated")  # a new bundle: it verifies
    manifest = after.manifest
    assert manifest["calibrated_from"] == {"sha256": before.sha256}
    assert after.sha256 != before.sha256
    assert manifest["calibrated_lambda"] == lam
    assert manifest["calibrated_mean_cost"] == achieved
    calibration = manifest["calibration"]
    assert calibration["target_mean_cost"] == target and calibration["within_tolerance"]
    assert calibration["n_queries"] == len(VALIDATION) and calibration["prior"] == "explicit"
    table = calibration["table"]
    lambdas = [row[0] for row in table]
    # the grid (9 points), then bisection unless a grid point already meets the target
    assert lambdas == sorted(lambdas) and len(table) >= 9
    assert [lam, achieved] in table
    assert manifest["arm_mean_cost"] == arm_mean_costs(trained.log)
    for key in ("network", "run_id", "created_at", "log_fingerprint", "training"):
        assert manifest[key] == before.manifest[key]
    for name, array in before.weights.items():
        np.testing.assert_array_equal(after.weights[name], array)


@pytest.mark.slow
def test_the_oracle_uses_the_calibration(trained: Trained, tmp_path: Path) -> None:
    source = export(trained, tmp_path / "bundle")
    target = mean_cost(trained, source, 0.08)
    bundle = tmp_path / "calibrated"
    lam = calibrate(source, trained.log, VALIDATION, target, prior=trained.prior,
                    output=bundle)
    assert allocator.load(source).calibration_table is None  # the source is unchanged
    oracle = allocator.load(bundle)
    assert oracle.default_lambda == lam
    assert oracle.lambda_for_cost(target) == lam
    assert oracle.session(target_cost=target).lambda_ == lam
    table = oracle.calibration_table
    assert table is not None
    lambdas, costs = np.array(table).T
    floor = np.minimum.accumulate(costs)
    for i in range(1, len(table)):
        if floor[i] < floor[i - 1]:  # where the cost falls, its lambda is read back
            assert oracle.lambda_for_cost(floor[i]) == pytest.approx(lambdas[i])
    for outside in (10 * costs.max(), costs.min() / 2):  # never clamped: refused
        with pytest.raises(ParameterError, match=r"calibrated range \["):
            oracle.session(target_cost=outside)
    targets = np.linspace(costs.min(), costs.max(), 7)
    chosen = [oracle.session(target_cost=t).lambda_ for t in targets]
    assert all(LAMBDA_RANGE[0] <= c <= LAMBDA_RANGE[1] for c in chosen)
    assert chosen == sorted(chosen, reverse=True)  # a bigger budget, a lower price
    assert oracle.arm_costs == arm_mean_costs(trained.log)


@pytest.mark.slow
def test_an_unreachable_target_warns_and_keeps_the_nearest(trained: Trained,
                                                          tmp_path: Path) -> None:
    bundle = export(trained, tmp_path / "bundle")
    with pytest.warns(UserWarning, match="no lambda"):
        lam = calibrate(bundle, trained.log, VALIDATION, 1_000.0, prior=trained.prior,
                        output=tmp_path / "calibrated")
    manifest = read_bundle(tmp_path / "calibrated").manifest
    assert not manifest["calibration"]["within_tolerance"]
    costs = {row[0]: row[1] for row in manifest["calibration"]["table"]}
    assert costs[lam] == max(costs.values())


@pytest.mark.slow
def test_the_bundled_predictor_gives_the_default_prior(trained: Trained,
                                                       tmp_path: Path) -> None:
    source = export(trained, tmp_path / "bundle", predictor=True)
    verified = read_bundle(source)
    # Changed on disk after it was verified: the new bundle holds the verified bytes.
    (source / "difficulty" / "difficulty.json").write_text("{}")
    bundle = tmp_path / "calibrated"
    lam = calibrate(verified, trained.log, VALIDATION, 2.0, tolerance=0.5, output=bundle)
    manifest = read_bundle(bundle).manifest
    assert manifest["calibration"]["prior"] == "bundle difficulty predictor"
    assert manifest["difficulty"] is not None  # the predictor was kept: the same one
    assert read_bundle(bundle).predictor_files == verified.predictor_files
    prior = DifficultyPredictor.load(trained.predictor_dir).predict(trained.log)
    evaluator = ReplayEvaluator(trained.log, VALIDATION, n_orders=4, seed=0, lambda_=lam,
                                prior=prior)
    assert evaluator.run(LearnedPolicy(str(bundle))).cost.mean() == manifest[
        "calibrated_mean_cost"]


@pytest.mark.slow
def test_calibrate_refuses_bad_arguments(trained: Trained, tmp_path: Path) -> None:
    bundle = export(trained, tmp_path / "bundle")
    output = tmp_path / "calibrated"
    other = generate(SyntheticConfig(n_queries=10, arms=(SyntheticArm("solo", 0.5),)))
    with pytest.raises(ParameterError, match="'log'"):
        calibrate(bundle, other, None, 2.0, output=output)
    with pytest.raises(ParameterError, match="target_mean_cost"):
        calibrate(bundle, trained.log, VALIDATION, -1.0, output=output)
    with pytest.raises(ParameterError, match="tolerance"):
        calibrate(bundle, trained.log, VALIDATION, 2.0, tolerance=0.0, output=output)
    copy = shutil.copytree(bundle, tmp_path / "copy")
    (copy / WEIGHTS_FILE).write_bytes(b"tampered")
    with pytest.raises(allocator.errors.BundleError):
        calibrate(copy, trained.log, VALIDATION, 2.0, output=output)
    assert not output.exists()


@pytest.mark.slow
def test_calibration_refuses_to_overwrite_without_the_flag(trained: Trained,
                                                           tmp_path: Path) -> None:
    """An existing output (the source itself, another bundle, anything) is refused
    before any replay; with ``overwrite`` a bundle there is replaced, anything else is
    still refused."""
    bundle = export(trained, tmp_path / "bundle")
    files = tree(bundle)
    for output in (bundle, tmp_path):
        for goal in (lambda out, **kw: calibrate(bundle, trained.log, VALIDATION, 2.0,
                                                 output=out, **kw),
                     lambda out, **kw: calibrate_to_accuracy(bundle, trained.log,
                                                             VALIDATION, output=out, **kw)):
            with pytest.raises(ParameterError, match="overwrite"):
                goal(output)
    assert tree(bundle) == files
    not_a_bundle = tmp_path / "notes"
    not_a_bundle.mkdir()
    (not_a_bundle / "todo.txt").write_text("keep me")
    with pytest.raises(BundleError, match="not a policy bundle"):
        calibrate(bundle, trained.log, VALIDATION, 2.0, output=not_a_bundle, overwrite=True)
    assert (not_a_bundle / "todo.txt").read_text() == "keep me"
    target = tmp_path / "calibrated"
    calibrate(bundle, trained.log, VALIDATION, 2.0, tolerance=0.5, output=target,
              prior=trained.prior)
    second = calibrate(bundle, trained.log, VALIDATION, 3.0, tolerance=0.5, output=target,
                       prior=trained.prior, overwrite=True)
    assert read_bundle(target).manifest["calibrated_lambda"] == second
    assert read_bundle(target).manifest["calibration"]["target_mean_cost"] == 3.0
    assert read_bundle(target).manifest["calibrated_from"]["sha256"] == read_bundle(
        bundle).sha256
    assert tree(bundle) == files


@pytest.mark.slow
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_crash_while_writing_leaves_no_partial_bundle(trained: Trained, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        overwrite: bool) -> None:
    """The disk fills up while the weights are written (safetensors' writer raises):
    nothing is left at the output path, nor any staging folder beside it; a bundle that
    was there (``overwrite``) is untouched, and so is the source."""
    bundle = export(trained, tmp_path / "bundle")
    source_files = tree(bundle)
    output = tmp_path / "out" / "calibrated"
    if overwrite:
        export(trained, output)
    previous = tree(output) if overwrite else None

    def disk_full(*args: object, **kwargs: object) -> bytes:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(allocator.bundle, "_save_safetensors", disk_full)
    with pytest.raises(OSError, match="No space left"):
        calibrate(bundle, trained.log, VALIDATION, 2.0, tolerance=0.5, output=output,
                  prior=trained.prior, overwrite=overwrite)
    assert tree(bundle) == source_files
    assert os.listdir(output.parent) == (["calibrated"] if overwrite else [])
    if overwrite:
        assert tree(output) == previous


# ------------------------------------------------------------------ the search alone
def counted(function):
    calls = []

    def wrapper(lam: float) -> float:
        calls.append(lam)
        return function(lam)

    return wrapper, calls


@pytest.mark.parametrize("target", [1.5, 4.0, 7.3, 9.9])
def test_search_bisects_a_wiggly_decreasing_cost(target: float) -> None:
    """Not monotone: grid then bisection still lands within the tolerance."""
    cost, calls = counted(lambda lam: 10 - 18 * lam + 1.5 * math.sin(60 * lam))
    result = search_lambda(cost, (0.0, 0.5), target, tolerance=0.001, grid_size=9,
                           max_iterations=40)
    assert result.within_tolerance
    assert abs(result.mean_cost - target) <= 0.001 * target
    assert len(calls) == len(set(calls)) == len(result.table) <= 9 + 40
    assert [row[0] for row in result.table] == sorted(calls)


def test_search_on_a_step_function_reports_the_nearest() -> None:
    """Mean costs of a deterministic policy jump: a target inside a jump is missed."""
    result = search_lambda(lambda lam: 8.0 if lam < 0.123 else 1.0, (0.0, 0.2), 5.0,
                           tolerance=0.05)
    assert not result.within_tolerance and result.mean_cost == 8.0
    assert any(0.1229 < lam < 0.123 for lam, _ in result.table)  # bisected to the jump
    flat = search_lambda(lambda lam: 3.0, (0.0, 0.2), 2.0, grid_size=5)
    assert not flat.within_tolerance and flat.lambda_ == 0.0 and len(flat.table) == 5
    exact = search_lambda(lambda lam: 3.0, (0.1, 0.1), 3.0)
    assert exact.within_tolerance and exact.lambda_ == 0.1


# ------------------------------------------------------------------ calibrating to accuracy
@pytest.mark.slow
def test_calibrating_to_majority_of_all_keeps_the_cheapest_non_inferior_lambda(
        trained: Trained, tmp_path: Path) -> None:
    source = export(trained, tmp_path / "bundle")
    bundle = tmp_path / "calibrated"
    lam = calibrate_to_accuracy(source, trained.log, VALIDATION, prior=trained.prior,
                                output=bundle)
    manifest = read_bundle(bundle).manifest
    assert manifest["calibrated_from"]["sha256"] == read_bundle(source).sha256
    calibration = manifest["calibration"]
    # The target: the best arm's majority vote over its whole pool, brute force.
    evaluator = ReplayEvaluator(trained.log, VALIDATION, n_orders=4, seed=0)
    target = max(evaluator.fixed_n_curves(arm).correct[:, :, -1].mean()
                 for arm in range(len(trained.arms)))
    assert calibration["target_accuracy"] == pytest.approx(target, abs=1e-12)
    accuracy = dict(map(tuple, calibration["accuracy_table"]))
    cost = dict(map(tuple, calibration["table"]))
    passing = [x for x in accuracy if accuracy[x] >= target - ACCURACY_MARGIN]
    if passing:  # the cheapest measured lambda that reaches the target
        assert cost[lam] == min(cost[x] for x in passing) and calibration["within_tolerance"]
    else:
        assert accuracy[lam] == max(accuracy.values())
    replay = ReplayEvaluator(trained.log, VALIDATION, n_orders=4, seed=0, lambda_=lam,
                             prior=trained.prior).run(LearnedPolicy(str(bundle)))
    assert replay.correct.mean() == accuracy[lam] == calibration["accuracy"]
    assert replay.cost.mean() == manifest["calibrated_mean_cost"] == cost[lam]
    oracle = allocator.load(bundle)
    assert oracle.default_lambda == lam and "majority-of-all" in oracle.lambda_source
    assert oracle.lambda_for_cost(cost[lam]) == lam  # its own cost maps back to it


def test_the_accuracy_search_bisects_to_the_cheapest_passing_lambda() -> None:
    """Accuracy falls in a step at 0.137, cost falls with lambda: the search lands just
    below the step; an unreachable floor keeps the most accurate, cheapest lambda."""
    measured: dict[float, tuple[float, float]] = {}

    def measure(lam: float) -> tuple[float, float]:
        measured.setdefault(lam, (0.8 if lam < 0.137 else 0.5, 10.0 - 20 * lam))
        return measured[lam]

    best, reached = _accuracy_search(measure, measured, (0.0, 0.4), 0.79, 9, 20)
    assert reached and 0.137 - 1e-5 < best < 0.137
    measured.clear()
    best, reached = _accuracy_search(measure, measured, (0.0, 0.4), 0.9, 9, 20)
    assert not reached and measured[best][0] == 0.8
    assert measured[best][1] == min(c for a, c in measured.values() if a == 0.8)


@pytest.mark.parametrize("n", [2, 3, 10, 75])
def test_validation_split_partitions_the_training_queries(n: int) -> None:
    train = np.arange(0, 3 * n, 3)
    fit, validation = validation_split(train, seed=5)
    assert len(fit) >= 1 and len(validation) >= 1
    assert np.array_equal(np.sort(np.concatenate([fit, validation])), train)
    assert len(validation) == min(max(1, round(VALIDATION_FRACTION * n)), n - 1)
    again = validation_split(train[::-1], seed=5)
    assert np.array_equal(again[1], validation)  # deterministic, order-free
    assert len(validation_split(train[:1], seed=5)[1]) == 0


def test_majority_of_all_is_the_best_arms_full_pool_vote() -> None:
    log = generate(SyntheticConfig(n_queries=30), seed=3)
    pools = ReplayPools.from_log(log)
    best = 0.0
    for arm in range(len(log.arms)):  # the majority over the whole pool has one order
        correct = []
        for query in range(log.n_queries):
            rows = np.flatnonzero((log.attempt_query == query) & (log.arm == arm))
            answers, right = log.answer[rows], log.correct[rows]
            valid = answers >= 0
            codes, counts = np.unique(answers[valid], return_counts=True)
            tied = codes[counts == counts.max()] if len(codes) else []
            correct.append(np.mean([right[answers == c][0] for c in tied]) if len(tied)
                           else 0.0)
        best = max(best, float(np.mean(correct)))
    assert majority_of_all(pools, None, n_orders=2, seed=0) == pytest.approx(best)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, True])
def test_validation_split_refuses_a_fraction_outside_0_1(fraction: float) -> None:
    with pytest.raises(ParameterError, match="fraction"):
        validation_split(np.arange(10), seed=0, fraction=fraction)
