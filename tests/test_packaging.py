"""Packaging: every library the project's code imports is declared in pyproject.toml, and
the Python versions it declares are the one this suite runs on and later."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("allocator", "envs", "training")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def imported_top_level() -> set[str]:
    """Top-level names of every absolute import in the project's packages."""
    names: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - set(PACKAGES)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_distributions() -> set[str]:
    project = _pyproject()["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    return {_normalise(re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0]) for req in requirements}


def test_every_imported_library_is_declared() -> None:
    """An import whose distribution is in no dependency list would work here only because
    something else happens to install it."""
    owners = packages_distributions()
    declared = declared_distributions()
    missing = {}
    for name in sorted(imported_top_level()):
        distributions = {_normalise(d) for d in owners.get(name, [])}
        assert distributions, f"{name} is imported but not installed here"
        if not distributions & declared:
            missing[name] = sorted(distributions)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_the_declared_python_is_the_tested_one() -> None:
    """requires-python's lower bound is the interpreter this suite runs on (3.11: the
    code reads TOML with the standard library's tomllib), and ruff targets the same."""
    config = _pyproject()
    low = re.fullmatch(r">=\s*3\.(\d+)", config["project"]["requires-python"])
    assert low is not None
    assert (3, int(low.group(1))) == sys.version_info[:2]
    assert config["tool"]["ruff"]["target-version"] == f"py3{low.group(1)}"
