"""The featurizer against hand-computed values, and its two entry points against each other."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from allocator.errors import ParameterError
from allocator.featurizer import (
    FEATURIZER_VERSION,
    QueryState,
    StateBatch,
    VoteStats,
    feature_bounds,
    feature_names,
    featurize,
    n_features,
)

ARMS = ("cheap", "strong")
NAMES = feature_names(ARMS)


def batch(votes: list[list[float]], **fields: object) -> StateBatch:
    """A batch with the given votes; other fields default to a plausible empty state."""
    votes_array = np.asarray(votes, dtype=np.float64).reshape(len(votes), -1)
    size = len(votes)
    defaults: dict[str, object] = {
        "samples": np.zeros((size, 2)),
        "no_answer": np.zeros(size),
        "refines": np.zeros(size),
        "verified": np.zeros(size),
        "best_score": np.full(size, np.nan),
        "cost": np.zeros(size),
        "lam": np.zeros(size),
        "prior": np.full((size, 2), 0.5),
    }
    defaults.update(fields)
    return StateBatch(votes=votes_array, **defaults)  # type: ignore[arg-type]


def column(features: np.ndarray, name: str) -> np.ndarray:
    return features[:, NAMES.index(name)]


def test_names_are_versioned_and_ordered() -> None:
    assert FEATURIZER_VERSION == 3
    assert NAMES[:4] == ["prior[cheap]", "prior[strong]", "log1p_samples[cheap]",
                         "log1p_samples[strong]"]
    assert NAMES[-3:] == ["lambda", "log_lambda", "leader_posterior"]
    assert len(NAMES) == len(set(NAMES)) == n_features(2) == 17
    low, high = feature_bounds(2)
    assert low.shape == high.shape == (17,)
    assert (low[-1], high[-1]) == (0, 1)
    assert high[NAMES.index("leader_share")] == 1 and np.isinf(high[NAMES.index("cost_spent")])


def test_hand_computed_features() -> None:
    # 4 samples from cheap and 1 from strong: votes a, a, a, b and one attempt without answer.
    state = batch([[3, 1, 0]], samples=np.array([[4, 1]]), no_answer=np.array([1.0]),
                  cost=np.array([2.5]), lam=np.array([0.1]), prior=np.array([[0.2, 0.9]]))
    features = featurize(state)
    assert features.dtype == np.float32 and features.shape == (1, 17)
    expected = {
        "prior[cheap]": 0.2,
        "prior[strong]": 0.9,
        "log1p_samples[cheap]": math.log(5),
        "log1p_samples[strong]": math.log(2),
        "log1p_drawn": math.log(6),
        "leader_share": 3 / 4,
        "margin": (3 - 1) / 4,
        "answer_entropy": -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) / math.log(4),
        "distinct_ratio": 2 / 4,
        "no_answer_share": 1 / 5,
        "has_verified": 0.0,
        "best_verified_score": 0.0,
        "log1p_refines": 0.0,
        "cost_spent": 2.5,
        "lambda": 0.1,
        "log_lambda": math.log(0.1),
        # P(Binomial(3 + 1 + 1, 1/2) <= 3) = (1 + 5 + 10 + 10) / 32
        "leader_posterior": 26 / 32,
    }
    assert set(expected) == set(NAMES)
    for name, value in expected.items():
        assert column(features, name)[0] == pytest.approx(value, rel=1e-6), name
    # lambda = 0 (allowed: a free trade-off) floors the log instead of -inf.
    free = featurize(batch([[1]], lam=np.array([0.0])))
    assert column(free, "log_lambda")[0] == pytest.approx(math.log(1e-6))


def test_leader_posterior_is_adaptive_consistencys_beta_statistic() -> None:
    """Equal to the reference package's integrals (as the AC policy reads them) on every
    count pair up to 40 votes, to scipy's binomial CDF beyond the exact range, and the
    same on the scalar path."""
    from scipy.stats import binom

    from allocator.featurizer import EXACT_POSTERIOR_VOTES, QueryState, leader_posterior
    from allocator.policies.self_consistency import beta_stop_probability

    top1, top2 = np.array([(a, b) for a in range(41) for b in range(a + 1) if a + b <= 40]).T
    np.testing.assert_allclose(leader_posterior(top1, top2),
                               beta_stop_probability(top1, top2), atol=1e-7)
    big1 = np.array([400, 1500, 5000, 2600])
    big2 = np.array([300, 1400, 4900, 2400])
    wide = big1 + big2 + 1 > EXACT_POSTERIOR_VOTES
    assert wide[1:].all() and not wide[0]
    np.testing.assert_allclose(leader_posterior(big1, big2),
                               binom.cdf(big1, big1 + big2 + 1, 0.5), atol=1e-3)
    assert leader_posterior(big1[0], big2[0]) == pytest.approx(
        binom.cdf(400, 701, 0.5), abs=1e-12)
    assert leader_posterior(0, 0) == 0.5  # no votes: no evidence either way
    state = QueryState(2)
    for answer in ("a", "a", "b", "a", "c"):
        state.add_sample(0, answer)
    assert state.feature_values()[-1] == leader_posterior(3, 1)


@pytest.mark.parametrize(
    ("votes", "entropy", "margin", "leader"),
    [
        ([[1, 1, 1, 1]], 1.0, 0.0, 0.25),  # all distinct: the most entropy n votes can have
        ([[4, 0, 0, 0]], 0.0, 1.0, 1.0),  # unanimous
        ([[2, 2, 0, 0]], math.log(2) / math.log(4), 0.0, 0.5),  # a tie has no margin
        ([[1, 0, 0, 0]], 0.0, 1.0, 1.0),  # one vote: no entropy
        ([[0, 0, 0, 0]], 0.0, 0.0, 0.0),  # nothing voted
    ],
)
def test_vote_features(votes: list[list[float]], entropy: float, margin: float,
                       leader: float) -> None:
    features = featurize(batch(votes))
    assert column(features, "answer_entropy")[0] == pytest.approx(entropy, abs=1e-7)
    assert column(features, "margin")[0] == pytest.approx(margin, abs=1e-7)
    assert column(features, "leader_share")[0] == pytest.approx(leader, abs=1e-7)


def test_verified_and_refined() -> None:
    state = batch([[1, 1]], refines=np.array([2.0]), verified=np.array([3.0]),
                  best_score=np.array([0.75]), samples=np.array([[0, 0]]))
    features = featurize(state)
    assert column(features, "has_verified")[0] == 1.0
    assert column(features, "best_verified_score")[0] == pytest.approx(0.75)
    assert column(features, "log1p_refines")[0] == pytest.approx(math.log(3))
    assert column(features, "log1p_drawn")[0] == pytest.approx(math.log(3))


def test_vote_stats_ignore_order_and_padding() -> None:
    votes = np.array([[3, 0, 1, 2], [0, 0, 0, 5], [0, 0, 0, 0]], dtype=float)
    stats = VoteStats.from_votes(votes)
    shuffled = VoteStats.from_votes(np.concatenate([votes[:, ::-1], np.zeros((3, 3))], axis=1))
    for name in ("voted", "top1", "top2", "distinct", "vlogv"):
        np.testing.assert_allclose(getattr(stats, name), getattr(shuffled, name))
    np.testing.assert_allclose(stats.top1, [3, 5, 0])
    np.testing.assert_allclose(stats.top2, [2, 0, 0])
    np.testing.assert_allclose(stats.distinct, [3, 1, 0])
    # Narrow matrices: no answer slot at all, and a single one.
    assert VoteStats.from_votes(np.zeros((2, 0))).top1.tolist() == [0, 0]
    assert VoteStats.from_votes(np.array([[3.0]])).top2.tolist() == [0]


def counted_stats(votes: np.ndarray) -> VoteStats:
    """Vote statistics counted one row at a time in plain Python (independent of
    :meth:`VoteStats.from_votes`)."""
    rows = [sorted((v for v in row if v > 0), reverse=True) for row in votes.tolist()]
    column = lambda values: np.array(values, dtype=float)  # noqa: E731
    return VoteStats(
        voted=column([sum(r) for r in rows]),
        top1=column([r[0] if r else 0 for r in rows]),
        top2=column([r[1] if len(r) > 1 else 0 for r in rows]),
        distinct=column([len(r) for r in rows]),
        vlogv=column([sum(v * math.log(v) for v in r) for r in rows]),
    )


def test_vote_stats_equal_independently_counted_ones() -> None:
    rng = np.random.default_rng(0)
    votes = rng.integers(0, 4, (50, 6)).astype(float)
    computed, counted = VoteStats.from_votes(votes), counted_stats(votes)
    for name in ("voted", "top1", "top2", "distinct", "vlogv"):
        np.testing.assert_allclose(getattr(computed, name), getattr(counted, name),
                                   rtol=1e-12, err_msg=name)


def test_passing_stats_gives_the_same_features() -> None:
    rng = np.random.default_rng(0)
    votes = rng.integers(0, 4, (50, 6)).astype(float)
    state = batch(votes.tolist(), samples=rng.integers(0, 5, (50, 2)).astype(float))
    np.testing.assert_allclose(featurize(state), featurize(state, counted_stats(votes)),
                               rtol=1e-6)


def test_state_batch_checks_shapes() -> None:
    with pytest.raises(ParameterError, match="prior"):
        batch([[1, 0]], prior=np.zeros((1, 3)))
    with pytest.raises(ParameterError, match="cost"):
        batch([[1, 0]], cost=np.zeros(2))


def test_query_state_matches_the_batch_path() -> None:
    state = QueryState(n_arms=2, prior=np.array([0.3, 0.8]), lam=0.2)
    state.add_sample(0, "a", cost=1.0)
    state.add_sample(0, "a", cost=1.0)
    state.add_sample(1, "b", cost=3.0)
    state.add_sample(1, None, cost=3.0)
    state.add_refine("b", cost=2.0)
    assert state.drawn == 5 and state.votes == {"a": 2, "b": 2} and state.no_answer == 1
    assert sorted(state.final_answers()) == ["a", "b"]  # a tie: both
    expected = featurize(batch([[2, 2]], samples=np.array([[2, 2]]), no_answer=np.array([1.0]),
                               refines=np.array([1.0]), cost=np.array([10.0]),
                               lam=np.array([0.2]), prior=np.array([[0.3, 0.8]])))
    np.testing.assert_array_equal(state.features(), expected[0])


def random_query_state(rng: np.random.Generator) -> QueryState:
    """A state after a random history: samples of random arms, refinements, missing
    answers, few or many distinct answers, verifications and costs."""
    arms = int(rng.integers(1, 4))
    state = QueryState(n_arms=arms, prior=rng.random(arms), lam=float(rng.random()))
    distinct = int(rng.integers(1, 15))
    for _ in range(int(rng.integers(0, 45))):
        answer = None if rng.random() < 0.1 else f"answer {rng.integers(distinct)}"
        if rng.random() < 0.2:
            state.add_refine(answer, cost=float(rng.random()))
        else:
            state.add_sample(int(rng.integers(arms)), answer, cost=float(3 * rng.random()))
        if rng.random() < 0.1 and state.unverified():
            state.verify({state.unverified()[0]: float(rng.normal())}, cost=0.5)
    return state


def test_the_scalar_fast_path_equals_the_batch_featurizer_bit_for_bit() -> None:
    """``QueryState.features`` (the runtime's path) against ``featurize(to_batch())``."""
    rng = np.random.default_rng(2026)
    for _ in range(5_000):
        state = random_query_state(rng)
        np.testing.assert_array_equal(state.features(), featurize(state.to_batch())[0])


def test_rescoring_replaces_scores_and_recomputes_the_best_per_answer() -> None:
    state = QueryState(n_arms=1)
    for answer in ("a", "b", "a"):
        state.add_sample(0, answer)
    state.verify({0: 1.0, 1: 0.5})
    assert state.final_answers() == ["a"] and state.best_score == 1.0
    with pytest.raises(ParameterError, match="unverified"):
        state.verify({0: 0.0})  # scored once unless re-scoring is asked for
    state.verify({0: 0.0, 2: 0.25}, rescore=True)  # "a" re-judged lower
    assert state.verified == 3 and state.scores == [0.0, 0.5, 0.25]
    assert state.best_by_answer == {"a": 0.25, "b": 0.5} and state.final_answers() == ["b"]
    np.testing.assert_array_equal(state.features(), featurize(state.to_batch())[0])


def test_query_state_verification() -> None:
    state = QueryState(n_arms=1)
    for answer in ("a", "b", None, "b"):
        state.add_sample(0, answer)
    assert state.unverified() == [0, 1, 2, 3]
    state.verify({0: 0.9, 1: 0.4, 2: 1.0}, cost=0.5)  # the no-answer candidate cannot win
    assert state.verified == 3 and state.unverified() == [3] and state.cost == 0.5
    assert state.best_score == 0.9 and state.final_answers() == ["a"]
    with pytest.raises(ParameterError, match="unverified"):
        state.verify({0: 0.1})
    state.verify({3: 0.9})
    assert sorted(state.final_answers()) == ["a", "b"]  # tied on the best score
    state.add_sample(0, "c")
    state.verify({4: float("nan")})  # verified, but the verifier gave nothing usable
    assert state.unverified() == [] and state.verified == 5 and state.best_score == 0.9
    with pytest.raises(ParameterError, match="unverified"):
        state.verify({4: 0.5})


def test_query_state_rejects_bad_arguments() -> None:
    with pytest.raises(ParameterError, match="n_arms"):
        QueryState(n_arms=0)
    with pytest.raises(ParameterError, match="prior"):
        QueryState(n_arms=2, prior=np.ones(3))
    with pytest.raises(ParameterError, match="arm"):
        QueryState(n_arms=2).add_sample(2, "a")


def test_runtime_imports_stay_light() -> None:
    """The featurizer imports numpy only, and importing the runtime registers no env."""
    code = (
        "import sys, allocator, allocator.featurizer\n"
        "heavy = {'torch', 'gymnasium', 'stable_baselines3', 'sb3_contrib', 'allocator.envs',"
        " 'allocator.training'}\n"
        "assert not heavy & set(sys.modules), heavy & set(sys.modules)\n"
        "import gymnasium\n"
        "assert 'ttc/Replay-v0' not in gymnasium.registry\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
