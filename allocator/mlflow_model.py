"""The allocator as an MLflow pyfunc model, logged "from code" (this file; no pickle).

MLflow copies this file into the logged model and runs it on load; the bundle travels as
the model's artifact ``bundle``. :func:`training.tracking.log_bundle_model` logs it::

    mlflow.pyfunc.log_model(python_model="allocator/mlflow_model.py",
                            artifacts={"bundle": "RUN_DIR/bundle"}, ...)

so that ``mlflow.pyfunc.load_model("models:/NAME@ALIAS").predict(requests)`` (and
``mlflow models serve -m models:/NAME@ALIAS``) answers decisions. The runtime never
imports this module (it imports mlflow): ``allocator.load`` stays light.

A request is one row (a pandas DataFrame row, or a dict in a list) describing what has
happened on one query so far; every column is optional:

===================  =====================================================================
column               meaning
===================  =====================================================================
``query``            the query text (the bundle's difficulty predictor reads it for the
                     prior when ``prior`` is not given; without either, the bundle's
                     uninformed prior: the rule of :mod:`allocator.oracle`)
``lambda``           the price of one cost unit (default: the bundle's default lambda)
``prior``            per-arm accuracy: a list in the bundle's arm order, or ``{arm: p}``
``samples``          samples drawn so far per arm: ``{arm: count}``
``refines``          refinements drawn so far (an integer)
``votes``            answers seen so far: ``{answer: count}``; attempts drawn without an
                     answer are the difference (drawn - votes)
``cost_spent``       cost spent so far, in the log's units
``max_samples``      most attempts for this query (default: the bundle's cap per arm)
``supports_refine``  whether the executor can refine (default false: REFINE is masked)
``supports_verify``  whether the executor can verify (default false: VERIFY is masked)
``verified``         verifier results so far: ``{answer: best verified score}``, one
                     verified attempt per answer named (default none); the other attempts
                     are unverified, so VERIFY is allowed while some are
===================  =====================================================================

Mappings and lists may also be given as JSON text (what a CSV or a form carries). Over
HTTP (``mlflow models serve``), send ``{"dataframe_records": [request, ...]}`` or
``{"inputs": [request, ...]}``. The
policy's features depend on these counts only (not on the order of the attempts), so the
state rebuilt here is the one a :class:`~allocator.session.Session` that observed the
attempts one by one holds (the verified attempts first, then the others).

The answer: one row per request with ``kind`` (``"stop"``, ``"sample"``, ``"refine"`` or
``"verify"``), ``arm`` (the arm to sample, else None) and ``index`` (the action index).
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
#: The request columns (see the module docstring).
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
    """The bundle's learned policy: the next action for each request."""

    def load_context(self, context):
        import allocator

        self.oracle = allocator.load(context.artifacts[BUNDLE_ARTIFACT])

    # No type hints: MLflow would turn them into a schema (and warns on Any).
    def predict(self, context, model_input, params=None):
        import pandas as pd

        actions = [self.decide(row) for row in _rows(model_input)]
        return pd.DataFrame({"kind": [a.kind for a in actions],
                             # object: None (JSON null) for non-sample actions, not NaN
                             "arm": pd.Series([a.arm for a in actions], dtype=object),
                             "index": [a.index for a in actions]})

    def decide(self, row: Mapping[str, Any]) -> Any:
        """The next :class:`~allocator.session.Action` of one request."""
        from allocator.session import AttemptResult

        get = {key: (None if _missing(value) else value) for key, value in row.items()}.get
        oracle = self.oracle
        prior = _json(get("prior"))
        if isinstance(prior, Mapping):
            prior = [float(prior[arm]) for arm in oracle.arms]
        max_samples = get("max_samples")
        session = oracle.session(
            get("query"), lambda_=None if get("lambda") is None else float(get("lambda")),
            prior=prior, max_samples=None if max_samples is None else int(max_samples),
            supports_refine=bool(get("supports_refine") or False),
            supports_verify=bool(get("supports_verify") or False))
        samples = {str(arm): int(n) for arm, n in (_json(get("samples")) or {}).items()}
        refines = int(get("refines") or 0)
        answers = [answer for answer, count in (_json(get("votes")) or {}).items()
                   for _ in range(int(count))]
        drawn = sum(samples.values()) + refines
        if len(answers) > drawn:
            raise ValueError(f"votes ({len(answers)}) exceed the attempts drawn ({drawn}: "
                             "samples + refines)")
        answers += [None] * (drawn - len(answers))
        kinds = [("sample", arm) for arm, n in samples.items() for _ in range(n)]
        kinds += [("refine", None)] * refines
        cost = float(get("cost_spent") or 0.0)
        if drawn == 0 and cost:
            raise ValueError("cost_spent without any attempt drawn")
        verified = {str(answer): float(score)
                    for answer, score in (_json(get("verified")) or {}).items()}
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
        ValueError: ``verified`` names an answer no attempt gave.
    """
    first, rest = [], list(attempts)
    for answer in verified:
        match = next((item for item in rest if item[1] is not None and str(item[1]) == answer),
                     None)
        if match is None:
            raise ValueError(f"verified names the answer {answer!r}, which no attempt gave "
                             "(list it in votes too)")
        rest.remove(match)
        first.append(match)
    return first + rest


mlflow.models.set_model(AllocatorModel())
