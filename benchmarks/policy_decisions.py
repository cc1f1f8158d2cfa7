"""Decisions per second of the batched baselines, and Adaptive-Consistency vs its authors'.

:func:`main` says which states are timed (prefixes of real answer sequences of the date
log, or synthetic ones) and how the reference package is compared, after checking the
decisions agree. The README's "Performance" section keeps the results.

Usage: ``python benchmarks/policy_decisions.py [--seconds 1.0]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from allocator.actions import STOP
from allocator.featurizer import StateBatch, VoteStats
from allocator.policies import AdaptiveConsistency, DifficultyBinned, Policy, make_policy

SHARED_LOG = (Path(__file__).resolve().parents[2] / "shared" / "data" / "public-logs"
              / "mot_cascade" / "samples.csv.gz")
BATCH = 10_000


def date_sequences() -> list[np.ndarray] | None:
    """Answer codes of each query of date / gpt-3.5-turbo / cot1_40, if the log is here."""
    if not SHARED_LOG.is_file():
        return None
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pv

    table = pv.read_csv(
        SHARED_LOG, parse_options=pv.ParseOptions(newlines_in_values=True),
        convert_options=pv.ConvertOptions(
            column_types={"answer": pa.string()},
            include_columns=["task", "model", "config", "query_id", "sample_idx", "answer"]))
    keep = pc.and_(pc.and_(pc.equal(table["task"], "date"),
                           pc.equal(table["model"], "gpt-3.5-turbo")),
                   pc.equal(table["config"], "cot1_40"))
    sub = table.filter(keep).sort_by([("query_id", "ascending"), ("sample_idx", "ascending")])
    queries = sub["query_id"].to_numpy()
    codes = np.unique(np.array(sub["answer"].to_pylist(), dtype=object),
                      return_inverse=True)[1]
    starts = np.flatnonzero(np.r_[True, queries[1:] != queries[:-1]])
    return [np.unique(c, return_inverse=True)[1] for c in np.split(codes, starts[1:])]


def synthetic_sequences(rng: np.random.Generator, n: int = 400) -> list[np.ndarray]:
    """40 answers per query: answer 0 with a per-query rate, else one of 1..5."""
    rate = rng.beta(2, 1.2, n)
    return [np.where(rng.random(40) < r, 0, rng.integers(1, 6, 40)) for r in rate]


def build_states(sequences: list[np.ndarray], rng: np.random.Generator,
                 batch: int) -> tuple[dict[str, np.ndarray], list[list[int]]]:
    """StateBatch fields of ``batch`` random prefixes, and each prefix's answer list."""
    width = max(int(s.max()) + 1 for s in sequences)
    votes = np.zeros((batch, width))
    drawn, streak, prefixes = np.zeros(batch), np.zeros(batch), []
    for row in range(batch):
        seq = sequences[rng.integers(len(sequences))][rng.permutation(40)]
        k = int(rng.integers(1, 41))
        prefix = seq[:k]
        np.add.at(votes[row], prefix, 1.0)
        last = np.flatnonzero(prefix != prefix[-1])
        drawn[row], streak[row] = k, k - (last[-1] + 1 if last.size else 0)
        prefixes.append(prefix.tolist())
    fields = dict(samples=drawn[:, None], votes=votes, no_answer=np.zeros(batch),
                  refines=np.zeros(batch), verified=np.zeros(batch),
                  best_score=np.full(batch, np.nan), cost=drawn, lam=np.zeros(batch),
                  prior=rng.beta(2, 2, (batch, 1)), streak=streak)
    return fields, prefixes


def per_call(function: Callable[[], object], seconds: float) -> float:
    """Seconds per call of ``function`` (best of a few timed rounds)."""
    function()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds / 4:
        function()
        calls += 1
    rounds = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(max(calls, 1)):
            function()
        rounds.append((time.perf_counter() - start) / max(calls, 1))
    return min(rounds)


def policies() -> list[Policy]:
    rng = np.random.default_rng(1)
    prior = rng.beta(2, 2, 300)
    curves = np.clip(prior[:, None] + np.arange(1, 41)[None, :] * 0.01, 0, 1)
    # blend-asc and bayes-stop at their defaults (synthetic calibration, uniform prior):
    # a fitted one decides with the same lookups, only its tables' values differ.
    return [make_policy(name) for name in ("fixed-n", "adaptive-consistency", "esc",
                                           "confidence-threshold", "blend-asc",
                                           "bayes-stop")] + [
        DifficultyBinned.fit(prior, curves, 8.0)]


def batched_table(fields: dict[str, np.ndarray], seconds: float) -> None:
    mask = np.ones((BATCH, 4), dtype=bool)
    stats = VoteStats.from_votes(fields["votes"])
    print(f"\nbatched decisions, B = {BATCH:,}")
    print(f"{'policy':<26}{'stats computed':>18}{'stats given':>18}")
    for policy in policies():
        rates = []
        for given in (None, stats):
            seconds_per = per_call(
                lambda p=policy, g=given: p.act(StateBatch(**fields, stats=g), mask), seconds)
            rates.append(BATCH / seconds_per)
        print(f"{policy.name:<26}{rates[0]:>14,.0f} /s{rates[1]:>14,.0f} /s")


def multi_arm_fields(rng: np.random.Generator, batch: int, n_arms: int = 3
                     ) -> dict[str, np.ndarray]:
    """StateBatch fields of ``batch`` simulated multi-arm states with verifier scores.

    Each row: 0..24 draws on random arms (answers 0..4, answer 0 likelier), every draw
    scored and about half of them verified, and the per-arm leading counts.
    """
    samples = np.zeros((batch, n_arms))
    votes = np.zeros((batch, 5))
    arm_leader = np.zeros((batch, n_arms))
    verified = np.zeros(batch)
    best = np.full(batch, np.nan)
    for row in range(batch):
        k = int(rng.integers(0, 25))
        arms = rng.integers(0, n_arms, k)
        answers = np.where(rng.random(k) < 0.5, 0, rng.integers(1, 5, k))
        np.add.at(samples[row], arms, 1.0)
        np.add.at(votes[row], answers, 1.0)
        per_arm = np.zeros((n_arms, 5))
        np.add.at(per_arm, (arms, answers), 1.0)
        arm_leader[row] = per_arm.max(axis=1)
        seen = int(rng.integers(0, k + 1))
        verified[row] = seen
        if seen:
            best[row] = float(rng.random(seen).max())
    return dict(samples=samples, votes=votes, no_answer=np.zeros(batch),
                refines=np.zeros(batch), verified=verified, best_score=best,
                cost=samples.sum(axis=1), lam=np.zeros(batch),
                prior=rng.random((batch, n_arms)), streak=np.ones(batch),
                arm_leader=arm_leader)


def multi_arm_policies(n_arms: int) -> list[Policy]:
    """The verifier and multi-arm baselines at typical settings."""
    return [make_policy("until-verified", n=8, tau=0.8), make_policy("best-of-n", n=8),
            make_policy("weighted-vote", n=8),
            make_policy("round-robin", max_samples=20),
            make_policy("round-robin", max_samples=20, threshold=None, tau=0.8),
            make_policy("cascade", tau=0.7, k=3),
            make_policy("router", threshold=0.95, prices=tuple(range(1, n_arms + 1)))]


def multi_arm_table(rng: np.random.Generator, seconds: float, n_arms: int = 3) -> None:
    fields = multi_arm_fields(rng, BATCH, n_arms)
    mask = np.ones((BATCH, n_arms + 3), dtype=bool)
    stats = VoteStats.from_votes(fields["votes"])
    print(f"\nbatched decisions, B = {BATCH:,}, {n_arms} arms, verifier scores "
          "(simulated states)")
    print(f"{'policy':<40}{'stats computed':>18}{'stats given':>18}")
    for policy in multi_arm_policies(n_arms):
        rates = []
        for given in (None, stats):
            seconds_per = per_call(
                lambda p=policy, g=given: p.act(StateBatch(**fields, stats=g), mask), seconds)
            rates.append(BATCH / seconds_per)
        label = policy.name + (" (tau)" if getattr(policy, "tau", None) is not None
                               and policy.name == "round-robin" else "")
        print(f"{label:<40}{rates[0]:>14,.0f} /s{rates[1]:>14,.0f} /s")


def versus_reference(fields: dict[str, np.ndarray], prefixes: list[list[int]],
                     seconds: float) -> None:
    from adaptive_consistency import AC, BetaStoppingCriteria

    reference = AC(max_gens=40, stop_criteria=BetaStoppingCriteria(0.95))
    ours = AdaptiveConsistency(threshold=0.95, max_samples=41)  # no cap: the rule alone
    mask = np.ones((BATCH, 4), dtype=bool)
    decided = ours.act(StateBatch(**fields), mask) == STOP
    expected = np.array([reference.should_stop(p) for p in prefixes])
    print(f"\nadaptive-consistency vs adaptiveconsistency.BetaStoppingCriteria(0.95): "
          f"{int((decided != expected).sum())} of {BATCH:,} decisions differ")

    def reference_all() -> None:
        for prefix in prefixes:
            reference.should_stop(prefix)

    ref_batch = per_call(reference_all, seconds) / BATCH
    our_batch = per_call(lambda: ours.act(StateBatch(**fields), mask), seconds) / BATCH
    one = {name: value[:1] for name, value in fields.items()}
    our_one = per_call(lambda: ours.act(StateBatch(**one), mask[:1]), seconds)
    ref_one = per_call(lambda: reference.should_stop(prefixes[0]), seconds)
    print(f"{'':<28}{'reference':>14}{'ours':>14}{'ratio':>10}")
    print(f"{'batched, us per decision':<28}{ref_batch * 1e6:>14.3f}{our_batch * 1e6:>14.3f}"
          f"{ref_batch / our_batch:>9.0f}x")
    print(f"{'B = 1, us per decision':<28}{ref_one * 1e6:>14.3f}{our_one * 1e6:>14.3f}"
          f"{ref_one / our_one:>9.1f}x")
    print(f"decisions per second: reference {1 / ref_batch:,.0f}, ours batched "
          f"{1 / our_batch:,.0f} ({ref_batch / our_batch:.0f}x; target >= 20x)")


def main() -> None:
    """Time the batched baselines and Adaptive-Consistency against the reference package.

    States: ``B`` = 10,000 prefixes of real answer sequences (a random query of date /
    gpt-3.5-turbo / cot1_40 from ``../shared``, a random order, a random length 1..40), or
    of synthetic sequences where the log is absent. Every timed call gets a fresh
    ``StateBatch`` (``StateBatch.vote_stats()`` caches), either with the votes only (the
    policy computes the vote statistics) or with ``stats`` given (as the batched
    environment maintains them).

    Then the verifier and multi-arm baselines on simulated 3-arm states with verifier scores
    and per-arm leading counts.

    Then :class:`AdaptiveConsistency` against the reference package (``adaptiveconsistency``,
    ``AC(stop_criteria=BetaStoppingCriteria(0.95)).should_stop(answers)``) on the same states:
    the per-decision latency of each, batched and for a single state (B = 1), as ratios
    measured in this run, after checking the decisions agree.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    sequences = date_sequences()
    source = "date / gpt-3.5-turbo / cot1_40 (../shared)"
    if sequences is None:
        sequences, source = synthetic_sequences(rng), "synthetic (../shared not found)"
    fields, prefixes = build_states(sequences, rng, BATCH)
    print(f"states: {BATCH:,} random prefixes of {source}")
    batched_table(fields, args.seconds)
    multi_arm_table(rng, args.seconds)
    versus_reference(fields, prefixes, args.seconds)


if __name__ == "__main__":
    main()
