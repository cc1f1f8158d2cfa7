"""Verifiers: code runners, exact checkers and LLM judges behind one interface."""

from allocator.verifiers.base import Candidate, Problem, Verdict, Verifier

__all__ = ["Candidate", "Problem", "Verdict", "Verifier"]
