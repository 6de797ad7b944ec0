"""Architecture contract: the core in ``shared/`` never imports ``azure.*``; only adapters do.

Checked statically over every import statement (module level and inside functions), so a lazy import
cannot slip through, and dynamically by importing every core module with ``azure`` made unimportable.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ADAPTERS = ROOT / "shared" / "adapters" / "azure"


def _azure_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name == "azure" or a.name.startswith("azure.")]
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.level == 0
            and (node.module == "azure" or node.module.startswith("azure."))
        ):
            found.append(node.module)
    return found


def core_modules() -> list[Path]:
    return [p for p in (ROOT / "shared").rglob("*.py") if ADAPTERS not in p.parents]


def test_core_modules_import_no_azure_statically() -> None:
    offenders = {str(p.relative_to(ROOT)): _azure_imports(p) for p in core_modules()}
    offenders = {k: v for k, v in offenders.items() if v}
    assert offenders == {}


def test_core_modules_import_without_azure_installed() -> None:
    """Import every core module in a fresh interpreter where ``import azure`` fails."""
    names = sorted(
        m.name
        for m in pkgutil.walk_packages([str(ROOT / "shared")], prefix="shared.")
        if not m.name.startswith("shared.adapters.azure")
    )
    script = (
        "import sys, importlib\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'azure' or name.startswith('azure.'):\n"
        "            raise ImportError('azure is blocked in core')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for n in {names!r}:\n"
        "    importlib.import_module(n)\n"
        "print('ok', len(sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_adapters_exist_and_are_the_only_azure_importers() -> None:
    adapter_files = [p for p in ADAPTERS.rglob("*.py") if _azure_imports(p)]
    assert adapter_files, "expected Azure adapters under shared/adapters/azure"


def test_function_app_registers_blueprints_only() -> None:
    tree = ast.parse((ROOT / "function_app.py").read_text())
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)]
    assert defs == [], "function_app.py must only create the FunctionApp and register blueprints"
    from tie.localhost.discovery import describe

    module = importlib.import_module("function_app")
    names = {f.name for f in describe(module.app)}
    assert {"health", "ingest_http", "ingest_processor", "message_trace"} <= names
