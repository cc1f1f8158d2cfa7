"""Fixtures of the replay environment tests (the logs themselves: replay_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import replay_fixtures

from allocator.logs.table import AttemptLog


@pytest.fixture
def tiny_log() -> AttemptLog:
    """One arm, three queries; q0 has a 2-2 tie, q1 no-answers, q2 one sample."""
    return replay_fixtures.tiny_log()


@pytest.fixture
def rich_log() -> AttemptLog:
    """Two arms, refinements over two rounds, verifier scores on most candidates."""
    return replay_fixtures.rich_log()


@pytest.fixture(scope="session")
def mot_date(public_logs: Path) -> pa.Table:
    """The date task of the MoT cascade logs."""
    return replay_fixtures.read_mot_date(public_logs)


@pytest.fixture(scope="session")
def date_gpt35_log(mot_date: pa.Table) -> AttemptLog:
    """date, gpt-3.5-turbo, cot1_40: 369 queries x 40 samples, cost 1 per sample."""
    return replay_fixtures.mot_log(mot_date, [("gpt-3.5-turbo", "cot1_40")])


@pytest.fixture(scope="session")
def date_cascade_log(mot_date: pa.Table) -> AttemptLog:
    """date, a three-model cascade: Llama-2-13B (20/query), GPT-3.5 (20), GPT-4 (3)."""
    return replay_fixtures.mot_log(
        mot_date,
        [("llama-2-13b", "cot1"), ("gpt-3.5-turbo", "cot1"), ("gpt-4", "cot1")],
        cost="gen_chars",
    )
