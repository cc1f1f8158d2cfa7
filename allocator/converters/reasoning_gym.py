"""Converter for reasoning-gym evaluation samples (open-thought/reasoning-gym-eval).

:class:`ReasoningGymConverter` (registered as ``reasoning-gym``) documents the source
format and its mapping to the log's columns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from allocator.converters.base import (
    Converted,
    Converter,
    as_name_set,
    read_jsonl_table,
    refuse_unknown,
    require_columns,
)
from allocator.errors import ConverterError

__all__ = ["CORRECT_SCORE", "ReasoningGymConverter"]

#: A sample whose verifier score reaches this counts as correct.
CORRECT_SCORE = 0.99

_NEEDED = ("difficulty", "model", "task", "q_idx", "question", "model_answer", "score",
           "response_chars", "sample_idx")
_SAMPLES = "samples.jsonl.gz"


def _text(table: pa.Table, name: str) -> pa.ChunkedArray:
    return table.column(name).cast(pa.string())


def _query_keys(table: pa.Table) -> pa.ChunkedArray:
    """``difficulty/task/q_idx``, split by question text where one key holds several."""
    base = pc.binary_join_element_wise(
        _text(table, "difficulty"), _text(table, "task"), _text(table, "q_idx"), "/")
    codes = pc.dictionary_encode(base).combine_chunks().indices.to_numpy(zero_copy_only=False)
    codes = np.nan_to_num(codes, nan=-1).astype(np.int64)
    _, first = np.unique(codes, return_index=True)
    question = _text(table, "question")
    reference = question.take(pa.array(first[np.searchsorted(np.unique(codes), codes)]))
    same = pc.fill_null(pc.equal(question, reference), True).to_numpy(zero_copy_only=False)
    ambiguous = np.isin(codes, codes[~same])
    if not ambiguous.any():
        return base
    rows = np.flatnonzero(ambiguous)
    texts = question.take(pa.array(rows)).to_pylist()
    digests = {text: hashlib.sha1((text or "").encode()).hexdigest()[:8] for text in set(texts)}
    split = [f"{key}~{digests[text]}" for key, text in
             zip(base.take(pa.array(rows)).to_pylist(), texts, strict=True)]
    return pc.replace_with_mask(base.combine_chunks(), pa.array(ambiguous),
                                pa.array(split, pa.string()))


class ReasoningGymConverter(Converter):
    """reasoning-gym-eval samples: many models on procedurally generated tasks.

    Source format: JSON Lines (gzip or plain), one graded sample per line: ``difficulty``
    (``easy``/``hard``), ``model``, ``run``, ``category``, ``task``, ``seed``, ``q_idx``,
    ``question``, ``expected_answer``, ``sample_idx``, ``model_answer`` (``null`` where no
    answer was extracted), ``score`` (the task's own verifier, in [0, 1]) and
    ``response_chars``.

    Mapping:

    - ``query_id`` = ``<difficulty>/<task>/<q_idx>``. The key is *meant* to name the same
      question for every model, but for a few procedurally generated tasks (``arc_agi``,
      ``codeio``, ``rubiks_cube``, ``figlet_font``...) the runs of different models drew
      different questions under one key (580 of the 10,050 keys in the public file). A key
      whose rows carry more than one question text is split: each text becomes its own
      query ``<difficulty>/<task>/<q_idx>~<first 8 hex digits of the text's SHA-1>``.
      Pooling answers to different questions in one vote would be wrong, and the README's
      "about 4,500 easy questions shared by all 10 models" counts queries this way.
    - ``arm`` = ``model``; ``answer`` = ``model_answer`` as logged (``null`` = no answer);
      ``correct`` = 1.0 if ``score >= 0.99`` else 0.0 (a missing score gives a missing grade,
      which the validation rejects); ``cost`` = ``response_chars``.
    - query columns: ``query.text`` (question), ``query.task``, ``query.category``,
      ``query.difficulty``, ``query.seed``.
    - extra columns: ``task_score`` (the raw score), ``expected_answer`` (one reference
      form: equivalent forms differ between runs, so it is not query-level), ``run``,
      ``sample_idx``.

    Conversion is columnar (Arrow's JSON reader and compute kernels).

    Options:
        difficulty: keep only these difficulties (``easy``, ``hard``).
    """

    name = "reasoning-gym"
    description = "reasoning-gym-eval samples.jsonl(.gz): one graded sample per line"

    def _read(
        self, source: Path, *, skip_invalid: bool,
        difficulty: str | Iterable[str] | None = None,
    ) -> Converted:
        path = source / _SAMPLES if source.is_dir() else source
        if not path.is_file():
            raise ConverterError(f"no {_SAMPLES} in the folder.", source=str(source),
                                 fix="point at the samples file itself.")
        table, lines, problems = read_jsonl_table(path, skip_invalid=skip_invalid)
        require_columns(table, _NEEDED, path,
                        "this does not look like reasoning-gym-eval samples.")
        chosen = as_name_set(difficulty, f"converter {self.name!r}", "difficulty")
        if chosen is not None:
            present = set(pc.unique(_text(table, "difficulty")).to_pylist()) - {None}
            refuse_unknown(chosen, present, f"converter {self.name!r}", "difficulty")
            keep = pc.is_in(_text(table, "difficulty"), value_set=pa.array(sorted(chosen)))
            keep = pc.fill_null(keep, False)
            table, lines = table.filter(keep), lines[keep.to_numpy(zero_copy_only=False)]
        return Converted.single(self._attempts(table), path, lines, problems)

    @staticmethod
    def _attempts(table: pa.Table) -> pa.Table:
        query_id = _query_keys(table)
        model = _text(table, "model")
        score = table.column("score").cast(pa.float64())
        correct = pc.if_else(pc.greater_equal(score, CORRECT_SCORE), 1.0, 0.0)
        columns = {
            "attempt_id": pc.binary_join_element_wise(
                query_id, model, _text(table, "sample_idx"), "/"),
            "query_id": query_id,
            "arm": model,
            "answer": _text(table, "model_answer"),
            "correct": correct.cast(pa.float32()),
            "cost": table.column("response_chars").cast(pa.float64()),
            "task_score": score,
            "sample_idx": table.column("sample_idx"),
            "query.text": _text(table, "question"),
            "query.task": _text(table, "task"),
            "query.difficulty": _text(table, "difficulty"),
        }
        for name in ("category", "seed"):
            if name in table.column_names:
                columns[f"query.{name}"] = table.column(name)
        for name in ("expected_answer", "run"):
            if name in table.column_names:
                columns[name] = _text(table, name)
        return pa.table(columns)
