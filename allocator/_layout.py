"""Where the training side is imported from: ``allocator.envs`` and ``allocator.training``.

The project keeps three folders at the top of the repository (``allocator/``, ``envs/``,
``training/``) but installs a single import name, ``allocator``: pyproject's
``package-dir`` places ``envs/`` and ``training/`` inside the installed package as
``allocator.envs`` and ``allocator.training``, so nothing with a generic name lands in
site-packages. In a source checkout the two folders sit beside ``allocator/``;
:func:`link_checkout_layers` lets the same names import from there.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from importlib.util import spec_from_file_location
from pathlib import Path
from types import ModuleType
from typing import Final

__all__ = ["LAYERS", "link_checkout_layers"]

#: Subpackage of ``allocator`` -> the repository folder that holds it in a checkout.
LAYERS: Final[Mapping[str, str]] = {"envs": "envs", "training": "training"}


class _CheckoutLayerFinder(MetaPathFinder):
    """Finds ``allocator.envs``/``allocator.training`` in a checkout's top-level folders
    (their submodules are then found through the package's ``__path__`` as usual)."""

    def __init__(self, locations: Mapping[str, Path]) -> None:
        self.locations = dict(locations)

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        location = self.locations.get(fullname)
        if location is None:
            return None
        return spec_from_file_location(fullname, location / "__init__.py",
                                       submodule_search_locations=[str(location)])


def link_checkout_layers(package_dir: Path) -> None:
    """Make ``allocator.envs``/``allocator.training`` importable from a source checkout.

    Does nothing for an installed package (the subpackages are inside ``package_dir``) or
    where the folders are absent.

    Args:
        package_dir: the directory of the imported ``allocator`` package.
    """
    locations = {}
    for name, folder in LAYERS.items():
        if (package_dir / name / "__init__.py").is_file():
            continue
        beside = package_dir.parent / folder
        if (beside / "__init__.py").is_file():
            locations[f"allocator.{name}"] = beside
    if locations and not any(isinstance(finder, _CheckoutLayerFinder)
                             for finder in sys.meta_path):
        sys.meta_path.insert(0, _CheckoutLayerFinder(locations))
