"""Rules that make the templates deploy (issue 13, findings 1-4), checked on the parse tree.

Each test encodes one rule that Azure Resource Manager would otherwise enforce only at deployment time; the
ARM engine itself cannot run here (infra/README.md, "What the tests cannot prove").
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.messaging.topology import TIER_MESSAGE_SIZE_KB, TOPOLOGY, TopicSpec, max_message_size_kb
from tests.infra import bicep_ast as b

CONFIG = b.BICEP_DIR / "config"


def _json(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CONFIG / name).read_text())
    return data


# -- 1. Service Bus topic size by tier --


def test_topic_message_size_is_within_the_range_of_every_tier() -> None:
    """Premium refuses maxMessageSizeInKilobytes below 1024 (or above 102400); Standard is fixed at 256."""
    assert TIER_MESSAGE_SIZE_KB == {"Standard": (256, 256), "Premium": (1024, 102_400)}
    topics = _json("topology.json")["topics"]
    assert [t["name"] for t in topics] == [t.name for t in TOPOLOGY]
    for topic in topics:
        sizes = topic["maxMessageSizeInKilobytes"]
        assert set(sizes) == set(TIER_MESSAGE_SIZE_KB), topic["name"]
        for tier, (low, high) in TIER_MESSAGE_SIZE_KB.items():
            assert low <= sizes[tier] <= high, (topic["name"], tier, sizes[tier])


@pytest.mark.parametrize(
    ("max_bytes", "tier", "expected"),
    [
        (256 * 1024, "Standard", 256),
        (256 * 1024, "Premium", 1024),
        (2 * 1024 * 1024, "Premium", 2048),
        (2 * 1024 * 1024, "Standard", ValueError),
        (1024, "Basic", ValueError),
    ],
)
def test_max_message_size_kb(max_bytes: int, tier: str, expected: int | type[Exception]) -> None:
    spec = TopicSpec("t", (), max_message_bytes=max_bytes)
    if isinstance(expected, int):
        assert max_message_size_kb(spec, tier) == expected
    else:
        with pytest.raises(expected):
            max_message_size_kb(spec, tier)


def test_topic_module_sets_the_size_of_the_namespace_tier() -> None:
    module = b.load(b.MODULES / "servicebus-topic.bicep")
    assert module.params()["tier"].allowed() == ["Standard", "Premium"]
    (topic,) = module.resources("Microsoft.ServiceBus/namespaces/topics")
    sizes = [b.text(v) for _, v in b.object_properties_named(topic.body, "maxMessageSizeInKilobytes")]  # type: ignore[arg-type]
    assert sizes == ["topic.maxMessageSizeInKilobytes[tier]"]
    (call,) = [
        m for m in b.load(b.MODULES / "servicebus.bicep").modules() if m.target == "servicebus-topic.bicep"
    ]
    assert b.text(call.get("params.tier")) == "sku"
