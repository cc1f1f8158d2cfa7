"""The learned allocator's quality bar on five real logs (issue 4), measured, not assumed.

For each log below, ``allocator train``'s pipeline (:func:`training.rl.pipeline.run_training`)
splits the queries in half, fits the difficulty predictor on the training half, trains
MaskablePPO, exports the bundle and evaluates it against every baseline on the held-out
half (20 seeded orders per query, bootstrap intervals over queries). Then the bar:

On logs with several arms the single-arm baselines (fixed-N, adaptive-consistency...)
sample the best arm (the best majority-of-all accuracy on the whole log), and
"majority-of-all" is that arm's.

1. **half the cost of AC(0.95)**: the learned policy reaches majority-of-all accuracy (on
   the held-out queries) at no more than half the mean cost of adaptive-consistency at
   threshold 0.95. "Reaches" is checked two ways: strictly (its front's accuracy at or
   above the target) and non-inferior at 95% (the upper end of its paired difference with
   AC(0.95) on the same orders is at least ``target - accuracy(AC(0.95))``);
2. **nowhere below a baseline**: at every deployable baseline point's mean cost inside
   the learned front's cost range, the learned front's (interpolated) accuracy is not
   below the lower end of that point's 95% interval;
3. **60% of the gap**: the median, over matched costs, of the share of the gap between
   the best fixed-N and the query-oracle that the learned front closes.

The logs (``../shared/data/public-logs``; costs in characters unless priced):

- ``date-gpt35``: date understanding, GPT-3.5, ``cot1_40`` (40 samples per query);
- ``date-llama2``: date understanding, Llama-2-13B, ``cot1`` (20 samples);
- ``gsm8k-llama2``: GSM8K, Llama-2-13B, ``pot1`` (about 22 samples);
- ``date-cascade``: date understanding, Llama-2-13B ``cot1`` (20), GPT-3.5 ``cot1`` (20)
  and GPT-4 ``cot1`` (3) as three arms, costs in US dollars per million queries at the
  public output-token prices of the time (characters / 4 tokens; GPT-4 $60, GPT-3.5-turbo
  $2, Llama-2-13B $0.22 per million tokens; prompt tokens left out: the same few-shot
  prompt goes with every call);
- ``rg-easy``: reasoning-gym easy, ten models as arms (the questions every model
  answered), costs in response characters.

Writes ``benchmarks/results/quality_bar/<log>_pareto.png`` and ``quality_bar.json``
(aggregate numbers only: no logged data) and prints the README's table. Runs train in a
temporary folder, without MLflow.

Usage: ``.venv/bin/python benchmarks/quality_bar.py [--timesteps N] [--only NAME ...]``
(about 2-4 minutes per log on 2 cores with the default 2M steps).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = ROOT.parent / "shared" / "data" / "public-logs"
OUT = ROOT / "benchmarks" / "results" / "quality_bar"

#: US dollars per output token (public list prices, 2023) for the cascade's arms.
CASCADE_PRICES_PER_TOKEN = {"llama-2-13b/cot1": 0.22e-6, "gpt-3.5-turbo/cot1": 2e-6,
                            "gpt-4/cot1": 60e-6}
CHARS_PER_TOKEN = 4.0
GAP_BAR, SAVINGS_BAR = 0.6, 2.0


# ------------------------------------------------------------------ the logs
def date_gpt35() -> Any:
    from allocator.converters import convert

    return convert(PUBLIC / "mot_cascade" / "raw", "mot-cascade", tasks="date",
                   models="gpt-3.5-turbo", configs="cot1_40")[0]


def date_llama2() -> Any:
    from allocator.converters import convert

    return convert(PUBLIC / "mot_cascade" / "raw", "mot-cascade", tasks="date",
                   models="llama-2-13b", configs="cot1")[0]


def gsm8k_llama2() -> Any:
    from allocator.converters import convert

    return convert(PUBLIC / "mot_cascade" / "raw", "mot-cascade", tasks="gsm",
                   models="llama-2-13b", configs="pot1")[0]


def date_cascade() -> Any:
    from allocator.converters import convert

    log = convert(PUBLIC / "mot_cascade" / "raw", "mot-cascade", tasks="date",
                  models=["llama-2-13b", "gpt-3.5-turbo", "gpt-4"], configs="cot1")[0]
    log = log.select_queries(log.common_queries())
    # characters -> tokens -> dollars per million queries
    scale = 1e6 / CHARS_PER_TOKEN
    return log.with_prices({arm: price * scale
                            for arm, price in CASCADE_PRICES_PER_TOKEN.items()})


def reasoning_gym_easy() -> Any:
    from allocator.converters import convert

    log = convert(PUBLIC / "reasoning_gym" / "samples.jsonl.gz", "reasoning-gym",
                  difficulty="easy")[0]
    return log.select_queries(log.common_queries())


LOGS: dict[str, tuple[str, str, Callable[[], Any]]] = {
    "date-gpt35": ("date / GPT-3.5 / cot1_40", "chars", date_gpt35),
    "date-llama2": ("date / Llama-2-13B / cot1", "chars", date_llama2),
    "gsm8k-llama2": ("GSM8K / Llama-2-13B / pot1", "chars", gsm8k_llama2),
    "date-cascade": ("date / Llama-2 + GPT-3.5 + GPT-4 cascade", "$ per 1M queries",
                     date_cascade),
    "rg-easy": ("reasoning-gym easy / 10 models", "chars", reasoning_gym_easy),
}


# ------------------------------------------------------------------ the bar
def _points(report: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return list(report["policies"].get(name, []))


def _front(points: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """The upper-left front (cost ascending, accuracy strictly rising)."""
    costs, accuracies = [], []
    for point in sorted(points, key=lambda p: (p["mean_cost"], -p["accuracy"])):
        if not accuracies or point["accuracy"] > accuracies[-1]:
            costs.append(point["mean_cost"])
            accuracies.append(point["accuracy"])
    return costs, accuracies


def _interp(costs: list[float], accuracies: list[float], cost: float) -> float | None:
    if not costs or cost < costs[0]:
        return None
    if cost >= costs[-1]:
        return accuracies[-1]  # the front stays at its best beyond its dearest point
    for (c0, a0), (c1, a1) in zip(zip(costs, accuracies, strict=True),
                                  zip(costs[1:], accuracies[1:], strict=True), strict=True):
        if c0 <= cost <= c1:
            return a0 + (a1 - a0) * (cost - c0) / (c1 - c0) if c1 > c0 else a1
    return None


def quality_bar(report: dict[str, Any]) -> dict[str, Any]:
    """The three checks of the module docstring, from an evaluation report."""
    headline = report["headline"]
    target = headline["target_accuracy"]
    learned = _points(report, "learned")
    ac95 = next((p for p in _points(report, "adaptive-consistency")
                 if math.isclose(p["value"], 0.95)), None)
    strict = headline["cost_to_reach"].get("learned")
    noninferior = None
    if ac95 is not None:
        needed = target - ac95["accuracy"]
        reaching = [p["mean_cost"] for p in learned if p["difference_ci"][1] >= needed]
        noninferior = min(reaching) if reaching else None
    ac_cost = None if ac95 is None else ac95["mean_cost"]
    costs, accuracies = _front(learned)
    below = []
    for name, points in report["policies"].items():
        if name == "learned":
            continue
        for point in points:
            if not point["deployable"]:
                continue
            ours = _interp(costs, accuracies, point["mean_cost"])
            if ours is not None and ours < point["accuracy_ci"][0]:
                below.append({"policy": name, "value": point["value"],
                              "cost": point["mean_cost"], "accuracy": point["accuracy"],
                              "ci_low": point["accuracy_ci"][0], "learned": ours})
    gap = headline["gap_closed"].get("learned")

    def ratio(cost: float | None) -> float | None:
        return None if cost is None or ac_cost is None or cost <= 0 else ac_cost / cost

    best = max(learned, key=lambda p: p["accuracy"]) if learned else None
    return {
        "target_accuracy": target,
        "ac95": None if ac95 is None else {"accuracy": ac95["accuracy"], "cost": ac_cost},
        "learned_cost_strict": strict, "savings_strict": ratio(strict),
        "learned_cost_noninferior": noninferior, "savings_noninferior": ratio(noninferior),
        "learned_best": None if best is None else {
            "accuracy": best["accuracy"], "cost": best["mean_cost"], "lambda": best["value"]},
        "below_baselines": below,
        "gap_closed": gap,
        "met": {
            "half_cost": (ratio(noninferior) or 0.0) >= SAVINGS_BAR,
            "not_below": not below,
            "gap_closed": gap is not None and gap >= GAP_BAR,
        },
    }


# ------------------------------------------------------------------ running
def best_arm(log: Any) -> str | None:
    """The single-arm baselines' arm: the one with the best majority-of-all accuracy on
    the whole log (None for one arm). Choosing it with the test queries' outcomes favours
    the baselines, never the learned policy."""
    from allocator.logs.summary import summarize

    if len(log.arms) == 1:
        return None
    rows = summarize(log)
    return max(log.arms, key=lambda arm: rows[arm].majority_accuracy)


def run_one(name: str, timesteps: int, folder: Path) -> dict[str, Any]:
    from allocator.logs import write_log
    from training.rl.config import TrainConfig
    from training.rl.pipeline import run_training

    title, unit, build = LOGS[name]
    log = build()
    path = write_log(log, folder / f"{name}.parquet")
    arm = best_arm(log)
    start = time.perf_counter()
    result = run_training(path, folder / name,
                          TrainConfig(total_timesteps=timesteps, arm=arm),
                          mlflow=False, progress=True)
    seconds = time.perf_counter() - start
    report = json.loads((folder / name / "report.json").read_text())
    OUT.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(folder / name / "pareto.png", OUT / f"{name}_pareto.png")
    return {"log": title, "unit": unit, "queries": log.n_queries, "arms": list(log.arms),
            "baseline_arm": arm,
            "timesteps": int(result["training"]["num_timesteps"]), "seconds": seconds,
            **quality_bar(report)}


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| log | majority-of-all | AC(0.95) acc @ cost | learned reaches it at "
             "(non-inferior / strict) | savings vs AC(0.95) | below a baseline | gap closed | "
             "bar |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results.values():
        ac = r["ac95"] or {}
        met = r["met"]
        bar = ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in met.items())
        lines.append(
            f"| {r['log']} ({r['unit']}) | {_fmt(r['target_accuracy'])} | "
            f"{_fmt(ac.get('accuracy'))} @ {_fmt(ac.get('cost'), 1)} | "
            f"{_fmt(r['learned_cost_noninferior'], 1)} / {_fmt(r['learned_cost_strict'], 1)} | "
            f"{_fmt(r['savings_noninferior'], 2)}x | {len(r['below_baselines'])} points | "
            f"{_fmt(r['gap_closed'], 2)} | {bar} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=2_000_000)
    parser.add_argument("--only", nargs="*", choices=sorted(LOGS), default=None)
    args = parser.parse_args(argv)
    if not PUBLIC.is_dir():
        print(f"skipped: {PUBLIC} not found (the public logs live in ../shared)")
        return 0
    names = args.only or list(LOGS)
    OUT.mkdir(parents=True, exist_ok=True)
    summary_path = OUT / "quality_bar.json"
    results = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            print(f"== {LOGS[name][0]}", file=sys.stderr)
            results[name] = run_one(name, args.timesteps, Path(tmp))
            summary_path.write_text(json.dumps(results, indent=2) + "\n")
    ordered = {name: results[name] for name in LOGS if name in results}
    print(table(ordered))
    return 0


if __name__ == "__main__":
    sys.exit(main())
