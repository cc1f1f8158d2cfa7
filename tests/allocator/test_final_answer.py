"""The final-answer rule and its credit: scalar and per-row forms agree, and the credit
of a plain vote is :mod:`allocator.logs.votes`'s."""

from __future__ import annotations

import numpy as np
import pytest

from allocator.final_answer import (
    credit,
    credit_rows,
    final_answers,
    final_answers_rows,
    leaders,
    leaders_rows,
)
from allocator.logs.votes import majority_correctness

WIDTH = 5


def random_state(rng: np.random.Generator) -> dict:
    """Votes, correctness sums and verified scores of one query over WIDTH answer slots."""
    votes = rng.integers(0, 4, WIDTH) * (rng.random(WIDTH) < 0.7)
    correct_sum = np.array([rng.integers(0, v + 1) for v in votes], dtype=np.float64)
    scores = np.where((votes > 0) & (rng.random(WIDTH) < 0.4),
                      rng.choice([0.2, 0.5, 0.9], WIDTH), -np.inf)
    return {"votes": votes, "correct_sum": correct_sum, "verified_best": scores}


def scalar(state: dict) -> tuple[list[int], float]:
    votes = {a: int(v) for a, v in enumerate(state["votes"]) if v > 0}
    best = {a: float(s) for a, s in enumerate(state["verified_best"]) if s > -np.inf}
    tied = final_answers(best, votes)
    return sorted(tied), credit(tied, dict(enumerate(state["correct_sum"])), votes)


def test_scalar_and_row_forms_agree_on_random_states() -> None:
    rng = np.random.default_rng(7)
    states = [random_state(rng) for _ in range(500)]
    votes = np.array([s["votes"] for s in states])
    verified_best = np.array([s["verified_best"] for s in states])
    tied = final_answers_rows(votes, votes.max(axis=1).astype(np.float64),
                              verified_best.max(axis=1), verified_best)
    credits = credit_rows(tied, np.array([s["correct_sum"] for s in states]), votes)
    for i, state in enumerate(states):
        answers, value = scalar(state)
        assert np.flatnonzero(tied[i]).tolist() == answers
        assert credits[i] == pytest.approx(value, abs=1e-12)
    assert tied.any(axis=1).sum() > 400  # the cases are not all empty


def test_verified_answers_win_over_votes() -> None:
    assert final_answers({"b": 0.4}, {"a": 5, "b": 1}) == ["b"]
    assert final_answers({}, {"a": 2, "b": 2, "c": 1}) == ["a", "b"]
    assert final_answers({}, {}) == []
    assert credit(["a", "b"], {"a": 2.0, "b": 0.0}, {"a": 2, "b": 2}) == 0.5
    assert credit([], {}, {}) == 0.0


def test_leaders_per_row_match_leaders() -> None:
    rng = np.random.default_rng(3)
    values = rng.integers(0, 3, (200, WIDTH)).astype(np.float64)
    present = rng.random((200, WIDTH)) < 0.6
    rows = leaders_rows(values, present)
    for i in range(200):
        table = {a: values[i, a] for a in range(WIDTH) if present[i, a]}
        assert np.flatnonzero(rows[i]).tolist() == leaders(table)


def test_the_credit_of_a_vote_is_the_vote_modules() -> None:
    rng = np.random.default_rng(11)
    n_groups, size = 300, 12
    group = np.repeat(np.arange(n_groups), size)
    answer = rng.integers(-1, 4, n_groups * size)
    correct = (rng.random(n_groups * size) < 0.5).astype(np.float64)
    expected = majority_correctness(group, answer, correct, n_groups)
    for g in range(n_groups):
        mine = slice(g * size, (g + 1) * size)
        votes: dict[int, int] = {}
        sums: dict[int, float] = {}
        for a, c in zip(answer[mine].tolist(), correct[mine].tolist(), strict=True):
            if a >= 0:
                votes[a] = votes.get(a, 0) + 1
                sums[a] = sums.get(a, 0.0) + c
        assert credit(final_answers({}, votes), sums, votes) == pytest.approx(expected[g])
