"""LLM requests in flight: speculative launches, taking results in completion order,
cancelling the rest. Private machinery of :mod:`allocator.executors.base`.

Requests are grouped by a *key* (what they produce: ``("sample", arm)``,
``("refine", round)``): the executor launches requests of a key ahead of the policy's
decisions and :meth:`InFlight.take` hands out one finished result of that key at a time,
in the order they finished. :meth:`InFlight.cancel_all` cancels what is still running,
waits until every task has ended (none is left behind) and returns the results that
finished but were never taken.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections import deque
from collections.abc import Coroutine, Hashable
from dataclasses import dataclass, field
from typing import Any

from allocator.llm.protocol import Completion

__all__ = ["CallOutcome", "InFlight"]



@dataclass(frozen=True)
class CallOutcome:
    """One finished LLM request.

    Attributes:
        key: what the request was for.
        seq: launch order within the run.
        completions: the completions.
        latency_s: seconds from the request to its reply.
        info: what the launcher attached (e.g. the round of a refinement).
        started_at: when the request started, in seconds since the run started
            (``time.monotonic()``; NaN until the run's timer sets it).
        ended_at: when its reply came, on the same clock.
        wave: the run's launch wave it belongs to (None until set).
    """

    key: Hashable
    seq: int
    completions: list[Completion]
    latency_s: float
    info: dict[str, Any] = field(default_factory=dict)
    started_at: float = math.nan
    ended_at: float = math.nan
    wave: int | None = None


class InFlight:
    """The requests of one run that are launched but not yet reported to the session."""

    def __init__(self) -> None:
        self._pending: dict[Hashable, list[asyncio.Task[CallOutcome]]] = {}
        self._ready: dict[Hashable, deque[CallOutcome]] = {}
        self._seq = itertools.count()
        self.cancelled = 0

    def next_seq(self) -> int:
        """The launch number of the next request."""
        return next(self._seq)

    def pending(self, key: Hashable | None = None) -> int:
        """Requests still running (of ``key``, or in all)."""
        if key is not None:
            return len(self._pending.get(key, ()))
        return sum(len(tasks) for tasks in self._pending.values())

    def available(self, key: Hashable) -> int:
        """Results of ``key`` finished or running, not taken yet."""
        return self.pending(key) + len(self._ready.get(key, ()))

    def launch(self, key: Hashable, coroutine: Coroutine[Any, Any, CallOutcome]) -> None:
        """Start a request of ``key``."""
        self._pending.setdefault(key, []).append(asyncio.ensure_future(coroutine))

    async def take(self, key: Hashable) -> CallOutcome:
        """The next finished result of ``key`` (waits for one if none has finished).

        Results finished together are queued in launch order. If a request failed, the
        other finished results are queued first, then its exception is raised.

        Raises:
            LookupError: nothing of ``key`` is running or waiting (a caller's bug).
        """
        ready = self._ready.setdefault(key, deque())
        while not ready:
            tasks = self._pending.get(key)
            if not tasks:
                raise LookupError(f"no request of {key!r} in flight")
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            self._pending[key] = [task for task in tasks if task not in done]
            failure: BaseException | None = None
            for task in sorted(done, key=tasks.index):
                error = None if task.cancelled() else task.exception()
                if task.cancelled():
                    self.cancelled += 1
                elif error is not None:
                    failure = failure or error
                else:
                    ready.append(task.result())
            if failure is not None:
                raise failure
        return ready.popleft()

    async def take_all(self, key: Hashable) -> list[CallOutcome]:
        """Every result of ``key`` once all of its requests have ended, in launch order
        (a wave: its results are reported in the order its calls were launched).

        Raises:
            BaseException: the first failure among them (in launch order), once all have
                ended; the results that finished stay queued for :meth:`cancel_all`, which
                returns them (so their rows are written).
        """
        tasks = self._pending.pop(key, [])
        if tasks:
            await asyncio.wait(tasks)
        ready = self._ready.setdefault(key, deque())
        failure: BaseException | None = None
        for task in tasks:
            if task.cancelled():
                self.cancelled += 1
            elif task.exception() is not None:
                failure = failure or task.exception()
            else:
                ready.append(task.result())
        if failure is not None:
            raise failure
        outcomes = sorted(ready, key=lambda outcome: outcome.seq)
        ready.clear()
        return outcomes

    async def cancel_all(self) -> list[CallOutcome]:
        """Cancel every running request, wait for all to end, return the untaken results.

        Requests that finished (before or despite the cancellation) are returned, in
        launch order; failed ones are dropped (a failed call has nothing to record).
        """
        tasks = [task for group in self._pending.values() for task in group]
        self._pending.clear()
        for task in tasks:
            if not task.done():
                task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        unused = [outcome for queue in self._ready.values() for outcome in queue]
        self._ready.clear()
        for task in tasks:
            if task.cancelled():
                self.cancelled += 1
            elif task.exception() is None:
                unused.append(task.result())
        return sorted(unused, key=lambda outcome: outcome.seq)
