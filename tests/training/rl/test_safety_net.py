"""The safety net of ``allocator train``: the validation split, the decision rule on
hand-made fronts, and the export of a baseline bundle where the learned policy loses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

import allocator
from allocator.actions import n_actions
from allocator.bundle import write_bundle
from allocator.errors import ParameterError
from allocator.featurizer import n_features
from allocator.logs import write_log
from allocator.logs.synthetic import SyntheticConfig, generate
from allocator.training.rl.calibrate import validation_split
from allocator.training.rl.config import TrainConfig
from allocator.training.rl.safety_net import (
    Candidate,
    accuracy_at,
    choose,
    compare_on_validation,
    cost_to_reach,
    critical_z,
    front,
    shortfall,
)


def points(policy: str, *pairs: tuple[float, float], stderr: float = 0.0) -> list[Candidate]:
    return [Candidate(policy, f"{policy}@{cost}", accuracy, cost, stderr)
            for cost, accuracy in pairs]


# ------------------------------------------------------------------ the front helpers
def test_interpolation_and_cost_to_reach_by_hand() -> None:
    curve = points("b", (1.0, 0.5), (3.0, 0.7), (2.0, 0.4), (5.0, 0.9))  # (2, .4) dominated
    assert accuracy_at(curve, 2.0) == pytest.approx(0.6)
    assert accuracy_at(curve, 0.5) is None and accuracy_at(curve, 6.0) is None
    assert cost_to_reach(curve, 0.8) == pytest.approx(4.0)
    assert cost_to_reach(curve, 0.3) == 1.0 and cost_to_reach(curve, 0.95) is None


# ------------------------------------------------------------------ the rule
CASES = {
    "learned cheaper everywhere": (
        points("learned", (1, 0.7), (3, 0.85)),
        points("b", (2, 0.7), (4, 0.85), stderr=0.001), "learned", None),
    "learned below the envelope beyond noise": (
        points("learned", (1, 0.5), (3, 0.9)),
        points("b", (1, 0.7), (2, 0.8), (4, 0.85), stderr=0.001), "baseline", "below"),
    "learned below within noise": (
        points("learned", (1, 0.65), (3, 0.9)),
        points("b", (1, 0.7), (4, 0.85), stderr=0.05), "learned", None),
    "learned never reaches the target": (
        points("learned", (1, 0.7), (2, 0.75)),
        points("b", (1, 0.7), (4, 0.85), stderr=0.001), "baseline", "does not reach"),
    "learned reaches at more cost, beyond noise": (
        points("learned", (1, 0.7), (6, 0.85)),
        points("b", (1, 0.7), (4, 0.85), stderr=0.001), "baseline", "below"),
    "learned reaches at more cost, within noise": (
        points("learned", (1, 0.7), (6, 0.85)),
        points("b", (1, 0.7), (4, 0.85), stderr=0.05), "learned", None),
    "a baseline cheaper than every learned point and better": (
        points("learned", (2, 0.6), (6, 0.85)),
        points("b", (1, 0.7), (6, 0.85), stderr=0.001), "baseline", "below"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_rule_on_hand_made_fronts(case: str) -> None:
    learned, baselines, exported, why = CASES[case]
    decision = choose(learned, baselines)
    assert decision.exported == exported, decision.reason
    assert decision.target_accuracy == max(p.accuracy for p in baselines)
    assert decision.margin == pytest.approx(1.96 * baselines[0].stderr)
    if why is not None:
        assert why in decision.reason
    assert decision.reason.startswith(f"exported the {exported}")


def test_the_exported_baseline_is_the_cheapest_setting_reaching_the_target() -> None:
    """On random fronts: the chosen point reaches target - margin, and no baseline point
    that does is cheaper (brute force over every point)."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        baselines = [Candidate("b", f"s{i}", float(a), float(c), float(rng.uniform(0, 0.03)))
                     for i, (c, a) in enumerate(zip(rng.uniform(1, 10, 12),
                                                    rng.uniform(0.3, 0.9, 12), strict=True))]
        learned = points("learned", *zip(rng.uniform(1, 10, 4), rng.uniform(0.3, 0.95, 4),
                                         strict=True))
        decision = choose(learned, baselines)
        goal = decision.target_accuracy - decision.margin
        reaching = [p for p in baselines if p.accuracy >= goal]
        assert decision.baseline in reaching
        assert decision.baseline.mean_cost == min(p.mean_cost for p in reaching)
        learned_front = front(learned)
        tested = [point for point in front(baselines)
                  if point.mean_cost <= learned_front[-1].mean_cost]
        # Bonferroni over the points tested, one-sided at 2.5% / k each (scipy's quantile)
        z = float(norm.ppf(1 - 0.025 / max(1, len(tested))))
        evidence = []
        for point in tested:  # brute force: the learned front at each point's cost
            at = (learned_front[0].accuracy if point.mean_cost <= learned_front[0].mean_cost
                  else accuracy_at(learned, point.mean_cost))
            if point.accuracy - at > z * point.stderr + 1e-6:
                evidence.append(point)
        reaches = max(p.accuracy for p in learned) >= goal
        assert decision.exported == ("learned" if reaches and not evidence else "baseline")
        assert (decision.below is None) == (not evidence)


def test_the_margin_is_the_paired_difference_where_per_query_results_exist() -> None:
    rng = np.random.default_rng(2)
    top_q = rng.integers(0, 2, 40).astype(float)
    learned_q = top_q.copy()
    learned_q[:3] = 1 - learned_q[:3]  # three queries differ
    top = Candidate("b", "top", top_q.mean(), 5.0, top_q.std(ddof=1) / np.sqrt(40),
                    tuple(top_q))
    learned = [Candidate("learned", "l", learned_q.mean(), 4.0, 0.0, tuple(learned_q)),
               Candidate("learned", "cheap", 0.1, 1.0, 0.0, tuple(np.zeros(40)))]
    difference = learned_q - top_q
    expected = 1.96 * difference.std(ddof=1) / np.sqrt(40)
    decision = choose(learned, [top])
    assert decision.margin == pytest.approx(expected) and expected < 1.96 * top.stderr
    # Without per-query results: the target's own standard error.
    bare = [Candidate("learned", "l", learned_q.mean(), 4.0)]
    assert choose(bare, [top]).margin == pytest.approx(1.96 * top.stderr)
    assert "per_query" not in json.dumps(decision.to_dict())


@pytest.mark.parametrize(("n_queries", "exported"), [(40, "learned"), (4000, "baseline")])
def test_a_cost_gap_counts_only_beyond_the_noise_of_the_validation_split(
        n_queries: int, exported: str) -> None:
    """A baseline reaching the target at a quarter of the learned policy's cost, with the
    learned front 8 points below it at that cost: evidence on 4,000 validation queries,
    noise on 40 (the date cascade's case: 46 queries decided against the better policy)."""
    rng = np.random.default_rng(5)
    cheap_q = (rng.random(n_queries) < 0.84).astype(float)
    learned_low_q = np.where(rng.random(n_queries) < 0.9, cheap_q, 1 - cheap_q)
    learned_low_q[: int(0.08 * n_queries)] = 0.0  # the learned policy's cheap point is worse
    learned_high_q = (rng.random(n_queries) < 0.86).astype(float)
    top_q = (rng.random(n_queries) < 0.86).astype(float)

    def point(policy: str, q: np.ndarray, cost: float) -> Candidate:
        return Candidate(policy, f"{policy}@{cost}", float(q.mean()), cost,
                         float(q.std(ddof=1) / np.sqrt(len(q))), tuple(q.tolist()))

    learned = [point("learned", learned_low_q, 1.0), point("learned", learned_high_q, 8.0)]
    baselines = [point("b", cheap_q, 2.0), point("b", top_q, 9.0)]
    decision = choose(learned, baselines)
    gap, half_width = shortfall(learned, baselines[0])
    at = learned_low_q + (learned_high_q - learned_low_q) / 7  # the mix at cost 2, by hand
    assert gap == pytest.approx(cheap_q.mean() - at.mean())
    assert half_width == pytest.approx(
        1.96 * (cheap_q - at).std(ddof=1) / np.sqrt(n_queries))
    assert decision.exported == exported, decision.reason
    assert (decision.below == baselines[0]) == (exported == "baseline")


def test_no_baseline_is_an_error() -> None:
    with pytest.raises(ParameterError, match="baseline"):
        choose(points("learned", (1, 0.5)), [])


# ------------------------------------------------------------------ on a real replay
def scripted_bundle(path: Path, arms: tuple[str, ...], preference: dict[int, float]) -> Path:
    """A real bundle whose network ignores its input: among the allowed actions it takes
    the one with the highest ``preference`` (action index -> bias; others 0)."""
    width, actions = n_features(len(arms)), n_actions(len(arms))
    bias = np.zeros(actions, np.float32)
    for action, value in preference.items():
        bias[action] = value
    weights = {"action_net.weight": np.zeros((actions, width), np.float32),
               "action_net.bias": bias}
    network = {"kind": "mlp", "layers": [{"weight": "action_net.weight",
                                          "bias": "action_net.bias",
                                          "shape": [actions, width], "activation": None}]}
    return write_bundle(path, weights=weights, manifest={
        "arms": list(arms), "lambda_range": [0.001, 0.3], "cost_unit": 1.0,
        "network": network, "normalization": None, "run_id": None,
        "log_fingerprint": "x"})


def stop_at_once_bundle(path: Path, arms: tuple[str, ...]) -> Path:
    """A real bundle whose network always prefers STOP: it never answers."""
    return scripted_bundle(path, arms, {0: 10.0})


def test_a_policy_that_never_answers_loses_to_a_baseline(tmp_path: Path) -> None:
    log = generate(SyntheticConfig(n_queries=60), seed=1)
    bundle = stop_at_once_bundle(tmp_path / "bundle", log.arms)
    train = np.arange(40)  # the last 20 queries play the test queries: never passed
    fit, validation = validation_split(train, seed=0, fraction=0.25)
    prior = np.full((log.n_queries, len(log.arms)), 0.5)
    decision, policy = compare_on_validation(log, fit, validation, prior, str(bundle),
                                             (0.001, 0.1), n_orders=2, seed=0)
    assert decision.exported == "baseline" and decision.validation_queries == 10
    assert all(p.accuracy == 0.0 and p.mean_cost == 0.0 for p in decision.learned)
    assert decision.learned_cost_to_reach is None
    assert policy.describe() == decision.baseline.setting
    assert decision.baseline.accuracy >= decision.target_accuracy - decision.margin
    assert decision.baseline in decision.envelope
    # Only the baselines that need verifier scores, tournaments, refinements or call
    # times are skipped on this unscored, untimed log.
    from allocator.training.evaluation.baseline_sweeps import NO_TIMES
    from allocator.training.evaluation.baselines_schedules import NO_EVENTS, NO_REFINEMENTS

    assert set(decision.skipped.values()) <= {"the log has no verifier scores", NO_EVENTS,
                                              NO_REFINEMENTS, NO_TIMES}


def verify_everything_bundle(path: Path, arms: tuple[str, ...]) -> Path:
    """A real bundle that prefers VERIFY, then sampling the first arm, then STOP: it
    verifies every sample it draws."""
    from allocator.actions import verify_action

    return scripted_bundle(path, arms, {verify_action(len(arms)): 3.0, 1: 2.0, 0: 1.0})


def test_every_validation_replay_pays_the_verify_cost(tmp_path: Path) -> None:
    """VERIFY costs in the safety net what it costs in training: a policy that verifies
    each of its samples pays the price once per sample (at least one per query)."""
    log = generate(SyntheticConfig(n_queries=60, with_scores=True), seed=1)
    bundle = verify_everything_bundle(tmp_path / "bundle", log.arms)
    fit, validation = validation_split(np.arange(40), seed=0, fraction=0.25)
    prior = np.full((log.n_queries, len(log.arms)), 0.5)

    def learned_cost(verify_cost: float) -> float:
        decision, _ = compare_on_validation(log, fit, validation, prior, str(bundle),
                                            (0.001,), n_orders=2, seed=0,
                                            verify_cost=verify_cost)
        return decision.learned[0].mean_cost

    assert learned_cost(5.0) >= learned_cost(0.0) + 5.0


TINY = TrainConfig(n_envs=64, n_steps=16, batch_size=512, n_orders=3, n_bootstrap=200,
                   checkpoint_every=2048, eval_lambdas=(0.001, 0.01, 0.1),
                   total_timesteps=4096)


@pytest.mark.slow
@pytest.mark.parametrize("safety_net", [True, False])
def test_train_exports_what_the_safety_net_chose(tmp_path: Path, safety_net: bool) -> None:
    from allocator.training.rl.pipeline import run_training

    log_path = write_log(generate(SyntheticConfig(n_queries=120), seed=0),
                         tmp_path / "log.parquet")
    # Without the safety net nor the calibration, nothing is held out for validation.
    summary = run_training(log_path, tmp_path / "run", TINY.replace(safety_net=safety_net),
                           mlflow=False, calibrate=safety_net)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    training = report["extra"]["training"]
    assert report["policies"]["learned"], "the held-out evaluation reports the learned policy"
    assert report["policies"]["fixed-n"]
    oracle = allocator.load(summary["bundle"])
    if not safety_net:
        assert summary["safety_net"] is None and "safety_net" not in report["extra"]
        assert training["fit_queries"] == training["train_queries"] == 60
        assert oracle.policy_kind == "network" and training["exported"] == "learned"
        assert not (tmp_path / "run" / "learned-bundle").exists()
        return
    decision = report["extra"]["safety_net"]
    assert training["fit_queries"] + training["validation_queries"] == 60
    assert decision["validation_queries"] == 15 and training["exported"] == decision[
        "exported"]
    if decision["exported"] == "baseline":
        assert oracle.policy_kind == "baseline"
        assert oracle.policy.describe() == decision["baseline"]["setting"]
        learned = allocator.load(tmp_path / "run" / "learned-bundle")
        assert learned.policy_kind == "network"
        assert summary["learned_bundle"] == str(tmp_path / "run" / "learned-bundle")
    else:
        assert oracle.policy_kind == "network" and summary["learned_bundle"] == summary[
            "bundle"]


@pytest.mark.parametrize("tests", [1, 2, 10, 30])
def test_critical_z_holds_the_family_at_the_level_of_one_test(tests: int) -> None:
    """k independent one-sided tests at critical_z(k): the chance that any fires under the
    null is at most 2.5% (exactly 1 - (1 - 0.025/k)^k), and one test gets the usual 1.96."""
    z = critical_z(tests)
    single = float(norm.sf(z))
    assert single == pytest.approx(0.025 / tests, rel=1e-9)
    assert 1 - (1 - single) ** tests <= 0.025 + 1e-12
    if tests == 1:
        assert z == pytest.approx(1.959964, abs=1e-6)


def test_one_noisy_deficit_among_many_points_is_not_evidence() -> None:
    """Twenty baseline points; the learned front equals them except 2.2 standard errors
    below one: evidence for a single test (1.96), not for the family (critical_z(20))."""
    baselines = [Candidate("b", f"s{i}", 0.3 + 0.03 * i, 1.0 + i, 0.01) for i in range(20)]
    learned = [Candidate("learned", f"l{i}", p.accuracy - (0.022 if i == 7 else 0.0),
                         p.mean_cost) for i, p in enumerate(baselines)]
    assert choose(learned, baselines).exported == "learned"
    assert shortfall(learned, baselines[7])[0] > 1.96 * 0.01
    lower = [Candidate("learned", f"l{i}", p.accuracy - 0.05, p.mean_cost)
             for i, p in enumerate(baselines)]  # 5 standard errors everywhere: evidence
    assert choose(lower, baselines).exported == "baseline"
