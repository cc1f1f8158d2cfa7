"""Latency and throughput of the HTTP decision service, against in-process decisions.

:func:`main` serves a bundle with ``allocator serve`` on loopback, times decide requests
under 1, 8 and 32 concurrent clients and the same decisions in process, and prints the
ratios (its docstring lists the steps); the README's "Performance" section keeps the
results.

Usage: ``python benchmarks/service_latency.py [--bundle DIR] [--requests 1500] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

import allocator
from allocator.actions import n_actions
from allocator.bundle import write_bundle
from allocator.featurizer import n_features
from allocator.oracle import AttemptResult, BudgetOracle

REPO = Path(__file__).resolve().parents[1]
CONCURRENCY = (1, 8, 32)
CASES = 300
PASSES = 3
ANSWERS = ("7", "12", "42", None)


# ------------------------------------------------------------------ the bundle
def random_bundle(folder: Path, seed: int = 0) -> Path:
    """A bundle of the trained policies' shape with seeded random weights."""
    rng = np.random.default_rng(seed)
    arms = ["large", "small"]
    sizes = [n_features(len(arms)), 64, 64, n_actions(len(arms))]
    weights, layers = {}, []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        weights[f"l{i}.weight"] = rng.normal(0, 1 / np.sqrt(fan_in),
                                             (fan_out, fan_in)).astype(np.float32)
        weights[f"l{i}.bias"] = rng.normal(0, 0.1, fan_out).astype(np.float32)
        layers.append({"weight": f"l{i}.weight", "bias": f"l{i}.bias",
                       "shape": [fan_out, fan_in],
                       "activation": "tanh" if i < len(sizes) - 2 else None})
    manifest = {"arms": arms, "lambda_range": [0.0, 0.2], "cost_unit": 1.0,
                "network": {"kind": "mlp", "layers": layers}, "normalization": None,
                "run_id": None, "log_fingerprint": "benchmark-random"}
    return write_bundle(folder / "bundle", weights=weights, manifest=manifest)


# ------------------------------------------------------------------ requests
def make_cases(oracle: BudgetOracle, count: int, seed: int = 1) -> list[dict[str, Any]]:
    """Decide requests with random histories (what a busy executor sends)."""
    rng = np.random.default_rng(seed)
    low, high = oracle.lambda_range
    cases = []
    for _ in range(count):
        history = [{"kind": "sample", "arm": str(rng.choice(oracle.arms)),
                    "answer": ANSWERS[int(rng.integers(len(ANSWERS)))],
                    "cost": round(float(rng.uniform(0.5, 3)), 3)}
                   for _ in range(int(rng.integers(0, 9)))]
        cases.append({"lambda": round(float(rng.uniform(low, high)), 4),
                      "prior": {arm: round(float(rng.uniform(0.1, 0.9)), 3)
                                for arm in oracle.arms},
                      "history": history})
    return cases


def session_of(oracle: BudgetOracle, case: dict[str, Any]) -> Any:
    session = oracle.session(lambda_=case["lambda"],
                             prior=[case["prior"][arm] for arm in oracle.arms])
    for event in case["history"]:
        session.observe(AttemptResult("sample", event["arm"], event["answer"],
                                      event["cost"]))
    return session


# ------------------------------------------------------------------ in process
def in_process(oracle: BudgetOracle, cases: list[dict[str, Any]]
               ) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Per case: best-of-PASSES seconds of next_action alone, and of the whole request's
    work; and the actions (the expected answers)."""
    decide = np.full(len(cases), np.inf)
    whole = np.full(len(cases), np.inf)
    actions = []
    for run in range(PASSES):
        for i, case in enumerate(cases):
            session = session_of(oracle, case)
            start = time.perf_counter()
            action = session.next_action()
            decide[i] = min(decide[i], time.perf_counter() - start)
            start = time.perf_counter()
            session_of(oracle, case).next_action()
            whole[i] = min(whole[i], time.perf_counter() - start)
            if run == 0:
                actions.append({"kind": action.kind, "arm": action.arm,
                                "index": action.index})
    return decide, whole, actions


# ------------------------------------------------------------------ the service
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(bundle: Path, token: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", "from allocator.cli import main; main()", "serve",
         str(bundle), "--port", str(port), "--log-level", "warning"],
        cwd=REPO, env={**os.environ, "ALLOCATOR_TOKEN": token},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"allocator serve failed: {process.communicate()[1]}")
        try:
            if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("allocator serve did not start within 60 s")


async def load(url: str, token: str, cases: list[dict[str, Any]],
               expected: list[dict[str, Any]] | None, clients: int, total: int,
               path: str = "/v1/decide") -> dict[str, float]:
    """``total`` requests from ``clients`` concurrent clients; latency and throughput."""
    latencies: list[float] = []
    errors: list[str] = []
    per_client = max(1, total // clients)

    async def client(number: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60,
                                     headers={"Authorization": f"Bearer {token}"}) as http:
            for j in range(per_client):
                i = (number * per_client + j) % len(cases)
                start = time.perf_counter()
                if path == "/v1/decide":
                    response = await http.post(path, json=cases[i])
                else:
                    response = await http.get(path)
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    errors.append(f"{response.status_code}: {response.text[:200]}")
                elif expected is not None and response.json()["action"] != expected[i]:
                    errors.append(f"case {i}: {response.json()['action']} != {expected[i]}")

    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}
                                 ) as warm:
        for case in cases[:20]:
            await warm.post("/v1/decide", json=case)
    start = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    wall = time.perf_counter() - start
    if errors:
        raise SystemExit(f"{len(errors)} bad answers, e.g. {errors[:3]}")
    array = np.array(latencies)
    return {"clients": clients, "requests": len(array),
            "p50_ms": float(np.percentile(array, 50) * 1e3),
            "p99_ms": float(np.percentile(array, 99) * 1e3),
            "per_second": len(array) / wall}


# ------------------------------------------------------------------ report
def main() -> int:
    """Measure the service against in-process decisions; print the table (or JSON).

    1. A bundle: the one given with ``--bundle``, else a policy of the trained shape (two
       arms, 15 -> 64 -> 64 -> 5, tanh; seeded random weights: the arithmetic of a trained
       one, without training) written to a temporary directory.
    2. ``allocator serve BUNDLE`` in a subprocess on a free loopback port, with a bearer
       token (the auth check is part of every request), log level warning.
    3. 300 decide requests: random histories of 0 to 8 samples (answers, costs), an
       explicit prior, a lambda. For each: the in-process latency of ``Session.next_action``
       alone (session built and history replayed outside the timer) and of the whole
       in-process work of a request (``oracle.session`` + the replay + ``next_action``), best
       of 3 identical runs each.
    4. The service under 1, 8 and 32 concurrent clients (httpx.AsyncClient in this process,
       one connection each, each client sending its requests one after the other):
       latency p50/p99 per request as the client sees it, and requests per second; plus
       ``GET /v1/health`` at 1 client, the HTTP floor. Every answer is checked (status
       200 and the in-process action).

    Prints the table and the ratios (service p50 / in-process p50); ``--json`` prints the
    numbers as JSON instead. Client and server share the machine's cores: on 2 cores the
    client's own work is a large part of what is measured.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, help="a bundle directory (default: a "
                        "random policy of the trained shape)")
    parser.add_argument("--requests", type=int, default=1500,
                        help="requests per concurrency level")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ttc-bench-") as folder:
        bundle = args.bundle or random_bundle(Path(folder))
        oracle = allocator.load(bundle)
        cases = make_cases(oracle, CASES)
        decide, whole, expected = in_process(oracle, cases)
        token = secrets.token_urlsafe(16)
        process, url = start_server(bundle, token)
        try:
            floor = asyncio.run(load(url, token, cases, None, 1, 500, "/v1/health"))
            levels = [asyncio.run(load(url, token, cases, expected, c, args.requests))
                      for c in CONCURRENCY]
        finally:
            process.terminate()
            process.wait(30)

    result = {
        "cpus": os.cpu_count(), "cases": CASES, "mean_history": float(np.mean(
            [len(c["history"]) for c in cases])),
        "in_process": {"next_action_p50_us": float(np.median(decide) * 1e6),
                       "next_action_p99_us": float(np.percentile(decide, 99) * 1e6),
                       "request_work_p50_us": float(np.median(whole) * 1e6),
                       "request_work_p99_us": float(np.percentile(whole, 99) * 1e6)},
        "health_floor": floor, "service": levels,
    }
    base = result["in_process"]["next_action_p50_us"] / 1e3
    for level in levels:
        level["p50_over_next_action"] = level["p50_ms"] / base
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    ip = result["in_process"]
    print(f"bundle: {bundle if args.bundle else 'random policy of the trained shape'}; "
          f"{CASES} requests, {result['mean_history']:.1f} events of history on average; "
          f"{result['cpus']} CPUs shared by client and server\n")
    print(f"in process  Session.next_action        p50 {ip['next_action_p50_us']:8.1f} us"
          f"   p99 {ip['next_action_p99_us']:8.1f} us")
    print(f"in process  session + replay + action  p50 {ip['request_work_p50_us']:8.1f} us"
          f"   p99 {ip['request_work_p99_us']:8.1f} us")
    print(f"HTTP floor  GET /v1/health, 1 client   p50 {floor['p50_ms'] * 1e3:8.1f} us"
          f"   p99 {floor['p99_ms'] * 1e3:8.1f} us\n")
    print("| clients | requests | p50 (ms) | p99 (ms) | requests/s | p50 / in-process "
          "next_action |")
    print("|---:|---:|---:|---:|---:|---:|")
    for level in levels:
        print(f"| {level['clients']} | {level['requests']} | {level['p50_ms']:.2f} | "
              f"{level['p99_ms']:.2f} | {level['per_second']:,.0f} | "
              f"{level['p50_over_next_action']:,.0f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
