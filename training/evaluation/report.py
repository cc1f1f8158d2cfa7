"""The evaluation report: terminal tables (rich) and the ``report.json`` file.

``report.json`` is strict JSON (no ``NaN``): numpy scalars and arrays become plain numbers
and lists, tuples become lists, NaN and infinities become ``null``, paths become strings.
It is written atomically, so a crash never leaves a truncated report where a good one
stood.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from rich import box
from rich.table import Table

from training.evaluation.results import EvaluationReport, PolicyPoint

__all__ = [
    "REPORT_NAME",
    "headline_table",
    "json_safe",
    "notes_lines",
    "read_report",
    "report_table",
    "write_report",
]

#: The report's file name inside an evaluation folder.
REPORT_NAME = "report.json"

#: How a hindsight oracle is marked in the tables.
ORACLE_MARK = "(oracle)"

_MISSING = "—"


def _is_missing(value: float | None) -> bool:
    return value is None or not math.isfinite(value)


def _number(value: float | None, spec: str = ".3f") -> str:
    """A number, or a dash for None/NaN."""
    return _MISSING if _is_missing(value) else format(value, spec)


def _compact(value: float | None, sign: bool = False) -> str:
    """A number in at most 3 significant digits, with k/M for thousands and millions."""
    if _is_missing(value):
        return _MISSING
    prefix = "+" if sign and value >= 0 else ""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{prefix}{value / scale:.3g}{suffix}"
    return f"{prefix}{value:.3g}"


def _with_interval(value: float | None, interval: tuple[float, float] | None,
                   spec: str = ".3f") -> str:
    """``value [low, high]``; the interval is left out when it is missing. With ``spec``
    ``"compact"`` the numbers take :func:`_compact`'s form."""
    def show(number: float | None) -> str:
        return _compact(number) if spec == "compact" else _number(number, spec)

    text = show(value)
    if interval is None or _is_missing(value):
        return text
    low, high = interval
    return f"{text} [{show(low)}, {show(high)}]"


#: Short names of knobs in the tables.
_KNOB_ABBREVIATIONS = {"threshold": "thr", "window": "win", "lambda": "λ", "target": "tgt",
                       "epsilon": "eps"}


def _knob(point: PolicyPoint) -> str:
    """``knob=value`` in a compact form, or a dash for a policy without a knob."""
    if point.knob is None:
        return _MISSING
    value = point.value.item() if isinstance(point.value, np.generic) else point.value
    text = format(value, ".3g") if isinstance(value, float) else str(value)
    return f"{_KNOB_ABBREVIATIONS.get(point.knob, point.knob)}={text}"


def _policy_label(name: str, deployable: bool) -> str:
    return name if deployable else f"{name} {ORACLE_MARK}"


def _deployable(report: EvaluationReport, name: str) -> bool:
    """False when any of the policy's points is a hindsight oracle's."""
    return all(point.deployable for point in report.points.get(name, []))


def _simulated_suffix(report: EvaluationReport) -> str:
    return " — SIMULATED log" if report.log.get("simulated") else ""


def report_table(report: EvaluationReport) -> Table:
    """A rich table with one row per policy and knob value.

    Columns: policy, knob=value, accuracy [95% CI], mean cost [95% CI], mean samples,
    exhaustion rate, and the accuracy difference to the reference policy [95% CI, paired].
    Hindsight oracles are marked "(oracle, not deployable)".
    """
    table = Table(title=f"Replay evaluation{_simulated_suffix(report)} "
                        f"(Δ accuracy vs {report.reference}; oracles: not deployable, fronts only)",
                  title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1))
    table.add_column("policy", style="bold", overflow="fold")
    table.add_column("knob", overflow="fold")
    for header in ("accuracy [95% CI]", f"cost{_unit_suffix(report)} [95% CI]", "draws",
                   "exh.", "Δ accuracy [95% CI]"):
        table.add_column(header, justify="right", overflow="fold")
    for name, points in report.points.items():
        for point in points:
            table.add_row(
                _policy_label(name, point.deployable),
                _knob(point),
                _with_interval(point.accuracy, point.accuracy_ci),
                _with_interval(point.mean_cost, point.mean_cost_ci, "compact"),
                _number(point.mean_samples, ".3g"),
                _number(point.exhaustion_rate, ".0%"),
                _with_interval(point.difference, point.difference_ci, "+.3f"),
                style=None if point.deployable else "dim",
            )
    return table


def _unit_suffix(report: EvaluationReport) -> str:
    unit = report.log.get("cost_unit")
    return f" ({unit})" if unit else ""


def headline_table(report: EvaluationReport) -> Table:
    """A rich table of the headline numbers against the envelope, one row per policy.

    The title gives the target accuracy (by default the envelope's top: the best accuracy
    any deployable baseline reaches) and the best baseline: the cheapest deployable
    baseline point reaching it (non-inferior at 95%). Columns: the mean cost to reach the
    target, the savings against the best baseline (its cost over the policy's: 2.0x = half
    the cost) and the median share of the envelope-to-query-oracle gap closed (see
    :mod:`training.evaluation.pareto`).
    """
    headline = report.headline
    best = headline.best_baseline
    best_text = (f"best baseline {best['setting']} at {_compact(best['cost'])}"
                 if best else "no baseline reaches it")
    table = Table(title=f"Headline{_simulated_suffix(report)}: target accuracy "
                        f"{_number(headline.target_accuracy)} ({headline.target_source}); "
                        f"{best_text}",
                  title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1))
    table.add_column("policy", style="bold", overflow="fold")
    for header in (f"cost to reach target{_unit_suffix(report)}", "savings vs best baseline",
                   "gap closed"):
        table.add_column(header, justify="right", overflow="fold")
    names = list(dict.fromkeys([*report.points, *headline.cost_to_reach]))
    for name in names:
        deployable = _deployable(report, name)
        table.add_row(
            _policy_label(name, deployable),
            _compact(headline.cost_to_reach.get(name)),
            _ratio_text(headline.savings_vs_best_baseline.get(name)),
            _number(headline.gap_closed.get(name), ".0%"),
            style=None if deployable else "dim",
        )
    return table


def notes_lines(report: EvaluationReport) -> list[str]:
    """Lines a reader needs beside the tables: the baselines skipped and why, the
    query-oracle's fallbacks, and where the verifier's cost came from."""
    lines = [f"skipped {name}: {reason}"
             for name, reason in report.extra.get("skipped", {}).items()]
    oracle = report.extra.get("query_oracle")
    if oracle:
        lines.append(
            f"query-oracle: {oracle['exact']} of {oracle['queries']} queries exact, "
            f"{oracle['cost_classes_coarsened']} with coarser cost classes, "
            f"{oracle['fallback_to_hindsight']} fell back to the hindsight bound "
            f"(state cap {oracle['max_states']})")
    if "verify_cost" in report.config:
        lines.append(f"verify cost {report.config['verify_cost']:.4g} per candidate "
                     f"({report.config.get('verify_cost_source', 'given')})")
    return lines


def _ratio_text(value: float | None) -> str:
    return _MISSING if _is_missing(value) else f"{value:.2f}x"


def json_safe(value: Any) -> Any:
    """``value`` made of plain JSON types only.

    Mappings become dicts with string keys; lists, tuples, sets and numpy arrays become
    lists; numpy scalars become Python numbers; NaN and infinities become ``None``; paths
    and anything else unknown become their ``str``; objects with ``to_dict`` and
    dataclasses become dicts; enums their value.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (np.generic, np.ndarray)):
        return json_safe(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        return value
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(item) for item in value]
    if hasattr(value, "to_dict"):
        return json_safe(value.to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_safe(dataclasses.asdict(value))
    if isinstance(value, enum.Enum):
        return json_safe(value.value)
    return str(value)


def write_report(report: EvaluationReport | Mapping[str, Any],
                 folder: str | os.PathLike[str]) -> Path:
    """Write ``report.json`` into ``folder`` (created if needed), atomically.

    Args:
        report: the evaluation report (or its ``to_dict()``).
        folder: the evaluation's output folder.

    Returns:
        The path of the written file.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = report.to_dict() if isinstance(report, EvaluationReport) else report
    text = json.dumps(json_safe(data), indent=2, allow_nan=False)
    path = folder / REPORT_NAME
    temporary = path.with_name(path.name + ".partial")
    try:
        temporary.write_text(text + "\n", encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def read_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a report written by :func:`write_report`.

    Args:
        path: the ``report.json`` file, or the folder that holds it.

    Returns:
        The report as a dict (the layout of ``EvaluationReport.to_dict``).
    """
    path = Path(path)
    if path.is_dir():
        path = path / REPORT_NAME
    return json.loads(path.read_text(encoding="utf-8"))
