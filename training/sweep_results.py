"""The results of ``allocator sweep`` (:mod:`allocator.training.sweep`): every trial's status and
scores read back from Ray's experiment folder, the best trial chosen, exported,
calibrated and evaluated on the test queries, ``sweep.json``, and the MLflow side (the
sweep's store, the best trial's run and registration).

Kept apart from :mod:`allocator.training.sweep` (the search itself) so that each file holds one
concept; it imports Ray only to read the experiment's trials.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from allocator.training.sweep_config import SweepSpec
from allocator.training.sweep_data import SweepData

__all__ = ["BEST_BUNDLE", "METRIC", "best_trial", "ensure_experiment", "evaluate_best",
           "export_best", "log_best", "mlflow_globals_kept", "read_trials",
           "safety_net_best", "sweep_tracking_uri", "trial_statuses", "write_summary"]

#: The metric trials report and ASHA and the best-trial choice maximise.
METRIC = "validation_score"
#: Where the best trial's bundle goes inside SWEEP_DIR.
BEST_BUNDLE = "best-bundle"


# ------------------------------------------------------------------ MLflow
def sweep_tracking_uri(sweep_dir: Path, tracking_uri: str | None = None) -> str:
    """``tracking_uri``, else ``MLFLOW_TRACKING_URI``, else ``SWEEP_DIR/mlflow.db``."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    return uri or f"sqlite:///{(sweep_dir.resolve() / 'mlflow.db').as_posix()}"


def ensure_experiment(uri: str, name: str, sweep_dir: Path) -> str:
    """The experiment's id; a new one keeps its artifacts in ``SWEEP_DIR/mlartifacts``
    when the store is the sweep's own sqlite file."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    own = uri == f"sqlite:///{(sweep_dir.resolve() / 'mlflow.db').as_posix()}"
    location = (sweep_dir.resolve() / "mlartifacts").as_uri() if own else None
    return client.create_experiment(name, artifact_location=location)


def log_best(uri: str, experiment_id: str, trial: Mapping[str, Any], report: Any,
              files: list[Path], bundle: Path, register: str | None, alias: str
              ) -> dict[str, Any]:
    """One more MLflow run for the sweep's result: the best trial's settings, its test
    evaluation and bundle; registered as a new version of ``register`` if given."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    from allocator.training.tracking import evaluation_metrics, log_bundle_model

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = client.create_run(experiment_id, run_name=f"best-{trial['trial_id']}",
                            tags={"stage": "sweep-best", "trial_id": trial["trial_id"]})
    run_id = run.info.run_id
    params = [Param(f"train.{k}", json.dumps(v)) for k, v in trial["config"].items()]
    metrics = [Metric(k, float(v), 0, 0) for k, v in evaluation_metrics(report).items()
               if math.isfinite(v)]
    for start in range(0, max(len(params), len(metrics)), 100):
        client.log_batch(run_id, params=params[start:start + 100],
                         metrics=metrics[start:start + 100])
    for path in files:
        client.log_artifact(run_id, str(path))
    client.log_artifacts(run_id, str(bundle), artifact_path="bundle")
    registered = None
    if register:
        model_uri = log_bundle_model(bundle, run_id=run_id, tracking_uri=uri,
                                     registered_name=register, alias=alias)
        version = client.get_model_version_by_alias(register, alias)
        registered = {"name": register, "version": int(version.version), "alias": alias,
                      "uri": model_uri}
    client.set_terminated(run_id, status="FINISHED")
    return {"run_id": run_id, "registered": registered}


@contextlib.contextmanager
def mlflow_globals_kept() -> Any:
    """Put MLflow's process-wide tracking and registry URIs, and the
    ``MLFLOW_TRACKING_URI`` variable, back as they were: Ray's ``MLflowLoggerCallback``
    sets them to the sweep's store, which would send this process's later MLflow calls
    (another sweep, an evaluation) there."""
    from mlflow.tracking._model_registry import utils as registry
    from mlflow.tracking._tracking_service import utils as tracking

    variable = os.environ.get("MLFLOW_TRACKING_URI")
    uris = (tracking._tracking_uri, registry._registry_uri)
    try:
        yield
    finally:
        tracking._tracking_uri, registry._registry_uri = uris
        if variable is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = variable


# ------------------------------------------------------------------ the results
def trial_statuses(experiment: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """Tune's status of every trial (TERMINATED, ERROR, PENDING, PAUSED...) and its
    settings, by id (a trial that never reported has no settings in its result)."""
    from ray.tune import ExperimentAnalysis

    return {trial.trial_id: (trial.status, dict(trial.config))
            for trial in ExperimentAnalysis(str(experiment)).trials}


def _status(result: Any, tune_status: str | None) -> str:
    if result.error is not None or tune_status == "ERROR":
        return "error"
    if (result.metrics or {}).get("final"):
        return "completed"
    return "stopped early" if tune_status == "TERMINATED" else "unfinished"


def read_trials(grid: Any, statuses: Mapping[str, tuple[str, dict[str, Any]]]
            ) -> list[dict[str, Any]]:
    """Every trial of the result grid, in trial order: settings, status, scores."""
    rows = []
    for result in grid:
        metrics = result.metrics or {}
        trial_id = metrics.get("trial_id") or _trial_id(result.path, statuses)
        status, config = statuses.get(trial_id, (None, dict(result.config or {})))
        rows.append({"trial_id": trial_id, "config": config,
                     "status": _status(result, status),
                     METRIC: metrics.get(METRIC), "reports": metrics.get("training_iteration"),
                     "num_timesteps": metrics.get("num_timesteps"),
                     "error": None if result.error is None else _first_line(result.error),
                     "_checkpoint": result.checkpoint})
    return sorted(rows, key=lambda row: row["trial_id"])


def _trial_id(path: str, statuses: Mapping[str, Any]) -> str:
    """The id of the trial whose folder is ``path`` (a trial that never reported)."""
    name = Path(path).name
    return next((trial_id for trial_id in statuses if trial_id in name), name)


def _first_line(error: BaseException) -> str:
    """The exception's own line (``ValueError: ...``), out of Ray's traceback."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    named = [line for line in lines if re.match(r"^[\w.]+(Error|Exception)\b.*:", line)]
    return (named or lines or [type(error).__name__])[-1][:500]


def best_trial(trials: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The completed trial with the highest final validation score (ties: the first in
    trial order); None when no trial completed."""
    completed = [t for t in trials if t["status"] == "completed"]
    if not completed:
        return None
    return max(completed, key=lambda t: (t[METRIC], -trials.index(t)))


def export_best(data: SweepData, trial: Mapping[str, Any], sweep_dir: Path,
                say: Callable[[str], None]) -> tuple[Path, float]:
    """Calibrate the trial's final bundle (from its last Ray checkpoint) on the
    validation queries into a new bundle at ``SWEEP_DIR/best-bundle`` (bundles are
    immutable: the trial's is only read), replacing an earlier sweep's bundle there (and
    refusing anything else at that path).

    Returns:
        The bundle's path and its calibrated lambda.
    """
    from allocator.training.rl.calibrate import calibrate_to_accuracy
    from allocator.training.rl.pipeline import _remove_bundle_dir

    target = sweep_dir / BEST_BUNDLE
    _remove_bundle_dir(target)  # an earlier run's: refuses anything but a bundle
    say(f"calibrating the best bundle on the {len(data.validation)} validation queries")
    with tempfile.TemporaryDirectory(prefix="ttc-best-") as folder:
        restored = Path(trial["_checkpoint"].to_directory(folder))
        lam = calibrate_to_accuracy(restored / "bundle", data.log, data.validation,
                                    output=target, prior=data.prior, seed=data.seed,
                                    verify_cost=data.verify_cost)
    return target, lam


def safety_net_best(data: SweepData, spec: SweepSpec, trial: Mapping[str, Any],
                    bundle: Path, predictor: Any, say: Callable[[str], None]
                    ) -> tuple[Any, Path, Path]:
    """``allocator train``'s safety net on the best trial's bundle
    (:func:`allocator.training.rl.pipeline.apply_safety_net`): the learned policy against every
    baseline on the validation queries (their orders seeded from the split's seed, as
    the trials' scores); where a baseline wins, ``best-bundle/`` becomes its bundle and
    the learned one moves to ``learned-bundle/`` beside it.

    Returns:
        The decision (None where the trial's ``safety_net`` is false), the exported
        bundle's path and the learned bundle's path.
    """
    import dataclasses

    from allocator.bundle import read_bundle
    from allocator.training.rl.pipeline import apply_safety_net

    config = spec.trial_config(trial["config"])
    if not config.safety_net:
        return None, bundle, bundle
    cost_unit = float(read_bundle(bundle).manifest["cost_unit"])
    return apply_safety_net(data.log, bundle, data.fit, data.validation, data.prior,
                            predictor, dataclasses.replace(config, seed=data.seed),
                            cost_unit, None, say)


def evaluate_best(data: SweepData, spec: SweepSpec, trial: Mapping[str, Any],
                  bundle: Path, sweep_dir: Path, say: Callable[[str], None],
                  safety: Any = None, lam: float | None = None) -> tuple[Any, list[Path]]:
    """Evaluate the best trial's learned bundle (calibrated by :func:`export_best`, whose
    lambda is ``lam``) on the test queries beside every baseline, and write report.json
    and the plots (with the safety net's decision, as ``allocator train``'s report:
    ``extra.safety_net`` and ``extra.sweep.exported``)."""
    import dataclasses

    from allocator.training.evaluation.evaluate import EvaluationConfig, evaluate
    from allocator.training.evaluation.plots import plot_cost_distribution, plot_pareto
    from allocator.training.evaluation.report import write_report

    config = spec.trial_config(trial["config"])
    say(f"evaluating the best trial ({trial['trial_id']}) on {len(data.test)} test queries")
    evaluation = EvaluationConfig(arm=config.arm, test_fraction=config.test_fraction,
                                  n_orders=config.n_orders, seed=data.seed,
                                  n_bootstrap=config.n_bootstrap, bundle=str(bundle),
                                  learned_lambdas=config.evaluation_lambdas(),
                                  verify_cost=data.verify_cost)
    report, chosen = evaluate(data.log, evaluation, prior=data.prior, progress=say)
    sweep = {"best_trial": trial["trial_id"], "best_config": trial["config"],
             "validation_score": trial[METRIC], "calibrated_lambda": lam,
             "exported": "learned" if safety is None else safety.exported}
    report = dataclasses.replace(report, extra={
        **report.extra, "sweep": sweep,
        **({"safety_net": safety.to_dict()} if safety is not None else {})})
    files = [write_report(report, sweep_dir), plot_pareto(report, sweep_dir / "pareto.png"),
             plot_cost_distribution(chosen, sweep_dir / "cost_distribution.png",
                                    simulated=data.log.simulated)]
    return report, files


def write_summary(sweep_dir: Path, spec: SweepSpec, trials: list[dict[str, Any]],
                   extra: Mapping[str, Any]) -> Path:
    """Write ``SWEEP_DIR/sweep.json``: the spec, every trial (settings, status, score,
    error) and ``extra``; its path."""
    from allocator.training.evaluation.report import json_safe

    rows = [{k: v for k, v in t.items() if not k.startswith("_")} for t in trials]
    path = sweep_dir / "sweep.json"
    path.write_text(json.dumps(json_safe({"spec": spec.describe(), "trials": rows, **extra}),
                               indent=2) + "\n", encoding="utf-8")
    return path
