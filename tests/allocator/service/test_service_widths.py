"""Bundles with parallel widths over HTTP: the decision carries ``width``, a wave's
results come back as plain attempts in the history (real uvicorn on loopback)."""

from __future__ import annotations

from pathlib import Path

import httpx
from service_support import AUTH, TOKEN, action_of, write_scripted

import allocator
from allocator.actions import Action, n_actions
from allocator.service import BackgroundServer, create_app
from allocator.session import AttemptResult

ARMS = ("large", "small")


def sample(arm: str, answer: str) -> dict:
    return {"kind": "sample", "arm": arm, "answer": answer, "cost": 3.0}


def test_a_wide_bundle_answers_waves_and_their_widths(tmp_path: Path) -> None:
    # The default scripted preference is the action index: SAMPLE(small)x2 is the last.
    path = write_scripted(tmp_path / "bundle", ARMS, widths=[1, 2])
    oracle = allocator.load(path)
    wave = Action("sample", "small", n_actions(2, (1, 2)) - 1, 2)
    request = {"prior": {"large": 0.5, "small": 0.5}, "max_samples": 5}
    histories = [[], [sample("small", "4"), sample("small", "4")],
                 [sample("small", "4")] * 2 + [sample("small", "5")] * 2]
    with BackgroundServer(create_app(path, token=TOKEN)) as server, httpx.Client(
            base_url=server.url, headers=AUTH, timeout=30) as http:
        bodies = [http.post("/v1/decide", json={**request, "history": history}).json()
                  for history in histories]
        schema = http.get("/openapi.json").json()["components"]["schemas"]["ActionOut"]
        health = http.get("/v1/health").json()
    assert [body["action"] for body in bodies[:2]] == [action_of(wave)] * 2
    # 4 drawn of max_samples 5: no room for a wave of 2, a single sample instead
    assert bodies[2]["action"] == {"kind": "sample", "arm": "small", "index": 2, "width": 1}
    assert bodies[2]["drawn"] == 4
    assert "width" in schema["properties"] and schema["properties"]["width"]["description"]
    assert health["model"]["widths"] == [1, 2]
    # the same decisions as an in-process session that observes each wave result by result
    session = oracle.session(prior=[0.5, 0.5], max_samples=5)
    seen = []
    while len(seen) < 3:
        action = session.next_action()
        seen.append(action_of(action))
        answer = "4" if len(seen) == 1 else "5"
        for _ in range(action.width):
            session.observe(AttemptResult("sample", action.arm, answer, 3.0))
    assert seen == [body["action"] for body in bodies]


def test_a_default_bundle_answers_width_one(scripted_client: httpx.Client) -> None:
    body = scripted_client.post("/v1/decide", json={"prior": {"large": 0.5, "small": 0.5}})
    assert body.json()["action"]["width"] == 1
    assert scripted_client.get("/v1/health").json()["model"]["widths"] == [1]
