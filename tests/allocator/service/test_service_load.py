"""Concurrent load from a second process: 50 clients x 20 decide requests against real
uvicorn on loopback; zero errors, and every answer the action an in-process Session
gives for the same request (no state leaks between concurrent requests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from service_support import (
    TOKEN,
    action_of,
    in_process_session,
    next_event,
    random_request,
    report,
)

from allocator.oracle import BudgetOracle
from allocator.service import BackgroundServer

CLIENT = Path(__file__).with_name("service_load_client.py")
CLIENTS, REQUESTS = 50, 20

pytestmark = pytest.mark.slow


def cases(oracle: BudgetOracle, texts: list[str], count: int = 40) -> list[dict]:
    """Random requests with histories, and the in-process session's next action."""
    rng = np.random.default_rng(7)
    made = []
    for _ in range(count):
        request = random_request(rng, oracle, texts)
        session = in_process_session(oracle, request)
        history: list[dict] = []
        for _ in range(int(rng.integers(0, 6))):
            asked = session.next_action()
            if asked.kind == "stop":
                break
            event = next_event(rng, session, asked, oracle.arms)
            report(session, event)
            history.append(event)
        made.append({"request": {**request, "history": history},
                     "expected": action_of(session.next_action())})
    return made


def test_fifty_concurrent_clients_from_another_process(
        server: BackgroundServer, oracle: BudgetOracle, trained, tmp_path: Path) -> None:
    made = cases(oracle, trained.texts)
    assert len({json.dumps(case["expected"]) for case in made}) >= 2  # not all alike
    path = tmp_path / "cases.json"
    path.write_text(json.dumps({"cases": made, "arms": list(oracle.arms)}))
    result = subprocess.run(
        [sys.executable, str(CLIENT), server.url, TOKEN, str(path), str(CLIENTS),
         str(REQUESTS), "90"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["errors"] == []
    assert summary["sent"] == summary["ok"] == CLIENTS * REQUESTS
