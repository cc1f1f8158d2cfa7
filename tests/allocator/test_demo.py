"""The demo (the README's main job) on its built-in simulated log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from allocator.demo import DEMO_NS, run_demo


@pytest.mark.slow
def test_demo_replays_fixed_n_consistently_with_the_log(tmp_path: Path) -> None:
    report = run_demo(tmp_path, seed=1)
    assert json.loads((tmp_path / "report.json").read_text()) == report
    assert (tmp_path / "fixed_n.png").stat().st_size > 10_000
    assert report["simulated"] is True and "simulated" in report["source"]
    rows = {(r["arm"], r["n"]): r for r in report["fixed_n"]}
    assert len(rows) == len(report["log"]["arms"]) * len(DEMO_NS)
    for arm in report["log"]["arms"]:
        summary = report["summary"][arm]
        one = rows[(arm, 1)]
        # One sample: the per-attempt accuracy (averaged per query, which equals the
        # micro average when every query has the same pool size, as here).
        assert abs(one["accuracy"] - summary["attempt_accuracy"]) < 4 * one["accuracy_se"]
        pool = round(summary["attempts_per_query"])
        if pool in DEMO_NS:
            # The whole pool: exactly the majority-of-all vote.
            full = rows[(arm, pool)]
            assert abs(full["accuracy"] - summary["majority_accuracy"]) < 4 * full["accuracy_se"]
        # Cost grows with N, exactly N times the mean cost per attempt in expectation.
        costs = [rows[(arm, n)]["mean_cost"] for n in DEMO_NS]
        assert costs == sorted(costs)
        assert rows[(arm, 1)]["exhaustion_rate"] == 0.0
