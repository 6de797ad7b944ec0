"""The event time is not clinical content (``docs/event-identity.md``): neither EVN-2 (the record time,
which a resend regenerates, and the event time when there is no EVN-6) nor a stated EVN-6 feeds the
content digest. The clinically meaningful times do: PV1-44 / PV1-45 (admit / discharge) are content."""

from __future__ import annotations

import pytest

from shared.canonical import identity
from tests.unit.mapping.hl7v2_in.hl7in_samples import adt, event

FIRST, RESENT = "20260701120000", "20260702090000"

#: (case, trigger, EVN / PV1 of the first message, of the second, same digest)
CASES = [
    ("EVN-2 only, resent with a new EVN-2", "A01", {}, {"evn2": RESENT}, True),
    ("EVN-2 only, patient registered, resent", "A28", {}, {"evn2": RESENT}, True),
    (
        "EVN-2 only, discharge resent",
        "A03",
        {"pv45": "20260701130000"},
        {"pv45": "20260701130000", "evn2": RESENT},
        True,
    ),
    (
        "EVN-6 stated, only EVN-2 differs",
        "A01",
        {"evn6": "20260701115000"},
        {"evn6": "20260701115000", "evn2": RESENT},
        True,
    ),
    ("EVN-6 = EVN-2, resent with a new EVN-2", "A01", {"evn6": FIRST}, {"evn6": FIRST, "evn2": RESENT}, True),
    (
        "EVN-6 stated, a different EVN-6 alone",
        "A01",
        {"evn6": "20260701115000"},
        {"evn6": "20260701114000"},
        True,
    ),
    (
        "EVN-6 stated, a different admit time (PV1-44)",
        "A01",
        {"evn6": FIRST},
        {"evn6": FIRST, "pv44": FIRST},
        False,
    ),
    ("EVN-2 only, a different admit time (PV1-44)", "A01", {}, {"pv44": "20260701114500"}, False),
]


def _message(trigger: str, control: str, spec: dict[str, str]) -> bytes:
    recorded = spec.get("evn2", FIRST)
    evn = {6: spec["evn6"]} if "evn6" in spec else {}
    pv1 = {k: spec[f"pv{k}"] for k in (44, 45) if f"pv{k}" in spec}
    return adt(trigger, evn={2: recorded, **evn}, pv1=pv1, control_id=control, when=recorded)


@pytest.mark.parametrize(("case", "trigger", "first", "second", "same"), CASES, ids=[c[0] for c in CASES])
def test_a_record_time_is_not_content(
    case: str, trigger: str, first: dict[str, str], second: dict[str, str], same: bool
) -> None:
    one = event(_message(trigger, "C1", first))
    two = event(_message(trigger, "C2", second))
    assert two.key == one.key, case
    assert (identity.event_digest(two) == identity.event_digest(one)) is same, case
