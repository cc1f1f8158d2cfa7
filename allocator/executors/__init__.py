"""Strategy executors: the budget oracle (or any baseline policy) in front of an LLM.

An :class:`Executor` drives one :class:`~allocator.session.Session` per query, performs
each action with LLM calls and records every call in the log format (:class:`RunRecorder`),
so that the runs it serves become training data once graded. Strategies:
:class:`SelfConsistency` (STOP = majority vote), :class:`BestOfN` (VERIFY = a verifier),
:class:`TournamentVoting` (RTV: VERIFY = a judged bracket, REFINE = rollouts on its top-K)
and :class:`ParallelDistillRefine` (REFINE on a bounded workspace, then RTV's tournament).
With parallel widths, SAMPLE(arm)×w launches ``w`` draws as one timed wave.
"""

from allocator.executors.base import DEFAULT_PROMPT, Drawn, Executor, RunResult, as_problem
from allocator.executors.best_of_n import BestOfN
from allocator.executors.pdr import (
    DEFAULT_DISTILL_PROMPT,
    DEFAULT_REFINE_PROMPT,
    ParallelDistillRefine,
)
from allocator.executors.recorder import (
    GradeReport,
    QueryLog,
    RunRecorder,
    exact_grade,
    grade_run_log,
)
from allocator.executors.self_consistency import SelfConsistency
from allocator.executors.sessions import (
    PolicyOracle,
    SessionFactory,
    policy_session,
    session_factory,
)
from allocator.executors.tournament import DEFAULT_JUDGE_PROMPT, TournamentVoting, parse_vote

__all__ = [
    "DEFAULT_DISTILL_PROMPT",
    "DEFAULT_JUDGE_PROMPT",
    "DEFAULT_PROMPT",
    "DEFAULT_REFINE_PROMPT",
    "BestOfN",
    "Drawn",
    "Executor",
    "GradeReport",
    "ParallelDistillRefine",
    "PolicyOracle",
    "QueryLog",
    "RunRecorder",
    "RunResult",
    "SelfConsistency",
    "SessionFactory",
    "TournamentVoting",
    "as_problem",
    "exact_grade",
    "grade_run_log",
    "parse_vote",
    "policy_session",
    "session_factory",
]
