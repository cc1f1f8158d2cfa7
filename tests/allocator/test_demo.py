"""The demo (the README's main job) on its built-in simulated log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from allocator.demo import run_demo
from allocator.logs import read_log


@pytest.mark.slow
def test_demo_writes_a_consistent_simulated_evaluation(tmp_path: Path) -> None:
    report = run_demo(tmp_path, seed=1, n_orders=4)
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(
        json.dumps(report, default=str))
    for png in ("pareto.png", "cost_distribution.png"):
        assert (tmp_path / png).stat().st_size > 10_000
    log = read_log(tmp_path / "synthetic.parquet")
    assert log.simulated and report["log"]["simulated"] is True
    assert report["log"]["fingerprint"] == log.fingerprint()
    fixed = report["policies"]["fixed-n"]
    # Sampling the whole pool is the majority-of-all vote: the headline's target.
    assert max(p["accuracy"] for p in fixed) == pytest.approx(
        report["headline"]["target_accuracy"])
    # Costs grow with N, and the query oracle at any price is at least as good as
    # every fixed-N that costs no more.
    costs = [p["mean_cost"] for p in sorted(fixed, key=lambda p: p["value"])]
    assert costs == sorted(costs)
    oracle = max(p["accuracy"] for p in report["policies"]["query-oracle"])
    assert oracle >= max(p["accuracy"] for p in fixed) - 1e-9
