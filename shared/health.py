"""Dependency health checks (cheap, read-only, bounded)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.errors import TieError
from shared.storage.names import CONTAINER_HEALTH, TABLE_HEALTH

if TYPE_CHECKING:
    from shared.wiring import Container

HEALTH_TABLE = TABLE_HEALTH
HEALTH_CONTAINER = CONTAINER_HEALTH


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    healthy: bool
    backend: str
    duration_ms: float
    detail: str = ""


@dataclass(frozen=True, slots=True)
class HealthReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return all(c.healthy for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "healthy" if self.healthy else "unhealthy",
            "checks": {
                c.name: {
                    "status": "healthy" if c.healthy else "unhealthy",
                    "backend": c.backend,
                    "durationMs": round(c.duration_ms, 2),
                    **({"detail": c.detail} if c.detail else {}),
                }
                for c in self.checks
            },
        }


def _run(name: str, backend: str, probe: Callable[[], object]) -> Check:
    started = time.perf_counter()
    try:
        probe()
    except (TieError, OSError, ValueError, RuntimeError) as exc:
        # Type and our own error code only: SDK messages can carry URLs and request ids.
        detail = getattr(exc, "code", None) or type(exc).__name__
        return Check(name, False, backend, (time.perf_counter() - started) * 1000, str(detail))
    return Check(name, True, backend, (time.perf_counter() - started) * 1000)


def check_all(container: Container) -> HealthReport:
    s = container.settings
    return HealthReport(
        [
            _run("messageBus", s.bus_backend.value, container.bus.topology),
            _run(
                "recordStore",
                s.storage_backend.value,
                lambda: container.records.get(HEALTH_TABLE, "probe", "probe"),
            ),
            _run("blobStore", s.storage_backend.value, lambda: container.blobs.list(HEALTH_CONTAINER)),
        ]
    )
