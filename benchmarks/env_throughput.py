"""Steps per second of the replay environments, as ratios to SB3's DummyVecEnv.

Runs random *valid* actions (masks read as MaskablePPO reads them) on:

- the single :class:`allocator.envs.ReplayEnv`;
- SB3's ``DummyVecEnv`` over ``n`` single envs (the baseline of the ratios);
- :class:`allocator.envs.BatchedReplayVecEnv` with ``n`` and more sub-environments.

The log is synthetic (built here: two arms, 40 samples per query and arm, verifier scores
on every sample); the date/GPT-3.5 log from ``../shared`` is added when present.
Random valid actions make short episodes (2 to 3 steps), so resets weigh as much as
they ever will. The README's "Performance" section keeps the results.

Usage: ``python benchmarks/env_throughput.py [--seconds 2.0]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
from stable_baselines3.common.vec_env import DummyVecEnv

from allocator.envs import BatchedReplayVecEnv, ReplayEnv, ReplayPools
from allocator.logs.table import AttemptLog

SHARED_DATE = (Path(__file__).resolve().parents[2] / "shared" / "data" / "public-logs"
               / "mot_cascade" / "samples.csv.gz")


def synthetic_log(n_queries: int = 2000, pool: int = 40, seed: int = 0) -> AttemptLog:
    """Two arms; each query has a difficulty; answers 0..4, answer 0 correct."""
    rng = np.random.default_rng(seed)
    arms = np.array(["small", "large"])
    n = n_queries * pool * len(arms)
    query = np.repeat(np.arange(n_queries), pool * len(arms))
    arm = np.tile(np.repeat(np.arange(len(arms)), pool), n_queries)
    skill = rng.beta(2, 2, n_queries)[query] * np.where(arm == 1, 1.0, 0.6)
    answer = np.where(rng.random(n) < skill, 0, rng.integers(1, 5, n))
    correct = (answer == 0).astype(np.float32)
    table = pa.table({
        "query_id": pa.array(query.astype(str)),
        "arm": pa.array(arms[arm]),
        "answer": pa.array(answer.astype(str)),
        "correct": pa.array(correct),
        "cost": pa.array(np.where(arm == 1, 5.0, 1.0) * (0.5 + rng.random(n))),
        "score": pa.array(np.clip(correct * 0.4 + rng.random(n) * 0.6, 0, 1).astype(np.float32)),
    })
    return AttemptLog.from_arrow(table, source="synthetic")[0]


def date_log() -> AttemptLog | None:
    """date, gpt-3.5-turbo, cot1_40 from ../shared, if present."""
    if not SHARED_DATE.is_file():
        return None
    import pyarrow.compute as pc
    import pyarrow.csv as pv

    table = pv.read_csv(
        SHARED_DATE, parse_options=pv.ParseOptions(newlines_in_values=True),
        convert_options=pv.ConvertOptions(column_types={
            "answer": pa.string(), "gold": pa.string(), "query_id": pa.string()}),
    )
    keep = pc.and_(pc.and_(pc.equal(table["task"], "date"),
                           pc.equal(table["model"], "gpt-3.5-turbo")),
                   pc.equal(table["config"], "cot1_40"))
    sub = table.filter(keep)
    attempts = pa.table({"query_id": sub["query_id"], "answer": sub["answer"],
                         "correct": pc.cast(sub["is_correct"], pa.float32())})
    return AttemptLog.from_arrow(attempts, source=str(SHARED_DATE))[0]


def random_valid(rng: np.random.Generator, masks: np.ndarray) -> np.ndarray:
    """A uniformly random allowed action per row."""
    keys = rng.random(masks.shape)
    keys[~masks] = -1.0
    return keys.argmax(axis=1)


def timed(step: Callable[[], int], seconds: float) -> float:
    """Steps per second of ``step`` (which returns the env steps it took), over ``seconds``."""
    for _ in range(3):
        step()  # warm up
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        done += step()
    return done / elapsed


def single_rate(pools: ReplayPools, seconds: float) -> float:
    env, rng = ReplayEnv(pools), np.random.default_rng(0)
    env.reset(seed=0)

    def step() -> int:
        action = random_valid(rng, env.action_masks()[None, :])[0]
        _, _, terminated, _, _ = env.step(action)
        if terminated:
            env.reset()
        return 1

    return timed(step, seconds)


def vec_rate(venv: DummyVecEnv | BatchedReplayVecEnv, seconds: float) -> float:
    rng = np.random.default_rng(0)
    venv.seed(0)
    venv.reset()

    def step() -> int:
        masks = np.stack(venv.env_method("action_masks"))  # as sb3-contrib reads them
        venv.step(random_valid(rng, masks))
        return venv.num_envs

    return timed(step, seconds)


def run(name: str, log: AttemptLog, seconds: float) -> None:
    pools = ReplayPools.from_log(log)
    print(f"\n{name}: {log!r}")
    rates = {("ReplayEnv (single)", 1): single_rate(pools, seconds)}
    for n in (64, 1024):
        venv = DummyVecEnv([lambda: ReplayEnv(pools) for _ in range(n)])
        rates[("DummyVecEnv of ReplayEnv", n)] = vec_rate(venv, seconds)
    for n in (64, 1024, 4096):
        rates[("BatchedReplayVecEnv", n)] = vec_rate(BatchedReplayVecEnv(pools, n_envs=n),
                                                     seconds)
    dummy_64 = rates[("DummyVecEnv of ReplayEnv", 64)]
    dummy_1024 = rates[("DummyVecEnv of ReplayEnv", 1024)]
    print(f"{'environment':<28}{'n_envs':>8}{'steps/s':>13}{'x Dummy(64)':>13}"
          f"{'x Dummy(1024)':>15}")
    for (label, n), rate in rates.items():
        print(f"{label:<28}{n:>8}{rate:>13,.0f}{rate / dummy_64:>12.1f}x"
              f"{rate / dummy_1024:>14.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args()
    run("synthetic (2 arms x 40 samples, scores)", synthetic_log(), args.seconds)
    log = date_log()
    if log is not None:
        run("date / gpt-3.5-turbo / cot1_40 (../shared)", log, args.seconds)
    else:
        print("\n(../shared date log not found: skipped)")


if __name__ == "__main__":
    main()
