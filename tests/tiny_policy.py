"""The tests' tiny trained allocator: MaskablePPO for 16k steps (about a second on one
thread) on a simulated log, and a small difficulty predictor that ignores the simulated
truth. Shared by the export, oracle, calibration and MLflow tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sb3_contrib import MaskablePPO

from allocator.envs import BatchedReplayVecEnv
from allocator.logs import AttemptLog
from allocator.logs.synthetic import SyntheticConfig, generate
from allocator.training.difficulty import SIMULATED_TRUTH, DifficultyPredictor

#: The price range the tiny policies train over.
LAMBDA_RANGE = (0.0, 0.2)


def train_tiny_policy(log: AttemptLog, prior: np.ndarray, *,
                      queries: np.ndarray | None = None,
                      steps: int = 16_384) -> tuple[MaskablePPO, BatchedReplayVecEnv]:
    """A seeded MaskablePPO trained on ``log`` (one torch thread, for reproducibility)."""
    torch.set_num_threads(1)
    venv = BatchedReplayVecEnv(log, n_envs=16, lambda_range=LAMBDA_RANGE, prior=prior,
                               **({} if queries is None else {"queries": queries}))
    venv.seed(0)
    model = MaskablePPO("MlpPolicy", venv, n_steps=64, batch_size=256, n_epochs=4,
                        learning_rate=3e-3, gamma=1.0, seed=0, verbose=0)
    model.learn(total_timesteps=steps)
    return model, venv


def fit_tiny_predictor(log: AttemptLog, queries: np.ndarray | None = None
                       ) -> DifficultyPredictor:
    """A 20-tree predictor on the log's non-truth features."""
    return DifficultyPredictor(n_estimators=20, exclude_metadata=SIMULATED_TRUTH,
                               text_features=False, random_state=0).fit(log, queries)


def export_tiny_bundle(folder: Path, n_queries: int = 100) -> tuple[Path, list[str]]:
    """A tiny policy trained on the predictor's priors, exported with that predictor into
    ``folder / "bundle"``; and the log's query texts (for requests that predict a prior)."""
    from allocator.training.rl.export import export_bundle

    log = generate(SyntheticConfig(n_queries=n_queries))
    predictor = fit_tiny_predictor(log)
    model, venv = train_tiny_policy(log, predictor.predict(log))
    bundle = export_bundle(model, folder / "bundle", arms=venv.pools.arms,
                           lambda_range=LAMBDA_RANGE, cost_unit=venv.settings.cost_unit,
                           log_fingerprint=log.fingerprint(),
                           predictor_dir=predictor.save(folder / "predictor"))
    return bundle, [str(text) for text in log.queries.text]
