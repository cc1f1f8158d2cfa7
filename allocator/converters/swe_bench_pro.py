"""Converter for SWE-bench Pro agent runs (nilenso/swe-bench-pro-cost-token-time-analysis).

:class:`SweBenchProConverter` (registered as ``swe-bench-pro``) documents the source
format and its mapping to the log's columns.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa

from allocator.converters.base import Converted, Converter, read_csv_table, require_columns
from allocator.errors import ConverterError

__all__ = ["SweBenchProConverter", "base_model_name"]

_RUNS = "agent_runs.csv.gz"
_ID, _INSTANCE, _MODEL = "agent_run_id", "metadata.instance_id", "metadata.model_name"
_RESOLVED, _TURNS = "metadata.resolved", "metadata.turns"
_RUN_LABEL = re.compile(r"\s+-{1,2}\s+(?P<run>.+)$")
_ALIASES = {"Claude 4 Sonnet": "Claude Sonnet 4"}
_REPO = re.compile(r"^instance_(?P<owner>[^_]+(?:_[^_]+)*?)__(?P<name>.+?)-[0-9a-f]{7,}")


def base_model_name(configuration: str) -> tuple[str, str]:
    """``(model, run label)`` of a configuration name such as ``"GPT-4o - paper"``.

    The run label is what follows the last `` - `` or `` -- `` (``"paper"``,
    ``"10132025"``, ``"debug-oct22"``); known alternative spellings of one model are
    unified.
    """
    match = _RUN_LABEL.search(configuration)
    model, run = (configuration[:match.start()], match["run"]) if match else (configuration, "")
    return _ALIASES.get(model.strip(), model.strip()), run


def _repo(instance: str | None) -> str | None:
    match = _REPO.match(instance or "")
    return f"{match['owner']}/{match['name']}" if match else None


class SweBenchProConverter(Converter):
    """SWE-bench Pro agent runs: resolved or not, and turns, per instance and configuration.

    Source format: a CSV (gzip or plain) with one agent run per row: ``agent_run_id``,
    ``metadata.instance_id``, ``metadata.model_name`` (the agent configuration, e.g.
    ``"GPT-5 High - paper"``, ``"Claude 4 Sonnet - 10132025"``), ``metadata.resolved``
    (true/false), ``metadata.turns``, ``tag``, ``created_at``.

    Mapping:

    - ``query_id`` = ``metadata.instance_id``; ``query.repo`` = the ``owner/name`` read from
      instance ids of the form ``instance_<owner>__<name>-<commit>...``.
    - ``arm``: by default the configuration name exactly as logged, one arm per
      configuration (14 in the public file, one run per instance each). This reproduces the
      published per-configuration resolve rates (.06 for GPT-4o to .44 for Claude 4.5
      Sonnet). Some models were run twice, in the paper and again later
      (``"Claude Sonnet 4 - paper"`` and ``"Claude 4 Sonnet - 10132025"``, the two
      ``"Gemini 2.5 Pro Preview"`` runs). Those are repeated attempts of one model, but
      not exchangeable ones: the scaffold changed between the runs (Claude Sonnet 4 resolves
      .20 of its instances in 19 turns on average in the paper run, .43 in 62 turns in the
      re-run). Option ``merge_reruns=True`` maps them to one arm anyway (the run label
      after `` - ``/`` -- `` is dropped and ``Claude 4 Sonnet`` is spelled ``Claude Sonnet
      4``), which gives those arms two samples per instance; the run label is kept in the
      extra columns ``configuration`` and ``run``.
    - ``correct`` = ``metadata.resolved``; ``cost`` = ``metadata.turns`` (the cost proxy;
      no tokens were logged).
    - ``answer`` = ``agent_run_id``. An agent run ends in a patch, not a votable answer;
      every run gets a distinct answer, so a "majority vote" over runs is a uniformly random
      pick among them (its expected correctness is the mean), never a spurious agreement.
    - ``attempt_id`` = ``agent_run_id``; extra column ``created_at``.

    Row ``r`` of the table is line ``r + 2`` of the CSV (header on line 1).

    Options:
        merge_reruns: map repeated runs of one model (paper run and re-run) to one arm.
    """

    name = "swe-bench-pro"
    description = "SWE-bench Pro agent_runs.csv(.gz): one agent run per row, resolved and turns"

    def _read(self, source: Path, *, skip_invalid: bool, merge_reruns: bool = False) -> Converted:
        path = source / _RUNS if source.is_dir() else source
        if not path.is_file():
            raise ConverterError(f"no {_RUNS} in the folder.", source=str(source),
                                 fix="point at the CSV file itself.")
        table = read_csv_table(path)
        require_columns(table, (_ID, _INSTANCE, _MODEL, _RESOLVED, _TURNS), path,
                        "this does not look like the SWE-bench Pro agent-run export.")
        configuration = table.column(_MODEL).cast(pa.string())
        arm, run = configuration, pa.nulls(table.num_rows, pa.string())
        if merge_reruns:
            names = configuration.to_pylist()
            split = {name: base_model_name(name) for name in set(names) if name is not None}
            arm = pa.array([split[n][0] if n is not None else None for n in names], pa.string())
            run = pa.array([split[n][1] if n is not None else None for n in names], pa.string())
        instances = table.column(_INSTANCE).cast(pa.string())
        repos = {value: _repo(value) for value in set(instances.to_pylist())}
        run_ids = table.column(_ID).cast(pa.string())
        columns = {
            "attempt_id": run_ids,
            "query_id": instances,
            "arm": arm,
            "answer": run_ids,
            "correct": table.column(_RESOLVED),
            "cost": table.column(_TURNS),
            "query.repo": pa.array([repos[v] for v in instances.to_pylist()], pa.string()),
        }
        if merge_reruns:
            columns["configuration"] = configuration
            columns["run"] = run
        if "created_at" in table.column_names:
            columns["created_at"] = table.column("created_at").cast(pa.string())
        lines = np.arange(table.num_rows, dtype=np.int64) + 2
        return Converted.single(pa.table(columns), path, lines, [])

