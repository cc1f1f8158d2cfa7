"""Reinforcement learning of the allocator: MaskablePPO on the batched replay environment.

- :mod:`allocator.training.rl.config`: :class:`~allocator.training.rl.config.TrainConfig`, the
  documented
  hyperparameters (a frozen dataclass, loadable from TOML).
- :mod:`allocator.training.rl.train`: :func:`~allocator.training.rl.train.train_policy` (one policy
  for every
  trade-off: lambda is drawn per episode and observed), checkpoints and resuming.
- :mod:`allocator.training.rl.pipeline`: :func:`~allocator.training.rl.pipeline.run_training`, the
  whole path
  behind ``allocator train`` (split, difficulty predictor, training, export, evaluation,
  report, MLflow).
- :mod:`allocator.training.rl.export`: ``export_bundle``, the trained policy as a pickle-free
  bundle.

Nothing is imported here: torch and stable-baselines3 load only when training runs.
"""
