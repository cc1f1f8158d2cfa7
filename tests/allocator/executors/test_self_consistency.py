"""Self-consistency executor: decisions are the session's, fixed-N and adaptive stopping,
speculative parallelism, cancellation, the call cap, failures."""

from __future__ import annotations

import asyncio
import json

import pytest
from executor_scripts import (
    ARMS,
    HANG,
    ScriptedClient,
    ScriptPolicy,
    extract,
    replay_by_hand,
    run,
    texts,
)

from allocator.errors import AllocatorError, ExecutorError, LLMError, ParameterError
from allocator.executors import (
    PolicyOracle,
    RunRecorder,
    SelfConsistency,
    policy_session,
)
from allocator.logs import read_attempts
from allocator.policies import make_policy
from allocator.verifiers import Problem

QUESTION = "What is 3 + 4?"


def executor(client: ScriptedClient, policy_name: str = "fixed-n", **kwargs: object
             ) -> SelfConsistency:
    params = kwargs.pop("policy", {})
    return SelfConsistency(client, ARMS, extract,
                           decider=make_policy(policy_name, **params), **kwargs)


def problem(reference: str | None = "7") -> Problem:
    return Problem("q1", QUESTION, reference=reference)


def sample_rows(result, reported: bool = True) -> list[dict]:
    return [row for row in result.rows if row["kind"] == "sample"
            and row["reported"] is reported]


@pytest.mark.parametrize("n", [1, 3, 5])
def test_fixed_n_draws_exactly_n_samples_and_returns_the_majority(n: int) -> None:
    client = ScriptedClient(samples={QUESTION: texts("7 3 7 3 7 9")})
    result = run(executor(client, policy={"n": n}).arun(problem()))
    assert len(client.calls) == result.llm_calls == n
    assert [row["answer"] for row in sample_rows(result)] == ["7", "3", "7", "3", "7"][:n]
    assert result.answer == "7" and result.correct == 1.0
    assert [str(action) for action in result.actions] == ["SAMPLE(small)"] * n + ["STOP"]
    assert result.stopped_by == "policy" and result.cancelled == 0 and result.unused == 0


def test_the_executor_performs_the_sessions_decisions_step_by_step() -> None:
    """Driving a fresh session by hand with the same results gives the same decisions,
    and each decision was performed by exactly one reported row, in order."""
    client = ScriptedClient(samples={QUESTION: texts("7 3 7 9 7 7 3 7 7 7 7 7")})
    policy = make_policy("adaptive-consistency", threshold=0.9)
    result = run(SelfConsistency(client, ARMS, extract,
                                 decider=PolicyOracle(policy, ["small"])).arun(problem()))
    decisions = replay_by_hand(result.session, policy_session(policy, ["small"]))
    assert list(result.actions) == decisions
    performed = [row for row in result.rows if row["reported"]]
    assert [row["step"] for row in performed] == list(range(1, len(decisions)))
    assert all(row["arm"] == action.arm for row, action in zip(performed, decisions,
                                                               strict=False))


def test_adaptive_consistency_stops_early_on_unanimous_answers() -> None:
    client = ScriptedClient(samples={QUESTION: texts(" ".join(["7"] * 40))})
    result = run(executor(client, "adaptive-consistency",
                          policy={"threshold": 0.95}).arun(problem()))
    # P(p > 1/2 | 4 votes to 0) = 1 - 2**-5 = 0.97 >= 0.95 > 0.9375 after 3 votes.
    assert len(client.calls) == 4 and result.answer == "7"


def test_speculative_samples_keep_several_in_flight_and_decide_as_by_hand() -> None:
    """The first request is slow: the next ones are reported first, in the order they
    finish; the session sees results one at a time and decides as by hand."""
    client = ScriptedClient(samples={QUESTION: texts("1 2 3 4 5 6 7 8 9")},
                            ticks=lambda number: 8 if number == 0 else 1)
    policy = make_policy("fixed-n", n=6)
    result = run(executor(client, policy={"n": 6}, parallelism=3).arun(problem()))
    assert client.max_active == 3
    assert [row["answer"] for row in sample_rows(result)] == ["2", "3", "4", "5", "1", "6"]
    assert replay_by_hand(result.session, policy_session(policy, ["small"])) == list(
        result.actions)
    # Speculative requests that finished after STOP are recorded, flagged unreported.
    assert [row["answer"] for row in sample_rows(result, reported=False)] == ["7"]
    assert result.unused == 1 and result.cancelled == 1 and result.llm_calls == 8
    assert all(row["step"] is None for row in sample_rows(result, reported=False))
    assert result.cost == pytest.approx(sum(row["cost"] for row in result.rows))
    assert result.session_cost == pytest.approx(sum(row["cost"] for row in
                                                    sample_rows(result)))


def test_stop_cancels_requests_in_flight_and_records_none_of_them(tmp_path) -> None:
    """Requests after the third never finish: STOP cancels them, leaves no task
    running, and writes no row for them."""
    client = ScriptedClient(samples={QUESTION: texts("7 7 3") + [HANG] * 5})
    path = tmp_path / "runs.jsonl"
    with RunRecorder(path) as recorder:
        result = run(executor(client, policy={"n": 3}, parallelism=4,
                              recorder=recorder).arun(problem()))
    hung = [call for call in client.calls if call.number >= 3]
    assert hung and all(call.cancelled for call in hung)
    assert result.cancelled == result.llm_calls - 3 and result.unused == 0
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["reported"] for line in lines)
    assert result.answer == "7"


def test_the_call_cap_stops_the_run() -> None:
    client = ScriptedClient(samples={QUESTION: texts("7 3 9 1 2 4")})
    result = run(executor(client, policy={"n": 6}, max_llm_calls=2).arun(problem()))
    assert len(client.calls) == 2 and result.stopped_by == "max_llm_calls"
    assert [str(a) for a in result.actions] == ["SAMPLE(small)"] * 2


@pytest.mark.parametrize("parallelism", [1, 3])
def test_a_client_failure_leaves_a_valid_log_of_the_completed_calls(
        tmp_path, parallelism: int) -> None:
    client = ScriptedClient(samples={QUESTION: texts("7 3 7 7 7 7 7 7")},
                            fail_at={3: LLMError("server gave up", status=503, attempts=4)})
    path = tmp_path / "runs.jsonl"
    with RunRecorder(path) as recorder, pytest.raises(ExecutorError) as error:
        run(executor(client, policy={"n": 6}, parallelism=parallelism,
                     recorder=recorder).arun(problem()))
    assert error.value.query_id == "q1" and isinstance(error.value.__cause__, LLMError)
    completed = [call for call in client.calls if call.finished]
    log, _ = read_attempts(path)
    assert log.n_attempts == len(completed) >= 3
    assert path.read_bytes().endswith(b"\n")


def test_sessions_from_a_trained_bundle_drive_the_executor(scripted_oracle) -> None:
    """The learned oracle and a baseline use the same executor; the oracle's session is
    asked only for the arms the executor serves."""
    client = ScriptedClient(samples={QUESTION: texts("7 7 7")})
    arms = {"b": {"model": "b-model"}}
    executor_ = SelfConsistency(client, arms, extract, decider=scripted_oracle)
    session = scripted_oracle.session(arms=["b"], max_samples=3)
    result = run(executor_.arun(problem(), session=session))
    assert [str(a) for a in result.actions] == ["SAMPLE(b)"] * 3 + ["STOP"]
    assert [call.params["model"] for call in client.calls] == ["b-model"] * 3


def test_misuse_is_explained() -> None:
    client = ScriptedClient(samples={QUESTION: texts("7")})
    with pytest.raises(ParameterError, match="decider"):
        run(SelfConsistency(client, ARMS, extract).arun(problem()))
    plain = policy_session(make_policy("fixed-n"), ["small"])
    with pytest.raises(ParameterError, match="arms"):
        run(SelfConsistency(client, {"other": {}}, extract).arun(problem(), session=plain))
    refine = policy_session(ScriptPolicy(drafts=1, refines=1), ["small"],
                            supports_refine=True)
    with pytest.raises(ParameterError, match="supports_refine=False"):
        run(SelfConsistency(client, ARMS, extract).arun(problem(), session=refine))
    with pytest.raises(ParameterError, match="parallelism"):
        SelfConsistency(client, ARMS, extract, parallelism=0)

    async def inside_a_loop() -> None:
        executor(client).run(problem())

    with pytest.raises(AllocatorError, match="await"):
        asyncio.run(inside_a_loop())


def test_run_many_keeps_order_and_sync_run_works() -> None:
    questions = [f"What is {i} + {i}?" for i in range(4)]
    client = ScriptedClient(samples={q: texts(f"{2 * i} {2 * i} 1")
                                     for i, q in enumerate(questions)}
                            | {"What is 9 + 9?": texts("18 18 18")})
    ex = executor(client, policy={"n": 3})
    results = ex.run_many([Problem(f"q{i}", q) for i, q in enumerate(questions)],
                          concurrency=2)
    assert [r.answer for r in results] == ["0", "2", "4", "6"]
    assert all(r.correct is None for r in results)  # no reference: ungraded
    single = ex.run("What is 9 + 9?")
    assert single.query_id.startswith("q-") and single.answer == "18"


def test_a_baseline_bundle_drives_the_executor_as_its_policy_does(tmp_path) -> None:
    """A baseline bundle (the safety net's export) loaded by ``allocator.load`` decides in
    the executor exactly as the same policy given directly does."""
    import allocator
    from allocator.baseline_bundle import write_baseline_bundle

    policy = make_policy("adaptive-consistency", threshold=0.9)
    path = write_baseline_bundle(tmp_path / "bundle", policy, arms=list(ARMS),
                                 lambda_range=(0.001, 0.3), cost_unit=1.0,
                                 log_fingerprint="x")
    script = texts("7 3 7 9 7 7 3 7 7 7 7 7")
    by_bundle = run(SelfConsistency(ScriptedClient(samples={QUESTION: script}), ARMS,
                                    extract, decider=allocator.load(path)).arun(problem()))
    direct = run(SelfConsistency(ScriptedClient(samples={QUESTION: script}), ARMS, extract,
                                 decider=PolicyOracle(policy, list(ARMS))).arun(problem()))
    assert [str(a) for a in by_bundle.actions] == [str(a) for a in direct.actions]
    assert len(by_bundle.actions) > 3 and by_bundle.answer == direct.answer == "7"
