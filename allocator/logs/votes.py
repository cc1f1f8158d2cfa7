"""Vectorised majority voting over groups of attempts.

The project's one voting rule: the answer with the most votes wins; attempts without an
answer do not vote; a tie is broken uniformly at random, so the *expected* correctness of
a tied vote is the mean correctness of the tied answers. A group with no answered attempt
scores 0. The same rule is used by the summaries, the replay environment and the
evaluator, so their numbers agree.
"""

from __future__ import annotations

import numpy as np

from allocator.logs.schema import NO_ANSWER

__all__ = ["majority_correctness"]


def majority_correctness(
    group: np.ndarray, answer: np.ndarray, correct: np.ndarray, n_groups: int
) -> np.ndarray:
    """Expected correctness of the majority answer of each group.

    Args:
        group: group index of each attempt, in ``[0, n_groups)``.
        answer: answer code of each attempt (``-1`` = no answer).
        correct: correctness of each attempt in [0, 1]; an answer's correctness is the
            mean over the attempts that gave it.
        n_groups: number of groups.

    Returns:
        Array of shape (n_groups,) with the tie-averaged correctness of the winner.
    """
    voted = answer != NO_ANSWER
    group, answer, correct = group[voted], answer[voted], correct[voted]
    result = np.zeros(n_groups)
    if len(group) == 0:
        return result
    width = int(answer.max()) + 1
    keys, inverse, votes = np.unique(
        group.astype(np.int64) * width + answer, return_inverse=True, return_counts=True
    )
    answer_correct = np.bincount(inverse, weights=correct) / votes
    key_group = keys // width
    starts = np.flatnonzero(np.r_[True, key_group[1:] != key_group[:-1]])
    top = np.maximum.reduceat(votes, starts)
    top_per_key = np.repeat(top, np.diff(np.r_[starts, len(keys)]))
    leader = votes == top_per_key
    credit = np.bincount(key_group[leader], weights=answer_correct[leader], minlength=n_groups)
    leaders = np.bincount(key_group[leader], minlength=n_groups)
    np.divide(credit, leaders, out=result, where=leaders > 0)
    return result
