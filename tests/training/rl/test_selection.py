"""Model selection on the validation queries (:mod:`allocator.training.rl.selection`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback

from allocator.envs.pools import ReplayPools
from allocator.errors import ParameterError
from allocator.learned import LearnedPolicy
from allocator.logs.synthetic import SyntheticConfig, generate
from allocator.logs.table import AttemptLog
from allocator.training.evaluation.replay import ReplayEvaluator
from allocator.training.rl.config import TrainConfig
from allocator.training.rl.export import export_bundle
from allocator.training.rl.selection import (
    ORDER_SEED_OFFSET,
    ValidationSelector,
    validation_score,
)
from allocator.training.rl.train import TrainingMonitor, replay_env, train_policy

SMALL = TrainConfig(total_timesteps=8192, n_envs=64, n_steps=32, batch_size=512,
                    n_epochs=10, seed=0, warm_start_steps=2048)
LAMBDAS = (0.001, 0.05)


@pytest.fixture(scope="module")
def log() -> AttemptLog:
    return generate(SyntheticConfig(n_queries=80), seed=3)


def split(log: AttemptLog) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    queries = np.arange(log.n_queries)
    prior = np.full((log.n_queries, len(log.arms)), 0.5)
    return queries[:60], queries[60:], prior


class _Spoil(BaseCallback):
    """Makes PPO's last iterate bad: after ``at`` steps, the actor always prefers STOP."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.num_timesteps >= self.at:
            with torch.no_grad():
                self.model.policy.action_net.weight.zero_()
                self.model.policy.action_net.bias.zero_()
                self.model.policy.action_net.bias[0] = 50.0  # STOP: answer nothing


def test_the_score_is_the_exported_policys_validation_objective(
        log: AttemptLog, tmp_path: Path) -> None:
    """Scored in training (torch) = replayed from the exported bundle (numpy), by hand."""
    fit, validation, prior = split(log)
    model = train_policy(log, queries=fit, prior=prior, config=SMALL)
    env = replay_env(model.get_env())
    score = validation_score(model, env.pools, validation, prior, LAMBDAS,
                             cost_unit=env.settings.cost_unit,
                             verify_cost=env.settings.verify_cost, n_orders=4, seed=0)
    bundle = export_bundle(model, tmp_path / "bundle", arms=list(log.arms),
                           lambda_range=SMALL.lambda_range, cost_unit=env.settings.cost_unit,
                           log_fingerprint="x", run_id=None)
    policy, pools = LearnedPolicy.from_bundle(bundle), ReplayPools.from_log(log)
    rewards = []
    for lam in LAMBDAS:
        results = ReplayEvaluator(pools, validation, n_orders=4, seed=ORDER_SEED_OFFSET,
                                  lambda_=lam, prior=prior).run(policy)
        rewards.append(results.correct.mean()
                       - lam * results.cost.mean() / env.settings.cost_unit)
    assert score == pytest.approx(np.mean(rewards), abs=1e-12)


def test_the_best_scoring_policy_is_put_back(log: AttemptLog) -> None:
    """PPO's last iterates are spoiled (never answer): the selector keeps the best
    earlier policy, whose weights and score come back, and records every score."""
    fit, validation, prior = split(log)
    config = dataclasses.replace(SMALL, total_timesteps=8192)
    monitor = TrainingMonitor()
    selector = ValidationSelector(validation, prior, LAMBDAS, every=2048, n_orders=4,
                                  seed=0, sink=monitor.record)
    model = train_policy(log, queries=fit, prior=prior, config=config,
                         callback=[monitor, _Spoil(at=6144), selector])
    steps = [t for t, _ in selector.scores]
    assert steps[0] == 0 and steps[-1] == model.num_timesteps == 8192
    assert steps == sorted(steps) and len(steps) >= 4
    best_step, best = max(selector.scores, key=lambda item: item[1])
    assert selector.best_timesteps == best_step and best_step < 6144
    assert selector.scores[-1][1] < best  # the spoiled policy scores worse...
    env = replay_env(model.get_env())
    again = validation_score(model, env.pools, validation, prior, LAMBDAS,
                             cost_unit=env.settings.cost_unit,
                             verify_cost=env.settings.verify_cost, n_orders=4, seed=0)
    assert again == pytest.approx(best, abs=1e-12)  # ...and the best one is back
    recorded = [(t, m["validation/score"]) for t, m in monitor.history
                if "validation/score" in m]
    assert recorded == selector.scores
    assert selector.summary()["best_score"] == best


@pytest.mark.parametrize(("kwargs", "parameter"), [
    ({"every": 0}, "every"), ({"every": True}, "every"), ({"queries": np.arange(0)}, "queries"),
])
def test_bad_settings_are_refused_by_name(kwargs: dict, parameter: str) -> None:
    arguments = {"queries": np.arange(3), "prior": None, "lambdas": LAMBDAS, "every": 10,
                 "n_orders": 2, "seed": 0, **kwargs}
    queries, prior, lambdas = (arguments.pop(k) for k in ("queries", "prior", "lambdas"))
    with pytest.raises(ParameterError, match=parameter):
        ValidationSelector(queries, prior, lambdas, **arguments)


def test_select_every_defaults_to_an_eighth_and_zero_turns_it_off() -> None:
    assert TrainConfig(total_timesteps=8000).selection_interval() == 1000
    assert TrainConfig(select_every=0).selection_interval() == 0
    with pytest.raises(ParameterError, match="select_every"):
        TrainConfig(select_every=-1)
