"""The body of ``allocator evaluate`` (kept out of cli.py so the CLI stays a thin layer).

It imports the training package when it runs: evaluation is not part of the light
runtime.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from allocator.errors import AllocatorError

__all__ = ["run_evaluate"]


def run_evaluate(
    log_path: Path,
    output: Path,
    *,
    policies: list[str] | None,
    arm: str | None,
    orders: int,
    test_fraction: float,
    seed: int,
    reference: str,
    difficulty: bool,
    as_json: bool,
    mlflow: bool,
    bundle: Path | None = None,
    verify_cost: float | None = None,
    target_accuracy: float | None = None,
    cost_unit: str | None = None,
    ray_shards: int | None = None,
    address: str | None = None,
) -> dict:
    """Evaluate, write report.json and the plots, print the tables; return the report.

    ``ray_shards``: replay every policy sharded by query on this many Ray workers (on the
    Ray at ``address``, ``RAY_ADDRESS``, or an embedded one), each reading its own test
    queries from the Parquet shards; the driver reads only the log's outline and its
    training queries (:mod:`allocator.training.evaluation.shard_log`); the report is the same.
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from allocator.console import stderr_console
    from allocator.logs import read_log
    from allocator.training.evaluation.evaluate import (
        DEFAULT_POLICIES,
        EvaluationConfig,
        LogTooSmallError,
        evaluate,
    )
    from allocator.training.evaluation.plots import plot_cost_distribution, plot_pareto
    from allocator.training.evaluation.report import (
        headline_table,
        legend_lines,
        notes_lines,
        report_table,
        write_report,
    )

    console = stderr_console()
    if ray_shards is not None:  # Ray workers read their own shards: see shard_log
        log = _ray_log(log_path, ray_shards, address)
    elif log_path.is_dir():  # a folder of Parquet shards
        from allocator.training.evaluation.shards import read_log_shards

        log = read_log_shards(log_path)
    else:
        log = read_log(log_path)
    config = EvaluationConfig(
        policies=tuple(policies) if policies else DEFAULT_POLICIES, arm=arm,
        test_fraction=test_fraction, n_orders=orders, seed=seed, reference=reference,
        difficulty=difficulty, bundle=None if bundle is None else str(bundle),
        verify_cost=verify_cost, target_accuracy=target_accuracy, cost_unit=cost_unit,
    )
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("evaluating", total=None)
        try:
            report, results = evaluate(
                log, config, progress=lambda message: bar.update(task, description=message))
        except LogTooSmallError as error:  # name the file the user gave
            raise AllocatorError(error.message(str(log_path))) from None
    output.mkdir(parents=True, exist_ok=True)
    path = write_report(report, output)
    plot_pareto(report, output / "pareto.png")
    plot_cost_distribution(results, output / "cost_distribution.png",
                           simulated=log.simulated)
    if mlflow:
        from allocator.training.tracking import log_evaluation

        run_id = log_evaluation(report, output)
        console.print(f"logged to MLflow run {run_id}")
    if as_json:
        json.dump(json.loads(path.read_text()), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        console.print(report_table(report))
        console.print(headline_table(report))
        for line in legend_lines():
            console.print(f"[dim]{line}[/dim]", highlight=False)
    for line in notes_lines(report):  # skipped baselines (and why), oracle fallbacks
        console.print(line)
    difficulty_metrics = report.extra.get("difficulty", {}).get("pooled")
    if difficulty_metrics:
        console.print(
            "difficulty predictor on held-out queries: Spearman "
            f"{difficulty_metrics['spearman']:.3f}, AUROC (never solved) "
            f"{difficulty_metrics['auroc_never_solved']:.3f}, Brier "
            f"{difficulty_metrics['brier']:.3f} (constant: "
            f"{difficulty_metrics['brier_baseline']:.3f})")
    console.print(f"wrote {path}, {output / 'pareto.png'}, {output / 'cost_distribution.png'}")
    return report.to_dict()


def _ray_log(log_path: Path, n_shards: int, address: str | None):
    """The log as Ray workers read it (:class:`allocator.training.evaluation.shard_log.ShardedLog`),
    Ray connected."""
    from allocator.training.evaluation.shards import shard_files

    try:
        from allocator.training.evaluation.shard_log import ShardedLog
        from allocator.training.sweep import connect_ray
    except ImportError as error:
        raise AllocatorError(f"allocator evaluate --ray needs Ray ({error}): pip install "
                             "'ttc-allocator[ray]'") from None
    if any(path.suffix not in (".parquet", ".pq") for path in shard_files(log_path)):
        raise AllocatorError(f"allocator evaluate --ray reads Parquet logs (a file or a "
                             f"folder of shards); {log_path} is not one: convert it with "
                             "`allocator ingest`.")
    connect_ray(address, owner="allocator evaluate --ray")
    return ShardedLog(log_path, n_shards)
