"""Both decision sources implement one protocol and open sessions the same way.

A scripted bundle (one dense layer, a constant preference over the actions) is the
learned source; a fixed-N baseline is the other. Both go through
:func:`allocator.session.open_session`, so the shared arguments are checked once and read
the same: the same errors, the same prior rule, the same caps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from allocator.actions import n_actions
from allocator.bundle import write_bundle
from allocator.decision_source import DecisionSource
from allocator.errors import ParameterError
from allocator.executors import PolicyOracle
from allocator.featurizer import n_features
from allocator.policies import make_policy

ARMS = ("a", "b")


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory):
    from allocator.oracle import load

    width, actions = n_features(len(ARMS)), n_actions(len(ARMS))
    weights = {"action_net.weight": np.zeros((actions, width), np.float32),
               "action_net.bias": np.array([0, 2, 1, -1, -2], np.float32)}
    network = {"kind": "mlp", "layers": [{"weight": "action_net.weight",
                                          "bias": "action_net.bias",
                                          "shape": [actions, width], "activation": None}]}
    manifest = {"arms": list(ARMS), "lambda_range": [0.0, 0.4], "cost_unit": 2.0,
                "network": network, "normalization": None, "run_id": None,
                "log_fingerprint": "scripted", "max_pool": {"a": 3, "b": 5}}
    path: Path = tmp_path_factory.mktemp("source") / "bundle"
    return load(write_bundle(path, weights=weights, manifest=manifest))


@pytest.fixture
def baseline(oracle) -> PolicyOracle:
    return PolicyOracle(make_policy("fixed-n", n=2), ARMS, priors=oracle)


def test_both_oracles_are_decision_sources(oracle, baseline) -> None:
    assert isinstance(oracle, DecisionSource) and isinstance(baseline, DecisionSource)
    assert not isinstance(make_policy("fixed-n", n=2), DecisionSource)


@pytest.mark.parametrize(("arguments", "parameter", "expected"), [
    ({"prior": [0.5, 1.5]}, "prior", "values in [0, 1]"),
    ({"prior": [0.5]}, "prior", "shape (2,)"),
    ({"max_samples": True}, "max_samples", "an integer >= 0 or None"),
    ({"max_samples_per_arm": {"a": -1}}, "max_samples_per_arm", "integer >= 0"),
    ({"max_samples_per_arm": {"z": 1}}, "max_samples_per_arm", "for arms in"),
    ({"arms": ["z"]}, "arms", "a non-empty list of the arms"),
])
def test_shared_arguments_are_refused_alike(oracle, baseline, arguments: dict,
                                            parameter: str, expected: str) -> None:
    for source, owner in ((oracle, "BudgetOracle.session"),
                          (baseline, "PolicyOracle.session")):
        with pytest.raises(ParameterError) as error:
            source.session("q", **arguments)
        assert error.value.parameter == parameter
        assert owner in str(error.value) and expected in str(error.value)


def test_the_prior_rule_is_the_sources_own(oracle, baseline) -> None:
    # An explicit prior wins in both; without one the baseline asks its prior source
    # (the oracle), which gives its uninformed prior for a query without a predictor.
    explicit = np.array([0.2, 0.9])
    for source in (oracle, baseline):
        session = source.session("q", prior=explicit)
        assert np.array_equal(session.prior, explicit) and session.prior is not explicit
        assert np.array_equal(source.session("q").prior, oracle.default_prior)
    assert np.array_equal(PolicyOracle(make_policy("fixed-n", n=2), ARMS).session().prior,
                          [0.5, 0.5])


def test_caps_come_from_the_source(oracle, baseline) -> None:
    # The bundle caps each arm at its trained pool; a baseline has no pool to keep to.
    assert oracle.sample_caps().tolist() == [3, 5]
    assert baseline.sample_caps().tolist() == [-1, -1]
    assert oracle.sample_caps(4, {"b": 1}).tolist() == [-1, 1]
    assert baseline.sample_caps(4, {"b": 1}).tolist() == [-1, 1]
    session = oracle.session(arms=["a"])
    assert session.allowed_actions().tolist() == [True, True, False, False, False]
