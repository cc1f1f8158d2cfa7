"""``allocator train``: the whole path from a log to a bundle, a report and an MLflow run.

:func:`run_training` runs it: split the log by query, fit the difficulty predictor,
train MaskablePPO, export and calibrate the bundle, apply the safety net
(:func:`apply_safety_net`), evaluate on the held-out queries against every baseline,
write the report and plots, and track it all in MLflow when asked. Its docstring gives
the steps in order.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from allocator.errors import AllocatorError, ParameterError
from allocator.logs.table import AttemptLog
from allocator.training.progress import Progress, progress_or_silent
from allocator.training.rl.config import TrainConfig

__all__ = ["apply_safety_net", "run_training"]

#: Called with a short message before each step (:meth:`training.progress.Progress.message`).
Announce = Callable[[str], None]


# ------------------------------------------------------------------ the steps
def _split(log: AttemptLog, log_path: str | Path, config: TrainConfig
           ) -> tuple[np.ndarray, np.ndarray]:
    """The split by query; a log without a training query is refused (naming it)."""
    from allocator.training.evaluation.evaluate import (
        LogTooSmallError,
        check_split_size,
        split_queries,
    )

    train, test = split_queries(log.n_queries, config.test_fraction, config.seed)
    try:
        check_split_size(log, len(train), config.test_fraction)
    except LogTooSmallError as error:
        raise AllocatorError(error.message(str(log_path))) from None
    return train, test


def _export(model: Any, predictor: Any, log: AttemptLog, path: Path, config: TrainConfig,
            cost_unit: float, run_id: str | None, extra: Mapping[str, Any]) -> Path:
    """The bundle, with the difficulty predictor saved beside the policy."""
    from allocator.training.rl.export import export_bundle

    with tempfile.TemporaryDirectory(prefix="ttc-predictor-") as folder:
        return export_bundle(
            model, path, arms=list(log.arms), lambda_range=tuple(config.lambda_range),
            cost_unit=cost_unit, log_fingerprint=log.fingerprint(), run_id=run_id,
            predictor_dir=_saved_predictor(predictor, folder),
            extra={**dict(extra), **_predictor_note(predictor)}, widths=config.widths)


def _evaluate(log: AttemptLog, bundle: Path, test: np.ndarray, prior: np.ndarray,
              config: TrainConfig, progress: Announce) -> tuple[Any, dict[str, Any]]:
    """Every baseline, the learned policy swept along lambda, and the oracles, with the
    prior the policy was trained on (the same split: the evaluation does not refit it).

    Returns:
        The report, and per policy the episodes of one point for the cost plot.
    """
    from allocator.training.evaluation.evaluate import EvaluationConfig, evaluate

    evaluation = EvaluationConfig(arm=config.arm, test_fraction=config.test_fraction,
                                  n_orders=config.n_orders, seed=config.seed,
                                  n_bootstrap=config.n_bootstrap, bundle=str(bundle),
                                  learned_lambdas=config.evaluation_lambdas())
    report, chosen = evaluate(log, evaluation, progress=progress, prior=prior)
    if report.config["test_queries"] != len(test):  # pragma: no cover - a broken invariant
        raise RuntimeError("the evaluation's split differs from the training's")
    return report, chosen


def _evaluate_trained(log: AttemptLog, log_path: str | Path, run_dir: Path, bundle: Path,
                      test: np.ndarray, prior: np.ndarray, config: TrainConfig,
                      progress: Announce) -> tuple[Any, dict[str, Any]]:
    """:func:`_evaluate` after training; a failure keeps the run and says how to go on.

    Raises:
        AllocatorError: the evaluation failed; the message names the exported bundle,
            the kept run folder and the ``allocator evaluate`` command that evaluates it.
    """
    try:
        return _evaluate(log, bundle, test, prior, config, progress)
    except Exception as error:
        raise AllocatorError(
            f"training finished and the bundle was exported to {bundle}, but the "
            f"evaluation failed ({type(error).__name__}: {error}). The run folder "
            f"{run_dir} is kept (checkpoints, bundle, config.toml). Evaluate the bundle "
            f"on its own with: allocator evaluate {log_path} --bundle {bundle} --seed "
            f"{config.seed} --test-fraction {config.test_fraction} --orders "
            f"{config.n_orders} -o {run_dir / 'evaluation'}") from error


#: The manifest's ``difficulty_predictor`` field of a bundle trained without one.
NO_PREDICTOR = {"kind": "none", "note": "trained with --no-predictor: every query's prior "
                "is the constant uninformed prior (the replay environment's), whatever "
                "its text"}


def _prior(log: AttemptLog, log_path: str | Path, train: np.ndarray, test: np.ndarray,
           config: TrainConfig, *, predictor: bool, say: Announce) -> tuple[Any, np.ndarray]:
    """The difficulty predictor and the prior of every query (step 3); without the
    predictor, None and the constant uninformed prior.

    Raises:
        AllocatorError: the log is too small for the predictor (naming ``log_path``).
    """
    from allocator.session import UNINFORMED_PRIOR
    from allocator.training.evaluation.evaluate import LogTooSmallError, fit_prior

    if not predictor:
        say(f"no difficulty predictor: a constant prior {UNINFORMED_PRIOR:g} per arm")
        return None, np.full((log.n_queries, len(log.arms)), UNINFORMED_PRIOR)
    say("fitting the difficulty predictor (cross-fitted on the training queries)")
    try:
        return fit_prior(log, train, test, config.seed, test_fraction=config.test_fraction)
    except LogTooSmallError as error:
        raise AllocatorError(error.message(str(log_path))) from None


def _saved_predictor(predictor: Any, folder: str) -> Path | None:
    """The predictor saved under ``folder`` (None without one)."""
    return None if predictor is None else predictor.save(Path(folder) / "predictor")


def _predictor_note(predictor: Any) -> dict[str, Any]:
    """Manifest fields that say a bundle holds no predictor (none when it holds one)."""
    return {} if predictor is not None else {"difficulty_predictor": NO_PREDICTOR}


# ------------------------------------------------------------------ the safety net
#: Where the learned bundle goes when the safety net exports a baseline instead.
LEARNED_BUNDLE_DIR = "learned-bundle"


def _fit_queries(train: np.ndarray, config: TrainConfig, calibrating: bool
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The queries the policy trains on, and the validation queries that the safety net
    and the calibration use (none when neither runs: then it trains on every training
    query; none either with fewer than two training queries)."""
    if not (config.safety_net or calibrating):
        return train, train[:0]
    from allocator.training.rl.calibrate import validation_split

    return validation_split(train, config.seed, config.validation_fraction)


def _verify_cost(log: AttemptLog, config: TrainConfig) -> float:
    """The verifier's cost per candidate the policy trains with (``verify_cost``, else
    the log's): the safety net and the calibration replay with it too."""
    from allocator.envs.pools import log_verify_cost

    return log_verify_cost(log) if config.verify_cost is None else float(config.verify_cost)


def _selector(validation: np.ndarray, prior: np.ndarray, config: TrainConfig,
              monitor: Any) -> Any:
    """The validation model selection (:mod:`allocator.training.rl.selection`), or None (no
    validation queries, or ``select_every = 0``)."""
    if not len(validation) or config.selection_interval() == 0:
        return None
    from allocator.training.rl.selection import ValidationSelector

    return ValidationSelector(validation, prior, config.evaluation_lambdas(),
                              every=config.selection_interval(), n_orders=config.n_orders,
                              seed=config.seed, sink=monitor.record)


def apply_safety_net(log: AttemptLog, bundle: Path, fit: np.ndarray, validation: np.ndarray,
                     prior: np.ndarray, predictor: Any, config: TrainConfig,
                     cost_unit: float, run_id: str | None, say: Announce
                     ) -> tuple[Any, Path, Path]:
    """The safety net (step 5b): decide on the validation queries; where a baseline wins,
    move the learned bundle to ``learned-bundle/`` beside ``bundle`` and export the
    baseline's bundle at ``bundle``. ``allocator train`` and ``allocator sweep`` (its
    best trial) both run it.

    Args:
        log: the log.
        bundle: the learned policy's bundle directory (the exported one's place).
        fit: the queries the policy trained on (the baselines' settings are chosen there).
        validation: the validation queries.
        prior: the per-query prior the policy trained with.
        predictor: the fitted difficulty predictor (exported with a baseline bundle), or
            None.
        config: the training settings (seed of the validation orders, lambdas, orders,
            verify cost, lambda range).
        cost_unit: the cost unit the policy was trained in.
        run_id: the MLflow run recorded in a baseline bundle, or None.
        say: progress messages.

    Returns:
        The decision (:class:`~allocator.training.rl.safety_net.SafetyNetDecision`), the exported
        bundle's path, and the learned bundle's path.
    """
    from allocator.training.rl.safety_net import compare_on_validation

    say(f"safety net: the learned policy against every baseline on {len(validation)} "
        "validation queries")
    decision, policy = compare_on_validation(
        log, fit, validation, prior, str(bundle), config.evaluation_lambdas(),
        n_orders=config.n_orders, seed=config.seed, verify_cost=_verify_cost(log, config),
        progress=say)
    say(decision.reason)
    learned = bundle.parent / LEARNED_BUNDLE_DIR
    if decision.exported == "learned":
        _remove_bundle_dir(learned)  # a resumed run's earlier learned-bundle/ is stale
        return decision, bundle, bundle
    _remove_bundle_dir(learned)
    bundle.rename(learned)
    _export_baseline(policy, predictor, log, bundle, config, cost_unit, run_id,
                     {"training_config": config.to_dict(), "safety_net": decision.reason})
    return decision, bundle, learned


def _remove_bundle_dir(target: Path) -> None:
    """Remove the bundle directory ``target`` if there is one; refuse anything else."""
    import shutil

    from allocator.bundle import _is_bundle_dir

    if not target.exists():
        return
    if not _is_bundle_dir(target):
        raise ParameterError("allocator train", "RUN_DIR", f"a run folder whose "
                             f"{target.name}/ is a bundle or absent", str(target))
    shutil.rmtree(target)


def _export_baseline(policy: Any, predictor: Any, log: AttemptLog, path: Path,
                     config: TrainConfig, cost_unit: float, run_id: str | None,
                     extra: Mapping[str, Any]) -> Path:
    """The baseline bundle, with the difficulty predictor (the sessions' prior)."""
    from allocator.baseline_bundle import write_baseline_bundle

    with tempfile.TemporaryDirectory(prefix="ttc-predictor-") as folder:
        return write_baseline_bundle(
            path, policy, arms=list(log.arms), lambda_range=tuple(config.lambda_range),
            cost_unit=cost_unit, log_fingerprint=log.fingerprint(), run_id=run_id,
            predictor_dir=_saved_predictor(predictor, folder),
            extra={**dict(extra), **_predictor_note(predictor)})


def _write_outputs(report: Any, chosen: Mapping[str, Any], run_dir: Path, simulated: bool
                   ) -> list[Path]:
    from allocator.training.evaluation.plots import plot_cost_distribution, plot_pareto
    from allocator.training.evaluation.report import write_report

    return [write_report(report, run_dir),
            plot_pareto(report, run_dir / "pareto.png"),
            plot_cost_distribution(chosen, run_dir / "cost_distribution.png",
                                   simulated=simulated)]


# ---------------------------------------------------------------------- MLflow
class _Tracking:
    """One MLflow run written through a client bound to one tracking URI (no global
    MLflow state changes), or nothing at all when disabled.

    Args:
        enabled: log to MLflow.
        tracking_uri: where (None: ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``).
        experiment: the experiment's name (created if needed).
        run_name: the run's name.
        tags: the run's tags.
    """

    def __init__(self, enabled: bool, *, tracking_uri: str | None, experiment: str,
                 run_name: str | None, tags: Mapping[str, str]) -> None:
        self.client: Any = None
        self.run_id: str | None = None
        self.uri: str | None = None
        if not enabled:
            return
        from mlflow import MlflowClient

        from allocator.training.tracking import resolve_tracking_uri

        self.uri = uri = resolve_tracking_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = (found.experiment_id if found is not None
                         else self.client.create_experiment(experiment))
        run = self.client.create_run(experiment_id, run_name=run_name, tags=dict(tags))
        self.run_id = run.info.run_id

    def metrics(self, step: int, values: Mapping[str, float]) -> None:
        """Log metrics at a step (in batches of MLflow's limit)."""
        if self.client is None or not values:
            return
        from mlflow.entities import Metric

        timestamp = int(1000 * time.time())
        batch = [Metric(key, float(value), timestamp, int(step))
                 for key, value in values.items() if np.isfinite(value)]
        for start in range(0, len(batch), 1000):
            self.client.log_batch(self.run_id, metrics=batch[start:start + 1000])

    def params(self, values: Mapping[str, str]) -> None:
        """Log params (in batches of MLflow's limit)."""
        if self.client is None:
            return
        from mlflow.entities import Param

        batch = [Param(key, value) for key, value in values.items()]
        for start in range(0, len(batch), 100):
            self.client.log_batch(self.run_id, params=batch[start:start + 100])

    def artifacts(self, paths: list[Path], folders: Mapping[str, Path]) -> None:
        """Log files at the artifact root and folders under their given names."""
        if self.client is None:
            return
        for path in paths:
            self.client.log_artifact(self.run_id, str(path))
        for name, folder in folders.items():
            self.client.log_artifacts(self.run_id, str(folder), artifact_path=name)

    def register(self, name: str, alias: str, bundle: Path) -> dict[str, Any]:
        """Log the bundle as an MLflow pyfunc model of this run (from code, see
        :mod:`allocator.mlflow_model`) and register it as a new version of model ``name``,
        with an alias: ``mlflow models serve -m models:/NAME@ALIAS`` answers decisions,
        and ``allocator.load("models:/NAME@ALIAS")`` finds the bundle in its artifacts.
        """
        from allocator.training.tracking import log_bundle_model

        uri = log_bundle_model(bundle, run_id=self.run_id, tracking_uri=self.uri,
                               registered_name=name, alias=alias)
        version = self.client.get_model_version_by_alias(name, alias)
        return {"name": name, "version": int(version.version), "alias": alias, "uri": uri}

    def finish(self, status: str) -> None:
        """Mark the run FINISHED or FAILED."""
        if self.client is not None:
            self.client.set_terminated(self.run_id, status=status)


def _train_params(config: TrainConfig) -> dict[str, str]:
    return {f"train.{key}": value if isinstance(value, str) else json.dumps(value)
            for key, value in config.to_dict().items()}


def _eval_params(report: Any) -> dict[str, str]:
    from allocator.training.tracking import evaluation_params

    params = evaluation_params(report)
    return {key if key.startswith("log.") else f"eval.{key}": value
            for key, value in params.items()}


# ---------------------------------------------------------------------- pipeline
def _checkpoint_to_resume(run_dir: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from (None: start afresh); refuses to mix two runs."""
    from allocator.training.rl.train import latest_checkpoint

    checkpoint = latest_checkpoint(run_dir / "checkpoints")
    if checkpoint is not None and not resume:
        raise ParameterError(
            "allocator train", "RUN_DIR",
            "a new folder, or --resume to continue the run whose checkpoints it holds",
            str(run_dir))
    return checkpoint if resume else None


def run_training(
    log_path: str | Path,
    run_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    mlflow: bool = False,
    progress: Progress | None = None,
    resume: bool = False,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    register: str | None = None,
    alias: str = "candidate",
    calibrate: bool = True,
    target_cost: float | None = None,
    predictor: bool = True,
) -> dict[str, Any]:
    """Train, export, evaluate and report.

    The steps, in order:

    1. read the log;
    2. split it by query (seeded,
       :func:`allocator.training.evaluation.evaluate.split_queries`);
    3. fit the difficulty predictor: cross-fitted (out-of-fold) predictions on the
       training queries, the predictor fitted on all training queries for the held-out
       ones and for the bundle;
    4. train MaskablePPO (:func:`allocator.training.rl.train.train_policy`, warm-started
       from the best baseline at every price) on the training queries less a validation
       share (``validation_fraction``,
       :func:`allocator.training.rl.calibrate.validation_split`), with checkpoints in
       ``RUN_DIR/checkpoints``; the policy kept is the best-scoring one on the
       validation queries among those PPO passed through (the warm-started one
       included; :mod:`allocator.training.rl.selection`, ``select_every``);
    5. export the bundle (policy weights, observation statistics, the difficulty
       predictor, the largest pool per arm the policy trained on and its uninformed
       prior; no pickle) and calibrate its default lambda on the validation queries (by
       default the cheapest lambda that reaches majority-of-all accuracy there,
       :func:`~allocator.training.rl.calibrate.calibrate_to_accuracy`; or a
       ``target_cost``), so that the bundle, registered or not, is useful as is.
       Bundles are immutable: the exported bundle goes to a temporary folder and the
       calibration writes the new, calibrated bundle to ``RUN_DIR/bundle`` (without
       calibration the export goes there directly);

       5b. the safety net (:mod:`allocator.training.rl.safety_net`, unless
       ``safety_net = false``): compare the learned policy with every deployable
       baseline on the validation queries; where a baseline wins, the learned bundle
       moves to ``RUN_DIR/learned-bundle`` and ``RUN_DIR/bundle`` becomes a baseline
       bundle (:mod:`allocator.baseline_bundle`) of the best baseline at its best
       setting; ``report.json`` says which and why (``extra.safety_net``);
    6. evaluate on the held-out queries: every baseline swept along its knob and the
       oracles (:func:`allocator.training.evaluation.evaluate.evaluate`), and the
       learned policy (whichever bundle was exported), loaded from its bundle as the
       runtime loads it, swept along lambda (its knob is the price in its state), on
       the same seeded orders;
    7. write ``report.json``, ``pareto.png``, ``cost_distribution.png`` and the
       learning curve (``learning_curve.json`` + ``.png``,
       :mod:`allocator.training.rl.learning_curve`) to ``RUN_DIR``;
    8. MLflow (when enabled): the config as ``train.*`` params (logged first, so a
       crashed run still shows them), training curves as ``train/...`` metrics while
       training runs, the evaluation as ``eval/...`` metrics and params, the report,
       plots, config and bundle as artifacts, and the bundle's run id set to the MLflow
       run's; optionally the bundle registered as a new version of a named model with
       an alias, so that ``allocator.load("models:/NAME@ALIAS")`` loads it.

    The baselines' evaluation fits its own difficulty predictor with the same seed and
    settings, so it predicts what step 3 predicts; the learned policy is replayed with
    step 3's predictions.

    Args:
        log_path: a pool log (Parquet from ``allocator ingest`` or ``allocator synth``).
        run_dir: the run's folder (created): ``bundle/``, ``checkpoints/``,
            ``report.json``, ``pareto.png``, ``cost_distribution.png``, ``config.toml``.
        config: the training settings (defaults if None).
        mlflow: log the run to MLflow (off by default, as on the command line: nothing
            is written to MLflow, and no ``mlflow.db``, unless asked).
        progress: where to report the steps and the training's progress
            (:mod:`allocator.training.progress`; the command line passes a rich one); None: silent.
        resume: continue from the latest checkpoint in ``run_dir/checkpoints`` (the
            split and the predictor are recomputed: they are deterministic).
        tracking_uri: MLflow tracking URI (None: ``MLFLOW_TRACKING_URI``, else
            ``sqlite:///mlflow.db`` in the current directory).
        experiment: MLflow experiment (None: ``ttc-allocator``).
        register: register the run's bundle as a new version of this MLflow model (needs
            ``mlflow``), so that ``allocator.load("models:/NAME@ALIAS")`` loads it.
        alias: the alias the new version gets (``"latest"`` is reserved by MLflow).
        calibrate: calibrate the bundle's default lambda on the validation queries
            (step 5); False leaves it uncalibrated (the middle of the lambda range).
        target_cost: calibrate to this mean cost per query (log units) instead of to
            majority-of-all accuracy.
        predictor: fit the difficulty predictor (step 3). False (``allocator train
            --no-predictor``, for logs too small to cross-fit it): every query's prior is
            the constant :data:`~allocator.session.UNINFORMED_PRIOR`, the bundle holds no
            predictor and its manifest says so (``difficulty_predictor``).

    Returns:
        ``{"run_dir", "bundle", "learned_bundle", "report", "training", "mlflow_run_id",
        "safety_net", "registered"}``: the paths (``bundle`` is the exported one,
        ``learned_bundle`` the learned policy's: the same unless the safety net exported
        a baseline), the
        :class:`~allocator.training.evaluation.results.EvaluationReport` (``report.json``), and the
        training summary (timesteps, seconds, the last ``train/`` metrics), and the
        registered model version (``{"name", "version", "alias", "uri"}``, or None), and
        the safety net's decision (:class:`~allocator.training.rl.safety_net.SafetyNetDecision` as
        a dict, or None when it is off).
        ``allocator.training.evaluation.report.json_safe`` turns it into plain JSON.

    Raises:
        ParameterError: ``run_dir`` holds checkpoints and ``resume`` is False,
            ``register`` without ``mlflow``, ``target_cost`` without ``calibrate``, or an
            invalid setting.
        AllocatorError: the log is too small for the difficulty predictor (the message
            names the log, the sizes, and ``--no-predictor``).
    """
    from allocator.logs import read_log
    from allocator.training.tracking import DEFAULT_EXPERIMENT

    config = config or TrainConfig()
    run_dir = Path(run_dir)
    if register and not mlflow:
        raise ParameterError("run_training", "register", "None when MLflow is off "
                             "(--no-mlflow)", register)
    if target_cost is not None and not calibrate:
        raise ParameterError("run_training", "target_cost", "None when calibration is off "
                             "(--no-calibrate)", target_cost)
    reporter = progress_or_silent(progress, "run_training")
    say = reporter.message
    say("reading the log")
    log = read_log(log_path)
    checkpoint = _checkpoint_to_resume(run_dir, resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.toml").write_text(config.to_toml(), encoding="utf-8")
    train, test = _split(log, log_path, config)
    say(f"split by query: {len(train)} training, {len(test)} held-out queries")
    predictor, prior = _prior(log, log_path, train, test, config, predictor=predictor,
                              say=say)
    tracking = _Tracking(mlflow, tracking_uri=tracking_uri,
                         experiment=experiment or DEFAULT_EXPERIMENT, run_name=run_dir.name,
                         tags={"log_fingerprint": log.fingerprint(), "log_source": log.source,
                               "simulated": "true" if log.simulated else "false",
                               "stage": "train"})
    try:
        tracking.params(_train_params(config))
        summary = _run(log, log_path, run_dir, config, train=train, test=test, prior=prior,
                       predictor=predictor, checkpoint=checkpoint, tracking=tracking,
                       progress=progress, say=say,
                       calibration=(target_cost if target_cost is not None else "accuracy")
                       if calibrate else None)
        summary["registered"] = (tracking.register(register, alias, Path(summary["bundle"]))
                                 if register else None)
    except BaseException:
        tracking.finish("FAILED")
        raise
    tracking.finish("FINISHED")
    return summary


def _calibrate(source: Path, bundle: Path, log: AttemptLog, validation: np.ndarray,
               prior: np.ndarray, config: TrainConfig, goal: float | str) -> dict[str, Any]:
    """Calibrate the exported bundle ``source`` on the validation queries into the new
    bundle ``bundle`` (step 5; the run's own, replaced if a resumed run wrote one); the
    calibration's summary.

    ``goal``: a target mean cost per query, or ``"accuracy"`` (majority-of-all).
    """
    import warnings

    from allocator.bundle import read_bundle
    from allocator.training.rl.calibrate import calibrate, calibrate_to_accuracy

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if goal == "accuracy":
            lam = calibrate_to_accuracy(source, log, validation, output=bundle,
                                        overwrite=True, prior=prior, seed=config.seed,
                                        verify_cost=_verify_cost(log, config))
        else:
            lam = calibrate(source, log, validation, float(goal), output=bundle,
                            overwrite=True, prior=prior, seed=config.seed,
                            verify_cost=_verify_cost(log, config))
    manifest = read_bundle(bundle).manifest
    calibration = manifest["calibration"]
    return {"lambda": lam, "mean_cost": manifest["calibrated_mean_cost"],
            "goal": calibration.get("goal") or f"mean cost {goal:g} per query",
            "validation_queries": len(validation),
            "warnings": [str(w.message) for w in caught]}


def _run(log: AttemptLog, log_path: str | Path, run_dir: Path, config: TrainConfig, *,
         train: np.ndarray,
         test: np.ndarray, prior: np.ndarray, predictor: Any, checkpoint: Path | None,
         tracking: _Tracking, progress: Progress | None, say: Announce,
         calibration: float | str | None) -> dict[str, Any]:
    """Steps 4 to 8 (see :func:`run_training`)."""
    from allocator.training.rl.train import TrainingMonitor, replay_env, train_policy
    from allocator.training.tracking import evaluation_metrics

    fit, validation = _fit_queries(train, config, calibration is not None)
    say("training MaskablePPO" + (f" (resuming from {checkpoint.name})" if checkpoint else "")
        + (f" on {len(fit)} queries ({len(validation)} kept for validation)"
           if len(validation) else ""))
    monitor = TrainingMonitor(sink=tracking.metrics)
    selector = _selector(validation, prior, config, monitor)
    started = time.perf_counter()
    model = train_policy(log, queries=fit, prior=prior, config=config,
                         callback=[monitor] + ([selector] if selector else []),
                         resume_from=checkpoint, checkpoint_dir=run_dir / "checkpoints",
                         progress=progress)
    seconds = time.perf_counter() - started
    if selector is not None and selector.best_timesteps is not None:
        say(f"kept the policy of step {selector.best_timesteps:,}: the best of "
            f"{len(selector.scores)} scores on the validation queries")
    training = {"num_timesteps": int(model.num_timesteps), "seconds": round(seconds, 3),
                "train_queries": len(train), "fit_queries": len(fit),
                "validation_queries": len(validation), "test_queries": len(test),
                "prior": "predicted" if predictor is not None else "constant",
                "resumed_from": checkpoint.name if checkpoint else None,
                "final": _final_metrics(monitor),
                "selection": None if selector is None else selector.summary()}
    cost_unit = replay_env(model.get_env()).settings.cost_unit
    if len(validation) == 0 and (config.safety_net or calibration is not None):
        say("too few training queries to hold out validation queries: no safety net, "
            "not calibrated")
    bundle = run_dir / "bundle"
    extra = {"training_config": config.to_dict(),
             "validation": {"fraction": config.validation_fraction if len(validation)
                            else 0.0, "seed": config.seed, "queries": len(validation)}}
    if calibration is not None and len(validation):
        with tempfile.TemporaryDirectory(prefix="ttc-export-") as folder:
            say("exporting the bundle, then calibrating the learned policy's default "
                f"lambda on the {len(validation)} validation queries into {bundle}")
            exported = _export(model, predictor, log, Path(folder) / "bundle", config,
                               cost_unit, tracking.run_id, extra)
            training["calibration"] = _calibrate(exported, bundle, log, validation, prior,
                                                 config, calibration)
    else:
        say(f"exporting the bundle to {bundle}")
        _export(model, predictor, log, bundle, config, cost_unit, tracking.run_id, extra)
    learned_bundle, safety = bundle, None
    if config.safety_net and len(validation):
        safety, bundle, learned_bundle = apply_safety_net(
            log, bundle, fit, validation, prior, predictor, config, cost_unit,
            tracking.run_id, say)
    training["exported"] = "learned" if safety is None else safety.exported
    say("evaluating on the held-out queries")
    report, chosen = _evaluate_trained(log, log_path, run_dir, learned_bundle, test, prior,
                                       config, say)
    report = dataclasses.replace(report, extra={
        **report.extra, "training": training,
        **({"safety_net": safety.to_dict()} if safety is not None else {})})
    files = _write_outputs(report, chosen, run_dir, log.simulated)
    files += _write_learning_curve(monitor, run_dir, config, log.simulated, checkpoint)
    tracking.metrics(int(model.num_timesteps), evaluation_metrics(report))
    tracking.params(_eval_params(report))
    tracking.artifacts([*files, run_dir / "config.toml"], {"bundle": bundle})
    return {"run_dir": str(run_dir), "bundle": str(bundle),
            "learned_bundle": str(learned_bundle), "report": report,
            "training": training, "mlflow_run_id": tracking.run_id,
            "safety_net": None if safety is None else safety.to_dict()}


def _write_learning_curve(monitor: Any, run_dir: Path, config: TrainConfig, simulated: bool,
                          checkpoint: Path | None) -> list[Path]:
    """``learning_curve.json`` + ``.png`` (:mod:`allocator.training.rl.learning_curve`)."""
    from allocator.training.rl.learning_curve import write_learning_curve

    return write_learning_curve(monitor.history, run_dir, simulated=simulated,
                                warm_start_steps=0 if checkpoint else config.warm_start_budget())


def _final_metrics(monitor: Any) -> dict[str, float]:
    """The last value of every ``train/`` metric."""
    final: dict[str, float] = {}
    for _, metrics in monitor.history:
        final.update(metrics)
    return final
