"""The batched VecEnv replays exactly the single env's episodes, and plugs into SB3."""

from __future__ import annotations

import math

import numpy as np
import pytest
from replay_fixtures import random_log
from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

from allocator.envs import BatchedReplayVecEnv, ReplayEnv
from allocator.errors import ParameterError
from allocator.featurizer import featurize
from allocator.logs.table import AttemptLog

TERMINAL_KEYS = ("query", "lambda", "cost", "exhausted", "correct", "n_samples", "n_refines",
                 "n_verified", "invalid_action", "exhaustion_hit", "waves")


def choose(rng: np.random.Generator, masks: np.ndarray, invalid_rate: float) -> np.ndarray:
    """Random valid actions; with probability ``invalid_rate`` any action at all."""
    keys = rng.random(masks.shape)
    valid = keys * masks + masks
    actions = valid.argmax(axis=1)
    wild = rng.random(len(masks)) < invalid_rate
    actions[wild] = rng.integers(0, masks.shape[1], int(wild.sum()))
    return actions


def assert_agree(log: AttemptLog, n_envs: int, seed: int, steps: int, invalid_rate: float,
                 **settings: object) -> int:
    """Step the batched env and n single envs side by side; returns episodes compared."""
    venv = BatchedReplayVecEnv(log, n_envs=n_envs, **settings)
    singles = [ReplayEnv(log, **settings) for _ in range(n_envs)]
    venv.seed(seed)
    observations = venv.reset()
    first = [env.reset(seed=seed + i) for i, env in enumerate(singles)]
    np.testing.assert_allclose(observations, np.stack([o for o, _ in first]), atol=1e-6)
    for (_, info), reset_info in zip(first, venv.reset_infos, strict=True):
        assert info["query"] == reset_info["query"]
        assert info["latency"] == reset_info["latency"] and info["waves"] == reset_info["waves"]
        assert (info["action_mask"] == reset_info["action_mask"]).all()
    rng = np.random.default_rng(seed)
    episodes = 0
    for step in range(steps):
        masks = venv.action_masks()
        assert (masks == np.stack([env.action_masks() for env in singles])).all(), step
        actions = choose(rng, masks, invalid_rate)
        observations, rewards, dones, infos = venv.step(actions)
        assert rewards.dtype == np.float32 and dones.dtype == bool
        for i, env in enumerate(singles):
            obs, reward, terminated, _, info = env.step(actions[i])
            assert terminated == dones[i]
            assert rewards[i] == pytest.approx(reward, abs=1e-6)
            if terminated:
                episodes += 1
                np.testing.assert_allclose(infos[i]["terminal_observation"], obs, atol=1e-6)
                for key in TERMINAL_KEYS:
                    assert infos[i][key] == pytest.approx(info[key], abs=1e-9), key
                if info["latency"] is None:  # an untimed log
                    assert infos[i]["latency"] is None
                else:  # the same additions in the same order: exactly equal
                    assert infos[i]["latency"] == info["latency"]
                assert infos[i]["TimeLimit.truncated"] is False
                obs, _ = env.reset()
            else:
                assert infos[i] == {}
            np.testing.assert_allclose(observations[i], obs, atol=1e-6)
    return episodes


def test_agrees_with_single_env_on_a_rich_log() -> None:
    episodes = assert_agree(
        random_log(seed=11, n_queries=15, max_pool=8), n_envs=12, seed=100, steps=500,
        invalid_rate=0.03, lambda_range=(0.0, 0.3), verify_cost=0.7, max_samples=7,
    )
    assert episodes > 1000


def test_agrees_with_log_uniform_lambda_and_prior() -> None:
    log = random_log(seed=12, n_queries=9, arms=("a", "b", "c"), refine_rounds=3)
    prior = np.random.default_rng(0).random((log.n_queries, 3))
    episodes = assert_agree(log, n_envs=5, seed=7, steps=400, invalid_rate=0.0,
                            lambda_range=(0.01, 2.0), lambda_sampling="log-uniform",
                            prior=prior, queries=[0, 2, 4, 6, 8])
    assert episodes > 300


def test_agrees_on_a_one_arm_log_with_a_fixed_lambda(tiny_log: AttemptLog) -> None:
    assert assert_agree(tiny_log, n_envs=4, seed=0, steps=300, invalid_rate=0.1) > 200


def test_maintained_vote_statistics_match_the_votes(rich_log: AttemptLog) -> None:
    venv = BatchedReplayVecEnv(rich_log, n_envs=32, verify_cost=0.2)
    venv.seed(3)
    observations = venv.reset()
    rng = np.random.default_rng(3)
    for _ in range(60):
        state = venv.state()
        np.testing.assert_allclose(featurize(state), observations, atol=1e-6)
        # sum of v log v over each row's answers, counted without VoteStats.
        vlogv = [sum(v * math.log(v) for v in row if v > 0) for row in state.votes.tolist()]
        np.testing.assert_allclose(vlogv, venv._vlogv, atol=1e-9)
        observations, *_ = venv.step(choose(rng, venv.action_masks(), 0.0))


def test_options_force_queries_at_reset(rich_log: AttemptLog) -> None:
    venv = BatchedReplayVecEnv(rich_log, n_envs=3)
    venv.set_options([{"query": 4}, {}, {"query": 1}])
    venv.seed(0)
    observations = venv.reset()
    assert [info["query"] for info in venv.reset_infos][0::2] == [4, 1]
    single = ReplayEnv(rich_log)
    obs, _ = single.reset(seed=2, options={"query": 1})
    np.testing.assert_allclose(observations[2], obs)
    venv.set_options({"query": 2})
    venv.reset()
    assert {info["query"] for info in venv.reset_infos} == {2}


def test_masks_reach_maskable_ppo_helpers(rich_log: AttemptLog) -> None:
    venv = BatchedReplayVecEnv(rich_log, n_envs=6)
    venv.reset()
    assert isinstance(venv, VecEnv) and is_masking_supported(venv)
    masks = get_action_masks(venv)
    assert masks.shape == (6, 5) and masks.dtype == bool
    assert (masks == venv.action_masks()).all()
    assert (np.stack(venv.env_method("action_masks", indices=[1, 4])) == masks[[1, 4]]).all()
    assert venv.get_attr("n_arms", indices=[0, 2]) == [2, 2]
    assert venv.env_is_wrapped(VecMonitor) == [False] * 6
    monitored = VecMonitor(venv)
    assert is_masking_supported(monitored)
    assert get_action_masks(monitored).shape == (6, 5)


def test_vec_monitor_reports_episode_returns(tiny_log: AttemptLog) -> None:
    venv = VecMonitor(BatchedReplayVecEnv(tiny_log, n_envs=4, lambda_=0.1))
    venv.seed(0)
    venv.reset()
    rng = np.random.default_rng(0)
    finished = 0
    unit = 13 / 8
    for _ in range(50):
        _, _, dones, infos = venv.step(choose(rng, get_action_masks(venv), 0.0))
        for done, info in zip(dones, infos, strict=True):
            if done:
                finished += 1
                expected = info["correct"] - 0.1 * info["cost"] / unit
                assert info["episode"]["r"] == pytest.approx(expected, abs=1e-5)
                assert info["episode"]["l"] == info["n_samples"] + 1
    assert finished > 20


def test_bad_n_envs(tiny_log: AttemptLog) -> None:
    with pytest.raises(ParameterError, match="n_envs"):
        BatchedReplayVecEnv(tiny_log, n_envs=0)
    with pytest.raises(ParameterError, match="BatchedReplayVecEnv"):
        BatchedReplayVecEnv(tiny_log, lambda_=-1.0)


def test_state_streak_and_stop_correctness_follow_the_single_env() -> None:
    log = random_log(11, n_queries=12, max_pool=9)
    venv = BatchedReplayVecEnv(log, n_envs=16)
    singles = [ReplayEnv(log) for _ in range(16)]
    venv.seed(5)
    venv.reset()
    for i, env in enumerate(singles):
        env.reset(seed=5 + i)
    rng = np.random.default_rng(2)
    for _ in range(200):
        state = venv.state()
        for i, env in enumerate(singles):
            single = env.unwrapped._state
            assert state.streak[i] == single.streak
            assert state.vote_stats().top1[i] == max(single.votes.values(), default=0)
        # Stopping now would score what stop_correctness says.
        predicted = venv.stop_correctness()
        stops = np.zeros(16, dtype=np.int64)
        _, _, _, infos = venv.step(stops)
        np.testing.assert_allclose([info["correct"] for info in infos], predicted)
        for env in singles:
            env.step(0)
            env.reset()
        actions = choose(rng, venv.action_masks(), 0.0)
        actions[actions == 0] = 1  # keep drawing where possible
        actions = np.where(venv.action_masks()[np.arange(16), actions], actions, 0)
        venv.step(actions)
        for i, env in enumerate(singles):
            if actions[i] == 0:
                env.reset()
            else:
                env.step(actions[i])


def test_arm_leader_follows_the_single_env_and_its_definition() -> None:
    """StateBatch.arm_leader: the batched env's equals the single env's QueryState's, and
    each arm's most frequent sampled answer count (refinements excluded)."""
    log = random_log(13, n_queries=10, arms=("a", "b", "c"), max_pool=8)
    venv = BatchedReplayVecEnv(log, n_envs=12, verify_cost=0.3)
    singles = [ReplayEnv(log, verify_cost=0.3) for _ in range(12)]
    venv.seed(9)
    venv.reset()
    for i, env in enumerate(singles):
        env.reset(seed=9 + i)
    rng = np.random.default_rng(4)
    checked = 0
    for _ in range(300):
        state = venv.state()
        for i, env in enumerate(singles):
            single = env.unwrapped.query_state
            assert state.arm_leader[i].tolist() == single.arm_leader.tolist()
            assert single.to_batch().arm_leader[0].tolist() == single.arm_leader.tolist()
            expected = [max(votes.values(), default=0) for votes in single.arm_votes]
            assert single.arm_leader.tolist() == expected
            checked += int(single.arm_leader.sum() > 0)
        actions = choose(rng, venv.action_masks(), 0.0)
        venv.step(actions)
        for i, env in enumerate(singles):
            if env.step(actions[i])[2]:
                env.reset()
    assert checked > 500


def test_without_autoreset_finished_rows_freeze_and_snapshots_replay_them() -> None:
    log = random_log(3, n_queries=10, max_pool=6)
    venv = BatchedReplayVecEnv(log, n_envs=8, autoreset=False)
    venv.seed(1)
    venv.reset()
    snapshot = venv.snapshot()
    rng = np.random.default_rng(0)

    def play() -> tuple[list, np.ndarray]:
        outcomes: list = [None] * 8
        while not venv.finished.all():
            actions = np.where(venv.finished, 1, choose(rng, venv.action_masks(), 0.0))
            before = venv.cost_spent()
            _, rewards, dones, infos = venv.step(actions)
            frozen = venv.finished & ~dones
            assert np.all(rewards[frozen] == 0) and np.all(venv.cost_spent()[frozen]
                                                           == before[frozen])
            for i in np.flatnonzero(dones):
                assert outcomes[i] is None  # a row finishes once
                outcomes[i] = (infos[i]["query"], infos[i]["correct"], infos[i]["cost"])
        return outcomes, venv.cost_spent()

    rng = np.random.default_rng(0)
    first, cost = play()
    venv.restore(snapshot)
    rng = np.random.default_rng(0)
    second, cost_again = play()
    assert first == second and np.array_equal(cost, cost_again)
    with pytest.raises(ParameterError):
        BatchedReplayVecEnv(log, n_envs=2).snapshot()


@pytest.fixture(scope="module")
def executor_runs(tmp_path_factory: pytest.TempPathFactory) -> AttemptLog:
    """Runs of all four executors: workspaces, summaries, verdicts, tournament events."""
    from executor_logs import executor_log

    return executor_log(tmp_path_factory.mktemp("runs"))


@pytest.mark.parametrize("answer_rule", ["default", "weighted-vote"])
def test_agrees_on_an_executor_log(executor_runs: AttemptLog, answer_rule: str) -> None:
    pools = BatchedReplayVecEnv(executor_runs, n_envs=1).pools
    assert pools.supports_refine and pools.branches.has_events and pools.notes == ()
    charged = pools.branches.ws_cost[pools.branches.ws_ok]  # summaries and selections
    assert charged.min() >= 0 and (charged > 0).any()  # (a bracket of byes costs 0)
    episodes = assert_agree(executor_runs, n_envs=16, seed=5, steps=600, invalid_rate=0.03,
                            lambda_range=(0.0, 0.3), max_samples=9, answer_rule=answer_rule)
    assert episodes > 1000


def test_agrees_on_the_logged_order(executor_runs: AttemptLog) -> None:
    venv = BatchedReplayVecEnv(executor_runs, n_envs=8, autoreset=False)
    venv.set_options([{"query": q, "order": "logged"} for q in range(8)])
    venv.seed(1)
    observations = venv.reset()
    singles = [ReplayEnv(executor_runs) for _ in range(8)]
    for q, env in enumerate(singles):
        obs, _ = env.reset(seed=1 + q, options={"query": q, "order": "logged"})
        np.testing.assert_allclose(observations[q], obs, atol=1e-6)
        # Each group in log order: the deck is the query's candidates in pool order.
        assert env._deck == list(range(len(env._deck)))
    rng = np.random.default_rng(0)
    for _ in range(30):
        masks = venv.action_masks()
        assert (masks == np.stack([env.action_masks() for env in singles])).all()
        actions = choose(rng, masks, 0.0)
        venv.step(actions)  # finished rows ignore their actions
        for env, action in zip(singles, actions.tolist(), strict=True):
            if not env._done:
                env.step(action)
    assert venv.finished.all()
    np.testing.assert_allclose(venv.cost_spent(), [env._cost for env in singles])
