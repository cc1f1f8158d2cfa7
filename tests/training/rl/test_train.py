"""Training the allocator: the config, learning, reproducibility, checkpoints and resuming.

The training tests run real MaskablePPO on the batched replay env over a small simulated
log (a few seconds each on 2 cores).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from stable_baselines3.common.callbacks import BaseCallback

from allocator.envs import BatchedReplayVecEnv
from allocator.errors import ParameterError
from allocator.logs.synthetic import SyntheticConfig, generate
from allocator.logs.table import AttemptLog
from allocator.training.evaluation.prices import LEARNED_GRID_POINTS
from allocator.training.rl.config import TrainConfig
from allocator.training.rl.train import (
    TrainingMonitor,
    latest_checkpoint,
    make_env,
    observation_normalization,
    policy_decisions,
    replay_env,
    train_policy,
)

#: A small, fast training setting: rollouts of 64 x 32 = 2,048 steps.
SMALL = TrainConfig(total_timesteps=32_768, n_envs=64, n_steps=32, batch_size=512,
                    n_epochs=10, seed=0)


@pytest.fixture(scope="module")
def log() -> AttemptLog:
    """A simulated two-arm cascade of 100 queries (large arm first, then small)."""
    return generate(SyntheticConfig(n_queries=100), seed=1)


def _states(log: AttemptLog, config: TrainConfig, seed: int = 7, steps: int = 40,
            n_envs: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Observations and masks met by a random masked policy: a fixed set of states."""
    venv = BatchedReplayVecEnv(log, n_envs=n_envs, lambda_range=config.lambda_range,
                               lambda_sampling=config.lambda_sampling)
    venv.seed(seed)
    rng = np.random.default_rng(seed)
    observations, masks = [venv.reset()], [venv.action_masks()]
    for _ in range(steps - 1):
        actions = (rng.random(masks[-1].shape) * masks[-1] + masks[-1]).argmax(axis=1)
        observations.append(venv.step(actions)[0])
        masks.append(venv.action_masks())
    return np.concatenate(observations), np.concatenate(masks)


def _mean_return(log: AttemptLog, config: TrainConfig, act, episodes: int = 3000) -> float:
    """Mean episode return (correct - lambda * cost units) of ``act(obs, masks)``, with
    lambda drawn as in training, on seeded episodes."""
    venv = BatchedReplayVecEnv(log, n_envs=256, lambda_range=config.lambda_range,
                               lambda_sampling=config.lambda_sampling)
    venv.seed(123)
    observations, running, returns = venv.reset(), np.zeros(256), []
    while len(returns) < episodes:
        observations, rewards, dones, _ = venv.step(act(observations, venv.action_masks()))
        running += rewards
        returns.extend(running[dones].tolist())
        running[dones] = 0.0
    return float(np.mean(returns))


# ------------------------------------------------------------------------ config
def test_defaults_are_documented_and_sensible() -> None:
    config = TrainConfig()
    doc = TrainConfig.__doc__ or ""
    for field in dataclasses.fields(TrainConfig):
        assert f"{field.name}:" in doc, field.name
    assert config.gamma == 1.0
    assert config.net_arch == (64, 64) and config.activation == "tanh"
    assert config.n_envs == 256
    lo, hi = config.lambda_range
    lambdas = config.evaluation_lambdas()
    assert lambdas[0] == lo and lambdas[-1] == hi
    assert list(lambdas) == sorted(set(lambdas)) and len(lambdas) == LEARNED_GRID_POINTS
    kwargs = config.policy_kwargs()
    assert kwargs["net_arch"] == {"pi": [64, 64], "vf": [64, 64]}
    assert kwargs["activation_fn"] is torch.nn.Tanh
    assert config.ppo_kwargs()["gamma"] == 1.0


@pytest.mark.parametrize("config", [
    TrainConfig(),
    TrainConfig(total_timesteps=1234, lambda_range=(0.0, 0.2), lambda_sampling="uniform",
                net_arch=(32, 16, 8), activation="relu", learning_rate=3e-5,
                eval_lambdas=(0.0, 0.05), arm="large", normalize_observations=False,
                safety_net=False, validation_fraction=0.4, verify_cost=2.5),
])
def test_toml_round_trip(config: TrainConfig, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(config.to_toml())
    assert TrainConfig.from_toml(path) == config


def test_toml_subset_keeps_other_defaults(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('seed = 3\nlambda_range = [0, 0.5]\nlambda_sampling = "uniform"\n')
    config = TrainConfig.from_toml(path)
    assert (config.seed, config.lambda_range) == (3, (0, 0.5))
    assert config == TrainConfig(seed=3, lambda_range=(0.0, 0.5), lambda_sampling="uniform")


def test_unknown_key_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("learning_rat = 0.01\n")
    with pytest.raises(ParameterError, match="learning_rat") as caught:
        TrainConfig.from_toml(path)
    assert "did you mean 'learning_rate'" in str(caught.value)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(("changes", "parameter"), [
    ({"n_envs": 0}, "n_envs"),
    ({"total_timesteps": 1.5}, "total_timesteps"),
    ({"gamma": 1.5}, "gamma"),
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"test_fraction": 1.0}, "test_fraction"),
    ({"activation": "gelu"}, "activation"),
    ({"lambda_sampling": "normal"}, "lambda_sampling"),
    ({"lambda_range": (0.0, 0.3), "lambda_sampling": "log-uniform"}, "lambda_range"),
    ({"lambda_range": (0.3, 0.1)}, "lambda_range"),
    ({"net_arch": ()}, "net_arch"),
    ({"eval_lambdas": (-1.0,)}, "eval_lambdas"),
    ({"normalize_observations": "yes"}, "normalize_observations"),
    ({"safety_net": 1}, "safety_net"),
    ({"validation_fraction": 1.0}, "validation_fraction"),
    ({"validation_fraction": 0.0}, "validation_fraction"),
    ({"verify_cost": -1.0}, "verify_cost"),
    ({"verify_cost": "free"}, "verify_cost"),
])
def test_invalid_values_name_the_parameter(changes: dict, parameter: str) -> None:
    with pytest.raises(ParameterError, match=repr(parameter)):
        TrainConfig(**changes)


def test_invalid_toml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("seed = = 3\n")
    with pytest.raises(ParameterError, match="valid TOML"):
        TrainConfig.from_toml(path)


# ----------------------------------------------------------------------- training
@pytest.mark.slow
def test_training_beats_a_random_masked_policy(log: AttemptLog) -> None:
    rng = np.random.default_rng(0)
    random_return = _mean_return(
        log, SMALL, lambda _, masks: (rng.random(masks.shape) * masks + masks).argmax(axis=1))
    # A simple good policy: one sample of the strong arm (action 1), then stop.
    large = log.arms.index("large")
    one_large = _mean_return(log, SMALL, lambda obs, _: np.where(
        obs[:, len(log.arms) + large] == 0, 1 + large, 0))
    assert one_large > random_return + 0.2  # the optimum is clearly better than random

    monitor = TrainingMonitor()
    # PPO from scratch (no warm start: its cloned policy would already be near the optimum,
    # and this test is about PPO learning).
    model = train_policy(log, queries=np.arange(log.n_queries), prior=None,
                         config=dataclasses.replace(SMALL, warm_start_steps=0),
                         callback=monitor)
    learned = _mean_return(log, SMALL, lambda obs, masks: policy_decisions(model, obs, masks))
    assert learned > random_return + 0.25, (learned, random_return)
    assert learned > one_large - 0.02, (learned, one_large)

    assert model.num_timesteps == SMALL.total_timesteps
    steps = [step for step, _ in monitor.history]
    assert steps == sorted(steps) and steps[-1] == SMALL.total_timesteps
    names = {name for _, metrics in monitor.history for name in metrics}
    assert {"train/mean_return", "train/mean_correct", "train/mean_cost",
            "train/mean_episode_length", "train/entropy_loss", "train/value_loss"} <= names
    assert all(name.startswith("train/") for name in names)
    first = next(m for _, m in monitor.history if "train/mean_return" in m)
    assert monitor.latest("train/mean_return") > first["train/mean_return"]


@pytest.mark.slow
def test_same_seed_gives_identical_decisions(log: AttemptLog) -> None:
    config = dataclasses.replace(SMALL, total_timesteps=8192)
    threads = torch.get_num_threads()
    queries = np.arange(0, log.n_queries, 2)
    prior = np.full((log.n_queries, len(log.arms)), 0.5)
    prior[:, log.arms.index("large")] = 0.7
    models = [train_policy(log, queries=queries, prior=prior, config=c)
              for c in (config, config, dataclasses.replace(config, seed=1))]
    observations, masks = _states(log, config)
    assert len(observations) >= 2000
    first, again = (policy_decisions(m, observations, masks) for m in models[:2])
    np.testing.assert_array_equal(first, again)
    assert len(np.unique(first)) > 1  # the states are not all decided alike
    for name, tensor in models[0].policy.state_dict().items():
        assert torch.equal(tensor, models[1].policy.state_dict()[name]), name
    stats = [observation_normalization(m).obs_rms for m in models[:2]]
    np.testing.assert_array_equal(stats[0].mean, stats[1].mean)
    assert any(not torch.equal(t, models[2].policy.state_dict()[n])
               for n, t in models[0].policy.state_dict().items())
    assert torch.get_num_threads() == threads  # one thread while training, then restored


class _Interrupt(BaseCallback):
    """Simulates a crash (Ctrl-C) once training passes ``at`` steps."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.at:
            raise KeyboardInterrupt
        return True


class _Watch(BaseCallback):
    """Counts the steps trained and keeps the weights training started from."""

    def __init__(self) -> None:
        super().__init__()
        self.steps = 0
        self.start: dict[str, torch.Tensor] = {}
        self.optimizer: dict[str, torch.Tensor] = {}
        self.count_at_start = 0.0

    def _on_training_start(self) -> None:
        self.start = {k: v.clone() for k, v in self.model.policy.state_dict().items()}
        state = self.model.policy.optimizer.state_dict()["state"]
        self.optimizer = {f"{param}.{name}": value.clone() for param, values in state.items()
                          for name, value in values.items()}
        self.count_at_start = float(observation_normalization(self.model).obs_rms.count)

    def _on_step(self) -> bool:
        self.steps += self.training_env.num_envs
        return True


@pytest.mark.slow
def test_checkpoint_and_resume(log: AttemptLog, tmp_path: Path) -> None:
    rollout = SMALL.n_envs * SMALL.n_steps
    config = dataclasses.replace(SMALL, total_timesteps=6 * rollout, checkpoint_every=rollout)
    folder = tmp_path / "checkpoints"
    queries = np.arange(log.n_queries)
    with pytest.raises(KeyboardInterrupt):
        train_policy(log, queries=queries, prior=None, config=config, checkpoint_dir=folder,
                     callback=_Interrupt(int(2.5 * rollout)))
    # Checkpoint folders at rollout boundaries, with their observation statistics, and
    # no pickle anywhere (no SB3 .zip, no .pkl).
    latest = latest_checkpoint(folder)
    assert latest is not None and latest.name == f"maskable_ppo_{2 * rollout}"
    assert sorted(p.name for p in latest.iterdir()) == [
        "checkpoint.json", "normalization.npz", "optimizer.safetensors", "policy.safetensors"]
    assert (folder / f"maskable_ppo_{rollout}" / "checkpoint.json").is_file()
    assert not [p for p in folder.rglob("*") if p.suffix in (".zip", ".pkl", ".pt")]

    watch = _Watch()
    model = train_policy(log, queries=queries, prior=None, config=config, resume_from=folder,
                         callback=watch, checkpoint_dir=folder)
    assert model.num_timesteps == config.total_timesteps
    assert watch.steps == config.total_timesteps - 2 * rollout  # continued, not restarted
    saved = load_file(latest / "policy.safetensors")
    assert saved.keys() == watch.start.keys()
    for name, tensor in saved.items():
        assert torch.equal(watch.start[name], tensor), name
    moments = load_file(latest / "optimizer.safetensors")  # Adam continues, not restarts
    assert moments and all(torch.equal(watch.optimizer[key], value)
                           for key, value in moments.items())
    with np.load(latest / "normalization.npz") as stats:
        # The saved statistics, updated by the observations of the restarted episodes.
        assert watch.count_at_start == float(stats["count"]) + config.n_envs
    assert latest_checkpoint(folder).name == f"maskable_ppo_{config.total_timesteps}"

    # Resuming a finished run trains nothing more.
    done = _Watch()
    again = train_policy(log, queries=queries, prior=None, config=config, resume_from=folder,
                         callback=done)
    assert again.num_timesteps == config.total_timesteps and done.steps == 0


def _tamper_weights(checkpoint: Path) -> None:
    tensors = load_file(checkpoint / "policy.safetensors")
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 1.0
    save_file(tensors, checkpoint / "policy.safetensors")


def _replace_with_pickle(checkpoint: Path) -> None:
    import pickle

    (checkpoint / "optimizer.safetensors").write_bytes(pickle.dumps({"x": 1}))


def _edit_manifest(checkpoint: Path, **changes: object) -> None:
    manifest = json.loads((checkpoint / "checkpoint.json").read_text())
    manifest.update(changes)
    (checkpoint / "checkpoint.json").write_text(json.dumps(manifest))


TAMPERED = {
    "weights modified": (_tamper_weights, "policy.safetensors was modified"),
    "a pickle in place of a file": (_replace_with_pickle, "optimizer.safetensors was modified"),
    "a file removed": (lambda c: (c / "normalization.npz").unlink(), "normalization.npz missing"),
    "an extra file listed": (lambda c: _edit_manifest(c, files={"evil.zip": "0"}),
                             "lists ['evil.zip']"),
    "manifest removed": (lambda c: (c / "checkpoint.json").unlink(), "SB3 .zip"),
    "another format": (lambda c: _edit_manifest(c, format="sb3"), "ttc-allocator-checkpoint"),
}


@pytest.fixture(scope="module")
def checkpointed(log: AttemptLog, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkpoints of a one-rollout run (copied by each test before tampering)."""
    folder = tmp_path_factory.mktemp("run") / "checkpoints"
    rollout = SMALL.n_envs * SMALL.n_steps
    config = dataclasses.replace(SMALL, total_timesteps=rollout, checkpoint_every=rollout)
    train_policy(log, queries=np.arange(log.n_queries), prior=None, config=config,
                 checkpoint_dir=folder)
    return folder


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_a_tampered_checkpoint_is_refused(log: AttemptLog, checkpointed: Path,
                                          tmp_path: Path, case: str) -> None:
    folder = Path(shutil.copytree(checkpointed, tmp_path / "checkpoints"))
    checkpoint = next(folder.iterdir())
    tamper, message = TAMPERED[case]
    if case == "manifest removed":  # an old run: SB3 .zip checkpoints only
        (folder / "maskable_ppo_2048.zip").write_bytes(b"PK")
    tamper(checkpoint)
    config = dataclasses.replace(SMALL, total_timesteps=2 * SMALL.n_envs * SMALL.n_steps)
    with pytest.raises(ParameterError, match=re.escape(message)):
        train_policy(log, queries=np.arange(log.n_queries), prior=None, config=config,
                     resume_from=folder)


def test_resume_refuses_other_settings(log: AttemptLog, checkpointed: Path) -> None:
    config = dataclasses.replace(SMALL, net_arch=(32,), learning_rate=3e-4)
    with pytest.raises(ParameterError, match=r"net_arch: checkpoint \[64, 64\], now \[32\]"):
        train_policy(log, queries=np.arange(log.n_queries), prior=None, config=config,
                     resume_from=checkpointed)


def test_resume_needs_a_checkpoint(log: AttemptLog, tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="resume_from"):
        train_policy(log, queries=np.arange(log.n_queries), prior=None, config=SMALL,
                     resume_from=tmp_path)


@pytest.mark.parametrize("module", ["training/rl/checkpoints.py", "training/rl/train.py"])
def test_checkpoint_code_never_unpickles(module: str) -> None:
    source = (Path(__file__).resolve().parents[3] / module).read_text()
    for word in ("import pickle", "torch.load", "PPO.load", ".load(checkpoint",
                 "allow_pickle=True", "import cloudpickle", "model.save("):
        assert word not in source, (module, word)


@pytest.mark.parametrize("verify_cost", [None, 0.0, 3.5])
def test_the_training_env_prices_verify_as_configured(log: AttemptLog,
                                                      verify_cost: float | None) -> None:
    from allocator.envs.pools import log_verify_cost

    config = dataclasses.replace(SMALL, verify_cost=verify_cost, n_envs=2)
    env = replay_env(make_env(log, queries=np.arange(log.n_queries), prior=None,
                              config=config))
    expected = log_verify_cost(log) if verify_cost is None else verify_cost
    assert env.settings.verify_cost == expected
