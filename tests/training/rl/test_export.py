"""Export of a trained MaskablePPO: the bundle decides exactly as SB3 does, without torch.

A real (small) MaskablePPO is trained on the batched replay env over a simulated log with
lambda drawn per episode; its bundle's :class:`~allocator.learned.LearnedPolicy` must make
the same decision as ``model.predict(obs, action_masks=mask, deterministic=True)`` on
every one of more than 10,000 replayed states (masks included), and loading it must not
import torch or stable-baselines3.

``allocator.learned`` (which registers the policy ``"learned"``) is imported inside the
tests, not at collection: see ``tests/allocator/test_bundle.py``.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3.common.vec_env import VecNormalize
from tiny_policy import LAMBDA_RANGE, fit_tiny_predictor, train_tiny_policy
from torch import nn

from allocator.bundle import MANIFEST_FILE, PREDICTOR_DIR, WEIGHTS_FILE, read_bundle
from allocator.envs import BatchedReplayVecEnv
from allocator.errors import BundleError, ParameterError
from allocator.featurizer import featurize, n_features
from allocator.logs.synthetic import SyntheticConfig, generate
from allocator.logs.table import AttemptLog
from allocator.training.difficulty import DifficultyPredictor
from allocator.training.rl.export import export_bundle, network_description, policy_weights

REPO = Path(__file__).resolve().parents[3]
#: Random-rollout length and width: 48 steps x 256 sub-environments = 12,288 states.
ROLLOUT_STEPS, ROLLOUT_ENVS = 48, 256


@dataclass
class Trained:
    log: AttemptLog
    prior: np.ndarray
    model: MaskablePPO
    venv: BatchedReplayVecEnv
    predictor: DifficultyPredictor
    predictor_dir: Path
    bundle: Path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A MaskablePPO trained for 16k steps (about 1 s on one thread), and its bundle."""
    folder = tmp_path_factory.mktemp("export")
    log = generate(SyntheticConfig(n_queries=100))
    predictor = fit_tiny_predictor(log)
    prior = predictor.predict(log)
    predictor_dir = predictor.save(folder / "predictor")
    model, venv = train_tiny_policy(log, prior)
    bundle = export_bundle(model, folder / "bundle", arms=venv.pools.arms,
                           lambda_range=LAMBDA_RANGE, cost_unit=venv.settings.cost_unit,
                           log_fingerprint=log.fingerprint(), run_id="test-run",
                           predictor_dir=predictor_dir, extra={"purpose": "test"})
    return Trained(log, prior, model, venv, predictor, predictor_dir, bundle)


@pytest.fixture
def learned() -> ModuleType:
    return importlib.import_module("allocator.learned")


def random_rollout(env: BatchedReplayVecEnv, seed: int, steps: int = ROLLOUT_STEPS):
    """Yield ``(state, obs, mask)`` while stepping with random allowed actions.

    STOP is taken with probability 0.1 (else a uniform allowed non-STOP action), so that
    episodes run deep enough to exhaust pools and make the masks matter.
    """
    rng = np.random.default_rng(seed)
    env.seed(seed)
    obs = env.reset()
    for _ in range(steps):
        mask = env.action_masks()
        yield env.state(), obs, mask
        others = mask.copy()
        others[:, 0] = False
        keys = rng.random(mask.shape) + others
        actions = np.where(others.any(axis=1) & (rng.random(len(mask)) >= 0.1),
                           keys.argmax(axis=1), 0)
        obs, _, _, _ = env.step(actions)


@pytest.mark.slow
def test_bundle_decides_exactly_as_maskable_ppo(trained: Trained, learned: ModuleType) -> None:
    """Every replayed state, with the env's mask and with a random mask.

    The trained policy rarely prefers an action its env masks, so random masks (each
    allowing at least one action, STOP included or not; SB3 applies any mask the same
    way) make sure masking itself is compared, not just the logits.
    """
    policy = learned.LearnedPolicy.from_bundle(trained.bundle)
    env = BatchedReplayVecEnv(trained.log, n_envs=ROLLOUT_ENVS, lambda_range=LAMBDA_RANGE,
                              prior=trained.prior)
    rng = np.random.default_rng(7)
    n_states = mismatches = masked_changes = 0
    decided = np.zeros(env.action_space.n, dtype=np.int64)
    for state, obs, env_mask in random_rollout(env, seed=1):
        np.testing.assert_array_equal(featurize(state), obs)  # one featurizer
        random_mask = rng.random(env_mask.shape) < 0.5
        random_mask[np.arange(len(obs)), rng.integers(0, env_mask.shape[1], len(obs))] = True
        unmasked = policy.network.logits(obs).argmax(axis=1)
        for mask in (env_mask, random_mask):
            expected, _ = trained.model.predict(obs, action_masks=mask, deterministic=True)
            actions = policy.act(state, mask)
            one_by_one = [policy.network.act_one(o, m) for o, m in zip(obs, mask, strict=True)]
            mismatches += int((actions != expected).sum())
            mismatches += int((np.asarray(one_by_one) != expected).sum())  # runtime path
            n_states += len(actions)
            decided += np.bincount(actions, minlength=len(decided))
            masked_changes += int((unmasked != actions).sum())
    assert n_states >= 2 * 10_000
    assert mismatches == 0, f"{mismatches} of {2 * n_states} decisions differ from SB3"
    assert (decided > 0).all(), decided  # every action was chosen somewhere
    assert masked_changes > n_states // 10, masked_changes  # masking is compared


@pytest.mark.slow
def test_exported_manifest_and_weights(trained: Trained) -> None:
    bundle = read_bundle(trained.bundle)
    manifest = bundle.manifest
    assert bundle.arms == trained.venv.pools.arms
    assert manifest["lambda_range"] == list(LAMBDA_RANGE)
    assert manifest["cost_unit"] == trained.venv.settings.cost_unit
    assert manifest["log_fingerprint"] == trained.log.fingerprint()
    assert manifest["run_id"] == "test-run" and manifest["purpose"] == "test"
    assert manifest["normalization"] is None
    assert manifest["training"]["algorithm"] == "MaskablePPO"
    assert manifest["training"]["num_timesteps"] == trained.model.num_timesteps
    network = manifest["network"]
    assert network == network_description(trained.model)
    assert network["layer_sizes"] == [n_features(2), 64, 64, 5]
    assert network["activation"] == "tanh"
    state = trained.model.policy.state_dict()
    weights = policy_weights(trained.model)
    assert set(weights) == {f"mlp_extractor.policy_net.{i}.{p}" for i in (0, 2)
                            for p in ("weight", "bias")} | {"action_net.weight",
                                                            "action_net.bias"}
    for name, array in weights.items():
        assert array.dtype == np.float32
        np.testing.assert_array_equal(array, state[name].numpy())  # bit for bit
        np.testing.assert_array_equal(bundle.weights[name], array)
    assert set(manifest["files"]) == {WEIGHTS_FILE} | {
        f"{PREDICTOR_DIR}/{p.name}" for p in trained.predictor_dir.iterdir()}


@pytest.mark.slow
def test_the_bundled_difficulty_predictor_predicts_as_saved(trained: Trained) -> None:
    predictor_dir = read_bundle(trained.bundle).predictor_dir
    assert predictor_dir is not None
    loaded = DifficultyPredictor.load(predictor_dir)
    np.testing.assert_array_equal(loaded.predict(trained.log), trained.prior)


@pytest.mark.slow
def test_a_tampered_predictor_file_is_refused(trained: Trained, tmp_path: Path) -> None:
    copy = export_bundle(trained.model, tmp_path / "bundle", arms=trained.venv.pools.arms,
                         lambda_range=LAMBDA_RANGE, cost_unit=trained.venv.settings.cost_unit,
                         log_fingerprint="x", predictor_dir=trained.predictor_dir)
    config = copy / PREDICTOR_DIR / "difficulty.json"
    config.write_text(config.read_text().replace('"isotonic"', '"sigmoid"'))
    with pytest.raises(BundleError, match=r"difficulty/difficulty\.json.*sha256"):
        read_bundle(copy)


@pytest.mark.slow
def test_loading_the_exported_bundle_imports_neither_torch_nor_sb3(trained: Trained) -> None:
    code = (
        "import allocator, allocator.bundle, allocator.learned; "
        f"allocator.learned.LearnedPolicy.from_bundle({str(trained.bundle)!r}); "
        "import sys; "
        "assert 'torch' not in sys.modules and 'stable_baselines3' not in sys.modules, "
        "[m for m in ('torch', 'stable_baselines3') if m in sys.modules]"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_export_is_deterministic(trained: Trained, tmp_path: Path) -> None:
    def export(name: str) -> Path:
        return export_bundle(trained.model, tmp_path / name, arms=trained.venv.pools.arms,
                             lambda_range=LAMBDA_RANGE,
                             cost_unit=trained.venv.settings.cost_unit, log_fingerprint="x",
                             extra={"created_at": "2026-11-01T00:00:00+00:00"})

    one, two = export("one"), export("two")
    for name in (MANIFEST_FILE, WEIGHTS_FILE):
        assert (one / name).read_bytes() == (two / name).read_bytes()
    assert json.loads((one / MANIFEST_FILE).read_text())["created_at"].startswith("2026-11")


@pytest.mark.slow
def test_vec_normalize_statistics_are_exported_and_applied(learned: ModuleType,
                                                           tmp_path: Path) -> None:
    torch.set_num_threads(1)
    log = generate(SyntheticConfig(n_queries=60), seed=3)
    vecnorm = VecNormalize(BatchedReplayVecEnv(log, n_envs=16, lambda_range=LAMBDA_RANGE),
                           norm_reward=False, clip_obs=5.0)
    vecnorm.seed(0)
    model = MaskablePPO("MlpPolicy", vecnorm, n_steps=64, batch_size=256, n_epochs=2,
                        seed=0, verbose=0)
    model.learn(total_timesteps=2_048)
    path = export_bundle(model, tmp_path / "bundle", arms=log.arms, lambda_range=LAMBDA_RANGE,
                         cost_unit=vecnorm.venv.settings.cost_unit, log_fingerprint="x")
    stats = read_bundle(path).normalization
    assert stats is not None and stats["clip"] == 5.0
    np.testing.assert_array_equal(stats["mean"], vecnorm.obs_rms.mean)
    policy = learned.LearnedPolicy.from_bundle(path)
    env = BatchedReplayVecEnv(log, n_envs=64, lambda_range=LAMBDA_RANGE)
    n_states = 0
    for state, obs, mask in random_rollout(env, seed=2, steps=24):
        expected, _ = model.predict(vecnorm.normalize_obs(obs), action_masks=mask,
                                    deterministic=True)
        np.testing.assert_array_equal(policy.act(state, mask), expected)
        one_by_one = [policy.network.act_one(o, m) for o, m in zip(obs, mask, strict=True)]
        np.testing.assert_array_equal(one_by_one, expected)  # the runtime's vector path
        n_states += len(obs)
    assert n_states == 64 * 24


def test_export_refuses_models_it_cannot_run(tmp_path: Path) -> None:
    log = generate(SyntheticConfig(n_queries=20))
    venv = BatchedReplayVecEnv(log, n_envs=2, lambda_range=LAMBDA_RANGE)
    model = MaskablePPO("MlpPolicy", venv, n_steps=8, batch_size=16, seed=0, verbose=0)
    with pytest.raises(ParameterError, match="arms"):
        export_bundle(model, tmp_path / "b", arms=["only-one"], lambda_range=LAMBDA_RANGE,
                      cost_unit=1.0, log_fingerprint="x")
    elu = MaskablePPO("MlpPolicy", venv, n_steps=8, batch_size=16, seed=0, verbose=0,
                      policy_kwargs={"activation_fn": nn.ELU})
    with pytest.raises(ParameterError, match="activation_fn"):
        export_bundle(elu, tmp_path / "b", arms=log.arms, lambda_range=LAMBDA_RANGE,
                      cost_unit=1.0, log_fingerprint="x")
    assert not (tmp_path / "b").exists()
