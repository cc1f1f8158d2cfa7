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


def write_scripted_bundle(path: Path, widths: tuple[int, ...] = (1,)) -> Path:
    """A bundle whose policy always takes the most preferred allowed action.

    With ``widths`` (e.g. ``(1, 4)``) the layout is widened and SAMPLE(arm)xw come after
    VERIFY in the preference (SAMPLE(b)x4 first of all, where allowed).
    """
    width, actions = n_features(len(ARMS)), n_actions(len(ARMS), widths)
    weights = {"action_net.weight": np.zeros((actions, width), np.float32),
               "action_net.bias": np.arange(actions, dtype=np.float32)}
    network = {"kind": "mlp", "layers": [{"weight": "action_net.weight",
                                          "bias": "action_net.bias",
                                          "shape": [actions, width], "activation": None}]}
    manifest = {"arms": list(ARMS), "lambda_range": [0.0, 0.4], "cost_unit": 2.0,
                "network": network, "normalization": None, "run_id": None,
                "log_fingerprint": "scripted", "widths": list(widths)}
    return write_bundle(path, weights=weights, manifest=manifest)


@pytest.fixture(scope="session")
def scripted_oracle(tmp_path_factory: pytest.TempPathFactory):
    """A :class:`BudgetOracle` of the scripted bundle."""
    from allocator.oracle import load

    return load(write_scripted_bundle(tmp_path_factory.mktemp("bundle") / "bundle"))


@pytest.fixture(scope="session")
def wide_oracle(tmp_path_factory: pytest.TempPathFactory):
    """The scripted bundle widened to widths (1, 4): it prefers SAMPLE(b)x4 when allowed."""
    from allocator.oracle import load

    return load(write_scripted_bundle(tmp_path_factory.mktemp("wide") / "bundle", (1, 4)))
