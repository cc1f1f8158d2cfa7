"""``allocator demo``: the main job end to end on built-in simulated logs.

Steps: generate a simulated log (labelled as such) and write it in the log format; print
its per-arm statistics; train the learned allocator on half of its queries, export the
pickle-free bundle, and evaluate it on the other half against every baseline and the
oracles by exact replay; write the report and plots. About two minutes on 2 cores.
"""

from __future__ import annotations

from pathlib import Path

from allocator.logs import summarize, write_log
from allocator.logs.synthetic import SIMULATED_SOURCE, SyntheticConfig, generate

__all__ = ["DEMO_TIMESTEPS", "run_demo"]

#: Training steps of the demo's policy (enough to beat the baselines' cheap end).
DEMO_TIMESTEPS = 1_000_000


def run_demo(output: Path, *, seed: int = 0, timesteps: int = DEMO_TIMESTEPS,
             n_orders: int = 10) -> dict:
    """Run the demo; write the log, the run (bundle, report, plots) under ``output``.

    Args:
        output: folder for the files (created if needed).
        seed: seed of the simulated log, the split, training, the orders and bootstrap.
        timesteps: training steps.
        n_orders: seeded random orders replayed per held-out query.

    Returns:
        The evaluation report (as written to ``output/run/report.json``).
    """
    from allocator.console import stderr_console, summary_table
    from training.evaluation.report import headline_table, report_table
    from training.rl.config import TrainConfig
    from training.rl.pipeline import run_training

    console = stderr_console()
    output.mkdir(parents=True, exist_ok=True)
    log = generate(SyntheticConfig(), seed=seed)
    log_path = write_log(log, output / "synthetic.parquet")
    console.print(f"[bold]1. Simulated log[/] ({SIMULATED_SOURCE}): {log!r}")
    console.print(summary_table(summarize(log), title="per-arm statistics"))
    console.print("[bold]2. Train, export and evaluate[/] (held-out half of the queries)")
    config = TrainConfig(seed=seed, total_timesteps=timesteps, arm="large",
                         n_orders=n_orders)
    summary = run_training(log_path, output / "run", config, mlflow=False, progress=True)
    console.print(report_table(summary["report"]))
    console.print(headline_table(summary["report"]))
    console.print(f"bundle: {summary['bundle']}; report and plots in {output / 'run'}")
    return summary["report"] if isinstance(summary["report"], dict) else (
        summary["report"].to_dict())
