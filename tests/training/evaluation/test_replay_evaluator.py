"""The replay evaluator, the oracles and the evaluate orchestration."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from allocator.errors import ParameterError
from allocator.logs import AttemptLog, read_log, write_log
from allocator.logs.synthetic import SyntheticConfig, generate
from allocator.policies import make_policy
from allocator.policies.base import Policy
from allocator.training.evaluation.evaluate import EvaluationConfig, evaluate, split_queries
from allocator.training.evaluation.oracles import (
    default_lambdas,
    hindsight_oracle,
    hindsight_values,
    query_oracle,
)
from allocator.training.evaluation.replay import ReplayEvaluator
from allocator.training.evaluation.statistics import bootstrap_mean_ci, paired_difference


@pytest.fixture(scope="module")
def synthetic() -> AttemptLog:
    return generate(SyntheticConfig(n_queries=120), seed=5)


@pytest.fixture(scope="module")
def date_log(public_logs: Path, tmp_path_factory: pytest.TempPathFactory) -> AttemptLog:
    from allocator.converters import convert

    log, _ = convert(public_logs / "mot_cascade" / "raw", "mot-cascade", tasks="date",
                     models="gpt-3.5-turbo", configs="cot1_40")
    path = tmp_path_factory.mktemp("date") / "date.parquet"
    write_log(log, path)
    return read_log(path)


def _brute_force_majority(log: AttemptLog, query: int, arm: int, k: int,
                          rng: np.random.Generator, orders: int) -> float:
    """Majority@k of one query by explicit shuffles, written independently of the env."""
    rows = np.arange(*log.offsets[query: query + 2])
    rows = rows[(log.arm[rows] == arm) & (log.kind[rows] == 0)]
    total = 0.0
    for _ in range(orders):
        drawn = rng.permutation(rows)[:k]
        answers = [a for a in log.answer[drawn] if a >= 0]
        if not answers:
            continue
        values, counts = np.unique(answers, return_counts=True)
        leaders = values[counts == counts.max()]
        total += np.mean([log.correct[drawn][log.answer[drawn] == a].mean() for a in leaders])
    return total / orders


def test_fixed_n_runs_equal_the_curves_on_the_same_orders(synthetic: AttemptLog) -> None:
    evaluator = ReplayEvaluator(synthetic, n_orders=6, seed=3)
    arm = synthetic.arms.index("small")
    curves = evaluator.fixed_n_curves(arm)
    for n in (1, 2, 5, 16):
        results = evaluator.run(make_policy("fixed-n", n=n, arm=arm))
        np.testing.assert_allclose(results.correct, curves.correct[:, :, n])
        np.testing.assert_allclose(results.cost, curves.cost[:, :, n])
        assert np.all(results.samples == n)


def test_replayed_majority_matches_an_independent_shuffle(synthetic: AttemptLog) -> None:
    evaluator = ReplayEvaluator(synthetic, n_orders=200, seed=0)
    arm = synthetic.arms.index("small")
    curves = evaluator.fixed_n_curves(arm)
    rng = np.random.default_rng(1)
    for k in (1, 3, 8):
        replayed = curves.correct[:, :, k].mean(axis=1)
        expected = np.array([_brute_force_majority(synthetic, q, arm, k, rng, 200)
                             for q in range(synthetic.n_queries)])
        # 200 + 200 orders per query: the per-query gap is noise; its mean is tiny.
        assert abs(replayed.mean() - expected.mean()) < 0.01
        assert np.corrcoef(replayed, expected)[0, 1] > 0.97


class _VerifyEveryDraw:
    """Samples every arm until its pool runs dry, verifying after every draw."""

    name = "verify-every-draw"

    def act(self, state, mask):
        from allocator.actions import STOP, sample_action, verify_action

        arms = state.samples.shape[1]
        action = np.full(len(mask), STOP)
        for arm in reversed(range(arms)):
            action = np.where(mask[:, sample_action(arm)], sample_action(arm), action)
        return np.where(mask[:, verify_action(arms)], verify_action(arms), action)

    def describe(self) -> str:
        return self.name


def test_a_policy_that_verifies_every_draw_replays_to_the_end() -> None:
    """Episodes of 2 decisions per candidate (draw, verify) are not cut short."""
    log = generate(SyntheticConfig(n_queries=20, with_scores=True), seed=1)
    results = ReplayEvaluator(log, n_orders=2, seed=0).run(_VerifyEveryDraw())
    pool = np.bincount(log.attempt_query, minlength=log.n_queries)  # every candidate
    np.testing.assert_array_equal(results.samples, np.repeat(pool[:, None], 2, axis=1))


def test_same_seed_same_results_and_restore_equals_fresh(synthetic: AttemptLog) -> None:
    policy = make_policy("adaptive-consistency", threshold=0.9, arm=1)
    first = ReplayEvaluator(synthetic, n_orders=4, seed=9)
    a = first.run(policy)
    first.run(make_policy("fixed-n", n=3))  # a different policy in between
    b = first.run(policy)
    c = ReplayEvaluator(synthetic, n_orders=4, seed=9).run(policy)
    d = ReplayEvaluator(synthetic, n_orders=4, seed=10).run(policy)
    for other in (b, c):
        np.testing.assert_array_equal(a.correct, other.correct)
        np.testing.assert_array_equal(a.cost, other.cost)
    assert not np.array_equal(a.cost, d.cost)


def test_oracles_bound_every_fixed_n(synthetic: AttemptLog) -> None:
    evaluator = ReplayEvaluator(synthetic, np.arange(30), n_orders=4, seed=2)
    curves = [evaluator.fixed_n_curves(a) for a in range(len(synthetic.arms))]
    lambdas = default_lambdas(curves, n=6)
    hindsight = hindsight_values(evaluator, lambdas)
    fit = query_oracle(evaluator, lambdas, max_states=2_000, hindsight=hindsight)
    for k, lam in enumerate(lambdas):
        q, h = fit.results(k), hindsight_oracle(hindsight, lambdas, k)
        # Hindsight bounds every fixed (arm, N) episode by episode; the query oracle beats
        # the best fixed (arm, N) per query in expectation (up to the orders' sampling).
        for c in curves:
            value = c.correct - lam * c.cost
            assert np.all((h.correct - lam * h.cost)[..., None] >= value - 1e-9)
            per_query = value.mean(axis=1).max(axis=1)
            se = value.std(axis=1).max(axis=1) / np.sqrt(value.shape[1])
            assert np.all((q.correct - lam * q.cost).mean(axis=1) >= per_query - 4 * se - 1e-9)


def test_bootstrap_intervals_and_paired_differences() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(0.5, 0.2, size=400)
    low, high = bootstrap_mean_ci(values, seed=1)
    se = values.std(ddof=1) / np.sqrt(len(values))
    assert low < values.mean() < high
    assert (high - low) == pytest.approx(2 * 1.96 * se, rel=0.15)
    from allocator.training.evaluation.results import EpisodeResults

    shape = (50, 3)
    a = EpisodeResults("a", rng.random(shape), np.ones(shape), np.ones(shape),
                       np.zeros(shape, bool))
    difference, (lo, hi) = paired_difference(a, a)
    assert difference == 0.0 and lo == 0.0 and hi == 0.0


def test_split_is_by_query_seeded_and_disjoint() -> None:
    train, test = split_queries(101, 0.3, seed=4)
    assert len(test) == 30 and len(train) == 71
    assert not set(train) & set(test)
    again = split_queries(101, 0.3, seed=4)
    assert np.array_equal(train, again[0]) and np.array_equal(test, again[1])
    assert not np.array_equal(test, split_queries(101, 0.3, seed=5)[1])


@pytest.mark.slow
def test_evaluate_is_deterministic_and_complete(synthetic: AttemptLog) -> None:
    config = EvaluationConfig(n_orders=4, n_bootstrap=200, seed=1)
    report, results = evaluate(synthetic, config)
    again, _ = evaluate(synthetic, config)
    assert json.dumps(report.to_dict(), default=str) == json.dumps(again.to_dict(), default=str)
    skipped = report.extra.get("skipped", {})
    assert set(report.points) | set(skipped) >= {*config.policies, "oracle", "query-oracle"}
    assert not set(report.points) & set(skipped)
    assert {"fixed-n", "adaptive-consistency", "esc"} <= set(report.points)
    for name, points in report.points.items():
        assert points, name
        for point in points:
            assert point.accuracy_ci[0] <= point.accuracy <= point.accuracy_ci[1]
            assert point.mean_cost_ci[0] <= point.mean_cost <= point.mean_cost_ci[1]
            low, high = point.mean_samples_ci
            assert low - 1e-12 <= point.mean_samples <= high + 1e-12
            low, high = point.exhaustion_rate_ci
            assert 0 <= low <= point.exhaustion_rate <= high <= 1
    assert report.log["simulated"] is True
    assert "difficulty" in report.extra
    assert set(results) >= {"adaptive-consistency", "fixed-n"}


@pytest.mark.public_logs
def test_adaptive_consistency_saves_cost_on_the_date_log(date_log: AttemptLog) -> None:
    """The published finding, reproduced: AC reaches majority-of-all accuracy with far
    fewer samples than fixed-N (Aggarwal et al. report 3-7x on such tasks)."""
    config = EvaluationConfig(policies=("fixed-n", "adaptive-consistency"), n_orders=10,
                              n_bootstrap=200, difficulty=False)
    report, _ = evaluate(date_log, config)
    headline = report.headline
    assert headline.target_accuracy == pytest.approx(max(
        p.accuracy for name in ("fixed-n", "adaptive-consistency")
        for p in report.points[name]))
    fixed_cost = headline.cost_to_reach["fixed-n"]
    assert fixed_cost / headline.cost_to_reach["adaptive-consistency"] > 2.0
    ac = next(p for p in report.points["adaptive-consistency"] if p.value == 0.95)
    assert ac.mean_samples < 12


def test_an_unknown_arm_is_a_parameter_error_naming_the_arms(synthetic: AttemptLog) -> None:
    with pytest.raises(ParameterError, match=r"arm.*one of the log's arms \['large', 'small'\]"):
        evaluate(synthetic, EvaluationConfig(arm="unknown", difficulty=False, n_orders=2))


# ------------------------------------------------------------------ the step bound (issue 14)
def _verifier_log(n_queries: int = 4, pool: int = 100) -> AttemptLog:
    """One arm, ``pool`` scored samples per query (a verifier log with large pools)."""
    import pyarrow as pa

    rng = np.random.default_rng(0)
    rows = n_queries * pool
    table = pa.table({
        "query_id": pa.array([f"q{i // pool}" for i in range(rows)], pa.string()),
        "arm": pa.array(["only"] * rows, pa.string()),
        "kind": pa.array(["sample"] * rows, pa.string()),
        "round": pa.array([0] * rows, pa.int32()),
        "answer": pa.array([str(a) for a in rng.integers(0, 5, rows)], pa.string()),
        "correct": pa.array(rng.integers(0, 2, rows).astype(np.float32), pa.float32()),
        "cost": pa.array(np.ones(rows), pa.float64()),
        "score": pa.array(rng.random(rows).astype(np.float32), pa.float32())})
    log, _ = AttemptLog.from_arrow(table)
    return log


@dataclass(frozen=True)
class VerifyEverySample(Policy):
    """Verify after every sample, sample while the pool lasts: the longest episodes."""

    name: ClassVar[str] = "test-verify-every-sample"

    def act(self, state, mask: np.ndarray) -> np.ndarray:
        verify, sample = mask.shape[1] - 1, 1
        return np.where(mask[:, verify], verify, np.where(mask[:, sample], sample, 0))


def test_episodes_as_long_as_the_env_allows_are_replayed() -> None:
    """2 steps per candidate (SAMPLE, VERIFY) and a STOP: 201 steps on pools of 100; the
    old bound (pool + 8 = 108) refused the policy after training had finished."""
    evaluator = ReplayEvaluator(_verifier_log(), n_orders=2, seed=0)
    assert evaluator.max_steps == 201
    results = evaluator.run(VerifyEverySample())
    assert (results.samples == 100).all() and results.exhausted.all()
    assert (results.cost == 100).all()  # the samples' costs (verifying is free here)


def test_verify_cost_is_read_from_the_logs_verify_rows() -> None:
    import pyarrow as pa

    from allocator.training.evaluation.evaluate import log_verify_cost

    def log_of(kinds: list[str], costs: list[float]) -> AttemptLog:
        n = len(kinds)
        table = pa.table({
            "query_id": pa.array(["q"] * n), "arm": pa.array(["a"] * n),
            "kind": pa.array(kinds), "answer": pa.array(["x"] * n),
            "correct": pa.array([1.0] * n, pa.float32()),
            "cost": pa.array(costs, pa.float64())})
        return AttemptLog.from_arrow(table)[0]

    # two verdicts costing 3 and 5 per verified candidate; samples cost 100 each
    assert log_verify_cost(log_of(["sample", "sample", "verify", "verify"],
                                  [100.0, 100.0, 3.0, 5.0])) == pytest.approx(4.0)
    assert log_verify_cost(log_of(["sample"], [100.0])) == 0.0
