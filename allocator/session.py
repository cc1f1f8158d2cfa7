"""One query's decisions, step by step: the :class:`Session` and what it exchanges.

A session (made by :meth:`allocator.oracle.BudgetOracle.session`) asks the learned policy
for the next :class:`Action` (``sample`` an arm, ``refine``, ``verify`` or ``stop``); the
executor performs it and reports an :class:`AttemptResult` (or verifier scores), until
``stop``; :meth:`Session.final_answer` is the answer to return. The session holds the same
:class:`~allocator.featurizer.QueryState` the replay environment trained the policy on, so
the decisions are the policy's own. :attr:`Session.history` records each
:class:`Action`, :class:`AttemptResult` and :class:`Verification`.

Costs the executor reports are in the log's units; the session divides them by the
bundle's ``cost_unit`` before the policy sees them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from allocator._checks import check_cost, check_int, is_int
from allocator.actions import DEFAULT_WIDTHS, Action, action_layout, has_room, mask_of_bits
from allocator.decision_source import DecisionSource
from allocator.errors import AllocatorError, ParameterError
from allocator.featurizer import QueryState
from allocator.policies.base import Policy

__all__ = ["UNINFORMED_PRIOR", "Action", "AttemptResult", "Session", "Verification",
           "check_max_samples", "open_session", "sample_limits", "served_mask"]

#: The per-arm prior of a query nothing is known about, where no difficulty predictor
#: exists: the replay environment's default (``allocator.envs.pools``), hence what a policy trained
#: without a predictor always saw. A bundle records its own uninformed prior (see
#: :mod:`allocator.oracle`); this is the fallback of bundles and baselines without one.
UNINFORMED_PRIOR = 0.5


# ------------------------------------------------------------------ records
@dataclass(frozen=True)
class AttemptResult:
    """What one attempt gave, as the executor reports it to :meth:`Session.observe`.

    Attributes:
        kind: ``"sample"`` (an independent attempt of ``arm``) or ``"refine"`` (an
            attempt conditioned on earlier ones).
        arm: the arm that produced a sample. None means the arm the session asked for
            (or the bundle's only arm).
        answer: the extracted answer (any hashable; strings usually); None when the
            attempt gave no answer (it does not vote).
        cost: what the attempt cost, in the log's units (tokens, characters...).
        score: a verifier score the executor already holds for this attempt (e.g. from
            an inline reward model). It stays hidden from the policy until a
            ``verify`` step reveals it (:meth:`Session.verify` without scores), as in
            the replay environment.
    """

    kind: str = "sample"
    arm: str | None = None
    answer: Hashable | None = None
    cost: float = 0.0
    score: float | None = None

    def __post_init__(self) -> None:
        # On every observe of the runtime's loop: checks ordered so that a plain sample
        # with a float cost and a str answer costs little.
        if self.kind != "sample" and self.kind != "refine":
            raise ParameterError("AttemptResult", "kind", "'sample' or 'refine'", self.kind)
        cost = self.cost
        if type(cost) is not float or not 0.0 <= cost < math.inf:
            object.__setattr__(self, "cost", _cost("AttemptResult", "cost", cost))
        if self.score is not None:
            score = float(self.score)
            object.__setattr__(self, "score", None if math.isnan(score) else score)
        try:
            hash(self.answer)
        except TypeError:
            raise ParameterError("AttemptResult", "answer", "a hashable answer or None",
                                 self.answer) from None


@dataclass(frozen=True)
class Verification:
    """A verifier call recorded in :attr:`Session.history`: candidate -> score, its cost,
    and whether it re-scored candidates verified before."""

    scores: dict[int, float]
    cost: float
    rescore: bool = False


#: A cost's check (also used by the oracle): finite and >= 0, in the log's units.
_cost = check_cost


def served_mask(owner: str, arms: tuple[str, ...], served: Sequence[str] | str | None
                ) -> np.ndarray:
    """The arms an executor serves, as a bool mask over ``arms`` (all when None).

    Raises:
        ParameterError: an empty list or an arm not in ``arms``.
    """
    if served is None:
        return np.ones(len(arms), dtype=bool)
    names = [served] if isinstance(served, str) else list(served)
    if not names or any(name not in arms for name in names):
        raise ParameterError(owner, "arms", f"a non-empty list of the arms {list(arms)}",
                             served)
    return np.isin(np.array(arms), names)


def sample_limits(owner: str, arms: tuple[str, ...],
                  limits: Mapping[str, int] | None) -> np.ndarray:
    """Most samples per arm as an int64 array over ``arms``, -1 where unlimited.

    Raises:
        ParameterError: an arm not in ``arms``, or a limit that is not an integer >= 0.
    """
    out = np.full(len(arms), -1, dtype=np.int64)
    for arm, limit in (limits or {}).items():
        if arm not in arms or not is_int(limit, 0):
            raise ParameterError(owner, "max_samples_per_arm",
                                 f"arm -> integer >= 0 for arms in {list(arms)}", {arm: limit})
        out[arms.index(arm)] = int(limit)
    return out


def check_max_samples(owner: str, max_samples: object) -> int | None:
    """``max_samples`` as an int, or None (no cap).

    Raises:
        ParameterError: not None and not an integer >= 0.
    """
    return check_int(owner, "max_samples", max_samples, minimum=0, none=True)  # type: ignore[no-any-return]


def open_session(source: DecisionSource, owner: str, *, query: str | None, lambda_: float,
                 prior: Any, metadata: Mapping[str, Any] | None,
                 arms: Sequence[str] | str | None, supports_refine: bool,
                 supports_verify: bool, max_samples: object,
                 max_samples_per_arm: Mapping[str, int] | None) -> Session:
    """The one way sessions are opened (by :meth:`BudgetOracle.session
    <allocator.oracle.BudgetOracle.session>` and :meth:`PolicyOracle.session
    <allocator.executors.PolicyOracle.session>`): the arguments every source shares,
    checked here once.

    Args:
        source: the decision source (see :mod:`allocator.decision_source`).
        owner: who is asking (named in errors).
        query: the query text.
        lambda_: the price of one cost unit, already checked by the source (its range
            is the source's business).
        prior: an explicit per-arm prior, or None: ``source.prior_for(query, metadata)``.
        metadata: the query's metadata, for the source's prior.
        arms: the arms the executor serves (None: all).
        supports_refine: whether REFINE may be chosen.
        supports_verify: whether VERIFY may be chosen.
        max_samples: most attempts (samples + refinements), or None.
        max_samples_per_arm: most samples per arm (see ``source.sample_caps``).

    Raises:
        ParameterError: an invalid argument (the message names it and ``owner``).
    """
    served = served_mask(owner, source.arms, arms)
    cap = check_max_samples(owner, max_samples)
    limits = source.sample_caps(cap, max_samples_per_arm, owner=owner)
    return Session(source, query=query, lambda_=lambda_,
                   prior=source.prior_for(query, metadata, prior=prior, owner=owner),
                   served=served, limits=limits, supports_refine=bool(supports_refine),
                   supports_verify=bool(supports_verify), max_samples=cap)


def _decision_function(policy: Any, n_arms: int, widths: tuple[int, ...]
                       ) -> Callable[[QueryState, int], int]:
    """The policy's ``decide(state, allowed bits) -> index`` for the session's layout.

    Without parallel widths the policy's ``decision_function(n_arms)`` is called as it
    always was (so a policy written before widths existed keeps working); with widths it
    gets ``widths`` too. An object with only ``act_one(state, mask)`` gets Policy's
    default: ``act_one`` on the mask as a bool array.
    """
    own = getattr(policy, "decision_function", None)
    if not callable(own):
        own = functools.partial(Policy.decision_function, policy)
    if widths == DEFAULT_WIDTHS:
        return own(n_arms)  # type: ignore[no-any-return]
    return own(n_arms, widths=widths)  # type: ignore[no-any-return]


# ------------------------------------------------------------------ session
class Session:
    """One query's decisions: ask :meth:`next_action`, perform it, report, repeat.

    Create sessions with :meth:`~allocator.oracle.BudgetOracle.session` (or
    :meth:`~allocator.executors.PolicyOracle.session`; both call :func:`open_session`).
    The loop::

        session = oracle.session(query, lambda_=0.05)
        while (action := session.next_action()).kind != "stop":
            if action.kind == "verify":
                session.verify(my_verifier(session.state.unverified()), cost=...)
            else:  # action.width attempts at once (1 unless the layout has widths)
                for answer, cost in my_executor(query, action, n=action.width):
                    session.observe(AttemptResult(action.kind, action.arm, answer, cost))
        return session.final_answer()

    Which actions the policy may choose (its mask): ``stop`` always; ``sample(arm)`` for
    arms the executor serves, while fewer than ``max_samples`` attempts were drawn and
    fewer than the arm's cap (by default the largest pool of the arm the policy was
    trained on: see :meth:`~allocator.oracle.BudgetOracle.sample_caps`); ``refine``
    while fewer than ``max_samples`` attempts were drawn, once a sample was drawn (a
    refinement is conditioned on drafts, as in replay), when the executor supports it;
    ``verify`` when the executor supports it and candidates were drawn since the last
    verification; with a source whose layout has parallel widths (``source.widths``,
    e.g. a bundle's :attr:`~allocator.bundle.Bundle.widths`), ``sample(arm)×w`` where the
    arm can give ``w`` more under its cap and ``w`` more attempts fit under
    ``max_samples``. A ``×w`` decision is a wave: its ``w`` results are reported one by
    one before the next decision (see :meth:`next_action`).

    The executor need not follow the advice: it may report a sample of another arm than
    the one asked, a refinement when a sample was asked, or a verification at any time.
    The session records what actually happened (its state is what the executor reports)
    and the next decision reads that state. Reporting after ``stop`` is refused.

    Attributes:
        query: the query text, if given.
        lambda_: the price of one cost unit the policy sees.
        prior: the per-arm prior the policy sees.
        widths: the parallel widths of the layout the policy decides in (``(1,)``: one
            attempt per SAMPLE).
    """

    def __init__(self, oracle: DecisionSource, *, query: str | None, lambda_: float,
                 prior: np.ndarray, served: np.ndarray, limits: np.ndarray,
                 supports_refine: bool, supports_verify: bool,
                 max_samples: int | None) -> None:
        self._oracle = oracle
        self.query = query
        self.lambda_ = float(lambda_)
        self.prior = prior
        self._served = served
        self._limits = limits
        self._refine = bool(supports_refine)
        self._verify = bool(supports_verify)
        self._max_samples = max_samples
        arms = len(oracle.arms)
        self.widths: tuple[int, ...] = tuple(getattr(oracle, "widths", DEFAULT_WIDTHS))
        self._layout = layout = action_layout(arms, self.widths)
        self._n_actions = layout.n
        self._decide = _decision_function(oracle.policy, arms, self.widths)
        # The mask as an int bit set (bit a: action a allowed), from precomputed bits.
        self._arm_bits = [bit if ok else 0
                          for bit, ok in zip(layout.sample_bits, served.tolist(), strict=True)]
        self._served_bits = sum(self._arm_bits)
        self._limit_list = limits.tolist()
        self._limited = any(limit >= 0 for limit in self._limit_list)
        self._state = QueryState(len(oracle.arms), prior=prior, lam=self.lambda_)
        self._history: list[Action | AttemptResult | Verification] = []
        self._pending: Action | None = None
        self._wave_left = 0  # results the pending wave still awaits (0: no wave open)
        self._hidden: dict[int, float] = {}
        self._fresh = 0  # candidates drawn since the last verification
        self._cost = 0.0
        self._done = False

    # ------------------------------------------------------------ reading
    @property
    def state(self) -> QueryState:
        """The query state the policy reads (treat it as read-only)."""
        return self._state

    @property
    def history(self) -> list[Action | AttemptResult | Verification]:
        """Decisions and reports in order: :class:`Action`, :class:`AttemptResult`,
        :class:`Verification` (a copy)."""
        return list(self._history)

    @property
    def cost_spent(self) -> float:
        """Cost reported so far (attempts and verifications), in the log's units."""
        return self._cost

    @property
    def done(self) -> bool:
        """Whether the policy chose ``stop``."""
        return self._done

    @property
    def wave_outstanding(self) -> int:
        """Results the current wave still awaits: after a ``SAMPLE(arm)×w`` decision,
        ``w`` minus the attempts observed since (0 when no wave is open)."""
        return self._wave_left

    def allowed_actions(self) -> np.ndarray:
        """The policy's mask now: bool of shape (n,) in the bundle's action layout
        (``A + 3`` actions without parallel widths)."""
        return mask_of_bits(self._allowed(), self._n_actions)

    def _allowed(self) -> int:
        """:meth:`allowed_actions` as an int bit set (bit ``a``: action ``a`` allowed): the
        mask rule of :mod:`allocator.actions` on what this executor makes available."""
        state = self._state
        drawn = len(state.answers)
        room = has_room(drawn, self._max_samples)
        available = 0
        if room:
            if self._limited:
                for bit, limit, count in zip(self._arm_bits, self._limit_list,
                                             state.samples.tolist(), strict=True):
                    if limit < 0 or count < limit:
                        available |= bit
            else:
                available = self._served_bits
        return self._layout.allowed_bits(
            available, room=room,
            refine=self._refine and drawn > state.refines,  # a refinement needs a draft
            verify=self._verify and self._fresh > 0,
            wide_bits=self._wide_allowed(drawn) if self._layout.has_widths and room else 0)

    def _wide_allowed(self, drawn: int) -> int:
        """The SAMPLE(arm)×w bits allowed: a served arm that can give ``w`` more (under
        its cap) with room for ``w`` more attempts (under ``max_samples``)."""
        layout, counts = self._layout, self._state.samples.tolist()
        allowed = 0
        for arm, served in enumerate(self._served.tolist()):
            if not served:
                continue
            limit = self._limit_list[arm]
            for width, bit in zip(self.widths[1:], layout.wide_bits[arm], strict=True):
                if ((limit < 0 or counts[arm] + width <= limit)
                        and has_room(drawn + width - 1, self._max_samples)):
                    allowed |= bit
        return allowed

    # ------------------------------------------------------------ deciding
    def next_action(self) -> Action:
        """The policy's next decision on the current state (deterministic arg max).

        Asking again before reporting returns the same action; after ``stop``, ``stop``.

        Waves. A ``SAMPLE(arm)×w`` decision (``action.width == w > 1``) opens a *wave*:
        the executor launches the ``w`` attempts together and reports each with
        :meth:`observe`, in launch order, with no decision in between
        (:attr:`wave_outstanding` counts the results still awaited). Asking again before
        any of them is reported returns the same action; asking once some but not all
        were reported is refused, since the policy never decides mid-wave (nor does the
        replay environment, which draws the ``w`` attempts at once).

        Raises:
            AllocatorError: a wave was partly reported (report its other results first).
        """
        if self._pending is not None:
            if 0 < self._wave_left < self._pending.width:
                raise self._mid_wave("next_action")
            return self._pending
        action = self._oracle.action(self._decide(self._state, self._allowed()))
        self._history.append(action)
        self._pending = action
        self._wave_left = action.width if action.kind == "sample" and action.width > 1 else 0
        self._done = action.kind == "stop"
        return action

    def observe(self, result: AttemptResult) -> int:
        """Record an attempt: a sample of an arm, or a refinement.

        Args:
            result: what the attempt gave; ``cost`` in the log's units.

        Returns:
            The candidate's index (for :meth:`verify`).

        Raises:
            AllocatorError: the session has stopped.
            ParameterError: an unknown arm, or a sample without arm where the session
                cannot tell which.
        """
        self._check_open("observe")
        if not isinstance(result, AttemptResult):
            raise ParameterError("Session.observe", "result", "an AttemptResult", result)
        cost = result.cost / self._oracle.cost_unit
        if result.kind == "refine":
            index = self._state.add_refine(result.answer, cost)
        else:
            index = self._state.add_sample(self._arm_of(result), result.answer, cost)
        if result.score is not None:
            self._hidden[index] = result.score
        self._fresh += 1
        self._record(result, result.cost)
        return index

    def verify(self, scores: Mapping[int, float] | None = None, cost: float = 0.0, *,
               rescore: bool = False) -> None:
        """Record a verifier call on drawn, unverified candidates.

        Args:
            scores: candidate index (as :meth:`observe` returned) -> score; NaN for a
                candidate verified without a usable score. None: reveal the scores
                reported with the attempts (:attr:`AttemptResult.score`).
            cost: the verifier's cost, in the log's units.
            rescore: also accept candidates verified before, replacing their scores (a
                tournament re-judging its reigning champion). The replay environment
                never re-scores: use it only where the executor really judged again.

        Raises:
            AllocatorError: the session has stopped.
            ParameterError: an index that is not a drawn (and, without ``rescore``,
                unverified) candidate.
        """
        self._check_open("verify")
        if 0 < self._wave_left < getattr(self._pending, "width", 1):
            raise self._mid_wave("verify")
        cost = _cost("Session.verify", "cost", cost)
        if scores is None:
            scores = dict(self._hidden)
        scores = {int(index): float(score) for index, score in scores.items()}
        self._state.verify(scores, cost / self._oracle.cost_unit, rescore=rescore)
        for index in scores:
            self._hidden.pop(index, None)
        self._fresh = 0
        self._record(Verification(scores, cost, rescore), cost)

    def final_answer(self) -> Hashable | None:
        """The answer to return: the best-scoring verified answer if any candidate with an
        answer was verified, else the majority vote; None if no attempt gave an answer.

        Ties go to the answer seen first (deterministic; the replay environment instead
        credits tied answers with their mean correctness).
        """
        tied = self._state.final_answers()
        if not tied:
            return None
        first_seen = {}
        for position, answer in enumerate(self._state.answers):
            first_seen.setdefault(answer, position)
        return min(tied, key=first_seen.__getitem__)

    # ------------------------------------------------------------ helpers
    def _check_open(self, name: str) -> None:
        if self._done:
            raise AllocatorError(f"Session.{name}: the session has stopped (the policy chose "
                                 "STOP); return session.final_answer(), and start a new "
                                 "session with oracle.session(...) for another query.")

    def _mid_wave(self, name: str) -> AllocatorError:
        pending = self._pending
        return AllocatorError(
            f"Session.{name}: the wave {pending!s} has {self._wave_left} of its "
            f"{getattr(pending, 'width', 1)} results outstanding; report each with "
            "session.observe(...) (in launch order) before asking for the next decision "
            "or verifying.")

    def _arm_of(self, result: AttemptResult) -> int:
        arms = self._oracle.arms
        if result.arm is None:
            pending = self._pending
            if pending is not None and pending.kind == "sample":
                return arms.index(pending.arm)
            if len(arms) == 1:
                return 0
            raise ParameterError("Session.observe", "result.arm",
                                 f"the arm of the sample, one of {list(arms)} (no sample was "
                                 "asked, so the session cannot tell)", None)
        if result.arm not in arms:
            raise ParameterError("Session.observe", "result.arm",
                                 f"one of the bundle's arms {list(arms)}", result.arm)
        return arms.index(result.arm)

    def _record(self, event: AttemptResult | Verification, cost: float) -> None:
        self._history.append(event)
        self._cost += cost
        if self._wave_left > 1 and isinstance(event, AttemptResult):
            # a wave's result: the wave stays pending until its last
            self._wave_left -= 1
            return
        self._wave_left = 0
        self._pending = None

    def __repr__(self) -> str:
        return (f"Session(query={self.query!r}, lambda_={self.lambda_:g}, "
                f"drawn={self._state.drawn}, cost_spent={self._cost:g}, done={self._done})")

