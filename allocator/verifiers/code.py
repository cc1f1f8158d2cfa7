"""Score code candidates by the fraction of test cases they pass.

A code verifier scores a candidate program by the fraction of test cases it passes: the
official tests of a benchmark, or tests a model wrote (as CodeT does). This module holds
what is specific to code verification: splitting a test suite into independent test
cases (:func:`split_test_suite`), extracting test cases from model-generated text
(:func:`extract_asserts`) and :class:`CodeVerifier` (the asynchronous
:class:`~allocator.verifiers.base.Verifier`). Running the untrusted candidates (limits,
isolation, timeouts, output caps) is :mod:`allocator.verifiers.sandbox`'s job
(:func:`~allocator.verifiers.sandbox.run_tests`).
"""

from __future__ import annotations

import ast
import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from allocator.errors import ParameterError, VerifierError
from allocator.verifiers.base import Candidate, Problem, Verdict
from allocator.verifiers.sandbox import Limits, Sandbox, run_tests, sandbox_backend

__all__ = [
    "CodeVerifier",
    "extract_asserts",
    "split_test_suite",
]


# --------------------------------------------------------------------------- test sources


def split_test_suite(source: str, entry_point: str | None = None) -> list[str]:
    """Split a test suite into independent test cases, one per ``assert``.

    HumanEval-style suites (``def check(candidate): assert candidate(...) == ...``) give
    one case per statement of ``check`` that contains an ``assert``; plain suites give one
    case per top-level statement that contains one (``assert True, "..."`` markers, which
    test nothing, are dropped). Other statements (imports, helper assignments) are
    repeated in front of every later case, so each case runs on its own;
    top-level definitions (``METADATA``, helpers) come first in every case, and for a
    ``check`` suite so does ``candidate = <entry_point>`` (a top-level ``check(...)``
    call, as HumanEvalPack's suites end with, is dropped).

    Args:
        source: the test suite's Python source.
        entry_point: the function under test; required for a ``check(candidate)`` suite.

    Raises:
        ParameterError: the source does not parse, or a ``check`` suite has no entry point.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        raise ParameterError("split_test_suite", "source", "valid Python", str(error)) from error
    check = next((s for s in tree.body
                  if isinstance(s, ast.FunctionDef) and s.name == "check"), None)
    if check is None:
        return _cases(tree.body, prefix=[])
    if not entry_point:
        raise ParameterError("split_test_suite", "entry_point",
                             "the function name a check(candidate) suite tests", entry_point)
    setup = [ast.unparse(s) for s in tree.body
             if s is not check and not _has_assert(s) and not _calls_check(s)]
    return _cases(check.body, prefix=[*setup, f"candidate = {entry_point}"])


def _cases(statements: Sequence[ast.stmt], prefix: list[str]) -> list[str]:
    cases, context = [], list(prefix)
    for statement in statements:
        if _has_assert(statement):
            if not _is_trivial_assert(statement):
                cases.append("\n".join([*context, ast.unparse(statement)]))
        elif not (_is_doc(statement) or isinstance(statement, (ast.Pass, ast.Return))):
            context.append(ast.unparse(statement))
    return cases


def _calls_check(statement: ast.stmt) -> bool:
    """``check(entry_point)`` at the top level (HumanEvalPack's suites end with it)."""
    return isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call) \
        and isinstance(statement.value.func, ast.Name) and statement.value.func.id == "check"


def _has_assert(statement: ast.stmt) -> bool:
    return any(isinstance(node, ast.Assert) for node in ast.walk(statement))


def _is_trivial_assert(statement: ast.stmt) -> bool:
    """``assert True, "..."``: HumanEval's debugging markers, which test nothing."""
    return isinstance(statement, ast.Assert) and isinstance(statement.test, ast.Constant) \
        and bool(statement.test.value)


def _is_doc(statement: ast.stmt) -> bool:
    return isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant) \
        and isinstance(statement.value.value, str)


_STOP_TOKENS = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")


def extract_asserts(text: str, entry_point: str | None = None,
                    limit: int | None = None) -> list[str]:
    """Test cases from model-generated text, the way CodeT extracts them.

    The text (a continuation of a prompt ending in ``assert``) is split at ``assert ``;
    each part is cut at the first stop token (a new ``class``, ``def``, comment, ``if`` or
    ``print``), kept if it mentions ``entry_point`` and compiles, and the first ``limit``
    are returned (CodeT keeps 5 per generated sample).

    Args:
        text: generated text; a leading ``assert`` is implied.
        entry_point: keep only cases that mention this name (None keeps all).
        limit: at most this many cases (None: all).
    """
    cases = []
    for part in f"assert {text}".split("assert "):
        if not part.strip() or (entry_point and entry_point.strip() not in part):
            continue
        case = f"assert {part}".strip()
        for stop in _STOP_TOKENS:
            case = case.split(stop)[0]
        case = case.strip()
        if _compiles(case):
            cases.append(case)
    return cases if limit is None else cases[:limit]


def _compiles(case: str) -> bool:
    try:
        compile(case, "<test>", "exec")
    except (SyntaxError, ValueError):
        return False
    return True


# --------------------------------------------------------------------------- the verifier


@dataclass(frozen=True)
class CodeVerifier:
    """Scores code candidates by the fraction of test cases they pass.

    Contract (``problem.metadata``):

    - ``tests`` (required): either a sequence of strings, each one test case (Python
      source run after the program, e.g. ``"assert add(1, 2) == 3"``), or one string
      holding a test suite, split by :func:`split_test_suite` (HumanEval's
      ``def check(candidate)`` suites and plain ``assert`` lists both work).
    - ``entry_point``: the function under test (needed for ``check`` suites).
    - ``prompt``: the code prompt the candidate continues (default: ``problem.question``).

    The program run is ``prompt + candidate.text`` (a completion, as in HumanEval), or
    ``candidate.text`` alone when ``include_prompt=False`` (a whole program). With
    ``granularity="suite"`` a ``check`` suite runs as one test case,
    ``check(<entry_point>)``: exactly HumanEval's pass/fail.

    Verdict: score = tests passed / tests, cost = CPU seconds, detail = e.g.
    ``"7/10 tests passed"``, ``"timeout: 3/10 tests passed"`` or ``"program error:
    SyntaxError..."``. A problem without tests gives NaN verdicts. Outcomes are judged in
    a process apart from the candidate's (see :func:`~allocator.verifiers.sandbox.run_tests`);
    :attr:`backend` says which isolation backend runs them here. Cancelling
    :meth:`verify` stops the waiting; sandboxes already started end within
    ``limits.wall_seconds``.

    Attributes:
        limits: resource limits per candidate.
        sandbox: isolation settings.
        include_prompt: prepend ``metadata["prompt"]`` to each candidate.
        granularity: ``"case"`` (one test per assert) or ``"suite"`` (see above).
        max_concurrency: candidates run at once (each in its own subprocess).
        name: recorded in run logs.
    """

    limits: Limits = field(default_factory=Limits)
    sandbox: Sandbox = field(default_factory=Sandbox)
    include_prompt: bool = True
    granularity: str = "case"
    max_concurrency: int = 2
    name: str = "code"

    def __post_init__(self) -> None:
        if self.granularity not in ("case", "suite"):
            raise ParameterError("CodeVerifier", "granularity", "'case' or 'suite'",
                                 self.granularity)
        if not isinstance(self.max_concurrency, int) or self.max_concurrency < 1:
            raise ParameterError("CodeVerifier", "max_concurrency", "an integer >= 1",
                                 self.max_concurrency)

    @property
    def backend(self) -> str:
        """The isolation backend candidates run in on this host (``"bubblewrap"``...).

        Raises:
            VerifierError: ``sandbox`` cannot run here.
        """
        return sandbox_backend(self.sandbox)

    def test_cases(self, problem: Problem) -> list[str]:
        """The test cases every candidate of ``problem`` runs against."""
        tests = problem.metadata.get("tests")
        entry_point = problem.metadata.get("entry_point")
        if isinstance(tests, str):
            if self.granularity == "suite" and entry_point and "def check" in tests:
                return [f"{tests}\ncheck({entry_point})"]
            try:
                return split_test_suite(tests, entry_point)
            except ParameterError as error:
                raise VerifierError(f"query {problem.query_id!r}: {error}") from error
        if isinstance(tests, Sequence) and all(isinstance(t, str) for t in tests):
            return list(tests)
        raise VerifierError(
            f"query {problem.query_id!r}: metadata['tests'] must be a test-suite string or a "
            f"list of test-case strings, got {type(tests).__name__}.")

    def program(self, problem: Problem, candidate: Candidate) -> str:
        """The program run for one candidate."""
        if not self.include_prompt:
            return candidate.text
        return str(problem.metadata.get("prompt", problem.question)) + candidate.text

    async def verify(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Verdict]:
        """One verdict per candidate, in order; candidates run concurrently."""
        if not candidates:
            return []
        tests = self.test_cases(problem)
        if not tests:
            return [Verdict(math.nan, 0.0, "no tests") for _ in candidates]
        gate = asyncio.Semaphore(self.max_concurrency)

        async def one(candidate: Candidate) -> Verdict:
            async with gate:
                run = await asyncio.to_thread(run_tests, self.program(problem, candidate),
                                              tests, self.limits, self.sandbox)
            return Verdict(run.score, run.cpu_seconds, run.detail)

        return list(await asyncio.gather(*(one(c) for c in candidates)))
