"""Running the service with uvicorn: in the foreground (:func:`run_server`, what
``allocator serve`` calls) or in a background thread (:class:`BackgroundServer`, for
tests, notebooks and benchmarks)."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

from allocator.errors import AllocatorError
from allocator.oracle import BudgetOracle
from allocator.service.app import create_app

__all__ = ["BackgroundServer", "run_server"]

_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def run_server(source: str | os.PathLike[str] | BudgetOracle, *, host: str = "127.0.0.1",
               port: int = 8000, token: str | None = None, tracking_uri: str | None = None,
               reload_interval: float | None = None, log_level: str = "info",
               **app_options: Any) -> None:
    """Load the source and serve it with uvicorn until interrupted (Ctrl-C).

    Args:
        source: a bundle directory or an MLflow URI (see :func:`create_app`).
        host: the interface to bind (loopback by default).
        port: the TCP port.
        token: the bearer token to require (None: none).
        tracking_uri: the MLflow tracking/registry URI for a URI source.
        reload_interval: seconds between polls of the source (None: no polling).
        log_level: uvicorn's log level.
        **app_options: more :func:`create_app` options (``max_body_bytes``).

    Raises:
        BundleError: the source cannot be loaded.
    """
    app = create_app(source, token=token, tracking_uri=tracking_uri,
                     reload_interval=reload_interval, **app_options)
    served = app.state.holder.current
    version = f", MLflow version {served.version}" if served.version else ""
    auth = "bearer token required" if token else "NO authentication"
    print(f"serving bundle {served.bundle_id}{version} (arms {list(served.oracle.arms)}) on "
          f"http://{host}:{port}/v1 ({auth}; schema at /docs)", file=sys.stderr, flush=True)
    if token is None and host not in _LOOPBACK:
        print(f"warning: {host} is not a loopback address and no token is set: anyone who "
              "reaches it can use the service.", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


class BackgroundServer:
    """uvicorn serving an app in a daemon thread, on a port bound before it starts.

    Args:
        app: the ASGI application (e.g. from :func:`create_app`).
        host: the interface (loopback by default).
        port: the port; 0 picks a free one.
        log_level: uvicorn's log level.

    Example:
        >>> with BackgroundServer(create_app(bundle)) as server:  # doctest: +SKIP
        ...     httpx.get(server.url + "/v1/health")
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0,
                 log_level: str = "warning") -> None:
        # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only
        # when the listening socket says TCP; without it every answer waits ~40 ms for
        # a delayed ACK (Nagle).
        self._socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                     socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = host, int(self._socket.getsockname()[1])
        self._server = uvicorn.Server(uvicorn.Config(app, log_level=log_level,
                                                     lifespan="on"))
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._socket]},
                                        name=f"uvicorn-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        """Start the thread and wait until uvicorn accepts connections.

        Raises:
            AllocatorError: uvicorn did not start within ``timeout`` seconds.
        """
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise AllocatorError(f"BackgroundServer: uvicorn did not start on {self.url} "
                                     f"within {timeout:g} s; see its log above.")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Ask uvicorn to finish (requests in flight complete) and join the thread."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._socket.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
