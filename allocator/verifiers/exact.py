"""Exact-match checking of a candidate's answer against the problem's reference.

The cheapest verifier: free (cost 0), and exact where a reference answer exists (math
word problems, multiple choice, dates). Both sides go through one normaliser, so that
``" 5.0 "`` matches ``"5"`` and ``"Paris"`` matches ``"paris"``; pass your own for
task-specific rules (LaTeX, units, option letters).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from allocator.errors import ParameterError, VerifierError
from allocator.verifiers.base import Candidate, Problem, Verdict

__all__ = ["ExactChecker", "normalize_answer"]

_NUMBER = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:e[+-]?\d+)?")
_FIELDS = ("answer", "text")
_MAX_DIGITS = 64


def normalize_answer(text: str) -> str:
    """The default normaliser: whitespace, case and number formatting do not matter.

    Strips, casefolds, collapses runs of whitespace and drops one trailing period; a
    number loses its formatting: ``"5.0"``, ``"+5"``, ``"5."`` and ``"05"`` all become
    ``"5"``, ``"1,000"`` becomes ``"1000"``, ``"0.50"`` becomes ``"0.5"``, ``"-0"``
    becomes ``"0"``.

    Args:
        text: an answer as written.
    """
    text = " ".join(text.split()).casefold()
    if text.endswith(".") and not text.endswith(".."):
        text = text[:-1].rstrip()
    return _canonical_number(text) or text


def _canonical_number(text: str) -> str | None:
    if not text or not _NUMBER.fullmatch(text) or not any(c.isdigit() for c in text):
        return None
    try:
        value = Decimal(text.replace(",", ""))
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    # strip trailing zeros by hand: Decimal.normalize() rounds to the context's 28 digits
    # and exponent range, which would make distinct numbers (or 1e-999999999 and 0) equal
    sign, digits, exponent = value.as_tuple()
    coefficient = "".join(map(str, digits)).lstrip("0")
    if not coefficient:
        return "0"
    kept = coefficient.rstrip("0")
    exponent = int(exponent) + len(coefficient) - len(kept)
    value = Decimal((sign, tuple(map(int, kept)), exponent))
    if abs(value.adjusted()) > _MAX_DIGITS:  # 1e999999 stays short
        return str(value).lower()
    if exponent >= 0:
        return str(int(value))
    return format(value, "f")


@dataclass(frozen=True)
class ExactChecker:
    """Score 1 when the candidate's answer equals the reference after normalising, else 0.

    Attributes:
        normalize: applied to both the candidate's answer and ``problem.reference``
            (default :func:`normalize_answer`).
        field: compare ``candidate.answer`` (``"answer"``, the default: a candidate
            without one gets a NaN verdict) or the whole ``candidate.text`` (``"text"``).
        name: recorded in run logs.
    """

    normalize: Callable[[str], str] = normalize_answer
    field: str = "answer"
    name: str = "exact"

    def __post_init__(self) -> None:
        if not callable(self.normalize):
            raise ParameterError("ExactChecker", "normalize", "a callable str -> str",
                                 self.normalize)
        if self.field not in _FIELDS:
            raise ParameterError("ExactChecker", "field", f"one of {_FIELDS}", self.field)

    async def verify(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Verdict]:
        """One verdict per candidate: 1.0 (match), 0.0 (no match) or NaN (no answer)."""
        if not candidates:
            return []
        if problem.reference is None:
            raise VerifierError(f"query {problem.query_id!r}: ExactChecker needs "
                                "problem.reference, and it is None.")
        reference = self._normalized(problem.reference, problem)
        return [self._check(candidate, reference, problem) for candidate in candidates]

    def _check(self, candidate: Candidate, reference: str, problem: Problem) -> Verdict:
        value = candidate.text if self.field == "text" else candidate.answer
        if value is None:
            return Verdict(math.nan, 0.0, "no answer")
        if self._normalized(str(value), problem) == reference:
            return Verdict(1.0, 0.0, "match")
        return Verdict(0.0, 0.0, "mismatch")

    def _normalized(self, text: str, problem: Problem) -> str:
        try:
            result = self.normalize(text)
        except Exception as error:
            raise VerifierError(f"query {problem.query_id!r}: the normaliser failed on "
                                f"{text[:80]!r}: {error!r}") from error
        if not isinstance(result, str):
            raise VerifierError(f"query {problem.query_id!r}: the normaliser must return a "
                                f"string, got {type(result).__name__}.")
        return result
