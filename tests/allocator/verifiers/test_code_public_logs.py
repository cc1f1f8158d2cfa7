"""The code verifier on real CodeT/HumanEval samples (``../shared/data/public-logs``).

On 3 problems x 10 logged CodeGen-16B samples (5 that passed HumanEval's official tests,
5 that failed): the official suite run by :class:`CodeVerifier` must agree with the
logged ``passed`` exactly, and the CodeT-style score from model-generated tests must be
higher, on average, for the samples that passed.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections import defaultdict
from pathlib import Path

import pytest

from allocator.verifiers import Candidate, CodeVerifier, Limits, Problem, extract_asserts

pytestmark = pytest.mark.public_logs

PER_CLASS = 5  # samples per problem that passed, and that failed
LIMITS = Limits(wall_seconds=30.0, test_seconds=3.0, test_wall_seconds=6.0, cpu_seconds=20)


def read_jsonl(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as file:
        return [json.loads(line) for line in file]


@pytest.fixture(scope="module")
def codet(public_logs: Path) -> list[dict]:
    """The first 3 problems with enough passing and failing samples, with their tests."""
    folder = public_logs / "codet_humaneval"
    samples = defaultdict(list)
    for row in read_jsonl(folder / "samples.jsonl.gz"):
        samples[row["task_id"]].append(row)
    generated = read_jsonl(folder / "generated_tests.jsonl.gz")
    chosen = []
    for problem in read_jsonl(folder / "problems.jsonl.gz"):
        rows = sorted(samples[problem["task_id"]], key=lambda r: r["sample_idx"])
        good = [r for r in rows if r["passed"]][:PER_CLASS]
        bad = [r for r in rows if not r["passed"]][:PER_CLASS]
        tests = generated_tests(problem, generated)
        if len(good) == len(bad) == PER_CLASS and len(tests) >= 10:
            chosen.append({**problem, "samples": good + bad, "generated": tests})
        if len(chosen) == 3:
            return chosen
    raise AssertionError("fewer than 3 usable problems in the CodeT logs")


def generated_tests(problem: dict, generated: list[dict]) -> list[str]:
    """CodeT's tests: the first 5 asserts of each generated sample, deduplicated."""
    row = next(r for r in generated if r["prompt"].startswith(problem["prompt"].rstrip()))
    tests: dict[str, None] = {}
    for sample in row["samples"]:
        tests.update(dict.fromkeys(extract_asserts(sample, problem["entry_point"], 5)))
    return list(tests)


def scores(verifier: CodeVerifier, problem: dict, tests: object) -> list[float]:
    query = Problem(problem["task_id"], problem["prompt"], metadata={
        "prompt": problem["prompt"], "entry_point": problem["entry_point"], "tests": tests})
    candidates = [Candidate(sample["completion"]) for sample in problem["samples"]]
    return [v.score for v in asyncio.run(verifier.verify(query, candidates))]


def test_the_official_tests_agree_with_the_logged_pass_fail(codet: list[dict]) -> None:
    verifier = CodeVerifier(limits=LIMITS, granularity="suite")
    for problem in codet:
        logged = [float(sample["passed"]) for sample in problem["samples"]]
        assert scores(verifier, problem, problem["test"]) == logged, problem["task_id"]


def test_generated_tests_score_passing_samples_higher(codet: list[dict]) -> None:
    verifier = CodeVerifier(limits=Limits(wall_seconds=20.0, test_seconds=0.5,
                                          test_wall_seconds=2.0, cpu_seconds=20))
    for problem in codet:
        found = scores(verifier, problem, problem["generated"])
        passing, failing = found[:PER_CLASS], found[PER_CLASS:]
        assert sum(passing) / PER_CLASS > sum(failing) / PER_CLASS, problem["task_id"]
