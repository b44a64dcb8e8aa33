"""The shape of the code under services/ (issue 23, docs/architecture.md "The shape of a
service"): no import circle, no module over 650 lines, and no service that imports the
supervisor. Read with `ast`, nothing is imported."""

from __future__ import annotations

import ast
import sys
from pathlib import Path


SERVICES = Path(__file__).resolve().parents[1] / "services"
MAX_LINES = 650



def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module under services/ (a package by its __init__)."""
    found = {}
    for path in sorted(SERVICES.rglob("*.py")):
        name = ".".join(path.relative_to(SERVICES).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of services/ that `name` imports, anywhere in it (function-level too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level-1 more
                parent = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {module for module in found if module in modules and module != name}


def _import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imported(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), and modules that
    import themselves through a package: every import circle."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_no_import_circle_under_services():
    assert _cycles(_import_graph()) == []


# Written by `agentmesh gen` from the contract (mesh/build/client.py), not by hand: one class per
# message and one method per RPC, as long as the contract is.
GENERATED = SERVICES / "client" / "agentmesh_client" / "_generated"


def test_no_module_under_services_is_over_650_lines():
    long = {str(path.relative_to(SERVICES)): lines for path in SERVICES.rglob("*.py")
            if GENERATED not in path.parents
            and (lines := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_no_service_imports_the_supervisor():
    from mesh import catalog

    services = set(catalog.names())
    importers = sorted(name for name, imports in _import_graph().items()
                       if name.split(".")[1:2] and name.split(".")[1] in services
                       and "mesh.supervisor" in imports)
    assert importers == []


def test_the_checks_find_a_circle_and_read_every_kind_of_import():
    """The checks themselves (never expected to fail): a circle is found, a chain is not, and
    the graph holds absolute, `from` and function-level imports."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    graph = _import_graph()
    assert "mesh.runtime.settings" in graph["mesh.runtime.server"]
    assert "mesh.supervisor" in graph["mesh.cli"]  # imported inside a function
