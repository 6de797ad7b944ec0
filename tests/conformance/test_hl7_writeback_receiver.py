"""HL7 v2 write-back against an independent receiver: python-hl7's MLLP server on 127.0.0.1 takes every
message the write-back sends for the corpus (and for fabricated events with accented names), under two
outbound profiles; each received message is validated with hl7apy (STRICT) at its declared version and
compared with the input field by field.

Profiles: ``v2.4`` ASCII with events collapsed to A08/A31, and ``v2.5.1`` UTF-8 with each event as its own
trigger. The receiver decodes in the profile's character set (ASCII / UTF-8), so a message in another set
fails there, not only in our own parser.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import hl7.mllp as hl7_mllp  # python-hl7 (requirements-dev): the independent receiver
import hl7apy.consts as hl7apy_consts
import hl7apy.exceptions as hl7apy_exceptions
import hl7apy.parser as hl7apy_parser
import pytest

from shared.backbone.errors import WriteBackUnmappable
from shared.backbone.hl7_profile import OutboundProfile
from shared.backbone.hl7_writeback import Hl7MllpDownstream, MllpSender
from shared.canonical.model import ClinicalEvent, EventKind, HumanName
from shared.hl7v2 import Message, parse_message
from tests.corpus.hl7_fidelity import Fidelity, compare
from tests.hl7_corpus import corpus_events
from tests.unit.backbone.support import event, nhs_numbers

pytestmark = pytest.mark.corpus

PROFILES = {
    "v2.4-ascii-collapsed": OutboundProfile(version="2.4", charset="ASCII", events="collapsed"),
    "v2.5.1-utf8-native": OutboundProfile(version="2.5.1", charset="UNICODE UTF-8", events="native"),
}

_FC_SAMPLES = ("A01-01", "A01-02", "A02-01", "A02-02", "A03-01", "A03-02", "A04-01", "A04-02", "A08-01")
#: The fhir-converter ADT samples share the sender's over-long PV1-6.1 (IS, 20) "4 East, room 136, bed B 4E";
#: the -01 ones also carry "SIISCLIENT818" in PD1-3 XON.3, an NM in v2.4 (hl7apy stops at the first finding).
_SENDERS_OWN = {
    **{f"ADT-{n}.hl7#0": "MaxLengthReached" for n in (*_FC_SAMPLES, "A08-02", "A11-01", "A11-02", "A13-02")},
    "MDM_01.hl7#0": "MaxLengthReached",
}
_SENDERS_OWN_V24 = {
    **_SENDERS_OWN,
    **{f"ADT-{n}-01.hl7#0": "ValueError" for n in ("A01", "A02", "A03", "A04", "A08", "A11", "A28", "A31")},
}
#: What hl7apy STRICT finds, per profile (file -> error class). All as received: the sender's own value
#: breaks the rule and is sent as received, not cut - PV1-6.1 above and in ORU-R01-01, PD1-3 XON.3 above, a
#: 34-character CE.3 in ORU-R01-RMGEAD (v2.4 only). A sender's local code goes out with CE.3 its table's
#: id (HL7nnnn), no longer its local code system URI.
STRICT_FINDINGS = {
    "v2.4-ascii-collapsed": {"ORU-R01-RMGEAD.hl7#0": "MaxLengthReached", **_SENDERS_OWN_V24},
    "v2.5.1-utf8-native": {"ORU-R01-01.hl7#0": "MaxLengthReached", **_SENDERS_OWN},
}


#: What v2.4 cannot hold (no SPM, no OBX-23): refused under the v2.4 profile, naming the field.
V24_REFUSED = {
    # a collection time other than the report's (OBR-7 is the only place before SPM-17)
    "LAB-ORU-1.hl7#0": "hl7v2-out at reports[0].specimens[0].collected",
    "LAB-ORU-2.hl7#0": "hl7v2-out at reports[0].specimens[0].collected",
    "ORU-R01-01.hl7#0": "hl7v2-out at reports[0].specimens[0].collected",
    # a performing organisation (OBX-23 exists from v2.5)
    "LRI_2.0-NG_CBC_Typ_Message.hl7#0": "hl7v2-out at reports[0].results[0].performer",
}


class Python_hl7Receiver:
    """python-hl7's asyncio MLLP server: AA for every message (``create_ack``), the messages kept as text."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self.messages: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: Any = None
        self.port = 0

    async def _client(self, reader: Any, writer: Any) -> None:
        try:
            while not reader.at_eof():
                message = await reader.readmessage()
                self.messages.append(str(message))
                writer.writemessage(message.create_ack())
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass  # the sender closed the connection
        finally:
            writer.close()

    def __enter__(self) -> Python_hl7Receiver:
        self._thread.start()

        async def boot() -> Any:
            return await hl7_mllp.start_hl7_server(self._client, "127.0.0.1", 0, encoding=self.encoding)

        self._server = asyncio.run_coroutine_threadsafe(boot(), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self._server.close()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def _strict_error(text: str) -> str | None:
    """The hl7apy error class for ``text`` parsed and validated STRICT at its MSH-12, else ``None``."""
    try:
        message = hl7apy_parser.parse_message(
            text.replace("\n", "\r"), validation_level=hl7apy_consts.VALIDATION_LEVEL.STRICT, find_groups=True
        )
        message.validate()
    # hl7apy's findings, compared by class as data (a malformed NM is a plain ValueError)
    except (hl7apy_exceptions.HL7apyException, ValueError) as exc:
        return type(exc).__name__
    return None


def _accented(kind: EventKind) -> ClinicalEvent:
    e = event("ACC1", nhs=nhs_numbers(1)[0], visit="VACC1")
    names = (HumanName(family="Ó SÚILLEABHÁIN", given=("SEÁN", "ZOË")),)
    update: dict[str, Any] = {"kind": kind, "patient": e.patient.model_copy(update={"names": names})}
    return e.model_copy(update=update)


def _cases() -> Iterator[tuple[str, Message | None, ClinicalEvent]]:
    for name, original, e in corpus_events():
        if not e.orders:
            yield name.rsplit("/", 1)[-1], original, e
    for kind in (EventKind.ADMISSION, EventKind.DISCHARGE, EventKind.TRANSFER):
        yield f"accented-{kind.value}", None, _accented(kind)


@pytest.fixture(scope="module", params=sorted(PROFILES))
def received(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Send every case to the receiver under one profile: what it received, per case, and the refusals."""
    profile = PROFILES[request.param]
    sent: dict[str, tuple[Message | None, bytes, int]] = {}
    refused: dict[str, str] = {}
    with Python_hl7Receiver(profile.codec) as rx:
        ds = Hl7MllpDownstream(MllpSender("127.0.0.1", rx.port, connect_timeout=5.0), profile=profile)
        try:
            for name, original, e in _cases():
                if ds.skip_reason(e) is not None:
                    continue  # a kind this downstream does not take (merges: no A40 yet)
                try:
                    payload = ds.message_for(e)
                except WriteBackUnmappable as exc:
                    refused[name] = str(exc.detail)
                    continue
                assert ds.apply(e).status == "AA", name
                sent[name] = (original, payload, len(rx.messages) - 1)
        finally:
            ds.close()
    return {
        "name": request.param,
        "profile": profile,
        "sent": sent,
        "refused": refused,
        "messages": rx.messages,
    }


def test_every_message_arrives_as_sent_and_strictly_valid(received: dict[str, Any]) -> None:
    profile: OutboundProfile = received["profile"]
    strict: dict[str, str] = {}
    types: Counter[str] = Counter()
    for name, (_original, payload, index) in received["sent"].items():
        text = received["messages"][index]
        assert text.replace("\n", "\r").rstrip("\r") == payload.decode(profile.codec).rstrip("\r"), name
        message = parse_message(payload)
        assert message.version == profile.version, name
        types[message.raw("MSH-9")] += 1
        error = _strict_error(text)
        if error is not None:
            strict[name] = error
    assert strict == STRICT_FINDINGS[received["name"]]
    expected_types = (
        {
            "ADT^A08^ADT_A01": 38,
            "ADT^A31^ADT_A05": 4,
            "ADT^A40^ADT_A39": 2,
            "ORU^R01^ORU_R01": 7 - len(V24_REFUSED) if profile.version == "2.4" else 7,
        }
        if profile.events == "collapsed"
        else {
            "ADT^A01^ADT_A01": 13,
            "ADT^A02^ADT_A02": 4,
            "ADT^A03^ADT_A03": 7,
            "ADT^A04^ADT_A01": 5,
            "ADT^A08^ADT_A01": 4,
            "ADT^A11^ADT_A09": 3,
            "ADT^A13^ADT_A01": 2,
            "ADT^A28^ADT_A05": 2,
            "ADT^A31^ADT_A05": 2,
            "ADT^A40^ADT_A39": 2,
            "ORU^R01^ORU_R01": 7,
        }
    )
    assert dict(types) == expected_types


def test_refusals_name_the_field(received: dict[str, Any]) -> None:
    # a modem / TDD number goes out with the XTN.3 its sender sent (it was refused: 18 messages)
    rest = received["refused"]
    expected = {
        "oru_r01_unrecognised_data_type.txt#0": "hl7v2-out-unmappable-code at reports[0].status",
        "Sensitivity.txt#0": "hl7v2-out-unmappable-code at encounter.encounter_class",
        # UCLH's A12 (local patient class "DAY CASE", data-absent): refused, never a guessed PV1-2
        "A12.txt#0": "hl7v2-out-unmappable-code at encounter.encounter_class",
    }
    if received["profile"].version == "2.4":
        expected |= V24_REFUSED
    assert rest == expected


def test_identity_fields_arrive_as_in_the_input(received: dict[str, Any]) -> None:
    profile: OutboundProfile = received["profile"]
    table = Fidelity()
    for name, (original, payload, index) in received["sent"].items():
        got = parse_message(received["messages"][index].encode(profile.codec))
        if original is None:  # a fabricated event: the accented names as the profile writes them
            family = "O SUILLEABHAIN" if profile.charset == "ASCII" else "Ó SÚILLEABHÁIN"
            given = "SEAN ZOE" if profile.charset == "ASCII" else "SEÁN ZOË"
            assert (got.get("PID-5.1"), f"{got.get('PID-5.2')} {got.get('PID-5.3')}") == (family, given), name
            continue
        assert got.raw("MSH-10") == parse_message(payload).control_id, name
        for path in ("PID-3.1", "PID-5.1", "PID-5.2", "PID-8"):
            assert got.get(path) == original.get(path), (name, path)
        compare(original, got, table)
    # per profile, what the trigger mode changes: EVN-1 as received (native) or A08 (collapsed); the
    # fhir-converter samples say EVN-1 A01 whatever their trigger (15 changed under native: A02...A31)
    evn1 = table.fields["EVN-1"]
    assert (evn1["same"], evn1["changed"]) == ((4, 36) if profile.events == "collapsed" else (25, 15))
