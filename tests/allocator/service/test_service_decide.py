"""The service answers what the Python API answers: ``/v1/decide`` equals an in-process
Session with the same history (at every step of random, partly off-policy histories),
``/v1/budget`` and ``/v1/allocate`` equal ``BudgetOracle.budget`` and ``.allocate``. All
over real HTTP to uvicorn on loopback."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from service_support import (
    action_of,
    in_process_session,
    next_event,
    random_request,
    report,
    write_scripted,
)

import allocator
from allocator.learned import kernel_available
from allocator.oracle import BudgetOracle
from allocator.service import BackgroundServer, create_app

pytestmark = pytest.mark.slow


def test_decide_equals_an_in_process_session_on_random_histories(
        client: httpx.Client, oracle: BudgetOracle, trained) -> None:
    """100 random requests (lambda, prior / query text / none, served arms, refine and
    verify support, caps), each followed for up to 8 events: after every event the
    service's action, lambda, prior, cost and final answer equal the session's."""
    rng = np.random.default_rng(0)
    seen, steps = set(), 0
    for _ in range(100):
        request = random_request(rng, oracle, trained.texts)
        session = in_process_session(oracle, request)
        history: list[dict] = []
        for _ in range(int(rng.integers(1, 9))):
            expected = session.next_action()
            response = client.post("/v1/decide", json={**request, "history": history})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["action"] == action_of(expected), (request, history)
            assert body["lambda"] == session.lambda_
            assert body["prior"] == dict(zip(oracle.arms, session.prior.tolist(), strict=True))
            assert body["drawn"] == session.state.drawn
            assert body["cost_spent"] == pytest.approx(session.cost_spent, rel=1e-12)
            expected_answer = session.final_answer() if expected.kind == "stop" else None
            assert body["final_answer"] == expected_answer
            seen.add(str(expected))
            steps += 1
            if expected.kind == "stop":
                break
            event = next_event(rng, session, expected, oracle.arms)
            report(session, event)
            history.append(event)
    assert steps > 150 and "STOP" in seen and len(seen) >= 3, seen  # not vacuous


def test_the_query_text_prior_is_the_bundled_predictors(
        client: httpx.Client, oracle: BudgetOracle, trained) -> None:
    texts = trained.texts[:5]
    expected = oracle.predict_priors(texts, [{"task": "x"}] * len(texts))
    for text, row in zip(texts, expected, strict=True):
        body = client.post("/v1/decide", json={"query": text, "metadata": {"task": "x"},
                                               "lambda": 0.05}).json()
        np.testing.assert_allclose([body["prior"][arm] for arm in oracle.arms], row,
                                   rtol=0, atol=1e-12)


def test_budget_and_allocate_equal_the_python_api(
        client: httpx.Client, oracle: BudgetOracle, trained) -> None:
    rng = np.random.default_rng(1)
    arms = list(oracle.arms)
    for _ in range(25):
        prior = {arm: float(rng.uniform(0.05, 0.95)) for arm in arms}
        lam, n_max = float(rng.uniform(0, 0.2)), int(rng.integers(1, 30))
        served = [arms[int(rng.integers(len(arms)))]] if rng.random() < 0.3 else None
        text = trained.texts[int(rng.integers(len(trained.texts)))]
        use_text = rng.random() < 0.3
        request = {"lambda": lam, "max_samples": n_max, "arms": served,
                   **({"query": text} if use_text else {"prior": prior})}
        body = client.post("/v1/budget", json=request).json()
        expected = oracle.budget(text if use_text else None,
                                 prior=None if use_text else list(prior.values()),
                                 lambda_=lam, max_samples=n_max, arms=served)
        assert body["budget"] == expected and body["lambda"] == lam
        assert body["budget"][body["arm"]] == body["samples"] > 0

        count, total = int(rng.integers(1, 12)), float(rng.uniform(0, 400))
        priors = rng.uniform(0.05, 0.95, (count, len(arms)))
        arm = arms[int(rng.integers(len(arms)))] if rng.random() < 0.5 else None
        texts = [trained.texts[int(i)] for i in rng.integers(len(trained.texts), size=count)]
        with_texts = rng.random() < 0.5
        request = {"total_budget": total, "max_samples": n_max, "arm": arm,
                   **({"queries": texts} if with_texts else {"n_queries": count})}
        if rng.random() < 0.7:
            request["priors"] = [dict(zip(arms, row.tolist(), strict=True)) for row in priors]
        body = client.post("/v1/allocate", json=request).json()
        expected = oracle.allocate(texts if with_texts else count, total,
                                   priors=priors if "priors" in request else None,
                                   max_samples=n_max, arm=arm)
        assert body["allocations"] == expected
        assert body["cost"] <= total
        assert body["samples"] == sum(sum(row.values()) for row in expected)


def test_target_cost_and_verify_on_a_served_ready_oracle(tmp_path: Path) -> None:
    """A ready BudgetOracle as the source (calibrated, hand-made): target_cost maps to
    the calibrated lambda, and a verify event reveals the scores held with the attempts,
    so the final answer is the best verified one rather than the majority."""
    table = [[0.0, 12.0], [0.2, 6.0], [0.4, 2.0]]
    bundle = write_scripted(tmp_path / "bundle", preference=[5, 1, 2, 0, 0],  # STOP first
                            calibration={"table": table, "target_mean_cost": 6.0},
                            calibrated_lambda=0.2)
    oracle = allocator.load(bundle)
    history = [{"kind": "sample", "arm": "a", "answer": "x", "cost": 1, "score": 0.1},
               {"kind": "sample", "arm": "a", "answer": "x", "cost": 1, "score": 0.2},
               {"kind": "sample", "arm": "b", "answer": "y", "cost": 1, "score": 0.9},
               {"kind": "verify", "cost": 0.5}]
    with BackgroundServer(create_app(oracle, token="t")) as server, httpx.Client(
            base_url=server.url, headers={"Authorization": "Bearer t"}) as http:
        for target in (6.0, 4.0, 12.0, 2.0):
            body = http.post("/v1/decide", json={"target_cost": target}).json()
            assert body["lambda"] == pytest.approx(oracle.lambda_for_cost(target), abs=1e-12)
        for target in (20.0, 1.0):  # outside the calibrated costs [2, 12]: refused
            answer = http.post("/v1/decide", json={"target_cost": target})
            assert answer.status_code in (400, 422) and "[2, 12]" in answer.text
        body = http.post("/v1/decide", json={"target_cost": 6.0, "history": history}).json()
        assert body["action"]["kind"] == "stop" and body["final_answer"] == "y"
        assert body["cost_spent"] == 3.5
        body = http.post("/v1/decide", json={"history": history[:3]}).json()
        assert body["final_answer"] == "x"  # scores still hidden: the majority
        health = http.get("/v1/health").json()
        assert health["model"]["calibrated"] and health["model"]["default_lambda"] == 0.2
        expected_backend = "compiled" if kernel_available() else "numpy"
        assert health["model"]["decision_backend"] == expected_backend

        # A tournament re-judging its champion: the 0.9 of "y" is replaced by 0.0.
        rescored = [*history, {"kind": "verify", "scores": {"2": 0.0}, "cost": 0,
                               "rescore": True}]
        body = http.post("/v1/decide", json={"history": rescored}).json()
        assert body["final_answer"] == "x"  # best verified now 0.2 for "x"
        refused = http.post("/v1/decide", json={"history": [*history, {
            "kind": "verify", "scores": {"2": 0.0}, "cost": 0}]})
        assert refused.status_code == 422 and "rescore" in refused.text
