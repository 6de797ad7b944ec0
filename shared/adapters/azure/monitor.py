"""Azure Monitor (Application Insights) exporter via the azure-monitor-opentelemetry distro."""

from __future__ import annotations


def configure_azure_monitor_exporter(connection_string: str, *, service_name: str) -> None:
    from azure.monitor.opentelemetry import configure_azure_monitor
    from opentelemetry.sdk.resources import Resource

    configure_azure_monitor(
        connection_string=connection_string,
        resource=Resource.create({"service.name": service_name}),
        # Logs go through our redacting handler; the distro's handler must not bypass it.
        logger_name="tie",
    )
