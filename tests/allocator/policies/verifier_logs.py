"""Hand-made and random logs with verifier scores, and episode references written from
the environment's documented rules (independently of the environments' code)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pyarrow as pa

from allocator.actions import STOP, sample_action, verify_action
from allocator.envs import ReplayEnv
from allocator.envs.pools import ReplayPools
from allocator.logs.table import AttemptLog


def make_log(rows: list[dict]) -> AttemptLog:
    """A log from attempt dicts: query_id, arm, answer, correct, cost, score (None: none)."""
    columns = {
        "query_id": pa.array([r["query_id"] for r in rows], pa.string()),
        "arm": pa.array([r.get("arm", "a0") for r in rows], pa.string()),
        "kind": pa.array(["sample"] * len(rows), pa.string()),
        "round": pa.array([0] * len(rows), pa.int32()),
        "answer": pa.array([r["answer"] for r in rows], pa.string()),
        "correct": pa.array([float(r["correct"]) for r in rows], pa.float32()),
        "cost": pa.array([float(r.get("cost", 1.0)) for r in rows], pa.float64()),
        "score": pa.array([r.get("score") for r in rows], pa.float32()),
    }
    log, _ = AttemptLog.from_arrow(pa.table(columns))
    return log


def random_scored_log(seed: int, n_queries: int = 10, arms: tuple[str, ...] = ("a0", "a1"),
                      max_pool: int = 7, score_rate: float = 0.85) -> AttemptLog:
    """Random answers (some none), scores on a coarse grid (ties), arm-dependent costs."""
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(n_queries):
        gold = int(rng.integers(3))
        for arm_index, arm in enumerate(arms):
            for _ in range(int(rng.integers(1, max_pool + 1))):
                answer = None if rng.random() < 0.1 else int(rng.integers(3))
                correct = answer == gold
                score = (round(float(np.clip(0.4 * correct + rng.random() * 0.7, 0, 1)), 1)
                         if rng.random() < score_rate else None)
                rows.append({"query_id": f"q{q}", "arm": arm,
                             "answer": None if answer is None else str(answer),
                             "correct": float(correct), "score": score,
                             "cost": float(rng.integers(1, 4)) * (1 + 2 * arm_index)})
    return make_log(rows)


class Drawn:
    """One episode's full draw order of every arm (what the env's seeded deck holds)."""

    def __init__(self, pools: ReplayPools, seed: int, query: int, verify_cost: float) -> None:
        env = ReplayEnv(pools, verify_cost=verify_cost)
        env.reset(seed=seed, options={"query": query})
        self.query, self.verify_cost = query, verify_cost
        self.arms: list[list[tuple[int | None, float, float]]] = []
        offset = int(pools.answer_offsets[query])
        self.correct_of = {a: float(pools.answer_correct[offset + a])
                           for a in range(int(pools.n_answers[query]))}
        for arm in range(pools.n_arms):
            env.reset(seed=seed, options={"query": query})
            costs, spent = [], 0.0
            while env.action_masks()[sample_action(arm)]:
                info = env.step(sample_action(arm))[4]
                costs.append(info["cost"] - spent)
                spent = info["cost"]
            state = env.query_state
            scores = [math.nan] * len(costs)
            if env.action_masks()[verify_action(pools.n_arms)]:
                env.step(verify_action(pools.n_arms))
                scores = list(env.query_state.scores)
            self.arms.append(list(zip(state.answers, scores, costs, strict=True)))


def final_correctness(draws: list[tuple[int | None, float, bool]],
                      correct_of: dict[int, float]) -> float:
    """The documented final answer of drawn ``(answer, score, verified)`` candidates: the
    best verified score's answers if any, else the majority; ties share the credit."""
    verified = [(a, s) for a, s, v in draws if v and a is not None and not math.isnan(s)]
    if verified:
        top = max(s for _, s in verified)
        tied = sorted({a for a, s in verified if s == top})
    else:
        votes = Counter(a for a, _, _ in draws if a is not None)
        if not votes:
            return 0.0
        most = max(votes.values())
        tied = sorted(a for a, c in votes.items() if c == most)
    return float(np.mean([correct_of[a] for a in tied]))


def run_env(policy, pools: ReplayPools, seed: int, query: int, verify_cost: float
            ) -> tuple[float, float, list[int]]:
    """``policy`` on one ReplayEnv episode, under its answer rule: (correct, cost, actions)."""
    env = ReplayEnv(pools, verify_cost=verify_cost, answer_rule=type(policy).answer_rule)
    env.reset(seed=seed, options={"query": query})
    actions = []
    while True:
        action = int(policy.act(env.query_state.to_batch(), env.action_masks()[None])[0])
        actions.append(action)
        _, _, done, _, info = env.step(action)
        if done:
            return info["correct"], info["cost"], actions
        assert len(actions) < 1000
    raise AssertionError("unreachable")


__all__ = ["STOP", "Drawn", "final_correctness", "make_log", "random_scored_log", "run_env"]
