"""Bayes-optimal stopping of self-consistency under an empirical-Bayes prior (``bayes-stop``).

After Huang, Ma and Zhou 2026, "Optimal Bayesian Stopping for Efficient Inference of
Consistent LLM Answers" (arXiv 2602.05395): a prior over a query's answer distribution,
fitted on other queries (:func:`fit_prior`), turns "when to stop sampling" into a Bayesian
optimal-stopping problem on the counts of the two most frequent answers, solved exactly by
backward induction (:func:`stopping_values`). :class:`BayesStop` is the policy and
documents the model.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import numpy as np

from allocator.errors import ParameterError
from allocator.featurizer import StateBatch
from allocator.policies._common import (
    check_int,
    check_mask,
    check_positive,
    leader_votes,
    sample_or_stop,
)
from allocator.policies.base import Policy
from allocator.policies.registry import register_policy

__all__ = ["BayesStop", "fit_prior", "prior_grid", "stopping_model", "stopping_values"]

_OWNER = "BayesStop ('bayes-stop')"
#: Largest horizon accepted (the table has (horizon + 1)^3 cells).
MAX_HORIZON = 128
#: Grid step of the default (unfitted) prior: uniform over the (a, b) grid.
_DEFAULT_STEP = 0.1
#: Mixture components lighter than this are dropped after fitting.
_MIN_WEIGHT = 1e-4
#: The four ways the next vote moves the state: the leader's answer grows, the
#: runner-up's grows, a single-vote answer grows to two, a new answer appears.
_EVENTS = ("top1", "top2", "single", "new")
#: What STOP earns: the majority vote's correctness, or its agreement with the mode.
OBJECTIVES = ("mode", "correct")


# ------------------------------------------------------------------------ the prior
def prior_grid(step: float) -> np.ndarray:
    """Every ``(a, b, d)`` with ``a, b`` multiples of ``step`` and ``a + b <= 1``.

    Returns:
        float64 array of shape (J, 3), rows summing to 1.
    """
    k = round(1.0 / step)
    rows = [(i / k, j / k, (k - i - j) / k) for i in range(k + 1) for j in range(k + 1 - i)]
    return np.array(rows, dtype=np.float64)


def _xlogy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``x * log(y)`` with ``0 * log(0) = 0`` (and ``-inf`` where ``x > 0 = y``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x == 0, 0.0, x * np.log(y))


def fit_prior(counts: np.ndarray, step: float = 0.05, *, iterations: int = 2000,
              tol: float = 1e-10) -> tuple[tuple[tuple[float, float, float], ...],
                                           tuple[float, ...]]:
    """The maximum-likelihood mixture over ``(a, b, d)`` for the training queries' pools.

    Each training query contributes its pool's vote counts ``(x_A, x_B, x_D)``: votes for
    the correct answer, for the most frequent wrong answer, and for every other answer.
    The likelihood of a query under a component is ``a^x_A b^x_B d^x_D``; the mixture
    weights over :func:`prior_grid` maximise the total log-likelihood (the
    nonparametric MLE of Kiefer and Wolfowitz, a concave problem: EM from uniform
    weights converges to its maximum). Components lighter than 1e-4 are dropped and the
    rest renormalised. Queries without any vote carry no information and are skipped.

    Args:
        counts: shape (Q, 3), non-negative integers.
        step: the grid step on ``a`` and ``b``.
        iterations: most EM iterations.
        tol: stop when no weight moves by more than this.

    Returns:
        ``(shares, weights)``, as plain tuples of floats (the policy's fields).

    Raises:
        ParameterError: bad counts (shape, negative, no query with a vote) or step.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[1] != 3 or not np.isfinite(counts).all() or (
            counts < 0).any():
        raise ParameterError(f"{_OWNER}.fit_prior", "counts",
                             "an array of shape (Q, 3) of vote counts >= 0", counts.shape)
    counts = counts[counts.sum(axis=1) > 0]
    if len(counts) == 0:
        raise ParameterError(f"{_OWNER}.fit_prior", "counts",
                             "at least one query with a vote", 0)
    if not (isinstance(step, numbers.Real) and 0 < step <= 0.5
            and abs(1 / step - round(1 / step)) < 1e-9):
        raise ParameterError(f"{_OWNER}.fit_prior", "step", "1/k for an integer k >= 2", step)
    grid = prior_grid(float(step))
    counts, repeats = np.unique(counts, axis=0, return_counts=True)
    share = repeats / repeats.sum()
    loglik = sum(_xlogy(counts[:, i : i + 1], grid[None, :, i]) for i in range(3))
    likelihood = np.exp(loglik - loglik.max(axis=1, keepdims=True))
    weights = np.full(len(grid), 1.0 / len(grid))
    for _ in range(iterations):
        joint = likelihood * weights
        new = share @ (joint / joint.sum(axis=1, keepdims=True))
        moved = float(np.abs(new - weights).max())
        weights = new
        if moved < tol:
            break
    keep = weights >= _MIN_WEIGHT
    kept = weights[keep] / weights[keep].sum()
    shares = tuple(tuple(float(v) for v in row) for row in grid[keep])
    return shares, tuple(float(w) for w in kept)  # type: ignore[return-value]


@lru_cache(maxsize=4)
def _default_prior() -> tuple[tuple[tuple[float, float, float], ...], tuple[float, ...]]:
    """The unfitted prior: uniform weights on the grid of step 0.1."""
    grid = prior_grid(_DEFAULT_STEP)
    shares = tuple(tuple(float(v) for v in row) for row in grid)
    return shares, (1.0 / len(grid),) * len(grid)  # type: ignore[return-value]


# ----------------------------------------------------------------- the model tables
def _assignments(n: int, top1: int, top2: int) -> list[tuple[str, str, int, int, int]]:
    """Who is ``A`` and who is ``B`` among the answers of state ``(n, top1, top2)``.

    Groups: the leader (``"g1"``, ``top1`` votes), the runner-up (``"g2"``, ``top2``),
    ``n - top1 - top2`` answers with one vote (``"s"``, interchangeable) and an answer
    not seen yet (``"u"``). Every answer with two votes or more must be ``A`` or ``B``
    (a diffuse answer never repeats). Returns ``(alpha, beta, ways, x_A, x_B)`` per
    possible assignment, ``ways`` counting the interchangeable single-vote answers.
    """
    singles = n - top1 - top2
    count = {"g1": top1, "g2": top2, "s": 1, "u": 0}
    groups = {"g1": 1 if top1 else 0, "g2": 1 if top2 else 0, "s": singles, "u": 1}
    return [(alpha, beta, groups[alpha] * (groups[beta] - (alpha == beta != "u")),
             count[alpha], count[beta])
            for alpha, beta in _pairs(min(top1, 2), min(top2, 2), min(singles, 2))]


@lru_cache(maxsize=32)
def _pairs(top1: int, top2: int, singles: int) -> tuple[tuple[str, str], ...]:
    """The possible ``(alpha, beta)`` of :func:`_assignments`, from counts capped at 2
    (all that decides which pairs have ways > 0 and leave no repeated answer to D)."""
    count = {"g1": top1, "g2": top2, "s": 1, "u": 0}
    groups = {"g1": 1 if top1 else 0, "g2": 1 if top2 else 0, "s": singles, "u": 1}
    repeated = [g for g in groups if count[g] >= 2 and groups[g]]
    return tuple((alpha, beta) for alpha in groups for beta in groups
                 if groups[alpha] * (groups[beta] - (alpha == beta != "u")) > 0
                 and all(g in (alpha, beta) for g in repeated))


def _top_two(*counts: int) -> tuple[int, int]:
    ordered = sorted(counts, reverse=True)
    return ordered[0], ordered[1]


def _next_states(top1: int, top2: int) -> list[tuple[int, int]]:
    """``(top1, top2)`` after each of the four events (see ``_EVENTS``)."""
    return [_top_two(top1 + 1, top2), _top_two(top1, top2 + 1), _top_two(top1, top2, 2),
            _top_two(top1, top2, 1)]


@dataclass(frozen=True)
class StoppingModel:
    """Posterior quantities of every state ``(n, top1, top2)``, ``n <= horizon``.

    Attributes:
        stop: expected correctness of stopping, shape (H+1, H+1, H+1) (0 off the states).
        events: probability of each of the four next-vote events (``_EVENTS``), shape
            (H+1, H+1, H+1, 4).
        next_top: ``(top1, top2)`` after each event, shape (H+2, H+2, 4, 2).
        valid: whether the prior can produce ``(n, top1, top2)``, shape (H+1, H+1, H+1)
            (elsewhere the stop value and the event probabilities are 0, and the policy
            stops).
    """

    stop: np.ndarray
    events: np.ndarray
    next_top: np.ndarray
    valid: np.ndarray


def _states(n: int) -> list[tuple[int, int]]:
    """The possible ``(top1, top2)`` with ``n`` votes."""
    if n == 0:
        return [(0, 0)]
    return [(t1, t2) for t1 in range(1, n + 1) for t2 in range(0, min(t1, n - t1) + 1)
            if t2 > 0 or t1 == n]


@lru_cache(maxsize=16)
def stopping_model(shares: tuple[tuple[float, float, float], ...], weights: tuple[float, ...],
                   horizon: int, objective: str = "mode") -> StoppingModel:
    """Stop values and next-vote probabilities of every state, under the mixture prior.

    For each state the posterior over (component, assignment of ``A`` and ``B``) is
    proportional to ``weight * ways * a^x_A b^x_B d^(n - x_A - x_B)``; the stop value is
    the posterior probability that the credited answer (``A``, or the component's mode:
    see ``_credit``) is among the leaders, divided by the number of leaders; the next
    vote is ``A``, ``B`` or a fresh diffuse answer with probabilities ``a``, ``b``,
    ``d``. Computed layer by layer (one ``n`` at a time) in numpy.
    """
    grid = np.asarray(shares, dtype=np.float64)
    log_weight = np.log(np.asarray(weights, dtype=np.float64))
    size = horizon + 1
    stop = np.zeros((size, size, size))
    events = np.zeros((size, size, size, 4))
    valid = np.zeros((size, size, size), dtype=bool)
    for n in range(size):
        _fill_layer(n, grid, log_weight, objective, stop, events, valid)
    next_top = np.zeros((size + 1, size + 1, 4, 2), dtype=np.int64)
    for t1 in range(size + 1):
        for t2 in range(t1 + 1):
            next_top[t1, t2] = np.minimum(_next_states(t1, t2), size)
    for array in (stop, events, valid, next_top):
        array.flags.writeable = False
    return StoppingModel(stop, events, next_top, valid)


def _leads(group: str, n: int, top1: int, top2: int) -> bool:
    """Whether answer group ``group`` of state ``(n, top1, top2)`` is among the leaders."""
    return n > 0 and (group == "g1" or (group == "g2" and top2 == top1)
                      or (group == "s" and top1 == 1))


def _credit(objective: str, grid: np.ndarray, credit_a: np.ndarray,
            credit_b: np.ndarray) -> np.ndarray:
    """Credit of stopping per (assignment row, component), shape (rows, J).

    ``"correct"``: the majority vote is ``A`` (ties share). ``"mode"``: the majority vote
    is the mode of the component's answer distribution (``A`` if ``a > b``, ``B`` if
    ``b > a``, either for half when ``a = b > 0``; none when ``a = b = 0``).
    """
    a, b = grid[None, :, 0], grid[None, :, 1]
    if objective == "correct":
        return np.broadcast_to(credit_a[:, None], (len(credit_a), len(grid)))
    return ((a > b) * credit_a[:, None] + (b > a) * credit_b[:, None]
            + ((a == b) & (a > 0)) * 0.5 * (credit_a + credit_b)[:, None])


def _fill_layer(n: int, grid: np.ndarray, log_weight: np.ndarray, objective: str,
                stop: np.ndarray, events: np.ndarray, valid: np.ndarray) -> None:
    """Stop values and event probabilities of the states with ``n`` votes."""
    rows, index = [], []
    for t1, t2 in _states(n):
        leaders = 1 + (t2 == t1) + (n - t1 - t2 if t1 == 1 else 0)
        for alpha, beta, ways, x_a, x_b in _assignments(n, t1, t2):
            rows.append((math.log(ways), x_a, x_b, n - x_a - x_b,
                         _leads(alpha, n, t1, t2) / max(leaders, 1),
                         _leads(beta, n, t1, t2) / max(leaders, 1), alpha, beta))
            index.append((t1, t2))
    table = np.array([r[:6] for r in rows], dtype=np.float64)
    log_ways, x_a, x_b, x_d, credit_a, credit_b = table.T
    logp = (log_ways[:, None] + log_weight[None, :] + _xlogy(x_a[:, None], grid[None, :, 0])
            + _xlogy(x_b[:, None], grid[None, :, 1]) + _xlogy(x_d[:, None], grid[None, :, 2]))
    states = sorted(set(index))
    position = {key: k for k, key in enumerate(states)}
    state_of = np.array([position[i] for i in index])
    top = np.full(len(states), -np.inf)
    np.maximum.at(top, state_of, logp.max(axis=1))
    top[~np.isfinite(top)] = 0.0  # a state the prior cannot produce: no mass at all
    joint = np.exp(logp - top[state_of][:, None])
    mass = joint.sum(axis=1)
    total = np.bincount(state_of, mass, len(states))
    grows = joint @ grid  # (rows, 3): mass times the chance the next vote is A, B, D
    alpha = np.array([r[6] for r in rows])
    beta = np.array([r[7] for r in rows])
    per_event = np.stack([
        grows[:, 0] * (alpha == "g1") + grows[:, 1] * (beta == "g1"),
        grows[:, 0] * (alpha == "g2") + grows[:, 1] * (beta == "g2"),
        grows[:, 0] * (alpha == "s") + grows[:, 1] * (beta == "s"),
        grows[:, 0] * (alpha == "u") + grows[:, 1] * (beta == "u") + grows[:, 2],
    ], axis=1)
    credit = _credit(objective, grid, credit_a, credit_b)
    won = np.bincount(state_of, (joint * credit).sum(axis=1), len(states))
    moves = np.zeros((len(states), 4))
    np.add.at(moves, state_of, per_event)
    t1, t2 = np.array(states).T
    possible = total > 0
    scale = np.where(possible, 1.0 / np.where(possible, total, 1.0), 0.0)
    stop[n, t1, t2] = won * scale
    events[n, t1, t2] = moves * scale[:, None]
    valid[n, t1, t2] = possible


@lru_cache(maxsize=64)
def stopping_values(shares: tuple[tuple[float, float, float], ...], weights: tuple[float, ...],
                    horizon: int, price: float, objective: str = "mode",
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The optimal stopping problem solved by backward induction over ``n``.

    ``V(n, s) = max(stop(s), -price + E[V(n + 1, s') | s])`` for ``n < horizon``, and
    ``V(horizon, s) = stop(s)``.

    Returns:
        ``(stop, cont)``, each shape (H+1, H+1, H+1): the value of stopping and of
        sampling once more (``-inf`` at ``n = horizon``) in every state; read-only.
    """
    model = stopping_model(shares, weights, horizon, objective)
    size = horizon + 1
    cont = np.full((size, size, size), -np.inf)
    value = model.stop[horizon].copy()
    padded = np.zeros((size + 1, size + 1))
    t1, t2 = model.next_top[:size, :size, :, 0], model.next_top[:size, :size, :, 1]
    for n in range(horizon - 1, -1, -1):
        padded[:size, :size] = value
        ahead = (model.events[n] * padded[t1, t2]).sum(axis=2)
        cont[n] = np.where(model.valid[n], ahead - price, -np.inf)
        value = np.maximum(model.stop[n], cont[n])
    cont.flags.writeable = False
    return model.stop, cont


@lru_cache(maxsize=64)
def _decision_table(shares: tuple[tuple[float, float, float], ...], weights: tuple[float, ...],
                    horizon: int, price: float, objective: str) -> np.ndarray:
    """``table[n, top1, top2]``: True where sampling once more is strictly better."""
    stop, cont = stopping_values(shares, weights, horizon, price, objective)
    table = cont > stop
    table.flags.writeable = False
    return table


# ---------------------------------------------------------------------- the policy
@register_policy
@dataclass(frozen=True)
class BayesStop(Policy):
    """Bayes-optimal stopping under a prior fitted on training queries (Huang et al. 2026).

    "Optimal Bayesian Stopping for Efficient Inference of Consistent LLM Answers" (arXiv
    2602.05395), under the model below: with ``n`` votes, ``top1`` for the leading answer
    and ``top2`` for the runner-up, SAMPLE(arm) exactly when one more sample is worth more
    than its ``price`` under the optimal continuation, i.e. when the backward-induction
    value of sampling exceeds the posterior expected credit of stopping now (ties stop); at
    ``horizon`` votes, or when the arm's pool is exhausted (masked), STOP.

    The knob is ``price`` (expected credit one sample must buy), not a posterior
    threshold: the price is the environment's lambda, for which the table is the exact
    Bayes optimum of ``credit - price * samples``, so sweeping it traces the
    Bayes-optimal front of the fitted prior; a threshold on the posterior would be a
    myopic rule with no such guarantee.

    The model (our own formulation, written from the paper's abstract and summaries; its
    methods section was not readable here):

    - a query's attempts are i.i.d. draws of three kinds: the correct answer ``A`` with
      share ``a``, one wrong answer ``B`` with share ``b``, and *diffuse* answers ``D`` with
      share ``d = 1 - a - b``, each a fresh answer never seen before (scattered wrong
      answers). A drawn pool shuffled in a random order is again an i.i.d. sequence, so the
      model holds for exact replay without replacement too.
    - the prior is a finite mixture ``sum_j weights[j] * delta(shares[j])`` over
      ``(a, b, d)``, fitted on the *training* queries by maximum likelihood
      (:func:`fit_prior`: the nonparametric maximum-likelihood mixture on a grid, by EM).
    - under this model at most two answers repeat, so the sorted vote counts are
      ``(top1, top2, 1, ..., 1)``: the state ``(n, top1, top2)`` (``n`` = votes) is a
      sufficient statistic, and the posterior is a sum over which observed answer is ``A``
      and which is ``B`` (:func:`stopping_model`).
    - STOP earns, in expectation under the posterior, the credit of the majority vote (ties
      share it, as the replay environment grades them); each SAMPLE costs ``price`` (per
      sample, the environment's lambda with one sample as the cost unit). The decision table
      is the exact optimum of that problem up to ``horizon`` votes, by backward induction
      (:func:`stopping_values`), computed once per (prior, price, horizon, objective) and
      cached, so :meth:`BayesStop.act` is a table lookup.
    - the credit (``objective``): ``"mode"`` (the default, the paper's target): the majority
      vote is the mode of the query's answer distribution (``A`` if ``a > b``, ``B`` if
      ``b > a``); ``"correct"``: the majority vote is the correct answer ``A``. With
      ``"correct"`` more votes can *lower* the expected credit, because the final answer is
      the majority, not the posterior's best guess: where the prior says the leading answer
      is often a consistent wrong one, the optimal rule stops at a tie (half credit) rather
      than let further votes confirm the likely-wrong leader. That is optimal for the prior,
      but it cannot reach the accuracy of the majority of all samples: on date / GPT-3.5
      ``"correct"`` levels off below it however low the price, while ``"mode"`` reaches it.
      Hence the default; both are Bayes-optimal for their own credit.

    On real logs, where a third answer may repeat, the table is read at the state's
    ``(votes, top1, top2)`` with the rest lumped, which is the paper's L = 3 aggregation.
    Attempts without an answer do not vote: they cost a sample and do not move the state.
    A query whose pool holds fewer than ``horizon`` samples stops when it runs out (the
    mask), which the table does not anticipate.

    Build it fitted with :meth:`fit` (the prior is the maximum-likelihood mixture on the
    training queries, :func:`fit_prior`); unfitted, the prior is uniform on the grid of
    step 0.1 (a documented default, not a substitute for fitting).

    Args:
        price: correctness per sample, > 0; the knob.
        shares: the prior's components ``(a, b, d)`` (correct answer, main wrong answer,
            diffuse answers), each summing to 1; None: the default prior.
        weights: the components' weights, summing to 1; None with ``shares`` None.
        horizon: votes after which it stops (the table's size; the training pools'
            largest size), 1..128.
        objective: what STOP earns: ``"mode"`` (the majority vote is the answer
            distribution's mode) or ``"correct"`` (it is the correct answer).
        arm: the arm sampled.
    """

    name: ClassVar[str] = "bayes-stop"
    knob: ClassVar[str | None] = "price"
    default_sweep: ClassVar[tuple[float, ...]] = (0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002,
                                                  0.001, 5e-4, 2e-4, 1e-4, 5e-5, 2e-5, 1e-5)

    price: float = 0.01
    shares: tuple[tuple[float, float, float], ...] | None = None
    weights: tuple[float, ...] | None = None
    horizon: int = 40
    objective: str = "mode"
    arm: int = 0

    def __post_init__(self) -> None:
        check_positive(_OWNER, "price", self.price)
        check_int(_OWNER, "horizon", self.horizon, 1)
        if self.horizon > MAX_HORIZON:
            raise ParameterError(_OWNER, "horizon", f"an integer <= {MAX_HORIZON}",
                                 self.horizon)
        check_int(_OWNER, "arm", self.arm, 0)
        self._set("price", float(self.price))
        shares, weights = self._checked_prior()
        self._set("shares", shares)
        self._set("weights", weights)
        if self.objective not in OBJECTIVES:
            raise ParameterError(_OWNER, "objective", f"one of {OBJECTIVES}", self.objective)
        self._set("_table", _decision_table(shares, weights, self.horizon, self.price,
                                            self.objective))

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)

    def _checked_prior(self) -> tuple[tuple[tuple[float, float, float], ...],
                                      tuple[float, ...]]:
        if self.shares is None:
            if self.weights is not None:
                raise ParameterError(_OWNER, "weights", "None when shares is None",
                                     self.weights)
            return _default_prior()
        try:
            grid = np.asarray(self.shares, dtype=np.float64)
        except (TypeError, ValueError):
            grid = np.array([np.nan])
        if grid.ndim != 2 or grid.shape[1] != 3 or len(grid) == 0 or not np.isfinite(
                grid).all() or (grid < 0).any() or (np.abs(grid.sum(axis=1) - 1) > 1e-6).any():
            raise ParameterError(_OWNER, "shares", "a non-empty sequence of (a, b, d) "
                                 "triples of numbers >= 0 summing to 1", self.shares)
        try:
            weights = np.asarray(self.weights, dtype=np.float64)
        except (TypeError, ValueError):
            weights = np.array([np.nan])
        if weights.shape != (len(grid),) or not np.isfinite(weights).all() or (
                weights < 0).any() or abs(weights.sum() - 1) > 1e-6:
            raise ParameterError(_OWNER, "weights", f"{len(grid)} numbers >= 0 summing to 1 "
                                 "(one per component of shares)", self.weights)
        return (tuple(tuple(float(v) for v in row) for row in grid),  # type: ignore[return-value]
                tuple(float(w) for w in weights))

    @classmethod
    def fit(cls, counts: np.ndarray, *, price: float = 0.01, horizon: int = 40,
            step: float = 0.05, objective: str = "mode", arm: int = 0) -> BayesStop:
        """The policy with the prior fitted on training queries' vote counts.

        Args:
            counts: per training query ``(x_A, x_B, x_D)``: votes of the correct answer,
                of the most frequent wrong answer, of all other answers; shape (Q, 3).
            price: correctness per sample (the knob).
            horizon: the table's size (the largest training pool).
            step: the prior grid's step (see :func:`fit_prior`).
            objective: what STOP earns (``"mode"`` or ``"correct"``).
            arm: the arm sampled.
        """
        shares, weights = fit_prior(counts, step)
        return cls(price=price, shares=shares, weights=weights, horizon=horizon,
                   objective=objective, arm=arm)

    def act(self, state: StateBatch, mask: np.ndarray) -> np.ndarray:
        """SAMPLE(arm) where the table says sampling beats stopping, else STOP."""
        mask = check_mask(_OWNER, state, mask, self.arm)
        voted, top1, top2 = leader_votes(state)
        n = voted.astype(np.int64)
        inside = n <= self.horizon
        n = np.where(inside, n, 0)
        want = inside & self._table[n, np.where(inside, top1.astype(np.int64), 0),  # type: ignore[attr-defined]
                                    np.where(inside, top2.astype(np.int64), 0)]
        return sample_or_stop(want, mask, self.arm)

    def describe(self) -> str:
        """Name, price, the prior's size, horizon and arm (the components summarised)."""
        prior = ("default uniform prior" if (self.shares, self.weights) == _default_prior()
                 else f"fitted prior of {len(self.weights or ())} components")
        return (f"{self.name}(price={self.price!r}, horizon={self.horizon}, "
                f"objective={self.objective!r}, arm={self.arm}; {prior})")
