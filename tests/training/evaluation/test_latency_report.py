"""Latency in the evaluator: per-episode latency on timed logs, p50/p95 in the points,
a latency column in the text report, wide policies replayed with their widths."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
from rich.console import Console

from allocator.logs import AttemptLog
from allocator.logs.synthetic import SyntheticArm, SyntheticConfig, generate
from allocator.policies.base import Policy
from allocator.training.evaluation.evaluate import EvaluationConfig, evaluate
from allocator.training.evaluation.replay import ReplayEvaluator
from allocator.training.evaluation.report import report_table
from allocator.training.evaluation.statistics import policy_point
from tests.timed_logs import with_timing

POOL = 6


@pytest.fixture(scope="module")
def untimed() -> AttemptLog:
    arm = SyntheticArm("solo", skill=0.6, cost_per_attempt=2.0, pool_size=POOL)
    return generate(SyntheticConfig(n_queries=40, arms=(arm,)), seed=7)


@pytest.fixture(scope="module")
def timed(untimed: AttemptLog) -> AttemptLog:
    return with_timing(untimed, seed=2)


@dataclass(frozen=True)
class SampleAll(Policy):
    """Sample the only arm ``width`` at a time while the mask allows, then stop."""

    name: ClassVar[str] = "test-sample-all"
    width: int = 1

    @property
    def widths(self) -> tuple[int, ...]:
        return (1,) if self.width == 1 else (1, self.width)

    def act(self, state, mask: np.ndarray) -> np.ndarray:
        action = 1 if self.width == 1 else 4  # SAMPLE, or SAMPLE×width (one arm)
        return np.where(mask[:, action], action, 0)


def durations(log: AttemptLog) -> list[np.ndarray]:
    """Each query's sample durations."""
    return [log.duration[log.pool(q)] for q in range(log.n_queries)]


def test_sampling_everything_one_at_a_time_lasts_the_sum_of_durations(
        timed: AttemptLog) -> None:
    results = ReplayEvaluator(timed, n_orders=3, seed=1).run(SampleAll())
    expected = np.array([d.sum() for d in durations(timed)])
    assert results.latency is not None and results.latency.shape == (timed.n_queries, 3)
    np.testing.assert_allclose(results.latency, np.repeat(expected[:, None], 3, axis=1),
                               rtol=1e-12)


def test_waves_of_the_whole_pool_last_their_longest_call(timed: AttemptLog) -> None:
    """Widths (1, 6) on pools of 6: one wave, as long as the query's slowest sample; the
    same correctness and cost as six single samples, on the same episodes."""
    evaluator = ReplayEvaluator(timed, n_orders=2, seed=1)
    wide, single = evaluator.run(SampleAll(width=POOL)), evaluator.run(SampleAll())
    expected = np.array([d.max() for d in durations(timed)])
    np.testing.assert_allclose(wide.latency, np.repeat(expected[:, None], 2, axis=1))
    np.testing.assert_allclose(wide.cost, single.cost, rtol=1e-12)
    np.testing.assert_array_equal(wide.correct, single.correct)


def test_points_summarise_latency_and_untimed_logs_have_none(
        timed: AttemptLog, untimed: AttemptLog) -> None:
    results = ReplayEvaluator(timed, n_orders=4, seed=0).run(SampleAll())
    point = policy_point(results, policy="p", knob=None, value=None, deployable=True,
                         n_bootstrap=50)
    assert point.mean_latency == pytest.approx(float(results.latency.mean()))
    assert point.p50_latency == pytest.approx(float(np.percentile(results.latency, 50)))
    assert point.p95_latency == pytest.approx(float(np.percentile(results.latency, 95)))
    low, high = point.mean_latency_ci
    assert low <= point.mean_latency <= high
    assert {"mean_latency", "p50_latency", "p95_latency"} <= set(point.to_dict())
    bare = ReplayEvaluator(untimed, n_orders=2).run(SampleAll())
    assert bare.latency is None  # unavailable, not 0
    bare_point = policy_point(bare, policy="p", knob=None, value=None, deployable=True,
                              n_bootstrap=10)
    assert bare_point.mean_latency is None and "mean_latency" not in bare_point.to_dict()


def _table_text(report) -> str:
    console = Console(width=250, record=True)
    console.print(report_table(report))
    return console.export_text()


@pytest.mark.parametrize("is_timed", [True, False])
def test_evaluate_reports_latency_only_on_timed_logs(timed: AttemptLog, untimed: AttemptLog,
                                                     is_timed: bool) -> None:
    log = timed if is_timed else untimed
    config = EvaluationConfig(policies=("fixed-n", "adaptive-consistency"), n_orders=2,
                              n_bootstrap=20, difficulty=False, oracles=True)
    report, _ = evaluate(log, config)
    payload = report.to_dict()
    fixed = payload["policies"]["fixed-n"]
    assert all(("p95_latency" in p) == is_timed for p in fixed)
    assert all("mean_latency" not in p for p in payload["policies"]["oracle"])
    assert ("latency s" in _table_text(report)) == is_timed
    assert payload["log"]["latency"].startswith("seconds" if is_timed else "unavailable")
    if is_timed:
        for point in fixed:  # fixed-n(n): n single waves, each at least the fastest row
            fastest = min(d.min() for d in durations(log))
            assert point["p50_latency"] >= min(point["value"], POOL) * fastest - 1e-9


@pytest.mark.parametrize("n", [1, 3, POOL])
def test_parallel_n_is_replayed_as_one_wave_of_n(timed: AttemptLog, n: int) -> None:
    """The registered parallel-n baseline is replayed in its own layout (1, n): fixed-N's
    correctness and cost, with the latency of one wave (the longest of its n calls)."""
    from allocator.policies import make_policy
    from allocator.training.evaluation.replay import policy_widths

    wide, fixed = make_policy("parallel-n", n=n), make_policy("fixed-n", n=n)
    assert policy_widths(wide) == ((1,) if n == 1 else (1, n))
    evaluator = ReplayEvaluator(timed, n_orders=2, seed=3)
    waves, sequential = evaluator.run(wide), evaluator.run(fixed)
    np.testing.assert_array_equal(waves.correct, sequential.correct)
    np.testing.assert_allclose(waves.cost, sequential.cost, rtol=1e-12)
    if n == POOL:  # the whole pool in one wave: its slowest call, whatever the order
        expected = np.array([d.max() for d in durations(timed)])
        np.testing.assert_allclose(waves.latency, np.repeat(expected[:, None], 2, axis=1))
    if n == 1:
        np.testing.assert_allclose(waves.latency, sequential.latency)
    else:
        assert (waves.latency <= sequential.latency + 1e-12).all()
        assert (waves.latency < sequential.latency).any()
