"""Wall time of an 8-trial ``allocator sweep`` on 1 and on 2 CPUs, and whether both pick
the same best trial; and the replay of a 10-million-attempt log sharded over 2 Ray
workers against one process.

:func:`sweep_scaling` and :func:`replay_scaling` (``--skip-sweep`` runs only the latter)
say what each half runs and prints; the README's "Sweeps and sharded evaluation on Ray"
section keeps the results.

Usage: ``python benchmarks/sweep_scaling.py [--timesteps 20000] [--attempts 10000000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import ray

from allocator.logs import write_log
from allocator.logs.synthetic import SyntheticConfig, generate
from allocator.training.sweep import run_sweep
from allocator.training.sweep_config import spec_from_dict


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
        summary = run_sweep(log, folder / f"sweep-{cpus}cpu", sweep_spec(timesteps))
    finally:
        ray.shutdown()
    best = summary["best"]
    return {"cpus": cpus, "trials_seconds": summary["seconds"]["trials"],
            "completed": sum(t["status"] == "completed" for t in summary["trials"]),
            "best_config": best["config"], "best_score": best["validation_score"]}


def _driver(variant: str, folder: str, queue: Any) -> None:
    """One variant of the sharded-evaluation benchmark, in a fresh process: its seconds,
    peak resident memory (MiB) and episodes, put on ``queue``."""
    import resource
    import time

    from allocator.training.evaluation.baselines import base_policy
    from allocator.training.evaluation.evaluate import split_queries

    started = time.perf_counter()
    if variant == "one process":
        from allocator.envs.pools import ReplayPools
        from allocator.training.evaluation.replay import ReplayEvaluator
        from allocator.training.evaluation.shards import read_log_shards

        log = read_log_shards(folder)
        _, test = split_queries(log.n_queries, 0.5, 0)
        pools = ReplayPools.from_log(log)
        policy = base_policy("adaptive-consistency", 0, int(pools.group_count[:, 0].max()))
        results = ReplayEvaluator(pools, test, n_orders=1, seed=0).run(policy)
    else:
        from allocator.training.evaluation.shard_log import ShardedLog

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        view = ShardedLog(folder, 8)
        train, test = split_queries(view.n_queries, 0.5, 0)
        pools, _ = view.training(train)  # what evaluate reads for the baselines' settings
        policy = base_policy("adaptive-consistency", 0, view.sample_depth(0))
        results = view.test_replays(test, n_orders=1, seed=0, prior=None,
                                    verify_cost=view.verify_cost()).run(policy)
        ray.shutdown()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    queue.put((seconds, peak, {f: getattr(results, f)
                               for f in ("correct", "cost", "samples", "exhausted")}))


def replay_scaling(attempts: int) -> None:
    """One process against ``allocator evaluate --ray 8``'s workers on a sharded log of
    ``attempts`` attempts.

    Sharded evaluation (``--attempts``, 10 million by default; ``--skip-sweep`` runs only
    this half): a simulated log of that many attempts (two arms, 24 attempts per query)
    written as 8 Parquet shards; Adaptive-Consistency replayed on one order of every test
    query (half the queries), as ``allocator evaluate`` replays each policy: in one process
    (the whole log read with :func:`~allocator.training.evaluation.shards.read_log_shards`, its
    pools, :class:`~allocator.training.evaluation.replay.ReplayEvaluator`) and as ``allocator
    evaluate
    --ray 8`` does it on 2 CPUs (:class:`~allocator.training.evaluation.shard_log.ShardedLog`: the
    driver reads the outline and the training queries' rows, 8 Ray workers read their own
    test queries from the shards and replay them). Each runs in a fresh process; printed:
    the time from reading the log to the episodes, the log's attempts per second, whether
    the episodes are equal, and the **driver's peak resident memory** (``ru_maxrss`` of that
    process: the log, its pools and the replay; Ray's workers are other processes). Writing
    the log is not timed.
    """
    import multiprocessing

    import numpy as np
    import pyarrow.parquet as pq

    from allocator.logs.parquet import log_to_arrow

    log = generate(SyntheticConfig(n_queries=max(2, attempts // 24)), seed=0)
    n_attempts, n_queries = log.n_attempts, log.n_queries
    rows = {}
    with tempfile.TemporaryDirectory(prefix="sharded-eval-") as folder:
        table = log_to_arrow(log)
        del log
        for k, queries in enumerate(np.array_split(np.arange(table.num_rows), 8)):
            pq.write_table(table.slice(int(queries[0]), len(queries)),
                           Path(folder) / f"part-{k:03d}.parquet")
        del table
        context = multiprocessing.get_context("spawn")
        for name in ("one process", "8 Ray workers on 2 CPUs"):
            queue = context.Queue()
            process = context.Process(target=_driver, args=(name, folder, queue))
            process.start()
            rows[name] = queue.get()
            process.join()
    print(f"evaluation replay of {n_attempts:,} attempts in 8 Parquet shards "
          f"({n_queries:,} queries, half of them test queries, one order each, "
          "adaptive-consistency), from reading the log to the episodes:")
    for name, (seconds, peak, _) in rows.items():
        print(f"  {name}: {seconds:.1f} s, {n_attempts / seconds:,.0f} attempts/s, "
              f"driver peak resident memory {peak:,.0f} MiB")
    one, two = rows["one process"], rows["8 Ray workers on 2 CPUs"]
    same = all(np.array_equal(one[2][f], two[2][f]) for f in one[2])
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
    """The 8-trial sweep on 1 CPU, then on 2.

    The same sweep (the same 8 sampled settings: ``search_seed`` fixed; ASHA off, so that
    every trial runs to its end whatever the timing and the two runs are comparable) runs on
    an embedded local Ray started with ``num_cpus=1``, then with ``num_cpus=2``; each trial
    holds one CPU. Printed: the trials' wall time per run and their ratio, and the best
    trial's settings and validation score per run (equal: trials are deterministic under
    their settings). The log is simulated (``allocator.logs.synthetic``, 200 queries).
    """
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
