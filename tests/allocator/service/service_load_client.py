"""A load client run as a separate process by ``test_service_load.py``.

Usage: ``python service_load_client.py URL TOKEN CASES.json CLIENTS REQUESTS DEADLINE``

CLIENTS concurrent clients (one connection each) send REQUESTS decide requests each,
cycling through the cases (``[{"request": ..., "expected": {"kind", "arm", "index"}}]``),
and check every answer: status 200, a valid action over the arms, the expected action.
Prints one JSON summary line; gives up after DEADLINE seconds.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import httpx

LAYOUT_KINDS = ("stop", "sample", "refine", "verify")


def problem(response: httpx.Response, case: dict, arms: list[str]) -> str | None:
    if response.status_code != 200:
        return f"status {response.status_code}: {response.text[:200]}"
    action = response.json().get("action", {})
    kind, arm, index = action.get("kind"), action.get("arm"), action.get("index")
    layout = ["stop", *(f"sample:{a}" for a in arms), "refine", "verify"]
    name = f"sample:{arm}" if kind == "sample" else kind
    if kind not in LAYOUT_KINDS or not isinstance(index, int) or layout[index] != name:
        return f"invalid action {action}"
    if action != case["expected"]:
        return f"action {action} != expected {case['expected']}"
    return None


async def client(number: int, url: str, token: str, cases: list[dict], arms: list[str],
                 requests: int, results: dict) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
        for i in range(requests):
            case = cases[(number * requests + i) % len(cases)]
            try:
                response = await http.post("/v1/decide", json=case["request"])
                error = problem(response, case, arms)
            except httpx.HTTPError as failure:
                error = f"{type(failure).__name__}: {failure}"
            results["sent"] += 1
            if error is None:
                results["ok"] += 1
            else:
                results["errors"].append(error)


async def main(url: str, token: str, path: str, clients: int, requests: int,
               deadline: float) -> dict:
    with open(path, encoding="utf-8") as file:
        data = json.load(file)
    results: dict = {"sent": 0, "ok": 0, "errors": []}
    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(
        client(n, url, token, data["cases"], data["arms"], requests, results)
        for n in range(clients))), deadline)
    results["seconds"] = round(time.perf_counter() - start, 3)
    results["errors"] = results["errors"][:20]
    return results


if __name__ == "__main__":
    url, token, path, clients, requests, deadline = sys.argv[1:7]
    summary = asyncio.run(main(url, token, path, int(clients), int(requests), float(deadline)))
    print(json.dumps(summary))
