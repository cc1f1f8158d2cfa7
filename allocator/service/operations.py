"""The service's operations on one served oracle, without HTTP: the decide replay, the
up-front budget, the batch allocation, and the descriptions of the served bundle.

Checks that need the bundle (arm names, candidate indices) raise
:class:`RequestFieldError`, naming the request field; the oracle's own checks raise
:class:`~allocator.errors.ParameterError` (lambda outside the training range,
``target_cost`` without calibration...).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from allocator.errors import ParameterError
from allocator.oracle import BudgetOracle
from allocator.service.schemas import (
    ActionOut,
    AllocateRequest,
    AllocateResponse,
    AttemptEvent,
    BudgetRequest,
    BudgetResponse,
    DecideRequest,
    DecideResponse,
    ModelInfo,
    ModelRef,
    OracleDefaults,
)
from allocator.service.state import Served
from allocator.session import AttemptResult, Session

__all__ = ["RequestFieldError", "allocate", "budget", "decide", "model_info", "model_ref"]

#: The wire names of the oracle's Python parameters (for the 422 answers).
WIRE_NAMES = {"lambda_": "lambda", "result.arm": "arm"}


class RequestFieldError(ParameterError):
    """A request field is invalid for the served bundle (answered with 422).

    Attributes:
        field: the field's dotted path in the request body (``history.3.arm``).
        expected: what the field must be.
        given: what was sent.
    """

    def __init__(self, endpoint: str, field: str, expected: str, given: object) -> None:
        super().__init__(endpoint, field, expected, given)
        self.field = field
        self.expected = expected
        self.given = given


# ------------------------------------------------------------------ decide
def decide(served: Served, request: DecideRequest) -> DecideResponse:
    """The policy's next action after the request's history.

    Stateless: the request's history is replayed into a fresh
    :class:`~allocator.session.Session` (:func:`replay`: the calls an in-process executor
    makes, ``observe`` for each sample or refinement, ``verify`` for each verifier call)
    and the session is asked ``next_action``. The policy reads only the state those
    calls build, so the answer is the one an in-process session with the same history
    gives. A wave (an action of ``width`` w > 1, from a bundle with parallel widths) is
    answered once; the client sends its w attempts in the history, in launch order,
    before asking again (the history replays without decisions in between, so a wave's
    results are plain attempts here).

    Raises:
        RequestFieldError: an unknown arm, an incomplete prior, a verify event naming a
            candidate that is not drawn or already verified...
        ParameterError: the oracle refused a parameter (e.g. lambda out of range).
    """
    oracle, where = served.oracle, "POST /v1/decide"
    _check_arms(oracle, where, "arms", request.arms)
    _check_arm_keys(oracle, where, "max_samples_per_arm", request.max_samples_per_arm)
    session = oracle.session(
        request.query, lambda_=request.lambda_, target_cost=request.target_cost,
        prior=_prior(oracle, where, "prior", request.prior), arms=request.arms,
        supports_refine=request.supports_refine, supports_verify=request.supports_verify,
        max_samples=request.max_samples, max_samples_per_arm=request.max_samples_per_arm,
        metadata=request.metadata)
    replay(session, oracle, request.history)
    if not math.isfinite(session.cost_spent):
        raise RequestFieldError(where, "history", "events whose costs add up to a finite "
                                "total", "costs that overflow")
    action = session.next_action()
    return DecideResponse(
        action=ActionOut(kind=action.kind, arm=action.arm, index=action.index,
                         width=action.width),
        final_answer=session.final_answer() if action.kind == "stop" else None,  # type: ignore[arg-type]
        lambda_=session.lambda_,
        prior=dict(zip(oracle.arms, map(float, session.prior), strict=True)),
        drawn=session.state.drawn, cost_spent=session.cost_spent, model=model_ref(served))


def replay(session: Session, oracle: BudgetOracle, history: Sequence[Any]) -> None:
    """Feed the history's events to the session, as an in-process executor reports them.

    Raises:
        RequestFieldError: an event the session refuses, named ``history.I.FIELD``.
    """
    where = "POST /v1/decide"
    for i, event in enumerate(history):
        if isinstance(event, AttemptEvent):
            _check_event_arm(oracle, where, i, event)
            try:
                session.observe(AttemptResult(event.kind, event.arm, event.answer,
                                              event.cost, event.score))
            except ParameterError as error:
                raise RequestFieldError(where, f"history.{i}", f"an attempt the session "
                                        f"accepts ({error})", event.kind) from None
        else:
            scores = None if event.scores is None else {
                index: math.nan if score is None else score
                for index, score in event.scores.items()}
            try:
                session.verify(scores, event.cost, rescore=event.rescore)
            except ParameterError:
                drawn = len(session.state.answers)
                expected = (f"indices of candidates drawn before it (0 to {drawn - 1})"
                            if event.rescore else
                            f"indices of candidates drawn before it and not verified yet "
                            f"{session.state.unverified()} (or set rescore: true)")
                raise RequestFieldError(
                    where, f"history.{i}.scores",
                    f"{expected}; candidates are numbered 0, 1, ... in history order",
                    sorted(scores or {})) from None


def _check_event_arm(oracle: BudgetOracle, where: str, i: int, event: AttemptEvent) -> None:
    if event.arm is not None and event.arm not in oracle.arms:
        raise RequestFieldError(where, f"history.{i}.arm",
                                f"one of the bundle's arms {list(oracle.arms)}", event.arm)
    if event.kind == "sample" and event.arm is None and len(oracle.arms) > 1:
        raise RequestFieldError(where, f"history.{i}.arm", f"the arm sampled, one of "
                                f"{list(oracle.arms)} (the bundle has several arms)", None)


# ------------------------------------------------------------------ budget, allocate
def budget(served: Served, request: BudgetRequest) -> BudgetResponse:
    """``BudgetOracle.budget`` of the request.

    Raises:
        RequestFieldError: an unknown arm or an incomplete prior.
        ParameterError: the oracle refused a parameter.
    """
    oracle, where = served.oracle, "POST /v1/budget"
    _check_arms(oracle, where, "arms", request.arms)
    counts = oracle.budget(request.query, prior=_prior(oracle, where, "prior", request.prior),
                           lambda_=request.lambda_, max_samples=request.max_samples,
                           arms=request.arms, metadata=request.metadata)
    arm, samples = next((a, n) for a, n in counts.items() if n)
    lam = oracle.default_lambda if request.lambda_ is None else request.lambda_
    return BudgetResponse(budget=counts, arm=arm, samples=samples, lambda_=lam,
                          model=model_ref(served))


def allocate(served: Served, request: AllocateRequest) -> AllocateResponse:
    """``BudgetOracle.allocate`` of the request.

    Raises:
        RequestFieldError: queries and n_queries both or neither given, lengths that
            differ, an unknown arm, an incomplete prior.
        ParameterError: the oracle refused a parameter.
    """
    oracle, where = served.oracle, "POST /v1/allocate"
    queries: list[str] | int = _batch(where, request)
    count = queries if isinstance(queries, int) else len(queries)
    for name, rows in (("priors", request.priors), ("metadata", request.metadata)):
        if rows is not None and len(rows) != count:
            raise RequestFieldError(where, name, f"one entry per query ({count})",
                                    f"{len(rows)} entries")
    _check_arms(oracle, where, "arm", None if request.arm is None else [request.arm])
    priors = None if request.priors is None else np.array(
        [_prior(oracle, where, f"priors.{i}", row) for i, row in enumerate(request.priors)])
    rows = oracle.allocate(queries, request.total_budget, priors=priors,
                           max_samples=request.max_samples, arm=request.arm,
                           metadata=request.metadata)
    used = sorted({arm for row in rows for arm, n in row.items() if n})
    samples = sum(sum(row.values()) for row in rows)
    costs = oracle.arm_costs
    return AllocateResponse(allocations=rows, arm=used[0] if used else None, samples=samples,
                            cost=samples * costs[used[0]] if used else 0.0,
                            model=model_ref(served))


def _batch(where: str, request: AllocateRequest) -> list[str] | int:
    if (request.queries is None) == (request.n_queries is None):
        raise RequestFieldError(where, "queries", "given, or else n_queries (one of the "
                                "two: the texts, or their number)",
                                "both" if request.queries is not None else "neither")
    return request.queries if request.queries is not None else int(request.n_queries or 0)


# ------------------------------------------------------------------ shared checks
def _check_arms(oracle: BudgetOracle, where: str, field: str,
                arms: Sequence[str] | None) -> None:
    for i, arm in enumerate(arms or ()):
        if arm not in oracle.arms:
            name = field if field == "arm" else f"{field}.{i}"
            raise RequestFieldError(where, name, f"one of the bundle's arms "
                                    f"{list(oracle.arms)}", arm)


def _check_arm_keys(oracle: BudgetOracle, where: str, field: str,
                    mapping: Mapping[str, Any] | None) -> None:
    for arm in mapping or {}:
        if arm not in oracle.arms:
            raise RequestFieldError(where, f"{field}.{arm}", f"keyed by the bundle's arms "
                                    f"{list(oracle.arms)}", arm)


def _prior(oracle: BudgetOracle, where: str, field: str,
           prior: Mapping[str, float] | None) -> list[float] | None:
    """A ``{arm: p}`` prior as a list in the bundle's arm order."""
    if prior is None:
        return None
    _check_arm_keys(oracle, where, field, prior)
    missing = [arm for arm in oracle.arms if arm not in prior]
    if missing:
        raise RequestFieldError(where, field, f"a probability for every arm "
                                f"{list(oracle.arms)} (missing {missing})", dict(prior))
    return [prior[arm] for arm in oracle.arms]


# ------------------------------------------------------------------ descriptions
def model_ref(served: Served) -> ModelRef:
    """The short identity of the served bundle that every answer carries."""
    return ModelRef(bundle_id=served.bundle_id, version=served.version)


def model_info(served: Served) -> ModelInfo:
    """The served bundle, as health and reload answers describe it."""
    oracle = served.oracle
    manifest = oracle.bundle.manifest
    return ModelInfo(
        bundle_id=served.bundle_id, version=served.version, name=served.name,
        source=served.source, run_id=manifest.get("run_id"), arms=list(oracle.arms),
        widths=list(oracle.widths),
        lambda_range=oracle.lambda_range, default_lambda=oracle.default_lambda,
        cost_unit=oracle.cost_unit, calibrated=oracle.calibration_table is not None,
        defaults=OracleDefaults.model_validate(oracle.defaults()),
        decision_backend=oracle.decision_backend, loaded_at=served.loaded_at)
