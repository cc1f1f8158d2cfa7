"""The safety net of ``allocator train``: export the learned policy only where it earns it.

A learned allocator is worth deploying only if it is never worse than what a user could run
without training. :func:`compare_on_validation` replays the learned policy and every
deployable baseline on the validation queries, and :func:`choose` applies the rule (its
docstring states it): the learned policy is exported unless a baseline beats it beyond the
noise of the validation split. The decision, its reason and the validation numbers go into
``report.json`` (``extra.safety_net``) and are printed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from allocator.errors import ParameterError
from allocator.logs.table import AttemptLog
from allocator.policies.base import Policy

__all__ = ["Candidate", "SafetyNetDecision", "choose", "compare_on_validation",
           "critical_z", "noise_margin", "shortfall", "significantly_below"]

#: Offset of the validation replays' order seed (distinct from training and test orders).
ORDER_SEED_OFFSET = 2
#: Costs within this relative tolerance count as equal.
COST_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Candidate:
    """One policy at one setting, replayed on the validation queries.

    Attributes:
        policy: ``"learned"`` or the baseline's registry name.
        setting: the policy's ``describe()`` (the learned one: its lambda).
        accuracy: mean correctness on the validation queries.
        mean_cost: mean cost per query (the log's units).
        stderr: standard error of the accuracy over validation queries.
        per_query: each validation query's correctness (mean over its orders), for
            paired comparisons; not part of the report.
    """

    policy: str
    setting: str
    accuracy: float
    mean_cost: float
    stderr: float = 0.0
    per_query: tuple[float, ...] | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, without the per-query results."""
        return {key: value for key, value in asdict(self).items() if key != "per_query"}


@dataclass(frozen=True)
class SafetyNetDecision:
    """What the safety net exported, and why.

    Attributes:
        exported: ``"learned"`` or ``"baseline"``.
        reason: one sentence with the numbers.
        target_accuracy: the envelope's top on the validation queries.
        margin: the noise margin on accuracies.
        learned_cost_to_reach: the learned front's cost to reach ``target - margin``
            (None: never).
        envelope_cost_to_reach: the envelope's.
        worst_gap: the largest shortfall of the learned front below the envelope (> 0:
            below), None where the curves share no cost.
        baseline: the chosen baseline point (exported or not).
        below: the envelope point the learned front is significantly below (None: none).
        validation_queries: how many queries decided.
        learned: the learned policy's validation points.
        envelope: the envelope's points.
        skipped: baselines left out, with the reason.
    """

    exported: str
    reason: str
    target_accuracy: float
    margin: float
    learned_cost_to_reach: float | None
    envelope_cost_to_reach: float | None
    worst_gap: float | None
    baseline: Candidate | None
    below: Candidate | None = None
    validation_queries: int = 0
    learned: list[Candidate] = field(default_factory=list)
    envelope: list[Candidate] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for ``report.json``'s ``extra.safety_net``)."""
        out = {key: getattr(self, key) for key in self.__dataclass_fields__}
        for key in ("baseline", "below"):
            out[key] = None if out[key] is None else out[key].to_dict()
        for key in ("learned", "envelope"):
            out[key] = [candidate.to_dict() for candidate in out[key]]
        out["skipped"] = dict(self.skipped)
        return out


# ------------------------------------------------------------------ the rule
def front(points: Sequence[Candidate]) -> list[Candidate]:
    """Non-dominated points by (lower cost, higher accuracy), cheapest first."""
    ordered = sorted((p for p in points if math.isfinite(p.accuracy)
                      and math.isfinite(p.mean_cost)), key=lambda p: (p.mean_cost, -p.accuracy))
    kept: list[Candidate] = []
    for point in ordered:
        if not kept or point.accuracy > kept[-1].accuracy:
            kept.append(point)
    return kept


def accuracy_at(points: Sequence[Candidate], cost: float) -> float | None:
    """The front's accuracy at ``cost`` (linear between front points); None outside it."""
    curve = front(points)
    if not curve or cost < curve[0].mean_cost or cost > curve[-1].mean_cost:
        return None
    return float(np.interp(cost, [p.mean_cost for p in curve], [p.accuracy for p in curve]))


def cost_to_reach(points: Sequence[Candidate], accuracy: float) -> float | None:
    """The front's least cost reaching ``accuracy`` (linear between front points)."""
    curve = front(points)
    for i, point in enumerate(curve):
        if point.accuracy >= accuracy:
            if i == 0:
                return point.mean_cost
            below = curve[i - 1]
            share = (accuracy - below.accuracy) / (point.accuracy - below.accuracy)
            return below.mean_cost + share * (point.mean_cost - below.mean_cost)
    return None


def _worst_gap(learned: Sequence[Candidate], envelope: Sequence[Candidate]) -> float | None:
    gaps = [reference - point.accuracy for point in front(learned)
            if (reference := accuracy_at(envelope, point.mean_cost)) is not None]
    return max(gaps) if gaps else None


def noise_margin(top: Candidate, learned: Sequence[Candidate]) -> float:
    """1.96 standard errors of the paired difference between the learned policy's most
    accurate point and ``top`` (per query); of ``top``'s accuracy where either lacks
    per-query results."""
    best = max(learned, key=lambda p: p.accuracy, default=None)
    if best is None or not _paired(best, top):
        return 1.96 * top.stderr
    difference = np.subtract(best.per_query, top.per_query)
    return float(1.96 * difference.std(ddof=1) / math.sqrt(len(difference)))


def _paired(a: Candidate, b: Candidate) -> bool:
    return (a.per_query is not None and b.per_query is not None
            and len(a.per_query) == len(b.per_query) and len(a.per_query) >= 2)


def _learned_at(curve: Sequence[Candidate], cost: float) -> Candidate | None:
    """The learned front at ``cost``, per query: the two front points around it mixed
    linearly (a mix of two policies is a policy with that mean cost); the cheapest point
    where ``cost`` is below the front; None above it (the reach test covers that)."""
    if not curve or cost > curve[-1].mean_cost * (1 + COST_TOLERANCE):
        return None
    if cost <= curve[0].mean_cost:
        return curve[0]
    cost = min(cost, curve[-1].mean_cost)
    upper = next(i for i, point in enumerate(curve) if point.mean_cost >= cost)
    low, high = curve[upper - 1], curve[upper]
    share = (cost - low.mean_cost) / (high.mean_cost - low.mean_cost)
    per_query = None
    if low.per_query is not None and high.per_query is not None:
        per_query = tuple(((1 - share) * np.asarray(low.per_query)
                           + share * np.asarray(high.per_query)).tolist())
    return Candidate("learned", f"mix of {low.setting} and {high.setting}",
                     (1 - share) * low.accuracy + share * high.accuracy, cost,
                     per_query=per_query)


def critical_z(tests: int) -> float:
    """The z a gap must exceed, in standard errors, for ``tests`` simultaneous one-sided
    tests to hold a family-wise error of 2.5% (Bonferroni; 1.96 for one test)."""
    return NormalDist().inv_cdf(1.0 - 0.025 / max(1, tests))


def shortfall(learned: Sequence[Candidate], point: Candidate, *, z: float = 1.96
              ) -> tuple[float, float] | None:
    """How far the learned front lies below ``point`` at its cost, and the noise on it.

    Args:
        learned: the learned policy's points.
        point: a baseline point.
        z: standard errors in the returned half-width.

    Returns:
        ``(gap, half_width)``: ``gap`` > 0 means the learned front is below the point;
        ``half_width`` is ``z`` standard errors of the paired per-query difference (of the
        point's own accuracy without per-query results). None where the learned front
        does not extend to the point's cost (cheaper learned points only).
    """
    at = _learned_at(front(learned), point.mean_cost)
    if at is None:
        return None
    gap = point.accuracy - at.accuracy
    if _paired(at, point):
        difference = np.subtract(point.per_query, at.per_query)
        return gap, float(z * difference.std(ddof=1) / math.sqrt(len(difference)))
    return gap, z * point.stderr


def significantly_below(learned: Sequence[Candidate], envelope: Sequence[Candidate]
                        ) -> tuple[Candidate, float, float] | None:
    """The envelope point the learned front is most clearly below beyond noise, with the
    noise corrected for testing every envelope point the front extends to
    (:func:`critical_z`).

    Returns:
        ``(point, gap, half_width)`` for the point with the largest ``gap - half_width``
        among those where ``gap > half_width``; None where there is no such point.
    """
    # each point's gap and one standard error, measured once; z follows from their number
    tested = [(point, *measured) for point in envelope
              if (measured := shortfall(learned, point, z=1.0)) is not None]
    z = critical_z(len(tested))
    found = [(point, gap, z * stderr) for point, gap, stderr in tested
             if gap > z * stderr + 1e-12]
    return max(found, key=lambda item: item[1] - item[2], default=None)


def choose(learned: Sequence[Candidate], baselines: Sequence[Candidate]
           ) -> SafetyNetDecision:
    """Apply the safety net's rule to validation points.

    The rule, on the validation queries. The learned policy is the default
    (it is what the user trained); a baseline replaces it only on evidence, beyond the noise
    of a validation split that is often a few dozen queries:

    - the **envelope** is the Pareto front of every baseline point; the **target** is its top
      (the best accuracy any baseline reaches; majority-of-all or better);
    - **noise**: ``margin`` is the 95% half-width (1.96 standard errors over queries) of the
      paired accuracy difference between the learned policy's most accurate point and the
      target point (both replayed on the same queries and orders, so the queries' difficulty
      cancels); without per-query results, of the target point's own accuracy;
    - the **baseline** bundle is exported when (1) the learned front never reaches
      ``target - margin``, or (2) it is **significantly below** an envelope point: at that
      point's cost, the learned front's accuracy (per query, interpolated between the two
      learned points around that cost; the cheapest learned point where the baseline point
      is cheaper than all of them) is below the point's by more than ``z`` standard errors of
      the paired per-query difference (without per-query results, ``z`` times the point's
      own standard error). The envelope has many points and each is a chance for noise to
      look like a gap, so ``z`` holds the family of tests at the 95% level of one
      (Bonferroni over the ``k`` points tested, one-sided at 2.5% as 1.96 is for one point:
      :func:`critical_z`, 1.96 for one point, 2.81 for ten, 3.14 for thirty). A baseline
      that reaches the target at less cost is such a point wherever the gap is beyond noise;
      a cost difference inside the noise is not evidence;
    - the exported baseline is the cheapest baseline setting reaching ``target - margin``
      (an actual setting, not an interpolation); otherwise the **learned** bundle is exported.

    Args:
        learned: the learned policy's points (one per lambda).
        baselines: every baseline point (each a setting of a registered baseline).

    Raises:
        ParameterError: no baseline point to compare with.
    """
    envelope = front(baselines)
    if not envelope:
        raise ParameterError("safety net", "baselines", "at least one baseline point on "
                             "the validation queries", len(baselines))
    top = envelope[-1]
    margin = noise_margin(top, learned)
    goal = top.accuracy - margin
    learned_cost = cost_to_reach(learned, goal)
    envelope_cost = cost_to_reach(envelope, goal)
    baseline = next(p for p in envelope if p.accuracy >= goal)
    below = significantly_below(learned, envelope)
    exported = "learned" if learned_cost is not None and below is None else "baseline"
    reason = _reason(exported, below, learned_cost, envelope_cost, goal, baseline)
    return SafetyNetDecision(
        exported=exported, reason=reason, target_accuracy=top.accuracy, margin=margin,
        learned_cost_to_reach=learned_cost, envelope_cost_to_reach=envelope_cost,
        worst_gap=_worst_gap(learned, envelope), baseline=baseline,
        below=None if below is None else below[0],
        learned=list(learned), envelope=envelope)


def _reason(exported: str, below: tuple[Candidate, float, float] | None,
            learned_cost: float | None, envelope_cost: float, goal: float,
            baseline: Candidate) -> str:
    reach = (f"reaches the validation target {goal:.4f} at cost {learned_cost:.4g}"
             if learned_cost is not None else f"never reaches the validation target {goal:.4f}")
    parts = [f"the learned policy {reach}, the best baseline ({baseline.setting}) at "
             f"{envelope_cost:.4g}"]
    if below is not None:
        point, gap, half_width = below
        parts.append(f"at cost {point.mean_cost:.4g} its front is {gap:.4f} below "
                     f"{point.setting} (noise {half_width:.4f})")
    else:
        parts.append("its front is nowhere below the baselines' envelope beyond noise")
    if exported == "learned":
        return "exported the learned policy: " + "; ".join(parts)
    why = ("it does not reach the target" if learned_cost is None
           else "it falls below the envelope beyond noise")
    return f"exported the baseline {baseline.setting} ({why}): " + "; ".join(parts)


# ------------------------------------------------------------------ the replays
def _candidate(results: Any, policy: str, setting: str) -> Candidate:
    per_query = results.correct.mean(axis=1)
    stderr = float(per_query.std(ddof=1) / math.sqrt(len(per_query))) if len(
        per_query) > 1 else 0.0
    return Candidate(policy=policy, setting=setting, accuracy=float(per_query.mean()),
                     mean_cost=float(results.cost.mean()), stderr=stderr,
                     per_query=tuple(per_query.tolist()))


def _baselines() -> list[str]:
    """Every registered deployable deterministic baseline (new ones join by registering)."""
    from allocator.policies import POLICIES, available_policies

    return [name for name in available_policies(deployable_only=True)
            if name != "learned" and not POLICIES[name].stochastic]


def _baseline_candidates(context: Any, evaluator: Any, progress: Callable[[str], None]
                         ) -> tuple[list[tuple[Candidate, Policy]], dict[str, str]]:
    from allocator.baseline_bundle import exportable
    from allocator.training.evaluation.baselines import build_sweeps

    found: list[tuple[Candidate, Policy]] = []
    sweeps, skipped = build_sweeps(_baselines(), context,
                                   progress=lambda name: progress(f"validation: {name}"))
    for name, settings in sweeps.items():
        for policy in settings:
            reason = exportable(policy)
            if reason is not None:
                skipped[name] = reason
                continue
            found.append((_candidate(evaluator.run(policy), name, policy.describe()), policy))
    return found, skipped


def compare_on_validation(
    log: AttemptLog, fit: np.ndarray, validation: np.ndarray, prior: np.ndarray,
    learned_bundle: str, lambdas: Sequence[float], *, n_orders: int, seed: int,
    verify_cost: float = 0.0,
    progress: Callable[[str], None] = lambda message: None,
) -> tuple[SafetyNetDecision, Policy]:
    """Replay the learned policy and every baseline on the validation queries; decide.

    After training, this replays the learned policy (along its lambda sweep) and every
    deployable baseline (every registered deterministic baseline, each at the settings its
    sweep builder :func:`allocator.training.evaluation.baselines.build_sweep` chooses on the
    *fitting*
    queries) on the *validation* queries: a deterministic share of the training queries that
    the policy was not trained on (:func:`allocator.training.rl.calibrate.validation_split`, shared
    with the calibration). The held-out test queries are never used.

    Args:
        log: the training log.
        fit: the queries the policy was trained on (the baselines' settings are chosen on
            them too).
        validation: the validation queries (from
        :func:`allocator.training.rl.calibrate.validation_split`).
        prior: the per-query prior the policy was trained with (out-of-fold).
        learned_bundle: the learned policy's bundle directory.
        lambdas: the prices the learned policy is replayed at.
        n_orders: seeded orders per validation query.
        seed: the run's seed.
        verify_cost: the verifier's cost per candidate (log units), as the policy was
            trained with: every replay, the baselines' settings included, pays it.
        progress: called with a short message per step.

    Returns:
        The decision, and the chosen baseline policy (to export when the decision says
        ``"baseline"``).
    """
    from allocator.envs.pools import ReplayPools
    from allocator.learned import LearnedPolicy
    from allocator.training.evaluation.baselines import BaselineContext
    from allocator.training.evaluation.replay import ReplayEvaluator

    pools = ReplayPools.from_log(log)
    context = BaselineContext(pools, np.asarray(fit), prior, n_orders=n_orders, seed=seed,
                              verify_cost=verify_cost)

    def replay(lam: float = 0.0) -> ReplayEvaluator:
        return ReplayEvaluator(pools, validation, n_orders=n_orders,
                               seed=seed + ORDER_SEED_OFFSET, lambda_=lam, prior=prior,
                               verify_cost=verify_cost)

    baselines, skipped = _baseline_candidates(context, replay(), progress)
    progress("validation: the learned policy")
    policy = LearnedPolicy.from_bundle(learned_bundle)
    learned = [_candidate(replay(lam).run(policy), "learned", f"learned(lambda={lam:g})")
               for lam in lambdas]
    decision = choose(learned, [candidate for candidate, _ in baselines])
    chosen = next(p for c, p in baselines if c == decision.baseline)
    return (SafetyNetDecision(**{**decision.__dict__, "skipped": skipped,
                                 "validation_queries": len(validation)}), chosen)
