"""The oracle's defaults that a bundle records: the uninformed prior and the sample cap.

Two optional manifest fields, :data:`DEFAULT_PRIOR_FIELD` and :data:`MAX_POOL_FIELD`,
written at export (:mod:`allocator.training.rl.export`) and read by
:class:`allocator.oracle.BudgetOracle` (rules: :meth:`~allocator.oracle.BudgetOracle.prior_for`
and :meth:`~allocator.oracle.BudgetOracle.sample_caps`). Bundles exported before these
fields load as before: see :data:`LEGACY_MAX_POOL` and ``BudgetOracle.default_prior``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from allocator._checks import is_int
from allocator.errors import BundleError
from allocator.logs.table import QueryTable

__all__ = ["DEFAULT_PRIOR_FIELD", "LEGACY_MAX_POOL", "MAX_POOL_FIELD", "predict_with",
           "read_default_prior", "read_max_pool"]

#: The uninformed prior: ``{"values": {arm: p}, "source": text}``, the prior of a query
#: without text or metadata: the bundled predictor's prediction for an empty text
#: (:func:`predict_with`, the one path from a text to a prior), or the replay
#: environment's prior for a bundle trained without a predictor.
DEFAULT_PRIOR_FIELD = "default_prior"
#: The largest pool per arm among the training queries, ``{arm: samples}``: the default
#: sample cap of a session.
MAX_POOL_FIELD = "max_pool"
#: The sample cap per arm of bundles that record no ``max_pool`` (exported before it
#: existed): above the pools of most public logs' single configurations (about 20 to 40
#: samples per query), so an old policy keeps its behaviour there while a runaway session
#: still ends. Pass ``max_samples`` or ``max_samples_per_arm`` to choose another.
LEGACY_MAX_POOL = 64


def read_default_prior(manifest: Mapping[str, Any], arms: Sequence[str], path: Path | str
                       ) -> tuple[np.ndarray, str] | None:
    """The manifest's uninformed prior in ``arms`` order and its source; None if absent.

    Raises:
        BundleError: the field does not give a probability for every arm.
    """
    field = manifest.get(DEFAULT_PRIOR_FIELD)
    if field is None:
        return None
    try:
        values = np.array([float(field["values"][arm]) for arm in arms])
        source = str(field["source"])
    except (KeyError, TypeError, ValueError) as error:
        raise BundleError(f"manifest field {DEFAULT_PRIOR_FIELD!r} must be "
                          f"{{'values': {{arm: p}} for the arms {list(arms)}, "
                          f"'source': text}} ({error!r}); re-export the bundle.",
                          path=path) from error
    if not ((values >= 0) & (values <= 1)).all():
        raise BundleError(f"manifest field {DEFAULT_PRIOR_FIELD!r} must hold "
                          f"probabilities in [0, 1], got {field['values']!r}; re-export "
                          "the bundle.", path=path)
    return values, f"manifest default_prior: {source}"


def read_max_pool(manifest: Mapping[str, Any], arms: Sequence[str], path: Path | str
                  ) -> tuple[np.ndarray, str]:
    """The default sample cap per arm (``arms`` order) and its source.

    Raises:
        BundleError: the field does not map every arm to an integer >= 0.
    """
    field = manifest.get(MAX_POOL_FIELD)
    if field is None:
        return (np.full(len(arms), LEGACY_MAX_POOL, dtype=np.int64),
                f"LEGACY_MAX_POOL ({LEGACY_MAX_POOL}: the bundle records no max_pool)")
    values = [field.get(arm) if isinstance(field, Mapping) else None for arm in arms]
    if not all(is_int(value, 0) for value in values):
        raise BundleError(f"manifest field {MAX_POOL_FIELD!r} must map every arm "
                          f"{list(arms)} to an integer >= 0, got {field!r}; "
                          "re-export the bundle.", path=path)
    return (np.array(values, dtype=np.int64),
            "manifest max_pool: the largest pool per arm the policy was trained on")


class _QueriesOnly:
    """What :meth:`DifficultyModel.predict` reads of a log: the query table only."""

    def __init__(self, queries: QueryTable) -> None:
        self.queries = queries
        self.n_queries = len(queries.text)


def predict_with(predictor: Any, arms: Sequence[str], texts: Sequence[str | None],
                 metadata: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """A fitted difficulty predictor's prior for query texts, shape (Q, len(arms)).

    The one path from a text to a prior: the oracle's sessions and the exporter's
    uninformed prior both use it. A missing text is the empty text (as a log's missing
    text is in training); metadata columns the rows lack are missing values.

    Args:
        predictor: a fitted predictor without user feature columns
            (:class:`allocator.predictor.DifficultyModel`, or training's estimator).
        arms: the arms, in the order of the output's columns.
        texts: the query texts.
        metadata: per query, its metadata.
    """
    columns = [column.name for column in predictor.features_.metadata]
    table = QueryTable(
        text=np.array(["" if text is None else text for text in texts], dtype=object),
        metadata={name: np.array([row.get(name) for row in metadata], dtype=object)
                  for name in columns})
    predicted = predictor.predict(_QueriesOnly(table), np.arange(len(texts)))
    order = [list(predictor.arms_).index(arm) for arm in arms]
    return np.clip(predicted[:, order], 0.0, 1.0)
