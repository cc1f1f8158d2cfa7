"""Self-consistency: sample until the policy stops, return the majority vote.

Wang et al. 2023, "Self-Consistency Improves Chain of Thought Reasoning in Language
Models" (ICLR 2023), with the number of samples decided per query by the policy: the
learned oracle, or a baseline such as fixed-N or Adaptive-Consistency (Aggarwal et al.
2023). SAMPLE(arm) is one more request to the arm's model; STOP returns
:meth:`Session.final_answer` (the majority vote, ties to the answer seen first).
``parallelism > 1`` keeps several samples in flight (see :mod:`allocator.executors.base`).
"""

from __future__ import annotations

from typing import ClassVar

from allocator.executors.base import Executor

__all__ = ["SelfConsistency"]


class SelfConsistency(Executor):
    """Self-consistency driven by a policy: SAMPLE draws, STOP takes the majority vote.

    Takes the arguments of :class:`~allocator.executors.base.Executor`. Sessions are made
    without REFINE and VERIFY.

    Example:
        >>> executor = SelfConsistency(client, {"small": {"model": "gpt-4o-mini",
        ...                                                "temperature": 0.7}},
        ...                            extract, decider=allocator.load("bundle/"),
        ...                            parallelism=4)                      # doctest: +SKIP
        >>> executor.run(Problem("q1", "What is 6 x 7?", reference="42")).answer
        '42'
    """

    name: ClassVar[str] = "self-consistency"
