"""LLM clients: the protocol executors call, and an OpenAI-compatible HTTP client.

:class:`OpenAIClient` is imported on first use (it needs httpx, the ``llm`` extra), so
``import allocator.llm`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from allocator.errors import LLMError
from allocator.llm.protocol import Completion, LLMClient, Message, as_messages

if TYPE_CHECKING:
    from allocator.llm.openai_client import OpenAIClient

__all__ = ["Completion", "LLMClient", "LLMError", "Message", "OpenAIClient", "as_messages"]


def __getattr__(name: str) -> Any:
    if name == "OpenAIClient":
        from allocator.llm.openai_client import OpenAIClient

        return OpenAIClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
