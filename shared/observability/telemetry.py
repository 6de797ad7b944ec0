"""OpenTelemetry: Azure Monitor when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set, else a no-op.

The exporter lives in :mod:`shared.adapters.azure.monitor` (the only place that imports ``azure.*``); the
core only uses the vendor-neutral OpenTelemetry API, whose default tracer is a no-op.
"""

from __future__ import annotations

import logging

from shared.config.settings import Settings

_log = logging.getLogger(__name__)
_configured = False


def configure_telemetry(settings: Settings) -> bool:
    """Wire OpenTelemetry once; returns True when an exporter was configured."""
    global _configured
    if _configured:
        return True
    if not settings.applicationinsights_connection_string:
        _log.debug("telemetry disabled: no APPLICATIONINSIGHTS_CONNECTION_STRING")
        return False
    from shared.adapters.azure.monitor import configure_azure_monitor_exporter

    configure_azure_monitor_exporter(
        settings.applicationinsights_connection_string, service_name=settings.service_name
    )
    _configured = True
    _log.info("telemetry configured", extra={"backend": "azure-monitor"})
    return True
