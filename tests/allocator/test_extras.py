"""The optional extras: a missing one is one clear error naming the extra and its install
line, from the Python API and from every CLI command that needs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import allocator
from allocator import extras
from allocator.errors import AllocatorError, MissingExtraError

REPO = Path(__file__).resolve().parents[2]


def test_every_extra_module_is_declared_in_its_extra() -> None:
    """EXTRAS lists, per extra, modules whose distributions that extra declares."""
    import re
    import tomllib
    from importlib.metadata import packages_distributions

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    owners = packages_distributions()
    for extra, modules in extras.EXTRAS.items():
        names = {re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0].lower()
                 for req in project["optional-dependencies"][extra]}
        for module in modules:
            owned = {d.lower().replace("_", "-") for d in owners.get(module, [])}
            assert owned & names, (extra, module, owned)


def test_a_missing_module_names_the_extra_and_its_install_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    assert extras.missing_modules("train") == ["matplotlib"]
    with pytest.raises(MissingExtraError) as caught:
        extras.require_extra("train", "allocator evaluate")
    assert caught.value.extra == "train"
    assert isinstance(caught.value, AllocatorError) and isinstance(caught.value, ImportError)
    assert str(caught.value) == ("allocator evaluate needs the optional extra 'train' "
                                 "(matplotlib missing): pip install 'ttc-allocator[train]'")


def test_an_installed_extra_passes() -> None:
    assert extras.missing_modules("train") == []
    extras.require_extra("train", "x")  # no error


def test_an_mlflow_uri_without_mlflow_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'ttc-allocator\[mlflow\]'"):
        allocator.load("models:/ttc@prod")


@pytest.mark.parametrize("command", ["train", "evaluate", "calibrate", "sweep", "demo"])
def test_training_commands_say_what_to_install_without_the_train_extra(
        command: str, tmp_path: Path) -> None:
    """Without torch the command exits 2 with the install line, before reading anything."""
    code = ("import sys; sys.modules['torch'] = None; "
            "from allocator.cli import main; sys.argv = ['allocator', *sys.argv[1:]]; main()")
    args = {"train": ["train", "x.parquet", "-o", "run"],
            "evaluate": ["evaluate", "x.parquet", "-o", "out"],
            "calibrate": ["calibrate", "bundle", "x.parquet", "--target-cost", "1", "-o", "new"],
            "sweep": ["sweep", "x.parquet", "--config", "sweep.toml", "-o", "s"],
            "demo": ["demo", "--output", "d"]}[command]
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    message = " ".join(result.stderr.split())
    assert result.returncode == 2, (result.stdout, message)
    assert (f"allocator {command} needs the optional extra 'train' (torch missing): "
            "pip install 'ttc-allocator[train]'") in message


def test_the_service_package_without_fastapi_names_the_serve_extra() -> None:
    """Importing allocator.service without fastapi is a MissingExtraError (an ImportError,
    as callers catch it) naming the serve extra."""
    code = ("import sys; sys.modules['fastapi'] = None\n"
            "try:\n    import allocator.service\nexcept ImportError as error:\n"
            "    print(type(error).__name__, error.extra, '|', error)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "MissingExtraError serve | the HTTP service needs the optional extra 'serve' "
        "(fastapi missing): pip install 'ttc-allocator[serve]'")
