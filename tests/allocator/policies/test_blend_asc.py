"""blend-asc: its statistic in closed form, its calibration against replay, its knob."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from policy_states import one_arm_log, run_episode
from scipy.special import betaln

from allocator.actions import STOP, sample_action
from allocator.envs.pools import ReplayPools
from allocator.logs.synthetic import SyntheticArm, SyntheticConfig, generate
from allocator.policies import BlendASC
from allocator.policies.blend_asc import blend_table, calibrate, threshold_for
from allocator.policies.self_consistency import beta_stop_probability
from allocator.training.evaluation.replay import ReplayEvaluator


@pytest.mark.parametrize(("a", "b", "asc_error", "ppr_error"), [
    (1, 0, 1 / 4, 1.0),            # one vote: AC's 0.75; PPR ratio 2 * B(2, 1) = 1
    (2, 0, 1 / 8, 3 / 4),          # R = 4 * B(3, 1) = 4/3
    (3, 0, 1 / 16, 1 / 2),         # R = 8 * B(4, 1) = 2
    (2, 1, 5 / 16, 1.0),           # R = 8 * B(3, 2) = 2/3 < 1
    (5, 1, 8 / 128, 42 / 64),      # R = 64 * B(6, 2) = 64 / 42
])
def test_the_statistic_in_closed_form(a: int, b: int, asc_error: float,
                                      ppr_error: float) -> None:
    expected = 0.5 * (math.log(asc_error) + math.log(ppr_error))
    assert blend_table(40)[a, b] == pytest.approx(expected, rel=1e-12)


def test_the_asc_half_is_adaptive_consistency_and_the_ppr_half_scipy() -> None:
    a, b = np.meshgrid(np.arange(31), np.arange(31), indexing="ij")
    keep = b <= a
    a, b = a[keep], b[keep]
    asc = np.log1p(-beta_stop_probability(a, b))  # the reference package's integrals
    ppr = np.minimum(0.0, -((a + b) * math.log(2) + betaln(a + 1, b + 1)))
    fine = np.isfinite(asc)  # 1 - P underflows to 0 for the most lopsided counts
    # The reference's integrals are within 1e-8 of the exact tail: relative 1e-5 in logs.
    np.testing.assert_allclose(blend_table(30)[a, b][fine], (0.5 * (asc + ppr))[fine],
                               rtol=1e-5)


def test_stopping_points_on_hand_made_sequences() -> None:
    """Threshold between the levels of 2-0 and 3-0: it stops at three agreeing votes."""
    table = blend_table(40)
    threshold = (table[2, 0] + table[3, 0]) / 2
    calibration = ((-math.inf, 40.0), (threshold, 3.0))
    policy = BlendASC(budget=3.0, calibration=calibration)
    assert policy.log_threshold == threshold
    assert run_episode(policy, ["a"] * 6)[0] == 3
    # b a a a ...: after (2, 1) it stops at the first of (3, 1), (4, 1), (5, 1) below it.
    levels = [table[3, 1], table[4, 1], table[5, 1]]
    expected = 4 + next(i for i, v in enumerate(levels) if v <= threshold)
    assert run_episode(policy, ["b", "a", "a", "a", "a", "a", "a"])[0] == expected
    # No votes never stop: the pool runs out (then STOP, never a masked action).
    drawn, actions = run_episode(policy, [None] * 5)
    assert drawn == 5 and actions == [sample_action(0)] * 5 + [STOP]


def test_exact_replay_on_a_hand_made_log() -> None:
    """Unanimous pools stop at the same vote in every order; an answerless pool runs out."""
    log = one_arm_log({"right": [("7", 1.0)] * 6, "wrong": [("3", 0.0)] * 6,
                    "mute": [(None, 0.0)] * 5, "split": [("1", 1.0), ("2", 0.0)] * 2})
    table = blend_table(6)
    threshold = (table[2, 0] + table[3, 0]) / 2
    policy = BlendASC(budget=3.0, calibration=((-math.inf, 6.0), (threshold, 3.0)),
                      max_samples=6)
    results = ReplayEvaluator(log, n_orders=12, seed=4).run(policy)
    np.testing.assert_array_equal(results.cost[:3], [[3.0] * 12, [3.0] * 12, [5.0] * 12])
    np.testing.assert_array_equal(results.correct[:3], [[1.0] * 12, [0.0] * 12, [0.0] * 12])
    # "split" is 2-2 however drawn: every level stays above the threshold, all 4 are
    # drawn, and the tie shares the credit.
    np.testing.assert_array_equal(results.cost[3], [4.0] * 12)
    np.testing.assert_array_equal(results.correct[3], [0.5] * 12)


def test_calibration_spends_what_replay_spends() -> None:
    """The calibration's mean samples per threshold equal a replay of the policy (noise)."""
    rng = np.random.default_rng(2)
    pools = {}
    for q in range(60):
        rate = rng.beta(2, 1.5)
        answers = np.where(rng.random(12) < rate, 0, rng.integers(1, 4, 12))
        answers = np.where(rng.random(12) < 0.05, -1, answers)
        pools[f"q{q}"] = [(None if x < 0 else str(x), float(x == 0)) for x in answers]
    log = one_arm_log(pools)
    replay_pools = ReplayPools.from_log(log)
    sequences = [replay_pools.cand_answer[replay_pools.cand_offsets[q]:
                                          replay_pools.cand_offsets[q + 1]]
                 for q in range(replay_pools.n_queries)]
    calibration = calibrate(sequences, 12, n_orders=40, seed=1)
    evaluator = ReplayEvaluator(log, n_orders=40, seed=9)
    for budget in (1.5, 3.0, 5.0, 8.0):
        policy = BlendASC(budget=budget, calibration=calibration, max_samples=12)
        spent = evaluator.run(policy).samples.mean()
        planned = next(m for t, m in calibration if t == policy.log_threshold)
        assert spent == pytest.approx(planned, abs=0.25), budget
        assert planned <= budget or policy.log_threshold == calibration[-1][0]


def test_threshold_for_takes_the_largest_spend_within_the_budget() -> None:
    calibration = ((-math.inf, 10.0), (-3.0, 6.0), (-2.0, 4.0), (-1.0, 1.0))
    assert threshold_for(calibration, 12.0) == -math.inf
    assert threshold_for(calibration, 6.0) == -3.0
    assert threshold_for(calibration, 5.9) == -2.0
    assert threshold_for(calibration, 1.0) == -1.0
    assert threshold_for(calibration, 0.5) == -1.0  # below every spend: the cheapest


def test_more_budget_buys_more_samples_and_no_less_accuracy() -> None:
    """Monotone knob on a synthetic log: fitted on half the queries, replayed on the rest."""
    config = SyntheticConfig(n_queries=240, arms=(SyntheticArm("only", 0.5, 1.0, 24),))
    log = generate(config, seed=3)
    pools = ReplayPools.from_log(log)
    train, test = np.arange(0, 240, 2), np.arange(1, 240, 2)
    sequences = [pools.cand_answer[pools.cand_offsets[q]: pools.cand_offsets[q + 1]]
                 for q in train]
    fitted = BlendASC.fit(sequences, max_samples=24, n_orders=8, seed=0)
    evaluator = ReplayEvaluator(pools, test, n_orders=8, seed=5)
    budgets = (1.0, 5.0, 8.0, 12.0, 20.0)
    runs = [evaluator.run(fitted.with_knob(b)) for b in budgets]
    samples = [r.samples.mean() for r in runs]
    accuracy = [r.correct.mean() for r in runs]
    assert all(later > earlier for earlier, later in itertools.pairwise(samples))
    assert all(later >= earlier - 0.01 for earlier, later in itertools.pairwise(accuracy))
    assert accuracy[-1] > accuracy[0] + 0.02
    for budget, spent in zip(budgets, samples, strict=True):
        assert spent <= budget * 1.15  # held-out spend tracks the training budget
    # Between one sample and the first spend above it no threshold exists: a budget
    # there buys one sample (the largest spend within it), not an interpolation.
    assert fitted.with_knob(3.0).log_threshold == fitted.with_knob(1.0).log_threshold
