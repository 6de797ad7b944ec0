"""Event identity and content digest per event kind, from HL7 v2 (rules: ``docs/event-identity.md``).

For admission, transfer, discharge, demographics, result, order and merge alike: the key names the patient
(NHS number, else the local identifier *with its assigning authority*), the natural id is scoped by its
issuer, and the transport (MSH-7 send time, MSH-10 control id) changes neither the key nor the digest."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from shared.canonical import identity
from shared.canonical.model import ClinicalEvent, EventKind
from tests.unit.mapping.hl7v2_in.hl7in_samples import NHS, adt, event, message, msh, seg

OTHER_NHS = "9434765870"
SENT, RESENT = "20260701120000", "20260703093000"  # MSH-7 of a message and of its resend


@dataclass(frozen=True)
class Kind:
    kind: EventKind
    #: (PID-3, issuer of the natural id, MSH-7, MSH-10) -> the message
    build: Callable[[str, str, str, str], bytes]
    #: whether the event has a natural id with an issuer (demographics have only the patient)
    scoped: bool = True


def _adt(trigger: str, **pv1: str) -> Callable[[str, str, str, str], bytes]:
    def build(pid3: str, issuer: str, sent: str, control: str) -> bytes:
        fields = {int(k.removeprefix("f")): v for k, v in pv1.items()}
        return adt(
            trigger,
            pid={3: pid3},
            pv1={19: f"V0000123^^^{issuer}^VN", **fields},
            evn={2: "20260701115900", 6: "20260701115800"},
            control_id=control,
            msh_fields={"f7": sent},
        )

    return build


def _result(pid3: str, issuer: str, sent: str, control: str) -> bytes:
    return message(
        msh("ORU^R01^ORU_R01", control_id=control, when=sent, f3="LIMS", f4="LAB"),
        seg("PID", {1: "1", 3: pid3, 5: "SMITH^JOHN", 7: "19800101", 8: "M"}),
        f"ORC|RE|ORD1^EPR|LAB1^{issuer}",
        f"OBR|1|ORD1^EPR|LAB1^{issuer}|UE^Urea and electrolytes^EXAMPLE-TRUST-LAB|||20260115093000"
        + "|" * 15
        + "20260115103000|||F",
        "OBX|1|NM|NA^Sodium^EXAMPLE-TRUST-LAB||140|mmol/L|133-146|N|||F",
    )


def _order(pid3: str, issuer: str, sent: str, control: str) -> bytes:
    return message(
        msh("ORM^O01^ORM_O01", control_id=control, when=sent, f3="EPR", f4="RRV"),
        seg("PID", {1: "1", 3: pid3, 5: "SMITH^JOHN", 7: "19800101", 8: "M"}),
        f"ORC|NW|ORD1^{issuer}|||||||20260301085900",
        f"OBR|1|ORD1^{issuer}||FBC^Full blood count^EXAMPLE-TRUST-LAB",
    )


def _merge(pid3: str, issuer: str, sent: str, control: str) -> bytes:
    return message(
        msh("ADT^A40^ADT_A39", control_id=control, when=sent),
        seg("EVN", {1: "A40", 2: "20260701115900"}),
        seg("PID", {1: "1", 3: pid3, 5: "SMITH^JOHN"}),
        seg("MRG", {1: f"RRV7654321^^^{issuer}^MR"}),
    )


def _demographics(pid3: str, _issuer: str, sent: str, control: str) -> bytes:
    return adt("A31", pid={3: pid3}, evn={2: "20260701115900"}, control_id=control, msh_fields={"f7": sent})


KINDS = {
    "admission": Kind(EventKind.ADMISSION, _adt("A01")),
    "transfer": Kind(EventKind.TRANSFER, _adt("A02", f6="WARD9^BAY1^BED1^RRV")),
    "discharge": Kind(EventKind.DISCHARGE, _adt("A03", f45="20260702100000")),
    "cancel transfer": Kind(EventKind.CANCEL_TRANSFER, _adt("A12", f6="WARD9^BAY1^BED1^RRV")),
    "demographics": Kind(EventKind.PATIENT_UPDATED, _demographics, scoped=False),
    "result": Kind(EventKind.RESULT, _result),
    "order": Kind(EventKind.ORDER, _order),
    "merge": Kind(EventKind.PATIENT_MERGE, _merge),
}

WITH_NHS = f"{NHS}^^^NHS^NH~H1^^^RRV^MR"


def _event(
    k: Kind, pid3: str = WITH_NHS, issuer: str = "RRV", sent: str = SENT, control: str = "C1"
) -> ClinicalEvent:
    ev = event(k.build(pid3, issuer, sent, control))
    assert ev.kind is k.kind
    return ev


@pytest.mark.parametrize("name", list(KINDS))
def test_the_key_names_the_patient_first(name: str) -> None:
    k = KINDS[name]
    assert _event(k).key.components[:2] == (k.kind.value, f"nhs|{NHS}")
    local = _event(k, pid3="H1^^^RRV^MR")  # no NHS number: the local identifier with its authority
    assert local.key.components[1] == "urn:tie:authority:RRV|H1"


@pytest.mark.parametrize("name", list(KINDS))
def test_another_patient_is_another_event(name: str) -> None:
    k = KINDS[name]
    first = _event(k)
    assert _event(k, pid3=f"{OTHER_NHS}^^^NHS^NH~H1^^^RRV^MR").key != first.key
    # The same local number from another assigning authority is another patient.
    assert _event(k, pid3="H1^^^RRV^MR").key != _event(k, pid3="H1^^^RX9^MR").key


@pytest.mark.parametrize("name", [n for n, k in KINDS.items() if k.scoped])
def test_the_natural_id_is_scoped_by_its_issuer(name: str) -> None:
    k = KINDS[name]
    assert _event(k, issuer="RRV").key != _event(k, issuer="RX9").key


@pytest.mark.parametrize("name", list(KINDS))
def test_send_time_and_control_id_change_neither_key_nor_digest(name: str) -> None:
    k = KINDS[name]
    first = _event(k)
    resent = _event(k, sent=RESENT, control="C2")
    assert resent.provenance.message_id != first.provenance.message_id
    assert resent.key == first.key
    assert identity.event_digest(resent) == identity.event_digest(first)


def test_a_cancel_transfer_is_keyed_like_the_transfer_it_cancels() -> None:
    """A12: patient, visit (scoped by its issuer) and the time of the transfer it cancels - EVN-6, else
    EVN-2, as the transfer's own key took it; ``cancels`` is that transfer's key."""
    k = KINDS["cancel transfer"]
    transfer = _event(KINDS["transfer"])
    cancel = _event(k)
    assert cancel.key.components[2:] == transfer.key.components[2:]
    assert cancel.key.components[-1] == "2026-07-01T10:58:00Z"  # EVN-6 (BST), to the second, UTC
    assert cancel.cancels == transfer.key
    assert cancel.key != transfer.key
    # Without EVN-6 both take EVN-2: the A12 still names the A02.
    visit = {19: "V0000123^^^RRV^VN", 6: "WARD9^BAY1^BED1^RRV"}
    a02 = event(adt("A02", evn={2: "20260701115900"}, pv1=visit))
    a12 = event(adt("A12", evn={2: "20260701115900"}, pv1=visit, control_id="C9"))
    assert a12.cancels == a02.key and a02.key.components[-1] == "2026-07-01T10:59:00Z"
    # A transfer at another time is another transfer.
    other = event(adt("A12", evn={2: "20260701115900", 6: "20260701090000"}, pv1={19: "V0000123^^^RRV^VN"}))
    assert other.cancels != transfer.key
