"""Fixtures of the executor tests: a hand-made trained bundle (a constant preference)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from allocator.actions import n_actions
from allocator.bundle import write_bundle
from allocator.featurizer import n_features

#: The scripted bundle's arms and its preference (logits) over
#: [STOP, SAMPLE(a), SAMPLE(b), REFINE, VERIFY]: VERIFY > REFINE > b > a > STOP.
ARMS = ("a", "b")
PREFERENCE = np.array([0.0, 1.0, 2.0, 3.0, 4.0], dtype=np.float32)


def write_scripted_bundle(path: Path) -> Path:
    """A bundle whose policy always takes the most preferred allowed action."""
    width, actions = n_features(len(ARMS)), n_actions(len(ARMS))
    weights = {"action_net.weight": np.zeros((actions, width), np.float32),
               "action_net.bias": PREFERENCE}
    network = {"kind": "mlp", "layers": [{"weight": "action_net.weight",
                                          "bias": "action_net.bias",
                                          "shape": [actions, width], "activation": None}]}
    manifest = {"arms": list(ARMS), "lambda_range": [0.0, 0.4], "cost_unit": 2.0,
                "network": network, "normalization": None, "run_id": None,
                "log_fingerprint": "scripted"}
    return write_bundle(path, weights=weights, manifest=manifest)


@pytest.fixture(scope="session")
def scripted_oracle(tmp_path_factory: pytest.TempPathFactory):
    """A :class:`BudgetOracle` of the scripted bundle."""
    from allocator.oracle import load

    return load(write_scripted_bundle(tmp_path_factory.mktemp("bundle") / "bundle"))
