"""Warm start: behaviour cloning of the best baseline at every price, before PPO.

PPO from a random network spends most of its budget rediscovering what a good stopping
rule already knows, and at small prices (where the trade-offs of most logs sit) it often
never gets there. So training starts from the best deployable baseline at each price,
measured on the training queries (:func:`fit_expert`) and cloned into the policy and value
networks (:func:`clone_expert`); PPO then improves on it with everything the baselines
cannot use (the prior, the cost spent, several arms and the verifier at once). No test
query is used anywhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from allocator.actions import STOP, n_actions
from allocator.envs.pools import ReplayPools
from allocator.featurizer import StateBatch, VoteStats
from allocator.policies import POLICIES
from allocator.policies.base import Policy

if TYPE_CHECKING:
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import VecEnv

__all__ = ["PricedExpert", "clone_expert", "fit_expert", "take_rows"]


def take_rows(state: StateBatch, rows: np.ndarray) -> StateBatch:
    """The states ``rows`` of a batch, as a batch of their own (every field sliced)."""
    values: dict[str, Any] = {}
    for item in dataclasses.fields(state):
        value = getattr(state, item.name)
        if isinstance(value, VoteStats):
            value = VoteStats(**{f.name: getattr(value, f.name)[rows]
                                 for f in dataclasses.fields(value)})
        elif value is not None:
            value = np.asarray(value)[rows]
        values[item.name] = value
    return StateBatch(**values)


@dataclass(frozen=True, eq=False)
class PricedExpert:
    """The best of several baseline settings at every price.

    Attributes:
        policies: the candidate settings.
        accuracy: each setting's mean accuracy on the training queries, shape (S,).
        cost: each setting's mean cost on the training queries, in cost units, shape (S,).
    """

    policies: tuple[Policy, ...]
    accuracy: np.ndarray
    cost: np.ndarray

    def choose(self, lam: np.ndarray) -> np.ndarray:
        """The index of the setting with the best ``accuracy - lam * cost`` per price
        (ties: the cheaper, then the first)."""
        lam = np.asarray(lam, dtype=np.float64)[:, None]
        value = self.accuracy[None, :] - lam * self.cost[None, :]
        best = value.max(axis=1, keepdims=True)
        tied_cost = np.where(value >= best - 1e-12, self.cost[None, :], np.inf)
        return np.argmin(tied_cost, axis=1)

    def act(self, state: StateBatch, mask: np.ndarray) -> np.ndarray:
        """Each state's action under the setting chosen for its own price.

        The baselines act in the default layout (one attempt per SAMPLE), whose actions
        are the first ``A + 3`` of any layout: they see that part of a wider mask.
        """
        mask = np.asarray(mask, dtype=bool)[:, : n_actions(state.samples.shape[1])]
        choice = self.choose(state.lam)
        actions = np.full(state.batch_size, STOP, dtype=np.int64)
        for setting in np.unique(choice):
            rows = np.flatnonzero(choice == setting)
            actions[rows] = self.policies[setting].act(take_rows(state, rows), mask[rows])
        return actions

    def describe(self) -> list[dict[str, float | str]]:
        """The settings with their training accuracy and cost, for reports."""
        return [{"policy": p.describe(), "accuracy": float(a), "cost": float(c)}
                for p, a, c in zip(self.policies, self.accuracy, self.cost, strict=True)]


def fit_expert(pools: ReplayPools, train: np.ndarray, prior: np.ndarray | None, *,
               cost_unit: float, verify_cost: float = 0.0, n_orders: int = 4, seed: int = 0,
               policies: Sequence[str] | None = None) -> PricedExpert:
    """The best-baseline-at-every-price expert, measured on the training queries.

    Replays every baseline setting that applies to the log (the evaluator's sweep builders,
    :mod:`allocator.training.evaluation.baselines`) on the *training* queries, and keeps their mean
    accuracy and cost. At a price ``lambda`` the expert plays the setting with the best
    ``accuracy - lambda * cost`` (cost in cost units): the best baseline at that price, as
    measured on the training queries.

    Args:
        pools: the log's pools.
        train: indices of the training queries.
        prior: the out-of-fold prior of the training queries (shape (Q, A)), or None.
        cost_unit: the cost that lambda prices (the training env's).
        verify_cost: the verifier's cost per candidate, in log cost units.
        n_orders: seeded orders replayed per training query.
        seed: seed of the orders.
        policies: registry names of the candidate baselines (default: every deployable,
            deterministic registered policy that has a sweep, as the evaluator runs them).

    Returns:
        The expert; settings that do not apply to the log are left out.
    """
    from allocator.training.evaluation.baselines import BaselineContext, build_sweeps
    from allocator.training.evaluation.evaluate import DEFAULT_POLICIES

    context = BaselineContext(pools, np.asarray(train, dtype=np.int64), prior,
                              n_orders=n_orders, seed=seed, verify_cost=verify_cost)
    names = [name for name in (policies or DEFAULT_POLICIES)
             if POLICIES[name].deployable and not POLICIES[name].stochastic]
    sweeps, _ = build_sweeps(names, context)  # baselines that do not apply are left out
    candidates = [policy for settings in sweeps.values() for policy in settings]
    results = [context.replay_on_train(policy) for policy in candidates]
    return PricedExpert(
        policies=tuple(candidates),
        accuracy=np.array([r.correct.mean() for r in results]),
        cost=np.array([r.cost.mean() for r in results]) / cost_unit,
    )


@dataclass
class _Rollout:
    """What the expert did: raw observations, masks, actions and returns-to-go."""

    observations: list[np.ndarray] = dataclasses.field(default_factory=list)
    masks: list[np.ndarray] = dataclasses.field(default_factory=list)
    actions: list[np.ndarray] = dataclasses.field(default_factory=list)
    rewards: list[np.ndarray] = dataclasses.field(default_factory=list)
    dones: list[np.ndarray] = dataclasses.field(default_factory=list)

    def returns_to_go(self) -> tuple[np.ndarray, np.ndarray]:
        """Per step and env, the return from that step to its episode's end (gamma 1),
        and whether the episode ended inside the rollout (else the return is unknown)."""
        rewards, dones = np.array(self.rewards), np.array(self.dones)
        to_go = np.zeros_like(rewards)
        known = np.zeros(rewards.shape, dtype=bool)
        running = np.zeros(rewards.shape[1])
        ended = np.zeros(rewards.shape[1], dtype=bool)
        for t in range(len(rewards) - 1, -1, -1):
            running = np.where(dones[t], 0.0, running)
            ended = ended | dones[t]
            running = running + rewards[t]
            to_go[t], known[t] = running, ended
        return to_go, known


def _roll_out(env: VecEnv, expert: PricedExpert, steps: int) -> _Rollout:
    from stable_baselines3.common.vec_env import VecNormalize

    from allocator.envs.vec_replay_env import unwrap_replay_env as replay_env

    venv = replay_env(env)
    rollout = _Rollout()
    observations = env.reset()
    for _ in range(max(1, steps // venv.num_envs)):
        raw = env.get_original_obs() if isinstance(env, VecNormalize) else observations
        masks = venv.action_masks()
        actions = expert.act(venv.state(), masks)
        observations, rewards, dones, _ = env.step(actions)
        rollout.observations.append(np.asarray(raw, dtype=np.float32).copy())
        rollout.masks.append(masks.copy())
        rollout.actions.append(actions)
        rollout.rewards.append(np.asarray(rewards, dtype=np.float64))
        rollout.dones.append(np.asarray(dones, dtype=bool))
    return rollout


def clone_expert(model: MaskablePPO, expert: PricedExpert, *, steps: int, epochs: int = 10,
                 batch_size: int = 2048, seed: int = 0) -> dict[str, float]:
    """Fit ``model``'s policy to the expert's actions and its critic to their returns.

    Rolls the expert out in the training environment (prices drawn as in training), then
    fits the policy network to its actions (cross-entropy of the masked action distribution)
    and the value network to its returns-to-go (squared error), so that PPO starts from the
    expert with a critic that already knows what its states are worth.

    Args:
        model: a fresh MaskablePPO on the training env (its observation normaliser, if
            any, is updated by the rollout, as PPO's own rollouts would).
        expert: the expert to clone.
        steps: environment steps of expert rollout (all sub-environments together).
        epochs: passes over the rollout.
        batch_size: minibatch size.
        seed: seed of the minibatch order.

    Returns:
        ``{"accuracy": share of rollout decisions where the cloned policy's most likely
        action is the expert's, "policy_loss": final mean cross-entropy, "value_loss":
        final mean squared error}``.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # reproducible sums, as in training (allocator.training.rl.train)
    try:
        return _clone(model, expert, steps=steps, epochs=epochs, batch_size=batch_size,
                      seed=seed)
    finally:
        torch.set_num_threads(threads)


def _clone(model: MaskablePPO, expert: PricedExpert, *, steps: int, epochs: int,
           batch_size: int, seed: int) -> dict[str, float]:
    import torch

    env = model.get_env()
    rollout = _roll_out(env, expert, steps)
    to_go, known = rollout.returns_to_go()
    normalizer = model.get_vec_normalize_env()
    raw = np.concatenate(rollout.observations)
    observations = normalizer.normalize_obs(raw) if normalizer is not None else raw
    masks, actions = np.concatenate(rollout.masks), np.concatenate(rollout.actions)
    to_go, known = to_go.reshape(-1), known.reshape(-1)
    policy = model.policy
    policy.set_training_mode(True)
    rng = np.random.default_rng(seed)
    as_tensor = lambda a, dtype=torch.float32: torch.as_tensor(a, dtype=dtype)  # noqa: E731
    losses = (0.0, 0.0)
    for _ in range(epochs):
        order = rng.permutation(len(actions))
        total_policy = total_value = 0.0
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            values, log_prob, _ = policy.evaluate_actions(
                as_tensor(observations[rows]), as_tensor(actions[rows], torch.int64),
                action_masks=masks[rows])
            policy_loss = -log_prob.mean()
            weight = as_tensor(known[rows])
            value_loss = (weight * (values.flatten() - as_tensor(to_go[rows])) ** 2).sum() / (
                weight.sum().clamp(min=1.0))
            loss = policy_loss + model.vf_coef * value_loss
            policy.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), model.max_grad_norm)
            policy.optimizer.step()
            total_policy += policy_loss.item() * len(rows)
            total_value += value_loss.item() * len(rows)
        losses = (total_policy / len(order), total_value / len(order))
    policy.set_training_mode(False)
    with torch.no_grad():
        chosen, _ = model.predict(observations, action_masks=masks, deterministic=True)
    return {"accuracy": float(np.mean(chosen == actions)), "policy_loss": losses[0],
            "value_loss": losses[1]}
