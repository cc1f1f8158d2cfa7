"""Step 1 of the serving-install check (``make test-serving``), run by the full install.

Exports the tests' tiny trained bundle (with its difficulty predictor) into ``OUT/bundle``
and records, in ``OUT/reference.json``, what the full install's HTTP service answers to a
fixed set of ``/v1/decide`` requests. ``check_serving_install.py`` then asks a serving-only
install the same requests and compares.

Usage: python tests/serving_only/make_reference.py OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
# The checkout first, tests/ (tiny_policy) last: the folder tests/allocator/ would otherwise
# be found as a namespace package named allocator before the editable install's finder.
sys.path[:0] = [str(ROOT)]
sys.path.append(str(ROOT / "tests"))

from tiny_policy import export_tiny_bundle  # noqa: E402

from allocator.service import BackgroundServer, create_app  # noqa: E402

TOKEN = "serving-check-token"
LAMBDAS = (0.0, 0.01, 0.05, 0.2)


def requests_for(texts: list[str], arms: list[str]) -> list[dict]:
    """First decisions over query texts and prices, and follow-ups with one event."""
    requests = []
    for i, text in enumerate(texts[:12]):
        base = {"query": text, "lambda": LAMBDAS[i % len(LAMBDAS)]}
        requests.append(base)
        arm = arms[i % len(arms)]
        requests.append({**base, "history": [
            {"kind": "sample", "arm": arm, "answer": str(i % 3), "cost": 1.0 + i}]})
    return requests


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    bundle, texts = export_tiny_bundle(out)
    arms = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))["arms"]
    requests = requests_for(texts, list(arms))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with BackgroundServer(create_app(bundle, token=TOKEN)) as server, \
            httpx.Client(base_url=server.url, headers=auth, timeout=30) as client:
        answers = []
        for request in requests:
            response = client.post("/v1/decide", json=request)
            response.raise_for_status()
            answers.append(response.json())
    (out / "reference.json").write_text(json.dumps(
        {"bundle": str(bundle), "texts": texts[:12], "requests": requests,
         "answers": answers}, indent=1), encoding="utf-8")
    kinds = sorted({answer["action"]["kind"] for answer in answers})
    print(f"reference: {len(answers)} answers of the full install ({', '.join(kinds)})")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
