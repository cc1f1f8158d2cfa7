"""The registry of allocation policies: a name per policy class, a factory by name.

The evaluator, the CLI and the service look policies up by name, so that a sweep, a
report or a request can say ``"adaptive-consistency"`` and its parameters instead of
importing a class::

    >>> from allocator.policies import make_policy
    >>> make_policy("fixed-n", n=8).describe()
    'fixed-n(n=8, arm=0, verify=False)'
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterator, Mapping
from typing import TypeVar

from allocator.errors import ParameterError
from allocator.policies.base import Policy

__all__ = ["ENTRIES", "POLICIES", "PolicyTable", "available_policies", "make_policy",
           "register_policy"]

#: Policies registered by entry, ``name -> "module:Class"``, imported on first lookup.
#: The learned policy lives beside its network in :mod:`allocator.learned`, which builds
#: on this package: importing it from here (or from the package's ``__init__``) would
#: close an import cycle, and would load the bundle reader with every baseline.
ENTRIES: dict[str, str] = {"learned": "allocator.learned:LearnedPolicy"}


class PolicyTable(Mapping[str, type[Policy]]):
    """The registered policy classes by name (a read-only mapping; register with
    :func:`register_policy`).

    Classes registered with the decorator are held as given, in registration order; a
    name of :data:`ENTRIES` is resolved (its module imported, its class registered) the
    first time it is looked up or the table is iterated. Membership needs no import.
    """

    def __init__(self, entries: Mapping[str, str]) -> None:
        self._classes: dict[str, type[Policy]] = {}
        self._entries = dict(entries)

    def __getitem__(self, name: str) -> type[Policy]:
        if name not in self._classes and name in self._entries:
            self._resolve(name)
        return self._classes[name]

    def __contains__(self, name: object) -> bool:
        return name in self._classes or name in self._entries

    def __iter__(self) -> Iterator[str]:
        for name in [n for n in self._entries if n not in self._classes]:
            self._resolve(name)
        return iter(list(self._classes))

    def __len__(self) -> int:
        return len(self._classes.keys() | self._entries.keys())

    def _add(self, name: str, cls: type[Policy]) -> None:
        self._classes[name] = cls

    def _resolve(self, name: str) -> None:
        module, _, attribute = self._entries[name].partition(":")
        cls = getattr(importlib.import_module(module), attribute)
        if getattr(cls, "name", None) != name:
            raise ParameterError("POLICIES", name, f"the class {self._entries[name]} to be "
                                 f"named {name!r}", getattr(cls, "name", None))
        register_policy(cls)


#: Registered policy classes by name, in registration order (entries once resolved).
POLICIES = PolicyTable(ENTRIES)

PolicyClass = TypeVar("PolicyClass", bound=type[Policy])


def register_policy(cls: PolicyClass) -> PolicyClass:
    """Class decorator: register a policy class under its ``name`` class attribute.

    Raises:
        ParameterError: the class is not a dataclass, has no ``name``, or its name is
            taken by another class.
    """
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ParameterError("register_policy", "name",
                             "a non-empty string class attribute of the policy", name)
    if not dataclasses.is_dataclass(cls):
        raise ParameterError("register_policy", "cls",
                             "a frozen dataclass subclass of Policy", cls.__name__)
    known = POLICIES._classes.get(name)
    if known is None and name in ENTRIES and ENTRIES[name] != f"{cls.__module__}:"\
            f"{cls.__qualname__}":
        raise ParameterError("register_policy", "name",
                             f"a name not registered yet ({name!r} is {ENTRIES[name]})", name)
    if known is not None and known is not cls:
        raise ParameterError("register_policy", "name",
                             f"a name not registered yet ({name!r} is "
                             f"{known.__qualname__})", name)
    POLICIES._add(name, cls)
    return cls


def available_policies(*, deployable_only: bool = False) -> list[str]:
    """Names of the registered policies, sorted (only deployable ones if asked)."""
    return sorted(name for name, cls in POLICIES.items()
                  if cls.deployable or not deployable_only)


def policy_parameters(name: str) -> list[str]:
    """The constructor parameters of policy ``name``, in field order."""
    return [f.name for f in dataclasses.fields(_policy_class(name))  # type: ignore[arg-type]
            if f.init]


def make_policy(name: str, **params: object) -> Policy:
    """Build the registered policy ``name`` with ``params`` (its dataclass fields).

    The registered policies and the knob each one's sweep varies (each module of
    :mod:`allocator.policies` groups a family: self-consistency, verifier, multi-arm,
    schedules of RTV and PDR, stochastic):

    - ``fixed-n``: :class:`~allocator.policies.FixedN` (``n``)
    - ``adaptive-consistency``: :class:`~allocator.policies.AdaptiveConsistency`
      (``threshold``)
    - ``esc``: :class:`~allocator.policies.EarlyStoppingSC` (``window``)
    - ``confidence-threshold``: :class:`~allocator.policies.ConfidenceThreshold` (``tau``)
    - ``difficulty-binned``: :class:`~allocator.policies.DifficultyBinned` (``target``)
    - ``blend-asc``: :class:`~allocator.policies.BlendASC` (``budget``)
    - ``bayes-stop``: :class:`~allocator.policies.BayesStop` (``price``)
    - ``epsilon-greedy``: :class:`~allocator.policies.EpsilonGreedy` (``epsilon``)
    - ``until-verified``: :class:`~allocator.policies.UntilVerified` (``n``)
    - ``best-of-n``: :class:`~allocator.policies.BestOfN` (``n``)
    - ``parallel-n``: :class:`~allocator.policies.ParallelN` (``n``: one wave of ``n``)
    - ``weighted-vote``: :class:`~allocator.policies.WeightedVote` (``n``)
    - ``round-robin``: :class:`~allocator.policies.RoundRobin` (``max_samples``)
    - ``cascade``: :class:`~allocator.policies.Cascade` (``tau``)
    - ``router``: :class:`~allocator.policies.Router` (``threshold``)
    - ``rtv``: :class:`~allocator.policies.RTVSchedule` (``n``)
    - ``pdr``: :class:`~allocator.policies.PDRSchedule` (``refinements``)
    - ``learned``: :class:`~allocator.learned.LearnedPolicy` (no knob: lambda is in the
      state), a bundle's network, registered by entry and imported on first lookup
      (:data:`ENTRIES`)

    Args:
        name: a registered name (see :func:`available_policies`).
        **params: field values; omitted fields take the policy's published defaults.

    Raises:
        ParameterError: unknown name (the message lists the known ones), unknown
            parameter (the message lists the policy's parameters), or a bad value (the
            policy's own validation names the parameter, expected and given).
    """
    cls = _policy_class(name)
    known = policy_parameters(name)
    for key, value in params.items():
        if key not in known:
            raise ParameterError(f"make_policy({name!r})", key,
                                 f"one of the parameters of {cls.__name__}: {known} "
                                 "(unknown parameter)", value)
    return cls(**params)


def _policy_class(name: str) -> type[Policy]:
    if name not in POLICIES:
        raise ParameterError("make_policy", "name",
                             f"one of the registered policies {available_policies()}", name)
    return POLICIES[name]
