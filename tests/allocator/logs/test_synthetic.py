"""The synthetic generator: determinism, statistics against the config, labelling."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, stats

from allocator.errors import ParameterError
from allocator.logs import read_log, write_log
from allocator.logs.schema import KIND_REFINE, KIND_SAMPLE, META_SIMULATED
from allocator.logs.synthetic import (
    SIMULATED_SOURCE,
    DifficultyComponent,
    SyntheticArm,
    SyntheticConfig,
    generate,
    p_correct,
)
from allocator.logs.table import AttemptLog

BIG = SyntheticConfig(n_queries=3000)


@pytest.fixture(scope="module")
def big_log() -> AttemptLog:
    return generate(BIG, seed=11)


def expected_accuracy(config: SyntheticConfig, skill: float) -> float:
    """E[p_correct] over the Beta mixture, by numerical integration."""
    total = sum(c.weight for c in config.mixture)
    value = 0.0
    for c in config.mixture:
        inner, _ = integrate.quad(
            lambda d, c=c: stats.beta.pdf(d, c.alpha, c.beta)
            * float(p_correct(skill, d, config.sharpness)), 0, 1, limit=200)
        value += c.weight / total * inner
    return value


def per_query_mean(log: AttemptLog, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    query = log.attempt_query[rows]
    return np.bincount(query, weights=values, minlength=log.n_queries) / np.bincount(
        query, minlength=log.n_queries)


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    ranks = stats.rankdata(scores)
    positives = labels.sum()
    negatives = len(labels) - positives
    return float((ranks[labels].sum() - positives * (positives + 1) / 2)
                 / (positives * negatives))


def test_same_seed_same_log_other_seed_other_log() -> None:
    config = SyntheticConfig(n_queries=60, with_scores=True, refine_rounds=1)
    first, again, other = generate(config, seed=5), generate(config, seed=5), generate(
        config, seed=6)
    assert first.fingerprint() == again.fingerprint()
    assert np.array_equal(first.queries.metadata["difficulty"],
                          again.queries.metadata["difficulty"])
    assert first.fingerprint() != other.fingerprint()


def test_shape_matches_config() -> None:
    config = SyntheticConfig(n_queries=50, refine_rounds=2, refine_per_round=3)
    log = generate(config)
    assert log.n_queries == 50 and log.n_attempts == config.n_attempts
    assert log.arms == ("large", "small")
    for q in range(log.n_queries):
        rows = log.pool(q)
        for code, name in enumerate(log.arms):
            arm = next(a for a in config.arms if a.name == name)
            mine = log.arm[rows] == code
            assert ((log.kind[rows] == KIND_SAMPLE) & mine).sum() == arm.pool_size
            assert ((log.kind[rows] == KIND_REFINE) & mine).sum() == 6
    assert set(np.unique(log.round[log.kind == KIND_REFINE])) == {1, 2}
    assert np.all(log.round[log.kind == KIND_SAMPLE] == 0)


@pytest.mark.parametrize("arm_index", [0, 1])
def test_arm_accuracy_matches_the_mixture(big_log: AttemptLog, arm_index: int) -> None:
    arm = BIG.arms[arm_index]
    rows = np.flatnonzero(big_log.arm == big_log.arms.index(arm.name))
    means = per_query_mean(big_log, rows, big_log.correct[rows].astype(np.float64))
    standard_error = means.std() / np.sqrt(len(means))
    assert abs(means.mean() - expected_accuracy(BIG, arm.skill)) < 4 * standard_error


@pytest.mark.parametrize("arm_index", [0, 1])
def test_attempts_are_calibrated_to_p_correct(big_log: AttemptLog, arm_index: int) -> None:
    """Given each query's true difficulty, grades are Bernoulli(p_correct): checked per bin
    of p, where only the binomial noise remains (much tighter than the mixture test)."""
    arm = BIG.arms[arm_index]
    rows = np.flatnonzero(big_log.arm == big_log.arms.index(arm.name))
    difficulty = big_log.queries.metadata["difficulty"][big_log.attempt_query[rows]]
    p = p_correct(arm.skill, difficulty, BIG.sharpness)
    hit = big_log.correct[rows].astype(np.float64)
    for low, high in [(0, 0.05), (0.05, 0.3), (0.3, 0.7), (0.7, 0.95), (0.95, 1.0)]:
        mine = (p >= low) & (p < high)
        assert mine.sum() > 200
        standard_error = np.sqrt((p[mine] * (1 - p[mine])).sum()) / mine.sum()
        assert abs(hit[mine].mean() - p[mine].mean()) < 4 * standard_error + 1e-9


def test_stronger_arm_is_more_accurate_and_costs_its_mean(big_log: AttemptLog) -> None:
    accuracy, cost = {}, {}
    for code, name in enumerate(big_log.arms):
        rows = big_log.arm == code
        accuracy[name] = big_log.correct[rows].mean()
        cost[name] = big_log.cost[rows].mean()
    assert accuracy["large"] > accuracy["small"] + 0.1
    for arm in BIG.arms:
        assert cost[arm.name] == pytest.approx(arm.cost_per_attempt, rel=0.02)


def test_difficulty_follows_the_mixture(big_log: AttemptLog) -> None:
    component = big_log.queries.metadata["component"]
    difficulty = big_log.queries.metadata["difficulty"].astype(np.float64)
    total = sum(c.weight for c in BIG.mixture)
    for c in BIG.mixture:
        mine = component == c.name
        share = mine.mean()
        assert abs(share - c.weight / total) < 4 * np.sqrt(share * (1 - share) / len(mine))
        assert stats.kstest(difficulty[mine], stats.beta(c.alpha, c.beta).cdf).pvalue > 1e-3
    assert np.all((difficulty > 0) & (difficulty < 1))


def test_answers_and_wrong_majorities(big_log: AttemptLog) -> None:
    answered = big_log.answer >= 0
    wrong = big_log.correct == 0
    assert np.all(answered[big_log.correct == 1])
    share_missing = (~answered[wrong]).mean()
    assert share_missing == pytest.approx(BIG.no_answer_rate, abs=0.01)
    # A correct answer is one string per query; wrong answers never equal it.
    wrong_majority = 0
    for q in range(big_log.n_queries):
        rows = big_log.pool(q)
        answers, correct = big_log.answer[rows], big_log.correct[rows]
        right = np.unique(answers[correct == 1])
        assert len(right) <= 1
        assert not np.isin(answers[(correct == 0) & (answers >= 0)], right).any()
        values, counts = np.unique(answers[answers >= 0], return_counts=True)
        if len(right) and values[np.argmax(counts)] != right[0]:
            wrong_majority += 1
    assert wrong_majority > 0.05 * big_log.n_queries


def test_scores_rank_correct_above_wrong() -> None:
    log = generate(SyntheticConfig(n_queries=400, with_scores=True), seed=2)
    assert log.supports_verify
    assert auroc(log.score, log.correct == 1) > 0.7
    assert not generate(SyntheticConfig(n_queries=20)).supports_verify


def test_the_verifier_scores_only_the_scored_arms() -> None:
    arms = (SyntheticArm("small", 0.45, 1.0, 6, scored=True),
            SyntheticArm("large", 0.7, 8.0, 4, scored=False))
    log = generate(SyntheticConfig(n_queries=300, arms=arms, with_scores=True), seed=3)
    small, large = log.arm == log.arms.index("small"), log.arm == log.arms.index("large")
    assert np.isfinite(log.score[small]).all() and np.isnan(log.score[large]).all()
    assert log.supports_verify and auroc(log.score[small], log.correct[small] == 1) > 0.7


def test_the_length_column_predicts_difficulty_as_specified() -> None:
    """corr(log length, d) = s sd(d) / sqrt(s^2 var(d) + sigma^2), and the rest of the log is
    the log without the column (its own random stream)."""
    config = SyntheticConfig(n_queries=20_000, length_signal=2.0, length_noise=0.5)
    log = generate(config, seed=5)
    difficulty = log.queries.metadata["difficulty"].astype(float)
    length = log.queries.metadata["length"].astype(float)
    assert (length >= 1).all() and np.allclose(length, np.round(length))
    expected = 2.0 * difficulty.std() / np.sqrt(4.0 * difficulty.var() + 0.25)
    # rounding to whole tokens adds a little noise: within 0.02 of the closed form
    assert np.corrcoef(np.log(length), difficulty)[0, 1] == pytest.approx(expected, abs=0.02)
    residual = np.log(length) - np.log(80.0) - 2.0 * (difficulty - 0.5)
    assert residual.mean() == pytest.approx(0.0, abs=0.01)  # N(0, 0.5) noise, +- rounding
    assert residual.std() == pytest.approx(0.5, rel=0.03)
    plain = generate(SyntheticConfig(n_queries=20_000), seed=5)
    assert "length" not in plain.queries.metadata
    np.testing.assert_array_equal(plain.correct, log.correct)
    np.testing.assert_array_equal(plain.cost, log.cost)


def test_refinement_rounds_improve() -> None:
    config = SyntheticConfig(n_queries=1500, refine_rounds=3, refine_gain=0.08)
    log = generate(config, seed=4)
    assert log.supports_refine
    for code in range(len(log.arms)):
        by_round = [log.correct[(log.arm == code) & (log.round == r)].mean() for r in range(4)]
        assert all(a < b for a, b in itertools.pairwise(by_round))
    refine = log.kind == KIND_REFINE
    samples = log.kind == KIND_SAMPLE
    ratio = log.cost[refine & (log.arm == 0)].mean() / log.cost[samples & (log.arm == 0)].mean()
    assert ratio == pytest.approx(config.refine_cost_factor, rel=0.05)


def test_query_table_is_labelled() -> None:
    log = generate(SyntheticConfig(n_queries=30, tasks=("a", "b")), seed=1)
    difficulty = log.queries.metadata["difficulty"]
    assert log.queries.text[17] == f"Simulated query 17 (difficulty {difficulty[17]:.2f})"
    assert set(log.queries.metadata["task"]) <= {"a", "b"}
    assert log.simulated and log.source == SIMULATED_SOURCE
    assert "simulated" in repr(log)


def test_simulated_label_survives_parquet(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    log = generate(SyntheticConfig(n_queries=40, with_scores=True, refine_rounds=1), seed=9)
    path = write_log(log, tmp_path / "sim.parquet")
    assert pq.read_schema(path).metadata[META_SIMULATED] == b"true"
    again = read_log(path)
    assert again.simulated and again.source == SIMULATED_SOURCE
    assert again.fingerprint() == log.fingerprint()
    assert np.array_equal(again.queries.metadata["difficulty"], log.queries.metadata["difficulty"])


@pytest.mark.parametrize(
    ("make", "parameter"),
    [
        (lambda: SyntheticConfig(n_queries=0), "n_queries"),
        (lambda: SyntheticConfig(arms=()), "arms"),
        (lambda: SyntheticConfig(arms=(SyntheticArm("a", 0.5), SyntheticArm("a", 0.6))), "arms"),
        (lambda: SyntheticConfig(mixture=()), "mixture"),
        (lambda: SyntheticConfig(no_answer_rate=1.0), "no_answer_rate"),
        (lambda: SyntheticConfig(distractor_concentration=0.0), "distractor_concentration"),
        (lambda: SyntheticConfig(refine_rounds=-1), "refine_rounds"),
        (lambda: SyntheticArm("a", 0.5, pool_size=0), "pool_size"),
        (lambda: SyntheticArm("a", 0.5, cost_per_attempt=-1.0), "cost_per_attempt"),
        (lambda: SyntheticArm("a", 0.5, scored=1), "scored"),
        (lambda: SyntheticConfig(length_signal=-1.0), "length_signal"),
        (lambda: SyntheticConfig(length_noise=float("nan")), "length_noise"),
        (lambda: DifficultyComponent("x", 1.0, 0.0, 1.0), "alpha"),
    ],
)
def test_bad_parameters_are_named(make: object, parameter: str) -> None:
    with pytest.raises(ParameterError) as caught:
        make()  # type: ignore[operator]
    assert caught.value.parameter == parameter and parameter in str(caught.value)


def test_a_million_attempts() -> None:
    """Scale (the timing lives in benchmarks/log_loading.py, not in a test)."""
    config = SyntheticConfig(
        n_queries=25_000, arms=(SyntheticArm("small", 0.45, 1.0, 24),
                                SyntheticArm("large", 0.7, 8.0, 16)), with_scores=True)
    log = generate(config)
    assert log.n_attempts == 1_000_000
