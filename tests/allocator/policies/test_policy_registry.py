"""The policy registry: names, the factory and its errors."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import ClassVar

import numpy as np
import pytest

import allocator.policies as policies
from allocator.errors import ParameterError
from allocator.policies import (
    POLICIES,
    AdaptiveConsistency,
    FixedN,
    Policy,
    available_policies,
    make_policy,
    register_policy,
)


def test_public_api() -> None:
    assert sorted(policies.__all__) == sorted([
        "POLICIES", "AdaptiveConsistency", "BayesStop", "BestOfN", "BlendASC", "Cascade",
        "ConfidenceThreshold", "DifficultyBinned", "EarlyStoppingSC", "EpsilonGreedy",
        "FixedN", "PDRSchedule", "ParallelN", "Policy", "RTVSchedule", "RoundRobin", "Router",
        "UntilVerified", "WeightedVote",
        "available_policies", "make_policy", "register_policy"])


def test_names_and_factory() -> None:
    assert available_policies() == sorted(POLICIES)
    assert make_policy("fixed-n", n=8) == FixedN(n=8)
    assert make_policy("adaptive-consistency") == AdaptiveConsistency(0.95, 40, 0)
    assert make_policy("fixed-n", n=8).describe() == "fixed-n(n=8, arm=0, verify=False)"


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ParameterError, match="'name'") as error:
        make_policy("adaptive-consistancy")
    for name in available_policies():
        assert name in str(error.value)


def test_unknown_parameter_names_it_and_the_policy() -> None:
    with pytest.raises(ParameterError) as error:
        make_policy("esc", windw=4)
    message = str(error.value)
    assert error.value.parameter == "windw"
    assert "'esc'" in message and "window" in message and "4" in message


def test_duplicate_names_are_refused_and_the_registry_is_unchanged() -> None:
    before = dict(POLICIES)

    @dataclasses.dataclass(frozen=True)
    class Impostor(Policy):
        name: ClassVar[str] = "fixed-n"

        def act(self, state, mask):  # pragma: no cover - never called
            return np.zeros(len(mask), dtype=np.int64)

    with pytest.raises(ParameterError, match="not registered yet"):
        register_policy(Impostor)
    assert before == POLICIES
    assert register_policy(FixedN) is FixedN  # re-registering the same class is a no-op


def test_non_dataclass_is_refused() -> None:
    class Plain(Policy):
        name: ClassVar[str] = "plain-test-policy"

        def act(self, state, mask):  # pragma: no cover - never called
            return np.zeros(len(mask), dtype=np.int64)

    with pytest.raises(ParameterError, match="dataclass"):
        register_policy(Plain)
    assert "plain-test-policy" not in POLICIES


def test_import_stays_light() -> None:
    code = ("import sys, allocator; before = set(sys.modules); import allocator.policies; "
            "heavy = {'scipy', 'pandas', 'sklearn', 'torch', 'lightgbm', 'gymnasium'}; "
            "print(sorted({m.split('.')[0] for m in set(sys.modules) - before} & heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
