"""CPU work off the event loop, with a time limit per request.

The batch endpoints (``/v1/allocate``, ``/v1/budget``) compute in proportion to the
request (queries x ``max_samples``): :class:`OffLoop` runs them in worker threads, a few
at a time, so that the event loop keeps answering ``/v1/health``, the other requests and
the shutdown signal while they compute. A request that waits and computes longer than
the limit is answered ``503`` (:class:`RequestTimeout`); its thread is abandoned and
finishes on its own (the computation holds no lock and writes nothing shared).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

from allocator._checks import check_int
from allocator.errors import AllocatorError, ParameterError

__all__ = ["DEFAULT_REQUEST_TIMEOUT", "DEFAULT_WORKERS", "OffLoop", "RequestTimeout"]

#: Seconds a batch request may wait and compute before it is answered 503.
DEFAULT_REQUEST_TIMEOUT = 30.0
#: Batch computations that run at once (more wait for a free worker, within the limit).
DEFAULT_WORKERS = 2

T = TypeVar("T")


class RequestTimeout(AllocatorError):
    """A request waited and computed longer than the server's limit (answered 503).

    Attributes:
        endpoint: the endpoint, e.g. ``POST /v1/allocate``.
        limit: the limit, in seconds.
    """

    def __init__(self, endpoint: str, limit: float) -> None:
        super().__init__(f"{endpoint} took longer than this server's limit of {limit:g} s "
                         "per request (create_app's request_timeout); send fewer queries "
                         "or a smaller max_samples, or retry when the server is less busy.")
        self.endpoint = endpoint
        self.limit = limit


class OffLoop:
    """Run blocking calls in worker threads, at most ``workers`` at once, each within
    ``timeout`` seconds (waiting for a worker included).

    Args:
        timeout: the limit per call, in seconds (> 0).
        workers: how many calls compute at once (>= 1).
    """

    def __init__(self, timeout: float = DEFAULT_REQUEST_TIMEOUT,
                 workers: int = DEFAULT_WORKERS) -> None:
        if (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                or not math.isfinite(timeout) or timeout <= 0):
            raise ParameterError("create_app", "request_timeout", "a finite number of "
                                 "seconds > 0", timeout)
        workers = check_int("create_app", "workers", workers, minimum=1)
        self.timeout = float(timeout)
        self.workers = workers
        self._limiter: anyio.CapacityLimiter | None = None

    async def run(self, endpoint: str, call: Callable[..., T], *args: object) -> T:
        """``call(*args)`` in a worker thread.

        Raises:
            RequestTimeout: it did not finish within the limit.
        """
        if self._limiter is None:  # created on the serving loop
            self._limiter = anyio.CapacityLimiter(self.workers)
        with anyio.move_on_after(self.timeout):
            return await anyio.to_thread.run_sync(call, *args, limiter=self._limiter,
                                                  abandon_on_cancel=True)
        raise RequestTimeout(endpoint, self.timeout)
