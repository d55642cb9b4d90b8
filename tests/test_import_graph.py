"""fcnfast's modules import each other without circles (a static check: nothing is imported).

Every import statement counts, also those inside functions: a deferred import only hides a
circle until the call. Imports under ``if TYPE_CHECKING:`` do not run, so they do not count.
Importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``; those implicit parent
imports are left out, else every package would be in a circle with its own modules.
"""

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The source trees of the installed packages (setup.py's package_dir).
SOURCES = {"fcnfast": ROOT / "fcnfast", "fcnfast.kernels": ROOT / "kernels"}


def module_files(sources: Dict[str, Path]) -> Dict[str, Path]:
    """Dotted module name -> file, for every .py under the source trees (package -> folder)."""
    modules = {}
    for package, folder in sources.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(node: ast.AST) -> Iterator[ast.AST]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:  # the else branch does run
                yield from _import_nodes_of(other)
            continue
        yield from _import_nodes_of(child)


def _import_nodes_of(node: ast.AST) -> Iterator[ast.AST]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    yield from _import_nodes(node)


def _resolve_from(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, known: Set[str]) -> Set[str]:
    """The modules of ``known`` that ``module``'s import statements name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: Set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            source = _resolve_from(module, is_package, node)
            # ``from pkg import name`` imports the submodule pkg.name when there is one.
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in known else source for a in node.names]
        found.update(t for t in targets if t in known and t != module)
    return found


def import_graph(sources: Dict[str, Path] = SOURCES) -> Dict[str, Set[str]]:
    """module -> the modules it imports, over ``sources``."""
    files = module_files(sources)
    return {module: imports_of(module, path, set(files)) for module, path in files.items()}


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One import circle as [a, b, ..., a], or None (iterative depth-first search)."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_no_import_cycles():
    graph = import_graph()
    assert "fcnfast.models.fcn" in graph and "fcnfast.kernels.upsample_crop_add" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_models_layout_imports_nothing_of_fcnfast():
    """The layout is the bottom of the model side: plain data every other model module reads."""
    assert import_graph()["fcnfast.models.layout"] == set()


@pytest.mark.parametrize("sources, cycle", [
    ({"a": "from . import b", "b": "def f():\n    from .a import x"}, ["pkg.a", "pkg.b", "pkg.a"]),
    ({"a": "from .b import y", "b": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x"},
     None),
    ({"a": "import pkg.b", "b": "from .c import z", "c": "from pkg import a"}, ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]),
], ids=["deferred", "type-checking", "absolute"])
def test_the_checker_finds_circles(tmp_path, sources, cycle):
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    for name, text in sources.items():
        (folder / f"{name}.py").write_text(text + "\n")
    assert find_cycle(import_graph({"pkg": folder})) == cycle
