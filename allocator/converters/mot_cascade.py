"""Converter for the raw result files of "LLM cascades with mixture of thought" (MoT).

:class:`MotCascadeConverter` (registered as ``mot-cascade``) documents the source format
and its mapping to the log's columns.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from allocator.converters.base import (
    Converted,
    Converter,
    Problem,
    as_name_set,
    read_json_records,
    refuse_unknown,
)
from allocator.errors import ConverterError

__all__ = ["FOLDER_MODELS", "MotCascadeConverter", "grade", "normalize_gold", "normalize_result"]

#: Result folders of the original repository and the model each holds.
FOLDER_MODELS = {
    "GPT3_result": "gpt-3.5-turbo",
    "GPT4_result": "gpt-4",
    "llama2_13B_result": "llama-2-13b",
}

#: Relative tolerance under which two numeric answers are the same answer.
NUMERIC_TOLERANCE = 1e-4

_NUMERIC_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
_NAMED_DATE = re.compile(r"([A-Za-z]+)\.? (\d{1,2}), (\d{4})")
_NUMBER_TEXT = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_FILE_NAME = re.compile(r"(?P<task>[^_]+)_(?P<config>.+?)\.json(?:\.gz)?")
_REQUIRED = ("question", "results")


# ------------------------------------------------------------------ normalisation
def _number(value: float) -> str:
    return str(round(value, 4))


def _normalize_date(text: str) -> str:
    text = text.strip()
    numeric = _NUMERIC_DATE.search(text)
    if numeric:
        month, day, year = numeric.groups()
        return f"{int(month):02d}/{int(day):02d}/{year}"
    named = _NAMED_DATE.fullmatch(text.split("\n", 1)[0].strip().rstrip("."))
    if named:
        month, day, year = named.groups()
        for pattern in ("%b %d %Y", "%B %d %Y"):
            try:
                return datetime.strptime(f"{month} {day} {year}", pattern).strftime("%m/%d/%Y")
            except ValueError:
                continue
    return text


def normalize_result(value: Any, task: str) -> str | None:
    """An extracted answer (a ``results`` entry) in the form the curator compared.

    Args:
        value: the raw entry (number, text or ``None``).
        task: the task name; ``"date"`` answers get date normalisation.

    Returns:
        The normalised answer, ``None`` for a missing one.
    """
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number(float(value))
    text = str(value)
    if task == "date":
        return _normalize_date(text)
    if _NUMBER_TEXT.fullmatch(text.strip()):
        return _number(float(text.strip().replace(",", "")))
    return text.lower()


def normalize_gold(value: Any, task: str) -> str | None:
    """The gold answer normalised like the results; a ``{option: 0/1}`` dict gives the
    option marked 1 (``None`` unless exactly one is)."""
    if isinstance(value, dict):
        marked = [option for option, flag in value.items() if flag == 1]
        return normalize_result(marked[0], task) if len(marked) == 1 else None
    return normalize_result(value, task)


def grade(answer: str | None, gold: str | None) -> float | None:
    """1.0/0.0 for a normalised answer against a normalised gold; ``None`` without gold."""
    if gold is None:
        return None
    if answer is None:
        return 0.0
    try:
        close = math.isclose(float(answer), float(gold), rel_tol=NUMERIC_TOLERANCE)
    except ValueError:
        close = False
    return 1.0 if close or answer == gold else 0.0


# ------------------------------------------------------------------------ files
def _model_of(folder: str) -> str:
    return FOLDER_MODELS.get(folder, folder)


def _result_files(source: Path) -> list[Path]:
    """The result files under ``source`` (a file, a model folder, ``raw/`` or its parent)."""
    if source.is_file():
        return [source]
    if (source / "raw").is_dir():
        source = source / "raw"
    files = sorted(p for p in source.glob("*.json*") if _FILE_NAME.fullmatch(p.name))
    if not files:
        files = sorted(p for p in source.glob("*/*.json*") if _FILE_NAME.fullmatch(p.name))
    if not files:
        raise ConverterError(
            "no '<task>_<config>.json[.gz]' result files found.", source=str(source),
            fix="point at the 'raw' folder, one model folder in it, or one result file.",
        )
    return files


def _describe(path: Path) -> tuple[str, str, str]:
    match = _FILE_NAME.fullmatch(path.name)
    if match is None:
        raise ConverterError(
            "the file name does not read as '<task>_<config>.json[.gz]'.", source=str(path),
            fix="keep the original file names (e.g. 'date_cot1.json.gz').",
        )
    return _model_of(path.parent.name), match["task"], match["config"]


def _select(
    files: list[Path], tasks: set[str] | None, models: set[str] | None,
    configs: set[str] | None,
) -> list[tuple[Path, str, str, str]]:
    described = [(path, *_describe(path)) for path in files]
    owner = "converter 'mot-cascade'"
    refuse_unknown(models, {d[1] for d in described}, owner, "models")
    refuse_unknown(tasks, {d[2] for d in described}, owner, "tasks")
    refuse_unknown(configs, {d[3] for d in described}, owner, "configs")
    return [
        d for d in described
        if (models is None or d[1] in models) and (tasks is None or d[2] in tasks)
        and (configs is None or d[3] in configs)
    ]


# ----------------------------------------------------------------------- reading
class _Rows:
    """Column lists grown record by record."""

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {
            name: [] for name in ("attempt_id", "query_id", "arm", "answer", "correct", "cost",
                                  "sample_idx", "query.text", "query.task", "query.gold")
        }
        self.file: list[int] = []
        self.line: list[int] = []

    def add_question(
        self, record: dict[str, Any], where: tuple[int, int], labels: tuple[str, str, str, int]
    ) -> None:
        model, task, config, index = labels
        results = record["results"]
        generated = record.get("generated") or []
        gold = normalize_gold(record.get("answer"), task)
        arm, query_id = f"{model}/{config}", f"{task}/{index}"
        columns = self.columns
        for sample, value in enumerate(results):
            answer = normalize_result(value, task)
            columns["attempt_id"].append(f"{model}/{task}_{config}/{index}/{sample}")
            columns["query_id"].append(query_id)
            columns["arm"].append(arm)
            columns["answer"].append(answer)
            columns["correct"].append(grade(answer, gold))
            columns["cost"].append(
                float(len(generated[sample])) if sample < len(generated) else None)
            columns["sample_idx"].append(sample)
            columns["query.text"].append(record["question"])
            columns["query.task"].append(task)
            columns["query.gold"].append(gold)
        self.file.extend([where[0]] * len(results))
        self.line.extend([where[1]] * len(results))

    def table(self) -> pa.Table:
        types = {"correct": pa.float32(), "cost": pa.float64(), "sample_idx": pa.int32()}
        return pa.table({name: pa.array(values, types.get(name, pa.string()))
                         for name, values in self.columns.items()})


def _check_record(record: Any) -> str | None:
    """Why a question object cannot give attempts, or ``None`` if it can."""
    if not isinstance(record, dict):
        return f"expected a JSON object per question, found {type(record).__name__}."
    for name in _REQUIRED:
        if name not in record:
            return f"the question object has no {name!r} field."
    if not isinstance(record["results"], list):
        return "'results' is not a list."
    if not isinstance(record.get("generated", []), list):
        return "'generated' is not a list."
    return None


class MotCascadeConverter(Converter):
    """MoT-cascade raw results (GPT-3.5/GPT-4/Llama-2 on six reasoning tasks).

    Source format (MurongYue/LLM_MoT_cascade, ICLR 2024): one folder per model,
    ``GPT3_result/`` (gpt-3.5-turbo), ``GPT4_result/`` (gpt-4), ``llama2_13B_result/``
    (llama-2-13b), each holding ``<task>_<config>.json[.gz]`` files. A file is one JSON list
    with one object per question: ``question``, ``answer`` (the gold answer; in the Llama-2
    date files a dict ``{option: 0/1}`` whose 1-valued key is the gold), ``generated`` (the
    full generations), ``results`` (the answer the authors extracted from each generation;
    ``null`` where a program failed), ``result_counter`` and ``prediction`` (unused).

    Mapping:

    - one arm per ``<model>/<config>`` (``gpt-4/pot1``, ``gpt-3.5-turbo/cot1_40``,
      ``llama-2-13b/pot1_V2``...); greedy configs are arms too (usually one sample). A folder
      with another name keeps its name as the model.
    - ``query_id`` = ``<task>/<index of the question in the file>``: the same question is the
      same query across models and configs. ``query.text`` = question, ``query.task`` = task,
      ``query.gold`` = the normalised gold answer.
    - one attempt per entry of ``results``, paired by position with ``generated`` (as the
      data's curator did for ``samples.csv.gz``). In program-of-thought files ``generated``
      can be longer than ``results`` (programs that failed to run were left out of
      ``results``, without saying which): generations without a result are not attempts.
      ``cost`` = length of the paired generation in characters (no token counts were
      logged); a result without a generation gets no cost and is rejected.
    - ``answer`` = the extracted result, normalised (rules below); ``null`` results are
      attempts without an answer (graded 0, they never win a vote).
    - extra column ``sample_idx`` (position in ``results``).

    Normalisation and grading reproduce ``is_correct``, ``answer`` and ``gen_chars`` of the
    curator's ``samples.csv.gz`` on every one of its 255,841 rows (the tests check it):

    - numbers (JSON numbers, and text such as ``"1,218"`` that is a number once the
      thousands commas go) become ``str(round(x, 4))``: ``18`` -> ``"18.0"``,
      ``179.99999999999997`` -> ``"180.0"``, ``12.666666`` -> ``"12.6667"``;
    - date task: whitespace is stripped; the first ``M/D/YYYY`` anywhere in the text is the
      answer, zero-padded to ``MM/DD/YYYY``; otherwise a first line that is exactly a date
      written with a month name (``"Jul 30, 2002"``, ``"June 1, 2021."``) is converted;
      otherwise the stripped text is kept as it is (and cannot match a gold date);
    - other text is lower-cased;
    - correct when both answers are numbers within a relative tolerance of ``1e-4``
      (``19999.5`` matches ``20000``, ``279.9`` does not match ``280``), else when the
      normalised strings are equal.

    Options:
        tasks: keep only these tasks (``date``, ``gsm``, ``asdiv``, ``crepe``,
            ``navigate``, ``tabmwp``).
        models: keep only these models (``gpt-3.5-turbo``, ``gpt-4``, ``llama-2-13b``).
        configs: keep only these configs (``cot1``, ``pot2_t=0.8``, ``greedy_cot1``...).
    """

    name = "mot-cascade"
    description = "MoT cascade raw results (<model folder>/<task>_<config>.json.gz), ICLR 2024"

    def _read(
        self,
        source: Path,
        *,
        skip_invalid: bool,
        tasks: str | Iterable[str] | None = None,
        models: str | Iterable[str] | None = None,
        configs: str | Iterable[str] | None = None,
    ) -> Converted:
        owner = f"converter {self.name!r}"
        chosen = _select(
            _result_files(source), as_name_set(tasks, owner, "tasks"),
            as_name_set(models, owner, "models"), as_name_set(configs, owner, "configs"),
        )
        rows, problems = _Rows(), []
        for file_index, (path, model, task, config) in enumerate(chosen):
            records, _ = read_json_records(path, skip_invalid=False)
            for index, (line, record) in enumerate(records):
                reason = _check_record(record)
                if reason is None:
                    rows.add_question(record, (file_index, line), (model, task, config, index))
                elif skip_invalid:
                    problems.append(Problem(str(path), line, reason))
                else:
                    raise ConverterError(
                        reason, source=str(path), line=line,
                        fix="every question object needs 'question' and 'results' (a list).",
                    )
        return Converted(rows.table(), tuple(str(p) for p, *_ in chosen),
                         np.asarray(rows.file, np.int32), np.asarray(rows.line, np.int64),
                         problems)
