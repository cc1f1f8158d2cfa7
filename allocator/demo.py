"""``allocator demo``: the main job end to end on built-in simulated logs.

Steps: generate a simulated log (labelled as such), write it in the log format, print its
per-arm statistics, then evaluate every baseline allocation policy and the oracles on
held-out queries by exact replay, and write the report and plots.
"""

from __future__ import annotations

from pathlib import Path

from allocator.logs import summarize, write_log
from allocator.logs.synthetic import SIMULATED_SOURCE, SyntheticConfig, generate

__all__ = ["run_demo"]


def run_demo(output: Path, *, seed: int = 0, n_orders: int = 10) -> dict:
    """Run the demo; write ``synthetic.parquet``, ``report.json`` and the plots.

    Args:
        output: folder for the files (created if needed).
        seed: seed of the simulated log, the split, the orders and the bootstrap.
        n_orders: seeded random orders replayed per held-out query.

    Returns:
        The evaluation report written to ``report.json``.
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from allocator.console import stderr_console, summary_table
    from training.evaluation.evaluate import EvaluationConfig, evaluate
    from training.evaluation.plots import plot_cost_distribution, plot_pareto
    from training.evaluation.report import headline_table, report_table, write_report

    console = stderr_console()
    output.mkdir(parents=True, exist_ok=True)
    log = generate(SyntheticConfig(), seed=seed)
    write_log(log, output / "synthetic.parquet")
    console.print(f"[bold]1. Simulated log[/] ({SIMULATED_SOURCE}): {log!r}")
    console.print(summary_table(summarize(log), title="per-arm statistics"))
    config = EvaluationConfig(seed=seed, n_orders=n_orders, arm="large")
    with Progress(SpinnerColumn(), TextColumn("[bold]2. Evaluating[/] {task.description}"),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("", total=None)
        report, results = evaluate(
            log, config, progress=lambda message: bar.update(task, description=message))
    console.print(report_table(report))
    console.print(headline_table(report))
    path = write_report(report, output)
    plot_pareto(report, output / "pareto.png")
    plot_cost_distribution(results, output / "cost_distribution.png", simulated=True)
    console.print(f"wrote {output / 'synthetic.parquet'}, {path}, {output / 'pareto.png'} "
                  f"and {output / 'cost_distribution.png'}")
    return report.to_dict()
