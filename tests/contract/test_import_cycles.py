"""Architecture contract: no package-level import cycle inside ``shared/``.

Every import statement counts (module level, inside functions, under ``TYPE_CHECKING``; relative imports
resolved). A module ``shared.a.b.c`` belongs to package ``shared.a``; a top-level module such as
``shared.wiring`` is its own node. There are no exceptions: where a package needs something from a package
that depends on it, the composition root (``shared.wiring``) hands it in through a port (ADR 0010).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

Edge = tuple[str, str]
Graph = dict[str, dict[str, list[str]]]


def _module_name(path: Path, root: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def _exists(root: Path, parts: list[str]) -> bool:
    return (root.joinpath(*parts).with_suffix(".py")).is_file() or (
        root.joinpath(*parts, "__init__.py")
    ).is_file()


def _imported(node: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            target = ".".join([*base, *([node.module] if node.module else [])])
        else:
            target = node.module or ""
        yield target
        # ``from shared.a import b`` may name a submodule ``shared.a.b``.
        yield from (f"{target}.{alias.name}" for alias in node.names)


def package_graph(root: Path, top: str = "shared") -> Graph:
    """``{package: {imported package: ["file:line", ...]}}`` for every package of ``root/top``."""
    graph: Graph = {}
    for path in sorted((root / top).rglob("*.py")):
        module, is_package = _module_name(path, root)
        source = module.split(".")
        if len(source) < 2:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            for target in _imported(node, module, is_package):
                parts = target.split(".")
                if len(parts) < 2 or parts[0] != top:
                    continue
                while parts and not _exists(root, parts):
                    parts = parts[:-1]
                if len(parts) < 2 or parts[1] == source[1]:
                    continue
                src, dst = f"{top}.{source[1]}", f"{top}.{parts[1]}"
                where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
                sites = graph.setdefault(src, {}).setdefault(dst, [])
                if where not in sites:
                    sites.append(where)
    return graph


def cycles(graph: Graph, ignore: frozenset[Edge] = frozenset()) -> list[list[str]]:
    """Strongly connected components of more than one package (each holds at least one cycle)."""
    edges = {a: sorted(b for b in targets if (a, b) not in ignore) for a, targets in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, []):
            if w not in index:
                visit(w)
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
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _describe(graph: Graph, components: list[list[str]]) -> str:
    lines = []
    for component in components:
        lines.append("cycle among " + ", ".join(component) + ":")
        for a in component:
            for b in component:
                if b in graph.get(a, {}):
                    lines.append(f"  {a} -> {b}  ({', '.join(graph[a][b][:3])})")
    return "\n".join(lines)


def test_shared_has_no_package_import_cycle() -> None:
    graph = package_graph(ROOT)
    found = cycles(graph)
    assert found == [], "package import cycle inside shared/:\n" + _describe(graph, found)


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_scanner_sees_function_level_relative_and_type_checking_imports(tmp_path: Path) -> None:
    _write(tmp_path, "shared/__init__.py", "")
    _write(tmp_path, "shared/a/__init__.py", "")
    _write(tmp_path, "shared/a/x.py", "def f():\n    from shared.b.y import g\n")
    _write(tmp_path, "shared/b/__init__.py", "from .y import g\n")
    _write(tmp_path, "shared/b/y.py", "from ..c import h\ndef g(): ...\n")
    _write(
        tmp_path,
        "shared/c.py",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from shared import a\n",
    )
    _write(tmp_path, "shared/d/__init__.py", "from shared.a import x\n")
    graph = package_graph(tmp_path)
    assert {a: sorted(b) for a, b in graph.items()} == {
        "shared.a": ["shared.b"],
        "shared.b": ["shared.c"],
        "shared.c": ["shared.a"],
        "shared.d": ["shared.a"],
    }
    assert cycles(graph) == [["shared.a", "shared.b", "shared.c"]]
    assert cycles(graph, frozenset({("shared.b", "shared.c")})) == []
