"""Operator commands that reveal or change message bodies are audited before they act: ``tie bus peek
--body``, ``tie dlq show --body``, ``tie dlq replay``, ``tie dlq purge``; without ``--body`` nothing is."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.messaging.ports import OutboundMessage
from shared.messaging.topology import SUB_INGEST_PROCESSOR, TOPIC_INGEST
from shared.wiring import get_container
from tie.cli import main


def _records() -> list[dict[str, Any]]:
    out = []
    for entry in get_container().audit.log.entries():
        record = json.loads(entry.body)
        out.append(
            {k: record[k] for k in ("category", "action", "interaction", "correlation_id", "entities")}
        )
        out[-1]["detail"] = record.get("detail", {})
    return out


def test_peek_with_body_is_audited_and_without_body_is_not(capsys: pytest.CaptureFixture[str]) -> None:
    get_container().bus.publish(
        TOPIC_INGEST,
        [OutboundMessage(body=b"MSH|secret", message_id="m-1", correlation_id="corr-1")],
    )
    assert main(["bus", "peek", TOPIC_INGEST, SUB_INGEST_PROCESSOR]) == 0
    assert _records() == []
    assert main(["bus", "peek", TOPIC_INGEST, SUB_INGEST_PROCESSOR, "--body"]) == 0
    assert "MSH|secret" in capsys.readouterr().out
    assert _records() == [
        {
            "category": "operator",
            "action": "R",
            "interaction": "bus-peek-body",
            "correlation_id": "corr-1",
            "entities": [{"type": "Message", "id": "m-1"}],
            "detail": {"topic": TOPIC_INGEST},
        }
    ]


def test_replay_and_purge_are_audited(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dlq", "replay", TOPIC_INGEST, SUB_INGEST_PROCESSOR]) == 0
    assert main(["dlq", "purge", "--older-than", "7d"]) == 0
    assert [(r["action"], r["interaction"], r["detail"]) for r in _records()] == [
        ("E", "dlq-replay", {"topic": TOPIC_INGEST, "replayed": 0}),
        ("D", "dlq-purge", {"purged": 0}),
    ]
