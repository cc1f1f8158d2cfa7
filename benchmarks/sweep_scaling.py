"""Wall time of an 8-trial ``allocator sweep`` on 1 and on 2 CPUs, and whether both pick
the same best trial; and the replay of a 10-million-attempt log sharded over 2 Ray
workers against one process.

The same sweep (the same 8 sampled settings: ``search_seed`` fixed; ASHA off, so that
every trial runs to its end whatever the timing and the two runs are comparable) runs on
an embedded local Ray started with ``num_cpus=1``, then with ``num_cpus=2``; each trial
holds one CPU. Printed: the trials' wall time per run and their ratio, and the best
trial's settings and validation score per run (equal: trials are deterministic under
their settings). The log is simulated (``allocator.logs.synthetic``, 200 queries).

Sharded replay (``--attempts``, 10 million by default; ``--skip-sweep`` runs only
this half): a simulated log of that many attempts (two arms, 24 attempts per query),
Adaptive-Consistency replayed on one order of every query, in one process
(:class:`~training.evaluation.replay.ReplayEvaluator`) and in Ray tasks on 2 CPUs
(:func:`~training.evaluation.sharded.replay_sharded`, 8 tasks: each holds an eighth
of the episodes). Printed: the log's attempts per
second of each, whether the episodes are equal, and the driver's peak memory traced by
``tracemalloc`` during each replay (numpy's buffers included): what the replay itself
allocates in the driver. The log and its pools, built before (and held by the driver in
both cases), are not counted, nor the copy Ray puts in its object store (shared
memory). Building the log is not timed.

Usage: ``python benchmarks/sweep_scaling.py [--timesteps 20000] [--attempts 10000000]``;
several minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import ray

from allocator.logs import write_log
from allocator.logs.synthetic import SyntheticConfig, generate
from training.sweep import run_sweep
from training.sweep_config import spec_from_dict


def sweep_spec(timesteps: int):
    return spec_from_dict({
        "sweep": {"trials": 8, "reports": 2, "cpus_per_trial": 1, "early_stopping": False,
                  "search_seed": 0},
        "base": {"total_timesteps": timesteps, "n_envs": 64, "n_steps": 16,
                 "batch_size": 256, "n_epochs": 4, "n_orders": 4, "n_bootstrap": 200,
                 "seed": 0},
        "search": {"learning_rate": {"loguniform": [3e-4, 3e-3]},
                   "net_arch": {"choice": [[16], [32, 32]]},
                   "seed": {"choice": [0, 1, 2, 3]}}})


def run(cpus: int, log: Path, folder: Path, timesteps: int) -> dict:
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    try:
        summary = run_sweep(log, folder / f"sweep-{cpus}cpu", sweep_spec(timesteps),
                            progress=False)
    finally:
        ray.shutdown()
    best = summary["best"]
    return {"cpus": cpus, "trials_seconds": summary["seconds"]["trials"],
            "completed": sum(t["status"] == "completed" for t in summary["trials"]),
            "best_config": best["config"], "best_score": best["validation_score"]}


def replay_scaling(attempts: int) -> None:
    """One process against 2 Ray tasks on a log of ``attempts`` attempts."""
    import time
    import tracemalloc

    import numpy as np

    from envs.pools import ReplayPools
    from training.evaluation.baselines import base_policy
    from training.evaluation.replay import ReplayEvaluator
    from training.evaluation.sharded import replay_sharded

    log = generate(SyntheticConfig(n_queries=max(1, attempts // 24)), seed=0)
    pools = ReplayPools.from_log(log)
    queries = np.arange(log.n_queries)
    policy = base_policy("adaptive-consistency", 0, int(pools.group_count[:, 0].max()))
    settings = {"n_orders": 1, "seed": 0}
    rows = {}
    tracemalloc.start()
    for name in ("one process", "8 Ray tasks on 2 CPUs"):
        if name != "one process":
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        tracemalloc.reset_peak()
        started = time.perf_counter()
        if name == "one process":
            results = ReplayEvaluator(pools, queries, **settings).run(policy)
        else:
            results = replay_sharded(pools, queries, policy, n_shards=8, **settings)
        seconds = time.perf_counter() - started
        rows[name] = (seconds, tracemalloc.get_traced_memory()[1], results)
    ray.shutdown()
    print(f"replay of {log.n_attempts:,} attempts ({log.n_queries:,} queries, one order "
          "each, adaptive-consistency):")
    for name, (seconds, peak, _) in rows.items():
        print(f"  {name}: {seconds:.1f} s, {log.n_attempts / seconds:,.0f} attempts/s, "
              f"driver peak {peak / 2**20:,.0f} MiB")
    one, two = rows["one process"], rows["8 Ray tasks on 2 CPUs"]
    same = all(np.array_equal(getattr(one[2], f), getattr(two[2], f))
               for f in ("correct", "cost", "samples", "exhausted"))
    print(f"  speed-up {one[0] / two[0]:.2f}x; the same episodes: {'yes' if same else 'NO'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timesteps", type=int, default=20_000)
    parser.add_argument("--attempts", type=int, default=10_000_000)
    parser.add_argument("--skip-sweep", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if not args.skip_sweep:
        sweep_scaling(args.timesteps)
    replay_scaling(args.attempts)


def sweep_scaling(timesteps: int) -> None:
    """The 8-trial sweep on 1 CPU, then on 2."""
    with tempfile.TemporaryDirectory(prefix="sweep-scaling-") as folder:
        log = Path(folder) / "log.parquet"
        write_log(generate(SyntheticConfig(n_queries=200), seed=0), log)
        one, two = (run(cpus, log, Path(folder), timesteps) for cpus in (1, 2))
    for row in (one, two):
        print(f"{row['cpus']} CPU: 8 trials ({row['completed']} completed) in "
              f"{row['trials_seconds']:.1f} s; best {json.dumps(row['best_config'])} "
              f"validation score {row['best_score']:.6f}")
    print(f"wall-time ratio 1 CPU / 2 CPUs: {one['trials_seconds'] / two['trials_seconds']:.2f}x")
    same = (one["best_config"], one["best_score"]) == (two["best_config"], two["best_score"])
    print(f"same best trial: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
