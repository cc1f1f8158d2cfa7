"""Replay environments over graded logs, and their Gymnasium registration.

Importing this package registers ``ttc/Replay-v0`` (:class:`ReplayEnv`) with Gymnasium;
the runtime package ``allocator`` never imports it, so the runtime registers nothing.

Example:
    >>> import gymnasium as gym
    >>> import envs  # registers ttc/Replay-v0
    >>> env = gym.make("ttc/Replay-v0", log=log, lambda_=0.05)  # doctest: +SKIP
"""

from __future__ import annotations

import gymnasium as gym

from allocator.envs.pools import ReplayPools, ReplaySettings
from allocator.envs.replay_env import ReplayEnv
from allocator.envs.vec_replay_env import BatchedReplayVecEnv

__all__ = ["REPLAY_ENV_ID", "BatchedReplayVecEnv", "ReplayEnv", "ReplayPools", "ReplaySettings"]

#: The Gymnasium id of :class:`ReplayEnv`.
REPLAY_ENV_ID = "ttc/Replay-v0"

if REPLAY_ENV_ID not in gym.registry:
    gym.register(id=REPLAY_ENV_ID, entry_point="allocator.envs.replay_env:ReplayEnv")
