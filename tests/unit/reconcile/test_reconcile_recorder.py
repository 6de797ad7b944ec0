"""SentRecorder: records what a committed transaction wrote (from the response, or read back when the
server answers without the resources), never fails the write, and stores digests and systems, not values."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository
from shared.adapters.embedded.sqlite_records import SqliteRecordStore
from shared.fhirstore.ports import JsonDict
from shared.reconcile.fhir import SentRecorder, element_digests, sent_records
from shared.storage.errors import StorageUnavailable
from shared.storage.names import TABLE_RECONCILE

T0 = datetime(2026, 3, 15, 10, 0, tzinfo=UTC)
PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}],
    "name": [{"family": "TESTPATIENT"}],
}
BUNDLE = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [
        {"fullUrl": "urn:uuid:x", "resource": PATIENT, "request": {"method": "PUT", "url": "Patient/p1"}}
    ],
}


class Minimal(SqliteFhirRepository):
    """A server that answers transactions without the resources (no return=representation)."""

    reads = 0

    def transaction(self, bundle: JsonDict) -> JsonDict:
        response = super().transaction(bundle)
        for entry in response.get("entry", []):
            entry.pop("resource", None)
        return response

    def read(self, resource_type: str, resource_id: str) -> Any:
        self.reads += 1
        return super().read(resource_type, resource_id)


class Unavailable(SqliteRecordStore):
    def upsert(self, table: str, partition_key: str, row_key: str, value: Any) -> Any:
        if table == TABLE_RECONCILE:
            raise StorageUnavailable("table storage is down")
        return super().upsert(table, partition_key, row_key, value)


@pytest.fixture
def paths(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "fhir.sqlite3", tmp_path / "records.sqlite3"


@pytest.mark.parametrize("minimal", [False, True], ids=["representation", "minimal"])
def test_what_was_written_is_recorded_as_digests_and_systems(paths: tuple[Path, Path], minimal: bool) -> None:
    fhir = (Minimal if minimal else SqliteFhirRepository)(paths[0])
    records = SqliteRecordStore(paths[1])
    try:
        SentRecorder(fhir, records, downstream="writeback-fhir", clock=lambda: T0).transaction(BUNDLE)
        [sent] = sent_records(records, "writeback-fhir")
        stored = fhir.read("Patient", "p1").resource
        assert (sent.ref, sent.version, sent.at) == ("Patient/p1", "1", T0)
        assert dict(sent.elements) == element_digests(stored) and set(sent.elements) == {"identifier", "name"}
        assert sent.systems == ("https://fhir.nhs.uk/Id/nhs-number",)
        raw = str(records.query(TABLE_RECONCILE))
        assert "9434765919" not in raw and "TESTPATIENT" not in raw  # no values
        if minimal:
            assert isinstance(fhir, Minimal) and fhir.reads == 2  # one read back, one by this test
    finally:
        fhir.close()
        records.close()


def test_a_record_that_cannot_be_stored_does_not_fail_the_committed_write(paths: tuple[Path, Path]) -> None:
    fhir = SqliteFhirRepository(paths[0])
    records = Unavailable(paths[1])
    try:
        response = SentRecorder(fhir, records, downstream="writeback-fhir").transaction(BUNDLE)
        assert str(response["entry"][0]["response"]["status"]).startswith("201")
        assert fhir.read("Patient", "p1").resource["name"] == PATIENT["name"]
        assert list(sent_records(records, "writeback-fhir")) == []
    finally:
        fhir.close()
        records.close()
