"""Custom metrics through the vendor-neutral OpenTelemetry metrics API.

:func:`shared.observability.telemetry.configure_telemetry` installs the Azure Monitor exporter (the
distro sets the global meter provider), so points recorded here land in Application Insights
``customMetrics``; without it the API's default provider is a no-op. Instrument names are declared once in
``infra/bicep/config/custom-metrics.json`` (the alert rules query them; ``tests/infra`` checks they match).

The core depends on the small :class:`Metrics` port, so tests inject a recorder instead of reading the
global provider. Dimensions are identifiers (subscriber names), never values from a message.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Protocol

from opentelemetry import metrics as otel_metrics

METER_NAME = "tie"


class Metrics(Protocol):
    def gauge(
        self, name: str, value: float, *, unit: str = "", attributes: Mapping[str, str] | None = None
    ) -> None:
        """Record the current value of ``name`` for one set of dimensions (last value wins)."""
        ...


class _GaugeInstrument(Protocol):
    """What we use of an OpenTelemetry synchronous gauge (the API exports its class as private)."""

    def set(self, amount: float, attributes: dict[str, str] | None = None) -> None: ...


class OpenTelemetryMetrics:
    """:class:`Metrics` over the global OpenTelemetry meter provider (instruments created once)."""

    def __init__(
        self, meter_name: str = METER_NAME, *, provider: otel_metrics.MeterProvider | None = None
    ) -> None:
        self._meter = otel_metrics.get_meter(meter_name, meter_provider=provider)
        self._gauges: dict[str, _GaugeInstrument] = {}
        self._lock = threading.Lock()

    def gauge(
        self, name: str, value: float, *, unit: str = "", attributes: Mapping[str, str] | None = None
    ) -> None:
        with self._lock:
            instrument = self._gauges.get(name)
            if instrument is None:
                instrument = self._gauges[name] = self._meter.create_gauge(name, unit=unit)
        instrument.set(value, attributes=dict(attributes or {}))
