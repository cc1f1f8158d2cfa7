"""One import name: the repository's envs/ and training/ folders import as
``allocator.envs`` and ``allocator.training``, from a checkout as from an install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import allocator.envs
import allocator.training.rl
from allocator import _layout

ROOT = Path(__file__).resolve().parents[2]


def test_in_a_checkout_the_layers_import_from_the_top_level_folders() -> None:
    assert Path(allocator.envs.__file__) == ROOT / "envs" / "__init__.py"
    assert Path(allocator.training.rl.__file__) == ROOT / "training" / "rl" / "__init__.py"


def test_no_generic_top_level_name_is_imported() -> None:
    """Importing the whole training side leaves no ``envs`` or ``training`` module, and
    without the checkout itself on ``sys.path`` (as for an installed package) neither name
    can be imported."""
    code = ("import sys, allocator.training.rl.pipeline, allocator.training.sweep, "
            "allocator.envs.vec_replay_env\n"
            "assert not {'envs', 'training'} & set(sys.modules), sorted(sys.modules)\n"
            "import importlib.util, pathlib\n"
            f"sys.path = [p for p in sys.path if pathlib.Path(p or '.').resolve() != "
            f"pathlib.Path({str(ROOT)!r})]\n"
            "assert importlib.util.find_spec('envs') is None\n"
            "assert importlib.util.find_spec('training') is None\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")


def _package(root: Path, *names: str) -> None:
    for name in names:
        (root / name).mkdir(parents=True)
        (root / name / "__init__.py").write_text("")


@pytest.fixture
def bare_meta_path(monkeypatch: pytest.MonkeyPatch) -> list:
    """sys.meta_path without the checkout finder (restored after the test)."""
    path = [f for f in sys.meta_path if not isinstance(f, _layout._CheckoutLayerFinder)]
    monkeypatch.setattr(sys, "meta_path", path)
    return path


def test_a_checkout_gets_a_finder_for_exactly_the_two_layers(tmp_path: Path,
                                                             bare_meta_path: list) -> None:
    _package(tmp_path, "pkg", "envs", "training", "tests")
    _layout.link_checkout_layers(tmp_path / "pkg")
    finder = sys.meta_path[0]
    assert isinstance(finder, _layout._CheckoutLayerFinder)
    assert finder.locations == {"allocator.envs": tmp_path / "envs",
                                "allocator.training": tmp_path / "training"}
    spec = finder.find_spec("allocator.training")
    assert spec.origin == str(tmp_path / "training" / "__init__.py")
    assert list(spec.submodule_search_locations) == [str(tmp_path / "training")]
    assert finder.find_spec("allocator.tests") is None
    assert finder.find_spec("allocator.training.rl") is None  # found through __path__
    _layout.link_checkout_layers(tmp_path / "pkg")  # idempotent
    assert sum(isinstance(f, _layout._CheckoutLayerFinder) for f in sys.meta_path) == 1


def test_an_installed_package_gets_no_finder(tmp_path: Path, bare_meta_path: list) -> None:
    """Installed, the layers are inside the package (pyproject's package-dir)."""
    _package(tmp_path, "pkg", "pkg/envs", "pkg/training", "envs", "training")
    before = list(sys.meta_path)
    _layout.link_checkout_layers(tmp_path / "pkg")
    assert sys.meta_path == before
