"""Logs too small for the difficulty predictor (issue 14, item 17): one clear error that
names the log, its number of queries, the number needed and the fix; the number stated
is the true minimum (one query fewer fails, that many works); and ``allocator train
--no-predictor`` trains on such a log with a constant prior that the bundle records."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import allocator
from allocator.cli import app
from allocator.session import UNINFORMED_PRIOR

runner = CliRunner()

#: A tiny training run (see test_train_cli.py).
TINY = """\
n_envs = 16
n_steps = 16
batch_size = 256
n_orders = 2
n_bootstrap = 50
checkpoint_every = 2048
eval_lambdas = [0.01, 0.1]
"""


def synth(tmp_path: Path, queries: int) -> Path:
    path = tmp_path / f"log{queries}.parquet"
    result = runner.invoke(app, ["synth", "-o", str(path), "--queries", str(queries)])
    assert result.exit_code == 0, result.output
    return path


def config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def command(name: str, log: Path, tmp_path: Path) -> list[str]:
    out = tmp_path / f"{name}-{log.stem}"
    if name == "evaluate":
        return ["evaluate", str(log), "-o", str(out), "--orders", "2", "--policy",
                "fixed-n"]
    return ["train", str(log), "-o", str(out), "--config", str(config(tmp_path)),
            "--timesteps", "512", "--no-calibrate", "--no-safety-net"]


#: (command, queries of a log too small for it, more options, the fix its error names)
TOO_SMALL = [
    ("evaluate", 3, [], "--no-difficulty"),
    ("evaluate", 6, [], "--no-difficulty"),
    ("evaluate", 10, [], "--no-difficulty"),
    ("train", 10, [], "--no-predictor"),
    ("evaluate", 1, ["--no-difficulty"], "at least 2 queries"),  # no training query
    ("train", 1, ["--no-predictor"], "at least 2 queries"),
]


@pytest.mark.parametrize(("name", "queries", "options", "fix"), TOO_SMALL)
def test_a_log_too_small_gets_one_clear_error(name: str, queries: int, options: list[str],
                                              fix: str, tmp_path: Path,
                                              monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    log = synth(tmp_path, queries)
    result = runner.invoke(app, [*command(name, log, tmp_path), *options])
    assert result.exit_code != 0
    message = " ".join(result.output.split())
    assert "Traceback" not in result.output and "parameter 'n_splits'" not in message
    assert str(log) in message.replace(" ", "") or log.name in message, message
    assert f"has {queries} queries" in message, message
    assert fix in message, message
    needed = int(re.search(r"at least (\d+) queries", message).group(1))
    assert needed > queries


@pytest.mark.slow
def test_the_stated_minimum_is_the_minimum(tmp_path: Path, monkeypatch) -> None:
    """``evaluate`` fails one query below the minimum its error states and runs at it."""
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, command("evaluate", synth(tmp_path, 4), tmp_path))
    needed = int(re.search(r"at least (\d+) queries", " ".join(result.output.split()))
                 .group(1))
    below = runner.invoke(app, command("evaluate", synth(tmp_path, needed - 1), tmp_path))
    assert below.exit_code != 0 and "at least" in " ".join(below.output.split())
    at = runner.invoke(app, command("evaluate", synth(tmp_path, needed), tmp_path))
    assert at.exit_code == 0, at.output


def test_train_without_the_predictor(tmp_path: Path, monkeypatch) -> None:
    """``--no-predictor`` trains on a log too small for the predictor; the bundle holds no
    predictor, says so, and every query's prior is the constant it trained with."""
    monkeypatch.chdir(tmp_path)
    log = synth(tmp_path, 10)
    result = runner.invoke(app, [*command("train", log, tmp_path), "--no-predictor",
                                 "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    bundle = Path(summary["bundle"])
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["difficulty_predictor"]["kind"] == "none"
    assert "--no-predictor" in manifest["difficulty_predictor"]["note"]
    oracle = allocator.load(bundle)
    assert oracle.bundle.predictor_dir is None
    expected = np.full(len(oracle.arms), UNINFORMED_PRIOR)
    np.testing.assert_array_equal(oracle.default_prior, expected)
    np.testing.assert_array_equal(oracle.prior_for("What is 2 + 2?"), expected)
    assert summary["training"]["prior"] == "constant"
    assert not (tmp_path / "mlflow.db").exists()  # MLflow only with --mlflow


def test_mlflow_is_opt_in_in_python_too() -> None:
    """``run_training``'s default matches the command line's (issue 14, item 19)."""
    import inspect

    from allocator.training.rl.pipeline import run_training

    assert inspect.signature(run_training).parameters["mlflow"].default is False
