"""Exact counterfactual replay of allocation policies on pool logs.

Every policy runs on the *same* seeded orders of the same queries: query ``q`` (the i-th
evaluation query) in order ``r`` is replayed by the batched environment's sub-environment
seeded ``seed * 1_000_003 + i * R + r``, so paired comparisons are exact and the same seed
gives the same report. The replay semantics are the environment's (one implementation):
this module only schedules the episodes and drives the policy in batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from allocator._checks import check_int
from allocator.actions import DEFAULT_WIDTHS, STOP, check_widths, sample_action
from allocator.envs.pools import ReplayPools
from allocator.envs.vec_replay_env import BatchedReplayVecEnv
from allocator.errors import ParameterError
from allocator.logs.table import AttemptLog
from allocator.policies.base import Policy
from allocator.training.evaluation.results import EpisodeResults

__all__ = ["SEED_STRIDE", "FixedNCurves", "ReplayEvaluator", "policy_widths"]

#: The distance between two seeds' first episodes (more than any evaluation's episodes).
SEED_STRIDE = 1_000_003


@dataclass(frozen=True, eq=False)
class FixedNCurves:
    """Sampling one arm ``t`` times, for every t: arrays of shape (Q, R, T + 1).

    Attributes:
        arm: the arm's index.
        correct: correctness of the majority answer after t samples (t = 0: nothing).
        cost: cost spent after t samples (log units).
        available: whether the pool still had a t-th sample (False past exhaustion, where
            correct and cost stay at their last value).
    """

    arm: int
    correct: np.ndarray
    cost: np.ndarray
    available: np.ndarray


def policy_widths(policy: object) -> tuple[int, ...]:
    """The parallel widths of a policy's action layout: its ``layout_widths`` (the layout
    it is meant for, e.g. parallel-n's one wave) or ``widths`` attribute, or its bundle's
    (a learned policy), else one attempt per SAMPLE."""
    widths = getattr(policy, "layout_widths", None)
    if widths is None:
        widths = getattr(policy, "widths", None)
    if widths is None:
        widths = getattr(getattr(policy, "bundle", None), "widths", None)
    return DEFAULT_WIDTHS if widths is None else check_widths("ReplayEvaluator.run",
                                                              tuple(widths))


class ReplayEvaluator:
    """Replays policies on R seeded orders of each evaluation query.

    Args:
        log: the pool log.
        queries: indices of the evaluation queries (default: all).
        n_orders: R, random orders per query.
        seed: seed of the orders.
        lambda_: the price of a cost unit seen by policies in their state (rewards are
            not used here: correctness and cost are reported separately).
        prior: per-query per-arm predicted accuracy, shape (log queries, arms).
        verify_cost: cost of verifying one candidate (log units).

    Episodes end within :attr:`max_steps` steps, whatever the policy (see there).
    A policy whose layout has parallel widths (:func:`policy_widths`) is replayed in an
    environment with those widths, on the same episodes; on a timed log every episode's
    latency is recorded (``EpisodeResults.latency``).
    """

    def __init__(
        self,
        log: AttemptLog | ReplayPools,
        queries: np.ndarray | None = None,
        *,
        n_orders: int = 20,
        seed: int = 0,
        lambda_: float = 0.0,
        prior: np.ndarray | None = None,
        verify_cost: float = 0.0,
    ) -> None:
        check_int("ReplayEvaluator", "n_orders", n_orders, minimum=1)
        self.pools = log if isinstance(log, ReplayPools) else ReplayPools.from_log(log)
        all_queries = np.arange(self.pools.n_queries)
        self.queries = all_queries if queries is None else np.asarray(queries, dtype=np.int64)
        self.n_orders = int(n_orders)
        self.seed = int(seed)
        self.settings = {"lambda_": lambda_, "verify_cost": verify_cost}
        if prior is not None:
            self.settings["prior"] = prior
        # One batched env per final-answer rule, and its state after the reset.
        self._venvs: dict[tuple[str, tuple[int, ...]],
                          tuple[BatchedReplayVecEnv, dict[str, np.ndarray]]] = {}

    @property
    def max_steps(self) -> int:
        """The most steps an episode can take: ``2 * max_candidates + 1``.

        Every SAMPLE or REFINE draws a candidate of the query's pool, each at most once
        (their masks close when a group is used up); every VERIFY needs a drawn,
        scored candidate not verified yet (its mask closes after it), so verifies never
        outnumber draws; then one STOP (a masked action is a STOP).
        """
        return 2 * self.pools.max_candidates + 1

    @property
    def n_episodes(self) -> int:
        """Episodes per policy: evaluation queries times orders."""
        return len(self.queries) * self.n_orders

    def _episode_seed(self) -> int:
        """The seed of the first episode (sub-environment ``k`` gets this plus ``k``):
        ``seed * 1_000_003``, so the i-th query's order ``r`` gets
        ``seed * 1_000_003 + i * R + r``."""
        return self.seed * SEED_STRIDE

    def _start(self, answer_rule: str = "default",
               widths: tuple[int, ...] = DEFAULT_WIDTHS) -> BatchedReplayVecEnv:
        """The batched env at the start of every evaluation episode.

        Built and reset once per final-answer rule and widths (seeding one generator per
        episode is the costly part), then restored from a snapshot for each later policy:
        the same episodes every time, whatever the rule and the widths (they change no
        reset).
        """
        key = (answer_rule, widths)
        if key not in self._venvs:
            venv = BatchedReplayVecEnv(self.pools, n_envs=self.n_episodes, autoreset=False,
                                       answer_rule=answer_rule, widths=widths,
                                       **self.settings)
            venv.seed(self._episode_seed())
            venv.set_options([{"query": int(q)}
                              for q in np.repeat(self.queries, self.n_orders)])
            venv.reset()
            self._venvs[key] = (venv, venv.snapshot())
            return venv
        venv, initial = self._venvs[key]
        venv.restore(initial)
        return venv

    def run(self, policy: Policy) -> EpisodeResults:
        """Replay one policy on every evaluation episode, under its final-answer rule
        (``type(policy).answer_rule``).

        Returns:
            Per-episode correctness, cost, attempts, exhaustion and (timed logs) latency,
            shape (Q, R) each.
        """
        venv = self._start(getattr(type(policy), "answer_rule", "default"),
                           policy_widths(policy))
        shape = (len(self.queries), self.n_orders)
        correct, cost = np.zeros(self.n_episodes), np.zeros(self.n_episodes)
        latency = np.zeros(self.n_episodes)
        samples = np.zeros(self.n_episodes)
        exhausted = np.zeros(self.n_episodes, dtype=bool)
        limit = self.max_steps
        for _ in range(limit + 1):
            active = ~venv.finished
            if not active.any():
                break
            actions = np.where(active, policy.act(venv.state(), venv.action_masks()), STOP)
            _, _, dones, infos = venv.step(actions)
            for row in np.flatnonzero(dones):
                info = infos[row]
                correct[row], cost[row] = info["correct"], info["cost"]
                samples[row] = info["n_samples"] + info["n_refines"]
                exhausted[row] = info["exhausted"] > 0 or info["exhaustion_hit"]
                latency[row] = np.nan if info["latency"] is None else info["latency"]
        else:  # pragma: no cover - the env ends every episode within max_steps (a bug)
            raise ParameterError("ReplayEvaluator.run", "policy",
                                 f"a policy whose episodes end within {limit} steps (2 per "
                                 "candidate and a STOP: the replay env is broken)", policy)
        return EpisodeResults(
            policy=policy.describe(),
            correct=correct.reshape(shape),
            cost=cost.reshape(shape),
            samples=samples.reshape(shape),
            exhausted=exhausted.reshape(shape),
            latency=latency.reshape(shape) if self.pools.timed else None,
        )

    def fixed_n_curves(self, arm: int = 0) -> FixedNCurves:
        """Correctness and cost after every number of samples of one arm.

        One pass: sample the arm until its pool is exhausted, reading the majority vote's
        correctness after each draw. ``curves.correct[:, :, t].mean()`` is the replayed
        majority@t; the oracles and difficulty-binned planning read these curves.
        """
        venv = self._start()
        depth = int(self.pools.group_count[:, arm].max()) if self.pools.n_queries else 0
        shape = (len(self.queries), self.n_orders, depth + 1)
        correct, cost = np.zeros(shape), np.zeros(shape)
        available = np.zeros(shape, dtype=bool)
        available[:, :, 0] = True
        for t in range(1, depth + 1):
            can = venv.action_masks()[:, sample_action(arm)]
            venv.step(np.where(can, sample_action(arm), STOP))
            can = can.reshape(shape[:2])
            available[:, :, t] = can
            now_correct = venv.stop_correctness().reshape(shape[:2])
            now_cost = venv.cost_spent().reshape(shape[:2])
            correct[:, :, t] = np.where(can, now_correct, correct[:, :, t - 1])
            cost[:, :, t] = np.where(can, now_cost, cost[:, :, t - 1])
        return FixedNCurves(arm=arm, correct=correct, cost=cost, available=available)
