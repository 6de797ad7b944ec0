"""Architecture contract: core code in ``shared/`` depends on ports, never on a concrete adapter.

Static scan of every import (module level and inside functions) and every ``isinstance`` /
``issubclass`` check. Adapter modules are ``shared/adapters/**`` and the embedded adapters listed below;
the composition root (``shared/wiring.py``) is the one module that chooses adapters. Today's other
exceptions are listed with their reason, so the list can only shrink.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared"

#: Embedded (non-Azure) adapters that live beside their ports.
EMBEDDED_ADAPTERS = frozenset(
    {
        "shared.audit.sqlite_log",
        "shared.credentials.local",
        "shared.fhirstore.sqlite_store",
        "shared.mesh.client_adapter",
        "shared.mesh.local_files",
        "shared.messaging.sqlite_bus",
        "shared.pds.stub",
        "shared.storage.sqlite_blobs",
        "shared.storage.sqlite_records",
    }
)
COMPOSITION_ROOT = "shared.wiring"
#: (importing module, adapter module, names) allowed today, with the reason.
ALLOWED_IMPORTS = {
    # the credential-name pattern (a constant, no adapter class) is defined beside the local provider
    ("shared.credentials.registry", "shared.credentials.local", ("NAME_RE",)),
    # telemetry turns the Azure Monitor exporter on when a connection string is set (a function)
    (
        "shared.observability.telemetry",
        "shared.adapters.azure.monitor",
        ("configure_azure_monitor_exporter",),
    ),
}


def _module(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def _is_adapter(module: str) -> bool:
    return module == "shared.adapters" or module.startswith("shared.adapters.") or module in EMBEDDED_ADAPTERS


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


def test_the_scan_finds_imports_and_type_checks() -> None:
    classes = _adapter_classes()
    assert {"SqliteBus", "ServiceBusMessageBus", "SqliteFhirRepository", "AhdsFhirRepository"} <= classes
    sample = (
        "def topology_of(bus):\n"
        "    from shared.messaging.sqlite_bus import SqliteBus\n"
        "    import shared.adapters.azure.servicebus\n"
        "    if isinstance(bus, (int, SqliteBus)):\n"
        "        return issubclass(type(bus), servicebus.ServiceBusMessageBus)\n"
    )
    assert _dependencies(sample, classes) == [
        ("shared.messaging.sqlite_bus", ("SqliteBus",)),
        ("shared.adapters.azure.servicebus", ()),
        ("isinstance", ("SqliteBus",)),
        ("isinstance", ("ServiceBusMessageBus",)),
    ]
