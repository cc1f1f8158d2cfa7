"""Wall time of an 8-trial ``allocator sweep`` on 1 and on 2 CPUs, and whether both pick
the same best trial.

The same sweep (the same 8 sampled settings: ``search_seed`` fixed; ASHA off, so that
every trial runs to its end whatever the timing and the two runs are comparable) runs on
an embedded local Ray started with ``num_cpus=1``, then with ``num_cpus=2``; each trial
holds one CPU. Printed: the trials' wall time per run and their ratio, and the best
trial's settings and validation score per run (equal: trials are deterministic under
their settings). The log is simulated (``allocator.logs.synthetic``, 200 queries).

The sharded evaluation half of issue 12's benchmark is not here: ``allocator evaluate
--ray`` is not implemented yet.

Usage: ``python benchmarks/sweep_scaling.py [--timesteps 20000]``; a few minutes on 2
cores.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timesteps", type=int, default=20_000)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    with tempfile.TemporaryDirectory(prefix="sweep-scaling-") as folder:
        log = Path(folder) / "log.parquet"
        write_log(generate(SyntheticConfig(n_queries=200), seed=0), log)
        one, two = (run(cpus, log, Path(folder), args.timesteps) for cpus in (1, 2))
    for row in (one, two):
        print(f"{row['cpus']} CPU: 8 trials ({row['completed']} completed) in "
              f"{row['trials_seconds']:.1f} s; best {json.dumps(row['best_config'])} "
              f"validation score {row['best_score']:.6f}")
    print(f"wall-time ratio 1 CPU / 2 CPUs: {one['trials_seconds'] / two['trials_seconds']:.2f}x")
    same = (one["best_config"], one["best_score"]) == (two["best_config"], two["best_score"])
    print(f"same best trial: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
