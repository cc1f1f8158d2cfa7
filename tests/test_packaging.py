"""Packaging: one import name (``allocator``) whose installed packages are the repository's
folders; every library a layer imports is declared where that layer's install gets it
(the runtime: the core dependencies and its extras; the training side: also ``train`` and
``ray``); a serving install has no training library; the Python versions declared are the
ones this suite runs on."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from allocator._layout import LAYERS

ROOT = Path(__file__).resolve().parents[1]
#: Repository folder -> its import name.
FOLDERS = {"allocator": "allocator", **{folder: f"allocator.{name}"
                                         for name, folder in LAYERS.items()}}
#: Extras a serving install may add to the core, and those of the training side.
RUNTIME_EXTRAS = ("serve", "llm", "mlflow")
TRAINING_EXTRAS = ("train", "ray")
TRAINING_LIBRARIES = {"torch", "stable-baselines3", "sb3-contrib", "mlflow", "gymnasium",
                      "matplotlib", "pandas", "ray"}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(requirements: list[str]) -> set[str]:
    return {_normalise(re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0]) for req in requirements}


def declared(*extras: str) -> set[str]:
    """The core dependencies plus those of ``extras``."""
    project = _pyproject()["project"]
    found = _names(project["dependencies"])
    for extra in extras:
        found |= _names(project["optional-dependencies"][extra])
    return found


def imported_libraries(folders: list[Path]) -> dict[str, set[str]]:
    """Top-level library name -> the files under ``folders`` that import it."""
    found: dict[str, set[str]] = {}
    for folder in folders:
        for path in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top != "allocator":
                        found.setdefault(top, set()).add(path.relative_to(ROOT).as_posix())
    return found


@pytest.mark.parametrize(("layer", "folders", "extras"), [
    ("runtime", ["allocator"], RUNTIME_EXTRAS),
    ("training side", list(LAYERS.values()), RUNTIME_EXTRAS + TRAINING_EXTRAS),
])
def test_every_imported_library_is_declared_for_its_layer(layer: str, folders: list[str],
                                                          extras: tuple[str, ...]) -> None:
    """An import whose distribution its layer's install does not declare would work here
    only because something else happens to install it."""
    owners = packages_distributions()
    allowed = declared(*extras)
    missing = {}
    for name, files in sorted(imported_libraries([ROOT / f for f in folders]).items()):
        distributions = {_normalise(d) for d in owners.get(name, [])}
        assert distributions, f"{name} is imported ({sorted(files)}) but not installed here"
        if not distributions & allowed:
            missing[name] = sorted(files)
    assert not missing, (f"the {layer} imports libraries its install ({', '.join(extras)} "
                         f"extras) does not declare: {missing}")


def test_a_serving_install_has_no_training_library() -> None:
    """The core and the serving extras pull in no torch, SB3, mlflow or plotting."""
    assert not declared("serve", "llm") & TRAINING_LIBRARIES
    assert TRAINING_LIBRARIES - {"ray"} <= declared("train")


def test_the_installed_packages_are_the_folders_under_one_name() -> None:
    """pyproject's package list is every package folder, each under ``allocator``, and the
    two training-side folders map to ``allocator.envs``/``allocator.training``."""
    setuptools = _pyproject()["tool"]["setuptools"]
    on_disk = set()
    for folder, import_name in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            on_disk.add(".".join([import_name, *parts]))
    assert set(setuptools["packages"]) == on_disk
    assert all(name == "allocator" or name.startswith("allocator.")
               for name in setuptools["packages"])
    assert setuptools["package-dir"] == {f"allocator.{name}": folder
                                         for name, folder in LAYERS.items()}


def test_the_declared_python_is_the_tested_one() -> None:
    """requires-python's lower bound is the interpreter this suite runs on (3.11: the
    code reads TOML with the standard library's tomllib), and ruff targets the same."""
    config = _pyproject()
    low = re.fullmatch(r">=\s*3\.(\d+)", config["project"]["requires-python"])
    assert low is not None
    assert (3, int(low.group(1))) == sys.version_info[:2]
    assert config["tool"]["ruff"]["target-version"] == f"py3{low.group(1)}"
