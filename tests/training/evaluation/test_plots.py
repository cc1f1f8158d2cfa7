"""The Pareto and cost-distribution plots: files written, sizes, what the figures show."""

from __future__ import annotations

import math
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from allocator.training.evaluation.pareto import headline
from allocator.training.evaluation.plots import (
    COST_COLUMNS,
    COST_PANEL,
    DPI,
    PARETO_SIZE,
    PARETO_WITH_COSTS_SIZE,
    cost_distribution_figure,
    pareto_figure,
    plot_cost_distribution,
    plot_pareto,
)
from allocator.training.evaluation.results import EpisodeResults, EvaluationReport, PolicyPoint

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_point(policy: str, value: float, cost: float, accuracy: float, *,
               deployable: bool = True) -> PolicyPoint:
    return PolicyPoint(
        policy=policy, knob="n", value=value, description=policy, deployable=deployable,
        accuracy=accuracy, accuracy_ci=(accuracy - 0.03, accuracy + 0.02),
        mean_cost=cost, mean_cost_ci=(cost * 0.9, cost * 1.2), mean_samples=value,
        exhaustion_rate=0.0,
    )


def make_report(*, simulated: bool = True, cost_scale: float = 100.0) -> EvaluationReport:
    def sweep(policy: str, base: float, slope: float, deployable: bool = True):
        return [make_point(policy, n, cost_scale * n, base + slope * math.log2(n),
                           deployable=deployable) for n in (1, 2, 4, 8, 16, 32)]

    points = {
        "fixed-n": sweep("fixed-n", 0.5, 0.05),
        "adaptive-consistency": sweep("adaptive-consistency", 0.55, 0.05),
        "query-oracle": sweep("query-oracle", 0.7, 0.04, deployable=False),
    }
    return EvaluationReport(
        log={"source": "toy", "fingerprint": "f", "simulated": simulated, "cost_unit": "tokens"},
        config={}, points=points, reference="fixed-n(n=8)",
        headline=headline(points, target_accuracy=0.75),
    )


def make_results(label: str, per_query_cost: np.ndarray, orders: int = 3) -> EpisodeResults:
    q = per_query_cost.size
    cost = np.repeat(per_query_cost[:, None], orders, axis=1)
    return EpisodeResults(policy=label, correct=np.ones((q, orders)), cost=cost,
                          samples=cost / 100, exhausted=np.zeros((q, orders), dtype=bool))


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    return struct.unpack(">II", data[16:24])


def legend_texts(figure) -> list[str]:
    return [text.get_text() for legend in figure.legends for text in legend.get_texts()]


def test_plot_pareto_writes_a_png_of_the_expected_size(tmp_path):
    path = plot_pareto(make_report(), tmp_path / "plots" / "pareto.png")
    assert path == tmp_path / "plots" / "pareto.png"
    assert path.stat().st_size > 20_000
    assert png_size(path) == (round(PARETO_SIZE[0] * DPI), round(PARETO_SIZE[1] * DPI))


def test_pareto_figure_shows_every_policy_the_target_and_marks_oracles():
    report = make_report()
    figure = pareto_figure(report)
    ax, _ = figure.axes
    labels = legend_texts(figure)
    assert "fixed-n" in labels and "adaptive-consistency" in labels
    assert "query-oracle (oracle)" in labels
    assert any(label.startswith("target 0.750") for label in labels)
    assert any(list(line.get_ydata()) == [0.75, 0.75] for line in ax.get_lines())
    # Error bars in both directions for every policy.
    assert len(ax.containers) == 3
    assert all(c.has_xerr and c.has_yerr for c in ax.containers)
    # The oracle's sweep line is dashed, the others solid.
    styles = {c.get_label(): c.lines[0].get_linestyle() for c in ax.containers}
    assert styles["query-oracle (oracle)"] == "--"
    assert styles["fixed-n"] == "-"
    assert "SIMULATED" in ax.get_title(loc="left")
    assert "tokens" in ax.get_xlabel()
    assert labels[-1].startswith("target ")


def test_pareto_figure_draws_the_front_not_the_dominated_points():
    report = make_report()
    report.points["bumpy"] = [make_point("bumpy", 1, 100, 0.6), make_point("bumpy", 2, 200, 0.5),
                              make_point("bumpy", 3, 300, 0.7)]
    ax, _ = pareto_figure(report).axes
    fronts = [line for line in ax.get_lines() if line.get_linewidth() == 4]
    assert len(fronts) == 4
    assert list(fronts[-1].get_xdata()) == [100, 300]


def test_pareto_figure_uses_log_x_only_for_costs_spanning_a_decade():
    wide, _ = pareto_figure(make_report()).axes       # costs 100..3200
    assert wide.get_xscale() == "log"
    narrow_report = make_report(simulated=False)
    for name, points in narrow_report.points.items():
        narrow_report.points[name] = points[:3]        # costs 100..400
    narrow, _ = pareto_figure(narrow_report).axes
    assert narrow.get_xscale() == "linear"
    assert "SIMULATED" not in narrow.get_title(loc="left")


def test_pareto_figure_skips_nan_points():
    report = make_report()
    report.points["broken"] = [make_point("broken", 1, math.nan, math.nan)]
    figure = pareto_figure(report)
    assert "broken" not in legend_texts(figure)


def test_plot_pareto_with_results_adds_a_cost_panel(tmp_path):
    results = {"fixed-n n=8": make_results("fixed-n", np.full(20, 800.0)),
               "adaptive-consistency n=8": make_results("ac", np.linspace(100, 1500, 20))}
    figure = pareto_figure(make_report(), results=results)
    assert len(figure.axes) == 3
    labels = legend_texts(figure)
    assert "fixed-n n=8 (mean 800)" in labels
    assert "adaptive-consistency n=8 (mean 800)" in labels
    path = plot_pareto(make_report(), tmp_path / "pareto.png", results=results)
    assert png_size(path) == (round(PARETO_WITH_COSTS_SIZE[0] * DPI),
                              round(PARETO_WITH_COSTS_SIZE[1] * DPI))


def test_cost_distribution_plots_one_panel_per_result(tmp_path):
    """Small multiples: each panel names the policy and its setting, draws its ECDF in
    colour and the others in grey (issue 14, item 18: one panel hid curves under each
    other and named no setting)."""
    rng = np.random.default_rng(0)
    results = {"fixed-n": make_results("fixed-n(n=8)", np.full(30, 800.0)),
               "learned": make_results("learned(lambda=0.0012345678)",
                                       rng.uniform(100, 5000, 30)),
               "esc": make_results("esc(window=5)", np.full(30, 300.0)),
               "cascade": make_results("cascade(tau=0.7)", np.full(30, 150.0))}
    figure = cost_distribution_figure(results, simulated=True, cost_unit="tokens")
    axes = figure.axes
    assert len(axes) == 4
    titles = [ax.get_title(loc="left") for ax in axes]
    assert titles[0] == "fixed-n(n=8)\nmean 800"
    assert titles[1].startswith("learned(lambda=0.00123)\nmean ")
    assert "SIMULATED" in figure.get_suptitle()
    assert axes[0].get_xscale() == "log"              # 100..5000 spans more than a decade
    for ax in axes:
        lines = ax.get_lines()
        assert len(lines) == 4
        own = [line for line in lines if line.get_color() != "0.82"]
        assert len(own) == 1 and own[0].get_linewidth() > lines[-1].get_linewidth()
        colors = {axes[i].get_lines()[0].get_color() for i in range(len(axes))}
        assert len(colors) == 4  # each policy its own colour
    # The ECDF of a constant cost jumps from 0 to 1 at that cost.
    xdata, ydata = axes[0].get_lines()[0].get_data()
    assert set(np.asarray(xdata)[np.isfinite(xdata)]) == {800.0}
    assert np.asarray(ydata).max() == pytest.approx(1.0)
    path = plot_cost_distribution(results, tmp_path / "cost.png")
    assert path.stat().st_size > 10_000
    rows, columns = 2, COST_COLUMNS
    assert png_size(path) == (round(COST_PANEL[0] * columns * DPI),
                              round((COST_PANEL[1] * rows + 0.6) * DPI))


def test_the_per_query_cost_is_averaged_over_orders():
    cost = np.array([[1.0, 3.0], [10.0, 30.0]])
    result = EpisodeResults(policy="p", correct=np.ones((2, 2)), cost=cost, samples=cost,
                            exhausted=np.zeros((2, 2), dtype=bool))
    (ax,) = cost_distribution_figure({"p": result}).axes
    xdata = np.asarray(ax.get_lines()[0].get_xdata())
    assert set(xdata[np.isfinite(xdata)]) == {2.0, 20.0}
    assert ax.get_title(loc="left") == "p\nmean 11"


def test_importing_the_plots_module_does_not_import_matplotlib():
    code = ("import sys, allocator.training.evaluation.plots; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'")
    root = Path(__file__).resolve().parents[3]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_pareto_figure_draws_the_envelope_and_zooms_on_the_target():
    report = make_report()
    figure = pareto_figure(report)
    ax, zoom = figure.axes
    labels = legend_texts(figure)
    assert "envelope (front of all baselines)" in labels
    (envelope,) = [line for line in ax.get_lines()
                   if line.get_label() == "envelope (front of all baselines)"]
    assert list(envelope.get_xdata()) == [e["cost"] for e in report.headline.envelope]
    target = report.headline.target_accuracy
    assert zoom.get_ylim() == pytest.approx((target - 0.08, min(1.0, target + 0.04)))
    # every policy that reaches the target has its cost marked on the target line
    marks = [line for line in zoom.get_lines() if line.get_marker() == "v"]
    reached = [c for c in report.headline.cost_to_reach.values() if c is not None]
    assert sorted(m.get_xdata()[0] for m in marks) == pytest.approx(sorted(reached))
    assert all(m.get_ydata()[0] == pytest.approx(target) for m in marks)
    assert "tokens" in zoom.get_xlabel()
