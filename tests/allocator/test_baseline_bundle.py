"""Baseline bundles: a registered baseline at one setting, exported, verified and served by
the same oracle and sessions as a learned bundle; table-driven over every registered
deployable baseline."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import allocator
from allocator.actions import mask_bits
from allocator.baseline_bundle import (
    baseline_policy,
    bundle_policy,
    exportable,
    policy_params,
    write_baseline_bundle,
)
from allocator.bundle import MANIFEST_FILE, WEIGHTS_FILE, read_bundle, write_bundle
from allocator.errors import AllocatorError, BundleError, ParameterError
from allocator.featurizer import feature_names
from allocator.oracle import AttemptResult
from allocator.policies import POLICIES, available_policies, make_policy
from allocator.policies.base import Policy
from allocator.policies.difficulty_binned import DifficultyBinned

ARMS = ("small", "large")
#: Every registered baseline a bundle can hold (the learned one is exported with weights).
BASELINES = [name for name in available_policies(deployable_only=True)
             if name != "learned" and not POLICIES[name].stochastic]


def a_setting(name: str) -> Policy:
    """The baseline on the second arm, its knob at a non-default value of its sweep."""
    fields = POLICIES[name].__dataclass_fields__
    policy = make_policy(name, **({"arm": 1} if "arm" in fields else {}))
    sweep = [v for v in type(policy).default_sweep if v != getattr(policy, policy.knob or "",
                                                                   None)]
    return policy.with_knob(sweep[len(sweep) // 2]) if policy.knob and sweep else policy


def export(path: Path, policy: Policy, **changes: object) -> Path:
    arguments: dict = {"arms": ARMS, "lambda_range": (0.001, 0.3), "cost_unit": 2.5,
                       "log_fingerprint": "abc123", "run_id": "run-1",
                       "extra": {"note": "kept"}}
    arguments.update(changes)
    return write_baseline_bundle(path, policy, **arguments)


def rewrite_manifest(path: Path, change) -> None:
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    change(manifest)
    (path / MANIFEST_FILE).write_text(json.dumps(manifest))


def test_the_table_is_not_empty() -> None:
    assert {"fixed-n", "adaptive-consistency"} <= set(BASELINES)


# ------------------------------------------------------------------ round trip
@pytest.mark.parametrize("name", BASELINES)
def test_round_trip_rebuilds_the_same_policy(tmp_path: Path, name: str) -> None:
    policy = a_setting(name)
    path = export(tmp_path / "bundle", policy)
    bundle = read_bundle(path)
    assert bundle.policy_kind == "baseline" and bundle.weights == {}
    spec = bundle.manifest["policy"]
    assert spec["kind"] == "baseline" and spec["name"] == name
    assert spec["params"] == policy_params(policy)
    assert bundle.manifest["network"] is None and bundle.manifest["normalization"] is None
    assert bundle.manifest["feature_names"] == feature_names(ARMS)
    assert bundle.manifest["note"] == "kept" and bundle.manifest["files"] == {}
    assert not (path / WEIGHTS_FILE).exists()
    assert baseline_policy(bundle) == policy == bundle_policy(bundle)
    oracle = allocator.load(path)
    assert oracle.policy == policy and oracle.policy_kind == "baseline"
    assert oracle.decision_backend == "baseline"
    assert oracle.lambda_range == (0.001, 0.3) and oracle.cost_unit == 2.5


def test_a_fitted_plan_round_trips_through_json(tmp_path: Path) -> None:
    """Tuples of tuples (a fitted difficulty-binned plan) come back as equal tuples."""
    rng = np.random.default_rng(3)
    prior = rng.random(60)
    solve = np.clip(prior[:, None] + rng.normal(0, 0.1, (60, 8)), 0, 1)
    fitted = DifficultyBinned.fit(prior, solve, target_mean_samples=4.0, arm=1)
    assert isinstance(fitted.bin_curves, tuple) and fitted.bin_curves
    path = export(tmp_path / "bundle", fitted)
    assert allocator.load(path).policy == fitted


# ------------------------------------------------------------------ sessions = act
def drive(oracle, rng: np.random.Generator, lambda_: float, answers: list[list]) -> list:
    """Run one session per answer script; at every step compare with ``act``."""
    taken = []
    for script in answers:
        session = oracle.session(lambda_=lambda_, prior=rng.uniform(0.1, 0.9, len(ARMS)),
                                 max_samples=12)
        actions = []
        for answer in script:
            action = session.next_action()
            mask = session.allowed_actions()
            expected = oracle.policy.act(session.state.to_batch(), mask[None, :])[0]
            assert action.index == expected, (session.state, mask)
            assert mask[action.index]
            actions.append(action.index)
            if action.kind == "stop":
                break
            session.observe(AttemptResult("sample", action.arm, answer, float(answer or 1)))
        taken.append(actions)
    return taken


@pytest.mark.parametrize("name", BASELINES)
def test_session_decisions_equal_the_policys_act(tmp_path: Path, name: str) -> None:
    oracle = allocator.load(export(tmp_path / "bundle", a_setting(name)))
    rng = np.random.default_rng(7)
    answers = [[rng.choice([None, 1, 2, 2, 3]) for _ in range(14)] for _ in range(40)]
    taken = drive(oracle, np.random.default_rng(1), 0.01, answers)
    assert max(len(actions) for actions in taken) > 2  # sessions sample, then stop
    # Lambda is not the baseline's knob: the same histories give the same decisions.
    assert drive(oracle, np.random.default_rng(1), 0.29, answers) == taken


def test_the_session_function_is_the_policys(tmp_path: Path) -> None:
    """The session decides through the policy's own ``decision_function``."""
    policy = make_policy("adaptive-consistency", threshold=0.8, arm=1, max_samples=6)
    oracle = allocator.load(export(tmp_path / "bundle", policy))
    session = oracle.session()
    decide = policy.decision_function(len(ARMS))
    for answer in ["7", "8", "7", "7", "7", "7", None]:
        allowed = mask_bits(session.allowed_actions())
        assert session.next_action().index == decide(session.state, allowed)
        if session.done:
            break
        session.observe(AttemptResult("sample", "large", answer, 1.0))
    assert session.done and 3 <= session.state.drawn <= 6  # AC(0.8) stops on agreement


# ------------------------------------------------------------------ refusals
def test_only_deployable_deterministic_registered_baselines_are_exported(
        tmp_path: Path) -> None:
    epsilon = make_policy("epsilon-greedy")
    assert exportable(epsilon) is not None
    with pytest.raises(ParameterError, match="deployable deterministic"):
        export(tmp_path / "b", epsilon)
    with pytest.raises(ParameterError, match="arm index"):
        export(tmp_path / "b", make_policy("fixed-n", n=3, arm=2))
    assert not list(tmp_path.iterdir())


def test_a_baseline_manifest_with_weights_is_refused(tmp_path: Path) -> None:
    manifest = {"arms": list(ARMS), "lambda_range": (0.0, 0.2), "cost_unit": 1.0,
                "network": None, "normalization": None, "run_id": None,
                "log_fingerprint": "x",
                "policy": {"kind": "baseline", "name": "fixed-n", "params": {"n": 3}}}
    with pytest.raises(ParameterError, match="no weights"):
        write_bundle(tmp_path / "b", weights={"w": np.zeros(2, np.float32)},
                     manifest=manifest)
    with pytest.raises(ParameterError, match="'kind' is one of"):
        write_bundle(tmp_path / "b", weights=None,
                     manifest={**manifest, "policy": {"kind": "forest"}})
    with pytest.raises(ParameterError, match="'params'"):
        write_bundle(tmp_path / "b", weights=None,
                     manifest={**manifest, "policy": {"kind": "baseline", "name": "fixed-n"}})
    with pytest.raises(ParameterError, match="needs its weights"):
        write_bundle(tmp_path / "b", weights=None, manifest={**manifest, "policy": None,
                                                             "network": {"layers": []}})
    assert not list(tmp_path.iterdir())


def _set(key: str, value: object):
    return lambda manifest: manifest.__setitem__(key, value)


def _set_param(key: str, value: object):
    return lambda manifest: manifest["policy"]["params"].__setitem__(key, value)


def _add_weights(path: Path) -> None:
    (path / WEIGHTS_FILE).write_bytes(b"x")
    digest = hashlib.sha256(b"x").hexdigest()
    rewrite_manifest(path, lambda m: m["files"].__setitem__(WEIGHTS_FILE, digest))


TAMPERING = {
    "extra file": (lambda p: (p / "extra.bin").write_bytes(b"x"), r"unlisted.*extra\.bin"),
    "listed file missing": (lambda p: rewrite_manifest(
        p, lambda m: m["files"].__setitem__("difficulty/x", "0" * 64)), "missing"),
    "weights added": (_add_weights, "baseline bundle lists"),
    "unknown kind": (lambda p: rewrite_manifest(p, _set("policy", {"kind": "forest"})),
                     "upgrade ttc-allocator"),
    "network given": (lambda p: rewrite_manifest(p, _set("network", {"layers": []})),
                      "no network"),
    "unknown baseline": (lambda p: rewrite_manifest(
        p, lambda m: m["policy"].__setitem__("name", "no-such-rule")),
                         "not a registered baseline"),
    "the learned policy by name": (lambda p: rewrite_manifest(
        p, lambda m: m["policy"].__setitem__("name", "learned")), "not a registered baseline"),
    "bad knob": (lambda p: rewrite_manifest(p, _set_param("threshold", 1.5)),
                 "refuses its parameters.*threshold"),
    "unknown parameter": (lambda p: rewrite_manifest(p, _set_param("speed", 3)),
                          "refuses its parameters.*speed"),
    "arm beyond the bundle": (lambda p: rewrite_manifest(p, _set_param("arm", 5)),
                              "arm index"),
    "featurizer version": (lambda p: rewrite_manifest(p, _set("featurizer_version", 99)),
                           "featurizer version 99"),
    "feature names": (lambda p: rewrite_manifest(p, _set("feature_names", ["x"])),
                      "feature 0 is 'x'"),
    "stochastic baseline": (lambda p: rewrite_manifest(p, _set("policy", {
        "kind": "baseline", "name": "epsilon-greedy", "params": {}})),
                            "deployable deterministic"),
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_tampered_baseline_bundles_are_refused_with_the_fix(tmp_path: Path, case: str) -> None:
    path = export(tmp_path / "bundle", make_policy("adaptive-consistency", threshold=0.9))
    tamper, message = TAMPERING[case]
    tamper(path)
    with pytest.raises(BundleError, match=message) as error:
        allocator.load(path)
    text = str(error.value)
    assert str(path) in text and isinstance(error.value, AllocatorError)
    assert any(fix in text for fix in ("re-export", "Re-export", "upgrade", "Retrain",
                                       "Remove them", "copy the whole bundle"))


def test_the_learned_policy_refuses_a_baseline_bundle(tmp_path: Path) -> None:
    from allocator.learned import LearnedPolicy

    path = export(tmp_path / "bundle", make_policy("fixed-n", n=4))
    with pytest.raises(BundleError, match=r"allocator\.load"):
        LearnedPolicy.from_bundle(path)


def test_a_parallel_n_bundle_carries_its_widths_and_launches_its_wave(tmp_path: Path
                                                                      ) -> None:
    policy = make_policy("parallel-n", n=4, arm=1, widths=(1, 4))
    path = export(tmp_path / "bundle", policy)
    assert read_bundle(path).widths == (1, 4)
    oracle = allocator.load(path)
    assert oracle.policy == policy and oracle.widths == (1, 4)
    session = oracle.session(prior=[0.5, 0.5])
    action = session.next_action()
    assert (action.kind, action.arm, action.width) == ("sample", "large", 4)
    for answer in ("1", "1", "2", "1"):
        session.observe(AttemptResult("sample", None, answer, 1.0))
    assert session.next_action().kind == "stop" and session.final_answer() == "1"
    # without widths the same policy samples one at a time (fixed-N's layout)
    plain = allocator.load(export(tmp_path / "plain", make_policy("parallel-n", n=2)))
    assert plain.widths == (1,)
    assert plain.session(prior=[0.5, 0.5]).next_action().width == 1
