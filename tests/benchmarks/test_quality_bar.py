"""The quality bar's numbers from a hand-made report: best baseline, savings, the checks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from allocator.training.evaluation.pareto import headline
from allocator.training.evaluation.results import EvaluationReport, PolicyPoint

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import quality_bar


def point(policy: str, value: float, cost: float, accuracy: float, *,
          deployable: bool = True) -> PolicyPoint:
    return PolicyPoint(policy=policy, knob="k", value=value, description=f"{policy}(k={value})",
                       deployable=deployable, accuracy=accuracy,
                       accuracy_ci=(accuracy - 0.01, accuracy + 0.01), mean_cost=cost,
                       mean_cost_ci=(cost, cost), mean_samples=1.0, exhaustion_rate=0.0)


def make_report(learned: list[PolicyPoint]) -> dict:
    points = {
        "fixed-n": [point("fixed-n", n, 100.0 * n, 0.6 + 0.05 * n) for n in (1, 2, 4)],
        "adaptive-consistency": [point("adaptive-consistency", 0.95, 250.0, 0.78)],
        "learned": learned,
        "query-oracle": [point("query-oracle", lam, cost, 0.95, deployable=False)
                         for lam, cost in ((0.1, 50.0),)] + [
            point("query-oracle", 0.0, 60.0, 0.97, deployable=False)],
    }
    report = EvaluationReport(log={"simulated": True}, config={}, points=points,
                              reference="adaptive-consistency", headline=headline(points))
    return json.loads(json.dumps(report.to_dict()))


def test_the_bar_is_measured_against_the_best_baseline() -> None:
    # Envelope top: fixed-n n=4, 0.80 at 400; the learned policy reaches 0.80 at 150.
    report = make_report([point("learned", 0.1, 100.0, 0.7), point("learned", 0.0, 150.0, 0.8)])
    bar = quality_bar.quality_bar(report)
    assert bar["target_accuracy"] == pytest.approx(0.8)
    assert bar["best_baseline"]["policy"] == "fixed-n"
    assert bar["best_baseline"]["cost"] == pytest.approx(400.0)
    assert bar["learned_cost"] == pytest.approx(150.0)
    assert bar["savings_vs_best_baseline"] == pytest.approx(400.0 / 150.0)
    assert bar["met"] == {"not_below": True, "cheaper": True}  # 2.67x >= 1x (plain log)
    assert bar["below_baselines"] == [] and bar["exported"] == "learned"
    line = quality_bar.table({"x": {**bar, "log": "x", "unit": "chars", "arms": ["a"]}})
    assert "fixed-n k=4 @ 400.0" in line and "2.67x" in line


@pytest.mark.parametrize(("learned_cost", "exported", "cheaper"), [
    (150.0, "learned", True),    # 2.67x: met with arms or a verifier
    (150.0, "baseline", False),  # ...but only when the learned policy is the one exported
    (300.0, "learned", False),   # 1.33x: not half the cost
])
def test_logs_with_arms_or_a_verifier_need_half_the_cost_and_the_learned_export(
        learned_cost: float, exported: str, cheaper: bool) -> None:
    report = make_report([point("learned", 0.1, 100.0, 0.7),
                          point("learned", 0.0, learned_cost, 0.8)])
    report["extra"] = {"safety_net": {"exported": exported, "reason": "why"}}
    bar = quality_bar.quality_bar(report, rich=True)
    assert bar["savings_bar"] == 2.0 and bar["exported"] == exported
    assert bar["met"]["cheaper"] is cheaper
    assert quality_bar.quality_bar(report)["met"]["cheaper"] is True  # plain: 1x suffices


def test_baselines_only_has_no_bar() -> None:
    bar = quality_bar.quality_bar(make_report([]))
    assert bar["met"] is None
    line = quality_bar.table({"x": {**bar, "log": "x", "unit": "chars", "arms": ["a"]}})
    assert "baselines only" in line and "not trained" in line
