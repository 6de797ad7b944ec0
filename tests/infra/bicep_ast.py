"""Read Bicep with tree-sitter-bicep: syntax errors, declarations and property values, for the infra tests.

The Bicep CLI cannot be installed on our machines (it downloads a native binary), so the templates are
checked with the tree-sitter grammar published on PyPI. This module turns a parse tree into the few things
the tests need: parameters (with default values), variables, resource and module declarations (type, API
version, body, loop/condition) and a path lookup into object literals (``properties.disableLocalAuth``).
Values are returned as tree-sitter nodes; :func:`literal` converts plain literals (strings without
interpolation, numbers, booleans, null, arrays/objects of those) to Python.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import tree_sitter_bicep
from tree_sitter import Language, Node, Parser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
BICEP_DIR = INFRA / "bicep"
MAIN = BICEP_DIR / "main.bicep"
MODULES = BICEP_DIR / "modules"


def bicep_files() -> list[Path]:
    """Every .bicep file under infra/, sorted."""
    return sorted(INFRA.rglob("*.bicep"))


@cache
def _parser() -> Parser:
    return Parser(Language(tree_sitter_bicep.language()))


def text(node: Node | None) -> str:
    """Source text of ``node``; "" for a missing node (so comparisons fail with a readable diff)."""
    return "" if node is None else (node.text or b"").decode("utf-8")


@dataclass(frozen=True)
class Declaration:
    """A ``resource`` or ``module`` declaration."""

    kind: str  # "resource" | "module"
    symbol: str
    target: str  # resource type (without API version) or module path
    api_version: str | None
    body: Node | None  # the object literal (inside any for/if)
    looped: bool
    conditional: bool
    existing: bool
    node: Node
    file: BicepFile

    @property
    def line(self) -> int:
        return self.node.start_point[0] + 1

    def get(self, path: str) -> Node | None:
        return get(self.body, path) if self.body is not None else None

    def where(self) -> str:
        return f"{self.file.rel}:{self.line} ({self.kind} {self.symbol})"


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: Node | None
    decorators: tuple[Node, ...]
    line: int

    def decorator_args(self, name: str) -> list[Node] | None:
        """Arguments of decorator ``@name(...)``, or None when the parameter has no such decorator."""
        for decorator in self.decorators:
            for args in call_arguments(decorator, name):
                return args
        return None

    def allowed(self) -> list[Any] | None:
        args = self.decorator_args("allowed")
        return None if args is None else literal(args[0])

    @property
    def secure(self) -> bool:
        return self.decorator_args("secure") is not None or any(
            text(d).replace(" ", "") == "@secure()" for d in self.decorators
        )


class BicepFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.rel = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
        self.source = path.read_bytes()
        self.tree = _parser().parse(self.source)
        self.root = self.tree.root_node

    # -- syntax ---------------------------------------------------------------------------------------------

    def syntax_errors(self) -> list[str]:
        """``file:line:col`` for every ERROR or MISSING node (empty when the file parses cleanly)."""
        found: list[str] = []

        def visit(node: Node) -> None:
            if node.type == "ERROR" or node.is_missing:
                row, col = node.start_point
                what = f"missing {node.type!r}" if node.is_missing else f"unexpected {text(node)[:40]!r}"
                found.append(f"{self.rel}:{row + 1}:{col + 1}: {what}")
                if node.type == "ERROR":
                    return
            for child in node.children:
                visit(child)

        visit(self.root)
        return found

    # -- declarations ---------------------------------------------------------------------------------------

    def _top(self, node_type: str) -> Iterator[tuple[Node, tuple[Node, ...]]]:
        decorators: tuple[Node, ...] = ()
        for child in self.root.named_children:
            if child.type == "decorators":
                decorators = tuple(child.named_children)
                continue
            if child.type == node_type:
                yield child, decorators
            decorators = ()

    def params(self) -> dict[str, Param]:
        out: dict[str, Param] = {}
        for node, decorators in self._top("parameter_declaration"):
            named = node.named_children
            name = text(named[0])
            type_node = named[1] if len(named) > 1 else None
            default = named[2] if len(named) > 2 else None
            out[name] = Param(
                name=name,
                type=text(type_node) if type_node is not None else "",
                default=default,
                decorators=decorators,
                line=node.start_point[0] + 1,
            )
        return out

    def variables(self) -> dict[str, Node]:
        out: dict[str, Node] = {}
        for node, _ in self._top("variable_declaration"):
            named = node.named_children
            out[text(named[0])] = named[-1]
        return out

    def outputs(self) -> dict[str, Node]:
        out: dict[str, Node] = {}
        for node, _ in self._top("output_declaration"):
            named = node.named_children
            out[text(named[0])] = named[-1]
        return out

    def declarations(self) -> list[Declaration]:
        found: list[Declaration] = []

        def visit(node: Node) -> None:
            if node.type in ("resource_declaration", "module_declaration"):
                found.append(self._declaration(node))
            for child in node.named_children:
                visit(child)

        visit(self.root)
        return found

    def resources(self, type_: str | None = None) -> list[Declaration]:
        return [
            d
            for d in self.declarations()
            if d.kind == "resource" and (type_ is None or d.target.lower() == type_.lower())
        ]

    def modules(self) -> list[Declaration]:
        return [d for d in self.declarations() if d.kind == "module"]

    def _declaration(self, node: Node) -> Declaration:
        kind = "resource" if node.type == "resource_declaration" else "module"
        named = node.named_children
        symbol = text(named[0])
        target_text = string_value(named[1]) or ""
        target, _, version = target_text.partition("@")
        existing = any(child.type == "existing" or text(child) == "existing" for child in node.children)
        value = named[-1]
        looped = conditional = False
        if value.type == "for_statement":
            looped = True
            value = value.named_children[-1]
        if value.type == "if_statement":
            conditional = True
            value = value.named_children[-1]
        body = value if value.type == "object" else None
        return Declaration(
            kind=kind,
            symbol=symbol,
            target=target,
            api_version=version or None,
            body=body,
            looped=looped,
            conditional=conditional,
            existing=existing,
            node=node,
            file=self,
        )


@cache
def load(path: Path) -> BicepFile:
    return BicepFile(path)


def all_files() -> list[BicepFile]:
    return [load(p) for p in bicep_files()]


# -- values ----------------------------------------------------------------------------------------------


def property_key(prop: Node) -> str:
    key = prop.named_children[0]
    value = string_value(key)
    return value if value is not None else text(key)


def properties(obj: Node | None) -> dict[str, Node]:
    """Key -> value node of an object literal (keys as written; string keys unquoted); {} for no object."""
    out: dict[str, Node] = {}
    if obj is None or obj.type != "object":
        return out
    for prop in obj.named_children:
        if prop.type == "object_property":
            out[property_key(prop)] = prop.named_children[-1]
    return out


def get(node: Node | None, path: str) -> Node | None:
    """Follow ``a.b.c`` through nested object literals; None when a step is missing or not an object."""
    current = node
    for step in path.split("."):
        if current is None or current.type != "object":
            return None
        current = properties(current).get(step)
    return current


def string_value(node: Node | None) -> str | None:
    """The value of a string literal without interpolation (escapes resolved); None for anything else."""
    if node is None or node.type != "string":
        return None
    parts: list[str] = []
    for child in node.named_children:
        if child.type == "string_content":
            parts.append(text(child))
        elif child.type == "escape_sequence":
            raw = text(child)
            parts.append(
                {"\\'": "'", "\\\\": "\\", "\\n": "\n", "\\r": "\r", "\\t": "\t", "\\$": "$"}.get(raw, raw)
            )
        else:  # interpolation
            return None
    return "".join(parts)


class NotLiteral(ValueError):
    pass


def literal(node: Node | None) -> Any:
    """Python value of a literal expression; raises :class:`NotLiteral` for anything computed or missing."""
    if node is None:
        raise NotLiteral("<missing>")
    if node.type == "string":
        value = string_value(node)
        if value is None:
            raise NotLiteral(text(node))
        return value
    if node.type == "boolean":
        return text(node) == "true"
    if node.type == "number":
        return int(text(node))
    if node.type == "null":
        return None
    if node.type == "array":
        return [literal(child) for child in node.named_children if child.type not in ("comment",)]
    if node.type == "object":
        return {key: literal(value) for key, value in properties(node).items()}
    raise NotLiteral(text(node))


def walk(node: Node | None) -> Iterator[Node]:
    if node is None:
        return
    yield node
    for child in node.named_children:
        yield from walk(child)


def object_properties_named(node: Node, key: str) -> Iterator[tuple[Node, Node]]:
    """Every ``key: value`` property anywhere under ``node``: (property node, value node)."""
    for candidate in walk(node):
        if candidate.type == "object_property" and property_key(candidate) == key:
            yield candidate, candidate.named_children[-1]


def call_arguments(node: Node, function: str) -> Iterator[list[Node]]:
    """Argument nodes of every call to ``function`` under ``node``."""
    for candidate in walk(node):
        if candidate.type == "call_expression":
            named = candidate.named_children
            if named and text(named[0]) == function and len(named) > 1:
                yield list(named[1].named_children)
