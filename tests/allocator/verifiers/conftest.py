"""Shared pieces of the verifier tests: small sandbox limits and a scripted LLM client."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from allocator.errors import LLMError
from allocator.llm.protocol import Completion, Message
from allocator.verifiers import Limits


class ScriptedClient:
    """A real, deterministic :class:`~allocator.llm.protocol.LLMClient` for judge tests.

    ``script(prompt)`` gives the reply texts for a grading prompt (cycled to ``n``).
    Records every call, and how many calls were in flight at once (each call awaits
    ``delay`` seconds, so concurrent calls overlap).
    """

    def __init__(self, script: Callable[[str], Sequence[str]], *, delay: float = 0.02,
                 completion_tokens: int = 7, prompt_tokens: int = 30,
                 fail_when: str | None = None) -> None:
        self.script = script
        self.delay = delay
        self.completion_tokens = completion_tokens
        self.prompt_tokens = prompt_tokens
        self.fail_when = fail_when
        self.calls: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.cancelled = 0

    async def complete(self, messages: Sequence[Message], *, n: int = 1,
                       **params: Any) -> list[Completion]:
        prompt = messages[-1]["content"]
        self.calls.append({"messages": list(messages), "n": n, "params": params})
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            if self.fail_when is not None and self.fail_when in prompt:
                raise LLMError("scripted failure", status=500, attempts=3)
            await asyncio.sleep(self.delay if self.fail_when is not None else 0)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1
        texts = list(self.script(prompt))
        return [Completion(texts[i % len(texts)], completion_tokens=self.completion_tokens,
                           prompt_tokens=self.prompt_tokens / n) for i in range(n)]


@pytest.fixture
def scripted_client() -> type[ScriptedClient]:
    """The :class:`ScriptedClient` class."""
    return ScriptedClient


@pytest.fixture(scope="session")
def small_limits() -> Limits:
    """Limits small enough that misbehaving candidates are stopped within a second."""
    return Limits(wall_seconds=8.0, test_seconds=0.5, test_wall_seconds=0.5, cpu_seconds=4,
                  memory_bytes=256 << 20, file_bytes=1 << 20, max_processes=8,
                  output_bytes=2000)
