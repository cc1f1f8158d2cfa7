"""Bundles: write, read and verify; the learned policy's numpy network; tampering refused.

These tests build bundles from hand-made weights (no torch): the runtime side alone. The
export from a trained MaskablePPO and the decision-for-decision comparison with SB3 are in
``tests/training/rl/test_export.py``.

``allocator.learned`` registers the policy ``"learned"``; it is imported inside the tests
(the ``learned`` fixture), not at collection, so that the policy-contract table
(``tests/allocator/policies``), which lists the policies registered at collection, is
not affected by the order in which test files are collected.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from safetensors.numpy import save_file

import allocator.bundle as bundle_module
from allocator.actions import action_names, n_actions
from allocator.bundle import (
    BUNDLE_FORMAT_VERSION,
    MANIFEST_FILE,
    WEIGHTS_FILE,
    read_bundle,
    write_bundle,
)
from allocator.errors import AllocatorError, BundleError, ParameterError
from allocator.featurizer import (
    FEATURIZER_VERSION,
    QueryState,
    StateBatch,
    feature_names,
    featurize,
    n_features,
)

ARMS = ("small", "large")
HIDDEN = (16, 12)
REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ helpers
def sb3_weights(seed: int = 0, hidden: tuple[int, ...] = HIDDEN) -> dict[str, np.ndarray]:
    """Random actor weights named as in a MaskablePPO ``state_dict`` (float32)."""
    rng = np.random.default_rng(seed)
    sizes = [n_features(len(ARMS)), *hidden, n_actions(len(ARMS))]
    names = [f"mlp_extractor.policy_net.{2 * i}" for i in range(len(hidden))] + ["action_net"]
    weights = {}
    for name, n_in, n_out in zip(names, sizes[:-1], sizes[1:], strict=True):
        weights[f"{name}.weight"] = rng.normal(0, 1, (n_out, n_in)).astype(np.float32)
        weights[f"{name}.bias"] = rng.normal(0, 0.1, n_out).astype(np.float32)
    return weights


def network_for(weights: dict[str, np.ndarray], activation: str = "tanh") -> dict:
    prefixes = sorted({name.rsplit(".", 1)[0] for name in weights},
                      key=lambda p: (p == "action_net", p))
    layers = [{"weight": f"{p}.weight", "bias": f"{p}.bias",
               "shape": list(weights[f"{p}.weight"].shape),
               "activation": None if p == "action_net" else activation} for p in prefixes]
    return {"kind": "mlp", "activation": activation, "layers": layers,
            "layer_sizes": [layers[0]["shape"][1], *(la["shape"][0] for la in layers)]}


def manifest_for(weights: dict[str, np.ndarray], **changes: object) -> dict:
    manifest = {"arms": list(ARMS), "lambda_range": (0.0, 0.2), "cost_unit": 2.5,
                "network": network_for(weights), "normalization": None, "run_id": "run-1",
                "log_fingerprint": "abc123", "created_at": "2026-11-01T00:00:00+00:00",
                "note": "extra fields are kept"}
    manifest.update(changes)
    return manifest


def reference_logits(weights: dict[str, np.ndarray], obs: np.ndarray) -> np.ndarray:
    """The MLP written out: tanh hidden layers, then the action layer."""
    x = obs.astype(np.float64)
    for i in range(len(HIDDEN)):
        name = f"mlp_extractor.policy_net.{2 * i}"
        x = np.tanh(x @ weights[f"{name}.weight"].T.astype(np.float64) + weights[f"{name}.bias"])
    return x @ weights["action_net.weight"].T.astype(np.float64) + weights["action_net.bias"]


def random_states(seed: int, batch: int) -> tuple[StateBatch, np.ndarray]:
    """``batch`` states (samples of both arms, votes, costs, lambdas) and random masks."""
    rng = np.random.default_rng(seed)
    states = []
    for _ in range(batch):
        state = QueryState(n_arms=len(ARMS), prior=rng.random(len(ARMS)),
                           lam=float(rng.uniform(0, 0.2)))
        for _ in range(int(rng.integers(0, 12))):
            answer = None if rng.random() < 0.1 else f"a{rng.integers(0, 4)}"
            state.add_sample(int(rng.integers(0, len(ARMS))), answer,
                             cost=float(rng.uniform(0.5, 3)))
        states.append(state.to_batch())
    width = max(s.votes.shape[1] for s in states)
    votes = np.zeros((batch, width))
    for row, s in enumerate(states):
        votes[row, : s.votes.shape[1]] = s.votes[0]

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(s, name) for s in states])

    batch_state = StateBatch(samples=cat("samples"), votes=votes, no_answer=cat("no_answer"),
                             refines=cat("refines"), verified=cat("verified"),
                             best_score=cat("best_score"), cost=cat("cost"), lam=cat("lam"),
                             prior=cat("prior"))
    mask = rng.random((batch, n_actions(len(ARMS)))) < 0.6
    mask[:, 0] = True  # STOP is always allowed
    return batch_state, mask


def rewrite_manifest(path: Path, **changes: object) -> None:
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    manifest.update(changes)
    (path / MANIFEST_FILE).write_text(json.dumps(manifest))


@pytest.fixture
def learned() -> ModuleType:
    """``allocator.learned``, imported at run time (see the module docstring)."""
    return importlib.import_module("allocator.learned")


@pytest.fixture
def weights() -> dict[str, np.ndarray]:
    return sb3_weights()


@pytest.fixture
def bundle_path(tmp_path: Path, weights: dict[str, np.ndarray]) -> Path:
    return write_bundle(tmp_path / "bundle", weights=weights, manifest=manifest_for(weights))


# ------------------------------------------------------------------ round trip
def test_round_trip_keeps_weights_and_fills_the_manifest(bundle_path: Path, weights) -> None:
    bundle = read_bundle(bundle_path)
    manifest = bundle.manifest
    assert manifest["format_version"] == BUNDLE_FORMAT_VERSION
    assert manifest["featurizer_version"] == FEATURIZER_VERSION
    assert manifest["feature_names"] == feature_names(ARMS) == bundle.feature_names
    assert manifest["actions"] == action_names(ARMS)
    assert bundle.arms == ARMS
    assert manifest["lambda_range"] == [0.0, 0.2] and manifest["cost_unit"] == 2.5
    assert manifest["run_id"] == "run-1" and manifest["log_fingerprint"] == "abc123"
    assert manifest["note"] == "extra fields are kept"
    assert manifest["normalization"] is None and bundle.predictor_dir is None
    assert manifest["files"] == {
        WEIGHTS_FILE: hashlib.sha256((bundle_path / WEIGHTS_FILE).read_bytes()).hexdigest()}
    assert set(bundle.weights) == set(weights)
    for name, array in weights.items():
        assert bundle.weights[name].dtype == np.float32
        np.testing.assert_array_equal(bundle.weights[name], array)
    # Nothing but the bundle is left in the parent directory (no temporary directories).
    assert [p.name for p in bundle_path.parent.iterdir()] == ["bundle"]


def test_created_at_defaults_to_now(tmp_path: Path, weights) -> None:
    manifest = manifest_for(weights)
    del manifest["created_at"]
    path = write_bundle(tmp_path / "b", weights=weights, manifest=manifest)
    assert read_bundle(path).manifest["created_at"].startswith("20")


def test_same_inputs_give_the_same_files(tmp_path: Path, weights) -> None:
    one = write_bundle(tmp_path / "one", weights=weights, manifest=manifest_for(weights))
    two = write_bundle(tmp_path / "two", weights=weights, manifest=manifest_for(weights))
    assert (one / MANIFEST_FILE).read_bytes() == (two / MANIFEST_FILE).read_bytes()
    assert (one / WEIGHTS_FILE).read_bytes() == (two / WEIGHTS_FILE).read_bytes()


def test_an_existing_bundle_is_replaced(bundle_path: Path) -> None:
    other = sb3_weights(seed=5)
    write_bundle(bundle_path, weights=other, manifest=manifest_for(other, run_id="run-2"))
    bundle = read_bundle(bundle_path)
    assert bundle.manifest["run_id"] == "run-2"
    np.testing.assert_array_equal(bundle.weights["action_net.bias"], other["action_net.bias"])
    assert sorted(p.name for p in bundle_path.parent.iterdir()) == ["bundle"]


def test_a_non_bundle_directory_is_never_overwritten(tmp_path: Path, weights) -> None:
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(BundleError, match="not a policy bundle"):
        write_bundle(folder, weights=weights, manifest=manifest_for(weights))
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(BundleError, match="not a directory"):
        write_bundle(file, weights=weights, manifest=manifest_for(weights))


def test_an_empty_directory_is_used(tmp_path: Path, weights) -> None:
    (tmp_path / "empty").mkdir()
    path = write_bundle(tmp_path / "empty", weights=weights, manifest=manifest_for(weights))
    assert read_bundle(path).arms == ARMS


@pytest.mark.parametrize(("changes", "parameter"), [
    ({"format_version": 1}, "format_version"),
    ({"feature_names": ["x"]}, "feature_names"),
    ({"files": {}}, "files"),
    ({"arms": []}, "arms"),
    ({"arms": ["a", "a"]}, "arms"),
    ({"lambda_range": (0.3, 0.1)}, "lambda_range"),
    ({"lambda_range": (0.0, float("nan"))}, "lambda_range"),
    ({"cost_unit": 0.0}, "cost_unit"),
    ({"log_fingerprint": None}, "log_fingerprint"),
    ({"run_id": 3}, "run_id"),
    ({"note": float("inf")}, "manifest"),
    ({"note": object()}, "manifest"),
])
def test_write_refuses_bad_manifest_fields(tmp_path: Path, weights, changes, parameter) -> None:
    with pytest.raises(ParameterError, match=parameter):
        write_bundle(tmp_path / "b", weights=weights, manifest=manifest_for(weights, **changes))
    assert not list(tmp_path.iterdir())


def test_write_refuses_a_missing_field_and_weights_off_the_network(tmp_path: Path,
                                                                  weights) -> None:
    manifest = manifest_for(weights)
    del manifest["log_fingerprint"]
    with pytest.raises(ParameterError, match="log_fingerprint"):
        write_bundle(tmp_path / "b", weights=weights, manifest=manifest)
    bad = dict(weights, **{"action_net.bias": np.zeros(3, np.float32)})
    with pytest.raises(ParameterError, match="shape"):
        write_bundle(tmp_path / "b", weights=bad, manifest=manifest_for(weights))
    with pytest.raises(ParameterError, match="floating-point"):
        write_bundle(tmp_path / "b", weights=dict(weights, x=np.zeros(2, np.int64)),
                     manifest=manifest_for(weights))
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ tampering
def flip_weight_byte(path: Path) -> None:
    data = bytearray((path / WEIGHTS_FILE).read_bytes())
    data[-3] ^= 0x01  # inside the last tensor's data
    (path / WEIGHTS_FILE).write_bytes(bytes(data))


def swap_features(path: Path) -> None:
    names = feature_names(ARMS)
    names[0], names[1] = names[1], names[0]
    rewrite_manifest(path, feature_names=names)


TAMPERING = {
    "weight byte flipped": (flip_weight_byte, r"policy\.safetensors.*sha256"),
    "feature names edited": (swap_features, r"feature 0 is 'prior\[large\]'.*'prior\[small\]'"),
    "feature dropped": (lambda p: rewrite_manifest(p, feature_names=feature_names(ARMS)[:-1]),
                        r"feature 16 is '<none>'.*'leader_posterior'"),
    "featurizer version": (lambda p: rewrite_manifest(p, featurizer_version=99),
                           "featurizer version 99"),
    "older featurizer": (lambda p: rewrite_manifest(
        p, featurizer_version=2, feature_names=feature_names(ARMS)[:-1],
        normalization={"mean": [0.0] * 16, "var": [1.0] * 16, "epsilon": 1e-8, "clip": 10.0}),
                         "trained on featurizer version 2, this code computes version 3"),
    "extra file": (lambda p: (p / "extra.bin").write_bytes(b"x"), r"unlisted.*extra\.bin"),
    "extra nested file": (lambda p: (p / "sub").mkdir() or (p / "sub" / "x").write_text("x"),
                          r"unlisted.*sub/x"),
    "newer format": (lambda p: rewrite_manifest(p, format_version=BUNDLE_FORMAT_VERSION + 1),
                     "upgrade ttc-allocator"),
    "missing weights": (lambda p: (p / WEIGHTS_FILE).unlink(), "missing"),
    "missing manifest": (lambda p: (p / MANIFEST_FILE).unlink(), "no manifest.json"),
    "manifest not JSON": (lambda p: (p / MANIFEST_FILE).write_text("{"), "not valid JSON"),
    "not a bundle manifest": (lambda p: rewrite_manifest(p, format="something"),
                              "not a ttc-allocator bundle"),
    "field of the wrong type": (lambda p: rewrite_manifest(p, arms="small"), "'arms'"),
    "field missing": (lambda p: rewrite_manifest(p, files=None), "'files'"),
    "actions reordered": (lambda p: rewrite_manifest(p, actions=["STOP", "VERIFY"]),
                          "action layout"),
    "bad normalization": (lambda p: rewrite_manifest(p, normalization={"mean": [0.0]}),
                          "normalization"),
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_tampered_bundles_are_refused_with_the_fix(bundle_path: Path, case: str) -> None:
    tamper, message = TAMPERING[case]
    tamper(bundle_path)
    with pytest.raises(BundleError, match=message) as error:
        read_bundle(bundle_path)
    text = str(error.value)
    assert str(bundle_path) in text
    assert any(fix in text for fix in ("re-export", "Re-export", "upgrade", "Retrain",
                                       "copy the whole bundle", "Remove them"))
    assert isinstance(error.value, AllocatorError)


def test_a_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no such bundle directory"):
        read_bundle(tmp_path / "nowhere")


def test_weights_that_do_not_match_the_network_are_refused(bundle_path: Path,
                                                           weights) -> None:
    """Even with consistent hashes (re-signed by hand), wrong tensors are refused."""
    cases = {
        "shape": dict(weights, **{"action_net.bias": np.zeros(4, np.float32)}),
        "missing": {k: v for k, v in weights.items() if k != "action_net.bias"},
        "not in the network description": dict(weights, extra=np.zeros(2, np.float32)),
    }
    for message, tensors in cases.items():
        save_file(tensors, str(bundle_path / WEIGHTS_FILE))
        digest = hashlib.sha256((bundle_path / WEIGHTS_FILE).read_bytes()).hexdigest()
        rewrite_manifest(bundle_path, files={WEIGHTS_FILE: digest})
        with pytest.raises(BundleError, match=message):
            read_bundle(bundle_path)


def test_a_corrupt_safetensors_file_is_refused(bundle_path: Path) -> None:
    (bundle_path / WEIGHTS_FILE).write_bytes(b"\x00" * 16)
    digest = hashlib.sha256(b"\x00" * 16).hexdigest()
    rewrite_manifest(bundle_path, files={WEIGHTS_FILE: digest})
    with pytest.raises(BundleError, match="not a readable safetensors"):
        read_bundle(bundle_path)


def test_loaded_weights_are_read_only(bundle_path: Path) -> None:
    bundle = read_bundle(bundle_path)
    with pytest.raises(ValueError):
        bundle.weights["action_net.bias"][0] = 1.0


# ------------------------------------------------------------------ the learned policy
def test_network_matches_the_written_out_mlp(learned: ModuleType, bundle_path: Path,
                                             weights) -> None:
    network = learned.MLPPolicyNetwork.from_bundle(read_bundle(bundle_path))
    states, mask = random_states(0, 500)
    obs = featurize(states)
    expected = reference_logits(weights, obs)
    np.testing.assert_allclose(network.logits(obs), expected, rtol=0, atol=1e-12)
    masked = np.where(mask, expected, -np.inf)
    np.testing.assert_array_equal(network.act(obs, mask), masked.argmax(axis=1))
    np.testing.assert_array_equal(network.logits(obs[0]), network.logits(obs[:1]))


def test_learned_policy_acts_on_states_and_respects_masks(learned: ModuleType,
                                                          bundle_path: Path, weights) -> None:
    policy = learned.LearnedPolicy.from_bundle(bundle_path)
    states, mask = random_states(1, 1000)
    actions = policy.act(states, mask)
    assert actions.dtype == np.int64 and actions.shape == (1000,)
    assert mask[np.arange(1000), actions].all()
    expected = np.where(mask, reference_logits(weights, featurize(states)), -np.inf)
    np.testing.assert_array_equal(actions, expected.argmax(axis=1))
    assert len(np.unique(actions)) > 1  # the masks and states matter
    probabilities = policy.probabilities(states, mask)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert (probabilities[~mask] == 0).all()
    np.testing.assert_array_equal(probabilities.argmax(axis=1), actions)
    # One state at a time gives the same decisions (the runtime's batch of one).
    single = [int(policy.act(_row(states, i), mask[i : i + 1])[0]) for i in range(50)]
    assert single == actions[:50].tolist()


def _row(states: StateBatch, i: int) -> StateBatch:
    return StateBatch(**{name: getattr(states, name)[i : i + 1] for name in (
        "samples", "votes", "no_answer", "refines", "verified", "best_score", "cost", "lam",
        "prior")})


def test_learned_policy_is_registered_hashable_and_verified(learned: ModuleType,
                                                            bundle_path: Path) -> None:
    from allocator.policies import POLICIES, make_policy

    assert POLICIES["learned"] is learned.LearnedPolicy
    policy = make_policy("learned", path=str(bundle_path))
    assert policy == learned.LearnedPolicy(bundle_path)  # a PathLike becomes its string
    assert hash(policy) == hash(learned.LearnedPolicy(str(bundle_path)))
    assert policy.knob is None and policy.deployable and not policy.stochastic
    assert policy.describe() == f"learned(path={str(bundle_path)!r})"
    assert policy.bundle.arms == ARMS and policy.bundle.sha256 == read_bundle(
        bundle_path).sha256
    with pytest.raises(BundleError, match="no such bundle"):  # read when built
        learned.LearnedPolicy(str(bundle_path.parent / "not-yet"))
    with pytest.raises(ParameterError, match="path"):
        learned.LearnedPolicy("")
    elsewhere = read_bundle(shutil.copytree(bundle_path, bundle_path.parent / "copy"))
    with pytest.raises(ParameterError, match="verified"):
        learned.LearnedPolicy(str(bundle_path), verified=elsewhere)
    # Built from a verified bundle: used as it is (the same object), not read again.
    from_verified = learned.LearnedPolicy.from_bundle(elsewhere)
    assert from_verified.bundle is elsewhere and from_verified.path == str(elsewhere.path)
    assert from_verified != policy  # another path
    assert from_verified == learned.LearnedPolicy(str(elsewhere.path))


def test_learned_policy_keeps_what_it_loaded(learned: ModuleType, bundle_path: Path,
                                             weights) -> None:
    """A loaded policy keeps its network when the bundle is rewritten (issue 14, item
    14); a new policy of the same path reads the new one."""
    policy = learned.LearnedPolicy.from_bundle(bundle_path)
    states, mask = random_states(2, 300)
    before = policy.act(states, mask)
    other = sb3_weights(seed=9)
    write_bundle(bundle_path, weights=other, manifest=manifest_for(other))
    np.testing.assert_array_equal(policy.act(states, mask), before)
    after = learned.LearnedPolicy(str(bundle_path)).act(states, mask)
    expected = np.where(mask, reference_logits(other, featurize(states)), -np.inf)
    np.testing.assert_array_equal(after, expected.argmax(axis=1))
    assert (before != after).any()


def test_a_learned_policy_pickles_as_its_path_and_hash(learned: ModuleType,
                                                       bundle_path: Path) -> None:
    """A policy travels to another process as its path and its bundle's sha256 and
    decides the same there; once the bundle on disk is another one, a copy refuses to
    load (fail closed) instead of deciding with other weights."""
    import copy as copying
    import pickle

    policy = learned.LearnedPolicy.from_bundle(bundle_path)
    pickled = pickle.dumps(policy)
    assert len(pickled) < 1_000  # the path and the hash, not the weights
    copy = pickle.loads(pickled)
    assert copy == policy and copy.bundle is not policy.bundle
    assert copy.bundle.sha256 == policy.bundle.sha256
    states, mask = random_states(5, 50)
    np.testing.assert_array_equal(copy.act(states, mask), policy.act(states, mask))
    assert copying.deepcopy(policy) is policy  # immutable: nothing to copy
    other = sb3_weights(seed=9)
    write_bundle(bundle_path, weights=other, manifest=manifest_for(other))  # valid, other
    with pytest.raises(BundleError, match="changed since the pickled LearnedPolicy"):
        pickle.loads(pickled)
    with pytest.raises(BundleError, match="changed since"):
        pickle.loads(pickle.dumps(policy))


def test_learned_policy_refuses_other_arms_and_bad_masks(learned: ModuleType,
                                                         bundle_path: Path) -> None:
    policy = learned.LearnedPolicy.from_bundle(bundle_path)
    states, mask = random_states(3, 4)
    with pytest.raises(ParameterError, match="mask"):
        policy.act(states, mask[:, :-1])
    one_arm = QueryState(n_arms=1).to_batch()
    with pytest.raises(ParameterError, match="arms"):
        policy.act(one_arm, np.ones((1, 4), bool))


def test_observation_normalisation_is_applied(learned: ModuleType, tmp_path: Path,
                                              weights) -> None:
    rng = np.random.default_rng(4)
    width = n_features(len(ARMS))
    stats = {"mean": rng.normal(0, 1, width), "var": rng.uniform(0.1, 4, width),
             "epsilon": 1e-8, "clip": 2.0}
    path = write_bundle(tmp_path / "b", weights=weights,
                        manifest=manifest_for(weights, normalization=stats))
    network = learned.MLPPolicyNetwork.from_bundle(read_bundle(path))
    obs = featurize(random_states(5, 200)[0])
    # VecNormalize.normalize_obs: float64 arithmetic, clipped, cast to float32.
    normalised = np.clip((obs - stats["mean"]) / np.sqrt(stats["var"] + 1e-8), -2, 2)
    expected = reference_logits(weights, normalised.astype(np.float32))
    np.testing.assert_allclose(network.logits(obs), expected, rtol=0, atol=1e-12)
    assert read_bundle(path).manifest["normalization"]["mean"] == stats["mean"].tolist()


def test_relu_networks_run_too(learned: ModuleType, tmp_path: Path, weights) -> None:
    manifest = manifest_for(weights, network=network_for(weights, activation="relu"))
    network = learned.MLPPolicyNetwork.from_bundle(
        read_bundle(write_bundle(tmp_path / "b", weights=weights, manifest=manifest)))
    obs = featurize(random_states(6, 50)[0]).astype(np.float64)
    x = obs
    for i in range(len(HIDDEN)):
        name = f"mlp_extractor.policy_net.{2 * i}"
        x = np.maximum(x @ weights[f"{name}.weight"].T.astype(np.float64)
                       + weights[f"{name}.bias"], 0)
    x = x @ weights["action_net.weight"].T.astype(np.float64) + weights["action_net.bias"]
    np.testing.assert_allclose(network.logits(obs), x, rtol=0, atol=1e-12)


# ------------------------------------------------------------------ light runtime
def test_loading_a_bundle_imports_neither_torch_nor_sb3(bundle_path: Path) -> None:
    code = (
        "import sys, numpy as np\n"
        "import allocator, allocator.bundle, allocator.learned\n"
        "from allocator.featurizer import QueryState\n"
        f"policy = allocator.learned.LearnedPolicy.from_bundle({str(bundle_path)!r})\n"
        "policy.act(QueryState(n_arms=2, lam=0.1).to_batch(), np.ones((1, 5), bool))\n"
        "heavy = [m for m in ('torch', 'stable_baselines3', 'sb3_contrib', 'mlflow',"
        " 'fastapi') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("module", ["allocator/bundle.py", "allocator/learned.py",
                                    "allocator/bundle_predictor.py", "allocator/lgbm_text.py"])
def test_runtime_modules_never_import_pickle_or_torch(module: str) -> None:
    source = (REPO / module).read_text()
    for word in ("import pickle", "import joblib", "import torch", "cloudpickle",
                 "stable_baselines3", "sb3_contrib", "allow_pickle=True"):
        assert word not in source, (module, word)
    assert bundle_module.__name__ == "allocator.bundle"


# ------------------------------------------------------------------ parallel widths
def wide_weights(widths: tuple[int, ...], favour: int | None = None) -> dict[str, np.ndarray]:
    """Actor weights over the layout of ``widths``; ``favour``: an action whose last-layer
    bias is far above the others' (the network then picks it wherever it is allowed)."""
    weights = sb3_weights()
    actions = n_actions(len(ARMS), widths)
    rng = np.random.default_rng(4)
    weights["action_net.weight"] = rng.normal(0, 1, (actions, HIDDEN[-1])).astype(np.float32)
    weights["action_net.bias"] = rng.normal(0, 0.1, actions).astype(np.float32)
    if favour is not None:
        weights["action_net.bias"][favour] = 100.0
    return weights


def test_a_bundle_with_widths_round_trips(tmp_path: Path, learned) -> None:
    weights = wide_weights((1, 2))
    path = write_bundle(tmp_path / "wide", weights=weights,
                        manifest=manifest_for(weights, widths=[1, 2]))
    bundle = read_bundle(path)
    assert bundle.widths == (1, 2)
    assert bundle.manifest["actions"] == action_names(ARMS, (1, 2))
    assert bundle.manifest["actions"][-2:] == ["SAMPLE(small)x2", "SAMPLE(large)x2"]
    network = learned.MLPPolicyNetwork.from_bundle(bundle)
    assert network.n_outputs == n_actions(len(ARMS), (1, 2)) == 7
    states, _ = random_states(1, 20)
    obs = featurize(states)
    np.testing.assert_allclose(network.logits(obs), reference_logits(weights, obs),
                               rtol=1e-6, atol=1e-6)


def test_a_bundle_without_widths_reads_as_one_attempt_per_sample(bundle_path: Path) -> None:
    manifest = json.loads((bundle_path / MANIFEST_FILE).read_text())
    manifest.pop("widths")  # as bundles written before widths existed
    (bundle_path / MANIFEST_FILE).write_text(json.dumps(manifest))
    assert read_bundle(bundle_path).widths == (1,)


@pytest.mark.parametrize("bad", [[2, 4], [1, 1], [], [1, 0], "12", [1, 2.5], None])
def test_bad_widths_are_refused_naming_the_field(bundle_path: Path, tmp_path: Path,
                                                 weights, bad: object) -> None:
    rewrite_manifest(bundle_path, widths=bad)
    with pytest.raises(BundleError, match="'widths'") as error:
        read_bundle(bundle_path)
    assert "re-export" in str(error.value).lower()
    with pytest.raises(ParameterError, match="'widths'"):
        write_bundle(tmp_path / "w", weights=weights, manifest=manifest_for(weights,
                                                                             widths=bad))


def test_a_network_off_the_widened_layout_is_refused(tmp_path: Path) -> None:
    weights = sb3_weights()  # A + 3 logits, but the manifest says widths [1, 2]
    with pytest.raises(ParameterError, match="logits"):
        write_bundle(tmp_path / "b", weights=weights,
                     manifest=manifest_for(weights, widths=[1, 2]))


def test_a_learned_policy_chooses_a_wave_in_process(tmp_path: Path) -> None:
    import allocator
    from allocator.actions import Action
    from allocator.session import AttemptResult

    favour = n_actions(len(ARMS)) + 1  # SAMPLE(large)x2
    weights = wide_weights((1, 2), favour=favour)
    path = write_bundle(tmp_path / "wide", weights=weights,
                        manifest=manifest_for(weights, widths=[1, 2]))
    oracle = allocator.load(path)
    assert oracle.widths == (1, 2)
    session = oracle.session(prior=[0.5, 0.5], max_samples=5)
    action = session.next_action()
    assert action == Action("sample", "large", favour, 2)
    for answer in ("4", "4"):
        session.observe(AttemptResult("sample", None, answer, 1.0))
    assert session.next_action().width == 2  # room for 2 more of 5: another wave
    session.observe(AttemptResult("sample", None, "4", 1.0))
    session.observe(AttemptResult("sample", None, "5", 1.0))
    follow = session.next_action()  # 4 drawn of 5: no room for 2, the wave is masked
    assert follow.width == 1 and not session.allowed_actions()[favour]
    policy = oracle.policy
    with pytest.raises(ParameterError, match="'widths'"):
        policy.decision_function(len(ARMS))  # the network's outputs follow (1, 2)
