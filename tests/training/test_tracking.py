"""MLflow logging of an evaluation, against a real SQLite tracking store under tmp_path."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from allocator.training.evaluation.pareto import headline
from allocator.training.evaluation.plots import plot_pareto
from allocator.training.evaluation.report import REPORT_NAME, read_report, write_report
from allocator.training.evaluation.results import EvaluationReport, PolicyPoint
from allocator.training.tracking import (
    evaluation_metrics,
    evaluation_params,
    log_evaluation,
    metric_key,
    resolve_tracking_uri,
)


def make_point(policy: str, knob: str | None, value, cost: float, accuracy: float, *,
               deployable: bool = True, difference: float | None = None) -> PolicyPoint:
    return PolicyPoint(
        policy=policy, knob=knob, value=value, description=policy, deployable=deployable,
        accuracy=accuracy, accuracy_ci=(accuracy - 0.02, accuracy + 0.02), mean_cost=cost,
        mean_cost_ci=(cost - 5, cost + 5), mean_samples=cost / 100, exhaustion_rate=0.25,
        difference=difference,
        difference_ci=None if difference is None else (difference - 0.01, difference + 0.01),
    )


def make_report() -> EvaluationReport:
    points = {
        "fixed-n": [make_point("fixed-n", "n", n, 100.0 * n, 0.5 + 0.04 * n) for n in (1, 4, 8)],
        "adaptive-consistency": [
            make_point("adaptive-consistency", "threshold", np.float64(t), c, a, difference=0.02)
            for t, c, a in ((0.9, 250.0, 0.7), (0.95, 400.0, 0.8))],
        "always-stop": [make_point("always-stop", None, None, 100.0, 0.54, difference=-0.28)],
        "query-oracle": [make_point("query-oracle", "n", n, 100.0 * n, 0.7 + 0.03 * n,
                                    deployable=False) for n in (1, 4, 8)],
        "broken": [make_point("broken", "n", 1, math.nan, 0.5)],
    }
    return EvaluationReport(
        log={"source": "toy.parquet", "fingerprint": "abc123", "queries": 50,
             "arms": ["small", "large"], "simulated": True},
        config={"seed": 7, "orders": 8, "bootstrap": {"replicates": 200, "level": 0.95}},
        points=points, reference="fixed-n(n=8)",
        headline=headline(points, target_accuracy=0.8),
    )


# SQLAlchemy's deprecation notice from inside MLflow's store: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")


@pytest.fixture(scope="module")
def store_folder(tmp_path_factory) -> Path:
    """One SQLite store for the module's tests (creating one takes seconds); each test logs
    to its own experiment."""
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture
def store(store_folder, tmp_path, monkeypatch, request) -> dict[str, str]:
    """The tracking URI and a per-test artifact root (and experiment name)."""
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # nothing may land in the repository
    return {"tracking_uri": f"sqlite:///{store_folder}/mlflow.db",
            "artifact_location": (tmp_path / "artifacts").as_uri(),
            "experiment": request.node.name}


@pytest.mark.slow
def test_log_evaluation_writes_params_metrics_tags_and_artifacts(tmp_path, store):
    from mlflow.tracking import MlflowClient

    report = make_report()
    folder = tmp_path / "evaluation"
    write_report(report, folder)
    plot_pareto(report, folder / "pareto.png")
    run_id = log_evaluation(report, folder, run_name="toy-eval", **store)

    client = MlflowClient(tracking_uri=store["tracking_uri"])
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "toy-eval"
    assert client.get_experiment(run.info.experiment_id).name == store["experiment"]

    params = run.data.params
    assert params["seed"] == "7"
    assert params["bootstrap.replicates"] == "200"
    assert params["log.fingerprint"] == "abc123"
    assert json.loads(params["log.arms"]) == ["small", "large"]

    metrics = run.data.metrics
    assert metrics["eval/fixed-n/n_8/accuracy"] == pytest.approx(0.82)
    assert metrics["eval/fixed-n/n_8/mean_cost_ci_high"] == pytest.approx(805.0)
    assert metrics["eval/adaptive-consistency/threshold_0.95/accuracy"] == pytest.approx(0.8)
    assert metrics["eval/adaptive-consistency/threshold_0.95/difference_ci_low"] == (
        pytest.approx(0.01))
    assert metrics["eval/always-stop/default/difference"] == pytest.approx(-0.28)
    assert metrics["eval/query-oracle/n_1/exhaustion_rate"] == pytest.approx(0.25)
    assert metrics["eval/headline/target_accuracy"] == pytest.approx(0.8)
    assert metrics["eval/headline/cost_to_reach/adaptive-consistency"] == pytest.approx(400.0)
    assert metrics["eval/headline/savings_vs_best_baseline/adaptive-consistency"] == (
        pytest.approx(report.headline.savings_vs_best_baseline["adaptive-consistency"]))
    assert metrics["eval/headline/best_baseline_cost"] == pytest.approx(
        report.headline.best_baseline["cost"])
    assert metrics["eval/headline/gap_closed/query-oracle"] == pytest.approx(1.0)
    # Missing numbers are not logged: fixed-n has no paired difference, "broken" no cost.
    assert "eval/fixed-n/n_8/difference" not in metrics
    assert "eval/broken/n_1/mean_cost" not in metrics
    assert metrics["eval/broken/n_1/accuracy"] == pytest.approx(0.5)
    assert "eval/headline/cost_to_reach/always-stop" not in metrics
    assert set(metrics) == set(evaluation_metrics(report))

    assert run.data.tags["log_fingerprint"] == "abc123"
    assert run.data.tags["simulated"] == "true"
    assert run.data.tags["reference"] == "fixed-n(n=8)"

    assert {a.path for a in client.list_artifacts(run_id)} == {REPORT_NAME, "pareto.png"}
    downloaded = Path(client.download_artifacts(run_id, REPORT_NAME, str(tmp_path / "dl")))
    assert read_report(downloaded) == read_report(folder)
    assert str(run.info.artifact_uri).startswith(store["artifact_location"])
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.slow
def test_log_evaluation_reads_the_environment_and_writes_a_missing_report(
        tmp_path, store, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["tracking_uri"])
    folder = tmp_path / "bare"
    folder.mkdir()
    # The default experiment, "ttc-allocator" (no other test of the module uses it).
    first = log_evaluation(make_report(), folder, artifact_location=store["artifact_location"])
    second = log_evaluation(make_report(), folder)
    assert (folder / REPORT_NAME).is_file()
    client = MlflowClient(tracking_uri=store["tracking_uri"])
    runs = {first, second}
    experiment = client.get_experiment_by_name("ttc-allocator")
    found = client.search_runs([experiment.experiment_id])
    assert {r.info.run_id for r in found} == runs
    assert [a.path for a in client.list_artifacts(second)] == [REPORT_NAME]
    assert not (tmp_path / "mlflow.db").exists()  # the environment's store, not the default


def test_tracking_uri_precedence(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path.as_posix()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/db.sqlite")
    assert resolve_tracking_uri() == "sqlite:////elsewhere/db.sqlite"
    assert resolve_tracking_uri("http://localhost:5000") == "http://localhost:5000"


def test_metric_names_are_sanitised():
    point = make_point("my/policy:v2", "lambda", 1e-3, 1.0, 0.5)
    assert metric_key(point) == "eval/my_policy_v2/lambda_0.001"
    assert metric_key(make_point("p", None, None, 1.0, 0.5)) == "eval/p/default"
    assert metric_key(make_point("..", "k", "..", 1.0, 0.5)) == "eval/_/k_.."


def test_every_metric_and_param_name_passes_mlflow_validation():
    from mlflow.utils.validation import _validate_metric_name, _validate_param_name

    report = make_report()
    odd = [make_point("odd policy/1", "temp:x", v, 1.0, 0.5) for v in ("a=b", "a:b", "a/b")]
    report.points["odd policy/1"] = odd
    metrics = evaluation_metrics(report)
    for name in metrics:
        _validate_metric_name(name)
    for name in evaluation_params(report):
        _validate_param_name(name)
    # Three values that sanitise to the same name stay three metrics.
    assert {k for k in metrics if k.endswith("/accuracy") and "odd" in k} == {
        "eval/odd policy_1/temp_x_a_b/accuracy",
        "eval/odd policy_1/temp_x_a_b_2/accuracy",
        "eval/odd policy_1/temp_x_a_b_3/accuracy",
    }


def test_headline_names_that_collide_stay_separate():
    report = make_report()
    report.headline.gap_closed.update({"a:b": 0.25, "a=b": 0.75})
    metrics = evaluation_metrics(report)
    assert metrics["eval/headline/gap_closed/a_b"] == 0.25
    assert metrics["eval/headline/gap_closed/a_b_2"] == 0.75


def test_importing_the_tracking_module_does_not_import_mlflow():
    code = ("import sys, allocator.training.tracking; "
            "assert 'mlflow' not in sys.modules, 'mlflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True,
                   cwd=Path(__file__).resolve().parents[2])
