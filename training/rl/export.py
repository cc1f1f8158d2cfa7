"""Export a trained MaskablePPO policy as a bundle: safetensors weights + JSON manifest.

SB3's own ``.zip`` holds cloudpickle and runs code when loaded: it is never shipped.
:func:`export_bundle` keeps the actor only (``mlp_extractor.policy_net.*`` and
``action_net.*`` from the policy's ``state_dict``), which
:class:`allocator.learned.MLPPolicyNetwork` runs in numpy; its docstring says which
policies are supported and how precision is kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import sb3_contrib
import stable_baselines3
import torch
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.common.vec_env import VecNormalize
from torch import nn

from allocator.actions import check_widths, n_actions
from allocator.bundle import write_bundle
from allocator.defaults import DEFAULT_PRIOR_FIELD, MAX_POOL_FIELD, predict_with
from allocator.errors import ParameterError
from allocator.featurizer import n_features
from allocator.session import UNINFORMED_PRIOR

__all__ = ["export_bundle", "network_description", "policy_weights"]

_ACTIVATIONS: dict[type[nn.Module], str] = {nn.Tanh: "tanh", nn.ReLU: "relu"}
_ACTOR_PREFIXES = ("mlp_extractor.policy_net.", "action_net.")


def _actor_layers(model: MaskablePPO) -> list[tuple[str, nn.Linear, str | None]]:
    """The actor's dense layers in order: (state_dict prefix, layer, activation name).

    Raises:
        ParameterError: the policy is not a supported MLP actor.
    """
    policy = model.policy
    owner = "export (MaskablePPO policy)"
    if not isinstance(policy.observation_space, spaces.Box) or len(
            policy.observation_space.shape) != 1:
        raise ParameterError(owner, "observation_space", "a 1-D Box (the featurizer's vector)",
                             policy.observation_space)
    if not isinstance(policy.action_space, spaces.Discrete):
        raise ParameterError(owner, "action_space", "Discrete", policy.action_space)
    if not isinstance(policy.pi_features_extractor, FlattenExtractor):
        raise ParameterError(owner, "features_extractor_class", "FlattenExtractor (MlpPolicy)",
                             type(policy.pi_features_extractor).__name__)
    layers: list[tuple[str, nn.Linear, str | None]] = []
    for index, module in enumerate(policy.mlp_extractor.policy_net):
        if isinstance(module, nn.Linear):
            layers.append((f"mlp_extractor.policy_net.{index}", module, None))
        elif type(module) in _ACTIVATIONS and layers and layers[-1][2] is None:
            prefix, linear, _ = layers[-1]
            layers[-1] = (prefix, linear, _ACTIVATIONS[type(module)])
        else:
            raise ParameterError(owner, "activation_fn",
                                 f"one of {sorted(_ACTIVATIONS.values())} after each Linear",
                                 type(module).__name__)
    if not isinstance(policy.action_net, nn.Linear):
        raise ParameterError(owner, "action_net", "a Linear layer",
                             type(policy.action_net).__name__)
    layers.append(("action_net", policy.action_net, None))
    return layers


def policy_weights(model: MaskablePPO) -> dict[str, np.ndarray]:
    """The actor's tensors by ``state_dict`` name, as float32 numpy arrays (exact copies).

    Only ``mlp_extractor.policy_net.*`` and ``action_net.*``: the value network is not
    needed to decide.
    """
    _actor_layers(model)  # refuses unsupported policies
    state = model.policy.state_dict()
    return {name: tensor.detach().cpu().numpy().astype(np.float32, copy=True)
            for name, tensor in state.items() if name.startswith(_ACTOR_PREFIXES)}


def network_description(model: MaskablePPO) -> dict[str, Any]:
    """The actor's architecture, as the bundle manifest's ``network`` field.

    Returns:
        ``{"kind": "mlp", "layer_sizes": [...], "activation": ..., "dtype": "float32",
        "layers": [{"weight", "bias", "shape": [out, in], "activation"}, ...], ...}``.
    """
    layers = _actor_layers(model)
    hidden = {activation for _, _, activation in layers[:-1]}
    return {
        "kind": "mlp",
        "source": "sb3-contrib MaskablePPO MlpPolicy actor (mlp_extractor.policy_net, "
                  "action_net)",
        "layer_sizes": [layers[0][1].in_features, *(linear.out_features
                                                    for _, linear, _ in layers)],
        "activation": hidden.pop() if len(hidden) == 1 else None,
        "dtype": "float32",
        "output": "logits",
        "decision": "argmax of the logits over allowed actions (ties: lowest index)",
        "layers": [{"weight": f"{prefix}.weight", "bias": f"{prefix}.bias",
                    "shape": [linear.out_features, linear.in_features],
                    "activation": activation}
                   for prefix, linear, activation in layers],
    }


def _normalization(model: MaskablePPO,
                   given: VecNormalize | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The observation normalisation statistics (mean, var, epsilon, clip), or None."""
    source = given if given is not None else model.get_vec_normalize_env()
    if source is None:
        return None
    if isinstance(source, Mapping):
        return dict(source)
    if not source.norm_obs:
        return None
    return {"mean": np.asarray(source.obs_rms.mean, dtype=np.float64).tolist(),
            "var": np.asarray(source.obs_rms.var, dtype=np.float64).tolist(),
            "epsilon": float(source.epsilon), "clip": float(source.clip_obs)}


def training_max_pool(model: MaskablePPO, arms: list[str]) -> dict[str, int] | None:
    """The largest pool per arm among the model's training queries (capped at the env's
    ``max_samples``), read from its batched replay env; None if it has none."""
    env = model.get_env()
    while env is not None and hasattr(env, "venv"):
        env = env.venv
    pools, settings = getattr(env, "pools", None), getattr(env, "settings", None)
    if pools is None or settings is None or list(pools.arms) != arms:
        return None
    largest = pools.arm_count[np.asarray(settings.queries)].max(axis=0, initial=0)
    if settings.max_samples is not None:
        largest = np.minimum(largest, settings.max_samples)
    return {arm: int(count) for arm, count in zip(arms, largest.tolist(), strict=True)}


def uninformed_prior(arms: list[str], predictor_dir: str | Path | None) -> dict[str, Any]:
    """The manifest's ``default_prior``: the prior of a query without text or metadata.

    With a predictor, its prediction for an empty text without metadata (through
    :func:`allocator.oracle.predict_with`, the runtime's own path, so that a session
    without text gets bit for bit what a session with ``""`` gets, and what training gave
    a log query without text or metadata); without, the replay environment's prior.

    Raises:
        ParameterError: the predictor needs user feature columns (pass ``default_prior``).
    """
    if predictor_dir is None:
        return {"values": {arm: UNINFORMED_PRIOR for arm in arms},
                "source": "the replay environment's prior (trained without a difficulty "
                          "predictor)"}
    from allocator.training.difficulty import DifficultyPredictor

    predictor = DifficultyPredictor.load(predictor_dir)
    if predictor.features_.n_user_features:
        raise ParameterError("export_bundle", "default_prior", "given: the predictor needs "
                             "user feature columns, so it has no prior for a bare query",
                             None)
    values = predict_with(predictor, arms, [""], [{}])[0]
    return {"values": dict(zip(arms, map(float, values), strict=True)),
            "source": "the difficulty predictor on an empty text without metadata"}


def _check_defaults(arms: list[str], max_pool: Mapping[str, int] | None,
                    default_prior: Mapping[str, Any]) -> None:
    """ParameterError unless both fields cover every arm with valid values."""
    if max_pool is not None and (set(max_pool) != set(arms) or not all(
            isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 0
            for v in max_pool.values())):
        raise ParameterError("export_bundle", "max_pool", f"arm -> integer >= 0 for every arm "
                             f"{arms}", dict(max_pool))
    values = default_prior.get("values")
    if (not isinstance(values, Mapping) or set(values) != set(arms)
            or not all(0.0 <= float(v) <= 1.0 for v in values.values())
            or not isinstance(default_prior.get("source"), str)):
        raise ParameterError("export_bundle", "default_prior", "{'values': {arm: p in [0, 1]} "
                             f"for every arm {arms}, 'source': text}}", dict(default_prior))


def export_bundle(
    model: MaskablePPO,
    path: str | Path,
    *,
    arms: list[str] | tuple[str, ...],
    lambda_range: tuple[float, float],
    cost_unit: float,
    log_fingerprint: str,
    run_id: str | None = None,
    predictor_dir: str | Path | None = None,
    normalization: VecNormalize | Mapping[str, Any] | None = None,
    max_pool: Mapping[str, int] | None = None,
    default_prior: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    widths: tuple[int, ...] = (1,),
) -> Path:
    """Write ``model``'s policy as a bundle (see :mod:`allocator.bundle`).

    Supported policies: ``MlpPolicy`` with a flatten features extractor over a 1-D ``Box``
    observation, dense hidden layers with one activation among tanh (SB3's default) and
    ReLU, and a ``Discrete`` action space. Observation normalisation by a ``VecNormalize``
    (the model's env, or the one given) is exported with its statistics.

    Precision: the weights are exported as float32, bit for bit the trained parameters
    (float64 copies would add no information). The runtime upcasts them and computes in
    float64: torch computes the same function in float32, so the two differ by torch's own
    rounding only, which is closer to ``MaskablePPO.predict`` than a float32 numpy pass
    (whose summation order differs from torch's kernels) gets. A decision can only differ
    where the two best allowed logits are within ~1e-6; the export test checks equality on
    more than 10,000 replayed states (see :mod:`allocator.learned`).

    Args:
        model: the trained MaskablePPO (``MlpPolicy``) whose observation is the
            featurizer's vector over ``arms``.
        path: the bundle directory (replaced atomically if it holds a bundle).
        arms: arm names in arm-index order (the env's ``pools.arms``).
        lambda_range: the range of ``lambda`` the policy was trained on.
        cost_unit: the cost unit of the training env (``settings.cost_unit``).
        log_fingerprint: fingerprint of the training log.
        run_id: the training run's id (e.g. the MLflow run id).
        predictor_dir: the saved difficulty predictor to include, if any.
        normalization: a ``VecNormalize`` or its statistics (mean, var, epsilon, clip);
            by default the model's own ``VecNormalize`` env, if any.
        max_pool: the largest pool per arm the policy was trained on (the runtime's
            default sample cap, manifest ``max_pool``); default
            :func:`training_max_pool` of the model's env (absent if it has none).
        default_prior: the prior of a query without text or metadata, ``{"values": {arm:
            p}, "source": text}`` (manifest ``default_prior``); default
            :func:`uninformed_prior`.
        extra: more manifest fields (JSON-serialisable).
        widths: the parallel widths of the model's action layout (the training env's
            ``settings.widths``; manifest ``widths``).

    Returns:
        The bundle directory.

    Raises:
        ParameterError: the model's spaces do not fit ``arms``, or the policy is not a
            supported MLP.
    """
    arms = list(arms)
    space = model.policy.observation_space
    if space.shape != (n_features(len(arms)),):
        raise ParameterError("export_bundle", "arms",
                             f"the arms of the model's observation ({space.shape[0]} features)",
                             arms)
    widths = check_widths("export_bundle", widths)
    if getattr(model.policy.action_space, "n", None) != n_actions(len(arms), widths):
        raise ParameterError("export_bundle", "arms",
                             f"the arms and widths of the model's "
                             f"{model.policy.action_space} actions (widths {list(widths)})",
                             arms)
    manifest: dict[str, Any] = {
        "arms": arms,
        "widths": list(widths),
        "lambda_range": [float(lambda_range[0]), float(lambda_range[1])],
        "cost_unit": float(cost_unit),
        "normalization": _normalization(model, normalization),
        "network": network_description(model),
        "run_id": run_id,
        "log_fingerprint": log_fingerprint,
        "training": {
            "algorithm": "MaskablePPO",
            "num_timesteps": int(model.num_timesteps),
            "seed": model.seed,
            "versions": {"sb3-contrib": sb3_contrib.__version__,
                         "stable-baselines3": stable_baselines3.__version__,
                         "torch": torch.__version__.split("+")[0]},
        },
        **dict(extra or {}),
    }
    max_pool = training_max_pool(model, arms) if max_pool is None else dict(max_pool)
    default_prior = (uninformed_prior(arms, predictor_dir) if default_prior is None
                     else dict(default_prior))
    _check_defaults(arms, max_pool, default_prior)
    manifest[DEFAULT_PRIOR_FIELD] = default_prior
    if max_pool is not None:
        manifest[MAX_POOL_FIELD] = {arm: int(max_pool[arm]) for arm in arms}
    return write_bundle(path, weights=policy_weights(model), manifest=manifest,
                        predictor_dir=predictor_dir)
