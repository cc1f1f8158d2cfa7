"""Best-of-N with a verifier: sample, verify when the policy pays for it, return the best.

:class:`BestOfN` is the executor (Cobbe et al. 2021): the policy decides how many
candidates to draw and when to pay for verification; its docstring gives the rule and
the rows it records.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from allocator.errors import ParameterError, VerifierError
from allocator.executors.base import Executor
from allocator.executors.run import RunState
from allocator.verifiers.base import Candidate, Verifier

__all__ = ["BestOfN"]


class BestOfN(Executor):
    """Best-of-N: SAMPLE draws, VERIFY scores the new candidates, STOP returns the best.

    Cobbe et al. 2021, "Training Verifiers to Solve Math Word Problems": draw candidates,
    score them with a verifier, answer with the best-scored one. Here the policy decides
    both how many candidates to draw (SAMPLE) and when to pay for verification (VERIFY);
    a VERIFY scores every candidate drawn since the last one. STOP returns
    :meth:`~allocator.session.Session.final_answer`: the answer of the best verified
    candidate when one with an answer was verified, else the majority vote.

    Recorded: every sample (its row waits for the verdict so that its ``score`` column
    holds the verifier's score, which replay reads), and one ``verdict`` row per verdict
    (its columns: ``data/README.md``, "Logs written by the executors"; its ``parent`` is
    the candidate it judged, its call its own ``wave``).

    Args:
        client: the LLM client.
        arms: arm name -> request parameters.
        extract: ``text -> answer``.
        verifier: the :class:`~allocator.verifiers.Verifier` (exact checker, code runner,
            reward model, LLM judge); its verdict costs are in the log's units.
        **kwargs: the other arguments of :class:`~allocator.executors.base.Executor`.
    """

    name: ClassVar[str] = "best-of-n"
    supports_verify: ClassVar[bool] = True
    holds_candidates: ClassVar[bool] = True

    def __init__(self, client: Any, arms: Any, extract: Any, *, verifier: Verifier,
                 **kwargs: Any) -> None:
        super().__init__(client, arms, extract, **kwargs)
        if not callable(getattr(verifier, "verify", None)):
            raise ParameterError("BestOfN", "verifier", "a Verifier (async verify(problem, "
                                 "candidates) -> verdicts)", verifier)
        self.verifier = verifier

    async def _verify(self, run: RunState) -> bool:
        state = run.session.state
        todo = [drawn for drawn in run.candidates if not state.is_verified[drawn.index]]
        wave, started = run.new_wave(), run.clock()  # one verifier call: its own wave
        verdicts = list(await self.verifier.verify(
            run.problem, [Candidate(drawn.text, drawn.answer) for drawn in todo]))
        timing = {"started_at": started, "ended_at": run.clock(), "wave": wave}
        name = getattr(self.verifier, "name", type(self.verifier).__name__)
        if len(verdicts) != len(todo):
            raise VerifierError(f"verifier {name!r} returned {len(verdicts)} verdicts for "
                                f"{len(todo)} candidates")
        run.extra["verifications"] = call = run.extra.get("verifications", 0) + 1
        for drawn, verdict in zip(todo, verdicts, strict=True):
            run.update(drawn.attempt_id, score=_score(verdict.score))
        run.release(drawn.attempt_id for drawn in todo)
        for drawn, verdict in zip(todo, verdicts, strict=True):
            run.record({
                "kind": "verify", "arm": drawn.arm, "answer": drawn.answer,
                "cost": float(verdict.cost), "score": _score(verdict.score),
                "role": "verdict", "step": run.step, "target": drawn.attempt_id,
                "call": f"{run.log.run}:v{call}", "verifier": name,
                "detail": verdict.detail, "parent": drawn.attempt_id, **timing})
        run.verify({drawn.index: float(verdict.score)
                    for drawn, verdict in zip(todo, verdicts, strict=True)},
                   sum(float(verdict.cost) for verdict in verdicts))
        return True


def _score(value: float) -> float | None:
    number = float(value)
    return None if math.isnan(number) else number
