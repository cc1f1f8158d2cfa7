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
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from rich import box
from rich.table import Table

from allocator.training.evaluation.results import EvaluationReport, PolicyPoint

__all__ = [
    "LEGEND",
    "REPORT_NAME",
    "has_latency",
    "headline_table",
    "json_safe",
    "legend_lines",
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


def short_number(value: object) -> str:
    """A knob value compactly: floats in 3 significant digits, the shorter of the fixed
    and the scientific form, exponents without padding (``1e-3``, ``1.58e-5``, ``0.0134``,
    ``0.6``); anything else as ``str``."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, float) or not math.isfinite(value):
        return str(value)
    forms = [_tidy_exponent(format(value, ".3g"))]
    if value != 0 and abs(value) < 0.01:
        mantissa, exponent = format(value, ".2e").split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        forms.append(f"{mantissa}e{int(exponent)}")
    return min(forms, key=len)


def _tidy_exponent(text: str) -> str:
    """``1.58e-05`` as ``1.58e-5``, ``1e+06`` as ``1e6``."""
    if "e" not in text:
        return text
    mantissa, exponent = text.split("e")
    return f"{mantissa}e{int(exponent)}"


_LONG_NUMBER = re.compile(r"-?\d+\.\d{4,}(?:e[+-]?\d+)?")


def _shorten_numbers(text: str) -> str:
    """Long decimals in a setting's description in :func:`short_number`'s form."""
    return _LONG_NUMBER.sub(lambda match: short_number(float(match.group())), text)


def _knob(point: PolicyPoint) -> str:
    """``knob=value`` in a compact form, or a dash for a policy without a knob."""
    if point.knob is None:
        return _MISSING
    return f"{_KNOB_ABBREVIATIONS.get(point.knob, point.knob)}={short_number(point.value)}"


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
    exhaustion rate, the accuracy difference to the reference policy [95% CI, paired],
    and, where the log is timed, episode latency in seconds: mean (p50 / p95).
    Hindsight oracles are marked "(oracle)". Consecutive settings of a policy that print
    the same numbers share one row (``λ=1e-3 to 0.1``), and oracles whose rows are all the
    same share one (``oracle = query-oracle``); :data:`LEGEND` explains the columns.
    """
    table = Table(title=f"Replay evaluation{_simulated_suffix(report)} "
                        f"(Δ accuracy vs {report.reference}; oracles: not deployable, fronts only)",
                  title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1))
    table.add_column("policy", style="bold", overflow="fold")
    table.add_column("knob", overflow="fold")
    for header in ("accuracy [95% CI]", f"cost{_unit_suffix(report)} [95% CI]", "draws",
                   "exh.", "Δ accuracy [95% CI]"):
        table.add_column(header, justify="right", overflow="fold")
    timed = has_latency(report)
    if timed:
        table.add_column("latency s (p50 / p95)", justify="right", overflow="fold")
    for names, deployable, rows in _merge_same_oracles(
            [(name, _deployable(report, name), _collapse(_point_rows(points, timed)))
             for name, points in report.points.items()]):
        for knob, cells in rows:
            table.add_row(_policy_label(" = ".join(names), deployable), knob, *cells,
                          style=None if deployable else "dim")
    return table


Row = tuple[str, tuple[str, ...]]


def has_latency(report: EvaluationReport) -> bool:
    """Whether any point of the report has a measured latency (a timed log)."""
    return any(point.has_latency for points in report.points.values() for point in points)


def _latency_cell(point: PolicyPoint) -> str:
    """``mean (p50 / p95)`` in seconds, or a dash where unavailable (an oracle)."""
    if not point.has_latency:
        return _MISSING
    return (f"{_compact(point.mean_latency)} ({_compact(point.p50_latency)} / "
            f"{_compact(point.p95_latency)})")


def _point_rows(points: list[PolicyPoint], timed: bool = False) -> list[Row]:
    """(knob text, the other cells) per point; a latency cell when ``timed``."""
    return [(_knob(point), (
        _with_interval(point.accuracy, point.accuracy_ci),
        _with_interval(point.mean_cost, point.mean_cost_ci, "compact"),
        _number(point.mean_samples, ".3g"),
        _number(point.exhaustion_rate, ".0%"),
        _with_interval(point.difference, point.difference_ci, "+.3f"),
        *((_latency_cell(point),) if timed else ()))) for point in points]


def _collapse(rows: list[Row]) -> list[Row]:
    """Consecutive rows that print the same numbers as one, their knobs as a range."""
    merged: list[tuple[str, str, tuple[str, ...]]] = []
    for knob, cells in rows:
        if merged and merged[-1][2] == cells:
            first, _, _ = merged[-1]
            merged[-1] = (first, knob, cells)
        else:
            merged.append((knob, knob, cells))
    return [(first if first == last else f"{first} to {last.partition('=')[2] or last}",
             cells) for first, last, cells in merged]


def _merge_same_oracles(policies: list[tuple[str, bool, list[Row]]]
                        ) -> list[tuple[list[str], bool, list[Row]]]:
    """Non-deployable policies whose rows are all the same, as one entry naming both."""
    merged: list[tuple[list[str], bool, list[Row]]] = []
    for name, deployable, rows in policies:
        twin = next((entry for entry in merged if not deployable and not entry[1]
                     and entry[2] == rows), None)
        if twin is not None:
            twin[0].append(name)
        else:
            merged.append(([name], deployable, rows))
    return merged


def _unit_suffix(report: EvaluationReport) -> str:
    unit = report.log.get("cost_unit")
    return f" ({unit})" if unit else ""


def headline_table(report: EvaluationReport) -> Table:
    """A rich table of the headline numbers against the envelope, one row per policy.

    The title gives the target accuracy (by default the envelope's top: the best accuracy
    any deployable baseline reaches) and the best baseline: the cheapest deployable
    baseline point reaching it (non-inferior at 95%). Columns: each policy's best
    accuracy, the mean cost to reach the target, the savings against the best baseline
    (its cost over the policy's: 2.0x = half the cost) and the median share of the
    envelope-to-query-oracle gap closed (see :mod:`allocator.training.evaluation.pareto`).
    Accuracies are printed with the digits that tell each policy's best from the target
    (a policy that misses a target of 0.727 never shows 0.727). Oracles with the same
    numbers share a row. :data:`LEGEND` explains the terms.
    """
    headline = report.headline
    best = headline.best_baseline
    best_accuracy = {name: max((p.accuracy for p in points if not _is_missing(p.accuracy)),
                               default=None) for name, points in report.points.items()}
    digits = _digits_apart(headline.target_accuracy, list(best_accuracy.values()))
    best_text = (f"best baseline {_shorten_numbers(best['setting'])} at "
                 f"{_compact(best['cost'])}" if best else "no baseline reaches it")
    table = Table(title=f"Headline{_simulated_suffix(report)}: target accuracy "
                        f"{_number(headline.target_accuracy, f'.{digits}f')} "
                        f"({headline.target_source}); {best_text}",
                  title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1))
    table.add_column("policy", style="bold", overflow="fold")
    for header in ("best accuracy", f"cost to reach target{_unit_suffix(report)}",
                   "savings vs best baseline", "gap closed"):
        table.add_column(header, justify="right", overflow="fold")
    names = list(dict.fromkeys([*report.points, *headline.cost_to_reach]))
    rows = [(name, _deployable(report, name), [("", (
        _number(best_accuracy.get(name), f".{digits}f"),
        _compact(headline.cost_to_reach.get(name)),
        _ratio_text(headline.savings_vs_best_baseline.get(name)),
        _number(headline.gap_closed.get(name), ".0%")))]) for name in names]
    for merged, deployable, cells in _merge_same_oracles(rows):
        table.add_row(_policy_label(" = ".join(merged), deployable), *cells[0][1],
                      style=None if deployable else "dim")
    return table


def _digits_apart(target: float | None, values: list[float | None], low: int = 3,
                  high: int = 6) -> int:
    """The fewest decimals (``low`` to ``high``) that print every value that differs from
    the target differently from it."""
    if _is_missing(target):
        return low
    for digits in range(low, high + 1):
        shown = format(target, f".{digits}f")
        if all(format(value, f".{digits}f") != shown for value in values
               if not _is_missing(value) and abs(value - target) > 1e-12):
            return digits
    return high


#: What the tables' terms mean (printed under them, and in the README).
LEGEND = {
    "envelope": "the Pareto front of every deployable baseline at every setting, on the "
                "same held-out queries and orders; the target accuracy is its top unless "
                "given.",
    "reach (non-inferior)": "a point reaches the target when it is non-inferior at 95%: "
                            "the upper end of its paired 95% interval against the "
                            "reference is at least the target minus the reference's "
                            "accuracy. A point a little below the target can reach it; "
                            "best accuracy shows the digits that tell it from the target.",
    "cost to reach target": "the lowest mean cost per query of a point that reaches the "
                            "target (— where none does).",
    "savings vs best baseline": "the best baseline's cost to reach the target divided by "
                                "the policy's: 2.00x is half the cost, below 1x dearer.",
    "gap closed": "the median, over the policy's front points where both are defined, of "
                  "(its accuracy - the envelope's) / (the query-oracle's - the "
                  "envelope's) at the same cost: 0% is the envelope, 100% the "
                  "query-oracle, negative below the envelope. It covers every budget and "
                  "savings only the target, so a policy can close much of the gap at low "
                  "budgets and still cost more at the target.",
    "exh. (exhausted)": "the share of episodes in which the policy wanted another sample "
                        "after the query's logged pool ran out (SAMPLE is masked there: "
                        "replay never invents samples).",
    "Δ accuracy": "the paired difference with the reference on the same queries and "
                  "orders, with its 95% bootstrap interval over queries.",
    "(oracle)": "not deployable: it sees each query's outcomes; it bounds what any "
                "deployable policy can do.",
}


def legend_lines() -> list[str]:
    """The :data:`LEGEND`, one ``term: meaning`` line per term."""
    return [f"{term}: {meaning}" for term, meaning in LEGEND.items()]


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
