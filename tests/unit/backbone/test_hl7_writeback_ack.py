"""HL7 v2 write-back: the receiver's ACK decides per its code and reported errors, and a message whose ACK is
lost or late is sent again as the *same* message (same bytes, same MSH-10) and applied once.

The downstream is a fake MLLP receiver on 127.0.0.1 written here (not the project's server): it keeps a
duplicate check on MSH-10 like a real EPR, records every payload it receives, and can drop the connection
after applying a message (the ACK is lost) or hold the ACK until the test releases it (a late ACK).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.backbone.errors import DownstreamRejected, DownstreamRetry
from shared.backbone.hl7_profile import OutboundProfile
from shared.backbone.hl7_writeback import Hl7MllpDownstream, MllpSender
from shared.canonical.model import ClinicalEvent
from shared.hl7v2 import parse_message
from shared.journal import DEAD_LETTERED, DUPLICATE, FAILED, RETRIED, WRITTEN_BACK, Journal
from shared.mapping.fhir_in import event_from_fhir
from shared.messaging.topology import SUB_WRITEBACK_HL7V2
from shared.mllp.client import AckError, read_msa
from shared.mllp.framing import Frame, FrameDecoder, frame
from shared.storage.names import TABLE_DEADLETTERS
from tests.unit.backbone import support as s
from tests.unit.mapping.fhir_in.fhirin_helpers import pds_patient

NHS = s.nhs_numbers(3)
_HEADER = "MSH|^~\\&|EPR|RGT01|TIE||20260101000000||ACK^A08^ACK|R1|P|2.5.1"

#: what the receiver does with a new message: an ACK code (+ ERR segments after a ``\r``), ``drop`` (apply,
#: then close without an ACK) or ``hold`` (apply, answer only once released).
Script = Callable[[str, int], str]


class DupCheckingReceiver:
    """An MLLP receiver with a duplicate check on MSH-10 (a message seen before is answered AA again and not
    applied twice). ``payloads``: every payload received, in order; ``applied``: effects per MSH-10."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.payloads: list[bytes] = []
        self.applied: Counter[str] = Counter()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._release = asyncio.Event()
        self._server: asyncio.Server | None = None
        self.port = 0

    def release(self) -> None:
        self._loop.call_soon_threadsafe(self._release.set)

    async def _answer(self, payload: bytes) -> bytes | None:
        fields = payload.split(b"\r", 1)[0].decode().split("|")
        control = fields[9]
        self.payloads.append(payload)
        seen = self.applied[control] > 0
        action = "AA" if seen else self.script(control, len(self.payloads))
        if action in ("AA", "CA", "drop", "hold"):
            self.applied[control] += 0 if seen else 1
        if action == "drop":
            return None
        if action == "hold":
            await self._release.wait()
            action = "AA"
        code, _, errs = action.partition("\r")
        ack = f"{_HEADER}\rMSA|{code}|{control}" + (f"\r{errs}" if errs else "")
        return ack.encode()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = FrameDecoder()
        try:
            while chunk := await reader.read(65536):
                for item in decoder.feed(chunk):
                    if not isinstance(item, Frame):
                        continue
                    reply = await self._answer(item.payload)
                    if reply is None:
                        return  # the ACK is lost: the connection closes with nothing sent back
                    writer.write(frame(reply))
                    await writer.drain()
        except ConnectionError:
            return  # the sender gave up on this connection (its ACK timeout)
        finally:
            writer.close()

    def __enter__(self) -> DupCheckingReceiver:
        self._thread.start()

        async def boot() -> None:
            self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)

        asyncio.run_coroutine_threadsafe(boot(), self._loop).result(10)
        assert self._server is not None
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self._release.set()
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def _downstream(port: int, ack_timeout: float = 5.0) -> Hl7MllpDownstream:
    return Hl7MllpDownstream(
        MllpSender("127.0.0.1", port, connect_timeout=5.0),
        ack_timeout=ack_timeout,
        receiving_application="EPR",
        receiving_facility="RGT01",
    )


@pytest.fixture
def env(tmp_path: Path) -> Iterator[s.Env]:
    with s.embedded(tmp_path, max_delivery=3) as e:
        yield e


def _stages(env: s.Env, corr: str) -> list[tuple[str, dict[str, object]]]:
    return [
        (e.stage, dict(e.attributes))
        for e in Journal(env.records).trace(corr)
        if e.attributes.get("subscriber") == SUB_WRITEBACK_HL7V2
    ]


# ------------------------------------------------------------------------------------ sent once


@pytest.mark.parametrize(("first", "ack_timeout"), [("drop", 5.0), ("hold", 0.3)])
def test_a_lost_or_late_ack_resends_the_same_message_and_it_is_applied_once(
    env: s.Env, first: str, ack_timeout: float
) -> None:
    with DupCheckingReceiver(lambda _cid, n: first if n == 1 else "AA") as rx:
        ds = _downstream(rx.port, ack_timeout)
        bb = s.backbone(env, {SUB_WRITEBACK_HL7V2: ds})
        e = s.event("L1", nhs=NHS[0], visit="VL1", correlation_id="c-l1")
        s.publish(env.bus, e)
        stats = s.pump(env.bus, SUB_WRITEBACK_HL7V2, bb.subscriber(SUB_WRITEBACK_HL7V2).handle)
        rx.release()  # a held ACK goes to a connection the sender has already dropped
        ds.close()
    assert stats.statuses == {"applied": 1}
    first_sent, second_sent = rx.payloads  # sent twice ...
    assert second_sent == first_sent  # ... as the same message, byte for byte
    control = first_sent.split(b"\r", 1)[0].split(b"|")[9].decode()
    assert rx.applied == {control: 1}  # the receiver's duplicate check held: one effect
    assert ds.message_for(e) == first_sent  # built again later: still the same bytes
    # MSH-7 is the event's time (here EVN-2, as the test event has no receipt time), not the clock's
    assert first_sent.split(b"\r", 1)[0].split(b"|")[6].startswith(b"20260315102900")
    stages = [stage for stage, _ in _stages(env, "c-l1")]
    assert stages == ["delivered", RETRIED, WRITTEN_BACK]
    [(_, written)] = [x for x in _stages(env, "c-l1") if x[0] == WRITTEN_BACK]
    assert written["status"] == "AA" and written["attempts"] == 2


def test_the_same_event_published_again_sends_nothing(env: s.Env) -> None:
    """A second publication of the same clinical content (a no-op re-send, under another correlation id) is
    a ledger duplicate: journaled, nothing reaches the receiver."""
    with DupCheckingReceiver(lambda _cid, _n: "AA") as rx:
        ds = _downstream(rx.port)
        bb = s.backbone(env, {SUB_WRITEBACK_HL7V2: ds})
        e = s.event("L2", nhs=NHS[1], visit="VL2", correlation_id="c-l2a")
        again = s.event("L2B", nhs=NHS[1], visit="VL2", correlation_id="c-l2b")
        assert again.key == e.key
        s.publish(env.bus, e)
        s.pump(env.bus, SUB_WRITEBACK_HL7V2, bb.subscriber(SUB_WRITEBACK_HL7V2).handle)
        s.publish(env.bus, again)
        stats = s.pump(env.bus, SUB_WRITEBACK_HL7V2, bb.subscriber(SUB_WRITEBACK_HL7V2).handle)
        ds.close()
    assert stats.statuses == {"duplicate": 1}
    assert len(rx.payloads) == 1 and sum(rx.applied.values()) == 1
    [(_, attrs)] = [x for x in _stages(env, "c-l2b") if x[0] == DUPLICATE]
    assert attrs["original_correlation_id"] == "c-l2a"


# --------------------------------------------------------------------------------- ACK per code

_ERR25 = "ERR||PID^1^8^1|103^Table value not found^HL70357|E"


@pytest.mark.parametrize(
    ("answer", "raised", "detail"),
    [
        ("AA", None, None),
        ("CA", None, None),
        ("AE", DownstreamRetry, None),  # no error code: retried
        ("CE", DownstreamRetry, None),
        (f"AE\r{_ERR25}", DownstreamRejected, "ERR 103 at PID-8 (E)"),  # a table value: permanent
        ("AE\rERR||PID^1^3|101^Required field missing^HL70357|E", DownstreamRejected, "ERR 101 at PID-3 (E)"),
        ("AE\rERR|||207^Application internal error^HL70357|E", DownstreamRetry, "ERR 207 (E)"),
        ("AE\rERR|||206^Application record locked^HL70357|E", DownstreamRetry, "ERR 206 (E)"),
        ("AE\rERR|||103^Table value not found^HL70357|W", DownstreamRetry, "ERR 103 (W)"),  # a warning
        ("AE\rERR|||999^Local^L|E", DownstreamRetry, "ERR 999 (E)"),  # unknown: retried
        ("CE\rERR|PV1^1^2^101&Required&HL70357", DownstreamRejected, "ERR 101 at PV1-2"),  # v2.3 ERR-1
        ("AR", DownstreamRejected, None),
        (f"AR\r{_ERR25}", DownstreamRejected, "ERR 103 at PID-8 (E)"),
        ("CR\rERR|||200^Unsupported message type^HL70357|E", DownstreamRejected, "ERR 200 (E)"),
    ],
)
def test_the_ack_decides(answer: str, raised: type[Exception] | None, detail: str | None) -> None:
    with DupCheckingReceiver(lambda _cid, _n: answer) as rx:
        ds = _downstream(rx.port)
        e = s.event("K1", nhs=NHS[2], visit="VK1")
        try:
            if raised is None:
                assert ds.apply(e).status == answer
            else:
                with pytest.raises(raised) as info:
                    ds.apply(e)
                err = info.value
                assert (err.response, err.detail) == (answer[:2], detail)  # type: ignore[attr-defined]
                assert NHS[2] not in str(err)
        finally:
            ds.close()
    assert len(rx.payloads) == 1


def test_a_permanent_ae_dead_letters_at_the_first_attempt_with_its_reason_journaled(env: s.Env) -> None:
    def script(_cid: str, _n: int) -> str:
        return f"AE\r{_ERR25}"

    with DupCheckingReceiver(script) as rx:
        ds = _downstream(rx.port)
        bb = s.backbone(env, {SUB_WRITEBACK_HL7V2: ds})
        s.publish(env.bus, s.event("K2", nhs=NHS[2], visit="VK2", correlation_id="c-k2"))
        stats = s.pump(env.bus, SUB_WRITEBACK_HL7V2, bb.subscriber(SUB_WRITEBACK_HL7V2).handle)
        ds.close()
    assert len(rx.payloads) == 1  # not retried within the delivery
    # dead-lettered at the first delivery with its reason - not abandoned until the max delivery count
    assert stats.statuses == {"error:downstream-rejected": 1}
    assert (stats.dead_lettered, stats.abandoned) == (1, 0)
    failed = [a for stage, a in _stages(env, "c-k2") if stage == FAILED]
    first = failed[0]
    assert (first["error_code"], first["response"], first["detail"]) == (
        "downstream-rejected",
        "AE",
        "ERR 103 at PID-8 (E)",
    )
    assert first["attempts"] == 1 and first["final"] is True
    # the dead letter names the error and where the receiver found it
    assert bb.scan_dead_letters().recorded == 1
    [row] = env.records.query(TABLE_DEADLETTERS)
    assert (row.value["last_error_code"], row.value["last_error_detail"]) == (
        "downstream-rejected",
        "ERR 103 at PID-8 (E)",
    )
    assert (row.value["reason"], row.value["description"], row.value["deliveryCount"]) == (
        "downstream-rejected",
        "ERR 103 at PID-8 (E)",
        1,
    )
    dead = [e.attributes for e in Journal(env.records).trace("c-k2") if e.stage == DEAD_LETTERED]
    assert [(a["subscription"], a["reason"], a["delivery_count"]) for a in dead] == [
        (SUB_WRITEBACK_HL7V2, "downstream-rejected", 1)
    ]


def test_an_unmappable_event_is_dead_lettered_naming_the_field(env: s.Env) -> None:
    with DupCheckingReceiver(lambda _cid, _n: "AA") as rx:
        ds = Hl7MllpDownstream(
            MllpSender("127.0.0.1", rx.port, connect_timeout=5.0), profile=OutboundProfile(charset="ASCII")
        )
        bb = s.backbone(env, {SUB_WRITEBACK_HL7V2: ds})
        e = s.event("K4", nhs=NHS[1], visit="VK4", correlation_id="c-k4")
        names = (e.patient.names[0].model_copy(update={"family": "STRAßE"}),)
        e = e.model_copy(update={"patient": e.patient.model_copy(update={"names": names})})
        s.publish(env.bus, e)
        stats = s.pump(env.bus, SUB_WRITEBACK_HL7V2, bb.subscriber(SUB_WRITEBACK_HL7V2).handle)
        ds.close()
    assert rx.payloads == []  # nothing reached the receiver
    assert stats.statuses == {"error:writeback-unmappable": 1}  # dead-lettered at the first delivery
    assert bb.scan_dead_letters().recorded == 1
    [row] = env.records.query(TABLE_DEADLETTERS)
    assert (row.value["last_error_code"], row.value["last_error_detail"]) == (
        "writeback-unmappable",
        "charset ASCII at PID-5",
    )
    assert (row.value["reason"], row.value["description"], row.value["deliveryCount"]) == (
        "writeback-unmappable",
        "charset ASCII at PID-5",
        1,
    )
    assert "STRA" not in json.dumps(row.value)


def test_a_transient_ae_is_retried_with_its_reason_journaled(env: s.Env) -> None:
    def script(_cid: str, n: int) -> str:
        return "AE\rERR|||207^Application internal error^HL70357|E" if n == 1 else "AA"

    with DupCheckingReceiver(script) as rx:
        ds = _downstream(rx.port)
        bb = s.backbone(env, {SUB_WRITEBACK_HL7V2: ds})
        s.publish(env.bus, s.event("K3", nhs=NHS[0], visit="VK3", correlation_id="c-k3"))
        stats = s.pump(env.bus, SUB_WRITEBACK_HL7V2, bb.subscriber(SUB_WRITEBACK_HL7V2).handle)
        ds.close()
    assert stats.statuses == {"applied": 1}
    assert rx.payloads[0] == rx.payloads[1]
    [retried] = [a for stage, a in _stages(env, "c-k3") if stage == RETRIED]
    assert (retried["error_code"], retried["response"], retried["detail"]) == (
        "downstream-retry",
        "AE",
        "ERR 207 (E)",
    )


# ------------------------------------------------------------------------------ reading the ACK


@pytest.mark.parametrize(
    ("ack", "errors"),
    [
        (f"{_HEADER}\rMSA|AA|X1", ()),
        (f"{_HEADER}\rMSA|AE|X1\r{_ERR25}", (AckError("103", "E", "PID-8"),)),
        (  # two ERR segments, the second without a location
            f"{_HEADER}\rMSA|AE|X1\r{_ERR25}\rERR|||207|W",
            (AckError("103", "E", "PID-8"), AckError("207", "W", "")),
        ),
        (  # v2.3: ERR-1 repeats seg^seq^field^code&text
            f"{_HEADER}\rMSA|AR|X1\rERR|PID^1^3^101&Required~PV1^1^2^103&Table",
            (AckError("101", "", "PID-3"), AckError("103", "", "PV1-2")),
        ),
        (f"{_HEADER}\rMSA|AE|X1|text||^|204^Unknown key", (AckError("204"),)),  # MSA-6 (v2.3/2.4)
        (  # other delimiters, and text is never taken: only the code token
            "MSH#*!\\@#EPR#R#TIE##20260101##ACK#R1#P#2.4\rMSA#AE#X1\rERR##PID*1*5#101 ; DROP*Smith#E",
            (AckError("101", "E", "PID-5"),),
        ),
    ],
)
def test_read_msa_reports_error_codes_and_positions(ack: str, errors: tuple[AckError, ...]) -> None:
    assert read_msa(ack.encode()).errors == errors


def _fhir_patient_update(saved: str, family: str, corr: str) -> ClinicalEvent:
    """A FHIR Patient PUT as the FHIR API maps it (record time = when it was saved)."""
    subject = pds_patient()
    subject.pop("maritalStatus")  # v3-MaritalStatus M has no HL7 0002 code yet: beside the point here
    subject["name"][0]["family"] = family
    subject["meta"] = {"lastUpdated": saved}
    return event_from_fhir(subject, interaction="update", patient=None, correlation_id=corr).value


def test_a_no_op_fhir_put_sends_nothing(env: s.Env) -> None:
    """Issue 22 item 4: a PUT that changes nothing but its save time is a duplicate: no second A31 (the
    save time is the record time, not content: the digests are equal)."""
    with DupCheckingReceiver(lambda _cid, _n: "AA") as rx:
        ds = _downstream(rx.port)
        bb = s.backbone(env, {SUB_WRITEBACK_HL7V2: ds})
        handle = bb.subscriber(SUB_WRITEBACK_HL7V2).handle
        statuses = []
        for saved, family, corr in (
            ("2026-07-01T12:00:00+01:00", "TESTER", "c-put1"),
            ("2026-07-01T12:05:00+01:00", "TESTER", "c-put2"),  # the same content, saved again
            ("2026-07-01T12:10:00+01:00", "TESTMAN", "c-put3"),  # a real change
        ):
            s.publish(env.bus, _fhir_patient_update(saved, family, corr))
            statuses.append(dict(s.pump(env.bus, SUB_WRITEBACK_HL7V2, handle).statuses))
        ds.close()
    assert statuses == [{"applied": 1}, {"duplicate": 1}, {"applied": 1}]
    sent = [parse_message(p) for p in rx.payloads]
    assert [(m.raw("MSH-9"), m.get("PID-5.1")) for m in sent] == [
        ("ADT^A31^ADT_A05", "TESTER"),
        ("ADT^A31^ADT_A05", "TESTMAN"),
    ]
    [(_, attrs)] = [x for x in _stages(env, "c-put2") if x[0] == DUPLICATE]
    assert attrs["original_correlation_id"] == "c-put1"
    assert attrs["reason"] == "same identity and clinical content as the version applied"
