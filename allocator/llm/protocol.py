"""The LLM client contract every executor and LLM-based verifier talks to.

A client turns one chat request into ``n`` completions. It is asynchronous so that an
executor can run samples in parallel and cancel the ones still in flight when the oracle
says STOP (cancelling the awaiting task must abort the HTTP request). Any object with a
matching :meth:`LLMClient.complete` works: the OpenAI-compatible HTTP client
(:class:`allocator.llm.OpenAIClient`), a replay client for tests, a user's own wrapper.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["Completion", "LLMClient", "Message", "as_messages"]

#: One chat message: ``{"role": "system" | "user" | "assistant", "content": str}``.
Message = Mapping[str, str]


@dataclass(frozen=True)
class Completion:
    """One generated completion.

    Attributes:
        text: the generated text.
        completion_tokens: tokens generated for this completion (the server's count; with
            ``n > 1`` the response's total is split evenly when it gives no per-choice
            count).
        prompt_tokens: prompt tokens billed for the request this completion came from,
            shared by its ``n`` completions (``prompt_tokens / n`` each), or None.
        logprobs: per-token log-probabilities of the text, when the server returned them.
        finish_reason: the server's reason (``"stop"``, ``"length"``...), if given.
        model: the model that answered, if the server said.
        raw: anything else the client keeps (never needed by executors).
    """

    text: str
    completion_tokens: int = 0
    prompt_tokens: float | None = None
    logprobs: tuple[float, ...] | None = None
    finish_reason: str | None = None
    model: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def tokens(self) -> float:
        """Prompt share plus completion tokens: the cost executors record by default."""
        return self.completion_tokens + (self.prompt_tokens or 0.0)


@runtime_checkable
class LLMClient(Protocol):
    """Anything that completes chat requests.

    Implementations must be safe to call concurrently from one event loop, honour
    cancellation (``asyncio.CancelledError`` aborts the request), and raise
    :class:`allocator.llm.LLMError` (or a subclass) for failures they give up on.
    """

    async def complete(self, messages: Sequence[Message], *, n: int = 1,
                       **params: Any) -> list[Completion]:
        """Generate ``n`` completions of ``messages``.

        Args:
            messages: the chat so far.
            n: how many independent completions.
            **params: sampling parameters passed to the server (``temperature``,
                ``max_tokens``, ``model``, ``logprobs``...).

        Returns:
            ``n`` completions, in the server's order.
        """
        ...


def as_messages(prompt: str | Sequence[Message], system: str | None = None) -> list[Message]:
    """A prompt string (or messages) as a list of chat messages.

    Args:
        prompt: a user prompt, or messages already.
        system: an optional system message put first.
    """
    messages: list[Message] = []
    if system is not None:
        messages.append({"role": "system", "content": system})
    if isinstance(prompt, str):
        messages.append({"role": "user", "content": prompt})
    else:
        messages.extend(dict(message) for message in prompt)
    return messages
