"""Run shared.hl7v2 over every HL7 v2 file in ../shared/corpora (public test data of other projects).

* Every file either parses or raises Hl7ParseError; the malformed ones are listed in KNOWN_MALFORMED with the
  reason, and that list must agree with the upstream EXPECTED.tsv files (python-hl7, hl7apy).
* Every well-formed file round-trips byte for byte (``encode() == input``), messages and batches alike.
* Values upstream asserts (EXPECTED.tsv) are checked, and for the FHIR-Converter pairs the values its expected
  FHIR output carries (event code, PID-3 identifiers, family name) must equal what we read.

Skips cleanly when the corpora directory is absent, fails under ``CI=true`` (tests.helpers.corpus_missing).
Files are read in place, never copied.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.hl7v2 import Batch, Hl7ParseError, Message, iter_messages, parse_batch, parse_message
from tests.helpers import corpus_missing

pytestmark = pytest.mark.corpus

CORPORA = (Path(__file__).resolve().parents[2] / ".." / "shared" / "corpora").resolve()

#: Which corpus files are HL7 v2 (path prefix -> suffix), with the number SOURCES.md documents.
HL7_SOURCES = {
    "fhir-converter/data/SampleData/Hl7v2/": (".hl7", 76),
    "python-hl7/tests_samples/": (".hl7", 23),
    "hl7apy/tests_messages/": (".hl7", 17),
    "pipehat/samples/": (".hl7", 22),
    "linuxforhealth-hl7v2-fhir-converter/src/test/resources/": (".hl7", 4),
    "nw-gmsa-nhs-genomics/Specifications/": (".txt", 5),
    "uclh-emap/hl7-reader/src/test/resources/": (".txt", 35),
}

#: Malformed inputs: path -> (expected table 0357 code, reason).
KNOWN_MALFORMED: dict[str, tuple[str, str]] = {
    "python-hl7/tests_samples/sample_bad_batch.hl7": ("100", "BHS then EVN: segment before any MSH"),
    "python-hl7/tests_samples/sample_bad_batch1.hl7": ("100", "second BHS inside an open batch"),
    "python-hl7/tests_samples/sample_bad_file.hl7": ("100", "FHS/BHS then EVN: segment before any MSH"),
    "python-hl7/tests_samples/sample_bad_file1.hl7": ("100", "second BHS inside an open batch"),
    "python-hl7/tests_samples/sample_bad_file2.hl7": ("100", "second FHS"),
    "python-hl7/tests_samples/sample_bad_file3.hl7": ("100", "FHS then EVN: segment before any MSH"),
    "python-hl7/tests_samples/inline_invalid_first_segment.hl7": ("100", "starts with PID"),
    "hl7apy/tests_messages/bad_first_segment_not_msh.hl7": ("100", "starts with PID"),
    "hl7apy/tests_messages/bad_encoding_chars_missing_zero_1.hl7": ("102", "MSH-2 empty"),
    "hl7apy/tests_messages/bad_encoding_chars_missing_1.hl7": ("102", "MSH-2 has 3 characters"),
    "hl7apy/tests_messages/bad_encoding_chars_missing_2.hl7": ("102", "MSH-2 has 3 characters (v2.7)"),
    "hl7apy/tests_messages/bad_encoding_chars_too_many_1.hl7": ("102", "MSH-2 has 7 characters"),
    "hl7apy/tests_messages/bad_encoding_chars_too_many_2.hl7": ("102", "MSH-2 has 6 characters (v2.7)"),
    "hl7apy/tests_messages/bad_encoding_chars_duplicate_1.hl7": ("102", "MSH-2 '^&&^' repeats characters"),
    "hl7apy/tests_messages/bad_encoding_chars_duplicate_2.hl7": ("102", "MSH-2 '^&&^##' too long/duplicates"),
    # Not flagged upstream (their converter is lenient), malformed by the standard:
    "linuxforhealth-hl7v2-fhir-converter/src/test/resources/sample_unix.hl7": (
        "102",
        "MSH-2 is '^~\\\\&' (a Java string-literal escape written to the file): the escape character repeats",
    ),
    "linuxforhealth-hl7v2-fhir-converter/src/test/resources/sample_win.hl7": (
        "102",
        "MSH-2 is '^~\\\\&' (a Java string-literal escape written to the file): the escape character repeats",
    ),
    "pipehat/samples/sample-v2.5.1-rsp-k11-1.hl7": (
        "100",
        "an RXA segment is broken by a stray CR, so segment 11 starts with '999|' (not a segment ID); "
        "accepting it would silently drop RXA fields",
    ),
}

#: Batch/file inputs (must go through parse_batch): path -> (FHS?, batches, messages, FTS?).
BATCHES: dict[str, tuple[bool, int, int, bool]] = {
    "python-hl7/tests_samples/sample_batch.hl7": (False, 1, 1, False),
    "python-hl7/tests_samples/sample_batch1.hl7": (False, 1, 2, False),
    "python-hl7/tests_samples/sample_batch2.hl7": (False, 1, 2, False),
    "python-hl7/tests_samples/sample_batch3.hl7": (False, 1, 1, False),
    "python-hl7/tests_samples/sample_batch4.hl7": (False, 1, 1, False),
    "python-hl7/tests_samples/sample_file.hl7": (True, 1, 1, True),
    "python-hl7/tests_samples/sample_file1.hl7": (True, 2, 3, True),
    "python-hl7/tests_samples/sample_file2.hl7": (True, 1, 2, True),
    "python-hl7/tests_samples/sample_file3.hl7": (True, 1, 1, False),
    "python-hl7/tests_samples/sample_file4.hl7": (False, 1, 1, True),
    "python-hl7/tests_samples/sample_file5.hl7": (True, 1, 1, True),
    "python-hl7/tests_samples/sample_file6.hl7": (True, 1, 1, True),
    # One ORU followed by an FTS trailer (no FHS): a file envelope, not a single message.
    "pipehat/samples/sample-v2.3-oru-r01-3.hl7": (False, 1, 1, True),
}


def _discover() -> list[str]:
    manifest = CORPORA / "MANIFEST.tsv"
    if not manifest.is_file():
        return []
    paths = [line.split("\t", 1)[0] for line in manifest.read_text(encoding="utf-8").splitlines()[1:]]
    return sorted(
        p
        for p in paths
        if any(p.startswith(prefix) and p.endswith(sfx) for prefix, (sfx, _) in HL7_SOURCES.items())
    )


FILES = _discover()


@pytest.fixture
def _corpora_present() -> None:
    if not FILES:
        corpus_missing("../shared/corpora is not present")  # a failure under CI=true


needs_corpora = pytest.mark.usefixtures("_corpora_present")
file_params = pytest.mark.parametrize("rel", FILES or ["<corpora absent>"])


def _expected_rows() -> dict[str, tuple[str, str]]:
    """path -> (upstream call, expected outcome) from both EXPECTED.tsv files."""
    rows: dict[str, tuple[str, str]] = {}
    for folder in ("python-hl7", "hl7apy"):
        tsv = CORPORA / folder / "EXPECTED.tsv"
        if tsv.is_file():
            with tsv.open(encoding="utf-8", newline="") as handle:
                for row in list(csv.reader(handle, delimiter="\t"))[1:]:
                    rows[f"{folder}/{row[0]}"] = (row[1], row[2])
    return rows


@needs_corpora
def test_discovery_finds_every_documented_file() -> None:
    for prefix, (_sfx, count) in HL7_SOURCES.items():
        assert sum(p.startswith(prefix) for p in FILES) == count, prefix
    assert set(KNOWN_MALFORMED) <= set(FILES)
    assert set(BATCHES) <= set(FILES)


@needs_corpora
def test_known_malformed_agrees_with_expected_tsv() -> None:
    rows = _expected_rows()
    assert rows, "EXPECTED.tsv files missing"
    upstream_malformed = {
        path
        for path, (_call, outcome) in rows.items()
        if outcome.startswith("MALFORMED") and "vs profile" not in outcome
    }
    listed_from_upstream = {p for p in KNOWN_MALFORMED if p.startswith(("python-hl7/", "hl7apy/"))}
    assert upstream_malformed == listed_from_upstream
    upstream_batches = {
        path
        for path, (call, outcome) in rows.items()
        if call in ("hl7.parse_batch", "hl7.parse_file") and outcome.startswith("ok")
    }
    assert upstream_batches == {p for p in BATCHES if p.startswith("python-hl7/")}


@needs_corpora
@file_params
def test_parse_or_parse_error_and_round_trip(rel: str) -> None:
    data = (CORPORA / rel).read_bytes()
    if rel in KNOWN_MALFORMED:
        code, _reason = KNOWN_MALFORMED[rel]
        parse: Callable[[bytes], object] = parse_batch if rel.startswith("python-hl7/") else parse_message
        with pytest.raises(Hl7ParseError) as info:
            parse(data)
        assert info.value.error_code == code
        with pytest.raises(Hl7ParseError):  # no entry point accepts it
            parse_batch(data)
        upstream = _expected_rows().get(rel, ("", ""))[1]
        quoted = re.search(r'ParseException "([^"]+)"', upstream)
        if quoted:
            assert quoted.group(1).lower() in str(info.value).lower()
        return
    if rel in BATCHES:
        has_fhs, groups, messages, has_fts = BATCHES[rel]
        with pytest.raises(Hl7ParseError):
            parse_message(data)
        batch = parse_batch(data)
        assert isinstance(batch, Batch)
        assert (batch.file_header is not None, len(batch.groups), len(batch.messages)) == (
            has_fhs,
            groups,
            messages,
        )
        assert (batch.file_trailer is not None) == has_fts
        assert batch.encode() == data
        assert all(m.message_type for m in batch.messages)
        return
    msg = parse_message(data)
    assert msg.encode() == data
    assert msg.segments[0].name == "MSH"
    # Normalised form re-parses to the same segments; iter_messages agrees.
    normalised = parse_message(msg.to_er7("\r"))
    assert [s.raw for s in normalised.segments] == [s.raw for s in msg.segments]
    assert [[s.raw for s in m.segments] for m in iter_messages(data)] == [[s.raw for s in msg.segments]]
    # Every field of every segment can be read (and decoded) without error.
    for segment in msg.segments:
        for n in range(1, len(segment) + 1):
            segment.get(n)


# ------------------------------------------------------------------------- values asserted upstream


def _msg(rel: str) -> Message:
    return parse_message((CORPORA / rel).read_bytes())


def _check_sample_hl7(m: Message) -> None:
    assert (m.message_type, m.trigger_event, m.version) == ("ORU", "R01", "2.4")
    assert [s.name for s in m.segments] == ["MSH", "PID", "OBR", "OBX", "OBX"]


def _check_rep_sample(m: Message) -> None:
    assert m["PID-1"] == "Field1"
    assert (m["PID-2.1"], m["PID-2.2"]) == ("Component1", "Component2")
    assert (m["PID-3.2.1"], m["PID-3.2.2"], m["PID-3.3"]) == (
        "Sub-Component1",
        "Sub-Component2",
        "Component3",
    )
    assert m.repetitions("PID-4") == ["Repeat1", "Repeat2"]


def _check_sample_msh(m: Message) -> None:
    assert (m.message_type, m.trigger_event, m.version) == ("ADT", "A01", "2.3")
    assert {"IN1", "IN2", "DG1"} <= {s.name for s in m.segments}
    assert m["PV1-9"] == '""'  # HL7 null is returned literally
    assert m["PV1-5"] == " 863968"  # leading spaces preserved


def _check_nonstandard(m: Message) -> None:
    assert (m.separators.field, m.separators.component) == ("$", "%")
    assert m.raw("PID-5") == "EVERYWOMAN%EVE%E%%%L"
    assert (m["PID-5.1"], m["PID-5.2"], m["PID-5.6"]) == ("EVERYWOMAN", "EVE", "L")


def _check_rsp_k21(m: Message) -> None:
    assert (m.message_type, m.trigger_event, m.message_structure, m.version) == (
        "RSP",
        "K22",
        "RSP_K21",
        "2.5",
    )
    assert {"MSA", "QAK", "QPD", "PID"} <= {s.name for s in m.segments}


def _check_rsp_k21_27(m: Message) -> None:
    assert m.separators.truncation == "#"
    assert m["MSH-2"] == "^~\\&#"


def _check_no_truncation(m: Message) -> None:
    assert m.separators.truncation is None
    assert m["MSH-2"] == "^~\\&"


def _check_oml_o33(m: Message) -> None:
    assert (m.message_type, m.trigger_event) == ("OML", "O33")
    assert len(m.segments_named("SPM")) == 2
    assert len(m.segments_named("ORC")) == 4  # 1 order in the first specimen group, 3 in the second


def _check_adt_ignoring_groups(m: Message) -> None:
    assert [s.name for s in m.segments] == ["MSH", "EVN", "PID", "NK1", "PV1", "IN1"]
    assert not m.encode().endswith(b"\r")


def _check_invalid_rsp_k21(m: Message) -> None:
    assert m.message_type == "RSP"
    assert m.get("PID-3.4") is None  # what makes it fail the ITI-21 profile (validation, not parsing)


VALUE_CHECKS: dict[str, Callable[[Message], None]] = {
    "python-hl7/tests_samples/sample_hl7.hl7": _check_sample_hl7,
    "python-hl7/tests_samples/rep_sample_hl7.hl7": _check_rep_sample,
    "python-hl7/tests_samples/sample_msh.hl7": _check_sample_msh,
    "python-hl7/tests_samples/inline_nonstandard_separators.hl7": _check_nonstandard,
    "hl7apy/tests_messages/rsp_k21.hl7": _check_rsp_k21,
    "hl7apy/tests_messages/rsp_k21_27.hl7": _check_rsp_k21_27,
    "hl7apy/tests_messages/rsp_k21_27_no_truncation.hl7": _check_no_truncation,
    "hl7apy/tests_messages/oml_o33_multiple_groups.hl7": _check_oml_o33,
    "hl7apy/tests_messages/adt_a01_ignoring_groups.hl7": _check_adt_ignoring_groups,
    "hl7apy/tests_messages/invalid_rsp_k21.hl7": _check_invalid_rsp_k21,
    "hl7apy/tests_messages/missing_msh9_message_type.hl7": lambda m: (
        None if m.message_type is None and m.trigger_event is None else pytest.fail("MSH-9 should be empty")
    ),
    "hl7apy/tests_messages/incomplete_msh9_adt_caret.hl7": lambda m: (
        None if (m.message_type, m.trigger_event) == ("ADT", None) else pytest.fail("MSH-9 should be ADT^")
    ),
    "hl7apy/tests_messages/missing_msh12_version.hl7": lambda m: (
        None if m.version is None else pytest.fail("MSH-12 should be empty")
    ),
}


@needs_corpora
@pytest.mark.parametrize("rel", sorted(VALUE_CHECKS))
def test_values_asserted_upstream(rel: str) -> None:
    VALUE_CHECKS[rel](_msg(rel))


@needs_corpora
@pytest.mark.parametrize(
    "rel",
    [
        "nw-gmsa-nhs-genomics/Specifications/ManchesterFoundationTrust/OML_O21_PDF.txt",
        "nw-gmsa-nhs-genomics/Specifications/ManchesterFoundationTrust/ORU_R01_PDF.txt",
    ],
)
def test_nhs_number_in_manchester_genomics(rel: str) -> None:
    m = _msg(rel)
    nhs = [m[f"PID-3[{i}]"] for i in range(1, len(m.repetitions("PID-3")) + 1) if m[f"PID-3[{i}].4"] == "NHS"]
    assert nhs == ["9449305552"]
    assert m.version == "2.5.1"


@needs_corpora
def test_uclh_nhs_identifiers_match_naive_split() -> None:
    """PID-3 NHS identifiers (UCLH uses type HN, once NH) read via paths equal a naive PID-line split."""
    seen = 0
    for rel in (p for p in FILES if p.startswith("uclh-emap/")):
        text = (CORPORA / rel).read_text(encoding="utf-8")
        pid_line = next((line for line in text.splitlines() if line.startswith("PID|")), None)
        if pid_line is None:
            continue
        pid3 = pid_line.split("|")[3] if pid_line.count("|") >= 3 else ""
        expected = [
            (c[0], c[4] if len(c) > 4 else "")
            for c in (rep.split("^") for rep in pid3.split("~"))
            if len(c) > 3 and c[3] == "NHS"
        ]
        m = _msg(rel)
        got = [
            (m[f"PID-3[{i}]"], m[f"PID-3[{i}].5"])
            for i in range(1, len(m.repetitions("PID-3")) + 1)
            if m[f"PID-3[{i}].4"] == "NHS"
        ]
        assert got == expected, rel
        seen += len(got)
    assert seen >= 20


def _fhir_pairs() -> list[tuple[str, str]]:
    tsv = CORPORA / "fhir-converter" / "PAIRS.tsv"
    if not tsv.is_file():
        return []
    with tsv.open(encoding="utf-8", newline="") as handle:
        return [(row["input"], row["expected"]) for row in csv.DictReader(handle, delimiter="\t")]


@needs_corpora
@pytest.mark.parametrize(("source", "expected"), _fhir_pairs() or [("<absent>", "<absent>")])
def test_values_match_fhir_converter_expected_output(source: str, expected: str) -> None:
    base = CORPORA / "fhir-converter"
    m = parse_message((base / source).read_bytes())
    bundle = json.loads((base / expected).read_text(encoding="utf-8-sig"))
    resources = [entry["resource"] for entry in bundle["entry"]]
    headers = [r for r in resources if r["resourceType"] == "MessageHeader"]
    assert headers and headers[0]["eventCoding"]["code"] == m.trigger_event
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    if patients:
        identifiers = {i.get("value") for i in patients[0].get("identifier", [])}
        assert {v for v in m.repetitions("PID-3") if v} <= identifiers
        if m.get("PID-5"):
            assert m["PID-5"] in [n.get("family") for n in patients[0].get("name", [])]
