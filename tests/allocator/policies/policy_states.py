"""States and episodes for the policy tests: built through QueryState, stacked to batches."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import pyarrow as pa

from allocator.actions import STOP, n_actions, sample_action, verify_action
from allocator.featurizer import QueryState, StateBatch
from allocator.logs.table import AttemptLog
from allocator.policies import Policy


def stack(states: Sequence[QueryState]) -> StateBatch:
    """One StateBatch from single-query states (votes zero-padded to the widest)."""
    batches = [state.to_batch() for state in states]
    width = max(b.votes.shape[1] for b in batches)
    votes = np.zeros((len(batches), width))
    for row, b in enumerate(batches):
        votes[row, : b.votes.shape[1]] = b.votes[0]

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(b, name) for b in batches])

    return StateBatch(
        samples=cat("samples"), votes=votes, no_answer=cat("no_answer"),
        refines=cat("refines"), verified=cat("verified"), best_score=cat("best_score"),
        cost=cat("cost"), lam=cat("lam"), prior=cat("prior"), streak=cat("streak"),
        arm_leader=cat("arm_leader"),
    )


def random_answers(rng: np.random.Generator, length: int, alphabet: int = 4,
                   none_rate: float = 0.1) -> list[Hashable | None]:
    """A random answer sequence: skewed towards answer 0, with some no-answers."""
    probs = rng.dirichlet(np.ones(alphabet) * 0.7)
    codes = rng.choice(alphabet, size=length, p=probs)
    return [None if rng.random() < none_rate else f"a{c}" for c in codes]


def random_states(rng: np.random.Generator, batch: int, n_arms: int = 2,
                  max_len: int = 45) -> list[QueryState]:
    """States after random draws on random arms (lengths 0..max_len, some refinements)."""
    states = []
    for _ in range(batch):
        state = QueryState(n_arms, prior=rng.random(n_arms), lam=float(rng.random()))
        for answer in random_answers(rng, int(rng.integers(0, max_len + 1))):
            if rng.random() < 0.05:
                state.add_refine(answer, cost=1.0)
            else:
                arm = 0 if rng.random() < 0.8 else int(rng.integers(n_arms))
                state.add_sample(arm, answer, cost=1.0)
        states.append(state)
    return states


def random_masks(rng: np.random.Generator, batch: int, n_arms: int) -> np.ndarray:
    """Random masks with STOP always allowed."""
    mask = rng.random((batch, n_actions(n_arms))) < 0.6
    mask[:, STOP] = True
    return mask


def run_episode(policy: Policy, answers: Sequence[Hashable | None], *, arm: int = 0,
                n_arms: int = 1, prior: float = 0.5, verifiable: bool = False,
                ) -> tuple[int, list[int]]:
    """Replay ``policy`` on one query whose arm pool is ``answers`` (in order).

    SAMPLE(arm) is allowed while the pool lasts; VERIFY while ``verifiable`` and some
    drawn candidate is unverified. Returns (samples drawn, actions taken).
    """
    state = QueryState(n_arms, prior=np.full(n_arms, prior))
    actions: list[int] = []
    while True:
        mask = np.zeros((1, n_actions(n_arms)), dtype=bool)
        mask[0, STOP] = True
        mask[0, sample_action(arm)] = int(state.samples[arm]) < len(answers)
        mask[0, verify_action(n_arms)] = verifiable and bool(state.unverified())
        action = int(policy.act(state.to_batch(), mask)[0])
        assert mask[0, action], f"{policy.describe()} chose masked action {action}"
        actions.append(action)
        if action == STOP:
            return int(state.samples[arm]), actions
        if action == sample_action(arm):
            state.add_sample(arm, answers[int(state.samples[arm])])
        elif action == verify_action(n_arms):
            state.verify({i: 1.0 for i in state.unverified()})
        else:
            raise AssertionError(f"unexpected action {action}")
        assert len(actions) < 500, "episode did not end"


def one_arm_log(pools: dict[str, list[tuple[str | None, float]]]) -> AttemptLog:
    """A one-arm log: per query, its samples' (answer, correct), each costing 1."""
    rows = [(q, answer, correct) for q, pool in pools.items() for answer, correct in pool]
    table = pa.table({
        "query_id": pa.array([r[0] for r in rows], pa.string()),
        "arm": pa.array(["model"] * len(rows), pa.string()),
        "kind": pa.array(["sample"] * len(rows), pa.string()),
        "round": pa.array([0] * len(rows), pa.int32()),
        "answer": pa.array([r[1] for r in rows], pa.string()),
        "correct": pa.array([r[2] for r in rows], pa.float32()),
        "cost": pa.array([1.0] * len(rows), pa.float64()),
    })
    return AttemptLog.from_arrow(table)[0]
