"""The identity gate before write-back: verified enrichment, restricted data, the review queue."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.embedded.pds_stub import PdsStub, StubTransport
from shared.adapters.embedded.sqlite_blobs import SqliteBlobStore
from shared.adapters.embedded.sqlite_records import SqliteRecordStore
from shared.backbone import clinical
from shared.backbone.writeback import DownstreamResponse
from shared.canonical.model import ClinicalEvent, Sensitivity
from shared.hl7v2.parser import parse_message
from shared.journal import Journal
from shared.mapping.hl7v2_in import map_message
from shared.messaging.ports import REPLAY_SUBSCRIPTION_PROPERTY, OutboundMessage
from shared.pds.auth import NoToken
from shared.pds.cache import PdsCache
from shared.pds.client import PdsFhirClient
from shared.pds.errors import PdsRejected, PdsUnavailable
from shared.pds.gate import IdentityGate
from shared.pds.model import PdsPatient, SearchResult
from shared.pds.review import ReviewQueue
from shared.pds.trace import IdentityResolver

SECRET_LINE = "7 CONFIDENTIAL CLOSE"
SECRET_POSTCODE = "LS2 9ZZ"


def adt(pid: str, trigger: str = "A01", control: str = "CTRL1") -> ClinicalEvent:
    raw = (
        f"MSH|^~\\&|PAS|RGT01|TIE|RGT01|20260315103000||ADT^{trigger}^ADT_{trigger}|{control}|P|2.5.1\r"
        f"EVN|{trigger}|20260315102900\r"
        f"{pid}\r"
        "PV1|1|I|WARD1^BED2^^RGT01||||C1234567^CONSULTANT^ANNA|||MED||||1|||C1234567^CONSULTANT^ANNA|IP|"
        "V000123|||||||||||||||||||||||||20260315102900\r"
    )
    return map_message(parse_message(raw), correlation_id=f"corr-{control}").value


def pid(name: str, dob: str, sex: str, nhs: str = "", status: str = "") -> str:
    ident = f"{nhs}^^^NHS^NH~H123456^^^RGT01^MR" if nhs else "H123456^^^RGT01^MR"
    pid32 = f"|{status}" if status else ""
    line = f"PID|1||{ident}||{name}||{dob}|{sex}|||{SECRET_LINE}^^LEEDS^^{SECRET_POSTCODE}^GBR||01130000000"
    if pid32:
        line += "|" * (32 - 13) + "NSTS" + status
    return line


class Recorder:
    name = "fhir"

    def __init__(self) -> None:
        self.applied: list[ClinicalEvent] = []

    def skip_reason(self, event: ClinicalEvent) -> str | None:
        return None

    def apply(self, event: ClinicalEvent) -> DownstreamResponse:
        self.applied.append(event)
        return DownstreamResponse("201", "created")

    def close(self) -> None:
        return None


class Stores:
    def __init__(self, tmp: Path) -> None:
        self.records = SqliteRecordStore(tmp / "records.sqlite3")
        self.blobs = SqliteBlobStore(tmp / "blobs")
        self.journal = Journal(self.records)
        self.review = ReviewQueue(self.records, self.blobs)


@pytest.fixture
def stores(tmp_path: Path) -> Any:
    s = Stores(tmp_path)
    yield s
    s.records.close()
    s.blobs.close()


def gate(stub_or_client: Any, stores: Stores) -> tuple[IdentityGate, Recorder]:
    client = (
        PdsFhirClient(StubTransport(stub_or_client), NoToken(), sleep=lambda _: None)
        if isinstance(stub_or_client, PdsStub)
        else stub_or_client
    )
    inner = Recorder()
    resolver = IdentityResolver(client, PdsCache(300))
    return IdentityGate(inner, resolver, stores.review, stores.journal, subscription="writeback-fhir"), inner


def run(g: IdentityGate, event: ClinicalEvent) -> str | None:
    reason = g.skip_reason(event)
    if reason is None:
        g.apply(event)
    return reason


def test_unverified_admission_is_written_back_verified(stub: PdsStub, stores: Stores) -> None:
    g, inner = gate(stub, stores)
    event = adt(pid("SMITH^JANE", "20101022", "F"))
    assert event.patient.nhs_number is None
    assert run(g, event) is None
    (written,) = inner.applied
    assert written.patient.nhs_number is not None
    assert (written.patient.nhs_number.value, written.patient.nhs_number.verification_status) == (
        "9000000009",
        "01",
    )
    stages = {e.stage: e.attributes for e in stores.journal.trace("corr-CTRL1")}
    assert stages["identity-verified"]["source"] == "pds"
    assert stages["identity-verified"]["step"] == "fuzzy"


def test_superseded_number_is_replaced_by_the_current_one(stub: PdsStub, stores: Stores) -> None:
    g, inner = gate(stub, stores)
    assert run(g, adt(pid("SMITH^JANE", "20101022", "F", nhs="9000000017"))) is None
    assert inner.applied[0].patient.nhs_number.value == "9000000009"  # type: ignore[union-attr]
    stages = {e.stage: e.attributes for e in stores.journal.trace("corr-CTRL1")}
    assert stages["identity-verified"]["superseded"] is True


def test_restricted_patient_address_never_reaches_a_downstream_or_a_log(
    stub: PdsStub, stores: Stores, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    g, inner = gate(stub, stores)
    event = adt(pid("SMYTHE^JANET", "20050616", "F"))
    assert event.patient.addresses  # the source sent one
    assert run(g, event) is None
    (written,) = inner.applied
    assert written.patient.sensitivity is Sensitivity.RESTRICTED
    assert written.patient.addresses == () and written.patient.telecom == ()
    body = clinical.to_message(written).body.decode()
    assert SECRET_LINE not in body and SECRET_POSTCODE not in body
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert SECRET_LINE not in logged and SECRET_POSTCODE not in logged and "9000000025" not in logged


@pytest.mark.parametrize(
    ("name", "dob", "sex", "reason"),
    [
        ("MCMATCH-MULTIPLE^BOB", "19970820", "M", "multiple-matches"),
        ("JONES^ANN", "19800101", "F", "too-many-matches"),
        ("NOBODY^KNOWN", "19990909", "M", "no-match"),
    ],
)
def test_unresolved_identity_goes_to_review_not_downstream(
    stub: PdsStub, stores: Stores, name: str, dob: str, sex: str, reason: str
) -> None:
    g, inner = gate(stub, stores)
    assert run(g, adt(pid(name, dob, sex))) == f"identity-review:{reason}"
    assert inner.applied == []
    (item,) = stores.review.list()
    assert item.reason == reason and item.subscription == "writeback-fhir"


class DownPds:
    def retrieve(self, nhs_number: str, *, correlation_id: str) -> PdsPatient:
        raise PdsUnavailable("timeout")

    def search(self, params: Any, *, correlation_id: str) -> SearchResult:
        raise PdsUnavailable("timeout", status=503)


def test_pds_unavailable_means_review_never_an_unverified_write(stores: Stores) -> None:
    g, inner = gate(DownPds(), stores)
    assert run(g, adt(pid("SMITH^JANE", "20101022", "F"))) == "identity-review:pds-unavailable"
    assert inner.applied == []
    with pytest.raises(PdsRejected):  # apply without a successful skip_reason refuses too
        g.apply(adt(pid("SMITH^JANE", "20101022", "F")))


def test_verified_number_passes_without_a_pds_call(stub: PdsStub, stores: Stores) -> None:
    g, inner = gate(stub, stores)
    event = adt(pid("SMITH^JANE", "20101022", "F", nhs="9434765919", status="01"))
    assert event.patient.nhs_number is not None
    assert event.patient.nhs_number.verification_status == "01"
    assert run(g, event) is None
    assert stub.requests == 0 and inner.applied == [event]


class CapturingBus:
    def __init__(self) -> None:
        self.published: list[tuple[str, OutboundMessage]] = []

    def publish(self, topic: str, messages: list[OutboundMessage]) -> None:
        self.published.extend((topic, m) for m in messages)


def test_held_identity_is_announced_without_patient_data(stub: PdsStub, stores: Stores) -> None:
    bus = CapturingBus()
    stores.review = ReviewQueue(stores.records, stores.blobs, bus=bus)  # type: ignore[arg-type]
    g, _ = gate(stub, stores)
    run(g, adt(pid("MCMATCH-MULTIPLE^BOB", "19970820", "M")))
    ((topic, message),) = bus.published
    assert topic == "platform-events"
    document = json.loads(message.body)
    assert document["type"] == "uk.nhs.tie.platform.identity.review-required"
    assert document["data"] == {
        "severity": "warning",
        "reason": "multiple-matches",
        "subscription": "writeback-fhir",
    }
    assert "MCMATCH" not in message.body.decode().upper() and SECRET_LINE not in message.body.decode()


def test_resolve_republishes_to_the_holding_subscription_and_the_gate_verifies(
    stub: PdsStub, stores: Stores
) -> None:
    g, inner = gate(stub, stores)
    run(g, adt(pid("MCMATCH-MULTIPLE^BOB", "19970820", "M")))
    (item,) = stores.review.list()
    bus = CapturingBus()
    stores.review.resolve(item.id, "9000000009", bus)  # type: ignore[arg-type]
    ((topic, message),) = bus.published
    assert topic == "clinical-events"
    assert message.application_properties[REPLAY_SUBSCRIPTION_PROPERTY] == "writeback-fhir"
    assert stores.review.list() == [] and len(stores.review.list("resolved")) == 1
    replayed = clinical.from_message(message.body)
    assert run(g, replayed) is None
    assert inner.applied[0].patient.nhs_number.verification_status == "01"  # type: ignore[union-attr]
