"""Training the allocator: MaskablePPO on the batched replay environment.

:func:`train_policy` trains one policy for every trade-off (lambda is drawn per episode
and observed), reproducibly, with pickle-free checkpoints to resume from; its docstring
says how. :class:`TrainingMonitor` and :class:`CheckpointCallback` are its callbacks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.vec_env import VecNormalize

from allocator.envs.pools import ReplayPools
from allocator.envs.vec_replay_env import BatchedReplayVecEnv
from allocator.envs.vec_replay_env import unwrap_replay_env as replay_env
from allocator.errors import ParameterError
from allocator.logs.table import AttemptLog
from allocator.training.progress import Progress, progress_or_silent
from allocator.training.rl.checkpoints import MANIFEST, load_checkpoint, save_checkpoint
from allocator.training.rl.config import TrainConfig

if TYPE_CHECKING:
    from sb3_contrib import MaskablePPO

__all__ = [
    "CHECKPOINT_PREFIX",
    "CheckpointCallback",
    "MetricsSink",
    "ProgressCallback",
    "TrainingMonitor",
    "latest_checkpoint",
    "make_env",
    "make_model",
    "observation_normalization",
    "policy_decisions",
    "replay_env",
    "train_policy",
]

#: Checkpoint folders are ``<prefix>_<num_timesteps>``.
CHECKPOINT_PREFIX = "maskable_ppo"
_CHECKPOINT = re.compile(rf"^{CHECKPOINT_PREFIX}_(\d+)$")

#: Called with (num_timesteps, {metric name: value}) as training goes.
MetricsSink = Callable[[int, dict[str, float]], None]


# ----------------------------------------------------------------- env & model
def make_env(log: AttemptLog | ReplayPools, *, queries: np.ndarray, prior: np.ndarray | None,
             config: TrainConfig) -> BatchedReplayVecEnv | VecNormalize:
    """The training environment: ``config.n_envs`` replays of the training queries.

    Args:
        log: the graded log (or its pools).
        queries: indices of the training queries (episodes are drawn among them only).
        prior: per-query, per-arm predicted accuracy, shape (log queries, arms); the rows
            of training queries must be out-of-fold predictions. None: 0.5 everywhere.
        config: the training settings (lambda range and sampling, n_envs, observation
            normalisation).

    Returns:
        The batched replay env, wrapped in SB3's ``VecNormalize`` (observations only)
        when ``config.normalize_observations``.
    """
    env = BatchedReplayVecEnv(
        log, n_envs=config.n_envs, lambda_range=tuple(config.lambda_range),
        lambda_sampling=config.lambda_sampling, prior=prior,
        queries=np.asarray(queries, dtype=np.int64), verify_cost=config.verify_cost,
        mu=config.mu, widths=config.widths)
    if not config.normalize_observations:
        return env
    return VecNormalize(env, norm_obs=True, norm_reward=False, gamma=config.gamma)


def make_model(env: BatchedReplayVecEnv | VecNormalize, config: TrainConfig) -> MaskablePPO:
    """A fresh ``MaskablePPO("MlpPolicy")`` on ``env``, seeded, on the CPU."""
    from sb3_contrib import MaskablePPO

    return MaskablePPO("MlpPolicy", env, seed=config.seed, device="cpu", verbose=0,
                       policy_kwargs=config.policy_kwargs(), **config.ppo_kwargs())


def observation_normalization(model: MaskablePPO) -> VecNormalize | None:
    """The model's observation normaliser (its env's ``VecNormalize``), or None."""
    return model.get_vec_normalize_env()


# ------------------------------------------------------------------- callbacks
class TrainingMonitor(BaseCallback):
    """Training curves, namespaced ``train/``, one record per rollout.

    From the episodes that ended during each rollout (read from the terminal infos and
    the rewards): ``train/mean_return`` (correctness - lambda * cost units),
    ``train/mean_correct``, ``train/mean_cost`` (log units), ``train/mean_samples``
    (samples + refinements), ``train/mean_episode_length`` (decisions, STOP included)
    and ``train/episodes``. From SB3's logger, after each update: its own ``train/``
    values (``train/entropy_loss``, ``train/value_loss``, ``train/approx_kl``,
    ``train/explained_variance``, ``train/clip_fraction``...).

    Args:
        sink: called with ``(num_timesteps, metrics)`` for every record (e.g. to log to
            MLflow while training runs).

    Attributes:
        history: every record, as ``(num_timesteps, metrics)`` in order.
    """

    def __init__(self, sink: MetricsSink | None = None) -> None:
        super().__init__()
        self.sink = sink
        self.history: list[tuple[int, dict[str, float]]] = []
        self._episodes: dict[str, list[float]] = {}
        self._running = np.zeros(0)
        self._length = np.zeros(0, dtype=np.int64)

    def latest(self, name: str) -> float | None:
        """The most recent value of a metric, or None."""
        for _, metrics in reversed(self.history):
            if name in metrics:
                return metrics[name]
        return None

    def _emit(self, metrics: dict[str, float]) -> None:
        self.record(int(self.num_timesteps), metrics)

    def record(self, num_timesteps: int, metrics: dict[str, float]) -> None:
        """Keep ``metrics`` at ``num_timesteps`` in :attr:`history` and send them to the
        sink (records made outside PPO's own loop, e.g. the warm start's)."""
        if not metrics:
            return
        self.history.append((num_timesteps, metrics))
        if self.sink is not None:
            self.sink(num_timesteps, metrics)

    def _on_training_start(self) -> None:
        n = self.training_env.num_envs
        self._running, self._length = np.zeros(n), np.zeros(n, dtype=np.int64)

    def _on_rollout_start(self) -> None:
        self._emit_update()
        self._episodes = {"return": [], "correct": [], "cost": [], "samples": [],
                          "length": []}

    def _on_step(self) -> bool:
        rewards = np.asarray(self.locals["rewards"], dtype=np.float64)
        dones = np.asarray(self.locals["dones"], dtype=bool)
        self._running += rewards
        self._length += 1
        ended = np.flatnonzero(dones)
        if ended.size:
            infos = self.locals["infos"]
            episodes = self._episodes
            episodes["return"].extend(self._running[ended].tolist())
            episodes["length"].extend(self._length[ended].tolist())
            for row in ended.tolist():
                info = infos[row]
                episodes["correct"].append(info["correct"])
                episodes["cost"].append(info["cost"])
                episodes["samples"].append(info["n_samples"] + info["n_refines"])
            self._running[ended] = 0.0
            self._length[ended] = 0
        return True

    def _on_rollout_end(self) -> None:
        episodes = self._episodes
        if not episodes.get("return"):
            return
        self._emit({
            "train/mean_return": float(np.mean(episodes["return"])),
            "train/mean_correct": float(np.mean(episodes["correct"])),
            "train/mean_cost": float(np.mean(episodes["cost"])),
            "train/mean_samples": float(np.mean(episodes["samples"])),
            "train/mean_episode_length": float(np.mean(episodes["length"])),
            "train/episodes": float(len(episodes["return"])),
        })

    def _on_training_end(self) -> None:
        self._emit_update()

    def _emit_update(self) -> None:
        """SB3's ``train/`` values of the latest update (cleared by SB3 at each dump)."""
        values = self.model.logger.name_to_value
        self._emit({key: float(value) for key, value in values.items()
                    if key.startswith("train/") and isinstance(value, int | float | np.number)
                    and np.isfinite(value)})
        # Read once: the next dump clears them, but a training end may follow a rollout
        # start with no update in between.
        for key in [k for k in values if k.startswith("train/")]:
            del values[key]


class CheckpointCallback(BaseCallback):
    """Save the model every ``every`` steps, at rollout boundaries, and when training ends.

    A checkpoint is written at the start of a rollout, after the previous update, so its
    weights have learned from exactly the ``num_timesteps`` steps its name says: the
    folder ``<folder>/maskable_ppo_<num_timesteps>/`` (:mod:`allocator.training.rl.checkpoints`,
    no pickle).

    Args:
        folder: where checkpoints go.
        every: steps between checkpoints.
        config: the run's settings (recorded in each checkpoint; a resumed run must
            share them).
    """

    def __init__(self, folder: str | Path, every: int, config: TrainConfig) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.every = int(every)
        self.config = config
        self.saved: list[Path] = []
        self._last = 0

    def _on_training_start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._last = int(self.num_timesteps)

    def _on_rollout_start(self) -> None:
        if self.num_timesteps - self._last >= self.every:
            self._save()

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        if self.num_timesteps > self._last or not self.saved:
            self._save()

    def _save(self) -> None:
        path = self.folder / f"{CHECKPOINT_PREFIX}_{int(self.num_timesteps)}"
        save_checkpoint(self.model, path, self.config, observation_normalization(self.model))
        self.saved.append(path)
        self._last = int(self.num_timesteps)


class ProgressCallback(BaseCallback):
    """Report the steps taken to a :class:`training.progress.Progress` and, after each
    rollout, the latest mean return (from ``monitor``) as the task's description."""

    def __init__(self, progress: Progress, monitor: TrainingMonitor | None = None) -> None:
        super().__init__()
        self.progress, self.monitor = progress, monitor
        self._reported = 0

    def _on_training_start(self) -> None:
        self._reported = int(self.num_timesteps)

    def _on_step(self) -> bool:
        steps = int(self.num_timesteps) - self._reported
        if steps > 0:
            self.progress.advance(steps)
            self._reported += steps
        return True

    def _on_rollout_end(self) -> None:
        value = self.monitor.latest("train/mean_return") if self.monitor else None
        if value is not None:
            self.progress.advance(0, description=f"training (mean return {value:+.3f})")


# ------------------------------------------------------------------- checkpoints
def latest_checkpoint(path: str | Path) -> Path | None:
    """The checkpoint with the most steps in a folder (or the checkpoint itself), or None.

    Only complete checkpoints count (their ``checkpoint.json`` written last).

    Raises:
        ParameterError: the folder holds SB3 ``.zip`` checkpoints only (they run code
            when loaded and are never read).
    """
    path = Path(path)
    if (path / MANIFEST).is_file():
        return path
    if not path.is_dir():
        return None
    found = [(int(match.group(1)), child) for child in path.iterdir()
             if (match := _CHECKPOINT.match(child.name)) and (child / MANIFEST).is_file()]
    if not found and any(child.suffix == ".zip" for child in path.iterdir()):
        raise ParameterError("train_policy", "resume_from", "checkpoints written by this "
                             "version (folders maskable_ppo_<steps>/ without pickle); SB3 "
                             ".zip checkpoints execute code when loaded and are not read: "
                             "start a new run", str(path))
    return max(found)[1] if found else None


def _resume(path: str | Path, env: BatchedReplayVecEnv | VecNormalize,
            config: TrainConfig) -> MaskablePPO:
    """A fresh model with the checkpoint's tensors and step count, reseeded, so that
    resuming is reproducible too.

    The environment restarts its episodes, seeded with ``config.seed + num_timesteps``.
    """
    checkpoint = latest_checkpoint(path)
    if checkpoint is None:
        raise ParameterError("train_policy", "resume_from",
                             f"a checkpoint folder or a folder holding "
                             f"{CHECKPOINT_PREFIX}_<steps>/ checkpoints", str(path))
    model = load_checkpoint(checkpoint, make_model(env, config), config,
                            env if isinstance(env, VecNormalize) else None)
    model.set_random_seed(config.seed + int(model.num_timesteps))
    return model


# ---------------------------------------------------------------------- training
def train_policy(
    log: AttemptLog | ReplayPools,
    *,
    queries: np.ndarray,
    prior: np.ndarray | None,
    config: TrainConfig,
    callback: BaseCallback | Sequence[BaseCallback] | None = None,
    resume_from: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> MaskablePPO:
    """Train a MaskablePPO allocator on the training queries of ``log``.

    One policy serves every trade-off: each episode draws its lambda (the price of a cost
    unit) from ``config.lambda_range`` and the policy observes it, so a user picks the
    trade-off at inference without retraining. The difficulty prior in the observation
    must be *out-of-fold* for the training queries
    (:func:`allocator.training.difficulty.cross_fit_predict`): a policy trained on the
    predictor's in-sample output learns to trust an overconfident predictor.

    Reproducibility: the same config (seed included) and data give the same weights,
    hence the same decisions. Torch runs on one thread while it trains
    (``torch.set_num_threads(1)``; the previous setting is restored afterwards): several
    threads may sum in a different order from run to run, and on the small networks used
    here one thread is also the fastest.

    Checkpoints are folders ``maskable_ppo_<num_timesteps>/`` in ``checkpoint_dir``,
    written at rollout boundaries (after an update, so that a checkpoint's
    ``num_timesteps`` counts exactly the experience its weights have learned from) every
    ``config.checkpoint_every`` steps and when training ends (:class:`CheckpointCallback`).
    They hold no pickle (:mod:`allocator.training.rl.checkpoints`: the policy's and the
    optimizer's tensors as safetensors, the observation statistics as plain arrays, the
    rest as JSON, every file hashed); SB3's ``.zip``, which runs code when loaded, is
    neither written nor read. They exist only to resume an interrupted run; the runtime
    reads the bundle of :mod:`allocator.training.rl.export`.

    Args:
        log: the graded pool log (or its pools).
        queries: indices of the training queries.
        prior: per-query, per-arm predicted accuracy, shape (log queries, arms): the
            cross-fitted (out-of-fold) predictions on the training queries, never the
            predictor's in-sample output. None: 0.5 everywhere.
        config: hyperparameters; training runs until ``config.total_timesteps`` steps
            (rounded up to whole rollouts).
        callback: more SB3 callbacks (e.g. a :class:`TrainingMonitor`).
        resume_from: a checkpoint (or a folder of checkpoints: the latest is used) of an
            interrupted run: training continues from its weights and step count up to
            ``config.total_timesteps`` (nothing is trained if it is already there).
        checkpoint_dir: where to write checkpoints (None: no checkpoints).
        progress: where to report the steps (a task ``"training"`` of
            ``config.total_timesteps`` steps; :mod:`allocator.training.progress`); None: silent.

    Returns:
        The trained model (``model.num_timesteps`` steps in all, resumed ones included).
    """
    import torch

    reporter = progress_or_silent(progress, "train_policy")
    env = make_env(log, queries=queries, prior=prior, config=config)
    model = make_model(env, config) if resume_from is None else _resume(resume_from, env,
                                                                        config)
    remaining = max(0, config.total_timesteps - int(model.num_timesteps))
    callbacks: list[BaseCallback] = list(
        [callback] if isinstance(callback, BaseCallback) else callback or [])
    if checkpoint_dir is not None:
        callbacks.append(CheckpointCallback(checkpoint_dir, config.checkpoint_every, config))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # reproducible sums (see the docstring)
    try:
        if resume_from is None and config.warm_start_budget() > 0:
            metrics = _warm_start(model, queries, prior, config)
            for monitor in (c for c in callbacks if isinstance(c, TrainingMonitor)):
                monitor.record(0, metrics)
        if progress is not None:
            monitor = next((c for c in callbacks if isinstance(c, TrainingMonitor)), None)
            callbacks.append(ProgressCallback(reporter, monitor=monitor))
        reporter.start("training", config.total_timesteps, int(model.num_timesteps))
        try:
            if remaining:
                model.learn(total_timesteps=remaining, callback=CallbackList(callbacks),
                            reset_num_timesteps=resume_from is None)
        finally:
            reporter.finish()
    finally:
        torch.set_num_threads(threads)
    return model


def _warm_start(model: MaskablePPO, queries: np.ndarray, prior: np.ndarray | None,
                config: TrainConfig) -> dict[str, float]:
    """Behaviour-clone the best baseline at every price (:mod:`allocator.training.rl.warm_start`);
    its ``train/warm_start_*`` metrics."""
    from allocator.training.rl.warm_start import clone_expert, fit_expert

    venv = replay_env(model.get_env())
    expert = fit_expert(venv.pools, queries, prior, cost_unit=venv.settings.cost_unit,
                        verify_cost=venv.settings.verify_cost, seed=config.seed)
    metrics = clone_expert(model, expert, steps=config.warm_start_budget(),
                           batch_size=config.batch_size, seed=config.seed)
    return {f"train/warm_start_{name}": value for name, value in
            {**metrics, "settings": float(len(expert.policies))}.items()}


def policy_decisions(model: MaskablePPO, observations: np.ndarray, masks: np.ndarray
                     ) -> np.ndarray:
    """The model's deterministic decisions (masked arg max) on raw featurizer observations.

    The model's observation normaliser, if any, is applied first (without updating its
    statistics), as the exported bundle does.
    """
    observations = np.asarray(observations, dtype=np.float32)
    normalizer = observation_normalization(model)
    if normalizer is not None:
        observations = normalizer.normalize_obs(observations).astype(np.float32)
    actions, _ = model.predict(observations, action_masks=np.asarray(masks, dtype=bool),
                               deterministic=True)
    return np.asarray(actions, dtype=np.int64)
