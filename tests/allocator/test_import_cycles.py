"""No import cycles in ``allocator``, ``allocator.envs`` and ``allocator.training``.

The import graph is built statically from every module's syntax tree: module-level and
function-level imports both count (a lazy import that closes a cycle still ties the two
modules together), imports under ``if TYPE_CHECKING:`` do not (they never run). An arrow
goes to the module an import names: ``from a.b import c`` points at ``a.b.c`` where that
is a module of these packages, else at ``a.b`` (none where ``a.b`` is not one of their
Python modules: a compiled extension, another library). Importing a submodule also runs its
parent packages' ``__init__``, but that arrow is not drawn: every package would otherwise
be in a cycle with its own re-exports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from allocator._layout import LAYERS

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("allocator", "envs", "training")
#: The folders installed under ``allocator`` (see allocator/_layout.py): their import names.
IMPORT_NAMES = {folder: f"allocator.{name}" for name, folder in LAYERS.items()}


def all_modules(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Every module of ``packages`` under ``root``, by dotted name."""
    return {module_name_under(root, path): path
            for package in packages for path in sorted((root / package).rglob("*.py"))}


def module_name_under(root: Path, path: Path) -> str:
    """The dotted module name of a file under ``root``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    if root == ROOT and parts[0] in IMPORT_NAMES:
        parts[0] = IMPORT_NAMES[parts[0]]
    return ".".join(parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, type_only: bool = False) -> list[ast.Import | ast.ImportFrom]:
    """Import statements anywhere in ``tree``; those in ``if TYPE_CHECKING:`` bodies only
    with ``type_only``."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        if not type_only and isinstance(node, ast.If) and _type_checking_only(node):
            stack.extend(node.orelse)  # the else branch runs
            continue
        stack.extend(ast.iter_child_nodes(node))
    return found


def imported(name: str, path: Path, modules: dict[str, Path], type_only: bool = False
             ) -> set[str]:
    """The modules of ``modules`` that ``name`` (at ``path``) imports (type-only imports
    too with ``type_only``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in _imports(tree, type_only):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        if node.level:
            anchor = package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, *([node.module] if node.module else [])])
        else:
            base = node.module or ""
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            targets.add(sub if sub in modules else base)
    return {target for target in targets if target in modules and target != name}


def import_graph(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES, *,
                 type_only: bool = False) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports (``type_only``: with the imports
    under ``if TYPE_CHECKING:``)."""
    modules = all_modules(root, packages)
    return {name: imported(name, path, modules, type_only) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a self-loop),
    each as a cycle through it, found by Tarjan's algorithm (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(_cycle_through(sorted(component), graph))
    return components


def _cycle_through(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One cycle from the component's first module back to it (breadth-first)."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    return component  # pragma: no cover - a component always holds a cycle


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles (break them):\n" + "\n".join(
        " -> ".join(cycle) for cycle in found)


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from pkg.sub.c import X\n")
    (package / "a.py").write_text("from typing import TYPE_CHECKING\n"
                                  "if TYPE_CHECKING:\n    from pkg import b\n"
                                  "def f():\n    from .sub import c\n")
    (package / "b.py").write_text("import pkg.a\n")
    (package / "sub" / "c.py").write_text("from ..b import thing\nX = 1\n")
    return tmp_path


def test_the_graph_reads_lazy_relative_and_skips_type_checking(toy: Path) -> None:
    graph = import_graph(toy, ("pkg",))
    assert graph["pkg.a"] == {"pkg.sub.c"}  # lazy and relative; TYPE_CHECKING skipped
    assert graph["pkg.b"] == {"pkg.a"}
    assert graph["pkg.sub.c"] == {"pkg.b"}
    assert graph["pkg.sub"] == {"pkg.sub.c"}
    assert cycles(graph) == [["pkg.a", "pkg.sub.c", "pkg.b", "pkg.a"]]


def test_a_type_checking_import_closes_no_cycle(toy: Path) -> None:
    (toy / "pkg" / "sub" / "c.py").write_text("X = 1\n")  # b imports a; a b for types only
    assert cycles(import_graph(toy, ("pkg",))) == []
    assert cycles(import_graph(toy, ("pkg",), type_only=True)) == [
        ["pkg.a", "pkg.b", "pkg.a"]]


def test_no_cycle_even_through_type_only_imports() -> None:
    # Sessions are typed against the decision-source protocol, not the oracle; RunState
    # is handed what it needs, not the executor; the sweep and its results share
    # SweepData from a third module: not even an annotation loops back.
    found = cycles(import_graph(ROOT, PACKAGES, type_only=True))
    assert not found, "type-only import cycles:\n" + "\n".join(
        " -> ".join(cycle) for cycle in found)

