"""Logs written by the real strategy executors, for the replay tests: every kind of row
(samples, refinements by workspace, summaries, verdicts, judge votes, verification
events), made in-process by a small deterministic LLM and a seeded random policy."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from allocator.actions import STOP
from allocator.executors import (
    BestOfN,
    ParallelDistillRefine,
    RunRecorder,
    SelfConsistency,
    TournamentVoting,
)
from allocator.featurizer import StateBatch
from allocator.llm.protocol import Completion, Message
from allocator.logs import read_attempts
from allocator.logs.table import AttemptLog
from allocator.verifiers import Candidate, Problem, Verdict


class HashLLM:
    """Replies "The answer is N." with N in 0..3 drawn from a hash of the prompt and a
    per-prompt counter (deterministic; judge prompts get "Best: k"); a reply's tokens are
    its characters."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    async def complete(self, messages: Sequence[Message], *, n: int = 1,
                       **params: Any) -> list[Completion]:
        del params
        prompt = messages[-1]["content"]
        replies = []
        for _ in range(n):
            count = self.calls[prompt] = self.calls.get(prompt, 0) + 1
            digest = hashlib.sha256(f"{prompt}|{count}".encode()).digest()
            if prompt.startswith("Candidate solutions"):
                text = f"Best: {1 + digest[0] % 2}"
            else:
                text = "Thinking " + "." * (digest[1] % 20) + f" The answer is {digest[0] % 4}"
            replies.append(Completion(text=text, completion_tokens=len(text),
                                      finish_reason="stop"))
        await asyncio.sleep(0)
        return replies


class HashVerifier:
    """Scores a candidate by a hash of its text (NaN for one in five); costs 3."""

    name = "hash"

    async def verify(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Verdict]:
        del problem
        out = []
        for candidate in candidates:
            value = hashlib.sha256(candidate.text.encode()).digest()[0]
            out.append(Verdict(float("nan") if value % 5 == 0 else value / 255, 3.0, "hash"))
        return out


class RandomDecisions:
    """Samples, refines, verifies or stops at random among the allowed actions."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, state: StateBatch, mask: np.ndarray) -> np.ndarray:
        weights = np.where(mask, 1.0, 0.0)[0]
        drawn = float(state.samples.sum() + state.refines.sum())
        weights[STOP] *= 0.0 if drawn < 2 else 0.1
        if weights.sum() == 0:
            return np.array([STOP])
        return np.array([self.rng.choice(len(weights), p=weights / weights.sum())])


def _extract(text: str) -> str | None:
    marker = "The answer is "
    return text.rsplit(marker, 1)[1].strip() if marker in text else None


def executor_log(folder: Path, n_queries: int = 8, seed: int = 0) -> AttemptLog:
    """One log of every strategy's runs (queries ``<strategy>-<i>``, reference "2")."""
    path = folder / "runs.jsonl"
    arms = {"m": {"temperature": 1.0}}

    async def record() -> None:
        client = HashLLM()
        with RunRecorder(path) as recorder:
            for i in range(n_queries):
                common = {"decider": RandomDecisions(seed * 1000 + i), "recorder": recorder,
                          "max_llm_calls": 30}
                strategies = {
                    "sc": SelfConsistency(client, arms, _extract, **common),
                    "bon": BestOfN(client, arms, _extract, verifier=HashVerifier(), **common),
                    "rtv": TournamentVoting(client, arms, _extract, votes=2, **common),
                    "pdr": ParallelDistillRefine(client, arms, _extract, width=2, votes=1,
                                                 **common),
                }
                for name, executor in strategies.items():
                    await executor.arun(Problem(f"{name}-{i}", f"Question {name} {i}?",
                                                reference="2"))

    asyncio.run(record())
    log, _ = read_attempts(path)
    return log
