"""Verifiers: code runners, exact checkers and LLM judges behind one interface."""

from allocator.verifiers.base import Candidate, Problem, Verdict, Verifier
from allocator.verifiers.code import CodeVerifier, extract_asserts, split_test_suite
from allocator.verifiers.exact import ExactChecker, normalize_answer
from allocator.verifiers.judge import LLMJudge, parse_verdict
from allocator.verifiers.sandbox import Limits, Sandbox, TestRun, describe_sandbox, run_tests

__all__ = [
    "Candidate",
    "CodeVerifier",
    "ExactChecker",
    "LLMJudge",
    "Limits",
    "Problem",
    "Sandbox",
    "TestRun",
    "Verdict",
    "Verifier",
    "describe_sandbox",
    "extract_asserts",
    "normalize_answer",
    "parse_verdict",
    "run_tests",
    "split_test_suite",
]
