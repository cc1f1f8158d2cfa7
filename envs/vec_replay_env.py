"""The replay environment batched in numpy, as a stable-baselines3 ``VecEnv``.

SB3 cannot consume a ``gymnasium.vector.VectorEnv``, so this subclasses SB3's own
:class:`~stable_baselines3.common.vec_env.VecEnv`. Every step is a few dozen numpy
operations over all ``n_envs`` sub-environments, resets included; Python loops run only
over the sub-environments that finished (to build their info dicts, as SB3 wants one per
environment) and over those whose block of uniforms ran out (one generator call each,
about once every ``block / candidates`` episodes).

Memory: about ``n_envs * (stream block + 6 * distinct answers) * 8`` bytes, with a block
of ``max(1024, 2 * (most candidates of a query + 2))`` uniforms: 8 MiB for 1024
sub-environments on a log of 40 samples per query.

Sub-environment ``i`` replays exactly the episodes of a :class:`envs.ReplayEnv` reset with
the same seed: both read their episodes' uniforms with the protocol of
:func:`envs.pools.draw_episode` from a generator created as Gymnasium creates
``np_random`` (the batched env gathers the reads of all resetting sub-environments in one
numpy operation), and both step with the same rules.
With ``venv.seed(s)``, sub-environment ``i`` gets seed ``s + i`` (SB3's convention).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

from allocator.errors import ParameterError
from allocator.featurizer import StateBatch, VoteStats, featurize
from allocator.logs.table import AttemptLog
from envs.pools import ReplayPools, ReplaySettings, forced_query, stream_block

__all__ = ["BatchedReplayVecEnv"]


class BatchedReplayVecEnv(VecEnv):
    """``n_envs`` replay environments stepped together in numpy (an SB3 ``VecEnv``).

    The semantics (actions, masks, rewards, final answer, info keys) are those of
    :class:`envs.ReplayEnv`; see its documentation. Differences that come from the
    ``VecEnv`` API:

    - finished sub-environments reset automatically; the terminal step's info holds
      ``terminal_observation`` and ``TimeLimit.truncated`` (always False) beside the
      terminal keys of :class:`envs.ReplayEnv` (``query``, ``lambda``, ``cost``,
      ``exhausted``, ``correct``, ``n_samples``, ``n_refines``, ``n_verified``,
      ``invalid_action``, ``exhaustion_hit``);
    - infos of non-terminal steps are empty dicts (building per-step dicts would cost
      more than the step itself); the masks are read with :meth:`action_masks`;
    - rewards are float32, as in SB3's own ``VecEnv`` implementations.

    MaskablePPO reads the masks through ``env_method("action_masks")`` (sb3-contrib's
    ``get_action_masks``); :meth:`action_masks` returns them as one (n_envs, A + 3) array.
    Attributes and other methods belong to the batched env as a whole: ``get_attr``
    repeats its value per sub-environment and ``set_attr`` sets it once for all.
    :meth:`state` returns every sub-environment's state as a featurizer ``StateBatch``.

    Args:
        log: the graded log, or its :class:`envs.pools.ReplayPools`.
        n_envs: number of sub-environments.
        **settings: the parameters of :class:`envs.ReplayEnv` (``lambda_``,
            ``lambda_range``, ``lambda_sampling``, ``verify_cost``, ``cost_unit``,
            ``prior``, ``queries``, ``max_samples``).

    Raises:
        EnvironmentConfigError: for a log without sample attempts, or no usable cost unit.
        ParameterError: for an invalid parameter.
    """

    def __init__(self, log: AttemptLog | ReplayPools, n_envs: int = 64, **settings: Any) -> None:
        if isinstance(n_envs, bool) or not isinstance(n_envs, int | np.integer) or n_envs < 1:
            raise ParameterError("BatchedReplayVecEnv", "n_envs", "an integer >= 1", n_envs)
        self.pools = log if isinstance(log, ReplayPools) else ReplayPools.from_log(log)
        self.settings = ReplaySettings.create(self.pools, "BatchedReplayVecEnv", **settings)
        self.n_arms = self.pools.n_arms
        self.render_mode = None
        super().__init__(int(n_envs), self.settings.observation_space(self.pools),
                         spaces.Discrete(self.n_arms + 3))
        self._allocate()
        self._actions = np.zeros(self.num_envs, dtype=np.int64)

    # --------------------------------------------------------------- storage
    def _allocate(self) -> None:
        n, arms, width = self.num_envs, self.n_arms, self.pools.max_answers
        self._arange = np.arange(n)
        # Randomness: a generator per sub-environment and its current block of uniforms
        # (UniformStream's layout). An episode's candidate keys stay in the block, at
        # ``key_base + local position``; a drawn candidate's key becomes +inf.
        self._rngs: list[np.random.Generator | None] = [None] * n
        block = stream_block(self.pools)
        self._block = block
        # Padded by one group's width, so that reading a group's keys never leaves the row.
        self._streams = np.zeros((n, block + self.pools.max_group_size))
        self._flat_streams = self._streams.reshape(-1)  # a view
        self._stream_position = np.full(n, block, dtype=np.int64)
        self._key_base = np.zeros(n, dtype=np.int64)
        self._slots = np.arange(self.pools.max_group_size)
        self._refine_cum = np.cumsum(self.pools.group_count[:, arms:], axis=1)
        # The episode.
        self._query = np.zeros(n, dtype=np.int64)
        self._lam = np.zeros(n)
        self._start = np.zeros(n, dtype=np.int64)
        self._prior = np.zeros((n, arms))
        # Per-row counters and statistics, as column views of two matrices (one clear each).
        self._ints = np.zeros((n, 4), dtype=np.int64)
        self._refines, self._no_answer, self._pending, self._verified = self._ints.T
        self._floats = np.zeros((n, 8))
        (self._voted, self._top1, self._top2, self._distinct, self._vlogv,  # vote statistics
         self._cost, self._norm_cost, self._best) = self._floats.T
        self._samples = np.zeros((n, arms), dtype=np.int64)
        self._exhausted = np.zeros((n, arms), dtype=bool)
        self._votes = np.zeros((n, width), dtype=np.int64)
        self._correct_sum = np.zeros((n, width))
        # Best score per answer: drawn but not yet verified, and verified.
        self._pending_best = np.full((n, width), -np.inf)
        self._verified_best = np.full((n, width), -np.inf)
        self._mask = np.zeros((n, arms + 3), dtype=bool)
        self._valid = np.ones(n, dtype=bool)
        counts = np.arange(self.pools.max_candidates + 2, dtype=np.float64)
        self._xlogx = counts * np.log(np.maximum(counts, 1.0))

    def _clear(self, rows: np.ndarray) -> None:
        """Empty the state of ``rows`` (nothing drawn, nothing verified)."""
        for array in (self._ints, self._floats, self._samples, self._exhausted, self._votes,
                      self._correct_sum):
            array[rows] = 0
        self._best[rows] = -np.inf
        self._pending_best[rows] = -np.inf
        self._verified_best[rows] = -np.inf

    # ------------------------------------------------------------------ VecEnv
    def reset(self) -> np.ndarray:
        """Reset every sub-environment (with the seeds and options set before, if any)."""
        rows = self._arange
        self._reset_rows(rows, seeds=list(self._seeds), options=list(self._options))
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [
            {"action_mask": self._mask[i].astype(np.int8), **self._step_info(i)}
            for i in range(self.num_envs)
        ]
        return self._observe()

    def step_async(self, actions: np.ndarray) -> None:
        """Store the actions of the next :meth:`step_wait`."""
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        """Step every sub-environment; finished ones reset automatically."""
        actions = self._actions
        stop, draw, verify = self._classify(actions)
        cost = np.zeros(self.num_envs)
        drawing = np.flatnonzero(draw)
        if drawing.size:
            cost[drawing] = self._draw(drawing, actions[drawing])
        verifying = np.flatnonzero(verify)
        if verifying.size:
            cost[verifying] = self._verify(verifying)
        norm_cost = cost / self.settings.cost_unit
        self._cost += cost
        self._norm_cost += norm_cost
        rewards = -self._lam * norm_cost
        changed = np.flatnonzero(draw | verify)
        if changed.size:
            self._update_masks(changed)
        stopping = np.flatnonzero(stop)
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        observations = self._observe()
        if stopping.size:
            self._finish(stopping, actions, rewards, observations, infos)
        return observations, rewards.astype(np.float32), stop, infos

    def action_masks(self) -> np.ndarray:
        """Allowed actions of every sub-environment, bool of shape (n_envs, A + 3)."""
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
        targets = list(self._get_indices(indices))
        if method_name == "action_masks":
            return list(self._mask[targets])
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
        n_actions = self.n_arms + 3
        in_range = (actions >= 0) & (actions < n_actions)
        self._valid = valid = in_range & self._mask[self._arange, np.where(in_range, actions, 0)]
        stop = (actions == 0) | ~valid
        draw = valid & (actions >= 1) & (actions <= self.n_arms + 1)
        verify = valid & (actions == n_actions - 1)
        return stop, draw, verify

    def _draw(self, rows: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Draw the next candidate for each row (a sample or a refinement); its cost.

        The next candidate of a group (an arm, a refinement round) is the one with the
        smallest remaining key: the order :func:`envs.pools.shuffle_order` sorts the
        query's deck into in :class:`envs.ReplayEnv`.
        """
        pools, query = self.pools, self._query[rows]
        is_sample = actions <= self.n_arms
        group = actions - 1
        if not is_sample.all():  # refinements come from the lowest round with some left
            passed = self._refine_cum[query[~is_sample]] <= self._refines[rows[~is_sample], None]
            group[~is_sample] = self.n_arms + passed.sum(axis=1)
        first = (rows * self._streams.shape[1] + self._key_base[rows]
                 + pools.group_start[query, group])
        keys = self._flat_streams.take(first[:, None] + self._slots)
        keys[self._slots >= pools.group_count[query, group][:, None]] = np.inf
        slot = keys.argmin(axis=1)
        self._flat_streams[first + slot] = np.inf
        candidate = self._start[rows] + pools.group_start[query, group] + slot
        self._count_draw(rows, is_sample, group, query)
        answer = pools.cand_answer[candidate]
        self._vote(rows, answer, pools.cand_correct[candidate])
        score = pools.cand_score[candidate]
        scored = ~np.isnan(score)
        self._pending[rows[scored]] += 1
        kept = scored & (answer >= 0)
        at = (rows[kept], answer[kept])
        self._pending_best[at] = np.maximum(self._pending_best[at], score[kept])
        return pools.cand_cost[candidate]

    def _count_draw(self, rows: np.ndarray, is_sample: np.ndarray, group: np.ndarray,
                    query: np.ndarray) -> None:
        sampled, arm = rows[is_sample], group[is_sample]
        self._samples[sampled, arm] += 1
        self._exhausted[sampled, arm] |= (
            self._samples[sampled, arm] == self.pools.arm_count[query[is_sample], arm])
        self._refines[rows[~is_sample]] += 1

    def _vote(self, rows: np.ndarray, answer: np.ndarray, correct: np.ndarray) -> None:
        """Count the votes and update the vote statistics (one vote per row at most)."""
        has = answer >= 0
        self._no_answer[rows[~has]] += 1
        rows, answer = rows[has], answer[has]
        before = self._votes[rows, answer]
        self._votes[rows, answer] = before + 1
        self._correct_sum[rows, answer] += correct[has]
        self._voted[rows] += 1
        # Top two counts: a leader's vote raises the top; any other vote may raise the second.
        top1, top2 = self._top1[rows], self._top2[rows]
        leads = before == top1
        self._top1[rows] = np.where(leads, before + 1, top1)
        self._top2[rows] = np.where(leads, top2, np.maximum(top2, before + 1))
        self._distinct[rows] += before == 0
        self._vlogv[rows] += self._xlogx[before + 1] - self._xlogx[before]

    def _verify(self, rows: np.ndarray) -> np.ndarray:
        """Reveal the pending scores of each row; the verifier's cost."""
        pending = self._pending_best[rows]
        self._verified_best[rows] = np.maximum(self._verified_best[rows], pending)
        self._best[rows] = np.maximum(self._best[rows], pending.max(axis=1))
        cost = self.settings.verify_cost * self._pending[rows]
        self._verified[rows] += self._pending[rows]
        self._pending[rows] = 0
        self._pending_best[rows] = -np.inf
        return cost

    def _update_masks(self, rows: np.ndarray) -> None:
        pools, query, arms = self.pools, self._query[rows], self.n_arms
        samples = self._samples[rows]
        room = np.ones(len(rows), dtype=bool)
        if self.settings.max_samples is not None:
            room = samples.sum(axis=1) + self._refines[rows] < self.settings.max_samples
        mask = self._mask
        mask[rows, 0] = True
        mask[rows, 1 : arms + 1] = (samples < pools.arm_count[query]) & room[:, None]
        mask[rows, arms + 1] = (self._refines[rows] < pools.refine_count[query]) & room
        mask[rows, arms + 2] = self._pending[rows] > 0

    def _correctness(self, rows: np.ndarray) -> np.ndarray:
        """Expected correctness of each row's final answer (ties share the credit)."""
        votes, best = self._votes[rows], self._best[rows]
        tied = np.where(
            (best > -np.inf)[:, None],
            self._verified_best[rows] == best[:, None],
            (votes == votes.max(axis=1)[:, None]) & (votes > 0),
        )
        answer_correct = self._correct_sum[rows] / np.maximum(votes, 1)
        n_tied = tied.sum(axis=1)
        credit = np.where(tied, answer_correct, 0.0).sum(axis=1)
        return np.where(n_tied > 0, credit / np.maximum(n_tied, 1), 0.0)

    def _finish(self, rows: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                observations: np.ndarray, infos: list[dict[str, Any]]) -> None:
        """Grade the finished rows, fill their infos, and reset them."""
        correct = self._correctness(rows)
        rewards[rows] += correct
        arm = np.clip(actions[rows] - 1, 0, self.n_arms - 1)
        hit = ((actions[rows] >= 1) & (actions[rows] <= self.n_arms) & ~self._valid[rows]
               & (self._samples[rows, arm] >= self.pools.arm_count[self._query[rows], arm]))
        columns = zip(
            rows.tolist(), self._query[rows].tolist(), self._lam[rows].tolist(),
            self._cost[rows].tolist(), self._exhausted[rows].sum(axis=1).tolist(),
            correct.tolist(), self._samples[rows].sum(axis=1).tolist(),
            self._refines[rows].tolist(), self._verified[rows].tolist(),
            (~self._valid[rows]).tolist(), hit.tolist(), observations[rows], strict=True,
        )
        for row, query, lam, cost, exhausted, grade, samples, refines, verified, invalid, \
                exhaustion_hit, terminal in columns:
            infos[row] = {
                "query": query, "lambda": lam, "cost": cost, "exhausted": exhausted,
                "correct": grade, "n_samples": samples, "n_refines": refines,
                "n_verified": verified, "invalid_action": invalid,
                "exhaustion_hit": exhaustion_hit, "terminal_observation": terminal,
                "TimeLimit.truncated": False,
            }
        self._reset_rows(rows)
        observations[rows] = self._observe(rows)

    def _step_info(self, row: int) -> dict[str, Any]:
        return {
            "query": int(self._query[row]),
            "lambda": float(self._lam[row]),
            "cost": float(self._cost[row]),
            "exhausted": int(self._exhausted[row].sum()),
        }

    # ----------------------------------------------------------------- resets
    def _reset_rows(self, rows: np.ndarray, seeds: list[int | None] | None = None,
                    options: list[dict[str, Any]] | None = None) -> None:
        """Draw new episodes for ``rows`` and clear their state.

        The vectorised form of :func:`envs.pools.draw_episode`: the same reads of each
        row's own uniform stream, for all rows at once.
        """
        pools, settings = self.pools, self.settings
        if seeds is not None:
            self._seed_rows(rows, seeds)
        start = self._take(rows, np.ones(len(rows), dtype=np.int64))
        queries = settings.queries
        query = queries[(self._streams[rows, start] * len(queries)).astype(np.int64)]
        if options is not None:
            for j, row in enumerate(rows.tolist()):
                if options[row] and options[row].get("query") is not None:
                    query[j] = forced_query(options[row]["query"], pools)
        extra = int(settings.lambda_range is not None)
        start = self._take(rows, extra + pools.n_candidates[query])
        if extra:
            self._lam[rows] = settings.lambdas(self._streams[rows, start])
        else:
            self._lam[rows] = settings.lambda_
        self._key_base[rows] = start + extra
        self._query[rows] = query
        self._start[rows] = pools.cand_offsets[query]
        self._prior[rows] = settings.prior[query]
        self._clear(rows)
        self._update_masks(rows)

    def _seed_rows(self, rows: np.ndarray, seeds: list[int | None]) -> None:
        """(Re)create the generators of seeded rows, and of rows that have none yet."""
        for row in rows.tolist():
            if seeds[row] is not None or self._rngs[row] is None:
                self._rngs[row] = seeding.np_random(seeds[row])[0]
                self._stream_position[row] = self._block  # drop the block

    def _take(self, rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Read ``counts[i]`` uniforms from each row's stream (``UniformStream.take``).

        Returns:
            Where each row's values start in its block.
        """
        block = self._block
        start = self._stream_position[rows]
        for j in np.flatnonzero(start + counts > block).tolist():
            rng = self._rngs[int(rows[j])]
            assert rng is not None
            self._streams[rows[j], :block] = rng.random(block)
            start[j] = 0
        self._stream_position[rows] = start + counts
        return start

    # ------------------------------------------------------------ observations
    def _observe(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Observations of ``rows`` (all sub-environments if None), via the featurizer."""
        def take(array: np.ndarray) -> np.ndarray:
            return array if rows is None else array[rows]

        best = take(self._best)
        state = StateBatch(
            samples=take(self._samples),
            votes=take(self._votes),
            no_answer=take(self._no_answer),
            refines=take(self._refines),
            verified=take(self._verified),
            best_score=np.where(best > -np.inf, best, np.nan),
            cost=take(self._norm_cost),
            lam=take(self._lam),
            prior=take(self._prior),
        )
        stats = VoteStats(voted=take(self._voted), top1=take(self._top1), top2=take(self._top2),
                          distinct=take(self._distinct), vlogv=take(self._vlogv))
        return featurize(state, stats)

    def state(self) -> StateBatch:
        """A copy of every sub-environment's state, with its full votes matrix.

        ``VoteStats.from_votes(venv.state().votes)`` equals the statistics the batched
        env maintains vote by vote (a test checks it).
        """
        best = self._best
        return StateBatch(
            samples=self._samples.copy(), votes=self._votes.copy(),
            no_answer=self._no_answer.copy(), refines=self._refines.copy(),
            verified=self._verified.copy(), best_score=np.where(best > -np.inf, best, np.nan),
            cost=self._norm_cost.copy(), lam=self._lam.copy(), prior=self._prior.copy(),
        )
