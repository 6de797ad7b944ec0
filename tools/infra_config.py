"""Generate the JSON files the Bicep templates load with ``loadJsonContent()`` from the code's declarations.

The templates never spell a topic, subscription, table or container name themselves: they read
``infra/bicep/config/topology.json`` and ``infra/bicep/config/storage.json``, which this script renders from
:data:`shared.messaging.topology.TOPOLOGY` and :mod:`shared.storage.names`. ``tests/infra`` re-renders them
and fails when the checked-in files differ, so a renamed topic cannot reach Azure without the templates.

Usage::

    python tools/infra_config.py          # rewrite the files
    python tools/infra_config.py --check  # exit 1 (and say which file) if a file is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shared.adapters.azure.servicebus import replay_aware_filter  # noqa: E402
from shared.messaging.topology import (  # noqa: E402
    TIER_MESSAGE_SIZE_KB,
    TOPOLOGY,
    SubscriptionSpec,
    TopicSpec,
    max_message_size_kb,
)
from shared.storage import names  # noqa: E402

CONFIG_DIR = ROOT / "infra" / "bicep" / "config"
TOPOLOGY_JSON = CONFIG_DIR / "topology.json"
STORAGE_JSON = CONFIG_DIR / "storage.json"

#: Service Bus replaces a subscription's default rule when a rule of this name is declared: declaring our
#: SQL filter under it removes the implicit TrueFilter that would admit every replay to every subscription.
DEFAULT_RULE_NAME = "$Default"

#: Subscriptions the code declares that nothing in Azure consumes yet (no trigger receives from them). They
#: are left out of the templates: a subscription without a consumer fills up, its messages expire into the
#: dead-letter queue after the default TTL and the Sev1 sb-dead-letters alert fires for good. The local bus
#: keeps them (tests and tie dlq read them). Remove an entry in the change that adds its consumer; tests/infra
#: checks that the provisioned subscriptions are exactly the ones a registered trigger receives from.
#: (Empty since the audit subscriptions got their consumer, functions/audit_consumer.py.)
NOT_PROVISIONED_SUBSCRIPTIONS: dict[str, str] = {}

#: Containers the platform needs that application code does not (yet) name in ``shared/storage/names.py``.
#: ``immutabilityDays`` > 0 makes the container WORM (time-based retention policy). A name that later
#: appears in ``names.CONTAINERS`` must be removed from here (the infra tests say so).
INFRA_CONTAINERS: tuple[dict[str, Any], ...] = (
    {
        "name": "messages",
        "purpose": "message bodies stored by reference (claim check) for messages too large for the bus",
        "immutabilityDays": 0,
    },
    {
        "name": "audit",
        "purpose": "audit records: write once, read many, time-based retention (NHS records retention)",
        "immutabilityDays": 2922,
    },
)


def iso_duration(value: timedelta) -> str:
    """ISO 8601 duration as Service Bus expects it (``PT1M``, ``P14D``, ``P1DT2H``); whole seconds only."""
    total = int(value.total_seconds())
    if total <= 0 or total != value.total_seconds():
        raise ValueError(f"durations must be a positive whole number of seconds, got {value!r}")
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    out = "P" + (f"{days}D" if days else "")
    clock = (
        (f"{hours}H" if hours else "")
        + (f"{minutes}M" if minutes else "")
        + (f"{seconds}S" if seconds else "")
    )
    return out + ("T" + clock if clock else "")


def _subscription(sub: SubscriptionSpec) -> dict[str, Any]:
    return {
        "name": sub.name,
        "maxDeliveryCount": sub.max_delivery_count,
        "lockDuration": iso_duration(sub.lock_duration),
        "requiresSession": sub.requires_session,
        "defaultMessageTimeToLive": iso_duration(sub.default_ttl),
        "deadLetteringOnMessageExpiration": sub.dead_letter_on_expiry,
        "deadLetteringOnFilterEvaluationExceptions": True,
        "rule": {"name": DEFAULT_RULE_NAME, "sqlExpression": replay_aware_filter(sub.name, sub.filter)},
    }


def _topic(topic: TopicSpec) -> dict[str, Any]:
    window = topic.duplicate_detection_window
    return {
        "name": topic.name,
        "requiresDuplicateDetection": window is not None,
        # Service Bus needs a window even when detection is off; the value is then ignored.
        "duplicateDetectionHistoryTimeWindow": iso_duration(window or timedelta(minutes=10)),
        # By Service Bus tier (servicebus-topic.bicep picks the namespace's): Premium refuses less than 1024.
        "maxMessageSizeInKilobytes": {
            tier: max_message_size_kb(topic, tier) for tier in TIER_MESSAGE_SIZE_KB
        },
        "subscriptions": [
            _subscription(s) for s in topic.subscriptions if s.name not in NOT_PROVISIONED_SUBSCRIPTIONS
        ],
        "notProvisioned": [
            {"name": s.name, "reason": NOT_PROVISIONED_SUBSCRIPTIONS[s.name]}
            for s in topic.subscriptions
            if s.name in NOT_PROVISIONED_SUBSCRIPTIONS
        ],
    }


def render_topology() -> dict[str, Any]:
    return {
        "$comment": "GENERATED by tools/infra_config.py from shared/messaging/topology.py - do not edit",
        "topics": [_topic(t) for t in TOPOLOGY],
    }


def render_storage() -> dict[str, Any]:
    return {
        "$comment": "GENERATED by tools/infra_config.py from shared/storage/names.py - do not edit",
        "tables": sorted(names.TABLES),
        "containers": sorted(names.CONTAINERS),
        "infraContainers": [dict(c) for c in INFRA_CONTAINERS],
    }


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=False) + "\n"


def outputs() -> dict[Path, str]:
    return {TOPOLOGY_JSON: dumps(render_topology()), STORAGE_JSON: dumps(render_storage())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a generated file is stale")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path.relative_to(ROOT))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print("stale (run python tools/infra_config.py): " + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
