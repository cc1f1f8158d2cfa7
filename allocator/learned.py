"""The learned allocator: an exported MaskablePPO actor, run in numpy.

:class:`MLPPolicyNetwork` is the forward pass of sb3-contrib's ``MaskablePPO`` actor
(``MlpPolicy``: a flatten features extractor, ``mlp_extractor.policy_net`` as dense layers
each followed by its activation, tanh by default, then ``action_net``) from the weights
of a bundle (:mod:`allocator.bundle`), named as in the torch ``state_dict``.

Exactness. The bundle stores the weights as trained (float32, bit for bit); the forward
pass upcasts them (exactly) and computes in float64, layer by layer as torch does
(``x @ W.T + b``, then the activation), from the float32 observation the policy sees.
Torch computes the same function in float32, so its logits differ from these by its own
rounding only (measured on a briefly trained 64x64 tanh actor: at most 3e-7, against 7e-7
for a float32 numpy pass, whose summation order differs from torch's kernels; below 1e-6
after longer training, while the two best allowed logits were 1e-3 to 1e-1 apart). The
decision is the masked arg max: disallowed logits are set to ``-inf`` (sb3-contrib uses
``-1e8``; with at least one allowed action both give the same arg max) and ties go to the
lowest index, as ``torch.argmax`` does. A decision can therefore only differ from
``MaskablePPO.predict(..., deterministic=True)`` where the two best allowed logits are
within about 1e-6 of each other; the export test checks equality on more than 10,000
replayed states, with the environment's masks and with random ones.

:class:`LearnedPolicy` is the registered policy ``"learned"`` (by entry, see
:data:`allocator.policies.registry.ENTRIES`): ``act`` featurizes the
states with :func:`allocator.featurizer.featurize` (the featurizer the environment
trained on; :func:`allocator.bundle.read_bundle` refuses a bundle made for another
feature list) and takes the masked arg max. It is built from a verified bundle, read and
hash-checked once, and keeps it: a policy never changes, whatever happens to the files on
disk, and a pickled copy refuses a bundle that is not the one it was made from.

The runtime's single-state path. A session's decision is one observation and one mask:
there numpy's fixed cost per call (about twenty calls of half a microsecond) would be most
of the time, so :meth:`MLPPolicyNetwork.decide` runs the same arithmetic in the compiled
kernel ``allocator._mlpkernel`` (C, built with the package; see its source for the exact
steps) on a list of features and a bit set of allowed actions. Where the kernel was not
built (no C compiler at install time) the numpy path decides instead;
:func:`kernel_available` tells which one runs, and tests check that both give the same
decisions and logits within a few units in the last place.

This module imports numpy and ``safetensors.numpy`` (through :mod:`allocator.bundle`):
no torch, no stable-baselines3, no pickle.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, InitVar, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from allocator.actions import mask_bits, mask_of_bits, n_actions
from allocator.bundle import Bundle, read_bundle
from allocator.errors import BundleError, ParameterError
from allocator.featurizer import QueryState, StateBatch, featurize
from allocator.policies.base import Policy

try:  # the compiled single-state forward pass, when the package was built with it
    from allocator._mlpkernel import Kernel as _Kernel
except ImportError:  # pragma: no cover - depends on the build
    _Kernel = None

__all__ = ["LearnedPolicy", "MLPPolicyNetwork", "ObservationNormalization",
           "kernel_available"]


def kernel_available() -> bool:
    """Whether the compiled kernel ``allocator._mlpkernel`` was built (else sessions
    decide with numpy: the same decisions, a few microseconds slower)."""
    return _Kernel is not None


@dataclass(frozen=True, eq=False)
class ObservationNormalization:
    """Observation normalisation as stable-baselines3's ``VecNormalize`` applies it.

    ``clip((obs - mean) / sqrt(var + epsilon), -clip, clip)`` computed in float64, then
    cast to float32.
    """

    mean: np.ndarray
    var: np.ndarray
    epsilon: float
    clip: float

    @classmethod
    def from_manifest(cls, data: Mapping[str, Any]) -> ObservationNormalization:
        """From the manifest's ``normalization`` field (mean, var, epsilon, clip)."""
        return cls(mean=np.asarray(data["mean"], dtype=np.float64),
                   var=np.asarray(data["var"], dtype=np.float64),
                   epsilon=float(data["epsilon"]), clip=float(data["clip"]))

    def __post_init__(self) -> None:
        # float64, as VecNormalize keeps its running statistics (and the kernel reads them)
        for name in ("mean", "var"):
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name),
                                                                dtype=np.float64))
        # sqrt(var + epsilon) once: the same values VecNormalize divides by on every call.
        object.__setattr__(self, "_scale", np.sqrt(self.var + self.epsilon))

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """The normalised observations, float32."""
        scaled = np.subtract(obs, self.mean)
        np.divide(scaled, self._scale, out=scaled)
        np.minimum(scaled, self.clip, out=scaled)
        np.maximum(scaled, -self.clip, out=scaled)
        return scaled.astype(np.float32)


def _tanh(x: np.ndarray) -> np.ndarray:
    return np.tanh(x, out=x)


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0, out=x)


def _identity(x: np.ndarray) -> np.ndarray:
    return x


_ACTIVATIONS = {"tanh": _tanh, "relu": _relu, "identity": _identity, None: _identity}
#: The kernel's activation codes (see ``allocator/_mlpkernel.c``).
_KERNEL_CODES = {"tanh": 1, "relu": 2, "identity": 0, None: 0}


class MLPPolicyNetwork:
    """The numpy forward pass of a MaskablePPO ``MlpPolicy`` actor.

    Args:
        layers: dense layers in order, each ``(weight (out, in), bias (out,),
            activation)`` with ``activation`` one of ``"tanh"``, ``"relu"``,
            ``"identity"`` or None.
        normalization: observation normalisation applied first, or None.
        compiled: run :meth:`decide` in the compiled kernel: None (default) where it
            was built, False for the numpy path, True to require the kernel.

    Attributes:
        backend: ``"compiled"`` or ``"numpy"``: what :meth:`decide` runs.

    Raises:
        ParameterError: no layers, an unknown activation, or ``compiled=True`` where the
            kernel was not built.

    Example:
        >>> network = MLPPolicyNetwork.from_bundle(read_bundle("bundle"))  # doctest: +SKIP
        >>> actions = network.act(observations, masks)  # doctest: +SKIP
    """

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray, str | None]],
                 normalization: ObservationNormalization | None = None, *,
                 compiled: bool | None = None) -> None:
        if not layers:
            raise ParameterError("MLPPolicyNetwork", "layers", "at least one dense layer", layers)
        self._layers = []
        for weight, bias, activation in layers:
            if activation not in _ACTIVATIONS:
                raise ParameterError("MLPPolicyNetwork", "activation",
                                     f"one of {sorted(a for a in _ACTIVATIONS if a)} or None",
                                     activation)
            # Float64 copies of the (float32) weights; W.T contiguous for x @ W.T.
            self._layers.append((np.ascontiguousarray(np.asarray(weight, np.float64).T),
                                 np.asarray(bias, np.float64), _ACTIVATIONS[activation]))
        self.normalization = normalization
        self.n_inputs = int(self._layers[0][0].shape[0])
        self.n_outputs = int(self._layers[-1][0].shape[1])
        if compiled and _Kernel is None:
            raise ParameterError("MLPPolicyNetwork", "compiled",
                                 "False or None: the compiled kernel allocator._mlpkernel was "
                                 "not built (reinstall with a C compiler, e.g. gcc, present)",
                                 compiled)
        if normalization is not None and normalization.mean.shape != (self.n_inputs,):
            raise ParameterError("MLPPolicyNetwork", "normalization",
                                 f"statistics of shape ({self.n_inputs},)",
                                 normalization.mean.shape)
        self._activations = [activation for _, _, activation in layers]
        self._compiled = compiled
        self._kernel = self._build_kernel() if self._use_kernel() else None
        self.backend = "compiled" if self._kernel is not None else "numpy"

    def _use_kernel(self) -> bool:
        return _Kernel is not None and self._compiled is not False and self.n_outputs <= 64

    def __getstate__(self) -> dict[str, Any]:
        """Without the kernel (a C object): it is built again when unpickled or copied."""
        return {**self.__dict__, "_kernel": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._kernel = self._build_kernel() if self._use_kernel() else None
        self.backend = "compiled" if self._kernel is not None else "numpy"

    def _build_kernel(self) -> Any:
        """The compiled forward pass of these float64 layers (weights as (in, out))."""
        normalization = self.normalization
        return _Kernel(
            [self.n_inputs] + [int(weight_t.shape[1]) for weight_t, _, _ in self._layers],
            [weight_t.tobytes() for weight_t, _, _ in self._layers],
            [bias.tobytes() for _, bias, _ in self._layers],
            [_KERNEL_CODES[activation] for activation in self._activations],
            None if normalization is None else normalization.mean.tobytes(),
            None if normalization is None else normalization._scale.tobytes(),
            0.0 if normalization is None else normalization.clip)

    @classmethod
    def from_bundle(cls, bundle: Bundle, *, compiled: bool | None = None) -> MLPPolicyNetwork:
        """The network of a verified bundle (see :func:`allocator.bundle.read_bundle`);
        ``compiled`` as in the constructor."""
        layers = [(bundle.weights[layer["weight"]], bundle.weights[layer["bias"]],
                   layer["activation"]) for layer in bundle.network["layers"]]
        normalization = bundle.normalization
        return cls(layers, None if normalization is None
                   else ObservationNormalization.from_manifest(normalization),
                   compiled=compiled)

    def logits(self, obs: np.ndarray) -> np.ndarray:
        """Unmasked action logits, float64 of shape (B, n_actions).

        Args:
            obs: observations, shape (B, n_features) (or one observation, (n_features,));
                rounded to float32 first, as the torch policy receives them.
        """
        x = np.asarray(obs, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.n_inputs:
            raise ParameterError("MLPPolicyNetwork", "obs",
                                 f"an array of shape (B, {self.n_inputs})", np.shape(obs))
        return self._forward(x)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """Normalise float32 observations (a batch or one vector), then the dense layers."""
        if self.normalization is not None:
            x = self.normalization(x)
        x = x.astype(np.float64)
        for weight_t, bias, activation in self._layers:
            x = activation(x @ weight_t + bias)
        return x

    def act_one(self, obs: np.ndarray, mask: np.ndarray) -> int:
        """The decision on one observation, shape (n_features,), and mask (n_actions,).

        :meth:`decide` on arrays: the compiled kernel where it was built, else the
        forward pass of :meth:`logits` on a vector instead of a batch of one. Either may
        round the last bit of a logit differently from the batch's matrix product, which
        moves the arg max only where the two best allowed logits are within rounding of
        each other.
        """
        x = np.asarray(obs, dtype=np.float32)
        if x.shape != (self.n_inputs,):
            raise ParameterError("MLPPolicyNetwork.act_one", "obs",
                                 f"an array of shape ({self.n_inputs},)", np.shape(obs))
        mask = self._check_mask(mask, (self.n_outputs,))
        if self._kernel is not None:
            return self._kernel.act(x.tolist(), mask_bits(mask))
        return int(np.where(mask, self._forward(x), -np.inf).argmax())

    def decide(self, features: Sequence[float], allowed: int) -> int:
        """The decision on one observation given as numbers: the runtime's fast path.

        :meth:`act_one`'s decision, without building arrays: ``features`` in the
        featurizer's order (rounded to float32 here, as everywhere), and the allowed
        actions as a bit set (:func:`allocator.actions.mask_bits`; sessions always allow
        STOP; with no bit set every logit counts as ``-inf`` and the answer is 0, as
        numpy's arg max gives). Runs in the compiled kernel where it was built
        (:attr:`backend`).

        Raises:
            ParameterError: ``features`` of the wrong length or not numbers, or bits
                beyond the actions.
        """
        try:
            if self._kernel is not None:
                return self._kernel.act(features, allowed)
            values, allowed = self._checked(features, allowed)
        except (TypeError, ValueError, OverflowError) as error:
            raise ParameterError(
                "MLPPolicyNetwork.decide", "features, allowed",
                f"a list or tuple of {self.n_inputs} numbers and an int bit set >= 0 of "
                f"{self.n_outputs} actions ({error})", (features, allowed)) from error
        x = self._forward(np.array(values, dtype=np.float32))
        return int(np.where(mask_of_bits(allowed, self.n_outputs), x, -np.inf).argmax())

    def _checked(self, features: Sequence[float], allowed: int) -> tuple[list[float], int]:
        """The numpy path's reading of :meth:`decide`'s input, as the kernel reads it:
        a list or tuple of numbers (not text), an int bit set within the actions."""
        if not isinstance(features, list | tuple):
            raise TypeError("features must be a list or tuple of numbers")
        if len(features) != self.n_inputs:
            raise ValueError(f"expected {self.n_inputs} features, got {len(features)}")
        if any(isinstance(v, str | bytes | bytearray) for v in features):
            raise TypeError("a feature is text, not a number")
        values = [float(v) for v in features]
        allowed = operator.index(allowed)
        if allowed < 0 or allowed >> self.n_outputs:
            raise ValueError(f"allowed must be a bit set of the {self.n_outputs} actions")
        return values, allowed

    def masked_logits(self, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Logits with disallowed actions at ``-inf``, float64 (B, n_actions)."""
        logits = self.logits(obs)
        mask = self._check_mask(mask, logits.shape)
        return np.where(mask, logits, -np.inf)

    def act(self, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The deterministic decision: the masked arg max, int64 of shape (B,)."""
        return self.masked_logits(obs, mask).argmax(axis=1).astype(np.int64)

    def probabilities(self, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The masked softmax, float64 of shape (B, n_actions); 0 where disallowed."""
        logits = self.masked_logits(obs, mask)
        top = logits.max(axis=1, keepdims=True)
        weights = np.exp(logits - np.where(np.isfinite(top), top, 0.0))
        return weights / weights.sum(axis=1, keepdims=True)

    def _check_mask(self, mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        mask = np.asarray(mask)
        if mask.shape != shape:
            raise ParameterError("MLPPolicyNetwork", "mask", f"a bool array of shape {shape}",
                                 mask.shape)
        return mask.astype(bool, copy=False)


# ------------------------------------------------------------------ the policy
@dataclass(frozen=True, eq=False)
class LearnedPolicy(Policy):
    """The learned allocator of an exported bundle (registered as ``"learned"``).

    ``act`` featurizes the states and takes the network's masked arg max (what
    ``MaskablePPO.predict(obs, action_masks=mask, deterministic=True)`` returns);
    :meth:`probabilities` is the masked softmax of the logits (the trained stochastic
    policy). There is no knob: the trade-off ``lambda`` is part of the state
    (``StateBatch.lam``), so one policy serves every price.

    The policy is built from a verified :class:`~allocator.bundle.Bundle`, read and
    hash-checked once by :func:`~allocator.bundle.read_bundle` (here, when only a path
    is given), and decides with that bundle's weights for its whole life: files changed
    on disk afterwards change nothing (bundles are immutable; a new one is loaded as a
    new policy, which the HTTP service's reload does).

    Args:
        path: the bundle directory.
        verified: the bundle already verified at ``path`` (used as it is, not read
            again); None: read and verify ``path`` now.

    Attributes:
        bundle: the verified bundle the policy decides with.
        network: the numpy network of its weights.

    Pickling (Ray tasks, worker processes): a copy travels as its path and the bundle's
    :attr:`~allocator.bundle.Bundle.sha256`; it reads and verifies the bundle again
    where it lands and refuses (:class:`~allocator.errors.BundleError`) a bundle whose
    content is not the one this policy decides with, so a copy never decides with other
    weights than its original.

    Raises:
        BundleError: the bundle is refused, or it holds a baseline.
        ParameterError: an empty path, or a ``verified`` bundle of another path.

    Example:
        >>> policy = LearnedPolicy.from_bundle("runs/demo/bundle")  # doctest: +SKIP
        >>> actions = policy.act(states, masks)  # doctest: +SKIP
    """

    name: ClassVar[str] = "learned"
    knob: ClassVar[str | None] = None
    deployable: ClassVar[bool] = True

    path: str
    _: KW_ONLY
    verified: InitVar[Bundle | None] = None

    def __post_init__(self, verified: Bundle | None) -> None:
        if isinstance(self.path, os.PathLike):
            object.__setattr__(self, "path", os.fspath(self.path))
        if not isinstance(self.path, str) or not self.path:
            raise ParameterError("LearnedPolicy ('learned')", "path",
                                 "the path of an exported bundle directory", self.path)
        bundle = read_bundle(self.path) if verified is None else verified
        if not isinstance(bundle, Bundle) or Path(bundle.path) != Path(self.path):
            raise ParameterError("LearnedPolicy ('learned')", "verified",
                                 f"None or the verified bundle of {self.path!r} "
                                 "(allocator.bundle.read_bundle)", bundle)
        if bundle.policy_kind != "network":
            raise BundleError(f"holds a {bundle.policy_kind} policy, not a learned network "
                              "(LearnedPolicy); load it with allocator.load(path), which "
                              "serves either kind.", path=bundle.path)
        # Not fields (a policy's fields are its settings): what __post_init__ verified.
        object.__setattr__(self, "bundle", bundle)
        object.__setattr__(self, "network", MLPPolicyNetwork.from_bundle(bundle))

    @classmethod
    def from_bundle(cls, bundle: str | os.PathLike[str] | Bundle) -> LearnedPolicy:
        """The policy of a verified bundle (used as it is), or of the bundle at a path
        (read and verified now, once).

        Raises:
            BundleError: the bundle is refused (see :func:`allocator.bundle.read_bundle`),
                or it holds a baseline.
        """
        if isinstance(bundle, Bundle):
            return cls(os.fspath(bundle.path), verified=bundle)
        return cls(os.fspath(bundle))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LearnedPolicy):
            return NotImplemented
        return (self.path, self.bundle.sha256) == (other.path, other.bundle.sha256)

    def __hash__(self) -> int:
        return hash((self.name, self.path, self.bundle.sha256))

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        """Pickled as the path and the bundle's sha256 (see the class): the verified
        bundle holds read-only mappings, and the copy checks it reads the same bundle."""
        return _unpickle, (self.path, self.bundle.sha256)

    def __copy__(self) -> LearnedPolicy:
        return self  # immutable

    def __deepcopy__(self, memo: dict[int, Any]) -> LearnedPolicy:
        return self  # immutable

    def act(self, state: StateBatch, mask: np.ndarray) -> np.ndarray:
        """The masked arg max of the network's logits on the featurized states.

        Args:
            state: ``B`` query states over the bundle's arms.
            mask: allowed actions, bool (B, A + 3).

        Returns:
            int64 array of shape (B,).
        """
        network = self._network_for(state)
        return network.act(featurize(state), self._mask(state, mask))

    def act_one(self, state: QueryState, mask: np.ndarray) -> int:
        """The decision on one query's state: :meth:`act`'s, with the scalar featurizer
        (:meth:`QueryState.features`) and :meth:`MLPPolicyNetwork.act_one`."""
        arms = self.bundle.arms
        if state.n_arms != len(arms):
            raise ParameterError(f"LearnedPolicy({self.path!r})", "state",
                                 f"a state over the bundle's {len(arms)} arms {list(arms)}",
                                 f"{state.n_arms} arms")
        return self.network.act_one(state.features(), mask)

    def decision_function(self, n_arms: int) -> Callable[[QueryState, int], int]:
        """A session's decisions: :meth:`act_one`'s, by :meth:`MLPPolicyNetwork.decide` on
        :meth:`QueryState.feature_values` (no array is built per decision).

        Raises:
            ParameterError: ``n_arms`` is not the bundle's number of arms.
        """
        arms = self.bundle.arms
        if n_arms != len(arms):
            raise ParameterError(f"LearnedPolicy({self.path!r})", "n_arms",
                                 f"the bundle's {len(arms)} arms {list(arms)}", n_arms)
        network_decide = self.network.decide

        def decide(state: QueryState, allowed: int) -> int:
            return network_decide(state.feature_values(), allowed)

        return decide

    def probabilities(self, state: StateBatch, mask: np.ndarray) -> np.ndarray:
        """The masked softmax of the logits (the trained policy's action distribution)."""
        network = self._network_for(state)
        return network.probabilities(featurize(state), self._mask(state, mask))

    def _network_for(self, state: StateBatch) -> MLPPolicyNetwork:
        arms = np.shape(state.samples)[1]
        if arms != len(self.bundle.arms):
            raise ParameterError(f"LearnedPolicy({self.path!r})", "state",
                                 f"states over the bundle's {len(self.bundle.arms)} arms "
                                 f"{list(self.bundle.arms)}", f"{arms} arms")
        return self.network

    def _mask(self, state: StateBatch, mask: np.ndarray) -> np.ndarray:
        mask = np.asarray(mask, dtype=bool)
        shape = (state.batch_size, n_actions(np.shape(state.samples)[1], self.bundle.widths))
        if mask.shape != shape:
            raise ParameterError(f"LearnedPolicy({self.path!r})", "mask",
                                 f"a bool array of shape {shape}", mask.shape)
        return mask


def _unpickle(path: str, sha256: str) -> LearnedPolicy:
    """A pickled :class:`LearnedPolicy`: the bundle at ``path`` read and verified again,
    refused unless it is the very bundle the original decided with (fail closed)."""
    bundle = read_bundle(path)
    if bundle.sha256 != sha256:
        raise BundleError(f"changed since the pickled LearnedPolicy loaded it (manifest "
                          f"sha256 {bundle.sha256[:16]}, the policy's {sha256[:16]}): a copy "
                          "refuses to decide with other weights than its original. Bundles "
                          "are immutable: write a changed one to a new directory (allocator "
                          "calibrate --output), and load that as a new policy.", path=path)
    return LearnedPolicy(path, verified=bundle)
