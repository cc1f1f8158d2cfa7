"""Upper bounds that no deployable policy can beat: the query-oracle and the hindsight oracle.

:func:`query_oracle` (``query-oracle``: knows each query's pool but not its order; the
optimal adaptive policy, solved exactly by dynamic programming, :func:`solve_query`) and
:func:`hindsight_values` / :func:`hindsight_oracle` (``oracle``: knows each episode's order
too). Both consider every action the replay environment offers and trace a front as
``lambda`` is swept; :func:`query_oracle`'s docstring proves why they bound every
deployable policy. Neither is deployable; reports label them so.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from gymnasium.utils import seeding

from allocator.envs.pools import ReplayPools, UniformStream, draw_episode, stream_block
from allocator.errors import ParameterError
from allocator.training.evaluation.replay import FixedNCurves, ReplayEvaluator
from allocator.training.evaluation.results import EpisodeResults

__all__ = [
    "ORACLES",
    "QueryOracleFit",
    "default_lambdas",
    "episode_decks",
    "hindsight_oracle",
    "hindsight_values",
    "query_oracle",
    "solve_query",
]

#: The oracles' registry names.
ORACLES = ("oracle", "query-oracle")

#: Count states one query's DP may visit before its cost classes are coarsened (and, at
#: one class per type, before the query falls back to the hindsight bound).
MAX_STATES = 5_000

#: A cost-class level is skipped without building its DP when its product bound on the
#: states exceeds the cap by this factor (the bound counts unreachable states too).
BOUND_SLACK = 20

#: Queries without scores are solved on the whole grid of count states in numpy, which
#: affords this many times more states than the cap of the general (scored) DP.
VECTORISED_FACTOR = 4

#: Prefix vectors per episode the exact hindsight oracle may enumerate.
MAX_PREFIXES = 4_096

#: Cost classes per type tried in turn: 0 = one class per distinct cost (exact).
COST_CLASSES = (0, 8, 4, 2, 1)


def default_lambdas(curves: list[FixedNCurves], n: int = 25) -> np.ndarray:
    """Prices from "spend everything" (0) to "one sample is worth its cost only if it is
    sure to be right" (1 / the cheapest mean first-sample cost), geometrically spaced."""
    first = np.array([c.cost[:, :, 1].mean() for c in curves if c.cost.shape[2] > 1])
    whole = max(float(c.cost[:, :, -1].mean()) for c in curves)
    first = first[first > 0]
    if first.size == 0 or whole <= 0:
        return np.zeros(1)
    high = 1.0 / first.min()
    low = min(1e-3 / whole, high / 1e3)
    return np.concatenate([[0.0], np.geomspace(low, high, n - 1)])


# ---------------------------------------------------------------------- one query's pool
@dataclass(frozen=True)
class _Types:
    """A query's candidates lumped into visible types (see :func:`query_oracle`).

    Attributes:
        group: each type's group (arm ``a`` is group ``a``; refinement rounds follow).
        answer: the type's answer code (-1: no answer).
        correct: its correctness.
        cost: the cost charged per draw (the smallest of its class).
        scored: whether its candidates carry scores.
        count: candidates per type.
        score_values: per scored type, its distinct scores; per type a tuple.
        score_counts: per type, candidates with each score.
        n_arms: arms (groups past them are refinement rounds, drawn in order).
    """

    group: tuple[int, ...]
    answer: tuple[int, ...]
    correct: tuple[float, ...]
    cost: tuple[float, ...]
    scored: tuple[bool, ...]
    count: tuple[int, ...]
    score_values: tuple[tuple[float, ...], ...]
    score_counts: tuple[tuple[int, ...], ...]
    n_arms: int
    n_groups: int


def _cost_classes(costs: np.ndarray, n_classes: int) -> np.ndarray:
    """Class of each cost: distinct values (``n_classes`` 0) or ``n_classes`` quantile
    classes of the sorted costs; returned as the class's smallest cost per candidate."""
    if n_classes == 0 or len(costs) <= n_classes:
        return costs.copy()
    order = np.argsort(costs, kind="stable")
    classes = np.empty(len(costs), dtype=np.int64)
    classes[order] = np.arange(len(costs)) * n_classes // len(costs)
    low = np.array([costs[classes == k].min() for k in range(n_classes)])
    return low[classes]


def _types(pools: ReplayPools, query: int, n_classes: int) -> _Types:
    """Lump query ``query``'s candidates into visible types (cost classes per
    (group, answer, correctness, scored) with ``n_classes`` as in :func:`_cost_classes`)."""
    start, stop = int(pools.cand_offsets[query]), int(pools.cand_offsets[query + 1])
    group = pools.cand_group[start:stop]
    answer = pools.cand_answer[start:stop]
    correct = pools.cand_correct[start:stop]
    score = pools.cand_score[start:stop]
    scored = ~np.isnan(score)
    charged = np.empty(stop - start)
    keys = list(zip(group.tolist(), answer.tolist(), correct.tolist(), scored.tolist(),
                    strict=True))
    for key in set(keys):
        members = np.array([k == key for k in keys])
        charged[members] = _cost_classes(pools.cand_cost[start:stop][members], n_classes)
    table: dict[tuple, list[float]] = {}
    for key, cost, s in zip(keys, charged.tolist(), score.tolist(), strict=True):
        table.setdefault((*key, cost), []).append(s)
    ordered = sorted(table)
    values, counts = [], []
    for key in ordered:
        if key[3]:
            distinct, tally = np.unique(table[key], return_counts=True)
            values.append(tuple(distinct.tolist()))
            counts.append(tuple(tally.tolist()))
        else:
            values.append(())
            counts.append(())
    return _Types(group=tuple(k[0] for k in ordered), answer=tuple(k[1] for k in ordered),
                  correct=tuple(k[2] for k in ordered), cost=tuple(k[4] for k in ordered),
                  scored=tuple(k[3] for k in ordered),
                  count=tuple(len(table[k]) for k in ordered), score_values=tuple(values),
                  score_counts=tuple(counts), n_arms=pools.n_arms,
                  n_groups=pools.n_groups)


def _state_bound(types: _Types) -> float:
    """An upper bound on the DP's count states (to skip hopeless cost classes)."""
    bound = 1.0
    for count, scored, tally in zip(types.count, types.scored, types.score_counts,
                                    strict=True):
        bound *= (count + 1) * (math.prod(t + 1 for t in tally) if scored else 1)
    return bound


# ---------------------------------------------------------------------- the DP
class _TooManyStates(Exception):
    """A query's DP visited more than its state cap."""


@dataclass
class _Graph:
    """The DP's reachable states and, per state, its actions' outcomes."""

    states: list[tuple] = field(default_factory=list)
    progress: list[int] = field(default_factory=list)
    stop: list[float] = field(default_factory=list)
    # one row per (state, action): the state, immediate expected cost, expected draws
    action_state: list[int] = field(default_factory=list)
    action_cost: list[float] = field(default_factory=list)
    action_draws: list[float] = field(default_factory=list)
    # one row per outcome: its action row, probability, next state
    edge_action: list[int] = field(default_factory=list)
    edge_prob: list[float] = field(default_factory=list)
    edge_next: list[int] = field(default_factory=list)


class _QueryProblem:
    """One query's decision problem over count states.

    A state is ``(hidden, verified)``: per type the candidates drawn and not verified
    (for unscored types: drawn), and per (scored type, score) the verified candidates.
    """

    def __init__(self, types: _Types, verify_cost: float) -> None:
        self.t = types
        self.verify_cost = float(verify_cost)
        self.n = len(types.count)
        self.slots = [(i, j) for i in range(self.n) for j in range(len(types.score_values[i]))]
        self.slot_of = {pair: k for k, pair in enumerate(self.slots)}
        self.groups = [[i for i in range(self.n) if types.group[i] == g]
                       for g in range(types.n_groups)]

    def _verified_of(self, verified: tuple, i: int) -> int:
        return sum(verified[self.slot_of[(i, j)]]
                   for j in range(len(self.t.score_values[i])))

    def undrawn(self, state: tuple, i: int) -> int:
        """Candidates of type ``i`` not drawn yet."""
        hidden, verified = state
        return self.t.count[i] - hidden[i] - (self._verified_of(verified, i)
                                             if self.t.scored[i] else 0)

    def stop_value(self, state: tuple) -> float:
        """Correctness of the environment's final answer in this state."""
        hidden, verified = state
        votes: dict[int, int] = {}
        right: dict[int, float] = {}
        best: dict[int, float] = {}
        for i in range(self.n):
            answer = self.t.answer[i]
            drawn = hidden[i] + (self._verified_of(verified, i) if self.t.scored[i] else 0)
            if answer < 0 or drawn == 0:
                continue
            votes[answer] = votes.get(answer, 0) + drawn
            right[answer] = right.get(answer, 0.0) + drawn * self.t.correct[i]
            for j, score in enumerate(self.t.score_values[i]):
                if verified[self.slot_of[(i, j)]]:
                    best[answer] = max(best.get(answer, -math.inf), score)
        table = best or votes
        if not table:
            return 0.0
        top = max(table.values())
        tied = [right[a] / votes[a] for a, value in table.items() if value == top]
        return sum(tied) / len(tied)

    def draw_group(self, state: tuple, action: int) -> int | None:
        """The group an action draws from (refinements: the lowest round left), or None."""
        arms = self.t.n_arms
        groups = [action] if action < arms else list(range(arms, self.t.n_groups))
        for g in groups:
            if any(self.undrawn(state, i) for i in self.groups[g]):
                return g
        return None

    def draw(self, state: tuple, g: int) -> list[tuple[float, float, tuple]]:
        """Outcomes of a draw from group ``g``: (probability, cost, next state)."""
        hidden, verified = state
        left = [(i, self.undrawn(state, i)) for i in self.groups[g]]
        total = sum(n for _, n in left)
        outcomes = []
        for i, n in left:
            if n:
                after = list(hidden)
                after[i] += 1
                outcomes.append((n / total, self.t.cost[i], (tuple(after), verified)))
        return outcomes

    def verify(self, state: tuple) -> tuple[float, list[tuple[float, tuple]]] | None:
        """VERIFY: its cost and outcomes (probability, next state); None if masked."""
        hidden, verified = state
        pending = [i for i in range(self.n) if self.t.scored[i] and hidden[i]]
        if not pending:
            return None
        per_type = []
        for i in pending:
            population = [self.t.score_counts[i][j] - verified[self.slot_of[(i, j)]]
                          for j in range(len(self.t.score_values[i]))]
            per_type.append((i, list(_hypergeometric(population, hidden[i]))))
        outcomes = []
        for combo in itertools.product(*(draws for _, draws in per_type)):
            after_hidden, after_verified = list(hidden), list(verified)
            prob = 1.0
            for (i, _), (p, revealed) in zip(per_type, combo, strict=True):
                prob *= p
                after_hidden[i] = 0
                for j, r in enumerate(revealed):
                    after_verified[self.slot_of[(i, j)]] += r
            outcomes.append((prob, (tuple(after_hidden), tuple(after_verified))))
        cost = self.verify_cost * sum(hidden[i] for i in pending)
        return cost, outcomes

    def build(self, max_states: int) -> _Graph:
        """Every reachable state and its actions (breadth first); raises past the cap."""
        graph = _Graph()
        start = ((0,) * self.n, (0,) * len(self.slots))
        index = {start: 0}
        queue = [start]
        graph.states.append(start)
        graph.progress.append(0)
        head = 0
        while head < len(queue):
            state = queue[head]
            source = head
            head += 1
            graph.stop.append(self.stop_value(state))
            for action in range(self.t.n_arms + 2):
                if action <= self.t.n_arms:
                    g = self.draw_group(state, action)
                    if g is None:
                        continue
                    outcomes = self.draw(state, g)
                    cost = sum(p * c for p, c, _ in outcomes)
                    pairs, draws = [(p, s) for p, _, s in outcomes], 1.0
                else:
                    verified = self.verify(state)
                    if verified is None:
                        continue
                    cost, pairs = verified
                    draws = 0.0
                row = len(graph.action_state)
                graph.action_state.append(source)
                graph.action_cost.append(cost)
                graph.action_draws.append(draws)
                for p, nxt in pairs:
                    if nxt not in index:
                        if len(index) >= max_states:
                            raise _TooManyStates
                        index[nxt] = len(graph.states)
                        graph.states.append(nxt)
                        graph.progress.append(sum(nxt[0]) + sum(nxt[1]))
                        queue.append(nxt)
                    graph.edge_action.append(row)
                    graph.edge_prob.append(p)
                    graph.edge_next.append(index[nxt])
        return graph


def _hypergeometric(population: list[int], k: int):
    """(probability, counts per class) of drawing ``k`` without replacement."""
    total = sum(population)
    denominator = math.comb(total, k)

    def split(rest: list[int], left: int):
        if len(rest) == 1:
            if left <= rest[0]:
                yield math.comb(rest[0], left), (left,)
            return
        for take in range(min(rest[0], left) + 1):
            for ways, tail in split(rest[1:], left - take):
                yield math.comb(rest[0], take) * ways, (take, *tail)

    for ways, counts in split(population, k):
        if ways:
            yield ways / denominator, counts


def _backward(graph: _Graph, lambdas: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                           np.ndarray]:
    """Optimal expected (correctness, cost, draws) from the start state, per lambda.

    States are processed by decreasing progress (draws + verified: every action raises
    it), so each state's successors are solved first. Ties prefer stopping, then the
    first action.
    """
    n, lams = len(graph.states), np.asarray(lambdas, dtype=float)
    acc, cost, draws = (np.zeros((n, len(lams))) for _ in range(3))
    progress = np.asarray(graph.progress)
    stop = np.asarray(graph.stop)
    a_state = np.asarray(graph.action_state, dtype=np.int64)
    a_cost = np.asarray(graph.action_cost)
    a_draws = np.asarray(graph.action_draws)
    e_action = np.asarray(graph.edge_action, dtype=np.int64)
    e_prob = np.asarray(graph.edge_prob)
    e_next = np.asarray(graph.edge_next, dtype=np.int64)
    for level in np.unique(progress)[::-1]:
        members = np.flatnonzero(progress == level)
        acc[members], cost[members], draws[members] = stop[members, None], 0.0, 0.0
        rows = np.flatnonzero(progress[a_state] == level)
        if rows.size == 0:
            continue
        local = np.full(len(a_state), -1)
        local[rows] = np.arange(rows.size)
        edges = np.flatnonzero(local[e_action] >= 0)
        slot = local[e_action[edges]]
        p = e_prob[edges, None]
        q_acc = np.zeros((rows.size, len(lams)))
        q_cost = np.repeat(a_cost[rows, None], len(lams), axis=1)
        q_draws = np.repeat(a_draws[rows, None], len(lams), axis=1)
        np.add.at(q_acc, slot, p * acc[e_next[edges]])
        np.add.at(q_cost, slot, p * cost[e_next[edges]])
        np.add.at(q_draws, slot, p * draws[e_next[edges]])
        q_value = q_acc - lams * q_cost
        for k, row in enumerate(rows):  # actions in order: a strict gain replaces
            s = a_state[row]
            better = q_value[k] > acc[s] - lams * cost[s] + 1e-12
            acc[s] = np.where(better, q_acc[k], acc[s])
            cost[s] = np.where(better, q_cost[k], cost[s])
            draws[s] = np.where(better, q_draws[k], draws[s])
    return acc[0], cost[0], draws[0]


def _solve_unscored(types: _Types, lambdas: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The DP of a query without scores, vectorised over every count state at once.

    Without scores (hence without VERIFY) every vector of drawn counts under the pool
    sizes is reachable, so the states are a mixed-radix grid: state ``s`` + the stride
    of type ``i`` is ``s`` with one more type-``i`` draw. Backward induction runs level by
    level (total draws, descending), the same recursion as :func:`_backward`.
    """
    count = np.asarray(types.count, dtype=np.int64)
    strides = np.concatenate([[1], np.cumprod(count[:-1] + 1)]).astype(np.int64)
    drawn = np.stack(np.unravel_index(np.arange(int(np.prod(count + 1))), tuple(count + 1),
                                      order="F"), axis=1)
    answers = sorted({a for a in types.answer if a >= 0})
    onehot = np.array([[float(a == b) for b in answers] for a in types.answer]).reshape(
        len(count), len(answers))
    votes = drawn @ onehot
    right = drawn @ (onehot * np.asarray(types.correct)[:, None])
    top = votes.max(axis=1, keepdims=True) if answers else np.zeros((len(drawn), 1))
    tied = (votes == top) & (votes > 0)
    share = np.where(votes > 0, right / np.maximum(votes, 1), 0.0)
    stop = np.where(tied.any(axis=1), (tied * share).sum(axis=1) / np.maximum(
        tied.sum(axis=1), 1), 0.0)
    left = count - drawn
    group = np.asarray(types.group)
    cost = np.asarray(types.cost, dtype=float)
    arms, rounds = types.n_arms, range(types.n_arms, types.n_groups)
    # per action, a weight per (state, type): 1 where the action draws from the type's group
    weights = [np.broadcast_to(group == g, drawn.shape) for g in range(arms)]
    if types.n_groups > arms:
        current = np.zeros(drawn.shape, dtype=bool)
        exhausted_before = np.ones(len(drawn), dtype=bool)
        for g in rounds:
            in_round = group == g
            has = (left * in_round).sum(axis=1) > 0
            current |= (exhausted_before & has)[:, None] & in_round
            exhausted_before &= ~has
        weights.append(current)
    level = drawn.sum(axis=1)
    n_lams = len(lambdas)
    acc, spent, draws = (np.zeros((len(drawn), n_lams)) for _ in range(3))
    for depth in range(int(level.max()), -1, -1):
        idx = np.flatnonzero(level == depth)
        acc[idx], spent[idx], draws[idx] = stop[idx, None], 0.0, 0.0
        for weight in weights:
            mass = left[idx] * weight[idx]
            total = mass.sum(axis=1)
            ok = total > 0
            if not ok.any():
                continue
            p = mass[ok] / total[ok, None]  # (states, types)
            nxt = np.where(p > 0, idx[ok, None] + strides, idx[ok, None])
            q_acc = np.einsum("st,stl->sl", p, acc[nxt])
            q_cost = (p @ cost)[:, None] + np.einsum("st,stl->sl", p, spent[nxt])
            q_draws = 1.0 + np.einsum("st,stl->sl", p, draws[nxt])
            rows = idx[ok]
            better = q_acc - lambdas * q_cost > acc[rows] - lambdas * spent[rows] + 1e-12
            acc[rows] = np.where(better, q_acc, acc[rows])
            spent[rows] = np.where(better, q_cost, spent[rows])
            draws[rows] = np.where(better, q_draws, draws[rows])
    return acc[0], spent[0], draws[0]


def solve_query(pools: ReplayPools, query: int, lambdas: Sequence[float], *,
                verify_cost: float = 0.0, max_states: int = MAX_STATES
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int] | None:
    """The query-oracle on one query: the optimal adaptive policy's expected correctness,
    cost and draws at each price (see :func:`query_oracle`).

    Args:
        pools: the log's replay pools.
        query: the query's index in the log.
        lambdas: prices per log cost unit.
        verify_cost: the verifier's cost per newly verified candidate (log units).
        max_states: the state cap of one DP.

    Returns:
        ``(correct, cost, draws, classes)`` arrays over ``lambdas`` and the cost classes
        per type used (0: exact costs); None when even one class per type exceeds the cap.
    """
    lams = np.asarray(lambdas, dtype=float)
    for classes in COST_CLASSES:
        types = _types(pools, query, classes)
        # Without scores every count vector under the pool sizes is reachable: the bound
        # is the state count, so a level over the cap is skipped without building it.
        if not any(types.scored):
            if _state_bound(types) > VECTORISED_FACTOR * max_states:
                continue
            return (*_solve_unscored(types, lams), classes)
        if _state_bound(types) > BOUND_SLACK * max_states:
            continue
        try:
            graph = _QueryProblem(types, verify_cost).build(max_states)
        except _TooManyStates:
            continue
        return (*_backward(graph, lams), classes)
    return None


# ---------------------------------------------------------------------- hindsight
def episode_decks(evaluator: ReplayEvaluator) -> list[list[list[np.ndarray]]]:
    """Each evaluation episode's draw order, per query, order and group.

    Reproduces the evaluator's episodes with the environments' own reset protocol
    (:func:`allocator.envs.pools.draw_episode`, episode ``e`` seeded ``evaluator._episode_seed() +
    e``):
    for the i-th evaluation query in order r, ``decks[i][r][g]`` lists the query's local
    candidate positions of group ``g`` in the order the environment draws them.
    """
    pools = evaluator.pools
    from allocator.envs.pools import ReplaySettings

    settings = ReplaySettings.create(pools, "episode_decks")
    decks = []
    episode = evaluator._episode_seed()
    for q in evaluator.queries.tolist():
        start, stop = int(pools.cand_offsets[q]), int(pools.cand_offsets[q + 1])
        groups = pools.cand_group[start:stop]
        per_order = []
        for _ in range(evaluator.n_orders):
            rng, _ = seeding.np_random(episode)
            episode += 1
            keys = draw_episode(rng, UniformStream(stream_block(pools)), pools, settings,
                                {"query": q}).keys
            per_order.append([np.flatnonzero(groups == g)[np.argsort(
                keys[groups == g], kind="stable")] for g in range(pools.n_groups)])
        decks.append(per_order)
    return decks


def _streams(pools: ReplayPools, query: int, deck: list[np.ndarray]) -> list[np.ndarray]:
    """The draw streams of one episode: each arm's deck, then the refinements' rounds
    concatenated (REFINE takes the lowest round left)."""
    arms = deck[:pools.n_arms]
    refine = np.concatenate(deck[pools.n_arms:]) if len(deck) > pools.n_arms else np.zeros(
        0, dtype=np.int64)
    return [d for d in [*arms, refine] if d.size]


def _prefix_tables(pools: ReplayPools, query: int, stream: np.ndarray, width: int
                   ) -> dict[str, np.ndarray]:
    """Cumulative votes, correct sums, best verified scores, cost and scored counts after
    each prefix of one stream (row t: the first t candidates)."""
    start = int(pools.cand_offsets[query])
    rows = start + stream
    answer, correct = pools.cand_answer[rows], pools.cand_correct[rows]
    score, cost = pools.cand_score[rows], pools.cand_cost[rows]
    t = len(stream)
    votes, right = np.zeros((t + 1, width)), np.zeros((t + 1, width))
    best = np.full((t + 1, width), -np.inf)
    for k in range(t):
        votes[k + 1], right[k + 1], best[k + 1] = votes[k], right[k], best[k]
        if answer[k] >= 0:
            votes[k + 1, answer[k]] += 1
            right[k + 1, answer[k]] += correct[k]
            if not np.isnan(score[k]):
                best[k + 1, answer[k]] = max(best[k, answer[k]], score[k])
    return {"votes": votes, "right": right, "best": best,
            "cost": np.concatenate([[0.0], np.cumsum(cost)]),
            "scored": np.concatenate([[0], np.cumsum(~np.isnan(score))]).astype(float)}


def _combine(tables: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Every prefix vector of several streams, flattened: sums and maxima over streams."""
    out = tables[0]
    for table in tables[1:]:
        merged = {}
        for key, value in table.items():
            a, b = out[key], value
            if a.ndim == 1:
                grid = a[:, None] + b[None, :]
            elif key == "best":
                grid = np.maximum(a[:, None], b[None, :])
            else:
                grid = a[:, None] + b[None, :]
            merged[key] = grid.reshape(-1, *a.shape[1:])
        out = merged
    return out


def _share(table: np.ndarray, votes: np.ndarray, right: np.ndarray,
           valid: np.ndarray) -> np.ndarray:
    """Mean correctness of the answers tied at the top of ``table`` (0 where none)."""
    top = table.max(axis=1, keepdims=True)
    tied = valid & (table == top)
    answers = np.where(votes > 0, right / np.maximum(votes, 1), 0.0)
    n = tied.sum(axis=1)
    return np.where(n > 0, (tied * answers).sum(axis=1) / np.maximum(n, 1), 0.0)


def _exact_episode(pools: ReplayPools, query: int, streams: list[np.ndarray],
                   lams: np.ndarray, verify_cost: float) -> tuple[np.ndarray, np.ndarray,
                                                                  np.ndarray]:
    """Best prefix vector of one episode at each price: (correct, cost, draws)."""
    width = max(int(pools.n_answers[query]), 1)
    tables = [_prefix_tables(pools, query, s, width) for s in streams]
    if not tables:
        zero = np.zeros(len(lams))
        return zero, zero, zero
    grid = _combine(tables)
    draws = _combine([{"cost": np.arange(len(s) + 1, dtype=float)} for s in streams])["cost"]
    votes, right, best = grid["votes"], grid["right"], grid["best"]
    majority = _share(votes, votes, right, votes > 0)
    verified_any = np.isfinite(best).any(axis=1)
    verified = np.where(verified_any, _share(best, votes, right, np.isfinite(best)), -np.inf)
    cost_m, cost_v = grid["cost"], grid["cost"] + verify_cost * grid["scored"]
    value_m = majority[:, None] - lams * cost_m[:, None]
    value_v = np.where(verified_any[:, None], verified[:, None] - lams * cost_v[:, None],
                       -np.inf)
    use_v = value_v > value_m
    value = np.where(use_v, value_v, value_m)
    pick = value.argmax(axis=0)
    cols = np.arange(len(lams))
    correct = np.where(use_v[pick, cols], verified[pick], majority[pick])
    cost = np.where(use_v[pick, cols], cost_v[pick], cost_m[pick])
    return correct, cost, draws[pick]


def _relaxed_episode(pools: ReplayPools, query: int, streams: list[np.ndarray],
                     lams: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The "any drawn candidate correct" bound of one episode: the best, over single
    streams and prefixes, of the drawn candidates' best correctness minus the cost."""
    start = int(pools.cand_offsets[query])
    best = (np.zeros(len(lams)), np.zeros(len(lams)), np.zeros(len(lams)))
    best_value = np.zeros(len(lams))
    for stream in streams:
        rows = start + stream
        reach = np.maximum.accumulate(np.where(pools.cand_answer[rows] >= 0,
                                               pools.cand_correct[rows], 0.0))
        cost = np.cumsum(pools.cand_cost[rows])
        value = reach[:, None] - lams * cost[:, None]
        pick = value.argmax(axis=0)
        cols = np.arange(len(lams))
        better = value[pick, cols] > best_value
        best_value = np.where(better, value[pick, cols], best_value)
        best = tuple(np.where(better, new, old) for new, old in
                     zip((reach[pick], cost[pick], pick + 1.0), best, strict=True))
    return best


def hindsight_values(evaluator: ReplayEvaluator, lambdas: Sequence[float], *,
                     verify_cost: float = 0.0, max_prefixes: int = MAX_PREFIXES,
                     decks: list | None = None) -> dict[str, np.ndarray]:
    """The hindsight oracle on every evaluation episode, at every price.

    The hindsight oracle (``oracle``) knows each episode's order, not only each pool (see
    :func:`query_oracle`). Per episode it takes the best of every prefix of every group's
    deck (any mix of arms and refinements), stopping with or without verifying everything
    drawn. Where a log has too many arms to enumerate the prefixes (more than
    ``max_prefixes``), it takes the looser "any drawn candidate correct" bound: the best
    over single-group prefixes of the drawn candidates' best correctness minus the prefix's
    cost.

    Returns:
        ``correct``, ``cost``, ``draws`` of shape (Q, R, L), and ``exact`` of shape (Q,):
        whether the query's prefixes were enumerated (else the "any drawn candidate
        correct" bound).
    """
    pools, lams = evaluator.pools, np.asarray(lambdas, dtype=float)
    decks = episode_decks(evaluator) if decks is None else decks
    shape = (len(evaluator.queries), evaluator.n_orders, len(lams))
    correct, cost, draws = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    exact = np.zeros(shape[0], dtype=bool)
    for i, q in enumerate(evaluator.queries.tolist()):
        for r, deck in enumerate(decks[i]):
            streams = _streams(pools, q, deck)
            exact[i] = math.prod(len(s) + 1 for s in streams) <= max_prefixes
            solver = (_exact_episode(pools, q, streams, lams, verify_cost) if exact[i]
                      else _relaxed_episode(pools, q, streams, lams))
            correct[i, r], cost[i, r], draws[i, r] = solver
    return {"correct": correct, "cost": cost, "draws": draws, "exact": exact}


def _results(name: str, lam: float, correct: np.ndarray, cost: np.ndarray,
             draws: np.ndarray) -> EpisodeResults:
    return EpisodeResults(policy=f"{name}(lambda={lam:.4g})", correct=correct, cost=cost,
                          samples=draws, exhausted=np.zeros(correct.shape, dtype=bool))


def hindsight_oracle(values: dict[str, np.ndarray], lambdas: Sequence[float], index: int
                     ) -> EpisodeResults:
    """The hindsight oracle's episodes at ``lambdas[index]`` (from :func:`hindsight_values`)."""
    return _results("oracle", float(lambdas[index]), values["correct"][:, :, index],
                    values["cost"][:, :, index], values["draws"][:, :, index])


@dataclass(frozen=True)
class QueryOracleFit:
    """The query-oracle on the evaluation queries, at every price.

    Attributes:
        lambdas: the prices.
        correct, cost, draws: shape (Q, R, L): the DP's exact expectations repeated over
            the R orders; on fallback queries, the hindsight values of each episode.
        fallback: indices (into the evaluation queries) of the queries whose DP exceeded
            the state cap.
        classes: cost classes per type used per query (0 exact, -1 fallback).
    """

    lambdas: np.ndarray
    correct: np.ndarray
    cost: np.ndarray
    draws: np.ndarray
    fallback: np.ndarray
    classes: np.ndarray

    def results(self, index: int) -> EpisodeResults:
        """The query-oracle's episodes at ``lambdas[index]``."""
        return _results("query-oracle", float(self.lambdas[index]),
                        self.correct[:, :, index], self.cost[:, :, index],
                        self.draws[:, :, index])

    def summary(self) -> dict[str, int]:
        """Counts for the report: queries solved exactly, with coarser cost classes, and
        falling back to the hindsight bound."""
        return {"queries": len(self.classes), "exact": int((self.classes == 0).sum()),
                "cost_classes_coarsened": int((self.classes > 0).sum()),
                "fallback_to_hindsight": int((self.classes < 0).sum())}


def query_oracle(evaluator: ReplayEvaluator, lambdas: Sequence[float], *,
                 verify_cost: float = 0.0, max_states: int = MAX_STATES,
                 hindsight: dict[str, np.ndarray] | None = None) -> QueryOracleFit:
    """The query-oracle on every evaluation query.

    Both oracles (this one and the hindsight oracle, :func:`hindsight_values`) trade
    accuracy against cost with a price ``lambda`` (per log cost unit) and consider every
    action the replay environment offers: every arm, ``REFINE`` where the log has
    refinements, ``VERIFY`` where candidates carry scores (``verify_cost`` per newly
    verified candidate), with the environment's final answer (the best-scoring verified
    answer, else the majority vote; ties share the credit). Sweeping ``lambda`` traces their
    fronts.

    The query-oracle knows each query's pool *composition* (every candidate's answer,
    correctness, cost and score) but not the order the pools are drawn in. Its value on a
    query is the optimal *adaptive* policy of that query's decision problem, computed
    exactly by dynamic programming over count states (:func:`solve_query`): the state is,
    per *visible type* (group, answer, correctness, cost class, has-a-score), how many
    candidates were drawn and are still unverified, and how many were verified with each
    score. ``SAMPLE``/``REFINE`` draw a type with probability proportional to its undrawn
    count; ``VERIFY`` reveals the hidden scores, drawn without replacement from the type's
    not-yet-verified scores (multivariate hypergeometric).

    Why they bound every deployable policy, at every price ``lambda``:

    1. A deployable policy sees less than the query-oracle: its observations (answers, costs,
       revealed scores, prior, lambda) are functions of what the oracle sees, and it has the
       same actions. So on each query ``E[correct - lambda * cost]`` of any deployable policy
       is at most the optimum of the problem in which the oracle also sees the composition
       and each drawn candidate's correctness. Averaging over queries: for every lambda,
       ``acc(pi) - lambda * cost(pi) <= acc(O, lambda) - lambda * cost(O, lambda)``: no
       deployable point lies above any supporting line of the oracle's front.
    2. Costs: candidates of one type may differ in cost (token or character counts), and a
       policy could learn from a drawn candidate's cost which ones are left. The DP charges
       every draw the *smallest* cost of its cost class, which lowers every path's cost (so
       the value can only rise), and with costs that depend on the type only, the type
       counts are a sufficient state (draws are uniform over the undrawn candidates, so the
       law of the future given the counts does not depend on which candidates were drawn):
       the DP's optimum is the optimum over every policy, however much it observes. With one
       class per distinct cost (the first try) the DP is exact; coarser classes (quantile
       classes, tried while the state count exceeds ``max_states``) loosen the bound by at
       most ``lambda`` times the spread of costs inside a class.
    3. Where even one class per type exceeds ``max_states``, the query falls back to the
       hindsight bound on the evaluator's own orders: on every episode, a deployable policy
       draws some prefix of each deck and gets at most the best prefix's value, so the
       hindsight value bounds it episode by episode (and the DP value is below its mean).
       :attr:`QueryOracleFit.fallback` lists those queries; reports give their count.

    The DP's value is an exact expectation over orders; deployable policies are replayed on
    sampled orders, so a test comparing them allows the order-sampling error (see
    ``tests/training/evaluation/test_oracles.py``). Neither oracle is deployable; reports
    label them so.

    Args:
        evaluator: the evaluator whose queries and orders the deployable policies use.
        lambdas: the prices.
        verify_cost: the verifier's cost per newly verified candidate.
        max_states: the state cap of one query's DP.
        hindsight: :func:`hindsight_values` of the same evaluator and prices (computed
            here for the fallback queries if omitted).
    """
    if max_states < 1:
        raise ParameterError("query_oracle", "max_states", "an integer >= 1", max_states)
    lams = np.asarray(lambdas, dtype=float)
    shape = (len(evaluator.queries), evaluator.n_orders, len(lams))
    correct, cost, draws = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    classes = np.zeros(shape[0], dtype=np.int64)
    for i, q in enumerate(evaluator.queries.tolist()):
        solved = solve_query(evaluator.pools, q, lams, verify_cost=verify_cost,
                             max_states=max_states)
        if solved is None:
            classes[i] = -1
            continue
        correct[i], cost[i], draws[i] = (np.broadcast_to(v, shape[1:]) for v in solved[:3])
        classes[i] = solved[3]
    fallback = np.flatnonzero(classes < 0)
    if fallback.size:
        hindsight = hindsight or hindsight_values(evaluator, lams, verify_cost=verify_cost)
        for key, target in (("correct", correct), ("cost", cost), ("draws", draws)):
            target[fallback] = hindsight[key][fallback]
    return QueryOracleFit(lambdas=lams, correct=correct, cost=cost, draws=draws,
                          fallback=fallback, classes=classes)
