"""The HTTP decision service's application factory.

:func:`create_app` builds a FastAPI app over one
:class:`~allocator.service.state.OracleHolder`; nothing happens at import time. The
endpoints, which of them need the token and where each request runs are in
:data:`API_DESCRIPTION`, the schema's description that ``/docs`` shows.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Body, Depends, FastAPI
from fastapi.responses import JSONResponse

from allocator._checks import check_int
from allocator.errors import AllocatorError, ParameterError
from allocator.oracle import BudgetOracle
from allocator.service import operations
from allocator.service.guards import (
    DEFAULT_MAX_BODY_BYTES,
    BodyLimitMiddleware,
    bearer_guard,
    optional_bearer,
)
from allocator.service.problems import error_response, install_handlers
from allocator.service.schemas import (
    AllocateRequest,
    AllocateResponse,
    BudgetRequest,
    BudgetResponse,
    DecideRequest,
    DecideResponse,
    ErrorBody,
    HealthResponse,
    ReloadRequest,
    ReloadResponse,
    ReloadStatus,
)
from allocator.service.state import OracleHolder
from allocator.service.work import DEFAULT_REQUEST_TIMEOUT, OffLoop

__all__ = ["API_PREFIX", "create_app"]

logger = logging.getLogger("allocator.service")

#: The versioned prefix of every endpoint.
API_PREFIX = "/v1"

#: The OpenAPI schema's description (what ``/docs`` shows): the endpoints, which of them
#: need the token, and where each request runs.
API_DESCRIPTION = """The application factory: :func:`create_app` builds a FastAPI app over one
:class:`~allocator.service.state.OracleHolder`. Nothing happens at import time.

Endpoints (all under ``/v1``; bodies in :mod:`allocator.service.schemas`):

=========================  ======  ==========================================================
path                       token   answer
=========================  ======  ==========================================================
``POST /v1/decide``        yes     the next action after a query's history (stateless)
``POST /v1/budget``        yes     an up-front number of samples (``BudgetOracle.budget``)
``POST /v1/allocate``      yes     samples per query under a total (``BudgetOracle.allocate``)
``POST /v1/admin/reload``  yes     reload the source now (the swap is atomic)
``GET /v1/health``         no      ``{"status": "ok"}``; with the token (or on a server
                                   without one) also the served bundle (id, MLflow version,
                                   arms, lambda range, every default the oracle applies and
                                   its source) and the reloads (count, last error)
``GET /openapi.json``      no      the OpenAPI schema (``/docs`` renders it)
=========================  ======  ==========================================================

Health and the schema stay open so that load balancers and clients can probe them
without the token; without it health says only that the service is up (the details name
paths and run ids), and a wrong token gets 401.
``/v1/decide`` runs on the event loop: a decision takes tens of microseconds, far less
than a thread hop. ``/v1/budget`` and ``/v1/allocate`` compute in proportion to the
request, so they run in worker threads within a time limit (503 past it; see
:mod:`allocator.service.work`), and health keeps answering meanwhile. The reload endpoint
and the poller run their blocking loads in worker threads.
"""

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing or wrong bearer token"},
    413: {"model": ErrorBody, "description": "request body over the limit"},
    422: {"model": ErrorBody, "description": "an invalid value in the body: it breaks the "
                                             "schema, names what the bundle lacks, or the "
                                             "oracle refuses it (lambda outside the "
                                             "training range...)"},
    503: {"model": ErrorBody, "description": "a budget or allocate request took longer "
                                             "than the server's limit"},
}


def create_app(
    source: str | os.PathLike[str] | BudgetOracle | OracleHolder,
    *,
    token: str | None = None,
    tracking_uri: str | None = None,
    reload_interval: float | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
) -> FastAPI:
    """A FastAPI app serving a bundle's oracle (loaded here, once).

    The endpoints, which of them need the token, and which run on the event loop or in
    worker threads: :data:`API_DESCRIPTION` (the OpenAPI schema's description, what
    ``/docs`` shows).

    Args:
        source: a bundle directory, an MLflow URI (``models:/NAME@ALIAS``...), a ready
            :class:`~allocator.oracle.BudgetOracle`, or an
            :class:`~allocator.service.state.OracleHolder` (the caller then owns it).
        token: require ``Authorization: Bearer <token>`` on every endpoint but health
            and the schema (None: no authentication; use it on loopback only).
        tracking_uri: the MLflow tracking/registry URI for a URI source.
        reload_interval: poll the source every this many seconds and swap in a new
            bundle when it changed (the alias moved, another bundle was renamed into the
            directory, e.g. by ``allocator calibrate ... --overwrite``);
            None: reload on ``POST /v1/admin/reload`` only.
        max_body_bytes: the largest request body (413 above it).
        request_timeout: seconds a budget or allocate request may wait and compute
            (503 past it).

    Returns:
        The application (``app.state.holder`` is its holder).

    Raises:
        ParameterError: an invalid argument.
        BundleError: the source cannot be loaded.
    """
    _check_arguments(token, reload_interval, max_body_bytes)
    off_loop = OffLoop(request_timeout)
    owned = not isinstance(source, OracleHolder)
    holder = OracleHolder(source, tracking_uri=tracking_uri) if owned else source
    assert isinstance(holder, OracleHolder)
    holder.load()
    app = FastAPI(title="ttc-allocator decision service", version=_version(),
                  description=API_DESCRIPTION, lifespan=_lifespan(holder, reload_interval, owned))
    app.state.holder = holder
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    install_handlers(app, {f"{API_PREFIX}/decide": DecideRequest,
                           f"{API_PREFIX}/budget": BudgetRequest,
                           f"{API_PREFIX}/allocate": AllocateRequest,
                           f"{API_PREFIX}/admin/reload": ReloadRequest})
    guard = [] if token is None else [Depends(bearer_guard(token))]
    app.include_router(_open_routes(holder, reload_interval, token), prefix=API_PREFIX)
    app.include_router(_guarded_routes(holder, off_loop), prefix=API_PREFIX, dependencies=guard,
                       responses=_ERRORS)
    return app


def _check_arguments(token: str | None, interval: float | None, max_bytes: int) -> None:
    sendable = isinstance(token, str) and token.isprintable() and token == token.strip()
    if token is not None and not (sendable and token):  # else no header can carry it
        shown = "<the token, not shown>" if isinstance(token, str) and token else token
        raise ParameterError("create_app", "token", "a non-empty string of printable "
                             "characters without leading or trailing whitespace, or None",
                             shown)
    if interval is not None and not (isinstance(interval, int | float) and interval > 0):
        raise ParameterError("create_app", "reload_interval", "a number of seconds > 0 or "
                             "None", interval)
    check_int("create_app", "max_body_bytes", max_bytes, minimum=1024)


def _version() -> str:
    from allocator import __version__

    return __version__


# ------------------------------------------------------------------ routes
def _open_routes(holder: OracleHolder, interval: float | None,
                 token: str | None) -> APIRouter:
    router = APIRouter(tags=["status"])
    authenticated = optional_bearer(token)

    @router.get("/health", response_model=HealthResponse,
                responses={401: {"model": ErrorBody, "description": "a wrong bearer token"}})
    async def health(full: bool = Depends(authenticated)
                     ) -> HealthResponse | JSONResponse:
        """``{"status": "ok"}`` to anyone; with the token (or on a server started
        without one) also the served bundle and the reloads."""
        if not full:
            return JSONResponse({"status": "ok"})
        return HealthResponse(
            status="ok", model=operations.model_info(holder.current),
            reload=ReloadStatus(interval=interval, reloads=holder.reloads,
                                last_error=holder.last_error,
                                last_error_at=holder.last_error_at))

    return router


def _guarded_routes(holder: OracleHolder, off_loop: OffLoop) -> APIRouter:
    router = APIRouter()

    @router.post("/decide", response_model=DecideResponse, tags=["decisions"])
    async def decide(request: DecideRequest) -> DecideResponse:
        """The policy's next action after the query's history (stateless: send the whole
        history each time)."""
        return operations.decide(holder.current, request)

    @router.post("/budget", response_model=BudgetResponse, tags=["decisions"])
    async def budget(request: BudgetRequest) -> BudgetResponse:
        """An up-front number of samples for one arm (``BudgetOracle.budget``)."""
        return await off_loop.run("POST /v1/budget", operations.budget, holder.current,
                                  request)

    @router.post("/allocate", response_model=AllocateResponse, tags=["decisions"])
    async def allocate(request: AllocateRequest) -> AllocateResponse:
        """Samples per query under a total budget (``BudgetOracle.allocate``)."""
        return await off_loop.run("POST /v1/allocate", operations.allocate,
                                  holder.current, request)

    @router.post("/admin/reload", response_model=ReloadResponse, tags=["admin"],
                 responses={502: {"model": ErrorBody, "description": "the reload failed; "
                                  "the previous bundle is still served"}})
    def reload(request: Annotated[ReloadRequest | None, Body()] = None
               ) -> ReloadResponse | JSONResponse:
        """Load the source again (the alias's current version) and swap it in; requests
        in flight finish on the previous bundle."""
        try:
            outcome = holder.reload(force=request is not None and request.force)
        except AllocatorError as error:
            return error_response(502, "reload_failed", f"{error} (still serving the "
                                  "previous bundle)",
                                  serving=operations.model_info(holder.current))
        return ReloadResponse(reloaded=outcome.reloaded,
                              previous=operations.model_info(outcome.previous),
                              current=operations.model_info(outcome.current))

    return router


# ------------------------------------------------------------------ lifespan
def _lifespan(holder: OracleHolder, interval: float | None,
              owned: bool) -> Callable[[FastAPI], Any]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        poller = None if interval is None else asyncio.create_task(_poll(holder, interval))
        try:
            yield
        finally:
            if poller is not None:
                poller.cancel()
                with suppress(asyncio.CancelledError):
                    await poller
            if owned:
                holder.close()

    return lifespan


async def _poll(holder: OracleHolder, interval: float) -> None:
    """Reload every ``interval`` seconds (a no-op while the source is unchanged)."""
    while True:
        await asyncio.sleep(interval)
        try:
            await anyio.to_thread.run_sync(holder.reload)
        except Exception:  # recorded in holder.last_error; keep serving and polling
            logger.debug("poll of %s failed", holder.source, exc_info=True)
