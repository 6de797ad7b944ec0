"""OBR-14 (specimen received) beside SPM-18 in v2.5/2.6 - senders fill both, a receiver may read either;
withdrawn in v2.7; before v2.5 the one specimen's received time is OBR-14 alone (no SPM)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.canonical.model import EventKind, Specimen
from shared.hl7v2 import parse_message
from shared.mapping.hl7v2_out import to_oru_r01
from tests.unit.mapping.hl7v2_out.hl7out_helpers import HEADER, event, report, t

RECEIVED = t(2026, 1, 15, 10, 5)


@pytest.mark.parametrize(
    ("version", "obr14", "spm18"),
    [
        ("2.4", "20260115100500+0000", None),
        ("2.5.1", "20260115100500+0000", "20260115100500+0000"),
        ("2.6", "20260115100500+0000", "20260115100500+0000"),
        ("2.7", None, "20260115100500+0000"),
    ],
)
def test_specimen_received_time(version: str, obr14: str | None, spm18: str | None) -> None:
    sp = Specimen(received=RECEIVED, collected=t(2026, 1, 15, 9, 30))
    ev = event(EventKind.RESULT, reports=(report(specimens=(sp,)),))
    msg = parse_message(to_oru_r01(ev, replace(HEADER, version=version)).encode())
    assert (msg.get("OBR-14"), msg.get("SPM-18")) == (obr14, spm18)


def test_two_specimens_leave_obr14_to_their_spm_segments() -> None:
    two = (Specimen(received=RECEIVED), Specimen(received=t(2026, 1, 15, 10, 6)))
    ev = event(EventKind.RESULT, reports=(report(specimens=two),))
    msg = parse_message(to_oru_r01(ev, HEADER).encode())
    assert msg.get("OBR-14") is None
    assert [s.get(18) for s in msg.segments_named("SPM")] == ["20260115100500+0000", "20260115100600+0000"]
