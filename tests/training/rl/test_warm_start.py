"""The warm start: the best baseline at every price, measured on training queries only,
and behaviour cloning of it into the PPO network."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from allocator.envs.pools import ReplayPools
from allocator.featurizer import featurize
from allocator.logs.synthetic import SyntheticConfig, generate
from allocator.logs.table import AttemptLog
from allocator.policies import make_policy
from allocator.training.evaluation.evaluate import split_queries
from allocator.training.rl.config import TrainConfig
from allocator.training.rl.train import (
    TrainingMonitor,
    make_env,
    make_model,
    policy_decisions,
    replay_env,
    train_policy,
)
from allocator.training.rl.warm_start import PricedExpert, clone_expert, fit_expert, take_rows


@pytest.fixture(scope="module")
def log() -> AttemptLog:
    return generate(SyntheticConfig(n_queries=120), seed=2)


@pytest.fixture(scope="module")
def split(log: AttemptLog) -> tuple[np.ndarray, np.ndarray]:
    return split_queries(log.n_queries, 0.5, 0)


def test_the_expert_plays_the_best_setting_at_each_price() -> None:
    policies = tuple(make_policy("fixed-n", n=n) for n in (1, 4, 16))
    expert = PricedExpert(policies, accuracy=np.array([0.6, 0.7, 0.72]),
                          cost=np.array([1.0, 4.0, 16.0]))
    lam = np.array([0.0, 0.001, 0.01, 0.02, 0.1, 10.0])
    # By hand: 0.6 - l, 0.7 - 4l, 0.72 - 16l; the switch points are l = 1/30 and
    # l = 0.02 / 12 = 1/600.
    assert expert.choose(lam).tolist() == [2, 2, 1, 1, 0, 0]
    # A tie is broken towards the cheaper setting.
    tied = PricedExpert(policies[:2], accuracy=np.array([0.6, 0.63]), cost=np.array([1.0, 4.0]))
    assert tied.choose(np.array([0.01])).tolist() == [0]


def test_taking_rows_keeps_every_field_and_decision(log: AttemptLog) -> None:
    venv = make_env(log, queries=np.arange(log.n_queries), prior=None,
                    config=TrainConfig(n_envs=16, normalize_observations=False))
    venv.reset()
    for _ in range(3):
        venv.step(np.ones(16, dtype=np.int64))  # SAMPLE(arm 0)
    state, masks = venv.state(), venv.action_masks()
    rows = np.array([1, 5, 6, 14])
    part = take_rows(state, rows)
    for item in dataclasses.fields(state):
        whole = getattr(state, item.name)
        if whole is None:
            assert getattr(part, item.name) is None
        elif item.name != "stats":
            np.testing.assert_array_equal(getattr(part, item.name), np.asarray(whole)[rows])
    policy = make_policy("adaptive-consistency", threshold=0.8)
    np.testing.assert_array_equal(policy.act(part, masks[rows]), policy.act(state, masks)[rows])


def test_the_expert_never_looks_at_the_test_queries(log: AttemptLog, split) -> None:
    train, test = split
    pools = ReplayPools.from_log(log)
    changed = dataclasses.replace(pools, cand_correct=pools.cand_correct.copy())
    for q in test:  # every held-out candidate flipped: right becomes wrong
        start, stop = pools.cand_offsets[q], pools.cand_offsets[q + 1]
        changed.cand_correct[start:stop] = 1.0 - changed.cand_correct[start:stop]
    one = fit_expert(pools, train, None, cost_unit=pools.mean_sample_cost)
    two = fit_expert(changed, train, None, cost_unit=pools.mean_sample_cost)
    assert len(one.policies) > 5 and one.policies == two.policies
    np.testing.assert_array_equal(one.accuracy, two.accuracy)
    np.testing.assert_array_equal(one.cost, two.cost)


def test_cloning_makes_the_network_play_the_expert(log: AttemptLog, split) -> None:
    train, _ = split
    config = TrainConfig(total_timesteps=2048, n_envs=64, n_steps=32, batch_size=512, seed=0)
    model = make_model(make_env(log, queries=train, prior=None, config=config), config)
    venv = replay_env(model.get_env())
    expert = fit_expert(venv.pools, train, None, cost_unit=venv.settings.cost_unit)
    metrics = clone_expert(model, expert, steps=65_536, seed=0)
    assert metrics["accuracy"] > 0.9, metrics
    # Fresh states, from a rollout the network was not fitted on: it still plays the
    # expert's action in most of them (a random network agrees far less often).
    venv.seed(123)
    venv.reset()
    agree, total = 0, 0
    for _ in range(40):
        state, masks = venv.state(), venv.action_masks()
        wanted = expert.act(state, masks)
        played = policy_decisions(model, featurize(state), masks)
        agree, total = agree + int((wanted == played).sum()), total + len(wanted)
        venv.step(wanted)
    assert agree / total > 0.85, agree / total


def test_training_records_the_warm_start(log: AttemptLog, split) -> None:
    train, _ = split
    monitor = TrainingMonitor()
    config = TrainConfig(total_timesteps=2048, n_envs=64, n_steps=32, batch_size=512, seed=0,
                         warm_start_steps=8192)
    train_policy(log, queries=train, prior=None, config=config, callback=monitor)
    first_step, first = monitor.history[0]
    assert first_step == 0 and first["train/warm_start_settings"] > 5
    assert 0.5 < first["train/warm_start_accuracy"] <= 1.0
    assert TrainConfig(total_timesteps=80_000).warm_start_budget() == 10_000
    assert TrainConfig(warm_start_steps=0).warm_start_budget() == 0
