"""Fixtures of the LLM-client tests: replay servers over a small hand-made pool or MoT logs."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from replay_pools import DATE_MODEL, TINY_MODEL, TINY_POOL
from replay_server import ReplayServer, mot_sources, start_replay_server


@pytest.fixture
def tiny_server() -> Iterator[ReplayServer]:
    """A replay server over :data:`TINY_POOL`, no faults (tests set them)."""
    with start_replay_server({TINY_MODEL: TINY_POOL}) as server:
        yield server


@pytest.fixture(scope="session")
def date_log(public_logs: Path) -> list[dict[str, Any]]:
    """The GPT-3.5 date log with 40 generations per question (MoT)."""
    path = mot_sources(public_logs, DATE_MODEL)[DATE_MODEL]
    with gzip.open(path, "rt", encoding="utf-8") as file:
        return json.load(file)


@pytest.fixture
def date_server(public_logs: Path) -> Iterator[ReplayServer]:
    """A replay server over the GPT-3.5 date log (``gpt-3.5-turbo/date_cot1_40``)."""
    with start_replay_server(mot_sources(public_logs, DATE_MODEL)) as server:
        yield server
