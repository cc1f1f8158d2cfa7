"""The shipped fixed schedules ``rtv`` and ``pdr``: the executors follow them, their logs
replay them exactly, and the evaluator runs them only on logs that support them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from executor_scripts import ARMS, ScriptedClient, extract, run, texts

from allocator.envs import ReplayEnv
from allocator.envs.pools import ReplayPools
from allocator.executors import ParallelDistillRefine, RunRecorder, TournamentVoting
from allocator.logs import read_attempts
from allocator.policies import make_policy
from allocator.training.evaluation.baselines import BaselineContext, build_sweeps
from allocator.training.evaluation.baselines_schedules import NO_EVENTS, NO_REFINEMENTS
from allocator.verifiers import Problem

QUESTION = "Which number is best?"


def largest_judge(prompt: str) -> str:
    """Votes for the candidate whose answer is the largest number."""
    found = [int(a) for a in re.findall(r"The answer is (\d+)", prompt)]
    return f"Best: {found.index(max(found)) + 1}"


def runs(path: Path) -> dict[str, object]:
    """An RTV run of ``rtv`` (4 rollouts, a wave of 2) and a PDR run of ``pdr`` (3
    drafts, 4 refinements)."""
    with RunRecorder(path) as recorder:
        rtv = TournamentVoting(
            ScriptedClient(samples={QUESTION: texts("3 9 5 7")}, refinements=texts("9 4"),
                           judge=largest_judge),
            ARMS, extract, decider=make_policy("rtv", n=4, refinements=2), votes=3,
            recorder=recorder)
        pdr = ParallelDistillRefine(
            ScriptedClient(samples={QUESTION: texts("3 3 4")}, refinements=texts("8 6 8 2"),
                           judge=largest_judge),
            ARMS, extract, decider=make_policy("pdr", drafts=3, refinements=4), width=2,
            votes=1, recorder=recorder)
        return {"rtv": run(rtv.arun(Problem("q-rtv", QUESTION, reference="9"))),
                "pdr": run(pdr.arun(Problem("q-pdr", QUESTION, reference="8")))}


def test_the_executors_follow_the_schedules(tmp_path: Path) -> None:
    results = runs(tmp_path / "runs.jsonl")
    assert [str(a) for a in results["rtv"].actions] == ["SAMPLE(small)"] * 4 + [
        "REFINE"] * 2 + ["VERIFY", "STOP"]
    assert results["rtv"].answer == "9" and results["rtv"].correct == 1.0
    assert [str(a) for a in results["pdr"].actions] == ["SAMPLE(small)"] * 3 + [
        "REFINE"] * 4 + ["VERIFY", "STOP"]
    assert results["pdr"].answer == "8" and results["pdr"].correct == 1.0


@pytest.mark.parametrize("name", ["rtv", "pdr"])
def test_replay_of_the_schedule_matches_its_live_run_in_every_order(tmp_path: Path,
                                                                    name: str) -> None:
    results = runs(tmp_path / "runs.jsonl")
    log, _ = read_attempts(tmp_path / "runs.jsonl")
    query = log.query_ids.tolist().index(f"q-{name}")
    policy = make_policy(name, **({"n": 4, "refinements": 2} if name == "rtv" else
                                  {"drafts": 3, "refinements": 4}))
    env = ReplayEnv(log, lambda_=0.0, cost_unit=1.0)
    live = results[name]
    for seed in range(8):  # the run's pool in any order: the same sets, the same outcome
        env.reset(seed=seed, options={"query": query})
        actions = []
        while True:
            mask = env.action_masks()
            action = policy.act_one(env.query_state, mask)
            actions.append(action)
            *_, done, _, info = env.step(action)
            if done:
                break
        assert not info["invalid_action"]
        assert actions == [a.index for a in live.actions]
        assert info["correct"] == live.correct and info["cost"] == pytest.approx(live.cost)


def test_the_evaluator_runs_them_only_where_the_log_supports_them(tmp_path: Path) -> None:
    runs(tmp_path / "runs.jsonl")
    log, _ = read_attempts(tmp_path / "runs.jsonl")
    context = BaselineContext(ReplayPools.from_log(log), np.arange(log.n_queries), None,
                              n_orders=2, seed=0)
    sweeps, skipped = build_sweeps(["rtv", "pdr"], context)
    assert skipped == {} and {p.name for p in sweeps["rtv"] + sweeps["pdr"]} == {"rtv", "pdr"}
    assert all(p.n <= 4 for p in sweeps["rtv"])  # capped at the largest pool
    plain_rows = tmp_path / "plain.jsonl"  # the same runs' samples alone
    plain_rows.write_text("".join(
        line for line in (tmp_path / "runs.jsonl").read_text().splitlines(keepends=True)
        if '"kind": "sample"' in line))
    plain, _ = read_attempts(plain_rows)
    context = BaselineContext(ReplayPools.from_log(plain), np.arange(plain.n_queries), None,
                              n_orders=2, seed=0)
    sweeps, skipped = build_sweeps(["rtv", "pdr"], context)
    assert sweeps == {} and skipped == {"rtv": NO_EVENTS, "pdr": NO_REFINEMENTS}
