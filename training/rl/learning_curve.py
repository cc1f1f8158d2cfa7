"""The learning curve of a training run: what PPO's episodes earned as training went on.

:class:`allocator.training.rl.train.TrainingMonitor` records, once per rollout, the mean return,
correctness, cost and samples of the episodes that ended in it (lambda drawn per episode
from the training range, as the policy trains), and
:class:`allocator.training.rl.selection.ValidationSelector` the policy's validation score (the score
that picks the exported policy). :func:`write_learning_curve` keeps those records as
``learning_curve.json`` and draws them (:func:`plot_learning_curve`) as
``learning_curve.png`` beside the run's report.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["CURVES", "curve_rows", "plot_learning_curve", "write_learning_curve"]

#: The monitor's episode metrics that make the curve, with their axis labels.
CURVES = {
    "train/mean_return": "mean return (correct - lambda x cost units)",
    "train/mean_correct": "mean correctness",
    "train/mean_cost": "mean cost per episode (log units)",
    "train/mean_samples": "mean attempts per episode",
    "validation/score": "validation score (mean over lambdas of accuracy - lambda x cost)",
}


def curve_rows(history: Sequence[tuple[int, dict[str, float]]]) -> list[dict[str, float]]:
    """The records that carry episode metrics, as ``{"timesteps", <metric>...}`` rows.

    Args:
        history: :attr:`TrainingMonitor.history` (``(num_timesteps, metrics)`` in order).

    Returns:
        One row per record with at least one of :data:`CURVES`, finite values only, in
        the order recorded.
    """
    rows = []
    for steps, metrics in history:
        values = {name: float(metrics[name]) for name in CURVES
                  if name in metrics and math.isfinite(float(metrics[name]))}
        if values:
            rows.append({"timesteps": int(steps), **values})
    return rows


def plot_learning_curve(rows: Sequence[dict[str, float]], path: str | os.PathLike[str], *,
                        title: str = "Learning curve", warm_start_steps: int = 0,
                        dpi: int = 120) -> Path:
    """Draw each of :data:`CURVES` against timesteps (one panel each) and save to ``path``.

    Reading it: a curve still rising at the end says "train longer"; one that starts high
    (the warm start's cloned policy) and falls says the PPO phase undid the warm start.
    matplotlib is imported inside this function and pyplot is not used (as in
    :mod:`allocator.training.evaluation.plots`).

    Args:
        rows: :func:`curve_rows`' output.
        path: the image (format from the suffix).
        title: the figure's title.
        warm_start_steps: rollout steps of the behaviour-cloning warm start that came
            before PPO's first timestep (named in the title; 0: none): the curve's first
            points are the cloned policy's.
        dpi: resolution.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12.0, 10.0), layout="constrained")
    figure.suptitle(title + (f" (PPO after a {warm_start_steps:,}-step warm start by "
                                       "behaviour cloning)" if warm_start_steps else ""))
    axes = figure.subplots(3, 2).ravel()
    axes[-1].set_visible(False)
    for ax, (name, label) in zip(axes, CURVES.items(), strict=False):
        points = [(row["timesteps"], row[name]) for row in rows if name in row]
        if points:
            ax.plot(*zip(*points, strict=True), marker=".", markersize=3, linewidth=1)
        ax.set_xlabel("timesteps")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    return path


def write_learning_curve(history: Sequence[tuple[int, dict[str, float]]],
                         run_dir: str | os.PathLike[str], *, simulated: bool = False,
                         warm_start_steps: int = 0) -> list[Path]:
    """Write ``learning_curve.json`` and ``learning_curve.png`` into ``run_dir``.

    Returns:
        The two paths.
    """
    run_dir = Path(run_dir)
    rows = curve_rows(history)
    data: dict[str, Any] = {"simulated": simulated, "warm_start_steps": warm_start_steps,
                            "metrics": CURVES, "rows": rows}
    json_path = run_dir / "learning_curve.json"
    json_path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    title = "Learning curve" + (" — SIMULATED log" if simulated else "")
    return [json_path, plot_learning_curve(rows, run_dir / "learning_curve.png", title=title,
                                           warm_start_steps=warm_start_steps)]
