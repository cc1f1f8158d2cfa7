"""Blend-ASC (Feng, Alonso and Odonnat 2025), as a per-query stopping rule with a budget knob.

:class:`BlendASC` samples one arm until a blend of Adaptive-Consistency's and PPR-1v1's
error levels falls to the threshold at which the training queries spend the budget
(:func:`calibrate`). It is our reconstruction of arXiv 2511.12309 from summaries of it; the
class docstring says what is implemented and where it deviates from the paper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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

__all__ = ["BlendASC", "blend_table", "calibrate"]

_OWNER = "BlendASC ('blend-asc')"


# --------------------------------------------------------------------- the statistic
def _log_asc_error(a: int, b: int) -> float:
    """``log(1 - P(p > 1/2))``, ``p ~ Beta(a + 1, b + 1)``: ``log P(Bin(a+b+1, 1/2) > a)``."""
    trials = a + b + 1
    tail = sum(math.comb(trials, k) for k in range(a + 1, trials + 1))
    return math.log(tail) - trials * math.log(2.0)


def _log_ppr_error(a: int, b: int) -> float:
    """``log min(1, 1 / R)``, ``R = 2^(a+b) B(a+1, b+1)`` (PPR-1v1 with a uniform prior)."""
    log_ratio = ((a + b) * math.log(2.0) + math.lgamma(a + 1) + math.lgamma(b + 1)
                 - math.lgamma(a + b + 2))
    return min(0.0, -log_ratio)


@lru_cache(maxsize=8)
def blend_table(size: int) -> np.ndarray:
    """``table[a, b]``: the blended log error level for ``a`` leader and ``b`` runner-up votes.

    ``(log e_ASC + log e_PPR) / 2`` for ``0 <= a, b <= size`` (read-only; only
    ``b <= a`` is read by the policy).
    """
    table = np.empty((size + 1, size + 1))
    for a in range(size + 1):
        for b in range(size + 1):
            table[a, b] = 0.5 * (_log_asc_error(a, b) + _log_ppr_error(a, b))
    table.flags.writeable = False
    return table


# ------------------------------------------------------------------- the calibration
def _running_levels(sequences: Sequence[np.ndarray], max_samples: int, n_orders: int,
                    seed: int) -> tuple[np.ndarray, int]:
    """Every replay's running minimum of ``log e`` before its last possible sample.

    Each query's pool (answer codes, -1 for no answer) is replayed in ``n_orders``
    seeded random orders, capped at ``max_samples``; a replay that has not stopped
    after its ``n``-th sample (``n`` below its length) draws the next one exactly when
    the running minimum of ``log e`` over its first ``n`` samples exceeds the threshold.

    Returns:
        ``(levels, replays)``: those running minima, and the number of replays.
    """
    rng = np.random.default_rng(seed)
    pools = [np.asarray(s, dtype=np.int64) for s in sequences if len(s)]
    if not pools:
        return np.zeros(0), 0
    table = blend_table(max_samples)
    horizon = min(max(len(p) for p in pools), max_samples)
    orders = np.full((len(pools) * n_orders, horizon), -2, dtype=np.int64)  # -2: past the end
    lengths = np.empty(len(orders), dtype=np.int64)
    for q, pool in enumerate(pools):
        length = min(len(pool), max_samples)
        for k in range(n_orders):
            orders[q * n_orders + k, :length] = rng.permutation(pool)[:length]
            lengths[q * n_orders + k] = length
    width = max(int(orders.max(initial=0)) + 1, 2)
    votes = np.zeros((len(orders), width))
    running = np.full(len(orders), np.inf)
    rows = np.arange(len(orders))
    levels = []
    for n in range(horizon - 1):
        answered = orders[:, n] >= 0
        votes[rows[answered], orders[answered, n]] += 1
        part = np.partition(votes, width - 2, axis=1)
        top1, top2 = part[:, -1].astype(np.int64), part[:, -2].astype(np.int64)
        running = np.minimum(running, np.where(top1 > 0, table[top1, top2], np.inf))
        levels.append(running[lengths > n + 1])
    flat = np.concatenate(levels) if levels else np.zeros(0)
    return flat, len(orders)


def calibrate(sequences: Sequence[np.ndarray], max_samples: int, *, n_orders: int = 8,
              seed: int = 0) -> tuple[tuple[float, float], ...]:
    """Mean samples per query of every threshold, on the given (training) queries.

    Args:
        sequences: per query, the answer codes of the arm's pool (-1: no answer).
        max_samples: the policy's cap.
        n_orders: seeded random orders per query.
        seed: seed of the orders.

    Returns:
        ``(log_threshold, mean_samples)`` pairs, thresholds increasing from ``-inf``
        (never stop early), mean samples strictly decreasing: the smallest threshold of
        each distinct spend (a plain tuple, the policy's ``calibration`` field).

    Raises:
        ParameterError: no query has a sample.
    """
    check_int(f"{_OWNER}.calibrate", "max_samples", max_samples, 1)
    check_int(f"{_OWNER}.calibrate", "n_orders", n_orders, 1)
    levels, replays = _running_levels(sequences, max_samples, n_orders, seed)
    if replays == 0:
        raise ParameterError(f"{_OWNER}.calibrate", "sequences",
                             "at least one query with a sample", len(sequences))
    levels = np.sort(levels)
    candidates = np.unique(blend_table(max_samples))
    beyond = len(levels) - np.searchsorted(levels, candidates, side="right")
    spend = 1.0 + beyond / replays
    never = 1.0 + len(levels) / replays  # threshold -inf: every replay runs to its end
    pairs = [(-math.inf, never)]
    for threshold, mean in zip(candidates.tolist(), spend.tolist(), strict=True):
        if mean < pairs[-1][1] - 1e-12:
            pairs.append((float(threshold), float(mean)))
    return tuple(pairs)


@lru_cache(maxsize=8)
def _default_calibration(max_samples: int) -> tuple[tuple[float, float], ...]:
    """The unfitted calibration: 400 synthetic queries (seed 0), answer 0 at a rate
    ``r ~ Beta(2, 1.2)`` per query, else one of five other answers."""
    rng = np.random.default_rng(0)
    rate = rng.beta(2.0, 1.2, 400)
    sequences = [np.where(rng.random(max_samples) < r, 0, rng.integers(1, 6, max_samples))
                 for r in rate]
    return calibrate(sequences, max_samples, n_orders=2, seed=0)


def threshold_for(calibration: tuple[tuple[float, float], ...], budget: float) -> float:
    """The smallest calibrated threshold whose mean spend is <= ``budget``.

    The largest spend within the budget; the cheapest threshold when even it spends
    more than the budget.
    """
    for threshold, mean in calibration:
        if mean <= budget + 1e-12:
            return threshold
    return calibration[-1][0]


# ------------------------------------------------------------------------ the policy
@register_policy
@dataclass(frozen=True)
class BlendASC(Policy):
    """Blend-ASC's stopping rule for a budget of samples per query (Feng et al. 2025).

    SAMPLE(arm) until the blend of Adaptive-Consistency's and PPR-1v1's error levels for
    the leader's and runner-up's votes falls to the threshold at which the calibration
    queries spend ``budget`` samples per query on average, or ``max_samples`` samples are
    drawn, or the pool runs out. Without a vote it samples.

    "Optimal Self-Consistency for Efficient Reasoning with Large Language Models" (arXiv
    2511.12309) allocates a dataset's sample budget across questions dynamically: the next
    sample goes to the question whose current votes are the least conclusive, ranked by a
    blend of two statistics of the leader's and the runner-up's vote counts, and it has no
    hyperparameter besides the budget. Only summaries of the method were readable here (the
    search tool's pages corpus holds the abstract and secondary summaries, not the methods
    section), so this is our reconstruction, and these are its choices:

    - the two statistics, for ``a`` votes of the leader and ``b`` of the runner-up:
      Adaptive-Consistency's Beta criterion (Aggarwal et al. 2023), as an error level
      ``e_ASC = 1 - P(p > 1/2)`` for ``p ~ Beta(a + 1, b + 1)``; and the one-versus-one
      prior-posterior-ratio test (PPR-1v1: leader against runner-up, uniform prior on the
      leader's share of their votes), as its anytime-valid p-value
      ``e_PPR = min(1, 1 / R)`` with ``R = prior(1/2) / posterior(1/2) = 2^(a+b) B(a+1, b+1)``.
    - the blend: the geometric mean of the two error levels,
      ``log e = (log e_ASC + log e_PPR) / 2``, equal weights, so nothing to tune. The paper
      blends the questions' *ranks* under the two statistics; ranks exist only among the
      questions of one batch, while this policy decides each query on its own (online, one
      query at a time as the runtime serves them), so the blend is of the statistics on a
      common scale instead: a deviation.
    - the budget: the paper's budget is a global average (total samples / questions). A
      global allocator that always samples the least conclusive question ends with every
      question's statistic at (about) one common level, the level at which the budget runs
      out. The per-query equivalent is a threshold: sample until ``log e <= log delta``,
      with ``delta`` the level at which the *training* queries spend ``budget`` samples on
      average (:func:`calibrate`, by replaying the rule on every training query in seeded
      random orders; the largest spend not above the budget). So the knob is the budget,
      the threshold is fitted, and the mean spend on held-out queries matches the budget
      only as well as the training queries predict it. The statistic takes finitely many
      values, so the reachable spends are a finite set: in particular nothing lies between
      one sample (every query stops at its first vote) and the spend of the next level,
      which needs a second agreeing vote (a few samples on real logs); a budget in between
      buys one sample. The global allocator fills that gap by breaking ties between
      questions at random, which a deterministic per-query rule cannot.

    It samples one arm, stops at ``max_samples`` samples or when the pool runs out (the
    mask), and the environment takes the majority vote.

    Args:
        budget: mean samples per query, > 0; the knob (its only parameter, as in the
            paper).
        calibration: ``(log_threshold, mean_samples)`` pairs from :func:`calibrate` on
            the training queries (:meth:`fit`); None: calibrated on a synthetic
            population (a documented default, not a substitute for fitting).
        max_samples: samples of the arm after which it stops regardless (>= 1).
        arm: the arm sampled.
    """

    name: ClassVar[str] = "blend-asc"
    knob: ClassVar[str | None] = "budget"
    default_sweep: ClassVar[tuple[float, ...]] = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0,
                                                  10.0, 12.0, 16.0, 20.0)

    budget: float = 6.0
    calibration: tuple[tuple[float, float], ...] | None = None
    max_samples: int = 40
    arm: int = 0

    def __post_init__(self) -> None:
        check_positive(_OWNER, "budget", self.budget)
        check_int(_OWNER, "max_samples", self.max_samples, 1)
        check_int(_OWNER, "arm", self.arm, 0)
        self._set("budget", float(self.budget))
        calibration = self._checked_calibration()
        self._set("calibration", calibration)
        self._set("_log_threshold", threshold_for(calibration, self.budget))
        self._set("_table", blend_table(self.max_samples))

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)

    def _checked_calibration(self) -> tuple[tuple[float, float], ...]:
        if self.calibration is None:
            return _default_calibration(self.max_samples)
        try:
            pairs = np.asarray(self.calibration, dtype=np.float64)
        except (TypeError, ValueError):
            pairs = np.array([np.nan])
        ok = (pairs.ndim == 2 and pairs.shape[1] == 2 and len(pairs) > 0
              and not np.isnan(pairs).any() and np.isfinite(pairs[:, 1]).all()
              and (np.diff(pairs[:, 0]) > 0).all() and (np.diff(pairs[:, 1]) < 0).all()
              and (pairs[:, 1] >= 0).all())
        if not ok:
            raise ParameterError(_OWNER, "calibration",
                                 "None or (log_threshold, mean_samples) pairs with "
                                 "thresholds increasing and mean samples decreasing "
                                 "(see blend_asc.calibrate)", self.calibration)
        return tuple((float(t), float(m)) for t, m in pairs.tolist())

    @classmethod
    def fit(cls, sequences: Sequence[np.ndarray], *, budget: float = 6.0,
            max_samples: int = 40, arm: int = 0, n_orders: int = 8,
            seed: int = 0) -> BlendASC:
        """The policy with its threshold calibrated on training queries' pools.

        Args:
            sequences: per training query, the arm's answer codes (-1: no answer).
            budget: mean samples per query (the knob).
            max_samples: the cap (the largest training pool).
            arm: the arm sampled.
            n_orders: seeded random orders per query for the calibration.
            seed: seed of the orders.
        """
        calibration = calibrate(sequences, max_samples, n_orders=n_orders, seed=seed)
        return cls(budget=budget, calibration=calibration, max_samples=max_samples, arm=arm)

    @property
    def log_threshold(self) -> float:
        """The threshold on the blended log error level that the budget sets."""
        return float(self._log_threshold)  # type: ignore[attr-defined]

    def act(self, state: StateBatch, mask: np.ndarray) -> np.ndarray:
        """SAMPLE(arm) until the blended error level or ``max_samples`` stops it."""
        mask = check_mask(_OWNER, state, mask, self.arm)
        voted, top1, top2 = leader_votes(state)
        size = self.max_samples
        level = self._table[np.minimum(top1.astype(np.int64), size),  # type: ignore[attr-defined]
                            np.minimum(top2.astype(np.int64), size)]
        confident = (voted > 0) & (level <= self._log_threshold)  # type: ignore[attr-defined]
        drawn = np.asarray(state.samples)[:, self.arm]
        return sample_or_stop((drawn < self.max_samples) & ~confident, mask, self.arm)

    def describe(self) -> str:
        """Name, budget, threshold, cap and arm (the calibration summarised)."""
        source = ("synthetic default calibration"
                  if self.calibration == _default_calibration(self.max_samples)
                  else "calibrated on training queries")
        return (f"{self.name}(budget={self.budget!r}, max_samples={self.max_samples}, "
                f"arm={self.arm}; log threshold {self.log_threshold:.4g}, {source})")
