"""Latency of the budget oracle: load time, per-decision latency, batch rate, training rate.

:func:`main` lists the measurements: the time to import and load a bundle (target: under
1 s, no torch), the per-decision latency of a session against the reference
``adaptiveconsistency`` package (target: our p50 no slower), the compiled kernel against
the numpy forward pass, ``LearnedPolicy.act``'s batch rate, and MaskablePPO's training
steps per second. The README's "Performance" section keeps the results.

Usage: ``python benchmarks/oracle_latency.py [BUNDLE]``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from allocator.logs.schema import KIND_SAMPLE
from allocator.logs.synthetic import SyntheticConfig, generate
from allocator.logs.table import AttemptLog

REPO = Path(__file__).resolve().parents[1]
LAMBDA_RANGE = (0.0, 0.2)
LAMBDA = 0.002
TRAIN_STEPS = 30_720
BATCH = 10_000
LOAD_RUNS = 3
REPLAY_QUERIES = 400
ACT_CALLS = 5_000
#: Identical replays of the sessions; each decision's time is its best (the reference's
#: too), which takes scheduler noise out of both sides alike.
PASSES = 3

LOAD_CODE = """
import json, sys, time
start = time.perf_counter()
import allocator
oracle = allocator.load(sys.argv[1])
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "torch": "torch" in sys.modules,
                  "sb3": "stable_baselines3" in sys.modules}))
"""


# ------------------------------------------------------------------ 1. train and export
def train_bundle(log: AttemptLog, folder: Path) -> tuple[Path, float, int]:
    """Train a small MaskablePPO, export it; (bundle, env-steps per second, steps)."""
    import torch
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.callbacks import BaseCallback

    from allocator.envs import BatchedReplayVecEnv
    from allocator.training.rl.export import export_bundle

    class FirstStep(BaseCallback):
        """Records the time and step count at the first env step."""

        def __init__(self) -> None:
            super().__init__()
            self.start: tuple[float, int] | None = None

        def _on_step(self) -> bool:
            if self.start is None:
                self.start = (time.perf_counter(), self.num_timesteps)
            return True

    torch.set_num_threads(1)
    venv = BatchedReplayVecEnv(log, n_envs=16, lambda_range=LAMBDA_RANGE)
    venv.seed(0)
    model = MaskablePPO("MlpPolicy", venv, n_steps=64, batch_size=256, n_epochs=4,
                        learning_rate=3e-3, gamma=1.0, seed=0, verbose=0)
    callback = FirstStep()
    model.learn(total_timesteps=TRAIN_STEPS, callback=callback)
    end = time.perf_counter()
    assert callback.start is not None
    start, first = callback.start
    rate = (model.num_timesteps - first) / (end - start)
    bundle = export_bundle(model, folder / "bundle", arms=venv.pools.arms,
                           lambda_range=LAMBDA_RANGE, cost_unit=venv.settings.cost_unit,
                           log_fingerprint=log.fingerprint(), run_id="oracle-latency")
    return bundle, rate, int(model.num_timesteps)


# ------------------------------------------------------------------ 2. load time
def load_in_subprocess(bundle: Path) -> dict[str, float | bool]:
    """Wall time of ``import allocator; allocator.load`` in a fresh interpreter."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", LOAD_CODE, str(bundle)], cwd=REPO,
                            capture_output=True, text=True, timeout=120, check=False)
    total = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"loading the bundle failed:\n{result.stderr}")
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    measured["process"] = total
    return measured


# ------------------------------------------------------------------ 3. per decision
def replay_sessions(oracle, log: AttemptLog,
                    rng: np.random.Generator) -> tuple[np.ndarray, list[list], list]:
    """Drive one session per query with its logged answers, timing each decision.

    Returns per-decision seconds (``next_action`` plus the ``observe`` that reports the
    attempt it asked for; ``next_action`` alone for ``stop``), the answer prefix each
    decision saw, and ``(state, mask)`` pairs for the raw policy.
    """
    from allocator.session import AttemptResult

    clock = time.perf_counter
    answers = log.answers
    seconds, prefixes, states = [], [], []
    for query in range(min(REPLAY_QUERIES, log.n_queries)):
        rows = np.arange(log.offsets[query], log.offsets[query + 1])
        rows = rows[log.kind[rows] == KIND_SAMPLE]
        queues = {arm: list(rng.permutation(rows[log.arm[rows] == code]))
                  for code, arm in enumerate(log.arms)}
        session = oracle.session(lambda_=LAMBDA, prior=np.full(len(log.arms), 0.5),
                                 max_samples_per_arm={a: len(q) for a, q in queues.items()})
        prefix: list = []
        while True:
            states.append((session.state.to_batch(), session.allowed_actions()[None, :]))
            prefixes.append(list(prefix))
            start = clock()
            action = session.next_action()
            if action.kind == "stop":
                seconds.append(clock() - start)
                break
            row = queues[action.arm].pop()
            code = int(log.answer[row])
            answer = None if code < 0 else answers[code]
            session.observe(AttemptResult("sample", action.arm, answer, float(log.cost[row])))
            seconds.append(clock() - start)
            if answer is not None:
                prefix.append(answer)
    return np.array(seconds), prefixes, states


def reference_seconds(prefixes: list[list], passes: int = 3) -> np.ndarray:
    """Per-call seconds of the reference ``should_stop`` on each prefix (best of passes)."""
    from adaptive_consistency import AC, BetaStoppingCriteria

    reference = AC(max_gens=40, stop_criteria=BetaStoppingCriteria(0.95))
    clock = time.perf_counter
    times = np.full((passes, len(prefixes)), np.inf)
    for p in range(passes):
        for i, prefix in enumerate(prefixes):
            start = clock()
            reference.should_stop(prefix)
            times[p, i] = clock() - start
    return times.min(axis=0)


def act_seconds(policy, states: list) -> np.ndarray:
    """Per-call seconds of ``LearnedPolicy.act`` on a batch of one."""
    clock = time.perf_counter
    times = []
    for state, mask in states[:ACT_CALLS]:
        start = clock()
        policy.act(state, mask)
        times.append(clock() - start)
    return np.array(times)


# ------------------------------------------------------------------ 4. batch rate
def batch_rate(policy, log: AttemptLog, seconds: float = 1.0) -> float:
    """Decisions per second of ``LearnedPolicy.act`` on BATCH replay-env states."""
    from allocator.envs import BatchedReplayVecEnv

    env = BatchedReplayVecEnv(log, n_envs=BATCH, lambda_range=LAMBDA_RANGE)
    env.seed(1)
    env.reset()
    rng = np.random.default_rng(2)
    for _ in range(3):  # a few random steps, so the states hold answers
        mask = env.action_masks()
        keys = rng.random(mask.shape) + mask
        keys[:, 0] = 0.0
        env.step(keys.argmax(axis=1))
    state, mask = env.state(), env.action_masks()
    policy.act(state, mask)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        policy.act(state, mask)
        calls += 1
    return BATCH * calls / (time.perf_counter() - start)


def best_of_passes(oracle, log: AttemptLog) -> tuple[np.ndarray, list[list], list]:
    """:func:`replay_sessions` after a warm-up: each decision's best of PASSES identical
    replays (as for the reference), with the first pass's prefixes and states."""
    replay_sessions(oracle, log.select_queries(np.arange(20)), np.random.default_rng(1))
    passes = [replay_sessions(oracle, log, np.random.default_rng(0)) for _ in range(PASSES)]
    _, prefixes, states = passes[0]
    return np.min([seconds for seconds, _, _ in passes], axis=0), prefixes, states


def with_numpy_network(allocator, bundle: Path, folder: Path):
    """The same bundle loaded (from a copy) with the numpy forward pass: the baseline of
    the compiled kernel, measured in the same run."""
    import shutil

    from allocator import learned

    copy = shutil.copytree(bundle, folder / "numpy-bundle")
    oracle = allocator.load(copy)
    object.__setattr__(oracle.policy, "network", learned.MLPPolicyNetwork.from_bundle(
        oracle.bundle, compiled=False))
    assert oracle.policy.network.backend == "numpy"
    return oracle


# ------------------------------------------------------------------ table
def quantiles_us(values: np.ndarray) -> tuple[float, float]:
    p50, p99 = np.percentile(values, [50, 99])
    return p50 * 1e6, p99 * 1e6


def main() -> None:
    """Measure the oracle and print the table.

    1. A small MaskablePPO is trained (about 30k steps, one torch thread) on
       ``allocator.envs.BatchedReplayVecEnv`` over a synthetic log and exported as a bundle in a
       temporary directory; or the bundle given as ``argv[1]`` is used (then the training
       row is skipped).
    2. In fresh subprocesses (``sys.executable -c ...``): the wall time of
       ``import allocator; allocator.load(bundle)``, and whether ``torch`` or
       ``stable_baselines3`` were imported by it (target: under 1 s, no torch).
    3. Per-decision latency (p50, p99; each decision's best of three identical replays, as
       for the reference) of a loaded oracle's ``session.next_action()`` plus
       ``observe()``, replaying synthetic queries' logged answers (each query's attempts in a
       random order, drawn as the policy asks), against the reference package's
       ``AC(stop_criteria=BetaStoppingCriteria(0.95)).should_stop`` on the same answer
       prefixes (the non-empty ones: it refuses an empty list), measured in this run; and the
       raw ``LearnedPolicy.act`` on a batch of one (target: our p50 no slower). The same
       sessions again with the numpy forward pass instead of the compiled kernel (the
       fallback where the package was built without a C compiler): what the kernel saves.
    4. Decisions per second of ``LearnedPolicy.act`` on 10,000 states of the replay env.
    5. Training env-steps per second (``MaskablePPO.learn``, from its first env step).
    """
    started = time.perf_counter()
    log = generate(SyntheticConfig(n_queries=REPLAY_QUERIES), seed=0)
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="oracle-latency-") as folder:
        if len(sys.argv) > 1:
            bundle, train_rate, steps = Path(sys.argv[1]), None, 0
        else:
            bundle, train_rate, steps = train_bundle(log, Path(folder))

        loads = [load_in_subprocess(bundle) for _ in range(LOAD_RUNS)]
        load_s = float(np.median([m["seconds"] for m in loads]))
        process_s = float(np.median([m["process"] for m in loads]))
        heavy = sorted({name for m in loads for name, key in (("torch", "torch"),
                                                              ("stable_baselines3", "sb3"))
                        if m[key]})

        import allocator

        oracle = allocator.load(bundle)
        backend = oracle.policy.network.backend
        ours, prefixes, states = best_of_passes(oracle, log)
        numpy_oracle = with_numpy_network(allocator, bundle, Path(folder))
        numpy_ours, _, _ = best_of_passes(numpy_oracle, log)
        assert len(numpy_ours) == len(ours)  # the same decisions, so the same sessions
        nonempty = np.array([len(p) > 0 for p in prefixes])
        ref = reference_seconds([p for p in prefixes if p])
        raw = act_seconds(oracle.policy, states)
        rate = batch_rate(oracle.policy, log)

    ours_p50, ours_p99 = quantiles_us(ours[nonempty])
    numpy_p50, numpy_p99 = quantiles_us(numpy_ours[nonempty])
    all_p50, all_p99 = quantiles_us(ours)
    ref_p50, ref_p99 = quantiles_us(ref)
    raw_p50, raw_p99 = quantiles_us(raw)
    load_ok = load_s < 1.0 and not heavy
    rows += [
        ("import allocator; allocator.load (in-process)", f"{load_s * 1e3:.0f} ms",
         "< 1 s " + ("ok" if load_s < 1.0 else "MISSED")),
        ("  fresh interpreter, whole process", f"{process_s * 1e3:.0f} ms", ""),
        ("  heavy modules imported", ", ".join(heavy) or "none",
         "no torch/sb3 " + ("ok" if not heavy else "MISSED")),
        ("oracle next_action+observe p50 / p99", f"{ours_p50:.1f} / {ours_p99:.1f} us",
         f"{nonempty.sum():,} decisions, answers seen; {backend} backend"),
        ("  all decisions (incl. first) p50 / p99", f"{all_p50:.1f} / {all_p99:.1f} us",
         f"{len(ours):,} decisions, {REPLAY_QUERIES} queries"),
        ("reference should_stop p50 / p99", f"{ref_p50:.1f} / {ref_p99:.1f} us",
         "same prefixes"),
        ("  ratio reference p50 / ours p50", f"{ref_p50 / ours_p50:.2f}x",
         ">= 1x " + ("ok" if ours_p50 <= ref_p50 else "MISSED")),
        ("  ratio reference p99 / ours p99", f"{ref_p99 / ours_p99:.2f}x", ""),
        ("oracle, numpy backend, p50 / p99", f"{numpy_p50:.1f} / {numpy_p99:.1f} us",
         "same decisions, no compiled kernel"),
        ("  ratio numpy p50 / ours p50", f"{numpy_p50 / ours_p50:.2f}x",
         "what the kernel saves"),
        ("LearnedPolicy.act, B = 1, p50 / p99", f"{raw_p50:.1f} / {raw_p99:.1f} us",
         f"{len(raw):,} session states"),
        (f"LearnedPolicy.act, B = {BATCH:,}", f"{rate:,.0f} /s", "decisions per second"),
        ("MaskablePPO.learn env-steps per second",
         "-" if train_rate is None else f"{train_rate:,.0f} /s",
         "bundle given" if train_rate is None else f"{steps:,} steps, 16 envs, 1 thread"),
    ]
    width = max(len(r[0]) for r in rows) + 2
    print(f"bundle: {'argv[1] ' + str(bundle) if len(sys.argv) > 1 else 'trained here'}; "
          f"log: synthetic, {log.n_queries} queries, arms {list(log.arms)}; "
          f"lambda {LAMBDA}")
    print(f"{'measure':<{width}}{'value':>22}   note")
    print("-" * (width + 60))
    for name, value, note in rows:
        print(f"{name:<{width}}{value:>22}   {note}")
    print(f"load target {'met' if load_ok else 'MISSED'}; p50 target "
          f"{'met' if ours_p50 <= ref_p50 else 'MISSED'}; "
          f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
