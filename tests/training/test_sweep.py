"""``allocator sweep`` end to end on a real local Ray (2 CPUs on loopback), no mocks:
an interrupted sweep resumed, a crashed trial reported while the sweep goes on, MLflow
runs per trial, the best bundle loadable and scored as its trial reported."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import pytest

from allocator.errors import AllocatorError, ParameterError
from allocator.logs import read_log, write_log
from allocator.logs.synthetic import SyntheticConfig, generate
from tests.conftest import require_ray

pytestmark = pytest.mark.slow

TINY = {"total_timesteps": 2048, "n_steps": 1, "batch_size": 16, "n_epochs": 1,
        "warm_start_steps": 64, "n_orders": 2, "n_bootstrap": 20, "net_arch": [8],
        "seed": 3}


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sweep") / "log.parquet"
    write_log(generate(SyntheticConfig(n_queries=60), seed=1), path)
    return path


def spec(**sweep: object):
    from allocator.training.sweep_config import spec_from_dict

    # n_envs = 1 with n_steps = 1 makes rollouts of one step, on which PPO's update
    # fails: a trial that crashes after it started (valid settings, a failing run). It
    # runs first (one trial at a time), then the good one.
    return spec_from_dict({"sweep": {"trials": 1, "reports": 4, "max_concurrent": 1,
                                     "early_stopping": False, **sweep},
                           "base": TINY, "search": {"n_envs": {"grid": [1, 16]}}})


def interrupt_at_first_score():
    """A Tune callback that presses Ctrl-C (SIGINT to this process) once a trial's first
    validation score and checkpoint are saved, as a user would, mid-trial."""
    from ray import tune

    class Interrupt(tune.Callback):
        def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
            os.kill(os.getpid(), signal.SIGINT)

    return Interrupt()


def test_an_interrupted_sweep_resumes_and_a_crashed_trial_is_reported(
        local_ray, log_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    from mlflow import MlflowClient

    from allocator import load
    from allocator.training.rl.config import TrainConfig
    from allocator.training.sweep import SweepData, prepare_data, run_sweep, validation_score

    sweep_dir, the_spec = tmp_path / "sweep", spec()
    store = f"sqlite:///{tmp_path / 'shared-mlflow.db'}"  # a shared server's, say
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root there is ./mlruns
    before_uri = (os.environ.get("MLFLOW_TRACKING_URI"), mlflow.get_tracking_uri())
    first = run_sweep(log_path, sweep_dir, the_spec,
                      callbacks=[interrupt_at_first_score()])
    assert first["status"] == "interrupted" and first["bundle"] is None
    before = {t["config"]["n_envs"]: t for t in first["trials"]}
    assert before[1]["status"] == "error" and "ValueError" in before[1]["error"]
    assert before[16]["reports"] == 1 and before[16]["num_timesteps"] == 512
    with pytest.raises(ParameterError, match="--resume"):
        run_sweep(log_path, sweep_dir, the_spec)

    final = run_sweep(log_path, sweep_dir, the_spec, resume=True,
                      register="sweep-best", alias="champion")
    assert final["status"] == "finished"
    # Ray's MLflow callback set the process's MLflow store to the sweep's: put back.
    assert (os.environ.get("MLFLOW_TRACKING_URI"), mlflow.get_tracking_uri()) == before_uri
    trials = {t["config"]["n_envs"]: t for t in final["trials"]}
    assert trials[1] == before[1]  # the crashed trial is reported, not run again
    assert trials[16]["status"] == "completed" and trials[16]["num_timesteps"] == 2048
    assert final["best"]["trial_id"] == trials[16]["trial_id"]
    # It went on from its checkpoint at the interruption, not from scratch.
    from ray.tune import ExperimentAnalysis

    history = ExperimentAnalysis(str(sweep_dir / "tune")).trial_dataframes
    rows = history[trials[16]["trial_id"]]
    assert rows["training_iteration"].tolist() == [1, 2, 3, 4]
    assert rows["sweep/resumed_from_steps"].iloc[-1] >= 512

    # The learned bundle is the trial's: rescored here, it gives the trial's score.
    assert Path(final["bundle"]) == sweep_dir / "best-bundle"
    bundle = Path(final["learned_bundle"])  # best-bundle/ itself unless a baseline won
    data, _ = prepare_data(read_log(log_path), TrainConfig(**TINY))
    assert isinstance(data, SweepData)
    config = the_spec.trial_config({"n_envs": 16})
    assert validation_score(bundle, data, config)["validation_score"] == pytest.approx(
        trials[16]["validation_score"], abs=1e-12)
    allocator = load(bundle)
    assert allocator.bundle.manifest["training_config"]["n_envs"] == 16
    # ... and best-bundle/ holds what the safety net exported (the registered one).
    assert load(final["bundle"]).policy_kind == (
        "network" if final["exported"] == "learned" else "baseline")

    # Evaluated on the test queries, as allocator train reports.
    report = json.loads((sweep_dir / "report.json").read_text())
    assert report["config"]["test_queries"] == len(data.test)
    assert "learned" in report["policies"]
    assert report["extra"]["sweep"]["best_trial"] == trials[16]["trial_id"]
    assert (sweep_dir / "pareto.png").stat().st_size > 0

    # MLflow: one run per trial (each with its settings) and the best run.
    assert not (sweep_dir / "mlflow.db").exists()  # MLFLOW_TRACKING_URI was used
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("ttc-allocator-sweep")
    runs = client.search_runs([experiment.experiment_id])
    trial_runs = [r for r in runs if r.data.tags.get("stage") == "sweep-trial"]
    assert {r.data.params["n_envs"] for r in trial_runs} == {"16", "1"}
    best = [r for r in runs if r.data.tags.get("stage") == "sweep-best"]
    assert [r.info.run_id for r in best] == [final["mlflow"]["run_id"]]
    registered = load("models:/sweep-best@champion", dst_path=tmp_path / "registered")
    assert registered.bundle.manifest["training_config"]["n_envs"] == 16
    assert registered.policy_kind == load(final["bundle"]).policy_kind
    assert final["mlflow"]["registered"]["alias"] == "champion"
    summary = json.loads((sweep_dir / "sweep.json").read_text())
    assert [t["status"] for t in summary["trials"]] == [t["status"] for t in final["trials"]]


def test_the_best_trial_goes_through_the_safety_net(local_ray, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A learned policy made bad on purpose (trained, without a warm start, at prices so
    high that stopping at once is best, so it answers nothing): the sweep exports the
    best baseline instead, as allocator train does, and says so; the learned bundle is
    kept beside it."""
    from typer.testing import CliRunner

    from allocator import load
    from allocator.cli import app

    monkeypatch.chdir(tmp_path)
    # Enough validation queries (60) that the rule's noise margin is narrow.
    log_path = write_log(generate(SyntheticConfig(n_queries=240), seed=1),
                         tmp_path / "log.parquet")
    bad = {**TINY, "n_envs": 16, "warm_start_steps": 0, "lambda_range": [5.0, 10.0],
           "validation_fraction": 0.5}
    config = tmp_path / "sweep.toml"
    config.write_text("[sweep]\ntrials = 1\nreports = 1\nearly_stopping = false\n[base]\n"
                      + "".join(f"{k} = {json.dumps(v)}\n" for k, v in bad.items()),
                      encoding="utf-8")
    sweep_dir = tmp_path / "sweep"
    result = CliRunner().invoke(app, ["sweep", str(log_path), "-o", str(sweep_dir),
                                      "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    decision = summary["safety_net"]
    assert summary["exported"] == decision["exported"] == "baseline", decision["reason"]
    exported = load(sweep_dir / "best-bundle")
    assert exported.policy_kind == "baseline"
    assert exported.policy.describe() == decision["baseline"]["setting"]
    assert load(sweep_dir / "learned-bundle").policy_kind == "network"
    assert summary["learned_bundle"] == str(sweep_dir / "learned-bundle")
    report = json.loads((sweep_dir / "report.json").read_text())
    assert report["extra"]["sweep"]["exported"] == "baseline"
    assert report["extra"]["safety_net"]["baseline"] == decision["baseline"]
    assert "safety net: exported the baseline policy" in result.stderr


def test_an_unreachable_address_fails_within_seconds(local_ray) -> None:
    from allocator.training.sweep import CONNECT_TIMEOUT_S, connect_ray

    with socket.socket() as probe:  # a port nobody listens on any more
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(AllocatorError, match=rf"127\.0\.0\.1:{port}.*ray start --head"):
        connect_ray(f"127.0.0.1:{port}")
    assert CONNECT_TIMEOUT_S <= 10


def test_resuming_a_folder_without_a_sweep_is_refused(local_ray, log_path: Path,
                                                      tmp_path: Path) -> None:
    from allocator.training.sweep import run_sweep

    with pytest.raises(ParameterError, match="drop --resume"):
        run_sweep(log_path, tmp_path / "empty", spec(), resume=True)


def test_the_skip_is_an_error_where_ray_is_required() -> None:
    """CI (``make test``) sets ALLOCATOR_REQUIRE_RAY=1: Ray must be importable there."""
    if os.environ.get("ALLOCATOR_REQUIRE_RAY") == "1":
        assert require_ray() is not None
