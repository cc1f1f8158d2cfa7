"""``allocator evaluate``: table, report, plots and MLflow, on simulated and real logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from allocator.cli import app
from allocator.logs import write_log
from allocator.logs.synthetic import SyntheticConfig, generate

runner = CliRunner()

POINT_KEYS = {"accuracy", "accuracy_ci", "mean_cost", "mean_samples", "exhaustion_rate"}


def _check_outputs(folder: Path, report: dict) -> None:
    assert json.loads((folder / "report.json").read_text()) == report
    for png in ("pareto.png", "cost_distribution.png"):
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name, points in report["policies"].items():
        assert points, name
        for point in points:
            assert set(point) >= POINT_KEYS, name
            low, high = point["accuracy_ci"]
            assert low <= point["accuracy"] <= high
    for key in ("target_accuracy", "best_baseline", "savings_vs_best_baseline", "gap_closed",
                "envelope"):
        assert key in report["headline"]


@pytest.mark.slow
def test_evaluate_json_report_plots_and_mlflow(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    log_path = tmp_path / "synthetic.parquet"
    write_log(generate(SyntheticConfig(n_queries=80), seed=2), log_path)
    out = tmp_path / "evaluation"
    result = runner.invoke(app, ["evaluate", str(log_path), "-o", str(out), "--orders", "3",
                                 "--json", "--mlflow"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    _check_outputs(out, report)
    assert report["log"]["simulated"] is True

    import mlflow

    runs = mlflow.search_runs(experiment_names=["ttc-allocator"], output_format="list")
    assert len(runs) == 1
    metrics = runs[0].data.metrics
    assert any(key.startswith("eval/adaptive-consistency/") for key in metrics)


def test_evaluate_refuses_an_unknown_policy(tmp_path: Path) -> None:
    log_path = tmp_path / "synthetic.parquet"
    write_log(generate(SyntheticConfig(n_queries=20), seed=0), log_path)
    result = runner.invoke(app, ["evaluate", str(log_path), "-p", "magic"])
    assert result.exit_code == 2
    assert "magic" in result.output and "fixed-n" in result.output


PUBLIC = {
    "mot-cascade": ("mot_cascade/raw", ["-O", "tasks=date", "-O", "models=gpt-3.5-turbo",
                                        "-O", "configs=cot1_40"], []),
    "reasoning-gym": ("reasoning_gym/samples.jsonl.gz", ["-O", "difficulty=easy"],
                      ["--no-difficulty"]),
    "codet": ("codet_humaneval", [], []),
    "swe-bench-pro": ("swe_bench_pro/agent_runs.csv.gz", [], []),
}


@pytest.mark.public_logs
@pytest.mark.slow
@pytest.mark.parametrize("fmt", sorted(PUBLIC))
def test_evaluate_every_public_log(fmt: str, public_logs: Path, tmp_path: Path) -> None:
    folder, ingest_options, evaluate_options = PUBLIC[fmt]
    log_path = tmp_path / "log.parquet"
    result = runner.invoke(app, ["ingest", str(public_logs / folder), "-f", fmt,
                                 *ingest_options, "-o", str(log_path)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "evaluation"
    result = runner.invoke(app, ["evaluate", str(log_path), "-o", str(out), "--orders", "3",
                                 *evaluate_options, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    _check_outputs(out, report)
    # The target is the envelope's top: the best accuracy of any deployable baseline.
    baselines = [p for name, points in report["policies"].items()
                 if name not in ("learned", "oracle", "query-oracle") for p in points]
    assert max(p["accuracy"] for p in baselines) == pytest.approx(
        report["headline"]["target_accuracy"])


@pytest.mark.slow
def test_evaluate_a_trained_bundle_as_the_training_run_did(tmp_path: Path) -> None:
    """`allocator evaluate --bundle` replays the learned policy on the same split, orders
    and prior as `allocator train`'s own evaluation: the same numbers."""
    log_path = tmp_path / "synthetic.parquet"
    write_log(generate(SyntheticConfig(n_queries=60), seed=4), log_path)
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(log_path), "-o", str(run), "--timesteps",
                                 "4096", "--no-mlflow"])
    assert result.exit_code == 0, result.output
    trained = json.loads((run / "report.json").read_text())
    arm = trained["config"]["arm"]
    result = runner.invoke(app, ["evaluate", str(log_path), "-o", str(tmp_path / "eval"),
                                 "--bundle", str(run / "bundle"), "--arm", arm, "--orders",
                                 str(trained["config"]["n_orders"]), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    mine = [(p["value"], p["accuracy"], p["mean_cost"]) for p in report["policies"]["learned"]]
    theirs = [(p["value"], p["accuracy"], p["mean_cost"])
              for p in trained["policies"]["learned"]]
    assert len(mine) == len(theirs) > 1
    for row, other in zip(mine, theirs, strict=True):
        assert row == pytest.approx(other, rel=1e-5)


@pytest.mark.slow
def test_evaluate_prints_skipped_baselines_the_oracle_and_the_verify_cost(tmp_path: Path
                                                                          ) -> None:
    log_path = tmp_path / "synthetic.parquet"
    write_log(generate(SyntheticConfig(n_queries=40), seed=1), log_path)
    result = runner.invoke(app, ["evaluate", str(log_path), "-o", str(tmp_path / "out"),
                                 "--orders", "2", "--no-difficulty", "--verify-cost", "0.5",
                                 "--cost-unit", "tokens"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    # difficulty-binned needs the predictor: skipped, with the reason
    assert "skipped difficulty-binned: needs the difficulty predictor's prior" in text
    assert "query-oracle:" in text and "fell back to the hindsight bound" in text
    assert "verify cost 0.5 per candidate (given)" in text
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["config"]["verify_cost"] == 0.5
    assert report["log"]["cost_unit"] == "tokens"
    assert report["extra"]["skipped"]["difficulty-binned"]
