"""Load ``local.settings.json`` (the Core Tools format) into the environment, as ``func start`` does."""

from __future__ import annotations

import json
import os
from pathlib import Path


def load_local_settings(path: Path | str = "local.settings.json") -> list[str]:
    """Copy ``Values`` into ``os.environ`` without overriding what is already set; returns names loaded."""
    p = Path(path)
    if not p.exists():
        return []
    doc = json.loads(p.read_text(encoding="utf-8"))
    loaded = []
    for name, value in (doc.get("Values") or {}).items():
        if name not in os.environ and value is not None:
            os.environ[name] = str(value)
            loaded.append(name)
    return loaded
