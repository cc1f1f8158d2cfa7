"""The demo (the README's main job) on its built-in simulated log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import allocator
from allocator.demo import run_demo
from allocator.logs import read_log


@pytest.mark.slow
def test_demo_trains_exports_and_evaluates_on_a_simulated_log(tmp_path: Path) -> None:
    report = run_demo(tmp_path, seed=1, timesteps=40_000, n_orders=3)
    run = tmp_path / "run"
    assert json.loads((run / "report.json").read_text())["policies"].keys() == \
        report["policies"].keys()
    for png in ("pareto.png", "cost_distribution.png"):
        assert (run / png).stat().st_size > 10_000
    log = read_log(tmp_path / "synthetic.parquet")
    assert log.simulated and report["log"]["simulated"] is True
    assert report["log"]["fingerprint"] == log.fingerprint()
    assert report["policies"]["learned"], "the learned policy is evaluated"
    fixed = report["policies"]["fixed-n"]
    # The headline's target is the envelope's top: the best accuracy of any baseline.
    baselines = [p for name, points in report["policies"].items()
                 if name not in ("learned", "oracle", "query-oracle") for p in points]
    assert max(p["accuracy"] for p in baselines) == pytest.approx(
        report["headline"]["target_accuracy"])
    oracle = max(p["accuracy"] for p in report["policies"]["query-oracle"])
    assert oracle >= max(p["accuracy"] for p in fixed) - 1e-9
    # The exported bundle serves decisions through the runtime API.
    session = allocator.load(run / "bundle").session(lambda_=0.01)
    assert session.next_action().kind in {"stop", "sample"}
