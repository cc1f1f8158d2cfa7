"""The Policy contract, table-driven over every registered policy."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from policy_states import random_masks, random_states, stack

from allocator.actions import STOP, mask_bits, refine_action, sample_action, verify_action
from allocator.errors import ParameterError
from allocator.featurizer import StateBatch, VoteStats
from allocator.policies import POLICIES, Policy, available_policies, make_policy

#: Per policy: bad values of each parameter (every registered policy must be listed).
BAD_PARAMETERS: dict[str, dict[str, list[object]]] = {
    "fixed-n": {"n": [0, -1, 2.5, True, "4"], "arm": [-1, 0.5], "verify": ["yes", 1]},
    "parallel-n": {"n": [0, -1, 2.5, True, "4"], "arm": [-1, 0.5],
                   "widths": [(2, 4), (1, 1), (), "14", (1, 0)]},
    "adaptive-consistency": {"threshold": [0.0, 1.5, -0.1, "0.9", None],
                             "max_samples": [0, 3.0], "arm": [-2]},
    "esc": {"window": [0, 2.5], "max_samples": [0], "arm": [-1]},
    "confidence-threshold": {"tau": [0.0, 1.01, "x"], "min_samples": [0, 1.5],
                             "max_samples": [0], "arm": [-1]},
    "difficulty-binned": {"edges": [(0.5, 0.2), (0.1, np.nan), "ab"],
                          "target": [0.0, -1.0, np.inf, 0.5], "min_samples": [-1],
                          "samples_per_bin": [(1, 2)], "bin_curves": [((0.5,),)],
                          "bin_counts": [(1, 1, 1, 1, 1)], "arm": [-1]},
    "blend-asc": {"budget": [0.0, -2.0, np.inf, "6"], "max_samples": [0, 2.5], "arm": [-1],
                  "calibration": [((0.0, 1.0), (-1.0, 2.0)), ((-1.0, 1.0), (0.0, 2.0)),
                                  "ab", ()]},
    "bayes-stop": {"price": [0.0, -0.1, np.inf, "0.01"], "horizon": [0, 1.5, 500],
                   "arm": [-1], "shares": [((0.5, 0.5, 0.5),), ((-0.1, 0.6, 0.5),), "x"],
                   "weights": [(0.5,)], "objective": ["accuracy", None]},
    "epsilon-greedy": {"base": ["no-such-policy", 3, None], "epsilon": [-0.1, 1.5, "0.2", None],
                       "seed": [-1, 2.5, True]},
    "until-verified": {"n": [0, 2.5, "8"], "tau": [np.nan, np.inf, "0.5", True, None],
                       "arm": [-1]},
    "best-of-n": {"n": [0, -1, 2.5], "arm": [-1], "verify": ["yes", 1, False]},
    "weighted-vote": {"n": [0, 2.5], "arm": [-1], "verify": [False, "no"]},
    "round-robin": {"max_samples": [0, 2.5], "threshold": [0.0, 1.5, "x"],
                    "tau": [np.nan, "x"], "arms": [(-1,), (0, 0), "01", 3, [0, 1]]},
    "cascade": {"tau": [0.0, 1.2, "x"], "k": [0, 1.5], "arms": [(0, -1), (1, 1), [0]]},
    "router": {"threshold": [0.0, 2.0], "max_samples": [0], "prices": [(1.0, 0.0),
               (np.inf,), [1.0], "ab"], "price_weight": [-1.0, np.nan, "1", True]},
    "rtv": {"n": [1, 0, 2.5, "8"], "arm": [-1]},
    "pdr": {"drafts": [0, 1.5], "refinements": [-1, 2.5, "4"], "tournament": ["yes", 1],
            "arm": [-1]},
}

#: "learned" needs an exported bundle: its contract is tested in tests/allocator/test_bundle.py.
NEEDS_A_BUNDLE = {"learned"}
NAMES = [name for name in available_policies() if name not in NEEDS_A_BUNDLE]
ARMS = 2


@pytest.fixture(scope="module")
def states():
    rng = np.random.default_rng(11)
    return stack(random_states(rng, 400, n_arms=ARMS))


def decisions(policy: Policy, states: StateBatch, mask: np.ndarray) -> np.ndarray:
    """What a policy decides: its actions, or a stochastic policy's action probabilities.

    A stochastic policy's ``act`` draws (it differs from call to call by design); the
    distribution it draws from is what must not depend on the batch or the statistics.
    """
    if policy.stochastic:
        return policy.probabilities(states, mask)
    return policy.act(states, mask)


def mode(policy: Policy, states: StateBatch, mask: np.ndarray) -> np.ndarray:
    """The most likely action (``act`` for a deterministic policy)."""
    if policy.stochastic:
        return policy.probabilities(states, mask).argmax(axis=1)
    return policy.act(states, mask)


def instances(name: str) -> list[Policy]:
    """The default policy and one per value of its default sweep."""
    policy = make_policy(name)
    return [policy, *(policy.with_knob(value) for value in policy.default_sweep)]


def test_every_policy_has_a_table_row_and_a_knob() -> None:
    assert set(NAMES) == set(BAD_PARAMETERS)
    assert set(NAMES) >= {"fixed-n", "adaptive-consistency", "esc", "confidence-threshold",
                          "difficulty-binned"}
    for name in NAMES:
        cls = POLICIES[name]
        assert cls.knob is not None and len(cls.default_sweep) >= 5
        assert dataclasses.fields(cls)  # a dataclass with hyperparameters as fields


@pytest.mark.parametrize("name", NAMES)
def test_actions_are_int64_allowed_and_one_per_state(name: str, states) -> None:
    rng = np.random.default_rng(3)
    for policy in instances(name):
        for _ in range(3):
            mask = random_masks(rng, states.batch_size, ARMS)
            actions = policy.act(states, mask)
            assert actions.dtype == np.int64 and actions.shape == (states.batch_size,)
            assert mask[np.arange(len(actions)), actions].all(), policy.describe()


@pytest.mark.parametrize("name", NAMES)
def test_masked_sample_means_stop(name: str, states) -> None:
    """Where it wanted to SAMPLE and no SAMPLE is allowed, a policy STOPs (a verifying or
    refining policy may VERIFY or REFINE first; with those masked too it STOPs)."""
    samples = [sample_action(arm) for arm in range(ARMS)]
    for policy in instances(name):
        full = np.ones((states.batch_size, ARMS + 3), dtype=bool)
        wanted = np.isin(mode(policy, states, full), samples)
        assert wanted.any() or policy.describe().startswith(
            ("fixed-n(n=1", "best-of-n(n=1", "weighted-vote(n=1", "parallel-n(n=1"))
        no_sample = full.copy()
        no_sample[:, samples] = False
        after = mode(policy, states, no_sample)[wanted]
        assert np.isin(after, (STOP, refine_action(ARMS), verify_action(ARMS))).all(), (
            policy.describe())
        no_sample[:, [refine_action(ARMS), verify_action(ARMS)]] = False
        assert (mode(policy, states, no_sample)[wanted] == STOP).all(), policy.describe()


@pytest.mark.parametrize("name", NAMES)
def test_sweep_changes_the_knob_and_keeps_the_rest(name: str) -> None:
    policy = make_policy(name)
    for value in policy.default_sweep:
        swept = policy.with_knob(value)
        assert type(swept) is type(policy) and getattr(swept, policy.knob) == value
        for field in ("arm", "arms"):  # the arms it samples stay (multi-arm: "arms")
            assert getattr(swept, field, None) == getattr(policy, field, None)
        assert hash(swept) == hash(policy.with_knob(value))  # frozen, hashable, comparable
    assert len({policy.with_knob(v) for v in policy.default_sweep}) == len(
        policy.default_sweep)


@pytest.mark.parametrize("name", NAMES)
def test_probabilities_are_distributions_on_allowed_actions(name: str, states) -> None:
    rng = np.random.default_rng(4)
    mask = random_masks(rng, states.batch_size, ARMS)
    policy = make_policy(name)
    probs = policy.probabilities(states, mask)
    assert probs.shape == mask.shape
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert (probs[~mask] == 0).all()
    actions = policy.act(states, mask)
    if policy.stochastic:  # draws only actions it gives probability > 0
        assert (probs[np.arange(len(actions)), actions] > 0).all()
    else:
        np.testing.assert_array_equal(probs.argmax(axis=1), actions)


@pytest.mark.parametrize("name", NAMES)
def test_bad_parameters_name_the_parameter(name: str) -> None:
    for parameter, values in BAD_PARAMETERS[name].items():
        for value in values:
            with pytest.raises(ParameterError) as error:
                make_policy(name, **{parameter: value})
            assert error.value.parameter == parameter, (parameter, value)
            assert POLICIES[name].__name__ in str(error.value)
            assert repr(value)[:10] in str(error.value) or parameter == "bin_curves"


@pytest.mark.parametrize("name", NAMES)
def test_arm_beyond_the_state_and_bad_mask_shapes_are_refused(name: str, states) -> None:
    mask = np.ones((states.batch_size, ARMS + 3), dtype=bool)
    if "arms" in POLICIES[name].__dataclass_fields__:  # a multi-arm policy
        with pytest.raises(ParameterError, match="'arms'"):
            make_policy(name, arms=(0, ARMS)).act(states, mask)
    else:
        with pytest.raises(ParameterError, match="'arm'"):
            make_policy(name, arm=ARMS).act(states, mask)
    with pytest.raises(ParameterError, match="'mask'"):
        make_policy(name).act(states, mask[:, :-1])


@pytest.mark.parametrize("name", NAMES)
def test_decisions_do_not_depend_on_the_batch(name: str, states) -> None:
    """Deciding state by state (B = 1, through QueryState) equals deciding in one batch."""
    rng = np.random.default_rng(8)
    singles = random_states(rng, 60, n_arms=ARMS)
    batch = stack(singles)
    mask = random_masks(rng, len(singles), ARMS)
    policy = make_policy(name)
    one_by_one = [decisions(policy, s.to_batch(), mask[i : i + 1])[0]
                  for i, s in enumerate(singles)]
    np.testing.assert_array_equal(decisions(policy, batch, mask), np.stack(one_by_one))


@pytest.mark.parametrize("name", NAMES)
def test_given_vote_stats_give_the_same_decisions(name: str, states) -> None:
    rng = np.random.default_rng(9)
    mask = random_masks(rng, states.batch_size, ARMS)
    fields = {f.name: getattr(states, f.name) for f in dataclasses.fields(states)}
    fields["stats"] = VoteStats.from_votes(states.votes)
    policy = make_policy(name)
    np.testing.assert_array_equal(decisions(policy, StateBatch(**fields), mask),
                                  decisions(policy, states, mask))


@pytest.mark.parametrize("name", [n for n in NAMES if not POLICIES[n].stochastic])
def test_the_session_decision_function_decides_as_act(name: str) -> None:
    """``decision_function`` (what a session calls, mask as a bit set) equals ``act``."""
    rng = np.random.default_rng(12)
    singles = random_states(rng, 80, n_arms=ARMS)
    mask = random_masks(rng, len(singles), ARMS)
    policy = make_policy(name)
    decide = policy.decision_function(ARMS)
    bits = [mask_bits(row) for row in mask]
    by_function = [decide(state, allowed) for state, allowed in zip(singles, bits, strict=True)]
    np.testing.assert_array_equal(by_function, policy.act(stack(singles), mask))
    assert len(set(by_function)) > 1  # the states and masks matter
