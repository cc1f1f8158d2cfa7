"""``allocator demo``: the main job end to end on a built-in SIMULATED log.

:func:`run_demo` generates :data:`DEMO_LOG` (simulated, not real LLM runs, and labelled
so everywhere, but shaped like the logs users bring), trains and exports the learned
allocator with ``allocator train``'s pipeline, evaluates it against every baseline and
the oracles, and prints its cost to reach the target beside the best baseline's.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from allocator.errors import ParameterError
from allocator.logs import summarize, write_log
from allocator.logs.synthetic import SIMULATED_SOURCE, SyntheticArm, SyntheticConfig, generate

__all__ = ["DEMO_LAMBDA_RANGE", "DEMO_LOG", "DEMO_TIMESTEPS", "MARKER", "best_baseline",
           "run_demo"]

#: Training steps of the demo's policy.
DEMO_TIMESTEPS = 1_500_000
#: The prices the demo's policy trains on: down to 0.0002, where a large sample (2.7 cost
#: units) is worth 0.05% of a correct answer, so that its front reaches the high end.
DEMO_LAMBDA_RANGE = (0.0002, 0.3)
#: The marker file of a demo output folder (a rerun replaces what the folder holds).
MARKER = "ALLOCATOR_DEMO_OUTPUT.txt"

#: The demo's simulated log: three priced arms (``small``, cost 1 per attempt; ``medium``,
#: 4; ``large``, 16: the price steps of a small, a mid-size and a frontier model), a
#: verifier that scores the attempts of the two cheaper arms only (AUROC about 0.98, as
#: unit tests are for code; the frontier model's answers are not checkable here), and a
#: query feature that predicts difficulty the way a prompt's length does, noisily
#: (metadata ``length``, Spearman about 0.7 with the difficulty; the true difficulty stays
#: hidden from every policy and predictor). What pays on such a log is a per-query mix no
#: single baseline runs: check cheap attempts, move up an arm when they keep failing,
#: start higher when the prompt looks hard.
DEMO_LOG = SyntheticConfig(
    n_queries=400,
    arms=(SyntheticArm("small", skill=0.40, cost_per_attempt=1.0, pool_size=16, scored=True),
          SyntheticArm("medium", skill=0.60, cost_per_attempt=4.0, pool_size=8, scored=True),
          SyntheticArm("large", skill=0.75, cost_per_attempt=16.0, pool_size=4,
                       scored=False)),
    with_scores=True, score_separation=3.0, length_signal=2.0)


def _claim(output: Path) -> None:
    """Make ``output`` the demo's folder: empty it of a previous demo's files, or refuse."""
    if output.exists() and not output.is_dir():
        raise ParameterError("allocator demo", "--output", "a folder (created if missing)",
                             str(output))
    if output.is_dir() and any(output.iterdir()):
        if not (output / MARKER).is_file():
            raise ParameterError("allocator demo", "--output",
                                 f"a new or empty folder, or a previous demo's (with {MARKER}); "
                                 "it holds other files: choose another folder",
                                 str(output))
        for item in output.iterdir():
            if item.is_dir() and not item.is_symlink():
                shutil.rmtree(item)
            else:
                item.unlink()
    output.mkdir(parents=True, exist_ok=True)
    (output / MARKER).write_text("Written by `allocator demo`; running it again replaces "
                                 "this folder's contents.\n", encoding="utf-8")


def best_baseline(report: dict[str, Any]) -> tuple[str | None, float | None]:
    """The deployable baseline that reaches the report's target accuracy at the least
    cost, and that cost (``(None, None)`` when none reaches it)."""
    deployable = {name for name, points in report["policies"].items()
                  if name != "learned" and points and points[0]["deployable"]}
    reach = {name: cost for name, cost in report["headline"]["cost_to_reach"].items()
             if name in deployable and cost is not None}
    if not reach:
        return None, None
    name = min(reach, key=reach.__getitem__)
    return name, reach[name]


#: How close to the target a learned point must be for the demo's second comparison.
NEAR_TARGET = 0.01


def _curve(report: dict[str, Any], names: list[str]) -> list[Any]:
    from allocator.training.rl.safety_net import Candidate

    return [Candidate(name, str(p["value"]), p["accuracy"], p["mean_cost"])
            for name in names for p in report["policies"].get(name, [])]


def _verdict(report: dict[str, Any]) -> str:
    """The learned policy's cost to reach the target beside the best baseline's; where it
    does not reach the target, also its cheapest point within :data:`NEAR_TARGET` of it
    beside what the baselines pay for that accuracy."""
    from allocator.training.rl.safety_net import cost_to_reach, front

    target = report["headline"]["target_accuracy"]
    learned = report["headline"]["cost_to_reach"].get("learned")
    name, cost = best_baseline(report)
    head = f"SIMULATED data, target accuracy {target:.3f} (held-out queries): "
    if learned is not None and cost is not None:
        ratio = cost / learned if learned > 0 else float("inf")
        return head + (f"the learned policy reaches it at mean cost {learned:.2f}, the best "
                       f"baseline ({name}) at {cost:.2f}: {ratio:.2f}x "
                       f"{'cheaper' if ratio >= 1 else 'dearer'}.")
    if learned is not None:
        return head + f"the learned policy reaches it at mean cost {learned:.2f}; no " \
                      "baseline does."
    points = front(_curve(report, ["learned"]))
    best = max((p.accuracy for p in points), default=float("nan"))
    text = head + (f"the learned policy does not reach it (its best: {best:.3f}); the best "
                   f"baseline ({name}) does at mean cost {cost:.2f}.")
    near = [p for p in points if p.accuracy >= target - NEAR_TARGET]
    if near:
        baselines = [n for n, pts in report["policies"].items()
                     if n != "learned" and pts and pts[0]["deployable"]]
        needed = cost_to_reach(_curve(report, baselines), near[0].accuracy)
        text += (f" Within {NEAR_TARGET} of it, the learned policy reaches "
                 f"{near[0].accuracy:.3f} at mean cost {near[0].mean_cost:.2f}; the "
                 f"baselines need {needed:.2f} for that accuracy.")
    return text


def run_demo(output: Path, *, seed: int = 0, timesteps: int = DEMO_TIMESTEPS,
             n_orders: int = 10) -> dict:
    """Run the demo; write the log, the run (bundle, report, plots) under ``output``.

    Steps: generate the log (:data:`DEMO_LOG`) and write it in the log format; print its
    per-arm statistics; train the learned allocator on the training half of its queries
    (``allocator train``'s pipeline, safety net included), export the pickle-free bundle,
    and evaluate it on the other half against every baseline and the oracles by exact
    replay; write the report and plots; print the learned policy's cost to reach the
    target beside the best baseline's.

    The demo owns its output folder: a rerun replaces the previous demo's files there
    (the folder carries a marker file, :data:`MARKER`); a non-empty folder without the
    marker is refused rather than overwritten.

    Args:
        output: the demo's folder (created; a previous demo's files there are replaced,
            any other non-empty folder is refused).
        seed: seed of the simulated log, the split, training, the orders and bootstrap.
        timesteps: training steps.
        n_orders: seeded random orders replayed per held-out query.

    Returns:
        The evaluation report (as written to ``output/run/report.json``).

    Raises:
        ParameterError: ``output`` is a file, or a non-empty folder not written by the
            demo.
    """
    from allocator.cli.progress import RichProgress
    from allocator.console import stderr_console, summary_table
    from allocator.training.evaluation.report import headline_table, report_table
    from allocator.training.rl.config import TrainConfig
    from allocator.training.rl.pipeline import run_training

    console = stderr_console()
    _claim(output)
    log = generate(DEMO_LOG, seed=seed)
    log_path = write_log(log, output / "synthetic.parquet")
    console.print(f"[bold]1. SIMULATED log[/] ({SIMULATED_SOURCE}): {log!r}")
    console.print(summary_table(summarize(log), title="per-arm statistics (SIMULATED)"))
    console.print("[bold]2. Train, export and evaluate[/] (held-out half of the queries)")
    config = TrainConfig(seed=seed, total_timesteps=timesteps, arm="large",
                         n_orders=n_orders, lambda_range=DEMO_LAMBDA_RANGE)
    summary = run_training(log_path, output / "run", config, mlflow=False,
                           progress=RichProgress(console))
    console.print(report_table(summary["report"]))
    console.print(headline_table(summary["report"]))
    report = summary["report"] if isinstance(summary["report"], dict) else (
        summary["report"].to_dict())
    if summary["safety_net"] is not None:
        console.print(f"safety net: {summary['safety_net']['reason']}")
    console.print(_verdict(report))
    console.print(f"bundle: {summary['bundle']}; report and plots in {output / 'run'}")
    return report
