"""The body of ``allocator train`` (kept out of cli.py so the CLI stays a thin layer).

It imports the training package (torch, stable-baselines3, MLflow) only when it runs:
training is not part of the light runtime.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from allocator.errors import ParameterError

__all__ = ["run_train"]


def parse_widths(text: str | None) -> tuple[int, ...] | None:
    """``--widths 1,2,4`` as a tuple (None: not given); checked by the config.

    Raises:
        ParameterError: a part is not a whole number.
    """
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ParameterError("allocator train", "--widths", "comma-separated whole numbers "
                             "in ascending order from 1, e.g. 1,2,4", text) from None


def run_train(
    log_path: Path,
    run_dir: Path,
    *,
    config_path: Path | None,
    seed: int | None,
    timesteps: int | None,
    mlflow: bool,
    resume: bool,
    as_json: bool,
    register: str | None = None,
    alias: str = "candidate",
    calibrate: bool = True,
    target_cost: float | None = None,
    no_safety_net: bool = False,
    verify_cost: float | None = None,
    predictor: bool = True,
    mu: float | None = None,
    widths: str | None = None,
) -> dict:
    """Build the config (TOML file, then the options), run the pipeline, print the results.

    Args:
        log_path: the pool log.
        run_dir: the run's folder.
        config_path: a TOML config (None: the defaults).
        seed: overrides the config's seed.
        timesteps: overrides the config's ``total_timesteps``.
        mlflow: log the run to MLflow.
        resume: continue the run whose checkpoints ``run_dir`` holds.
        as_json: print the run's summary as JSON on stdout instead of the tables.
        register: register the bundle as a new version of this MLflow model.
        alias: the registered version's alias.
        calibrate: calibrate the default lambda on the validation queries.
        target_cost: calibrate to this mean cost per query instead of to
            majority-of-all accuracy.
        no_safety_net: always export the learned policy, trained on every training query
            (overrides the config's ``safety_net``).
        verify_cost: overrides the config's ``verify_cost`` (None: keep it).
        predictor: fit the difficulty predictor; False: a constant prior, for logs too
            small to cross-fit it (see :func:`allocator.training.rl.pipeline.run_training`).
        mu: overrides the config's ``mu``, the price of a second of latency (None: keep).
        widths: overrides the config's ``widths``, as ``"1,2,4"`` (None: keep it).

    Returns:
        The summary of :func:`allocator.training.rl.pipeline.run_training`, as plain JSON types.
    """
    from allocator.cli.progress import RichProgress
    from allocator.console import stderr_console
    from allocator.training.evaluation.report import (
        headline_table,
        json_safe,
        legend_lines,
        report_table,
    )
    from allocator.training.rl.config import TrainConfig
    from allocator.training.rl.pipeline import run_training

    config = TrainConfig.from_toml(config_path) if config_path else TrainConfig()
    overrides = {name: value for name, value in (("seed", seed),
                                                 ("total_timesteps", timesteps),
                                                 ("safety_net", False if no_safety_net
                                                  else None),
                                                 ("verify_cost", verify_cost),
                                                 ("mu", mu),
                                                 ("widths", parse_widths(widths)))
                 if value is not None}
    config = config.replace(**overrides) if overrides else config
    summary = run_training(log_path, run_dir, config, mlflow=mlflow, progress=RichProgress(),
                           resume=resume, register=register, alias=alias,
                           calibrate=calibrate, target_cost=target_cost,
                           predictor=predictor)
    console = stderr_console()
    if as_json:
        json.dump(json_safe(summary), sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
    else:
        console.print(report_table(summary["report"]))
        console.print(headline_table(summary["report"]))
        for line in legend_lines():
            console.print(f"[dim]{line}[/dim]", highlight=False)
    if summary["safety_net"] is not None:
        console.print(f"safety net: {summary['safety_net']['reason']}")
    training = summary["training"]
    calibration = training.get("calibration")
    if calibration:
        for message in calibration["warnings"]:
            console.print(f"[yellow]warning:[/yellow] {message}")
        console.print(f"default lambda {calibration['lambda']:.6g} calibrated on "
                      f"{calibration['validation_queries']} validation queries: "
                      f"{calibration['goal']}")
    else:
        console.print("[yellow]the bundle is not calibrated[/yellow]: its default lambda is "
                      "the middle of its range (run `allocator calibrate BUNDLE LOG -o "
                      "NEW_BUNDLE`)")
    console.print(f"trained {training['num_timesteps']:,} steps in "
                  f"{training['seconds']:.1f} s; bundle: {summary['bundle']}; report and "
                  f"plots in {run_dir}")
    if summary["mlflow_run_id"]:
        console.print(f"logged to MLflow run {summary['mlflow_run_id']}")
    if summary["registered"]:
        console.print(f"registered as {summary['registered']['uri']} (version "
                      f"{summary['registered']['version']})")
    return json_safe(summary)
