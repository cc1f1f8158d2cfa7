"""CodeT on HumanEval: how well do model-written tests pick a correct program?

Data: ``../shared/data/public-logs/codet_humaneval`` (microsoft/CodeT, MIT): 100
CodeGen-16B completions for each of the 164 HumanEval problems with ``passed`` (the
official tests), and 100 model-written test continuations per problem, matched to their
problem by prompt. Every distinct completion runs against its problem's generated tests in
the sandbox (:func:`score_all` gives the method, as CodeT's code), and :func:`report`
compares the rankings (random, most tests passed, CodeT's dual agreement) and the score's
AUC. The README's "Verifiers" section keeps the results and the run time.

Writes ``report.json``, ``scores.png`` and ``scores.jsonl.gz`` (per-sample scores: data
derived, never commit) under ``--out`` (default ``benchmarks/results/codet_verifier/``,
gitignored). ``--check-official`` also runs every distinct completion against HumanEval's
official suite (3 CPU-seconds, as HumanEval's harness) and reports the agreement with
``passed``.

Run: ``nice -n 10 .venv/bin/python benchmarks/codet_verifier.py`` (``--limit-problems 10``
for a quick look; ``--from-scores`` re-reads the scores).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import multiprocessing
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sklearn.metrics import roc_auc_score

from allocator.verifiers import Limits, describe_sandbox, extract_asserts, run_tests

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "public-logs" / "codet_humaneval"
OUT = Path(__file__).resolve().parent / "results" / "codet_verifier"
TESTS_PER_SAMPLE = 5  # CodeT's --test_case_limit
LIMITS = Limits(wall_seconds=10.0, test_seconds=0.1, test_wall_seconds=1.0, cpu_seconds=10.0,
                memory_bytes=1 << 30, output_bytes=4096)
# HumanEval's own harness: 3 s for the whole official suite
OFFICIAL_LIMITS = Limits(wall_seconds=20.0, test_seconds=3.0, test_wall_seconds=10.0,
                         cpu_seconds=20.0)
CHUNK = 8  # distinct completions per pool task


@dataclass
class Task:
    """One HumanEval problem with its samples and generated tests."""

    task_id: str
    prompt: str
    entry_point: str
    test: str
    samples: list[dict] = field(default_factory=list)
    tests: list[str] = field(default_factory=list)
    weights: list[int] = field(default_factory=list)  # times each test was generated


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a gzipped JSONL file."""
    with gzip.open(path, "rt", encoding="utf-8") as file:
        return [json.loads(line) for line in file]


def load_tasks(data: Path, limit: int | None) -> list[Task]:
    """Problems (in ``problems.jsonl.gz`` order), their samples and generated tests."""
    problems = read_jsonl(data / "problems.jsonl.gz")[:limit]
    tasks = {p["task_id"]: Task(p["task_id"], p["prompt"], p["entry_point"], p["test"])
             for p in problems}
    for row in read_jsonl(data / "samples.jsonl.gz"):
        if row["task_id"] in tasks:
            tasks[row["task_id"]].samples.append(row)
    for row in read_jsonl(data / "generated_tests.jsonl.gz"):
        task = match_task(row["prompt"], tasks.values())
        if task is not None:
            task.tests, task.weights = generated_tests(row["samples"], task.entry_point)
    return list(tasks.values())


def match_task(prompt: str, tasks: Iterable[Task]) -> Task | None:
    """The task whose prompt the test-generation prompt starts with (the test file is
    sorted by task id as a string, not in the order of ``problems.jsonl.gz``)."""
    found = [task for task in tasks if prompt.startswith(task.prompt.rstrip())]
    if len(found) > 1:
        raise RuntimeError(f"ambiguous test prompt: {[t.task_id for t in found]}")
    return found[0] if found else None


def generated_tests(samples: Sequence[str], entry_point: str) -> tuple[list[str], list[int]]:
    """CodeT's test set: the first 5 cases of each sample, deduplicated, with counts."""
    counts: Counter[str] = Counter()
    for sample in samples:
        counts.update(extract_asserts(sample, entry_point, TESTS_PER_SAMPLE))
    tests = list(counts)
    return tests, [counts[test] for test in tests]


# --------------------------------------------------------------------------- execution


def run_chunk(prompt: str, completions: list[str], tests: list[str]) -> list[tuple[str, str]]:
    """Pass/fail bits (``"1011..."``) and run status of each completion (pool worker)."""
    results = []
    for completion in completions:
        run = run_tests(prompt + completion, tests, LIMITS)
        results.append(("".join("1" if o == "passed" else "0" for o in run.outcomes),
                        run.status))
    return results


def run_official_chunk(prompt: str, completions: list[str], suite: str) -> list[bool]:
    """Whether each completion passes HumanEval's official suite (pool worker)."""
    return [run_tests(prompt + c, [suite], OFFICIAL_LIMITS).score == 1.0 for c in completions]


def score_all(tasks: list[Task], workers: int, console: Console) -> dict[tuple[str, str], tuple]:
    """(task id, completion) -> (bits, status) for every distinct completion with tests.

    Method (as CodeT's code at 35f54d6): from each generated test sample, the first 5 valid
    ``assert`` cases that mention the entry point
    (:func:`allocator.verifiers.code.extract_asserts`); the union over the 100 samples,
    deduplicated, is the problem's test set (at most 500). Every distinct completion runs
    against every test case of its problem in one sandboxed subprocess
    (:func:`allocator.verifiers.sandbox.run_tests`, 0.1 CPU-second per test case as CodeT's
    0.1 s timeout, 1 s wall per test case, 10 s per candidate) on a process pool.
    """
    jobs = [(task.task_id, chunk, run_chunk, (task.prompt, chunk, task.tests))
            for task in tasks if task.tests for chunk in chunks(distinct(task), CHUNK)]
    return run_pool("generated tests", jobs, workers, console)


def check_official(tasks: list[Task], workers: int, console: Console) -> dict[tuple, bool]:
    """(task id, completion) -> passes the official tests, for every distinct completion."""
    jobs = [(task.task_id, chunk, run_official_chunk,
             (task.prompt, chunk, f"{task.test}\ncheck({task.entry_point})"))
            for task in tasks for chunk in chunks(distinct(task), CHUNK)]
    return run_pool("official tests", jobs, workers, console)


def run_pool(label: str, jobs: list[tuple], workers: int, console: Console) -> dict:
    """Run ``(task id, completions, function, args)`` jobs on a process pool with a bar.

    Returns (task id, completion) -> the function's result for that completion.
    """
    results: dict[tuple[str, str], object] = {}
    context = multiprocessing.get_context("spawn")
    columns = (TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with ProcessPoolExecutor(workers, mp_context=context) as pool, \
            Progress(*columns, console=console) as progress:
        bar = progress.add_task(label, total=sum(len(job[1]) for job in jobs))
        futures = {pool.submit(function, *args): (task_id, completions)
                   for task_id, completions, function, args in jobs}
        for future in as_completed(futures):
            task_id, completions = futures[future]
            for completion, result in zip(completions, future.result(), strict=True):
                results[(task_id, completion)] = result
            progress.advance(bar, len(completions))
    return results


def distinct(task: Task) -> list[str]:
    """The task's distinct completions (identical samples run once, as in CodeT)."""
    return sorted({sample["completion"] for sample in task.samples})


def chunks(items: list[str], size: int) -> list[list[str]]:
    """``items`` in consecutive pieces of ``size``."""
    return [items[i:i + size] for i in range(0, len(items), size)]


def per_sample_rows(tasks: list[Task], results: dict) -> list[dict]:
    """One row per sample: task, index, passed, score, pass bits, run status."""
    rows = []
    for task in tasks:
        for sample in task.samples:
            bits, status = results.get((task.task_id, sample["completion"]), ("", "no tests"))
            score = bits.count("1") / len(bits) if bits else math.nan
            rows.append({"task_id": task.task_id, "sample_idx": sample["sample_idx"],
                         "passed": bool(sample["passed"]), "score": score, "bits": bits,
                         "status": status})
    return rows


# --------------------------------------------------------------------------- rankings


def top_pass_rate(passed: np.ndarray, keys: np.ndarray) -> float:
    """Mean ``passed`` among the samples with the highest key (uniform tie-breaking)."""
    return float(passed[keys == keys.max()].mean())


def verifier_pick(rows: list[dict], weights: list[int] | None = None) -> float:
    """Pass@1 of the best-scored sample of one problem (random when none is scored).

    With ``weights``, a test counts as often as the generator wrote it.
    """
    passed = np.array([r["passed"] for r in rows], dtype=float)
    scores = np.array([r["score"] if weights is None else weighted_score(r["bits"], weights)
                       for r in rows], dtype=float)
    if np.isnan(scores).all():
        return float(passed.mean())
    return top_pass_rate(passed, np.nan_to_num(scores, nan=-1.0))


def weighted_score(bits: str, weights: list[int]) -> float:
    """Share of the test weight a sample passes (NaN without tests)."""
    if not bits:
        return math.nan
    return sum(w for bit, w in zip(bits, weights, strict=True) if bit == "1") / sum(weights)


def dual_agreement_pick(rows: list[dict], weights: list[int], linear: bool) -> float:
    """Pass@1 of CodeT's dual-agreement choice for one problem (random when undefined)."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        if "1" in row["bits"]:
            groups[row["bits"]].append(row["passed"])
    if not groups:
        return float(np.mean([r["passed"] for r in rows]))
    scored = [(consensus(bits, members, weights, linear), members)
              for bits, members in groups.items()]
    best = max(score for score, _ in scored)
    chosen = [p for score, members in scored if score == best for p in members]
    return float(np.mean(chosen))


def consensus(bits: str, members: list[bool], weights: list[int], linear: bool) -> float:
    """A consensus set's score: (samples or their square root) x weighted tests passed."""
    tests = sum(w for bit, w in zip(bits, weights, strict=True) if bit == "1")
    return (len(members) if linear else math.sqrt(len(members))) * tests


def within_problem_auc(by_task: dict[str, list[dict]]) -> float:
    """Mean AUC over problems that have both passing and failing scored samples."""
    aucs = []
    for rows in by_task.values():
        labels = [r["passed"] for r in rows if not math.isnan(r["score"])]
        scores = [r["score"] for r in rows if not math.isnan(r["score"])]
        if 0 < sum(labels) < len(labels):
            aucs.append(roc_auc_score(labels, scores))
    return float(np.mean(aucs)) if aucs else math.nan


def official_agreement(tasks: list[Task], official: dict[tuple, bool]) -> dict:
    """How often the official suite, run here, agrees with the logged ``passed``."""
    mismatches = [[task.task_id, sample["sample_idx"], bool(sample["passed"]),
                   official[(task.task_id, sample["completion"])]]
                  for task in tasks for sample in task.samples
                  if official[(task.task_id, sample["completion"])] != bool(sample["passed"])]
    samples = sum(len(task.samples) for task in tasks)
    return {"samples": samples, "agree": samples - len(mismatches),
            "mismatches (task, sample, logged, here)": mismatches[:100]}


def report(tasks: list[Task], rows: list[dict], seconds: float) -> dict:
    """The aggregate numbers (no per-sample data).

    The rankings compared:

    - ``random``: pass@1 of a random sample (the mean of ``passed``);
    - ``verifier``: pass@1 of the sample with the highest fraction of tests passed, ties
      broken uniformly at random (in expectation: the mean ``passed`` of the tied top);
      ``verifier_weighted``: the same with each test counted as often as it was generated;
    - ``dual agreement``: CodeT's ranking: samples are grouped by the exact set of tests they
      pass; a group scores sqrt(samples in it) x (tests it passes, each counted as often as
      the generated samples wrote it) (``dual_agreement_linear``: samples x tests, the
      paper's formula); the best group(s) are picked, ties merged. Problems where no sample
      passes any test fall back to ``random``, as in CodeT;
    - AUC of the verifier score for predicting ``passed`` (pooled, and averaged within
      problems), and the number of problems whose top-ranked sample passes.
    """
    by_task: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_task[row["task_id"]].append(row)
    weights = {task.task_id: task.weights for task in tasks}
    picks = {
        "random": [float(np.mean([r["passed"] for r in rs])) for rs in by_task.values()],
        "verifier": [verifier_pick(rs) for rs in by_task.values()],
        "verifier_weighted": [verifier_pick(rs, weights[t]) for t, rs in by_task.items()],
        "dual_agreement": [dual_agreement_pick(rs, weights[t], False)
                           for t, rs in by_task.items()],
        "dual_agreement_linear": [dual_agreement_pick(rs, weights[t], True)
                                  for t, rs in by_task.items()],
    }
    scored = [r for r in rows if not math.isnan(r["score"])]
    return {
        "problems": len(by_task),
        "samples": len(rows),
        "samples_scored": len(scored),
        "problems_without_tests": sum(not task.tests for task in tasks),
        "tests_per_problem_mean": float(np.mean([len(task.tests) for task in tasks])),
        "pass_at_1": {name: float(np.mean(values)) for name, values in picks.items()},
        "problems_top_pick_passes_expected": {name: float(np.sum(values))
                                              for name, values in picks.items()},
        "problems_top_pick_always_passes": {name: int(sum(v == 1.0 for v in values))
                                            for name, values in picks.items()},
        "problems_any_sample_passes": sum(any(r["passed"] for r in rs)
                                          for rs in by_task.values()),
        "auc_pooled": float(roc_auc_score([r["passed"] for r in scored],
                                          [r["score"] for r in scored])),
        "auc_within_problem_mean": within_problem_auc(by_task),
        "mean_score": {"passed": float(np.mean([r["score"] for r in scored if r["passed"]])),
                       "failed": float(np.mean([r["score"] for r in scored
                                                if not r["passed"]]))},
        "run_status": dict(Counter(r["status"] for r in rows)),
        "limits": {k: getattr(LIMITS, k) for k in LIMITS.__dataclass_fields__},
        "tests_per_generated_sample": TESTS_PER_SAMPLE,
        "run_seconds": seconds,
    }


# --------------------------------------------------------------------------- output


def plot(rows: list[dict], path: Path) -> None:
    """Histogram of verifier scores, passing vs failing samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [r for r in rows if not math.isnan(r["score"])]
    figure, axis = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0, 1, 21)
    for label, passed in (("passes official tests", True), ("fails official tests", False)):
        values = [r["score"] for r in scored if r["passed"] == passed]
        axis.hist(values, bins=bins, alpha=0.6, density=True, label=f"{label} (n={len(values):,})")
    axis.set_xlabel("fraction of generated tests passed")
    axis.set_ylabel("density")
    axis.set_title("CodeT generated tests on HumanEval (CodeGen-16B samples)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_scores(rows: list[dict], path: Path) -> None:
    """Per-sample scores (data derived: keep out of git)."""
    with gzip.open(path, "wt", encoding="utf-8") as file:
        for row in rows:
            file.write(json.dumps(row) + "\n")


def show(summary: dict, console: Console) -> None:
    """A rich table of the headline numbers."""
    table = Table(title="CodeT generated tests as a verifier (HumanEval, CodeGen-16B)",
                  title_justify="left")
    for header in ("ranking", "pass@1", "top pick passes (expected / always)"):
        table.add_column(header, justify="right" if header != "ranking" else "left")
    for name, value in summary["pass_at_1"].items():
        table.add_row(name, f"{value:.3f}",
                      f"{summary['problems_top_pick_passes_expected'][name]:.1f} / "
                      f"{summary['problems_top_pick_always_passes'][name]}")
    console.print(table)
    console.print(f"AUC pooled {summary['auc_pooled']:.3f}, within problem "
                  f"{summary['auc_within_problem_mean']:.3f}; oracle (any sample passes) "
                  f"{summary['problems_any_sample_passes']} of {summary['problems']} problems; "
                  f"{summary['run_seconds']:.0f} s")


def main() -> None:
    """Parse arguments, run (or re-read) the scores, write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--limit-problems", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--from-scores", action="store_true",
                        help="re-read OUT/scores.jsonl.gz instead of running the candidates")
    parser.add_argument("--check-official", action="store_true",
                        help="also run every distinct completion against the official tests "
                             "and report the agreement with the logged passed")
    args = parser.parse_args()
    console = Console(stderr=True)
    args.out.mkdir(parents=True, exist_ok=True)
    tasks = load_tasks(args.data, args.limit_problems)
    start = time.monotonic()
    if args.from_scores:  # keeps the scoring time of the run that wrote the scores
        rows = read_jsonl(args.out / "scores.jsonl.gz")
        rows = [r for r in rows if r["task_id"] in {t.task_id for t in tasks}]
        seconds = json.loads((args.out / "report.json").read_text())["run_seconds"]
    else:
        console.print(f"sandbox: {describe_sandbox()}")
        results = score_all(tasks, args.workers, console)
        rows = per_sample_rows(tasks, results)
        write_scores(rows, args.out / "scores.jsonl.gz")
        seconds = time.monotonic() - start
        console.print(f"{len(results):,} distinct completions run in {seconds:.0f} s")
    summary = report(tasks, rows, seconds)
    if args.check_official:
        start = time.monotonic()
        summary["official_agreement"] = official_agreement(
            tasks, check_official(tasks, args.workers, console))
        summary["official_agreement"]["run_seconds"] = time.monotonic() - start
        agreement = summary["official_agreement"]
        console.print(f"official tests agree with the logged passed on {agreement['agree']:,} "
                      f"of {agreement['samples']:,} samples")
    (args.out / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(rows, args.out / "scores.png")
    show(summary, console)
    console.print(f"wrote {args.out}/report.json, scores.png, scores.jsonl.gz")


if __name__ == "__main__":
    main()
