"""Fixed-N, ESC and confidence threshold against hand-computed stopping points."""

from __future__ import annotations

import numpy as np
import pytest
from policy_states import random_answers, run_episode

from allocator.actions import STOP, sample_action, verify_action
from allocator.errors import ParameterError
from allocator.featurizer import QueryState
from allocator.policies import ConfidenceThreshold, EarlyStoppingSC, FixedN

# ------------------------------------------------------------------------- fixed-N


@pytest.mark.parametrize("n", [1, 2, 5, 10, 12])
def test_fixed_n_stops_exactly_at_n_or_when_the_pool_runs_out(n: int) -> None:
    answers = ["a", "b", None, "a", "c", "a", "a", "b", "a", "a"]
    drawn, actions = run_episode(FixedN(n=n), answers)
    assert drawn == min(n, len(answers))
    assert actions == [sample_action(0)] * drawn + [STOP]


def test_fixed_n_samples_its_own_arm() -> None:
    drawn, actions = run_episode(FixedN(n=3, arm=1), ["a"] * 5, arm=1, n_arms=2)
    assert drawn == 3 and actions == [sample_action(1)] * 3 + [STOP]


def test_fixed_n_with_verify_verifies_once_then_stops() -> None:
    drawn, actions = run_episode(FixedN(n=4, verify=True), ["a", "b", "c", "d", "e"],
                                 verifiable=True)
    assert drawn == 4
    assert actions == [sample_action(0)] * 4 + [verify_action(1), STOP]
    # Pool exhausted before n: verify what was drawn, then stop.
    _, actions = run_episode(FixedN(n=9, verify=True), ["a", "b"], verifiable=True)
    assert actions == [sample_action(0)] * 2 + [verify_action(1), STOP]
    # No verifier in the log: VERIFY is masked, so it just stops.
    _, actions = run_episode(FixedN(n=2, verify=True), ["a", "b"], verifiable=False)
    assert actions == [sample_action(0)] * 2 + [STOP]


# ----------------------------------------------------------------------------- ESC


def esc_by_definition(answers: list, window: int, max_samples: int) -> int:
    """Samples ESC draws: the first unanimous window's end, else the cap or the pool."""
    limit = min(max_samples, len(answers))
    for end in range(window, limit + 1, window):
        chunk = answers[end - window : end]
        if chunk[0] is not None and all(a == chunk[0] for a in chunk):
            return end
    return limit


@pytest.mark.parametrize(("answers", "window", "expected"), [
    (["a", "a", "a", "b"], 3, 3),                          # first window unanimous
    (["a", "b", "a", "a", "a", "a", "c"], 3, 6),           # second window
    (["a", "a", "b", "b", "b", "b", "c"], 3, 6),           # run spans the boundary
    (["b", "a", "a", "a", "c", "c", "d"], 3, 7),           # unanimous run off-boundary
    (["a", None, "a", "a", "a", "a"], 3, 6),               # None breaks a window
    ([None, None, None, "x"], 3, 4),                       # all None is not unanimous
    (["a", "b", "c", "d"], 1, 1),                          # window 1: one sample
])
def test_esc_stops_at_the_first_unanimous_window(answers: list, window: int,
                                                  expected: int) -> None:
    drawn, _ = run_episode(EarlyStoppingSC(window=window, max_samples=40), answers)
    assert drawn == expected == esc_by_definition(answers, window, 40)


def test_esc_matches_its_definition_on_random_sequences() -> None:
    rng = np.random.default_rng(2)
    for _ in range(300):
        answers = random_answers(rng, int(rng.integers(1, 45)), alphabet=3)
        window, cap = int(rng.integers(1, 7)), int(rng.integers(1, 41))
        drawn, _ = run_episode(EarlyStoppingSC(window=window, max_samples=cap), answers)
        assert drawn == esc_by_definition(answers, window, cap), (answers, window, cap)


def test_esc_needs_the_streak() -> None:
    state = QueryState(1)
    state.add_sample(0, "a")
    batch = state.to_batch()
    without = type(batch)(**{**batch.__dict__, "streak": None})
    with pytest.raises(ParameterError, match="streak"):
        EarlyStoppingSC().act(without, np.ones((1, 4), dtype=bool))


# ------------------------------------------------------------ confidence threshold


def decide(policy, votes: dict, no_answer: int = 0) -> int:
    state = QueryState(1)
    for answer, count in votes.items():
        for _ in range(count):
            state.add_sample(0, answer)
    for _ in range(no_answer):
        state.add_sample(0, None)
    return int(policy.act(state.to_batch(), np.ones((1, 4), dtype=bool))[0])


@pytest.mark.parametrize(("tau", "votes", "no_answer", "stops"), [
    (0.7, {"a": 7, "b": 3}, 0, True),     # share exactly tau (7 / 10 == 0.7)
    (0.7, {"a": 6, "b": 3}, 0, False),    # 0.667 < 0.7
    (0.75, {"a": 3, "b": 1}, 0, True),    # 3 / 4 exactly
    (0.75, {"a": 2, "b": 1}, 0, False),
    (0.6, {"a": 3}, 0, True),             # unanimous at min_samples
    (0.6, {"a": 2}, 0, False),            # unanimous but below min_samples (3)
    (0.6, {"a": 2}, 1, True),             # 3 samples; the share is over votes: 2 / 2
    (0.6, {"a": 1}, 2, True),             # 1 / 1 after 3 samples
    (0.9, {"a": 9, "b": 1}, 2, True),     # no-answers do not dilute the share
    (1.0, {"a": 5}, 0, True),
    (1.0, {"a": 5, "b": 1}, 0, False),
    (0.5, {}, 5, False),                  # no votes never stop
])
def test_confidence_threshold_boundaries(tau: float, votes: dict, no_answer: int,
                                         stops: bool) -> None:
    policy = ConfidenceThreshold(tau=tau, min_samples=3)
    assert (decide(policy, votes, no_answer) == STOP) == stops


def test_confidence_threshold_stops_at_max_samples() -> None:
    policy = ConfidenceThreshold(tau=0.9, min_samples=2, max_samples=6)
    drawn, _ = run_episode(policy, ["a", "b"] * 10)  # shares stay <= 2/3
    assert drawn == 6
    drawn, _ = run_episode(ConfidenceThreshold(tau=0.9, min_samples=1), ["a", "b"] * 10)
    assert drawn == 1  # one vote is a share of 1
    drawn, _ = run_episode(ConfidenceThreshold(tau=0.8, min_samples=2),
                           ["a", "b", "b"] + ["a"] * 9)
    # leader shares: 1/2, 2/3, 2/4, 3/5, 4/6, 5/7, 6/8, 7/9, 8/10 = tau: stops at 10
    assert drawn == 10
