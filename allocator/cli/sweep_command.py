"""The body of ``allocator sweep`` (kept out of cli.py so the CLI stays a thin layer).

It imports Ray, the training package and MLflow only when it runs: none of them is part
of the light runtime.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from allocator.errors import AllocatorError

__all__ = ["run_sweep_command"]


def _import_sweep():
    """:func:`allocator.training.sweep.run_sweep`, or a clear error where Ray is missing."""
    try:
        from allocator.training.sweep import run_sweep
    except ImportError as error:
        if "ray" not in str(error):
            raise
        raise AllocatorError(f"allocator sweep needs Ray ({error}): pip install "
                             "'ttc-allocator[ray]'") from None
    return run_sweep


def run_sweep_command(log_path: Path, sweep_dir: Path, *, config_path: Path,
                      resume: bool, address: str | None, register: str | None, alias: str,
                      as_json: bool) -> dict:
    """Read the sweep's TOML, run (or resume) it, print its trials and best trial.

    Args:
        log_path: the pool log.
        sweep_dir: the sweep's folder.
        config_path: the sweep's TOML (:mod:`allocator.training.sweep_config`).
        resume: continue the interrupted sweep in ``sweep_dir``.
        address: a Ray cluster's address (None: ``RAY_ADDRESS`` or an embedded Ray).
        register: register the best bundle as a new version of this MLflow model.
        alias: the registered version's alias.
        as_json: print the summary as JSON on stdout instead of the table.

    Returns:
        The sweep's summary (:func:`allocator.training.sweep.run_sweep`) as plain JSON types.
    """
    from allocator.training.sweep_config import read_sweep_spec

    spec = read_sweep_spec(config_path)
    run_sweep = _import_sweep()
    from allocator.cli.progress import RichProgress
    from allocator.console import stderr_console
    from allocator.training.evaluation.report import headline_table, json_safe

    summary = run_sweep(log_path, sweep_dir, spec, resume=resume, address=address,
                        register=register, alias=alias,
                        progress=None if as_json else RichProgress())
    console = stderr_console()
    if as_json:
        json.dump(json_safe(summary), sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
    else:
        console.print(_trials_table(summary["trials"]))
        if summary["report"] is not None:
            console.print(headline_table(summary["report"]))
    if summary["best"] is not None:
        console.print(f"best trial {summary['best']['trial_id']}: bundle {summary['bundle']}"
                      f"; report and plots in {sweep_dir}")
        if summary["safety_net"] is not None:  # which bundle was exported, and why
            console.print(f"safety net: exported the {summary['exported']} policy "
                          f"({summary['safety_net']['reason']})"
                          + (f"; the learned bundle is in {summary['learned_bundle']}"
                             if summary["exported"] != "learned" else ""))
        registered = summary["mlflow"]["registered"]
        if registered:
            console.print(f"registered as {registered['uri']} (version "
                          f"{registered['version']})")
    if summary["status"] == "interrupted":
        console.print(f"interrupted: continue with allocator sweep {log_path} -o {sweep_dir} "
                      f"--config {config_path} --resume")
    return json_safe(summary)


def _trials_table(trials: list[dict]):
    from rich.table import Table

    table = Table(title="trials", title_justify="left")
    for column in ("trial", "status", "validation score", "steps", "settings"):
        table.add_column(column)
    for trial in trials:
        score = trial["validation_score"]
        status = trial["status"] if trial["error"] is None else f"error: {trial['error']}"
        table.add_row(trial["trial_id"], status, "-" if score is None else f"{score:.4f}",
                      f"{trial['num_timesteps'] or 0:,}",
                      ", ".join(f"{k}={v}" for k, v in trial["config"].items()))
    return table
