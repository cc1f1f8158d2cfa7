"""Decisions per second of the replay evaluator, on one core, as ratios to a naive loop.

Each baseline at its defaults is replayed on R seeded orders of every query by
:class:`allocator.training.evaluation.replay.ReplayEvaluator` (:func:`run` defines a decision and
the timing) and by a plain Python loop, the baseline of the ratios (:func:`naive_replay`).
Logs: a synthetic log (built here: 1,000 queries, arm 0 with 40 samples per query) and,
when ``../shared/data/public-logs`` is here, date / gpt-3.5-turbo / cot1_40 (369 queries
x 40 samples), both with R = 20. Threads are limited to one (``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` = 1, set before numpy is imported) and
the process is pinned to one CPU where the OS allows it. The README's "Performance"
section keeps the results.

Usage: ``python benchmarks/evaluator_throughput.py [--naive-queries 50]``.
"""

from __future__ import annotations

import os

# One thread per BLAS/OpenMP pool: set before numpy is imported.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

import argparse
import time
from pathlib import Path

import numpy as np

from allocator.actions import STOP, n_actions, sample_action
from allocator.envs.pools import ReplayPools
from allocator.featurizer import QueryState
from allocator.logs.synthetic import SyntheticArm, SyntheticConfig, generate
from allocator.logs.table import AttemptLog
from allocator.policies import Policy, make_policy
from allocator.training.evaluation.replay import ReplayEvaluator

PUBLIC_LOGS = Path(__file__).resolve().parents[2] / "shared" / "data" / "public-logs"
TARGET = 1_000_000  # decisions per second
N_ORDERS = 20
ROUNDS = 3
BASELINES = ("fixed-n", "adaptive-consistency", "esc", "confidence-threshold",
             "difficulty-binned")
ORDER_FREE = ("fixed-n", "difficulty-binned")  # attempts per episode do not depend on order


def pin_one_core() -> str:
    """Pin the process to one CPU where the OS allows it; describe what was done."""
    if not hasattr(os, "sched_setaffinity"):
        return "threads limited to 1 (no CPU pinning on this OS)"
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return f"threads limited to 1, pinned to CPU {cpu}"


def synthetic_log() -> AttemptLog:
    """1,000 queries; arm 0 ('cheap') has 40 samples per query, arm 1 ('strong') 8."""
    config = SyntheticConfig(n_queries=1000, arms=(
        SyntheticArm("cheap", skill=0.45, cost_per_attempt=1.0, pool_size=40),
        SyntheticArm("strong", skill=0.70, cost_per_attempt=8.0, pool_size=8)))
    return generate(config, seed=0)


def date_log() -> AttemptLog | None:
    """date / gpt-3.5-turbo / cot1_40 from ../shared, if present."""
    raw = PUBLIC_LOGS / "mot_cascade" / "raw"
    if not raw.exists():
        return None
    from allocator.converters import convert

    return convert(raw, "mot-cascade", tasks="date", models="gpt-3.5-turbo",
                   configs="cot1_40")[0]


def policies() -> list[Policy]:
    return [make_policy(name) for name in BASELINES]


# ------------------------------------------------------------------ the naive loop
def naive_replay(policy: Policy, pools: ReplayPools, queries: range, prior: np.ndarray,
                 n_orders: int, seed: int = 0) -> tuple[np.ndarray, int, float]:
    """Replay ``policy`` one query and one order at a time with a :class:`QueryState`.

    The baseline of the ratios, measured in the same run: a plain Python loop replaying the
    same policy one query at a time, as a naive evaluator would: for each query and order,
    shuffle each arm's sample rows with numpy, feed the drawn samples to an
    :class:`allocator.featurizer.QueryState` and ask ``policy.act(state.to_batch(), mask)``
    on a batch of one until STOP. It runs on the first queries only (all R orders), and its
    rate is per decision. Its episodes use other orders than the evaluator's, so only the
    order-free policies (``fixed-n``, ``difficulty-binned``) are checked to draw exactly the
    same attempts per episode.

    Returns:
        Attempts drawn per episode, shape (len(queries), n_orders); decisions (attempts +
        one STOP per episode); seconds.
    """
    arms = pools.n_arms
    unit = pools.mean_sample_cost
    # Each query's sample rows per arm (answers as keys, None: no answer; costs in units):
    # the log a naive evaluator would hold, built before the clock starts.
    decks = []
    for q in queries:
        start = int(pools.cand_offsets[q])
        per_arm = []
        for arm in range(arms):
            first = start + int(pools.arm_start[q, arm])
            rows = slice(first, first + int(pools.arm_count[q, arm]))
            per_arm.append((
                [None if a < 0 else int(a) for a in pools.cand_answer[rows]],
                (pools.cand_cost[rows] / unit).tolist()))
        decks.append(per_arm)
    attempts = np.zeros((len(queries), n_orders), dtype=np.int64)
    rng = np.random.default_rng(seed)
    began = time.perf_counter()
    for i, q in enumerate(queries):
        for r in range(n_orders):
            orders = [rng.permutation(len(answers)) for answers, _ in decks[i]]
            drawn = [0] * arms
            state = QueryState(n_arms=arms, prior=prior[q], lam=0.0)
            mask = np.zeros((1, n_actions(arms)), dtype=bool)
            mask[0, STOP] = True
            for arm in range(arms):
                mask[0, sample_action(arm)] = len(orders[arm]) > 0
            while True:
                action = int(policy.act(state.to_batch(), mask)[0])
                if action == STOP:
                    break
                arm = action - sample_action(0)
                answers, costs = decks[i][arm]
                row = int(orders[arm][drawn[arm]])
                state.add_sample(arm, answers[row], cost=costs[row])
                drawn[arm] += 1
                mask[0, action] = drawn[arm] < len(answers)
            attempts[i, r] = state.drawn
    seconds = time.perf_counter() - began
    return attempts, int(attempts.sum()) + attempts.size, seconds


# --------------------------------------------------------------------- the evaluator
def setup_seconds(log: AttemptLog, prior: np.ndarray, best_fixed_n: float) -> float:
    """A fresh evaluator's first ``fixed-n`` run minus the best timed run: its setup."""
    start = time.perf_counter()
    ReplayEvaluator(log, n_orders=N_ORDERS, seed=0, prior=prior).run(make_policy("fixed-n"))
    return time.perf_counter() - start - best_fixed_n


def run(name: str, log: AttemptLog, naive_queries: int) -> None:
    """Time every baseline's replay of ``log`` against the naive loop, and print the table.

    A *decision* is one policy action in one episode: every attempt drawn plus the final
    STOP, i.e. ``results.samples.sum() + results.samples.size`` for a
    :class:`allocator.training.evaluation.replay.ReplayEvaluator` run. Each baseline at its defaults
    (``fixed-n`` with n = 5, ``adaptive-consistency``, ``esc``, ``confidence-threshold``,
    ``difficulty-binned``, the last reading a constant 0.5 prior) is replayed on R seeded
    orders of every query: one warm-up run, then the best of 3 timed runs. The first run
    of an evaluator builds the batched env (one generator seeded per episode), resets and
    snapshots it: that setup is reported on its own line (first run minus the best run), for
    the first evaluator of the process (which also pays first-touch page faults on the
    env's arrays) and for a second one built on the same log.
    """
    print(f"\n{name}: {log!r}, R = {N_ORDERS}")
    prior = np.full((log.n_queries, len(log.arms)), 0.5)
    started = time.perf_counter()
    evaluator = ReplayEvaluator(log, n_orders=N_ORDERS, seed=0, prior=prior)
    first_run = None
    rows = []
    for policy in policies():
        evaluator.run(policy)  # warm-up (the very first run also builds the env)
        if first_run is None:
            first_run = time.perf_counter() - started
        best, results = np.inf, None
        for _ in range(ROUNDS):
            start = time.perf_counter()
            results = evaluator.run(policy)
            best = min(best, time.perf_counter() - start)
        assert results is not None
        decisions = int(results.samples.sum()) + results.samples.size
        subset = range(min(naive_queries, len(evaluator.queries)))
        naive_attempts, naive_decisions, naive_seconds = naive_replay(
            policy, evaluator.pools, subset, prior, N_ORDERS)
        if policy.name in ORDER_FREE and not np.array_equal(
                naive_attempts, results.samples[: len(subset)]):
            raise AssertionError(f"{policy.name}: the naive loop drew other attempts")
        rows.append((policy, results.samples.size, decisions, best,
                     naive_attempts.size, naive_decisions, naive_seconds))
    assert first_run is not None
    best_fixed_n = rows[0][3]
    print(f"setup (pools, env built, {evaluator.n_episodes:,} generators seeded, reset, "
          f"snapshot): {first_run - best_fixed_n:.3f} s for the first evaluator "
          f"(first run {first_run:.3f} s), {setup_seconds(log, prior, best_fixed_n):.3f} s "
          "for a second one in the same process")
    print(f"{'policy':<22}{'episodes':>9}{'decisions':>11}{'seconds':>9}{'decisions/s':>13}"
          f"{'x naive':>9}{'>= 1M/s':>9}   naive loop: episodes, decisions, decisions/s")
    for policy, episodes, decisions, best, n_episodes, n_decisions, n_seconds in rows:
        rate, naive_rate = decisions / best, n_decisions / n_seconds
        print(f"{policy.name:<22}{episodes:>9,}{decisions:>11,}{best:>9.4f}{rate:>13,.0f}"
              f"{rate / naive_rate:>8.0f}x{'yes' if rate >= TARGET else 'no':>9}"
              f"   {n_episodes:,}, {n_decisions:,}, {naive_rate:,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--naive-queries", type=int, default=50,
                        help="queries replayed by the naive loop (all R orders each)")
    args = parser.parse_args()
    print(f"one core: {pin_one_core()}; decisions = attempts drawn + 1 STOP per episode; "
          f"best of {ROUNDS} runs after a warm-up; target {TARGET:,} decisions/s")
    started = time.perf_counter()
    run("synthetic (2 arms, arm 0: 40 samples per query)", synthetic_log(),
        args.naive_queries)
    log = date_log()
    if log is not None:
        run("date / gpt-3.5-turbo / cot1_40 (../shared)", log, args.naive_queries)
    else:
        print("\n(../shared/data/public-logs not found: the date log is skipped)")
    print(f"\ntotal {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
