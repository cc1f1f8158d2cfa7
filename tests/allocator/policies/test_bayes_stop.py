"""bayes-stop against the exact Bayes-optimal stopping rule computed by brute force.

The brute force knows nothing of the policy's sorted-count state: it enumerates every
latent sequence of answer kinds (correct ``A``, wrong ``B``, diffuse ``D``) under a known
mixture prior, maps each to the answer pattern an observer sees (``D`` draws are fresh
answers), and solves the stopping problem by backward induction over *full histories*
(answer patterns). The policy's table must give the same values and the same decision
in every reachable history.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

import numpy as np
import pytest
from policy_states import one_arm_log, stack

from allocator.actions import STOP, n_actions, sample_action
from allocator.featurizer import QueryState
from allocator.policies import BayesStop
from allocator.policies.bayes_stop import fit_prior, prior_grid, stopping_values
from allocator.training.evaluation.replay import ReplayEvaluator

#: A known prior with three kinds of answers (correct, one wrong, diffuse wrong ones).
THREE_KINDS = (((0.7, 0.2, 0.1), (0.4, 0.4, 0.2), (0.2, 0.5, 0.3), (0.9, 0.0, 0.1)),
               (0.35, 0.25, 0.25, 0.15))
#: Two kinds only: the correct answer and one wrong answer.
TWO_KINDS = (((0.8, 0.2, 0.0), (0.55, 0.45, 0.0), (0.3, 0.7, 0.0)), (0.5, 0.3, 0.2))


def observed(latent: tuple[str, ...]) -> tuple[int, ...]:
    """The answer pattern of a latent sequence: labels by order of first appearance."""
    label: dict[str, int] = {}
    pattern = []
    for i, kind in enumerate(latent):
        key = kind if kind in "AB" else f"D{i}"  # every diffuse draw is a new answer
        pattern.append(label.setdefault(key, len(label)))
    return tuple(pattern)


def credit(latent: tuple[str, ...], credited: str) -> float:
    """Credit of the majority vote (ties share it) when answer kind ``credited`` earns it."""
    if not latent:
        return 0.0
    pattern = observed(latent)
    counts = np.bincount(pattern)
    leaders = np.flatnonzero(counts == counts.max())
    answer = pattern[latent.index(credited)] if credited in latent else -1
    return float(answer in leaders) / len(leaders)


def stop_credit(latent: tuple[str, ...], a: float, b: float, objective: str) -> float:
    """What STOP earns: the correct answer ``A`` leads, or the component's mode does."""
    if objective == "correct" or a > b:
        return credit(latent, "A")
    if b > a:
        return credit(latent, "B")
    return 0.5 * (credit(latent, "A") + credit(latent, "B")) if a > 0 else 0.0


def brute_force(prior, horizon: int, price: float, objective: str = "mode"):
    """Stop value, continuation value and probability of every reachable history."""
    shares, weights = prior
    prob: dict[tuple, float] = defaultdict(float)
    won: dict[tuple, float] = defaultdict(float)
    for (a, b, d), w in zip(shares, weights, strict=True):
        share = {"A": a, "B": b, "D": d}
        for n in range(horizon + 1):
            for latent in itertools.product("ABD", repeat=n):
                p = w * math.prod(share[k] for k in latent)
                if p > 0:
                    prob[observed(latent)] += p
                    won[observed(latent)] += p * stop_credit(latent, a, b, objective)
    stop = {h: won[h] / prob[h] for h in prob}
    value, cont = {}, {}
    for h in sorted(prob, key=len, reverse=True):
        if len(h) == horizon:
            value[h] = stop[h]
            continue
        children = [(*h, k) for k in range(max(h, default=-1) + 2) if (*h, k) in prob]
        cont[h] = -price + sum(prob[c] / prob[h] * value[c] for c in children)
        value[h] = max(stop[h], cont[h])
    return stop, cont, prob


def sorted_state(history: tuple[int, ...]) -> tuple[int, int, int]:
    counts = sorted(np.bincount(history).tolist(), reverse=True) if history else []
    counts += [0, 0]
    return len(history), counts[0], counts[1]


@pytest.mark.parametrize(("prior", "horizon", "price", "objective"), [
    (THREE_KINDS, 7, 0.02, "mode"), (THREE_KINDS, 7, 0.004, "mode"),
    (THREE_KINDS, 7, 0.02, "correct"), (THREE_KINDS, 7, 0.004, "correct"),
    (TWO_KINDS, 8, 0.01, "mode"), (TWO_KINDS, 8, 0.03, "correct")])
def test_table_equals_the_brute_force_optimum_in_every_reachable_history(
        prior, horizon: int, price: float, objective: str) -> None:
    stop_bf, cont_bf, prob = brute_force(prior, horizon, price, objective)
    stop, cont = stopping_values(prior[0], prior[1], horizon, price, objective)
    policy = BayesStop(price=price, shares=prior[0], weights=prior[1], horizon=horizon,
                       objective=objective)
    decided = {"sample": 0, "stop": 0}
    for history in prob:
        n, t1, t2 = sorted_state(history)
        assert stop[n, t1, t2] == pytest.approx(stop_bf[history], abs=1e-12), history
        if n == horizon:
            continue
        assert cont[n, t1, t2] == pytest.approx(cont_bf[history], abs=1e-12), history
        gap = cont_bf[history] - stop_bf[history]
        assert abs(gap) > 1e-9, f"a near tie at {history}: pick another price"
        best = "sample" if gap > 0 else "stop"
        decided[best] += 1
        state = QueryState(1, prior=np.array([0.5]))
        for label in history:
            state.add_sample(0, f"answer{label}", cost=1.0)
        mask = np.ones((1, n_actions(1)), dtype=bool)
        action = int(policy.act(state.to_batch(), mask)[0])
        assert action == (sample_action(0) if best == "sample" else STOP), history
    assert decided["sample"] > 5 and decided["stop"] > 5  # both decisions are exercised


def test_the_policy_stops_at_the_horizon_and_beyond() -> None:
    """Two-way ties are worth breaking below the horizon; at or past it, it stops."""
    shares, weights = THREE_KINDS
    policy = BayesStop(price=1e-6, shares=shares, weights=weights, horizon=4)
    states = []
    for length in (0, 2, 4, 6):
        state = QueryState(1, prior=np.array([0.5]))
        for i in range(length):
            state.add_sample(0, f"x{i % 2}", cost=1.0)
        states.append(state)
    actions = policy.act(stack(states), np.ones((4, n_actions(1)), dtype=bool))
    np.testing.assert_array_equal(actions, [sample_action(0), sample_action(0), STOP, STOP])


def test_fit_recovers_a_known_mixture() -> None:
    """The maximum-likelihood prior on 4,000 simulated pools of 40 is close to the truth."""
    rng = np.random.default_rng(0)
    shares, weights = THREE_KINDS
    component = rng.choice(len(weights), size=4000, p=weights)
    counts = np.stack([rng.multinomial(40, shares[j]) for j in component])
    fitted_shares, fitted_weights = fit_prior(counts, step=0.05)
    grid = np.asarray(fitted_shares)
    mass = np.asarray(fitted_weights)
    assert mass.sum() == pytest.approx(1.0)
    for truth, weight in zip(shares, weights, strict=True):
        near = np.abs(grid - np.asarray(truth)).max(axis=1) <= 0.05 + 1e-9
        assert mass[near].sum() == pytest.approx(weight, abs=0.03), truth
    assert set(map(tuple, grid.tolist())) <= set(map(tuple, prior_grid(0.05).tolist()))


def test_a_lower_price_never_stops_earlier() -> None:
    """The optimal continuation region grows as the price falls (monotone knob)."""
    shares, weights = THREE_KINDS
    tables = [stopping_values(shares, weights, 12, price) for price in (0.05, 0.01, 0.002)]
    regions = [cont > stop for stop, cont in tables]
    for looser, stricter in itertools.pairwise(regions):
        assert (stricter | ~looser).all()  # sampling at a price: sampling when cheaper
        assert stricter.sum() > looser.sum()


def test_exact_replay_on_a_hand_made_log() -> None:
    """Unanimous pools stop where the brute force does, in every order; no votes: run out."""
    shares, weights = THREE_KINDS
    stop, cont, _ = brute_force(THREE_KINDS, 7, 0.02)
    unanimous = next(n for n in range(1, 8) if n == 7 or cont[(0,) * n] <= stop[(0,) * n])
    assert 1 < unanimous < 7  # the price makes the rule neither trivial nor exhaustive
    log = one_arm_log({"right": [("7", 1.0)] * 7, "wrong": [("3", 0.0)] * 7,
                       "mute": [(None, 0.0)] * 7})
    policy = BayesStop(price=0.02, shares=shares, weights=weights, horizon=7)
    results = ReplayEvaluator(log, n_orders=10, seed=1).run(policy)
    np.testing.assert_array_equal(results.cost, [[unanimous] * 10, [unanimous] * 10, [7] * 10])
    np.testing.assert_array_equal(results.correct, [[1.0] * 10, [0.0] * 10, [0.0] * 10])
