"""The batched env's named state columns: each block is covered once, and each name
reads what the env's state says it holds."""

from __future__ import annotations

import numpy as np
import pytest
import replay_fixtures

from allocator.envs import BatchedReplayVecEnv
from allocator.envs.vec_replay_env import StateColumns


def covered(columns: list[int | slice], width: int) -> list[int]:
    hits = [0] * width
    for column in columns:
        for i in (range(width)[column] if isinstance(column, slice) else [column]):
            hits[i] += 1
    return hits


@pytest.mark.parametrize(("arms", "width"), [(1, 1), (2, 5), (3, 0)])
def test_every_column_of_every_block_has_one_name(arms: int, width: int) -> None:
    c = StateColumns(arms, width)
    counts = [c.samples, c.refines, c.pending, c.verified, c.no_answer, c.votes]
    floats = [c.voted, c.top1, c.top2, c.distinct, c.vlogv, c.cost, c.norm_cost,
              c.correct_sum, c.best, c.pending_best, c.verified_best]
    episode = [c.limits, c.start, c.query]
    assert covered(counts, c.n_counts) == [1] * c.n_counts
    assert covered(floats, c.n_floats) == [1] * c.n_floats
    assert covered(episode, c.n_episode) == [1] * c.n_episode
    # No-answers sit just before the votes: answer -1 counts in votes.start - 1.
    assert c.no_answer == c.votes.start - 1
    assert c.cleared_to_inf == c.best < c.pending_best.start <= c.verified_best.start


def test_the_names_read_the_state_the_env_reports() -> None:
    venv = BatchedReplayVecEnv(replay_fixtures.rich_log(), 8, autoreset=False)
    venv.seed(3)
    venv.reset()
    rng = np.random.default_rng(0)
    for _ in range(6):
        masks = venv.action_masks()
        masks[:, 0] = ~masks[:, 1:].any(axis=1)  # keep going while anything else is allowed
        venv.step((rng.random(masks.shape) * masks).argmax(axis=1))
    c, state = venv._cols, venv.state()
    counts, floats = venv._counts, venv._floats
    np.testing.assert_array_equal(counts[:, c.samples], state.samples)
    np.testing.assert_array_equal(counts[:, c.refines], state.refines)
    np.testing.assert_array_equal(counts[:, c.verified], state.verified)
    np.testing.assert_array_equal(counts[:, c.no_answer], state.no_answer)
    np.testing.assert_array_equal(counts[:, c.votes], state.votes)
    np.testing.assert_array_equal(floats[:, c.norm_cost], state.cost)
    np.testing.assert_array_equal(floats[:, c.cost], venv.cost_spent())
    np.testing.assert_array_equal(floats[:, c.top1], state.stats.top1)
    np.testing.assert_array_equal(floats[:, c.voted], state.stats.voted)
    best = floats[:, c.best]
    np.testing.assert_array_equal(np.where(best > -np.inf, best, np.nan), state.best_score)
    assert (counts[:, c.samples].sum() + counts[:, c.refines].sum()) > 0
