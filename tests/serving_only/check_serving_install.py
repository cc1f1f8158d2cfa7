"""Step 2 of the serving-install check (``make test-serving``), run by a serving-only install.

Run with the Python of a fresh venv that installed ``ttc-allocator[serve]`` (not editable),
from outside the repository. It checks that:

- ``allocator`` is the installed package, the only import name the distribution adds (no
  top-level ``envs`` or ``training``), and no training library (torch, SB3, mlflow,
  gymnasium, matplotlib, pandas) is installed;
- the bundle ``make_reference.py`` exported loads, its priors equal the full install's,
  and ``allocator serve`` (the real console script, uvicorn on loopback, with a token)
  answers every reference request as the full install did;
- ``allocator train`` says which extra to install instead of failing on an import.

Usage: python check_serving_install.py OUT   (OUT: make_reference.py's folder)
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import math
import os
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path

TRAINING_LIBRARIES = ("torch", "stable_baselines3", "sb3_contrib", "mlflow", "gymnasium",
                      "matplotlib", "pandas", "ray")
TOKEN = "serving-check-token"


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"serving-install check FAILED: {message}")


def check_install() -> None:
    import allocator

    site = [Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")]
    where = Path(allocator.__file__).resolve()
    check(any(where.is_relative_to(root) for root in site),
          f"allocator was imported from {where}, not from this venv's site-packages")
    present = [name for name in TRAINING_LIBRARIES if importlib.util.find_spec(name)]
    check(not present, f"a serving install pulled in training libraries: {present}")
    for generic in ("envs", "training"):
        check(importlib.util.find_spec(generic) is None,
              f"a top-level {generic!r} package is installed")
    files = importlib.metadata.files("ttc-allocator") or []
    tops = {file.parts[0] for file in files if file.parts[0] != ".."}
    tops = {top for top in tops if not top.endswith(".dist-info") and top != "__pycache__"}
    check(tops == {"allocator"}, f"the distribution installs top-level names {sorted(tops)}")
    for layer in ("allocator.envs", "allocator.training"):  # installed, not importable
        spec = importlib.util.find_spec(layer)  # without the train extra
        check(spec is not None and spec.origin is not None
              and Path(spec.origin).resolve().is_relative_to(where.parent),
              f"{layer} is not installed inside the allocator package")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def same_answer(got: dict, expected: dict) -> bool:
    priors = all(math.isclose(got["prior"][arm], value, rel_tol=0, abs_tol=1e-9)
                 for arm, value in expected["prior"].items())
    keys = ("action", "final_answer", "lambda", "drawn")
    return priors and all(got[key] == expected[key] for key in keys) and math.isclose(
        got["cost_spent"], expected["cost_spent"], rel_tol=1e-12)


def check_serving(out: Path) -> None:
    import allocator

    reference = json.loads((out / "reference.json").read_text(encoding="utf-8"))
    bundle = out / "bundle"
    oracle = allocator.load(bundle)
    priors = oracle.predict_priors(reference["texts"])
    firsts = [a for r, a in zip(reference["requests"], reference["answers"], strict=True)
              if "history" not in r]
    for row, answer in zip(priors, firsts, strict=True):
        check(all(math.isclose(float(p), answer["prior"][arm], abs_tol=1e-9)
                  for arm, p in zip(oracle.arms, row, strict=True)),
              f"in-process priors {row} differ from the full install's {answer['prior']}")

    port = free_port()
    script = Path(sys.executable).with_name("allocator")
    server = subprocess.Popen(
        [str(script), "serve", str(bundle), "--host", "127.0.0.1", "--port", str(port),
         "--token-env", "SERVING_CHECK_TOKEN", "--log-level", "warning"],
        env={**os.environ, "SERVING_CHECK_TOKEN": TOKEN})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/v1/health", timeout=2).close()
                break
            except (urllib.error.URLError, ConnectionError):
                check(server.poll() is None, "allocator serve exited before answering")
                check(time.monotonic() < deadline, "allocator serve did not start in 60 s")
                time.sleep(0.2)
        for request, expected in zip(reference["requests"], reference["answers"],
                                     strict=True):
            got = post(f"{url}/v1/decide", request)
            check(same_answer(got, expected),
                  f"the serving install answered {got} where the full install answered "
                  f"{expected} (request {request})")
    finally:
        server.terminate()
        server.wait(timeout=30)


def check_training_needs_its_extra(out: Path) -> None:
    script = Path(sys.executable).with_name("allocator")
    result = subprocess.run([str(script), "train", str(out / "missing.parquet"), "--output",
                             str(out / "run")], capture_output=True, text=True, timeout=120)
    message = " ".join(result.stderr.split())
    check(result.returncode == 2 and "pip install 'ttc-allocator[train]'" in message,
          f"allocator train without the train extra: exit {result.returncode}, {message!r}")


def main(out: Path) -> None:
    check_install()
    check_serving(out)
    check_training_needs_its_extra(out)
    print("serving-install check passed: the serving-only install (no torch, SB3, mlflow) "
          "serves the bundle exactly as the full install does")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
