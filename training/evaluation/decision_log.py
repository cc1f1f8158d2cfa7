"""Decision logs: what a policy did, one branch per decision, with its probabilities.

A *pool log* (:class:`allocator.logs.table.AttemptLog`) holds many attempts per query and
replays any policy exactly. A *decision log* (:class:`DecisionLog`, whose docstring lists
its columns) is what a deployed policy leaves behind: one path per query, with the
probability the policy gave each action; off-policy estimators
(:mod:`allocator.training.evaluation.off_policy`) evaluate other policies from it.
:func:`record_decisions` writes one by running a policy in :class:`allocator.envs.ReplayEnv` on a
pool log (how the estimators are validated: there replay gives the truth);
:func:`write_decisions` and :func:`read_decisions` store it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from allocator._checks import check_int
from allocator.actions import action_names, n_actions
from allocator.envs.pools import ReplayPools
from allocator.envs.replay_env import ReplayEnv
from allocator.errors import LogFormatError, ParameterError
from allocator.featurizer import QueryState, StateBatch, VoteStats
from allocator.logs.parquet import write_parquet_atomically
from allocator.logs.table import AttemptLog
from allocator.policies.base import Policy
from allocator.policies.stochastic import sample_actions

__all__ = [
    "DECISION_LOG_VERSION",
    "DEFAULT_TOP_K",
    "OUTCOMES",
    "DecisionLog",
    "policy_probabilities",
    "read_decisions",
    "record_decisions",
    "write_decisions",
]

#: Version of the decision log's column layout (bump when a column changes meaning).
DECISION_LOG_VERSION = 1
#: Vote slots kept per state (the exact vote statistics are kept besides).
DEFAULT_TOP_K = 8
#: What an estimator can estimate: the return, the final correctness, or the cost.
OUTCOMES = ("return", "correct", "cost")

_META_KEY = b"ttc.decision_log"
_STATS = ("voted", "top1", "top2", "distinct", "vlogv")
_SCALAR_STATE = ("no_answer", "refines", "verified", "best_score", "cost", "lam", "streak")
#: Every column: (dtype, width); width "" = one value per row, else a named width.
SCHEMA: dict[str, tuple[str, str]] = {
    "episode": ("int64", ""), "query": ("int64", ""), "query_id": ("str", ""),
    "step": ("int64", ""), "samples": ("int64", "arms"), "votes": ("float64", "top_k"),
    **{name: ("float64", "") for name in _STATS},
    "no_answer": ("float64", ""), "refines": ("float64", ""), "verified": ("float64", ""),
    "best_score": ("float64", ""), "cost": ("float64", ""), "lam": ("float64", ""),
    "prior": ("float64", "arms"), "streak": ("float64", ""),
    "mask": ("bool", "actions"), "action": ("int64", ""), "propensity": ("float64", ""),
    "probabilities": ("float64", "actions"), "reward": ("float64", ""),
    "step_cost": ("float64", ""), "terminal": ("bool", ""), "correct": ("float64", ""),
}
_FIX = ("record decision logs with allocator.training.evaluation.decision_log.record_decisions, or "
        "check the logging code writes the column as documented in that module")


def _jsonable(value: Any) -> Any:
    """A JSON-ready stand-in for an environment setting (arrays by their shape only)."""
    if isinstance(value, np.ndarray):
        return f"array{value.shape}"
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


# ------------------------------------------------------------------------ the log
@dataclass(frozen=True, eq=False)
class DecisionLog:
    """A columnar log of decisions: one path per episode, with the logging probabilities.

    Columns of a :class:`DecisionLog` (``N`` decisions, ``A`` arms, ``K`` vote slots); rows are
    grouped by episode, steps in order:

    ================  =======  =======  ==================================================
    column            dtype    width    meaning
    ================  =======  =======  ==================================================
    ``episode``       int64             the episode (one query, one path)
    ``query``         int64             the query's index in the pool log
    ``query_id``      string            the query's identifier
    ``step``          int64             0, 1, ... within the episode
    ``samples``       int64    A        samples drawn per arm (the state before the action)
    ``votes``         float64  K        the K largest vote counts, descending, 0-padded
    ``voted``         float64           votes: attempts with an answer (exact, see below)
    ``top1``          float64           votes of the leading answer
    ``top2``          float64           votes of the runner-up
    ``distinct``      float64           distinct answers
    ``vlogv``         float64           sum of ``v log v`` over answers
    ``no_answer``     float64           attempts without an answer
    ``refines``       float64           refinements drawn
    ``verified``      float64           candidates verified
    ``best_score``    float64           best verified score (NaN if none)
    ``cost``          float64           cost spent so far, in cost units
    ``lam``           float64           the price of one cost unit
    ``prior``         float64  A        predicted per-attempt accuracy per arm
    ``streak``        float64           run length of the latest answer
    ``mask``          bool     A + 3    allowed actions
    ``action``        int64             the action taken
    ``propensity``    float64           the logging probability of the action taken
    ``probabilities`` float64  A + 3    the logging probability of every action
    ``reward``        float64           the step's reward
    ``step_cost``     float64           cost the action spent, in cost units
    ``terminal``      bool              the action ended the episode
    ``correct``       float64           final answer's correctness (terminal rows; else NaN)
    ================  =======  =======  ==================================================

    The state columns rebuild the :class:`allocator.featurizer.StateBatch` any policy reads
    (:meth:`DecisionLog.states`): the vote statistics (``voted`` ... ``vlogv``) are exact and
    travel as ``StateBatch.stats``, so features and policy decisions are exact even when a
    state has more than ``K`` distinct answers (only the ``votes`` matrix is truncated).
    The policy that logged the decisions saw exactly this ``StateBatch``.

    Built by :func:`record_decisions` or :func:`read_decisions`, or directly from
    columns written by another system (validated on construction).

    Args:
        arms: arm names; arm ``a`` is action ``1 + a``.
        columns: column name -> numpy array (the columns above).
        metadata: JSON-ready provenance (logging policy, seed, lambda, ...).
        source: where the log came from (named in error messages).

    Raises:
        LogFormatError: a column is missing, has the wrong type or width, rows are not
            grouped by episode with steps 0, 1, ..., the terminal flags do not close each
            episode, or probabilities are not distributions (propensity outside (0, 1],
            mass on a masked action, rows not summing to 1, propensity not the
            probability of the action taken). The message names the column and the
            first bad row (1-based).
    """

    arms: tuple[str, ...]
    columns: Mapping[str, np.ndarray]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "arms", tuple(str(a) for a in self.arms))
        object.__setattr__(self, "columns", self._coerced_columns())
        self._check_episodes()
        self._check_probabilities()
        self._check_outcomes()

    # ------------------------------------------------------------ validation
    def _error(self, problem: str, column: str, row: int | None = None,
               fix: str = _FIX) -> LogFormatError:
        return LogFormatError(problem, source=self.source,
                              line=None if row is None else row + 1, column=column, fix=fix)

    def _coerced_columns(self) -> dict[str, np.ndarray]:
        if not self.arms:
            raise ParameterError("DecisionLog", "arms", "at least one arm name", self.arms)
        missing = [name for name in SCHEMA if name not in self.columns]
        if missing:
            raise self._error(f"missing column(s) {missing}.", missing[0])
        length = len(self.columns["episode"])
        if length == 0:
            raise self._error("the log has no decisions.", "episode")
        top_k = np.shape(self.columns["votes"])[-1] if np.ndim(self.columns["votes"]) == 2 else 0
        widths = {"": None, "arms": len(self.arms), "top_k": max(top_k, 1),
                  "actions": n_actions(len(self.arms))}
        return {name: self._coerce(name, dtype, widths[width], length)
                for name, (dtype, width) in SCHEMA.items()}

    def _coerce(self, name: str, dtype: str, width: int | None, length: int) -> np.ndarray:
        values = np.asarray(self.columns[name])
        shape = (length,) if width is None else (length, width)
        if values.shape != shape:
            raise self._error(f"expected shape {shape}, got {values.shape}.", name)
        kinds = {"int64": "iu", "float64": "fiu", "bool": "b", "str": "OUSU"}[dtype]
        if values.dtype.kind not in kinds:
            raise self._error(f"expected {dtype} values, got {values.dtype}.", name)
        if dtype == "str":
            return values.astype(object)
        return values.astype(dtype, copy=False)

    def _check_episodes(self) -> None:
        episode, step = self.columns["episode"], self.columns["step"]
        terminal, query = self.columns["terminal"], self.columns["query"]
        first = np.concatenate([[True], episode[1:] != episode[:-1]])
        last = np.concatenate([episode[1:] != episode[:-1], [True]])
        checks = (
            ("episode", np.concatenate([[False], np.diff(episode) < 0]),
             "rows must be grouped by episode, episodes in increasing order"),
            ("step", np.where(first, step != 0, np.diff(step, prepend=0) != 1),
             "steps must be 0, 1, 2, ... within each episode"),
            ("terminal", terminal != last,
             "exactly the last decision of each episode must be terminal"),
            ("query", ~first & (np.diff(query, prepend=query[0]) != 0),
             "an episode must stay on one query"),
        )
        for column, bad, problem in checks:
            if bad.any():
                raise self._error(problem + ".", column, int(np.flatnonzero(bad)[0]))

    def _check_probabilities(self) -> None:
        mask, action = self.columns["mask"], self.columns["action"]
        propensity, probs = self.columns["propensity"], self.columns["probabilities"]
        rows = np.arange(len(action))
        in_range = (action >= 0) & (action < mask.shape[1])
        taken = np.where(in_range, action, 0)
        row_sum = probs.sum(axis=1)
        checks = (
            ("mask", ~mask[:, 0], "STOP (action 0) must always be allowed"),
            ("action", ~in_range | ~mask[rows, taken], "the action taken must be allowed"),
            ("propensity", ~(np.isfinite(propensity) & (propensity > 0) & (propensity <= 1)),
             "the logging probability of the action taken must be in (0, 1]"),
            ("probabilities", ~np.isfinite(probs).all(axis=1) | (probs < 0).any(axis=1),
             "probabilities must be finite and >= 0"),
            ("probabilities", (~mask & (probs != 0)).any(axis=1),
             "masked actions must have probability 0"),
            ("probabilities", np.abs(row_sum - 1.0) > 1e-6,
             "the probabilities of a decision must sum to 1"),
            ("propensity", ~np.isclose(probs[rows, taken], propensity, rtol=1e-9, atol=1e-12),
             "the propensity must equal the probability of the action taken"),
        )
        for column, bad, problem in checks:
            if np.any(bad):
                row = int(np.flatnonzero(bad)[0])
                raise self._error(f"{problem} (row {row + 1}: action "
                                  f"{int(action[row])}, propensity {propensity[row]!r}).",
                                  column, row)

    def _check_outcomes(self) -> None:
        terminal = self.columns["terminal"]
        checks = (
            ("reward", ~np.isfinite(self.columns["reward"]), "rewards must be finite"),
            ("step_cost", ~np.isfinite(self.columns["step_cost"]), "costs must be finite"),
            ("correct", terminal & ~np.isfinite(self.columns["correct"]),
             "terminal decisions must carry the final answer's correctness"),
        )
        for column, bad, problem in checks:
            if bad.any():
                raise self._error(problem + ".", column, int(np.flatnonzero(bad)[0]))

    # ----------------------------------------------------------------- shape
    @property
    def n_decisions(self) -> int:
        """Number of decisions ``N`` (rows)."""
        return len(self.columns["action"])

    @property
    def n_arms(self) -> int:
        """Number of arms ``A``."""
        return len(self.arms)

    @property
    def top_k(self) -> int:
        """Vote slots kept per state ``K``."""
        return int(self.columns["votes"].shape[1])

    @property
    def episode_index(self) -> np.ndarray:
        """Each row's episode as a position ``0..E-1`` (in row order), shape (N,)."""
        episode = self.columns["episode"]
        return np.cumsum(np.concatenate([[0], episode[1:] != episode[:-1]]))

    @property
    def n_episodes(self) -> int:
        """Number of episodes ``E``."""
        return int(self.episode_index[-1]) + 1

    @property
    def episode_queries(self) -> np.ndarray:
        """The query (index into the pool log) of each episode, shape (E,)."""
        return self.columns["query"][self.columns["terminal"]]

    def action_names(self) -> list[str]:
        """Readable names of the actions, in index order."""
        return action_names(self.arms)

    # --------------------------------------------------------------- reading
    def states(self) -> StateBatch:
        """The state before each decision, as one :class:`StateBatch` of ``N`` states."""
        c = self.columns
        stats = VoteStats(**{name: c[name] for name in _STATS})
        return StateBatch(samples=c["samples"], votes=c["votes"], prior=c["prior"],
                          stats=stats, **{name: c[name] for name in _SCALAR_STATE})

    def masks(self) -> np.ndarray:
        """Allowed actions per decision, bool of shape (N, A + 3)."""
        return self.columns["mask"]

    def actions(self) -> np.ndarray:
        """The action taken per decision, int64 of shape (N,)."""
        return self.columns["action"]

    def propensities(self) -> np.ndarray:
        """The logging probability of the action taken, shape (N,)."""
        return self.columns["propensity"]

    def logging_probabilities(self) -> np.ndarray:
        """The logging probability of every action, shape (N, A + 3)."""
        return self.columns["probabilities"]

    def rewards(self, outcome: str = "return") -> np.ndarray:
        """Per-decision rewards of an outcome, shape (N,); they sum to the episode's value.

        Args:
            outcome: ``"return"`` (the environment's reward: correctness at the end minus
                lambda times cost), ``"correct"`` (the final correctness, on the terminal
                decision) or ``"cost"`` (the cost each action spent, in cost units).
        """
        c = self.columns
        if outcome == "return":
            return c["reward"]
        if outcome == "correct":
            return np.where(c["terminal"], c["correct"], 0.0)
        if outcome == "cost":
            return c["step_cost"]
        raise ParameterError("DecisionLog.rewards", "outcome", f"one of {OUTCOMES}", outcome)

    def returns(self, outcome: str = "return") -> np.ndarray:
        """Each episode's total of :meth:`rewards`, shape (E,)."""
        return np.bincount(self.episode_index, weights=self.rewards(outcome),
                           minlength=self.n_episodes)

    # ------------------------------------------------------------------- I/O
    def to_arrow(self) -> pa.Table:
        """The log as an Arrow table (matrices as fixed-size lists; metadata as JSON)."""
        arrays = {}
        for name, (dtype, _) in SCHEMA.items():
            values = self.columns[name]
            if dtype == "str":
                arrays[name] = pa.array([str(v) for v in values], pa.string())
            elif values.ndim == 2:
                arrays[name] = pa.FixedSizeListArray.from_arrays(
                    pa.array(values.reshape(-1)), values.shape[1])
            else:
                arrays[name] = pa.array(values)
        meta = {"version": DECISION_LOG_VERSION, "arms": list(self.arms),
                "metadata": dict(self.metadata)}
        return pa.table(arrays).replace_schema_metadata({_META_KEY: json.dumps(meta)})

    @classmethod
    def from_arrow(cls, table: pa.Table, source: str | None = None) -> DecisionLog:
        """Rebuild a log from :meth:`to_arrow`'s table.

        Raises:
            LogFormatError: no decision-log metadata, a newer version, or bad columns.
        """
        raw = (table.schema.metadata or {}).get(_META_KEY)
        if raw is None:
            raise LogFormatError("not a decision log (no ttc.decision_log metadata).",
                                 source=source, fix=_FIX)
        meta = json.loads(raw)
        if int(meta.get("version", 0)) > DECISION_LOG_VERSION:
            raise LogFormatError(
                f"decision log version {meta['version']} is newer than this ttc-allocator "
                f"reads ({DECISION_LOG_VERSION}).", source=source, fix="upgrade ttc-allocator.")
        columns = {}
        for name in table.column_names:
            column = table.column(name).combine_chunks()
            if pa.types.is_fixed_size_list(column.type):
                flat = column.flatten().to_numpy(zero_copy_only=False)
                columns[name] = flat.reshape(len(column), column.type.list_size)
            else:
                columns[name] = column.to_numpy(zero_copy_only=False)
        return cls(arms=tuple(meta["arms"]), columns=columns,
                   metadata=meta.get("metadata", {}), source=source)


def write_decisions(decisions: DecisionLog, path: str | os.PathLike[str]) -> Path:
    """Write a decision log as Parquet, atomically (a temporary file renamed into place)."""
    return write_parquet_atomically(decisions.to_arrow(), path)


def read_decisions(path: str | os.PathLike[str]) -> DecisionLog:
    """Read a decision log written by :func:`write_decisions` (exact round trip).

    Raises:
        LogFormatError: unreadable file, or a table that is not a valid decision log.
    """
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as error:
        raise LogFormatError(f"cannot read Parquet ({error}).", source=str(path),
                             fix="check the file is a complete Parquet file.") from error
    return DecisionLog.from_arrow(table, source=str(path))


# ------------------------------------------------------------------ recording
def policy_probabilities(policy: Policy, states: StateBatch, mask: np.ndarray,
                         owner: str) -> np.ndarray:
    """``policy.probabilities(states, mask)``, checked to be distributions on allowed actions.

    Raises:
        ParameterError: (naming ``owner`` and ``policy``) the probabilities have the wrong
            shape, are not finite and >= 0, put mass on a masked action or do not sum to 1.
    """
    probs = np.asarray(policy.probabilities(states, mask), dtype=np.float64)
    problem = None
    if probs.shape != np.shape(mask):
        problem = f"shape {probs.shape} instead of {np.shape(mask)}"
    elif not np.isfinite(probs).all() or (probs < 0).any():
        problem = "values that are not finite and >= 0"
    elif (probs[~np.asarray(mask, dtype=bool)] != 0).any():
        problem = "probability on masked actions"
    elif (np.abs(probs.sum(axis=1) - 1.0) > 1e-6).any():
        problem = "rows that do not sum to 1"
    if problem is not None:
        raise ParameterError(owner, "policy",
                             "a policy whose probabilities(state, mask) are distributions "
                             f"over the allowed actions (got {problem})", policy.describe())
    return probs


def _stack_states(states: Sequence[QueryState], top_k: int) -> StateBatch:
    """One :class:`StateBatch` of ``states``: top-K votes, exact vote statistics."""
    counts = [sorted(state.votes.values(), reverse=True) for state in states]
    full = np.zeros((len(states), max(top_k, *(len(c) for c in counts))))
    for row, values in enumerate(counts):
        full[row, : len(values)] = values
    scalars = {name: np.array([getattr(s, name) for s in states], dtype=np.float64)
               for name in ("no_answer", "refines", "verified", "best_score", "cost", "lam",
                            "streak")}
    return StateBatch(samples=np.stack([s.samples for s in states]),
                      votes=np.ascontiguousarray(full[:, :top_k]),
                      prior=np.stack([np.asarray(s.prior, dtype=np.float64) for s in states]),
                      stats=VoteStats.from_votes(full), **scalars)


def _check_recording(episodes: object, seed: object, top_k: object, batch_size: object,
                     episode_queries: object) -> np.ndarray | None:
    owner = "record_decisions"
    for name, value, low in (("episodes", episodes, 1), ("seed", seed, 0),
                             ("top_k", top_k, 1), ("batch_size", batch_size, 1)):
        check_int(owner, name, value, minimum=low)
    if episode_queries is None:
        return None
    queries = np.asarray(episode_queries)
    if queries.shape != (episodes,) or queries.dtype.kind not in "iu":
        raise ParameterError(owner, "episode_queries",
                             f"None or {episodes} integer query indices (one per episode)",
                             queries.shape)
    return queries.astype(np.int64)


@dataclass
class _Slot:
    """One environment running one episode of a chunk."""

    env: ReplayEnv
    episode: int
    rng: np.random.Generator
    query: int = 0
    done: bool = False


def _run_chunk(slots: list[_Slot], policy: Policy, top_k: int) -> list[dict[str, np.ndarray]]:
    """Run every slot's episode to its end, deciding for all live slots in one call."""
    steps = []
    step = 0
    while live := [slot for slot in slots if not slot.done]:
        states = _stack_states([slot.env.query_state for slot in live], top_k)
        mask = np.stack([slot.env.action_masks() for slot in live])
        probs = policy_probabilities(policy, states, mask, "record_decisions")
        actions = sample_actions(probs, np.array([slot.rng.random() for slot in live]))
        rows = np.arange(len(live))
        outcome = np.zeros((len(live), 4))  # reward, step cost, terminal, correct
        for i, slot in enumerate(live):
            _, reward, done, _, info = slot.env.step(int(actions[i]))
            spent = slot.env.query_state.cost - states.cost[i]
            outcome[i] = reward, spent, done, info["correct"] if done else np.nan
            slot.done = done
        steps.append({
            "episode": np.array([slot.episode for slot in live], dtype=np.int64),
            "query": np.array([slot.query for slot in live], dtype=np.int64),
            "step": np.full(len(live), step, dtype=np.int64),
            "samples": states.samples, "votes": states.votes,
            **{name: getattr(states.stats, name) for name in _STATS},
            **{name: getattr(states, name) for name in _SCALAR_STATE},
            "prior": states.prior, "mask": mask, "action": actions,
            "propensity": probs[rows, actions], "probabilities": probs,
            "reward": outcome[:, 0], "step_cost": outcome[:, 1],
            "terminal": outcome[:, 2].astype(bool), "correct": outcome[:, 3],
        })
        step += 1
    return steps


def record_decisions(
    log: AttemptLog | ReplayPools,
    policy: Policy,
    *,
    episodes: int,
    seed: int,
    lambda_: float,
    top_k: int = DEFAULT_TOP_K,
    episode_queries: np.ndarray | Sequence[int] | None = None,
    batch_size: int = 128,
    **env_settings: Any,
) -> DecisionLog:
    """Run ``policy`` in :class:`allocator.envs.ReplayEnv` on a pool log and log every decision.

    Each decision's action is drawn from ``policy.probabilities`` (so the logged
    propensity is, by construction, the probability of the logged action; for a
    deterministic policy it is its ``act``).

    Randomness: ``seed`` alone fixes the log. Episode ``e`` resets its environment with
    its own seed and draws its actions from its own generator (both derived from
    ``numpy.random.SeedSequence(seed)``), so the log does not depend on ``batch_size``.

    Args:
        log: the pool log (or its precomputed :class:`allocator.envs.pools.ReplayPools`).
        policy: the logging policy (stochastic for logs meant for off-policy evaluation,
            e.g. :class:`allocator.policies.stochastic.EpsilonGreedy`).
        episodes: number of episodes (each one query, drawn by the environment).
        seed: the seed of everything random.
        lambda_: the price of one cost unit.
        top_k: vote slots kept per state (the exact vote statistics are kept besides).
        episode_queries: optional query index per episode (forces the query, e.g. every
            query ``R`` times for a stratified replay); default: drawn by the environment.
        batch_size: episodes run side by side (the policy decides for all in one call).
        **env_settings: further :class:`allocator.envs.ReplayEnv` arguments (``queries``,
            ``prior``, ``max_samples``, ``verify_cost``, ``cost_unit``, ...).

    Returns:
        The :class:`DecisionLog`, rows grouped by episode.

    Raises:
        ParameterError: a bad argument (named), or a policy whose probabilities are not
            distributions over the allowed actions.
    """
    queries = _check_recording(episodes, seed, top_k, batch_size, episode_queries)
    pools = log if isinstance(log, ReplayPools) else ReplayPools.from_log(log)
    width = min(batch_size, episodes)
    envs = [ReplayEnv(pools, lambda_=lambda_, **env_settings) for _ in range(width)]
    env_seeds, draw_seeds = (s.generate_state(episodes, dtype=np.uint32)
                             for s in np.random.SeedSequence(seed).spawn(2))
    steps: list[dict[str, np.ndarray]] = []
    for start in range(0, episodes, width):
        slots = []
        for env, e in zip(envs, range(start, min(start + width, episodes)), strict=False):
            options = None if queries is None else {"query": int(queries[e])}
            _, info = env.reset(seed=int(env_seeds[e]), options=options)
            slots.append(_Slot(env, e, np.random.default_rng(int(draw_seeds[e])),
                               query=int(info["query"])))
        steps.extend(_run_chunk(slots, policy, top_k))
    columns = {name: np.concatenate([s[name] for s in steps]) for name in steps[0]}
    order = np.lexsort((columns["step"], columns["episode"]))
    columns = {name: values[order] for name, values in columns.items()}
    columns["query_id"] = np.asarray(pools.query_ids, dtype=object)[columns["query"]]
    metadata = {
        "policy": policy.describe(), "policy_name": policy.name, "seed": int(seed),
        "episodes": int(episodes), "lambda": float(lambda_), "top_k": int(top_k),
        "cost_unit": envs[0].settings.cost_unit,
        "log_fingerprint": log.fingerprint() if isinstance(log, AttemptLog) else None,
        "forced_queries": queries is not None,
        "env_settings": {key: _jsonable(value) for key, value in env_settings.items()},
    }
    return DecisionLog(arms=pools.arms, columns=columns, metadata=metadata)
