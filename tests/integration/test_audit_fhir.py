"""Every FHIR interaction through the running local host leaves exactly the audit record it should: the
caller, the action, the resources (type, id, version) and the patient they belong to - and nothing that
identifies the patient beyond the logical id (no NHS number, no search value)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from shared.audit.chain import verify_chain
from shared.wiring import get_container
from tests.integration.fhir_api_support import fhir_host, send
from tests.unit.fhirapi.fhirapi_helpers import NHS, NHS_SYSTEM, encounter, observation, patient

pytestmark = pytest.mark.timeout(90)

WARD = {"X-TIE-Client-Id": "ward-app", "X-TIE-Purpose-Of-Use": "TREAT"}


@pytest.fixture
def base() -> Iterator[str]:
    with fhir_host() as url:
        yield url


class AuditReader:
    def __init__(self) -> None:
        self.log = get_container().audit.log
        self.seen = 0

    def new(self) -> list[dict[str, Any]]:
        """The records appended since the last call, without the fields that vary (id, time)."""
        out = []
        for entry in self.log.entries(after=self.seen):
            self.seen = entry.seq
            record = json.loads(entry.body)
            record.pop("id")
            record.pop("recorded")
            out.append(record)
        return out


def expected(
    interaction: str,
    action: str,
    status: int,
    entities: list[tuple[str, str, str | None]],
    patients: list[str],
    *,
    corr: str,
    client: str | None = None,
    parameters: list[str] | None = None,
    returned: int | None = None,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "category": "access",
        "action": action,
        "interaction": interaction,
        "outcome": "0" if status < 400 else "4",
        "status": str(status),
        "agent": {"type": "client", "id": client, "verified": False}
        if client
        else {"type": "user", "id": "anonymous", "verified": False},
        "source": "fhir-api",
        "correlation_id": corr,
        "entities": [
            {"type": t, "id": i, **({"version": v} if v is not None else {})} for t, i, v in entities
        ],
        "patients": patients,
    }
    if client:
        record["purpose"] = "TREAT"
    if parameters:
        record["parameters"] = parameters
    if returned is not None:
        record["detail"] = {"returned": returned}
    return record


def test_every_interaction_leaves_exactly_its_audit_record(base: str) -> None:
    audit = AuditReader()
    assert audit.new() == []

    created = send("POST", f"{base}/Patient", patient(), **WARD, **{"X-Correlation-ID": "c1"})
    assert created.status == 201
    pid = created.json()["id"]
    me = f"Patient/{pid}"
    assert audit.new() == [
        expected("create", "C", 201, [("Patient", pid, "1")], [me], corr="c1", client="ward-app")
    ]

    assert send("GET", f"{base}/Patient/{pid}", **{"X-Correlation-ID": "c2"}).status == 200
    assert audit.new() == [expected("read", "R", 200, [("Patient", pid, "1")], [me], corr="c2")]

    assert send("GET", f"{base}/Patient/{pid}/_history/1", **{"X-Correlation-ID": "c3"}).status == 200
    assert audit.new() == [expected("vread", "R", 200, [("Patient", pid, "1")], [me], corr="c3")]

    found = send(
        "GET", f"{base}/Patient?identifier={NHS_SYSTEM}|{NHS[0]}", **WARD, **{"X-Correlation-ID": "c4"}
    )
    assert found.status == 200 and found.json()["total"] == 1
    assert audit.new() == [
        expected(
            "search-type",
            "E",
            200,
            [("Patient", pid, "1")],
            [me],
            corr="c4",
            client="ward-app",
            parameters=["identifier"],
            returned=1,
        )
    ]

    obs = send("POST", f"{base}/Observation", observation({"reference": me}), **{"X-Correlation-ID": "c5"})
    assert obs.status == 201, obs.body
    oid = obs.json()["id"]
    assert audit.new() == [expected("create", "C", 201, [("Observation", oid, "1")], [me], corr="c5")]

    # _elements hides the subject from the caller, not from the audit.
    hidden = send("GET", f"{base}/Observation?patient={me}&_elements=status", **{"X-Correlation-ID": "c6"})
    assert hidden.status == 200 and "subject" not in hidden.json()["entry"][0]["resource"]
    assert audit.new() == [
        expected(
            "search-type",
            "E",
            200,
            [("Observation", oid, "1")],
            [me],
            corr="c6",
            parameters=["_elements", "patient"],
            returned=1,
        )
    ]

    current = created.json()
    current["gender"] = "male"
    assert send("PUT", f"{base}/Patient/{pid}", current, **{"X-Correlation-ID": "c7"}).status == 200
    assert audit.new() == [expected("update", "U", 200, [("Patient", pid, "2")], [me], corr="c7")]

    assert send("GET", f"{base}/Patient/{pid}/_history", **{"X-Correlation-ID": "c8"}).status == 200
    assert audit.new() == [
        expected(
            "history",
            "R",
            200,
            [("Patient", pid, "2")],  # one entity per resource, at the newest version returned
            [me],
            corr="c8",
            returned=2,
        )
    ]

    assert send("GET", f"{base}/Patient/nobody", **{"X-Correlation-ID": "c9"}).status == 404
    assert audit.new() == [
        expected("read", "R", 404, [("Patient", "nobody", None)], ["Patient/nobody"], corr="c9")
    ]

    refused = send("DELETE", f"{base}/Observation/{oid}", **{"X-Correlation-ID": "c10"})
    assert refused.status == 405
    assert audit.new() == [expected("delete", "D", 405, [("Observation", oid, None)], [], corr="c10")]

    enc = send("POST", f"{base}/Encounter", encounter({"reference": me}), **{"X-Correlation-ID": "c11"})
    assert enc.status == 201, enc.body
    eid = enc.json()["id"]
    assert audit.new() == [expected("create", "C", 201, [("Encounter", eid, "1")], [me], corr="c11")]
    assert send("DELETE", f"{base}/Encounter/{eid}", **{"X-Correlation-ID": "c12"}).status == 204
    assert audit.new() == [expected("delete", "D", 204, [("Encounter", eid, "1")], [me], corr="c12")]

    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": f"Patient/{pid}"}}],
    }
    assert send("POST", base, batch, **{"X-Correlation-ID": "c13"}).status == 200
    assert audit.new() == [expected("bundle", "E", 200, [("Patient", pid, "2")], [me], corr="c13")]

    # Not patient data: the capability statement is not audited.
    assert send("GET", f"{base}/metadata").status == 200
    assert audit.new() == []

    log = get_container().audit.log
    result = verify_chain(log.entries(), log.checkpoints(), key=_key())
    assert (result.ok, result.checked) == (True, 13)
    raw = b"".join(e.body.encode() for e in log.entries())
    assert NHS[0].encode() not in raw and b"Testperson" not in raw


def _key() -> bytes:
    from shared.audit.keyfile import local_key
    from shared.config.settings import get_settings

    return local_key(get_settings().local_dir / "audit.key")
