"""Hostile JSON for every converter that reads JSON (issue 14, item 8): a record nested
20,000 levels deep is refused with a ConverterError naming its line, never a segfault
(pyarrow's JSON reader) or a raw RecursionError (Python's ``json``).

Each case runs in a child process, so that a crash fails its case instead of the run.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from allocator.converters import CONVERTERS

#: Converters reading JSON or JSON Lines (swe-bench-pro reads CSV).
JSON_FORMATS = sorted(name for name in CONVERTERS if name != "swe-bench-pro")
DEPTH = 20_000
DEEP = "[" * DEPTH + "]" * DEPTH

CHILD = """
import json, sys
from allocator.converters import convert
from allocator.errors import ConverterError
try:
    convert(sys.argv[1], sys.argv[2])
except ConverterError as error:
    print(json.dumps({"error": str(error), "line": error.line}))
else:
    print(json.dumps({"error": None}))
"""


def add_deep_record(main: Path) -> int:
    """Append a record nested ``DEPTH`` deep to ``main`` (JSON Lines, or a JSON array);
    return the line it starts on."""
    data = main.read_bytes()
    packed = data[:2] == b"\x1f\x8b"
    text = (gzip.decompress(data) if packed else data).decode()
    if text.lstrip().startswith("["):  # a JSON array: one more element
        text = text.rstrip()[:-1].rstrip() + ",\n"
        line = text.count("\n") + 1
        text += json.dumps({"question": "deep", "answer": "1", "generated": ["a"]})[:-1]
        text += f', "results": {DEEP}}}\n]\n'
    else:
        line = text.count("\n") + 1
        text += f'{{"deep": {DEEP}}}\n'
    main.write_bytes(gzip.compress(text.encode()) if packed else text.encode())
    return line


@pytest.mark.parametrize("name", JSON_FORMATS)
def test_a_record_nested_20000_deep_is_a_clear_error(name: str, tiny_source) -> None:
    written = tiny_source(name)
    line = add_deep_record(written.main)
    run = subprocess.run([sys.executable, "-c", CHILD, str(written.source), name],
                         capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[3])
    assert run.returncode == 0, f"{name}: exit {run.returncode}\n{run.stderr[-2000:]}"
    outcome = json.loads(run.stdout.strip().splitlines()[-1])
    assert outcome["error"] is not None, name
    assert "nested" in outcome["error"], outcome
    assert outcome["line"] == line, outcome
    assert str(written.main) in outcome["error"], outcome
