"""The replay environment batched in numpy, as a stable-baselines3 ``VecEnv``.

:class:`BatchedReplayVecEnv` steps ``n_envs`` replay environments together with the
semantics of :class:`allocator.envs.ReplayEnv`, replaying exactly its episodes under the
same seeds. Its docstring gives the differences the ``VecEnv`` API brings, how a step is
computed, its memory and the seeding; its speed: README, "Performance".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from numpy.lib.stride_tricks import sliding_window_view
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

from allocator._checks import check_int
from allocator.actions import STOP, action_layout, has_room
from allocator.envs.pools import (
    ReplayPools,
    ReplaySettings,
    forced_query,
    logged_order,
    stream_block,
)
from allocator.envs.replay_env import check_answer_rule
from allocator.errors import ParameterError
from allocator.featurizer import StateBatch, VoteStats, featurize
from allocator.final_answer import credit_rows, final_answers_rows, leaders_rows
from allocator.logs.table import AttemptLog

__all__ = ["BatchedReplayVecEnv", "StateColumns", "unwrap_replay_env"]


class StateColumns:
    """Named columns of the batched env's three state blocks, for ``A`` arms and ``K``
    answer slots (each block is one array, cleared in one operation per reset).

    ``counts`` (int64): :attr:`samples` per arm, then :attr:`refines` (so a draw counts in
    column ``action - 1``: the action layout's SAMPLE(arm) and REFINE, shifted by STOP),
    :attr:`pending` and :attr:`verified` candidates, :attr:`no_answer`, then
    :attr:`votes` per answer (the no-answers sit just before the votes: an answer ``a``,
    -1 for none, counts in column ``votes.start + a``).

    ``floats``: the vote statistics :attr:`voted`, :attr:`top1`, :attr:`top2`,
    :attr:`distinct`, :attr:`vlogv`; :attr:`cost` (log units) and :attr:`norm_cost` (cost
    units); :attr:`correct_sum` per answer (these cleared to 0); then :attr:`best` (the
    best verified score), :attr:`pending_best` and :attr:`verified_best` per answer
    (these cleared to ``-inf``, from :attr:`cleared_to_inf` on).

    ``episode`` (int64): the query's :attr:`limits` (samples per arm, refinements), where
    its candidates :attr:`start`, and the :attr:`query`.
    """

    def __init__(self, n_arms: int, width: int) -> None:
        arms = n_arms
        self.samples = slice(0, arms)
        self.refines, self.pending, self.verified, self.no_answer = range(arms, arms + 4)
        self.votes = slice(arms + 4, arms + 4 + width)
        self.n_counts = arms + 4 + width
        (self.voted, self.top1, self.top2, self.distinct, self.vlogv, self.cost,
         self.norm_cost) = range(7)
        self.correct_sum = slice(7, 7 + width)
        self.best = 7 + width
        self.cleared_to_inf = self.best
        self.pending_best = slice(8 + width, 8 + 2 * width)
        self.verified_best = slice(8 + 2 * width, 8 + 3 * width)
        self.n_floats = 8 + 3 * width
        self.limits = slice(0, arms + 1)
        self.start, self.query = arms + 1, arms + 2
        self.n_episode = arms + 3
        layout = action_layout(n_arms)
        # A draw's counter column is its action - 1 (see above): the layouts must agree.
        assert (self.samples.start, self.refines) == (layout.samples.start - 1,
                                                      layout.refine - 1)


class BatchedReplayVecEnv(VecEnv):
    """``n_envs`` replay environments stepped together in numpy (an SB3 ``VecEnv``).

    The semantics (actions, masks, rewards, final answer, info keys) are those of
    :class:`allocator.envs.ReplayEnv`; see its documentation. Differences that come from the
    ``VecEnv`` API:

    - finished sub-environments reset automatically; the terminal step's info holds
      ``terminal_observation`` and ``TimeLimit.truncated`` (always False) beside the
      terminal keys of :class:`allocator.envs.ReplayEnv` (``query``, ``lambda``, ``cost``,
      ``exhausted``, ``latency``, ``waves``, ``correct``, ``n_samples``, ``n_refines``,
      ``n_verified``, ``invalid_action``, ``exhaustion_hit``);
    - infos of non-terminal steps are empty dicts (building per-step dicts would cost
      more than the step itself); the masks are read with :meth:`action_masks`;
    - rewards are float32, as in SB3's own ``VecEnv`` implementations.

    MaskablePPO reads the masks through ``env_method("action_masks")`` (sb3-contrib's
    ``get_action_masks``); :meth:`action_masks` returns them as one (n_envs, n_actions)
    array. A ``SAMPLE(arm)×w`` (``widths``) is stepped as ``w`` draws of the arm, one
    after the other, exactly as the single env draws them.
    Attributes and other methods belong to the batched env as a whole: ``get_attr``
    repeats its value per sub-environment and ``set_attr`` sets it once for all.
    :meth:`state` returns every sub-environment's state as a featurizer ``StateBatch``.

    Implementation. SB3 cannot consume a ``gymnasium.vector.VectorEnv``, so this
    subclasses SB3's own :class:`~stable_baselines3.common.vec_env.VecEnv`. Every step is
    a few dozen numpy operations over all ``n_envs`` sub-environments, resets included;
    Python loops run only over the sub-environments that finished (to build their info
    dicts, as SB3 wants one per environment) and over those whose block of uniforms ran
    out (one generator call each, about once every ``block / candidates`` episodes). Each
    step featurizes every sub-environment once, after the resets: a finished one's
    terminal observation is the observation the previous step returned (stopping changes
    nothing), kept as a copy.

    Memory: about ``n_envs * (stream block + (6 + arms / 2) * distinct answers) * 8``
    bytes (two more per answer under the ``"weighted-vote"`` answer rule), with a block
    of ``max(1024, 2 * (most candidates of a query + 2))`` uniforms: 8 MiB for 1024
    sub-environments on a log of 40 samples per query.

    Seeding. Sub-environment ``i`` replays exactly the episodes of a
    :class:`allocator.envs.ReplayEnv` reset with the same seed: both read their episodes'
    uniforms with the protocol of :func:`allocator.envs.pools.draw_episode` from a
    generator created as Gymnasium creates ``np_random`` (the batched env gathers the
    reads of all resetting sub-environments in one numpy operation), and both step with
    the same rules. With ``venv.seed(s)``, sub-environment ``i`` gets seed ``s + i``
    (SB3's convention).

    Args:
        log: the graded log, or its :class:`allocator.envs.pools.ReplayPools`.
        n_envs: number of sub-environments.
        autoreset: reset finished sub-environments at once (SB3's convention). With
            False a finished sub-environment keeps its final state, ignores further
            actions and is listed in :attr:`finished` until the next :meth:`reset`: what
            an evaluator replaying fixed episodes wants.
        answer_rule: the final-answer rule of :class:`allocator.envs.ReplayEnv` (``"default"``,
            ``"weighted-vote"`` or ``"last-arm"``).
        **settings: the parameters of :class:`allocator.envs.ReplayEnv` (``lambda_``,
            ``lambda_range``, ``lambda_sampling``, ``verify_cost``, ``cost_unit``,
            ``prior``, ``queries``, ``max_samples``, ``mu``, ``widths``).

    Raises:
        EnvironmentConfigError: for a log without sample attempts, or no usable cost unit.
        ParameterError: for an invalid parameter.
    """

    def __init__(self, log: AttemptLog | ReplayPools, n_envs: int = 64, *,
                 autoreset: bool = True, answer_rule: str = "default",
                 **settings: Any) -> None:
        check_int("BatchedReplayVecEnv", "n_envs", n_envs, minimum=1)
        self.answer_rule = check_answer_rule("BatchedReplayVecEnv", answer_rule)
        self.pools = log if isinstance(log, ReplayPools) else ReplayPools.from_log(log)
        self.settings = ReplaySettings.create(self.pools, "BatchedReplayVecEnv", **settings)
        self.n_arms = self.pools.n_arms
        self._layout = action_layout(self.n_arms, self.settings.widths)
        self.render_mode = None
        super().__init__(int(n_envs), self.settings.observation_space(self.pools),
                         spaces.Discrete(self._layout.n))
        self._allocate()
        self._actions = np.zeros(self.num_envs, dtype=np.int64)
        self.autoreset = bool(autoreset)
        self._finished = np.zeros(self.num_envs, dtype=bool)

    # --------------------------------------------------------------- storage
    def _allocate(self) -> None:
        n, arms, width = self.num_envs, self.n_arms, self.pools.max_answers
        pools = self.pools
        self._width = width
        self._cols = cols = StateColumns(arms, width)
        self._arange = np.arange(n)
        # Randomness: a generator per sub-environment and its current block of uniforms
        # (UniformStream's layout). An episode's candidate keys stay in the block, at
        # ``key_base + local position``; a drawn candidate's key becomes +inf.
        self._rngs: list[np.random.Generator | None] = [None] * n
        block = stream_block(pools)
        self._block = block
        # Padded by one group's width, so that reading a group's keys never leaves the row.
        group_width = pools.max_group_size
        self._streams = np.zeros((n, block + group_width))
        self._row_length = block + group_width
        self._flat_streams = self._streams.reshape(-1)  # a view
        # Every run of ``group_width`` consecutive keys, as rows (a read-only view): a
        # group's keys are one row of it, gathered without building an index per key.
        self._key_windows = sliding_window_view(self._flat_streams, group_width)
        self._blocks = [self._streams[i, :block] for i in range(n)]  # generators fill these
        self._stream_position = np.full(n, block, dtype=np.int64)
        self._key_base = np.zeros(n, dtype=np.int64)
        self._slots = np.arange(group_width)
        # Workspaces and events (allocator.envs._branches): per query, their global indices.
        branches = pools.branches
        self._branches = branches
        self._ws_table = branches.padded(branches.ws_offsets)
        self._ev_table = branches.padded(branches.ev_offsets)
        self._verify_costs = self.settings.verify_costs(pools)
        self._n_candidates = pools.n_candidates
        self._n_groups = pools.n_groups
        self._group_start = pools.group_start.reshape(-1)  # at query * n_groups + group
        self._group_count = pools.group_count.reshape(-1)
        # Whether every group that has candidates has ``group_width``: no key to mask.
        self._full_groups = bool(np.isin(pools.group_count, (0, group_width)).all())
        # The episode: per row, the query's limits (samples per arm, refinements), where
        # its candidates start, and the query; ``_query_table`` holds these per query.
        self._query_table = np.column_stack([
            pools.arm_count, pools.refine_count, pools.cand_offsets[:-1],
            np.arange(pools.n_queries)]).astype(np.int64)
        self._episode = np.zeros((n, cols.n_episode), dtype=np.int64)
        self._limits = self._episode[:, cols.limits]
        self._start = self._episode[:, cols.start]
        self._query = self._episode[:, cols.query]
        self._lam = np.zeros(n)
        self._prior = np.zeros((n, arms))
        # Per-row state in two matrices (one clear each; columns: StateColumns); the named
        # arrays are views.
        self._counts = np.zeros((n, cols.n_counts), dtype=np.int64)
        self._flat_counts = self._counts.reshape(-1)  # a view
        self._samples = self._counts[:, cols.samples]
        self._refines, self._pending, self._verified, self._no_answer = (
            self._counts[:, column] for column in (cols.refines, cols.pending, cols.verified,
                                                   cols.no_answer))
        self._votes = self._counts[:, cols.votes]
        self._floats = np.zeros((n, cols.n_floats))
        self._flat_floats = self._floats.reshape(-1)  # a view
        (self._voted, self._top1, self._top2, self._distinct, self._vlogv,  # vote statistics
         self._cost, self._norm_cost) = (
            self._floats[:, column] for column in (cols.voted, cols.top1, cols.top2,
                                                   cols.distinct, cols.vlogv, cols.cost,
                                                   cols.norm_cost))
        self._correct_sum = self._floats[:, cols.correct_sum]
        self._best = self._floats[:, cols.best]
        self._pending_best = self._floats[:, cols.pending_best]
        self._verified_best = self._floats[:, cols.verified_best]
        self._fresh_floats = np.zeros(cols.n_floats)
        self._fresh_floats[cols.cleared_to_inf :] = -np.inf
        # The answer streak (ESC): the latest answer and how many draws in a row gave it.
        self._streak = np.zeros(n, dtype=np.int64)
        self._last_answer = np.full(n, -1, dtype=np.int64)
        # Votes per arm and answer among the samples (refinements excluded), and each
        # arm's leading count (StateBatch.arm_leader; the vote cascade reads it).
        self._arm_votes = np.zeros((n, arms, width), dtype=np.int32)
        self._flat_arm_votes = self._arm_votes.reshape(-1)  # a view
        self._arm_leader = np.zeros((n, arms), dtype=np.int64)
        # The final-answer rules' state: the arm sampled last ("last-arm"), and the
        # scores summed per answer, drawn but not yet verified and verified
        # ("weighted-vote"; kept only under that rule).
        self._last_arm = np.full(n, -1, dtype=np.int64)
        self._weighted = self.answer_rule == "weighted-vote"
        sums = (n, width) if self._weighted else (0, 0)
        self._pending_sum, self._verified_sum = np.zeros(sums), np.zeros(sums)
        # Replay of refinements and tournaments (see allocator.envs.ReplayEnv): set signatures of
        # the
        # drafts drawn, of all candidates drawn and of the candidates drawn since the
        # workspace in use opened; that workspace, its refinements left, how many were drawn;
        # the last event applied; what REFINE / VERIFY would open / apply now; the
        # pending verdicts' cost.
        self._sig_samples = np.zeros(n, dtype=np.uint64)
        self._sig_all = np.zeros(n, dtype=np.uint64)
        self._sig_ws = np.zeros(n, dtype=np.uint64)
        self._ws_cur = np.full(n, -1, dtype=np.int64)
        self._ws_left = np.zeros(n, dtype=np.int64)
        self._n_ws = np.zeros(n, dtype=np.int64)
        self._last_ev = np.full(n, -1, dtype=np.int64)
        self._next_ws = np.full(n, -1, dtype=np.int64)
        self._next_ev = np.full(n, -1, dtype=np.int64)
        self._pending_cost = np.zeros(n)
        self._blocked = np.zeros(n, dtype=np.int64)  # drawn, never judged by the verifier
        # Latency (allocator.envs.ReplayEnv, "Latency"): seconds so far (NaN: untimed log),
        # waves taken, the span of the pending verdicts' rows.
        self._timed = pools.timed
        self._latency = np.zeros(n) if self._timed else np.full(n, np.nan)
        self._waves = np.zeros(n, dtype=np.int64)
        self._pending_start = np.full(n, np.inf)
        self._pending_end = np.full(n, -np.inf)
        # Per action: the arm it samples (-1: none), its width (0: not a sample) and the
        # width-1 SAMPLE it repeats (itself for the other actions).
        layout = self._layout
        every = range(layout.n)
        self._arm_of = np.array([layout.arm_of(a) for a in every], dtype=np.int64)
        self._width_of = np.array([layout.width_of(a) for a in every], dtype=np.int64)
        self._base_action = np.where(self._arm_of >= 0, self._arm_of + layout.samples.start,
                                     np.arange(layout.n))
        self._extra_widths = np.array(layout.widths[1:], dtype=np.int64)
        self._mask = np.zeros((n, self._layout.n), dtype=bool)
        self._flat_mask = self._mask.reshape(-1)  # a view
        self._mask_index = self._arange * self._layout.n
        self._valid = np.ones(n, dtype=bool)
        # The observations of the last step (or reset): a stopped row's terminal one.
        self._observations = np.zeros((n, *self.observation_space.shape), dtype=np.float32)
        counts = np.arange(pools.max_candidates + 2, dtype=np.float64)
        self._xlogx = counts * np.log(np.maximum(counts, 1.0))

    # ------------------------------------------------------------------ VecEnv
    def reset(self) -> np.ndarray:
        """Reset every sub-environment (with the seeds and options set before, if any)."""
        rows = self._arange
        self._finished[:] = False
        self._reset_rows(rows, seeds=list(self._seeds), options=list(self._options))
        self._reset_seeds()
        self._reset_options()
        self._update_masks()
        columns = zip(list(self._mask.astype(np.int8)), self._query.tolist(),
                      self._lam.tolist(), self._cost.tolist(),
                      self._exhausted_arms(self._samples, self._limits).tolist(),
                      self._latency_list(self._arange), self._waves.tolist(), strict=True)
        self.reset_infos = [
            {"action_mask": mask, "query": query, "lambda": lam, "cost": cost,
             "exhausted": exhausted, "latency": latency, "waves": waves}
            for mask, query, lam, cost, exhausted, latency, waves in columns
        ]
        return self._observe()

    def step_async(self, actions: np.ndarray) -> None:
        """Store the actions of the next :meth:`step_wait`."""
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        """Step every sub-environment; finished ones reset automatically (unless
        ``autoreset=False``: then they keep their final state and ignore actions)."""
        actions = self._actions
        stop, draw, verify = self._classify(actions)
        if not self.autoreset:  # finished rows stay as they ended
            stop &= ~self._finished
            draw &= ~self._finished
            verify &= ~self._finished
        cost, latency = np.zeros(self.num_envs), np.zeros(self.num_envs)
        drawing = np.flatnonzero(draw)
        if drawing.size:
            self._draw_waves(drawing, actions[drawing], cost, latency)
        verifying = np.flatnonzero(verify)
        if verifying.size:
            spent, latency[verifying] = self._verify(verifying)
            self._charge(verifying, spent, cost)
        self._waves += draw
        self._waves += verify
        rewards = -self._lam * (cost / self.settings.cost_unit)
        if self._timed:
            self._latency += latency
            if self.settings.mu:
                rewards -= self.settings.mu * latency
        stopping = np.flatnonzero(stop)
        if stopping.size:
            infos = self._finish(stopping, stop, actions, rewards)
        else:
            infos = [{} for _ in range(self.num_envs)]
        # Every row drew, verified or reset: masks and observations change everywhere.
        self._update_masks()
        return self._observe(), rewards.astype(np.float32), stop, infos

    def action_masks(self) -> np.ndarray:
        """Allowed actions of every sub-environment, bool of shape (n_envs, n_actions)."""
        return self._mask.copy()

    def close(self) -> None:
        """Nothing to release."""

    # ------------------------------------------------------- attributes, methods
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The attribute of the batched env, once per targeted sub-environment."""
        value = getattr(self, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute of the batched env (shared by every sub-environment)."""
        setattr(self, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        """Call a method per targeted sub-environment.

        ``action_masks`` returns each sub-environment's own row (what sb3-contrib's
        ``get_action_masks`` stacks). Any other method belongs to the batched env as a
        whole: it is called once and its result repeated per target.
        """
        if method_name == "action_masks":
            if indices is None:
                return list(self._mask.copy())
            return list(self._mask[list(self._get_indices(indices))])
        targets = list(self._get_indices(indices))
        result = getattr(self, method_name)(*method_args, **method_kwargs)
        return [result for _ in targets]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper],
                       indices: VecEnvIndices = None) -> list[bool]:
        """Sub-environments are not Gymnasium envs, hence never wrapped."""
        return [False for _ in self._get_indices(indices)]

    def _get_indices(self, indices: VecEnvIndices) -> Iterable[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, int | np.integer):
            return [int(indices)]
        return list(indices)

    # --------------------------------------------------------------- dynamics
    def _classify(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Split actions into stop (incl. masked ones), draw and verify, per env."""
        in_range = actions.view(np.uint64) < self._layout.n  # negatives wrap around
        allowed = self._flat_mask[self._mask_index + actions * in_range]
        self._valid = valid = in_range & allowed
        code = actions * valid  # the action if valid, else 0 (STOP)
        stop = code == STOP
        verify = code == self._layout.verify
        return stop, ~(stop | verify), verify

    def _latency_list(self, rows: np.ndarray) -> list[float | None]:
        """The rows' latencies for their infos (None on an untimed log)."""
        if self._timed:
            return self._latency[rows].tolist()  # type: ignore[no-any-return]
        return [None] * len(rows)

    def _charge(self, rows: np.ndarray, spent: np.ndarray, cost: np.ndarray) -> None:
        """Add what ``rows`` spent to their episodes' costs and to this step's ``cost``
        (one draw at a time, the single env's order of additions)."""
        cost[rows] += spent
        self._cost[rows] += spent
        self._norm_cost[rows] += spent / self.settings.cost_unit

    def _draw_waves(self, rows: np.ndarray, actions: np.ndarray, cost: np.ndarray,
                    latency: np.ndarray) -> None:
        """Draw each row's wave: ``w`` candidates for a SAMPLE(arm)×w (one draw per pass,
        the rows still drawing), one otherwise; charge their costs into ``cost`` and
        their wave's latency (the longest draw) into ``latency``."""
        base, width = self._base_action[actions], self._width_of[actions]
        spent, duration = self._draw(rows, base)
        self._charge(rows, spent, cost)
        latency[rows] = duration
        for k in range(1, int(width.max(initial=1))):
            more = width > k
            rows, base, width = rows[more], base[more], width[more]
            spent, duration = self._draw(rows, base)
            self._charge(rows, spent, cost)
            latency[rows] = np.maximum(latency[rows], duration)

    def _draw(self, rows: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Draw the next candidate for each row (a sample or a refinement); its cost and
        its duration (with an opened workspace's summary).

        The next candidate of a group (an arm, a refinement round) is the one with the
        smallest remaining key: the order :func:`allocator.envs.pools.shuffle_order` sorts the
        query's deck into in :class:`allocator.envs.ReplayEnv`.
        """
        pools, query, layout = self.pools, self._query[rows], self._layout
        # The draw's counter column (StateColumns): its arm, or ``arms`` to refine; also
        # its group (a refinement's group is its workspace's, below).
        column = group = actions - layout.samples.start
        extra, extra_latency = 0.0, 0.0
        refining = np.flatnonzero(actions == layout.refine)
        if refining.size:
            group, extra, extra_latency = self._enter_workspaces(
                rows[refining], query[refining], column, refining)
        at = query * self._n_groups + group
        local = self._group_start[at]
        first = rows * self._row_length + self._key_base[rows] + local
        keys = self._key_windows[first]  # a copy
        if not self._full_groups:  # keys past the group's end belong to others
            np.copyto(keys, np.inf, where=self._slots >= self._group_count[at][:, None])
        slot = keys.argmin(axis=1)
        self._flat_streams[first + slot] = np.inf
        candidate = self._start[rows] + local + slot
        self._flat_counts[rows * self._counts.shape[1] + column] += 1
        answer = pools.cand_answer[candidate]
        key = self._branches.cand_key[candidate]
        self._sig_all[rows] += key
        sampled = actions < layout.samples.stop
        self._sig_samples[rows[sampled]] += key[sampled]
        if refining.size:
            self._sig_ws[rows[refining]] += key[refining]
        meanwhile = sampled & (self._ws_cur[rows] >= 0)  # drafts the next workspace reads
        if meanwhile.any():
            self._sig_ws[rows[meanwhile]] += key[meanwhile]
            self._n_ws[rows[meanwhile]] += 1
        self._vote(rows, answer, pools.cand_correct[candidate])
        self._count_arm_votes(rows, actions, answer)
        self._last_arm[rows[sampled]] = actions[sampled] - layout.samples.start
        same = (answer >= 0) & (answer == self._last_answer[rows])
        self._streak[rows] = np.where(answer < 0, 0, np.where(same, self._streak[rows] + 1, 1))
        self._last_answer[rows] = answer
        score = pools.cand_score[candidate]
        scored = ~np.isnan(score)
        verifiable = pools.cand_verifiable[candidate]
        self._blocked[rows] += pools.cand_blocks_verify[candidate]
        self._pending[rows[verifiable]] += 1
        self._pending_cost[rows[verifiable]] += self._verify_costs[candidate[verifiable]]
        if self._timed:
            branches, at = self._branches, rows[verifiable]
            self._pending_start[at] = np.minimum(
                self._pending_start[at], branches.cand_verify_start[candidate[verifiable]])
            self._pending_end[at] = np.maximum(
                self._pending_end[at], branches.cand_verify_end[candidate[verifiable]])
        kept = np.flatnonzero(scored & (answer >= 0))
        at = rows[kept] * self._cols.n_floats + self._cols.pending_best.start + answer[kept]
        self._flat_floats[at] = np.maximum(self._flat_floats[at], score[kept])
        if self._weighted:
            self._pending_sum[rows[kept], answer[kept]] += score[kept]
        return pools.cand_cost[candidate] + extra, pools.cand_duration[candidate] + extra_latency

    def _enter_workspaces(self, rows: np.ndarray, query: np.ndarray, column: np.ndarray,
                          refining: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The groups refining rows draw from (the workspace in use, or the one they
        open), and what each draw adds to its cost and to its latency (an opened
        workspace's summary).

        Args:
            rows, query: the refining rows and their queries.
            column: every drawing row's counter column (copied into the groups).
            refining: where the refining rows are among the drawing rows.
        """
        branches = self._branches
        opening = self._ws_left[rows] == 0
        w = np.where(opening, self._next_ws[rows], self._ws_cur[rows])
        self._ws_cur[rows] = w
        self._ws_left[rows] = np.where(opening, branches.ws_count[w], self._ws_left[rows]) - 1
        self._sig_ws[rows] = np.where(opening, np.uint64(0), self._sig_ws[rows])
        self._n_ws[rows] = np.where(opening, 0, self._n_ws[rows]) + 1
        group = column.copy()
        group[refining] = self.n_arms + w - branches.ws_offsets[query]
        extra, extra_latency = np.zeros(len(column)), np.zeros(len(column))
        extra[refining] = np.where(opening, branches.ws_cost[w], 0.0)
        extra_latency[refining] = np.where(opening, branches.ws_latency[w], 0.0)
        return group, extra, extra_latency

    def _count_arm_votes(self, rows: np.ndarray, actions: np.ndarray,
                         answer: np.ndarray) -> None:
        """Count sampled answers per arm and raise each arm's leading count."""
        samples = self._layout.samples
        kept = np.flatnonzero((actions < samples.stop) & (answer >= 0))
        if not kept.size:
            return
        rows, arm, answer = rows[kept], actions[kept] - samples.start, answer[kept]
        at = (rows * self.n_arms + arm) * self._width + answer
        self._flat_arm_votes[at] += 1
        self._arm_leader[rows, arm] = np.maximum(self._arm_leader[rows, arm],
                                                 self._flat_arm_votes[at])

    def _vote(self, rows: np.ndarray, answer: np.ndarray, correct: np.ndarray) -> None:
        """Count the votes and update the vote statistics (one vote per row at most)."""
        has = answer >= 0
        # One counter per row: the answer's votes, or the no-answers (answer -1).
        where = rows * self._cols.n_counts + (answer + self._cols.votes.start)
        before = self._flat_counts[where]
        self._flat_counts[where] = before + 1
        rows, answer, before = rows[has], answer[has], before[has]
        self._flat_floats[rows * self._cols.n_floats + self._cols.correct_sum.start
                          + answer] += correct[has]
        self._voted[rows] += 1
        # Top two counts: a leader's vote raises the top; any other vote may raise the second.
        top1, top2 = self._top1[rows], self._top2[rows]
        leads = before == top1
        self._top1[rows] = np.where(leads, before + 1, top1)
        self._top2[rows] = np.where(leads, top2, np.maximum(top2, before + 1))
        self._distinct[rows] += before == 0
        self._vlogv[rows] += self._xlogx[before + 1] - self._xlogx[before]

    def _verify(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reveal the pending scores of each row; the verifier's cost and latency (the
        span of the logged rows it charges, 0 without any)."""
        pending = self._pending_best[rows]
        self._verified_best[rows] = np.maximum(self._verified_best[rows], pending)
        self._best[rows] = np.maximum(self._best[rows], pending.max(axis=1))
        self._pending_best[rows] = -np.inf
        if self._weighted:
            self._verified_sum[rows] += self._pending_sum[rows]
            self._pending_sum[rows] = 0.0
        count = self._pending[rows]
        self._verified[rows] += count
        self._pending[rows] = 0
        cost = self._pending_cost[rows]
        self._pending_cost[rows] = 0.0
        start, end = self._pending_start[rows], self._pending_end[rows]
        self._pending_start[rows], self._pending_end[rows] = np.inf, -np.inf
        event = self._next_ev[rows]
        applying = np.flatnonzero(event >= 0)
        if applying.size:
            cost[applying] += self._apply_events(rows[applying], event[applying])
            applied = event[applying]
            start[applying] = np.minimum(start[applying], self._branches.ev_start[applied])
            end[applying] = np.maximum(end[applying], self._branches.ev_end[applied])
        if not self._timed:
            return cost, np.full(len(rows), np.nan)
        return cost, np.where(start <= end, end - start, 0.0)

    def _apply_events(self, rows: np.ndarray, event: np.ndarray) -> np.ndarray:
        """Set rows to the state after their logged tournament events; their costs."""
        branches = self._branches
        best = branches.ev_best[event]
        self._verified_best[rows] = best
        self._best[rows] = best.max(axis=1, initial=-np.inf)
        self._verified[rows] = branches.ev_verified[event]
        if self._weighted:
            self._verified_sum[rows] = branches.ev_sum[event]
        self._last_ev[rows] = event
        return branches.ev_cost[event]

    def _update_masks(self) -> None:
        """The masks of every row: the mask rule of :mod:`allocator.actions` on what each
        row's pools make available."""
        samples = self._samples
        drafts = self._total(samples)
        drawn = drafts + self._refines
        refine: np.ndarray | bool = False
        if self._ws_table.shape[1]:
            self._next_ws = self._match_workspaces(drafts)
            refine = (self._ws_left > 0) | (self._next_ws >= 0)
        verify = (self._pending > 0) & (self._blocked == 0)
        if self._ev_table.shape[1]:
            self._next_ev = self._match_events(drawn)
            verify |= self._next_ev >= 0
        cap = self.settings.max_samples
        left = self._limits[:, self._cols.samples] - samples
        wide = None
        if self._layout.has_widths:  # w left in the pool, room for w more
            widths = self._extra_widths
            wide = left[:, None, :] >= widths[None, :, None]
            if cap is not None:
                wide &= (drawn[:, None] + widths[None, :] <= cap)[:, :, None]
        self._layout.allowed_masks(
            self._mask, left > 0,
            room=None if cap is None else has_room(drawn, cap), refine=refine, verify=verify,
            wide=wide)

    def _match_workspaces(self, drafts: np.ndarray) -> np.ndarray:
        """Per row, the workspace REFINE would open now (global index, -1: none): the
        first of its query that follows the workspace in use and whose sources are
        exactly the drafts drawn (none in use) or the candidates drawn since it opened."""
        branches = self._branches
        table = self._ws_table[self._query]
        w = np.maximum(table, 0)
        fresh = self._ws_cur < 0
        sig = np.where(fresh, self._sig_samples, self._sig_ws)
        size = np.where(fresh, drafts, self._n_ws)
        same = (branches.ws_sig[w] == sig[:, None]) & (branches.ws_nsrc[w] == size[:, None])
        ok = ((table >= 0) & branches.ws_ok[w] & (branches.ws_free[w] | same)
              & (branches.ws_prev[w] == self._ws_cur[:, None]) & (drafts > 0)[:, None])
        first = ok.argmax(axis=1)
        return np.where(ok[self._arange, first], table[self._arange, first], -1)

    def _match_events(self, drawn: np.ndarray) -> np.ndarray:
        """Per row, the logged event VERIFY would apply now (global index, -1: none)."""
        branches = self._branches
        table = self._ev_table[self._query]
        e = np.maximum(table, 0)
        ok = ((table >= 0) & branches.ev_ok[e]
              & (branches.ev_prev[e] == self._last_ev[:, None])
              & (branches.ev_sig[e] == self._sig_all[:, None])
              & (branches.ev_n[e] == drawn[:, None]))
        first = ok.argmax(axis=1)
        return np.where(ok[self._arange, first], table[self._arange, first], -1)

    @staticmethod
    def _exhausted_arms(samples: np.ndarray, limits: np.ndarray) -> np.ndarray:
        """Arms whose pool the episode emptied, per row.

        An arm is drawn only while samples remain (its mask), so its pool is empty once
        its samples reach the pool's size, after at least one draw (an empty pool is not
        counted, as in :class:`allocator.envs.ReplayEnv`).
        """
        exhausted = np.zeros(len(samples), dtype=np.int64)
        for arm in range(samples.shape[1]):  # a few columns: faster than 2-D operations
            drawn = samples[:, arm]
            exhausted += (drawn == limits[:, arm]) & (drawn > 0)
        return exhausted

    @staticmethod
    def _total(columns: np.ndarray) -> np.ndarray:
        """The sum of each row of a few integer columns (faster than ``sum(axis=1)``)."""
        total = columns[:, 0].copy()
        for j in range(1, columns.shape[1]):
            total += columns[:, j]
        return total

    def _correctness(self, counts: np.ndarray, floats: np.ndarray,
                     rows: np.ndarray) -> np.ndarray:
        """Expected correctness of rows' final answers (ties share the credit).

        Args:
            counts, floats: the rows of ``_counts`` and ``_floats`` (copies).
            rows: which rows they are (the answer rules read other arrays too).
        """
        cols = self._cols
        votes = counts[:, cols.votes]
        # The final answers (allocator.final_answer); a final answer has votes (a verified
        # score is a voting candidate's), so its credit is correctness sum / votes.
        tied = final_answers_rows(votes, floats[:, cols.top1], floats[:, cols.best],
                                  floats[:, cols.verified_best])
        if self.answer_rule == "weighted-vote":
            tied = self._weighted_tied(tied, floats, rows)
        elif self.answer_rule == "last-arm":
            tied = self._last_arm_tied(rows)
        return credit_rows(tied, floats[:, cols.correct_sum], votes)

    def _weighted_tied(self, tied: np.ndarray, floats: np.ndarray,
                       rows: np.ndarray) -> np.ndarray:
        """The "weighted-vote" final answers: the answers whose verified scores sum
        highest, where any answer was verified; elsewhere ``tied`` (the default rule,
        then the majority vote)."""
        has = floats[:, self._cols.verified_best] > -np.inf  # a verified, scored candidate
        weighted = has.any(axis=1)
        return np.where(weighted[:, None], leaders_rows(self._verified_sum[rows], has), tied)

    def _last_arm_tied(self, rows: np.ndarray) -> np.ndarray:
        """The "last-arm" final answers: the leaders among the last sampled arm's votes
        (none where no arm was sampled or it gave no answer)."""
        last = self._last_arm[rows]
        votes = self._arm_votes[rows, np.maximum(last, 0)]
        return leaders_rows(votes, votes > 0) & (last >= 0)[:, None]

    def _finish(self, rows: np.ndarray, stop: np.ndarray, actions: np.ndarray,
                rewards: np.ndarray) -> list[dict[str, Any]]:
        """Grade the finished rows, reset them; every row's info.

        A stop changes no state, so a finished row's terminal observation is the one the
        previous step (or reset) returned, kept in ``_observations``.
        """
        cols, layout = self._cols, self._layout
        counts, floats = self._counts.take(rows, axis=0), self._floats.take(rows, axis=0)
        episode = self._episode.take(rows, axis=0)
        limits = episode[:, cols.limits]
        correct = self._correctness(counts, floats, rows)
        rewards[rows] += correct
        samples, invalid = counts[:, cols.samples], ~self._valid[rows]
        # Pool exhaustion hit: a masked sample of an arm whose pool is empty.
        hit = np.zeros(len(rows), dtype=bool)
        bad = np.flatnonzero(invalid)
        if bad.size:
            taken = actions[rows[bad]]
            known = taken.view(np.uint64) < layout.n  # negatives wrap around
            taken = np.where(known, taken, 0)
            arm, width = self._arm_of[taken], self._width_of[taken]
            safe = np.maximum(arm, 0)
            hit[bad] = known & (arm >= 0) & (samples[bad, safe] + width > limits[bad, safe])
        columns = zip(
            episode[:, cols.query].tolist(), self._lam[rows].tolist(),
            floats[:, cols.cost].tolist(), self._exhausted_arms(samples, limits).tolist(),
            self._latency_list(rows), self._waves[rows].tolist(), correct.tolist(),
            self._total(samples).tolist(), counts[:, cols.refines].tolist(),
            counts[:, cols.verified].tolist(), invalid.tolist(), hit.tolist(),
            self._observations[rows], strict=True,
        )
        finished = iter([
            {"query": query, "lambda": lam, "cost": cost, "exhausted": exhausted,
             "latency": latency, "waves": waves, "correct": grade, "n_samples": n_samples,
             "n_refines": refines,
             "n_verified": verified, "invalid_action": invalid, "exhaustion_hit": exhaustion_hit,
             "terminal_observation": terminal, "TimeLimit.truncated": False}
            for query, lam, cost, exhausted, latency, waves, grade, n_samples, refines,
            verified, invalid, exhaustion_hit, terminal in columns
        ]).__next__
        infos = [finished() if done else {} for done in stop.tolist()]
        if self.autoreset:
            self._reset_rows(rows)
        else:
            self._finished[rows] = True
        return infos

    # ----------------------------------------------------------------- resets
    def _reset_rows(self, rows: np.ndarray, seeds: list[int | None] | None = None,
                    options: list[dict[str, Any]] | None = None) -> None:
        """Draw new episodes for ``rows`` and clear their state (masks: :meth:`_update_masks`).

        The vectorised form of :func:`allocator.envs.pools.draw_episode`: the same reads of each
        row's own uniform stream, for all rows at once.
        """
        pools, settings = self.pools, self.settings
        if seeds is not None:
            self._seed_rows(rows, seeds)
        at = rows * self._row_length
        start = self._take(rows, 1)
        queries = settings.queries
        query = queries[(self._flat_streams[at + start] * len(queries)).astype(np.int64)]
        if options is not None:
            for j, row in enumerate(rows.tolist()):
                if options[row] and options[row].get("query") is not None:
                    query[j] = forced_query(options[row]["query"], pools)
        extra = int(settings.lambda_range is not None)
        start = self._take(rows, extra + self._n_candidates[query])
        if extra:
            self._lam[rows] = settings.lambdas(self._flat_streams[at + start])
        else:
            self._lam[rows] = settings.lambda_
        self._key_base[rows] = start + extra
        if options is not None:
            for j, row in enumerate(rows.tolist()):
                if logged_order(options[row]):  # keys 0, 1, 2...: each group in log order
                    count = int(self._n_candidates[query[j]])
                    at_keys = row * self._row_length + int(start[j]) + extra
                    self._flat_streams[at_keys : at_keys + count] = np.arange(count)
        self._episode[rows] = self._query_table.take(query, axis=0)
        self._prior[rows] = settings.prior.take(query, axis=0)
        self._counts[rows] = 0
        self._floats[rows] = self._fresh_floats
        self._streak[rows] = 0
        self._last_answer[rows] = -1
        self._arm_votes[rows] = 0
        self._arm_leader[rows] = 0
        self._last_arm[rows] = -1
        for name in ("_sig_samples", "_sig_all", "_sig_ws"):
            getattr(self, name)[rows] = 0
        self._ws_cur[rows] = -1
        self._ws_left[rows] = 0
        self._n_ws[rows] = 0
        self._last_ev[rows] = -1
        self._pending_cost[rows] = 0.0
        self._blocked[rows] = 0
        self._latency[rows] = 0.0 if self._timed else np.nan
        self._waves[rows] = 0
        self._pending_start[rows] = np.inf
        self._pending_end[rows] = -np.inf
        if self._weighted:
            self._pending_sum[rows] = 0.0
            self._verified_sum[rows] = 0.0

    def _seed_rows(self, rows: np.ndarray, seeds: list[int | None]) -> None:
        """(Re)create the generators of seeded rows, and of rows that have none yet."""
        for row in rows.tolist():
            if seeds[row] is not None or self._rngs[row] is None:
                self._rngs[row] = seeding.np_random(seeds[row])[0]
                self._stream_position[row] = self._block  # drop the block

    def _take(self, rows: np.ndarray, counts: np.ndarray | int) -> np.ndarray:
        """Read ``counts[i]`` uniforms from each row's stream (``UniformStream.take``).

        Returns:
            Where each row's values start in its block.
        """
        start = self._stream_position[rows]
        refill = np.flatnonzero(start + counts > self._block)
        if refill.size:
            rngs, blocks = self._rngs, self._blocks
            for row in rows[refill].tolist():
                rng = rngs[row]
                assert rng is not None
                rng.random(out=blocks[row])  # the values of ``rng.random(block)``
            start[refill] = 0
        self._stream_position[rows] = start + counts
        return start

    # ------------------------------------------------------------ observations
    def _observe(self) -> np.ndarray:
        """Observations of every sub-environment, via the featurizer.

        A copy is kept: the terminal observations of the rows that stop at the next step.
        """
        best = self._best
        state = StateBatch(
            samples=self._samples,
            votes=self._votes,
            no_answer=self._no_answer,
            refines=self._refines,
            verified=self._verified,
            best_score=np.where(best > -np.inf, best, np.nan),
            cost=self._norm_cost,
            lam=self._lam,
            prior=self._prior,
        )
        stats = VoteStats(voted=self._voted, top1=self._top1, top2=self._top2,
                          distinct=self._distinct, vlogv=self._vlogv)
        observations = featurize(state, stats)
        self._observations = observations.copy()  # the caller may write into its copy
        return observations

    def state(self) -> StateBatch:
        """A copy of every sub-environment's state, with its full votes matrix, the
        answer streak, each arm's leading count and the vote statistics the env maintains.

        ``VoteStats.from_votes(venv.state().votes)`` equals those statistics (a test
        checks it).
        """
        best = self._best
        stats = VoteStats(voted=self._voted.copy(), top1=self._top1.copy(),
                          top2=self._top2.copy(), distinct=self._distinct.copy(),
                          vlogv=self._vlogv.copy())
        return StateBatch(
            samples=self._samples.copy(), votes=self._votes.copy(),
            no_answer=self._no_answer.copy(), refines=self._refines.copy(),
            verified=self._verified.copy(), best_score=np.where(best > -np.inf, best, np.nan),
            cost=self._norm_cost.copy(), lam=self._lam.copy(), prior=self._prior.copy(),
            streak=self._streak.copy(), stats=stats,
            arm_leader=self._arm_leader.astype(np.float64),
        )

    def snapshot(self) -> dict[str, np.ndarray]:
        """Copies of every state array, for :meth:`restore` (``autoreset=False`` only).

        An evaluator replays many policies on the same episodes: it resets once (seeding
        thousands of generators is the costly part), takes a snapshot, and restores it
        before each policy. Views into the state blocks are not copied twice: restoring
        their owners restores them. An episode reads all its uniforms at reset, so without
        automatic resets the generators are not needed again and are not saved.
        """
        if self.autoreset:
            raise ParameterError("BatchedReplayVecEnv.snapshot", "autoreset",
                                 "False (with automatic resets the generators' states "
                                 "would matter too)", self.autoreset)
        arrays = {name: value for name, value in vars(self).items()
                  if isinstance(value, np.ndarray) and value.flags.writeable}
        owners = {id(value) for value in arrays.values() if value.base is None}
        return {name: value.copy() for name, value in arrays.items()
                if id(_root(value)) not in owners or value.base is None}

    def restore(self, snapshot: dict[str, np.ndarray]) -> None:
        """Return every sub-environment to the state of a :meth:`snapshot`.

        Arrays are copied in place, so views into the state blocks stay views.
        """
        for name, saved in snapshot.items():
            current = getattr(self, name)
            if current.shape == saved.shape and current.flags.writeable:
                current[...] = saved
            else:
                setattr(self, name, saved.copy())

    @property
    def finished(self) -> np.ndarray:
        """Rows whose episode has ended (only with ``autoreset=False``; else all False)."""
        return self._finished.copy()

    def stop_correctness(self) -> np.ndarray:
        """Expected correctness of every row's final answer if it stopped now, shape (n,)."""
        return self._correctness(self._counts, self._floats, self._arange)

    def cost_spent(self) -> np.ndarray:
        """Cost every row has spent in its current (or, finished, last) episode, log units."""
        return self._cost.copy()


def unwrap_replay_env(env: VecEnv) -> BatchedReplayVecEnv:
    """The batched replay env inside a (possibly wrapped, e.g. ``VecNormalize``) env.

    Raises:
        ParameterError: no :class:`BatchedReplayVecEnv` under the wrappers.
    """
    while isinstance(env, VecEnvWrapper):
        env = env.venv
    if not isinstance(env, BatchedReplayVecEnv):
        raise ParameterError("unwrap_replay_env", "env",
                             "a BatchedReplayVecEnv, or VecEnv wrappers around one",
                             type(env).__name__)
    return env


def _root(array: np.ndarray) -> np.ndarray:
    """The array that owns the memory of a view (the array itself if it owns it)."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array
