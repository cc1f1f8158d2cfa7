"""The optional extras and the check that one is installed.

A serving install (``pip install 'ttc-allocator[serve]'``) has the runtime only; training,
evaluation and the demo need the ``train`` extra, MLflow URIs the ``mlflow`` extra.
:func:`require_extra` turns a missing library into one clear error that names the extra.
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import Final

from allocator.errors import MissingExtraError

__all__ = ["EXTRAS", "install_hint", "missing_modules", "require_extra"]

#: Extra -> the modules it provides that the code imports.
EXTRAS: Final[dict[str, tuple[str, ...]]] = {
    "train": ("gymnasium", "torch", "stable_baselines3", "sb3_contrib", "mlflow", "pandas",
              "matplotlib"),
    "serve": ("fastapi", "starlette", "anyio", "uvicorn", "pydantic"),
    "mlflow": ("mlflow", "pandas"),
    "llm": ("httpx",),
    "ray": ("ray",),
}


def install_hint(extra: str) -> str:
    """The pip line that installs ``extra``."""
    return f"pip install 'ttc-allocator[{extra}]'"


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here (found without importing)."""
    return [module for module in EXTRAS[extra] if find_spec(module) is None]


def require_extra(extra: str, purpose: str) -> None:
    """Raise unless every module of ``extra`` can be imported.

    Args:
        extra: a key of :data:`EXTRAS`.
        purpose: what needs it, for the message (``"allocator train"``).

    Raises:
        MissingExtraError: naming the missing modules and the install line.
    """
    missing = missing_modules(extra)
    if missing:
        raise MissingExtraError(
            f"{purpose} needs the optional extra {extra!r} ({', '.join(missing)} "
            f"missing): {install_hint(extra)}", extra=extra)
