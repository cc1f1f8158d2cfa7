"""LLM clients: the protocol executors call, and an OpenAI-compatible HTTP client."""

from allocator.llm.protocol import Completion, LLMClient, Message, as_messages

__all__ = ["Completion", "LLMClient", "Message", "as_messages"]
