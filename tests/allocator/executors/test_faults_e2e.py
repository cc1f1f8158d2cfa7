"""Executors over real HTTP when the server misbehaves (no public data needed).

The replay server serves a hand-made pool; faults are injected on the wire: 429s, 500s,
malformed bodies, dropped connections and slow replies are retried by the client and the
run completes with the same rows as a clean run; a server killed mid-run ends the query
with :class:`~allocator.errors.ExecutorError`, and the run log written so far holds only
whole records of completed calls, which read back as a valid log.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest
from replay_server import Fault, start_replay_server

from allocator.answers import get_extractor
from allocator.errors import ExecutorError
from allocator.executors import RunRecorder, SelfConsistency
from allocator.logs import read_attempts
from allocator.policies import make_policy
from allocator.verifiers import Problem

MODEL = "pool"
POOL = [{"question": f"What is {i} + {i}?", "answer": str(2 * i),
         "generated": [f"{i} + {i} = {2 * i}. The answer is {2 * i}." if k % 3 else
                       f"Hmm, {i} + {i} = {2 * i + 1}. The answer is {2 * i + 1}."
                       for k in range(12)]} for i in range(1, 7)]
PROBLEMS = [Problem(f"q{i}", record["question"], reference=record["answer"])
            for i, record in enumerate(POOL)]
SAMPLES = 5


def run(server_url: str, path: Path, problems: list[Problem], *, retries: int = 4,
        parallelism: int = 2) -> list:
    from allocator.llm import OpenAIClient

    async def main() -> list:
        async with OpenAIClient(MODEL, base_url=server_url, max_retries=retries,
                                backoff=0.01, timeout=1.0) as client:
            with RunRecorder(path) as recorder:
                executor = SelfConsistency(client, {"pool": {"temperature": 0.7}},
                                           get_extractor("number"),
                                           decider=make_policy("fixed-n", n=SAMPLES),
                                           parallelism=parallelism, recorder=recorder)
                results = []
                for problem in problems:  # one query at a time: a clear failure point
                    results.append(await executor.arun(problem))
                return results

    return asyncio.run(main())


def reported(results: list) -> list[list[str]]:
    return [[row["completion"] for row in result.rows if row["reported"]]
            for result in results]


@pytest.mark.slow
def test_retried_faults_leave_the_same_run_as_a_clean_server(tmp_path: Path) -> None:
    with start_replay_server({MODEL: POOL}) as server:
        clean = run(server.url, tmp_path / "clean.jsonl", PROBLEMS, parallelism=1)
        clean_requests = len(server.requests_seen())
    faults = [Fault.rate_limit(retry_after=0.05), Fault.server_error(times=2),
              Fault.malformed(), Fault.drop(), Fault.slow(delay=2.0)]
    with start_replay_server({MODEL: POOL}, faults=faults) as server:
        # The six faulty replies can all fall on one request: 7 attempts must be allowed.
        faulty = run(server.url, tmp_path / "faulty.jsonl", PROBLEMS, parallelism=1,
                     retries=8)
        faulty_requests = len(server.requests_seen())
    assert faulty_requests == clean_requests + 6  # each fault was hit once, and retried
    assert reported(faulty) == reported(clean)  # the same logged generations, in order
    assert [r.answer for r in faulty] == [r.answer for r in clean] == [p.reference
                                                                      for p in PROBLEMS]
    log, _ = read_attempts(tmp_path / "faulty.jsonl")
    assert log.n_queries == len(PROBLEMS) and log.n_attempts == len(PROBLEMS) * SAMPLES


@pytest.mark.slow
def test_a_server_killed_mid_run_fails_clearly_and_the_log_stays_valid(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    # Every reply takes 0.3 s, so the kill lands while requests are in flight.
    with start_replay_server({MODEL: POOL}, faults=[Fault.slow(delay=0.3, times=None)]
                             ) as server:
        killer = threading.Timer(2.0, server.kill)
        killer.start()
        try:
            with pytest.raises(ExecutorError) as error:
                run(server.url, path, PROBLEMS, retries=1, parallelism=2)
        finally:
            killer.cancel()
    assert "connection failed" in str(error.value) or "gave up" in str(error.value)
    failed = error.value.query_id
    assert failed in {problem.query_id for problem in PROBLEMS}
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # the file ends with a whole record
    records = [json.loads(line) for line in lines[:-1]]
    assert records, "some calls completed before the kill"
    log, _ = read_attempts(path)  # a valid log: whole records of completed calls only
    assert log.n_attempts == len(records)
    finished = {r["query_id"] for r in records} - {failed}
    for query in finished:  # queries before the failure are complete
        assert sum(r["query_id"] == query and r["reported"] for r in records) == SAMPLES
