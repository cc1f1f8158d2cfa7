"""Replay on real logs agrees with the closed forms of fixed-N policies.

A fixed-N policy (SAMPLE k times from one arm, then STOP) replayed in the environment
must reproduce, within sampling error:

- pass@k, the unbiased estimator ``1 - C(n-c, k) / C(n, k)`` averaged over queries: the
  rate at which any drawn sample is correct. The env measures it with an oracle verifier
  (score = correctness): SAMPLE k times, VERIFY, STOP returns a correct answer exactly
  when one was drawn;
- majority@k, computed here without the env: exactly for k = 1 and k = n, otherwise
  from many random orders per query voted with :mod:`allocator.logs.votes`.

A replay engine that disagrees with these is wrong (GUIDE, section 2).
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from replay_fixtures import mot_log

from allocator.envs import BatchedReplayVecEnv
from allocator.logs.schema import KIND_SAMPLE
from allocator.logs.table import AttemptLog
from allocator.logs.votes import majority_correctness

pytestmark = pytest.mark.public_logs

GPT35 = [("gpt-3.5-turbo", "cot1_40")]
CASCADE = [("llama-2-13b", "cot1"), ("gpt-3.5-turbo", "cot1"), ("gpt-4", "cot1")]


# ---------------------------------------------------------------- closed forms
def arm_pools(log: AttemptLog, arm: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(answer codes, correctness) of one arm's samples, per query that has some."""
    pools = []
    for q in range(log.n_queries):
        rows = np.arange(log.offsets[q], log.offsets[q + 1])
        rows = rows[(log.arm[rows] == arm) & (log.kind[rows] == KIND_SAMPLE)]
        if len(rows):
            pools.append((log.answer[rows], log.correct[rows].astype(np.float64)))
    return pools


def pass_at_k(pools: list[tuple[np.ndarray, np.ndarray]], k: int) -> float:
    """Mean over queries of the unbiased pass@k estimator."""
    values = []
    for _, correct in pools:
        n, c = len(correct), int(correct.sum())
        values.append(1.0 - math.comb(n - c, k) / math.comb(n, k))
    return float(np.mean(values))


def majority_at_k(pools: list[tuple[np.ndarray, np.ndarray]], k: int, orders: int,
                  rng: np.random.Generator) -> tuple[float, float]:
    """Mean over queries of majority@k, and its standard error (0 where exact)."""
    if k == 1:
        return float(np.mean([correct.mean() for _, correct in pools])), 0.0
    means, variances = [], []
    for answer, correct in pools:
        if k == len(answer):  # every order draws the whole pool
            group = np.zeros(len(answer), dtype=np.int64)
            means.append(majority_correctness(group, answer, correct, 1)[0])
            variances.append(0.0)
            continue
        draws = rng.permuted(np.tile(np.arange(len(answer)), (orders, 1)), axis=1)[:, :k]
        group = np.repeat(np.arange(orders), k)
        outcome = majority_correctness(group, answer[draws].ravel(), correct[draws].ravel(),
                                       orders)
        means.append(outcome.mean())
        variances.append(outcome.var(ddof=1) / orders)
    return float(np.mean(means)), float(np.sqrt(np.sum(variances)) / len(pools))


# ---------------------------------------------------------------- replay
def replay_fixed_n(log: AttemptLog, arm: int, k: int, *, verify: bool, n_envs: int,
                   rounds: int, seed: int) -> dict[str, np.ndarray]:
    """Terminal infos of fixed-N episodes, all sub-environments in lockstep."""
    venv = BatchedReplayVecEnv(log, n_envs=n_envs)
    venv.seed(seed)
    venv.reset()
    plan = [1 + arm] * k + ([len(log.arms) + 2] if verify else []) + [0]
    collected: dict[str, list] = {"correct": [], "exhausted": [], "exhaustion_hit": [],
                                  "n_samples": []}
    for _ in range(rounds):
        for step, action in enumerate(plan):
            _, _, dones, infos = venv.step(np.full(n_envs, action))
            assert dones.all() == (step == len(plan) - 1)
        for key, values in collected.items():
            values.extend(info[key] for info in infos)
    return {key: np.asarray(values) for key, values in collected.items()}


def assert_within(measured: np.ndarray, reference: float, reference_se: float,
                  label: str) -> None:
    se = math.sqrt(measured.var(ddof=1) / len(measured) + reference_se**2)
    gap = abs(measured.mean() - reference)
    assert gap <= 4 * se + 1e-12, f"{label}: replay {measured.mean():.4f} vs {reference:.4f}"


@pytest.fixture(scope="module")
def gpt35_logs(mot_date: pa.Table) -> tuple[AttemptLog, AttemptLog]:
    """date / gpt-3.5-turbo / cot1_40: plain, and with oracle verifier scores."""
    return mot_log(mot_date, GPT35), mot_log(mot_date, GPT35, oracle_scores=True)


@pytest.mark.parametrize("k", [1, 3, 5, 10, 40])
def test_fixed_n_matches_pass_at_k_and_majority_at_k(
    gpt35_logs: tuple[AttemptLog, AttemptLog], k: int
) -> None:
    plain, oracle = gpt35_logs
    pools = arm_pools(plain, 0)
    assert len(pools) == 369 and {len(a) for a, _ in pools} == {40}
    majority = replay_fixed_n(plain, 0, k, verify=False, n_envs=4096, rounds=4, seed=k)
    reference, reference_se = majority_at_k(pools, k, orders=400,
                                            rng=np.random.default_rng(k))
    assert_within(majority["correct"], reference, reference_se, f"majority@{k}")
    any_correct = replay_fixed_n(oracle, 0, k, verify=True, n_envs=4096, rounds=4, seed=k)
    assert set(np.unique(any_correct["correct"])) <= {0.0, 1.0}
    assert_within(any_correct["correct"], pass_at_k(pools, k), 0.0, f"pass@{k}")
    # Exhaustion is counted exactly when the whole pool was drawn, and never hit.
    assert (majority["exhausted"] == (k == 40)).all()
    assert not majority["exhaustion_hit"].any() and (majority["n_samples"] == k).all()


def test_whole_pool_is_exactly_majority_of_all_and_any_correct(
    gpt35_logs: tuple[AttemptLog, AttemptLog],
) -> None:
    """k = n on every query once (forced by options): the replay is exact per query."""
    plain, oracle = gpt35_logs
    pools = arm_pools(plain, 0)
    exact_majority = [majority_correctness(np.zeros(40, dtype=np.int64), a, c, 1)[0]
                      for a, c in pools]
    exact_any = [float(c.max()) for _, c in pools]
    for log, verify, expected in ((plain, False, exact_majority), (oracle, True, exact_any)):
        venv = BatchedReplayVecEnv(log, n_envs=log.n_queries)
        venv.set_options([{"query": q} for q in range(log.n_queries)])
        venv.reset()
        for _ in range(40):
            venv.step(np.ones(log.n_queries, dtype=np.int64))
        if verify:
            venv.step(np.full(log.n_queries, 3))
        _, _, dones, infos = venv.step(np.zeros(log.n_queries, dtype=np.int64))
        assert dones.all()
        np.testing.assert_allclose([info["correct"] for info in infos], expected, atol=1e-12)
    # The shared README's numbers for this subset.
    assert np.mean(exact_majority) == pytest.approx(0.768, abs=0.0015)
    assert np.mean(exact_any) == pytest.approx(0.883, abs=0.0015)


def test_cascade_arms_match_closed_forms_and_exhaust(mot_date: pa.Table) -> None:
    """A three-arm log: each arm's fixed-N replay matches its own closed forms."""
    plain = mot_log(mot_date, CASCADE)
    oracle = mot_log(mot_date, CASCADE, oracle_scores=True)
    for arm, name in enumerate(plain.arms):
        pools = arm_pools(plain, arm)
        assert len(pools) == plain.n_queries  # every query has samples of every arm
        for k in (2, 3):
            majority = replay_fixed_n(plain, arm, k, verify=False, n_envs=2048, rounds=4,
                                      seed=arm)
            reference, reference_se = majority_at_k(pools, k, 300, np.random.default_rng(0))
            assert_within(majority["correct"], reference, reference_se, f"{name} maj@{k}")
            any_correct = replay_fixed_n(oracle, arm, k, verify=True, n_envs=2048, rounds=4,
                                         seed=arm)
            assert_within(any_correct["correct"], pass_at_k(pools, k), 0.0, f"{name} pass@{k}")
            pool_sizes = np.array([len(a) for a, _ in pools])
            if (pool_sizes == k).all():
                assert (majority["exhausted"] == 1).all()
    # GPT-4 holds 3 samples per query: a fourth is refused and counted as exhaustion.
    gpt4 = plain.arms.index("gpt-4/cot1")
    venv = BatchedReplayVecEnv(plain, n_envs=64)
    venv.reset()
    for _ in range(3):
        venv.step(np.full(64, 1 + gpt4))
    assert not venv.action_masks()[:, 1 + gpt4].any()
    _, rewards, dones, infos = venv.step(np.full(64, 1 + gpt4))
    assert dones.all() and all(info["exhaustion_hit"] and info["invalid_action"]
                               for info in infos)
    np.testing.assert_allclose(rewards, [info["correct"] for info in infos], atol=1e-6)
