"""``/api/fhir/AuditEvent`` on the running local host: read-only AuditEvents searchable by patient, agent,
entity and date; reading the audit is itself audited; unknown parameters refused; behind the gateway."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest

from functions import fhir_audit
from shared.config.settings import reset_settings
from shared.wiring import get_container
from tests.integration.fhir_api_support import fhir_app, fhir_host, send
from tests.unit.fhirapi.fhirapi_helpers import patient

pytestmark = pytest.mark.timeout(90)

SECRET = "gateway-secret-for-tests-0123456789"


def app() -> func.FunctionApp:
    application = fhir_app()
    bp = func.Blueprint()  # type: ignore[no-untyped-call]
    fhir_audit.register_audit(bp)
    application.register_functions(bp)
    return application


@pytest.fixture
def base() -> Iterator[str]:
    with fhir_host(app()) as url:
        yield url


def _last_record() -> dict[str, Any]:
    entries = list(get_container().audit.log.entries())
    return dict(json.loads(entries[-1].body))


def test_search_and_read_audit_events_and_the_reading_is_audited(base: str) -> None:
    pid = send("POST", f"{base}/Patient", patient(), **{"X-TIE-Client-Id": "ward-app"}).json()["id"]
    assert send("GET", f"{base}/Patient/{pid}", **{"X-TIE-Client-Id": "gp-app"}).status == 200
    me = f"Patient/{pid}"

    found = send("GET", f"{base}/AuditEvent?patient={me}", **{"X-TIE-Client-Id": "auditor"})
    assert found.status == 200, found.body
    events = [e["resource"] for e in found.json()["entry"]]
    summary = [
        (e["subtype"][0]["code"], e["action"], e["outcome"], e["agent"][0]["who"]["identifier"]["value"])
        for e in events
    ]
    assert summary == [("create", "C", "0", "ward-app"), ("read", "R", "0", "gp-app")]
    assert all(
        {
            "what": {"reference": me},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"},
        }
        in e["entity"]
        for e in events
    )
    assert all(e["resourceType"] == "AuditEvent" and e["type"]["code"] == "rest" for e in events)

    seen = _last_record()
    assert (seen["interaction"], seen["agent"]["id"], seen["patients"], seen["parameters"]) == (
        "audit-search-type",
        "auditor",
        [me],
        ["patient"],
    )
    assert [e["id"] for e in seen["entities"]] == [e["id"] for e in events]

    by_agent = send("GET", f"{base}/AuditEvent?agent=gp-app").json()
    assert [e["resource"]["id"] for e in by_agent["entry"]] == [events[1]["id"]]
    by_entity = send("GET", f"{base}/AuditEvent?entity={me}&agent=ward-app").json()
    assert [e["resource"]["id"] for e in by_entity["entry"]] == [events[0]["id"]]
    old = send("GET", f"{base}/AuditEvent?patient={me}&date=lt2000-01-01").json()
    assert (old["total"], "entry" in old) == (0, False)
    today = send("GET", f"{base}/AuditEvent?patient={me}&date=ge2000-01-01&_count=1").json()
    assert [e["resource"]["id"] for e in today["entry"]] == [events[0]["id"]]

    one = send("GET", f"{base}/AuditEvent/{events[0]['id']}")
    assert one.status == 200 and one.json() == events[0]
    assert _last_record()["interaction"] == "audit-read"
    assert send("GET", f"{base}/AuditEvent/nope").status == 404
    assert (_last_record()["interaction"], _last_record()["status"]) == ("audit-read", "404")

    refused = send("GET", f"{base}/AuditEvent?name=Testperson")
    assert refused.status == 400 and "Testperson" not in refused.body.decode()
    # No writes.
    assert send("POST", f"{base}/AuditEvent", {"resourceType": "AuditEvent"}).status == 405


def test_audit_events_are_behind_the_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIE_REQUIRE_APIM_HEADER", "true")
    monkeypatch.setenv("TIE_APIM_SHARED_SECRET", SECRET)
    reset_settings()
    with fhir_host(app()) as url:
        assert send("GET", f"{url}/AuditEvent").status == 401
        assert (
            send("GET", f"{url}/AuditEvent/x", **{"X-TIE-Gateway": "wrong-value-wrong-value"}).status == 403
        )
        passed = send("GET", f"{url}/AuditEvent", **{"X-TIE-Gateway": SECRET, "X-TIE-Client-Id": "auditor"})
        assert passed.status == 200
        assert _last_record()["agent"] == {"type": "client", "id": "auditor", "verified": True}
