"""HL7 v2 write-back fidelity over the corpus (tests/corpus/hl7_fidelity.py): the field-by-field table must
equal the expected one exactly, so a regression (a field lost or changed) and an improvement (a field now
kept) both show as a diff of ``hl7_writeback_fidelity_expected.json``. Regenerate it with
``python -m tests.corpus.hl7_fidelity --json > tests/corpus/hl7_writeback_fidelity_expected.json`` and
review the diff. The classifier itself is checked on hand-made messages (escapes, trailing empties,
changed / lost / added, whole segments)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shared.backbone.errors import WriteBackUnmappable
from shared.backbone.hl7_profile import OutboundProfile
from shared.backbone.hl7_writeback import Hl7MllpDownstream
from shared.hl7v2 import parse_message
from tests.corpus.hl7_fidelity import Fidelity, compare, dumps, measure, written_message
from tests.hl7_corpus import corpus_events

EXPECTED = Path(__file__).with_name("hl7_writeback_fidelity_expected.json")


def _msg(*segments: str) -> bytes:
    return "\r".join(segments).encode()


_MSH = "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5.1"


def _table(original: bytes, written: bytes) -> dict[str, dict[str, int]]:
    result = Fidelity()
    compare(parse_message(original), parse_message(written), result)
    return {k: dict(v) for k, v in result.fields.items() if not k.startswith("MSH")}


def test_classifier_reads_values_not_encodings() -> None:
    original = _msg(_MSH, "PID|1||123^^^NHS^NH||SMITH^ANN^^^||||||A\\T\\B^^^^", "NTE|1||x")
    written = _msg(
        _MSH,
        "PID|1||123^^^NHS^NH~9^^^L||SMITH^ANN|||F|||A\\T\\B|||||M",
        "OBX|1|ST|c||v",
    )
    assert _table(original, written) == {
        "PID": {"same": 1},
        "PID-1": {"same": 1},
        "PID-3": {"changed": 1},  # a repetition more
        "PID-5": {"same": 1},  # trailing empty components are not a difference
        "PID-8": {"added": 1},
        "PID-11": {"same": 1},  # A\T\B is "A&B" in both
        "PID-16": {"added": 1},
        "NTE": {"lost": 1},
        "NTE-1": {"lost": 1},
        "NTE-3": {"lost": 1},
        "OBX": {"added": 1},
        "OBX-1": {"added": 1},
        "OBX-2": {"added": 1},
        "OBX-3": {"added": 1},
        "OBX-5": {"added": 1},
    }


def test_classifier_sees_a_lost_field_and_a_changed_subcomponent() -> None:
    original = _msg(_MSH, "PV1|1|I|W1^B2^3||||123^DOC^A^^^^^^X&1.2&ISO||||||||||||V1")
    written = _msg(_MSH, "PV1|1|I|W1^B2^3||||123^DOC^A^^^^^^X&1.3&ISO")
    assert _table(original, written) == {
        "PV1": {"same": 1},
        "PV1-1": {"same": 1},
        "PV1-2": {"same": 1},
        "PV1-3": {"same": 1},
        "PV1-7": {"changed": 1},
        "PV1-19": {"lost": 1},
    }


@pytest.mark.corpus
@pytest.mark.parametrize(
    ("profile", "expected_file"),
    [
        (OutboundProfile(), EXPECTED),
        (OutboundProfile(events="native"), EXPECTED.with_name("hl7_writeback_fidelity_native_expected.json")),
    ],
    ids=["default-collapsed", "native-events"],
)
def test_corpus_fidelity_table_is_exactly_the_expected_one(
    profile: OutboundProfile, expected_file: Path
) -> None:
    measured = json.loads(dumps(measure(profile).as_json()))
    expected = json.loads(expected_file.read_text("utf-8"))
    assert measured["compared"] >= 25
    assert measured == expected


#: Corpus messages (file#index) the write-back refuses, and the canonical field it names.
REFUSED = {
    "oru_r01_unrecognised_data_type.txt#0": "reports[0].status",
    "Sensitivity.txt#0": "encounter.encounter_class",
}
#: Numeric / string results of an ORU (by OBX-3 code and value) the write-back does not send as received:
#: a repeating NM value (``27~25``), which the canonical model holds as one value.
RESULTS_NOT_SENT = ["ORU-R01-01.hl7#0 OBX(5)"]


#: Identity fields that must reach the receiver exactly as sent (decoded values, whole field), per corpus
#: message the write-back sends: the patient's name, sex, first identifier's number, every result value.
@pytest.mark.corpus
def test_identity_fields_arrive_as_sent() -> None:
    downstream = Hl7MllpDownstream(None)
    checked = checked_other = 0
    missing: list[str] = []
    for name, original, event in corpus_events():
        if event.orders or event.kind.value not in {"admission", "result", "discharge", "transfer"}:
            continue
        refused = REFUSED.get(name.rsplit("/", 1)[-1])
        if refused is not None:
            with pytest.raises(WriteBackUnmappable, match=re.escape(f" at {refused})")):
                written_message(event, downstream)
            continue
        written = written_message(event, downstream)
        for path in ("PID-5.1", "PID-5.2", "PID-8", "PID-3.1"):
            assert written.get(path) == original.get(path), (name, path)
        for k, contact in enumerate(event.patient.telecom):
            if contact.system == "other":  # a modem / TDD number: the XTN.3 the sender sent, as sent
                pid = written.segments_named("PID")[0]
                sent = f"{pid.raw_field(13)}~{pid.raw_field(14)}".split("~")
                assert f"{contact.value}^^{contact.equipment_type}" in sent, (name, k)
                checked_other += 1
        sent = {(x.get(3), x.get(5)) for x in written.segments_named("OBX")}
        for k, obx in enumerate(original.segments_named("OBX")):
            if event.kind.value != "result" or obx.get(2) not in ("NM", "ST"):
                continue  # an ADT's OBX (height, weight...) is not in the canonical model
            if (obx.get(3), obx.get(5)) not in sent:
                missing.append(f"{name.rsplit('/', 1)[-1]} OBX({k + 1})")
        checked += 1
    assert checked >= 10 and checked_other >= 7
    assert missing == RESULTS_NOT_SENT
