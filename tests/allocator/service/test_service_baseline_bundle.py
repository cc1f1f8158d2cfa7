"""A baseline bundle (exported by ``allocator train``'s safety net) served over HTTP: the
service answers what an in-process session of the same bundle answers, step by step, and
its health names the baseline backend."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
from service_support import (
    AUTH,
    TOKEN,
    action_of,
    in_process_session,
    next_event,
    random_request,
    report,
)

import allocator
from allocator.baseline_bundle import write_baseline_bundle
from allocator.policies import make_policy
from allocator.service import BackgroundServer, create_app


def test_a_served_baseline_bundle_decides_as_its_sessions(tmp_path: Path) -> None:
    policy = make_policy("confidence-threshold", tau=0.75, min_samples=2, max_samples=8, arm=1)
    path = write_baseline_bundle(tmp_path / "bundle", policy, arms=("large", "small"),
                                 lambda_range=(0.001, 0.3), cost_unit=2.0,
                                 log_fingerprint="x")
    oracle = allocator.load(path)
    rng = np.random.default_rng(5)
    seen, steps = set(), 0
    with BackgroundServer(create_app(path, token=TOKEN)) as server, httpx.Client(
            base_url=server.url, headers=AUTH, timeout=30) as http:
        assert http.get("/v1/health").json()["model"]["decision_backend"] == "baseline"
        for _ in range(40):
            request = random_request(rng, oracle, [])
            session = in_process_session(oracle, request)
            history: list[dict] = []
            for _ in range(int(rng.integers(1, 9))):
                expected = session.next_action()
                body = http.post("/v1/decide", json={**request, "history": history}).json()
                assert body["action"] == action_of(expected), (request, history)
                seen.add(str(expected))
                steps += 1
                if expected.kind == "stop":
                    break
                event = next_event(rng, session, expected, oracle.arms)
                report(session, event)
                history.append(event)
    assert steps > 60 and {"STOP", "SAMPLE(small)"} <= seen, seen
