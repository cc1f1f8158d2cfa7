"""StateBatch.streak, StateBatch.stats / vote_stats() and QueryState's streak tracking."""

from __future__ import annotations

import numpy as np
import pytest
from policy_states import random_answers

from allocator.errors import ParameterError
from allocator.featurizer import QueryState, StateBatch, VoteStats, featurize


def streak_by_definition(answers: list) -> int:
    """Consecutive most-recent attempts equal to the latest answer (0 if None / empty)."""
    if not answers or answers[-1] is None:
        return 0
    run = 0
    for answer in reversed(answers):
        if answer != answers[-1]:
            break
        run += 1
    return run


def base_fields(batch: int = 2) -> dict:
    return dict(samples=np.ones((batch, 1)), votes=np.ones((batch, 1)),
                no_answer=np.zeros(batch), refines=np.zeros(batch),
                verified=np.zeros(batch), best_score=np.full(batch, np.nan),
                cost=np.ones(batch), lam=np.zeros(batch), prior=np.full((batch, 1), 0.5))


@pytest.mark.parametrize(("answers", "expected"), [
    ([], 0),
    (["a"], 1),
    (["a", "a"], 2),
    (["a", "b"], 1),
    (["b", "a", "a", "a"], 3),
    (["a", None], 0),
    ([None, "a"], 1),
    (["a", None, "a"], 1),
    (["a", "a", None, None], 0),
    ([None, None], 0),
])
def test_streak_of_hand_made_sequences(answers: list, expected: int) -> None:
    state = QueryState(n_arms=1)
    for answer in answers:
        state.add_sample(0, answer)
    assert state.streak == expected
    assert state.to_batch().streak.tolist() == [expected]


def test_streak_counts_refinements_and_all_arms_but_not_verification() -> None:
    state = QueryState(n_arms=2)
    state.add_sample(0, "x")
    state.add_sample(1, "x")
    state.add_refine("x")
    assert state.streak == 3
    state.verify({0: 0.9, 1: 0.1})
    state.add_cost(2.0)
    assert state.streak == 3
    state.add_refine("y")
    assert state.streak == 1


def test_streak_matches_its_definition_on_random_sequences() -> None:
    rng = np.random.default_rng(5)
    for _ in range(200):
        answers = random_answers(rng, int(rng.integers(0, 30)), alphabet=3, none_rate=0.15)
        state = QueryState(n_arms=1)
        for k, answer in enumerate(answers, start=1):
            state.add_sample(0, answer)
            assert state.streak == streak_by_definition(answers[:k])


def test_state_batch_streak_is_optional_and_checked() -> None:
    assert StateBatch(**base_fields()).streak is None
    assert StateBatch(**base_fields(), streak=np.array([1.0, 0.0])).streak.tolist() == [1, 0]
    with pytest.raises(ParameterError, match="'streak'"):
        StateBatch(**base_fields(), streak=np.zeros(3))


def test_positional_construction_still_works() -> None:
    fields = base_fields()
    state = StateBatch(*fields.values())
    assert state.streak is None and state.stats is None


def test_vote_stats_returns_given_stats_and_caches_computed_ones() -> None:
    votes = np.array([[3.0, 1.0, 0.0], [2.0, 2.0, 1.0]])
    fields = {**base_fields(), "votes": votes}
    given = VoteStats.from_votes(votes)
    assert StateBatch(**fields, stats=given).vote_stats() is given
    state = StateBatch(**fields)
    computed = state.vote_stats()
    assert computed is state.vote_stats()
    assert computed.top1.tolist() == [3, 2] and computed.top2.tolist() == [1, 2]
    assert computed.distinct.tolist() == [2, 3]


def test_featurize_uses_the_state_stats() -> None:
    votes = np.array([[3.0, 1.0], [2.0, 2.0]])
    fields = {**base_fields(), "votes": votes}
    plain = featurize(StateBatch(**fields))
    with_stats = featurize(StateBatch(**fields, stats=VoteStats.from_votes(votes)))
    np.testing.assert_array_equal(plain, with_stats)
    # Stats that disagree with the votes show they are read, not recomputed.
    fake = VoteStats.from_votes(np.array([[4.0, 0.0], [4.0, 0.0]]))
    leader = featurize(StateBatch(**fields, stats=fake))[:, 3]
    assert leader.tolist() == [1.0, 1.0]


def test_state_batch_stats_shapes_are_checked() -> None:
    stats = VoteStats.from_votes(np.ones((3, 2)))
    with pytest.raises(ParameterError, match=r"stats\.voted"):
        StateBatch(**base_fields(), stats=stats)


# ------------------------------------------------------------------- arm_leader
def arm_leader_by_definition(draws: list[tuple[int | None, object]], n_arms: int) -> list[int]:
    """Per arm, the count of its most frequent sampled answer (refinements: arm None)."""
    leaders = []
    for arm in range(n_arms):
        answers = [a for drawn_arm, a in draws if drawn_arm == arm and a is not None]
        leaders.append(max((answers.count(a) for a in set(answers)), default=0))
    return leaders


def test_arm_leader_matches_its_definition_on_random_sequences() -> None:
    rng = np.random.default_rng(6)
    for _ in range(200):
        state, draws = QueryState(n_arms=3), []
        for answer in random_answers(rng, int(rng.integers(0, 30)), alphabet=3):
            arm = None if rng.random() < 0.1 else int(rng.integers(3))
            if arm is None:
                state.add_refine(answer)
            else:
                state.add_sample(arm, answer)
            draws.append((arm, answer))
            assert state.arm_leader.tolist() == arm_leader_by_definition(draws, 3)
        assert state.to_batch().arm_leader.tolist() == [state.arm_leader.tolist()]


def test_state_batch_arm_leader_is_optional_and_checked() -> None:
    assert StateBatch(**base_fields()).arm_leader is None
    with pytest.raises(ParameterError, match="'arm_leader'"):
        StateBatch(**base_fields(), arm_leader=np.zeros((2, 2)))
