"""The report tables and report.json: every point shown, strict JSON, NaN as null."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from allocator.training.evaluation.pareto import headline
from allocator.training.evaluation.report import (
    LEGEND,
    ORACLE_MARK,
    REPORT_NAME,
    headline_table,
    json_safe,
    legend_lines,
    read_report,
    report_table,
    write_report,
)
from allocator.training.evaluation.results import EvaluationReport, PolicyPoint


def make_point(policy: str, knob: str | None, value, cost: float, accuracy: float, *,
               deployable: bool = True, difference: float | None = 0.01) -> PolicyPoint:
    return PolicyPoint(
        policy=policy, knob=knob, value=value, description=f"{policy}({knob}={value})",
        deployable=deployable, accuracy=accuracy, accuracy_ci=(accuracy - 0.02, accuracy + 0.02),
        mean_cost=cost, mean_cost_ci=(cost * 0.9, cost * 1.1), mean_samples=cost / 100,
        exhaustion_rate=0.125, difference=difference,
        difference_ci=None if difference is None else (difference - 0.01, difference + 0.01),
    )


def make_report(*, simulated: bool = True) -> EvaluationReport:
    points = {
        "fixed-n": [make_point("fixed-n", "n", n, 100.0 * n, 0.5 + 0.04 * n, difference=None)
                    for n in (1, 2, 4, 8)],
        "adaptive-consistency": [make_point("adaptive-consistency", "threshold", np.float64(t),
                                            100.0 * n, 0.6 + 0.03 * n)
                                 for t, n in ((0.9, 2), (0.95, 3), (0.99, 5))],
        "always-stop": [make_point("always-stop", None, None, 100.0, 0.54)],
        "query-oracle": [make_point("query-oracle", "n", n, 100.0 * n, 0.7 + 0.03 * n,
                                    deployable=False) for n in (1, 2, 4, 8)],
    }
    return EvaluationReport(
        log={"source": "toy.parquet", "fingerprint": "abc123", "queries": 50, "arms": ["a"],
             "simulated": simulated},
        config={"seed": 0, "orders": 8, "bootstrap": {"replicates": 200}},
        points=points,
        reference="fixed-n(n=8)",
        headline=headline(points, target_accuracy=0.8),
    )


def render(table, width: int = 250) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(table)
    return console.export_text()


def test_report_table_has_a_row_per_point_and_marks_oracles():
    report = make_report()
    table = report_table(report)
    assert table.row_count == sum(len(p) for p in report.points.values()) == 12
    text = render(table)
    assert "SIMULATED" in text
    assert "n=4" in text and "thr=0.95" in text
    assert "0.660 [0.640, 0.680]" in text           # fixed-n n=4: accuracy with its CI
    assert "+0.010 [+0.000, +0.020]" in text        # paired difference with its CI
    assert "12%" in text                            # exhaustion rate
    oracle_lines = [line for line in text.splitlines() if "query-oracle" in line]
    assert len(oracle_lines) == 4
    assert all(ORACLE_MARK in line for line in oracle_lines)
    assert not any(ORACLE_MARK in line for line in text.splitlines() if "fixed-n" in line)


def test_report_table_shows_missing_numbers_as_dashes():
    report = make_report(simulated=False)
    nan_point = make_point("broken", "n", 1, math.nan, math.nan, difference=None)
    report.points["broken"] = [nan_point]
    text = render(report_table(report))
    assert "SIMULATED" not in text
    (line,) = [line for line in text.splitlines() if "broken" in line]
    assert "nan" not in line.lower()
    assert "—" in line


def test_headline_table_has_every_policy():
    report = make_report()
    table = headline_table(report)
    assert table.row_count == len(report.points)
    text = render(table)
    assert "target accuracy 0.800" in text
    # fixed-n reaches 0.8 first at n=8 (cost 800): the best baseline, 1.00x of itself.
    assert "800" in text and "1.00x" in text
    assert "best baseline" in text
    (oracle_line,) = [line for line in text.splitlines() if "query-oracle" in line]
    assert ORACLE_MARK in oracle_line


def test_json_round_trip_keeps_every_point(tmp_path):
    report = make_report()
    path = write_report(report, tmp_path / "out")
    assert path == tmp_path / "out" / REPORT_NAME
    assert not list(path.parent.glob("*.partial"))
    data = read_report(path)
    assert read_report(path.parent) == data
    assert data["reference"] == "fixed-n(n=8)"
    assert data["log"]["simulated"] is True
    for name, points in report.points.items():
        assert [p["value"] for p in data["policies"][name]] == [
            json_safe(p.value) for p in points]
        assert [p["accuracy"] for p in data["policies"][name]] == pytest.approx(
            [p.accuracy for p in points])
        assert [p["mean_cost_ci"] for p in data["policies"][name]] == [
            pytest.approx(list(p.mean_cost_ci)) for p in points]
    assert data["headline"]["cost_to_reach"]["fixed-n"] == pytest.approx(800.0)
    assert data["headline"]["target_accuracy"] == 0.8


def test_nan_and_numpy_values_become_strict_json(tmp_path):
    report = make_report()
    report.points["broken"] = [make_point("broken", "n", np.int64(3), math.nan, np.float32(0.5),
                                          difference=None)]
    report.extra["curve"] = np.array([1.0, np.nan, np.inf])
    report.extra["count"] = np.int64(7)
    path = write_report(report, tmp_path)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))
    (broken,) = data["policies"]["broken"]
    assert broken["mean_cost"] is None
    assert broken["accuracy"] == 0.5
    assert broken["value"] == 3
    assert broken["difference"] is None
    assert data["extra"] == {"curve": [1.0, None, None], "count": 7}


def test_write_report_replaces_an_existing_report(tmp_path):
    (tmp_path / REPORT_NAME).write_text("stale")
    write_report({"reference": "x", "values": (1, 2)}, tmp_path)
    assert read_report(tmp_path) == {"reference": "x", "values": [1, 2]}


def test_json_safe_converts_keys_and_unknown_objects(tmp_path):
    assert json_safe({1: (np.bool_(True), tmp_path)}) == {"1": [True, str(tmp_path)]}


@pytest.mark.parametrize("table_of", [report_table, headline_table])
def test_tables_fit_a_100_column_terminal_without_truncation(table_of):
    """Every cell is shown whole in 100 columns (rich marks cut text with "…")."""
    report = make_report()
    report.points["adaptive-consistency-with-a-long-name"] = report.points[
        "adaptive-consistency"]
    text = render(table_of(report), width=100)
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 100


# ------------------------------------------------------------------ issue 14, item 18
def test_a_miss_never_prints_as_the_target():
    """A policy whose best accuracy is 0.7268 misses a 0.727 target: the table prints
    both with the digits that tell them apart (it showed 0.727 against 0.727)."""
    points = {
        "fixed-n": [make_point("fixed-n", "n", n, 100.0 * n, acc, difference=None)
                    for n, acc in ((1, 0.6), (4, 0.727))],
        "esc": [make_point("esc", "window", 5, 150.0, 0.7268, difference=None)],
    }
    report = EvaluationReport(log={"simulated": False}, config={}, points=points,
                              reference="fixed-n(n=1)",
                              headline=headline(points, target_accuracy=0.727))
    assert report.headline.cost_to_reach["esc"] is None  # it misses
    text = render(headline_table(report))
    assert "target accuracy 0.7270" in text
    (esc,) = [line for line in text.splitlines() if line.strip().startswith("esc")]
    assert "0.7268" in esc and "0.727 " not in esc + " "
    (fixed,) = [line for line in text.splitlines() if line.strip().startswith("fixed-n")]
    assert "0.7270" in fixed and "1.00x" in fixed


def test_same_oracle_rows_are_collapsed():
    """Settings that print the same numbers share a row; two oracles with the same rows
    share one (the report showed 25 near-duplicate oracle rows)."""
    def sweep(name):
        return [make_point(name, "lambda", lam, cost, acc, deployable=False)
                for lam, cost, acc in ((1.0, 50.0, 0.5), (0.1, 80.0, 0.7), (1e-3, 100.0, 0.9),
                                       (1.58e-5, 100.0, 0.9), (1e-6, 100.0, 0.9))]
    report = make_report()
    report.points.pop("query-oracle")
    report.points["oracle"] = sweep("oracle")
    report.points["query-oracle"] = sweep("query-oracle")
    report = EvaluationReport(log=report.log, config=report.config, points=report.points,
                              reference=report.reference,
                              headline=headline(report.points, target_accuracy=0.8))
    text = render(report_table(report))
    oracle_lines = [line for line in text.splitlines() if line.strip().startswith("oracle")]
    assert len(oracle_lines) == 3, text
    assert all("oracle = query-oracle" in line for line in oracle_lines)
    assert "λ=1e-3 to 1e-6" in text  # the three equal points as one range
    head = render(headline_table(report))
    assert len([line for line in head.splitlines()
                if line.strip().startswith("oracle")]) == 1


@pytest.mark.parametrize(("value", "shown"), [(0.001, "λ=1e-3"), (1.58e-05, "λ=1.58e-5"),
                                              (0.0134, "λ=0.0134"), (0.25, "λ=0.25")])
def test_knobs_print_compactly(value, shown):
    report = make_report()
    report.points["learned"] = [make_point("learned", "lambda", value, 100.0, 0.5)]
    text = render(report_table(report), width=100)
    assert shown in text and "…" not in text


def test_long_settings_are_shortened_in_the_title():
    report = make_report()
    best = dict(report.headline.best_baseline, setting="until-verified(n=3, "
                "tau=0.6001783609390259, arm=0)")
    report = EvaluationReport(log=report.log, config=report.config, points=report.points,
                              reference=report.reference,
                              headline=dataclasses.replace(report.headline,
                                                           best_baseline=best))
    text = " ".join(render(headline_table(report)).split())
    assert "until-verified(n=3, tau=0.6, arm=0)" in text


def test_the_legend_explains_every_term_and_the_readme_has_it():
    terms = " ".join(LEGEND)
    for term in ("envelope", "non-inferior", "gap closed", "exh.", "exhausted", "savings",
                 "oracle"):
        assert term in terms
    readme = " ".join((Path(__file__).resolve().parents[3] / "README.md").read_text()
                      .split())
    for line in legend_lines():
        term, _, meaning = line.partition(": ")
        assert f"**{term}**: {meaning}" in readme, term
