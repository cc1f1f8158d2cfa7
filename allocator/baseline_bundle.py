"""Baseline bundles: a registered baseline policy at one setting, served as a learned one is.

``allocator train``'s safety net exports a baseline where it beats the learned policy on
the validation queries. :func:`write_baseline_bundle` writes such a bundle (no weights: the
manifest names the policy and its parameters, and says how lambda is treated);
:func:`baseline_policy` rebuilds the policy and :func:`bundle_policy` returns the policy of
any bundle, learned or baseline.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from allocator.bundle import POLICY_FIELD, Bundle, write_bundle
from allocator.errors import AllocatorError, BundleError, ParameterError
from allocator.policies import POLICIES, make_policy
from allocator.policies.base import Policy

__all__ = ["LAMBDA_NOTE", "baseline_policy", "bundle_policy", "exportable",
           "policy_params", "write_baseline_bundle"]

#: The manifest's ``lambda`` note of a baseline bundle.
LAMBDA_NOTE = ("ignored: a baseline's trade-off is its knob, fixed at the setting chosen on "
               "validation queries")


def exportable(policy: Policy) -> str | None:
    """Why ``policy`` cannot be exported as a baseline bundle, or None when it can.

    A baseline bundle holds a registered, deployable, deterministic policy other than the
    learned one (which is exported with its weights), whose parameters are JSON values.
    """
    name = getattr(type(policy), "name", None)
    if name not in POLICIES or POLICIES[name] is not type(policy):
        return f"{type(policy).__name__} is not a registered policy"
    if name == "learned" or not type(policy).deployable or type(policy).stochastic:
        return f"{name!r} is not a deployable deterministic baseline"
    try:
        policy_params(policy)
    except ParameterError as error:
        return str(error)
    return None


#: How an infinite parameter (a threshold of -inf) is written: ``{"float": "-inf"}``.
_INFINITY_TAG = "float"


def policy_params(policy: Policy) -> dict[str, Any]:
    """The policy's constructor parameters as JSON values (tuples become lists, an
    infinite number ``{"float": "inf"}`` or ``"-inf"``).

    Raises:
        ParameterError: a parameter is not a JSON value (number, string, bool, None, or a
            list of them).
    """
    return {field.name: _to_json(type(policy).name, field.name, getattr(policy, field.name))
            for field in dataclasses.fields(policy)  # type: ignore[arg-type]
            if field.init}


def _to_json(owner: str, name: str, value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_to_json(owner, name, item) for item in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy scalars
        value = value.item()
    if value is None or isinstance(value, bool | int | float | str):
        if isinstance(value, float) and value != value:
            raise ParameterError(f"policy {owner!r}", name, "a number, not NaN", value)
        if isinstance(value, float) and math.isinf(value):  # JSON has no infinity
            return {_INFINITY_TAG: "inf" if value > 0 else "-inf"}
        return value
    raise ParameterError(f"policy {owner!r}", name, "a JSON value (number, string, bool, "
                         "None or a list of them) to be stored in a bundle", value)


def _from_json(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {_INFINITY_TAG}:
        return float(value[_INFINITY_TAG])
    return tuple(_from_json(item) for item in value) if isinstance(value, list) else value


def write_baseline_bundle(
    path: str | Path,
    policy: Policy,
    *,
    arms: list[str] | tuple[str, ...],
    lambda_range: tuple[float, float],
    cost_unit: float,
    log_fingerprint: str,
    run_id: str | None = None,
    predictor_dir: str | Path | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Export a baseline policy at one setting as a bundle (no weights).

    ``allocator train``'s safety net exports a baseline where it beats the learned policy on
    the validation queries (see :mod:`allocator.training.rl.pipeline`). Such a bundle holds no
    weights:
    its manifest's ``policy`` field names the policy and its parameters::

        "policy": {"kind": "baseline", "name": "adaptive-consistency",
                   "params": {"threshold": 0.9, "max_samples": 16, "arm": 0}}

    and everything else (format, fields, feature schema, file hashes, the optional difficulty
    predictor) is a learned bundle's and is checked the same way by
    :func:`allocator.bundle.read_bundle`. :func:`allocator.load` returns the same
    :class:`~allocator.oracle.BudgetOracle`: sessions, ``budget``, ``allocate``, the HTTP
    service and the executors drive the baseline through the same
    :class:`~allocator.policies.base.Policy` interface (``decision_function``) they drive the
    learned network through.

    Lambda. A baseline has its own knob (a threshold, a number of samples...), fixed in the
    bundle at the setting chosen on validation queries (the cheapest one reaching the
    validation target). Its decisions do not read lambda: a session's ``lambda_`` (accepted in
    the bundle's ``lambda_range``, the range the learned policy of the same run was trained
    on, so that callers' code works whichever bundle the run exported) changes nothing, and
    another trade-off means another setting: export it with :func:`write_baseline_bundle`.
    The manifest's ``lambda`` field says so.

    Parameters travel as JSON: tuples become lists on the way out and tuples again on the way
    in, so the policy rebuilt by :func:`baseline_policy` equals the exported one. A policy
    with parallel ``widths`` (``parallel-n``) gives the bundle its layout's ``widths``
    (unless ``extra`` sets them), so its sessions offer the waves it asks for.

    Args:
        path: the bundle directory (replaced if it holds a bundle, see
            :func:`allocator.bundle.write_bundle`).
        policy: the registered baseline at its setting (arm indices in ``arms``' order).
        arms: the log's arm names.
        lambda_range: the prices sessions accept (they do not change the decisions).
        cost_unit: the log's mean sample cost (the policy sees costs in this unit).
        log_fingerprint: the fingerprint of the log the setting was chosen on.
        run_id: the training run's id, if any.
        predictor_dir: a saved difficulty predictor, for the sessions' prior.
        extra: more manifest fields (JSON values).

    Returns:
        The bundle directory.

    Raises:
        ParameterError: the policy cannot be exported (:func:`exportable` says why), or
            an invalid manifest field.
    """
    reason = exportable(policy)
    if reason is not None:
        raise ParameterError("write_baseline_bundle", "policy",
                             "a registered deployable deterministic baseline with JSON "
                             f"parameters ({reason})", policy)
    _check_arm(policy, len(arms), fail=lambda message: _raise_parameter(policy, message))
    manifest = {
        **dict(extra or {}),
        POLICY_FIELD: {"kind": "baseline", "name": type(policy).name,
                       "params": policy_params(policy), "knob": type(policy).knob},
        "lambda": LAMBDA_NOTE,
        "arms": list(arms), "lambda_range": tuple(lambda_range), "cost_unit": cost_unit,
        "network": None, "normalization": None, "run_id": run_id,
        "log_fingerprint": log_fingerprint,
    }
    widths = getattr(policy, "widths", None)  # a policy that launches waves (parallel-n)
    if widths is not None and "widths" not in manifest:
        manifest["widths"] = list(widths)
    return write_bundle(path, weights=None, manifest=manifest, predictor_dir=predictor_dir)


def _raise_parameter(policy: Policy, message: str) -> None:
    raise ParameterError("write_baseline_bundle", "policy", message, policy)


def _check_arm(policy: Policy, n_arms: int, *, fail: Any) -> None:
    """Arm indices of the policy (``arm`` field) within the bundle's arms."""
    arm = getattr(policy, "arm", 0)
    if isinstance(arm, int) and not 0 <= arm < n_arms:
        fail(f"a policy whose arm index is one of the {n_arms} arms (arm={arm})")


def baseline_policy(bundle: Bundle) -> Policy:
    """The baseline policy a verified baseline bundle holds, rebuilt from its parameters.

    Raises:
        BundleError: the bundle is not a baseline bundle, or its policy is unknown to this
            code, not a deployable baseline, or refuses its parameters.
    """
    if bundle.policy_kind != "baseline":
        raise BundleError(f"holds a {bundle.policy_kind} policy, not a baseline; load it "
                          "with allocator.load(path).", path=bundle.path)
    spec = bundle.manifest[POLICY_FIELD]
    name = spec["name"]
    params = {key: _from_json(value) for key, value in spec["params"].items()}
    fix = ("re-export the bundle with this version (allocator train ... -o RUN_DIR), or "
           "install the ttc-allocator version that exported it")
    if name not in POLICIES or name == "learned":
        raise BundleError(f"the bundle's baseline {name!r} is not a registered baseline of "
                          f"this code ({sorted(POLICIES)}); {fix}.", path=bundle.path)
    try:
        policy = make_policy(name, **params)
    except (AllocatorError, TypeError, ValueError) as error:
        raise BundleError(f"the bundle's baseline {name!r} refuses its parameters "
                          f"({error}); {fix}.", path=bundle.path) from error
    reason = exportable(policy)

    def fail(message: str) -> None:
        raise BundleError(f"the bundle's baseline must be {message}; {fix}.",
                          path=bundle.path)

    if reason is not None:
        fail(f"a deployable deterministic baseline ({reason})")
    _check_arm(policy, len(bundle.arms), fail=fail)
    return policy


def bundle_policy(bundle: Bundle) -> Policy:
    """The policy that decides for a verified bundle: the learned network's
    (:class:`~allocator.learned.LearnedPolicy`, built from this bundle, not read again) or
    the baseline's."""
    if bundle.policy_kind == "baseline":
        return baseline_policy(bundle)
    from allocator.learned import LearnedPolicy

    return LearnedPolicy.from_bundle(bundle)
