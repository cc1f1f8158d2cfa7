"""Shared data and helpers of the LLM tests (the fixtures are in this folder's conftest)."""

from __future__ import annotations

from typing import Any

#: A hand-made pool: enough for the fault tests, which need no public data.
TINY_POOL: list[dict[str, Any]] = [
    {"question": "What is 2 + 3?", "answer": "5",
     "generated": [f"Sample {i}: 2 + 3 = 5. The answer is 5." for i in range(6)]},
    {"question": "What is 7 * 6?", "answer": "42",
     "generated": ["7 * 6 = 42. The answer is 42.", "The answer is 42."]},
]
TINY_MODEL = "tiny"
DATE_MODEL = "gpt-3.5-turbo/date_cot1_40"


def user(text: str) -> list[dict[str, str]]:
    """One user message."""
    return [{"role": "user", "content": text}]
