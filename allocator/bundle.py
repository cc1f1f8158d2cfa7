"""Policy bundles: a trained allocator as a directory of plain files, checked on load.

A bundle is what ``allocator train`` exports and what the runtime serves. It holds no
pickle and needs neither torch nor stable-baselines3 to load. :class:`Bundle` describes
its files, manifest and policy kinds; :func:`write_bundle` writes one,
:func:`read_bundle` verifies one (and lists what it refuses).

This module imports numpy, json, hashlib and ``safetensors.numpy`` only.
"""

from __future__ import annotations

import datetime as _datetime
import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as _load_safetensors
from safetensors.numpy import save as _save_safetensors

from allocator.actions import action_names, check_widths, n_actions
from allocator.bundle_predictor import PREDICTOR_DIR, check_predictor
from allocator.errors import BundleError, ParameterError
from allocator.featurizer import FEATURIZER_VERSION, feature_names

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_FORMAT_VERSION",
    "MANIFEST_FILE",
    "POLICY_FIELD",
    "POLICY_KINDS",
    "PREDICTOR_DIR",
    "WEIGHTS_FILE",
    "Bundle",
    "check_values",
    "policy_kind",
    "read_bundle",
    "write_bundle",
]

#: The ``format`` marker of every bundle manifest.
BUNDLE_FORMAT = "ttc-allocator-bundle"
#: The newest bundle format this code reads and the one it writes.
BUNDLE_FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
WEIGHTS_FILE = "policy.safetensors"

#: The manifest field naming the kind of policy a bundle holds (absent: ``network``).
POLICY_FIELD = "policy"
#: Policy kinds: an exported network (learned), or a registered baseline at one setting.
POLICY_KINDS = ("network", "baseline")

#: Activations the runtime network implements (names as in the manifest).
ACTIVATIONS = ("tanh", "relu", "identity")

#: Manifest fields the writer fills in; a caller may not set them.
_RESERVED = ("format", "format_version", "featurizer_version", "feature_names", "actions",
             "files")
#: Optional manifest fields with their defaults: ``widths`` (the parallel widths of the
#: action layout, :func:`allocator.actions.check_widths`; absent in older bundles).
_OPTIONAL = {"widths": [1]}
#: Manifest fields the caller must give.
_REQUIRED = ("arms", "lambda_range", "cost_unit", "network", "normalization", "run_id",
             "log_fingerprint")

_REEXPORT = "re-export the bundle from its training run (allocator train ... -o RUN_DIR)"


@dataclass(frozen=True, eq=False)
class Bundle:
    """A verified bundle, as :func:`read_bundle` returns it.

    The bundle's files:

    =============================  ======================================================
    file                           content
    =============================  ======================================================
    ``manifest.json``              what the bundle is (see below), and the sha256 of
                                   every other file
    ``policy.safetensors``         the policy network's weights (safetensors, numpy
                                   arrays)
    ``difficulty/...``             optional: the difficulty predictor as written by
                                   ``DifficultyPredictor.save`` (LightGBM text model,
                                   JSON settings and calibrator, ``.npy`` text basis)
    =============================  ======================================================

    The manifest records ``format`` and ``format_version`` (:data:`BUNDLE_FORMAT_VERSION`),
    ``featurizer_version`` and the ordered ``feature_names`` the policy was trained on,
    ``arms``, ``widths`` (the parallel widths of the action layout,
    :class:`~allocator.actions.ActionLayout`; ``[1]`` when absent) and ``actions`` (their
    order is the policy's output layout), ``lambda_range``, ``cost_unit``,
    ``normalization`` (observation normalisation statistics, or null), ``network`` (layer
    sizes, activation, and the name and shape of
    every weight tensor), ``run_id``, ``log_fingerprint``, ``created_at``, any extra
    fields the exporter adds, and ``files`` (relative path -> sha256 of every file but the
    manifest).

    Policy kinds. The optional ``policy`` field says what decides (:func:`policy_kind`):
    absent, or ``{"kind": "network"}``, the network above (a learned bundle);
    ``{"kind": "baseline", "name": ..., "params": {...}}``, a registered baseline policy
    at one setting (see :mod:`allocator.baseline_bundle`): such a bundle has no weights
    file, ``network`` and ``normalization`` are null, and every other check (format,
    fields, feature schema, hashes) is the learned bundle's.

    Attributes:
        path: the bundle directory.
        manifest: the parsed ``manifest.json``.
        weights: the policy's tensors by name (read-only numpy arrays).
        predictor_files: the difficulty predictor's files by name (``difficulty.json``,
            the LightGBM model, the text basis), as verified at load: read once, their
            hashes checked, the model text checked (:mod:`allocator.lgbm_text`; only its
            trees kept). Empty without a predictor. The predictor is built from these
            bytes, never from the files on disk.
        sha256: the sha256 (hex) of the ``manifest.json`` bytes that were read and
            verified. The manifest lists the sha256 of every other file, so this
            identifies the whole content: two bundles with the same ``sha256`` decide
            alike, and a copy of a policy can check that it reads the same bundle.
    """

    path: Path
    manifest: dict[str, Any]
    weights: dict[str, np.ndarray]
    predictor_files: Mapping[str, bytes] = field(
        default_factory=lambda: MappingProxyType({}))
    sha256: str = ""

    @property
    def bundle_id(self) -> str:
        """The first 16 hex digits of :attr:`sha256` (what the HTTP service reports)."""
        return self.sha256[:16]

    @property
    def arms(self) -> tuple[str, ...]:
        """The arm names, in arm-index order."""
        return tuple(self.manifest["arms"])

    @property
    def widths(self) -> tuple[int, ...]:
        """The parallel widths of the policy's action layout (``(1,)``: one attempt per
        SAMPLE, the default layout)."""
        return tuple(self.manifest.get("widths", _OPTIONAL["widths"]))

    @property
    def feature_names(self) -> list[str]:
        """The ordered feature names of the policy's observation."""
        return list(self.manifest["feature_names"])

    @property
    def network(self) -> dict[str, Any]:
        """The network description (layers, activation, tensor names and shapes)."""
        return self.manifest["network"]

    @property
    def normalization(self) -> dict[str, Any] | None:
        """The observation normalisation statistics, or None."""
        return self.manifest["normalization"]

    @property
    def policy_kind(self) -> str:
        """``"network"`` (a learned policy's weights) or ``"baseline"`` (a registered
        baseline policy at one setting, ``manifest["policy"]``)."""
        return policy_kind(self.manifest)

    @property
    def predictor_dir(self) -> Path | None:
        """The difficulty predictor's directory inside the bundle, or None."""
        if self.manifest.get("difficulty") is None:
            return None
        return self.path / PREDICTOR_DIR


# ------------------------------------------------------------------ writing
def write_bundle(
    path: str | Path,
    *,
    weights: Mapping[str, np.ndarray] | None,
    manifest: Mapping[str, Any],
    predictor_dir: str | Path | None = None,
) -> Path:
    """Write a bundle directory atomically (a temporary directory renamed into place).

    Args:
        path: the bundle directory to create. An existing bundle (or empty directory)
            there is replaced; anything else is refused.
        weights: the network's tensors by name (float arrays), as described by
            ``manifest["network"]``; None for a baseline bundle (``manifest["policy"]``
            of kind ``"baseline"``, with ``network`` and ``normalization`` None).
        manifest: the caller's fields: ``arms`` (names), ``lambda_range`` (low, high),
            ``cost_unit`` (> 0), ``network`` (see :mod:`allocator.learned`),
            ``normalization`` (dict of arrays or lists, or None), ``run_id`` (str or
            None), ``log_fingerprint`` (str), optionally ``created_at`` (ISO time; now
            by default) and ``widths`` (the layout's parallel widths; ``[1]`` by
            default), plus any extra JSON-serialisable fields.
        predictor_dir: a directory written by ``DifficultyPredictor.save``; its files
            are copied to ``difficulty/`` in the bundle.

    Returns:
        The bundle directory.

    Raises:
        ParameterError: a manifest field or a weight is invalid.
        BundleError: ``path`` holds something that is not a bundle, or the predictor
            directory is not a saved predictor.
    """
    target = Path(path)
    content = _complete_manifest(dict(manifest))
    arrays = _check_payload(content, weights)
    _check_writable(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        if arrays is not None:
            (staging / WEIGHTS_FILE).write_bytes(_save_safetensors(arrays))
        if predictor_dir is not None:
            content["difficulty"] = {"dir": PREDICTOR_DIR,
                                     "files": _copy_predictor(Path(predictor_dir), staging)}
        else:
            content["difficulty"] = None
        content["files"] = {name: _sha256(staging / name) for name in _list_files(staging)}
        text = json.dumps(content, indent=1, allow_nan=False) + "\n"
        (staging / MANIFEST_FILE).write_text(text, encoding="utf-8")
        _move_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _check_payload(content: dict[str, Any], weights: Mapping[str, np.ndarray] | None
                   ) -> dict[str, np.ndarray] | None:
    """The weights to write (None for a baseline bundle), checked against the manifest."""
    if policy_kind(content, fail=_parameter_failure) == "baseline":
        _check_baseline_fields(content, fail=_parameter_failure)
        if weights:
            _parameter_failure("a baseline bundle holds no weights (pass weights=None)")
        return None
    if weights is None:
        _parameter_failure("a network bundle needs its weights")
    arrays = _check_weights_argument(weights)  # type: ignore[arg-type]
    _check_network(content, arrays, fail=_parameter_failure)
    return arrays


def policy_kind(manifest: Mapping[str, Any], *, fail: Any = None) -> str:
    """The kind of policy a manifest describes: ``"network"`` or ``"baseline"``.

    Args:
        manifest: a bundle manifest (read or being written).
        fail: called with a message when the ``policy`` field is malformed (default:
            raise :class:`~allocator.errors.ParameterError`).
    """
    spec = manifest.get(POLICY_FIELD)
    if spec is None:
        return "network"
    kind = spec.get("kind") if isinstance(spec, Mapping) else None
    if kind not in POLICY_KINDS:
        (fail or _parameter_failure)(
            f"field {POLICY_FIELD!r} must be an object whose 'kind' is one of "
            f"{list(POLICY_KINDS)} (got {spec!r}); a newer ttc-allocator may know it "
            "(upgrade ttc-allocator)")
    return str(kind)


def _check_baseline_fields(manifest: Mapping[str, Any], *, fail: Any) -> None:
    """A baseline bundle: a policy name and a params object; no network, no statistics."""
    spec = manifest[POLICY_FIELD]
    name, params = spec.get("name"), spec.get("params")
    if not isinstance(name, str) or not name or not isinstance(params, Mapping):
        fail(f"a baseline {POLICY_FIELD!r} field must give 'name' (a registered policy) and "
             f"'params' (an object), got {dict(spec)!r}")
    if manifest.get("network") is not None or manifest.get("normalization") is not None:
        fail("a baseline bundle has no network: 'network' and 'normalization' must be null")


def _parameter_failure(message: str) -> None:
    raise ParameterError("write_bundle", "manifest/weights", "a consistent network", message)


def _complete_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """The caller's fields, checked, with the writer's fields added (reserved ones first)."""
    for key in _RESERVED:
        if key in manifest:
            raise ParameterError("write_bundle", f"manifest[{key!r}]",
                                 "absent (the writer fills it in)", manifest[key])
    missing = [key for key in _REQUIRED if key not in manifest]
    if missing:
        raise ParameterError("write_bundle", "manifest",
                             f"a dict with the fields {list(_REQUIRED)} (missing {missing})",
                             sorted(manifest))
    arms = manifest["arms"]
    if (not isinstance(arms, list | tuple) or not arms
            or not all(isinstance(a, str) and a for a in arms) or len(set(arms)) != len(arms)):
        raise ParameterError("write_bundle", "manifest['arms']",
                             "a non-empty list of distinct arm names", arms)
    widths = check_widths("write_bundle", manifest.get("widths", _OPTIONAL["widths"]))
    content: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_FORMAT_VERSION,
        "featurizer_version": FEATURIZER_VERSION,
        "feature_names": feature_names(list(arms)),
        "arms": list(arms),
        "widths": list(widths),
        "actions": action_names(list(arms), widths),
        "lambda_range": _float_list(manifest["lambda_range"]),
        "cost_unit": manifest["cost_unit"],
        "normalization": _normalization_to_json(manifest["normalization"]),
        "network": manifest["network"],
        "run_id": manifest["run_id"],
        "log_fingerprint": manifest["log_fingerprint"],
        "created_at": manifest.get("created_at")
        or _datetime.datetime.now(_datetime.UTC).isoformat(timespec="seconds"),
    }
    if content["run_id"] is not None and not isinstance(content["run_id"], str):
        raise ParameterError("write_bundle", "manifest['run_id']", "a string or None",
                             content["run_id"])
    if not isinstance(content["log_fingerprint"], str):
        raise ParameterError("write_bundle", "manifest['log_fingerprint']", "a string",
                             content["log_fingerprint"])
    check_values(content, {}, fail=_writer_failure)
    content["lambda_range"] = [float(v) for v in content["lambda_range"]]
    content["cost_unit"] = float(content["cost_unit"])
    extra = {key: value for key, value in manifest.items() if key not in content}
    content.update(extra)
    try:
        json.dumps(content, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ParameterError("write_bundle", "manifest",
                             "JSON-serialisable fields without NaN or infinity",
                             str(error)) from error
    return content


def _float_list(value: object) -> object:
    """A tuple or array of numbers as a list (what JSON keeps); anything else unchanged."""
    if isinstance(value, tuple | np.ndarray):
        return [item.item() if isinstance(item, np.generic) else item for item in value]
    return value


def _writer_failure(field: str, expected: str, given: object) -> None:
    raise ParameterError("write_bundle", f"manifest[{field!r}]", expected, given)


def _normalization_to_json(value: object) -> dict[str, Any] | None:
    """Normalisation statistics as JSON: arrays become lists (float64 round-trips exactly)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ParameterError("write_bundle", "manifest['normalization']",
                             "None or a dict (mean, var, epsilon, clip)", value)
    return {key: np.asarray(item).tolist() if isinstance(item, np.ndarray | list | tuple)
            else item.item() if isinstance(item, np.generic) else item
            for key, item in value.items()}


def _check_weights_argument(weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for name, value in weights.items():
        array = np.asarray(value)
        if not isinstance(name, str) or array.dtype.kind != "f":
            raise ParameterError("write_bundle", f"weights[{name!r}]",
                                 "a finite floating-point array", array.dtype)
        arrays[name] = np.ascontiguousarray(array)

    def fail(field: str, expected: str, given: object) -> None:
        raise ParameterError("write_bundle", field, expected, given)

    _check_finite_weights(arrays, fail)
    return arrays


def _check_writable(target: Path) -> None:
    """Refuse to replace anything but a bundle or an empty directory."""
    if not target.exists() and not target.is_symlink():
        return
    if target.is_symlink() or not target.is_dir():
        raise BundleError("exists and is not a directory; choose another output path.",
                          path=target)
    if not any(target.iterdir()) or _is_bundle_dir(target):
        return
    raise BundleError("exists and is not a policy bundle (no bundle manifest.json); refusing "
                      "to overwrite it. Choose another output path or remove it.", path=target)


def _is_bundle_dir(folder: Path) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == BUNDLE_FORMAT


def _move_into_place(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; a previous bundle there is moved aside first."""
    if target.exists():
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex}"
        os.replace(target, old)
        try:
            os.replace(staging, target)
        except BaseException:
            os.replace(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)


def _copy_predictor(source: Path, staging: Path) -> list[str]:
    """Copy the predictor's files (``difficulty.json`` required) into ``staging/difficulty``."""
    if not (source / "difficulty.json").is_file():
        raise BundleError("is not a saved difficulty predictor (no difficulty.json); pass the "
                          "directory written by DifficultyPredictor.save.", path=source)
    destination = staging / PREDICTOR_DIR
    destination.mkdir()
    names = sorted(item.name for item in source.iterdir() if item.is_file())
    for name in names:
        shutil.copyfile(source / name, destination / name)
    return names


# ------------------------------------------------------------------ reading
def read_bundle(path: str | Path) -> Bundle:
    """Load a bundle and verify it: manifest, format, feature schema, hashes, weights.

    Refused, with :class:`~allocator.errors.BundleError`: a bundle whose manifest is
    missing or malformed, whose format is newer than this code, whose feature list differs
    from the current featurizer's (training/serving skew), whose files do not match their
    hashes (or are missing, or unlisted), whose weights do not match the network
    description, whose numbers the writer would refuse (:func:`check_values`, shared by
    both: lambda range, cost unit, normalisation, finite weights), or whose difficulty
    predictor names files outside it or holds a malformed LightGBM model
    (:mod:`allocator.bundle_predictor`). Every file is read once, at load; the predictor
    is built from those verified bytes (:attr:`Bundle.predictor_files`), never from the
    disk. Each message says what is wrong and what to do.

    Args:
        path: the bundle directory.

    Returns:
        The verified :class:`Bundle`.

    Raises:
        BundleError: the bundle is missing, malformed, tampered with, newer than this
            code, or made for another featurizer; the message says what and the fix.
    """
    folder = Path(path)
    manifest, digest = _read_manifest(folder)
    _check_format(manifest, folder)
    _check_fields(manifest, folder)
    _check_schema(manifest, folder)  # before the widths: an old version says so

    def refuse(field: str, expected: str, given: object) -> None:
        raise BundleError(f"{MANIFEST_FILE} field {field!r} must be {expected}, got "
                          f"{given!r}; {_REEXPORT}.", path=folder)

    check_values(manifest, {}, fail=refuse)
    if policy_kind(manifest, fail=_reader_failure(folder)) == "baseline":
        return _read_baseline(manifest, folder, digest)
    if not isinstance(manifest["network"], dict):
        raise BundleError(f"{MANIFEST_FILE} field 'network' must be dict, got "
                          f"{manifest['network']!r}; {_REEXPORT}.", path=folder)
    contents = _check_files(manifest, folder)
    try:
        weights = _load_safetensors(contents[WEIGHTS_FILE])
    except (SafetensorError, ValueError) as error:
        raise BundleError(f"{WEIGHTS_FILE} is not a readable safetensors file ({error}); "
                          f"{_REEXPORT}.", path=folder) from error

    def fail(message: str) -> None:
        raise BundleError(f"the weights do not match the network description: {message}; "
                          f"{_REEXPORT}.", path=folder)

    _check_network(manifest, weights, fail=fail)
    _check_finite_weights(weights, refuse)
    for array in weights.values():
        array.flags.writeable = False
    predictor = check_predictor(manifest, contents, folder, fix=_REEXPORT)
    return Bundle(path=folder, manifest=manifest, weights=weights,
                  predictor_files=MappingProxyType(predictor), sha256=digest)


def _reader_failure(folder: Path) -> Any:
    def fail(message: str) -> None:
        raise BundleError(f"{MANIFEST_FILE}: {message}; {_REEXPORT}.", path=folder)
    return fail


def _read_baseline(manifest: dict[str, Any], folder: Path, digest: str) -> Bundle:
    """The rest of :func:`read_bundle` for a baseline bundle: its fields and hashes."""
    _check_baseline_fields(manifest, fail=_reader_failure(folder))
    contents = _check_files(manifest, folder, weights=False)
    predictor = check_predictor(manifest, contents, folder, fix=_REEXPORT)
    return Bundle(path=folder, manifest=manifest, weights={},
                  predictor_files=MappingProxyType(predictor), sha256=digest)


def _read_manifest(folder: Path) -> tuple[dict[str, Any], str]:
    """The parsed manifest and the sha256 of its bytes (read once)."""
    if not folder.is_dir():
        raise BundleError("no such bundle directory; pass the directory written by "
                          "`allocator train` (or export_bundle).", path=folder)
    file = folder / MANIFEST_FILE
    if not file.is_file():
        raise BundleError(f"no {MANIFEST_FILE}: not a policy bundle, or an incomplete copy; "
                          f"{_REEXPORT}.", path=folder)
    try:
        data = file.read_bytes()
        manifest = json.loads(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise BundleError(f"{MANIFEST_FILE} is not valid JSON ({error}); {_REEXPORT}.",
                          path=folder) from error
    if not isinstance(manifest, dict):
        raise BundleError(f"{MANIFEST_FILE} is not a JSON object; {_REEXPORT}.", path=folder)
    return manifest, hashlib.sha256(data).hexdigest()


def _check_format(manifest: dict[str, Any], folder: Path) -> None:
    if manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{MANIFEST_FILE} is not a ttc-allocator bundle manifest (format "
                          f"{manifest.get('format')!r}, expected {BUNDLE_FORMAT!r}); "
                          f"{_REEXPORT}.", path=folder)
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise BundleError(f"invalid format_version {version!r} in {MANIFEST_FILE}; "
                          f"{_REEXPORT}.", path=folder)
    if version > BUNDLE_FORMAT_VERSION:
        raise BundleError(f"bundle format version {version} is newer than this ttc-allocator "
                          f"reads (up to {BUNDLE_FORMAT_VERSION}); upgrade ttc-allocator "
                          "(pip install -U ttc-allocator), or re-export the bundle with the "
                          "version you run.", path=folder)


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "featurizer_version": (int,),
    "feature_names": (list,),
    "arms": (list,),
    "actions": (list,),
    "lambda_range": (list,),
    "cost_unit": (int, float),
    "normalization": (dict, type(None)),
    "network": (dict, type(None)),  # null in a baseline bundle (checked by kind)
    "run_id": (str, type(None)),
    "log_fingerprint": (str,),
    "created_at": (str,),
    "files": (dict,),
}


def _check_fields(manifest: dict[str, Any], folder: Path) -> None:
    for key, types in _FIELD_TYPES.items():
        if key not in manifest:
            raise BundleError(f"{MANIFEST_FILE} lacks the field {key!r}; {_REEXPORT}.",
                              path=folder)
        value = manifest[key]
        if isinstance(value, bool) or not isinstance(value, types):
            expected = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise BundleError(f"{MANIFEST_FILE} field {key!r} must be {expected}, got "
                              f"{value!r}; {_REEXPORT}.", path=folder)
    arms = manifest["arms"]
    if not arms or not all(isinstance(arm, str) for arm in arms):
        raise BundleError(f"{MANIFEST_FILE} field 'arms' must list the arm names; "
                          f"{_REEXPORT}.", path=folder)
    widths = manifest.get("widths", _OPTIONAL["widths"])
    try:
        widths = check_widths(MANIFEST_FILE, widths if isinstance(widths, list) else None)
    except ParameterError:
        raise BundleError(f"{MANIFEST_FILE} field 'widths' must list distinct whole numbers "
                          f">= 1 in ascending order from 1, got {manifest['widths']!r}; "
                          f"{_REEXPORT}.", path=folder) from None
    if manifest["actions"] != action_names(arms, widths):
        raise BundleError(f"the bundle's actions {manifest['actions']} are not this code's "
                          f"action layout {action_names(arms, widths)}; {_REEXPORT}.",
                          path=folder)


# ------------------------------------------------------------------ shared value checks
def check_values(manifest: Mapping[str, Any], weights: Mapping[str, np.ndarray], *,
                 fail: Any) -> None:
    """The numbers a policy computes with, checked alike by the writer and the reader.

    ``lambda_range`` is ``[low, high]``, finite, ``0 <= low <= high``; ``cost_unit`` is
    finite and > 0 (the oracle divides by it); ``normalization`` is null or finite
    ``mean`` and ``var >= 0`` of the feature width, finite ``epsilon >= 0`` and ``clip >
    0`` with ``var + epsilon > 0`` (it divides by ``sqrt(var + epsilon)``); every weight
    is finite (a NaN makes every logit NaN, every decision STOP).

    Args:
        manifest: the manifest (its ``feature_names`` give the width).
        weights: tensors by name (may be empty: checked by :func:`_check_finite_weights`).
        fail: ``fail(field, expected, given)`` raises the caller's error.
    """
    low_high = manifest["lambda_range"]
    if not (isinstance(low_high, list) and len(low_high) == 2 and all(
            _is_finite_number(v) for v in low_high) and 0 <= low_high[0] <= low_high[1]):
        fail("lambda_range", "[low, high], finite, 0 <= low <= high", low_high)
    if not (_is_finite_number(manifest["cost_unit"]) and manifest["cost_unit"] > 0):
        fail("cost_unit", "a finite number > 0", manifest["cost_unit"])
    if manifest["normalization"] is not None:
        _check_normalization(manifest["normalization"], len(manifest["feature_names"]), fail)
    _check_finite_weights(weights, fail)


def _is_finite_number(value: object) -> bool:
    return (not isinstance(value, bool) and isinstance(value, int | float | np.number)
            and math.isfinite(float(value)))  # type: ignore[arg-type]


def _check_finite_weights(weights: Mapping[str, np.ndarray], fail: Any) -> None:
    for name, array in weights.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            fail(f"weights[{name!r}]", "finite numbers (no NaN or infinity)",
                 f"{int((~np.isfinite(array)).sum())} non-finite values")


def _check_normalization(normalization: object, width: int, fail: Any) -> None:
    """``mean`` and ``var`` of the feature width; ``epsilon`` >= 0; ``clip`` > 0."""
    expected = (f"null or {{mean, var, epsilon, clip}}: finite mean and var >= 0 for each "
                f"of the {width} features, finite epsilon >= 0 and clip > 0, var + epsilon "
                "> 0 for every feature")
    try:
        assert isinstance(normalization, Mapping)
        mean = np.asarray(normalization["mean"], dtype=np.float64)
        var = np.asarray(normalization["var"], dtype=np.float64)
        epsilon = normalization["epsilon"]
        clip = normalization["clip"]
    except (AssertionError, KeyError, TypeError, ValueError):
        fail("normalization", expected, normalization)
        return
    if not (mean.shape == (width,) and var.shape == (width,) and np.isfinite(mean).all()
            and np.isfinite(var).all() and (var >= 0).all() and _is_finite_number(epsilon)
            and epsilon >= 0 and _is_finite_number(clip) and clip > 0
            and (var + float(epsilon) > 0).all()):
        fail("normalization", expected, {key: normalization.get(key) for key in
                                         ("epsilon", "clip")})


def _check_schema(manifest: dict[str, Any], folder: Path) -> None:
    """The featurizer version and the ordered feature names must be this code's."""
    version = manifest["featurizer_version"]
    if version != FEATURIZER_VERSION:
        raise BundleError(f"the policy was trained on featurizer version {version}, this "
                          f"code computes version {FEATURIZER_VERSION}: its observations "
                          "would mean something else (training/serving skew). Retrain and "
                          "re-export with this version, or install the ttc-allocator "
                          "version that trained it.", path=folder)
    expected = feature_names(manifest["arms"])
    given = manifest["feature_names"]
    if given == expected:
        return
    position = next((i for i, (a, b) in enumerate(zip(given, expected, strict=False))
                     if a != b), min(len(given), len(expected)))
    found = given[position] if position < len(given) else "<none>"
    wanted = expected[position] if position < len(expected) else "<none>"
    raise BundleError(f"feature {position} is {found!r} in the bundle but {wanted!r} in this "
                      f"code's featurizer (version {FEATURIZER_VERSION}; the bundle lists "
                      f"{len(given)} features, the featurizer {len(expected)}): the policy "
                      "would read the wrong inputs (training/serving skew). Re-export the "
                      "bundle from its training run, or retrain with this version.",
                      path=folder)


def _check_files(manifest: dict[str, Any], folder: Path, *, weights: bool = True
                 ) -> dict[str, bytes]:
    """Every listed file present with its sha256, no other file; returns their bytes.
    ``weights``: the weights file must be listed (a network bundle) or absent."""
    listed = manifest["files"]
    if not weights and WEIGHTS_FILE in listed:
        raise BundleError(f"a baseline bundle lists {WEIGHTS_FILE}; {_REEXPORT}.",
                          path=folder)
    if weights and WEIGHTS_FILE not in listed:
        raise BundleError(f"{MANIFEST_FILE} does not list {WEIGHTS_FILE}; {_REEXPORT}.",
                          path=folder)
    present = set(_list_files(folder)) - {MANIFEST_FILE}
    unlisted = sorted(present - set(listed))
    if unlisted:
        raise BundleError(f"unlisted file(s) {unlisted} in the bundle: it was modified after "
                          f"export. Remove them, or {_REEXPORT}.", path=folder)
    contents: dict[str, bytes] = {}
    for name, digest in sorted(listed.items()):
        if name not in present:
            raise BundleError(f"file {name!r} listed in {MANIFEST_FILE} is missing (an "
                              f"incomplete copy?); copy the whole bundle again, or "
                              f"{_REEXPORT}.", path=folder)
        data = (folder / name).read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise BundleError(f"file {name!r} does not match its sha256 in {MANIFEST_FILE}: "
                              f"it was modified or corrupted after export; {_REEXPORT}.",
                              path=folder)
        contents[name] = data
    return contents


def _list_files(folder: Path) -> list[str]:
    """Relative POSIX paths of every file under ``folder``; links are refused."""
    names = []
    for root, directories, files in os.walk(folder):
        for name in [*directories, *files]:
            if Path(root, name).is_symlink():
                raise BundleError(f"holds a symbolic link ({Path(root, name)}); bundles are "
                                  f"plain files: {_REEXPORT}.", path=folder)
        names.extend(Path(root, name).relative_to(folder).as_posix() for name in files)
    return sorted(names)


def _sha256(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()


# ------------------------------------------------------------------ network
def _check_network(manifest: Mapping[str, Any], weights: Mapping[str, np.ndarray],
                   *, fail: Any) -> None:
    """The network description is consistent and the tensors match it exactly.

    ``network["layers"]`` lists dense layers ``{"weight", "bias", "shape": [out, in],
    "activation"}`` applied in order (``y = activation(x @ W.T + b)``); the first takes
    the features, the last gives one logit per action.
    """
    network = manifest["network"]
    layers = network.get("layers") if isinstance(network, Mapping) else None
    if not isinstance(layers, list) or not layers:
        fail("network['layers'] must be a non-empty list of dense layers")
        return
    width = len(feature_names(list(manifest["arms"])))
    names: list[str] = []
    for index, layer in enumerate(layers):
        if not isinstance(layer, Mapping) or not {"weight", "bias", "shape", "activation"} <= set(
                layer):
            fail(f"layer {index} must give weight, bias, shape and activation")
            return
        out, inp = _shape_pair(layer["shape"])
        if inp != width:
            fail(f"layer {index} takes {inp} inputs, the previous layer gives {width}")
        if layer["activation"] not in (*ACTIVATIONS, None):
            fail(f"layer {index} has activation {layer['activation']!r}; this runtime "
                 f"implements {list(ACTIVATIONS)} (upgrade ttc-allocator)")
        for key, shape in ((layer["weight"], (out, inp)), (layer["bias"], (out,))):
            if key not in weights:
                fail(f"tensor {key!r} of layer {index} is missing")
            elif tuple(weights[key].shape) != shape:
                fail(f"tensor {key!r} has shape {tuple(weights[key].shape)}, the network "
                     f"says {shape}")
            elif weights[key].dtype.kind != "f":
                fail(f"tensor {key!r} has dtype {weights[key].dtype}, expected floats")
            names.append(key)
        width = out
    actions = n_actions(len(manifest["arms"]),
                        tuple(manifest.get("widths", _OPTIONAL["widths"])))
    if width != actions:
        fail(f"the last layer gives {width} logits, the actions are {actions}")
    extra = sorted(set(weights) - set(names))
    if extra:
        fail(f"tensors {extra} are not in the network description")


def _shape_pair(shape: object) -> tuple[int, int]:
    if (isinstance(shape, list | tuple) and len(shape) == 2
            and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
        return int(shape[0]), int(shape[1])  # type: ignore[index]
    return -1, -1
