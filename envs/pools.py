"""What both replay environments precompute from a log, and the settings they share.

:class:`ReplayPools` regroups a log's candidates so that an episode is a few integer
lookups (its docstring gives the layout); :class:`ReplaySettings` validates the
environment parameters once; :func:`draw_episode` is *the* random protocol of a reset,
shared by the single and the batched environment so that they replay exactly the same
episodes under the same seeds.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np
from gymnasium import spaces

from allocator._checks import check_int, check_number, is_int
from allocator.actions import DEFAULT_WIDTHS, check_widths
from allocator.envs._branches import Branches, build_branches, tournament_queries, workspace_keys
from allocator.errors import EnvironmentConfigError, ParameterError
from allocator.featurizer import LOG_LAMBDA_FLOOR, feature_bounds, feature_layout
from allocator.logs.schema import KIND_REFINE, KIND_SAMPLE, KIND_VERIFY
from allocator.logs.table import AttemptLog

__all__ = [
    "Episode",
    "ReplayNote",
    "ReplayPools",
    "ReplaySettings",
    "UniformStream",
    "draw_episode",
    "forced_query",
    "log_verify_cost",
    "logged_order",
    "shuffle_order",
    "stream_block",
]

LAMBDA_SAMPLING = ("uniform", "log-uniform")


class ReplayNote(UserWarning):
    """A log holds rows replay cannot replay exactly (they are masked; see
    :attr:`ReplayPools.notes`)."""


@dataclass(frozen=True, eq=False)
class ReplayPools:
    """A log's candidates regrouped for replay.

    The candidates are samples and refinements (``verify`` rows are not candidates):

    - candidates of query ``q`` are ``cand_offsets[q]:cand_offsets[q + 1]``, ordered by
      *group* (arm ``0..A-1`` for samples, then ``A + k`` for the query's ``k``-th
      refinement *workspace*: the summary its refinements were conditioned on, see
      :class:`allocator.envs._branches.Branches`), then by log order;
    - within a query, arm ``a``'s samples are the local positions
      ``arm_start[q, a] : arm_start[q, a] + arm_count[q, a]`` and refinements follow at
      ``refine_start[q]``; more generally, group ``g`` of query ``q`` holds the local
      positions ``group_start[q, g] : group_start[q, g] + group_count[q, g]``, and
      ``cand_slot`` is a candidate's index inside its group;
    - answers are re-coded per query to ``0..n_answers[q]-1`` (``-1``: no answer), so that
      a vote is an index into a short per-query array.

    Attributes:
        arms: arm names; arm ``a`` is action ``1 + a``.
        query_ids: query identifiers, shape (Q,).
        cand_offsets: candidate range of each query, shape (Q+1,).
        cand_row: the candidate's row in the log, shape (C,).
        cand_group: arm for samples, ``A + workspace rank`` for refinements, shape (C,).
        cand_answer: query-local answer code, -1 for no answer, shape (C,).
        cand_correct: correctness in [0, 1], shape (C,).
        cand_cost: cost in the log's units, shape (C,).
        cand_score: verifier score, NaN where the log has none, shape (C,).
        cand_verifiable: whether VERIFY reveals the candidate: it has a score or a logged
            verdict (a verdict without a usable score still costs), shape (C,).
        cand_blocks_verify: the candidate has no verdict in a query whose verifier
            verdicts are logged (an executor never verified it): once it is drawn, a
            verification cannot be replayed (the live verifier would have judged it too),
            so VERIFY of independent scores is masked for the rest of the episode, (C,).
        arm_start: local position of each arm's first sample, shape (Q, A).
        arm_count: samples per query and arm, shape (Q, A).
        refine_start: local position of the first refinement, shape (Q,).
        refine_count: refinements per query, shape (Q,).
        group_start: local position of each group's first candidate, shape (Q, G) with
            ``G = A + most workspaces of a query``.
        group_count: candidates per query and group, shape (Q, G).
        cand_slot: the candidate's index inside its group (in log order), shape (C,).
        answer_offsets: distinct answers of query ``q`` are
            ``answer_offsets[q]:answer_offsets[q+1]``, shape (Q+1,).
        answer_code: the log's answer code of each distinct answer, shape (D,).
        answer_correct: mean correctness of the query's candidates with that answer, (D,).
        mean_sample_cost: mean cost of the log's sample attempts (the default cost unit).
        log_verify_cost: :func:`log_verify_cost` of the log (the default ``verify_cost``).
        branches: the refinement workspaces and verification events
            (:class:`allocator.envs._branches.Branches`).
        cand_duration: the candidate's wall-clock seconds (``ended_at - started_at``),
            NaN where the log does not time it, shape (C,).
        timed: whether every row replay can charge latency for is timed (the
            candidates, the workspaces' summaries, the verdicts and votes): what pricing
            latency (``mu > 0``) needs.
    """

    arms: tuple[str, ...]
    query_ids: np.ndarray
    cand_offsets: np.ndarray
    cand_row: np.ndarray
    cand_group: np.ndarray
    cand_answer: np.ndarray
    cand_correct: np.ndarray
    cand_cost: np.ndarray
    cand_score: np.ndarray
    cand_verifiable: np.ndarray
    cand_blocks_verify: np.ndarray
    arm_start: np.ndarray
    arm_count: np.ndarray
    refine_start: np.ndarray
    refine_count: np.ndarray
    group_start: np.ndarray
    group_count: np.ndarray
    cand_slot: np.ndarray
    answer_offsets: np.ndarray
    answer_code: np.ndarray
    answer_correct: np.ndarray
    mean_sample_cost: float
    log_verify_cost: float
    branches: Branches
    cand_duration: np.ndarray
    timed: bool

    # ------------------------------------------------------------------ shape
    @property
    def n_queries(self) -> int:
        """Number of queries ``Q``."""
        return len(self.query_ids)

    @property
    def n_arms(self) -> int:
        """Number of arms ``A``."""
        return len(self.arms)

    @property
    def n_candidates(self) -> np.ndarray:
        """Candidates per query, shape (Q,)."""
        return np.diff(self.cand_offsets)

    @cached_property
    def candidate_counts(self) -> tuple[int, ...]:
        """Candidates per query as Python ints (fast scalar access in resets)."""
        return tuple(self.n_candidates.tolist())

    @property
    def n_answers(self) -> np.ndarray:
        """Distinct answers per query, shape (Q,)."""
        return np.diff(self.answer_offsets)

    @property
    def max_answers(self) -> int:
        """Most distinct answers of any query (the width of a votes row)."""
        return max(int(self.n_answers.max(initial=0)), 1)

    @property
    def max_candidates(self) -> int:
        """Most candidates of any query."""
        return max(int(self.n_candidates.max(initial=0)), 1)

    @property
    def n_groups(self) -> int:
        """Number of groups ``G``: arms, then refinement rounds."""
        return int(self.group_count.shape[1])

    @property
    def max_group_size(self) -> int:
        """Most candidates of any group of any query."""
        return max(int(self.group_count.max(initial=0)), 1)

    @property
    def supports_refine(self) -> bool:
        """Whether any query has refinements replay can draw exactly."""
        return self.branches.has_workspaces

    @property
    def supports_verify(self) -> bool:
        """Whether any candidate carries an independent verifier score, or any
        tournament verification can be applied."""
        return bool(self.cand_verifiable.any()) or self.branches.has_events

    @property
    def notes(self) -> tuple[str, ...]:
        """What the log cannot replay exactly (and replay therefore masks)."""
        return self.branches.notes

    # --------------------------------------------------------------- building
    @classmethod
    def from_log(cls, log: AttemptLog) -> ReplayPools:
        """Regroup a log's candidates for replay (vectorised: ~0.1 s per 100k attempts).

        Raises:
            EnvironmentConfigError: if the log has no sample attempts.
        """
        sample_rows = log.kind == KIND_SAMPLE
        if not sample_rows.any():
            raise EnvironmentConfigError(
                f"the log {log.source or ''!s} has no 'sample' attempts: nothing to replay. "
                "Fix: check the 'kind' column (refinements and verifier calls need samples "
                "to start from)."
            )
        rows, query, group, ws_keys = _candidates_by_group(log)
        n_queries, n_arms = log.n_queries, len(log.arms)
        offsets = np.concatenate([[0], np.cumsum(np.bincount(query, minlength=n_queries))])
        n_groups = max(n_arms, int(group.max(initial=-1)) + 1)
        group_count = np.bincount(query * n_groups + group,
                                  minlength=n_queries * n_groups).reshape(n_queries, n_groups)
        group_start = np.cumsum(group_count, axis=1) - group_count
        local = np.arange(len(rows)) - offsets[query]
        local_answer, answer_offsets, answer_code, answer_correct = _local_answers(
            query, log.answer[rows], log.correct[rows], n_queries)
        branches = build_branches(
            log, rows, query, local_answer, group_count, n_arms, ws_keys,
            max(int(np.diff(answer_offsets).max(initial=0)), 1))
        score = log.score[rows].astype(np.float64)
        # A tournament's scores are relative to the opponents drawn: never replayed as
        # independent scores (VERIFY applies the logged events instead).
        relative = tournament_queries(log)[query]
        score[relative] = np.nan
        branches.cand_verify_cost[relative] = np.nan
        duration = log.duration[rows]
        for note in branches.notes:  # what is masked, said once per log read
            warnings.warn(f"{log.source or 'the log'}: {note}", ReplayNote, stacklevel=2)
        return cls(
            arms=tuple(log.arms),
            query_ids=log.query_ids,
            cand_offsets=offsets.astype(np.int64),
            cand_row=rows,
            cand_group=group.astype(np.int32),
            cand_answer=local_answer,
            cand_correct=log.correct[rows].astype(np.float64),
            cand_cost=log.cost[rows].astype(np.float64),
            cand_score=score,
            cand_verifiable=~np.isnan(score) | ~np.isnan(branches.cand_verify_cost),
            cand_blocks_verify=_verdict_query(log, n_queries)[query] & ~relative
            & np.isnan(branches.cand_verify_cost),
            arm_start=group_start[:, :n_arms],
            arm_count=group_count[:, :n_arms],
            refine_start=group_count[:, :n_arms].sum(axis=1),
            refine_count=group_count[:, n_arms:].sum(axis=1),
            group_start=group_start,
            group_count=group_count,
            cand_slot=local - group_start[query, group],
            answer_offsets=answer_offsets,
            answer_code=answer_code,
            answer_correct=answer_correct,
            mean_sample_cost=float(log.cost[sample_rows].mean()),
            log_verify_cost=log_verify_cost(log),
            branches=branches,
            cand_duration=duration,
            timed=bool(np.isfinite(duration).all()) and branches.timed,
        )


def _candidates_by_group(log: AttemptLog
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[list[str]]]:
    """Rows of samples and refinements sorted by (query, group, log order).

    Returns:
        The rows, their query, their group (the arm for samples, ``A + rank`` of the
        refinement's workspace within its query, workspaces sorted by round, then key),
        and each query's workspace keys in group order
        (:func:`allocator.envs._branches.workspace_keys`).
    """
    candidates = np.flatnonzero(log.kind != KIND_VERIFY)
    query = log.attempt_query[candidates].astype(np.int64)
    group = log.arm[candidates].astype(np.int64)
    is_refine = log.kind[candidates] == KIND_REFINE
    ws_keys: list[list[str]] = [[] for _ in range(log.n_queries)]
    if is_refine.any():
        keys, _ = workspace_keys(log)
        first_round: list[dict[str, int]] = [{} for _ in range(log.n_queries)]
        for row, q in zip(candidates[is_refine].tolist(), query[is_refine].tolist(),
                          strict=True):
            rounds = first_round[q]
            rounds[keys[row]] = min(rounds.get(keys[row], 1 << 30), int(log.round[row]))
        # Workspaces in round order, then by key: later rounds after earlier ones.
        ws_keys = [sorted(rounds, key=lambda name, rounds=rounds: (rounds[name], name))
                   for rounds in first_round]
        rank = [{name: r for r, name in enumerate(names)} for names in ws_keys]
        group[is_refine] = len(log.arms) + np.array(
            [rank[q][keys[row]] for row, q in zip(candidates[is_refine].tolist(),
                                                  query[is_refine].tolist(), strict=True)],
            dtype=np.int64)
    order = np.lexsort((candidates, group, query))
    return candidates[order], query[order], group[order], ws_keys


def _verdict_query(log: AttemptLog, n_queries: int) -> np.ndarray:
    """Whether each query has verifier verdicts (``verify`` rows with a ``target``)."""
    target = log.extra.get("target")
    if target is None:
        return np.zeros(n_queries, dtype=bool)
    has = np.array([value is not None and value == value for value in target.tolist()],
                   dtype=bool) & (log.kind == KIND_VERIFY)
    return np.bincount(log.attempt_query[has], minlength=n_queries) > 0


def log_verify_cost(log: AttemptLog) -> float:
    """The verifier's cost per verified candidate the log records: the mean cost of its
    verdicts, in the candidates' cost units; 0 when it has none. Verdicts are the
    ``verify`` rows whose ``role`` is ``verdict`` in an executor log (judge votes,
    summaries and tournament events are not), those with a ``target`` where there is no
    ``role`` column, and every ``verify`` row in a log with neither.

    The one rule of the default ``verify_cost`` (the environments, ``allocator train``
    and ``allocator evaluate``). It prices VERIFY only for candidates whose score has no
    logged verdict (a score column without verify rows); verdicts, votes and summaries
    are charged their own logged costs.
    """
    rows = log.kind == KIND_VERIFY
    role, target = log.extra.get("role"), log.extra.get("target")
    if role is not None:
        rows &= np.array([value == "verdict" for value in role.tolist()], dtype=bool)
    elif target is not None:
        rows &= np.array([value is not None and value == value for value in target.tolist()],
                         dtype=bool)
    costs = log.cost[rows]
    costs = costs[np.isfinite(costs)]
    return float(costs.mean()) if costs.size else 0.0


def _local_answers(
    query: np.ndarray, answer: np.ndarray, correct: np.ndarray, n_queries: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-query answer codes ``0..k_q-1`` (-1 kept), their offsets, log codes, correctness."""
    local = np.full(len(answer), -1, dtype=np.int32)
    has = answer >= 0
    width = int(answer.max(initial=0)) + 1
    keys, inverse, votes = np.unique(query[has] * width + answer[has],
                                     return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    key_query = keys // width
    per_query = np.bincount(key_query, minlength=n_queries)
    offsets = np.concatenate([[0], np.cumsum(per_query)]).astype(np.int64)
    local[has] = inverse - offsets[key_query[inverse]]
    answer_correct = np.bincount(inverse, weights=correct[has], minlength=len(keys)) / votes
    return local, offsets, (keys % width).astype(np.int32), answer_correct


def shuffle_order(keys: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """A query's deck: local candidate positions sorted by group, then by random key."""
    return np.lexsort((keys, groups))


# ---------------------------------------------------------------------- settings
def _number(owner: str, name: str, value: Any, low: float, strict: bool = False) -> float:
    """``value`` as a finite float ``>= low`` (``> low`` if strict), else ParameterError."""
    return check_number(owner, name, value, low=low, strict=strict)


def _cap(owner: str, value: Any) -> int | None:
    return check_int(owner, "max_samples", value, minimum=1, none=True)  # type: ignore[no-any-return]


@dataclass(frozen=True, eq=False)
class ReplaySettings:
    """Validated parameters of a replay environment (see :class:`allocator.envs.ReplayEnv`).

    Attributes:
        lambda_: the fixed price per cost unit (unused when ``lambda_range`` is set).
        lambda_range: ``(lo, hi)`` to draw lambda per episode, or None.
        lambda_sampling: ``"uniform"`` or ``"log-uniform"`` over ``lambda_range``.
        verify_cost: the price of verifying a candidate whose score has no logged verdict,
            in the log's cost units (verdicts, votes and summaries cost what the log says).
        cost_unit: the cost that one unit of lambda prices.
        prior: per-query, per-arm predicted accuracy, shape (Q, A).
        queries: the queries episodes are drawn from (indices into the log).
        max_samples: most attempts (samples + refinements) per episode, or None.
        mu: the price of one second of latency (critical path), in the reward's units.
        widths: the parallel widths SAMPLE offers (:func:`allocator.actions.check_widths`).
    """

    lambda_: float
    lambda_range: tuple[float, float] | None
    lambda_sampling: str
    verify_cost: float
    cost_unit: float
    prior: np.ndarray
    queries: np.ndarray
    max_samples: int | None
    mu: float = 0.0
    widths: tuple[int, ...] = DEFAULT_WIDTHS

    @classmethod
    def create(
        cls,
        pools: ReplayPools,
        owner: str,
        *,
        lambda_: float = 0.05,
        lambda_range: tuple[float, float] | None = None,
        lambda_sampling: str = "uniform",
        verify_cost: float | None = None,
        cost_unit: float | None = None,
        prior: np.ndarray | None = None,
        queries: np.ndarray | list[int] | None = None,
        max_samples: int | None = None,
        mu: float = 0.0,
        widths: tuple[int, ...] | list[int] = DEFAULT_WIDTHS,
    ) -> ReplaySettings:
        """Validate the parameters; errors name ``owner`` and the parameter.

        ``verify_cost=None`` takes the log's (:func:`log_verify_cost`).

        Raises:
            ParameterError: for an invalid parameter, and for ``mu > 0`` on a log whose
                replayable rows are not all timed (``pools.timed``).
        """
        if verify_cost is None:
            verify_cost = pools.log_verify_cost
        lambda_ = _number(owner, "lambda_", lambda_, 0.0)
        if lambda_range is not None:
            lambda_range = _lambda_range(owner, lambda_range, lambda_sampling)
        if lambda_sampling not in LAMBDA_SAMPLING:
            raise ParameterError(owner, "lambda_sampling", f"one of {LAMBDA_SAMPLING}",
                                 lambda_sampling)
        if cost_unit is not None:
            unit = _number(owner, "cost_unit", cost_unit, 0.0, strict=True)
        elif np.isfinite(pools.mean_sample_cost) and pools.mean_sample_cost > 0:
            unit = pools.mean_sample_cost
        else:
            raise EnvironmentConfigError(
                f"{owner}: the log's mean sample cost is {pools.mean_sample_cost!r}, which "
                "cannot be the cost unit (lambda prices one cost unit). Fix: pass "
                "cost_unit=... (a positive number), or give the attempts their costs."
            )
        return cls(
            lambda_=lambda_,
            lambda_range=lambda_range,
            lambda_sampling=lambda_sampling,
            verify_cost=_number(owner, "verify_cost", verify_cost, 0.0),
            cost_unit=float(unit),
            prior=_prior(owner, prior, pools),
            queries=_queries(owner, queries, pools),
            max_samples=_cap(owner, max_samples),
            mu=_mu(owner, mu, pools),
            widths=check_widths(owner, widths),
        )

    @cached_property
    def query_list(self) -> tuple[int, ...]:
        """``queries`` as Python ints (fast scalar access in resets)."""
        return tuple(self.queries.tolist())

    def lambdas(self, uniforms: np.ndarray) -> np.ndarray:
        """Lambdas from uniforms in [0, 1) over ``lambda_range`` (array in, array out)."""
        assert self.lambda_range is not None
        lo, hi = self.lambda_range
        if self.lambda_sampling == "uniform":
            return lo + uniforms * (hi - lo)
        return np.exp(np.log(lo) + uniforms * (np.log(hi) - np.log(lo)))

    def verify_costs(self, pools: ReplayPools) -> np.ndarray:
        """What verifying each candidate costs: its logged verdicts' cost, else
        ``verify_cost``, shape (C,)."""
        logged = pools.branches.cand_verify_cost
        return np.where(np.isnan(logged), self.verify_cost, logged)

    @property
    def lambda_high(self) -> float:
        """The largest lambda an episode can get."""
        return self.lambda_ if self.lambda_range is None else self.lambda_range[1]

    def observation_space(self, pools: ReplayPools) -> spaces.Box:
        """The featurizer's bounds, tightened from the log (pool sizes, score range, costs).

        Features the log cannot move (no refinements, no scores) keep a unit-wide box, so
        that no bound is degenerate.
        """
        f = feature_layout(pools.n_arms)
        low, high = feature_bounds(pools.n_arms)
        high[f.log1p_samples] = np.log1p(pools.arm_count.max(axis=0))
        high[f.log1p_drawn] = np.log1p(pools.max_candidates)
        high[f.log1p_refines] = np.log1p(pools.refine_count.max(initial=0))
        scored = ~np.isnan(pools.cand_score)
        query = np.repeat(np.arange(pools.n_queries), pools.n_candidates)
        spend = np.bincount(query, weights=pools.cand_cost
                            + self.verify_costs(pools) * pools.cand_verifiable,
                            minlength=pools.n_queries)
        branches = pools.branches
        for offsets, costs in ((branches.ws_offsets, branches.ws_cost),
                               (branches.ev_offsets, branches.ev_cost)):
            spend += np.bincount(np.repeat(np.arange(pools.n_queries), np.diff(offsets)),
                                 weights=costs, minlength=pools.n_queries)
        high[f.cost_spent] = _widen(spend.max(initial=0.0) / self.cost_unit)
        score = f.best_verified_score
        low[score] = min(0.0, float(np.nanmin(pools.cand_score))) if scored.any() else 0.0
        high[score] = max(0.0, float(np.nanmax(pools.cand_score))) if scored.any() else 0.0
        low[f.lambda_] = self.lambda_ if self.lambda_range is None else self.lambda_range[0]
        high[f.lambda_] = _widen(self.lambda_high)
        # Logs: widened both ways by 1e-5 (float32 rounding of lambda and of the log).
        low[f.log_lambda] = math.log(max(float(low[f.lambda_]), LOG_LAMBDA_FLOOR)) - 1e-5
        high[f.log_lambda] = math.log(max(self.lambda_high, LOG_LAMBDA_FLOOR)) + 1e-5
        # A feature the log cannot move (no refinements, no scores) keeps a unit-wide box.
        high = np.where(high > low, high, low + 1.0).astype(np.float32)
        return spaces.Box(low=low, high=high, dtype=np.float32)


def _mu(owner: str, mu: Any, pools: ReplayPools) -> float:
    """``mu`` as a float >= 0; > 0 only on a timed log."""
    value = _number(owner, "mu", mu, 0.0)
    if value > 0 and not pools.timed:
        raise ParameterError(
            owner, "mu", "0 on a log without timing (latency cannot be priced: record "
            "started_at and ended_at, in seconds, on every attempt, including verify rows)",
            mu)
    return value


def _widen(value: float) -> float:
    """An upper bound with room for rounding in sums taken in another order."""
    return float(value) * (1 + 1e-6) + 1e-6


def _lambda_range(owner: str, value: Any, sampling: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ParameterError(owner, "lambda_range", "a pair (lo, hi) or None", value) from None
    if not (np.isfinite(lo) and np.isfinite(hi) and 0.0 <= lo <= hi):
        raise ParameterError(owner, "lambda_range", "finite (lo, hi) with 0 <= lo <= hi", value)
    if sampling == "log-uniform" and lo <= 0:
        raise ParameterError(owner, "lambda_range", "lo > 0 for log-uniform sampling", value)
    return lo, hi


def _prior(owner: str, prior: Any, pools: ReplayPools) -> np.ndarray:
    shape = (pools.n_queries, pools.n_arms)
    if prior is None:
        return np.full(shape, 0.5)
    array = np.asarray(prior, dtype=np.float64)
    if array.shape != shape or not np.all((array >= 0) & (array <= 1)):
        raise ParameterError(owner, "prior", f"an array of shape {shape} with values in [0, 1]",
                             f"shape {array.shape}")
    return array


def _queries(owner: str, queries: Any, pools: ReplayPools) -> np.ndarray:
    if queries is None:
        return np.arange(pools.n_queries, dtype=np.int64)
    array = np.asarray(queries)
    if (array.ndim != 1 or len(array) == 0 or array.dtype.kind not in "iu"
            or array.min() < 0 or array.max() >= pools.n_queries):
        raise ParameterError(owner, "queries",
                             f"a non-empty 1-D array of query indices in [0, {pools.n_queries})",
                             queries if array.size < 10 else f"array of shape {array.shape}")
    return array.astype(np.int64)


# ---------------------------------------------------------------------- episodes
def stream_block(pools: ReplayPools) -> int:
    """How many uniforms an environment draws from its generator at a time."""
    return max(1024, 2 * (pools.max_candidates + 2))


class UniformStream:
    """Uniforms in [0, 1) read from a generator in blocks: the envs' only use of it.

    ``take(rng, k)`` returns the next ``k`` values of the current block; when fewer than
    ``k`` are left, the rest of the block is dropped and a new one drawn with
    ``rng.random(block)``. Reading in blocks lets the batched environment read the
    uniforms of many resets in one numpy gather, while each sub-environment makes exactly
    the generator calls of a single environment.
    """

    def __init__(self, block: int) -> None:
        self.block = block
        self.values = np.empty(0)
        self.position = 0

    def clear(self) -> None:
        """Drop the current block (after the generator is re-seeded)."""
        self.values, self.position = np.empty(0), 0

    def take(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """The next ``count`` (at most ``block``) uniforms."""
        if self.position + count > len(self.values):
            self.values, self.position = rng.random(self.block), 0
        start, self.position = self.position, self.position + count
        return self.values[start : self.position]


class Episode(NamedTuple):
    """The random part of an episode: its query, its lambda and its draw order.

    Attributes:
        query: the query's index in the log.
        lam: the price per cost unit.
        keys: one uniform key per candidate of the query; the draw order of a group
            (an arm, a refinement round) is its candidates by increasing key
            (:func:`shuffle_order`).
    """

    query: int
    lam: float
    keys: np.ndarray


def draw_episode(
    rng: np.random.Generator,
    stream: UniformStream,
    pools: ReplayPools,
    settings: ReplaySettings,
    options: dict[str, Any] | None = None,
) -> Episode:
    """Draw an episode: the one random protocol of both environments' resets.

    Reads ``stream.take(rng, 1)`` (the query: ``queries[floor(u * len(queries))]``),
    then ``stream.take(rng, e + k)``: the lambda's uniform if there is a ``lambda_range``
    (``e = 1``, else 0) and one key per candidate of the query (``k``).
    ``options={"query": q}`` replaces the drawn query by ``q`` (an index into the log,
    inside or outside ``settings.queries``) before the second read;
    ``options={"order": "logged"}`` then replaces the keys by ``0, 1, 2...``: each group
    is drawn in log order (an executor run's own draws, in the order it made them: how a
    run's decisions are replayed exactly), after the same reads.
    """
    queries = settings.query_list
    query = queries[int(stream.take(rng, 1)[0] * len(queries))]
    if options and options.get("query") is not None:
        query = forced_query(options["query"], pools)
    extra = settings.lambda_range is not None
    values = stream.take(rng, extra + pools.candidate_counts[query])
    lam = float(settings.lambdas(values[:1])[0]) if extra else settings.lambda_
    keys = values[extra:]
    if logged_order(options):
        keys = np.arange(len(keys), dtype=np.float64)
    return Episode(query, lam, keys)


def logged_order(options: dict[str, Any] | None) -> bool:
    """Whether a reset's options ask for the logged order (``"order": "logged"``; the
    default ``"random"``)."""
    order = (options or {}).get("order", "random")
    if order not in ("random", "logged"):
        raise ParameterError("reset", "options['order']", "'random' or 'logged'", order)
    return order == "logged"


def forced_query(query: Any, pools: ReplayPools) -> int:
    """Validate ``options["query"]`` of a reset."""
    if not is_int(query, 0) or query >= pools.n_queries:
        raise ParameterError("reset", "options['query']",
                             f"a query index in [0, {pools.n_queries})", query)
    return int(query)
