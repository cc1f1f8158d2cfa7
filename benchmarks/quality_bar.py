"""The learned allocator's quality bar on the real logs (issue 4), measured, not assumed.

For each log of :data:`LOGS`, ``allocator train``'s pipeline
(:func:`allocator.training.rl.pipeline.run_training`) splits the queries in half, fits the
difficulty
predictor on the training half, trains MaskablePPO, exports the bundle and evaluates it
against every baseline on the held-out half (20 seeded orders per query, bootstrap
intervals over queries); :func:`quality_bar` applies the bar. Each trained log also writes
its learning curve and the safety net's decision. ``--no-train`` runs the baselines and
the oracles only (the envelope, the best baseline and the oracles' coverage).

Writes ``benchmarks/results/quality_bar/<log>_pareto.png`` and ``quality_bar.json``
(``<log>_baselines.png`` and ``baselines.json`` with ``--no-train``; aggregate numbers
only: no logged data) and prints the README's table; the README's "Results" section keeps
the numbers and run times. Runs train in a temporary folder, without MLflow.

Usage: ``.venv/bin/python benchmarks/quality_bar.py [--timesteps N] [--only NAME ...]
[--no-train]``
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
#: Bar 2: savings against the best baseline, with several arms or a verifier / without.
SAVINGS_BAR_RICH, SAVINGS_BAR_PLAIN = 2.0, 1.0


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


def reasoning_gym_hard() -> Any:
    from allocator.converters import convert

    log = convert(PUBLIC / "reasoning_gym" / "samples.jsonl.gz", "reasoning-gym",
                  difficulty="hard")[0]
    return log.select_queries(log.common_queries())


def swe_bench_pro() -> Any:
    from allocator.converters import convert

    return convert(PUBLIC / "swe_bench_pro" / "agent_runs.csv.gz", "swe-bench-pro")[0]


#: Per-sample generated-test scores written by benchmarks/codet_verifier.py.
CODET_SCORES = ROOT / "benchmarks" / "results" / "codet_verifier" / "scores.jsonl.gz"


class Unavailable(Exception):
    """A log cannot be built here (a derived file is missing); the message says why."""


def codet() -> Any:
    """CodeT HumanEval with each sample's generated-test pass share as its score."""
    import gzip
    import inspect

    import numpy as np

    from allocator.converters import convert
    from allocator.logs.table import AttemptLog

    if not CODET_SCORES.exists():
        raise Unavailable(f"{CODET_SCORES} not found: run benchmarks/codet_verifier.py "
                          "first (about 20 minutes on 2 cores)")
    log, _ = convert(PUBLIC / "codet_humaneval", "codet")
    with gzip.open(CODET_SCORES, "rt") as handle:
        scores = {(r["task_id"], int(r["sample_idx"])): r["score"]
                  for r in map(json.loads, handle)}
    query = log.query_ids[log.attempt_query]
    score = np.array([scores.get((q, int(i)), np.nan) for q, i in
                      zip(query, log.extra["sample_idx"], strict=True)], dtype=np.float32)
    fields = inspect.signature(AttemptLog.__init__).parameters
    return AttemptLog(**{**{k: v for k, v in vars(log).items() if k in fields},
                         "score": np.where(score == score, score, np.nan)})


#: The logs (``../shared/data/public-logs``; costs in characters unless priced):
#:
#: - ``date-gpt35``: date understanding, GPT-3.5, ``cot1_40`` (40 samples per query);
#: - ``date-llama2``: date understanding, Llama-2-13B, ``cot1`` (20 samples);
#: - ``gsm8k-llama2``: GSM8K, Llama-2-13B, ``pot1`` (about 22 samples);
#: - ``date-cascade``: date understanding, Llama-2-13B ``cot1`` (20), GPT-3.5 ``cot1`` (20)
#:   and GPT-4 ``cot1`` (3) as three arms, costs in US dollars per million queries at the
#:   public output-token prices of the time (characters / 4 tokens; GPT-4 $60, GPT-3.5-turbo
#:   $2, Llama-2-13B $0.22 per million tokens; prompt tokens left out: the same few-shot
#:   prompt goes with every call);
#: - ``rg-easy``: reasoning-gym easy, ten models as arms (the questions every model
#:   answered), costs in response characters;
#: - ``rg-hard``: reasoning-gym hard, ten models as arms, one sample each;
#: - ``swe-bench-pro``: SWE-bench Pro, the 14 agent configurations as arms (one run each),
#:   costs in agent turns;
#: - ``codet``: CodeT HumanEval, 100 CodeGen-16B samples per problem, with the share of
#:   CodeT's generated tests a sample passes as its verifier ``score`` (from
#:   ``benchmarks/codet_verifier.py``'s ``scores.jsonl.gz``; skipped until that has run).
#:   Running the tests is counted as free (the log has no verify rows; pass
#:   ``verify_cost`` to change it).
LOGS: dict[str, tuple[str, str, Callable[[], Any]]] = {
    "date-gpt35": ("date / GPT-3.5 / cot1_40", "chars", date_gpt35),
    "date-llama2": ("date / Llama-2-13B / cot1", "chars", date_llama2),
    "gsm8k-llama2": ("GSM8K / Llama-2-13B / pot1", "chars", gsm8k_llama2),
    "date-cascade": ("date / Llama-2 + GPT-3.5 + GPT-4 cascade", "$ per 1M queries",
                     date_cascade),
    "rg-easy": ("reasoning-gym easy / 10 models", "chars", reasoning_gym_easy),
    "rg-hard": ("reasoning-gym hard / 10 models", "chars", reasoning_gym_hard),
    "swe-bench-pro": ("SWE-bench Pro / 14 agent configurations", "turns", swe_bench_pro),
    "codet": ("CodeT HumanEval / CodeGen-16B + generated tests", "chars", codet),
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


def _point(data: dict[str, Any]) -> Any:
    from allocator.training.evaluation.results import PolicyPoint

    fields = PolicyPoint.__dataclass_fields__
    data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in fields}
    return PolicyPoint(**data)


def quality_bar(report: dict[str, Any], *, rich: bool = False) -> dict[str, Any]:
    """The three checks of the bar, from an evaluation report.

    The headline is measured against the **envelope** (the front of every deployable baseline
    at every setting on the held-out queries; :mod:`allocator.training.evaluation.pareto`): the
    target
    accuracy is the envelope's top, and "reaching" it means non-inferior at 95% on the paired
    difference with AC(0.95) (:func:`allocator.training.evaluation.pareto.reaches`, the one
    definition).

    1. **nowhere below a baseline**: at every deployable baseline point's mean cost inside
       the learned front's cost range, the learned front's (interpolated) accuracy is not
       below the lower end of that point's 95% interval;
    2. **cheaper than the best baseline**: the learned policy reaches the target at no more
       than half the cost of the cheapest baseline point that reaches it on logs with several
       arms or a verifier score, at no more than its cost on single-arm vote-only logs; on
       logs with arms or a verifier this counts only when the safety net exported the learned
       policy (the bundle a user gets);
    3. **the gap closed**: the median, over matched costs, of the share of the gap between
       the envelope and the query-oracle that the learned front closes (reported, no bar).

    Args:
        report: ``report.json``.
        rich: the log has several arms or a verifier score (bar 2 asks for 2x, and
            counts only when the safety net exported the learned policy).
    """
    from allocator.training.evaluation.pareto import cheapest_reaching

    headline = report["headline"]
    target = headline["target_accuracy"]
    learned = _points(report, "learned")
    ac95 = next((p for p in _points(report, "adaptive-consistency")
                 if math.isclose(p["value"], 0.95)), None)
    reaching = cheapest_reaching([_point(p) for p in learned], target,
                                 headline.get("reference_accuracy"))
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
    savings = headline["savings_vs_best_baseline"].get("learned")
    best = max(learned, key=lambda p: p["accuracy"]) if learned else None
    oracle = report.get("extra", {}).get("query_oracle", {})
    safety = report.get("extra", {}).get("safety_net")
    exported = "learned" if safety is None else safety["exported"]
    bar = SAVINGS_BAR_RICH if rich else SAVINGS_BAR_PLAIN
    return {
        "target_accuracy": target,
        "target_source": headline.get("target_source"),
        "envelope": headline.get("envelope", []),
        "best_baseline": headline.get("best_baseline"),
        "ac95": None if ac95 is None else {"accuracy": ac95["accuracy"],
                                           "cost": ac95["mean_cost"]},
        "learned_cost": None if reaching is None else reaching.mean_cost,
        "savings_vs_best_baseline": savings,
        "learned_best": None if best is None else {
            "accuracy": best["accuracy"], "cost": best["mean_cost"], "lambda": best["value"]},
        "below_baselines": below,
        "gap_closed": gap,
        "query_oracle": oracle,
        "skipped": report.get("extra", {}).get("skipped", {}),
        "exported": exported,
        "safety_net": None if safety is None else safety["reason"],
        "savings_bar": bar,
        "met": None if not learned else {
            "not_below": not below,
            "cheaper": (savings or 0.0) >= bar and (exported == "learned" or not rich),
        },
    }


# ------------------------------------------------------------------ running
def best_arm(log: Any) -> str | None:
    """The single-arm baselines' arm: the one with the best majority-of-all accuracy on
    the whole log (None for one arm). Choosing it with the test queries' outcomes favours
    the baselines, never the learned policy. On logs with several arms the single-arm
    baselines (fixed-N, adaptive-consistency...) sample it, and "majority-of-all" is its."""
    from allocator.logs.summary import summarize

    if len(log.arms) == 1:
        return None
    rows = summarize(log)
    return max(log.arms, key=lambda arm: rows[arm].majority_accuracy)


def run_one(name: str, timesteps: int, folder: Path, *, train: bool = True
            ) -> dict[str, Any]:
    """Train and evaluate one log (or, with ``train=False``, evaluate the baselines and
    oracles only); the bar's numbers."""
    from allocator.logs import write_log

    title, unit, build = LOGS[name]
    log = build()
    arm = best_arm(log)
    start = time.perf_counter()
    if train:
        from allocator.cli.progress import RichProgress
        from allocator.training.rl.config import TrainConfig
        from allocator.training.rl.pipeline import run_training

        path = write_log(log, folder / f"{name}.parquet")
        result = run_training(path, folder / name,
                              TrainConfig(total_timesteps=timesteps, arm=arm),
                              mlflow=False, progress=RichProgress())
        report = json.loads((folder / name / "report.json").read_text())
        steps = int(result["training"]["num_timesteps"])
    else:
        from allocator.training.evaluation.evaluate import EvaluationConfig, evaluate
        from allocator.training.evaluation.plots import plot_pareto
        from allocator.training.evaluation.report import write_report

        evaluation, _ = evaluate(log, EvaluationConfig(arm=arm, cost_unit=unit),
                                 progress=lambda message: print(f"   {message}",
                                                                file=sys.stderr))
        write_report(evaluation, folder / name)
        plot_pareto(evaluation, folder / name / "pareto.png")
        report, steps = evaluation.to_dict(), 0
    seconds = time.perf_counter() - start
    OUT.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(folder / name / "pareto.png",
                    OUT / f"{name}_{'pareto' if train else 'baselines'}.png")
    if train:
        shutil.copyfile(folder / name / "learning_curve.png",
                        OUT / f"{name}_learning_curve.png")
    rich = len(log.arms) > 1 or log.supports_verify
    return {"log": title, "unit": unit, "queries": log.n_queries, "arms": list(log.arms),
            "baseline_arm": arm, "timesteps": steps, "seconds": seconds,
            **quality_bar(json.loads(json.dumps(report, default=str)), rich=rich)}


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _best_text(best: dict[str, Any] | None, arms: list[str]) -> str:
    """``policy knob=value [arm]`` @ cost, the arm named when the setting has one."""
    if not best:
        return "—"
    import re

    arm = re.search(r"\barm=(\d+)", best.get("setting", ""))
    where = f" [{arms[int(arm.group(1))]}]" if arm and len(arms) > 1 else ""
    from allocator.policies import POLICIES

    name = getattr(POLICIES.get(best["policy"]), "knob", None) or r"\w+"
    first = re.search(rf"\b({name}=[^,;)]+)", best.get("setting", ""))
    knob = best.get("knob") or (first.group(1) if first else best.get("setting", ""))
    return f"{best['policy']} {knob}{where} @ {_fmt(best['cost'], 1)}"


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| log | target (envelope top) | best baseline reaching it @ cost | "
             "AC(0.95) acc @ cost | learned reaches it at | savings vs best baseline | "
             "below a baseline | gap closed (from the envelope) | query-oracle exact / "
             "coarser costs / fallback | safety net exported | bar |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results.values():
        ac = r["ac95"] or {}
        oracle = r.get("query_oracle") or {}
        met = r.get("met")
        bar = ("baselines only" if met is None else
               ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in met.items()))
        trained = met is not None
        lines.append(
            f"| {r['log']} ({r['unit']}) | {_fmt(r['target_accuracy'])} | "
            f"{_best_text(r.get('best_baseline'), r['arms'])} | "
            f"{_fmt(ac.get('accuracy'))} @ {_fmt(ac.get('cost'), 1)} | "
            f"{_fmt(r.get('learned_cost'), 1) if trained else 'not trained'} | "
            f"{_fmt(r.get('savings_vs_best_baseline'), 2) + 'x' if trained else '—'} | "
            f"{str(len(r['below_baselines'])) + ' points' if trained else '—'} | "
            f"{_fmt(r.get('gap_closed'), 2)} | "
            f"{oracle.get('exact', '—')} / {oracle.get('cost_classes_coarsened', '—')} / "
            f"{oracle.get('fallback_to_hindsight', '—')} of {oracle.get('queries', '—')} | "
            f"{r.get('exported', '—') if trained else '—'} | {bar} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=2_000_000)
    parser.add_argument("--only", nargs="*", choices=sorted(LOGS), default=None)
    parser.add_argument("--no-train", action="store_true",
                        help="baselines and oracles only: the envelope in minutes")
    args = parser.parse_args(argv)
    if not PUBLIC.is_dir():
        print(f"skipped: {PUBLIC} not found (the public logs live in ../shared)")
        return 0
    names = args.only or list(LOGS)
    OUT.mkdir(parents=True, exist_ok=True)
    summary_path = OUT / ("baselines.json" if args.no_train else "quality_bar.json")
    results = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            print(f"== {LOGS[name][0]}", file=sys.stderr)
            try:
                results[name] = run_one(name, args.timesteps, Path(tmp),
                                        train=not args.no_train)
            except Unavailable as reason:
                print(f"   skipped: {reason}", file=sys.stderr)
                continue
            summary_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    ordered = {name: results[name] for name in LOGS if name in results}
    print(table(ordered))
    return 0


if __name__ == "__main__":
    sys.exit(main())
