"""Model selection on the validation queries: keep the best policy PPO passed through.

:class:`ValidationSelector` (a Stable-Baselines3 callback) scores the policy on the
validation queries (:func:`validation_score`) when PPO starts and every ``every`` steps,
and at the end puts back the best-scoring weights; the test queries are never used.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from allocator._checks import check_int
from allocator.errors import ParameterError
from allocator.featurizer import StateBatch, featurize
from allocator.policies.base import Policy

__all__ = ["ORDER_SEED_OFFSET", "ModelPolicy", "ValidationSelector", "validation_score"]

#: Offset of the selection replays' order seed (the safety net uses 2, the test 0).
ORDER_SEED_OFFSET = 3


@dataclass(frozen=True, eq=False)
class ModelPolicy(Policy):
    """A MaskablePPO model in training, as a deterministic :class:`Policy` (not
    registered): the masked arg max on featurized states, the model's observation
    normaliser applied, exactly what the exported bundle decides."""

    name: ClassVar[str] = "learned (in training)"
    deployable: ClassVar[bool] = True

    model: Any = field(repr=False)

    @property
    def widths(self) -> tuple[int, ...]:
        """The parallel widths of the model's training env (what its actions index)."""
        from allocator.training.rl.train import replay_env

        env = self.model.get_env()
        return (1,) if env is None else replay_env(env).settings.widths

    def act(self, state: StateBatch, mask: np.ndarray) -> np.ndarray:
        from allocator.training.rl.train import policy_decisions

        return policy_decisions(self.model, featurize(state), mask)


def validation_score(model: Any, pools: Any, queries: np.ndarray, prior: np.ndarray | None,
                     lambdas: Sequence[float], *, cost_unit: float, verify_cost: float,
                     n_orders: int, seed: int, mu: float = 0.0) -> float:
    """The model's mean over ``lambdas`` of validation accuracy - lambda * cost units
    (- mu * latency in seconds, where latency is priced).

    The score is the policy's own objective averaged over its price sweep: for each lambda
    of ``lambdas``, the validation replay's mean correctness minus lambda times its mean
    cost in cost units (``cost / cost_unit``), averaged over the lambdas. Each lambda is the
    price in the policy's state, as in training, on seeded orders distinct from the
    training, safety-net and test orders. With ``mu > 0`` (a timed log) the mean episode
    latency times ``mu`` is subtracted too: the training reward's objective.
    """
    from allocator.training.evaluation.replay import ReplayEvaluator

    policy = ModelPolicy(model)
    rewards = []
    for lam in lambdas:
        results = ReplayEvaluator(pools, queries, n_orders=n_orders,
                                  seed=seed + ORDER_SEED_OFFSET, lambda_=float(lam),
                                  prior=prior, verify_cost=verify_cost).run(policy)
        reward = (float(results.correct.mean())
                  - float(lam) * float(results.cost.mean()) / cost_unit)
        if mu and results.latency is not None:
            reward -= mu * float(results.latency.mean())
        rewards.append(reward)
    return float(np.mean(rewards))


class ValidationSelector(BaseCallback):
    """Score the policy on the validation queries during training; keep the best.

    PPO's last iterate is not always its best: on a few hundred training queries it can
    drift away from the warm start's behaviour-cloned baseline (see
    :mod:`allocator.training.rl.warm_start`) and end below it. As Stable-Baselines3's
    ``EvalCallback``
    keeps a best model, this scores the policy on the **validation** queries (carved from
    the training queries by :func:`allocator.training.rl.calibrate.validation_split`; the test
    queries
    are never used) when PPO starts (the warm-started policy) and every ``every`` steps, and
    at the end puts back the weights (and observation statistics) of the best-scoring one.

    The replay settings (pools, cost unit, verify cost) are the training environment's,
    read when training starts.

    Args:
        queries: the validation queries (never the test queries).
        prior: per-query, per-arm prior (as in training).
        lambdas: the prices the score averages over.
        every: environment steps between scores (>= 1); the first is at PPO's start (the
            warm-started policy), the last at its end.
        n_orders: seeded orders per validation query.
        seed: the run's seed.
        sink: called with ``(num_timesteps, {"validation/score": s})`` for each score
            (e.g. :meth:`TrainingMonitor.record`: the learning curve and MLflow).

    Attributes:
        scores: ``(num_timesteps, score)`` in order.
        best_timesteps: the timesteps of the kept policy (None before any score).
    """

    def __init__(self, queries: np.ndarray, prior: np.ndarray | None,
                 lambdas: Sequence[float], *, every: int, n_orders: int, seed: int,
                 sink: Any | None = None) -> None:
        super().__init__()
        every = check_int("ValidationSelector", "every", every, minimum=1)
        if len(queries) == 0 or not lambdas:
            raise ParameterError("ValidationSelector", "queries", "at least one validation "
                                 "query and one lambda", (len(queries), len(lambdas)))
        self.queries, self.prior = np.asarray(queries), prior
        self.lambdas = tuple(float(lam) for lam in lambdas)
        self.every, self.n_orders, self.seed = every, n_orders, seed
        self.sink = sink
        self.scores: list[tuple[int, float]] = []
        self.best_timesteps: int | None = None
        self._best: tuple[float, dict[str, Any], Any] | None = None
        self._next = 0
        self._replay: dict[str, Any] = {}

    def _score_now(self) -> None:
        steps = int(self.model.num_timesteps)
        score = validation_score(self.model, self._replay["pools"], self.queries,
                                 self.prior, self.lambdas,
                                 cost_unit=self._replay["cost_unit"],
                                 verify_cost=self._replay["verify_cost"],
                                 n_orders=self.n_orders, seed=self.seed,
                                 mu=self._replay["mu"])
        self.scores.append((steps, score))
        if self.sink is not None:
            self.sink(steps, {"validation/score": score})
        if self._best is None or score > self._best[0]:
            normalizer = self.model.get_vec_normalize_env()
            self._best = (score, copy.deepcopy(self.model.policy.state_dict()),
                          None if normalizer is None else copy.deepcopy(normalizer.obs_rms))
            self.best_timesteps = steps
        self._next = steps + self.every

    def _on_training_start(self) -> None:
        from allocator.training.rl.train import replay_env

        env = replay_env(self.training_env)
        self._replay = {"pools": env.pools, "cost_unit": env.settings.cost_unit,
                        "verify_cost": env.settings.verify_cost, "mu": env.settings.mu}
        self._score_now()

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if int(self.model.num_timesteps) >= self._next:
            self._score_now()

    def _on_training_end(self) -> None:
        if not self.scores or self.scores[-1][0] != int(self.model.num_timesteps):
            self._score_now()
        self.restore_best()

    def restore_best(self) -> None:
        """Put the best-scoring weights (and observation statistics) back in the model."""
        if self._best is None:
            return
        _, weights, rms = self._best
        self.model.policy.load_state_dict(weights)
        normalizer = self.model.get_vec_normalize_env()
        if normalizer is not None and rms is not None:
            normalizer.obs_rms = copy.deepcopy(rms)

    def summary(self) -> dict[str, Any]:
        """``{"scores": [[timesteps, score]...], "best_timesteps", "best_score"}``."""
        return {"scores": [[t, s] for t, s in self.scores],
                "best_timesteps": self.best_timesteps,
                "best_score": None if self._best is None else self._best[0]}
