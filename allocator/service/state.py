"""The served oracle and its hot swap: :class:`OracleHolder`.

The holder loads the bundle once and hands out the current :class:`Served` (an oracle
with what identifies it); a reload builds the new oracle completely before swapping it
in, so no request waits and a failed reload leaves the old oracle serving. Its docstring
gives the swap, the sources it follows and where snapshots live.
"""

from __future__ import annotations

import datetime as _datetime
import hashlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from allocator.bundle import MANIFEST_FILE
from allocator.errors import AllocatorError, BundleError, ParameterError
from allocator.oracle import MLFLOW_SCHEMES, BudgetOracle
from allocator.oracle import load as load_oracle

__all__ = ["OracleHolder", "ReloadOutcome", "Served", "bundle_id"]

logger = logging.getLogger("allocator.service")


def _now() -> str:
    return _datetime.datetime.now(_datetime.UTC).isoformat(timespec="seconds")


def bundle_id(folder: str | os.PathLike[str]) -> str:
    """The first 16 hex digits of the sha256 of a bundle's ``manifest.json`` on disk.

    The manifest lists the sha256 of every other file, so this identifies the content
    (what :attr:`allocator.bundle.Bundle.bundle_id` of a loaded bundle records): the
    holder compares it with what it serves to decide whether to reload.

    Raises:
        BundleError: the manifest cannot be read.
    """
    try:
        data = (Path(folder) / MANIFEST_FILE).read_bytes()
    except OSError as error:
        raise BundleError(f"cannot read {MANIFEST_FILE} ({error}); is this a bundle "
                          "directory?", path=folder) from error
    return hashlib.sha256(data).hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class Served:
    """One loaded oracle and what identifies it.

    Attributes:
        oracle: the oracle that answers.
        bundle_id: see :func:`bundle_id`.
        source: the source the holder serves (a path or a URI), as given.
        version: the MLflow model version, when served from the registry.
        name: the registered MLflow model's name, if any.
        revision: what the holder compares to decide whether to reload (see
            :meth:`OracleHolder.revision`); None where unknown.
        loaded_at: when it was loaded (ISO 8601, UTC).
        folder: the snapshot or download directory the holder owns (None for a ready
            oracle); deleted two reloads later.
    """

    oracle: BudgetOracle
    bundle_id: str
    source: str
    version: str | None
    name: str | None
    revision: str | None
    loaded_at: str = field(default_factory=_now)
    folder: Path | None = field(default=None, repr=False)  # a snapshot the holder owns


@dataclass(frozen=True)
class ReloadOutcome:
    """What :meth:`OracleHolder.reload` did.

    Attributes:
        reloaded: whether a new oracle is now served.
        previous: what was served before.
        current: what is served now (``previous`` when nothing changed).
    """

    reloaded: bool
    previous: Served
    current: Served


@dataclass(frozen=True)
class _ModelUri:
    name: str
    alias: str | None
    version: str | None


def _parse_models_uri(uri: str) -> _ModelUri | None:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``; None for other URIs."""
    if not uri.startswith("models:/"):
        return None
    rest = uri[len("models:/"):]
    if "@" in rest:
        name, alias = rest.rsplit("@", 1)
        return _ModelUri(name, alias, None) if name and alias else None
    name, _, version = rest.rpartition("/")
    return _ModelUri(name, None, version) if name and version.isdigit() else None


class OracleHolder:
    """The served oracle, swappable while requests run.

    The holder loads the bundle once and hands out the current :class:`Served` (an oracle
    with what identifies it) as one reference. A reload builds the new oracle completely
    (download, verification, a warm-up decision, the difficulty predictor loaded) before
    replacing that reference in one assignment: a request that read the old reference
    finishes on the old oracle, the next one gets the new oracle, and no request waits. A
    failed reload leaves the old oracle in place and is recorded in :attr:`last_error`.

    Sources (see :meth:`revision`):

    - a bundle directory: copied to a private snapshot before loading, so that rewriting
      the directory never changes a bundle being served; a reload happens when the
      manifest's sha256 changes;
    - ``models:/NAME@ALIAS``: the alias is resolved to a version, and that version
      (``models:/NAME/VERSION``) downloaded; a reload happens when the alias moves;
    - ``models:/NAME/VERSION``: fixed; other MLflow URIs (``runs:/...``) are downloaded
      again on each reload and swapped when the bundle differs;
    - a ready :class:`~allocator.oracle.BudgetOracle`: served as is; reloads read its
      bundle directory as above.

    Snapshots and downloads live in a private temporary directory; the current and the
    previous one are kept (requests may still run on the previous oracle), older ones are
    deleted, and :meth:`close` removes them all.

    Args:
        source: a bundle directory, an MLflow URI (``models:/NAME@ALIAS``,
            ``models:/NAME/VERSION``, ``runs:/RUN_ID/PATH``), or a ready oracle.
        tracking_uri: the MLflow tracking and registry URI for a URI source (default:
            ``MLFLOW_TRACKING_URI`` or MLflow's default).
        workdir: where snapshots and downloads go (default: a new temporary directory,
            removed by :meth:`close`).

    Attributes:
        last_error: the message of the last failed reload, None after a success.
        last_error_at: when it failed (ISO 8601, UTC).
        reloads: successful swaps since the first load.
    """

    def __init__(self, source: str | os.PathLike[str] | BudgetOracle, *,
                 tracking_uri: str | None = None,
                 workdir: str | os.PathLike[str] | None = None) -> None:
        self._ready = source if isinstance(source, BudgetOracle) else None
        self._source = (str(source.bundle.path) if isinstance(source, BudgetOracle)
                        else os.fspath(source))
        self._model = _parse_models_uri(self._source)
        self._tracking_uri = tracking_uri
        self._workdir = None if workdir is None else Path(workdir)
        self._own_workdir = workdir is None
        self._lock = threading.Lock()
        self._current: Served | None = None
        self._folders: list[Path] = []
        self._count = 0
        self.last_error: str | None = None
        self.last_error_at: str | None = None
        self.reloads = 0

    # ------------------------------------------------------------ reading
    @property
    def source(self) -> str:
        """The source, as given (a bundle directory for a ready oracle)."""
        return self._source

    @property
    def is_uri(self) -> bool:
        """Whether the source is an MLflow URI."""
        return self._source.startswith(MLFLOW_SCHEMES)

    @property
    def current(self) -> Served:
        """What is served now: read it once per request and use that for the whole
        request (a reload may replace it meanwhile).

        Raises:
            AllocatorError: nothing was loaded yet (call :meth:`load`).
        """
        served = self._current
        if served is None:
            raise AllocatorError("OracleHolder: nothing is loaded yet; call load() first.")
        return served

    # ------------------------------------------------------------ loading
    def load(self) -> Served:
        """Load the source if nothing is served yet; return what is served.

        Raises:
            BundleError: the source is not a bundle, the download failed, or the bundle
                is refused.
        """
        with self._lock:
            if self._current is None:
                if self._ready is not None:
                    self._current = self._serve_ready(self._ready)
                else:
                    self._current = self._fetch(self.revision())
                    self._keep(self._current)
            return self._current

    def reload(self, *, force: bool = False) -> ReloadOutcome:
        """Load the source again if it changed (or always, with ``force``), then swap.

        Reloads are serialised; requests are never blocked. On failure the old oracle
        stays, and the error is kept in :attr:`last_error` and raised.

        Raises:
            BundleError: the new revision could not be resolved, downloaded or loaded.
        """
        self.load()
        with self._lock, self._recording():
            previous = self.current  # read under the lock: the last swap's result
            revision = self.revision()
            if not force and revision is not None and revision == previous.revision:
                return ReloadOutcome(False, previous, previous)
            served = self._fetch(revision)
            if not force and revision is None and served.bundle_id == previous.bundle_id:
                self._discard(served)
                return ReloadOutcome(False, previous, previous)
            self.last_error = self.last_error_at = None  # cleared before the swap is seen
            self._current = served  # the swap: one reference, read once per request
            self._keep(served)
            self.reloads += 1
            logger.info("now serving bundle %s (version %s) from %s", served.bundle_id,
                        served.version, self._source)
            return ReloadOutcome(True, previous, served)

    def revision(self) -> str | None:
        """What identifies the source's current content, without loading it.

        The model version an alias points to; the version of ``models:/NAME/VERSION``;
        the manifest's :func:`bundle_id` for a directory; None for other URIs.

        Raises:
            BundleError: the alias cannot be resolved, or the directory has no manifest.
        """
        if self._model is not None:
            return self._model.version or self._resolve_alias(self._model)
        if self.is_uri:
            return None
        if not Path(self._source).is_dir():
            raise BundleError("no such bundle directory; pass the folder `allocator train` "
                              "wrote (RUN_DIR/bundle) or an MLflow URI such as "
                              "models:/NAME@ALIAS.", path=self._source)
        return bundle_id(self._source)

    def close(self) -> None:
        """Delete the snapshots and downloads (the served oracle stops working)."""
        with self._lock:
            for folder in self._folders:
                shutil.rmtree(folder, ignore_errors=True)
            self._folders.clear()
            if self._own_workdir and self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None

    # ------------------------------------------------------------ helpers
    @contextmanager
    def _recording(self) -> Iterator[None]:
        try:
            yield
        except Exception as error:
            self.last_error = f"{type(error).__name__}: {error}"
            self.last_error_at = _now()
            logger.warning("reload of %s failed, still serving the previous bundle: %s",
                           self._source, error)
            if isinstance(error, AllocatorError):
                raise
            raise BundleError(f"reload failed ({type(error).__name__}: {error})",
                              path=self._source) from error
        else:
            self.last_error = self.last_error_at = None

    def _resolve_alias(self, model: _ModelUri) -> str:
        from allocator.extras import require_extra

        require_extra("mlflow", f"serving {self._source!r}")
        from mlflow import MlflowClient  # an MLflow source imports mlflow anyway
        from mlflow.exceptions import MlflowException

        try:
            client = MlflowClient(tracking_uri=self._tracking_uri,
                                  registry_uri=self._tracking_uri)
            return str(client.get_model_version_by_alias(model.name, model.alias).version)
        except MlflowException as error:
            raise BundleError(f"cannot resolve the alias {model.alias!r} of the registered "
                              f"model {model.name!r} ({error}); check the name, the alias and "
                              "MLFLOW_TRACKING_URI (or --tracking-uri).",
                              path=self._source) from error

    def _new_folder(self) -> Path:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="ttc-serve-"))
        self._count += 1
        return self._workdir / f"bundle-{self._count}"

    def _fetch(self, revision: str | None) -> Served:
        """Download or snapshot the source, load it and warm it up (not served yet)."""
        folder = self._new_folder()
        try:
            if self._model is not None:
                uri = f"models:/{self._model.name}/{revision}"
                oracle = load_oracle(uri, dst_path=folder, tracking_uri=self._tracking_uri)
            elif self.is_uri:
                oracle = load_oracle(self._source, dst_path=folder,
                                     tracking_uri=self._tracking_uri)
            else:
                oracle = load_oracle(self._snapshot(folder))
            _warm_up(oracle)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return Served(oracle, oracle.bundle.bundle_id, self._source,
                      None if self._model is None else revision,
                      None if self._model is None else self._model.name,
                      revision, folder=folder)

    def _snapshot(self, folder: Path) -> Path:
        try:
            return Path(shutil.copytree(self._source, folder / "bundle"))
        except OSError as error:
            raise BundleError(f"cannot copy the bundle directory ({error}); check the "
                              "path.", path=self._source) from error

    def _serve_ready(self, oracle: BudgetOracle) -> Served:
        _warm_up(oracle)
        identity = oracle.bundle.bundle_id
        return Served(oracle, identity, self._source, None, None, identity)

    def _keep(self, served: Served) -> None:
        """Own the new snapshot; delete those older than the previous one."""
        if served.folder is not None:
            self._folders.append(served.folder)
        while len(self._folders) > 2:
            shutil.rmtree(self._folders.pop(0), ignore_errors=True)

    @staticmethod
    def _discard(served: Served) -> None:
        if served.folder is not None:
            shutil.rmtree(served.folder, ignore_errors=True)

    def __repr__(self) -> str:
        served = self._current
        what = "not loaded" if served is None else f"bundle {served.bundle_id}"
        return f"OracleHolder({self._source!r}, {what})"


def _warm_up(oracle: BudgetOracle) -> None:
    """One decision (reads the policy) and, with a bundled predictor, one prediction
    (imports scikit-learn and loads the predictor) before the oracle serves."""
    oracle.session(prior=[0.5] * len(oracle.arms)).next_action()
    if oracle.bundle.predictor_dir is not None:
        with suppress(ParameterError):  # a predictor that needs user features: priors only
            oracle.predict_priors(["warm-up"])
