"""Platform events published on the bus: the implementation of ports that announce one (a band of a
certificate's expiry crossed: :class:`shared.credentials.ports.PlatformAlerts`), handed in by
``shared.wiring``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from shared.backbone import contracts
from shared.messaging.ports import MessageBus
from shared.messaging.topology import TOPIC_PLATFORM


class BusPlatformEvents:
    """Builds a ``platform-events`` notification, validates it and publishes it on ``bus``; raises the bus's
    (or the contract's) :class:`shared.errors.TieError` when it was not published."""

    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus

    def publish(
        self,
        event_type: contracts.PlatformEventType,
        *,
        event_id: str,
        subject: str,
        severity: contracts.Severity,
        correlation_id: str | None = None,
        details: Mapping[str, contracts.Scalar] | None = None,
        time: datetime | None = None,
    ) -> None:
        notice = contracts.platform_event(
            event_type,
            event_id=event_id,
            subject=subject,
            severity=severity,
            correlation_id=correlation_id,
            details=details,
            time=time,
        )
        self._bus.publish(TOPIC_PLATFORM, [contracts.to_outbound(TOPIC_PLATFORM, notice)])
