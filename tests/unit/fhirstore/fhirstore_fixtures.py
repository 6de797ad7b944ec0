"""Fabricated FHIR resources and a controllable clock for the FHIR repository tests."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

NHS = "https://fhir.nhs.uk/Id/nhs-number"
MRN = "https://trust.example.nhs.uk/Id/mrn"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"


class StepClock:
    """Starts at ``start`` and advances ``step`` on every call (strictly increasing lastUpdated)."""

    def __init__(self, start: datetime | None = None, step: timedelta = timedelta(milliseconds=10)) -> None:
        self.now = start or datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
        self.step = step
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            value = self.now
            self.now += self.step
            return value


def patient(
    nhs: str = "9000000009",
    family: str = "Testperson",
    given: str = "Alex",
    birth: str = "1980-05-01",
    gender: str = "female",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": NHS, "value": nhs}],
        "name": [{"family": family, "given": [given]}],
        "birthDate": birth,
        "gender": gender,
        **extra,
    }


def observation(
    patient_id: str,
    code: str = "8867-4",
    effective: Any = "2024-01-15T10:30:00Z",
    status: str = "final",
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "status": status,
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        **extra,
    }
    if isinstance(effective, dict):
        body["effectivePeriod"] = effective
    elif effective is not None:
        body["effectiveDateTime"] = effective
    return body
