"""Answer extraction and normalisation: turn a generation into a vote.

Voting strategies compare the *answers* of generations, not their text. An
:class:`Extractor` finds the final answer in a generation and normalises it, so that
``"5"``, ``"5.0"``, ``"$5"`` and ``"5."`` are one vote. Extractors live in a registry by
name (:func:`get_extractor`, :func:`register_extractor`); :func:`extract` lists the
built-in ones (``number``, ``choice``, ``date``, ``code``), their rules and examples.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from allocator.errors import ParameterError

__all__ = [
    "CHOICE_LETTERS",
    "Extractor",
    "available_extractors",
    "extract",
    "get_extractor",
    "normalize_choice",
    "normalize_code",
    "normalize_date",
    "normalize_number",
    "register_extractor",
]

#: The multiple-choice letters the ``"choice"`` extractor accepts.
CHOICE_LETTERS = "ABCDE"


@dataclass(frozen=True)
class Extractor:
    """A named answer extractor: find the answer in a generation, then normalise it.

    Attributes:
        name: the registry name (``"number"``, ``"date"``...).
        find: text -> the raw answer string found in it, or None.
        normalize: raw answer (or a gold answer) -> its normal form, or None when it is
            not an answer of this kind.
    """

    name: str
    find: Callable[[str], str | None]
    normalize: Callable[[str], str | None]

    def __call__(self, text: str) -> str | None:
        """The normalised answer of ``text``, or None when it has none."""
        raw = self.find(text)
        return None if raw is None else self.normalize(raw)


_EXTRACTORS: dict[str, Extractor] = {}
_ALIASES = {"math": "number", "gsm8k": "number", "multiple_choice": "choice", "mc": "choice"}


def register_extractor(name: str, find: Callable[[str], str | None],
                       normalize: Callable[[str], str | None] | None = None, *,
                       replace: bool = False) -> Extractor:
    """Register an extractor under ``name`` and return it.

    Args:
        name: the registry name.
        find: text -> raw answer string (or None).
        normalize: raw answer -> normal form (or None); identity (stripped) by default.
        replace: allow replacing an extractor already registered under ``name``.

    Raises:
        ParameterError: the name is empty or taken (and ``replace`` is false).
    """
    if not isinstance(name, str) or not name:
        raise ParameterError("register_extractor", "name", "a non-empty string", name)
    if not replace and (name in _EXTRACTORS or name in _ALIASES):
        raise ParameterError("register_extractor", "name",
                             f"a name not registered yet (or replace=True); taken: "
                             f"{available_extractors()}", name)
    extractor = Extractor(name, find, normalize or _strip_or_none)
    _EXTRACTORS[name] = extractor
    return extractor


def available_extractors() -> list[str]:
    """Names of the registered extractors, sorted (aliases not included)."""
    return sorted(_EXTRACTORS)


def get_extractor(name: str) -> Extractor:
    """The extractor registered under ``name`` (or one of its aliases).

    Raises:
        ParameterError: no extractor of that name; the message lists the available ones.
    """
    extractor = _EXTRACTORS.get(_ALIASES.get(name, name))
    if extractor is None:
        raise ParameterError("get_extractor", "name",
                             f"one of the registered extractors {available_extractors()} "
                             f"(aliases: {sorted(_ALIASES)})", name)
    return extractor


def extract(text: str, kind: str) -> str | None:
    """The normalised answer of ``text`` for a task of ``kind``, or None.

    The built-in extractors:

    * ``number`` (alias ``math``): the last ``\\boxed{...}`` if any (None when it holds no
      number); else the answer after the last marker ("the answer is", ``Answer:``,
      ``ans =``, ``#### ``, a line starting ``A:``); else the last number in the text.
      Normal form: ``"1234.5"``, ``"-7"``, ``"2/3"`` (see :func:`normalize_number`). A
      multi-part answer (``"ans = 86 glasses and 42 plates"``) votes its first number.
    * ``choice`` (alias ``mc``): the letter after "answer is"/``Answer:``/``A:``, else the last
      ``(B)``, else a reply that is one letter; letters :data:`CHOICE_LETTERS`. Normal form
      ``"B"``.
    * ``date``: the date after the last marker, else the last date; ``5/1/2021``,
      ``1-1-1963``, ``2021-05-01``, ``May 1, 2021``, ``1st of May 2021``. Normal form
      ``"05/01/2021"`` (MM/DD/YYYY, as the BIG-bench date task asks).
    * ``code``: the last fenced python block (else the last fenced block), else the whole
      text. Normal form: the code without trailing spaces or surrounding blank lines.

    Markers: the last marker followed by text on its line decides; when that text holds no
    answer of the kind (``"A: it depends on the year"``) the extractor returns None rather
    than an earlier number or date. Every extractor returns ``None`` when the text holds no
    answer of its kind (a vote for nobody). Generations that run on into a new few-shot
    question (a ``"Q:"``/``"Question"`` line after an ``"A:"`` line, common with base
    models) are cut before it: the answer to *this* question is the one before the made-up
    next question.

    Args:
        text: a generation.
        kind: an extractor name (``"number"``, ``"choice"``, ``"date"``, ``"code"``...).

    Example:
        >>> extract("So she pays $1,250.00 in total. The answer is $1,250.", "number")
        '1250'
        >>> get_extractor("date").normalize("5/1/2021")
        '05/01/2021'
    """
    return get_extractor(kind)(text)


def _strip_or_none(text: str) -> str | None:
    stripped = text.strip()
    return stripped or None


# --- shared: answer markers, and cutting a run-on into the next few-shot question ----

# "Q:" or "Question", not a variable named Q ("Q = m c dT")
_NEXT_QUESTION = re.compile(r"^\W{0,4}(?:Q\s*:|Question\b)", re.MULTILINE)
_ANSWER_MARKER = re.compile(
    r"(?:\banswer\s*(?:is|would be|will be|=|:)\s*:?|^\s*A\s*:|\bans\s*=|^\s*####)",
    re.IGNORECASE | re.MULTILINE,
)


def _cut_run_on(text: str) -> str:
    """``text`` up to a new few-shot question that starts after an answer line."""
    first_answer = re.search(r"^\s*A\s*:", text, re.MULTILINE)
    if first_answer is None:
        return text
    match = _NEXT_QUESTION.search(text, first_answer.end())
    return text if match is None else text[:match.start()]


def _after_markers(text: str) -> list[str]:
    """The text after each answer marker, last marker first, up to the end of its line."""
    segments = []
    for match in _ANSWER_MARKER.finditer(text):
        end = text.find("\n", match.end())
        segments.append(text[match.end():] if end < 0 else text[match.end():end])
    return segments[::-1]


def _marked_or_last(text: str, pattern: re.Pattern[str]) -> str | None:
    """The answer after the last answer marker, else the last ``pattern`` match.

    The last marker followed by some text on its line decides: its first match, or None
    when that text holds none (``"A: it depends"`` is an answer, not of this kind).
    """
    text = _cut_run_on(text)
    for segment in _after_markers(text):
        if segment.strip():
            match = pattern.search(segment)
            return match.group(0) if match else None
    matches = [match.group(0) for match in pattern.finditer(text)]
    return matches[-1] if matches else None


# --- number --------------------------------------------------------------------------

_UNSIGNED = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_NUMBER = re.compile(
    rf"(?<![\w.])-?(?:\$\s?)?{_UNSIGNED}(?:/{_UNSIGNED})?(?![/\d])|(?<![\w.])-?\.\d+"
)
_BOXED = re.compile(r"\\boxed\s*\{")
_LATEX_TEXT = re.compile(r"\\(?:text|mathrm|mbox)\s*\{[^{}]*\}")
_LATEX_FRAC = re.compile(r"\\d?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_NUMERIC_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*(-?\d[\d,.]*)\s*\}\s*\{\s*(-?\d[\d,.]*)\s*\}")
_UNICODE_MINUS = "\u2212"


def _boxed_contents(text: str) -> list[str]:
    """The contents of every ``\\boxed{...}`` (braces balanced), in order."""
    contents = []
    for match in _BOXED.finditer(text):
        depth, start = 1, match.end()
        for position in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[position], 0)
            if depth == 0:
                contents.append(text[start:position])
                break
    return contents


def _find_number(text: str) -> str | None:
    text = re.sub(r"<<[^<>]*>>", "", text)  # GSM8K calculator annotations
    text = text.replace(_UNICODE_MINUS, "-")
    boxed = _boxed_contents(text)
    if boxed:  # the model's own final answer: a number, or no numeric answer at all
        content = _LATEX_TEXT.sub(" ", boxed[-1])
        return re.sub(r"(?:\s+[A-Za-z]+)+\s*$", "", content)
    return _marked_or_last(_NUMERIC_FRAC.sub(r"\1/\2", text), _NUMBER)


def normalize_number(answer: str | float | int) -> str | None:
    """A number's normal form: no ``$``/commas/``%``/spaces, no trailing zeros or dot.

    Integers print without a decimal point (``"5.0"`` -> ``"5"``), decimals in plain
    notation (``"0.50"`` -> ``"0.5"``), fractions reduced (``"\\frac{4}{6}"`` -> ``"2/3"``,
    ``"4/2"`` -> ``"2"``). Returns None when ``answer`` is not one number.
    """
    if isinstance(answer, bool):
        return None
    text = _LATEX_FRAC.sub(r"\1/\2", str(answer).replace(_UNICODE_MINUS, "-"))
    text = text.strip().rstrip(".")
    text = re.sub(r"[\s$,%]|\\[$%]|\\!|\\,", "", text)
    text = text.removeprefix("+")
    try:
        if "/" in text:
            numerator, denominator = text.split("/")
            value = Fraction(Decimal(numerator)) / Fraction(Decimal(denominator))
            if value.denominator != 1:
                return f"{value.numerator}/{value.denominator}"
            text = str(value.numerator)
        number = Decimal(text)
    except (InvalidOperation, ValueError, ZeroDivisionError):
        return None
    if not number.is_finite():
        return None
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


# --- multiple choice -----------------------------------------------------------------

_LETTERS = "".join(CHOICE_LETTERS)
_CHOICE_AFTER_MARKER = re.compile(
    rf"(?:answer\s*(?:is|:)?|^\s*A\s*:)\s*:?\s*(?:option\s*)?\(?([{_LETTERS}])\b\)?",
    re.IGNORECASE | re.MULTILINE,
)
_PARENTHESISED = re.compile(rf"\(([{_LETTERS}{_LETTERS.lower()}])\)")
_LONE_LETTER = re.compile(rf"^\s*\(?([{_LETTERS}])\)?[.:)]?\s*$", re.IGNORECASE)
_BOXED_LETTER = re.compile(rf"\\boxed\s*\{{\s*\(?([{_LETTERS}{_LETTERS.lower()}])\)?\s*\}}")


def _find_choice(text: str) -> str | None:
    # markdown emphasis ("Answer: **B**") and a boxed letter ("\boxed{B}" reads "(B)")
    text = _BOXED_LETTER.sub(r"(\1)", _cut_run_on(text).replace("*", ""))
    marked = [m.group(1) for m in _CHOICE_AFTER_MARKER.finditer(text)
              if m.group(1).isupper() or m.group(0).rstrip().endswith(")")]
    if marked:
        return marked[-1]
    parenthesised = _PARENTHESISED.findall(text)
    if parenthesised:
        return parenthesised[-1]
    lone = _LONE_LETTER.match(text)
    return lone.group(1).upper() if lone else None


def normalize_choice(answer: str) -> str | None:
    """``"(b)"``, ``"B."``, ``"b"`` -> ``"B"``; None when not one of the choice letters."""
    match = re.fullmatch(rf"\s*\(?([{_LETTERS}{_LETTERS.lower()}])\)?[.:)]?\s*", answer)
    return match.group(1).upper() if match else None


# --- dates ---------------------------------------------------------------------------

_MONTHS = {name: index for index, names in enumerate(
    ["jan january", "feb february", "mar march", "apr april", "may", "jun june",
     "jul july", "aug august", "sep sept september", "oct october", "nov november",
     "dec december"], start=1) for name in names.split()}
_MONTH = r"(?P<month_name>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<day>\d{1,2})(?:st|nd|rd|th)?"
_DATE = re.compile(
    r"\b(?:(?P<m>\d{1,2})(?P<sep>[/-])(?P<d>\d{1,2})(?P=sep)(?P<y>\d{4})"
    r"|(?P<iy>\d{4})-(?P<im>\d{1,2})-(?P<id>\d{1,2})"
    rf"|{_MONTH}\s+{_DAY},?\s+(?P<year>\d{{4}})"
    rf"|(?P<day2>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<month_name2>"
    + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?,?\s+(?P<year2>\d{4}))\b",
    re.IGNORECASE,
)


def _date_fields(match: re.Match[str]) -> tuple[int, int, int]:
    """(month, day, year) of a :data:`_DATE` match."""
    groups = match.groupdict()
    if groups["m"]:
        return int(groups["m"]), int(groups["d"]), int(groups["y"])
    if groups["iy"]:
        return int(groups["im"]), int(groups["id"]), int(groups["iy"])
    if groups["month_name"]:
        return _MONTHS[groups["month_name"].lower()], int(groups["day"]), int(groups["year"])
    return _MONTHS[groups["month_name2"].lower()], int(groups["day2"]), int(groups["year2"])


def _find_date(text: str) -> str | None:
    return _marked_or_last(text, _DATE)


def normalize_date(answer: str) -> str | None:
    """A date as ``MM/DD/YYYY`` (zero-padded); None unless ``answer`` is one date.

    Accepts ``5/1/2021``, ``2021-05-01``, ``May 1, 2021``, ``1st of May 2021``. Month
    and day are range-checked (1-12, 1-31) but not against the calendar: a model's
    ``02/30/2021`` is still its vote.
    """
    match = _DATE.fullmatch(answer.strip().rstrip("."))
    if match is None:
        return None
    month, day, year = _date_fields(match)
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    return f"{month:02d}/{day:02d}/{year:04d}"


# --- code ----------------------------------------------------------------------------

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def _find_code(text: str) -> str | None:
    blocks = [(language.lower(), body) for language, body in _FENCE.findall(text)]
    python = [body for language, body in blocks if language in ("python", "py", "python3")]
    if python or blocks:
        return (python or [body for _, body in blocks])[-1]
    return text


def normalize_code(code: str) -> str | None:
    """Code with trailing spaces and surrounding blank lines removed; None when empty."""
    lines = [line.rstrip() for line in code.replace("\r\n", "\n").split("\n")]
    return "\n".join(lines).strip("\n") or None


register_extractor("number", _find_number, normalize_number)
register_extractor("choice", _find_choice, normalize_choice)
register_extractor("date", _find_date, normalize_date)
register_extractor("code", _find_code, normalize_code)
