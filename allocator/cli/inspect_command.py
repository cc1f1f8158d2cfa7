"""The body of ``allocator inspect BUNDLE``: every default the oracle uses, and its source.

A user who loads a bundle and calls ``oracle.session(query)`` gets a lambda, a sample cap
per arm and a prior per arm they did not choose; this prints them (a table on stdout, or
``--json``), each with where it came from, from
:meth:`allocator.oracle.BudgetOracle.defaults`, the same description ``GET /v1/health``
returns.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["defaults_rows", "run_inspect"]


def defaults_rows(defaults: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The defaults as ``(setting, arm, value, source)`` rows, in a fixed order."""
    lam = defaults["lambda"]
    low, high = lam["range"]
    rows = [("lambda", "", f"{lam['value']:.6g}", lam["source"]),
            ("lambda range", "", f"[{low:g}, {high:g}]", "training")]
    cost_range = defaults["target_cost_range"]
    rows.append(("target_cost range", "", "none (not calibrated)" if cost_range is None
                 else f"[{cost_range[0]:.6g}, {cost_range[1]:.6g}]",
                 "calibration table (mean cost per query)"))
    for key, label, form in (("max_samples_per_arm", "sample cap", "{}"),
                             ("prior", "prior", "{:.4f}")):
        for arm, value in defaults[key]["values"].items():
            rows.append((label, arm, form.format(value), defaults[key]["source"]))
    for arm, cost in defaults["arm_mean_cost"].items():
        rows.append(("mean sample cost", arm, f"{cost:.6g}", "log units"))
    return rows


def run_inspect(bundle: str, *, as_json: bool) -> dict[str, Any]:
    """Load ``bundle`` (a directory or an MLflow URI) and print its defaults.

    Returns:
        ``{"bundle", "sha256", "calibrated_from", "arms", "defaults"}`` (what ``--json``
        prints): ``sha256`` identifies the bundle's content, ``calibrated_from`` is the
        sha256 of the bundle it was calibrated from (None if it was not).
    """
    from rich.console import Console
    from rich.table import Table

    from allocator.oracle import load

    oracle = load(bundle)
    source = oracle.bundle.manifest.get("calibrated_from")
    result = {"bundle": str(oracle.bundle.path), "sha256": oracle.bundle.sha256,
              "calibrated_from": source.get("sha256") if isinstance(source, dict) else None,
              "arms": list(oracle.arms), "defaults": oracle.defaults()}
    if as_json:
        print(json.dumps(result, indent=2, allow_nan=False))
        return result
    provenance = (f", calibrated from {result['calibrated_from'][:16]}"
                  if result["calibrated_from"] else "")
    table = Table(title=f"defaults of {oracle.bundle.path} (bundle "
                  f"{oracle.bundle.bundle_id}{provenance})", title_justify="left")
    for column in ("setting", "arm", "value", "source"):
        table.add_column(column, overflow="fold")
    for row in defaults_rows(result["defaults"]):
        table.add_row(*row)
    Console(width=120).print(table)
    return result
