"""Decision sources: baseline policies in the oracle's Session, session factories, and the
package's public API."""

from __future__ import annotations

import numpy as np
import pytest
from executor_scripts import ScriptPolicy

import allocator.executors as executors
from allocator.errors import ParameterError
from allocator.executors import PolicyOracle, policy_session, session_factory
from allocator.policies import make_policy
from allocator.session import AttemptResult, Session
from allocator.verifiers import Problem

PROBLEM = Problem("q1", "What is 3 + 4?", metadata={"task": "arith"})


def test_the_public_api_is_pinned() -> None:
    assert sorted(executors.__all__) == sorted([
        "DEFAULT_DISTILL_PROMPT", "DEFAULT_JUDGE_PROMPT", "DEFAULT_PROMPT",
        "DEFAULT_REFINE_PROMPT", "BestOfN", "Drawn", "Executor", "GradeReport",
        "ParallelDistillRefine", "PolicyOracle", "QueryLog", "RunRecorder", "RunResult",
        "SelfConsistency", "SessionFactory", "TournamentVoting", "as_problem",
        "exact_grade", "grade_run_log", "parse_vote", "policy_session", "session_factory"])
    for name in executors.__all__:
        assert getattr(executors, name) is not None


def test_a_baseline_session_decides_as_the_policy_on_the_same_state() -> None:
    policy = make_policy("adaptive-consistency", threshold=0.9)
    session = policy_session(policy, ["a"], max_samples=10)
    assert isinstance(session, Session)
    for answer in ["x", "y", *["x"] * 10]:
        action = session.next_action()
        mask = session.allowed_actions()
        expected = int(policy.act(session.state.to_batch(), mask[None, :])[0])
        assert action.index == expected
        if action.kind == "stop":
            break
        session.observe(AttemptResult("sample", "a", answer, 1.0))
    assert session.done and session.final_answer() == "x"


def test_policy_sessions_honour_what_the_executor_supports() -> None:
    wants_all = ScriptPolicy(drafts=1, refines=1, verify=True)
    oracle = PolicyOracle(wants_all, ["a", "b"], cost_unit=2.0)
    plain = oracle.session()
    assert plain.allowed_actions().tolist() == [True, True, True, False, False]
    full = oracle.session(supports_refine=True, supports_verify=True, arms=["a"])
    # REFINE needs a draft to be conditioned on: masked until a sample is drawn.
    assert full.allowed_actions().tolist() == [True, True, False, False, False]
    full.observe(AttemptResult("sample", "a", "x", 4.0))
    assert full.allowed_actions().tolist() == [True, True, False, True, True]
    assert full.state.cost == 2.0  # divided by the cost unit
    assert str(full.next_action()) == "REFINE"
    capped = oracle.session(max_samples_per_arm={"a": 0}, max_samples=5)
    assert capped.allowed_actions()[1:3].tolist() == [False, True]
    assert oracle.session(max_samples=0).next_action().kind == "stop"
    assert "script" in repr(oracle)


@pytest.mark.parametrize(("kwargs", "parameter"), [
    ({"prior": [0.5]}, "prior"), ({"arms": ["c"]}, "arms"), ({"lambda_": -1}, "lambda_"),
    ({"max_samples": -1}, "max_samples"), ({"max_samples_per_arm": {"c": 1}},
                                           "max_samples_per_arm")])
def test_invalid_session_arguments_name_the_parameter(kwargs: dict, parameter: str) -> None:
    with pytest.raises(ParameterError, match=parameter):
        PolicyOracle(make_policy("fixed-n"), ["a", "b"]).session(**kwargs)


class BatchOnlyPolicy:
    """Duck-typed: only the batch method ``act`` (always SAMPLE arm 0 while allowed)."""

    def act(self, state, mask):
        return np.where(mask[:, 1], 1, 0)


def test_an_object_with_only_act_is_wrapped_for_sessions() -> None:
    session = policy_session(BatchOnlyPolicy(), ["a"], max_samples=2)
    decisions = []
    while (action := session.next_action()).kind != "stop":
        decisions.append(str(action))
        session.observe(AttemptResult("sample", "a", "x", 1.0))
    assert decisions == ["SAMPLE(a)", "SAMPLE(a)"]
    assert "BatchOnlyPolicy" in repr(PolicyOracle(BatchOnlyPolicy(), ["a"]))


def test_policy_oracle_checks_its_arguments() -> None:
    with pytest.raises(ParameterError, match="policy"):
        PolicyOracle(object(), ["a"])  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="arms"):
        PolicyOracle(make_policy("fixed-n"), ["a", "a"])
    with pytest.raises(ParameterError, match="cost_unit"):
        PolicyOracle(make_policy("fixed-n"), ["a"], cost_unit=0)


def test_session_factories_of_every_decider(scripted_oracle) -> None:
    flags = {"supports_refine": True, "supports_verify": False}
    from_policy = session_factory(make_policy("fixed-n", n=2), ["a", "b"], lambda_=0.1)
    session = from_policy(PROBLEM, arms=["a", "b"], **flags)
    assert session.lambda_ == 0.1 and not session.allowed_actions()[3]  # no draft yet
    session.observe(AttemptResult("sample", "a", "x", 1.0))
    assert session.allowed_actions()[3]
    assert session.query == PROBLEM.question
    from_oracle = session_factory(scripted_oracle, max_samples=3)
    session = from_oracle(PROBLEM, arms=["b", "extra"], **flags)
    assert session.allowed_actions().tolist() == [True, False, True, False, False]
    np.testing.assert_allclose(session.prior, [0.5, 0.5])
    overriding = session_factory(scripted_oracle, supports_refine=False)
    assert not overriding(PROBLEM, arms=["a"], **flags).allowed_actions()[3]
    assert session_factory(from_policy) is from_policy
    with pytest.raises(ParameterError, match="arms"):
        session_factory(make_policy("fixed-n"))
    with pytest.raises(ParameterError, match="arms"):
        from_oracle(PROBLEM, arms=["unknown"], **flags)
    with pytest.raises(ParameterError, match="decider"):
        session_factory(42)
    with pytest.raises(ParameterError, match="session_kwargs"):
        session_factory(from_policy, lambda_=0.2)
