"""ttc-allocator: decide, query by query, how much test-time compute an LLM should spend.

The runtime package. It imports numpy and pyarrow only; heavy libraries (torch,
stable-baselines3, mlflow, fastapi) stay out of its import path. The training side is
``allocator.envs`` and ``allocator.training`` (the ``envs/`` and ``training/`` folders of
the repository, see :mod:`allocator._layout`); only ``allocator.cli`` imports it. :func:`load`
imports the
budget oracle (numpy, safetensors) when called, not when ``allocator`` is imported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from allocator._layout import link_checkout_layers
from allocator.errors import AllocatorError, LogFormatError
from allocator.logs import AttemptLog, QueryTable

if TYPE_CHECKING:
    from allocator.oracle import BudgetOracle

__all__ = ["AllocatorError", "AttemptLog", "LogFormatError", "QueryTable", "__version__",
           "load"]

__version__ = "0.1.0"

link_checkout_layers(Path(__file__).resolve().parent)


def load(path_or_uri: str | os.PathLike[str], *, dst_path: str | os.PathLike[str] | None = None,
         tracking_uri: str | None = None) -> BudgetOracle:
    """Load a trained allocator bundle as a budget oracle.

    Args:
        path_or_uri: a bundle directory, or an MLflow ``models:/NAME@ALIAS`` or
            ``runs:/RUN_ID/PATH`` URI (which imports mlflow to download it).
        dst_path: where to download an MLflow URI's artifacts.
        tracking_uri: the MLflow tracking (and registry) URI for a URI (default:
            MLflow's).

    Returns:
        A :class:`allocator.oracle.BudgetOracle`.

    Raises:
        BundleError: no bundle there, or the bundle is refused (tampered, made for other
            code...).

    Example:
        >>> oracle = allocator.load("runs/demo/bundle")  # doctest: +SKIP
        >>> session = oracle.session("What is 17 * 23?", lambda_=0.05)  # doctest: +SKIP
    """
    from allocator.oracle import load as _load

    return _load(path_or_uri, dst_path=dst_path, tracking_uri=tracking_uri)
