"""Reinforcement learning of the allocator: MaskablePPO on the batched replay environment.

- :mod:`training.rl.config`: :class:`~training.rl.config.TrainConfig`, the documented
  hyperparameters (a frozen dataclass, loadable from TOML).
- :mod:`training.rl.train`: :func:`~training.rl.train.train_policy` (one policy for every
  trade-off: lambda is drawn per episode and observed), checkpoints and resuming.
- :mod:`training.rl.pipeline`: :func:`~training.rl.pipeline.run_training`, the whole path
  behind ``allocator train`` (split, difficulty predictor, training, export, evaluation,
  report, MLflow).
- :mod:`training.rl.export`: ``export_bundle``, the trained policy as a pickle-free bundle.

Nothing is imported here: torch and stable-baselines3 load only when training runs.
"""
