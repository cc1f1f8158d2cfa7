"""Converter for lm-evaluation-harness sample logs (``lm_eval ... --log_samples``).

:class:`LmEvalConverter` (registered as ``lm-eval``) documents the source format and its
mapping to the log's columns.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from allocator.converters.base import (
    Converted,
    Converter,
    Problem,
    answers_match,
    as_name_set,
    extract_final_answer,
    normalize_answer,
    normalize_target,
    read_json_records,
    refuse_unknown,
)
from allocator.errors import ConverterError, ParameterError

__all__ = ["LmEvalConverter"]

_FILE = re.compile(
    r"samples_(?P<task>.+?)(?:_(?P<stamp>\d{4}-\d{2}-\d{2}T[\d.:-]+))?\.jsonl(?:\.gz)?")
_TEXT_FIELDS = ("question", "problem", "query", "prompt", "input", "text", "ctx")
_INVALID = "[invalid]"
_GRADINGS = ("auto", "compare")


# ------------------------------------------------------------------ record parsing
def _prompt(arguments: Any) -> str | None:
    """The first request's prompt: ``{"gen_args_0": {"arg_0": ...}}`` or ``[[ctx, ...]]``."""
    if isinstance(arguments, dict) and arguments:
        first = next(iter(arguments.values()))
        if isinstance(first, dict):
            first = first.get("arg_0")
        return first if isinstance(first, str) else None
    if isinstance(arguments, list) and arguments:
        first = arguments[0]
        if isinstance(first, (list, tuple)) and first and isinstance(first[0], str):
            return first[0]
    return None


def _query_text(record: dict[str, Any]) -> str | None:
    doc = record.get("doc")
    if isinstance(doc, dict):
        for name in _TEXT_FIELDS:
            if isinstance(doc.get(name), str):
                return doc[name]
    return _prompt(record.get("arguments"))


def _loglikelihood(value: Any) -> float | None:
    """The log-likelihood of a ``[ll, is_greedy]`` pair (numbers or their text), else None."""
    if (isinstance(value, (list, tuple)) and len(value) == 2
            and str(value[1]) in ("True", "False", "true", "false")):
        try:
            return float(value[0])
        except (TypeError, ValueError):
            return None
    return None


def _metric(record: dict[str, Any], name: str | None) -> float | None:
    """The document's metric value when it is a grade in [0, 1]."""
    names = [name] if name else list(record.get("metrics") or [])
    if not names:
        return None
    value = record.get(names[0])
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and 0 <= value <= 1 and not math.isnan(value):
        return float(value)
    return None


def _check(record: Any) -> str | None:
    if not isinstance(record, dict):
        return f"expected a JSON object per line, found {type(record).__name__}."
    for name in ("doc_id", "resps", "filtered_resps"):
        if name not in record:
            return f"the record has no {name!r} field."
    resps, filtered = record["resps"], record["filtered_resps"]
    if not isinstance(resps, list) or not resps or not isinstance(filtered, list) or not filtered:
        return "'resps' and 'filtered_resps' must be non-empty lists."
    if not isinstance(resps[0], list):
        return "'resps' must hold one list of responses per request."
    return None


# ---------------------------------------------------------------------- attempts
def _generation_attempts(
    record: dict[str, Any], grading: str, metric: str | None
) -> list[tuple[str | None, float | None, float, str]]:
    """``(answer, correct, cost, answer_source)`` per response of a generation record."""
    responses = [str(r) for r in record["resps"][0]]
    filtered = record["filtered_resps"][0]
    per_response = isinstance(filtered, list) and len(filtered) == len(responses)
    if per_response or len(responses) == 1:
        values = filtered if per_response else [
            filtered[0] if isinstance(filtered, list) and filtered else filtered]
        answers = [None if str(v).strip() == _INVALID else normalize_answer(v) for v in values]
        source = "filter"
    else:
        answers = [extract_final_answer(r) for r in responses]
        source = "extracted"
    harness = _metric(record, metric) if len(responses) == 1 and grading == "auto" else None
    target = normalize_target(record.get("target"))
    attempts = []
    for answer, response in zip(answers, responses, strict=True):
        if harness is not None:
            correct: float | None = harness
        elif target is None:
            correct = None
        else:
            correct = 1.0 if answers_match(answer, target) else 0.0
        attempts.append((answer, correct, float(len(response)), source))
    return attempts


def _choice_attempt(record: dict[str, Any]) -> list[tuple[str | None, float | None, float, str]]:
    """The single attempt of a multiple-choice record (highest log-likelihood wins)."""
    scores = [_loglikelihood(v) for v in record["filtered_resps"]]
    best = str(int(np.argmax(scores)))
    accuracy = record.get("acc")
    if isinstance(accuracy, (int, float)) and not isinstance(accuracy, bool):
        correct: float | None = float(accuracy)
    elif record.get("target") is not None:
        correct = 1.0 if best == normalize_answer(record["target"]) else 0.0
    else:
        correct = None
    return [(best, correct, 1.0, "loglikelihood")]


def _is_multiple_choice(record: dict[str, Any]) -> bool:
    return all(_loglikelihood(v) is not None for v in record["filtered_resps"])


# ------------------------------------------------------------------------ files
def _sample_files(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    files = sorted(p for p in source.rglob("samples_*.jsonl*") if _FILE.fullmatch(p.name))
    if not files:
        raise ConverterError(
            "no 'samples_<task>_<time>.jsonl' files found.", source=str(source),
            fix="run lm_eval with --log_samples, and point at its output folder or one file.",
        )
    return files


def _task_of(path: Path) -> str:
    match = _FILE.fullmatch(path.name)
    if match:
        return match["task"]
    return path.name.split(".")[0].removeprefix("samples_")


class _Rows:
    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {
            name: [] for name in ("attempt_id", "query_id", "arm", "answer", "correct", "cost",
                                  "response_idx", "answer_source", "query.text", "query.task",
                                  "query.target")
        }
        self.file: list[int] = []
        self.line: list[int] = []

    def add(self, record: dict[str, Any], attempts: list[tuple[Any, ...]],
            where: tuple[int, int, str], labels: tuple[str, str]) -> None:
        file_index, line, file_name = where
        task, arm = labels
        text, target = _query_text(record), record.get("target")
        for k, (answer, correct, cost, source) in enumerate(attempts):
            values = (f"{file_name}:{line}#{k}", f"{task}/{record['doc_id']}", arm, answer,
                      correct, cost, k, source, text, task,
                      None if target is None else str(target))
            for column, value in zip(self.columns.values(), values, strict=True):
                column.append(value)
        self.file.extend([file_index] * len(attempts))
        self.line.extend([line] * len(attempts))

    def table(self) -> pa.Table:
        types = {"correct": pa.float32(), "cost": pa.float64(), "response_idx": pa.int32()}
        return pa.table({name: pa.array(values, types.get(name, pa.string()))
                         for name, values in self.columns.items()})


class LmEvalConverter(Converter):
    """lm-evaluation-harness ``--log_samples`` output.

    Source format: ``samples_<task>_<timestamp>.jsonl`` files (plain or gzip), which the
    harness writes under ``<output_path>/<model>/``. One line per document *and filter*:
    ``doc_id``, ``doc`` (the dataset row), ``target``, ``arguments`` (the requests: the
    prompt and the generation settings), ``resps`` (one list of raw responses per request;
    with ``repeats: N`` a generation task has one request with N responses in
    ``resps[0]``), ``filtered_resps`` (the responses after the filter pipeline), ``filter``
    (its name, e.g. ``strict-match``, ``flexible-extract``, ``maj@64``), ``metrics`` (the
    names of the per-document metrics) and the metric values themselves (``exact_match``,
    ``acc``...). The harness turns every response into a string when it saves the file.

    Mapping:

    - one arm per ``(model, filter)``: ``<model>/<filter>``. The model label is the option
      ``model`` or, by default, the name of the folder holding the file (the harness names
      it after the model). Pick one filter with the option ``filter``.
    - ``query_id`` = ``<task>/<doc_id>``, the task read from the file name.
      ``query.text`` = the first text field of ``doc`` among ``question``, ``problem``,
      ``query``, ``prompt``, ``input``, ``text``, ``ctx``, else the prompt of the first
      request; ``query.task``; ``query.target`` = the target as text.
    - generation tasks: one attempt per raw response in ``resps[0]``, ``cost`` = its
      length in characters (the log has no token counts).

      * When the filter kept one answer per response (``filtered_resps[0]`` is a list as
        long as ``resps[0]``, or there is a single response), the attempt's answer is the
        filtered response, normalised (:func:`~allocator.converters.base.normalize_answer`);
        the harness's ``[invalid]`` (nothing matched) is no answer.
      * When the filter reduced N > 1 responses to one value (``take_first``, or a majority
        vote as in ``maj@k`` filters), the filtered value describes the group, not a
        response; each response's answer is then extracted from its raw text with
        :func:`~allocator.converters.base.extract_final_answer` (``\\boxed{}``, ``####``,
        "The answer is", last number). The extra column ``answer_source`` says which
        (``filter`` or ``extracted``).
      * Grading: the per-document metrics grade a *document*, not a response (with N
        responses ``exact_match`` is for the filtered value only). So with a single
        response the harness's own metric is used when it is a number in [0, 1] (the first
        of ``metrics``, or the option ``metric``); otherwise every answer is compared with
        the normalised ``target`` (after ``####`` for GSM8K-style worked solutions),
        numbers numerically. ``grading="compare"`` always compares.
    - multiple-choice (log-likelihood) tasks: one attempt per document, answer = the index
      of the choice with the highest log-likelihood, correct = the ``acc`` metric (else
      answer == target), cost = 1.
    - ``attempt_id`` = ``<file name>:<line>#<response index>``; extra column
      ``response_idx``.

    A small example lives in ``data/examples/lm_eval/`` (a repeats-4 self-consistency run
    with collapsing and per-response filters, a single-response GSM8K run, and a
    multiple-choice task).

    Options:
        model: the model label of the arms (default: the folder holding each file).
        filter: keep only these filters (e.g. ``strict-match``).
        grading: ``auto`` (the harness's per-document metric when it grades a single
            response, else comparison with the target) or ``compare``.
        metric: the metric to read in ``auto`` grading (default: the first listed).
    """

    name = "lm-eval"
    description = "lm-evaluation-harness --log_samples samples_<task>_<time>.jsonl"

    def _read(
        self, source: Path, *, skip_invalid: bool, model: str | None = None,
        filter: str | Iterable[str] | None = None, grading: str = "auto",
        metric: str | None = None,
    ) -> Converted:
        owner = f"converter {self.name!r}"
        if grading not in _GRADINGS:
            raise ParameterError(owner, "grading", f"one of {list(_GRADINGS)}", grading)
        chosen = as_name_set(filter, owner, "filter")
        files = _sample_files(source)
        rows, problems, seen = _Rows(), [], set()
        for file_index, path in enumerate(files):
            records, bad = read_json_records(path, skip_invalid=skip_invalid)
            problems.extend(bad)
            label, task = model or path.parent.name, _task_of(path)
            for line, record in records:
                reason = _check(record)
                if reason is not None:
                    if not skip_invalid:
                        raise ConverterError(reason, source=str(path), line=line,
                                             fix="each line needs doc_id, resps and "
                                                 "filtered_resps as lm_eval writes them.")
                    problems.append(Problem(str(path), line, reason))
                    continue
                name = str(record.get("filter", "none"))
                seen.add(name)
                if chosen is not None and name not in chosen:
                    continue
                attempts = (_choice_attempt(record) if _is_multiple_choice(record)
                            else _generation_attempts(record, grading, metric))
                rows.add(record, attempts, (file_index, line, path.name), (task, f"{label}/{name}"))
        refuse_unknown(chosen, seen, owner, "filter")
        return Converted(rows.table(), tuple(str(p) for p in files),
                         np.asarray(rows.file, np.int32), np.asarray(rows.line, np.int64),
                         problems)
