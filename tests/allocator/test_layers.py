"""The runtime's layer boundary: only the CLI front-ends import the training side.

``allocator/`` is the light runtime (sessions, bundles, the HTTP service, the executors);
``training/`` and ``envs/`` are the training side, imported as ``allocator.training`` and
``allocator.envs``. Every import statement of every runtime module is read from its syntax
tree (module level and inside functions alike, so a lazy import counts too): outside
``allocator/cli/`` none may name them,
except the arrows listed in :data:`KNOWN` with the reason they still exist. A new arrow
fails this test; an arrow that goes away must be removed from :data:`KNOWN` too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "allocator"
TRAINING_SIDE = ("allocator.training", "allocator.envs")

#: Arrows that remain, each with its reason (issue 13 tracks them).
KNOWN: dict[tuple[str, str], str] = {}


def imported_modules(path: Path) -> set[str]:
    """Every absolute module an import statement of ``path`` names."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def arrows() -> set[tuple[str, str]]:
    """(runtime module outside allocator/cli/, training-side module it imports)."""
    found = set()
    for path in sorted(RUNTIME.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith("allocator/cli/"):
            continue
        for name in imported_modules(path):
            if any(name == side or name.startswith(f"{side}.") for side in TRAINING_SIDE):
                found.add((relative, name))
    return found


def test_only_the_cli_imports_training_or_envs() -> None:
    new = arrows() - set(KNOWN)
    assert not new, ("runtime modules outside allocator/cli/ import the training side "
                     f"(move the code into allocator/cli/ or the runtime): {sorted(new)}")


def test_known_arrows_still_exist() -> None:
    gone = set(KNOWN) - arrows()
    assert not gone, f"remove these arrows from KNOWN, they are gone: {sorted(gone)}"


def test_the_check_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import json\n\ndef f():\n    from allocator.training.rl import train\n"
                      "    import allocator.envs.pools as p\n    from . import x\n"
                      "    from allocator import training\n")
    assert imported_modules(module) == {
        "json", "allocator.training.rl", "allocator.training.rl.train", "allocator.envs.pools",
        "allocator", "allocator.training"}


def test_the_cli_front_ends_live_in_allocator_cli() -> None:
    cli = {path.name for path in (RUNTIME / "cli").glob("*.py")}
    assert {"app.py", "train_command.py", "evaluate_command.py", "calibrate_command.py",
            "demo.py"} <= cli
    assert not any((RUNTIME / name).exists() for name in (
        "cli.py", "train_command.py", "evaluate_command.py", "calibrate_command.py",
        "demo.py"))


def test_training_reports_progress_without_the_cli_console() -> None:
    """Training reports through :mod:`training.progress` (a callback object the CLI
    implements with rich): nothing in ``training/`` or ``envs/`` imports the CLI or its
    console."""
    found = sorted((path.relative_to(ROOT).as_posix(), name)
                   for folder in TRAINING_SIDE for path in (ROOT / folder).rglob("*.py")
                   for name in imported_modules(path)
                   if name == "allocator.console" or name.split(".")[:2] == ["allocator",
                                                                              "cli"])
    assert not found, f"the training side imports the command line's output: {found}"
