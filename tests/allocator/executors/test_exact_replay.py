"""Exact replay of executor runs (issue 15, items 1 and 5): every strategy is run live, over
real HTTP, against the replay server of GPT-3.5's logged generations (the BIG-bench date
task), by a seeded policy that samples, refines and verifies at random; the run's log is
recorded, graded and read back, and the run's own decisions are replayed in the
environment, which must offer every one of them and end with the live run's correctness
and cost, to the token.

The replay server answers every request with logged generations of the question the
prompt ends with, so the refinement, distillation and judge prompts here end with the
question: their replies are real generations (a judge's reply rarely names a
candidate, so the tournament falls back to its tie-breaks, deterministically).
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from replay_server import mot_sources, start_replay_server

from allocator.actions import STOP
from allocator.answers import get_extractor
from allocator.envs import ReplayEnv
from allocator.executors import (
    BestOfN,
    ParallelDistillRefine,
    RunRecorder,
    RunResult,
    SelfConsistency,
    TournamentVoting,
)
from allocator.executors.recorder import normalise_reference
from allocator.featurizer import StateBatch
from allocator.logs import read_attempts
from allocator.verifiers import LLMJudge, Problem

DATE_MODEL = "gpt-3.5-turbo/date_cot1_40"
ARM = "gpt-3.5"
SEEDS = range(8)
DISTILL = "Attempts ({count}):\n{candidates}\n\nSummarise in {max_words} words.\n\n{question}"
REFINE = "Round {round}. Notes from earlier attempts:\n{summary}\n\nSolve again:\n{question}"
JUDGE = "{candidates}\n\nWhich candidate is right ({numbers})?\n\n{question}"
SUMMARY = "Attempt:\n{solution}\n\nSummarise it in {max_words} words.\n\n{question}"


class RandomDecisions:
    """A seeded policy that samples, refines, verifies and stops at random among the
    allowed actions (STOP only after three draws), so runs take every kind of decision."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, state: StateBatch, mask: np.ndarray) -> np.ndarray:
        weights = np.where(mask, 1.0, 0.0)[0]
        drawn = float(state.samples.sum() + state.refines.sum())
        weights[STOP] *= 0.0 if drawn < 3 else 0.07
        weights[1] *= 0.3
        weights[2] *= 0.45  # REFINE
        weights[3:] *= 0.25
        if weights.sum() == 0:
            return np.array([STOP])
        return np.array([self.rng.choice(len(weights), p=weights / weights.sum())])


def contested(source: Path) -> list[dict[str, Any]]:
    """The questions GPT-3.5 answered right 20 to 80% of the time (runs then end both
    right and wrong)."""
    date = get_extractor("date")
    with gzip.open(source, "rt", encoding="utf-8") as file:
        records = json.load(file)
    chosen = []
    for record in records:
        reference = normalise_reference(record["answer"], date)
        right = [str(date(text)) == reference for text in record["generated"]]
        if 0.2 <= np.mean(right) <= 0.8:
            chosen.append(record)
    return chosen


def judge_vote(text: str) -> float:
    """A deterministic stand-in for a parsed verdict (the server answers with logged
    generations, not verdicts): any fixed function of the reply serves replay's check."""
    return float(len(text) % 7) / 6.0


def executors(client: Any, seed: int, recorder: RunRecorder) -> dict[str, Any]:
    date = get_extractor("date")
    common = {"decider": RandomDecisions(seed), "recorder": recorder, "max_llm_calls": 40}
    arms = {ARM: {"temperature": 0.7}}
    tournament = {"judge_prompt": JUDGE, "summary_prompt": SUMMARY, "votes": 2,
                  "refine_prompt": REFINE, "distill_prompt": DISTILL, "seed": seed}
    return {
        "self-consistency": lambda: SelfConsistency(client, arms, date, **common),
        "best-of-n": lambda: BestOfN(client, arms, date, verifier=LLMJudge(
            client, votes=2, template="Candidate answer: {answer}\n\n{question}",
            parse=judge_vote), **common),
        "rtv": lambda: TournamentVoting(client, arms, date, width=2, **tournament,
                                        **common),
        "pdr": lambda: ParallelDistillRefine(client, arms, date, width=(2, 1),
                                             **tournament, **common),
        "pdr-top-k": lambda: ParallelDistillRefine(client, arms, date, width=2,
                                                   workspace="top-k", **tournament,
                                                   **common),
    }


def live_run(server_url: str, strategy: str, seed: int, problem: Problem, path: Path
             ) -> RunResult:
    from allocator.llm import OpenAIClient

    async def serve() -> RunResult:
        async with OpenAIClient(DATE_MODEL, base_url=server_url) as client:
            with RunRecorder(path) as recorder:
                make: Callable[[], Any] = executors(client, seed, recorder)[strategy]
                return await make().arun(problem)

    return asyncio.run(serve())


def replay(path: Path, result: RunResult, seed: int) -> dict[str, Any]:
    """The run's own decisions replayed in the environment on the run's own draws (the
    logged order; other policies replay on random orders, where the masks refuse what
    the log cannot support): each decision must be offered."""
    log, _ = read_attempts(path)
    assert log.arms == (ARM,)
    env = ReplayEnv(log, lambda_=0.0, cost_unit=1.0)
    env.reset(seed=seed, options={"query": 0, "order": "logged"})
    performed = [action.index for action in result.actions if action.kind != "stop"]
    for step, action in enumerate(performed):
        notes = getattr(env.pools, "notes", ())
        assert env.action_masks()[action], (step, str(result.actions[step]), notes)
        *_, info = env.step(action)
    *_, info = env.step(STOP)
    assert not info["invalid_action"]
    return info


@pytest.mark.public_logs
@pytest.mark.parametrize("strategy", ["self-consistency", "best-of-n", "rtv", "pdr",
                                      "pdr-top-k"])
def test_replaying_a_live_run_reproduces_its_correctness_and_cost(
        public_logs: Path, tmp_path: Path, strategy: str) -> None:
    records = contested(mot_sources(public_logs, DATE_MODEL)[DATE_MODEL])
    kinds: set[str] = set()
    with start_replay_server(mot_sources(public_logs, DATE_MODEL), wrap=True) as server:
        for seed in SEEDS:
            record = records[seed % len(records)]
            problem = Problem(f"date-{seed}", record["question"], reference=record["answer"])
            path = tmp_path / f"{strategy}-{seed}.jsonl"
            result = live_run(server.url, strategy, seed, problem, path)
            kinds |= {action.kind for action in result.actions}
            info = replay(path, result, seed)
            assert info["cost"] == pytest.approx(result.cost, rel=1e-12, abs=1e-9), seed
            tied = result.session.state.final_answers()
            if len(tied) <= 1:
                assert info["correct"] == result.correct, seed
            else:  # a vote tie: the live run took the first seen, replay credits the mean
                reference = normalise_reference(record["answer"], get_extractor("date"))
                grades = [float(str(answer) == reference) for answer in tied]
                assert result.correct in grades
                assert info["correct"] == pytest.approx(np.mean(grades)), seed
    wanted = {"self-consistency": {"sample", "stop"}, "best-of-n": {"sample", "verify"},
              "rtv": {"sample", "refine", "verify"}, "pdr": {"sample", "refine", "verify"},
              "pdr-top-k": {"sample", "refine", "verify"}}[strategy]
    assert wanted <= kinds
