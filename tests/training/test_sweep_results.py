"""The sweep's best trial is calibrated and evaluated at the sweep's verifier cost, the
one its trials were scored with (as ``allocator train`` passes its ``verify_cost``).

:func:`allocator.training.sweep_results.export_best` (which calibrates into a new bundle) and
:func:`~allocator.training.sweep_results.evaluate_best` are called directly on a tiny
trained bundle (in a Ray checkpoint, as a trial leaves it) and a
:class:`allocator.training.sweep_data.SweepData` built by hand; the sweep's verify cost itself
comes from :func:`allocator.training.sweep.prepare_data`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tiny_policy import LAMBDA_RANGE, train_tiny_policy

from allocator.bundle import read_bundle
from allocator.logs.synthetic import SyntheticConfig, generate
from allocator.training.rl.export import export_bundle
from allocator.training.sweep_config import spec_from_dict
from allocator.training.sweep_data import SweepData
from allocator.training.sweep_results import METRIC, evaluate_best, export_best
from tests.conftest import require_ray

#: A price per verified candidate no log's default (0 here: scores, no verdicts) gives.
VERIFY_COST = 3.0


def test_the_best_trial_is_calibrated_and_evaluated_at_the_sweeps_verify_cost(
        tmp_path: Path) -> None:
    log = generate(SyntheticConfig(n_queries=60, with_scores=True), seed=1)
    prior = np.full((log.n_queries, len(log.arms)), 0.5)
    fit, validation, test = np.arange(0, 20), np.arange(20, 30), np.arange(30, 60)
    model, venv = train_tiny_policy(log, prior, queries=fit, steps=2048)
    trained = export_bundle(model, tmp_path / "checkpoint" / "bundle", arms=venv.pools.arms,
                            lambda_range=LAMBDA_RANGE, cost_unit=venv.settings.cost_unit,
                            log_fingerprint=log.fingerprint())
    data = SweepData(log=log, fit=fit, validation=validation, test=test, prior=prior,
                     seed=0, verify_cost=VERIFY_COST)
    spec = spec_from_dict({"base": {"n_orders": 1, "n_bootstrap": 10,
                                    "eval_lambdas": [0.01, 0.1]}})
    require_ray()
    from ray.train import Checkpoint

    trial = {"config": {}, "trial_id": "t0", METRIC: 0.0,
             "_checkpoint": Checkpoint.from_directory(str(trained.parent))}

    bundle, lam = export_best(data, trial, tmp_path / "sweep", say=lambda _: None)
    report, _ = evaluate_best(data, spec, trial, bundle, tmp_path / "sweep",
                              say=lambda _: None, lam=lam)

    manifest = read_bundle(bundle).manifest
    assert manifest["calibration"]["verify_cost"] == VERIFY_COST
    assert manifest["calibration"]["n_queries"] == len(validation)
    assert manifest["calibrated_lambda"] == lam
    assert report.extra["sweep"]["calibrated_lambda"] == lam
    assert report.config["verify_cost"] == VERIFY_COST


def test_the_sweeps_verify_cost_is_base_s_as_allocator_train_s() -> None:
    """``[base] verify_cost`` prices VERIFY for the whole sweep, as ``allocator train``'s
    ``verify_cost`` does for its run; unset, the log's verdicts' mean cost (0 here)."""
    require_ray()
    from allocator.envs.pools import log_verify_cost
    from allocator.training.rl.config import TrainConfig
    from allocator.training.sweep import prepare_data

    log = generate(SyntheticConfig(n_queries=40, with_scores=True), seed=1)
    given, _ = prepare_data(log, TrainConfig(verify_cost=VERIFY_COST))
    default, _ = prepare_data(log, TrainConfig())
    assert given.verify_cost == VERIFY_COST
    assert default.verify_cost == log_verify_cost(log) == 0.0
