"""Architecture contract: core code in ``shared/`` depends on ports, never on a concrete adapter.

Static scan of every import (module level and inside functions) and every ``isinstance`` /
``issubclass`` check. Adapter modules are ``shared/adapters/**`` (``azure/`` and ``embedded/``, so each
port lines up with its two implementations) and the few listed below; the composition root
(``shared/wiring.py``) is the one module that chooses adapters. Any other exception would be listed with
its reason, so the list can only shrink.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared"

#: Adapters outside ``shared/adapters/``, with the reason (the list can only shrink).
OTHER_ADAPTERS = frozenset(
    {
        # the real MESH API through NHS England's mesh-client library: neither Azure nor embedded
        "shared.mesh.client_adapter",
    }
)
COMPOSITION_ROOT = "shared.wiring"
#: (importing module, adapter module, names) allowed, each with its reason (none today; the telemetry exporter
#: is chosen by the composition root).
ALLOWED_IMPORTS: frozenset[tuple[str, str, tuple[str, ...]]] = frozenset()


def _module(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def _is_adapter(module: str) -> bool:
    return module == "shared.adapters" or module.startswith("shared.adapters.") or module in OTHER_ADAPTERS


def _adapter_classes() -> set[str]:
    names: set[str] = set()
    for path in SHARED.rglob("*.py"):
        if _is_adapter(_module(path)):
            tree = ast.parse(path.read_text(), filename=str(path))
            names |= {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    return names


def _dependencies(source: str, classes: set[str]) -> list[tuple[str, tuple[str, ...]]]:
    """(adapter module, imported names) per import, and ("isinstance", (class,)) per type check."""
    found: list[tuple[str, tuple[str, ...]]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and _is_adapter(node.module):
            found.append((node.module, tuple(a.name for a in node.names)))
        elif isinstance(node, ast.Import):
            found += [(a.name, ()) for a in node.names if _is_adapter(a.name)]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"isinstance", "issubclass"}
            and len(node.args) == 2
        ):
            checked = [n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)]
            checked += [n.attr for n in ast.walk(node.args[1]) if isinstance(n, ast.Attribute)]
            found += [("isinstance", (name,)) for name in checked if name in classes]
    return found


def core_dependencies() -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    classes = _adapter_classes()
    offenders = {}
    for path in sorted(SHARED.rglob("*.py")):
        module = _module(path)
        if _is_adapter(module) or module == COMPOSITION_ROOT:
            continue
        found = [d for d in _dependencies(path.read_text(), classes) if (module, *d) not in ALLOWED_IMPORTS]
        if found:
            offenders[module] = found
    return offenders


def test_core_depends_on_no_concrete_adapter() -> None:
    assert core_dependencies() == {}


def test_sqlite_implementations_live_under_adapters() -> None:
    """A SQLite class beside its port (not in ``shared/adapters/embedded/``) is an adapter out of place."""
    stray = set()
    for path in sorted(SHARED.rglob("*.py")):
        module = _module(path)
        if not _is_adapter(module):
            tree = ast.parse(path.read_text(), filename=str(path))
            stray |= {
                (module, n.name)
                for n in tree.body
                if isinstance(n, ast.ClassDef) and n.name.startswith("Sqlite")
            }
    assert stray == set()


def test_the_scan_finds_imports_and_type_checks() -> None:
    classes = _adapter_classes()
    assert {"SqliteBus", "ServiceBusMessageBus", "SqliteFhirRepository", "AhdsFhirRepository"} <= classes
    sample = (
        "def topology_of(bus):\n"
        "    from shared.adapters.embedded.sqlite_bus import SqliteBus\n"
        "    import shared.adapters.azure.servicebus\n"
        "    if isinstance(bus, (int, SqliteBus)):\n"
        "        return issubclass(type(bus), servicebus.ServiceBusMessageBus)\n"
    )
    assert _dependencies(sample, classes) == [
        ("shared.adapters.embedded.sqlite_bus", ("SqliteBus",)),
        ("shared.adapters.azure.servicebus", ()),
        ("isinstance", ("SqliteBus",)),
        ("isinstance", ("ServiceBusMessageBus",)),
    ]
