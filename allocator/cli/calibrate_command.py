"""The body of ``allocator calibrate``: the lambda that meets a target mean cost.

Users ask for a budget ("on average 600 tokens per query"), not a price:
:func:`run_calibrate` finds the lambda that spends it on validation queries (or, without
a target, reaches majority-of-all accuracy) and writes a new bundle that stores it;
:func:`validation_queries` picks those queries, never the test queries.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["run_calibrate", "validation_queries"]


def validation_queries(manifest: dict[str, Any], log: Any) -> tuple[np.ndarray | None, str]:
    """The validation queries of ``log`` for a bundle, and a sentence saying which.

    Validation queries must be queries the policy was not trained on, and never the test
    queries: when ``log`` is the training log (same fingerprint as the bundle's), the
    validation split ``allocator train`` held out of its training queries is used (the
    manifest's ``validation`` and ``training_config`` hold its seed and fractions);
    bundles trained before that split existed fall back to the held-out half of the
    split (the only queries they were not trained on: say so when you report on them).
    Any other log is used whole.

    Returns:
        ``(indices or None for all queries, description)``.
    """
    if manifest.get("log_fingerprint") != log.fingerprint():
        return None, f"all {log.n_queries:,} queries of the log (not the training log)"
    from allocator.training.evaluation.evaluate import split_queries

    config = manifest.get("training_config") or {}
    fraction, seed = float(config.get("test_fraction", 0.5)), int(config.get("seed", 0))
    train, held_out = split_queries(log.n_queries, fraction, seed)
    validation = manifest.get("validation") or {}
    if validation.get("queries"):
        from allocator.training.rl.calibrate import validation_split

        share = float(validation["fraction"])
        _, queries = validation_split(train, int(validation["seed"]), share)
        return queries, (f"the {len(queries):,} validation queries of the training log "
                         f"({share:g} of its training queries, held out of training)")
    return held_out, (f"the {len(held_out):,} held-out queries of the training log "
                      f"(split seed {seed}, test fraction {fraction:g}: the bundle records "
                      "no validation split)")


def run_calibrate(bundle: Path, log_path: Path, target_cost: float | None, *,
                  output: Path, overwrite: bool = False, tolerance: float,
                  orders: int, seed: int, as_json: bool) -> dict[str, Any]:
    """Calibrate ``bundle`` on ``log_path`` into the new bundle ``output``; print the
    result.

    The lambda that spends ``target_cost`` on the validation queries
    (:func:`validation_queries`) is found by bisection
    (:func:`allocator.training.rl.calibrate.calibrate`) and stored in the new bundle
    (the source bundle is only read), where ``oracle.session(query)`` and
    ``target_cost=`` read it. Without a target cost, the lambda is the cheapest that
    reaches majority-of-all accuracy
    (:func:`allocator.training.rl.calibrate.calibrate_to_accuracy`), as ``allocator
    train`` calibrates by default.

    Args:
        bundle: the source bundle directory (only read).
        log_path: a log over the bundle's arms.
        output: the calibrated bundle's directory (a new one).
        overwrite: replace a bundle already at ``output``.
        target_cost: the mean cost per query to meet, in the log's units; None: the
            cheapest lambda that reaches majority-of-all accuracy.
        tolerance: relative tolerance on the mean cost.
        orders: random orders replayed per query.
        seed: seed of the orders.
        as_json: print JSON on stdout instead of a table.

    Returns:
        ``{"lambda", "mean_cost", "target", "within_tolerance", "queries", "table",
        "bundle", "source_sha256", "warnings"}`` (``bundle``: the new bundle's path).
    """
    from allocator.bundle import read_bundle
    from allocator.console import stderr_console
    from allocator.logs import read_log
    from allocator.training.rl.calibrate import calibrate, calibrate_to_accuracy

    source = read_bundle(bundle)
    log = read_log(log_path)
    queries, described = validation_queries(source.manifest, log)
    console = stderr_console()
    console.print(f"calibrating {bundle} on {described}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if target_cost is None:
            lam = calibrate_to_accuracy(source, log, queries, output=output,
                                        overwrite=overwrite, n_orders=orders, seed=seed)
        else:
            lam = calibrate(source, log, queries, target_cost, output=output,
                            overwrite=overwrite, n_orders=orders, seed=seed,
                            tolerance=tolerance)
    manifest = read_bundle(output).manifest
    calibration = manifest["calibration"]
    result = {"lambda": lam, "mean_cost": manifest["calibrated_mean_cost"],
              "target": target_cost, "within_tolerance": calibration["within_tolerance"],
              "queries": described, "table": calibration["table"], "bundle": str(output),
              "source_sha256": source.sha256,
              "warnings": [str(w.message) for w in caught]}
    if as_json:
        print(json.dumps(result, indent=2))
        return result
    for message in result["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {message}")
    if target_cost is None:
        console.print(f"lambda {lam:.6g}: {calibration['goal']} "
                      f"({'met' if result['within_tolerance'] else 'NOT met'}); written to "
                      f"{output}")
        return result
    console.print(f"lambda {lam:.6g}: mean cost {result['mean_cost']:,.4g} per query "
                  f"(target {target_cost:,.4g}, tolerance {tolerance:.0%}: "
                  f"{'met' if result['within_tolerance'] else 'NOT met'}); written to {output}")
    return result
