"""Quality of difficulty predictions on held-out queries: rank correlation, detection of
never-solved queries, Brier score against each attempt, calibration error."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from allocator.errors import ParameterError
from allocator.logs.table import AttemptLog
from allocator.predictor import check_queries
from allocator.training.difficulty import _is_int, _solve_counts

__all__ = ["evaluate_difficulty"]


def evaluate_difficulty(
    predictions: np.ndarray,
    log: AttemptLog,
    queries: np.ndarray | None = None,
    *,
    n_bins: int = 10,
) -> dict[str, Any]:
    """Quality of per-attempt success predictions on (held-out) queries.

    Only (query, arm) pairs with at least one graded ``sample`` attempt count. Metrics,
    per arm and pooled over all pairs:

    - ``spearman``: rank correlation of the prediction with the empirical solve rate.
    - ``auroc_never_solved``: AUROC of a low prediction for the pairs with no correct
      attempt (NaN when all or none are never solved).
    - ``brier``: mean squared error against each attempt's outcome (attempt-weighted);
      ``brier_baseline``: the same for the best constant per arm on these very queries
      (the attempt-weighted solve rate; an oracle baseline); ``brier_skill`` = 1 -
      brier / brier_baseline.
    - ``ece``: expected calibration error, ``n_bins`` equal-width bins, attempt-weighted.
    - ``pairs``, ``attempts``, ``mean_prediction``, ``solve_rate``.

    Args:
        predictions: shape (len(queries), len(log.arms)), in [0, 1].
        log: the log the predictions are for.
        queries: query indices (``None`` = all).
        n_bins: calibration bins.

    Returns:
        ``{"pooled": {...}, "per_arm": {arm: {...}}}``.
    """
    owner = "evaluate_difficulty"
    queries = check_queries(log, queries, owner, unique=False)
    p = np.asarray(predictions, dtype=np.float64)
    if p.shape != (len(queries), len(log.arms)) or not np.all((p >= 0) & (p <= 1)):
        given = f"shape {p.shape}" + (f", values in [{np.min(p)}, {np.max(p)}]" if p.size
                                      else "")
        raise ParameterError(owner, "predictions", f"probabilities in [0, 1] of shape "
                             f"({len(queries)}, {len(log.arms)}) (queries x arms)", given)
    if not (_is_int(n_bins) and n_bins >= 1):
        raise ParameterError(owner, "n_bins", "an integer >= 1", n_bins)
    n, hits, squares = _solve_counts(log, queries)
    base = hits.sum(axis=0) / np.maximum(n.sum(axis=0), 1)
    baseline = np.broadcast_to(base, p.shape)
    per_arm = {
        arm: _metrics(*(a[:, j][n[:, j] > 0] for a in (p, n, hits, squares, baseline)), n_bins)
        for j, arm in enumerate(log.arms)
    }
    seen = n > 0
    pooled = _metrics(p[seen], n[seen], hits[seen], squares[seen], baseline[seen], n_bins)
    return {"pooled": pooled, "per_arm": per_arm}


def _metrics(
    p: np.ndarray, n: np.ndarray, hits: np.ndarray, squares: np.ndarray, base: np.ndarray,
    n_bins: int,
) -> dict[str, float]:
    total = n.sum()
    if total == 0:
        return {"pairs": 0, "attempts": 0}
    rate = hits / n

    def brier(q: np.ndarray) -> float:
        return float(np.sum(n * q**2 - 2 * q * hits + squares) / total)

    never = hits == 0
    brier_model, brier_base = brier(p), brier(base)
    return {
        "pairs": len(p),
        "attempts": int(total),
        "spearman": _spearman(p, rate),
        "auroc_never_solved": float(roc_auc_score(never, -p))
        if 0 < never.sum() < len(p) else float("nan"),
        "brier": brier_model,
        "brier_baseline": brier_base,
        "brier_skill": 1.0 - brier_model / brier_base if brier_base > 0 else float("nan"),
        "ece": _ece(p, rate, n, n_bins),
        "mean_prediction": float(np.sum(n * p) / total),
        "solve_rate": float(hits.sum() / total),
    }


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def _ece(p: np.ndarray, rate: np.ndarray, n: np.ndarray, n_bins: int) -> float:
    """Sum over bins of |attempt-weighted (solve rate - prediction)| / attempts."""
    bins = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    gap = np.bincount(bins, weights=n * (rate - p), minlength=n_bins)
    return float(np.abs(gap).sum() / n.sum())
