"""The demo (the README's main job) on its built-in SIMULATED log."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import allocator
from allocator.cli.demo import DEMO_LOG, MARKER, _verdict, best_baseline, run_demo
from allocator.errors import ParameterError
from allocator.logs import read_log


@pytest.mark.slow
def test_demo_trains_exports_and_evaluates_and_runs_twice(tmp_path: Path) -> None:
    output = tmp_path / "demo"
    for _ in range(2):  # the second run replaces the first one's files
        report = run_demo(output, seed=1, timesteps=40_000, n_orders=3)
    run = output / "run"
    assert sorted(p.name for p in output.iterdir()) == [MARKER, "run", "synthetic.parquet"]
    assert json.loads((run / "report.json").read_text())["policies"].keys() == \
        report["policies"].keys()
    for png in ("pareto.png", "cost_distribution.png"):
        assert (run / png).stat().st_size > 10_000
    log = read_log(output / "synthetic.parquet")
    assert log.simulated and report["log"]["simulated"] is True
    assert report["log"]["fingerprint"] == log.fingerprint()
    assert report["policies"]["learned"], "the learned policy is evaluated"
    # Realistic on purpose: a length that predicts difficulty, priced arms, a verifier on
    # the two cheaper arms only.
    length = log.queries.metadata["length"].astype(float)
    difficulty = log.queries.metadata["difficulty"].astype(float)
    assert np.corrcoef(np.log(length), difficulty)[0, 1] > 0.5
    scored = {arm: bool(np.isfinite(log.score[log.arm == i]).any())
              for i, arm in enumerate(log.arms)}
    assert scored == {arm.name: arm.scored for arm in DEMO_LOG.arms} == {
        "small": True, "medium": True, "large": False}
    fixed = report["policies"]["fixed-n"]
    # The headline's target is the envelope's top: the best accuracy of any baseline.
    baselines = [p for name, points in report["policies"].items()
                 if name not in ("learned", "oracle", "query-oracle") for p in points]
    assert max(p["accuracy"] for p in baselines) == pytest.approx(
        report["headline"]["target_accuracy"])
    oracle = max(p["accuracy"] for p in report["policies"]["query-oracle"])
    assert oracle >= max(p["accuracy"] for p in fixed) - 1e-9
    # The safety net chose the exported bundle; it serves decisions through the runtime.
    exported = report["extra"]["safety_net"]["exported"]
    served = allocator.load(run / "bundle")
    assert served.policy_kind == {"learned": "network", "baseline": "baseline"}[exported]
    session = served.session(lambda_=0.01)
    assert session.next_action().kind in {"stop", "sample", "verify"}


def test_the_demo_refuses_a_folder_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ParameterError, match=MARKER):
        run_demo(tmp_path, timesteps=1)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    with pytest.raises(ParameterError, match="a folder"):
        run_demo(tmp_path / "notes.txt", timesteps=1)


def test_best_baseline_is_the_cheapest_deployable_reaching_the_target() -> None:
    def point(deployable: bool) -> dict:
        return {"deployable": deployable}

    report = {"policies": {"fixed-n": [point(True)], "esc": [point(True)],
                           "learned": [point(True)], "query-oracle": [point(False)],
                           "difficulty-binned": [point(True)]},
              "headline": {"cost_to_reach": {"fixed-n": 9.0, "esc": 7.5, "learned": 2.0,
                                             "query-oracle": 1.0,
                                             "difficulty-binned": None}}}
    assert best_baseline(report) == ("esc", 7.5)
    report["headline"]["cost_to_reach"] = {"fixed-n": None, "esc": None}
    assert best_baseline(report) == (None, None)


def test_the_verdict_compares_with_the_best_baseline_by_hand() -> None:
    def points(*pairs: tuple[float, float], deployable: bool = True) -> list[dict]:
        return [{"value": i, "mean_cost": c, "accuracy": a, "deployable": deployable}
                for i, (c, a) in enumerate(pairs)]

    report = {"policies": {"learned": points((1.0, 0.5), (7.0, 0.717), (60.0, 0.723)),
                           "fixed-n": points((20.0, 0.68), (60.0, 0.718), (64.0, 0.731)),
                           "query-oracle": points((5.0, 0.9), deployable=False)},
              "headline": {"target_accuracy": 0.727,
                           "cost_to_reach": {"learned": None, "fixed-n": 63.0,
                                             "query-oracle": 5.0}}}
    text = _verdict(report)
    assert "does not reach it (its best: 0.723)" in text and "(fixed-n) does at " \
        "mean cost 63.00" in text
    # fixed-n reaches 0.717 between (20, 0.68) and (60, 0.718): 20 + 40 * 37 / 38
    assert "reaches 0.717 at mean cost 7.00; the baselines need 58.95" in text
    report["headline"]["cost_to_reach"]["learned"] = 21.0
    assert "at mean cost 21.00, the best baseline (fixed-n) at 63.00: 3.00x cheaper" in \
        _verdict(report)
