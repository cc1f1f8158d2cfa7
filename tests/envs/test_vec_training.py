"""MaskablePPO learns on the batched env: a smoke test with a known optimum."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from replay_fixtures import make_log
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.utils import get_action_masks

from allocator.envs import BatchedReplayVecEnv
from allocator.logs.table import AttemptLog

LAMBDA = 0.1


def easy_and_hopeless_log(n_queries: int = 40, pool: int = 8) -> tuple[AttemptLog, np.ndarray]:
    """Half the queries always answered right, half always wrong; the prior says which.

    Optimal policy: on an easy query sample once and stop (return 1 - lambda); on a
    hopeless one stop at once (return 0). Mean optimal return: (1 - lambda) / 2.
    """
    rows = []
    for q in range(n_queries):
        easy = q % 2 == 0
        for i in range(pool):
            rows.append({"query_id": f"q{q}", "answer": "right" if easy else f"wrong{i % 3}",
                         "correct": float(easy)})
    log = make_log(rows)
    prior = np.array([[1.0 if int(qid[1:]) % 2 == 0 else 0.0] for qid in log.query_ids])
    return log, prior


def mean_return(venv: BatchedReplayVecEnv, act, episodes: int) -> float:
    """Mean episode return of a policy ``act(observations, masks) -> actions``."""
    observations = venv.reset()
    returns: list[float] = []
    running = np.zeros(venv.num_envs)
    while len(returns) < episodes:
        actions = act(observations, get_action_masks(venv))
        observations, rewards, dones, _ = venv.step(actions)
        running += rewards
        returns.extend(running[dones].tolist())
        running[dones] = 0.0
    return float(np.mean(returns))


@pytest.mark.slow
def test_maskable_ppo_beats_random_and_nears_the_optimum() -> None:
    torch.set_num_threads(1)
    log, prior = easy_and_hopeless_log()
    venv = BatchedReplayVecEnv(log, n_envs=16, lambda_=LAMBDA, prior=prior)
    venv.seed(0)
    model = MaskablePPO("MlpPolicy", venv, n_steps=64, batch_size=256, n_epochs=5,
                        learning_rate=3e-3, gamma=1.0, seed=0, verbose=0)
    model.learn(total_timesteps=6_144)

    evaluation = BatchedReplayVecEnv(log, n_envs=64, lambda_=LAMBDA, prior=prior)
    evaluation.seed(1)
    rng = np.random.default_rng(1)

    def random_policy(_: np.ndarray, masks: np.ndarray) -> np.ndarray:
        return (rng.random(masks.shape) * masks + masks).argmax(axis=1)

    def learned_policy(observations: np.ndarray, masks: np.ndarray) -> np.ndarray:
        actions, _ = model.predict(observations, action_masks=masks, deterministic=True)
        return actions

    optimum = (1 - LAMBDA) / 2
    random_return = mean_return(evaluation, random_policy, 2000)
    learned_return = mean_return(evaluation, learned_policy, 2000)
    assert random_return < optimum - 0.2
    assert learned_return > random_return + 0.2
    assert learned_return > optimum - 0.05, (learned_return, optimum)
