"""The README's real evaluation: date understanding, GPT-3.5, 40 samples per query.

Runs ``allocator evaluate``'s pipeline on the MoT cascade log in ``../shared`` (held-out
half of the 369 queries, 20 seeded orders each), prints the README's markdown table, and
writes the Pareto plot to ``benchmarks/results/date_gpt35_pareto.png`` (a figure of
aggregate results: no logged data is stored).

Usage: ``.venv/bin/python benchmarks/date_evaluation.py``
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT.parent / "shared" / "data" / "public-logs" / "mot_cascade" / "raw"
PLOT = ROOT / "benchmarks" / "results" / "date_gpt35_pareto.png"

#: Rows of the README table: (policy, knob value or None for every point).
ROWS = {
    "fixed-n": (1, 3, 5, 10, 20, 40),
    "adaptive-consistency": (0.8, 0.95, 0.99),
    "esc": (4, 5, 8),
    "confidence-threshold": (0.6, 0.7, 0.8),
    "difficulty-binned": (4, 8, 12),
}


def main() -> int:
    """Run the evaluation and print the table."""
    if not RAW.is_dir():
        print(f"skipped: {RAW} not found (the public logs live in ../shared)")
        return 0
    from allocator.converters import convert
    from allocator.training.evaluation.evaluate import EvaluationConfig, evaluate
    from allocator.training.evaluation.plots import plot_pareto

    log, _ = convert(RAW, "mot-cascade", tasks="date", models="gpt-3.5-turbo",
                     configs="cot1_40")
    report, results = evaluate(log, EvaluationConfig(seed=0, n_orders=20))
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    plot_pareto(report, PLOT, results={k: results[k] for k in ("fixed-n",
                                                              "adaptive-consistency")})
    head = report.headline
    print(f"held-out queries: {report.config['test_queries']}, orders: 20, target "
          f"({head.target_source}): {head.target_accuracy:.3f}\n")
    print("| policy | setting | accuracy (95% CI) | mean samples | mean cost (chars) |"
          " Δ acc vs AC(0.95) (95% CI) |")
    print("|---|---|---|---|---|---|")
    for name, values in ROWS.items():
        for point in report.points.get(name, []):
            if point.value not in values:
                continue
            low, high = point.accuracy_ci
            dlow, dhigh = point.difference_ci
            print(f"| {name} | {point.knob}={point.value:g} | {point.accuracy:.3f} "
                  f"({low:.3f}–{high:.3f}) | {point.mean_samples:.1f} | "
                  f"{point.mean_cost:,.0f} | {point.difference:+.3f} "
                  f"({dlow:+.3f}, {dhigh:+.3f}) |")
    for name in ("query-oracle", "oracle"):
        best = max(report.points[name], key=lambda p: p.accuracy)
        print(f"| {name} (not deployable) | best | {best.accuracy:.3f} | "
              f"{best.mean_samples:.1f} | {best.mean_cost:,.0f} | |")
    best = head.best_baseline
    print("\nheadline: cost to reach the target, and savings against the best baseline "
          f"({'none reaches it' if best is None else best['setting']})")
    for name, cost in head.cost_to_reach.items():
        saving = head.savings_vs_best_baseline.get(name)
        text = "never" if cost is None else f"{cost:,.0f} chars"
        ratio = "" if saving is None else f" ({saving:.2f}x cheaper than the best baseline)"
        print(f"- {name}: {text}{ratio}")
    print(f"\nwrote {PLOT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
