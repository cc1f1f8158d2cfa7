"""Parallel widths in the policies: the ``parallel-n`` baseline, wide masks for every
other policy, and sessions that offer SAMPLE(arm)×w (waves)."""

from __future__ import annotations

import numpy as np
import pytest
from policy_states import random_masks, random_states, stack

from allocator.actions import STOP, action_layout, mask_bits, n_actions, sample_action
from allocator.errors import AllocatorError, ParameterError
from allocator.executors import PolicyOracle
from allocator.featurizer import QueryState
from allocator.policies import POLICIES, FixedN, ParallelN, available_policies, make_policy
from allocator.session import AttemptResult

ARMS = 2


def wide(mask: np.ndarray, extra: int, rng: np.random.Generator) -> np.ndarray:
    """``mask`` with ``extra`` random widths' columns appended (A per width)."""
    more = rng.random((mask.shape[0], extra * ARMS)) < 0.6
    return np.concatenate([mask, more], axis=1)


@pytest.mark.parametrize("name", [n for n in available_policies()
                                  if n not in {"learned", "parallel-n"}
                                  and not POLICIES[n].stochastic])
def test_policies_without_waves_decide_as_before_on_wide_masks(name: str) -> None:
    """A wider layout appends actions: the others never pick them, and decide as on the
    default layout's mask (the first A + 3 positions never depend on the widths)."""
    rng = np.random.default_rng(5)
    states = stack(random_states(rng, 200, n_arms=ARMS))
    mask = random_masks(rng, states.batch_size, ARMS)
    policy = make_policy(name)
    for extra in (1, 2):
        actions = policy.act(states, wide(mask, extra, rng))
        np.testing.assert_array_equal(actions, policy.act(states, mask))
    decide = policy.decision_function(ARMS, (1, 2, 4))
    single = random_states(rng, 30, n_arms=ARMS)
    bits = [mask_bits(row) for row in wide(random_masks(rng, 30, ARMS), 2, rng)]
    base = (1 << n_actions(ARMS)) - 1
    assert [decide(s, b) for s, b in zip(single, bits, strict=True)] == [
        policy.decision_function(ARMS)(s, b & base) for s, b in zip(single, bits, strict=True)]


def state_with(samples: int, arm: int = 0) -> QueryState:
    state = QueryState(ARMS, prior=np.full(ARMS, 0.5), lam=0.0)
    for i in range(samples):
        state.add_sample(arm, f"a{i % 2}", 1.0)
    return state


@pytest.mark.parametrize("widths, n, expected", [
    ((1,), 4, [1, 1, 1, 1]),           # the default layout: fixed-N, one at a time
    ((1, 4), 4, [4]),                  # one wave of n
    ((1, 4), 6, [4, 1, 1]),            # the widest that fits what is still lacking
    ((1, 2, 4), 7, [4, 2, 1]),
    ((1, 8), 4, [1, 1, 1, 1]),         # a width past n is never taken
])
def test_parallel_n_takes_the_widest_width_that_fits(widths, n, expected) -> None:
    layout = action_layout(ARMS, widths)
    policy = ParallelN(n=n, arm=1, widths=widths)
    state, taken = state_with(0), []
    while True:
        mask = np.ones((1, layout.n), dtype=bool)
        action = int(policy.act(state.to_batch(), mask)[0])
        if action == STOP:
            break
        assert layout.arm_of(action) == 1
        taken.append(layout.width_of(action))
        for _ in range(layout.width_of(action)):
            state.add_sample(1, "x", 1.0)
    assert taken == expected


def test_parallel_n_reads_width_n_from_a_mask_with_one_extra_width() -> None:
    states = stack([state_with(0), state_with(2), state_with(4)])
    layout = action_layout(ARMS, (1, 4))
    mask = np.ones((3, layout.n), dtype=bool)
    actions = make_policy("parallel-n", n=4).act(states, mask)
    assert actions.tolist() == [layout.sample_of(0, 4), sample_action(0), STOP]
    mask[0, layout.sample_of(0, 4)] = False  # the pool cannot give 4 more: one at a time
    assert make_policy("parallel-n", n=4).act(states, mask)[0] == sample_action(0)
    with pytest.raises(ParameterError, match="'widths'"):  # two extra widths: which?
        make_policy("parallel-n").act(states, np.ones((3, n_actions(ARMS, (1, 2, 4))), bool))
    with pytest.raises(ParameterError, match="'mask'"):  # a mask of another layout
        ParallelN(widths=(1, 2, 4)).act(states, mask)


def test_parallel_n_in_the_default_layout_is_fixed_n() -> None:
    rng = np.random.default_rng(2)
    states = stack(random_states(rng, 300, n_arms=ARMS))
    mask = random_masks(rng, states.batch_size, ARMS)
    for n in (1, 3, 8):
        np.testing.assert_array_equal(ParallelN(n=n).act(states, mask),
                                      FixedN(n=n).act(states, mask))


# ------------------------------------------------------------------ sessions with waves
def test_a_session_offers_a_wave_and_observes_it_result_by_result() -> None:
    oracle = PolicyOracle(make_policy("parallel-n", n=4), ["small", "big"], widths=(1, 4))
    session = oracle.session()
    assert session.widths == (1, 4)
    assert session.allowed_actions().shape == (n_actions(2, (1, 4)),)
    action = session.next_action()
    assert (action.kind, action.arm, action.width) == ("sample", "small", 4)
    assert str(action) == "SAMPLE(small)x4"
    assert session.next_action() is action  # nothing reported yet: the same decision
    assert session.wave_outstanding == 4
    session.observe(AttemptResult("sample", None, "7", 10.0))
    assert session.wave_outstanding == 3
    with pytest.raises(AllocatorError, match="3 of its 4 results outstanding"):
        session.next_action()
    with pytest.raises(AllocatorError, match="outstanding"):
        session.verify({0: 1.0})
    for answer in ("7", "8", "7"):
        session.observe(AttemptResult("sample", None, answer, 10.0))
    assert session.wave_outstanding == 0
    assert session.state.samples.tolist() == [4, 0]
    assert session.next_action().kind == "stop"
    assert session.final_answer() == "7"
    assert [str(event) for event in session.history if hasattr(event, "index")] == [
        "SAMPLE(small)x4", "STOP"]


def test_the_default_layout_keeps_one_attempt_per_sample() -> None:
    session = PolicyOracle(make_policy("parallel-n", n=3), ["a"]).session()
    assert session.widths == (1,) and session.allowed_actions().shape == (4,)
    widths = []
    while (action := session.next_action()).kind != "stop":
        widths.append(action.width)
        session.observe(AttemptResult("sample", "a", "x", 1.0))
    assert widths == [1, 1, 1]


@pytest.mark.parametrize("kwargs, expected", [
    ({"max_samples": 3}, [1, 1, 1]),                       # no room for 4 more
    ({"max_samples": 9}, [4, 1]),                          # n=5: a wave, then one more
    ({"max_samples_per_arm": {"a": 6}}, [4, 1]),
    ({"max_samples_per_arm": {"a": 2}}, [1, 1]),           # the arm's cap is below 4
])
def test_waves_are_masked_where_the_arm_or_max_samples_cannot_give_w_more(kwargs, expected
                                                                          ) -> None:
    session = PolicyOracle(make_policy("parallel-n", n=5), ["a"], widths=(1, 4)).session(
        **kwargs)
    widths = []
    while (action := session.next_action()).kind != "stop":
        widths.append(action.width)
        for _ in range(action.width):
            session.observe(AttemptResult("sample", "a", "x", 1.0))
    assert widths == expected


def test_bad_widths_are_refused_naming_the_field() -> None:
    for bad in [(2, 4), (1, 1), (), "14", (1, 0)]:
        with pytest.raises(ParameterError, match="'widths'"):
            PolicyOracle(make_policy("fixed-n"), ["a"], widths=bad)
    with pytest.raises(ParameterError, match="'widths'"):  # the policy's own differ
        PolicyOracle(ParallelN(widths=(1, 2)), ["a"], widths=(1, 4)).session()
