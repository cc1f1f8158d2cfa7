"""``allocator sweep``: a Ray Tune search over the training settings.

:func:`run_sweep` runs it: one split of the log for every trial, the trials
(:func:`sweep_trial`: ``allocator train``'s training, scored on validation queries while
it trains so that ASHA stops the worst early), each tracked in MLflow, then the best
trial calibrated, through the safety net and evaluated on the test queries. Its docstring
gives the steps; reading the results, the best trial and MLflow are in
:mod:`allocator.training.sweep_results`.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray import tune
from stable_baselines3.common.callbacks import BaseCallback

from allocator.errors import AllocatorError, ParameterError
from allocator.logs.table import AttemptLog
from allocator.training.progress import SILENT, Progress, progress_or_silent
from allocator.training.rl.config import TrainConfig
from allocator.training.sweep_config import SweepSpec
from allocator.training.sweep_data import SweepData
from allocator.training.sweep_results import (
    METRIC,
    best_trial,
    ensure_experiment,
    evaluate_best,
    export_best,
    log_best,
    mlflow_globals_kept,
    read_trials,
    safety_net_best,
    sweep_tracking_uri,
    trial_statuses,
    write_summary,
)

__all__ = ["METRIC", "SweepData", "connect_ray", "run_sweep", "sweep_trial",
           "validation_score"]

#: Ray's experiment folder inside SWEEP_DIR.
TUNE_DIR = "tune"
#: Offset of the validation orders' seed (the safety net's: distinct from training and
#: test orders).
VALIDATION_ORDER_OFFSET = 2
#: Seconds to wait for a cluster's address to answer.
CONNECT_TIMEOUT_S = 5.0
_OWNER = "allocator sweep"


# ------------------------------------------------------------------ Ray connection
def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a cluster address (``host:port``, ``ray://host:port``);
    None for ``auto`` and addresses without a port."""
    text = address.split("://", 1)[-1].strip().rstrip("/")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def connect_ray(address: str | None = None, *, num_cpus: int | None = None,
                owner: str = _OWNER) -> str:
    """Connect to Ray: the running session if any, a cluster at ``address`` (or
    ``RAY_ADDRESS``), else an embedded local Ray.

    Args:
        address: ``HOST:PORT`` (or ``ray://HOST:PORT``, ``auto``) of a running cluster.
        num_cpus: the embedded Ray's CPUs (None: all).
        owner: the command named in errors.

    Returns:
        ``"existing"``, ``"cluster"`` or ``"local"``.

    Raises:
        AllocatorError: the address does not answer within :data:`CONNECT_TIMEOUT_S`
            seconds, or Ray refuses it (the message names the address and the fix).
    """
    address = address or os.environ.get("RAY_ADDRESS") or None
    where = None if address is None else _host_port(address)
    if where is not None:
        try:
            socket.create_connection(where, timeout=CONNECT_TIMEOUT_S).close()
        except OSError as error:
            raise AllocatorError(
                f"{owner}: no Ray cluster answers at --address {address} ({error}). Start "
                "one there with `ray start --head` (workers join it with `ray start "
                "--address HOST:6379`), or leave --address and RAY_ADDRESS unset for the "
                "embedded local Ray.") from None
    if ray.is_initialized():
        return "existing"
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if address is None:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        return "local"
    try:
        ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise AllocatorError(f"{owner}: Ray refused --address {address}: {error}") from None
    return "cluster"


# ------------------------------------------------------------------ the shared data
def prepare_data(log: AttemptLog, base: TrainConfig) -> tuple[SweepData, Any]:
    """The split and prior of ``allocator train`` with ``base``'s settings; and the
    fitted difficulty predictor (exported with the best bundle).

    Raises:
        ParameterError: too few training queries to hold out validation queries.
    """
    from allocator.training.evaluation.evaluate import fit_prior, log_verify_cost, split_queries
    from allocator.training.rl.calibrate import validation_split

    train, test = split_queries(log.n_queries, base.test_fraction, base.seed)
    fit, validation = validation_split(train, base.seed, base.validation_fraction)
    if len(validation) == 0:
        raise ParameterError(_OWNER, "LOGS", "a log with at least 2 training queries (the "
                             "trials are scored on validation queries carved from them)",
                             f"{len(train)} training queries")
    predictor, prior = fit_prior(log, train, test, base.seed)
    verify_cost = log_verify_cost(log) if base.verify_cost is None else float(base.verify_cost)
    return SweepData(log=log, fit=fit, validation=validation, test=test, prior=prior,
                     seed=base.seed, verify_cost=verify_cost), predictor


# ------------------------------------------------------------------ scoring
def validation_score(bundle: str | Path, data: SweepData, config: TrainConfig
                     ) -> dict[str, float]:
    """The bundle's mean reward on the validation queries, averaged over the lambdas
    it is evaluated at (``config.evaluation_lambdas()``); and its accuracy and mean cost
    (log units) there, averaged the same way.

    Rewards are ``correct - lambda * cost / cost_unit``, the training objective (the
    bundle's cost unit); every trial replays the same seeded orders.
    """
    from allocator.envs.pools import ReplayPools
    from allocator.learned import LearnedPolicy
    from allocator.training.evaluation.replay import ReplayEvaluator

    policy = LearnedPolicy.from_bundle(bundle)
    cost_unit = float(policy.bundle.manifest["cost_unit"])
    pools = ReplayPools.from_log(data.log)
    rewards, accuracy, cost = [], [], []
    for lam in config.evaluation_lambdas():
        results = ReplayEvaluator(pools, data.validation, n_orders=config.n_orders,
                                  seed=data.seed + VALIDATION_ORDER_OFFSET, lambda_=lam,
                                  prior=data.prior, verify_cost=data.verify_cost).run(policy)
        accuracy.append(float(results.correct.mean()))
        cost.append(float(results.cost.mean()))
        rewards.append(accuracy[-1] - lam * cost[-1] / cost_unit)
    return {METRIC: float(np.mean(rewards)), "validation_accuracy": float(np.mean(accuracy)),
            "validation_mean_cost": float(np.mean(cost))}


def _export(model: Any, data: SweepData, config: TrainConfig, path: Path,
            predictor_dir: Path | None) -> Path:
    from allocator.training.rl.export import export_bundle
    from allocator.training.rl.train import replay_env

    return export_bundle(
        model, path, arms=list(data.log.arms), lambda_range=tuple(config.lambda_range),
        cost_unit=replay_env(model.get_env()).settings.cost_unit,
        log_fingerprint=data.log.fingerprint(), predictor_dir=predictor_dir,
        extra={"training_config": config.to_dict(),
               "validation": {"fraction": config.validation_fraction, "seed": data.seed,
                              "queries": len(data.validation)}})


class ValidationReporter(BaseCallback):
    """Every ``every`` steps (after an update), score the policy on the validation
    queries and report it to Tune with a checkpoint of the training (so ASHA can stop
    the trial, and an interrupted trial resumes from there).

    Args:
        data: the sweep's shared data.
        config: the trial's settings.
        every: steps between reports.
        monitor: the trial's training curves (their latest values are reported too).
    """

    def __init__(self, data: SweepData, config: TrainConfig, every: int,
                 monitor: Any) -> None:
        super().__init__()
        self.data, self.config, self.every, self.monitor = data, config, int(every), monitor
        self._last = 0

    def _on_training_start(self) -> None:
        self._last = int(self.num_timesteps)

    def _on_rollout_start(self) -> None:
        if self.num_timesteps - self._last >= self.every:
            self._last = int(self.num_timesteps)
            with tempfile.TemporaryDirectory(prefix="ttc-sweep-") as folder:
                bundle = _export(self.model, self.data, self.config, Path(folder) / "b", None)
                metrics = validation_score(bundle, self.data, self.config)
                shutil.rmtree(bundle)
                _report(self.model, self.config, Path(folder), metrics, self.monitor)

    def _on_step(self) -> bool:
        return True


def _report(model: Any, config: TrainConfig, folder: Path, metrics: dict[str, float],
            monitor: Any, final: bool = False) -> None:
    """``tune.report`` the metrics, with ``folder`` as the checkpoint after the policy's
    training checkpoint is written into ``folder/policy``."""
    from allocator.training.rl.checkpoints import save_checkpoint
    from allocator.training.rl.train import CHECKPOINT_PREFIX, observation_normalization

    steps = int(model.num_timesteps)
    save_checkpoint(model, folder / "policy" / f"{CHECKPOINT_PREFIX}_{steps}", config,
                    observation_normalization(model))
    latest = {name: value for _, values in monitor.history for name, value in values.items()
              if math.isfinite(value)}
    tune.report({**metrics, **latest, "num_timesteps": steps, "final": final},
                checkpoint=tune.Checkpoint.from_directory(str(folder)))


# ------------------------------------------------------------------ the trial
def sweep_trial(params: dict[str, Any], *, data: SweepData, spec: SweepSpec,
                predictor: Mapping[str, bytes]) -> None:
    """One trial (Tune's function trainable): train on the fitting queries, reporting
    the validation score ``spec.reports`` times, then export the bundle and report its
    score with the bundle as the final checkpoint (``bundle/``).

    Args:
        params: the sampled settings (TrainConfig fields).
        data: the sweep's shared data.
        spec: the sweep.
        predictor: the saved difficulty predictor's files (relative path -> bytes),
            exported in the bundle (bytes, not a path: a worker on another machine has
            them too).
    """
    from allocator.training.rl.train import TrainingMonitor, latest_checkpoint, train_policy

    config = spec.trial_config(params)
    monitor = TrainingMonitor()
    with tempfile.TemporaryDirectory(prefix="ttc-trial-") as folder:
        resume_from, resumed_steps = None, 0
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:  # a resumed trial: its latest training checkpoint
            resume_from = Path(checkpoint.to_directory(str(Path(folder) / "restored"))
                               ) / "policy"
            resumed_steps = int(latest_checkpoint(resume_from).name.rpartition("_")[2])
        monitor.record(resumed_steps, {"sweep/resumed_from_steps": float(resumed_steps)})
        reporter = ValidationReporter(data, config, math.ceil(config.total_timesteps
                                                              / spec.reports), monitor)
        model = train_policy(data.log, queries=data.fit, prior=data.prior, config=config,
                             callback=[monitor, reporter], resume_from=resume_from)
        final = Path(folder) / "final"
        bundle = _export(model, data, config, final / "bundle",
                         _write_files(predictor, Path(folder) / "predictor"))
        _report(model, config, final, validation_score(bundle, data, config), monitor,
                final=True)


# ------------------------------------------------------------------ progress
class SweepProgress(tune.Callback):
    """Report the sweep to a :class:`training.progress.Progress`: a task of the trials
    that end, whose description is the highest validation score any trial reported so
    far (mid-training ones included), and one message per trial that ends (completed,
    stopped early by ASHA, or crashed: where its error is).

    Args:
        total: the number of trials.
        progress: where to report (None: nowhere). Tune pickles its callbacks with the
            sweep; a copy reports nowhere (:meth:`run_sweep` gives a resumed sweep its
            own).
    """

    def __init__(self, total: int, progress: Progress | None = None) -> None:
        self.total = total
        self.progress = progress_or_silent(progress, "SweepProgress")
        self.best: float | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "progress": SILENT}

    def setup(self, **info: Any) -> None:
        self.progress.start("sweep", self.total)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        score = result.get(METRIC)
        if score is not None and (self.best is None or score > self.best):
            self.best = float(score)
        if self.best is not None:
            self.progress.advance(0, description=f"sweep: highest validation score "
                                                 f"reported {self.best:.4f}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any,
                          **info: Any) -> None:
        result = trial.last_result or {}
        how = "completed" if result.get("final") else "stopped early (ASHA)"
        self.progress.message(f"trial {trial.trial_id} {how}: validation score "
                              f"{result.get(METRIC, float('nan')):.4f}")
        self.progress.advance()

    def on_trial_error(self, iteration: int, trials: list, trial: Any,
                       **info: Any) -> None:
        self.progress.message(f"trial {trial.trial_id} failed ({trial.error_file}); the "
                              "sweep goes on", "error")
        self.progress.advance()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.progress.finish()


def _read_files(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def _write_files(files: Mapping[str, bytes], folder: Path) -> Path:
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return folder


# ------------------------------------------------------------------ the search
_DISTRIBUTIONS: dict[str, Callable[..., Any]] = {
    "choice": lambda values: tune.choice(list(values)),
    "grid": lambda values: tune.grid_search(list(values)),
    "uniform": lambda values: tune.uniform(*values),
    "loguniform": lambda values: tune.loguniform(*values),
    "randint": lambda values: tune.randint(*values),
}


def _param_space(spec: SweepSpec) -> dict[str, Any]:
    return {name: _DISTRIBUTIONS[kind](values) for name, (kind, values) in spec.search.items()}


def total_trials(spec: SweepSpec) -> int:
    """Trials the sweep runs: ``trials`` times the product of the grids' sizes."""
    grids = [len(values) for kind, values in spec.search.values() if kind == "grid"]
    return spec.trials * math.prod(grids)


def _tuner(trainable: Any, spec: SweepSpec, sweep_dir: Path, callbacks: Sequence[Any]
           ) -> tune.Tuner:
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    scheduler = (ASHAScheduler(time_attr="training_iteration", max_t=spec.reports + 1,
                               grace_period=spec.grace_period,
                               reduction_factor=spec.reduction_factor)
                 if spec.early_stopping else None)
    return tune.Tuner(
        trainable, param_space=_param_space(spec),
        tune_config=tune.TuneConfig(
            metric=METRIC, mode="max", scheduler=scheduler, num_samples=spec.trials,
            search_alg=BasicVariantGenerator(random_state=spec.search_seed,
                                             max_concurrent=spec.max_concurrent)),
        run_config=tune.RunConfig(
            name=TUNE_DIR, storage_path=str(sweep_dir), verbose=0,
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            callbacks=list(callbacks)))


def _trainable(data: SweepData, spec: SweepSpec, predictor: Mapping[str, bytes]) -> Any:
    return tune.with_resources(
        tune.with_parameters(sweep_trial, data=data, spec=spec, predictor=dict(predictor)),
        {"cpu": spec.cpus_per_trial})


# ------------------------------------------------------------------ the sweep
def _check_folder(sweep_dir: Path, resume: bool) -> Path:
    """Ray's experiment folder; refuses to start over an earlier sweep or to resume
    nothing."""
    experiment = sweep_dir.resolve() / TUNE_DIR
    exists = tune.Tuner.can_restore(str(experiment)) if experiment.exists() else False
    if exists and not resume:
        raise ParameterError(_OWNER, "SWEEP_DIR", "a new folder, or --resume to continue "
                             "the sweep it holds", str(sweep_dir))
    if resume and not exists:
        raise ParameterError(_OWNER, "--resume", f"a SWEEP_DIR holding an interrupted sweep "
                             f"({experiment} has none): drop --resume to start one",
                             str(sweep_dir))
    return experiment


def run_sweep(
    log_path: str | Path,
    sweep_dir: str | Path,
    spec: SweepSpec,
    *,
    resume: bool = False,
    address: str | None = None,
    tracking_uri: str | None = None,
    experiment: str = "ttc-allocator-sweep",
    register: str | None = None,
    alias: str = "candidate",
    progress: Progress | None = None,
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """Run (or resume) a sweep.

    The steps, in order:

    1. connect to Ray (:func:`connect_ray`): an embedded local Ray by default, a cluster
       with ``address`` (or ``RAY_ADDRESS``); an unreachable address fails within
       seconds;
    2. read the log and split it once for every trial (``[base]``'s seed): training and
       test queries (:func:`allocator.training.evaluation.evaluate.split_queries`), the
       training queries into fitting and validation queries
       (:func:`allocator.training.rl.calibrate.validation_split`), and the difficulty
       prior cross-fitted on the training queries
       (:func:`allocator.training.evaluation.evaluate.fit_prior`), as ``allocator train``
       does;
    3. the trials (:func:`sweep_trial`), each on its own CPU allotment
       (``tune.with_resources``): MaskablePPO trained on the fitting queries as in
       ``allocator train`` (:func:`allocator.training.rl.train.train_policy`, warm start
       included), reporting its **validation score** ``sweep.reports`` times while it
       trains (with a checkpoint each time, so an interrupted trial resumes), so that
       ASHA stops the worst early; a trial that ends exports its bundle and reports the
       bundle's score;
    4. every trial tracked in MLflow (Ray's ``MLflowLoggerCallback``): its settings as
       params, its scores and training curves as metrics; the store is
       ``MLFLOW_TRACKING_URI`` or ``sqlite:///SWEEP_DIR/mlflow.db``;
    5. the best finished trial (highest final validation score; ties: the first trial)
       is calibrated on the validation queries into a new bundle,
       ``SWEEP_DIR/best-bundle`` (its default lambda; the trial's bundle is only read),
       and goes through ``allocator train``'s safety net
       (:func:`allocator.training.rl.pipeline.apply_safety_net`, unless its
       ``safety_net`` is false): where a baseline beats it on the validation queries,
       ``best-bundle/`` is that baseline's bundle and the learned one is in
       ``SWEEP_DIR/learned-bundle`` (the report's ``extra.safety_net`` and
       ``extra.sweep.exported`` say which and why); the learned policy is evaluated on
       the **test** queries against every baseline as ``allocator train`` evaluates
       (``report.json``, ``pareto.png``, ``cost_distribution.png`` in ``SWEEP_DIR``);
       the exported bundle is logged to MLflow as one more run and optionally
       registered with an alias;
    6. ``SWEEP_DIR/sweep.json``: every trial's settings, status (completed, stopped
       early by ASHA, error and its message) and scores.

    The validation score is the policy's mean reward (``correct - lambda * cost`` in cost
    units, the training objective) on the validation queries, averaged over the lambdas
    the policy is evaluated at: one number that rewards the whole accuracy/cost front.
    The test queries are never seen before step 5.

    A crashed trial is reported and the others go on; what finished trials reported
    stays in ``SWEEP_DIR/tune`` (Ray's experiment folder), which ``resume=True``
    continues after an interruption (Ctrl-C, a lost driver). Steps 4 to 6's reading of
    the results, the best trial and MLflow are in :mod:`allocator.training.sweep_results`.

    Args:
        log_path: a pool log (Parquet).
        sweep_dir: the sweep's folder (created): ``tune/`` (Ray's experiment),
            ``mlflow.db``, ``best-bundle/``, ``report.json``, the plots, ``sweep.json``.
        spec: the sweep (:func:`allocator.training.sweep_config.read_sweep_spec`).
        resume: continue the interrupted sweep in ``sweep_dir``.
        address: a Ray cluster (None: ``RAY_ADDRESS``, else an embedded local Ray; a
            Ray already initialised in this process is used as is).
        tracking_uri: MLflow store (None: ``MLFLOW_TRACKING_URI``, else
            ``sqlite:///SWEEP_DIR/mlflow.db``).
        experiment: the MLflow experiment of the trials and the best run.
        register: register the best bundle as a new version of this MLflow model.
        alias: the registered version's alias.
        progress: where to report the steps and the trials (:mod:`allocator.training.progress`;
            the command line passes a rich one); None: silent.
        callbacks: more Ray Tune callbacks.

    Returns:
        ``{"sweep_dir", "status" ("finished" or "interrupted"), "trials", "best",
        "bundle", "learned_bundle", "exported", "safety_net", "report", "mlflow",
        "summary", "seconds"}``: ``bundle`` is the exported bundle (the best trial's, or
        the baseline's that the safety net chose: ``exported`` says ``"learned"`` or
        ``"baseline"``, ``safety_net`` holds the decision), ``learned_bundle`` the best
        trial's; all None unless a trial completed and the sweep finished;
        ``seconds`` holds the wall time of the trials and of what follows.

    Raises:
        ParameterError: a folder holding a sweep without ``resume`` (or none with it),
            a log too small to split.
        AllocatorError: Ray unreachable at ``address``.
    """
    from allocator.logs import read_log

    sweep_dir = Path(sweep_dir)
    # Tune's own progress tables off (verbose=0 is honoured by its classic reporter
    # only): the progress is SweepProgress's.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    reporter = progress_or_silent(progress, "run_sweep")
    say = reporter.message
    path = _check_folder(sweep_dir, resume)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    where = connect_ray(address)
    say(f"Ray: {where} ({ray.cluster_resources().get('CPU', 0):g} CPUs)")
    log = read_log(log_path)
    data, predictor = prepare_data(log, spec.base)
    say(f"split by query: {len(data.fit)} fitting, {len(data.validation)} validation, "
        f"{len(data.test)} test queries")
    uri = sweep_tracking_uri(sweep_dir, tracking_uri)
    experiment_id = ensure_experiment(uri, experiment, sweep_dir)
    with tempfile.TemporaryDirectory(prefix="ttc-predictor-") as folder:
        files = _read_files(predictor.save(Path(folder) / "predictor"))
    trainable = _trainable(data, spec, files)
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    tune_callbacks = [MLflowLoggerCallback(tracking_uri=uri, experiment_name=experiment,
                                           tags={"stage": "sweep-trial",
                                                 "sweep_dir": str(sweep_dir.resolve())}),
                      SweepProgress(total_trials(spec), reporter), *callbacks]
    if resume:
        say(f"resuming the sweep in {path}")
        tuner = tune.Tuner.restore(str(path), trainable, resume_unfinished=True,
                                   resume_errored=False, param_space=_param_space(spec))
        # Tune restores the callbacks pickled with the sweep: this run's replace them
        # (a fresh progress bar and MLflow logger; no interrupting test callback twice).
        tuner._local_tuner.get_run_config().callbacks = tune_callbacks
    else:
        tuner = _tuner(trainable, spec, sweep_dir.resolve(), tune_callbacks)
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr), mlflow_globals_kept():  # stdout: --json's
        grid = tuner.fit()
    trials_seconds = time.perf_counter() - started
    summary = _finish(grid, data, spec, sweep_dir, uri, experiment_id, register, alias,
                      predictor, reporter)
    summary["seconds"] = {"trials": round(trials_seconds, 3),
                          "after": round(time.perf_counter() - started - trials_seconds, 3)}
    return summary


def _finish(grid: Any, data: SweepData, spec: SweepSpec, sweep_dir: Path, uri: str,
            experiment_id: str, register: str | None, alias: str, predictor: Any,
            progress: Progress) -> dict[str, Any]:
    """After the trials: sweep.json, and the best trial exported (through the safety
    net), evaluated, logged."""
    say = progress.message
    statuses = trial_statuses(Path(grid.experiment_path))
    trials = read_trials(grid, statuses)
    status = ("finished" if all(s in ("TERMINATED", "ERROR") for s, _ in statuses.values())
              else "interrupted")
    summary: dict[str, Any] = {"sweep_dir": str(sweep_dir), "status": status,
                               "trials": [{k: v for k, v in t.items() if k[0] != "_"}
                                          for t in trials],
                               "best": None, "bundle": None, "learned_bundle": None,
                               "exported": None, "safety_net": None, "report": None,
                               "mlflow": None}
    best = best_trial(trials) if status == "finished" else None
    if status == "interrupted":
        progress.message("the sweep was interrupted: run it again with --resume", "warning")
    elif best is None:
        progress.message("no trial completed: no bundle exported (see sweep.json)", "error")
    else:
        bundle, lam = export_best(data, best, sweep_dir, say)
        safety, bundle, learned = safety_net_best(data, spec, best, bundle, predictor, say)
        report, files = evaluate_best(data, spec, best, learned, sweep_dir, say, safety,
                                      lam)
        logged = log_best(uri, experiment_id, best, report, files, bundle, register, alias)
        summary.update(best={k: v for k, v in best.items() if k[0] != "_"},
                       bundle=str(bundle), learned_bundle=str(learned),
                       exported=report.extra["sweep"]["exported"],
                       safety_net=None if safety is None else safety.to_dict(),
                       report=report, mlflow=logged)
    summary["summary"] = str(write_summary(sweep_dir, spec, trials,
                                            {"status": status, "best": summary["best"],
                                             "exported": summary["exported"],
                                             "mlflow": summary["mlflow"]}))
    return summary
