"""Strategy executors: the budget oracle (or any baseline policy) in front of an LLM.

An executor drives one :class:`~allocator.session.Session` per query: it asks for the
next action, performs it with LLM calls (an :class:`~allocator.llm.LLMClient`), reports
the result, and records every call in the project's log format
(:class:`RunRecorder`), so that the runs it serves become training data for
``allocator train`` once graded.

==================================  ==============  =====================================
strategy                            SAMPLE          REFINE / VERIFY
==================================  ==============  =====================================
:class:`SelfConsistency`            one more draw   (neither); STOP = majority vote
:class:`BestOfN`                    one more draw   VERIFY = verifier on new candidates
:class:`TournamentVoting` (RTV)     one more draw   VERIFY = bracket of summaries, V votes;
                                                    REFINE = rollout on the top-K's summaries
:class:`ParallelDistillRefine`      one more draft  REFINE = refine on a bounded workspace;
                                                    VERIFY = final tournament as RTV
==================================  ==============  =====================================

With a policy whose layout has parallel widths, SAMPLE(arm)×w launches ``w`` draws at
once as one wave (every strategy); every row records ``started_at``, ``ended_at``,
``wave`` and ``parent`` (``data/README.md``, "Timing").

Who decides is the executor's ``decider``: ``allocator.load(bundle)`` (the learned
policy), a baseline policy (``make_policy("adaptive-consistency")``, see
:class:`PolicyOracle`) or any :class:`SessionFactory`.
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
