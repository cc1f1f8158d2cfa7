"""The action layout and the two forms of a mask (bool array, int bit set)."""

from __future__ import annotations

import numpy as np
import pytest

from allocator.actions import (
    STOP,
    action_names,
    mask_bits,
    mask_of_bits,
    n_actions,
    refine_action,
    sample_action,
    verify_action,
)


@pytest.mark.parametrize("n_arms", [1, 2, 10])
def test_the_layout_stop_arms_refine_verify(n_arms: int) -> None:
    arms = [f"arm{i}" for i in range(n_arms)]
    names = action_names(arms)
    assert len(names) == n_actions(n_arms) == n_arms + 3
    assert names[STOP] == "STOP"
    assert [names[sample_action(i)] for i in range(n_arms)] == [f"SAMPLE({a})" for a in arms]
    assert names[refine_action(n_arms)] == "REFINE"
    assert names[verify_action(n_arms)] == "VERIFY"


@pytest.mark.parametrize("mask, bits", [
    ([True, False, True, True, False], 0b01101),
    ([False] * 5, 0),
    ([True] * 5, 0b11111),
    ([False] * 62 + [True], 1 << 62),  # beyond a machine word's worth of small ints
])
def test_mask_bits_and_back(mask: list[bool], bits: int) -> None:
    assert mask_bits(np.array(mask)) == bits
    np.testing.assert_array_equal(mask_of_bits(bits, len(mask)), mask)
    assert mask_of_bits(bits, len(mask)).dtype == np.bool_


def test_random_masks_round_trip() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        mask = rng.random(int(rng.integers(1, 70))) < 0.5
        np.testing.assert_array_equal(mask_of_bits(mask_bits(mask), len(mask)), mask)
