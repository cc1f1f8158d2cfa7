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
from typing import TypeVar

from allocator.errors import ParameterError
from allocator.policies.base import Policy

__all__ = ["POLICIES", "available_policies", "make_policy", "register_policy"]

#: Registered policy classes by name, in registration order.
POLICIES: dict[str, type[Policy]] = {}

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
    if name in POLICIES and POLICIES[name] is not cls:
        raise ParameterError("register_policy", "name",
                             f"a name not registered yet ({name!r} is "
                             f"{POLICIES[name].__qualname__})", name)
    POLICIES[name] = cls
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
