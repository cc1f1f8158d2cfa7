"""Tiny hand-written sources, one per converter format, for the table-driven tests.

Each builder writes a small valid source (optionally gzip-compressed, optionally with
one bad record) and says how many attempts it holds and where the bad record is.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class TinySource:
    """A written source: what to pass to ``convert`` and what to expect."""

    source: Path  # file or folder given to convert()
    main: Path  # the file that holds the bad record / gets truncated
    attempts: int  # attempts from the good records
    bad_line: int | None  # line of the bad record (None when written without one)
    bad_attempts: int = 1  # rows the bad record stands for among the rejected


def _write(path: Path, text: str, gz: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz") if not path.name.endswith(".gz") else path
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def _jsonl(records: list[object]) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def mot_cascade(root: Path, gz: bool, bad: bool) -> TinySource:
    gpt4 = [
        {"question": "Yesterday was April 30, 2021. What is the date today?",
         "answer": "05/01/2021", "generated": ["a" * 10, "b" * 20, "c" * 5],
         "results": ["05/01/2021", "5/1/2021", None]},
        {"question": "What is the last day of 1999?", "answer": "12/31/1999",
         "generated": ["x" * 7], "results": ["Dec 31, 1999"]},
    ]
    if bad:
        gpt4.append({"question": "A question whose results were lost", "answer": "01/01/2000",
                     "generated": ["y"]})
    llama = [{"question": gpt4[0]["question"],
              "answer": {"05/01/2021": 1, "04/30/2021": 0}, "generated": ["zz", "zzz"],
              "results": ["04/30/2021", "05/01/2021"]}]
    name = "date_cot1.json.gz" if gz else "date_cot1.json"
    main = root / "raw" / "GPT4_result" / name
    main.parent.mkdir(parents=True)
    text = json.dumps(gpt4, indent=4)
    main.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    llama_file = root / "raw" / "llama2_13B_result" / name
    llama_file.parent.mkdir(parents=True)
    llama_text = json.dumps(llama, indent=4)
    llama_file.write_bytes(gzip.compress(llama_text.encode()) if gz else llama_text.encode())
    bad_line = text[: text.index("A question whose")].count("\n") if bad else None
    return TinySource(root / "raw", main, 6, bad_line)


def reasoning_gym(root: Path, gz: bool, bad: bool) -> TinySource:
    rows = [
        {"difficulty": "easy", "model": model, "run": f"{model}_run", "category": "arithmetic",
         "task": "basic_arithmetic", "seed": 45, "q_idx": q, "question": f"What is {q} + 1?",
         "expected_answer": str(q + 1), "sample_idx": 0,
         "model_answer": str(q + 1) if model == "m1" else "0", "score": 1.0 if model == "m1"
         else 0.0, "response_chars": 100 + q}
        for model in ("m1", "m2") for q in range(2)
    ]
    records: list[object] = list(rows)
    if bad:
        records.insert(2, '{"difficulty": "easy", "model": "m3", "q_idx": 0, "score"')
    main = _write(root / "samples.jsonl", _jsonl(records), gz)
    return TinySource(main, main, 4, 3 if bad else None)


def codet(root: Path, gz: bool, bad: bool) -> TinySource:
    problems = [{"task_id": f"HumanEval/{i}", "prompt": f"def f{i}(x):\n", "entry_point": f"f{i}"}
                for i in range(2)]
    samples: list[object] = [
        {"task_id": f"HumanEval/{i}", "sample_idx": s, "completion": "    return x\n",
         "passed": s == 0, "completion_chars": 13} for i in range(2) for s in range(2)
    ]
    if bad:
        samples.insert(1, "{not json")
    _write(root / "problems.jsonl.gz", _jsonl(problems), True)
    main = root / "samples.jsonl.gz"
    text = _jsonl(samples)
    main.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    return TinySource(root, main, 4, 2 if bad else None)


def swe_bench_pro(root: Path, gz: bool, bad: bool) -> TinySource:
    header = ("agent_run_id,metadata.instance_id,metadata.model_name,metadata.resolved,"
              "metadata.turns,tag,created_at\n")
    rows = [
        "r1,instance_acme__widget-0123456789abcdef,GPT-4o - paper,false,12,,\"Oct 13, 2025\"",
        "r2,instance_acme__widget-0123456789abcdef,Kimi - paper,true,30,,\"Oct 13, 2025\"",
        "r3,instance_acme__gadget-fedcba9876543210,GPT-4o - paper,true,8,,\"Oct 13, 2025\"",
    ]
    if bad:
        rows.insert(1, "r9,instance_acme__gadget-fedcba9876543210,Kimi - paper,maybe,5,,\"x\"")
    main = root / "agent_runs.csv.gz"
    text = header + "\n".join(rows) + "\n"
    main.parent.mkdir(parents=True, exist_ok=True)
    main.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    return TinySource(main, main, 3, 3 if bad else None)


def lm_eval(root: Path, gz: bool, bad: bool) -> TinySource:
    records: list[object] = [
        {"doc_id": d, "doc": {"question": f"What is {d} + 2?"}, "target": str(d + 2),
         "arguments": {"gen_args_0": {"arg_0": f"Q: What is {d} + 2?\nA:", "arg_1": {}}},
         "resps": [[f"The answer is {d + 2}.", "The answer is 7."]],
         "filtered_resps": [[str(d + 2), "7"]], "filter": "per-sample",
         "metrics": ["exact_match"], "exact_match": 1.0}
        for d in range(2)
    ]
    if bad:
        records.insert(1, {"doc_id": 9, "doc": {}, "target": "1"})  # no responses
    main = _write(root / "tiny-model" / "samples_addition_2026-01-01T00-00-00.000001.jsonl",
                  _jsonl(records), gz)
    return TinySource(root, main, 4, 2 if bad else None)


def openai(root: Path, gz: bool, bad: bool) -> TinySource:
    def completion(content: str, tokens: int) -> dict[str, object]:
        return {"id": "chatcmpl-x", "object": "chat.completion", "model": "tiny-gpt",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": tokens}}
    records: list[object] = [
        {"query_id": "q1", "target": "4", "response": completion("2 + 2 = 4", 6)},
        {"query_id": "q2", "target": "9", "response": completion("The answer is 8.", 5)},
    ]
    if bad:
        records.insert(1, {"query_id": "q3", "response": completion("5", 1)})  # no target
    main = _write(root / "completions.jsonl", _jsonl(records), gz)
    return TinySource(main, main, 2, 2 if bad else None)


BUILDERS: dict[str, Callable[[Path, bool, bool], TinySource]] = {
    "mot-cascade": mot_cascade,
    "reasoning-gym": reasoning_gym,
    "codet": codet,
    "swe-bench-pro": swe_bench_pro,
    "lm-eval": lm_eval,
    "openai": openai,
}


@pytest.fixture
def tiny_source(tmp_path: Path) -> Callable[..., TinySource]:
    """``tiny_source(format, gz=False, bad=False)`` writes a small source for ``format``."""

    def build(format: str, *, gz: bool = False, bad: bool = False) -> TinySource:
        return BUILDERS[format](tmp_path / format, gz, bad)

    return build
