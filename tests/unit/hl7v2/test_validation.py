from __future__ import annotations

from pathlib import Path

import pytest

from shared.hl7v2 import Hl7ParseError, Message, iter_messages, parse_message
from shared.hl7v2.structures import SUPPORTED_EVENTS
from shared.hl7v2.validation import Issue, ValidationResult, validate

CORPORA = Path(__file__).resolve().parents[3] / ".." / "shared" / "corpora"

# Distinctive "patient data" used to prove that no issue text echoes field values.
NAME = "ZEBEDEE^QUIXOTE"
GOOD_NHS = "9434765919"
BAD_NHS = "9434765918"


def _msh(
    event: str = "ADT^A01",
    *,
    version: str = "2.5.1",
    processing: str = "P",
    control_id: str = "CTRL0001",
    msh7: str = "20240305101500",
    accept: str = "",
    application: str = "",
) -> str:
    return (
        f"MSH|^~\\&|PAS|RXX|TIE|TRUST|{msh7}||{event}|{control_id}|{processing}|{version}"
        f"|||{accept}|{application}"
    )


def _pid(
    identifiers: str = f"{GOOD_NHS}^^^NHS^NH~H123^^^RXX^MR", *, dob: str = "19800101", sex: str = "F"
) -> str:
    return f"PID|1||{identifiers}||{NAME}||{dob}|{sex}"


EVN = "EVN|A01|20240305101500"
PV1 = "PV1|1|I|WARD1^BED2"


def _message(*segments: str) -> Message:
    return parse_message("\r".join(segments) + "\r")


def _codes(result: ValidationResult, severity: str = "E") -> list[tuple[str, str | None, int | None]]:
    return [(i.code, i.segment, i.field) for i in result.issues if i.severity == severity]


# --- clean messages for every supported trigger -----------------------------------------------------

MINIMAL_BODIES = {
    "ADT^A01": [EVN, _pid(), PV1],
    "ADT^A02": [EVN, _pid(), PV1],
    "ADT^A03": [EVN, _pid(), PV1],
    "ADT^A04": [EVN, _pid(), PV1],
    "ADT^A05": [EVN, _pid(), PV1],
    "ADT^A08": [EVN, _pid(), PV1],
    "ADT^A11": [EVN, _pid(), PV1],
    "ADT^A12": [EVN, _pid(), PV1],
    "ADT^A13": [EVN, _pid(), PV1],
    "ADT^A28": [EVN, _pid(), PV1],
    "ADT^A31": [EVN, _pid(), PV1],
    "ADT^A40": [EVN, _pid(), "MRG|H999^^^RXX^MR"],
    "ORU^R01": [
        _pid(),
        "OBR|1||LAB1|FBC^Full blood count^L",
        "OBX|1|NM|HB^Haemoglobin^L|1|135|g/L|||||F",  # OBX-4 sub-id: required by the v2.8 definitions
    ],
    "ORM^O01": [_pid(), "ORC|NW|ORD1", "OBR|1|ORD1||FBC^Full blood count^L"],
}


def test_every_supported_event_has_a_minimal_example() -> None:
    assert set(MINIMAL_BODIES) == SUPPORTED_EVENTS


@pytest.mark.parametrize("version", ["2.3", "2.4", "2.5.1", "2.8"])
@pytest.mark.parametrize("event", sorted(MINIMAL_BODIES))
def test_minimal_valid_messages_are_accepted(event: str, version: str) -> None:
    result = validate(_message(_msh(event, version=version), *MINIMAL_BODIES[event]))
    assert result.errors == (), [(i.code, i.location, i.text) for i in result.errors]
    if version != "2.3":  # v2.3 definitions mark ORC-7/OBR-27 required: warnings only
        assert result.issues == (), [(i.code, i.location, i.text) for i in result.issues]
    assert result.ok
    assert not result.reject
    assert result.ack_code == "AA"
    assert result.structure_id is not None
    assert (result.message_type, result.trigger_event) == tuple(event.split("^"))


def test_structure_and_definitions_reported() -> None:
    result = validate(_message(_msh("ADT^A28", version="2.8.2"), EVN, _pid(), PV1))
    assert result.structure_id == "ADT_A05"
    assert result.definitions_version == "2.8"
    old = validate(_message(_msh("ADT^A28", version="2.3"), EVN, _pid(), PV1))
    assert old.structure_id == "ADT_A01"


def test_ack_message_is_supported_with_any_trigger() -> None:
    result = validate(_message(_msh("ACK^A01"), "MSA|AA|CTRL9"))
    assert result.ok
    assert result.structure_id == "ACK"
    bare = validate(_message(_msh("ACK"), "MSA|AE|CTRL9"))
    assert bare.ok
    bad = validate(_message(_msh("ACK"), "MSA|ZZ|CTRL9"))
    assert _codes(bad) == [("103", "MSA", 1)]


# --- header -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "code", "component"),
    [
        ("SIU^S12", "200", 1),
        ("ZZZ^Z01", "200", 1),
        ("ADT^A17", "201", 2),
        ("ORU^R30", "201", 2),
        ("ADT", "201", 2),
        ("", "200", 1),
    ],
)
def test_unsupported_type_or_event_is_rejected(event: str, code: str, component: int) -> None:
    result = validate(_message(_msh(event), EVN, _pid(), PV1))
    assert [(i.code, i.segment, i.field, i.component) for i in result.errors] == [(code, "MSH", 9, component)]
    assert result.reject
    assert result.ack_code == "AR"
    assert result.structure_id is None


def test_message_type_tolerates_padding() -> None:
    assert validate(_message(_msh("ADT^A01 "), EVN, _pid(), PV1)).ok


@pytest.mark.parametrize("version", ["3.0", "2", "v2.5", "abc", ""])
def test_unsupported_version(version: str) -> None:
    result = validate(_message(_msh(version=version), EVN, _pid(), PV1))
    assert ("203", "MSH", 12) in _codes(result)
    assert result.reject


@pytest.mark.parametrize("version", ["2.1", "2.2", "2.3.1", "2.5", "2.6", "2.7", "2.7.1", "2.8.2", "2.9"])
def test_any_v2_version_is_accepted(version: str) -> None:
    assert validate(_message(_msh(version=version), EVN, _pid(), PV1)).ok


def test_version_with_components_uses_first_component() -> None:
    assert validate(_message(_msh(version="2.4^GBR^2.16.840.1"), EVN, _pid(), PV1)).ok


def test_processing_id_table_and_accepted_set() -> None:
    bad = validate(_message(_msh(processing="X"), EVN, _pid(), PV1))
    assert _codes(bad) == [("103", "MSH", 11)]
    assert bad.reject
    training = _message(_msh(processing="T^A"), EVN, _pid(), PV1)
    assert validate(training).ok
    production_only = validate(training, accepted_processing_ids={"P"})
    assert _codes(production_only) == [("202", "MSH", 11)]
    assert production_only.reject
    missing = validate(_message(_msh(processing=""), EVN, _pid(), PV1))
    assert _codes(missing) == [("101", "MSH", 11)]
    assert missing.reject


@pytest.mark.parametrize(("accept", "application"), [("XX", ""), ("", "YES")])
def test_ack_conditions_checked_against_table_0155(accept: str, application: str) -> None:
    result = validate(_message(_msh(accept=accept, application=application), EVN, _pid(), PV1))
    assert [i.code for i in result.errors] == ["103"]
    assert result.reject


def test_missing_control_id_rejects() -> None:
    result = validate(_message(_msh(control_id=""), EVN, _pid(), PV1))
    assert _codes(result) == [("101", "MSH", 10)]
    assert result.reject


def test_bad_msh7_is_a_content_error_not_a_rejection() -> None:
    result = validate(_message(_msh(msh7="20241301"), EVN, _pid(), PV1))
    assert _codes(result) == [("102", "MSH", 7)]
    assert not result.reject
    assert result.ack_code == "AE"


# --- structure --------------------------------------------------------------------------------------


def test_missing_required_segment_rejects() -> None:
    result = validate(_message(_msh(), _pid(), PV1))
    assert _codes(result) == [("100", "EVN", None)]
    assert result.errors[0].segment_index is None
    assert "EVN" in result.errors[0].text
    assert result.reject
    assert result.ack_code == "AR"


def test_out_of_order_segment_located() -> None:
    result = validate(_message(_msh(), EVN, PV1, _pid()))
    positioned = [i for i in result.errors if i.segment_index is not None]
    assert [(i.code, i.segment, i.segment_index, i.occurrence) for i in positioned] == [("100", "PID", 4, 1)]
    assert result.reject


def test_cardinality_exceeded() -> None:
    result = validate(_message(_msh(), EVN, _pid(), PV1, PV1))
    assert [(i.code, i.segment, i.segment_index, i.occurrence) for i in result.errors] == [
        ("100", "PV1", 5, 2)
    ]
    assert result.reject


def test_z_segments_and_unknown_segments_only_warn() -> None:
    result = validate(_message(_msh(), EVN, _pid(), "ZPI|1|x", PV1, "ZPV|A", "QRD|bad|fields"))
    assert result.ok
    assert result.ack_code == "AA"
    assert [(i.severity, i.code, i.segment) for i in result.issues] == [
        ("W", "100", "ZPI"),
        ("W", "100", "ZPV"),
        ("W", "100", "QRD"),
    ]


def test_ignored_segments_are_not_field_checked() -> None:
    # An OBR has no place in an ADT^A01: it is ignored, so its empty required fields are not reported.
    result = validate(_message(_msh(), EVN, _pid(), PV1, "OBR|ABC"))
    assert [(i.severity, i.segment) for i in result.issues] == [("W", "OBR")]


def test_misplaced_nte_is_a_warning() -> None:
    result = validate(
        _message(_msh("ORM^O01"), _pid(), "ORC|NW|ORD1", "NTE|1||note", "OBR|1|ORD1||FBC^FBC^L")
    )
    assert result.ok
    assert [(i.severity, i.code, i.segment) for i in result.issues] == [("W", "100", "NTE")]


# --- fields -----------------------------------------------------------------------------------------


def test_essential_required_field_missing_is_an_error() -> None:
    result = validate(_message(_msh(), EVN, "PID|1||||ZEBEDEE^QUIXOTE", PV1))
    assert _codes(result) == [("101", "PID", 3)]
    assert not result.reject
    assert result.ack_code == "AE"


def test_other_required_fields_missing_are_warnings() -> None:
    result = validate(_message(_msh(), "EVN|A01", _pid(), "PV1|1"))
    assert result.ok
    assert _codes(result, "W") == [("101", "EVN", 2), ("101", "PV1", 2)]


def test_whitespace_only_required_field_counts_as_missing() -> None:
    result = validate(_message(_msh(), EVN, "PID|1||   ||ZEBEDEE^QUIXOTE", PV1))
    assert _codes(result) == [("101", "PID", 3)]


def test_hl7_null_counts_as_present_and_is_not_type_checked() -> None:
    result = validate(_message(_msh(), EVN, f'PID|1||{GOOD_NHS}^^^NHS^NH||{NAME}||""|F', PV1))
    assert result.issues == ()


@pytest.mark.parametrize(
    ("segment", "field"),
    [
        (_pid(dob="19801301"), 7),  # TS: month 13
        (_pid(dob="1980-01-01"), 7),
        ("PID|1||H123^^^RXX^MR||ZEBEDEE^QUIXOTE" + "|" * 20 + "2x", 25),  # NM birth order
        ("PID|A||H123^^^RXX^MR||ZEBEDEE^QUIXOTE", 1),  # SI
    ],
)
def test_data_type_errors(segment: str, field: int) -> None:
    result = validate(_message(_msh(), EVN, segment, PV1))
    assert [(i.code, i.segment, i.field, i.repetition, i.component) for i in result.errors] == [
        ("102", "PID", field, 1, 1)
    ]
    assert result.ack_code == "AE"


def test_data_type_error_in_a_later_repetition() -> None:
    result = validate(_message(_msh(), EVN, _pid(), "PV1|1|I" + "|" * 43 + "20240101~2024AB"))
    assert [(i.code, i.field, i.repetition) for i in result.errors] == [("102", 45, 2)]


def test_ts_checks_component_one_only() -> None:
    result = validate(_message(_msh(), EVN, _pid(dob="19800101^D"), PV1))
    assert result.issues == ()


def test_obx5_mismatch_is_a_warning() -> None:
    result = validate(
        _message(
            _msh("ORU^R01"),
            _pid(),
            "OBR|1||LAB1|FBC^FBC^L",
            "OBX|1|NM|HB^Hb^L||<5|g/L|||||F",
            "OBX|2|ST|CMT^Comment^L||<5||||||F",
        )
    )
    assert result.ok
    assert [(i.severity, i.code, i.segment, i.segment_index, i.field) for i in result.issues] == [
        ("W", "102", "OBX", 4, 5)
    ]


@pytest.mark.parametrize(
    ("version", "sex", "ok"), [("2.5.1", "N", True), ("2.3", "N", False), ("2.5.1", "X", False)]
)
def test_administrative_sex_table(version: str, sex: str, ok: bool) -> None:
    result = validate(_message(_msh(version=version), EVN, _pid(sex=sex), PV1))
    assert result.ok is ok
    if not ok:
        assert _codes(result) == [("103", "PID", 8)]
        assert "0001" in result.errors[0].text


# --- NHS numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "identifiers",
    [
        f"{GOOD_NHS}^^^NHS^NH",
        f"{GOOD_NHS}^^^NHS^HN",
        f"{GOOD_NHS}^^^NHS",
        "943 476 5919^^^NHS^NH",
        f"{GOOD_NHS}^^^&2.16.840.1.113883.2.1.4.1&ISO^NH",
        f"{GOOD_NHS}^^^^NH",
        f"{BAD_NHS}^^^RXX^MR",  # not asserted as an NHS number: not checked
        f"{BAD_NHS}^^^NHSFT^NH",  # another authority with type NH: not asserted
    ],
)
def test_nhs_numbers_accepted(identifiers: str) -> None:
    assert validate(_message(_msh(), EVN, _pid(identifiers), PV1)).issues == ()


@pytest.mark.parametrize(
    ("identifiers", "repetition"),
    [
        (f"{BAD_NHS}^^^NHS^NH", 1),
        (f"H123^^^RXX^MR~{BAD_NHS}^^^NHS^NH", 2),
        (f"H123^^^RXX^MR~H9^^^RXX^PI~{BAD_NHS}^^^NHS^HN", 3),
        (f"{BAD_NHS}^^^&2.16.840.1.113883.2.1.4.1&ISO^NH", 1),
        (f"{BAD_NHS}^^^^NH", 1),
        ("94347659^^^NHS^NH", 1),  # too short
        ("943476591X^^^NHS^NH", 1),
    ],
)
def test_invalid_nhs_number_reported_at_its_repetition(identifiers: str, repetition: int) -> None:
    result = validate(_message(_msh(), EVN, _pid(identifiers), PV1))
    assert len(result.errors) == 1
    issue = result.errors[0]
    assert (
        issue.code,
        issue.segment,
        issue.segment_index,
        issue.field,
        issue.repetition,
        issue.component,
    ) == (
        "102",
        "PID",
        3,
        3,
        repetition,
        1,
    )
    assert issue.text == "NHS number fails Modulus 11 check"
    assert not result.reject
    assert result.ack_code == "AE"


def test_nhs_identifier_without_number() -> None:
    result = validate(_message(_msh(), EVN, _pid("H1^^^RXX^MR~^^^NHS^NH"), PV1))
    assert [(i.code, i.field, i.repetition) for i in result.errors] == [("101", 3, 2)]


def test_nhs_number_in_pid2_and_mrg1() -> None:
    result = validate(
        _message(
            _msh("ADT^A40"),
            EVN,
            f"PID|1|{BAD_NHS}^^^NHS^NH|H1^^^RXX^MR||{NAME}",
            f"MRG|H2^^^RXX^MR~{BAD_NHS}^^^NHS^NH",
        )
    )
    assert [(i.segment, i.field, i.repetition) for i in result.errors] == [("PID", 2, 1), ("MRG", 1, 2)]


def test_repeated_digit_nhs_number_is_a_warning() -> None:
    result = validate(_message(_msh(), EVN, _pid("9999999999^^^NHS^HN"), PV1))
    assert result.ok
    assert [(i.severity, i.code, i.field) for i in result.issues] == [("W", "102", 3)]


def test_issue_texts_never_contain_patient_data() -> None:
    message = _message(
        _msh(msh7="2024XX"),
        "EVN|A01|NOTADATE",
        f"PID|ABC|{BAD_NHS}^^^NHS^NH|{BAD_NHS}^^^NHS^NH~7777^^^NHS^NH||{NAME}||31/12/1999|QQ",
        "PV1|1|I" + "|" * 43 + "20240101~YESTERDAY",
        "PV1|2|I",
        "ZZZ|secret",
    )
    result = validate(message)
    assert len(result.errors) >= 8
    forbidden = [
        BAD_NHS,
        "7777",
        "ZEBEDEE",
        "QUIXOTE",
        "31/12/1999",
        "QQ",
        "YESTERDAY",
        "NOTADATE",
        "2024XX",
        "ABC",
    ]
    for issue in result.issues:
        for value in forbidden:
            assert value not in issue.text, (value, issue.text)


# --- result object ----------------------------------------------------------------------------------


def test_max_issues_truncates() -> None:
    obx = [f"OBX|{n}|NM|HB^Hb^L||bad{n}|g/L|||||F" for n in range(1, 30)]
    message = _message(_msh("ORU^R01"), _pid(dob="1980XX"), "OBR|1||LAB1|FBC^FBC^L", *obx)
    result = validate(message, max_issues=5)
    assert len(result.issues) == 5
    assert result.truncated
    assert not validate(message).truncated


def test_issue_location_and_occurrence() -> None:
    message = _message(
        _msh("ORU^R01"),
        _pid(),
        "OBR|1||LAB1|FBC^FBC^L",
        "OBX|1|NM|HB^Hb^L||1|g/L|||||F",
        "OBX|2|NM|HB^Hb^L||2|g/L|||||F|||2024BAD",
    )
    (issue,) = validate(message).errors
    assert (issue.segment, issue.segment_index, issue.occurrence, issue.field, issue.repetition) == (
        "OBX",
        5,
        2,
        14,
        1,
    )
    assert issue.location == "OBX[2]-14[1].1"
    assert Issue("E", "100", "EVN", text="x").location == "EVN"
    assert Issue("E", "200").location == ""


def test_result_properties() -> None:
    warning = Issue("W", "100", "ZPD", 3, text="w")
    content = Issue("E", "102", "PID", 3, 7, 1, "c")
    structural = Issue("E", "100", "PID", 4, text="s")
    header = Issue("E", "101", "MSH", 1, 10, text="h")
    header_content = Issue("E", "102", "MSH", 1, 7, 1, "t")
    assert ValidationResult((warning,)).ack_code == "AA"
    assert ValidationResult((warning, content)).ack_code == "AE"
    assert ValidationResult((content, structural)).ack_code == "AR"
    assert ValidationResult((header,)).reject
    assert not ValidationResult((header_content,)).reject
    result = ValidationResult((warning, content, structural))
    assert result.errors == (content, structural)
    assert result.warnings == (warning,)
    assert not result.ok


def test_validate_is_deterministic() -> None:
    message = _message(_msh(), EVN, _pid(BAD_NHS + "^^^NHS^NH", dob="bad"), PV1, PV1)
    assert validate(message) == validate(message)


# --- corpora ----------------------------------------------------------------------------------------

CORPUS_GLOBS = (
    "fhir-converter/data/SampleData/Hl7v2/*.hl7",
    "pipehat/samples/*.hl7",
    "nw-gmsa-nhs-genomics/Specifications/*/*.txt",
    "uclh-emap/hl7-reader/src/test/resources/**/*.txt",
)

#: Corpus files the parser rejects (not a validation outcome; listed so a change is noticed).
EXPECTED_PARSE_FAILURES = {
    # A line break inside RXA-5 splits the segment, so line 11 does not start with a segment ID.
    "pipehat/samples/sample-v2.5.1-rsp-k11-1.hl7",
}

#: Messages of a supported type that do not validate cleanly: (ack code, sorted error codes, reason).
#: Messages whose type/trigger is not supported (SIU, MDM, VXU, OML, ADT^A17, ...) are not listed:
#: they must be rejected with exactly one 200/201 error (checked generically below).
EXPECTED_FAILURES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "fhir-converter/data/SampleData/Hl7v2/ADT01-23.hl7": (
        "AR",
        ("100",),
        "DG1 is sent after GT1; ADT_A01 (v2.3) places DG1 before DRG/PR1/GT1",
    ),
    "fhir-converter/data/SampleData/Hl7v2/ADT04-251.hl7": (
        "AR",
        ("100",),
        "ADT^A04 without the required EVN segment",
    ),
    "fhir-converter/data/SampleData/Hl7v2/ADT-A13-02.hl7": (
        "AE",
        ("102",),
        "PV1-46 is NM (current patient balance) but holds a date-time",
    ),
    "fhir-converter/data/SampleData/Hl7v2/ORM-O01-01.hl7": (
        "AE",
        ("102",),
        "ORC-15 has month 20 (2010-20-12)",
    ),
    "fhir-converter/data/SampleData/Hl7v2/ORM-O01-05.hl7": (
        "AR",
        ("100",),
        "RQD and RQ1 in one order detail: ORM_O01 allows exactly one of OBR/RQD/RQ1/RXO/ODS/ODT",
    ),
    "fhir-converter/data/SampleData/Hl7v2/ORU-R01-01.hl7": (
        "AR",
        ("100", "100", "100", "101"),
        "declares v2.5.1 but uses the v2.8 layout (OBX/PRT under the patient, TXA order document);"
        " the second OBX has no OBX-3",
    ),
    "pipehat/samples/sample-v2.3-oru-r01-1.hl7": ("AE", ("102",), "PID-7 is 00000000 (month 00)"),
    "pipehat/samples/sample-v2.3-oru-r01-3.hl7": ("AE", ("102",), "PID-7 is not a date (99/99/9999 form)"),
    "pipehat/samples/sample-v2.3.1-oru-r01-1.hl7": (
        "AR",
        ("100", "101"),
        "ORU^R01 with only MSH and PID: no OBR, and PID-3 empty",
    ),
    "pipehat/samples/sample-v2.4-oru-r01-2.hl7": ("AE", ("102",), "PID-7 has 9 digits"),
    "pipehat/samples/sample-v2.5.1-oru-r01-1.hl7": (
        "AE",
        ("102",) * 14,
        "MSH-7 has 5 fractional digits (max 4); OBR-7 and OBX-19 have 16 digits; OBR-22 has hour 30",
    ),
    "pipehat/samples/sample-v2.8-oru-r01-1.hl7": ("AE", ("102",), "PID-7 has 9 digits"),
    "uclh-emap/hl7-reader/src/test/resources/LabOrders/co_path/oru_r01_corrupt_bytes.txt": (
        "AE",
        ("101",) * 5,
        "upstream error case: corrupted OBX segments have no OBX-3 observation identifier",
    ),
    "uclh-emap/hl7-reader/src/test/resources/LabOrders/imaging/oru_r01_imaging_result.txt": (
        "AE",
        ("102",),
        "PV1-44 admit date/time has 16 digits",
    ),
}


def _corpus_files() -> list[Path]:
    if not CORPORA.is_dir():
        return []
    files: set[Path] = set()
    for pattern in CORPUS_GLOBS:
        files.update(CORPORA.glob(pattern))
    return sorted(files)


def _rel(path: Path) -> str:
    return path.relative_to(CORPORA).as_posix()


@pytest.mark.corpus
def test_corpus_verdicts() -> None:
    files = _corpus_files()
    if not files:
        pytest.skip("corpora not available")
    seen_expected: set[str] = set()
    unexpected: list[str] = []
    for path in files:
        rel = _rel(path)
        try:
            messages = list(iter_messages(path.read_bytes()))
        except Hl7ParseError:
            if rel not in EXPECTED_PARSE_FAILURES:
                unexpected.append(f"{rel}: parse error")
            seen_expected.add(rel)
            continue
        if rel in EXPECTED_PARSE_FAILURES:
            unexpected.append(f"{rel}: expected a parse error")
        for message in messages:
            result = validate(message)
            event = f"{(message.message_type or '').strip()}^{(message.trigger_event or '').strip()}"
            errors = tuple(sorted(i.code for i in result.errors))
            if (message.message_type or "").strip() != "ACK" and event not in SUPPORTED_EVENTS:
                if result.ack_code != "AR" or errors not in (("200",), ("201",)):
                    unexpected.append(f"{rel}: unsupported {event} gave {result.ack_code} {errors}")
                continue
            if rel in EXPECTED_FAILURES:
                seen_expected.add(rel)
                ack, codes, _reason = EXPECTED_FAILURES[rel]
                if (result.ack_code, errors) != (ack, tuple(sorted(codes))):
                    unexpected.append(f"{rel}: expected {ack} {codes}, got {result.ack_code} {errors}")
            elif result.ack_code != "AA":
                details = [(i.code, i.location, i.text) for i in result.errors]
                unexpected.append(f"{rel}: {result.ack_code} {details}")
    assert not unexpected, "\n".join(unexpected)
    assert set(EXPECTED_FAILURES) | EXPECTED_PARSE_FAILURES <= seen_expected


@pytest.mark.corpus
def test_corpus_nhs_numbers_recognised() -> None:
    manchester = CORPORA / "nw-gmsa-nhs-genomics/Specifications/ManchesterFoundationTrust/ORU_R01_PDF.txt"
    uclh = CORPORA / "uclh-emap/hl7-reader/src/test/resources/Adt/generic/A01.txt"
    if not manchester.is_file() or not uclh.is_file():
        pytest.skip("corpora not available")
    assert validate(parse_message(manchester.read_bytes())).issues == ()
    placeholder = [i for i in validate(parse_message(uclh.read_bytes())).issues if i.field == 3]
    assert [(i.severity, i.segment, i.repetition, i.text) for i in placeholder] == [
        ("W", "PID", 2, "NHS number is a repeated-digit placeholder")
    ]
