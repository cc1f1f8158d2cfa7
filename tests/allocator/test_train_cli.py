"""``allocator train`` end to end: bundle, report, plots, checkpoints and the MLflow run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from allocator.cli import app

runner = CliRunner()

#: A tiny run: 64 sub-environments, rollouts of 1,024 steps, a short evaluation.
TINY = """\
n_envs = 64
n_steps = 16
batch_size = 512
n_orders = 3
n_bootstrap = 200
checkpoint_every = 2048
eval_lambdas = [0.001, 0.01, 0.1]
"""

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A simulated log of 60 queries and the tiny config, with MLflow in tmp_path."""
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    log_path = tmp_path / "synthetic.parquet"
    result = runner.invoke(app, ["synth", "-o", str(log_path), "--queries", "60"])
    assert result.exit_code == 0, result.output
    config = tmp_path / "config.toml"
    config.write_text(TINY)
    return log_path, config


@pytest.mark.slow
def test_train_writes_bundle_report_plots_and_an_mlflow_run(tiny: tuple[Path, Path],
                                                            tmp_path: Path) -> None:
    log_path, config = tiny
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["train", str(log_path), "-o", str(run_dir), "--config",
                                 str(config), "--timesteps", "4096", "--seed", "3", "--json",
                                 "--mlflow", "--register", "ttc-test", "--verify-cost",
                                 "0.75"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)

    manifest = json.loads((run_dir / "bundle" / "manifest.json").read_text())
    report = json.loads((run_dir / "report.json").read_text())
    for png in ("pareto.png", "cost_distribution.png"):
        assert (run_dir / png).read_bytes()[:8] == PNG
    assert (run_dir / "checkpoints" / "maskable_ppo_4096" / "checkpoint.json").is_file()
    assert "seed = 3" in (run_dir / "config.toml").read_text()
    assert "verify_cost = 0.75" in (run_dir / "config.toml").read_text()
    assert summary["report"] == report
    assert summary["training"]["num_timesteps"] == 4096

    learned = report["policies"]["learned"]
    assert [p["value"] for p in learned] == [0.001, 0.01, 0.1]
    assert all(p["knob"] == "lambda" and p["deployable"] for p in learned)
    for baseline in ("fixed-n", "adaptive-consistency", "esc", "difficulty-binned"):
        assert report["policies"][baseline], baseline
    assert "learned" in report["headline"]["cost_to_reach"]
    assert report["config"]["seed"] == 3
    assert report["extra"]["training"]["num_timesteps"] == 4096

    import allocator
    from allocator.learned import LearnedPolicy

    # The safety net exported the learned policy or a baseline, and says which; the
    # learned bundle is kept either way.
    exported = report["extra"]["safety_net"]["exported"]
    assert summary["training"]["exported"] == exported
    kind = allocator.load(run_dir / "bundle").policy_kind
    assert kind == {"learned": "network", "baseline": "baseline"}[exported]
    learned_dir = run_dir / ("bundle" if exported == "learned" else "learned-bundle")
    assert summary["learned_bundle"] == str(learned_dir)
    assert LearnedPolicy.from_bundle(learned_dir).bundle.arms == ("large", "small")
    assert f"safety net: {report['extra']['safety_net']['reason']}"[:40] in " ".join(
        result.output.split())

    # The learned policy is calibrated by default on the validation split (8 of the 30
    # training queries, held out of training): its default lambda is useful as is.
    learned_manifest = json.loads((learned_dir / "manifest.json").read_text())
    training = summary["training"]
    assert (training["fit_queries"], training["validation_queries"]) == (22, 8)
    assert learned_manifest["validation"] == {"fraction": 0.25, "seed": 3, "queries": 8}
    assert learned_manifest["calibrated_lambda"] == training["calibration"]["lambda"]
    assert "majority-of-all" in learned_manifest["calibration"]["goal"]
    assert learned_manifest["calibration"]["n_queries"] == 8
    import allocator

    oracle = allocator.load(learned_dir)
    assert oracle.default_lambda == learned_manifest["calibrated_lambda"]
    assert "calibration: majority-of-all" in oracle.defaults()["lambda"]["source"]
    assert set(learned_manifest["max_pool"]) == {"large", "small"}
    assert "empty text" in learned_manifest["default_prior"]["source"]

    from mlflow import MlflowClient

    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("ttc-allocator").experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.info.run_id == summary["mlflow_run_id"] == manifest["run_id"]
    assert run.data.params["train.seed"] == "3"
    assert run.data.params["train.total_timesteps"] == "4096"
    metrics = run.data.metrics
    assert "train/mean_return" in metrics and "train/entropy_loss" in metrics
    assert any(key.startswith("eval/learned/lambda_0.01/") for key in metrics)
    assert any(key.startswith("eval/adaptive-consistency/") for key in metrics)
    history = client.get_metric_history(run.info.run_id, "train/mean_return")
    assert len(history) == 4 and [m.step for m in history] == [1024, 2048, 3072, 4096]
    # The learning curve beside the report holds exactly what MLflow recorded.
    curve = json.loads((run_dir / "learning_curve.json").read_text())
    assert [(r["timesteps"], r["train/mean_return"]) for r in curve["rows"]
            if "train/mean_return" in r] == [(m.step, pytest.approx(m.value)) for m in history]
    scores = client.get_metric_history(run.info.run_id, "validation/score")
    assert [(r["timesteps"], r["validation/score"]) for r in curve["rows"]
            if "validation/score" in r] == [(m.step, pytest.approx(m.value)) for m in scores]
    selection = report["extra"]["training"]["selection"]
    assert [[m.step, pytest.approx(m.value)] for m in scores] == selection["scores"]
    assert selection["best_score"] == pytest.approx(max(m.value for m in scores))
    assert (run_dir / "learning_curve.png").read_bytes()[:8] == PNG
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.json", "pareto.png", "cost_distribution.png", "config.toml",
            "learning_curve.json", "learning_curve.png", "bundle"} <= artifacts
    bundle_files = {Path(a.path).name for a in client.list_artifacts(run.info.run_id,
                                                                      "bundle")}
    assert "manifest.json" in bundle_files

    # The bundle is registered under an alias: models:/NAME@ALIAS holds it.
    assert summary["registered"] == {"name": "ttc-test", "version": 1, "alias": "candidate",
                                     "uri": "models:/ttc-test@candidate"}
    version = client.get_model_version_by_alias("ttc-test", "candidate")
    assert version.run_id == run.info.run_id
    import mlflow.artifacts

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri="models:/ttc-test@candidate",
                                                     dst_path=str(tmp_path / "download")))
    # The registered model is the from-code pyfunc; the bundle is one of its artifacts.
    assert json.loads((local / "artifacts" / "bundle" / "manifest.json").read_text()) == manifest


@pytest.mark.slow
def test_train_refuses_a_used_run_dir_and_resumes_it(tiny: tuple[Path, Path],
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    log_path, config = tiny
    run_dir = tmp_path / "run"
    # MLflow is opt-in (--mlflow): by default nothing is tracked, no mlflow.db appears.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    base = ["train", str(log_path), "-o", str(run_dir), "--config", str(config), "--json"]
    result = runner.invoke(app, [*base, "--timesteps", "2048"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["mlflow_run_id"] is None
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()

    result = runner.invoke(app, [*base, "--timesteps", "4096"])
    assert result.exit_code == 2
    assert "--resume" in result.output

    result = runner.invoke(app, [*base, "--timesteps", "4096", "--resume"])
    assert result.exit_code == 0, result.output
    training = json.loads(result.stdout)["training"]
    assert training["num_timesteps"] == 4096
    assert training["resumed_from"] == "maskable_ppo_2048"


def test_train_refuses_to_register_without_mlflow(tiny: tuple[Path, Path],
                                                 tmp_path: Path) -> None:
    log_path, _ = tiny
    result = runner.invoke(app, ["train", str(log_path), "-o", str(tmp_path / "run"),
                                 "--no-mlflow", "--register", "ttc-test"])
    assert result.exit_code == 2
    assert "register" in result.output
    assert not (tmp_path / "run").exists()


def test_train_refuses_an_unknown_config_key(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    log_path, config = tiny
    config.write_text("n_env = 64\n")
    result = runner.invoke(app, ["train", str(log_path), "-o", str(tmp_path / "run"),
                                 "--config", str(config), "--no-mlflow"])
    assert result.exit_code == 2
    assert "n_env" in result.output and "n_envs" in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_calibrate_stores_the_lambda_that_meets_a_budget(tiny: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    """``allocator calibrate`` on the training log uses its validation split (never the
    test queries); on another log, all of it; the lambda stored in the new bundle
    (``--output``; the source is only read, an existing output refused without
    ``--overwrite``) becomes its oracle's default. ``allocator train --no-calibrate``
    leaves the bundle uncalibrated, and ``--target-cost`` calibrates to a budget."""
    import allocator

    log_path, config = tiny
    run_dir = tmp_path / "run"
    # --no-safety-net: calibration sets a learned policy's lambda (the bundle is learned).
    result = runner.invoke(app, ["train", str(log_path), "-o", str(run_dir), "--config",
                                 str(config), "--timesteps", "4096", "--no-mlflow",
                                 "--no-calibrate", "--no-safety-net"])
    assert result.exit_code == 0, result.output
    bundle = run_dir / "bundle"
    assert allocator.load(bundle).calibration_table is None
    assert allocator.load(bundle).policy_kind == "network"
    assert "not calibrated" in result.output
    source = (bundle / "manifest.json").read_bytes()
    new = tmp_path / "calibrated"
    result = runner.invoke(app, ["calibrate", str(bundle), str(log_path), "--target-cost",
                                 "3", "--json", "-o", str(new)])
    assert result.exit_code == 0, result.output
    calibrated = json.loads(result.stdout)
    assert (bundle / "manifest.json").read_bytes() == source  # only read
    assert allocator.load(bundle).calibration_table is None
    assert calibrated["bundle"] == str(new)
    assert calibrated["source_sha256"] == hashlib.sha256(source).hexdigest()
    assert "30 held-out queries of the training log" in calibrated["queries"]  # no split
    met = abs(calibrated["mean_cost"] - 3) <= 0.05 * 3
    assert calibrated["within_tolerance"] == met
    assert met or calibrated["warnings"]  # a miss is said, never silent
    assert [calibrated["lambda"], calibrated["mean_cost"]] in calibrated["table"]
    oracle = allocator.load(new)  # the new bundle verifies
    assert oracle.default_lambda == calibrated["lambda"]
    assert oracle.bundle.manifest["calibrated_from"]["sha256"] == calibrated["source_sha256"]
    inspected = runner.invoke(app, ["inspect", str(new), "--json"])
    assert json.loads(inspected.stdout)["calibrated_from"] == calibrated["source_sha256"]

    other = tmp_path / "validation.parquet"
    assert runner.invoke(app, ["synth", "-o", str(other), "--queries", "40",
                               "--seed", "7"]).exit_code == 0
    result = runner.invoke(app, ["calibrate", str(bundle), str(other), "--target-cost", "3",
                                 "--json", "-o", str(new)])
    assert result.exit_code != 0 and "--overwrite" in result.output  # NEW exists
    result = runner.invoke(app, ["calibrate", str(bundle), str(other), "--target-cost", "3",
                                 "--json", "-o", str(new), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert "all 40 queries of the log" in json.loads(result.stdout)["queries"]
    assert allocator.load(new).bundle.manifest["calibration"]["n_queries"] == 40
    result = runner.invoke(app, ["calibrate", str(tmp_path / "nope"), str(other),
                                 "--target-cost", "3", "-o", str(tmp_path / "n2")])
    assert result.exit_code != 0 and "nope" in result.output
    result = runner.invoke(app, ["calibrate", str(bundle), str(other)])
    assert result.exit_code != 0 and "--output" in result.output  # required


@pytest.mark.slow
def test_train_calibrates_to_a_target_cost_on_validation_queries(tiny: tuple[Path, Path],
                                                                 tmp_path: Path) -> None:
    import allocator

    log_path, config = tiny
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["train", str(log_path), "-o", str(run_dir), "--config",
                                 str(config), "--timesteps", "2048", "--no-mlflow",
                                 "--target-cost", "3", "--no-safety-net"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((run_dir / "bundle" / "manifest.json").read_text())
    assert manifest["calibration"]["target_mean_cost"] == 3.0
    assert manifest["calibration"]["n_queries"] == 8
    # exported to a temporary folder, then calibrated into RUN_DIR/bundle (a new bundle)
    assert len(manifest["calibrated_from"]["sha256"]) == 64
    assert sorted(p.name for p in run_dir.iterdir() if "bundle" in p.name) == ["bundle"]
    bundle = run_dir / "bundle"
    result = runner.invoke(app, ["calibrate", str(bundle), str(log_path), "--json",
                                 "-o", str(tmp_path / "to-accuracy")])
    assert result.exit_code == 0, result.output
    calibrated = json.loads(result.stdout)
    assert "8 validation queries of the training log" in calibrated["queries"]
    assert allocator.load(tmp_path / "to-accuracy").default_lambda == calibrated["lambda"]
    assert allocator.load(bundle).bundle.manifest["calibration"]["target_mean_cost"] == 3.0
    result = runner.invoke(app, ["train", str(log_path), "-o", str(tmp_path / "other"),
                                 "--no-mlflow", "--no-calibrate", "--target-cost", "3"])
    assert result.exit_code != 0 and "target_cost" in result.output


@pytest.mark.slow
def test_train_prices_latency_and_exports_the_widths(tiny: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    """``--mu`` and ``--widths`` on a timed log: the bundle's layout has the widths, the
    MLflow run records both, and the evaluation reports latency for every replayed
    policy (the learned one replayed with its wide actions)."""
    from allocator.logs import read_log, write_log
    from tests.timed_logs import with_timing

    log_path, config = tiny
    timed_path = tmp_path / "timed.parquet"
    write_log(with_timing(read_log(log_path), seed=4), timed_path)
    run_dir = tmp_path / "run-latency"
    result = runner.invoke(app, ["train", str(timed_path), "-o", str(run_dir), "--config",
                                 str(config), "--timesteps", "2048", "--json", "--mlflow",
                                 "--no-safety-net", "--mu", "0.02", "--widths", "1,2,4"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((run_dir / "bundle" / "manifest.json").read_text())
    assert manifest["widths"] == [1, 2, 4]
    assert manifest["actions"][-2:] == [f"SAMPLE({arm})x4" for arm in manifest["arms"]]
    assert len(manifest["actions"]) == 2 + 3 + 2 * 2  # STOP, 2 SAMPLE, REFINE, VERIFY, x2, x4
    report = json.loads((run_dir / "report.json").read_text())
    assert report["log"]["latency"].startswith("seconds")
    for name in ("learned", "fixed-n", "adaptive-consistency"):
        for point in report["policies"][name]:
            assert 0 < point["p50_latency"] <= point["p95_latency"], name
            assert point["mean_latency_ci"][0] <= point["mean_latency"]
    assert "mu = 0.02" in (run_dir / "config.toml").read_text()

    from mlflow import MlflowClient

    client = MlflowClient()
    run = client.search_runs([client.get_experiment_by_name("ttc-allocator").experiment_id])[0]
    assert run.data.params["train.mu"] == "0.02"
    assert run.data.params["train.widths"] == "[1, 2, 4]"


def test_train_refuses_mu_on_an_untimed_log_and_bad_widths(tiny: tuple[Path, Path],
                                                           tmp_path: Path) -> None:
    log_path, config = tiny
    result = runner.invoke(app, ["train", str(log_path), "-o", str(tmp_path / "r1"),
                                 "--config", str(config), "--timesteps", "1024",
                                 "--mu", "0.1"])
    assert result.exit_code != 0
    assert "mu" in result.output and "started_at" in result.output
    result = runner.invoke(app, ["train", str(log_path), "-o", str(tmp_path / "r2"),
                                 "--config", str(config), "--widths", "1,x"])
    assert result.exit_code != 0 and "--widths" in result.output
    result = runner.invoke(app, ["train", str(log_path), "-o", str(tmp_path / "r3"),
                                 "--config", str(config), "--widths", "2,4"])
    assert result.exit_code != 0 and "widths" in result.output
