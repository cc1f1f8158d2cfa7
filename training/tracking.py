"""MLflow tracking of an evaluation: one run with its settings, numbers, report and plots.

:func:`log_evaluation` writes the run (its docstring lists the params, metrics, tags and
artifacts) through an :class:`mlflow.MlflowClient` bound to one tracking URI, so logging
changes no global MLflow state (no ``set_tracking_uri``, no active run);
:func:`log_bundle_model` logs a policy bundle as a pickle-free pyfunc model and registers
it under an alias. MLflow is imported inside the functions, never at module import.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from allocator.training.evaluation.report import REPORT_NAME, json_safe, write_report
from allocator.training.evaluation.results import EvaluationReport, PolicyPoint

__all__ = [
    "DEFAULT_EXPERIMENT",
    "evaluation_metrics",
    "evaluation_params",
    "log_bundle_model",
    "log_evaluation",
    "metric_key",
    "resolve_tracking_uri",
]

#: The experiment runs go to unless told otherwise.
DEFAULT_EXPERIMENT = "ttc-allocator"

# MLflow's own limits (mlflow.utils.validation): per log_batch call, and value lengths.
_METRICS_PER_BATCH = 1000
_PARAMS_OR_TAGS_PER_BATCH = 100
_MAX_PARAM_LENGTH = 6000
_MAX_KEY_LENGTH = 250
# A metric name holds three or four segments: keep each short enough for the 250 limit.
_MAX_SEGMENT_LENGTH = 100

# Characters MLflow accepts in metric and param names on every platform (no colon: Windows).
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\- ]")


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """The tracking URI: the argument, else ``MLFLOW_TRACKING_URI``, else a SQLite store.

    The fallback is MLflow 3's own default, ``sqlite:///mlflow.db``, made absolute
    (``mlflow.db`` in the current directory), so that the run lands where the message
    says whatever directory MLflow resolves paths from later.
    """
    if tracking_uri:
        return tracking_uri
    from_environment = os.environ.get("MLFLOW_TRACKING_URI")
    if from_environment:
        return from_environment
    return f"sqlite:///{(Path.cwd() / 'mlflow.db').as_posix()}"


def _segment(text: object) -> str:
    """One path segment of a metric name: safe characters only, never empty, ``.`` or ``..``."""
    cleaned = _UNSAFE.sub("_", str(text)).strip()[:_MAX_SEGMENT_LENGTH]
    return "_" if cleaned in ("", ".", "..") else cleaned


def _value_text(value: Any) -> str:
    value = value.item() if hasattr(value, "item") else value
    return format(value, "g") if isinstance(value, float) else str(value)


def metric_key(point: PolicyPoint) -> str:
    """The metric prefix of one point: ``eval/<policy>/<knob>_<value>``."""
    setting = "default" if point.knob is None else f"{point.knob}={_value_text(point.value)}"
    return f"eval/{_segment(point.policy)}/{_segment(setting)}"


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _point_metrics(point: PolicyPoint) -> dict[str, float | None]:
    """The numbers of one point, by metric suffix."""
    low_high = {"accuracy": point.accuracy_ci, "mean_cost": point.mean_cost_ci,
                "difference": point.difference_ci}
    values: dict[str, float | None] = {
        "accuracy": point.accuracy, "mean_cost": point.mean_cost,
        "mean_samples": point.mean_samples, "exhaustion_rate": point.exhaustion_rate,
        "difference": point.difference,
    }
    for name, interval in low_high.items():
        low, high = interval if interval is not None else (None, None)
        values[f"{name}_ci_low"], values[f"{name}_ci_high"] = low, high
    return values


def _headline_metrics(report: EvaluationReport) -> list[tuple[str, float | None]]:
    """(name, value) pairs of the headline; names may repeat until made unique."""
    headline = report.headline
    best = headline.best_baseline
    pairs: list[tuple[str, float | None]] = [
        ("eval/headline/target_accuracy", headline.target_accuracy),
        ("eval/headline/best_baseline_cost", None if best is None else best["cost"])]
    for field in ("cost_to_reach", "savings_vs_best_baseline", "gap_closed"):
        for policy, value in getattr(headline, field).items():
            pairs.append((f"eval/headline/{field}/{_segment(policy)}", value))
    return pairs


def _unique(keys: Iterable[str]) -> list[str]:
    """Keys made unique by a ``_2``, ``_3``... suffix on repeats, in order."""
    seen: set[str] = set()
    out = []
    for key in keys:
        candidate, n = key, 1
        while candidate in seen:
            n += 1
            candidate = f"{key}_{n}"
        seen.add(candidate)
        out.append(candidate)
    return out


def evaluation_metrics(report: EvaluationReport) -> dict[str, float]:
    """Every finite number of the report, by MLflow metric name (see :func:`log_evaluation`)."""
    points = [point for points in report.points.values() for point in points]
    prefixes = _unique(metric_key(point) for point in points)
    values: dict[str, float | None] = {}
    for prefix, point in zip(prefixes, points, strict=True):
        for suffix, value in _point_metrics(point).items():
            values[f"{prefix}/{suffix}"] = value
    headline = _headline_metrics(report)
    names = _unique(name for name, _ in headline)
    values.update(zip(names, (value for _, value in headline), strict=True))
    return {key: finite for key, value in values.items()
            if (finite := _finite(value)) is not None}


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings flattened with dots; leaves as text (non-scalars as JSON)."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, f"{name}."))
        else:
            safe = json_safe(value)
            text = safe if isinstance(safe, str) else json.dumps(safe)
            out[_UNSAFE.sub("_", name)[:_MAX_KEY_LENGTH]] = text[:_MAX_PARAM_LENGTH]
    return out


def evaluation_params(report: EvaluationReport) -> dict[str, str]:
    """The config flattened, and the log description under ``log.``."""
    return {**_flatten(report.config), **_flatten(report.log, "log.")}


def _tags(report: EvaluationReport) -> dict[str, str]:
    return {
        "log_fingerprint": str(report.log.get("fingerprint", "")),
        "simulated": "true" if report.log.get("simulated") else "false",
        "log_source": str(report.log.get("source", "")),
        "reference": report.reference,
    }


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _experiment_id(client: Any, name: str, artifact_location: str | None) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location)


def _log_values(client: Any, run_id: str, metrics: dict[str, float],
                params: dict[str, str]) -> None:
    from mlflow.entities import Metric, Param

    timestamp = int(1000 * time.time())
    metric_list = [Metric(key, value, timestamp, 0) for key, value in metrics.items()]
    for chunk in _chunks(metric_list, _METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=chunk)
    for chunk in _chunks([Param(k, v) for k, v in params.items()], _PARAMS_OR_TAGS_PER_BATCH):
        client.log_batch(run_id, params=chunk)


def _artifacts(report: EvaluationReport, folder: Path) -> list[Path]:
    """report.json (written from ``report`` if the folder lacks it) and the folder's PNGs."""
    report_path = folder / REPORT_NAME
    if not report_path.is_file():
        write_report(report, folder)
    return [report_path, *sorted(folder.glob("*.png"))]


def log_evaluation(
    report: EvaluationReport,
    folder: str | os.PathLike[str],
    *,
    experiment: str = DEFAULT_EXPERIMENT,
    run_name: str | None = None,
    tracking_uri: str | None = None,
    artifact_location: str | None = None,
) -> str:
    """Log an evaluation to MLflow as one finished run.

    What a run holds:

    - **params**: the evaluation config, flattened with dots (``bootstrap.replicates``), and
      the log description under ``log.`` (lists and other non-scalars as JSON text).
    - **metrics** (step 0), per policy and knob value::

          eval/<policy>/<knob>_<value>/accuracy        (and accuracy_ci_low, accuracy_ci_high)
          eval/<policy>/<knob>_<value>/mean_cost       (and mean_cost_ci_low, mean_cost_ci_high)
          eval/<policy>/<knob>_<value>/mean_samples
          eval/<policy>/<knob>_<value>/exhaustion_rate
          eval/<policy>/<knob>_<value>/difference      (and difference_ci_low, difference_ci_high)

      (``default`` in place of ``<knob>_<value>`` for a policy without a knob), and the
      headline: ``eval/headline/target_accuracy``, ``eval/headline/best_baseline_cost`` and
      ``eval/headline/<cost_to_reach|savings_vs_best_baseline|gap_closed>/<policy>``.
      MLflow names may hold only letters, digits, ``_ - . /`` and spaces: any other
      character (``=`` included) becomes ``_``, a ``/`` inside a policy name or knob value
      becomes ``_`` too (the namespace keeps its depth), and points whose prefixes collide
      after that get a ``_2``, ``_3``... suffix on the ``<knob>_<value>`` segment
      (``eval/p/n_1_2/accuracy``). Missing numbers (None, NaN, infinities) are not logged;
      ``report.json`` keeps them as null.
    - **tags**: ``log_fingerprint``, ``simulated`` (``"true"``/``"false"``), ``log_source``,
      ``reference``.
    - **artifacts**: ``report.json`` and every ``*.png`` directly in the evaluation folder.

    Args:
        report: the evaluation report.
        folder: the evaluation's output folder: its ``report.json`` (written there from
            ``report`` if absent) and every ``*.png`` in it become artifacts.
        experiment: the experiment's name (created if needed).
        run_name: the run's name (MLflow picks one if None).
        tracking_uri: where to log; None: ``MLFLOW_TRACKING_URI``, else
            ``sqlite:///mlflow.db`` in the current directory (:func:`resolve_tracking_uri`).
        artifact_location: where a *new* experiment stores artifacts (MLflow's default
            for a SQLite store: ``./mlruns`` in the current directory); ignored for an
            existing experiment.

    Returns:
        The run's id. A failure while logging marks the run FAILED and re-raises.
    """
    from mlflow import MlflowClient

    folder = Path(folder)
    client = MlflowClient(tracking_uri=resolve_tracking_uri(tracking_uri))
    experiment_id = _experiment_id(client, experiment, artifact_location)
    run = client.create_run(experiment_id, run_name=run_name, tags=_tags(report))
    run_id = run.info.run_id
    try:
        _log_values(client, run_id, evaluation_metrics(report), evaluation_params(report))
        for path in _artifacts(report, folder):
            client.log_artifact(run_id, str(path))
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    return run_id


# ------------------------------------------------------------------ the bundle as a model
def _module_file(name: str) -> str:
    """A module's source file, found without importing it (this one imports mlflow)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:  # pragma: no cover - a broken install
        raise ImportError(f"cannot find {name}; reinstall ttc-allocator")
    return spec.origin


#: The models-from-code file: MLflow copies it into the model and runs it on load.
MODEL_CODE = Path(_module_file("allocator.mlflow_model"))
#: Distributions the pyfunc model needs beside the project itself (the runtime's, and the
#: difficulty predictor's when the bundle holds one).
_RUNTIME_REQUIREMENTS = ("mlflow", "numpy", "pandas", "pyarrow", "safetensors")
_PREDICTOR_REQUIREMENTS = ("scikit-learn", "lightgbm")


def _requirements(with_predictor: bool) -> list[str]:
    """The model's pip requirements, pinned to the installed versions."""
    from importlib.metadata import PackageNotFoundError, version

    names = _RUNTIME_REQUIREMENTS + (_PREDICTOR_REQUIREMENTS if with_predictor else ())
    pinned = []
    for name in names:
        try:
            pinned.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pinned.append(name)
    return pinned


def _register(client: Any, name: str, model_id: str, run_id: str, alias: str | None) -> str:
    """A new version of registered model ``name`` for a logged model; its URI."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(name, source=f"models:/{model_id}", run_id=run_id,
                                          model_id=model_id)
    if alias is None:
        return f"models:/{name}/{version.version}"
    client.set_registered_model_alias(name, alias, version.version)
    return f"models:/{name}@{alias}"


def log_bundle_model(
    bundle_dir: str | os.PathLike[str],
    *,
    run_id: str | None = None,
    tracking_uri: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    name: str = "allocator",
    registered_name: str | None = None,
    alias: str | None = None,
) -> str:
    """Log a bundle as an MLflow pyfunc model from code, and register it when asked.

    Registered under an alias, ``mlflow.pyfunc.load_model("models:/NAME@ALIAS")`` and
    ``mlflow models serve`` answer decisions, and ``allocator.load("models:/NAME@ALIAS")``
    finds the bundle in the model's artifacts.

    The model is :mod:`allocator.mlflow_model` (logged as a file, not a pickled
    instance) with the bundle directory as its artifact ``bundle``; its request format is
    that module's. It is written through an :class:`mlflow.MlflowClient` bound to one
    tracking URI (no global MLflow state changes, no active run).

    Args:
        bundle_dir: the bundle directory (verified by ``allocator.load`` first).
        run_id: the run the model belongs to (e.g. the training run). None: a new run in
            ``experiment``, finished once the model is logged.
        tracking_uri: the tracking (and registry) URI; None: :func:`resolve_tracking_uri`.
        experiment: the experiment of a new run (ignored with ``run_id``).
        name: the logged model's name.
        registered_name: register the model as a new version of this registered model.
        alias: the alias the new version gets (needs ``registered_name``; ``"latest"`` is
            reserved by MLflow).

    Returns:
        The model's URI: ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` when registered
        without an alias, else the logged model's ``models:/MODEL_ID``.

    Raises:
        ValueError: ``alias`` without ``registered_name``.
        BundleError: ``bundle_dir`` is not a valid bundle.
    """
    import mlflow.pyfunc
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    import allocator

    if alias is not None and registered_name is None:
        raise ValueError("log_bundle_model: alias needs registered_name")
    bundle = allocator.load(bundle_dir).bundle  # refuse a broken bundle before logging
    uri = resolve_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    own_run = run_id is None
    if own_run:
        run_id = client.create_run(_experiment_id(client, experiment, None),
                                   run_name=name).info.run_id
    experiment_id = client.get_run(run_id).info.experiment_id
    logged = client.create_logged_model(experiment_id, name=name, source_run_id=run_id,
                                        model_type="ttc-allocator")
    try:
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
        with tempfile.TemporaryDirectory(prefix="ttc-model-") as folder:
            local = Path(folder) / "model"
            mlflow.pyfunc.save_model(
                str(local), python_model=str(MODEL_CODE),
                artifacts={"bundle": str(Path(bundle_dir).resolve())},
                pip_requirements=_requirements(bundle.predictor_dir is not None),
                mlflow_model=Model(artifact_path=logged.artifact_location,
                                   model_uuid=logged.model_id, run_id=run_id,
                                   model_id=logged.model_id))
            client.log_model_artifacts(logged.model_id, str(local))
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
        model_uri = (_register(client, registered_name, logged.model_id, run_id, alias)
                     if registered_name else f"models:/{logged.model_id}")
    except BaseException:
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        if own_run:
            client.set_terminated(run_id, status="FAILED")
        raise
    if own_run:
        client.set_terminated(run_id, status="FINISHED")
    return model_uri
