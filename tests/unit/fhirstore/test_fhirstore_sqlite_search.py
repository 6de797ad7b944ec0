"""SqliteFhirRepository search: every parameter type through SQL, AND/OR, sort, paging, includes, and a
differential property test (SQL results == the in-memory reference semantics of shared.fhirstore.search)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository
from shared.fhirstore.errors import InvalidSearch
from shared.fhirstore.search import DEFAULT_COUNT, matches, parse_search
from tests.unit.fhirstore.fhirstore_fixtures import LOINC, NHS, SNOMED, StepClock, observation, patient
from tests.unit.fhirstore.test_fhirstore_search_engine import AP_NOW, DATE_CASES, PREFIXES


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[SqliteFhirRepository]:
    store = SqliteFhirRepository(tmp_path / "fhir.db", clock=StepClock())
    yield store
    store.close()


def ids(repo: SqliteFhirRepository, rtype: str, params: list[tuple[str, str]], **kw: Any) -> set[str]:
    result = repo.search(rtype, params, count=500, **kw)
    assert result.total == len(result.resources)
    return {r["id"] for r in result.resources}


@pytest.fixture
def people(repo: SqliteFhirRepository) -> dict[str, str]:
    bodies = {
        "zoe": patient(nhs="9000000009", family="Ñoño", given="Zoë", birth="1980-05-01", gender="female"),
        "sam": patient(nhs="9000000017", family="Noakes", given="Sam", birth="1980-11-30", gender="male"),
        "kim": patient(
            nhs="9000000025",
            family="Kimber",
            given="Kim",
            birth="1992",
            gender="other",
            identifier=[{"system": NHS, "value": "9000000025"}, {"value": "LOCAL-1"}],
        ),
    }
    return {key: repo.update("Patient", key, {**body, "id": key}).id for key, body in bodies.items()}


def test_token_forms_through_sql(repo: SqliteFhirRepository, people: dict[str, str]) -> None:
    assert ids(repo, "Patient", [("identifier", f"{NHS}|9000000009")]) == {"zoe"}
    assert ids(repo, "Patient", [("identifier", "9000000017")]) == {"sam"}
    assert ids(repo, "Patient", [("identifier", "|LOCAL-1")]) == {"kim"}
    assert ids(repo, "Patient", [("identifier", "|9000000009")]) == set()
    assert ids(repo, "Patient", [("identifier", f"{NHS}|")]) == {"zoe", "sam", "kim"}
    assert ids(repo, "Patient", [("identifier", "9000000009,9000000017")]) == {"zoe", "sam"}
    assert ids(repo, "Patient", [("identifier", "9000000025"), ("identifier", "LOCAL-1")]) == {"kim"}
    assert ids(repo, "Patient", [("identifier", "9000000009"), ("identifier", "LOCAL-1")]) == set()
    assert ids(repo, "Patient", [("gender:not", "male")]) == {"zoe", "kim"}
    assert ids(repo, "Patient", [("gender:not", "male,female")]) == {"kim"}
    assert ids(repo, "Patient", [("_id", "zoe,kim")]) == {"zoe", "kim"}
    assert ids(repo, "Patient", [("gender:missing", "true")]) == set()
    assert ids(repo, "Patient", [("general-practitioner:missing", "true")]) == {"zoe", "sam", "kim"}


def test_a_resource_matching_several_ways_is_returned_once(repo: SqliteFhirRepository) -> None:
    obs = observation("p1") | {"id": "o1"}
    obs["code"]["coding"].append({"system": SNOMED, "code": "8867-4"})
    repo.update("Observation", "o1", obs)
    repo.update("Patient", "p1", patient(identifier=[{"value": "A"}, {"value": "B"}]) | {"id": "p1"})
    for rtype, params in [
        ("Observation", [("code", "8867-4")]),
        ("Observation", [("code", f"{LOINC}|8867-4,{SNOMED}|8867-4")]),
        ("Patient", [("identifier", "A,B")]),
        ("Patient", [("family", "t,te")]),
    ]:
        result = repo.search(rtype, params)
        assert result.total == 1 and len(result.resources) == 1, params


def test_strings_through_sql(repo: SqliteFhirRepository, people: dict[str, str]) -> None:
    assert ids(repo, "Patient", [("family", "no")]) == {"zoe", "sam"}
    assert ids(repo, "Patient", [("family", "ÑO")]) == {"zoe", "sam"}
    assert ids(repo, "Patient", [("family:exact", "Noakes")]) == {"sam"}
    assert ids(repo, "Patient", [("family:exact", "noakes")]) == set()
    assert ids(repo, "Patient", [("family:contains", "ke")]) == {"sam"}
    assert ids(repo, "Patient", [("name", "zo")]) == {"zoe"}
    assert ids(repo, "Patient", [("name", "kim")]) == {"kim"}
    assert ids(repo, "Patient", [("given", "s,k")]) == {"sam", "kim"}
    assert ids(repo, "Patient", [("family", "no"), ("given", "sa")]) == {"sam"}
    # Prefix matching beyond ASCII (the SQL upper bound must cover every code point).
    repo.update("Patient", "cy", patient(nhs="9000000033", family="Дмитриев", given="Åsa") | {"id": "cy"})
    assert ids(repo, "Patient", [("family", "дми")]) == {"cy"}
    assert ids(repo, "Patient", [("given", "as")]) == {"cy"}


def test_dates_through_sql(repo: SqliteFhirRepository, people: dict[str, str]) -> None:
    assert ids(repo, "Patient", [("birthdate", "1980")]) == {"zoe", "sam"}
    assert ids(repo, "Patient", [("birthdate", "1980-05")]) == {"zoe"}
    assert ids(repo, "Patient", [("birthdate", "ge1980-06")]) == {"sam", "kim"}
    assert ids(repo, "Patient", [("birthdate", "lt1992-06-01")]) == {
        "zoe",
        "sam",
        "kim",
    }  # 1992 starts before
    assert ids(repo, "Patient", [("birthdate", "le1992-06-01")]) == {"zoe", "sam", "kim"}
    assert ids(repo, "Patient", [("birthdate", "eq1992-06-01")]) == set()  # a year is not within a day
    assert ids(repo, "Patient", [("birthdate", "sa1980-12")]) == {"kim"}
    assert ids(repo, "Patient", [("birthdate", "eb1981")]) == {"zoe", "sam"}
    assert ids(repo, "Patient", [("birthdate", "ge1980"), ("birthdate", "le1980")]) == {"zoe", "sam"}


@pytest.mark.parametrize("prefix", PREFIXES)
def test_date_prefix_table_through_sql(repo: SqliteFhirRepository, prefix: str) -> None:
    for case, (value, _) in DATE_CASES.items():
        repo.update("Observation", case, {**observation("p1", effective=value), "id": case})
    expected = {case for case, (_, prefixes) in DATE_CASES.items() if prefix in prefixes}
    query = parse_search("Observation", [("date", f"{prefix}2020-06-15")], now=AP_NOW, count=500)
    with repo._reading() as work:
        found = {r["id"] for r in work.run_search(query).resources}
    assert found == expected


def test_references_through_sql(repo: SqliteFhirRepository) -> None:
    repo.update("Observation", "o1", {**observation("p1"), "id": "o1"})
    repo.update(
        "Observation",
        "o2",
        {**observation("x"), "id": "o2", "subject": {"reference": "https://b.example/Patient/p1"}},
    )
    repo.update("Observation", "o3", {**observation("x"), "id": "o3", "subject": {"reference": "Group/p1"}})
    repo.update("Observation", "o4", {**observation("p2"), "id": "o4"})
    assert ids(repo, "Observation", [("patient", "p1")]) == {"o1", "o2"}
    assert ids(repo, "Observation", [("subject", "p1")]) == {"o1", "o2", "o3"}
    assert ids(repo, "Observation", [("subject", "Group/p1")]) == {"o3"}
    assert ids(repo, "Observation", [("subject:Patient", "p1")]) == {"o1", "o2"}
    assert ids(repo, "Observation", [("subject", "http://elsewhere/fhir/Patient/p1")]) == {"o1", "o2"}
    assert ids(repo, "Observation", [("patient", "p1,p2")]) == {"o1", "o2", "o4"}
    assert ids(repo, "Observation", [("patient", "Patient/p2/_history/1")]) == {"o4"}


def test_other_types_and_choice_elements(repo: SqliteFhirRepository) -> None:
    repo.update(
        "MedicationRequest",
        "m1",
        {
            "resourceType": "MedicationRequest",
            "id": "m1",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": SNOMED, "code": "322236009"}]},
            "subject": {"reference": "Patient/p1"},
        },
    )
    repo.update(
        "Condition",
        "c1",
        {
            "resourceType": "Condition",
            "id": "c1",
            "clinicalStatus": {"coding": [{"system": "http://cs", "code": "active"}]},
            "code": {"coding": [{"system": SNOMED, "code": "44054006"}]},
            "subject": {"reference": "Patient/p1"},
            "onsetPeriod": {"start": "2019-03"},
        },
    )
    repo.update(
        "AllergyIntolerance",
        "a1",
        {
            "resourceType": "AllergyIntolerance",
            "id": "a1",
            "patient": {"reference": "Patient/p1"},
            "clinicalStatus": {"coding": [{"system": "http://cs", "code": "active"}]},
            "reaction": [{"substance": {"coding": [{"system": SNOMED, "code": "91936005"}]}}],
        },
    )
    repo.update(
        "DocumentReference",
        "d1",
        {
            "resourceType": "DocumentReference",
            "id": "d1",
            "status": "current",
            "type": {"coding": [{"system": SNOMED, "code": "371530004"}]},
            "subject": {"reference": "Patient/p1"},
            "date": "2024-02-02T08:00:00Z",
            "content": [{"attachment": {"contentType": "text/plain"}}],
        },
    )
    assert ids(
        repo, "MedicationRequest", [("code", "322236009"), ("patient", "p1"), ("status", "active")]
    ) == {"m1"}
    assert ids(repo, "Condition", [("clinical-status", "active"), ("onset-date", "ge2019-03-15")]) == {"c1"}
    assert ids(repo, "AllergyIntolerance", [("code", f"{SNOMED}|91936005"), ("patient", "Patient/p1")]) == {
        "a1"
    }
    assert ids(repo, "DocumentReference", [("type", "371530004"), ("date", "2024-02")]) == {"d1"}
    assert ids(repo, "DocumentReference", [("date", "2024-03")]) == set()


def test_count_offset_total_and_default_order(repo: SqliteFhirRepository) -> None:
    created = [repo.create(patient(nhs=f"90000{n:05d}")).id for n in range(25)]
    first = repo.search("Patient", [])
    assert first.total == 25 and first.count == DEFAULT_COUNT and len(first.resources) == DEFAULT_COUNT
    assert first.has_next
    assert [r["id"] for r in first.resources] == created[:20], "default order: _lastUpdated ascending"
    second = repo.search("Patient", [("_count", "20"), ("_offset", "20")])
    assert [r["id"] for r in second.resources] == created[20:] and not second.has_next
    assert repo.search("Patient", [], offset=30).resources == []
    none = repo.search("Patient", [("_total", "none"), ("_count", "3")])
    assert none.total is None and len(none.resources) == 3 and not none.has_next
    summary = repo.search("Patient", [("_summary", "count")])
    assert summary.total == 25 and summary.resources == []
    big = repo.search("Patient", [("_count", "100000")])
    assert big.count == 500 and len(big.resources) == 25


def test_sort(repo: SqliteFhirRepository) -> None:
    repo.update("Patient", "b", patient(family="Beta", birth="1990-01-01") | {"id": "b"})
    repo.update("Patient", "a", patient(family="alpha", birth="2001") | {"id": "a"})
    repo.update("Patient", "c", patient(family="Gamma", birth="1950-06") | {"id": "c"})
    repo.update("Patient", "n", {"resourceType": "Patient", "id": "n"})  # no name, no birth date

    def order(sort: str) -> list[str]:
        return [r["id"] for r in repo.search("Patient", [("_sort", sort)]).resources]

    assert order("_lastUpdated") == ["b", "a", "c", "n"]
    assert order("-_lastUpdated") == ["n", "c", "a", "b"]
    assert order("_id") == ["a", "b", "c", "n"]
    assert order("birthdate") == ["c", "b", "a", "n"]
    assert order("-birthdate") == ["a", "b", "c", "n"]
    assert order("family") == ["a", "b", "c", "n"], "case-insensitive, missing values last"
    assert order("-family") == ["c", "b", "a", "n"]
    assert repo.search("Patient", [], sort=["-_id"]).resources[0]["id"] == "n"
    with pytest.raises(InvalidSearch):
        repo.search("Patient", [("_sort", "general-practitioner")])


def test_include_and_revinclude(repo: SqliteFhirRepository) -> None:
    repo.update("Patient", "p1", patient() | {"id": "p1"})
    repo.update("Patient", "p2", patient(nhs="9000000017") | {"id": "p2"})
    repo.update(
        "Encounter",
        "e1",
        {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "IMP"}},
    )
    repo.update(
        "Observation", "o1", observation("p1") | {"id": "o1", "encounter": {"reference": "Encounter/e1"}}
    )
    repo.update("Observation", "o2", observation("p1") | {"id": "o2"})
    repo.update(
        "Observation", "o3", observation("p2") | {"id": "o3", "subject": {"reference": "Patient/gone"}}
    )
    repo.update("Patient", "gone", patient(nhs="9000000025") | {"id": "gone"})
    repo.delete("Patient", "gone")

    result = repo.search("Observation", [("code", "8867-4"), ("_include", "Observation:subject")])
    assert {r["id"] for r in result.resources} == {"o1", "o2", "o3"}
    assert [r["id"] for r in result.included] == ["p1"], "deduplicated; deleted targets left out"
    both = repo.search(
        "Observation", [("_id", "o1")], include=["Observation:patient", "Observation:encounter"]
    )
    assert {(r["resourceType"], r["id"]) for r in both.included} == {("Patient", "p1"), ("Encounter", "e1")}
    typed = repo.search("Observation", [("_id", "o1"), ("_include", "Observation:subject:Encounter")])
    assert typed.included == []
    star = repo.search("Observation", [("_id", "o1"), ("_include", "*")])
    assert {r["id"] for r in star.included} == {"p1", "e1"}
    rev = repo.search("Patient", [("_id", "p1,p2"), ("_revinclude", "Observation:patient")])
    assert {r["id"] for r in rev.resources} == {"p1", "p2"}
    assert {r["id"] for r in rev.included} == {"o1", "o2"}
    paged = repo.search(
        "Observation", [("_sort", "_id"), ("_count", "1"), ("_include", "Observation:encounter")]
    )
    assert [r["id"] for r in paged.resources] == ["o1"] and [r["id"] for r in paged.included] == ["e1"]


def test_lenient_mode_reports_ignored(repo: SqliteFhirRepository, people: dict[str, str]) -> None:
    result = repo.search("Patient", [("gender", "male"), ("shoe-size", "9")], strict=False)
    assert {r["id"] for r in result.resources} == {"sam"} and result.ignored == ["shoe-size"]
    assert result.params == [("gender", "male")]
    with pytest.raises(InvalidSearch) as info:
        repo.search("Patient", [("shoe-size", "9")])
    assert info.value.parameter == "shoe-size"


def test_last_updated_search(repo: SqliteFhirRepository) -> None:
    clock = StepClock(start=datetime(2024, 3, 1, 9, 0, tzinfo=UTC), step=timedelta(hours=1))
    store = SqliteFhirRepository(repo._db.path.with_name("lu.db"), clock=clock)
    try:
        first = store.create(patient()).id  # 09:00
        second = store.create(patient()).id  # 10:00
        assert {
            r["id"] for r in store.search("Patient", [("_lastUpdated", "2024-03-01T09:00")]).resources
        } == {first}
        assert {
            r["id"] for r in store.search("Patient", [("_lastUpdated", "gt2024-03-01T09:30")]).resources
        } == {second}
        assert store.search("Patient", [("_lastUpdated", "2024-03-01")]).total == 2
        assert store.search("Patient", [("_lastUpdated", "lt2024-03-01")]).total == 0
    finally:
        store.close()


# ------------------------------------------------------------------------------ differential property

_STATUSES = ["final", "preliminary", "amended"]
_CODES = [(LOINC, "8867-4"), (LOINC, "8310-5"), (SNOMED, "8867-4"), (None, "X1"), (SNOMED, "X1")]
_DATES = [
    "2020",
    "2020-06",
    "2020-06-01",
    "2020-06-15",
    "2020-06-15T10:00:00Z",
    "2020-06-16T23:59:59.999Z",
    "2021-01-01",
]
_SUBJECTS = ["Patient/p1", "Patient/p2", "Group/p1", "https://x.example/fhir/Patient/p1"]

date_values = st.one_of(
    st.sampled_from(_DATES),
    st.fixed_dictionaries({}, optional={"start": st.sampled_from(_DATES), "end": st.sampled_from(_DATES)}),
)
obs_strategy = st.fixed_dictionaries(
    {
        "status": st.sampled_from(_STATUSES),
        "codes": st.lists(st.sampled_from(_CODES), min_size=0, max_size=2),
        "subject": st.one_of(st.none(), st.sampled_from(_SUBJECTS)),
        "effective": st.one_of(st.none(), date_values),
        "text": st.sampled_from(["", "Heart rate", "Héart", "rate"]),
    }
)


def _to_resource(index: int, spec: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"o{index}",
        "status": spec["status"],
        "code": {"coding": [{"code": c} | ({"system": s} if s else {}) for s, c in spec["codes"]]},
    }
    if spec["subject"]:
        body["subject"] = {"reference": spec["subject"]}
    if isinstance(spec["effective"], dict):
        if spec["effective"]:
            body["effectivePeriod"] = spec["effective"]
    elif spec["effective"]:
        body["effectiveDateTime"] = spec["effective"]
    return body


param_strategy = st.one_of(
    st.tuples(st.just("status"), st.sampled_from(["final", "amended,preliminary", "x"])),
    st.tuples(
        st.sampled_from(["status:not", "code:not"]), st.sampled_from(["final", "8867-4", f"{LOINC}|8867-4"])
    ),
    st.tuples(
        st.just("code"),
        st.sampled_from(["8867-4", f"{LOINC}|8867-4", "|X1", f"{SNOMED}|", f"{LOINC}|8310-5,|X1"]),
    ),
    st.tuples(
        st.sampled_from(["date", "code", "subject"]).map(lambda p: f"{p}:missing"),
        st.sampled_from(["true", "false"]),
    ),
    st.tuples(
        st.just("date"),
        st.builds(
            lambda p, d: p + d,
            st.sampled_from(["", *PREFIXES]),
            st.sampled_from([*_DATES, "2020-06-15T10:00"]),
        ),
    ),
    st.tuples(
        st.sampled_from(["patient", "subject"]), st.sampled_from(["p1", "Patient/p1", "Group/p1", "p2,p9"])
    ),
    st.tuples(st.just("_id"), st.sampled_from(["o1", "o2,o3", "nope"])),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    bodies=st.lists(obs_strategy, min_size=1, max_size=8),
    queries=st.lists(st.lists(param_strategy, min_size=1, max_size=3), min_size=1, max_size=6),
)
def test_sql_agrees_with_reference_semantics(
    bodies: list[dict[str, Any]], queries: list[list[tuple[str, str]]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteFhirRepository(Path(tmp) / "p.db", clock=StepClock())
        try:
            stored = [
                store.update("Observation", f"o{i}", _to_resource(i, spec)).resource
                for i, spec in enumerate(bodies)
            ]
            for params in queries:
                query = parse_search("Observation", params, count=500, now=AP_NOW)
                expected = {r["id"] for r in stored if matches(r, query)}
                with store._reading() as work:
                    result = work.run_search(query)
                found = [r["id"] for r in result.resources]
                assert set(found) == expected, params
                assert len(found) == len(expected) == result.total, "no duplicates, exact total"
        finally:
            store.close()


_FAMILIES = ["Ñoño", "Noakes", "nó", "Smith-Jones", "O'Brien", "Дмитриев", "ZOË"]
_BIRTHS = ["1980", "1980-05", "1980-05-01", "1980-12-31", "1992-02-29", "2001"]

patient_strategy = st.fixed_dictionaries(
    {
        "family": st.one_of(st.none(), st.sampled_from(_FAMILIES)),
        "given": st.lists(st.sampled_from(["Zoë", "Sam", "Ann-Marie"]), max_size=2),
        "birth": st.one_of(st.none(), st.sampled_from(_BIRTHS)),
        "gender": st.one_of(st.none(), st.sampled_from(["male", "female", "other"])),
    }
)
patient_params = st.one_of(
    st.tuples(
        st.sampled_from(["family", "family:exact", "family:contains", "name", "given", "name:contains"]),
        st.sampled_from(["no", "Ñoño", "ño", "noakes,smith", "o", "дми", "zoe", "ann", "-jones", "O'B"]),
    ),
    st.tuples(
        st.just("birthdate"),
        st.builds(
            lambda p, d: p + d, st.sampled_from(["", *PREFIXES]), st.sampled_from([*_BIRTHS, "1980-06"])
        ),
    ),
    st.tuples(st.sampled_from(["gender", "gender:not"]), st.sampled_from(["male", "female,other"])),
    st.tuples(st.sampled_from(["family:missing", "birthdate:missing"]), st.sampled_from(["true", "false"])),
)


def _patient_body(index: int, spec: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Patient", "id": f"p{index}"}
    name: dict[str, Any] = {}
    if spec["family"]:
        name["family"] = spec["family"]
    if spec["given"]:
        name["given"] = spec["given"]
    if name:
        body["name"] = [name]
    if spec["birth"]:
        body["birthDate"] = spec["birth"]
    if spec["gender"]:
        body["gender"] = spec["gender"]
    return body


def _reference_order(resources: list[dict[str, Any]], sort: str) -> list[str]:
    """FHIR _sort by hand: lowest value ascending / highest descending, missing last, then id."""
    from shared.fhirstore.search import extract_index

    descending = sort.startswith("-")
    name = sort.lstrip("-")

    def key(resource: dict[str, Any]) -> tuple[Any, ...]:
        rows = extract_index(resource)
        if name == "birthdate":
            values = [hi if descending else lo for n, lo, hi in rows.dates if n == name]
        else:
            values = [norm for n, norm, _ in rows.strings if n == name]
        if not values:
            return (1, 0, resource["id"])
        value = max(values) if descending else min(values)
        return (0, value, resource["id"])

    ordered = sorted(resources, key=key)
    if descending:  # descending by value, but missing still last and ids ascending within ties
        present = [r for r in ordered if key(r)[0] == 0]
        missing = [r for r in ordered if key(r)[0] == 1]
        present.sort(key=lambda r: r["id"])
        present.sort(key=lambda r: key(r)[1], reverse=True)
        ordered = present + missing
    return [r["id"] for r in ordered]


@settings(max_examples=40, deadline=None)
@given(
    bodies=st.lists(patient_strategy, min_size=1, max_size=8),
    queries=st.lists(st.lists(patient_params, min_size=1, max_size=2), min_size=1, max_size=5),
    sort=st.sampled_from(["birthdate", "-birthdate", "family", "-family"]),
)
def test_patient_search_and_sort_agree_with_reference(
    bodies: list[dict[str, Any]], queries: list[list[tuple[str, str]]], sort: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteFhirRepository(Path(tmp) / "p.db", clock=StepClock())
        try:
            stored = [
                store.update("Patient", f"p{i}", _patient_body(i, spec)).resource
                for i, spec in enumerate(bodies)
            ]
            for params in queries:
                query = parse_search("Patient", [*params, ("_sort", sort)], count=500, now=AP_NOW)
                expected = [r for r in stored if matches(r, query)]
                with store._reading() as work:
                    found = [r["id"] for r in work.run_search(query).resources]
                assert found == _reference_order(expected, sort), params
        finally:
            store.close()
