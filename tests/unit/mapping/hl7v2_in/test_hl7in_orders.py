"""ORM^O01 -> ServiceRequest: numbers, status from ORC-5 / ORC-1, intent, code, requester, notes, errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.canonical import identity
from shared.canonical.model import ClinicalDateTime, Concept, EventKind
from shared.mapping.errors import MissingRequiredField, UnmappedSourceCode, UnsupportedEvent
from shared.mapping.hl7v2_in import map_bytes
from shared.terminology import systems
from tests.unit.mapping.hl7v2_in.hl7in_samples import event, orm

ORC = "ORC|NW|ORD1^EPR|||{status}||||20260301085900|||C1234567^JONES^ANNA^^^DR^^^GMC"
OBR = (
    "OBR|1|ORD1^EPR||FBC^Full blood count^EXAMPLE-TRUST-LAB||||||||||||G7654321^BROWN^TOM^^^DR^^^GMP"
    + "|" * 15
    + "^chest pain"
)


def test_new_order() -> None:
    ev = event(orm(ORC.format(status=""), "NTE|1||Fasting sample", OBR, "NTE|2||Urgent please"))
    assert ev.kind is EventKind.ORDER
    (order,) = ev.orders
    assert order.status == "active"  # ORC-1 NW via v2-0119 (ORC-5 empty)
    assert order.intent == "order"
    assert order.placer_order_number is not None
    assert (order.placer_order_number.system, order.placer_order_number.value) == (
        "urn:tie:authority:EPR",
        "ORD1",
    )
    assert order.filler_order_number is None
    assert isinstance(order.code, Concept) and order.code.coding(systems.LOINC) is not None
    assert order.authored_on == ClinicalDateTime(value=datetime(2026, 3, 1, 8, 59, tzinfo=UTC))
    assert order.requester is not None
    assert order.requester.identifiers[0].system == systems.GMC_NUMBER
    assert order.notes == ("Fasting sample", "Urgent please")
    (reason,) = order.reason
    assert reason == Concept(text="chest pain")
    assert ev.key == identity.order_key(ev.patient, order.placer_order_number, order.filler_order_number)


@pytest.mark.parametrize(("orc5", "status"), [("SC", "active"), ("CA", "revoked"), ("CM", "completed")])
def test_status_from_orc_5(orc5: str, status: str) -> None:
    (order,) = event(orm(ORC.format(status=orc5), OBR)).orders
    assert order.status == status


def test_unmapped_status_raises() -> None:
    with pytest.raises(UnmappedSourceCode) as err:
        map_bytes(orm(ORC.format(status="NW"), OBR))  # an order-control code in the order-status field
    assert (err.value.field, err.value.error_code) == ("ORC(1)-5", "103")
    assert err.value.concept_map_id == "v2-0038-to-request-status"


def test_requester_falls_back_to_obr_16_and_numbers_to_obr() -> None:
    (order,) = event(
        orm("ORC|NW", "OBR|1|P5^EPR|F5^LAB|FBC^FBC^LIMS" + "|" * 12 + "G7654321^BROWN^TOM")
    ).orders
    assert order.placer_order_number is not None and order.placer_order_number.value == "P5"
    assert order.filler_order_number is not None and order.filler_order_number.value == "F5"
    assert order.requester is not None and order.requester.identifiers[0].value == "G7654321"


def test_several_orders() -> None:
    ev = event(orm(ORC.format(status=""), OBR, "ORC|NW|ORD2^EPR", "OBR|2|ORD2^EPR||CRP^CRP^LIMS"))
    assert [o.placer_order_number.value for o in ev.orders] == ["ORD1", "ORD2"]  # type: ignore[union-attr]


def test_order_errors() -> None:
    with pytest.raises(MissingRequiredField) as err:
        map_bytes(orm(ORC.format(status="")))
    assert err.value.field == "ORC(1)"
    with pytest.raises(UnsupportedEvent) as err2:
        map_bytes(orm(ORC.format(status=""), "RXO|00047040230^Ampicillin^NDC"))
    assert err2.value.error_code == "201"
    with pytest.raises(MissingRequiredField) as err3:
        map_bytes(orm("ORC|NW", "OBR|1|||FBC^FBC^LIMS"))
    assert err3.value.field == "ORC(1)-2"
    with pytest.raises(MissingRequiredField) as err4:
        map_bytes(orm("ORC||ORD1^EPR", "OBR|1|||FBC^FBC^LIMS"))
    assert err4.value.field == "ORC(1)-1"
    with pytest.raises(MissingRequiredField) as err5:
        map_bytes(orm("ORC|NW|ORD1^EPR", "OBR|1"))
    assert err5.value.field == "OBR(1)-4"
    with pytest.raises(MissingRequiredField) as err6:
        map_bytes(orm())
    assert err6.value.field == "ORC"


@pytest.mark.parametrize(
    ("segments", "priority"),
    [
        (("TQ1|1||||||||S",), "stat"),  # TQ1-9 (v2.5+)
        (("TQ1|1||||||||T",), None),  # timing critical: not a FHIR priority, left empty
        ((), None),
    ],
)
def test_priority_from_tq1_9(segments: tuple[str, ...], priority: str | None) -> None:
    (order,) = event(orm(ORC.format(status="SC"), *segments, OBR)).orders
    assert order.priority == priority


def test_priority_from_orc_7_6_and_obr_27_6() -> None:
    orc = "ORC|NW|ORD1^EPR|||SC||^^^^^A||20260301085900"
    (order,) = event(orm(orc, OBR)).orders
    assert order.priority == "asap"
    obr = OBR.replace("|" * 15 + "^chest pain", "|" * 11 + "^^^^^R" + "|" * 4 + "^chest pain")
    (from_obr,) = event(orm(ORC.format(status="SC"), obr)).orders
    assert from_obr.priority == "routine"
