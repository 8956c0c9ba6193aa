"""The import graph of the product's packages: no cycle between modules, counting the imports
inside function bodies too (import-linter checks the layers; it sees only what grimp sees), and
every import inside a function says why it is there (a comment on its line: an optional package,
the one command that needs it)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("model", "indexer", "workers", "api", "dinoseek", "migrations")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module, name: str, is_package: bool, known: set[str]) -> tuple[list[tuple[str, int]], list[int]]:
    """(project modules imported, with their line), and the lines of imports inside function bodies."""
    found: list[tuple[str, int]] = []
    inner: list[int] = []

    def target(dotted: str) -> str | None:
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child, in_function)
            return  # never executed: types only
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if in_function:
                inner.append(node.lineno)
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[:len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                names = [f"{base}.{alias.name}" for alias in node.names] or [base]
            for dotted in names:
                module = target(dotted)
                if module is not None and module != name:
                    found.append((module, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child, in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return found, inner


def _graph() -> tuple[dict[str, dict[str, int]], list[str]]:
    modules = _modules()
    known = set(modules)
    graph: dict[str, dict[str, int]] = {}
    unexplained: list[str] = []
    for name, path in modules.items():
        source = path.read_text()
        lines = source.splitlines()
        found, inner = _imports(ast.parse(source), name, path.name == "__init__.py", known)
        graph[name] = {}
        for module, line in found:
            graph[name].setdefault(module, line)
        unexplained += [f"{path.relative_to(ROOT)}:{line}: {lines[line - 1].strip()}" for line in inner
                        if "#" not in lines[line - 1]]
    return graph, unexplained


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each in a stable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def test_the_walk_sees_the_packages_and_their_imports() -> None:
    graph, _ = _graph()
    assert {"indexer.jobs.lifecycle", "workers.dispatch", "dinoseek.cli.main", "migrations.env"} <= set(graph)
    assert "indexer.jobs.kinds" in graph["indexer.jobs.lifecycle"]  # a top-level import
    assert "indexer.stores.qdrant_server_store" in graph["indexer.stores.backends"]


def test_no_import_cycle_between_modules() -> None:
    graph, _ = _graph()
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function() -> None:
    tree = ast.parse("import b\n\ndef later():\n    import a  # lazy\n")
    found, inner = _imports(tree, "x", False, {"a", "b", "x"})
    assert [m for m, _ in found] == ["b", "a"] and inner == [4]
    assert _cycles({"a": {"x": 1}, "x": {"a": 4}, "b": {}}) == [["a", "x"]]


def test_every_import_inside_a_function_says_why() -> None:
    _, unexplained = _graph()
    assert unexplained == []
