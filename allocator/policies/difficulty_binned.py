"""Difficulty-binned allocation (``difficulty-binned``): the predicted difficulty picks a
bin, the bin picks N.

:class:`DifficultyBinned` gives each difficulty bin its number of self-consistency
samples, planned compute-optimally on training queries (:func:`solve_plan`), in the
spirit of Snell et al. 2024.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import numpy as np

from allocator._checks import is_int
from allocator.errors import ParameterError
from allocator.featurizer import StateBatch
from allocator.policies._common import check_int, check_mask, check_positive, sample_or_stop
from allocator.policies.base import Policy
from allocator.policies.registry import register_policy

__all__ = ["DifficultyBinned", "binary_majority_curve", "solve_plan"]

_OWNER = "DifficultyBinned ('difficulty-binned')"
#: Curve length of the analytic default plan (samples per query at most).
_DEFAULT_MAX_SAMPLES = 40


def binary_majority_curve(p: float, max_samples: int) -> np.ndarray:
    """Majority@N accuracy, N = 1..max_samples, when every wrong answer is the same one.

    ``P(Binomial(N, p) > N/2) + P(Binomial(N, p) = N/2) / 2`` (ties broken at random):
    the pessimistic two-answer model of majority voting, used for the plan of a policy
    that was not fitted.

    Returns:
        float64 array of shape (max_samples,).
    """
    out = np.empty(max_samples)
    for n in range(1, max_samples + 1):
        pmf = np.array([math.comb(n, k) * p**k * (1 - p)**(n - k) for k in range(n + 1)])
        k = np.arange(n + 1)
        out[n - 1] = pmf[2 * k > n].sum() + 0.5 * pmf[2 * k == n].sum()
    return out


@lru_cache(maxsize=64)
def _frontier(curves: tuple[tuple[float, ...], ...], counts: tuple[int, ...],
              min_samples: int) -> tuple[tuple[np.ndarray, ...], ...]:
    """The Pareto frontier of (total samples, total accuracy) over the bins, bin by bin.

    Level ``k`` holds the non-dominated plans of bins ``0..k``: costs strictly increasing,
    values strictly increasing, and for each the previous level's index and bin ``k``'s
    N. Every plan's cost is ``sum(count * N)``, its value ``sum(count * curve[N])``.
    """
    costs, values = np.zeros(1, dtype=np.int64), np.zeros(1)
    levels = []
    for curve, count in zip(curves, counts, strict=True):
        choices = np.arange(min_samples, len(curve) + 1)
        gains = np.concatenate([[0.0], curve])[choices] * count
        cost = (costs[:, None] + count * choices[None, :]).ravel()
        value = (values[:, None] + gains[None, :]).ravel()
        order = np.lexsort((-value, cost))  # by cost, then best value first
        running = np.maximum.accumulate(value[order])
        keep = order[np.concatenate([[True], running[1:] > running[:-1]])]
        parent, pick = np.divmod(keep, len(choices))
        costs, values = cost[keep], value[keep]
        levels.append((costs, values, parent, choices[pick]))
    return tuple(levels)


def solve_plan(curves: tuple[tuple[float, ...], ...], counts: tuple[int, ...],
               target: float, min_samples: int = 1) -> tuple[int, ...]:
    """The N per bin that maximises expected accuracy at mean samples <= ``target``.

    Exact: a dynamic programme over bins keeps the Pareto frontier of (samples,
    accuracy) plans (:func:`_frontier`, cached per curves), then takes the most accurate
    plan within the budget (the cheapest among equally accurate ones).

    Args:
        curves: per bin, the mean accuracy with N = 1, 2, ... samples.
        counts: per bin, the number of training queries (the weights).
        target: the mean number of samples per query allowed.
        min_samples: the least N of any bin (0 lets a bin give up: accuracy 0).

    Raises:
        ParameterError: even ``min_samples`` everywhere exceeds the target.
    """
    total = sum(counts)
    budget = target * max(total, 1) + 1e-9 * max(total, 1)
    if min_samples * total > budget:
        raise ParameterError(_OWNER, "target", f">= min_samples ({min_samples})", target)
    levels = _frontier(curves, counts, min_samples)
    index = int(np.searchsorted(levels[-1][0], budget, side="right")) - 1
    plan = []
    for _costs, _values, parent, pick in reversed(levels):
        plan.append(int(pick[index]))
        index = int(parent[index])
    return tuple(reversed(plan))


def _bin_of(edges: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Bin index of each prior: ``k`` when ``edges[k-1] <= prior < edges[k]``."""
    return np.searchsorted(edges, prior, side="right")


@lru_cache(maxsize=16)
def _default_curves(edges: tuple[float, ...],
                    max_samples: int) -> tuple[tuple[float, ...], ...]:
    """Analytic curves at each bin's middle (bounds clipped to [0, 1]): the unfitted plan."""
    bounds = np.clip(np.concatenate([[0.0], edges, [1.0]]), 0.0, 1.0)
    middles = (bounds[:-1] + bounds[1:]) / 2
    return tuple(tuple(binary_majority_curve(float(p), max_samples).tolist())
                 for p in middles)


@register_policy
@dataclass(frozen=True)
class DifficultyBinned(Policy):
    """N samples per difficulty bin, chosen to be compute-optimal on training queries.

    The plan (N per bin) comes from training queries: :meth:`DifficultyBinned.fit` takes
    each query's majority@N accuracy curve and a target mean number of samples, and picks
    the N per bin that maximises expected accuracy subject to mean samples <= target, by an
    exact dynamic programme over bins (see :func:`solve_plan`). The policy keeps the per-bin
    mean curves and bin sizes (small tuples), so the knob (``target``) re-solves the plan:
    ``policy.with_knob(6.0)`` is the compute-optimal plan for 6 samples per query on the
    same training queries.

    In the spirit of Snell et al. 2024, "Scaling LLM Test-Time Compute Optimally can be
    More Effective than Scaling Model Parameters": the predicted per-attempt accuracy
    ``state.prior[:, arm]`` picks bin ``k`` (``edges[k-1] <= prior < edges[k]``), and
    the policy draws ``samples_per_bin[k]`` samples of the arm, then STOPs.

    Two ways to build one:

    - fitted: :meth:`fit` on training queries (quantile bins of the prior, per-bin mean
      majority@N curves, the plan solved for ``target``); the knob ``target`` re-solves
      the plan on the same curves (:meth:`with_knob`).
    - fixed: ``DifficultyBinned(edges, samples_per_bin=(...), target=None)``; sweeping
      the knob then plans from analytic curves.

    With ``target`` set and no ``bin_curves``, the plan is solved on analytic curves
    (:func:`binary_majority_curve` at each bin's middle, equal bin weights): a documented
    default for a policy built without training data, not a substitute for :meth:`fit`.

    Args:
        edges: increasing inner bin edges on the prior (``len(edges) + 1`` bins).
        samples_per_bin: N per bin; derived from the curves when ``target`` is set (a
            given value must then equal the solved plan).
        target: the mean samples per query the plan may spend; the knob. None: a fixed
            ``samples_per_bin``.
        bin_curves: per bin, the mean majority@N accuracy for N = 1..L on the training
            queries (L caps N).
        bin_counts: per bin, the number of training queries (weights of the budget).
        min_samples: the least N of any bin (0 allows giving up on a bin).
        arm: the arm sampled.
    """

    name: ClassVar[str] = "difficulty-binned"
    knob: ClassVar[str | None] = "target"
    default_sweep: ClassVar[tuple[float, ...]] = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0,
                                                  24.0, 32.0)

    edges: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)
    samples_per_bin: tuple[int, ...] | None = None
    target: float | None = 8.0
    bin_curves: tuple[tuple[float, ...], ...] | None = None
    bin_counts: tuple[int, ...] | None = None
    min_samples: int = 1
    arm: int = 0

    def __post_init__(self) -> None:
        check_int(_OWNER, "arm", self.arm, 0)
        check_int(_OWNER, "min_samples", self.min_samples, 0)
        self._set("edges", self._checked_edges())
        self._set_curves()
        if self.target is None:
            self._set("samples_per_bin", self._checked_plan(self.samples_per_bin))
            return
        check_positive(_OWNER, "target", self.target)
        self._set("target", float(self.target))
        assert self.bin_curves is not None and self.bin_counts is not None
        plan = solve_plan(self.bin_curves, self.bin_counts, self.target, self.min_samples)
        if self.samples_per_bin is not None and tuple(self.samples_per_bin) != plan:
            raise ParameterError(_OWNER, "samples_per_bin",
                                 f"None or the plan solved for target={self.target} "
                                 f"{plan} (or set target=None)", self.samples_per_bin)
        self._set("samples_per_bin", plan)

    # ------------------------------------------------------------- validation
    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)

    def _checked_edges(self) -> tuple[float, ...]:
        try:
            edges = np.asarray(self.edges, dtype=np.float64)
        except (TypeError, ValueError):
            edges = np.array([np.nan])
        if edges.ndim != 1 or not np.isfinite(edges).all() or (np.diff(edges) <= 0).any():
            raise ParameterError(_OWNER, "edges", "a strictly increasing sequence of finite "
                                 "numbers (possibly empty: one bin)", self.edges)
        return tuple(edges.tolist())

    def _checked_plan(self, plan: object) -> tuple[int, ...]:
        bins = len(self.edges) + 1
        ok = isinstance(plan, tuple | list | np.ndarray) and len(plan) == bins and all(
            is_int(n, 0) for n in plan)
        if not ok:
            raise ParameterError(_OWNER, "samples_per_bin",
                                 f"{bins} integers >= 0 (one per bin), or set target", plan)
        return tuple(int(n) for n in plan)  # type: ignore[union-attr]

    def _set_curves(self) -> None:
        bins = len(self.edges) + 1
        if self.bin_curves is None:
            if self.bin_counts is not None:
                raise ParameterError(_OWNER, "bin_counts", "None when bin_curves is None",
                                     self.bin_counts)
            self._set("bin_curves", _default_curves(self.edges, _DEFAULT_MAX_SAMPLES))
            self._set("bin_counts", (1,) * bins)
            return
        try:
            curves = np.asarray(self.bin_curves, dtype=np.float64)
        except (TypeError, ValueError):
            curves = np.array([np.nan])
        if curves.ndim != 2 or curves.shape[0] != bins or curves.shape[1] < 1 or not (
                np.isfinite(curves).all()):
            raise ParameterError(_OWNER, "bin_curves",
                                 f"{bins} equal-length sequences of finite accuracies "
                                 "(N = 1, 2, ...)", np.shape(curves))
        counts = (1,) * bins if self.bin_counts is None else self.bin_counts
        if len(counts) != bins or not all(is_int(c, 0) for c in counts):
            raise ParameterError(_OWNER, "bin_counts", f"{bins} integers >= 0", counts)
        self._set("bin_curves", tuple(tuple(row) for row in curves.tolist()))
        self._set("bin_counts", tuple(int(c) for c in counts))

    # --------------------------------------------------------------- fitting
    @classmethod
    def fit(cls, prior: np.ndarray, solve_curves: np.ndarray, target_mean_samples: float,
            n_bins: int = 5, *, min_samples: int = 1, arm: int = 0) -> DifficultyBinned:
        """Fit bins and the compute-optimal plan on training queries.

        Bins: the ``k / n_bins`` quantiles of ``prior`` (repeated or minimal quantiles are
        dropped, so a discrete prior may give fewer bins). Each bin's curve is the mean
        of its queries' curves; the plan maximises mean accuracy over the training
        queries at mean samples <= ``target_mean_samples`` (:func:`solve_plan`, exact).

        Args:
            prior: predicted per-attempt accuracy of each training query for ``arm``,
                shape (Q,) (out-of-fold predictions, as the policy will see them).
            solve_curves: ``solve_curves[q, n - 1]`` = query q's expected accuracy
                (majority@n) with n samples, shape (Q, N_max); N_max caps N.
            target_mean_samples: the mean samples per query allowed; the knob.
            n_bins: number of quantile bins (at most).
            min_samples: the least N of any bin (0 lets a bin give up).
            arm: the arm the policy samples.

        Returns:
            The fitted policy.
        """
        prior = np.asarray(prior, dtype=np.float64)
        curves = np.asarray(solve_curves, dtype=np.float64)
        if prior.ndim != 1 or not np.isfinite(prior).all() or len(prior) == 0:
            raise ParameterError(f"{_OWNER}.fit", "prior", "a non-empty 1-D array of "
                                 "finite numbers", np.shape(prior))
        if curves.ndim != 2 or curves.shape[0] != len(prior) or curves.shape[1] < 1:
            raise ParameterError(f"{_OWNER}.fit", "solve_curves",
                                 f"an array of shape ({len(prior)}, N_max)", curves.shape)
        check_int(f"{_OWNER}.fit", "n_bins", n_bins, 1)
        quantiles = np.quantile(prior, np.arange(1, n_bins) / n_bins)
        edges = np.unique(quantiles)
        edges = edges[edges > prior.min()]
        bins = _bin_of(edges, prior)
        counts = np.bincount(bins, minlength=len(edges) + 1)
        overall = curves.mean(axis=0)
        bin_curves = [curves[bins == k].mean(axis=0) if counts[k] else overall
                      for k in range(len(edges) + 1)]
        return cls(edges=tuple(edges.tolist()), target=target_mean_samples,
                   bin_curves=tuple(tuple(c.tolist()) for c in bin_curves),
                   bin_counts=tuple(int(c) for c in counts), min_samples=min_samples,
                   arm=arm)

    # -------------------------------------------------------------- deciding
    def act(self, state: StateBatch, mask: np.ndarray) -> np.ndarray:
        """SAMPLE(arm) below the N of the state's difficulty bin, then STOP."""
        mask = check_mask(_OWNER, state, mask, self.arm)
        plan = np.asarray(self.samples_per_bin, dtype=np.int64)
        bins = _bin_of(np.asarray(self.edges), np.asarray(state.prior)[:, self.arm])
        want = np.asarray(state.samples)[:, self.arm] < plan[bins]
        return sample_or_stop(want, mask, self.arm)

    def with_knob(self, value: object) -> DifficultyBinned:
        """A copy whose plan is re-solved for ``target=value`` on the same curves."""
        return dataclasses.replace(self, target=value, samples_per_bin=None)  # type: ignore[arg-type]

    # --------------------------------------------------------------- reading
    def planned_mean_samples(self) -> float:
        """Mean samples per query of the plan on the training queries (bin weights)."""
        counts = np.asarray(self.bin_counts, dtype=np.float64)
        return float(counts @ np.asarray(self.samples_per_bin) / max(counts.sum(), 1.0))

    def planned_accuracy(self) -> float:
        """Mean accuracy of the plan on the training queries (from the bin curves).

        A bin's N beyond its curve's length counts as the curve's last value.
        """
        counts = np.asarray(self.bin_counts, dtype=np.float64)
        assert self.bin_curves is not None and self.samples_per_bin is not None
        accuracy = [0.0 if n == 0 else curve[min(n, len(curve)) - 1]
                    for curve, n in zip(self.bin_curves, self.samples_per_bin, strict=True)]
        return float(counts @ np.asarray(accuracy) / max(counts.sum(), 1.0))

    def describe(self) -> str:
        """Name, edges, plan, target and arm (the curves are summarised by their size)."""
        edges = ", ".join(f"{e:.3g}" for e in self.edges)
        analytic = self.bin_curves == _default_curves(self.edges, _DEFAULT_MAX_SAMPLES)
        curves = ("analytic curves" if analytic
                  else f"fitted on {sum(self.bin_counts or ())} queries")
        return (f"{self.name}(edges=({edges}), samples_per_bin={self.samples_per_bin}, "
                f"target={self.target}, min_samples={self.min_samples}, arm={self.arm}; "
                f"{curves})")
