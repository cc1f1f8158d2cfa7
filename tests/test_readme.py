"""Every README snippet runs as written (issue 14, item 15).

The README's shell blocks (``bash``, ``sh``, ``shell``) and Python blocks are runnable
snippets; blocks without a language are printed output. A runnable block that cannot run
here (it installs packages, needs an LLM server, trains for minutes) carries an explicit
marker on the line before it::

    <!-- not-tested: the reason -->

Every other runnable block is run, in README order, as a user following the README in
one terminal would: the shell blocks in one bash session (``set -euo pipefail``: a
failing command fails the test; exports and background servers carry over to later
blocks), each Python block as a script of its own, all in one folder that holds what the
README assumes the user has: ``.venv`` (this virtual environment), ``my_runs.jsonl`` (a
small SIMULATED log in the README's column names), ``runs/first/bundle`` (trained here
with a small config: the README's own train command takes minutes) and
``decisions.parquet`` (a decision log recorded from an epsilon-greedy policy). The only
change made to a block is its port: ``8000`` becomes a free port, so that ``allocator
serve`` and ``curl`` talk over real HTTP on loopback without clashing with anything.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SHELL = {"bash", "sh", "shell"}
MARKER = re.compile(r"<!--\s*not-tested:\s*(.*?)\s*-->")
#: A small training run (the README's train command runs 2M steps).
TINY = """\
n_envs = 16
n_steps = 16
batch_size = 256
n_orders = 2
n_bootstrap = 50
checkpoint_every = 4096
eval_lambdas = [0.01, 0.1]
"""


@dataclass(frozen=True)
class Block:
    """A fenced block of the README: where, its language, its text, its marker."""

    line: int
    language: str
    text: str
    not_tested: str | None

    @property
    def runnable(self) -> bool:
        return self.language in SHELL or self.language == "python"


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks, each with the not-tested marker on the line before it."""
    blocks, lines, index = [], text.splitlines(), 0
    while index < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[index])
        if not fence:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
        previous = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        marker = MARKER.search(previous)
        blocks.append(Block(index + 1, fence.group(1), "\n".join(lines[index + 1:end]),
                            marker.group(1) if marker else None))
        index = end + 1
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


def test_the_parser_sees_the_readme_blocks() -> None:
    """The README has runnable blocks, marked ones give a reason, and markers sit only
    before runnable blocks (a marker elsewhere would silence nothing)."""
    runnable = [block for block in BLOCKS if block.runnable]
    assert len(runnable) >= 8 and any(block.not_tested is None for block in runnable)
    assert all(block.not_tested for block in runnable if block.not_tested is not None)
    markers = len(MARKER.findall(README.read_text(encoding="utf-8")))
    assert markers == sum(block.not_tested is not None for block in BLOCKS)
    assert all(block.runnable for block in BLOCKS if block.not_tested is not None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_my_runs(path: Path) -> Path:
    """A SIMULATED log in the README's ingest column names, as JSON Lines."""
    from allocator.logs.synthetic import SyntheticConfig, generate

    log = generate(SyntheticConfig(n_queries=20), seed=3)  # the predictor needs 17
    with path.open("w", encoding="utf-8") as out:
        for row in range(log.n_attempts):
            query = int(np.searchsorted(log.offsets, row, side="right") - 1)
            answer = int(log.answer[row])
            out.write(json.dumps({
                "problem_id": str(log.query_ids[query]),
                "model": log.arms[int(log.arm[row])],
                "extracted": None if answer < 0 else str(log.answers[answer]),
                "is_correct": int(log.correct[row]),
                "completion_tokens": float(log.cost[row])}) + "\n")
    return path


def write_decisions(path: Path) -> Path:
    """A decision log of an epsilon-greedy logging policy on a SIMULATED log."""
    from allocator.logs.synthetic import SyntheticConfig, generate
    from allocator.policies import make_policy
    from allocator.training.evaluation.decision_log import record_decisions, write_decisions

    log = generate(SyntheticConfig(n_queries=30), seed=4)
    logging = make_policy("epsilon-greedy", base=make_policy("adaptive-consistency"),
                          epsilon=0.2)
    return write_decisions(record_decisions(log, logging, episodes=120, seed=0,
                                            lambda_=0.01), path)


def prepare(folder: Path) -> dict[str, str]:
    """What the README assumes the reader has; returns the environment to run in."""
    (folder / ".venv").symlink_to(Path(sys.prefix))  # this virtualenv (pyvenv.cfg included)
    write_my_runs(folder / "my_runs.jsonl")
    write_decisions(folder / "decisions.parquet")
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_DISABLE_TELEMETRY": "true",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    allocator = [str(folder / ".venv" / "bin" / "allocator")]
    for command in (["synth", "-o", "train-log.parquet", "--queries", "20"],
                    ["train", "train-log.parquet", "-o", "runs/first", "--config",
                     "tiny.toml", "--timesteps", "512", "--no-safety-net",
                     "--no-calibrate"]):
        (folder / "tiny.toml").write_text(TINY)
        subprocess.run(allocator + command, cwd=folder, env=env, check=True,
                       capture_output=True, timeout=300)
    return env


def script(blocks: list[Block], folder: Path, port: int) -> str:
    """One bash script running every unmarked block in order, each announced."""
    parts = ["set -euo pipefail"]
    for block in blocks:
        parts.append(f"echo '@@@ README line {block.line}'")
        if block.language == "python":
            code = folder / f"readme_block_{block.line}.py"
            code.write_text(block.text + "\n", encoding="utf-8")
            parts.append(f".venv/bin/python {code.name}")
        else:
            parts.append(re.sub(r"\b8000\b", str(port), block.text))
    return "\n".join(parts) + "\n"


def outputs(transcript: str) -> dict[int, str]:
    """The output of each block, by its README line."""
    found = {}
    for chunk in transcript.split("@@@ README line ")[1:]:
        line, _, text = chunk.partition("\n")
        found[int(line)] = text
    return found


@pytest.mark.slow
def test_every_readme_snippet_runs_as_written(tmp_path: Path) -> None:
    runnable = [block for block in BLOCKS if block.runnable and block.not_tested is None]
    env = prepare(tmp_path)
    port = free_port()
    log = tmp_path / "transcript.txt"
    with log.open("w") as out:  # a file: the background server keeps its end open
        shell = subprocess.Popen(["bash", "-c", script(runnable, tmp_path, port)],
                                 cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        try:
            shell.wait(timeout=240)
        finally:
            with contextlib.suppress(ProcessLookupError):  # the server, and bash if stuck
                os.killpg(shell.pid, signal.SIGTERM)
    transcript = log.read_text(encoding="utf-8", errors="replace")
    found = outputs(transcript)
    assert shell.returncode == 0, (
        f"README block at line {max(found, default=0)} failed (exit {shell.returncode}):"
        f"\n{transcript[-4000:]}")
    assert set(found) == {block.line for block in runnable}
    check_outputs(runnable, found, tmp_path)


def check_outputs(blocks: list[Block], found: dict[int, str], folder: Path) -> None:
    """What the blocks claim: the files they write, the answers they print."""
    assert (folder / "my_runs.parquet").is_file()
    assert (folder / "evaluation" / "report.json").is_file()
    by_text = {block.line: block.text for block in blocks}
    (curl,) = [line for line, text in by_text.items() if "/v1/decide" in text]
    decided = json.loads(found[curl].strip().splitlines()[-1])
    assert decided["action"]["kind"] in {"stop", "sample", "refine", "verify"}
    assert decided["lambda"] == 0.05 and decided["drawn"] == 1
    (session,) = [line for line, text in by_text.items() if "oracle.session(" in text]
    printed = found[session].strip().splitlines()
    assert printed[0] == "408"  # the one answer the stand-in LLM gives
