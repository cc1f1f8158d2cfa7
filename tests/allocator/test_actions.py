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


# ------------------------------------------------------------------ the mask rule
def rule(sample: tuple[bool, ...], room: bool, refine: bool, verify: bool) -> list[bool]:
    """The mask rule as the module docstring states it, written out independently."""
    return [True, *(room and ok for ok in sample), room and refine, verify]


@pytest.mark.parametrize("n_arms", [1, 2, 3])
def test_the_three_forms_of_the_mask_rule_agree_on_every_case(n_arms: int) -> None:
    import itertools

    from allocator.actions import action_layout

    layout = action_layout(n_arms)
    cases = list(itertools.product(*[(False, True)] * (n_arms + 3)))
    for *sample, room, refine, verify in cases:
        expected = rule(tuple(sample), room, refine, verify)
        bits = sum(bit for bit, ok in zip(layout.sample_bits, sample, strict=True) if ok)
        got = layout.allowed_bits(bits, room=room, refine=refine, verify=verify)
        assert mask_of_bits(got, layout.n).tolist() == expected
        assert layout.allowed_mask(list(sample), room=room, refine=refine,
                                   verify=verify).tolist() == expected
    # The batch form on all cases at once (room as an array, and None for no cap).
    table = np.array(cases, dtype=bool)
    sample, room, refine, verify = (table[:, :n_arms], table[:, n_arms],
                                    table[:, n_arms + 1], table[:, n_arms + 2])
    out = np.zeros((len(cases), layout.n), dtype=bool)
    layout.allowed_masks(out, sample, room=room, refine=refine, verify=verify)
    assert out.tolist() == [rule(tuple(s), r, f, v)
                            for s, r, f, v in zip(sample, room, refine, verify, strict=True)]
    layout.allowed_masks(out, sample, room=None, refine=refine, verify=verify)
    assert out.tolist() == [rule(tuple(s), True, f, v)
                            for s, f, v in zip(sample, refine, verify, strict=True)]


def test_the_layout_names_every_position() -> None:
    from allocator.actions import Action, action_layout, has_room

    layout = action_layout(3)
    assert (layout.stop, layout.refine, layout.verify, layout.n) == (STOP, 4, 5, 6)
    assert list(range(layout.n))[layout.samples] == [sample_action(a) for a in range(3)]
    assert [layout.arm_of(a) for a in range(-1, 7)] == [-1, -1, 0, 1, 2, -1, -1, -1]
    assert [str(Action.of_index(a, ("x", "y", "z"))) for a in range(6)] == [
        "STOP", "SAMPLE(x)", "SAMPLE(y)", "SAMPLE(z)", "REFINE", "VERIFY"]
    assert has_room(3, None) and has_room(2, 3) and not has_room(3, 3)
    assert has_room(np.array([2, 3]), 3).tolist() == [True, False]


# ---------------------------------------------------------------- parallel widths
from allocator.actions import (  # noqa: E402
    DEFAULT_WIDTHS,
    Action,
    action_layout,
    check_widths,
)
from allocator.errors import ParameterError  # noqa: E402


@pytest.mark.parametrize("widths", [(1,), (1, 2), (1, 2, 4, 8)])
@pytest.mark.parametrize("n_arms", [1, 3])
def test_wide_actions_follow_the_default_layout(n_arms: int, widths: tuple[int, ...]) -> None:
    layout = action_layout(n_arms, widths)
    base = action_layout(n_arms)
    assert (layout.refine, layout.verify, layout.samples) == (base.refine, base.verify,
                                                              base.samples)
    assert layout.n == n_arms + 3 + n_arms * (len(widths) - 1)
    arms = tuple(f"arm{i}" for i in range(n_arms))
    names = action_names(arms, widths)
    seen = set()
    for index in range(layout.n):
        action = Action.of_index(index, arms, widths)
        assert str(action) == names[index]
        if action.kind == "sample":
            assert layout.sample_of(layout.arm_of(index), action.width) == index
            seen.add((action.arm, action.width))
    assert seen == {(arm, w) for arm in arms for w in widths}


def test_wide_masks_need_room_and_agree_between_bits_and_arrays() -> None:
    layout = action_layout(2, (1, 2, 4))
    wide = np.array([[True, False], [False, True]])  # x2 for arm 0, x4 for arm 1
    for room in (True, False):
        mask = layout.allowed_mask([True, True], room=room, refine=True, verify=True,
                                   wide=wide)
        bits = layout.allowed_bits(sum(layout.sample_bits), room=room, refine=True,
                                   verify=True,
                                   wide_bits=layout.wide_bits[0][0] | layout.wide_bits[1][1])
        assert mask_bits(mask) == bits
        batch = layout.allowed_masks(np.zeros((1, layout.n), bool), np.ones((1, 2), bool),
                                     room=np.array([room]), refine=np.array([True]),
                                     verify=np.array([True]), wide=wide[None])
        np.testing.assert_array_equal(batch[0], mask)
        assert mask[layout.sample_of(0, 2)] == room and not mask[layout.sample_of(0, 4)]
        assert mask[layout.sample_of(1, 4)] == room and not mask[layout.sample_of(1, 2)]


@pytest.mark.parametrize("widths", [(), (2, 4), (1, 1), (1, 4, 2), (1, 0), (1, True),
                                    "12", None])
def test_bad_widths_are_refused(widths: object) -> None:
    with pytest.raises(ParameterError, match="widths"):
        check_widths("ReplayEnv", widths)


def test_default_widths_keep_the_historic_layout() -> None:
    assert check_widths("x", [1, 2]) == (1, 2)
    assert action_layout(2, DEFAULT_WIDTHS) is action_layout(2)
    assert action_names(["a", "b"]) == ["STOP", "SAMPLE(a)", "SAMPLE(b)", "REFINE", "VERIFY"]
