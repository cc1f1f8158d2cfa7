"""``allocator demo``: the main job end to end on built-in simulated logs.

Steps: generate a simulated log (labelled as such), write it in the log format, print
its per-arm statistics, then replay fixed-N self-consistency for every arm and several N
in the batched replay environment and report accuracy against cost (table, JSON, PNG).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from allocator.logs import AttemptLog, summarize, write_log
from allocator.logs.synthetic import SIMULATED_SOURCE, SyntheticConfig, generate

__all__ = ["FixedNResult", "replay_fixed_n", "run_demo"]

#: Sample counts replayed per arm.
DEMO_NS = (1, 2, 4, 8)


@dataclass(frozen=True)
class FixedNResult:
    """Replay of "sample N times from one arm, then majority vote".

    Attributes:
        arm: the arm sampled.
        n: samples per query asked for.
        accuracy: mean correctness of the final answer.
        accuracy_se: its standard error over episodes.
        mean_cost: mean cost per query, in the log's cost units.
        episodes: episodes replayed.
        exhaustion_rate: share of episodes whose pool ran out before N samples.
    """

    arm: str
    n: int
    accuracy: float
    accuracy_se: float
    mean_cost: float
    episodes: int
    exhaustion_rate: float


def replay_fixed_n(
    log: AttemptLog, arm: int, n: int, *, episodes: int, seed: int, n_envs: int = 256
) -> FixedNResult:
    """Replay fixed-N sampling from one arm in the batched environment.

    Args:
        log: the log to replay.
        arm: index of the arm to sample.
        n: samples per query before STOP.
        episodes: episodes to collect.
        seed: seed of the environment.
        n_envs: sub-environments stepped together.

    Returns:
        The replayed accuracy and cost.
    """
    from envs import BatchedReplayVecEnv

    venv = BatchedReplayVecEnv(log, n_envs=n_envs, lambda_=0.0)
    venv.seed(seed)
    venv.reset()
    correct, cost, exhausted = [], [], []
    while len(correct) < episodes:
        drawn = venv.state().samples[:, arm]
        can_sample = venv.action_masks()[:, 1 + arm]
        actions = np.where((drawn < n) & can_sample, 1 + arm, 0)
        _, _, dones, infos = venv.step(actions)
        for index in np.flatnonzero(dones):
            info = infos[index]
            correct.append(info["correct"])
            cost.append(info["cost"])
            exhausted.append(info["n_samples"] < n)
    correct_array = np.asarray(correct[:episodes], dtype=float)
    return FixedNResult(
        arm=log.arms[arm],
        n=n,
        accuracy=float(correct_array.mean()),
        accuracy_se=float(correct_array.std(ddof=1) / np.sqrt(episodes)),
        mean_cost=float(np.mean(cost[:episodes])),
        episodes=episodes,
        exhaustion_rate=float(np.mean(exhausted[:episodes])),
    )


def _plot(results: list[FixedNResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4), dpi=120)
    for arm in sorted({r.arm for r in results}):
        rows = [r for r in results if r.arm == arm]
        axis.errorbar([r.mean_cost for r in rows], [r.accuracy for r in rows],
                      yerr=[1.96 * r.accuracy_se for r in rows], marker="o", capsize=3,
                      label=f"{arm}: N = {', '.join(str(r.n) for r in rows)}")
    axis.set_xscale("log")
    axis.set_xlabel("mean cost per query (log units)")
    axis.set_ylabel("accuracy of the majority answer")
    axis.set_title("Fixed-N self-consistency, replayed (SIMULATED log)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def run_demo(output: Path, *, seed: int = 0) -> dict:
    """Run the demo and write ``synthetic.parquet``, ``report.json`` and ``fixed_n.png``.

    Args:
        output: folder for the files (created if needed).
        seed: seed of the simulated log and of the replay.

    Returns:
        The report written to ``report.json``.
    """
    from rich.progress import track
    from rich.table import Table

    from allocator.console import stderr_console, summary_table

    console = stderr_console()
    output.mkdir(parents=True, exist_ok=True)
    log = generate(SyntheticConfig(), seed=seed)
    write_log(log, output / "synthetic.parquet")
    console.print(f"[bold]1. Simulated log[/] ({SIMULATED_SOURCE}): {log!r}")
    console.print(summary_table(summarize(log), title="per-arm statistics"))
    jobs = [(arm, n) for arm in range(len(log.arms)) for n in DEMO_NS]
    results = [
        replay_fixed_n(log, arm, n, episodes=20 * log.n_queries, seed=seed)
        for arm, n in track(jobs, description="2. Replaying fixed-N", console=console)
    ]
    table = Table(title="Fixed-N self-consistency, replayed", title_justify="left")
    for header in ("arm", "N", "accuracy", "95% CI", "mean cost", "pool exhausted"):
        table.add_column(header, justify="left" if header == "arm" else "right")
    for r in results:
        table.add_row(r.arm, str(r.n), f"{r.accuracy:.3f}", f"±{1.96 * r.accuracy_se:.3f}",
                      f"{r.mean_cost:.2f}", f"{r.exhaustion_rate:.1%}")
    console.print(table)
    report = {
        "simulated": True,
        "source": SIMULATED_SOURCE,
        "seed": seed,
        "log": {"queries": log.n_queries, "attempts": log.n_attempts, "arms": list(log.arms),
                "fingerprint": log.fingerprint()},
        "summary": {arm: row.to_dict() for arm, row in summarize(log).items()},
        "fixed_n": [r.__dict__ for r in results],
    }
    (output / "report.json").write_text(json.dumps(report, indent=2))
    _plot(results, output / "fixed_n.png")
    console.print(f"wrote {output / 'report.json'} and {output / 'fixed_n.png'}")
    return report
