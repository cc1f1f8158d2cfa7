"""The allocator as an MLflow pyfunc model, logged "from code" (this file; no pickle).

MLflow copies this file into the logged model and runs it on load; the bundle travels as
the model's artifact ``bundle``. The runtime never imports this module (it imports
mlflow): ``allocator.load`` stays light. :class:`AllocatorModel` documents how it is
logged, the request columns and the answer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import mlflow
import mlflow.pyfunc

#: The name of the bundle artifact in the logged model.
BUNDLE_ARTIFACT = "bundle"
#: The request columns (see :class:`AllocatorModel`).
REQUEST_COLUMNS = ("query", "lambda", "prior", "samples", "refines", "votes", "cost_spent",
                   "max_samples", "supports_refine", "supports_verify", "verified")


def _missing(value: Any) -> bool:
    """None, NaN (pandas' missing value) or an empty string."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and not value.strip()


def _json(value: Any) -> Any:
    """A mapping or list given as JSON text, decoded; anything else unchanged."""
    return json.loads(value) if isinstance(value, str) else value


def _plain(value: Any) -> Any:
    """A numpy value as plain Python (``mlflow models serve`` wraps each value of an
    ``inputs`` body in a 0-d array); anything else unchanged."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.item() if value.ndim == 0 else value.tolist()
    return value.item() if isinstance(value, np.generic) else value


class RequestError(ValueError):
    """One request field is invalid.

    Args:
        field: the request column at fault.
        problem: what is wrong and what is expected.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"field {field!r}: {problem}")


def _counts(field: str, value: Any, keys: tuple[str, ...] | None) -> dict[str, int]:
    """``{key: count >= 0}`` (keys among ``keys`` when given), from a mapping or JSON."""
    expected = ("a mapping {arm: count} over the bundle's arms " + str(list(keys))
                if keys is not None else "a mapping {answer: count}")
    try:
        value = _json(value)
    except json.JSONDecodeError:
        raise RequestError(field, f"must be {expected}, got text that is not JSON "
                                  f"{str(value)[:60]!r}") from None
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RequestError(field, f"must be {expected}, got {value!r:.60}")
    counts = {}
    for key, count in value.items():
        if keys is not None and str(key) not in keys:
            raise RequestError(field, f"must be {expected}: {key!r} is not an arm")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise RequestError(field, f"must be {expected} with integer counts >= 0, got "
                                      f"{key!r}: {count!r:.30}")
        counts[str(key)] = int(count)
    return counts


def _number(field: str, value: Any, *, integer: bool = False) -> float | int | None:
    """A number >= 0 (an integer when asked), or None when missing."""
    if value is None:
        return None
    kind = "an integer >= 0" if integer else "a number >= 0"
    ok = (not isinstance(value, bool) and isinstance(value, int | float)
          and (value == int(value) if integer and math.isfinite(value) else True)
          and math.isfinite(value) and value >= 0)
    if not ok:
        raise RequestError(field, f"must be {kind}, got {value!r:.60}")
    return int(value) if integer else float(value)


#: The request field of each oracle parameter (for the oracle's own refusals).
_FIELDS = {"lambda_": "lambda", "prior": "prior", "max_samples": "max_samples",
           "query": "query", "metadata": "query"}


def _rows(model_input: Any) -> list[dict[str, Any]]:
    """The requests as dicts: a DataFrame's records, a list of dicts, or one dict."""
    if hasattr(model_input, "to_dict"):  # a pandas DataFrame
        rows = model_input.to_dict(orient="records")
    elif isinstance(model_input, Mapping):
        rows = [model_input]
    else:
        rows = list(model_input)
    return [{str(key): _plain(value) for key, value in row.items()} for row in rows]


class AllocatorModel(mlflow.pyfunc.PythonModel):
    """The bundle's learned policy: the next action for each request.

    :func:`allocator.training.tracking.log_bundle_model` logs it::

        mlflow.pyfunc.log_model(python_model="allocator/mlflow_model.py",
                                artifacts={"bundle": "RUN_DIR/bundle"}, ...)

    so that ``mlflow.pyfunc.load_model("models:/NAME@ALIAS").predict(requests)`` (and
    ``mlflow models serve -m models:/NAME@ALIAS``) answers decisions.

    A request is one row (a pandas DataFrame row, or a dict in a list) describing what
    has happened on one query so far; every column is optional:

    ===================  ==================================================================
    column               meaning
    ===================  ==================================================================
    ``query``            the query text (the bundle's difficulty predictor reads it for the
                         prior when ``prior`` is not given; without either, the bundle's
                         uninformed prior: the rule of :mod:`allocator.oracle`)
    ``lambda``           the price of one cost unit (default: the bundle's default lambda)
    ``prior``            per-arm accuracy: a list in the bundle's arm order, or
                         ``{arm: p}``
    ``samples``          samples drawn so far per arm: ``{arm: count}``
    ``refines``          refinements drawn so far (an integer)
    ``votes``            answers seen so far: ``{answer: count}``; attempts drawn without
                         an answer are the difference (drawn - votes)
    ``cost_spent``       cost spent so far, in the log's units
    ``max_samples``      most attempts for this query (default: the bundle's cap per arm)
    ``supports_refine``  whether the executor can refine (default false: REFINE is masked)
    ``supports_verify``  whether the executor can verify (default false: VERIFY is masked)
    ``verified``         verifier results so far: ``{answer: best verified score}``, one
                         verified attempt per answer named (default none); the other
                         attempts are unverified, so VERIFY is allowed while some are
    ===================  ==================================================================

    Mappings and lists may also be given as JSON text (what a CSV or a form carries).
    Over HTTP (``mlflow models serve``), send ``{"dataframe_records": [request, ...]}``
    or ``{"inputs": [request, ...]}``. An invalid request (an unknown column,
    ``samples`` that is not ``{arm: count >= 0}`` over the bundle's arms, more votes
    than attempts, ``lambda`` outside the bundle's range...) is refused with MLflow's
    ``INVALID_PARAMETER_VALUE`` (HTTP 400) and a message naming the request and the
    field, never a stack trace. The policy's features depend on these counts only (not
    on the order of the attempts), so the state rebuilt here is the one a
    :class:`~allocator.session.Session` that observed the attempts one by one holds (the
    verified attempts first, then the others).

    The answer: one row per request with ``kind`` (``"stop"``, ``"sample"``,
    ``"refine"`` or ``"verify"``), ``arm`` (the arm to sample, else None), ``index``
    (the action index) and ``width`` (how many attempts of ``arm`` to launch at once as
    one wave: greater than 1 only for a bundle with parallel widths, see
    :attr:`allocator.bundle.Bundle.widths`; 1 for the other kinds).
    """

    def load_context(self, context):
        import allocator

        self.oracle = allocator.load(context.artifacts[BUNDLE_ARTIFACT])

    # No type hints: MLflow would turn them into a schema (and warns on Any).
    def predict(self, context, model_input, params=None):
        import pandas as pd

        actions = [self._decide_or_refuse(number, row)
                   for number, row in enumerate(_rows(model_input))]
        return pd.DataFrame({"kind": [a.kind for a in actions],
                             # object: None (JSON null) for non-sample actions, not NaN
                             "arm": pd.Series([a.arm for a in actions], dtype=object),
                             "index": [a.index for a in actions],
                             "width": [a.width for a in actions]})

    def _decide_or_refuse(self, number: int, row: Mapping[str, Any]) -> Any:
        """:meth:`decide`, its refusals as MLflow's INVALID_PARAMETER_VALUE (HTTP 400)."""
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        from allocator.errors import ParameterError

        try:
            return self.decide(row)
        except RequestError as error:
            message = str(error)
        except ParameterError as error:
            field = _FIELDS.get(error.parameter, error.parameter)
            message = f"field {field!r}: {error}"
        raise MlflowException(f"request {number}: {message} (see the request columns in "
                              "allocator/mlflow_model.py or the README)",
                              error_code=INVALID_PARAMETER_VALUE)

    def decide(self, row: Mapping[str, Any]) -> Any:
        """The next :class:`~allocator.session.Action` of one request.

        Raises:
            RequestError: a field is invalid (named).
            ParameterError: the oracle refuses a value (lambda outside its range...).
        """
        from allocator.session import AttemptResult

        unknown = sorted(set(row) - set(REQUEST_COLUMNS))
        if unknown:
            raise RequestError(unknown[0], f"is not a request column; the columns are "
                                           f"{list(REQUEST_COLUMNS)}")
        get = {key: (None if _missing(value) else value) for key, value in row.items()}.get
        oracle = self.oracle
        prior = _prior(get("prior"), oracle.arms)
        lam = get("lambda")
        if lam is not None and (isinstance(lam, bool) or not isinstance(lam, int | float)):
            raise RequestError("lambda", f"must be a number, got {lam!r:.60}")
        max_samples = _number("max_samples", get("max_samples"), integer=True)
        session = oracle.session(
            get("query"), lambda_=None if lam is None else float(lam),
            prior=prior, max_samples=max_samples,
            supports_refine=bool(get("supports_refine") or False),
            supports_verify=bool(get("supports_verify") or False))
        samples = _counts("samples", get("samples"), oracle.arms)
        refines = _number("refines", get("refines"), integer=True) or 0
        answers = [answer for answer, count in _counts("votes", get("votes"), None).items()
                   for _ in range(count)]
        drawn = sum(samples.values()) + refines
        if len(answers) > drawn:
            raise RequestError("votes", f"counts {len(answers)} answers, more than the "
                                        f"attempts drawn ({drawn}: samples + refines)")
        answers += [None] * (drawn - len(answers))
        kinds = [("sample", arm) for arm, n in samples.items() for _ in range(n)]
        kinds += [("refine", None)] * refines
        cost = _number("cost_spent", get("cost_spent")) or 0.0
        if drawn == 0 and cost:
            raise RequestError("cost_spent", "must be 0 when no attempt was drawn")
        verified = _verified(get("verified"))
        attempts = _verified_first(list(zip(kinds, answers, strict=True)), verified)
        scores = {}
        for position, ((kind, arm), answer) in enumerate(attempts):
            index = session.observe(AttemptResult(kind, arm, answer,
                                                  cost if position == 0 else 0.0))
            if position < len(verified):
                scores[index] = verified[str(answer)]
            if position + 1 == len(verified):
                session.verify(scores, 0.0)
        return session.next_action()


def _verified_first(attempts: list[tuple[tuple[str, Any], Any]], verified: Mapping[str, float]
                    ) -> list[tuple[tuple[str, Any], Any]]:
    """The attempts reordered: one attempt of each verified answer first (in the order
    ``verified`` names them), then the others.

    Raises:
        RequestError: ``verified`` names an answer no attempt gave.
    """
    first, rest = [], list(attempts)
    for answer in verified:
        match = next((item for item in rest if item[1] is not None and str(item[1]) == answer),
                     None)
        if match is None:
            raise RequestError("verified", f"names the answer {answer!r}, which no attempt "
                                           "gave (list it in votes too)")
        rest.remove(match)
        first.append(match)
    return first + rest


def _verified(value: Any) -> dict[str, float]:
    """The request's ``{answer: verifier score}`` (empty when missing)."""
    try:
        value = _json(value)
    except json.JSONDecodeError:
        raise RequestError("verified", "must be a mapping {answer: score}, got text that is "
                                       f"not JSON {str(value)[:60]!r}") from None
    if value is None:
        return {}
    if not isinstance(value, Mapping) or any(
            isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
            for v in value.values()):
        raise RequestError("verified", f"must be a mapping {{answer: score}} with finite "
                                       f"scores, got {value!r:.60}")
    return {str(answer): float(score) for answer, score in value.items()}


def _prior(value: Any, arms: tuple[str, ...]) -> list[float] | None:
    """The request's prior as a list in the bundle's arm order (None: not given)."""
    try:
        value = _json(value)
    except json.JSONDecodeError:
        value = str(value)
    if value is None:
        return None
    expected = f"a list of {len(arms)} numbers in the arm order {list(arms)}, or {{arm: p}}"
    if isinstance(value, Mapping):
        if set(map(str, value)) != set(arms):
            raise RequestError("prior", f"must be {expected}, got the keys "
                                        f"{sorted(map(str, value))}")
        value = [value[arm] for arm in arms]
    if not isinstance(value, list | tuple) or any(
            isinstance(p, bool) or not isinstance(p, int | float) for p in value):
        raise RequestError("prior", f"must be {expected}, got {value!r:.60}")
    return [float(p) for p in value]


mlflow.models.set_model(AllocatorModel())
