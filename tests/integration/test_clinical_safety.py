"""Clinical safety (issue 10): what a hospital's lab and PAS send is applied by identity and content, in
clinical order - through the real HL7 v2 edge (parse, validate, ACK, persist), the ingest processor and
both write-back subscribers (FHIR store, HL7 v2 over MLLP), in process, loopback only.

Every scenario asserts the FHIR store's *contents* - the set of (patient, natural id, code, value, status)
tuples - and the terminal journal stage of every message for every subscriber. Each runs three ways:
as built, and with two guards broken on purpose (no idempotency/ledger; the content digest removed from
the identity's versions); the broken runs must fail, which proves the scenario can see what it guards.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from shared.backbone.fhir_writeback import FhirDownstream
from shared.backbone.hl7_profile import OutboundProfile
from shared.backbone.hl7_writeback import Hl7MllpDownstream, MllpSender
from shared.backbone.runtime import Backbone, WriteBackOptions
from shared.canonical import identity
from shared.fhirstore.ports import FhirRepository
from shared.ingest import ingest
from shared.ingest.hl7v2 import Hl7Ingest
from shared.journal import Journal
from shared.messaging.topology import (
    SUB_WRITEBACK_FHIR,
    SUB_WRITEBACK_HL7V2,
)
from tests.integration.test_backbone_faults import drain, pump_ingest
from tests.unit.backbone import support as s
from tests.unit.mapping.hl7v2_in import hl7in_samples as v2

pytestmark = pytest.mark.timeout(120)

WRITEBACKS = (SUB_WRITEBACK_FHIR, SUB_WRITEBACK_HL7V2)
NHS_A, NHS_B, NHS_C = s.nhs_numbers(3)
_COUNTER = itertools.count(1)
#: As built, then each guard the scenarios stand on broken once (each scenario lists those it needs).
RESULTS_GUARDS = (None, "no-idempotency", "no-digest")
CLAIM_GUARDS = (None, "no-idempotency", "no-claims")
DUPLICATE_GUARDS = (None, "no-idempotency", "no-ledger-duplicates")


def _segments(*lines: str) -> bytes:
    return ("\r".join(lines) + "\r").encode("ascii")


def oru(
    control: str,
    *,
    value: str,
    flag: str,
    status: str,
    reported: str,
    nhs: str = NHS_A,
    sent: str | None = None,
    report_status: str | None = None,
) -> bytes:
    """A troponin result for one filler order (OBR-3 LAB1 of WINPATH), OBX-11 ``status``, OBR-25
    ``report_status`` (default: ``status``), OBR-22 ``reported``; MSH-7 ``sent`` (default: ``reported``)."""
    return _segments(
        f"MSH|^~\\&|WINPATH|RX1|TIE|RX1|{sent or reported}||ORU^R01^ORU_R01|{control}|P|2.5.1",
        f"PID|1||{nhs}^^^NHS^NH~M{nhs[-4:]}^^^RX1^MR||TESTPATIENT^ALEX||19800101|F",
        "ORC|RE|ORD1^EPR|LAB1^WINPATH",
        "OBR|1|ORD1^EPR|LAB1^WINPATH|TROP^Troponin T^L|||20260701100000"
        + "|" * 15
        + f"{reported}|||{report_status or status}",
        f"OBX|1|NM|TROP^Troponin T^L||{value}|ng/L|0-14|{flag}|||{status}",
    )


def a01(
    control: str,
    *,
    nhs: str,
    visit: str = "V100",
    app: str = "PAS",
    facility: str = "RX1",
    recorded: str = "20260701101600",
    occurred: str = "",
) -> bytes:
    """An admission; PV1-19 names no assigning authority, so the sending facility scopes the visit. MSH-7
    and EVN-2 are ``recorded``; EVN-6 is ``occurred`` (none by default)."""
    return _segments(
        f"MSH|^~\\&|{app}|{facility}|TIE|RX1|{recorded}||ADT^A01^ADT_A01|{control}|P|2.5.1",
        f"EVN|A01|{recorded}||||{occurred}" if occurred else f"EVN|A01|{recorded}",
        f"PID|1||{nhs}^^^NHS^NH||TESTPATIENT^ALEX||19800101|F",
        "PV1|1|I|WARD7^R2^B4^RX1||||C1234567^Who^Alan^^^Dr^^^GMC"
        + "|" * 12
        + visit
        + "|" * 25
        + "20260701101500",
    )


class Rig:
    """The HL7 edge, the ingest processor and both write-backs over embedded ports."""

    def __init__(
        self,
        env: s.Env,
        receiver: s.FakeHl7Receiver,
        options: WriteBackOptions,
        profile: OutboundProfile | None = None,
    ) -> None:
        self.env = env
        self.receiver = receiver
        self.hl7 = Hl7MllpDownstream(
            MllpSender("127.0.0.1", receiver.port, connect_timeout=0.5), ack_timeout=2, profile=profile
        )
        self.bb: Backbone = s.backbone(
            env,
            {SUB_WRITEBACK_FHIR: FhirDownstream(env.fhir), SUB_WRITEBACK_HL7V2: self.hl7},
            options=options,
        )
        self.edge = Hl7Ingest(env.bus, env.records)
        self.context = ingest.ProcessorContext(bus=env.bus, journal=Journal(env.records))
        self.journal = Journal(env.records)

    def send(self, raw: bytes, corr: str) -> str | None:
        """Send one message and let it run its whole course; the ACK code."""
        result = self.edge.handle(raw, source="mllp", correlation_id=corr)
        pump_ingest(self.env, self.context)
        drain(self.env, self.bb, workers=1)
        return result.code

    def terminal(self, corr: str) -> dict[str, str]:
        """Each write-back subscriber's last stage for ``corr``."""
        last: dict[str, str] = {}
        for entry in self.journal.trace(corr):
            sub = entry.attributes.get("subscriber")
            if sub in WRITEBACKS and entry.stage not in ("delivered", "retried", "failed"):
                last[str(sub)] = entry.stage
        return last

    def reason(self, corr: str, stage: str, sub: str = SUB_WRITEBACK_FHIR) -> dict[str, Any]:
        """The attributes of ``sub``'s ``stage`` entry for ``corr`` (the reason a terminal stage gives)."""
        [entry] = [
            x for x in self.journal.trace(corr) if x.stage == stage and x.attributes.get("subscriber") == sub
        ]
        return dict(entry.attributes)

    def close(self) -> None:
        self.hl7.close()


def _nhs_of(repo: FhirRepository, reference: str) -> str:
    rtype, _, rid = reference.partition("/")
    patient = repo.read(rtype, rid).resource
    return next(i["value"] for i in patient["identifier"] if i["system"].endswith("nhs-number"))


def observations(repo: FhirRepository) -> set[tuple[str, str, str, str, str]]:
    """(patient NHS number, code, value, interpretation, status) of every stored Observation."""
    found = set()
    for resource in repo.search("Observation", [], count=100).resources:
        codes = {c["code"] for i in resource.get("interpretation", []) for c in i["coding"]}
        interp = ",".join(sorted(codes))
        found.add(
            (
                _nhs_of(repo, resource["subject"]["reference"]),
                resource["code"]["coding"][0]["code"],
                str(resource["valueQuantity"]["value"]) if "valueQuantity" in resource else "-",
                interp,
                resource["status"],
            )
        )
    return found


def encounters(repo: FhirRepository) -> set[tuple[str, str, str]]:
    """(patient NHS number, visit system|value, status) of every stored Encounter."""
    found = set()
    for resource in repo.search("Encounter", [], count=100).resources:
        visit = resource["identifier"][0]
        found.add(
            (
                _nhs_of(repo, resource["subject"]["reference"]),
                f"{visit['system']}|{visit['value']}",
                resource["status"],
            )
        )
    return found


@contextmanager
def rig(
    tmp_path: Path,
    sabotage: str | None,
    monkeypatch: pytest.MonkeyPatch,
    profile: OutboundProfile | None = None,
) -> Iterator[Rig]:
    quick = {"timeout_seconds": 0.5, "max_attempts": 2, "backoff_base_seconds": 0.01}
    options = WriteBackOptions(operational_events=False, **quick)  # type: ignore[arg-type]
    if sabotage == "no-idempotency":
        options = WriteBackOptions(operational_events=False, idempotency=False, **quick)  # type: ignore[arg-type]
    elif sabotage == "no-digest":
        for module in ("shared.backbone.writeback", "shared.backbone.clinical"):
            monkeypatch.setattr(f"{module}.content_digest", lambda _data: "0" * 64)
    elif sabotage == "no-claims":
        monkeypatch.setattr(identity, "natural_claim", lambda _event: None)
    elif sabotage == "no-ledger-duplicates":  # every version of an identity taken as new content
        monkeypatch.setattr(
            "shared.backbone.writeback.content_digest", lambda _data: next(_COUNTER).to_bytes(32).hex()
        )
    with s.embedded(tmp_path, lock_seconds=5.0, max_delivery=3) as env, s.FakeHl7Receiver() as receiver:
        r = Rig(env, receiver, options, profile)
        try:
            yield r
        finally:
            r.close()


def expect(sabotage: str | None, check: Callable[[], Any]) -> None:
    """As built the scenario holds; with a guard broken it must not (the test can fail)."""
    if sabotage is None:
        check()
    else:
        with pytest.raises(AssertionError):
            check()


# -- case 1: results in clinical order ---------------------------------------------------------------------


@pytest.mark.parametrize("sabotage", RESULTS_GUARDS)
def test_a_final_result_replaces_the_preliminary_and_a_late_preliminary_never_wins(
    tmp_path: Path, sabotage: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with rig(tmp_path, sabotage, monkeypatch) as r:
        codes = [
            r.send(oru("L1", value="9", flag="N", status="P", reported="20260701103000"), "r-prelim"),
            r.send(oru("L2", value="52", flag="H", status="F", reported="20260701113000"), "r-final"),
            # the preliminary again, late, under a new control id
            r.send(oru("L3", value="9", flag="N", status="P", reported="20260701103000"), "r-late"),
            r.send(oru("L4", value="48", flag="H", status="C", reported="20260701123000"), "r-corrected"),
            # the final, resent after the correction
            r.send(oru("L5", value="52", flag="H", status="F", reported="20260701113000"), "r-final-again"),
        ]
        repo = r.env.fhir

        def check() -> None:
            assert codes == ["AA"] * 5
            assert observations(repo) == {(NHS_A, "TROP", "48", "H", "corrected")}
            both = dict.fromkeys(WRITEBACKS)
            assert r.terminal("r-prelim") == dict.fromkeys(both, "written-back")
            assert r.terminal("r-final") == dict.fromkeys(both, "written-back")
            assert r.terminal("r-late") == dict.fromkeys(both, "superseded")
            assert r.terminal("r-corrected") == dict.fromkeys(both, "written-back")
            assert r.terminal("r-final-again") == dict.fromkeys(both, "superseded")
            assert r.journal.waiting("r-late") == {}
            # each terminal stage says why: the versions written, the version that stands
            assert "Observation/" in r.reason("r-final", "written-back")["response"]
            assert "/_history/2" in r.reason("r-final", "written-back")["response"]
            late = r.reason("r-late", "superseded")
            assert late["original_correlation_id"] == "r-final" and late["reason"]

        expect(sabotage, check)


@pytest.mark.parametrize("sabotage", RESULTS_GUARDS)
def test_a_result_entered_in_error_is_the_last_word(
    tmp_path: Path, sabotage: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OBX-11 W (wrong patient: entered-in-error; the report itself corrected, OBR-25 C): no final resent
    late, nor a correction, brings the withdrawn value back."""
    with rig(tmp_path, sabotage, monkeypatch) as r:
        final = {"value": "52", "flag": "H", "status": "F", "reported": "20260701113000"}
        codes = [
            r.send(oru("W1", **final), "w-final"),
            r.send(
                oru("W2", **{**final, "status": "W", "reported": "20260701123000"}, report_status="C"),
                "w-wrong",
            ),
            r.send(oru("W3", **final, sent="20260701130000"), "w-final-late"),
            r.send(oru("W4", value="48", flag="H", status="C", reported="20260701133000"), "w-corrected"),
        ]

        def check() -> None:
            assert codes == ["AA"] * 4
            assert observations(r.env.fhir) == {(NHS_A, "TROP", "52", "H", "entered-in-error")}
            assert r.terminal("w-final") == dict.fromkeys(WRITEBACKS, "written-back")
            assert r.terminal("w-wrong") == dict.fromkeys(WRITEBACKS, "written-back")
            assert r.terminal("w-final-late") == dict.fromkeys(WRITEBACKS, "superseded")
            assert r.terminal("w-corrected") == dict.fromkeys(WRITEBACKS, "superseded")

        expect(sabotage, check)


@pytest.mark.parametrize("sabotage", RESULTS_GUARDS)
def test_a_cancelled_result_stays_cancelled(
    tmp_path: Path, sabotage: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OBX-11 / OBR-25 X (no result: the test was cancelled) after a preliminary; the preliminary resent
    later is superseded."""
    with rig(tmp_path, sabotage, monkeypatch) as r:
        prelim = {"value": "9", "flag": "N", "status": "P", "reported": "20260701103000"}
        codes = [
            r.send(oru("X1", **prelim), "x-prelim"),
            r.send(oru("X2", value="", flag="", status="X", reported="20260701113000"), "x-cancel"),
            r.send(oru("X3", **prelim, sent="20260701120000"), "x-prelim-late"),
        ]

        def check() -> None:
            assert codes == ["AA"] * 3
            assert observations(r.env.fhir) == {(NHS_A, "TROP", "-", "", "cancelled")}
            assert r.terminal("x-prelim") == dict.fromkeys(WRITEBACKS, "written-back")
            assert r.terminal("x-cancel") == dict.fromkeys(WRITEBACKS, "written-back")
            assert r.terminal("x-prelim-late") == dict.fromkeys(WRITEBACKS, "superseded")

        expect(sabotage, check)


# -- case 2: one visit number, several patients --------------------------------------------------------------


@pytest.mark.parametrize("sabotage", CLAIM_GUARDS)
def test_patients_sharing_a_visit_number_never_collapse(
    tmp_path: Path, sabotage: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with rig(tmp_path, sabotage, monkeypatch) as r:
        codes = [
            r.send(a01("A1", nhs=NHS_A), "p-a"),
            r.send(a01("A2", nhs=NHS_B), "p-b"),  # same issuer's visit V100, another NHS number: conflict
            r.send(a01("A3", nhs=NHS_C, app="EPR2", facility="RX2"), "p-c"),  # another issuer's V100
        ]
        repo = r.env.fhir

        def check() -> None:
            assert codes == ["AA"] * 3
            assert encounters(repo) == {
                (NHS_A, "urn:tie:authority:RX1|V100", "in-progress"),
                (NHS_C, "urn:tie:authority:RX2|V100", "in-progress"),
            }
            assert r.terminal("p-a") == dict.fromkeys(WRITEBACKS, "written-back")
            assert r.terminal("p-b") == dict.fromkeys(WRITEBACKS, "conflict")
            assert r.reason("p-b", "conflict")["reason"]
            assert r.terminal("p-c") == dict.fromkeys(WRITEBACKS, "written-back")

        expect(sabotage, check)


# -- case 3: the same admission resent under a new control id ------------------------------------------------


@pytest.mark.parametrize("sabotage", DUPLICATE_GUARDS)
def test_an_admission_resent_under_a_new_control_id_is_recorded_as_a_duplicate(
    tmp_path: Path, sabotage: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with rig(tmp_path, sabotage, monkeypatch) as r:
        codes = [r.send(a01("D1", nhs=NHS_A), "d-first"), r.send(a01("D2", nhs=NHS_A), "d-again")]

        def check() -> None:
            assert codes == ["AA", "AA"]
            assert encounters(r.env.fhir) == {(NHS_A, "urn:tie:authority:RX1|V100", "in-progress")}
            assert r.terminal("d-first") == dict.fromkeys(WRITEBACKS, "written-back")
            assert r.terminal("d-again") == dict.fromkeys(WRITEBACKS, "duplicate")
            dup = [x for x in r.journal.trace("d-again") if x.stage == "duplicate"]
            assert {x.attributes["original_correlation_id"] for x in dup} == {"d-first"}
            assert r.journal.waiting("d-again") == {}

        expect(sabotage, check)


@pytest.mark.parametrize("sabotage", DUPLICATE_GUARDS)
def test_an_admission_resent_with_a_new_record_time_is_a_duplicate(
    tmp_path: Path, sabotage: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PAS resend regenerates MSH-7, MSH-10 and often EVN-2; with no EVN-6 the event time is only that
    record time, so it is not clinical content: the resend is a duplicate and the HL7 v2 downstream is not
    sent the admission again."""
    with rig(tmp_path, sabotage, monkeypatch) as r:
        codes = [
            r.send(a01("E1", nhs=NHS_A), "e-first"),
            r.send(a01("E2", nhs=NHS_A, recorded="20260702090000"), "e-again"),
        ]

        def check() -> None:
            assert codes == ["AA", "AA"]
            assert encounters(r.env.fhir) == {(NHS_A, "urn:tie:authority:RX1|V100", "in-progress")}
            assert r.terminal("e-first") == dict.fromkeys(WRITEBACKS, "written-back")
            assert r.terminal("e-again") == dict.fromkeys(WRITEBACKS, "duplicate")
            dup = [x for x in r.journal.trace("e-again") if x.stage == "duplicate"]
            assert {x.attributes["original_correlation_id"] for x in dup} == {"e-first"}
            assert r.journal.waiting("e-again") == {}

        expect(sabotage, check)


@pytest.mark.parametrize("sabotage", DUPLICATE_GUARDS)
def test_an_admission_with_evn6_equal_to_evn2_resent_with_a_new_record_time_is_a_duplicate(
    tmp_path: Path, sabotage: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PAS real-time event often states EVN-6 = EVN-2; its resend keeps EVN-6 and regenerates EVN-2,
    MSH-7 and MSH-10. The event time is not content (only the record time differed in the first message,
    not in the resend): the resend is a duplicate naming the original and the HL7 v2 downstream is sent
    the admission once."""
    with rig(tmp_path, sabotage, monkeypatch) as r:
        first = "20260701101600"
        codes = [
            r.send(a01("F1", nhs=NHS_A, recorded=first, occurred=first), "f-first"),
            r.send(a01("F2", nhs=NHS_A, recorded="20260702090000", occurred=first), "f-again"),
        ]

        def check() -> None:
            assert codes == ["AA", "AA"]
            assert encounters(r.env.fhir) == {(NHS_A, "urn:tie:authority:RX1|V100", "in-progress")}
            assert r.terminal("f-first") == dict.fromkeys(WRITEBACKS, "written-back")
            assert r.terminal("f-again") == dict.fromkeys(WRITEBACKS, "duplicate")
            dup = [x for x in r.journal.trace("f-again") if x.stage == "duplicate"]
            assert {x.attributes["original_correlation_id"] for x in dup} == {"f-first"}
            assert r.journal.waiting("f-again") == {}
            assert len(r.receiver.message_types) == 1 and sum(r.receiver.applied.values()) == 1

        expect(sabotage, check)


@pytest.mark.parametrize("sabotage", DUPLICATE_GUARDS)
def test_a_result_resent_with_a_new_send_time_and_control_id_is_a_duplicate(
    tmp_path: Path, sabotage: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lab resends a result as it resends anything: new MSH-10, MSH-7 = the time of the resend (an ORU
    has no EVN segment, so MSH-7 is also its event time). Transport noise: the resend is a duplicate, and
    the HL7 v2 downstream is not sent the result a second time."""
    with rig(tmp_path, sabotage, monkeypatch) as r:
        final = {"value": "52", "flag": "H", "status": "F", "reported": "20260701113000"}
        codes = [
            r.send(oru("R1", **final), "rs-first"),
            r.send(oru("R2", **final, sent="20260702090000"), "rs-again"),
        ]

        def check() -> None:
            assert codes == ["AA", "AA"]
            assert observations(r.env.fhir) == {(NHS_A, "TROP", "52", "H", "final")}
            assert r.terminal("rs-first") == dict.fromkeys(WRITEBACKS, "written-back")
            assert r.terminal("rs-again") == dict.fromkeys(WRITEBACKS, "duplicate")
            dup = [x for x in r.journal.trace("rs-again") if x.stage == "duplicate"]
            assert {x.attributes["original_correlation_id"] for x in dup} == {"rs-first"}
            assert r.journal.waiting("rs-again") == {}

        expect(sabotage, check)


# -- cases 4 and 5: updates change only what they carry; merges are complete ---------------------------------

GP = v2.seg("PD1", {3: "THE SURGERY^^Y01234"})
RETIRED_MRN = "RRV7654321"
UPDATE_GUARDS = (None, "whole-record-put")
MERGE_GUARDS = (None, "no-retire")


def _guard(sabotage: str | None, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """The FHIR write-back's own guards, broken here (the rig breaks the backbone's)."""
    if sabotage == "whole-record-put":  # the message's resource replaces the stored one
        monkeypatch.setattr("shared.backbone.fhir_writeback.merge_update", lambda _event, _stored, new: new)
    elif sabotage == "no-retire":  # the merged-away Patient is left as it was
        monkeypatch.setattr("shared.backbone.fhir_writeback.retire", lambda stored, _other: dict(stored))
    elif sabotage == "no-undo-move":  # an A12 merged like an A02: the cancelled ward kept as history
        monkeypatch.setattr("shared.mapping.fhir_out.merge.KIND_UNDOES_MOVE", frozenset())
    elif sabotage == "no-cancel-mark":  # the A12 does not name the transfer it cancels
        monkeypatch.setattr(identity, "cancelled_event_key", lambda *_a, **_k: None)
    elif sabotage == "no-latest-transfer":  # an A12 naming no applied transfer cancels none
        monkeypatch.setattr("shared.backbone.ledger._latest_transfer", lambda *_args: None)
    return None


def _wards(repo: FhirRepository, encounter: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for entry in encounter["location"]:
        rtype, _, rid = entry["location"]["reference"].partition("/")
        out.append((repo.read(rtype, rid).resource["name"], entry["status"]))
    return out


@pytest.mark.parametrize("sabotage", UPDATE_GUARDS)
def test_updates_change_only_what_they_carry(
    tmp_path: Path, sabotage: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A01 with the GP practice (PD1), A02 to another ward, A08 without PD1, A03 with the discharge
    disposition, A08 without PV1-36: the practice, the disposition and the prior ward all survive."""
    with rig(tmp_path, _guard(sabotage, monkeypatch), monkeypatch) as r:
        sent = {
            "u-a01": v2.adt("A01", before_pv1=(GP,), control_id="U1"),
            "u-a02": v2.adt(
                "A02",
                pv1={3: "WARD2^B^1^RRV", 6: "WARD1^BAY2^BED3^RRV"},
                control_id="U2",
                when="20260702120000",
            ),
            "u-a08": v2.adt("A08", pv1={3: "WARD2^B^1^RRV"}, control_id="U3", when="20260703120000"),
            "u-a03": v2.adt(
                "A03",
                pv1={3: "WARD2^B^1^RRV", 36: "01", 45: "20260705100000"},
                control_id="U4",
                when="20260705100100",
            ),
            "u-a08-after": v2.adt(
                "A08", pv1={3: "WARD2^B^1^RRV", 4: "U"}, control_id="U5", when="20260706090000"
            ),
        }
        codes = [r.send(raw, corr) for corr, raw in sent.items()]
        repo = r.env.fhir

        def check() -> None:
            assert codes == ["AA"] * len(sent)
            assert {corr: r.terminal(corr)[SUB_WRITEBACK_FHIR] for corr in sent} == dict.fromkeys(
                sent, "written-back"
            )
            [patient] = repo.search("Patient", [], count=10).resources
            [gp] = patient.get("generalPractitioner", [{"reference": "-/-"}])
            rtype, _, rid = gp["reference"].partition("/")
            assert (
                rtype == "Organization"
                and repo.read(rtype, rid).resource["identifier"][0]["value"] == "Y01234"
            )
            [encounter] = repo.search("Encounter", [], count=10).resources
            assert encounter["status"] == "finished"
            disposition = encounter.get("hospitalization", {}).get("dischargeDisposition", {})
            assert [c["code"] for c in disposition.get("coding", [])] == ["01"]
            assert _wards(repo, encounter) == [("WARD2/B/1", "completed"), ("WARD1/BAY2/BED3", "completed")]

        expect(sabotage, check)


@pytest.mark.parametrize("sabotage", MERGE_GUARDS)
def test_a_merge_retires_the_old_record_and_its_results_follow_the_survivor(
    tmp_path: Path, sabotage: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record known only by its local number is admitted and gets a result; A40 merges it into the
    patient with the NHS number: the old Patient is inactive and replaced-by the survivor, the survivor
    replaces it, and the NHS number's Patient reaches the old record's encounter and result."""
    with rig(tmp_path, _guard(sabotage, monkeypatch), monkeypatch) as r:
        old = {3: f"{RETIRED_MRN}^^^RRV^MR"}
        sent = {
            "m-survivor": v2.adt("A01", control_id="G1"),
            "m-old-a01": v2.adt("A01", pid=old, pv1={19: "V0000999^^^RRV^VN"}, control_id="G2"),
            "m-old-oru": v2.oru(pid=old, control_id="G3"),
            "m-a40": v2.message(
                v2.msh("ADT^A40^ADT_A39", control_id="G4", when="20260702120000"),
                v2.seg("EVN", {1: "A40", 2: "20260702120000"}),
                v2.seg("PID", {**v2.PID}),
                v2.seg("MRG", {1: f"{RETIRED_MRN}^^^RRV^MR"}),
            ),
        }
        codes = [r.send(raw, corr) for corr, raw in sent.items()]
        repo = r.env.fhir

        def check() -> None:
            assert codes == ["AA"] * len(sent)
            assert {corr: r.terminal(corr)[SUB_WRITEBACK_FHIR] for corr in sent} == dict.fromkeys(
                sent, "written-back"
            )
            nhs = f"https://fhir.nhs.uk/Id/nhs-number|{v2.NHS}"
            [survivor] = repo.search("Patient", [("identifier", nhs)]).resources
            [retired] = repo.search(
                "Patient", [("identifier", f"urn:tie:authority:RRV|{RETIRED_MRN}")]
            ).resources
            assert retired["id"] != survivor["id"]
            assert retired.get("active") is False
            assert [(x["type"], x["other"]["reference"]) for x in retired.get("link", [])] == [
                ("replaced-by", f"Patient/{survivor['id']}")
            ]
            assert [(x["type"], x["other"]["reference"]) for x in survivor.get("link", [])] == [
                ("replaces", f"Patient/{retired['id']}")
            ]
            mine = [("patient", survivor["id"])]
            visits = {e["identifier"][0]["value"] for e in repo.search("Encounter", mine).resources}
            assert visits == {"V0000123", "V0000999"}
            results = {
                (o["code"]["coding"][0]["code"], str(o["valueQuantity"]["value"]))
                for o in repo.search("Observation", mine).resources
            }
            assert results == {("NA", "140")}

        expect(sabotage, check)


# -- A12: a cancelled transfer undoes the move, and the transfer may happen again ----------------------------

CANCEL_TRANSFER_RUNS = (  # (outbound events, sabotage, the A12 states EVN-6)
    ("native", None, True),
    ("collapsed", None, True),
    ("native", "whole-record-put", True),
    ("native", "no-undo-move", True),
    ("native", "no-cancel-mark", True),
    ("native", None, False),
    ("native", "no-latest-transfer", False),
)
AE, WARD1, WARD2 = "AE^CUB1^^RRV", "WARD1^BAY2^BED3^RRV", "WARD2^B^1^RRV"


@pytest.mark.parametrize(("events", "sabotage", "a12_evn6"), CANCEL_TRANSFER_RUNS)
def test_a_cancelled_transfer_makes_the_prior_ward_current_and_the_transfer_can_happen_again(
    tmp_path: Path, events: str, sabotage: str | None, a12_evn6: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A01 in ED, A02 to ward 1, A02 to ward 2 (EVN-6 11:55), A12 of that transfer back to ward 1: ward 1
    is current again, ward 2 is gone from the history (the patient never went), ED stays (an A12 without
    EVN-6 cancels the most recent transfer: the same). The same transfer sent again later (same content,
    new control id and record time) is applied, not taken for a duplicate: the A12 marked it cancelled.
    Both write-backs write every message; native mode sends A12."""
    profile = OutboundProfile(events=events)  # type: ignore[arg-type]
    with rig(tmp_path, _guard(sabotage, monkeypatch), monkeypatch, profile) as r:
        to_ward2, at = {3: WARD2, 6: WARD1}, {6: "20260702115500"}  # PV1, EVN (the move's time)
        sent = {
            "t-a01": v2.adt("A01", pv1={3: AE}, control_id="T1"),
            "t-a02-ward1": v2.adt("A02", pv1={3: WARD1, 6: AE}, control_id="T2", when="20260702090000"),
            "t-a02-ward2": v2.adt("A02", pv1=to_ward2, evn=at, control_id="T3", when="20260702120000"),
            "t-a12": v2.adt(
                "A12",
                pv1={3: WARD1, 6: WARD2},
                evn={6: "20260702115500"} if a12_evn6 else {},  # without: the most recent transfer
                control_id="T4",
                when="20260702130000",
            ),
        }
        codes = [r.send(raw, corr) for corr, raw in sent.items()]
        repo = r.env.fhir
        [after_cancel] = repo.search("Encounter", [], count=10).resources
        wards_after_cancel = _wards(repo, after_cancel)
        types_before_resend = list(r.receiver.message_types)
        ids_before_resend = set(r.receiver.received)
        again = v2.adt("A02", pv1=to_ward2, evn=at, control_id="T5", when="20260702140000")
        codes.append(r.send(again, "t-a02-again"))

        def check() -> None:
            assert codes == ["AA"] * 5
            for sub in WRITEBACKS:
                assert {c: r.terminal(c).get(sub) for c in [*sent, "t-a02-again"]} == dict.fromkeys(
                    [*sent, "t-a02-again"], "written-back"
                ), sub
            assert wards_after_cancel == [("WARD1/BAY2/BED3", "active"), ("AE/CUB1", "completed")]
            [encounter] = repo.search("Encounter", [], count=10).resources
            assert encounter["status"] == "in-progress"
            assert _wards(repo, encounter) == [
                ("WARD2/B/1", "active"),
                ("WARD1/BAY2/BED3", "completed"),
                ("AE/CUB1", "completed"),
            ]
            cancel = "ADT^A12^ADT_A12" if events == "native" else "ADT^A08^ADT_A01"
            assert types_before_resend[-1] == cancel
            # The transfer applied again carries a control id of its own: a receiver that drops a repeated
            # MSH-10 as a duplicate must not drop it (same key and content as the cancelled one).
            assert len(set(r.receiver.received) - ids_before_resend) == 1

        expect(sabotage, check)
