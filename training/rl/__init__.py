"""Reinforcement learning of the allocator: MaskablePPO on the batched replay environment.

:mod:`~allocator.training.rl.config` holds the documented hyperparameters
(:class:`~allocator.training.rl.config.TrainConfig`, loadable from TOML),
:mod:`~allocator.training.rl.train` the training (one policy for every trade-off) and its
checkpoints, :mod:`~allocator.training.rl.pipeline` the whole path behind
``allocator train``, :mod:`~allocator.training.rl.export` the pickle-free bundle.
Nothing is imported here: torch and stable-baselines3 load only when training runs.
"""
