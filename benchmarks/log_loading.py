"""Time and memory to load 1 million logged attempts, per file format.

Generates 1,000,000 simulated attempts (``allocator.logs.synthetic``), writes them as the
canonical Parquet log, as JSONL, as gzipped JSONL and as CSV, then loads each file in a
fresh Python process (so the peak-memory reading is clean) and prints seconds and peak RSS
growth against the targets (under 5 s, under 1 GiB), with a ratio against a baseline
measured in the same run: ``pandas.read_parquet`` of the same Parquet file (which only
decodes columns: no validation, no grouping). Each figure is the best of two processes.
Finally estimates the in-memory size of a 10-million-attempt log from the arrays of the
1-million one.

The README's "Performance" section keeps the results.

Run: ``.venv/bin/python benchmarks/log_loading.py`` (``--attempts N``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.csv as pa_csv

from allocator.logs import AttemptLog, log_to_arrow, write_log
from allocator.logs.synthetic import SyntheticArm, SyntheticConfig, generate

TARGET_SECONDS = 5.0
TARGET_BYTES = 1 << 30

# Each load runs in its own process. The peak is VmHWM (the high-water mark of this
# process's own memory map, which starts afresh at exec); ru_maxrss would carry over the
# parent's peak across fork+exec and hide the load's growth.
CHILD = """
import json, sys, time
kind, path = sys.argv[1], sys.argv[2]
import pandas, pyarrow
from allocator.logs import read_log
from allocator.logs.readers import read_attempts

def high_water():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

before = high_water()
start = time.perf_counter()
if kind == "pandas":
    rows = len(pandas.read_parquet(path))
elif kind == "read_log":
    rows = read_log(path).n_attempts
else:
    rows = read_attempts(path)[0].n_attempts
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_bytes": high_water() - before, "rows": rows}))
"""


def config_for(attempts: int) -> SyntheticConfig:
    """Two arms, 40 samples per query: ``attempts / 40`` queries."""
    return SyntheticConfig(
        n_queries=max(1, attempts // 40),
        arms=(SyntheticArm("small", 0.45, 1.0, 24), SyntheticArm("large", 0.70, 8.0, 16)),
        with_scores=True,
    )


def write_files(log: AttemptLog, folder: Path) -> dict[str, Path]:
    """The same attempts as Parquet (canonical log), JSONL, gzipped JSONL and CSV."""
    table = log_to_arrow(log)
    paths = {"parquet": write_log(log, folder / "log.parquet")}
    frame = table.to_pandas()
    paths["jsonl"] = folder / "log.jsonl"
    frame.to_json(paths["jsonl"], orient="records", lines=True)
    paths["jsonl.gz"] = folder / "log.jsonl.gz"
    frame.to_json(paths["jsonl.gz"], orient="records", lines=True, compression="gzip")
    paths["csv"] = folder / "log.csv"
    pa_csv.write_csv(table, paths["csv"])
    return paths


def measure(kind: str, path: Path, repeats: int = 2) -> dict[str, float]:
    """Best of ``repeats`` fresh processes (the fastest time, the smallest peak)."""
    runs = []
    for _ in range(repeats):
        done = subprocess.run([sys.executable, "-c", CHILD, kind, str(path)], check=True,
                              capture_output=True, text=True)
        runs.append(json.loads(done.stdout))
    return {key: min(run[key] for run in runs) for key in runs[0]}


def in_memory_bytes(log: AttemptLog) -> tuple[int, int]:
    """(bytes of the numeric arrays, bytes of object arrays including their strings)."""
    numeric = sum(a.nbytes for a in (log.offsets, log.arm, log.kind, log.round, log.answer,
                                     log.correct, log.cost, log.score))
    objects = 0
    for array in (log.attempt_id, log.answers, log.query_ids, log.queries.text):
        sample = array[:: max(1, len(array) // 10_000)]
        objects += array.nbytes + int(np.mean([sys.getsizeof(s) for s in sample]) * len(array))
    objects += sum(v.nbytes for v in log.queries.metadata.values())
    return numeric, objects


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=1_000_000)
    args = parser.parse_args()
    start = time.perf_counter()
    log = generate(config_for(args.attempts), seed=0)
    print(f"generated {log.n_attempts:,} simulated attempts ({log.n_queries:,} queries) "
          f"in {time.perf_counter() - start:.2f} s")
    with tempfile.TemporaryDirectory() as folder:
        paths = write_files(log, Path(folder))
        sizes = {name: path.stat().st_size for name, path in paths.items()}
        runs = [("pandas.read_parquet (baseline)", "pandas", "parquet"),
                ("read_log", "read_log", "parquet"),
                ("read_attempts", "read_attempts", "parquet"),
                ("read_attempts", "read_attempts", "jsonl"),
                ("read_attempts", "read_attempts", "jsonl.gz"),
                ("read_attempts", "read_attempts", "csv")]
        results = [(label, fmt, measure(kind, paths[fmt])) for label, kind, fmt in runs]
    baseline = results[0][2]["seconds"]
    print(f"\n{'loader':32s} {'file':9s} {'MiB':>6s} {'seconds':>8s} {'x baseline':>11s} "
          f"{'peak RSS +MiB':>14s}  targets (<{TARGET_SECONDS:.0f} s, <1 GiB)")
    for label, fmt, result in results:
        assert result["rows"] == log.n_attempts
        ok = result["seconds"] < TARGET_SECONDS and result["peak_bytes"] < TARGET_BYTES
        print(f"{label:32s} {fmt:9s} {sizes[fmt] / 2**20:6.1f} {result['seconds']:8.2f} "
              f"{result['seconds'] / baseline:11.1f} {result['peak_bytes'] / 2**20:14.0f}  "
              f"{'ok' if ok or label.startswith('pandas') else 'MISSED'}")
    numeric, objects = in_memory_bytes(log)
    scale = 10_000_000 / log.n_attempts
    print(f"\nin memory, {log.n_attempts:,} attempts: numeric arrays {numeric / 2**20:.0f} MiB, "
          f"ids/answers/text (object arrays with their strings) {objects / 2**20:.0f} MiB")
    print(f"estimate for 10,000,000 attempts: {numeric * scale / 2**30:.2f} GiB numeric + "
          f"{objects * scale / 2**30:.2f} GiB strings = "
          f"{(numeric + objects) * scale / 2**30:.2f} GiB")
    print(f"total benchmark time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
