"""ADT^A40 (merge): the surviving PID and the merged-away identifiers in MRG-1 read back as the same merge."""

from __future__ import annotations

import pytest

from shared.backbone.hl7_writeback import Hl7MllpDownstream, MllpSender
from shared.canonical.model import EventKind
from shared.hl7v2 import parse_message
from shared.hl7v2.validation import validate
from shared.mapping.hl7v2_in import map_bytes
from shared.mapping.hl7v2_out import Hl7OutError, to_adt_a40
from tests.helpers import free_port
from tests.unit.backbone.support import nhs_numbers
from tests.unit.mapping.hl7v2_out.hl7out_helpers import HEADER

NHS = nhs_numbers(1)[0]
A40 = (
    "MSH|^~\\&|PAS|RGT01|TIE|RGT01|20260315103000||ADT^A40^ADT_A39|M1|P|2.5.1\r"
    "EVN|A40|20260315102900\r"
    f"PID|1||{NHS}^^^NHS^NH~H100^^^RGT01^MR||TESTPATIENT^ALEX||19800101|F\r"
    "MRG|H200^^^RGT01^MR~H300^^^RGT01^MR\r"
).encode()


def test_a_merge_is_written_as_a40_and_reads_back_as_the_same_merge() -> None:
    merge = map_bytes(A40).value
    assert merge.kind is EventKind.PATIENT_MERGE
    message = to_adt_a40(merge, HEADER)
    assert message.raw("MSH-9") == "ADT^A40^ADT_A39" and message.get("EVN-1") == "A40"
    assert message.repetitions("MRG-1.1") == ["H200", "H300"]
    assert [i for i in validate(message).issues if i.severity == "E"] == []
    again = map_bytes(message.encode()).value
    assert (again.kind, again.key, again.merged_identifiers) == (
        merge.kind,
        merge.key,
        merge.merged_identifiers,
    )
    assert again.patient.identifiers == merge.patient.identifiers
    # the downstream takes merges (not skipped) and writes the same message
    configured = Hl7MllpDownstream(MllpSender("127.0.0.1", free_port()))
    try:
        assert configured.skip_reason(merge) is None
        sent = parse_message(configured.message_for(merge))
    finally:
        configured.close()
    assert sent.repetitions("MRG-1.1") == ["H200", "H300"]


def test_a_merge_needs_the_merged_identifiers() -> None:
    merge = map_bytes(A40).value.model_copy(update={"merged_identifiers": ()})
    with pytest.raises(Hl7OutError) as err:
        to_adt_a40(merge, HEADER)
    assert err.value.field == "merged_identifiers"
