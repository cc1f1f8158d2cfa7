"""Decision sources: the trained oracle and any baseline policy, behind one :class:`Session`.

A strategy executor drives a :class:`~allocator.session.Session` and does not care who
decides: :meth:`allocator.oracle.BudgetOracle.session` makes sessions of the learned
policy, :class:`PolicyOracle` (and :func:`policy_session`) the very same sessions around
a registered baseline. Executors create one session per query through a
:class:`SessionFactory`, which :func:`session_factory` builds from either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from allocator._checks import check_number, check_prior
from allocator.actions import DEFAULT_WIDTHS, check_widths
from allocator.errors import ParameterError
from allocator.featurizer import QueryState, StateBatch
from allocator.policies.base import Policy
from allocator.session import (
    UNINFORMED_PRIOR,
    Action,
    Session,
    open_session,
    sample_limits,
)
from allocator.verifiers.base import Problem

__all__ = ["PolicyOracle", "SessionFactory", "policy_session", "session_factory"]


class PolicyOracle:
    """A baseline policy as a decision source: what :class:`Session` needs, and ``session``.

    It implements :class:`~allocator.decision_source.DecisionSource` (``arms``,
    ``cost_unit``, ``policy``, ``action``, ``prior_for``, ``sample_caps``) for any policy
    and opens its sessions with :func:`~allocator.session.open_session`, as
    :class:`~allocator.oracle.BudgetOracle` does: baseline sessions are real
    :class:`Session` objects, with the same masks, state and history, so a strategy can
    run Adaptive-Consistency, fixed-N or the learned allocator without changing a line::

        from allocator.policies import make_policy

        fixed = PolicyOracle(make_policy("fixed-n", n=8), arms=["gpt-4o-mini"])
        session = fixed.session(max_samples=40)         # a Session, like oracle.session()

    Args:
        policy: the deciding policy (e.g. ``make_policy("adaptive-consistency")``); its
            ``arm`` fields index ``arms``. An object with only the batch method
            ``act(StateBatch, mask)`` is wrapped so that sessions can call ``act_one``.
        arms: the arm names, in the policy's arm order.
        cost_unit: the log units one cost unit of the policy's state stands for (the
            ``cost_spent`` feature is divided by it); 1 by default.
        priors: where priors come from when a session gets none: an object with
            ``prior_for(query, metadata)`` over the same arms, e.g. the
            :class:`~allocator.oracle.BudgetOracle` of a bundle trained on the same log,
            so that a baseline sees the prior the learned policy sees (the one rule of
            :mod:`allocator.oracle`). None: :data:`~allocator.session.UNINFORMED_PRIOR`
            per arm, the prior of a replay without a difficulty predictor.
        widths: the parallel widths of the action layout its sessions decide in
            (:func:`~allocator.actions.check_widths`): ``(1,)`` (the default) offers one
            attempt per SAMPLE; ``(1, 4)`` also offers SAMPLE(arm)×4, a wave of 4 (e.g.
            for ``make_policy("parallel-n", n=4)``).

    Attributes:
        policy: the policy (or its ``act_one`` wrapper).
        arms: the arm names.
        cost_unit: the cost unit.
        priors: the prior source, or None.
        widths: the layout's parallel widths.
    """

    def __init__(self, policy: Policy, arms: Sequence[str], *, cost_unit: float = 1.0,
                 priors: Any = None, widths: Sequence[int] = DEFAULT_WIDTHS) -> None:
        if not callable(getattr(policy, "act", None)):
            raise ParameterError("PolicyOracle", "policy", "a Policy (an object with "
                                 "act(StateBatch, mask)), e.g. make_policy('fixed-n', n=5)",
                                 policy)
        names = (arms,) if isinstance(arms, str) else tuple(arms)
        if not names or len(set(names)) != len(names) or not all(
                isinstance(name, str) and name for name in names):
            raise ParameterError("PolicyOracle", "arms", "a non-empty list of distinct arm "
                                 "names", arms)
        if not isinstance(cost_unit, int | float):
            raise ParameterError("PolicyOracle", "cost_unit", "a finite number > 0", cost_unit)
        check_number("PolicyOracle", "cost_unit", cost_unit, strict=True)
        self.policy = policy if callable(getattr(policy, "act_one", None)) else _BatchOnly(
            policy)
        self.arms: tuple[str, ...] = names
        self.cost_unit = float(cost_unit)
        if priors is not None and (not callable(getattr(priors, "prior_for", None))
                                   or tuple(getattr(priors, "arms", ())) != names):
            raise ParameterError("PolicyOracle", "priors", f"an object with prior_for(query, "
                                 f"metadata) over the arms {list(names)} (a BudgetOracle)",
                                 priors)
        self.priors = priors
        self.widths: tuple[int, ...] = check_widths("PolicyOracle", widths)

    def action(self, index: int) -> Action:
        """The :class:`Action` of an action index (see :mod:`allocator.actions`)."""
        return Action.of_index(index, self.arms, self.widths)

    def session(
        self,
        query: str | None = None,
        *,
        lambda_: float = 0.0,
        prior: np.ndarray | Sequence[float] | None = None,
        arms: Sequence[str] | None = None,
        supports_refine: bool = False,
        supports_verify: bool = False,
        max_samples: int | None = None,
        max_samples_per_arm: Mapping[str, int] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Session:
        """Start deciding for one query (the arguments of ``BudgetOracle.session``).

        Args:
            query: the query text (kept on the session; baselines do not read it).
            lambda_: the price of one cost unit (the ``lambda`` feature; baselines mostly
                ignore it).
            prior: per-arm prior accuracy, shape (A,); default: the ``priors`` source's
                ``prior_for(query, metadata)``, else
                :data:`~allocator.session.UNINFORMED_PRIOR` per arm.
            arms: the arms the executor serves (default all).
            supports_refine: whether REFINE may be chosen.
            supports_verify: whether VERIFY may be chosen.
            max_samples: most attempts (samples + refinements) for this query.
            max_samples_per_arm: most samples per arm.
            metadata: the query's metadata, for the ``priors`` source.

        Raises:
            ParameterError: an invalid argument.
        """
        owner = "PolicyOracle.session"
        return open_session(self, owner, query=query,
                            lambda_=check_number(owner, "lambda_", lambda_), prior=prior,
                            metadata=metadata, arms=arms, supports_refine=supports_refine,
                            supports_verify=supports_verify, max_samples=max_samples,
                            max_samples_per_arm=max_samples_per_arm)

    def prior_for(self, query: str | None = None, metadata: Mapping[str, Any] | None = None,
                  *, prior: Any = None, owner: str = "PolicyOracle.prior_for") -> np.ndarray:
        """The prior the policy sees for one query, shape (A,): ``prior`` if given, else
        the ``priors`` source's ``prior_for(query, metadata)``, else
        :data:`~allocator.session.UNINFORMED_PRIOR` per arm.

        Raises:
            ParameterError: a prior (given or from the source) of another shape or with
                values outside [0, 1].
        """
        if prior is None and self.priors is not None:
            prior = self.priors.prior_for(query, metadata)
        if prior is None:
            return np.full(len(self.arms), UNINFORMED_PRIOR)
        return check_prior(owner, "prior", prior, (len(self.arms),))

    def sample_caps(self, max_samples: int | None = None,
                    max_samples_per_arm: Mapping[str, int] | None = None, *,
                    owner: str = "PolicyOracle.sample_caps") -> np.ndarray:
        """The most samples per arm, int64 over :attr:`arms`: ``max_samples_per_arm``
        where given, else no cap (-1); a baseline has no trained pool to stay within, so
        ``max_samples`` changes nothing here (the session caps the attempts in all).

        Raises:
            ParameterError: an unknown arm, or a cap that is not an integer >= 0.
        """
        return sample_limits(owner, self.arms, max_samples_per_arm)

    def __repr__(self) -> str:
        policy = getattr(self.policy, "wrapped", self.policy)
        describe = getattr(policy, "describe", None)
        name = describe() if callable(describe) else repr(policy)
        extra = f", widths={self.widths}" if self.widths != DEFAULT_WIDTHS else ""
        return (f"PolicyOracle({name}, arms={list(self.arms)}, cost_unit={self.cost_unit:g}"
                f"{extra})")


class _BatchOnly:
    """A policy with only ``act`` on batches: ``act_one`` decides on ``to_batch()``."""

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped

    def act(self, state: StateBatch, mask: np.ndarray) -> np.ndarray:
        return np.asarray(self.wrapped.act(state, mask))

    def act_one(self, state: QueryState, mask: np.ndarray) -> int:
        return int(self.act(state.to_batch(), np.asarray(mask, dtype=bool)[None, :])[0])

    def decision_function(self, n_arms: int, widths: tuple[int, ...] = DEFAULT_WIDTHS
                          ) -> Any:
        return Policy.decision_function(self, n_arms, widths)  # type: ignore[arg-type]


def policy_session(
    policy: Policy,
    arms: Sequence[str],
    *,
    lambda_: float = 0.0,
    prior: np.ndarray | Sequence[float] | None = None,
    max_samples: int | None = None,
    supports_refine: bool = False,
    supports_verify: bool = False,
    query: str | None = None,
    cost_unit: float = 1.0,
    widths: Sequence[int] = DEFAULT_WIDTHS,
) -> Session:
    """A :class:`Session` deciding with a baseline policy (shorthand of :class:`PolicyOracle`).

    Args:
        policy: e.g. ``make_policy("adaptive-consistency", threshold=0.95)``.
        arms: the arm names, in the policy's arm order.
        lambda_: the price of one cost unit.
        prior: per-arm prior accuracy; default :data:`~allocator.session.UNINFORMED_PRIOR`.
        max_samples: most attempts for the query.
        supports_refine: whether REFINE may be chosen.
        supports_verify: whether VERIFY may be chosen.
        query: the query text.
        cost_unit: see :class:`PolicyOracle`.
        widths: the layout's parallel widths (see :class:`PolicyOracle`).
    """
    return PolicyOracle(policy, arms, cost_unit=cost_unit, widths=widths).session(
        query, lambda_=lambda_, prior=prior, max_samples=max_samples,
        supports_refine=supports_refine, supports_verify=supports_verify)


@runtime_checkable
class SessionFactory(Protocol):
    """Makes the session of one query for an executor.

    Executors call it with the problem, the arms they serve and what they support, so
    that the policy never asks for an action the executor cannot perform.
    """

    def __call__(self, problem: Problem, *, arms: Sequence[str], supports_refine: bool,
                 supports_verify: bool) -> Session:
        """A new session for ``problem``."""
        ...


class _OracleSessions:
    """:func:`session_factory` of an object with a ``session`` method."""

    def __init__(self, oracle: Any, kwargs: Mapping[str, Any]) -> None:
        self.oracle = oracle
        self.kwargs = dict(kwargs)

    def __call__(self, problem: Problem, *, arms: Sequence[str], supports_refine: bool,
                 supports_verify: bool) -> Session:
        served = [arm for arm in self.oracle.arms if arm in set(arms)]
        if not served:
            raise ParameterError("session_factory", "arms", f"arms the deciding policy knows "
                                 f"({list(self.oracle.arms)}); the executor serves only",
                                 list(arms))
        kwargs = {"arms": served, "supports_refine": supports_refine,
                  "supports_verify": supports_verify, **self.kwargs}
        if problem.metadata and "metadata" not in kwargs and (
                hasattr(self.oracle, "predict_priors") or getattr(self.oracle, "priors", None)
                is not None):
            kwargs["metadata"] = problem.metadata
        return self.oracle.session(problem.question, **kwargs)

    def __repr__(self) -> str:
        return f"session_factory({self.oracle!r}, **{self.kwargs!r})"


def session_factory(decider: Any, arms: Sequence[str] | None = None,
                    **session_kwargs: Any) -> SessionFactory:
    """A :class:`SessionFactory` for the learned oracle or a baseline policy.

    Args:
        decider: a :class:`~allocator.oracle.BudgetOracle` (``allocator.load(...)``), a
            :class:`PolicyOracle`, a :class:`~allocator.policies.Policy` (then ``arms``
            is required: the policy's arm names), or a :class:`SessionFactory` (returned
            as is).
        arms: the arm names of a plain policy, in its arm order.
        **session_kwargs: fixed arguments of every ``decider.session(...)`` call
            (``lambda_``, ``target_cost``, ``max_samples``, ``prior``...). ``arms``,
            ``supports_refine`` and ``supports_verify`` given here override what the
            executor passes.

    Raises:
        ParameterError: ``decider`` is none of these, or a policy comes without arms.
    """
    if isinstance(decider, Policy) or (callable(getattr(decider, "act", None))
                                       and not hasattr(decider, "session")):
        if arms is None:
            raise ParameterError("session_factory", "arms", "the policy's arm names (a plain "
                                 "policy indexes arms by number)", None)
        decider = PolicyOracle(decider, arms)
    if hasattr(decider, "session") and hasattr(decider, "arms"):
        return _OracleSessions(decider, session_kwargs)
    if callable(decider):
        if session_kwargs:
            raise ParameterError("session_factory", "session_kwargs", "empty for a factory "
                                 "(it makes its own sessions)", session_kwargs)
        return decider  # type: ignore[no-any-return]
    raise ParameterError("session_factory", "decider", "a BudgetOracle, a PolicyOracle, a "
                         "Policy or a session factory", decider)
