"""The replay environment: spend test-time compute on one logged query per episode."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from allocator.actions import STOP, action_layout, has_room
from allocator.envs._branches import add_key
from allocator.envs.pools import (
    ReplayPools,
    ReplaySettings,
    UniformStream,
    draw_episode,
    shuffle_order,
    stream_block,
)
from allocator.errors import ParameterError
from allocator.featurizer import QueryState
from allocator.final_answer import credit, leaders
from allocator.logs.table import AttemptLog

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

    ``Discrete(A + 3)`` for a log with ``A`` arms (default ``widths``), the same layout
    whatever the log supports: unsupported actions are masked, not removed (see
    :meth:`action_masks`).

    | action      | meaning                                                             |
    |-------------|---------------------------------------------------------------------|
    | 0           | ``STOP``: return the final answer; always allowed                   |
    | 1 .. A      | ``SAMPLE(arm)`` (arm = action - 1): draw the arm's next sample;     |
    |             | masked once the arm's pool for this query is empty                  |
    | A + 1       | ``REFINE``: draw a refinement conditioned on exactly what was drawn |
    |             | (see "Refinements"); masked where the log holds none                |
    | A + 2       | ``VERIFY``: reveal the verifier scores of every drawn, unverified   |
    |             | candidate that has one, or apply the logged tournament that saw     |
    |             | exactly the candidates drawn (see "Verification"); masked if none   |

    ``SAMPLE`` and ``REFINE`` are also masked once ``max_samples`` attempts were drawn.

    With ``widths=(1, w2, ...)`` the space grows to ``Discrete(n_actions(A, widths))``:
    after VERIFY come, for each extra width ``w``, the ``A`` actions ``SAMPLE(arm)×w``
    (:mod:`allocator.actions`), which launch ``w`` attempts of the arm as one parallel
    wave: they draw the arm's next ``w`` samples, in the order ``w`` single ``SAMPLE``
    actions would, and are masked unless the pool has ``w`` left and ``max_samples`` has
    room for ``w`` more.

    Taking a masked action never raises: the episode ends as if ``STOP`` was taken, with
    ``info["invalid_action"] = True``.

    ## Latency

    Each action is one *wave* of calls; a wave's latency (seconds, from the log's
    ``started_at`` / ``ended_at``) is:

    - ``SAMPLE(arm)`` and ``REFINE``: the drawn row's duration, plus the durations of
      the rows charged with it, which ran before it (the summary and selection rows of a
      workspace the REFINE opens), added one after the other;
    - ``SAMPLE(arm)×w``: the longest duration among its ``w`` rows (they run in parallel);
    - ``VERIFY``: the span of the logged rows whose cost it charges (latest ``ended_at``
      minus earliest ``started_at`` over the pending candidates' verdict rows and the
      applied event's votes), 0 when it charges no logged row (a ``verify_cost`` price);
    - ``STOP``: 0.

    The episode's latency is the sum of its waves' (the critical path: waves run one
    after the other). On a log that does not time every row replay can charge
    (``pools.timed``), latency is not defined: ``info["latency"]`` is None (not 0, not
    NaN: an unknown latency must not be averaged as a fast one) and ``mu`` must be 0.

    ## Refinements

    A refinement is conditioned on earlier candidates, so it is replayed only where the
    live executor would have produced it: refinements are grouped by the workspace (the
    summary) they were conditioned on, and REFINE draws the next refinement of the
    workspace in use (random order within it) while it has any; otherwise it opens the
    workspace whose sources are exactly the candidates drawn since the workspace in use
    was opened (the first round: the drafts drawn so far; the next round: the
    refinements drawn from the workspace in use and the drafts drawn meanwhile), and that
    opening pays the workspace's logged cost (its summary, or its selection's tournament).
    REFINE is never offered before a
    draft. Refinements that do not record what they were conditioned on are never drawn
    (on a simulated log, rounds open in order; see :class:`allocator.envs._branches.Branches`).

    ## Verification

    A candidate's independent score (a verdict, a reward model's score) is revealed by
    VERIFY at the cost of its logged verdicts (``verify_cost`` where the log has none).
    A tournament's scores depend on the opponents drawn, so on a query with tournament
    rows VERIFY instead applies a logged *event*: the scores the live session received
    when it verified exactly the candidates drawn now, after exactly the events applied
    so far; it costs the logged cost of the event's judge votes. Old tournament logs
    without events get no VERIFY (``pools.notes`` says so).

    ## Observation Space

    ``Box(n_features(A),)`` (``2A + 13`` today), float32, made by
    :func:`allocator.featurizer.featurize` (the same featurizer the runtime uses). The
    features, their order and generic bounds are the spec's
    (:mod:`allocator.feature_spec`); the bounds below are tightened from the log:

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
    | 2A + 12    | leader posterior: P(Binomial(top1 + top2 + 1, 1/2) <= top1) | 0   | 1     |

    "Votes" are drawn samples and refinements that gave an answer; "pool" bounds come from
    the log's largest pools and costs, "log" from its score range.

    ## Rewards

    Every attempt costs ``-lambda * cost / cost_unit`` (the first REFINE of a workspace
    adds its summary's cost; ``VERIFY`` costs what its verdicts or votes cost); ``STOP``
    (or a masked action) adds the correctness of the
    final answer, in [0, 1]. The return is thus ``correctness - lambda * cost / cost_unit``:
    with the default ``cost_unit`` (the log's mean sample cost), lambda is the price of an
    average sample in units of accuracy.

    With ``mu > 0`` every action also costs ``-mu * latency`` (its wave's seconds): the
    return is ``correctness - lambda * cost / cost_unit - mu * latency``.

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
    ``lambda_range``), and the query's shuffled pools (``options={"order": "logged"}``:
    in log order, which replays an executor run's own draws). ``reset(options={"query": q})``
    forces query ``q`` (an index into the log). All randomness comes from
    ``self.np_random``, read in blocks (:class:`allocator.envs.pools.UniformStream`) with the
    protocol of :func:`allocator.envs.pools.draw_episode`;
    :class:`allocator.envs.BatchedReplayVecEnv` follows
    the same protocol, so its sub-environment ``i`` seeded with ``s`` replays exactly the
    episodes of a ``ReplayEnv`` reset with seed ``s``.

    ## Episode End

    The episode terminates on ``STOP`` or on a masked action. It cannot run forever: the
    pools are finite and ``VERIFY`` is masked until a new verifiable candidate is drawn (or
    a logged event matches). There
    is no truncation (``max_samples`` masks further draws instead, so every episode ends
    with a graded answer).

    ## Info

    Every step (and reset): ``action_mask`` (int8, as Gymnasium masks), ``query`` (index
    into the log), ``lambda``, ``cost`` (spent so far, in the log's cost units),
    ``exhausted`` (number of arms whose pool for this query ran dry in this episode),
    ``latency`` (seconds so far, see "Latency"; None on an untimed log) and ``waves``
    (actions other than STOP taken so far). On
    the terminal step also: ``correct`` (the final answer's correctness), ``n_samples``,
    ``n_refines``, ``n_verified``, ``invalid_action`` (the action was masked) and
    ``exhaustion_hit`` (the masked action was a ``SAMPLE`` of an arm with fewer samples
    left than it asked for: the policy wanted more than the pool holds). The exhaustion
    rate of a policy is the mean of ``exhausted > 0`` (masked policies) or of
    ``exhaustion_hit`` (unmasked ones) over terminal infos.

    ## Arguments

    Args:
        log: the graded log, or its :class:`allocator.envs.pools.ReplayPools` (to share one
            precomputation between many environments).
        lambda_: the price of one cost unit (ignored when ``lambda_range`` is given).
        lambda_range: ``(lo, hi)``: draw lambda per episode in this range instead.
        lambda_sampling: ``"uniform"`` or ``"log-uniform"`` (needs ``lo > 0``).
        verify_cost: the price of verifying a candidate whose score has no logged verdict,
            in log cost units; None (default): the log's
            (:func:`allocator.envs.pools.log_verify_cost`).
        cost_unit: the cost that lambda prices; default: the log's mean sample cost.
        prior: predicted per-attempt accuracy, shape (Q, A); 0.5 everywhere by default.
        queries: indices of the queries episodes are drawn from (a train or test split).
        max_samples: most attempts (samples + refinements) per episode.
        answer_rule: the final-answer rule: ``"default"``, ``"weighted-vote"`` or
            ``"last-arm"`` (see "Rewards").
        mu: the price of one second of latency, in the reward's units (0: latency is
            reported, not priced); > 0 needs a timed log.
        widths: the parallel widths of SAMPLE, ascending from 1 (see "Action Space").
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
        verify_cost: float | None = None,
        cost_unit: float | None = None,
        prior: np.ndarray | None = None,
        queries: np.ndarray | list[int] | None = None,
        max_samples: int | None = None,
        answer_rule: str = "default",
        mu: float = 0.0,
        widths: tuple[int, ...] | list[int] = (1,),
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None:
            raise ParameterError("ReplayEnv", "render_mode", "None (no rendering)", render_mode)
        self.answer_rule = check_answer_rule("ReplayEnv", answer_rule)
        self.pools = log if isinstance(log, ReplayPools) else ReplayPools.from_log(log)
        self.settings = ReplaySettings.create(
            self.pools, "ReplayEnv", lambda_=lambda_, lambda_range=lambda_range,
            lambda_sampling=lambda_sampling, verify_cost=verify_cost, cost_unit=cost_unit,
            prior=prior, queries=queries, max_samples=max_samples, mu=mu, widths=widths,
        )
        self.render_mode = render_mode
        self.n_arms = self.pools.n_arms
        self._layout = action_layout(self.n_arms, self.settings.widths)
        self.action_space = spaces.Discrete(self._layout.n)
        self.observation_space = self.settings.observation_space(self.pools)
        self._stream = UniformStream(stream_block(self.pools))
        self._verify_costs = self.settings.verify_costs(self.pools).tolist()
        self._verifiable = self.pools.cand_verifiable.tolist()
        self._blocks = self.pools.cand_blocks_verify.astype(int).tolist()
        self._lists = self.pools.branches.lists
        self._timed = self.pools.timed
        self._durations = self.pools.cand_duration.tolist()
        self._state: QueryState | None = None
        self._done = True

    # ------------------------------------------------------------ action layout
    @property
    def refine_action(self) -> int:
        """The index of ``REFINE`` (:mod:`allocator.actions`)."""
        return self._layout.refine

    @property
    def verify_action(self) -> int:
        """The index of ``VERIFY`` (:mod:`allocator.actions`)."""
        return self._layout.verify

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
        self._pool_sizes = pools.arm_count[query]
        self._arm_count = self._pool_sizes.tolist()
        branches = pools.branches
        self._ws_range = (int(branches.ws_offsets[query]), int(branches.ws_offsets[query + 1]))
        self._ev_range = (int(branches.ev_offsets[query]), int(branches.ev_offsets[query + 1]))
        self._group_start = pools.group_start[query].tolist()
        # Signatures of the drafts drawn, of every candidate drawn, of the candidates
        # drawn since the workspace in use opened; that workspace, its refinements left; the last
        # event applied (global indices, -1: none); local position -> candidate index.
        self._sig_samples = self._sig_all = self._sig_ws = 0
        self._n_ws = self._ws_left = 0
        self._ws_cur = self._last_ev = -1
        self._index_of: dict[int, int] = {}
        self._pending_cost = 0.0
        self._blocked = 0  # drawn candidates a logged verifier never judged
        self._state = QueryState(self.n_arms, prior=self.settings.prior[query], lam=episode.lam)
        self._correct_sum: dict[int, float] = {}
        self._hidden: dict[int, float] = {}
        self._score_sum: dict[int, float] = {}  # verified scores summed per answer
        self._last_arm = -1
        self._exhausted = [False] * self.n_arms
        self._cost = 0.0
        self._latency = 0.0 if self._timed else float("nan")
        self._waves = 0
        # The span of the pending verdicts' rows (what the next VERIFY lasts).
        self._pending_start, self._pending_end = float("inf"), float("-inf")
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
        if action == STOP or not valid:
            return self._finish(invalid=not valid, action=action)
        arm = self._layout.arm_of(action)
        if arm >= 0:
            cost, latency = self._draw_sample(arm)
            for _ in range(1, self._layout.width_of(action)):  # a wave: the longest call
                more, duration = self._draw_sample(arm)
                cost += more
                latency = max(latency, duration)
        elif action == self._layout.refine:
            cost, latency = self._draw_refine()
        else:
            cost, latency = self._verify()
        self._mask = self._compute_mask()
        self._waves += 1
        reward = -self._lam * (cost / self.settings.cost_unit)
        if self._timed:
            self._latency += latency
            if self.settings.mu:
                reward -= self.settings.mu * latency
        return self._state.features(), reward, False, False, self._info()

    @property
    def query_state(self) -> QueryState:
        """The current episode's state (what every policy reads), after :meth:`reset`."""
        if self._state is None:
            raise ResetNeeded("ReplayEnv.query_state: call reset() first")
        return self._state

    def action_masks(self) -> np.ndarray:
        """Allowed actions now, bool of shape (n_actions,) (the method MaskablePPO calls)."""
        return self._mask.copy()

    # --------------------------------------------------------------- dynamics
    def _compute_mask(self) -> np.ndarray:
        state = self._state
        assert state is not None
        cap = self.settings.max_samples
        room = cap is None or has_room(state.drawn, cap)  # drawn costs a sum: only if capped
        wide = None
        if self._layout.has_widths:  # w left in the pool, room for w more
            left = self._pool_sizes - state.samples
            wide = np.array([(left >= w) & (cap is None or state.drawn + w <= cap)
                             for w in self._layout.widths[1:]])
        return self._layout.allowed_mask(
            state.samples < self._pool_sizes,
            room=room, refine=room and (self._ws_left > 0 or self._next_workspace() >= 0),
            verify=(bool(self._hidden) and not self._blocked) or self._next_event() >= 0,
            wide=wide)

    def _next_workspace(self) -> int:
        """The workspace REFINE would open now (global index), -1 if none matches."""
        state, lists = self._state, self._lists
        assert state is not None
        drafts = int(state.samples.sum())
        if not drafts:
            return -1
        sig, size = ((self._sig_samples, drafts) if self._ws_cur < 0
                     else (self._sig_ws, self._n_ws))
        for w in range(*self._ws_range):
            if lists["ws_ok"][w] and lists["ws_prev"][w] == self._ws_cur and (
                    lists["ws_free"][w]
                    or (lists["ws_sig"][w] == sig and lists["ws_nsrc"][w] == size)):
                return w
        return -1

    def _next_event(self) -> int:
        """The logged verification VERIFY would apply now (global index), -1 if none."""
        state, lists = self._state, self._lists
        assert state is not None
        for e in range(*self._ev_range):
            if (lists["ev_ok"][e] and lists["ev_prev"][e] == self._last_ev
                    and lists["ev_sig"][e] == self._sig_all and lists["ev_n"][e] == state.drawn):
                return e
        return -1

    def _draw(self, position: int, arm: int | None, extra: float = 0.0,
              extra_latency: float = 0.0) -> tuple[float, float]:
        """Draw the candidate at a deck position; returns its cost (log units) and its
        duration (seconds), plus ``extra`` and ``extra_latency`` (a workspace's
        summary)."""
        pools, state = self.pools, self._state
        assert state is not None
        local = self._deck[position]
        row = self._start + local
        answer = int(pools.cand_answer[row])
        cost = float(pools.cand_cost[row]) + extra
        key = self._lists["cand_key"][row]
        self._sig_all = add_key(self._sig_all, key)
        if arm is not None:
            self._sig_samples = add_key(self._sig_samples, key)
        self._last_key = key
        vote = None if answer < 0 else answer
        normalised = cost / self.settings.cost_unit
        index = (state.add_refine(vote, normalised) if arm is None
                 else state.add_sample(arm, vote, normalised))
        self._index_of[local] = index
        key = vote
        if key is not None:
            correct = float(pools.cand_correct[row])
            self._correct_sum[key] = self._correct_sum.get(key, 0.0) + correct
        self._blocked += self._blocks[row]
        if self._verifiable[row]:
            self._hidden[index] = float(pools.cand_score[row])  # NaN: no usable score
            self._pending_cost += self._verify_costs[row]
            if self._timed:
                self._pending_start = min(self._pending_start,
                                          self._lists["cand_verify_start"][row])
                self._pending_end = max(self._pending_end, self._lists["cand_verify_end"][row])
        self._cost += cost
        return cost, self._durations[row] + extra_latency

    def _draw_sample(self, arm: int) -> tuple[float, float]:
        assert self._state is not None
        drawn = int(self._state.samples[arm])
        drew = self._draw(self._arm_start[arm] + drawn, arm)
        if self._ws_cur >= 0:  # a draft drawn meanwhile: a source of the next workspace
            self._n_ws += 1
            self._sig_ws = add_key(self._sig_ws, self._last_key)
        self._last_arm = arm
        if drawn + 1 == self._arm_count[arm]:
            self._exhausted[arm] = True
        return drew

    def _draw_refine(self) -> tuple[float, float]:
        lists, extra, extra_latency = self._lists, 0.0, 0.0
        if self._ws_left == 0:  # open the next workspace, paying for its summary
            w = self._next_workspace()
            self._ws_cur, self._ws_left = w, lists["ws_count"][w]
            self._sig_ws, self._n_ws = 0, 0
            extra = lists["ws_cost"][w]
            extra_latency = lists["ws_latency"][w]
        w = self._ws_cur
        slot = lists["ws_count"][w] - self._ws_left
        group = self.n_arms + w - self._ws_range[0]
        drew = self._draw(self._group_start[group] + slot, None, extra, extra_latency)
        self._ws_left -= 1
        self._n_ws += 1
        self._sig_ws = add_key(self._sig_ws, self._last_key)
        return drew

    def _verify(self) -> tuple[float, float]:
        """Verify the pending candidates, or apply a logged event; cost and latency."""
        assert self._state is not None
        event = self._next_event()
        cost = self._pending_cost
        start, end = self._pending_start, self._pending_end
        self._pending_start, self._pending_end = float("inf"), float("-inf")
        if event >= 0:
            start = min(start, self._lists["ev_start"][event])
            end = max(end, self._lists["ev_end"][event])
        latency = end - start if start <= end else 0.0  # no logged row: 0
        if event >= 0:
            cost = cost + self._lists["ev_cost"][event]
            self._apply_event(event, cost)
            self._cost += cost
            return cost, latency
        # This verification's scores summed per answer (in draw order), then added to the
        # running sums: the batched env's order of additions.
        batch: dict[int, float] = {}
        for index in sorted(self._hidden):
            answer = self._state.answers[index]
            if answer is not None and not np.isnan(self._hidden[index]):
                batch[answer] = batch.get(answer, 0.0) + self._hidden[index]
        for answer, total in batch.items():
            self._score_sum[answer] = self._score_sum.get(answer, 0.0) + total
        self._state.verify(self._hidden, cost / self.settings.cost_unit)
        self._hidden = {}
        self._pending_cost = 0.0
        self._blocked = 0  # drawn candidates a logged verifier never judged
        self._cost += cost
        return cost, latency

    def _apply_event(self, event: int, cost: float) -> None:
        """Give the session's logged scores of a tournament event (re-scores included)."""
        state, branches = self._state, self.pools.branches
        assert state is not None
        lo, hi = branches.ev_score_offsets[event], branches.ev_score_offsets[event + 1]
        scores = {self._index_of[int(p)]: float(v) for p, v in
                  zip(branches.ev_score_pos[lo:hi], branches.ev_score_val[lo:hi], strict=True)}
        state.verify(scores, cost / self.settings.cost_unit, rescore=True)
        best = branches.ev_best[event]
        self._score_sum = {int(a): float(branches.ev_sum[event, a])
                           for a in np.flatnonzero(best > -np.inf)}
        self._last_ev = event

    def _final_answers(self) -> list[int]:
        """The answers tied for the final answer under the env's ``answer_rule``."""
        state = self._state
        assert state is not None
        if self.answer_rule == "weighted-vote" and self._score_sum:
            return leaders(self._score_sum)
        if self.answer_rule == "last-arm":
            return leaders(state.arm_votes[self._last_arm]  # type: ignore[arg-type]
                           if self._last_arm >= 0 else {})
        return list(state.final_answers())  # type: ignore[arg-type]

    def _correctness(self) -> float:
        """Expected correctness of the final answer (ties share the credit:
        :func:`allocator.final_answer.credit`)."""
        assert self._state is not None
        return credit(self._final_answers(), self._correct_sum,
                      self._state.votes)  # type: ignore[arg-type]

    def _finish(self, *, invalid: bool, action: int) -> tuple[np.ndarray, float, bool, bool,
                                                              dict[str, Any]]:
        state = self._state
        assert state is not None
        self._done = True
        correct = self._correctness()
        info = self._info()
        arm = self._layout.arm_of(action)
        width = self._layout.width_of(action)
        info.update(
            correct=correct,
            n_samples=int(state.samples.sum()),
            n_refines=state.refines,
            n_verified=state.verified,
            invalid_action=invalid,
            exhaustion_hit=bool(invalid and arm >= 0
                                and state.samples[arm] + width > self._arm_count[arm]),
        )
        return state.features(), correct, True, False, info

    def _info(self) -> dict[str, Any]:
        return {
            "action_mask": self._mask.astype(np.int8),
            "query": self._query,
            "lambda": self._lam,
            "cost": self._cost,
            "exhausted": sum(self._exhausted),
            "latency": self._latency if self._timed else None,
            "waves": self._waves,
        }
