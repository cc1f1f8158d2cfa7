"""The runtime's single-state decision, ``MLPPolicyNetwork.decide``, on both backends.

``decide`` runs in the compiled kernel ``allocator._mlpkernel`` where it was built, else in
numpy. Both must give the batch path's decision (the masked arg max of
``MLPPolicyNetwork.logits``, itself checked against a written-out MLP and against SB3 in
``tests/allocator/test_bundle.py`` and ``tests/training/rl/test_export.py``) on every
observation and mask: normalised or not, clipped or not, every activation, non-finite
features included. The kernel's logits must be the numpy ones within a few units in the
last place of a double.

``make test`` sets ``ALLOCATOR_REQUIRE_KERNEL=1``, so that CI fails, instead of
skipping the compiled rows, if the package was installed without its kernel.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

import allocator.learned as learned
from allocator.errors import ParameterError
from allocator.learned import MLPPolicyNetwork, ObservationNormalization, kernel_available

BACKENDS = ("compiled", "numpy")
ACTIVATIONS = ("tanh", "relu", "identity")
N_INPUTS, N_ACTIONS = 19, 5


def make_network(backend: str, *, activation: str = "tanh", hidden: tuple[int, ...] = (64, 64),
                 normalized: bool = True, clip: float = 3.0, seed: int = 0) -> MLPPolicyNetwork:
    """A random float32 MLP (as a bundle stores it), with VecNormalize statistics."""
    if backend == "compiled" and not kernel_available():
        pytest.skip("the compiled kernel allocator._mlpkernel was not built (no C compiler "
                    "at install time); the numpy rows test the fallback")
    rng = np.random.default_rng(seed)
    sizes = [N_INPUTS, *hidden, N_ACTIONS]
    layers = [(rng.normal(0, 1 / np.sqrt(n_in), (n_out, n_in)).astype(np.float32),
               rng.normal(0, 0.3, n_out).astype(np.float32),
               activation if k < len(hidden) else None)
              for k, (n_in, n_out) in enumerate(itertools.pairwise(sizes))]
    normalization = ObservationNormalization(
        mean=rng.normal(0, 1, N_INPUTS), var=rng.uniform(0.05, 4, N_INPUTS), epsilon=1e-8,
        clip=clip) if normalized else None
    network = MLPPolicyNetwork(layers, normalization, compiled=backend == "compiled")
    assert network.backend == backend
    return network


def observations(seed: int, count: int) -> np.ndarray:
    """Observations at several scales: inside the clip range, and far beyond it."""
    rng = np.random.default_rng(seed)
    scale = rng.choice([0.1, 1.0, 5.0, 100.0], size=(count, 1))
    return rng.normal(0, 1, (count, N_INPUTS)) * scale


def random_masks(seed: int, count: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = rng.random((count, N_ACTIONS)) < 0.5
    mask[:, 0] |= ~mask.any(axis=1)  # at least one allowed action
    return mask


def bits(mask: np.ndarray) -> int:
    return sum(1 << int(action) for action in np.flatnonzero(mask))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("normalized", [True, False])
def test_decide_is_the_masked_arg_max_of_the_batch_logits(backend: str, activation: str,
                                                          normalized: bool) -> None:
    network = make_network(backend, activation=activation, normalized=normalized)
    obs, masks = observations(1, 3_000), random_masks(2, 3_000)
    expected = np.where(masks, network.logits(obs), -np.inf).argmax(axis=1)
    decided = [network.decide(o.tolist(), bits(m)) for o, m in zip(obs, masks, strict=True)]
    np.testing.assert_array_equal(decided, expected)
    by_arrays = [network.act_one(o, m) for o, m in zip(obs[:300], masks[:300], strict=True)]
    np.testing.assert_array_equal(by_arrays, expected[:300])
    assert len(set(decided)) == N_ACTIONS  # every action somewhere: not vacuous


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("hidden", [(64, 64), (7,), (33, 5, 17)])
def test_kernel_logits_are_numpys_to_the_last_bits(activation: str,
                                                   hidden: tuple[int, ...]) -> None:
    """Same arithmetic but the order of a dot product's additions and tanh from exp."""
    network = make_network("compiled", activation=activation, hidden=hidden)
    obs = observations(3, 2_000)
    numpy_logits = network.logits(obs)
    kernel_logits = np.array([network._kernel.logits(o.tolist()) for o in obs])
    np.testing.assert_allclose(kernel_logits, numpy_logits, rtol=0, atol=1e-12)
    assert np.abs(numpy_logits).max() > 1  # logits of a real spread


def test_features_are_rounded_to_float32_as_the_policy_sees_them() -> None:
    """A float64 feature and its float32 rounding decide alike on both backends (what
    the torch policy receives is float32)."""
    obs = observations(4, 500)
    rounded = obs.astype(np.float32).astype(np.float64)
    for backend in BACKENDS:
        network = make_network(backend, normalized=False)
        numpy_logits = network.logits(rounded)
        if backend == "compiled":
            got = np.array([network._kernel.logits(o.tolist()) for o in obs])
            np.testing.assert_allclose(got, numpy_logits, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(network.logits(obs), numpy_logits)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("normalized", [True, False])
def test_non_finite_features_decide_as_numpy_does(backend: str, normalized: bool) -> None:
    """NaN and infinite features: normalisation clips infinities; a NaN logit wins the
    arg max (numpy's rule), so the first allowed action is taken."""
    network = make_network(backend, normalized=normalized)
    obs = observations(5, 400)
    rng = np.random.default_rng(6)
    obs[rng.random(obs.shape) < 0.02] = np.nan
    obs[rng.random(obs.shape) < 0.02] = np.inf
    obs[rng.random(obs.shape) < 0.02] = -np.inf
    masks = random_masks(7, 400)
    with np.errstate(invalid="ignore"):  # inf - inf in the numpy path: NaN, as intended
        logits = network.logits(obs)
        decided = [network.decide(o.tolist(), bits(m)) for o, m in zip(obs, masks, strict=True)]
    np.testing.assert_array_equal(decided, np.where(masks, logits, -np.inf).argmax(axis=1))
    nan_rows = np.isnan(logits).any(axis=1)
    assert nan_rows.any() and (~nan_rows).any()  # both cases were exercised


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("features, allowed, problem", [
    ([0.0] * (N_INPUTS - 1), 1, "too few features"),
    ([0.0] * (N_INPUTS + 1), 1, "too many features"),
    (["x"] + [0.0] * (N_INPUTS - 1), 1, "a feature that is not a number"),
    ([0.0] * N_INPUTS, 1 << N_ACTIONS, "a bit beyond the actions"),
    (None, 1, "features that are no sequence"),
])
def test_bad_input_is_refused_with_what_was_expected(backend: str, features, allowed: int,
                                                     problem: str) -> None:
    network = make_network(backend)
    with pytest.raises(ParameterError, match=f"{N_INPUTS} numbers and an int bit set"):
        network.decide(features, allowed)


def test_requiring_the_kernel_where_it_was_not_built_says_how_to_get_it(monkeypatch) -> None:
    monkeypatch.setattr(learned, "_Kernel", None)
    layers = [(np.ones((N_ACTIONS, N_INPUTS), np.float32), np.zeros(N_ACTIONS, np.float32),
               None)]
    with pytest.raises(ParameterError, match="C compiler"):
        MLPPolicyNetwork(layers, compiled=True)
    network = MLPPolicyNetwork(layers)  # the default falls back to numpy
    assert network.backend == "numpy" and not learned.kernel_available()
    assert network.decide([1.0] * N_INPUTS, 0b00110) == 1  # ties: the lowest index


def test_the_kernel_was_built_where_the_test_run_requires_it() -> None:
    """``make test`` (CI) requires the compiled kernel: a silent fallback would leave the
    latency benchmark's claim untested."""
    if os.environ.get("ALLOCATOR_REQUIRE_KERNEL") != "1":
        pytest.skip("ALLOCATOR_REQUIRE_KERNEL is not set (make test sets it)")
    assert kernel_available(), ("allocator._mlpkernel was not built: reinstall the package "
                                "with a C compiler present (pip install -e .)")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_decision_made_while_reading_the_features_does_not_disturb_this_one(
        backend: str) -> None:
    """Reading a feature that is not a float may run Python code (its ``__float__``),
    and with it another decision on the same network (another thread, or as here, the
    same one): each decision must still see its own features."""
    network = make_network(backend)
    obs, masks = observations(8, 200), random_masks(9, 200)

    class DecidesWhenRead:
        def __init__(self, value: float, other: list[float]) -> None:
            self.value, self.other = value, other

        def __float__(self) -> float:
            network.decide(self.other, 1)
            return self.value

    expected = np.where(masks, network.logits(obs), -np.inf).argmax(axis=1)
    decided = []
    for row, (o, m) in enumerate(zip(obs, masks, strict=True)):
        features: list = o.tolist()
        features[-1] = DecidesWhenRead(features[-1], obs[(row + 1) % len(obs)].tolist())
        decided.append(network.decide(features, bits(m)))
    np.testing.assert_array_equal(decided, expected)
