"""FHIR Encounter -> canonical Encounter."""

from __future__ import annotations

from typing import Any

import pytest

from shared.canonical.model import DataAbsent, DataAbsentReason, EncounterStatus, Location
from shared.mapping.errors import InvalidValue, MissingRequiredField
from shared.mapping.fhir_in import encounter_from_fhir
from shared.terminology import systems
from tests.unit.mapping.fhir_in.fhirin_helpers import VISITS, encounter, sources, uncovered_leaves


def test_encounter_maps_identifiers_status_class_period_location_and_roles() -> None:
    practitioner = {
        "resourceType": "Practitioner",
        "identifier": [{"system": systems.GMP_NUMBER, "value": "G1234567"}],
        "name": [{"family": "Who", "prefix": ["Dr"]}],
    }
    mapped = encounter_from_fhir(encounter(), context={"Practitioner/ref": practitioner})
    e = mapped.value
    assert [(i.system, i.value, i.type) for i in e.identifiers] == [(VISITS, "V0001", "VN")]
    assert e.status is EncounterStatus.IN_PROGRESS
    assert e.encounter_class.codings[0].code == "IMP"  # type: ignore[union-attr]
    assert e.period is not None and e.period.start is not None
    assert e.period.start.value.isoformat() == "2026-07-01T10:15:00+01:00"
    assert e.location is not None
    assert (e.location.bed, e.location.point_of_care, e.location.facility) == ("Bed 4", "WARD7", "RX101")
    assert e.prior_location is not None and e.prior_location.description == "Old ward"
    assert [p.identifiers[0].value for p in e.attending] == ["C1234567"]
    assert e.referring[0].name is not None and e.referring[0].name.family == "Who"
    assert e.admitting == ()
    assert e.priority is not None and e.admit_source is not None
    assert e.service_provider is not None and e.service_provider.ods_code == "RX1"
    assert sources(mapped.lineage, "encounter.location.bed") == {
        "Encounter.location[1].location.resolve().name"
    }
    assert sources(mapped.lineage, "encounter.identifiers[0].value") == {"Encounter.identifier[0].value"}
    assert uncovered_leaves(e, "encounter", mapped.lineage, ignore=set()) == []


@pytest.mark.parametrize("status", ["triaged", "unknown", "done"])
def test_status_outside_the_canonical_value_set_is_refused(status: str) -> None:
    res = encounter()
    res["status"] = status
    with pytest.raises(InvalidValue) as err:
        encounter_from_fhir(res)
    assert err.value.field == "Encounter.status" and err.value.error_code == "103"


@pytest.mark.parametrize("element", ["status", "class"])
def test_required_elements(element: str) -> None:
    res = encounter()
    del res[element]
    with pytest.raises(MissingRequiredField) as err:
        encounter_from_fhir(res)
    assert err.value.field == f"Encounter.{element}"


def test_class_without_code_is_refused() -> None:
    res = encounter()
    res["class"] = {"system": systems.V3_ACT_CODE, "display": "inpatient"}
    with pytest.raises(MissingRequiredField) as err:
        encounter_from_fhir(res)
    assert err.value.field == "Encounter.class.code"


def test_unresolved_location_keeps_its_display_only() -> None:
    res = encounter()
    res["location"] = [{"location": {"reference": "Location/x", "display": "Ward 7"}}]
    e = encounter_from_fhir(res).value
    assert e.location is not None and e.location.description == "Ward 7" and e.location.bed is None


def test_period_end_before_start_is_refused() -> None:
    res = encounter()
    res["period"]["end"] = "2026-06-30T10:00:00+01:00"
    with pytest.raises(InvalidValue) as err:
        encounter_from_fhir(res)
    assert err.value.field == "Encounter.period.end"


def test_part_of_identifier_is_the_spell() -> None:
    res = encounter()
    res["partOf"] = {"identifier": {"system": "urn:tie:authority:RX1-spell", "value": "S1"}}
    e = encounter_from_fhir(res).value
    assert e.spell_identifier is not None and e.spell_identifier.value == "S1"


def test_data_absent_class_keeps_the_source_code() -> None:
    res = encounter()
    res["class"] = {
        "extension": [{"url": systems.EXT_DATA_ABSENT_REASON, "valueCode": "unknown"}],
        "system": systems.V2_0004_PATIENT_CLASS,
        "code": "U",
    }
    cls = encounter_from_fhir(res).value.encounter_class
    assert isinstance(cls, DataAbsent) and cls.reason is DataAbsentReason.UNKNOWN
    assert cls.source is not None and (cls.source.system, cls.source.code) == (
        systems.V2_0004_PATIENT_CLASS,
        "U",
    )


@pytest.mark.parametrize(
    ("identifier", "name", "expected"),
    [
        (
            {"system": "urn:tie:location:RX101", "value": "WARD7/R2/B4"},
            "Ward 7 bay 2",
            Location(
                point_of_care="WARD7", room="R2", bed="B4", facility="RX101", description="Ward 7 bay 2"
            ),
        ),
        ({"system": "urn:tie:location", "value": "WARD7"}, "WARD7", Location(point_of_care="WARD7")),
        ({"system": systems.ODS_SITE_CODE, "value": "RX101"}, None, Location(facility="RX101")),
    ],
)
def test_engine_location_convention(identifier: dict[str, str], name: str | None, expected: Location) -> None:
    loc: dict[str, Any] = {"resourceType": "Location", "identifier": [identifier]}
    if name is not None:
        loc["name"] = name
    res = encounter()
    res["location"] = [{"location": {"reference": "urn:uuid:loc"}, "status": "active"}]
    mapped = encounter_from_fhir(res, context={"urn:uuid:loc": loc})
    assert mapped.value.location == expected
    assert uncovered_leaves(mapped.value, "encounter", mapped.lineage, ignore=set()) == []


def test_closed_encounter_keeps_current_and_prior_locations_in_written_order() -> None:
    res = encounter()
    res["status"] = "finished"
    res["location"] = [
        {"location": {"display": "Discharge lounge"}, "status": "completed"},
        {"location": {"display": "Ward 7"}, "status": "completed"},
    ]
    e = encounter_from_fhir(res).value
    assert e.location is not None and e.location.description == "Discharge lounge"
    assert e.prior_location is not None and e.prior_location.description == "Ward 7"
