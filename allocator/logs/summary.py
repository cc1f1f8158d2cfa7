"""Per-arm statistics of a log: what ``allocator ingest`` prints.

Only ``sample`` attempts count (refinements and verifier calls are not independent
draws). An attempt counts as correct when its grade is at least ``threshold``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from allocator.logs.schema import KIND_SAMPLE, NO_ANSWER
from allocator.logs.table import AttemptLog
from allocator.logs.votes import majority_correctness

__all__ = ["ArmSummary", "summarize"]


@dataclass(frozen=True)
class ArmSummary:
    """Statistics of one arm's samples.

    Attributes:
        queries: queries with at least one sample from the arm.
        attempts: samples in all.
        attempts_per_query: mean samples per query.
        attempt_accuracy: mean correctness over samples (micro average).
        majority_accuracy: mean over queries of the majority vote's correctness.
        any_correct: share of queries with at least one correct sample.
        always: queries whose samples are all correct.
        never: queries with no correct sample.
        sometimes: the rest.
        mean_cost: mean cost per sample.
        no_answer: samples without an answer (nothing could be extracted): they count
            in ``attempts`` and as incorrect, and never vote.
    """

    queries: int
    attempts: int
    attempts_per_query: float
    attempt_accuracy: float
    majority_accuracy: float
    any_correct: float
    always: int
    never: int
    sometimes: int
    mean_cost: float
    no_answer: int

    def to_dict(self) -> dict[str, float | int]:
        """Plain JSON-ready dict."""
        return asdict(self)


def _summarize_rows(log: AttemptLog, rows: np.ndarray, threshold: float) -> ArmSummary:
    query = log.attempt_query[rows]
    present, group = np.unique(query, return_inverse=True)
    n = len(present)
    hit = (log.correct[rows] >= threshold).astype(np.float64)
    count = np.bincount(group, minlength=n)
    hits = np.bincount(group, weights=hit, minlength=n)
    majority = majority_correctness(group, log.answer[rows], hit, n)
    return ArmSummary(
        queries=n,
        attempts=len(rows),
        attempts_per_query=float(count.mean()) if n else 0.0,
        attempt_accuracy=float(hit.mean()) if len(rows) else 0.0,
        majority_accuracy=float(majority.mean()) if n else 0.0,
        any_correct=float((hits > 0).mean()) if n else 0.0,
        always=int((hits == count).sum()),
        never=int((hits == 0).sum()),
        sometimes=int(((hits > 0) & (hits < count)).sum()),
        mean_cost=float(log.cost[rows].mean()) if len(rows) else 0.0,
        no_answer=int((log.answer[rows] == NO_ANSWER).sum()),
    )


def summarize(log: AttemptLog, threshold: float = 0.5) -> dict[str, ArmSummary]:
    """Summary per arm, plus ``"(all arms)"`` pooled when the log has several arms.

    Args:
        log: the log.
        threshold: grade at or above which an attempt counts as correct.

    Returns:
        Mapping from arm name to its :class:`ArmSummary`, in the log's arm order.
    """
    samples = log.kind == KIND_SAMPLE
    result = {
        name: _summarize_rows(log, np.flatnonzero(samples & (log.arm == code)), threshold)
        for code, name in enumerate(log.arms)
    }
    if len(log.arms) > 1:
        result["(all arms)"] = _summarize_rows(log, np.flatnonzero(samples), threshold)
    return result
