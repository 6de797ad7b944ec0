"""The platform's topics and subscriptions, declared once.

Everything that names a topic or subscription (trigger decorators, publishers, the embedded bus, the
Bicep templates' consistency tests) reads it from here. Filters use the Service Bus SQL filter subset
supported by :mod:`shared.messaging.filters` over application properties (and ``sys.Label`` /
``sys.ContentType`` / ``sys.CorrelationId``), or ``None`` for "all messages" (the ``$Default`` TrueFilter).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

# Topic names -----------------------------------------------------------------------------------------
#: Raw inbound messages accepted at the edge (HTTP / MLLP), stored before acknowledgement.
TOPIC_INGEST = "tie-ingest"
#: Canonical clinical events (admission, result, order, ...), keyed by clinical-event identity.
TOPIC_CLINICAL = "clinical-events"
#: Operational events (acks, write-back outcomes, reconciliation variances).
TOPIC_OPERATIONAL = "operational-events"
#: Platform events (dead-letters, certificate expiry, health) for alerting.
TOPIC_PLATFORM = "platform-events"

# Subscription names ----------------------------------------------------------------------------------
SUB_INGEST_PROCESSOR = "ingest-processor"
SUB_CLINICAL_AUDIT = "clinical-audit"
SUB_OPERATIONAL_AUDIT = "operational-audit"
SUB_PLATFORM_AUDIT = "platform-audit"
#: Write-back subscribers on clinical-events (shared/backbone, functions/events.py): one per downstream.
#: Sessions on (session id = hashed patient key): one patient's events are written back in order.
SUB_WRITEBACK_FHIR = "writeback-fhir"
SUB_WRITEBACK_HL7V2 = "writeback-hl7v2"
WRITEBACK_SUBSCRIPTIONS: tuple[str, ...] = (SUB_WRITEBACK_FHIR, SUB_WRITEBACK_HL7V2)

#: Name of the app setting (connection prefix) every Service Bus trigger uses.
SERVICE_BUS_CONNECTION = "ServiceBusConnection"


@dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    name: str
    filter: str | None = None
    max_delivery_count: int = 5
    lock_duration: timedelta = timedelta(seconds=60)
    requires_session: bool = False
    default_ttl: timedelta = timedelta(days=14)
    dead_letter_on_expiry: bool = True


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    subscriptions: tuple[SubscriptionSpec, ...]
    duplicate_detection_window: timedelta | None = timedelta(minutes=10)
    #: Largest body the platform publishes to the topic (larger bodies go by reference); fits every tier.
    max_message_bytes: int = 256 * 1024


#: Service Bus tier -> (smallest, largest) topic ``maxMessageSizeInKilobytes`` the tier accepts. Standard is
#: fixed at 256 KB; Premium accepts 1024-102400 KB and refuses anything smaller.
TIER_MESSAGE_SIZE_KB: dict[str, tuple[int, int]] = {"Standard": (256, 256), "Premium": (1024, 102_400)}


def max_message_size_kb(spec: TopicSpec, tier: str) -> int:
    """``maxMessageSizeInKilobytes`` of ``spec`` on ``tier``: its own limit, raised to the tier's floor.

    Raises :class:`ValueError` for an unknown tier or a topic limit the tier cannot carry.
    """
    if tier not in TIER_MESSAGE_SIZE_KB:
        raise ValueError(f"unknown Service Bus tier {tier!r}")
    floor, ceiling = TIER_MESSAGE_SIZE_KB[tier]
    needed = -(-spec.max_message_bytes // 1024)
    if needed > ceiling:
        raise ValueError(f"topic {spec.name}: {needed} KB exceeds the {tier} limit of {ceiling} KB")
    return max(floor, needed)


TOPOLOGY: tuple[TopicSpec, ...] = (
    TopicSpec(TOPIC_INGEST, (SubscriptionSpec(SUB_INGEST_PROCESSOR),)),
    TopicSpec(
        TOPIC_CLINICAL,
        (
            SubscriptionSpec(SUB_CLINICAL_AUDIT),
            SubscriptionSpec(SUB_WRITEBACK_FHIR, max_delivery_count=10, requires_session=True),
            SubscriptionSpec(SUB_WRITEBACK_HL7V2, max_delivery_count=10, requires_session=True),
        ),
    ),
    TopicSpec(TOPIC_OPERATIONAL, (SubscriptionSpec(SUB_OPERATIONAL_AUDIT),)),
    TopicSpec(TOPIC_PLATFORM, (SubscriptionSpec(SUB_PLATFORM_AUDIT),)),
)


def topic_spec(name: str, topology: tuple[TopicSpec, ...] = TOPOLOGY) -> TopicSpec:
    for spec in topology:
        if spec.name == name:
            return spec
    raise KeyError(name)
