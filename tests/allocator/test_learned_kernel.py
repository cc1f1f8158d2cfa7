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
from allocator.actions import mask_bits
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




@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("normalized", [True, False])
def test_decide_is_the_masked_arg_max_of_the_batch_logits(backend: str, activation: str,
                                                          normalized: bool) -> None:
    network = make_network(backend, activation=activation, normalized=normalized)
    obs, masks = observations(1, 3_000), random_masks(2, 3_000)
    expected = np.where(masks, network.logits(obs), -np.inf).argmax(axis=1)
    decided = [network.decide(o.tolist(), mask_bits(m)) for o, m in zip(obs, masks, strict=True)]
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
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("normalized", [True, False])
def test_non_finite_features_decide_as_numpy_does(backend: str, activation: str,
                                                  normalized: bool) -> None:
    """NaN and infinite features: normalisation clips infinities; NaN goes through every
    activation (relu included); a NaN logit wins the arg max (numpy's rule), so the
    first allowed action is taken."""
    network = make_network(backend, activation=activation, normalized=normalized)
    obs = observations(5, 400)
    rng = np.random.default_rng(6)
    obs[rng.random(obs.shape) < 0.02] = np.nan
    obs[rng.random(obs.shape) < 0.02] = np.inf
    obs[rng.random(obs.shape) < 0.02] = -np.inf
    masks = random_masks(7, 400)
    with np.errstate(invalid="ignore"):  # inf - inf in the numpy path: NaN, as intended
        logits = network.logits(obs)
        decided = [network.decide(o.tolist(), mask_bits(m))
                   for o, m in zip(obs, masks, strict=True)]
    np.testing.assert_array_equal(decided, np.where(masks, logits, -np.inf).argmax(axis=1))
    nan_rows = np.isnan(logits).any(axis=1)
    assert nan_rows.any() and (~nan_rows).any()  # both cases were exercised


def constant_network(backend: str, bias: list[float]) -> MLPPolicyNetwork:
    """One dense layer with zero weights: logits equal to ``bias``, exactly, on both
    backends (no summation order to differ)."""
    if backend == "compiled" and not kernel_available():
        pytest.skip("the compiled kernel allocator._mlpkernel was not built")
    layers = [(np.zeros((len(bias), N_INPUTS), np.float32), np.array(bias, np.float32), None)]
    return MLPPolicyNetwork(layers, compiled=backend == "compiled")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bias, allowed, expected", [
    ([0.0, 1.0, 0.5, 1.0, 0.0], 0b11111, 1),  # a tie: the lowest index
    ([0.0, 1.0, 0.5, 1.0, 0.0], 0b11101, 3),  # the lower one masked
    ([2.0, 1.0, 1.0, 1.0, 0.0], 0b01110, 1),  # the best masked, then a three-way tie
    ([-np.inf] * 5, 0b01100, 0),  # every logit -inf: index 0, as numpy's arg max
    ([0.0, np.nan, 1.0, np.nan, 0.0], 0b01101, 3),  # the first allowed NaN wins
    ([0.0, 1.0, 2.0, 3.0, 4.0], 0, 0),  # nothing allowed: every entry -inf, index 0
])
def test_ties_and_degenerate_logits_follow_numpys_arg_max(backend: str, bias: list[float],
                                                          allowed: int, expected: int) -> None:
    network = constant_network(backend, bias)
    assert network.decide([0.0] * N_INPUTS, allowed) == expected
    mask = np.array([(allowed >> a) & 1 for a in range(N_ACTIONS)], dtype=bool)
    assert int(np.where(mask, network.logits(np.zeros(N_INPUTS)), -np.inf).argmax()) == expected


def _generator():
    yield from [0.0] * N_INPUTS


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("features, allowed, problem", [
    ([0.0] * (N_INPUTS - 1), 1, "too few features"),
    ([0.0] * (N_INPUTS + 1), 1, "too many features"),
    (["x"] + [0.0] * (N_INPUTS - 1), 1, "a feature that is text"),
    (["1.0"] + [0.0] * (N_INPUTS - 1), 1, "a number as text"),
    ([None] + [0.0] * (N_INPUTS - 1), 1, "a feature that is None"),
    ([0.0] * N_INPUTS, 1 << N_ACTIONS, "a bit beyond the actions"),
    ([0.0] * N_INPUTS, 1 << 64, "a bit beyond 64"),
    ([0.0] * N_INPUTS, 1 << 200, "a huge bit set"),
    ([0.0] * N_INPUTS, -1, "a negative bit set"),
    ([0.0] * N_INPUTS, 1.0, "a float bit set"),
    ([10 ** 400] + [0.0] * (N_INPUTS - 1), 1, "an int too large for a double"),
    (None, 1, "features that are no sequence"),
    (dict.fromkeys(range(N_INPUTS), 0.0), 1, "a dict of features"),
    (_generator(), 1, "a generator of features"),
    (np.zeros(N_INPUTS), 1, "an array (act_one takes arrays)"),
])
def test_bad_input_is_refused_with_what_was_expected(backend: str, features, allowed,
                                                     problem: str) -> None:
    network = make_network(backend)
    with pytest.raises(ParameterError, match=f"{N_INPUTS} numbers and an int bit set"):
        network.decide(features, allowed)


@pytest.mark.parametrize("backend", BACKENDS)
def test_numbers_of_other_types_are_read_alike(backend: str) -> None:
    """Ints, numpy scalars, tuples and numpy integer bit sets: the same decision."""
    network = make_network(backend)
    obs, masks = observations(10, 100), random_masks(11, 100)
    for o, m in zip(obs, masks, strict=True):
        expected = network.decide(o.astype(np.float32).tolist(), mask_bits(m))
        mixed = [np.float32(v) if i % 3 == 0 else float(np.float32(v))
                 for i, v in enumerate(o)]
        assert network.decide(tuple(mixed), np.int64(mask_bits(m))) == expected
    assert network.decide([0] * N_INPUTS, 1) == network.decide([0.0] * N_INPUTS, 1)


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
        decided.append(network.decide(features, mask_bits(m)))
    np.testing.assert_array_equal(decided, expected)


def test_a_kernel_is_built_once() -> None:
    """Built again (or while being built), a kernel would free the arrays a decision in
    progress reads: refused."""
    network = make_network("compiled", hidden=(8,))
    kernel = network._kernel
    args = ([N_INPUTS, 1], [np.zeros(N_INPUTS).tobytes()], [np.zeros(1).tobytes()], [0],
            None, None, 0.0)
    with pytest.raises(RuntimeError, match="already built"):
        kernel.__init__(*args)

    class RebuildsWhenRead:
        def __float__(self) -> float:
            kernel.__init__(*args)
            return 0.0

    with pytest.raises(RuntimeError, match="already built"):  # raised by __float__
        network.decide([RebuildsWhenRead()] + [0.0] * (N_INPUTS - 1), 1)
    assert network.decide([0.0] * N_INPUTS, 1) == 0  # still whole

    kernel_type = type(kernel)
    fresh = kernel_type.__new__(kernel_type)

    class DecidesWhileBuilt(int):
        def __index__(self) -> int:
            with pytest.raises(RuntimeError, match="not built"):
                fresh.act([0.0] * N_INPUTS, 1)
            with pytest.raises(RuntimeError, match="already built"):
                fresh.__init__(*args)
            return int(self)

    fresh.__init__([DecidesWhileBuilt(N_INPUTS), 1], *args[1:])
    assert fresh.act([0.0] * N_INPUTS, 1) == 0
    with pytest.raises(RuntimeError, match="not built"):
        kernel_type.__new__(kernel_type).act([0.0] * N_INPUTS, 1)


def test_kernel_logits_are_copied_before_anything_can_run() -> None:
    """Building the logits' list may run the garbage collector, whose finalizers may
    decide on the same kernel: the logits returned are still this decision's."""
    import gc

    network = make_network("compiled", hidden=(8,))
    kernel = network._kernel
    first, other = observations(12, 2).tolist()
    expected = kernel.logits(first)

    class Finalizer:
        def __init__(self) -> None:
            self.cycle = self

        def __del__(self) -> None:
            kernel.logits(other)

    threshold = gc.get_threshold()
    gc.collect()
    try:
        gc.disable()
        for _ in range(50):
            Finalizer()
        gc.enable()
        gc.set_threshold(1)
        got = kernel.logits(first)
    finally:
        gc.set_threshold(*threshold)
        gc.enable()
    assert got == expected


def test_normalisation_statistics_of_any_dtype_are_read_as_float64() -> None:
    """Lists and float32 arrays (as a user may build them) give the float64 network."""
    reference = make_network("numpy", hidden=(8,))
    stats = reference.normalization
    obs, masks = observations(13, 300), random_masks(14, 300)
    expected = [reference.decide(o.tolist(), mask_bits(m)) for o, m in zip(obs, masks, strict=True)]
    layers = [(weight_t.T.astype(np.float32), bias.astype(np.float32), activation)
              for (weight_t, bias, _), activation in zip(reference._layers,
                                                         reference._activations, strict=True)]
    for mean, var in ((stats.mean.tolist(), stats.var.tolist()),
                      (stats.mean.astype(np.float32), stats.var.astype(np.float32))):
        normalization = ObservationNormalization(mean=mean, var=var, epsilon=1e-8,
                                                 clip=stats.clip)
        assert normalization.mean.dtype == np.float64
        for backend in BACKENDS:
            if backend == "compiled" and not kernel_available():
                continue
            network = MLPPolicyNetwork(layers, normalization, compiled=backend == "compiled")
            decided = [network.decide(o.tolist(), mask_bits(m))
                       for o, m in zip(obs, masks, strict=True)]
            # float32 statistics round the mean and variance: decisions may move only
            # where they changed, so compare the float64 lists exactly
            if isinstance(mean, list):
                assert decided == expected
    with pytest.raises(ParameterError, match="normalization"):
        MLPPolicyNetwork(layers, ObservationNormalization(mean=[0.0], var=[1.0], epsilon=1e-8,
                                                          clip=5.0))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_network_pickles_and_copies_with_its_backend(backend: str) -> None:
    import copy
    import pickle

    network = make_network(backend)
    obs, masks = observations(15, 200), random_masks(16, 200)
    expected = [network.decide(o.tolist(), mask_bits(m)) for o, m in zip(obs, masks, strict=True)]
    for clone in (pickle.loads(pickle.dumps(network)), copy.deepcopy(network)):
        assert clone.backend == backend
        assert [clone.decide(o.tolist(), mask_bits(m))
                for o, m in zip(obs, masks, strict=True)] == expected
