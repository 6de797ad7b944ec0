"""OpenTelemetry: the exporter the composition root chose (``shared.wiring.telemetry_exporter``) or none.

The core only uses the vendor-neutral OpenTelemetry API, whose default tracer is a no-op; the Azure Monitor
exporter lives in :mod:`shared.adapters.azure.monitor` (the only place that imports ``azure.*``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from shared.config.settings import Settings

_log = logging.getLogger(__name__)
_configured = False


@dataclass(frozen=True, slots=True)
class TelemetryExporter:
    """An exporter chosen by the composition root: its name (start-up log) and how to install it."""

    backend: str
    #: Installs the exporter for a service name (``OTEL_SERVICE_NAME``).
    install: Callable[[str], None]


def configure_telemetry(settings: Settings, exporter: TelemetryExporter | None) -> bool:
    """Wire OpenTelemetry once; returns True when an exporter was configured."""
    global _configured
    if _configured:
        return True
    if exporter is None:
        _log.debug("telemetry disabled: no exporter (APPLICATIONINSIGHTS_CONNECTION_STRING unset)")
        return False
    exporter.install(settings.service_name)
    _configured = True
    _log.info("telemetry configured", extra={"backend": exporter.backend})
    return True
