"""The FHIR API's audit hook: who is recorded, and failing closed when the audit log cannot be written."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from shared.adapters.embedded.sqlite_audit import SqliteAuditLog
from shared.audit.fhir_access import FhirAccessAuditor
from shared.audit.model import AuditRecord
from shared.audit.ports import ChainedEntry
from shared.audit.trail import AuditTrail
from shared.fhirapi import FhirApi, FhirApiConfig
from shared.storage.errors import StorageUnavailable
from tests.unit.fhirapi.fhirapi_helpers import Stores, patient, request, stores


class BrokenLog(SqliteAuditLog):
    def append(self, records: Sequence[AuditRecord]) -> list[ChainedEntry]:
        raise StorageUnavailable("audit store unavailable (test)")


@pytest.fixture
def s(tmp_path: Path) -> Iterator[Stores]:
    st = stores(tmp_path)
    yield st
    st.close()


def _api(s: Stores, log: SqliteAuditLog, *, gateway: bool) -> FhirApi:
    auditor = FhirAccessAuditor(AuditTrail(log), gateway_verified=gateway)
    return FhirApi(s.repo, s.bus, s.records, config=FhirApiConfig(), audit=auditor)


def test_an_unwritable_audit_log_fails_the_read_closed(s: Stores, tmp_path: Path) -> None:
    pid = s.repo.create(patient()).resource["id"]
    log = BrokenLog(tmp_path / "audit.sqlite3", key=b"k" * 32)
    response = _api(s, log, gateway=False).read(request("GET", f"Patient/{pid}"), "Patient", pid)
    log.close()
    assert response.status == 503
    assert response.body is not None and response.body["resourceType"] == "OperationOutcome"
    assert "Testperson" not in str(response.body)


AGENTS = [
    ({"X-TIE-Client-Id": "ward-app"}, True, {"type": "client", "id": "ward-app", "verified": True}),
    ({"X-TIE-Client-Id": "ward-app"}, False, {"type": "client", "id": "ward-app", "verified": False}),
    ({}, True, {"type": "user", "id": "anonymous", "verified": False}),
    ({"X-TIE-Client-Id": "bad value\n"}, True, {"type": "user", "id": "anonymous", "verified": False}),
]


@pytest.mark.parametrize(("headers", "gateway", "agent"), AGENTS)
def test_the_agent_is_the_gateway_client_verified_only_behind_the_gateway(
    s: Stores, tmp_path: Path, headers: dict[str, str], gateway: bool, agent: dict[str, object]
) -> None:
    pid = s.repo.create(patient()).resource["id"]
    log = SqliteAuditLog(tmp_path / "audit.sqlite3", key=b"k" * 32)
    _api(s, log, gateway=gateway).read(request("GET", f"Patient/{pid}", headers=headers), "Patient", pid)
    (entry,) = log.entries()
    log.close()
    assert AuditRecord.from_json(json.loads(entry.body)).agent.to_json() == agent
