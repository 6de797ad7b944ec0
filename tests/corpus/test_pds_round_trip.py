"""PDS FHIR API sandbox Patients: FHIR -> canonical (fhir_in) -> FHIR (fhir_out) -> canonical again.

Every Patient in ``nhs-pds-fhir-api`` (``sandbox/mocks/*.json``: Patient resources and searchset entries;
``karate-tests/.../stubs/**/*.json``: the mock responses) must map without loss of identity (NHS number and
its verification status), names (all, with use/period/prefix/suffix), addresses, telecom, birth date,
gender, restricted flag, GP practice ODS code and death - checked against the source JSON and across the
round trip. Every other file (OperationOutcome error responses, some of them Karate ``#(...)`` templates;
RelatedPerson / Coverage searchsets) has a row in an expected-outcome table: what it is and what our
readers do with it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.azure.ahds_fhir import AhdsFhirRepository
from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository
from shared.canonical.model import ClinicalDateTime, Patient, Sensitivity
from shared.errors import TransientError
from shared.fhirstore.errors import (
    FhirStoreError,
    InvalidResource,
    InvalidSearch,
    MultipleMatches,
    ResourceConflict,
    ResourceNotFound,
    UnsupportedResourceType,
    UpstreamError,
    VersionConflict,
)
from shared.identifiers.nhs_number import is_valid_nhs_number
from shared.mapping.errors import InvalidValue
from shared.mapping.fhir_in import UnsupportedInteraction, event_from_fhir, patient_from_fhir
from shared.terminology import systems
from tests.fhir_test_server import Fault, FhirTestServer
from tests.helpers import corpus_missing

pytestmark = pytest.mark.corpus

PDS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpora" / "nhs-pds-fhir-api"
RECORDED = ClinicalDateTime(value=datetime(2026, 1, 1, 12, 0, tzinfo=UTC))
_CONFIDENTIALITY = {"U": Sensitivity.NORMAL, "R": Sensitivity.RESTRICTED, "V": Sensitivity.VERY_RESTRICTED}


def _files() -> list[Path]:
    if not PDS.is_dir():
        return []
    return sorted(PDS.glob("sandbox/mocks/*.json")) + sorted(
        PDS.glob("karate-tests/src/test/java/mocks/stubs/**/*.json")
    )


def _collect() -> tuple[list[tuple[str, dict[str, Any]]], dict[str, dict[str, Any]]]:
    """(Patients to round-trip, every other file by name). Every file is valid JSON (a file that is not
    fails here, at collection, rather than being skipped)."""
    cases: list[tuple[str, dict[str, Any]]] = []
    others: dict[str, dict[str, Any]] = {}
    for path in _files():
        name = str(path.relative_to(PDS))
        doc = json.loads(path.read_text("utf-8"))
        patients = (
            [doc]
            if doc.get("resourceType") == "Patient"
            else [
                e["resource"]
                for e in doc.get("entry") or []
                if e.get("resource", {}).get("resourceType") == "Patient"
            ]
            if doc.get("resourceType") == "Bundle"
            else []
        )
        if "#(" in json.dumps(doc) or not patients:
            others[name] = doc
            continue
        if doc.get("resourceType") == "Patient":
            cases.append((name, doc))
        else:
            cases.extend((f"{name}#entry{i}", res) for i, res in enumerate(patients))
    return cases, others


CASES, OTHERS = _collect()


def _nhs_identifier(res: dict[str, Any]) -> dict[str, Any]:
    return next(i for i in res["identifier"] if i.get("system") == systems.NHS_NUMBER)


def _round_trip(resource: dict[str, Any]) -> Patient:
    """FHIR write -> canonical event -> FHIR (fhir_out transaction entries) -> canonical Patient, references
    resolved within the written bundle (the GP Organization entry)."""
    fhir_out = pytest.importorskip("shared.mapping.fhir_out", reason="fhir_out is not available")
    event = event_from_fhir(
        resource, interaction="update", patient=None, recorded_at=RECORDED, lineage=False
    ).value
    entries = fhir_out.to_entries(event).value
    context = {e["fullUrl"]: e["resource"] for e in entries}
    written = next(e for e in entries if e["resource"]["resourceType"] == "Patient")
    return patient_from_fhir(written["resource"], context=context, lineage=False).value


def test_the_corpus_was_read_and_every_file_is_accounted_for() -> None:
    if not PDS.is_dir():
        corpus_missing("../shared/corpora/nhs-pds-fhir-api is not present")
    assert len(CASES) >= 40
    patients = {c.split("#")[0] for c, _ in CASES}
    assert patients.isdisjoint(OTHERS)
    assert patients | set(OTHERS) == {str(p.relative_to(PDS)) for p in _files()}
    # Every file without a Patient has its row in the expected-outcome table below, and nothing more.
    assert set(OTHERS) == set(NOT_PATIENTS)


@pytest.mark.parametrize(("name", "resource"), CASES, ids=[c for c, _ in CASES])
def test_pds_patient_maps_and_round_trips_without_loss(name: str, resource: dict[str, Any]) -> None:
    nhs_source = _nhs_identifier(resource)
    if not is_valid_nhs_number(nhs_source["value"]):
        # the sandbox holds a deliberately invalid number (9000000015): a typed error naming the element
        with pytest.raises(InvalidValue) as err:
            patient_from_fhir(resource)
        index = resource["identifier"].index(nhs_source)
        assert err.value.field == f"Patient.identifier[{index}].value"
        assert nhs_source["value"] not in str(err.value)
        return
    mapped = patient_from_fhir(resource)
    p = mapped.value
    _check_against_source(p, resource)
    again = _round_trip(resource)
    assert again.nhs_number == p.nhs_number
    assert again.names == p.names
    assert again.addresses == p.addresses
    assert again.telecom == p.telecom
    assert (again.birth_date, again.gender, again.deceased) == (p.birth_date, p.gender, p.deceased)
    assert again.sensitivity == p.sensitivity
    assert again.general_practitioner == p.general_practitioner
    assert again == p


def _check_against_source(p: Patient, res: dict[str, Any]) -> None:
    """What the canonical Patient holds is what the PDS resource says (nothing dropped or invented)."""
    nhs = _nhs_identifier(res)
    assert p.nhs_number is not None and p.nhs_number.value == nhs["value"]
    codes = [
        c["code"]
        for ext in nhs.get("extension", [])
        for c in ext.get("valueCodeableConcept", {}).get("coding", [])
    ]
    assert p.nhs_number.verification_status == (codes[0] if codes else None)
    names = res.get("name", [])
    assert len(p.names) == len(names)
    for mine, theirs in zip(p.names, names, strict=True):
        assert mine.family == theirs.get("family")
        assert list(mine.given) == theirs.get("given", [])
        assert list(mine.prefix) == theirs.get("prefix", [])
        assert list(mine.suffix) == theirs.get("suffix", [])
        assert mine.use == theirs.get("use")
        if "period" in theirs:
            assert mine.period is not None
            for key in ("start", "end"):
                when = getattr(mine.period, key)
                assert (when.value.date().isoformat() if when else None) == theirs["period"].get(key)
    addresses = [a for a in res.get("address", []) if a.get("line") or a.get("postalCode") or a.get("city")]
    assert len(p.addresses) == len(addresses)
    for mine_a, theirs_a in zip(p.addresses, addresses, strict=True):
        assert list(mine_a.lines) == theirs_a.get("line", [])
        assert (mine_a.city, mine_a.district, mine_a.postal_code, mine_a.use) == (
            theirs_a.get("city"),
            theirs_a.get("district"),
            theirs_a.get("postalCode"),
            theirs_a.get("use"),
        )
        assert (mine_a.period is not None) == ("period" in theirs_a)
    telecom = [t for t in res.get("telecom", []) if t.get("value")]
    assert [(t.system, t.value, t.use) for t in p.telecom] == [
        (t["system"], t["value"], t.get("use")) for t in telecom
    ]
    assert (p.birth_date.iso() if p.birth_date else None) == res.get("birthDate")
    assert p.gender == res.get("gender")
    labels = [
        s["code"]
        for s in res.get("meta", {}).get("security", [])
        if s.get("system") == systems.V3_CONFIDENTIALITY
    ]
    assert p.sensitivity == (_CONFIDENTIALITY[labels[0]] if labels else Sensitivity.NORMAL)
    gps = res.get("generalPractitioner", [])
    assert (p.general_practitioner.ods_code if p.general_practitioner else None) == (
        gps[0]["identifier"]["value"] if gps else None
    )
    if "deceasedDateTime" in res:
        assert isinstance(p.deceased, ClinicalDateTime)
        assert p.deceased.value == datetime.fromisoformat(res["deceasedDateTime"])
    else:
        assert p.deceased == res.get("deceasedBoolean")


# -- files that hold no Patient: what each one is and what our readers do with it ------------------------
#
# OperationOutcomes (PDS error responses, some of them Karate templates whose ``#(...)`` placeholders the
# mock fills in at run time) are answers a FHIR server sends; the HTTP FHIR adapter (AhdsFhirRepository)
# maps status + OperationOutcome to a typed error. Each one is served over loopback HTTP with the status
# PDS gives it (``spec``: specification/components/paths/*.yaml of this corpus; ``docs``: the PDS API
# error tables for create/update; ``fhir``: the FHIR R4 conditional-interaction rules) for the request
# PDS answers it to. Placeholders sit only in ``display`` / ``diagnostics``, which the adapter never reads
# into an error (nor copies into its text), so a template maps exactly like the filled-in answer.
#
# RelatedPerson / Coverage searchsets and an empty searchset carry no Patient: the resource types are
# outside the store's supported types and have no event mapping, so both readers reject each entry with
# their specific error.

ERR = "karate-tests/src/test/java/mocks/stubs/errorResponses/"
POST = "karate-tests/src/test/java/mocks/stubs/postPatientResponses/"
STUBS = "karate-tests/src/test/java/mocks/stubs/"


@dataclass(frozen=True)
class Outcome:
    """An OperationOutcome answered with ``status`` to ``request``; the adapter raises ``error``."""

    spine_code: str
    issue_code: str
    status: int
    request: str  # read | search | create | conditional-create | update | update-if-match
    error: type[FhirStoreError]
    placeholders: tuple[str, ...] = ()  # the elements holding Karate #(...) placeholders


@dataclass(frozen=True)
class Entries:
    """A searchset Bundle of ``resource_type`` entries (no Patient); ``owners``: per entry, the NHS number
    of the patient it belongs to (RelatedPerson.patient / Coverage.subscriber), ``None`` if not given."""

    resource_type: str | None
    owners: tuple[str | None, ...]


NOT_PATIENTS: dict[str, Outcome | Entries] = {
    # source of the status: spec (GET /Patient/{id}: 403 ACCESS_DENIED)
    ERR + "ACCESS_DENIED.json": Outcome(
        "ACCESS_DENIED", "forbidden", 403, "read", UpstreamError, ("display", "diagnostics")
    ),
    # spec (search: 400 ADDITIONAL_PROPERTIES)
    ERR + "ADDITIONAL_PROPERTIES.json": Outcome(
        "ADDITIONAL_PROPERTIES", "invariant", 400, "search", InvalidSearch, ("diagnostics",)
    ),
    # docs (update: 403 FORBIDDEN_UPDATE)
    ERR + "FORBIDDEN_UPDATE.json": Outcome(
        "FORBIDDEN_UPDATE", "forbidden", 403, "update-if-match", UpstreamError, ("diagnostics",)
    ),
    # docs (create: 400)
    ERR + "INSERT_BIRTH_DEATH_STATUS_INCONSISTENT.json": Outcome(
        "INSERT_BIRTH_DEATH_STATUS_INCONSISTENT", "processing", 400, "create", InvalidResource
    ),
    # spec (GET /Patient/{id}: 404 INVALIDATED_RESOURCE)
    ERR + "INVALIDATED_RESOURCE.json": Outcome(
        "INVALIDATED_RESOURCE", "processing", 404, "read", ResourceNotFound
    ),
    # docs (create: 400 INVALID_CREATE)
    ERR + "INVALID_CREATE.json": Outcome(
        "INVALID_CREATE", "value", 400, "create", InvalidResource, ("diagnostics",)
    ),
    # docs (403 INVALID_METHOD: the app may not use this method)
    ERR + "INVALID_METHOD.json": Outcome(
        "INVALID_METHOD", "forbidden", 403, "create", UpstreamError, ("display",)
    ),
    # spec (GET /Patient/{id}: 400 INVALID_RESOURCE_ID)
    ERR + "INVALID_RESOURCE_ID.json": Outcome("INVALID_RESOURCE_ID", "value", 400, "read", InvalidResource),
    # spec (search: 400 INVALID_SEARCH_DATA)
    ERR + "INVALID_SEARCH_DATA.json": Outcome(
        "INVALID_SEARCH_DATA", "value", 400, "search", InvalidSearch, ("diagnostics",)
    ),
    # docs (update: 400 INVALID_UPDATE)
    ERR + "INVALID_UPDATE.json": Outcome(
        "INVALID_UPDATE", "structure", 400, "update-if-match", InvalidResource, ("diagnostics",)
    ),
    # spec (search: 400 INVALID_VALUE)
    ERR + "INVALID_VALUE.json": Outcome(
        "INVALID_VALUE", "value", 400, "search", InvalidSearch, ("diagnostics",)
    ),
    # spec (GET /Patient/{id}: 400 MISSING_VALUE - a missing header)
    ERR + "MISSING_VALUE.json": Outcome(
        "MISSING_VALUE", "required", 400, "read", InvalidResource, ("diagnostics",)
    ),
    # the mock's answer to a search it has no example for: a rejected search (400)
    ERR + "NOT_SUPPORTED_SEARCH.json": Outcome("", "not-supported", 400, "search", InvalidSearch),
    # docs (update without If-Match: 412 PRECONDITION_FAILED) - not a conditional request: a version conflict
    ERR + "PRECONDITION_FAILED.json": Outcome(
        "PRECONDITION_FAILED", "structure", 412, "update", VersionConflict, ("diagnostics",)
    ),
    # spec (GET /Patient/{id}: 404 RESOURCE_NOT_FOUND)
    ERR + "RESOURCE_NOT_FOUND.json": Outcome(
        "RESOURCE_NOT_FOUND", "not-found", 404, "read", ResourceNotFound
    ),
    # docs (update with a stale If-Match: 412)
    ERR + "RESOURCE_VERSION_MISMATCH.json": Outcome(
        "RESOURCE_VERSION_MISMATCH", "conflict", 412, "update-if-match", VersionConflict
    ),
    # docs (update: 400)
    ERR + "TOO_FEW_VALUES_SUBMITTED.json": Outcome(
        "TOO_FEW_VALUES_SUBMITTED", "value", 400, "update-if-match", InvalidResource, ("diagnostics",)
    ),
    ERR + "TOO_MANY_VALUES_SUBMITTED.json": Outcome(
        "TOO_MANY_VALUES_SUBMITTED", "value", 400, "update-if-match", InvalidResource, ("diagnostics",)
    ),
    # spec (GET /Patient/{id}: 400 UNSUPPORTED_SERVICE - missing NHS number)
    ERR + "UNSUPPORTED_SERVICE.json": Outcome(
        "UNSUPPORTED_SERVICE", "processing", 400, "read", InvalidResource
    ),
    # docs (create: 409 - the demographics match one or several existing records)
    POST + "MULTIPLE_MATCHES_FOUND.json": Outcome(
        "MULTIPLE_MATCHES", "value", 409, "create", ResourceConflict
    ),
    POST + "SINGLE_MATCH_FOUND.json": Outcome(
        "SINGLE_MATCH", "value", 409, "create", ResourceConflict, ("diagnostics",)
    ),
    # fhir (a conditional create matching several resources: 412, issue code multiple-matches)
    STUBS + "searchResponses/TOO_MANY_MATCHES.json": Outcome(
        "TOO_MANY_MATCHES", "multiple-matches", 412, "conditional-create", MultipleMatches
    ),
    "sandbox/mocks/Personal_Details_RelatedPersonBundle.json": Entries("RelatedPerson", (None,)),
    "sandbox/mocks/Referenced_RelatedPersonBundle.json": Entries("RelatedPerson", ("9000000009",)),
    "sandbox/mocks/RelatedPersonBundle.json": Entries("RelatedPerson", ("9000000009",)),
    STUBS + "relatedPersonResponses/related_person_9000000009.json": Entries(
        "RelatedPerson", ("9000000009", "9000000009")
    ),
    STUBS + "relatedPersonResponses/related_person_9000000017.json": Entries(
        "RelatedPerson", ("5328023641",)
    ),
    STUBS + "coverageResponses/patient_with_coverage_9000000009.json": Entries("Coverage", ("9000000009",)),
    STUBS + "coverageResponses/patient_with_coverage_9733162868.json": Entries("Coverage", ("9733162868",)),
    STUBS + "coverageResponses/patient_without_coverage.json": Entries(None, ()),
}

_OUTCOMES = [n for n, e in NOT_PATIENTS.items() if isinstance(e, Outcome)]
_ENTRIES = [n for n, e in NOT_PATIENTS.items() if isinstance(e, Entries)]


def _doc(name: str) -> dict[str, Any]:
    if name not in OTHERS:
        corpus_missing(f"../shared/corpora/nhs-pds-fhir-api/{name} is not present")
    return OTHERS[name]


def _placeholder_paths(issue: dict[str, Any]) -> tuple[str, ...]:
    found = [key for key in ("diagnostics",) if "#(" in str(issue.get(key, ""))]
    codings = issue.get("details", {}).get("coding", [])
    found += [k for c in codings for k, v in c.items() if "#(" in str(v)]
    return tuple(sorted(found))


@pytest.fixture(scope="module")
def upstream(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[FhirTestServer, AhdsFhirRepository]]:
    backend = SqliteFhirRepository(tmp_path_factory.mktemp("pds") / "upstream.db")
    server = FhirTestServer(backend)
    with server.running():
        client = AhdsFhirRepository(server.base_url, max_retries=0, sleep=lambda _s: None)
        yield server, client
        client.close()
    backend.close()


def _request(client: AhdsFhirRepository, request: str) -> None:
    patient = {"resourceType": "Patient", "id": "9000000009", "gender": "unknown"}
    calls: dict[str, Callable[[], object]] = {
        "read": lambda: client.read("Patient", "9000000009"),
        "search": lambda: client.search("Patient", [("family", "Smith")]),
        "create": lambda: client.create(patient),
        "conditional-create": lambda: client.create(
            patient, if_none_exist=f"identifier={systems.NHS_NUMBER}|9000000009"
        ),
        "update": lambda: client.update("Patient", "9000000009", patient),
        "update-if-match": lambda: client.update("Patient", "9000000009", patient, if_match='W/"2"'),
    }
    calls[request]()


@pytest.mark.parametrize("name", _OUTCOMES, ids=[n.rsplit("/", 1)[-1] for n in _OUTCOMES])
def test_pds_operation_outcomes_map_to_the_expected_error(
    name: str, upstream: tuple[FhirTestServer, AhdsFhirRepository]
) -> None:
    expected = NOT_PATIENTS[name]
    assert isinstance(expected, Outcome)
    doc = _doc(name)
    assert doc["resourceType"] == "OperationOutcome"
    [issue] = doc["issue"]
    codes = [c["code"] for c in issue.get("details", {}).get("coding", [])]
    assert (codes[0] if codes else "", issue["code"]) == (expected.spine_code, expected.issue_code)
    assert _placeholder_paths(issue) == tuple(sorted(expected.placeholders))
    server, client = upstream
    server.inject(Fault(status=expected.status, body=doc))
    with pytest.raises(FhirStoreError) as caught:
        _request(client, expected.request)
    assert type(caught.value) is expected.error, f"{name}: {type(caught.value).__name__}"
    text = str(caught.value)
    for upstream_text in [str(issue.get("diagnostics", ""))] + [
        str(c.get("display", "")) for c in issue.get("details", {}).get("coding", [])
    ]:
        assert not upstream_text or upstream_text not in text  # upstream text is never echoed
    assert "#(" not in text
    # Answered at once: a 4xx is permanent, never retried.
    assert not isinstance(caught.value, TransientError)


@pytest.mark.parametrize("name", _ENTRIES, ids=[n.rsplit("/", 1)[-1] for n in _ENTRIES])
def test_searchsets_without_patients_are_read_as_their_own_type_and_rejected(
    name: str, tmp_path: Path
) -> None:
    expected = NOT_PATIENTS[name]
    assert isinstance(expected, Entries)
    doc = _doc(name)
    assert (doc["resourceType"], doc["type"]) == ("Bundle", "searchset")
    resources = [e["resource"] for e in doc.get("entry") or []]
    assert doc.get("total") == len(resources) == len(expected.owners)
    assert {r["resourceType"] for r in resources} == ({expected.resource_type} if resources else set())
    store = SqliteFhirRepository(tmp_path / "store.db")
    try:
        for res, owner in zip(resources, expected.owners, strict=True):
            ref = res["patient"] if res["resourceType"] == "RelatedPerson" else res["subscriber"]
            number = ref.get("identifier", {}).get("value")
            assert number == owner and (owner is None or is_valid_nhs_number(owner))
            with pytest.raises(UnsupportedInteraction) as no_event:
                event_from_fhir(res, interaction="update", patient=None, recorded_at=RECORDED, lineage=False)
            assert no_event.value.field == "resourceType"
            with pytest.raises(UnsupportedResourceType):
                store.create(res)
    finally:
        store.close()
    # The Bundle itself is not an event either.
    with pytest.raises(UnsupportedInteraction):
        event_from_fhir(doc, interaction="update", patient=None, recorded_at=RECORDED, lineage=False)
