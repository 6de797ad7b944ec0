"""Builders for the FHIR API tests: an API over embedded stores, requests, and mappable resources.

Every resource here is fabricated (NHS numbers from the 900 000 xxxx test range, with valid check digits).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.adapters.embedded.sqlite_bus import SqliteBus
from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository
from shared.adapters.embedded.sqlite_records import SqliteRecordStore
from shared.fhirapi import FhirApi, FhirApiConfig, FhirRequest, FhirResponse, Headers
from shared.messaging.ports import MessageBus, ReceivedMessage
from shared.messaging.topology import TOPIC_CLINICAL
from shared.terminology import systems

BASE = "http://tie.test/api/fhir"
FHIR_JSON = "application/fhir+json"
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
#: Valid Modulus 11 test numbers.
NHS = ("9000000009", "9000000017", "9000000025", "9000000033", "9000000041", "9000000068", "9000000076")
FILL = {"coding": [{"system": systems.V2_0203_IDENTIFIER_TYPE, "code": "FILL"}]}
VN = {"coding": [{"system": systems.V2_0203_IDENTIFIER_TYPE, "code": "VN"}]}
AUDIT_SUBSCRIPTION = "clinical-audit"


@dataclass
class Stores:
    repo: SqliteFhirRepository
    bus: MessageBus
    records: SqliteRecordStore

    def close(self) -> None:
        self.repo.close()
        self.bus.close()
        self.records.close()


def stores(tmp: Path) -> Stores:
    return Stores(
        SqliteFhirRepository(tmp / "fhir.sqlite3"),
        SqliteBus(tmp / "bus.sqlite3"),
        SqliteRecordStore(tmp / "records.sqlite3"),
    )


def make_api(s: Stores, bus: MessageBus | None = None, **config: Any) -> FhirApi:
    return FhirApi(s.repo, bus or s.bus, s.records, config=FhirApiConfig(**config))


def request(
    method: str,
    path: str = "",
    body: Any = None,
    headers: dict[str, str] | None = None,
    *,
    correlation_id: str = "test-corr-1",
    content_type: str | None = FHIR_JSON,
) -> FhirRequest:
    all_headers = dict(headers or {})
    raw = b""
    if body is not None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        if content_type is not None:
            all_headers.setdefault("Content-Type", content_type)
    url = f"{BASE}/{path}" if path else BASE
    return FhirRequest(method, url, Headers(all_headers), raw, correlation_id)


def outcome(response: FhirResponse) -> dict[str, Any]:
    assert response.body is not None and response.body["resourceType"] == "OperationOutcome", response.body
    issue: dict[str, Any] = response.body["issue"][0]
    return issue


def clinical_messages(bus: MessageBus) -> list[ReceivedMessage]:
    """Everything on the audit subscription of clinical-events (completed, so the next call sees new ones)."""
    out: list[ReceivedMessage] = []
    while True:
        batch = bus.receive(TOPIC_CLINICAL, AUDIT_SUBSCRIPTION, max_messages=50)
        if not batch:
            return out
        for message in batch:
            bus.complete(message)
        out.extend(batch)


def patient(nhs: str = NHS[0], **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": NHS_SYSTEM, "value": nhs}],
        "name": [{"family": "Testperson", "given": ["Alex"]}],
        "birthDate": "1980-05-01",
        "gender": "female",
    }
    body.update(extra)
    return body


def observation(subject: dict[str, Any], filler: str = "F100", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "identifier": [{"system": "urn:tie:authority:LAB", "value": filler, "type": FILL}],
        "status": "final",
        "code": {"coding": [{"system": systems.LOINC, "code": "2823-3", "display": "Potassium"}]},
        "subject": subject,
        "effectiveDateTime": "2026-01-15T09:30:00Z",
        "valueQuantity": {"value": 4.1, "unit": "mmol/L", "system": systems.UCUM, "code": "mmol/L"},
    }
    body.update(extra)
    return body


def encounter(subject: dict[str, Any], visit: str = "V0001", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Encounter",
        "identifier": [{"system": "urn:tie:authority:RX1", "value": visit, "type": VN}],
        "status": "in-progress",
        "class": {"system": systems.V3_ACT_CODE, "code": "IMP"},
        "period": {"start": "2026-07-01T10:15:00+01:00"},
        "subject": subject,
    }
    body.update(extra)
    return body


def organization(ods: str = "RX1") -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": ods}],
        "name": "Example Trust",
    }
