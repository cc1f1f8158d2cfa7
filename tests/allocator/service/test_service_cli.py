"""``allocator serve``: runs uvicorn on the given port with the token from the named
environment variable (a real subprocess, stopped with SIGINT); fails closed without a
token (unless --no-auth); refuses a bad source with exit code 2; says what to install when
fastapi is missing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from service_support import write_scripted

REPO = Path(__file__).resolve().parents[3]
RUN_CLI = "from allocator.cli import main; main()"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cli(*args: str, env: dict[str, str] | None = None, prelude: str = "",
        **popen: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", prelude + RUN_CLI, *args], cwd=REPO,
                            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true",
                                 **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def test_serve_runs_uvicorn_with_the_token_from_the_environment(tmp_path: Path) -> None:
    bundle = write_scripted(tmp_path / "bundle", ("a", "b"))
    port = free_port()
    process = cli("serve", str(bundle), "--port", str(port), "--token-env", "MY_TOKEN",
                  "--log-level", "warning", env={"MY_TOKEN": "s3cret"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # a bound on start-up, not a timing
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "allocator serve did not start"
            try:
                if httpx.get(f"{url}/v1/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        assert httpx.post(f"{url}/v1/decide", json={}).status_code == 401
        answer = httpx.post(f"{url}/v1/decide", json={"max_samples": 1},
                            headers={"Authorization": "Bearer s3cret"})
        assert answer.status_code == 200 and answer.json()["action"]["arm"] == "b"
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert f"http://127.0.0.1:{port}/v1" in stderr and "bearer token required" in stderr


def test_serve_refuses_a_missing_bundle(tmp_path: Path) -> None:
    process = cli("serve", str(tmp_path / "missing"), "--port", str(free_port()),
                  "--no-auth")
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2 and "error:" in stderr and "missing" in stderr


@pytest.mark.parametrize(("args", "env", "message"), [
    (("--token-env", "TYPO"), {}, "the token variable TYPO is not set"),
    ((), {"ALLOCATOR_TOKEN": ""}, "the token variable ALLOCATOR_TOKEN is empty"),
    ((), {"ALLOCATOR_TOKEN": "   "}, "the token variable ALLOCATOR_TOKEN is empty"),
    (("--no-auth",), {"ALLOCATOR_TOKEN": "s3cret"}, "--no-auth was given but"),
])
def test_serve_fails_closed_without_a_token(tmp_path: Path, args: tuple[str, ...],
                                            env: dict[str, str], message: str) -> None:
    """An unset or empty token variable never means "serve without authentication"."""
    bundle = write_scripted(tmp_path / "bundle", ("a", "b"))
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("ALLOCATOR_TOKEN", "TYPO")}
    process = subprocess.Popen(
        [sys.executable, "-c", RUN_CLI, "serve", str(bundle), "--port", str(free_port()),
         *args], cwd=REPO, env={**environment, "MLFLOW_DISABLE_TELEMETRY": "true", **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2, stderr
    assert message in " ".join(stderr.split())


def test_serve_says_what_to_install_without_fastapi(tmp_path: Path) -> None:
    hide = "import sys; sys.modules['fastapi'] = None; "  # as if it were not installed
    process = cli("serve", str(tmp_path), prelude=hide)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "pip install 'ttc-allocator[serve]'" in " ".join(stderr.split())
