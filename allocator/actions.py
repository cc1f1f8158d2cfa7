"""The action layout shared by the environments, the policies and the runtime.

For a problem with ``A`` arms there are ``A + 3`` actions, always in this order:

======  ==============  =====================================================
index   action          meaning
======  ==============  =====================================================
0       ``STOP``        return the final answer
1..A    ``SAMPLE(arm)`` draw one more independent attempt from arm ``index - 1``
A + 1   ``REFINE``      draw a refinement conditioned on earlier attempts
A + 2   ``VERIFY``      pay for verifier scores of the drawn, unverified candidates
======  ==============  =====================================================

Actions a log (or an executor) cannot support are masked, never removed, so a policy's
output layout does not depend on the log.
"""

from __future__ import annotations

from typing import Final

__all__ = ["STOP", "action_names", "n_actions", "refine_action", "sample_action",
           "verify_action"]

STOP: Final = 0


def n_actions(n_arms: int) -> int:
    """Number of actions for ``n_arms`` arms."""
    return n_arms + 3


def sample_action(arm: int) -> int:
    """The index of SAMPLE(arm)."""
    return 1 + arm


def refine_action(n_arms: int) -> int:
    """The index of REFINE."""
    return n_arms + 1


def verify_action(n_arms: int) -> int:
    """The index of VERIFY."""
    return n_arms + 2


def action_names(arms: tuple[str, ...] | list[str]) -> list[str]:
    """Readable names of every action, in index order."""
    return ["STOP", *(f"SAMPLE({arm})" for arm in arms), "REFINE", "VERIFY"]
