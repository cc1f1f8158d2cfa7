"""The allocator's share of wall time per LLM call in a strategy executor.

Runs :class:`allocator.executors.SelfConsistency` over an in-process LLM client whose
every request takes a fixed simulated latency (``asyncio.sleep``), with the decisions of a
baseline policy (or of a trained bundle, ``--bundle``) and every call recorded to a JSONL
file; prints the per-call times (:func:`measure` splits them) and the allocator's share of
wall time, as ratios. The README's "Performance" section keeps the results.

Usage: ``.venv/bin/python benchmarks/executor_overhead.py [--latency 0.02] [--queries 20]
[--samples 8] [--policy fixed-n] [--parallelism 1] [--bundle DIR]``
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from allocator.executors import RunRecorder, SelfConsistency
from allocator.llm.protocol import Completion, Message
from allocator.policies import make_policy
from allocator.verifiers import Problem


class SleepyClient:
    """An in-process LLM client: every request sleeps ``latency`` seconds, then answers."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.waited = 0.0
        self.calls = 0

    async def complete(self, messages: Sequence[Message], *, n: int = 1,
                       **params: Any) -> list[Completion]:
        start = time.perf_counter()
        self.calls += 1
        try:
            await asyncio.sleep(self.latency)
        finally:
            self.waited += time.perf_counter() - start
        answer = (self.calls * 7) % 3  # a few competing answers
        text = f"Reasoning about it... The answer is {answer}"
        return [Completion(text, completion_tokens=len(text) // 4, finish_reason="stop")
                for _ in range(n)]


def extract(text: str) -> str | None:
    """The benchmark's answer extractor."""
    return text.rsplit("The answer is ", 1)[-1] if "The answer is " in text else None


def decider(args: argparse.Namespace) -> Any:
    """The learned oracle of ``--bundle``, else the baseline ``--policy``."""
    if args.bundle:
        from allocator.oracle import load

        return load(args.bundle)
    knob = {"fixed-n": {"n": args.samples},
            "adaptive-consistency": {"max_samples": args.samples}}.get(args.policy, {})
    return make_policy(args.policy, **knob)


async def measure(args: argparse.Namespace, log: Path) -> dict[str, float]:
    """One executor run; its wall time split into:

    - *decide + record*: time in ``session.next_action`` / ``observe`` / ``verify`` and in
      the recorder (``RunResult.decision_s``);
    - *awaiting the client*: time the simulated requests took;
    - *executor machinery*: the rest (tasks, prompt rendering, answer extraction); shown
      for ``--parallelism 1`` only, where requests do not overlap.
    """
    client = SleepyClient(args.latency)
    chosen = decider(args)
    arms = list(chosen.arms) if hasattr(chosen, "arms") else ["default"]
    with RunRecorder(log) as recorder:
        executor = SelfConsistency(client, {arm: {} for arm in arms}, extract,
                                   decider=chosen, recorder=recorder,
                                   parallelism=args.parallelism)
        await executor.arun(Problem("warm-up", "warm up"))  # lazy tables, imports
        client.waited, client.calls = 0.0, 0
        start = time.perf_counter()
        results = [await executor.arun(Problem(f"q{i}", f"Question {i}?"))
                   for i in range(args.queries)]
        wall = time.perf_counter() - start
    calls = sum(result.llm_calls for result in results)
    decide = sum(result.decision_s for result in results)
    return {"queries": args.queries, "calls": calls, "wall": wall, "decide": decide,
            "wait": client.waited, "rows": sum(len(result.rows) for result in results)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.02,
                        help="simulated seconds per LLM request")
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--samples", type=int, default=8, help="fixed-n's n, or the "
                        "most samples of adaptive-consistency")
    parser.add_argument("--policy", default="fixed-n")
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--bundle", default=None, help="a trained bundle directory")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        numbers = asyncio.run(measure(args, Path(folder) / "runs.jsonl"))
    calls, wall = numbers["calls"], numbers["wall"]
    machinery = max(wall - numbers["wait"] - numbers["decide"], 0.0)
    rest = (f"executor machinery ~{machinery / calls * 1e6:8.1f} us" if args.parallelism == 1
            else "executor machinery n/a (requests overlap)")
    print(f"{numbers['queries']} queries, {calls} LLM calls, {numbers['rows']} rows "
          f"recorded; simulated latency {args.latency * 1e3:.1f} ms, parallelism "
          f"{args.parallelism}, decider {args.bundle or args.policy}")
    print(f"per call: decide + record {numbers['decide'] / calls * 1e6:8.1f} us | "
          f"awaiting the client {numbers['wait'] / calls * 1e3:8.2f} ms | {rest}")
    print(f"allocator share of wall time: {numbers['decide'] / wall:.5f} "
          f"(decide + record / wall)")
    print(f"allocator time / client time: {numbers['decide'] / numbers['wait']:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
