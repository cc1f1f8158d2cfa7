"""Accuracy against latency, beside accuracy against cost, from a real executor log.

1. Records an executor log: :class:`~allocator.executors.SelfConsistency` draws 16
   samples per query (fixed-N, one call at a time) for the 369 date-understanding
   questions, over HTTP, from the loopback replay server of GPT-3.5's logged generations
   (``tests/replay_server.py``, MoT cascade logs in ``../shared``). The server simulates
   generation time (1 s + 20 ms per completion token, run 10 times faster); every row
   records ``started_at``/``ended_at``, so the durations are what the client measured
   (HTTP overhead included), reported in simulated seconds.
2. Trains the learned allocator on half the queries (``allocator train``'s pipeline) with
   a latency price ``mu`` and parallel widths (1, 2, 4, 8).
3. Evaluates on the other half (20 seeded orders): fixed-N (sequential), parallel-N (one
   wave of N), Adaptive-Consistency and the learned policy across its lambda range.

Prints the points and the ratios against fixed-N at equal accuracy, and writes
``benchmarks/results/latency/front.png`` and ``front.json`` (aggregates only: no logged
data is stored). Usage: ``.venv/bin/python benchmarks/latency_front.py [--timesteps N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = ROOT.parent / "shared" / "data" / "public-logs"
OUT = ROOT / "benchmarks" / "results" / "latency"
MODEL = "gpt-3.5-turbo/date_cot1_40"
ARM = "gpt-3.5"
#: Collected per query, and the simulated generation time (seconds) and its speed-up.
SAMPLES, BASE, PER_TOKEN, TIME_SCALE = 16, 1.0, 0.02, 0.1
#: The price of a (simulated) second in the learned policy's reward, and its widths.
MU, WIDTHS = 0.002, (1, 2, 4, 8)
POLICIES = ("fixed-n", "parallel-n", "adaptive-consistency")
SWEEPS = {"fixed-n": (1, 2, 4, 8, 16), "parallel-n": (1, 2, 4, 8, 16),
          "adaptive-consistency": (0.6, 0.8, 0.9, 0.95, 0.99)}


def collect(path: Path) -> int:
    """Record the executor log at ``path``; the number of queries."""
    sys.path.insert(0, str(ROOT / "tests"))
    from replay_server import Latency, mot_sources, start_replay_server

    from allocator.answers import get_extractor
    from allocator.executors import PolicyOracle, RunRecorder, SelfConsistency
    from allocator.llm import OpenAIClient
    from allocator.policies import make_policy
    from allocator.verifiers import Problem

    sources = mot_sources(PUBLIC, MODEL)
    with gzip.open(sources[MODEL], "rt", encoding="utf-8") as file:
        records = json.load(file)
    problems = [Problem(f"date-{i}", r["question"], reference=r["answer"])
                for i, r in enumerate(records)]
    latency = Latency(base=BASE, per_token=PER_TOKEN, time_scale=TIME_SCALE)
    decider = PolicyOracle(make_policy("fixed-n", n=SAMPLES), [ARM])
    with start_replay_server(sources, latency=latency, wrap=True) as server:
        async def run() -> None:
            async with OpenAIClient(MODEL, base_url=server.url) as client:
                with RunRecorder(path) as recorder:
                    executor = SelfConsistency(client, {ARM: {"temperature": 0.7}},
                                               get_extractor("date"), decider=decider,
                                               recorder=recorder)
                    await executor.arun_many(problems, concurrency=32)

        asyncio.run(run())
    return len(problems)


def read_scaled(path: Path) -> Any:
    """The recorded log with its times in simulated seconds (divided by the speed-up)."""
    import numpy as np

    from allocator.logs import read_attempts

    log, _ = read_attempts(path)
    log.extra = {**log.extra,
                 **{name: np.asarray(log.extra[name], dtype=np.float64) / TIME_SCALE
                    for name in ("started_at", "ended_at")}}
    return log


def points(report: Any) -> dict[str, list[dict[str, float]]]:
    """Per policy, its (accuracy, cost, latency) points."""
    out: dict[str, list[dict[str, float]]] = {}
    for name, series in report.points.items():
        if name not in (*POLICIES, "learned"):
            continue
        out[name] = [{"setting": p.value, "accuracy": p.accuracy, "mean_cost": p.mean_cost,
                      "mean_samples": p.mean_samples, "mean_latency": p.mean_latency,
                      "p50_latency": p.p50_latency, "p95_latency": p.p95_latency}
                     for p in series]
    return out


def faster_at_equal_accuracy(front: dict[str, list[dict[str, float]]], name: str
                             ) -> list[tuple[float, float, float]]:
    """For each point of ``name``: (accuracy, its mean latency, fixed-N's latency at that
    accuracy, interpolated along fixed-N's front); only where fixed-N reaches it."""
    import numpy as np

    fixed = sorted(front["fixed-n"], key=lambda p: p["mean_latency"])
    acc = np.maximum.accumulate([p["accuracy"] for p in fixed])
    lat = [p["mean_latency"] for p in fixed]
    rows = []
    for point in front.get(name, []):
        if point["accuracy"] > acc[-1] or point["mean_latency"] is None:
            continue
        rows.append((point["accuracy"], point["mean_latency"],
                     float(np.interp(point["accuracy"], acc, lat))))
    return rows


def plot(front: dict[str, list[dict[str, float]]], target: Path) -> None:
    """Accuracy against mean cost (left) and mean latency (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for name, series in front.items():
        series = sorted(series, key=lambda p: p["mean_cost"])
        for axis, key in zip(axes, ("mean_cost", "mean_latency"), strict=True):
            axis.plot([p[key] for p in series], [p["accuracy"] for p in series],
                      marker="o", ms=4, label=name)
    axes[0].set_xlabel("mean cost per query (tokens)")
    axes[1].set_xlabel("mean latency per query (simulated seconds, critical path)")
    axes[0].set_ylabel("accuracy (held-out queries)")
    for axis in axes:
        axis.grid(alpha=0.3)
    axes[1].legend(loc="lower right")
    figure.suptitle("Date understanding, GPT-3.5: accuracy against cost and latency "
                    f"(learned: mu={MU}/s, widths {WIDTHS})")
    figure.tight_layout()
    figure.savefig(target, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    """Collect, train, evaluate, print and plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=150_000)
    args = parser.parse_args(argv)
    if not (PUBLIC / "mot_cascade" / "raw").is_dir():
        print(f"skipped: {PUBLIC} not found (the public logs live in ../shared)")
        return 0
    from allocator.cli.progress import RichProgress
    from allocator.logs import write_log
    from allocator.training.evaluation.evaluate import EvaluationConfig, evaluate
    from allocator.training.rl.config import TrainConfig
    from allocator.training.rl.pipeline import run_training

    with tempfile.TemporaryDirectory(prefix="latency-front-") as folder:
        work = Path(folder)
        n = collect(work / "runs.jsonl")
        log = read_scaled(work / "runs.jsonl")
        print(f"recorded {n} queries, {log.n_attempts} timed calls; median call "
              f"{float(__import__('numpy').median(log.duration)):.2f} simulated s")
        path = write_log(log, work / "runs.parquet")
        result = run_training(path, work / "run",
                              TrainConfig(total_timesteps=args.timesteps, mu=MU,
                                          widths=WIDTHS, seed=0),
                              mlflow=False, calibrate=False, progress=RichProgress())
        report, _ = evaluate(log, EvaluationConfig(
            policies=POLICIES, sweeps=SWEEPS, seed=0, n_orders=20,
            bundle=result["learned_bundle"], oracles=False))
    front = points(report)
    OUT.mkdir(parents=True, exist_ok=True)
    plot(front, OUT / "front.png")
    ratios = {name: faster_at_equal_accuracy(front, name)
              for name in ("parallel-n", "adaptive-consistency", "learned")}
    (OUT / "front.json").write_text(json.dumps(
        {"log": f"{MODEL}, {n} queries, {SAMPLES} samples each, executor-recorded",
         "simulated_time": {"base_s": BASE, "per_token_s": PER_TOKEN,
                            "speed_up": 1 / TIME_SCALE},
         "mu_per_second": MU, "widths": list(WIDTHS), "timesteps": args.timesteps,
         "points": front,
         "latency_vs_fixed_n_at_equal_accuracy": ratios}, indent=2, default=float))
    print("| policy | setting | accuracy | mean samples | mean cost | latency s mean "
          "(p50 / p95) |")
    print("|---|---|---|---|---|---|")
    for name, series in front.items():
        for p in series:
            setting = "—" if p["setting"] is None else f"{p['setting']:g}"
            print(f"| {name} | {setting} | {p['accuracy']:.3f} | {p['mean_samples']:.1f} | "
                  f"{p['mean_cost']:,.0f} | {p['mean_latency']:.1f} "
                  f"({p['p50_latency']:.1f} / {p['p95_latency']:.1f}) |")
    print("\nmean latency against fixed-N's at the same accuracy (interpolated on its "
          "front), ratio = fixed-N / policy:")
    for name, rows in ratios.items():
        if rows:
            best = max(rows, key=lambda r: r[2] / r[1])
            print(f"  {name}: up to {best[2] / best[1]:.2f}x faster (accuracy "
                  f"{best[0]:.3f}: {best[1]:.1f} s vs {best[2]:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
