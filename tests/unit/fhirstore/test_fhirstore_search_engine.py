"""Search parameter parsing, value semantics and in-memory matching (shared.fhirstore.search)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared.fhirstore.errors import InvalidSearch, UnsupportedResourceType
from shared.fhirstore.search import (
    DEFAULT_COUNT,
    MAX_COUNT,
    NEG_INF,
    POS_INF,
    SEARCH_PARAMETERS,
    SUPPORTED_TYPES,
    DateValue,
    ParamType,
    ReferenceValue,
    TokenValue,
    capabilities,
    date_range,
    extract_index,
    matches,
    normalize_string,
    parse_query_string,
    parse_search,
    split_unescaped,
    to_micros,
    unescape,
)
from tests.unit.fhirstore.fhirstore_fixtures import LOINC, NHS, observation, patient


def us(text: str) -> int:
    return to_micros(datetime.fromisoformat(text))


def stored(
    body: dict[str, Any], rid: str = "r1", last_updated: str = "2024-03-01T09:00:00.000Z"
) -> dict[str, Any]:
    return {**body, "id": rid, "meta": {"versionId": "1", "lastUpdated": last_updated}}


def hit(rtype: str, body: dict[str, Any], params: list[tuple[str, str]], **kw: Any) -> bool:
    return matches(stored(body), parse_search(rtype, params, **kw))


# ------------------------------------------------------------------------------------------ tables


def test_definitions_cover_the_issue_parameters() -> None:
    required = {
        "Patient": {"identifier", "family", "given", "name", "birthdate", "gender"},
        "Encounter": {"identifier", "patient", "subject", "status", "class", "date"},
        "Observation": {"identifier", "patient", "subject", "code", "category", "status", "date"},
        "DiagnosticReport": {"identifier", "patient", "subject", "code", "status", "date"},
        "ServiceRequest": {"identifier", "patient", "subject", "code", "status", "authored"},
        "AllergyIntolerance": {"patient", "code", "clinical-status"},
        "Condition": {"patient", "code", "clinical-status"},
        "MedicationRequest": {"patient", "status", "code"},
        "DocumentReference": {"patient", "type", "status", "date"},
    }
    for rtype, names in required.items():
        assert names | {"_id", "_lastUpdated"} <= set(SEARCH_PARAMETERS[rtype]), rtype
    for rtype in SUPPORTED_TYPES:
        for definition in SEARCH_PARAMETERS[rtype].values():
            assert definition.paths and definition.documentation
            if definition.name == "patient":
                assert definition.type is ParamType.REFERENCE and definition.targets == ("Patient",)


def test_capabilities_lists_every_type_and_parameter() -> None:
    caps = capabilities()
    resources = {r["type"]: r for r in caps["rest"]["resource"]}
    assert set(resources) == set(SUPPORTED_TYPES)
    obs = resources["Observation"]
    assert {p["name"] for p in obs["searchParam"]} == set(SEARCH_PARAMETERS["Observation"])
    assert "Observation:subject" in obs["searchInclude"]
    assert "Observation:patient" in resources["Patient"]["searchRevInclude"]
    assert obs["conditionalCreate"] is True and obs["versioning"] == "versioned-update"
    assert {i["code"] for i in caps["rest"]["interaction"]} == {"transaction", "batch"}
    assert caps["limits"]["maxCount"] == MAX_COUNT


def test_unsupported_type() -> None:
    with pytest.raises(UnsupportedResourceType) as info:
        parse_search("Basic", [])
    assert info.value.http_status == 404 and info.value.issue_code == "not-supported"


# ------------------------------------------------------------------------------------------ escaping


def test_split_and_unescape() -> None:
    assert split_unescaped(r"a,b\,c,d", ",") == ["a", r"b\,c", "d"]
    assert [unescape(p) for p in split_unescaped(r"a\|b|c", "|")] == ["a|b", "c"]
    assert unescape(r"x\\y\$z") == "x\\y$z"


def test_parse_query_string_forms() -> None:
    assert parse_query_string("Patient?identifier=a%7Cb&name=x") == [("identifier", "a|b"), ("name", "x")]
    assert parse_query_string("identifier=a|b") == [("identifier", "a|b")]
    assert parse_query_string("?gender=") == [("gender", "")]


# ------------------------------------------------------------------------------------------ tokens


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("123", TokenValue(None, "123")),
        (f"{NHS}|123", TokenValue(NHS, "123")),
        ("|123", TokenValue("", "123")),
        (f"{NHS}|", TokenValue(NHS, None)),
        (r"a\|b", TokenValue(None, "a|b")),
    ],
)
def test_token_forms(raw: str, expected: TokenValue) -> None:
    query = parse_search("Patient", [("identifier", raw)])
    assert query.criteria[0].values == (expected,)


def test_token_with_two_bars_is_invalid() -> None:
    with pytest.raises(InvalidSearch) as info:
        parse_search("Patient", [("identifier", "a|b|c")])
    assert info.value.parameter == "identifier"


TOKEN_BODY = patient(
    identifier=[
        {"system": NHS, "value": "9000000009"},
        {"value": "LOCAL-7"},
        {"system": "urn:x", "value": "a|b"},
    ]
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("9000000009", True),
        (f"{NHS}|9000000009", True),
        ("urn:other|9000000009", False),
        ("|9000000009", False),
        ("|LOCAL-7", True),
        ("LOCAL-7", True),
        (f"{NHS}|", True),
        ("urn:other|", False),
        (r"a\|b", True),
        (r"urn:x|a\|b", True),
        ("900000000", False),  # tokens are exact, not prefix
        ("nope,LOCAL-7", True),  # OR
    ],
)
def test_token_matching(value: str, expected: bool) -> None:
    assert hit("Patient", TOKEN_BODY, [("identifier", value)]) is expected


def test_token_and_or_not_missing() -> None:
    assert hit("Patient", TOKEN_BODY, [("identifier", "LOCAL-7"), ("identifier", "9000000009")])
    assert not hit("Patient", TOKEN_BODY, [("identifier", "LOCAL-7"), ("identifier", "other")])
    assert hit("Patient", TOKEN_BODY, [("gender:not", "male")])
    assert not hit("Patient", TOKEN_BODY, [("gender:not", "female")])
    assert not hit("Patient", TOKEN_BODY, [("gender:not", "male,female")])
    assert hit("Patient", TOKEN_BODY, [("general-practitioner:missing", "true")])
    assert not hit("Patient", TOKEN_BODY, [("gender:missing", "true")])
    assert hit("Patient", TOKEN_BODY, [("gender:missing", "false")])


def test_token_kinds_codeable_concept_coding_code_boolean() -> None:
    obs = observation("p1", category=[{"coding": [{"system": "http://cat", "code": "vital-signs"}]}])
    assert hit("Observation", obs, [("code", f"{LOINC}|8867-4")])
    assert hit("Observation", obs, [("category", "vital-signs")])
    assert hit("Observation", obs, [("status", "final")])
    enc = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://cls", "code": "IMP"},
    }
    assert hit("Encounter", enc, [("class", "http://cls|IMP")])
    org = {"resourceType": "Organization", "active": True, "name": "Acme"}
    assert hit("Organization", org, [("active", "true")]) and not hit(
        "Organization", org, [("active", "false")]
    )


def test_id_and_last_updated_common_parameters() -> None:
    body = patient()
    assert hit("Patient", body, [("_id", "r1")]) and hit("Patient", body, [("_id", "x,r1")])
    assert not hit("Patient", body, [("_id", "r2")])
    assert hit("Patient", body, [("_lastUpdated", "2024-03-01")])
    assert hit("Patient", body, [("_lastUpdated", "gt2024-02-29")])
    assert not hit("Patient", body, [("_lastUpdated", "lt2024-03-01")])


# ------------------------------------------------------------------------------------------ dates


@pytest.mark.parametrize(
    ("text", "lo", "hi"),
    [
        ("2020", "2020-01-01T00:00:00+00:00", "2021-01-01T00:00:00+00:00"),
        ("2020-02", "2020-02-01T00:00:00+00:00", "2020-03-01T00:00:00+00:00"),
        ("2020-12", "2020-12-01T00:00:00+00:00", "2021-01-01T00:00:00+00:00"),
        ("2024-02-29", "2024-02-29T00:00:00+00:00", "2024-03-01T00:00:00+00:00"),
        ("2020-06-15T10:30", "2020-06-15T10:30:00+00:00", "2020-06-15T10:31:00+00:00"),
        ("2020-06-15T10:30:05Z", "2020-06-15T10:30:05+00:00", "2020-06-15T10:30:06+00:00"),
        ("2020-06-15T10:30:05.12Z", "2020-06-15T10:30:05.120000+00:00", "2020-06-15T10:30:05.130000+00:00"),
        ("2020-06-15T10:30:05+01:00", "2020-06-15T09:30:05+00:00", "2020-06-15T09:30:06+00:00"),
        (
            "2020-06-15T10:30:05 01:00",
            "2020-06-15T09:30:05+00:00",
            "2020-06-15T09:30:06+00:00",
        ),  # '+' as space
        ("2020-06-15T10:30:05-05:00", "2020-06-15T15:30:05+00:00", "2020-06-15T15:30:06+00:00"),
    ],
)
def test_date_precision_sets_the_range(text: str, lo: str, hi: str) -> None:
    assert date_range(text) == (us(lo), us(hi))


def test_date_range_extremes() -> None:
    lo, hi = date_range("9999") or (0, 0)
    assert hi == POS_INF and lo == us("9999-01-01T00:00:00+00:00")


@pytest.mark.parametrize(
    "text", ["2020-13", "2020-02-30", "20", "2020-06-15T25:00", "yesterday", "2020-06-15T10:30+15:00"]
)
def test_invalid_dates(text: str) -> None:
    assert date_range(text) is None
    with pytest.raises(InvalidSearch) as info:
        parse_search("Patient", [("birthdate", f"ge{text}")])
    assert info.value.parameter == "birthdate" and info.value.http_status == 400


def test_invalid_date_error_text_has_no_value() -> None:
    with pytest.raises(InvalidSearch) as info:
        parse_search("Patient", [("birthdate", "9000000009")])
    assert "9000000009" not in str(info.value)


#: Search value P = the day 2020-06-15; resource values and the prefixes each one satisfies, worked out by
#: hand from the FHIR R4 definitions (search.html#prefix) with R and P as ranges.
DATE_CASES: dict[str, tuple[Any, set[str]]] = {
    "instant-in-day": ("2020-06-15T10:00:00Z", {"eq", "ge", "le", "ap"}),
    "day-before": ("2020-06-14", {"ne", "lt", "le", "eb", "ap"}),
    "day-after": ("2020-06-16", {"ne", "gt", "ge", "sa", "ap"}),
    "period-overlapping-start": (
        {"start": "2020-06-14T12:00:00Z", "end": "2020-06-15T12:00:00Z"},
        {"ne", "lt", "le", "ap"},
    ),
    "period-ending-with-the-day": ({"start": "2020-06-01", "end": "2020-06-15"}, {"ne", "lt", "le", "ap"}),
    "period-spanning": ({"start": "2020-06-01", "end": "2020-06-30"}, {"ne", "gt", "lt", "ge", "le", "ap"}),
    "open-ended-after": ({"start": "2020-06-16"}, {"ne", "gt", "ge", "sa", "ap"}),
    "open-start-before": ({"end": "2020-06-10"}, {"ne", "lt", "le", "eb"}),
    "far-after": ("2020-06-20", {"ne", "gt", "ge", "sa"}),
}
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
#: ``ap`` widens P by 10% of its distance from "now": 10 days -> one day either side.
AP_NOW = datetime(2020, 6, 25, tzinfo=UTC)


@pytest.mark.parametrize("case", sorted(DATE_CASES))
@pytest.mark.parametrize("prefix", PREFIXES)
def test_date_prefix_semantics(case: str, prefix: str) -> None:
    value, expected = DATE_CASES[case]
    body = observation("p1", effective=value)
    assert hit("Observation", body, [("date", f"{prefix}2020-06-15")], now=AP_NOW) is (prefix in expected)


def test_ap_widening_uses_distance_from_now() -> None:
    query = parse_search("Observation", [("date", "ap2020-06-15")], now=AP_NOW)
    value = query.criteria[0].values[0]
    assert isinstance(value, DateValue)
    assert value.lo == us("2020-06-14T00:00:00+00:00")
    assert (
        value.hi
        == us("2020-06-16T00:00:00+00:00")
        + (us("2020-06-25T00:00:00+00:00") - us("2020-06-16T00:00:00+00:00")) // 10
    )


def test_partial_date_searches_against_a_birth_date() -> None:
    body = patient(birth="1980-05-01")
    assert hit("Patient", body, [("birthdate", "1980")])
    assert hit("Patient", body, [("birthdate", "1980-05")])
    assert not hit("Patient", body, [("birthdate", "1980-06")])
    assert hit("Patient", body, [("birthdate", "ge1980-05-01"), ("birthdate", "le1980-05-01")])
    assert hit("Patient", body, [("birthdate", "gt1979"), ("birthdate", "lt1981")])
    assert not hit("Patient", body, [("birthdate", "gt1980")])  # the day is inside 1980, not after it
    assert hit("Patient", body, [("birthdate", "1970,1980")])


def test_inverted_period_is_indexed_as_the_span_of_its_bounds() -> None:
    rows = extract_index(observation("p1", effective={"start": "2021-01-01", "end": "2020"}))
    assert rows.dates == [("date", us("2020-01-01T00:00:00+00:00"), us("2021-01-02T00:00:00+00:00"))]


def test_open_period_index_bounds() -> None:
    rows = extract_index(observation("p1", effective={"start": "2020-06-16"}))
    assert ("date", us("2020-06-16T00:00:00+00:00"), POS_INF) in rows.dates
    rows = extract_index(observation("p1", effective={"end": "2020-06-16"}))
    assert ("date", NEG_INF, us("2020-06-17T00:00:00+00:00")) in rows.dates


# ------------------------------------------------------------------------------------------ references


@pytest.mark.parametrize(
    ("param", "value", "expected"),
    [
        ("subject", "Patient/p1", ReferenceValue("Patient", "p1")),
        ("subject", "p1", ReferenceValue(None, "p1")),
        ("patient", "p1", ReferenceValue("Patient", "p1")),
        ("subject:Patient", "p1", ReferenceValue("Patient", "p1")),
        ("subject", "https://elsewhere.example/fhir/Patient/p1", ReferenceValue("Patient", "p1")),
        ("subject", "Patient/p1/_history/3", ReferenceValue("Patient", "p1")),
    ],
)
def test_reference_forms(param: str, value: str, expected: ReferenceValue) -> None:
    query = parse_search("Observation", [(param, value)])
    assert query.criteria[0].values == (expected,)
    assert hit("Observation", observation("p1"), [(param, value)])


def test_reference_matching_respects_type_and_absolute_refs() -> None:
    absolute = observation("x", subject={"reference": "https://tie.example/fhir/Patient/p9/_history/2"})
    assert hit("Observation", absolute, [("patient", "p9")])
    group = observation("x", subject={"reference": "Group/p1"})
    assert hit("Observation", group, [("subject", "p1")])
    assert not hit("Observation", group, [("patient", "p1")])  # patient = subject restricted to Patient
    assert not hit("Observation", observation("p1"), [("subject", "Group/p1")])
    contained = observation("x", subject={"reference": "#p1"})
    assert not hit("Observation", contained, [("subject", "p1")])
    assert hit("Observation", contained, [("subject:missing", "true")])


def test_reference_errors() -> None:
    with pytest.raises(InvalidSearch):
        parse_search("Observation", [("subject", "not an id!")])
    with pytest.raises(InvalidSearch):
        parse_search("Observation", [("subject:Patient", "Group/1")])
    with pytest.raises(InvalidSearch):
        parse_search("Observation", [("patient:Group", "1")])


# ------------------------------------------------------------------------------------------ strings


def test_normalize_string() -> None:
    assert normalize_string("  Zoë  ÑOÑO ") == "zoe nono"
    assert normalize_string("Straße") == "strasse"


@pytest.mark.parametrize(
    ("param", "value", "expected"),
    [
        ("family", "nono", True),
        ("family", "NO", True),
        ("family", "ñoñ", True),
        ("family", "ono", False),
        ("family:contains", "ono", True),
        ("family:contains", "xyz", False),
        ("family:exact", "Ñoño", True),
        ("family:exact", "ñoño", False),
        ("family:exact", "Ñoñ", False),
        ("given", "zo", True),
        ("name", "zoe", True),
        ("name", "non", True),
        ("name", "dr", True),
        ("given", "non", False),
        ("family", "x,no", True),
    ],
)
def test_string_matching(param: str, value: str, expected: bool) -> None:
    body = patient(family="Ñoño", given="Zoë")
    body["name"][0]["prefix"] = ["Dr"]
    assert hit("Patient", body, [(param, value)]) is expected


# ------------------------------------------------------------------------------------------ parameters


def test_unknown_parameter_strict_and_lenient() -> None:
    with pytest.raises(InvalidSearch) as info:
        parse_search("Patient", [("favourite-colour", "blue")])
    assert info.value.parameter == "favourite-colour" and "blue" not in str(info.value)
    query = parse_search(
        "Patient", [("favourite-colour", "blue"), ("subject.name", "x"), ("gender", "male")], strict=False
    )
    assert query.ignored == ("favourite-colour", "subject.name")
    assert len(query.criteria) == 1


def test_modifier_and_value_errors_raise_even_when_lenient() -> None:
    with pytest.raises(InvalidSearch):
        parse_search("Patient", [("family:text", "x")], strict=False)
    with pytest.raises(InvalidSearch):
        parse_search("Patient", [("gender:missing", "maybe")], strict=False)
    with pytest.raises(InvalidSearch):
        parse_search("Patient", [("_id:not", "x")])


def test_empty_values_are_ignored() -> None:
    query = parse_search("Patient", [("gender", ""), ("family", "x")])
    assert [c.param.name for c in query.criteria] == ["family"]


@pytest.mark.parametrize(
    ("params", "kw", "count", "offset"),
    [
        ([], {}, DEFAULT_COUNT, 0),
        ([("_count", "5"), ("_offset", "10")], {}, 5, 10),
        ([("_count", "5000")], {}, MAX_COUNT, 0),
        ([("_count", "5")], {"count": 7, "offset": 3}, 7, 3),
        ([("_summary", "count")], {}, 0, 0),
    ],
)
def test_count_and_offset(params: list[tuple[str, str]], kw: dict[str, Any], count: int, offset: int) -> None:
    query = parse_search("Patient", params, **kw)
    assert (query.count, query.offset) == (count, offset)


@pytest.mark.parametrize("bad", [("_count", "-1"), ("_count", "ten"), ("_offset", "x"), ("_total", "maybe")])
def test_bad_result_parameters(bad: tuple[str, str]) -> None:
    with pytest.raises(InvalidSearch) as info:
        parse_search("Patient", [bad])
    assert info.value.parameter == bad[0]


def test_sort_include_total_parsing() -> None:
    query = parse_search(
        "Observation",
        [("_sort", "-date,_lastUpdated"), ("_include", "Observation:subject"), ("_total", "none")],
    )
    assert [(k.param, k.descending) for k in query.sort] == [("date", True), ("_lastUpdated", False)]
    assert query.includes[0].param == "subject" and not query.includes[0].reverse
    assert query.total is False
    assert ("_sort", "-date,_lastUpdated") in query.params and (
        "_include",
        "Observation:subject",
    ) in query.params
    for bad in [
        ("_sort", "subject"),
        ("_include", "Patient:general-practitioner"),
        ("_include", "Observation:code"),
        ("_include:iterate", "Observation:subject"),
        ("_revinclude", "Nope:subject"),
    ]:
        with pytest.raises(InvalidSearch):
            parse_search("Observation", [bad])
    rev = parse_search("Patient", [("_revinclude", "Observation:patient")])
    assert rev.includes[0].reverse and rev.includes[0].source_type == "Observation"


def test_presentation_parameters_are_accepted() -> None:
    query = parse_search(
        "Patient", [("_elements", "id"), ("_format", "json"), ("_pretty", "true"), ("_summary", "true")]
    )
    assert not query.criteria and not query.ignored and query.count == DEFAULT_COUNT


# ------------------------------------------------------------------------------------------ extraction


def test_extract_index_rows() -> None:
    body = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": "https://dmd", "code": "123"}, {"system": "https://dmd", "code": "123"}]
        },
        "subject": {"reference": "Patient/p1"},
        "authoredOn": "2024-01-02",
        "meta": {"profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-MedicationRequest"]},
    }
    rows = extract_index(body)
    assert ("code", "https://dmd", "123") in rows.tokens
    assert rows.tokens.count(("code", "https://dmd", "123")) == 1
    assert ("patient", "Patient", "p1") in rows.references and ("subject", "Patient", "p1") in rows.references
    assert (
        "_profile",
        None,
        "https://fhir.hl7.org.uk/StructureDefinition/UKCore-MedicationRequest",
    ) in rows.tokens
    assert [d[0] for d in rows.dates] == ["authoredon"]


def test_extraction_skips_uninterpretable_values() -> None:
    body = observation("p1", effective="not a date")
    body["subject"] = {"reference": "urn:uuid:0f3c"}
    rows = extract_index(body)
    assert not rows.dates and not rows.references
