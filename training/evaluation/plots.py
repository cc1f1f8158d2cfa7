"""Plots of an evaluation: the accuracy/cost Pareto plot and per-query cost distributions.

matplotlib is imported inside the functions, never at module import, and pyplot is not
used at all: figures are plain :class:`matplotlib.figure.Figure` objects rendered by the
Agg canvas, so plotting changes no global backend, opens no window, works headless and
in threads, and leaks no figure into pyplot's registry.

The ``*_figure`` functions build and return the figure (tests and notebooks inspect it);
the ``plot_*`` functions save it (the format follows the file's suffix) and return the path.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from allocator.training.evaluation.pareto import pareto_front
from allocator.training.evaluation.results import EpisodeResults, EvaluationReport, PolicyPoint

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "cost_distribution_figure",
    "pareto_figure",
    "plot_cost_distribution",
    "plot_pareto",
]

#: Resolution of saved figures, dots per inch.
DPI = 150
#: Figure sizes in inches: the Pareto plot alone, and with the cost-distribution panel.
PARETO_SIZE = (15.0, 5.5)
PARETO_WITH_COSTS_SIZE = (20.0, 5.5)
#: The zoomed panel shows accuracies from this far below the target to ``ZOOM_ABOVE``
#: above it.
ZOOM_BELOW, ZOOM_ABOVE = 0.08, 0.04
#: One panel of the per-query cost plot, in inches, and the panels per row.
COST_PANEL = (4.5, 3.6)
COST_COLUMNS = 3
#: Characters per line of a panel's title.
COST_TITLE_CHARS = 58


def _figure(size: tuple[float, float]) -> Figure:
    """A pyplot-free figure with constrained layout (room for a legend outside)."""
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained")


def _title(text: str, simulated: bool) -> str:
    return f"{text} — SIMULATED log" if simulated else text


def _cost_label(cost_unit: str | None) -> str:
    return f"mean cost per query ({cost_unit or 'log units'})"


def _use_log_scale(ax: Axes, values: np.ndarray) -> None:
    """Log x when the positive, finite costs span more than one decade."""
    values = values[np.isfinite(values)]
    if values.size and values.min() > 0 and values.max() / values.min() > 10:
        ax.set_xscale("log")


def _errors(values: np.ndarray, intervals: np.ndarray) -> np.ndarray:
    """Error-bar lengths (2, n) from centres and (n, 2) intervals, never negative."""
    below = np.clip(values - intervals[:, 0], 0, None)
    above = np.clip(intervals[:, 1] - values, 0, None)
    return np.nan_to_num(np.vstack([below, above]))


def _target_last(handles: list, labels: list[str]) -> tuple[list, list[str]]:
    """Legend entries with the target line moved after the policies."""
    order = sorted(range(len(labels)), key=lambda i: labels[i].startswith("target "))
    return [handles[i] for i in order], [labels[i] for i in order]


def _draw_policy(ax: Axes, name: str, points: Sequence[PolicyPoint], color: object) -> None:
    """One policy: its sweep (markers, 95% CIs both ways, a thin line) and its front."""
    points = [p for p in points if math.isfinite(p.mean_cost) and math.isfinite(p.accuracy)]
    if not points:
        return
    oracle = not all(p.deployable for p in points)
    cost = np.array([p.mean_cost for p in points])
    accuracy = np.array([p.accuracy for p in points])
    ax.errorbar(
        cost, accuracy,
        xerr=_errors(cost, np.array([p.mean_cost_ci for p in points], dtype=float)),
        yerr=_errors(accuracy, np.array([p.accuracy_ci for p in points], dtype=float)),
        color=color, marker="s" if oracle else "o", markersize=4, linewidth=1,
        linestyle="--" if oracle else "-", elinewidth=0.7, capsize=2, alpha=0.9,
        label=f"{name} (oracle)" if oracle else name,
    )
    front = pareto_front(points)
    ax.plot([p.mean_cost for p in front], [p.accuracy for p in front], color=color,
            linewidth=4, alpha=0.25, linestyle="--" if oracle else "-",
            solid_capstyle="round", label="_nolegend_")


def _draw_ecdfs(ax: Axes, results: Mapping[str, EpisodeResults], cost_unit: str | None) -> None:
    """One ECDF of per-query mean cost (averaged over orders) per labelled result."""
    everything = []
    for label, result in results.items():
        per_query = np.asarray(result.cost, dtype=float).reshape(result.n_queries, -1).mean(1)
        per_query = per_query[np.isfinite(per_query)]
        if per_query.size == 0:
            continue
        everything.append(per_query)
        ax.ecdf(per_query, label=f"{label} (mean {per_query.mean():,.4g})")
    if everything:
        _use_log_scale(ax, np.concatenate(everything))
    ax.set_xlabel(f"{_cost_label(cost_unit)}, averaged over orders")
    ax.set_ylabel("share of queries at or below")
    ax.grid(alpha=0.3)


def _draw_envelope(ax: Axes, report: EvaluationReport) -> None:
    """The envelope (front of every deployable baseline) as a black staircase-free line."""
    envelope = report.headline.envelope
    if envelope:
        ax.plot([e["cost"] for e in envelope], [e["accuracy"] for e in envelope],
                color="black", linewidth=1.5, alpha=0.8, marker="|", markersize=8,
                label="envelope (front of all baselines)")


def _draw_panel(ax: Axes, report: EvaluationReport, colors: list[str]) -> None:
    """Every policy, the envelope and the target line on one axes."""
    for (name, points), color in zip(report.points.items(), colors, strict=True):
        _draw_policy(ax, name, points, color)
    _draw_envelope(ax, report)
    target = report.headline.target_accuracy
    if target is not None and math.isfinite(target):
        ax.axhline(target, color="black", linestyle=":", linewidth=1,
                   label=f"target {target:.3f} ({report.headline.target_source})")
    _use_log_scale(ax, np.array([p.mean_cost for points in report.points.values()
                                 for p in points], dtype=float))
    ax.set_xlabel(_cost_label(report.log.get("cost_unit")))
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)


def _mark_costs_to_reach(ax: Axes, report: EvaluationReport, colors: list[str]) -> None:
    """Each policy's cost to reach the target, a downward triangle on the target line."""
    target = report.headline.target_accuracy
    for (name, _), color in zip(report.points.items(), colors, strict=True):
        cost = report.headline.cost_to_reach.get(name)
        if cost is not None and math.isfinite(cost) and math.isfinite(target):
            ax.plot([cost], [target], marker="v", markersize=9, color=color,
                    markeredgecolor="black", linestyle="none", label="_nolegend_")
            ax.annotate(f"{cost:,.3g}", (cost, target), textcoords="offset points",
                        xytext=(0, 7), ha="center", fontsize="x-small", color=color)


def pareto_figure(
    report: EvaluationReport,
    *,
    results: Mapping[str, EpisodeResults] | None = None,
) -> Figure:
    """Accuracy against mean cost for every policy of a report, in two panels.

    Left: each policy's sweep drawn as markers joined in sweep order, with 95% intervals
    in both directions, and its Pareto front as a wide translucent line of the same
    colour; oracles are dashed (square markers); the envelope (the front of every
    deployable baseline) in black; a dotted line at the target accuracy. Right: the same,
    zoomed on accuracies near the target (``ZOOM_BELOW`` below to ``ZOOM_ABOVE`` above),
    where policies differ, with each policy's cost to reach the target marked by a
    triangle on the target line. The title says "SIMULATED log" when
    ``report.log["simulated"]`` is true; the cost axis names the log's cost unit
    (``report.log["cost_unit"]``). The x axis is logarithmic when costs span more than a
    decade. The legend sits outside the axes, on the right.

    Args:
        report: the evaluation report.
        results: optionally, episode results to show in a third panel as ECDFs of
            per-query cost (labelled by their keys, e.g.
            ``"adaptive-consistency threshold=0.95"``).

    Returns:
        The figure (not saved).
    """
    from matplotlib.lines import Line2D

    figure = _figure(PARETO_WITH_COSTS_SIZE if results else PARETO_SIZE)
    axes = (figure.subplots(1, 3, width_ratios=[3, 3, 2]) if results
            else figure.subplots(1, 2, width_ratios=[1, 1]))
    ax, zoom = axes[0], axes[1]
    colors = [f"C{i % 10}" for i in range(len(report.points))]
    _draw_panel(ax, report, colors)
    _draw_panel(zoom, report, colors)
    target = report.headline.target_accuracy
    if target is not None and math.isfinite(target):
        zoom.set_ylim(max(0.0, target - ZOOM_BELOW), min(1.0, target + ZOOM_ABOVE))
        _mark_costs_to_reach(zoom, report, colors)
    simulated = bool(report.log.get("simulated"))
    ax.set_title(_title("Accuracy vs cost", simulated), loc="left")
    ax.set_title("wide line: Pareto front; bars: 95% CI", loc="right", fontsize="small")
    zoom.set_title("near the target; ▼ cost to reach it", loc="left")
    handles, labels = _target_last(*ax.get_legend_handles_labels())
    if results:
        cost_unit = report.log.get("cost_unit")
        _draw_ecdfs(axes[2], results, cost_unit)
        axes[2].set_title("Per-query cost", loc="left")
        more_handles, more_labels = axes[2].get_legend_handles_labels()
        handles += [Line2D([], [], linestyle="none"), *more_handles]
        labels += ["per-query cost:", *more_labels]
    figure.legend(handles, labels, loc="outside right upper", fontsize="small")
    return figure


def cost_distribution_figure(
    results: Mapping[str, EpisodeResults],
    *,
    simulated: bool = False,
    cost_unit: str | None = None,
) -> Figure:
    """The distribution of per-query cost: small multiples, one panel per labelled result.

    Each panel draws its result's ECDF in colour over the others' in light grey (no curve
    hides another), and its title names the policy, the setting it was replayed at (the
    policy's description) and its mean. Each query's cost is averaged over the random
    orders first (queries are the units). The panels share their axes.

    Args:
        results: per label (e.g. ``"fixed-n"``: the caller picks one setting per
            policy), the episode results.
        simulated: whether the log is simulated (said in the title).
        cost_unit: the log's cost unit, for the axis label.

    Returns:
        The figure (not saved).
    """
    curves = [(label, _setting(label, result), cost) for label, result in results.items()
              if (cost := _per_query_cost(result)).size]
    columns = max(1, min(COST_COLUMNS, len(curves)))
    rows = max(1, math.ceil(len(curves) / columns))
    figure = _figure((COST_PANEL[0] * columns, COST_PANEL[1] * rows + 0.6))
    axes = figure.subplots(rows, columns, squeeze=False, sharex=True, sharey=True).ravel()
    colors = _colors(len(curves))
    for index, (label, setting, cost) in enumerate(curves):
        ax = axes[index]
        ax.ecdf(cost, color=colors[index], linewidth=2.0, zorder=3,
                label=f"{label} (mean {cost.mean():,.4g})")
        for other, (_, _, other_cost) in enumerate(curves):
            if other != index:
                ax.ecdf(other_cost, color="0.82", linewidth=0.8, zorder=1)
        ax.set_title(f"{setting}\nmean {cost.mean():,.4g}", loc="left", fontsize="small")
        ax.grid(alpha=0.3)
    for ax in axes[len(curves):]:
        figure.delaxes(ax)
    if curves:
        _use_log_scale(axes[0], np.concatenate([cost for _, _, cost in curves]))
    figure.supxlabel(f"{_cost_label(cost_unit)}, averaged over orders", fontsize="small")
    figure.supylabel("share of queries at or below", fontsize="small")
    figure.suptitle(_title("Per-query cost (each panel: one policy at one setting; the "
                           "others in grey)", simulated), x=0.01, ha="left")
    return figure


def _colors(count: int) -> list[str]:
    """Matplotlib's default cycle, repeated as needed."""
    return [f"C{i % 10}" for i in range(count)]


def _per_query_cost(result: EpisodeResults) -> np.ndarray:
    """Each query's cost averaged over the orders, finite values only."""
    per_query = np.asarray(result.cost, dtype=float).reshape(result.n_queries, -1).mean(1)
    return per_query[np.isfinite(per_query)]


def _setting(label: str, result: EpisodeResults) -> str:
    """The label and the replayed policy's description (numbers shortened), wrapped to
    the panel's width: the description alone when it starts with the label."""
    import textwrap

    from allocator.training.evaluation.report import _shorten_numbers

    setting = _shorten_numbers(result.policy or "")
    text = (setting if setting.startswith(label) else
            f"{label}: {setting}" if setting else label)
    return "\n".join(textwrap.wrap(text, width=COST_TITLE_CHARS, break_on_hyphens=False))


def _save(figure: Figure, path: str | os.PathLike[str], dpi: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    return path


def plot_pareto(
    report: EvaluationReport,
    path: str | os.PathLike[str],
    *,
    results: Mapping[str, EpisodeResults] | None = None,
    dpi: int = DPI,
) -> Path:
    """Save :func:`pareto_figure` to ``path`` (PNG for ``.png``) and return the path."""
    return _save(pareto_figure(report, results=results), path, dpi)


def plot_cost_distribution(
    results: Mapping[str, EpisodeResults],
    path: str | os.PathLike[str],
    *,
    simulated: bool = False,
    cost_unit: str | None = None,
    dpi: int = DPI,
) -> Path:
    """Save :func:`cost_distribution_figure` to ``path`` and return the path."""
    figure = cost_distribution_figure(results, simulated=simulated, cost_unit=cost_unit)
    return _save(figure, path, dpi)
