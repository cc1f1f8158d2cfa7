"""Converter for OpenAI-compatible chat completion responses.

:class:`OpenAIConverter` (registered as ``openai``) documents the source format and its
mapping to the log's columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from allocator.converters.base import (
    Converted,
    Converter,
    Problem,
    answers_match,
    extract_final_answer,
    normalize_target,
    read_json_records,
)
from allocator.errors import ConverterError, ParameterError

__all__ = ["OpenAIConverter"]

_COSTS = ("tokens", "chars")
_TARGET_KEYS = ("target", "answer", "gold")
_TEXT_KEYS = ("text", "question", "prompt")


class _Invalid(Exception):
    """A record that cannot become attempts (message = reason)."""


def _first(mapping: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if mapping.get(key) is not None:
            return mapping[key]
    return None


def _unwrap(record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the completion, the fields describing the query)."""
    response = record.get("response")
    if isinstance(response, dict):
        if record.get("error"):
            raise _Invalid(f"the request failed: {record['error']!r}.")
        if "body" in response:
            status = response.get("status_code", 200)
            if status != 200:
                raise _Invalid(f"the request failed with status {status}.")
            response = response["body"]
        if not isinstance(response, dict):
            raise _Invalid("'response' holds no completion object.")
        return response, record
    if "choices" in record:
        metadata = record.get("metadata")
        return record, metadata if isinstance(metadata, dict) else {}
    raise _Invalid("no completion: expected 'choices', or a 'response' holding one.")


def _content(choice: dict[str, Any]) -> str:
    message = choice.get("message") or {}
    content = message.get("content")
    if isinstance(content, list):  # content parts
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


def _logprobs(choice: dict[str, Any]) -> list[float] | None:
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict) or not isinstance(logprobs.get("content"), list):
        return None
    return [float(token["logprob"]) for token in logprobs["content"]
            if isinstance(token, dict) and token.get("logprob") is not None]


def _token_costs(
    completion: dict[str, Any], logprobs: list[list[float] | None]
) -> list[float]:
    usage = completion.get("usage")
    total = usage.get("completion_tokens") if isinstance(usage, dict) else None
    counts = [len(values) for values in logprobs if values is not None]
    all_counted = len(counts) == len(logprobs) and sum(counts) > 0
    if total is None:
        if not all_counted:
            raise _Invalid("no usage.completion_tokens and no logprobs to count tokens.")
        return [float(c) for c in counts]
    if all_counted:
        return [float(total) * c / sum(counts) for c in counts]
    return [float(total) / len(logprobs)] * len(logprobs)


class _Rows:
    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {
            name: [] for name in ("attempt_id", "query_id", "arm", "answer", "correct", "cost",
                                  "score", "finish_reason", "choice_index", "query.text",
                                  "query.target")
        }
        self.line: list[int] = []

    def add(self, values: list[tuple[Any, ...]], line: int) -> None:
        for value in values:
            for column, item in zip(self.columns.values(), value, strict=True):
                column.append(item)
        self.line.extend([line] * len(values))

    def table(self) -> pa.Table:
        types = {"correct": pa.float32(), "cost": pa.float64(), "score": pa.float32(),
                 "choice_index": pa.int32()}
        return pa.table({name: pa.array(values, types.get(name, pa.string()))
                         for name, values in self.columns.items()})


class OpenAIConverter(Converter):
    """OpenAI-compatible chat completions, one graded attempt per choice.

    Source format: one JSON object per line (or one JSON array of them). Each record holds a
    chat completion response (``choices[].message.content``, optional
    ``choices[].logprobs.content[].logprob``, ``choices[].finish_reason``,
    ``usage.completion_tokens``, ``model``) and says which query it answers and what the
    gold answer is, in one of three shapes:

    - a wrapper: ``{"query_id": ..., "target": ..., "response": {<completion>}}`` (optional
      ``arm``, ``text``);
    - a Batch API output line: ``{"custom_id": ..., "response": {"status_code": 200,
      "body": {<completion>}}, "error": null}`` with ``target`` beside ``custom_id`` (a
      failed request is reported, not converted);
    - a bare completion with ``"metadata": {"query_id": ..., "target": ...}``.

    ``target`` may also be spelled ``answer`` or ``gold``; ``text`` may be ``question`` or
    ``prompt``. A record without a query id or a gold answer cannot be graded and is
    reported (or set aside with ``skip_invalid``).

    Mapping:

    - one attempt per choice (``n > 1`` gives several samples in one response);
      ``query_id`` as given; ``arm`` = the option ``arm``, else the record's ``arm``, else
      the completion's ``model``.
    - ``answer`` = the final answer extracted from the message content
      (:func:`~allocator.converters.base.extract_final_answer`: the last ``\\boxed{}``, the
      text after ``####``, "The answer is X", else the last number), normalised;
      ``correct`` = 1.0 when it equals the normalised target (numbers compared
      numerically), else 0.0. No extractable answer counts as wrong and does not vote.
    - ``cost`` (option ``cost="tokens"``, the default): ``usage.completion_tokens`` covers
      the whole response, all choices together. It is split among the choices in
      proportion to their token counts when every choice has logprobs (their
      ``logprobs.content`` lengths), so that the costs still add up to what was billed
      (reasoning tokens included); otherwise evenly. Without usage, the logprob token
      counts are the costs; with neither, the record is reported. ``cost="chars"`` uses the
      length of each choice's content instead.
    - ``score`` = the mean token logprob of the choice when logprobs exist (a confidence
      signal), else missing.
    - ``query.text`` when the record carries one; ``query.target``; extra columns
      ``finish_reason`` and ``choice_index``; ``attempt_id`` = ``<file name>:<line>#<index>``.

    ``data/examples/openai/chat_completions.jsonl`` shows the three record shapes.

    Options:
        arm: the arm of every attempt (default: the record's ``arm``, else ``model``).
        cost: ``tokens`` (default) or ``chars``.
    """

    name = "openai"
    description = "OpenAI-compatible chat completions (JSONL or JSON array) with ids and gold"

    def _read(
        self, source: Path, *, skip_invalid: bool, arm: str | None = None, cost: str = "tokens",
    ) -> Converted:
        if cost not in _COSTS:
            raise ParameterError(f"converter {self.name!r}", "cost", f"one of {list(_COSTS)}",
                                 cost)
        if source.is_dir():
            raise ConverterError("expected a file of completions, got a folder.",
                                 source=str(source), fix="point at one .jsonl or .json file.")
        records, problems = read_json_records(source, skip_invalid=skip_invalid)
        rows = _Rows()
        for line, record in records:
            try:
                rows.add(self._attempts(record, line, source.name, arm, cost), line)
            except _Invalid as error:
                if not skip_invalid:
                    raise ConverterError(
                        str(error), source=str(source), line=line,
                        fix="give every record a completion, a query id and a gold answer "
                            "(see the 'openai' converter's documentation).",
                    ) from None
                problems.append(Problem(str(source), line, str(error)))
        return Converted.single(rows.table(), source, np.asarray(rows.line, np.int64), problems)

    @staticmethod
    def _attempts(
        record: Any, line: int, file_name: str, arm: str | None, cost: str
    ) -> list[tuple[Any, ...]]:
        if not isinstance(record, dict):
            raise _Invalid(f"expected a JSON object, found {type(record).__name__}.")
        completion, about = _unwrap(record)
        query_id = _first(about, ("query_id", "custom_id"))
        target = _first(about, _TARGET_KEYS)
        if query_id is None:
            raise _Invalid("the record has no query id ('query_id' or 'custom_id').")
        if target is None:
            raise _Invalid("the record has no gold answer ('target', 'answer' or 'gold').")
        choices = completion.get("choices")
        if not isinstance(choices, list) or not choices:
            raise _Invalid("the completion has no choices.")
        logprobs = [_logprobs(choice) for choice in choices]
        costs = (_token_costs(completion, logprobs) if cost == "tokens"
                 else [float(len(_content(choice))) for choice in choices])
        name = arm or about.get("arm") or completion.get("model") or "default"
        gold, text = normalize_target(target), _first(about, _TEXT_KEYS)
        if gold is None:
            raise _Invalid(f"the gold answer {target!r} is blank.")
        values = []
        for position, (choice, tokens, spent) in enumerate(
                zip(choices, logprobs, costs, strict=True)):
            answer = extract_final_answer(_content(choice))
            index = choice.get("index", position)
            values.append((
                f"{file_name}:{line}#{index}", str(query_id), str(name), answer,
                1.0 if answers_match(answer, gold) else 0.0, spent,
                float(np.mean(tokens)) if tokens else None, choice.get("finish_reason"),
                index, None if text is None else str(text), str(target),
            ))
        return values
