"""The MLflow pyfunc model's requests carry REFINE and VERIFY: the decision equals that of
a session that observed and verified the same attempts (the scripted bundle prefers
VERIFY > REFINE > SAMPLE(b) > SAMPLE(a) > STOP among the allowed actions)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("mlflow")

from allocator.mlflow_model import AllocatorModel
from allocator.session import AttemptResult


@pytest.fixture
def model(scripted_oracle) -> AllocatorModel:
    model = AllocatorModel()
    model.oracle = scripted_oracle
    return model


@pytest.mark.parametrize(("row", "expected"), [
    ({"samples": {"a": 1}, "votes": {"7": 1}}, "sample"),  # nothing else allowed
    ({"samples": {"a": 1}, "votes": {"7": 1}, "supports_refine": True}, "refine"),
    ({"samples": {"a": 0}, "votes": {}, "supports_refine": True, "cost_spent": 0.0},
     "sample"),  # no draft yet
    ({"samples": {"a": 2}, "votes": {"7": 2}, "supports_verify": True}, "verify"),
    # Every attempt verified: VERIFY is masked, REFINE is next.
    ({"samples": {"a": 1}, "votes": {"7": 1}, "supports_verify": True,
      "supports_refine": True, "verified": {"7": 0.9}}, "refine"),
    # One of two verified: VERIFY is allowed for the other.
    ({"samples": {"a": 2}, "votes": {"7": 1, "9": 1}, "supports_verify": True,
      "verified": json.dumps({"9": 0.4})}, "verify"),
])
def test_refine_and_verify_requests(model: AllocatorModel, row: dict, expected: str) -> None:
    assert model.decide({"lambda": 0.1, "cost_spent": 3.0, **row}).kind == expected


def test_the_rebuilt_state_is_the_sessions(model: AllocatorModel, scripted_oracle) -> None:
    row = {"lambda": 0.1, "samples": {"a": 2, "b": 1}, "refines": 1,
           "votes": {"7": 2, "9": 1}, "cost_spent": 8.0, "supports_verify": True,
           "supports_refine": True, "verified": {"9": 0.25, "7": 0.5}}
    session = scripted_oracle.session(lambda_=0.1, supports_refine=True, supports_verify=True)
    first = session.observe(AttemptResult("sample", "a", "9", 8.0))
    second = session.observe(AttemptResult("sample", "a", "7", 0.0))
    session.verify({first: 0.25, second: 0.5}, 0.0)
    session.observe(AttemptResult("sample", "b", "7", 0.0))
    session.observe(AttemptResult("refine", None, None, 0.0))
    assert model.decide(row) == session.next_action()
    with pytest.raises(ValueError, match="'3'"):
        model.decide({**row, "verified": {"3": 1.0}})


def test_the_answer_carries_the_width_of_a_wave(wide_oracle) -> None:
    model = AllocatorModel()
    model.oracle = wide_oracle
    frame = model.predict(None, [
        {"lambda": 0.1, "samples": {"a": 0, "b": 0}, "votes": {}, "cost_spent": 0.0},
        {"lambda": 0.1, "samples": {"a": 0, "b": 3}, "votes": {"7": 3}, "cost_spent": 6.0,
         "max_samples": 4}])
    assert frame["width"].tolist() == [4, 1]  # 3 drawn of 4: no room for a wave of 4
    assert frame["kind"].tolist() == ["sample", "sample"]
    assert frame["arm"].tolist() == ["b", "b"]
    assert list(frame.columns) == ["kind", "arm", "index", "width"]
