"""The budget oracle as an HTTP decision service (the optional extra ``serve``).

``create_app(source, token=...)`` builds a FastAPI application over a bundle (a directory
or an MLflow ``models:/NAME@ALIAS``); ``allocator serve SOURCE`` runs it with uvicorn.
Importing :mod:`allocator` never imports this package (nor fastapi); importing this
package imports fastapi and creates nothing.

Example:
    >>> from allocator.service import create_app  # doctest: +SKIP
    >>> app = create_app("runs/demo/bundle", token="s3cret")  # doctest: +SKIP
"""

from __future__ import annotations

from allocator.extras import install_hint, require_extra

#: What to install when fastapi or uvicorn is missing.
INSTALL_HINT = install_hint("serve")

# A MissingExtraError is an ImportError: callers that catch ImportError still work.
require_extra("serve", "the HTTP service")

# After the check above, so that a missing extra gives its install hint.
from allocator.service.app import API_PREFIX, create_app  # noqa: E402
from allocator.service.server import BackgroundServer, run_server  # noqa: E402
from allocator.service.state import OracleHolder, ReloadOutcome, Served  # noqa: E402

__all__ = ["API_PREFIX", "INSTALL_HINT", "BackgroundServer", "OracleHolder", "ReloadOutcome",
           "Served", "create_app", "run_server"]
