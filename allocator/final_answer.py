"""The final answer and its credit: one rule for the session and both replay environments.

:func:`final_answers` says which answers are tied for the final answer (:func:`leaders` of
a table), :func:`credit` what a final answer is worth in replay. Each rule has a scalar
form (a session, :class:`allocator.envs.ReplayEnv`) and a form over a batch of rows
(:class:`allocator.envs.BatchedReplayVecEnv`: answers as columns ``0..K-1``, the ``*_rows``
functions); tests check that the two agree on random states. Imports numpy only.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import TypeVar

import numpy as np

__all__ = ["credit", "credit_rows", "final_answers", "final_answers_rows", "leaders",
           "leaders_rows"]

Answer = TypeVar("Answer", bound=Hashable)


def leaders(table: Mapping[Answer, float]) -> list[Answer]:
    """The answers with the largest value of ``table``, in its order (none if empty)."""
    if not table:
        return []
    top = max(table.values())
    return [answer for answer, value in table.items() if value == top]


def final_answers(best_by_answer: Mapping[Answer, float],
                  votes: Mapping[Answer, int]) -> list[Answer]:
    """The answers tied for the final answer (the caller breaks ties).

    The tied answers are those with the best verified score if any candidate with an answer
    was verified with a usable score, else the majority-vote leaders; none when no attempt
    gave an answer. Baselines that answer otherwise pick another table (scores summed per
    answer, one arm's votes) and take its :func:`leaders`.

    Args:
        best_by_answer: best verified score per answer (answers verified with a score).
        votes: votes per answer.
    """
    return leaders(best_by_answer or votes)


def credit(tied: Iterable[Answer], correct_sum: Mapping[Answer, float],
           votes: Mapping[Answer, int]) -> float:
    """Expected correctness of a final answer drawn uniformly among ``tied``.

    What a final answer is worth in replay: a tie is broken uniformly at random, so the
    expected correctness is the mean correctness of the tied answers, an answer's
    correctness being the mean over the drawn attempts that gave it; 0 when nothing is tied.
    This is the rule of :mod:`allocator.logs.votes` for a plain vote (a test checks that
    they agree). The session instead returns one answer, the first seen of the tied ones
    (:meth:`allocator.session.Session.final_answer`).

    Args:
        tied: the tied answers (orderable: they are averaged in sorted order).
        correct_sum: per answer, the correctness summed over the attempts that gave it.
        votes: per answer, the attempts that gave it (> 0 for every tied answer).
    """
    ordered = sorted(tied)  # type: ignore[type-var]
    if not ordered:
        return 0.0
    return float(np.mean([correct_sum[answer] / votes[answer] for answer in ordered]))


def leaders_rows(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """:func:`leaders` per row: where ``present``, the columns with the row's largest
    value; bool, shape (B, K) (all False in a row with nothing present)."""
    masked = np.where(present, values, -np.inf)
    top = masked.max(axis=1, initial=-np.inf)
    return present & (masked == top[:, None])


def final_answers_rows(votes: np.ndarray, top1: np.ndarray, best: np.ndarray,
                       verified_best: np.ndarray) -> np.ndarray:
    """:func:`final_answers` per row, bool of shape (B, K).

    Args:
        votes: votes per answer, shape (B, K).
        top1: the leader's votes, shape (B,) (0 without votes).
        best: the best verified score of an answer, shape (B,) (``-inf``: none).
        verified_best: the best verified score per answer, shape (B, K) (``-inf``: not
            verified, or no usable score).
    """
    verified = best > -np.inf
    # Without a verified answer the most voted (top1; -1 matches none, nor does 0 votes);
    # with one, the answers with the best score (NaN matches none elsewhere).
    most = np.where(verified | (top1 == 0), -1, top1.astype(np.int64))
    tied = votes == most[:, None]
    if verified.any():
        tied |= verified_best == np.where(verified, best, np.nan)[:, None]
    return tied


def credit_rows(tied: np.ndarray, correct_sum: np.ndarray, votes: np.ndarray) -> np.ndarray:
    """:func:`credit` per row, shape (B,).

    Args:
        tied: the tied answers, bool of shape (B, K).
        correct_sum: correctness summed per answer, shape (B, K).
        votes: votes per answer, shape (B, K) (> 0 where tied).
    """
    answer_correct = np.zeros(tied.shape)
    np.divide(correct_sum, votes, out=answer_correct, where=tied)
    n_tied = np.count_nonzero(tied, axis=1)
    total = answer_correct.sum(axis=1)
    return np.where(n_tied > 0, total / np.maximum(n_tied, 1), 0.0)
