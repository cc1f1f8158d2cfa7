"""End to end over real HTTP: self-consistency with the OpenAI-compatible client against
the replay server, which serves GPT-3.5's logged generations of the BIG-bench date task
(MoT ``date_cot1_40``); answers are extracted from the real texts and vote as the
authors' logged per-generation answers do."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections import Counter
from pathlib import Path

import pytest
from replay_server import mot_sources, start_replay_server

from allocator.answers import get_extractor
from allocator.executors import RunRecorder, SelfConsistency
from allocator.logs import read_attempts
from allocator.policies import make_policy
from allocator.verifiers import Problem

DATE_MODEL = "gpt-3.5-turbo/date_cot1_40"
QUESTIONS = 10
SAMPLES = 5


@pytest.mark.public_logs
def test_self_consistency_over_http_votes_the_logged_answers(public_logs: Path,
                                                             tmp_path: Path) -> None:
    from allocator.llm import OpenAIClient

    source = mot_sources(public_logs, DATE_MODEL)[DATE_MODEL]
    with gzip.open(source, "rt", encoding="utf-8") as file:
        records = json.load(file)[:QUESTIONS]
    date = get_extractor("date")
    problems = [Problem(f"date-{i}", record["question"], reference=record["answer"])
                for i, record in enumerate(records)]
    path = tmp_path / "runs.jsonl"

    with start_replay_server(mot_sources(public_logs, DATE_MODEL)) as server:
        async def serve() -> list:
            async with OpenAIClient(DATE_MODEL, base_url=server.url) as client:
                with RunRecorder(path) as recorder:
                    executor = SelfConsistency(
                        client, {"gpt-3.5": {"temperature": 0.7}}, date,
                        decider=make_policy("fixed-n", n=SAMPLES), parallelism=2,
                        recorder=recorder)
                    return await executor.arun_many(problems, concurrency=4)

        results = asyncio.run(serve())
        seen = server.requests_seen()

    # A request cancelled while being sent reaches the server with no body: skip those.
    bodies = [request["body"] for request in seen if request["body"]]
    assert bodies and all(body["temperature"] == 0.7 for body in bodies)
    for record, result in zip(records, results, strict=True):
        rows = [row for row in result.rows if row["reported"]]
        assert len(rows) == SAMPLES
        logged = dict(zip(record["generated"], record["results"], strict=True))
        for row in rows:
            assert row["completion"] in logged  # a real logged generation
            theirs = date.normalize(logged[row["completion"]])
            if theirs is not None:  # the authors logged an answer (not the whole text)
                assert row["answer"] == theirs
        votes = Counter(row["answer"] for row in rows if row["answer"] is not None)
        top = max(votes.values())
        assert result.answer in {answer for answer, count in votes.items() if count == top}
        assert result.correct == float(result.answer == record["answer"])

    log, _ = read_attempts(path)
    assert log.n_attempts == sum(len(result.rows) for result in results)
    assert log.n_queries == QUESTIONS
    texts = dict(zip(log.query_ids.tolist(), log.queries.text.tolist(), strict=True))
    assert texts == {problem.query_id: problem.question for problem in problems}
