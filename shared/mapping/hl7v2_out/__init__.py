"""Canonical clinical event -> HL7 v2 (ADT^A08, ORU^R01) for write-back to systems that only speak v2.

API::

    to_adt_a08(event, *, sending_application, sending_facility, receiving_application,
               receiving_facility, control_id=None, version="2.5.1", now=None) -> Message
    to_oru_r01(event, ...same...) -> Message
    to_adt_a31(event, ...same...) -> Message   (patient-level update: an A08 needs a visit in PV1-19)
    adt_a08(...) / adt_a31(...) / oru_r01(...) -> Mapped[Message]   (the same, with lineage
                                                                      canonical path -> HL7 path)

``Message`` is :class:`shared.hl7v2.Message` built with :func:`shared.hl7v2.build_message` (values are
escaped: ``| ^ ~ \\ &`` and line breaks); ``.encode()`` gives the bytes. Every message is valid for
:func:`shared.hl7v2.validation.validate` (no errors).

Rules (each the inverse of :mod:`shared.mapping.hl7v2_in`, driven by the same ``rules.json``)
----------------------------------------------------------------------------------------------
* MSH-7 / every TS: :func:`shared.mapping.timeutil.to_hl7` - UK local time with an explicit offset, at
  the recorded precision. MSH-10 defaults to a deterministic id derived from the event key (a replay
  carries the same control id). MSH-9.3 (structure) from v2.3.1.
* PID-3: the NHS number first as ``<nhs>^^^NHS^NH``, then every local identifier (those read from PID-2
  and PID-4 included, in the same order, so they read back identically): ``urn:tie:authority:<ns>``
  -> CX.4 ``<ns>``; a known authority URI (ODS, GMC ...) -> its name; ``urn:oid:``/``urn:uuid:`` ->
  universal id (ISO/UUID); any other URI -> universal id type ``URI``. PID-32: the NHS-number
  verification status as the HL7 UK ``NSTS0n`` code.
* PID-5 XPN: family ^ given ^ further given names space-joined ^ suffix ^ prefix ^ 2nd suffix ^ name type
  (XPN.7, v2-0200), v2.5+ also period (.12/.13) and 3rd suffix (.14). PID-11 XAD: line 1 (as SAD.1) ^
  line 2 (further lines comma-joined into it) ^ city ^ district ^ postcode ^ country ^ address type (XAD.7
  v2-0190: the use, else the type), v2.5+ period (.13/.14). A name/address use or type, telecom use or
  verification status with no v2 code is left empty (lineage says why), never guessed.
* PID-13 (home) / PID-14 (a ``work`` contact) XTN: number ^ use (v2-0201; no use: NET for an email,
  BPN for a pager) ^ equipment type (v2-0202, required: ``other``/``url``/``sms`` have no single v2 code
  and raise :class:`UnmappableCode`) ^ email address (XTN.4). A contact with no use written to PID-13
  reads back as home: HL7 v2.5 has no telecom field without a use.
* Codes are translated backwards through the concept maps (``translate(..., reverse=True)``): PID-8
  (v2-0001), PV1-2 (v2-0004), PV1-4 (v2-0007), OBX-8 (v2-0078), OBX-11 (v2-0085), OBR-25 (v2-0123). A
  coding already in the v2 table is used as it is; the single equivalent match wins; no match, or several
  candidates, raise :class:`UnmappableCode` - never a default. FHIR's ``unknown`` result status (what an
  empty OBX-11 / OBR-25 reads as) is written back as an empty field. Table-only fields without a map
  (PV1-10, PV1-14, PV1-36, OBR-24) need a coding in their v2 table, else :class:`UnmappableCode`.
* PD1 when there is a GP practice (PD1-3 XON: ODS code in XON.10, XON.3 before v2.5) or a restricted
  record (PD1-12 protection indicator Y; a very restricted record cannot be expressed -> error).
* PV1: class, location (PL), admission type, prior location, attending/referring/admitting (XCN),
  hospital service, admit source, visit number (PV1-19, the identity rule's visit identifier), the
  first other encounter identifier as the alternate visit ID (PV1-50; further ones are not written),
  discharge disposition, PV1-44/45 period. A data-absent class whose source is not a listed v2-0004
  code raises :class:`UnmappableCode`. An event without an encounter gets ``PV1|1|N`` (patient
  class not applicable); for such patient-level changes prefer the A31, since an A08 receiver (and
  ``hl7v2_in``) expects the visit number.
* ORU: per report an ORC (``RE``, placer, filler) when there is an order number, OBR (placer, filler,
  code, OBR-7 effective, OBR-22 issued, OBR-24 category, OBR-25 status, OBR-32 the practitioners among
  the report's performers; before v2.5 OBR-15/OBR-14 the one specimen), NTE per report note and for the
  conclusion; per result OBX (value type from the value: NM, SN for comparators and ranges, CWE/CE, ST/TX,
  DTM/TS, RP for an attachment URL; OBX-6 UCUM units, OBX-7 the reference range text, OBX-8 flags,
  OBX-11, OBX-14, OBX-16 practitioners, OBX-23 organisation - left empty when the performer is the
  report's OBR-32 interpreter) and an NTE per note; then (v2.5+) an SPM per specimen (set id, SPM-2 ids,
  SPM-4 type, SPM-17.1 collected, SPM-18 received).
"""

from __future__ import annotations

from shared.mapping.hl7v2_out.errors import Hl7OutError, UnmappableCode
from shared.mapping.hl7v2_out.messages import (
    adt_a08,
    adt_a31,
    oru_r01,
    to_adt,
    to_adt_a08,
    to_adt_a31,
    to_adt_a40,
    to_oru_r01,
)

__all__ = [
    "Hl7OutError",
    "UnmappableCode",
    "adt_a08",
    "adt_a31",
    "oru_r01",
    "to_adt",
    "to_adt_a08",
    "to_adt_a31",
    "to_adt_a40",
    "to_oru_r01",
]
