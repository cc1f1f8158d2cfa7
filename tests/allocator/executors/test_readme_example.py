"""The README's serving example runs as written: its code block is executed against the
replay server (an OpenAI-compatible server on loopback), with only the server address,
the bundle path and the log path substituted.

The bundle is hand-made so that its decisions are known: with one arm ``qwen``, the STOP
logit grows with ``log1p(attempts drawn)`` and VERIFY is preferred whenever there are
unverified candidates, so every strategy samples twice (verifying each sample where it
can) and stops.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from replay_server import start_replay_server

from allocator.actions import n_actions
from allocator.bundle import write_bundle
from allocator.featurizer import feature_names
from allocator.logs import read_attempts
from allocator.logs.schema import KIND_VERIFY

README = Path(__file__).resolve().parents[3] / "README.md"
QUESTION = "What is 17 * 23?"
POOL = [{"question": QUESTION, "answer": "391",
         "generated": ["17 * 23 = 17 * 20 + 17 * 3 = 340 + 51 = 391. The answer is 391.",
                       "17 * 23 = 391. The answer is 391.",
                       "Twenty-three seventeens make 391. The answer is \\boxed{391}."]}]


def serving_example() -> str:
    """The first python block of the README's serving section."""
    section = README.read_text().split("## Serving: the oracle in front of an LLM", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's serving section has no python example"
    return match.group(1)


def stop_after_two(path: Path) -> Path:
    arms = ["qwen"]
    names = feature_names(arms)
    weight = np.zeros((n_actions(1), len(names)), np.float32)
    weight[0, names.index("log1p_drawn")] = 1.0  # STOP: log1p(drawn) > 1 from 2 drawn
    bias = np.array([0.0, 1.0, -5.0, 2.0], np.float32)  # STOP, SAMPLE, REFINE, VERIFY
    network = {"kind": "mlp", "layers": [{"weight": "action_net.weight",
                                          "bias": "action_net.bias",
                                          "shape": list(weight.shape), "activation": None}]}
    return write_bundle(path, weights={"action_net.weight": weight, "action_net.bias": bias},
                        manifest={"arms": arms, "lambda_range": [0.0, 0.4], "cost_unit": 1.0,
                                  "network": network, "normalization": None, "run_id": None,
                                  "log_fingerprint": "readme"})


@pytest.mark.slow
def test_the_readme_serving_example_runs_as_written(tmp_path: Path) -> None:
    code = serving_example()
    bundle = stop_after_two(tmp_path / "bundle")
    log = tmp_path / "served.jsonl"
    with start_replay_server({"qwen2.5-7b": POOL}, wrap=True) as server:
        for old, new in (("http://localhost:8000/v1", server.url),
                         ("runs/first/bundle", str(bundle)), ("served.jsonl", str(log))):
            assert old in code, old
            code = code.replace(old, new)
        namespace: dict = {}
        exec(compile(code, str(README), "exec"), namespace)  # the example, as written
        result = namespace["result"]
        assert result.answer == "391" and result.correct == 1.0 and result.llm_calls >= 2
        problem = namespace["Problem"]("q2", QUESTION, reference="391")
        for name in ("bon", "rtv", "pdr"):  # the other strategies of the example
            assert namespace[name].run(problem).answer == "391", name
    rows, _ = read_attempts(log)  # graded as they went: a log ingest accepts
    assert set(rows.query_ids) == {"q1", "q2"}
    assert (rows.correct[rows.answer >= 0] == 1.0).all()
    assert (rows.kind == KIND_VERIFY).any()  # best-of-N verified its samples
