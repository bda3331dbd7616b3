"""The shape of the package: no import cycles, and the arrows point one way (faces -> services
-> parts), as ARCHITECTURE.md draws them. Every import counts, at the top of a module or
inside a function; only those under ``if TYPE_CHECKING:`` are for the type checker alone."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import rolecast

ROOT = Path(rolecast.__file__).parent
FACES = ("rolecast.cli", "rolecast.web", "rolecast.server")


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = ["rolecast", *path.relative_to(ROOT).with_suffix("").parts]
        package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if package else parts)] = (path, package)
    return found


def _type_checking_only(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                for n in ast.walk(inner):
                    lines.add(id(n))
    return lines


@functools.cache
def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, (path, package) in modules.items():
        here = name if package else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_only(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - node.level + 1]
                    target = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    target = node.module or ""
                subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
                targets = subs or [target]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_walker_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = import_graph()
    assert "rolecast.session" in graph["rolecast.cli.common"]  # a lazy import counts
    assert "rolecast.cli.common" in graph["rolecast.cli.chat"]


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_no_part_imports_a_face() -> None:
    graph = import_graph()
    wrong = sorted(
        f"{m} -> {t}"
        for m, targets in graph.items()
        if not m.startswith(FACES)
        for t in targets
        if t.startswith(FACES)
    )
    assert wrong == []


def test_no_backend_imports_another_backend() -> None:
    graph = import_graph()
    backends = {"rolecast.backends.local", "rolecast.backends.openai_compat"}
    assert all(not (graph[b] & (backends - {b})) for b in backends)
