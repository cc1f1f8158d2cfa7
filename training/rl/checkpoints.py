"""Training checkpoints without pickle: tensors as safetensors, the rest as JSON, hashed.

SB3's ``model.save`` writes a ``.zip`` of cloudpickle that runs code when loaded (a
modified checkpoint ran a shell command on ``allocator train --resume``).
:func:`save_checkpoint` writes a folder of safetensors and hashed JSON (its docstring lists
the files); :func:`load_checkpoint` builds a fresh model from the run's settings (which
must equal the checkpoint's, :data:`MODEL_SETTINGS`), checks every hash, and loads the
tensors into it; nothing is unpickled and SB3's ``.zip`` is never read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from allocator.errors import ParameterError

if TYPE_CHECKING:
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import VecNormalize

    from allocator.training.rl.config import TrainConfig

__all__ = ["CHECKPOINT_FORMAT", "MANIFEST", "MODEL_SETTINGS", "load_checkpoint",
           "save_checkpoint"]

CHECKPOINT_FORMAT = "ttc-allocator-checkpoint"
_VERSION = 1
MANIFEST = "checkpoint.json"
_POLICY, _OPTIMIZER, _NORMALIZATION = ("policy.safetensors", "optimizer.safetensors",
                                       "normalization.npz")
#: The settings a resumed run must share with its checkpoint (they define the model, its
#: optimisation and its episodes; ``total_timesteps`` and the evaluation may change).
MODEL_SETTINGS = ("n_envs", "lambda_range", "lambda_sampling", "normalize_observations",
                  "learning_rate", "n_steps", "batch_size", "n_epochs", "gamma",
                  "gae_lambda", "clip_range", "ent_coef", "vf_coef", "max_grad_norm",
                  "net_arch", "activation", "seed", "mu", "widths")
#: What a checkpoint written before a setting existed was trained with.
_SETTING_DEFAULTS = {"mu": 0.0, "widths": [1]}
_OWNER = "train_policy"


# ------------------------------------------------------------------ saving
def save_checkpoint(model: MaskablePPO, path: Path, config: TrainConfig,
                    normalizer: VecNormalize | None) -> Path:
    """Write the model's checkpoint folder atomically (a staging folder renamed).

    The folder ``<prefix>_<num_timesteps>/`` holds:

    ===========================  ============================================================
    file                         content
    ===========================  ============================================================
    ``policy.safetensors``       the policy's ``state_dict`` (actor, critic, their heads)
    ``optimizer.safetensors``    the optimizer's per-parameter tensors (Adam's moments, step)
    ``normalization.npz``        with observation normalisation: its running mean, var, count
    ``checkpoint.json``          format, ``num_timesteps``, ``n_updates``, the training
                                 settings, the optimizer's parameter groups, the sha256 of
                                 every other file (written last: a folder without it is
                                 incomplete)
    ===========================  ============================================================

    Returns:
        The checkpoint folder.
    """
    from safetensors.torch import save as save_tensors

    staging = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    try:
        policy = {name: tensor.detach().cpu().clone().contiguous()
                  for name, tensor in model.policy.state_dict().items()}
        optimizer, groups = _optimizer_tensors(model.policy.optimizer.state_dict())
        (staging / _POLICY).write_bytes(save_tensors(policy))
        (staging / _OPTIMIZER).write_bytes(save_tensors(optimizer))
        if normalizer is not None:
            rms = normalizer.obs_rms
            np.savez(staging / _NORMALIZATION, mean=rms.mean, var=rms.var,
                     count=np.float64(rms.count))
        files = {item.name: _sha256(item.read_bytes()) for item in sorted(staging.iterdir())}
        manifest = {"format": CHECKPOINT_FORMAT, "version": _VERSION,
                    "num_timesteps": int(model.num_timesteps), "n_updates": int(model._n_updates),
                    "settings": config.to_dict(), "optimizer_param_groups": groups,
                    "files": files}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n",
                                        encoding="utf-8")
        if path.exists():
            shutil.rmtree(path)
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def _optimizer_tensors(state: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The optimizer's per-parameter tensors by ``"<param>.<name>"``, and its groups."""
    import torch

    tensors = {}
    for param, values in state["state"].items():
        for name, value in values.items():
            if not isinstance(value, torch.Tensor):
                raise ParameterError(_OWNER, "optimizer", "an optimizer whose state holds "
                                     "tensors only (Adam)", f"{name}={value!r}")
            tensors[f"{int(param)}.{name}"] = value.detach().cpu().clone().contiguous()
    groups = [{key: list(value) if isinstance(value, tuple) else value
               for key, value in group.items()} for group in state["param_groups"]]
    return tensors, groups


# ------------------------------------------------------------------ loading
def load_checkpoint(path: Path, model: MaskablePPO, config: TrainConfig,
                    normalizer: VecNormalize | None) -> MaskablePPO:
    """Load a checkpoint folder into a fresh ``model`` built from ``config``.

    Raises:
        ParameterError: the folder is not a complete checkpoint, a file does not match
            its hash (modified or corrupted), or the run's settings differ from the
            checkpoint's; the message says which and what to do.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as load_tensors

    manifest = _read_manifest(path)
    _check_settings(manifest, config, path)
    contents = _verified_files(manifest, path)
    try:
        policy = load_tensors(contents[_POLICY])
        optimizer = load_tensors(contents[_OPTIMIZER])
        model.policy.load_state_dict(policy, strict=True)
        model.policy.optimizer.load_state_dict(_optimizer_state(
            optimizer, manifest["optimizer_param_groups"]))
    except (SafetensorError, RuntimeError, ValueError, KeyError, TypeError) as error:
        raise ParameterError(_OWNER, "resume_from", "a checkpoint of this run's network and "
                             f"optimizer ({error})", str(path)) from None
    if normalizer is not None:
        _load_normalization(normalizer, contents, path)
    model.num_timesteps = int(manifest["num_timesteps"])
    model._n_updates = int(manifest["n_updates"])
    return model


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ParameterError(_OWNER, "resume_from", f"a checkpoint folder with a readable "
                             f"{MANIFEST} (an interrupted save leaves none: resume from the "
                             f"previous checkpoint) ({error})", str(path)) from None
    keys = ("num_timesteps", "n_updates", "settings", "optimizer_param_groups", "files")
    if (not isinstance(manifest, dict) or manifest.get("format") != CHECKPOINT_FORMAT
            or manifest.get("version") != _VERSION or not all(k in manifest for k in keys)):
        raise ParameterError(_OWNER, "resume_from", f"a {CHECKPOINT_FORMAT} v{_VERSION} "
                             "checkpoint", str(path))
    return manifest


def _check_settings(manifest: dict[str, Any], config: TrainConfig, path: Path) -> None:
    saved, current = manifest["settings"], config.to_dict()
    def was(name: str) -> Any:
        return saved.get(name, _SETTING_DEFAULTS.get(name))

    differ = [name for name in MODEL_SETTINGS if was(name) != current[name]]
    if differ:
        shown = ", ".join(f"{name}: checkpoint {was(name)!r}, now {current[name]!r}"
                          for name in differ)
        raise ParameterError(_OWNER, "config", "the settings the checkpoint was trained "
                             "with (resume with the run's config.toml; only total_timesteps "
                             "and the evaluation settings may change)",
                             f"{shown} ({path})")


def _verified_files(manifest: dict[str, Any], path: Path) -> dict[str, bytes]:
    """Every listed file read once and checked against its sha256."""
    listed = manifest["files"]
    listed = listed if isinstance(listed, dict) else {}
    expected = {_POLICY, _OPTIMIZER} | ({_NORMALIZATION} if _NORMALIZATION in listed else set())
    if set(listed) != expected:
        raise ParameterError(_OWNER, "resume_from", f"a checkpoint listing {sorted(expected)}",
                             f"{path} lists {sorted(listed)}")
    contents = {}
    for name, digest in listed.items():
        try:
            data = (path / name).read_bytes()
        except OSError as error:
            raise ParameterError(_OWNER, "resume_from", f"a complete checkpoint ({name} "
                                 f"missing: {error.strerror})", str(path)) from None
        if _sha256(data) != digest:
            raise ParameterError(_OWNER, "resume_from", f"a checkpoint whose files match the "
                                 f"sha256 in its {MANIFEST} ({name} was modified or "
                                 "corrupted after it was written; resume from an earlier "
                                 "checkpoint or start a new run)", str(path))
        contents[name] = data
    return contents


def _optimizer_state(tensors: dict[str, Any], groups: list[dict[str, Any]]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        param, _, name = key.partition(".")
        state.setdefault(int(param), {})[name] = tensor
    return {"state": state, "param_groups": groups}


def _load_normalization(normalizer: VecNormalize, contents: dict[str, bytes],
                        path: Path) -> None:
    import io

    if _NORMALIZATION not in contents:
        raise ParameterError(_OWNER, "resume_from", "a checkpoint with its observation "
                             f"statistics ({_NORMALIZATION})", str(path))
    with np.load(io.BytesIO(contents[_NORMALIZATION]), allow_pickle=False) as saved:
        mean, var = saved["mean"].copy(), saved["var"].copy()
        count = float(saved["count"])
    width = normalizer.obs_rms.mean.shape
    if mean.shape != width or var.shape != width:
        raise ParameterError(_OWNER, "resume_from", f"observation statistics of shape {width}",
                             f"{mean.shape} in {path}")
    normalizer.obs_rms.mean, normalizer.obs_rms.var, normalizer.obs_rms.count = mean, var, count


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
