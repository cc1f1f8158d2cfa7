"""Parallel waves and timing columns: SAMPLE(arm)xw launches w requests at once and
observes them in launch order; every row records started_at, ended_at, wave and parent.

The first test runs over real HTTP against the replay server (GPT-3.5's logged
generations of the BIG-bench date task) with simulated generation time; the others use
the scripted client."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
from pathlib import Path

import pytest
from executor_scripts import ARMS, ScriptedClient, ScriptPolicy, extract, run, texts
from replay_server import Latency, mot_sources, start_replay_server

from allocator.answers import get_extractor
from allocator.errors import ExecutorError, LLMError
from allocator.executors import (
    ParallelDistillRefine,
    PolicyOracle,
    RunRecorder,
    SelfConsistency,
    TournamentVoting,
)
from allocator.logs import read_attempts
from allocator.policies import make_policy
from allocator.verifiers import Problem

DATE_MODEL = "gpt-3.5-turbo/date_cot1_40"
QUESTION = "What is 3 + 4?"
TIMING = ("started_at", "ended_at", "wave", "parent")


def samples(result) -> list[dict]:
    return [row for row in result.rows if row["kind"] == "sample" and row["reported"]]


@pytest.mark.public_logs
def test_a_wave_of_four_over_http_overlaps_and_fixed_n_does_not(public_logs: Path,
                                                                tmp_path: Path) -> None:
    from allocator.llm import OpenAIClient

    source = mot_sources(public_logs, DATE_MODEL)[DATE_MODEL]
    with gzip.open(source, "rt", encoding="utf-8") as file:
        record = json.load(file)[0]
    date = get_extractor("date")
    problem = Problem("date-0", record["question"], reference=record["answer"])
    path = tmp_path / "runs.jsonl"
    latency = Latency(base=0.05, per_token=0.001, time_scale=1.0)
    deciders = {"parallel": PolicyOracle(make_policy("parallel-n", n=4), ["gpt-3.5"],
                                         widths=(1, 4)),
                "sequential": PolicyOracle(make_policy("fixed-n", n=4), ["gpt-3.5"])}

    with start_replay_server(mot_sources(public_logs, DATE_MODEL), latency=latency,
                             wrap=True) as server:
        async def serve() -> dict:
            out = {}
            async with OpenAIClient(DATE_MODEL, base_url=server.url) as client:
                with RunRecorder(path) as recorder:
                    for name, decider in deciders.items():
                        executor = SelfConsistency(client, {"gpt-3.5": {"temperature": 0.7}},
                                                   date, decider=decider, recorder=recorder)
                        out[name] = await executor.arun(problem)
            return out

        results = asyncio.run(serve())
        delays = [request["simulated_delay"] for request in server.requests_seen()]

    assert len(delays) == 8 and all(delay > 0.05 for delay in delays)
    wide, one_by_one = results["parallel"], results["sequential"]
    assert [str(action) for action in wide.actions] == ["SAMPLE(gpt-3.5)x4", "STOP"]
    rows = samples(wide)
    assert len(rows) == 4 and {row["wave"] for row in rows} == {0}
    assert {row["step"] for row in rows} == {1} and {row["parent"] for row in rows} == {None}
    # one wave: every call started before the first one ended (they overlapped)
    assert max(row["started_at"] for row in rows) < min(row["ended_at"] for row in rows)
    assert all(0 <= row["started_at"] < row["ended_at"] for row in rows)
    # fixed-N: four waves, one after the other, no overlap
    rows = samples(one_by_one)
    assert [row["wave"] for row in rows] == [0, 1, 2, 3]
    for before, after in itertools.pairwise(rows):
        assert before["ended_at"] <= after["started_at"]
    # four samples either way: the two differ in waiting only
    assert wide.session.state.drawn == one_by_one.session.state.drawn == 4
    log, _ = read_attempts(path)
    assert log.has_timing and (log.duration > 0).all()
    assert sorted(log.extra["wave"].tolist()) == [0, 0, 0, 0, 0, 1, 2, 3]


def test_a_wave_is_observed_in_launch_order_whatever_finishes_first() -> None:
    # call i waits 4 - i ticks: the last launched finishes first
    client = ScriptedClient(samples={QUESTION: texts("1 2 3 4 7")},
                            ticks=lambda number: 4 - number if number < 4 else 1)
    decider = PolicyOracle(make_policy("parallel-n", n=5), ["small"], widths=(1, 4))
    result = run(SelfConsistency(client, ARMS, extract, decider=decider).arun(
        Problem("q1", QUESTION)))
    assert client.max_active == 4
    assert [str(action) for action in result.actions] == ["SAMPLE(small)x4", "SAMPLE(small)",
                                                          "STOP"]
    rows = samples(result)
    assert [row["answer"] for row in rows] == ["1", "2", "3", "4", "7"]  # launch order
    assert [row["wave"] for row in rows] == [0, 0, 0, 0, 1]
    assert result.session.state.answers == ["1", "2", "3", "4", "7"]
    first_done = min(row["ended_at"] for row in rows[:4])
    assert all(row["started_at"] <= first_done for row in rows[:4])
    assert rows[4]["started_at"] >= max(row["ended_at"] for row in rows[:4])


def test_a_wave_that_does_not_fit_the_call_cap_stops_the_run() -> None:
    client = ScriptedClient(samples={QUESTION: texts("7 7 7 7 7")})
    decider = PolicyOracle(make_policy("parallel-n", n=8), ["small"], widths=(1, 4))
    result = run(SelfConsistency(client, ARMS, extract, decider=decider,
                                 max_llm_calls=6).arun(Problem("q1", QUESTION)))
    assert result.stopped_by == "max_llm_calls" and len(client.calls) == 4
    assert [str(action) for action in result.actions] == ["SAMPLE(small)x4"]


def test_a_failed_call_in_a_wave_writes_the_others_then_raises(tmp_path: Path) -> None:
    client = ScriptedClient(samples={QUESTION: texts("7 7 7 7")},
                            fail_at={2: LLMError("upstream gone")})
    decider = PolicyOracle(make_policy("parallel-n", n=4), ["small"], widths=(1, 4))
    path = tmp_path / "runs.jsonl"
    with RunRecorder(path) as recorder, pytest.raises(ExecutorError, match="upstream gone"):
        run(SelfConsistency(client, ARMS, extract, decider=decider,
                            recorder=recorder).arun(Problem("q1", QUESTION)))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 3 and {row["reported"] for row in rows} == {False}
    assert {row["wave"] for row in rows} == {0}


def test_every_row_of_a_tournament_run_is_timed_and_votes_wait_on_summaries() -> None:
    client = ScriptedClient(samples={QUESTION: texts("3 9 5 7")},
                            refinements=texts("8 11 4"))
    policy = make_policy("rtv", n=4, refinements=3)
    executor = TournamentVoting(client, ARMS, extract, votes=2, top_k=2, decider=policy)
    result = run(executor.arun(Problem("q1", QUESTION, reference="11")))
    rows = {row["attempt_id"]: row for row in result.rows}
    for row in result.rows:
        assert all(key in row for key in TIMING)
        assert 0 <= row["started_at"] <= row["ended_at"] and row["wave"] >= 0
        assert row["parent"] is None or row["parent"] in rows
    summaries = {row["attempt_id"] for row in result.rows
                 if row["role"] == "rollout summary"}
    votes = [row for row in result.rows if row["role"] == "vote"]
    assert votes and all(row["parent"] in summaries for row in votes)
    for row in result.rows:
        if row["role"] == "rollout summary":
            assert row["parent"] == row["summarises"]
        if row["role"] == "refinement":
            assert row["parent"] == row["summary"]
    # a comparison's votes were fired together: one wave per bracket level
    by_comparison: dict[str, set[int]] = {}
    for row in votes:
        by_comparison.setdefault(row["comparison"], set()).add(row["wave"])
    assert all(len(waves) == 1 for waves in by_comparison.values())
    # every vote began after the summaries it waited on ended
    assert all(row["started_at"] >= rows[row["parent"]]["ended_at"] for row in votes)
    # the samples came before any judging
    sample_waves = [row["wave"] for row in result.rows if row["role"] == "sample"]
    assert max(sample_waves) < min(row["wave"] for row in votes)


def test_timing_of_sequential_samples_and_a_refinement() -> None:
    client = ScriptedClient(samples={QUESTION: texts("7 3")}, refinements=texts("7"))
    executor = ParallelDistillRefine(client, ARMS, extract,
                                     decider=ScriptPolicy(drafts=2, refines=1), width=1)
    result = run(executor.arun(Problem("q1", QUESTION)))
    by_role = {row["role"]: row for row in result.rows}
    waves = [row["wave"] for row in result.rows if row["role"] == "sample"]
    assert waves == [0, 1]
    summary, refinement = by_role["summary"], by_role["refinement"]
    assert summary["parent"] in {row["attempt_id"] for row in result.rows
                                 if row["role"] == "sample"}
    assert refinement["parent"] == summary["attempt_id"]
    assert summary["wave"] < refinement["wave"]
    assert refinement["started_at"] >= summary["ended_at"]
