"""The replay environment: spend test-time compute on one logged query per episode."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from allocator.errors import ParameterError
from allocator.featurizer import QueryState
from allocator.logs.table import AttemptLog
from envs.pools import (
    ReplayPools,
    ReplaySettings,
    UniformStream,
    draw_episode,
    shuffle_order,
    stream_block,
)

__all__ = ["ANSWER_RULES", "ReplayEnv", "check_answer_rule"]

#: The final-answer rules (see :class:`ReplayEnv`, "Rewards").
ANSWER_RULES = ("default", "weighted-vote", "last-arm")


def check_answer_rule(owner: str, rule: object) -> str:
    """``rule`` if it is one of :data:`ANSWER_RULES`, else :class:`ParameterError`."""
    if not isinstance(rule, str) or rule not in ANSWER_RULES:
        raise ParameterError(owner, "answer_rule", f"one of {ANSWER_RULES}", rule)
    return rule


class ReplayEnv(gym.Env[np.ndarray, np.int64]):
    """Replay a graded log of LLM attempts: sample more, refine, verify or stop.

    ## Description

    Each episode is one query of the log, drawn uniformly (from ``queries`` if given).
    Independent samples of an arm are exchangeable, so drawing them without replacement in
    a random order replays any sample-more/stop policy *exactly* on the logged pool: at
    reset, each arm's samples of the query are shuffled into a seeded random order, and
    each ``SAMPLE`` takes the next one. A policy never gets a sample the log does not hold:
    an arm whose pool is empty is masked (*pool exhaustion*, counted in the info).

    ## Action Space

    ``Discrete(A + 3)`` for a log with ``A`` arms, the same layout whatever the log
    supports: unsupported actions are masked, not removed (see :meth:`action_masks`).

    | action      | meaning                                                             |
    |-------------|---------------------------------------------------------------------|
    | 0           | ``STOP``: return the final answer; always allowed                   |
    | 1 .. A      | ``SAMPLE(arm)`` (arm = action - 1): draw the arm's next sample;     |
    |             | masked once the arm's pool for this query is empty                  |
    | A + 1       | ``REFINE``: draw the query's next refinement (lowest unused round   |
    |             | first, random order within a round); masked if none is left         |
    | A + 2       | ``VERIFY``: reveal the verifier scores of every drawn, unverified   |
    |             | candidate that has one (``verify_cost`` each); masked if none       |

    ``SAMPLE`` and ``REFINE`` are also masked once ``max_samples`` attempts were drawn.
    Taking a masked action never raises: the episode ends as if ``STOP`` was taken, with
    ``info["invalid_action"] = True``.

    ## Observation Space

    ``Box(2A + 12,)``, float32, made by :func:`allocator.featurizer.featurize` (the same
    featurizer the runtime uses; bounds are tightened from the log):

    | index      | observation                                                | min | max   |
    |------------|------------------------------------------------------------|-----|-------|
    | 0 .. A-1   | prior per arm (predicted per-attempt accuracy)             | 0   | 1     |
    | A .. 2A-1  | log1p(samples drawn) per arm                               | 0   | pool  |
    | 2A         | log1p(attempts drawn: samples + refinements)               | 0   | pool  |
    | 2A + 1     | leader share: votes of the leading answer / votes          | 0   | 1     |
    | 2A + 2     | margin: (leader votes - runner-up votes) / votes           | 0   | 1     |
    | 2A + 3     | answer entropy / log(votes)                                | 0   | 1     |
    | 2A + 4     | distinct answers / votes                                   | 0   | 1     |
    | 2A + 5     | attempts without an answer / attempts drawn                | 0   | 1     |
    | 2A + 6     | 1 once any candidate was verified                          | 0   | 1     |
    | 2A + 7     | best verified score of an answered candidate (0 if none)   | log | log   |
    | 2A + 8     | log1p(refinements drawn)                                   | 0   | pool  |
    | 2A + 9     | cost spent, in cost units                                  | 0   | pool  |
    | 2A + 10    | lambda                                                     | lo  | hi    |
    | 2A + 11    | log lambda: ln(max(lambda, 1e-6))                          | ln lo | ln hi |

    "Votes" are drawn samples and refinements that gave an answer; "pool" bounds come from
    the log's largest pools and costs, "log" from its score range.

    ## Rewards

    Every attempt costs ``-lambda * cost / cost_unit`` (``VERIFY`` costs ``verify_cost``
    per newly verified candidate); ``STOP`` (or a masked action) adds the correctness of the
    final answer, in [0, 1]. The return is thus ``correctness - lambda * cost / cost_unit``:
    with the default ``cost_unit`` (the log's mean sample cost), lambda is the price of an
    average sample in units of accuracy.

    The final answer is the best-scoring *verified* candidate with an answer if there is
    one (candidates tied on the best score share the credit: the mean correctness of the
    tied answers); otherwise the majority vote of every drawn sample and refinement with
    the rule of :mod:`allocator.logs.votes` (attempts without an answer do not vote; ties
    get the mean correctness of the tied answers; nothing to vote on scores 0). An
    answer's correctness is the mean over the drawn attempts that gave it.
    That is the ``"default"`` ``answer_rule``; two others serve baselines that answer
    differently:

    - ``"weighted-vote"`` (score-weighted majority, as CISC, Taubenfeld et al. 2025): the
      answer whose *verified* candidates' scores sum highest (sums per answer, over every
      verified candidate with an answer and a score; scores are expected to be >= 0);
      without any, the majority vote. Ties share the credit.
    - ``"last-arm"`` (the vote cascade of Yue et al. 2024): the majority among the
      samples of the arm sampled last (refinements and verification ignored); nothing
      to vote on scores 0.

    ## Starting State

    A query drawn uniformly, nothing drawn yet, a lambda (fixed, or drawn from
    ``lambda_range``), and the query's shuffled pools. ``reset(options={"query": q})``
    forces query ``q`` (an index into the log). All randomness comes from
    ``self.np_random``, read in blocks (:class:`envs.pools.UniformStream`) with the
    protocol of :func:`envs.pools.draw_episode`; :class:`envs.BatchedReplayVecEnv` follows
    the same protocol, so its sub-environment ``i`` seeded with ``s`` replays exactly the
    episodes of a ``ReplayEnv`` reset with seed ``s``.

    ## Episode End

    The episode terminates on ``STOP`` or on a masked action. It cannot run forever: the
    pools are finite and ``VERIFY`` is masked until a new scored candidate is drawn. There
    is no truncation (``max_samples`` masks further draws instead, so every episode ends
    with a graded answer).

    ## Info

    Every step (and reset): ``action_mask`` (int8, as Gymnasium masks), ``query`` (index
    into the log), ``lambda``, ``cost`` (spent so far, in the log's cost units),
    ``exhausted`` (number of arms whose pool for this query ran dry in this episode). On
    the terminal step also: ``correct`` (the final answer's correctness), ``n_samples``,
    ``n_refines``, ``n_verified``, ``invalid_action`` (the action was masked) and
    ``exhaustion_hit`` (the masked action was a ``SAMPLE`` of an arm with no sample
    left: the policy wanted more than the pool holds). The exhaustion rate of a policy is
    the mean of ``exhausted > 0`` (masked policies) or of ``exhaustion_hit`` (unmasked
    ones) over terminal infos.

    ## Arguments

    Args:
        log: the graded log, or its :class:`envs.pools.ReplayPools` (to share one
            precomputation between many environments).
        lambda_: the price of one cost unit (ignored when ``lambda_range`` is given).
        lambda_range: ``(lo, hi)``: draw lambda per episode in this range instead.
        lambda_sampling: ``"uniform"`` or ``"log-uniform"`` (needs ``lo > 0``).
        verify_cost: the verifier's cost per newly verified candidate, in log cost units.
        cost_unit: the cost that lambda prices; default: the log's mean sample cost.
        prior: predicted per-attempt accuracy, shape (Q, A); 0.5 everywhere by default.
        queries: indices of the queries episodes are drawn from (a train or test split).
        max_samples: most attempts (samples + refinements) per episode.
        answer_rule: the final-answer rule: ``"default"``, ``"weighted-vote"`` or
            ``"last-arm"`` (see "Rewards").
        render_mode: no rendering is supported; must be None.

    Attributes:
        pools: the log's candidates regrouped for replay.
        settings: the validated parameters.
        n_arms: number of arms ``A``.

    Raises:
        EnvironmentConfigError: for a log without sample attempts, or no usable cost unit.
        ParameterError: for an invalid parameter (the message names it).
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (Gymnasium's convention)

    def __init__(
        self,
        log: AttemptLog | ReplayPools,
        *,
        lambda_: float = 0.05,
        lambda_range: tuple[float, float] | None = None,
        lambda_sampling: str = "uniform",
        verify_cost: float = 0.0,
        cost_unit: float | None = None,
        prior: np.ndarray | None = None,
        queries: np.ndarray | list[int] | None = None,
        max_samples: int | None = None,
        answer_rule: str = "default",
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None:
            raise ParameterError("ReplayEnv", "render_mode", "None (no rendering)", render_mode)
        self.answer_rule = check_answer_rule("ReplayEnv", answer_rule)
        self.pools = log if isinstance(log, ReplayPools) else ReplayPools.from_log(log)
        self.settings = ReplaySettings.create(
            self.pools, "ReplayEnv", lambda_=lambda_, lambda_range=lambda_range,
            lambda_sampling=lambda_sampling, verify_cost=verify_cost, cost_unit=cost_unit,
            prior=prior, queries=queries, max_samples=max_samples,
        )
        self.render_mode = render_mode
        self.n_arms = self.pools.n_arms
        self.action_space = spaces.Discrete(self.n_arms + 3)
        self.observation_space = self.settings.observation_space(self.pools)
        self._stream = UniformStream(stream_block(self.pools))
        self._state: QueryState | None = None
        self._done = True

    # ------------------------------------------------------------ action layout
    @property
    def refine_action(self) -> int:
        """The index of ``REFINE``."""
        return self.n_arms + 1

    @property
    def verify_action(self) -> int:
        """The index of ``VERIFY``."""
        return self.n_arms + 2

    # -------------------------------------------------------------------- API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode on a query drawn with ``self.np_random`` (see the class docs)."""
        super().reset(seed=seed)
        if seed is not None:
            self._stream.clear()
        pools = self.pools
        episode = draw_episode(self.np_random, self._stream, pools, self.settings, options)
        query = episode.query
        self._query, self._lam = query, episode.lam
        self._start = int(pools.cand_offsets[query])
        groups = pools.cand_group[self._start : int(pools.cand_offsets[query + 1])]
        self._deck = shuffle_order(episode.keys, groups).tolist()
        self._arm_start = pools.arm_start[query].tolist()
        self._arm_count = pools.arm_count[query].tolist()
        self._refine_start = int(pools.refine_start[query])
        self._refine_count = int(pools.refine_count[query])
        self._state = QueryState(self.n_arms, prior=self.settings.prior[query], lam=episode.lam)
        self._correct_sum: dict[int, float] = {}
        self._hidden: dict[int, float] = {}
        self._score_sum: dict[int, float] = {}  # verified scores summed per answer
        self._last_arm = -1
        self._exhausted = [False] * self.n_arms
        self._cost = 0.0
        self._done = False
        self._mask = self._compute_mask()
        return self._state.features(), self._info()

    def step(
        self, action: int | np.integer
    ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Take one action; a masked action ends the episode as ``STOP`` would."""
        if self._done or self._state is None:
            raise ResetNeeded("ReplayEnv: call reset() before step() (the episode has ended).")
        action = int(action)
        valid = 0 <= action < len(self._mask) and bool(self._mask[action])
        if action == 0 or not valid:
            return self._finish(invalid=not valid, action=action)
        if action <= self.n_arms:
            cost = self._draw_sample(action - 1)
        elif action == self.refine_action:
            cost = self._draw_refine()
        else:
            cost = self._verify()
        self._mask = self._compute_mask()
        reward = -self._lam * (cost / self.settings.cost_unit)
        return self._state.features(), reward, False, False, self._info()

    @property
    def query_state(self) -> QueryState:
        """The current episode's state (what every policy reads), after :meth:`reset`."""
        if self._state is None:
            raise ResetNeeded("ReplayEnv.query_state: call reset() first")
        return self._state

    def action_masks(self) -> np.ndarray:
        """Allowed actions now, bool of shape (A + 3,) (the method MaskablePPO calls)."""
        return self._mask.copy()

    # --------------------------------------------------------------- dynamics
    def _compute_mask(self) -> np.ndarray:
        state = self._state
        assert state is not None
        cap = self.settings.max_samples
        room = cap is None or state.drawn < cap
        mask = np.zeros(self.n_arms + 3, dtype=bool)
        mask[0] = True
        for arm in range(self.n_arms):
            mask[1 + arm] = room and state.samples[arm] < self._arm_count[arm]
        mask[self.refine_action] = room and state.refines < self._refine_count
        mask[self.verify_action] = bool(self._hidden)
        return mask

    def _draw(self, position: int, arm: int | None) -> float:
        """Draw the candidate at a deck position; returns its cost (log units)."""
        pools, state = self.pools, self._state
        assert state is not None
        row = self._start + self._deck[position]
        answer = int(pools.cand_answer[row])
        cost = float(pools.cand_cost[row])
        key = None if answer < 0 else answer
        normalised = cost / self.settings.cost_unit
        index = (state.add_refine(key, normalised) if arm is None
                 else state.add_sample(arm, key, normalised))
        if key is not None:
            correct = float(pools.cand_correct[row])
            self._correct_sum[key] = self._correct_sum.get(key, 0.0) + correct
        score = float(pools.cand_score[row])
        if not np.isnan(score):
            self._hidden[index] = score
        self._cost += cost
        return cost

    def _draw_sample(self, arm: int) -> float:
        assert self._state is not None
        drawn = int(self._state.samples[arm])
        cost = self._draw(self._arm_start[arm] + drawn, arm)
        self._last_arm = arm
        if drawn + 1 == self._arm_count[arm]:
            self._exhausted[arm] = True
        return cost

    def _draw_refine(self) -> float:
        assert self._state is not None
        return self._draw(self._refine_start + self._state.refines, None)

    def _verify(self) -> float:
        assert self._state is not None
        cost = self.settings.verify_cost * len(self._hidden)
        # This verification's scores summed per answer (in draw order), then added to the
        # running sums: the batched env's order of additions.
        batch: dict[int, float] = {}
        for index in sorted(self._hidden):
            answer = self._state.answers[index]
            if answer is not None:
                batch[answer] = batch.get(answer, 0.0) + self._hidden[index]
        for answer, total in batch.items():
            self._score_sum[answer] = self._score_sum.get(answer, 0.0) + total
        self._state.verify(self._hidden, cost / self.settings.cost_unit)
        self._hidden = {}
        self._cost += cost
        return cost

    def _final_answers(self) -> list[int]:
        """The answers tied for the final answer under the env's ``answer_rule``."""
        state = self._state
        assert state is not None
        if self.answer_rule == "weighted-vote" and self._score_sum:
            table = self._score_sum
        elif self.answer_rule == "last-arm":
            table = state.arm_votes[self._last_arm] if self._last_arm >= 0 else {}
        else:
            return list(state.final_answers())  # type: ignore[arg-type]
        if not table:
            return []
        top = max(table.values())
        return [answer for answer, value in table.items() if value == top]

    def _correctness(self) -> float:
        """Expected correctness of the final answer (ties share the credit)."""
        assert self._state is not None
        tied = sorted(self._final_answers())
        if not tied:
            return 0.0
        votes = self._state.votes
        return float(np.mean([self._correct_sum[a] / votes[a] for a in tied]))

    def _finish(self, *, invalid: bool, action: int) -> tuple[np.ndarray, float, bool, bool,
                                                              dict[str, Any]]:
        state = self._state
        assert state is not None
        self._done = True
        correct = self._correctness()
        info = self._info()
        arm = action - 1
        info.update(
            correct=correct,
            n_samples=int(state.samples.sum()),
            n_refines=state.refines,
            n_verified=state.verified,
            invalid_action=invalid,
            exhaustion_hit=bool(invalid and 0 <= arm < self.n_arms
                                and state.samples[arm] >= self._arm_count[arm]),
        )
        return state.features(), correct, True, False, info

    def _info(self) -> dict[str, Any]:
        return {
            "action_mask": self._mask.astype(np.int8),
            "query": self._query,
            "lambda": self._lam,
            "cost": self._cost,
            "exhausted": sum(self._exhausted),
        }
