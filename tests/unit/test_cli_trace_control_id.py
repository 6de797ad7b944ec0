"""``tie trace --control-id SENDER:ID``: a message found by its sender (MSH-3, MSH-3/MSH-4) and MSH-10,
through what the HL7 v2 ingest remembers per control ID; several senders with one ID are listed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.ingest.control_ids import find_by_control_id
from shared.ingest.hl7v2 import Hl7Ingest
from tests.helpers import REPO_ROOT
from tie import cli

SAMPLE = (REPO_ROOT / "samples" / "adt-a01.hl7").read_bytes().replace(b"\n", b"\r")
FROM_RGT02 = SAMPLE.replace(b"|PAS|RGT01|TIE|", b"|PAS|RGT02|TIE|", 1)
BAD_NHS = SAMPLE.replace(b"9434765919^^^NHS", b"9434765918^^^NHS", 1)  # check digit wrong: AE


@pytest.fixture
def ingest(container: Any) -> Hl7Ingest:
    return Hl7Ingest(container.bus, container.records)


def _out(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().out


def test_one_match_prints_the_same_as_trace_by_correlation_id(
    ingest: Hl7Ingest, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ingest.handle(SAMPLE, source="test", correlation_id="corr-rgt01").code == "AA"
    assert cli.main(["trace", "corr-rgt01"]) == 0
    by_correlation = _out(capsys)
    assert "acknowledged" in by_correlation
    for sender in ("PAS", "PAS/RGT01", "PAS|RGT01"):
        assert cli.main(["trace", "--control-id", f"{sender}:SAMPLE0001"]) == 0
        assert _out(capsys) == by_correlation
    assert cli.main(["trace", "--control-id", "PAS:SAMPLE0001", "--json"]) == 0
    assert json.loads(_out(capsys))["correlationId"] == "corr-rgt01"


def test_several_matches_are_listed_with_their_trace_commands(
    ingest: Hl7Ingest, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ingest.handle(SAMPLE, source="test", correlation_id="corr-rgt01").code == "AA"
    assert ingest.handle(FROM_RGT02, source="test", correlation_id="corr-rgt02").code == "AA"
    assert cli.main(["trace", "--control-id", "PAS:SAMPLE0001"]) == 0
    lines = _out(capsys).splitlines()
    assert lines[0] == "2 messages have control id SAMPLE0001; trace one:"
    assert [(line.split()[0], line.split()[1], line.split()[-1]) for line in lines[1:]] == [
        ("PAS/RGT01", "AA", "corr-rgt01"),
        ("PAS/RGT02", "AA", "corr-rgt02"),
    ]
    assert all("tie trace corr-rgt0" in line for line in lines[1:])
    assert cli.main(["trace", "--control-id", "PAS:SAMPLE0001", "--json"]) == 0
    rows = json.loads(_out(capsys))
    assert [(r["sendingFacility"], r["correlationId"]) for r in rows] == [
        ("RGT01", "corr-rgt01"),
        ("RGT02", "corr-rgt02"),
    ]
    # The facility narrows it to one.
    assert cli.main(["trace", "--control-id", "PAS/RGT02:SAMPLE0001"]) == 0
    assert "acknowledged" in _out(capsys)


def test_a_rejected_message_is_found_too(ingest: Hl7Ingest, container: Any) -> None:
    assert ingest.handle(BAD_NHS, source="test", correlation_id="corr-bad").code == "AE"
    [match] = find_by_control_id(container.records, "PAS", "SAMPLE0001", facility="RGT01")
    assert (match.correlation_id, match.code, match.outcome) == ("corr-bad", "AE", "content-error")


@pytest.mark.parametrize(
    ("argv", "status", "stderr"),
    [
        (["trace", "--control-id", "PAS:NOSUCH"], 1, "no message from PAS with control id NOSUCH\n"),
        (
            ["trace", "--control-id", "LAB/RGT01:SAMPLE0001"],
            1,
            "no message from LAB/RGT01 with control id SAMPLE0001\n",
        ),
        (["trace", "--control-id", "PA:SAMPLE0001"], 1, "no message from PA with control id SAMPLE0001\n"),
        (["trace"], 2, "tie trace: give a correlation id or --control-id SENDER:ID (one of them)\n"),
        (
            ["trace", "corr-rgt01", "--control-id", "PAS:SAMPLE0001"],
            2,
            "tie trace: give a correlation id or --control-id SENDER:ID (one of them)\n",
        ),
    ],
)
def test_no_match_and_misuse(
    ingest: Hl7Ingest, capsys: pytest.CaptureFixture[str], argv: list[str], status: int, stderr: str
) -> None:
    assert ingest.handle(SAMPLE, source="test", correlation_id="corr-rgt01").code == "AA"
    assert cli.main(argv) == status
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", stderr)


@pytest.mark.parametrize("value", ["PAS", "PAS:", ":SAMPLE0001", "/RGT01:X"])
def test_a_malformed_control_id_argument_is_a_usage_error(value: str) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["trace", "--control-id", value])
    assert exited.value.code == 2
