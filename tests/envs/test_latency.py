"""Latency priced in both replay environments: waves, their latency, mu, widths."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from replay_fixtures import random_log
from test_vec_replay_env import assert_agree

from allocator.actions import n_actions
from allocator.envs import BatchedReplayVecEnv, ReplayEnv
from allocator.errors import ParameterError
from allocator.logs.synthetic import SyntheticConfig, generate
from allocator.logs.table import AttemptLog
from tests.timed_logs import with_timing

LOGGED = {"order": "logged"}


def one_query_log(verdicts: bool = True) -> AttemptLog:
    """One query, arm ``a``: three samples (s1 2 s, s2 3 s, s3 1.5 s; costs 1, 2, 3) with
    scores, and one verdict row per sample (cost 0.5 each) spanning seconds 10 to 12."""
    samples = [("s1", "x", 1.0, 1.0, 0.0, 2.0, 0.9), ("s2", "y", 0.0, 2.0, 2.0, 5.0, 0.2),
               ("s3", "x", 1.0, 3.0, 2.0, 3.5, 0.8)]
    rows = [{"attempt_id": i, "kind": "sample", "answer": ans, "correct": ok, "cost": cost,
             "started_at": start, "ended_at": end, "score": score, "target": None}
            for i, ans, ok, cost, start, end, score in samples]
    if verdicts:
        rows += [{"attempt_id": f"v{k}", "kind": "verify", "answer": None, "correct": 0.0,
                  "cost": 0.5, "started_at": start, "ended_at": end, "score": None,
                  "target": f"s{k}"}
                 for k, start, end in ((1, 10.0, 11.0), (2, 10.5, 12.0), (3, 11.0, 11.5))]
    table = pa.table({
        "query_id": pa.array(["q"] * len(rows)),
        "arm": pa.array(["a"] * len(rows)),
        **{name: pa.array([r[name] for r in rows])
           for name in ("attempt_id", "kind", "answer", "correct", "cost", "started_at",
                        "ended_at", "score", "target")},
    })
    log, _ = AttemptLog.from_arrow(table)
    return log


# Actions for one arm and widths (1, 2): STOP 0, SAMPLE 1, REFINE 2, VERIFY 3, SAMPLE×2 4.
SAMPLE, VERIFY, SAMPLE_2 = 1, 3, 4


def test_hand_computed_latency_of_a_fixed_sequence_in_both_envs() -> None:
    log = one_query_log()
    lam, mu = 0.1, 0.05
    # Waves: s1 (2 s, cost 1); s2 and s3 in parallel (max(3, 1.5) = 3 s, cost 5); the
    # verdicts of s1..s3 (span 12 - 10 = 2 s, cost 1.5); STOP (0 s).
    latencies, costs = [2.0, 3.0, 2.0], [1.0, 5.0, 1.5]
    expected = [-lam * c - mu * t for c, t in zip(costs, latencies, strict=True)]
    env = ReplayEnv(log, lambda_=lam, mu=mu, widths=(1, 2), cost_unit=1.0)
    assert env.action_space.n == n_actions(1, (1, 2)) == 5
    _, info = env.reset(seed=0, options=LOGGED)
    assert info["latency"] == 0.0 and info["waves"] == 0
    rewards, infos = [], []
    for action in (SAMPLE, SAMPLE_2, VERIFY, 0):
        _, reward, done, _, info = env.step(action)
        rewards.append(reward)
        infos.append(info)
    assert rewards[:3] == pytest.approx(expected, abs=1e-12)
    assert [i["latency"] for i in infos] == pytest.approx([2.0, 5.0, 7.0, 7.0])
    assert [i["waves"] for i in infos] == [1, 2, 3, 3]
    assert done and infos[-1]["cost"] == pytest.approx(7.5)
    assert rewards[3] == infos[-1]["correct"] == 1.0  # verified best: s1 (0.9), answer x
    venv = BatchedReplayVecEnv(log, n_envs=1, lambda_=lam, mu=mu, widths=(1, 2),
                               cost_unit=1.0)
    venv.seed(0)
    venv.set_options({"order": "logged"})
    venv.reset()
    batched = []
    for action in (SAMPLE, SAMPLE_2, VERIFY, 0):
        _, reward, _, step_infos = venv.step(np.array([action]))
        batched.append(float(reward[0]))
    assert batched == pytest.approx([*expected, 1.0], abs=1e-6)
    assert step_infos[0]["latency"] == pytest.approx(7.0) and step_infos[0]["waves"] == 3


def test_verify_without_logged_rows_takes_no_time() -> None:
    env = ReplayEnv(one_query_log(verdicts=False), mu=1.0, cost_unit=1.0, lambda_=0.0,
                    verify_cost=0.25)
    env.reset(seed=0, options=LOGGED)
    env.step(SAMPLE)
    _, reward, _, _, info = env.step(VERIFY)  # priced by verify_cost, no logged rows
    assert reward == 0.0 and info["latency"] == 2.0 and info["waves"] == 2


def test_wide_samples_are_masked_past_the_pool_and_the_cap() -> None:
    log = one_query_log()
    env = ReplayEnv(log, widths=(1, 2, 3), mu=0.0)
    _, info = env.reset(seed=0)
    assert info["action_mask"].tolist() == [1, 1, 0, 0, 1, 1]  # 3 left: ×2 and ×3
    env.step(SAMPLE_2)
    assert env.action_masks().tolist() == [1, 1, 0, 1, 0, 0]  # 1 left
    capped = ReplayEnv(log, widths=(1, 2, 3), max_samples=2)
    capped.reset(seed=0)
    assert capped.action_masks().tolist() == [1, 1, 0, 0, 1, 0]  # room for 2, not 3
    # A masked wave ends the episode and says the pool could not give it.
    _, _, done, _, info = env.step(5)
    assert done and info["invalid_action"] and info["exhaustion_hit"]


def test_a_wave_draws_what_as_many_single_samples_would() -> None:
    log = random_log(seed=4, n_queries=6, arms=("a",), max_pool=8, refine_rounds=0)
    for seed in range(5):
        wide, single = ReplayEnv(log, widths=(1, 4)), ReplayEnv(log)
        wide.reset(seed=seed)
        single.reset(seed=seed)
        if not wide.action_masks()[4]:
            continue
        observation, reward, *_ = wide.step(4)
        total = 0.0
        for _ in range(4):
            expected, part, *_ = single.step(SAMPLE)
            total += part
        np.testing.assert_array_equal(observation, expected)
        assert reward == pytest.approx(total, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_env_agrees_with_widths_and_mu(seed: int) -> None:
    log = with_timing(random_log(seed=20 + seed, n_queries=10, max_pool=8), seed=seed)
    episodes = assert_agree(log, n_envs=6, seed=seed * 17, steps=300, invalid_rate=0.05,
                            lambda_range=(0.0, 0.2), mu=0.3, widths=(1, 2, 3),
                            max_samples=7, verify_cost=0.4)
    assert episodes > 100


@pytest.fixture(scope="module")
def executor_runs(tmp_path_factory: pytest.TempPathFactory) -> AttemptLog:
    """Runs of all four executors: workspaces, summaries, verdicts, tournament events."""
    from executor_logs import executor_log

    return executor_log(tmp_path_factory.mktemp("runs"))


def test_batched_env_agrees_on_a_timed_executor_log(executor_runs: AttemptLog) -> None:
    log = with_timing(executor_runs, seed=3)
    assert_agree(log, n_envs=4, seed=5, steps=200, invalid_rate=0.02, mu=0.2,
                 widths=(1, 2))


def trajectory(env: ReplayEnv, seed: int, actions: int) -> list:
    """Observations, rewards and infos (less latency) of a seeded random policy that
    takes only the default layout's actions."""
    rng = np.random.default_rng(seed)
    out = []
    env.reset(seed=seed)
    for _ in range(actions):
        mask = env.action_masks()[: env.n_arms + 3]
        observation, reward, done, _, info = env.step(int(rng.choice(np.flatnonzero(mask))))
        info = {key: (value.tolist() if isinstance(value, np.ndarray) else value)
                for key, value in info.items() if key != "latency"}
        info.pop("action_mask")
        out.append((observation.tobytes(), reward, info))
        if done:
            env.reset()
    return out


def test_mu_zero_and_extra_widths_change_nothing_else() -> None:
    log = generate(SyntheticConfig(n_queries=20, with_scores=True, refine_rounds=2), seed=2)
    timed = with_timing(log, seed=1)
    settings = {"lambda_range": (0.0, 0.3), "verify_cost": 0.5, "max_samples": 10}
    base = trajectory(ReplayEnv(log, **settings), 3, 600)
    assert trajectory(ReplayEnv(timed, **settings), 3, 600) == base
    assert trajectory(ReplayEnv(timed, mu=0.0, widths=(1, 2), **settings), 3, 600) == base
    untimed = ReplayEnv(log, **settings)
    _, info = untimed.reset(seed=0)
    assert info["latency"] is None  # unknown, not 0


def test_mu_needs_a_timed_log_and_widths_are_checked(tiny_log: AttemptLog) -> None:
    with pytest.raises(ParameterError, match=r"mu.*started_at and ended_at"):
        ReplayEnv(tiny_log, mu=0.1)
    with pytest.raises(ParameterError, match="mu"):
        BatchedReplayVecEnv(tiny_log, n_envs=2, mu=0.1)
    with pytest.raises(ParameterError, match="mu"):
        ReplayEnv(with_timing(tiny_log), mu=-1.0)
    with pytest.raises(ParameterError, match="widths"):
        ReplayEnv(tiny_log, widths=(2, 4))
    with pytest.raises(ParameterError, match="widths"):
        BatchedReplayVecEnv(tiny_log, n_envs=2, widths=(1, 1))
