"""A failure after training keeps the run and says how to evaluate it (issue 14, item 6)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from allocator.actions import n_actions
from allocator.bundle import write_bundle
from allocator.errors import AllocatorError
from allocator.featurizer import n_features
from allocator.logs.synthetic import SyntheticConfig, generate
from allocator.training.rl.config import TrainConfig
from allocator.training.rl.pipeline import _evaluate_trained


def other_arms_bundle(path: Path) -> Path:
    """A real bundle over arms the log does not have: its evaluation must fail."""
    arms = ["x", "y", "z"]
    width, actions = n_features(len(arms)), n_actions(len(arms))
    weights = {"action_net.weight": np.zeros((actions, width), np.float32),
               "action_net.bias": np.zeros(actions, np.float32)}
    layer = {"weight": "action_net.weight", "bias": "action_net.bias",
             "shape": [actions, width], "activation": None}
    return write_bundle(path, weights=weights, manifest={
        "arms": arms, "lambda_range": [0.0, 0.2], "cost_unit": 1.0,
        "network": {"kind": "mlp", "layers": [layer]}, "normalization": None,
        "run_id": None, "log_fingerprint": "other"})


def test_an_evaluation_failure_names_the_command_that_evaluates_the_bundle(
        tmp_path: Path) -> None:
    log = generate(SyntheticConfig(n_queries=40))
    run_dir = tmp_path / "run"
    bundle = other_arms_bundle(run_dir / "bundle")
    config = TrainConfig(seed=3, n_orders=2)
    test = np.arange(20, 40)
    with pytest.raises(AllocatorError) as error:
        _evaluate_trained(log, tmp_path / "log.parquet", run_dir, bundle, test,
                          np.full((40, len(log.arms)), 0.5), config, lambda message: None)
    message = str(error.value)
    assert f"allocator evaluate {tmp_path / 'log.parquet'} --bundle {bundle}" in message
    assert "--seed 3" in message and "--orders 2" in message
    assert f"The run folder {run_dir} is kept" in message
    assert error.value.__cause__ is not None  # the evaluation's own error, chained
    assert bundle.is_dir()  # nothing was removed
