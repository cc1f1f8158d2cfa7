"""The run recorder: its file reads back as a log (ingest, summary, replay) with the right
kinds, rounds and costs; torn last lines; grading an ungraded run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from executor_scripts import ScriptedClient, ScriptPolicy, extract, run, texts
from typer.testing import CliRunner

from allocator.cli import app
from allocator.errors import LogFormatError, ParameterError
from allocator.executors import (
    BestOfN,
    ParallelDistillRefine,
    RunRecorder,
    SelfConsistency,
    TournamentVoting,
    grade_run_log,
)
from allocator.logs import read_attempts, read_log, summarize
from allocator.logs.schema import KINDS
from allocator.policies import make_policy
from allocator.verifiers import Problem, Verdict

ARMS = {"small": {"model": "small-model"}}


class ExactVerifier:
    """1.0 for the answer "7", else 0.0; costs 1 per candidate."""

    name = "exact"

    async def verify(self, problem, candidates):
        return [Verdict(float(c.answer == "7"), 1.0) for c in candidates]


def record_every_strategy(path: Path, *, references: bool = True) -> list:
    """Four strategies on four questions into one file; their results."""
    questions = {f"Question {i}?": "7 3 7 7 9" for i in range(4)}
    client = ScriptedClient(samples={q: texts(a) for q, a in questions.items()},
                            refinements=texts("7 7 3"),
                            judge=lambda prompt: "Best: 1")
    problems = [Problem(f"q{i}", q, reference="7" if references else None,
                        metadata={"task": "arith", "tests": [1, 2]})
                for i, q in enumerate(questions)]
    with RunRecorder(path, query_columns=["task"]) as recorder:
        common = {"recorder": recorder}
        executors = [
            SelfConsistency(client, ARMS, extract, decider=make_policy("fixed-n", n=3),
                            parallelism=2, **common),
            BestOfN(client, ARMS, extract, verifier=ExactVerifier(),
                    decider=make_policy("fixed-n", n=3, verify=True), **common),
            TournamentVoting(client, ARMS, extract, votes=2,
                             decider=make_policy("fixed-n", n=3, verify=True), **common),
            ParallelDistillRefine(client, ARMS, extract, width=2,
                                  decider=ScriptPolicy(drafts=2, refines=3), **common),
        ]
        return [run(executor.arun(problem))
                for executor, problem in zip(executors, problems, strict=True)]


def test_the_recorded_file_reads_back_as_a_log_with_kinds_rounds_and_costs(
        tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    results = record_every_strategy(path)
    rows = [row for result in results for row in result.rows]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [json.loads(json.dumps(row)) for row in rows]

    log, rejected = read_attempts(path)
    assert len(rejected.rows) == 0 and log.n_attempts == len(rows)
    by_id = {log.attempt_id[i]: i for i in range(log.n_attempts)}
    for row in rows:
        i = by_id[row["attempt_id"]]
        assert KINDS[log.kind[i]] == row["kind"]
        assert log.round[i] == row["round"]
        assert log.cost[i] == pytest.approx(row["cost"])
        assert log.correct[i] == row["correct"]
        score = log.score[i]
        assert (math.isnan(score) if row["score"] is None else score == pytest.approx(
            row["score"]))
    assert set(log.extra) >= {"strategy", "role", "step", "completion", "latency_s",
                              "finish_reason", "reported", "run"}
    assert list(log.queries.text) == [f"Question {i}?" for i in range(4)]
    assert list(log.queries.metadata["task"]) == ["arith"] * 4
    kinds = {(row["role"], row["kind"]) for row in rows}
    assert kinds == {("sample", "sample"), ("refinement", "refine"), ("verdict", "verify"),
                     ("vote", "verify"), ("summary", "verify"),
                     ("rollout summary", "verify"), ("verification", "verify"),
                     ("bye", "verify")}
    assert log.supports_refine and log.supports_verify


def test_run_then_ingest_then_summarize_and_replay(tmp_path: Path) -> None:
    from allocator.envs import ReplayEnv

    path = tmp_path / "runs.jsonl"
    record_every_strategy(path)
    out = tmp_path / "log.parquet"
    result = CliRunner().invoke(app, ["ingest", str(path), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    log = read_log(out)
    summary = summarize(log)
    assert summary["small"].queries == 4
    # The PDR query (q3) replays REFINE; the best-of-N query (q1) replays VERIFY.
    for query, wanted in ((3, "n_refines"), (1, "n_verified")):
        env = ReplayEnv(log, lambda_=0.0, verify_cost=1.0, queries=[query])
        env.reset(seed=0)
        info: dict = {}
        for _ in range(20):
            mask = env.action_masks()
            action = 3 if mask[3] and wanted == "n_verified" else (
                2 if mask[2] and wanted == "n_refines" else (1 if mask[1] else 0))
            _, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        assert info[wanted] >= 1 and info["n_samples"] >= 1


def test_ungraded_runs_do_not_ingest_until_graded(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    record_every_strategy(path, references=False)
    with pytest.raises(LogFormatError, match="missing grade"):
        read_attempts(path)
    report = grade_run_log(path, {f"q{i}": " 7 " for i in range(3)}, normalise=extract)
    assert report.ungraded > 0 and report.graded + report.ungraded == report.rows
    with pytest.raises(LogFormatError):
        read_attempts(path)
    report = grade_run_log(path, {"q3": "7"}, out=tmp_path / "graded.jsonl")
    assert report.ungraded == 0
    log, _ = read_attempts(tmp_path / "graded.jsonl")
    answers = np.array([log.answers[code] if code >= 0 else None for code in log.answer])
    assert ((log.correct == 1.0) == (answers == "7")).all()


def test_allocator_grade_makes_recorded_runs_ingestible(tmp_path: Path) -> None:
    """run (no references) -> ingest refuses -> allocator grade -> ingest."""
    runner = CliRunner()
    path = tmp_path / "runs.jsonl"
    record_every_strategy(path, references=False)
    refused = runner.invoke(app, ["ingest", str(path), "-o", str(tmp_path / "log.parquet")])
    assert refused.exit_code == 2 and "missing grade" in refused.output
    references = tmp_path / "references.csv"
    references.write_text("id,gold\n" + "".join(f"q{i},7.0\n" for i in range(4)))
    graded = runner.invoke(app, ["grade", str(path), "-r", str(references), "--query-col",
                                 "id", "--reference-col", "gold", "--extract", "number"])
    assert graded.exit_code == 0, graded.output
    assert "rows still have no grade" not in graded.output
    result = runner.invoke(app, ["ingest", str(path), "-o", str(tmp_path / "log.parquet")])
    assert result.exit_code == 0, result.output
    log = read_log(tmp_path / "log.parquet")
    answers = np.array([log.answers[code] if code >= 0 else None for code in log.answer])
    assert ((log.correct == 1.0) == (answers == "7")).all()  # "7.0" normalised to "7"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query_id": "q0", "reference": "7"}\n{"query_id": "q1"}\n')
    refused = runner.invoke(app, ["grade", str(path), "-r", str(bad), "--regrade"])
    assert refused.exit_code == 2 and "line 2" in refused.output and "reference" in (
        refused.output)


def test_a_torn_last_line_is_cut_back_or_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    record_every_strategy(path)
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"query_id": "q9", "answ')
    with pytest.raises(LogFormatError, match="torn record"):
        RunRecorder(path, on_partial="refuse")
    assert path.read_bytes().endswith(b'"answ')  # refusing changes nothing
    row = {**json.loads(whole.splitlines()[-1]), "attempt_id": "after-the-crash"}
    with pytest.warns(RuntimeWarning, match="cut back"), RunRecorder(path) as recorder:
        recorder.write(row)
    assert path.read_bytes() == whole + (json.dumps(row, ensure_ascii=False) + "\n").encode()
    assert Path(str(path) + ".torn").read_bytes() == b'{"query_id": "q9", "answ\n'
    log, _ = read_attempts(path)
    assert log.n_attempts == len(path.read_bytes().splitlines())


def test_records_are_whole_json_lines_without_nan(tmp_path: Path) -> None:
    with RunRecorder(tmp_path / "r.jsonl") as recorder:
        recorder.write({"query_id": "q", "score": float("nan"), "cost": math.inf})
        with pytest.raises(ParameterError, match="JSON"):
            recorder.write({"query_id": "q", "bad": object()})
    assert json.loads((tmp_path / "r.jsonl").read_text()) == {
        "query_id": "q", "score": None, "cost": None}
    with pytest.raises(ParameterError, match="closed"):
        recorder.write({"query_id": "q"})
    with pytest.raises(ParameterError, match="on_partial"):
        RunRecorder(tmp_path / "r.jsonl", on_partial="ignore")


def test_attempt_ids_stay_unique_when_appending_runs(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    record_every_strategy(path)
    record_every_strategy(path)
    log, _ = read_attempts(path)
    assert len(set(log.attempt_id.tolist())) == log.n_attempts
