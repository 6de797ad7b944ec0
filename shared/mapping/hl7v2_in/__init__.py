"""HL7 v2 message -> canonical :class:`~shared.canonical.model.ClinicalEvent`, with field-level lineage.

API
---
::

    map_message(message, *, correlation_id=None, received_at=None, lineage=False, strict=False)
        -> Mapped[ClinicalEvent]
    map_bytes(raw, *, ...same keywords...) -> Mapped[ClinicalEvent]      # parse_message + map_message

Errors are :class:`~shared.mapping.errors.MappingError` subclasses (and only those; ``map_bytes`` also lets
the parser's ``Hl7ParseError`` through) with ``field`` = the HL7 location (``"PID-3"``, ``"OBX(4)-5"``) and
``error_code`` = HL7 table 0357 (101 required field missing, 102 data type, 103 table value / unmapped code,
200 message type, 201 trigger event, 207 internal). Texts name fields, tables and rules, never patient data
(no identifiers, names, codes or values typed by a person); an unmapped code's terminology error is kept
as ``cause`` but not chained, as its text quotes the code. Nothing is returned half-built.
``strict=True`` makes every coded field that has a concept map raise on an unmapped code
(:class:`~shared.mapping.errors.UnmappedSourceCode`, wrapping terminology's ``UnmappedCode``).

Rules as data
-------------
``rules.json`` (versioned; compiled once at import by ``rules.py``, which rejects unknown members, event
kinds, statuses, missing concept maps, map targets the canonical field cannot hold) holds:

* ``messages``: ``"TYPE^TRIGGER"`` -> event kind, assembly (encounter / patient / merge / results / orders),
  encounter status (or ``derived``), order intent;
* ``event_times``: ``occurred_at`` = first of EVN-6, EVN-2, MSH-7; ``recorded_at`` = EVN-2, else MSH-7;
* ``encounter_start``: PV1-44 (A05 pre-admission: PV1-44, else PV2-8 expected admit date);
  ``encounter_end``: PV1-45 for every trigger (A05: PV1-45, else PV2-9 expected discharge - an expected
  time is an end only for a planned encounter);
* ``derived_encounter_status`` (A08 and result/order context): PV1-45 present -> finished; PV1-2 ``P`` ->
  planned; PV1-44 present -> in-progress; none -> MissingRequiredField("PV1-44") (A08) / ``unknown``
  (result/order context: the PV1 names the encounter but not its state); a step marked ``asserted:
  false`` (inferred from a missing PV1-45) lists ``status`` in the A08 Encounter's ``defaulted``;
* ``explicit_null`` (update semantics, ``docs/update-semantics.md``): an empty field is "no change", the
  HL7 null ``""`` is "delete" - ``fields`` lists which HL7 field deletes which canonical field (recorded
  in ``Patient.cleared`` / ``Encounter.cleared`` when the field ended up empty); ``defaults_when_absent``:
  PD1-12 empty or no PD1 -> ``Patient.defaulted`` = ``("sensitivity",)`` (normal is the default, not a
  statement);
* ``identifiers``: system construction (below), NHS-number fields, local identifier fields (PID-3, PID-2,
  PID-4), the alternate visit field (PV1-50);
* ``telecom``: PID-13/PID-14 and the use each implies, the system of an XTN without equipment type;
* ``coding_systems``: CWE.3 names -> URIs (LN, SCT, SNM, I10, UCUM ... and the deploying trust's local
  lab system); ``HL7nnnn`` -> ``http://terminology.hl7.org/CodeSystem/v2-nnnn``; a URI as is; anything else
  ``urn:tie:codesystem:<name>`` (percent-encoded);
* ``coded_fields``: per canonical field, its HL7 field, source table, concept map (``shared.terminology``) or
  ``null`` (kept as sent: the code in its source system), unmapped policy (``raise`` / ``data-absent`` /
  ``keep-source`` / ``omit``: an optional bare-code field that cannot hold a data-absent reason is left
  empty - the name, address, contact or order is kept, nothing is defaulted; strict raises), ``unmatched``
  (``omit``: codes the map lists as deliberately unmatched leave the field empty while unlisted codes
  follow ``unmapped``), ``target_system`` (which group of a map), ``when_empty`` and ``status``
  (``pending``: the concept map does not ship yet, the field is not mapped);
* ``indicators`` (Y/N fields), ``observation_value_types`` (OBX-2 -> value handler), ``numeric_unparseable``
  policy, ``encapsulated_subtypes`` (ED subtype ->
  media type).

Lineage: sources are HL7 paths (``PID-5[1].2``, ``OBX(3)-5``), targets canonical paths
(``patient.names[0].given[0]``). Coded fields carry ``table`` = concept map id and ``table_version`` = its
version; every other entry carries ``table_version`` = the rules version. Derived values (the event key,
constants) have ``source`` None and a rule saying why. Every populated canonical leaf is covered.

Events
------
=========  ========================  ====================================================================
trigger    kind                      encounter
=========  ========================  ====================================================================
A01        admission                 in-progress; key needs PV1-44
A02        transfer                  in-progress; PV1-6 prior location; key time = occurred_at
A03        discharge                 finished; key needs PV1-45
A04        registration              arrived (present, not necessarily seen; fhir_in reads it back as A04)
A05        pre-admission             planned; start PV1-44 else PV2-8, end PV1-45 else PV2-9
A08        encounter-update          derived from PV1 (above)
A11        cancel-admission          the same encounter, cancelled; ``cancels`` = the admission's key
                                     (same visit number + PV1-44), not a new encounter
A13        cancel-discharge          in-progress; PV1-45 kept in period.end (the discharge being
                                     cancelled) so ``cancels`` = the discharge's key; writers drop it
A28/A31    patient-created/-updated  none (PV1 ignored)
A40        patient-merge             none; MRG-1 -> ``merged_identifiers``; patient.links = ``replaces``
                                     -> each merged identifier. One PID/MRG pair per message.
ORU^R01    result                    from PV1 when it has a visit number and a class; status derived,
                                     else ``unknown``; results refer to it (fhir_out: by identifier)
ORM^O01    order                     as for results
=========  ========================  ====================================================================

Event envelope: ``key`` from :mod:`shared.canonical.identity` (the FHIR path computes the same); a message
with several reports/orders is keyed on the first. ``source`` = SourceSystem(MSH-3, MSH-4);
``provenance`` = (hl7v2, MSH-10, ``TYPE^TRIGGER``, ``received_at``, ``correlation_id``). Times: HL7 TS
without an offset are Europe/London (GMT/BST, :mod:`shared.mapping.timeutil`); precision is kept.

Patient (PID, PD1)
------------------
* NHS number: a PID-3 (then PID-2, PID-4) repetition that asserts one - assigning authority ``NHS`` (or
  the NHS OID) with type ``NH``, ``HN`` (UCLH Epic) or none, or type ``NH`` with no authority: the
  validator's own rule (``shared.hl7v2.validation.asserts_nhs_number``). It must pass Modulus 11 (else
  InvalidValue ``PID-3``: the validator already AEs it); two different ones are an error. Repeated-digit
  placeholders (``9999999999``, UCLH test feeds) are not a patient's number and are ignored (treating them
  as one would merge every such patient into one). Failing that, PID-19 (a v2.3 field some UK feeds use
  for the NHS number) when it passes Modulus 11. Verification status: the HL7 UK / NHS ITK convention,
  PID-32 ``NSTS01``..``NSTS08`` through ``hl7uk-0445-to-nhs-number-verification-status`` ->
  ``01``..``08``; the table's own reliability codes (US, UD, UA, AL) say nothing about the NHS number (no
  status); an unlisted code or two different statuses raise (a wrong status misleads about identity).
  Without an NHS number a status has nothing to qualify and is not kept.
* Other PID-3, then PID-2 (patient ID, external) and PID-4 (alternate patient ID) repetitions ->
  ``identifiers`` (PID-3's first: the patient key; a system|value once): value CX.1; type CX.5 as sent;
  assigner CX.4.1; system:
  a registered URI for a known authority name (GMC, GMP, GPHC, ODS, SDS), else
  ``urn:tie:authority:<CX.4.1>`` (percent-encoded), else ``urn:oid:<CX.4.2>`` (CX.4.3 ISO) /
  ``urn:uuid:``, else the sending facility's system (MSH-4 by the same rule, else MSH-3).
  No NHS number and no such identifier -> MissingRequiredField("PID-3"). PID-19 (SSN) is only an NHS
  number source (above) and PID-20 (driver's licence) is deliberately not mapped: US identifiers.
* Names PID-5 (every repetition): family XPN.1.1; given XPN.2 then XPN.3 split on spaces; prefix XPN.5;
  suffix XPN.4, XPN.6, XPN.14; period XPN.12/13; ``use`` XPN.7 through ``v2-0200-to-name-use`` (omit).
* PID-7 birth date (date part as sent: a PartialDate, time not kept); PID-8 through
  ``v2-0001-to-administrative-gender`` (unmapped -> DataAbsent with the source code; ``N`` ->
  not-applicable; ``strict`` raises); PID-11 addresses: first line = XAD.1 as ONE line keeping every SAD
  sub-component (SAD.1 street/mailing address, then SAD.2 street name and SAD.3 dwelling number unless
  SAD.1 already holds them as words; without SAD.1 ``<number> <street name>``) - one line because the
  parts are one postal line, and so it survives HL7 -> canonical -> HL7; second line XAD.2; city .3,
  district .4, postcode .5, country .6; XAD.7 through ``v2-0190-to-address-use-and-type`` (home,
  business... -> use; mailing -> type; omit). XAD.8 (other geographic designation: MSA / region codes,
  not used as a line by UK feeds) and XAD.19 (addressee) are not lines. PID-29 death time else PID-30
  Y/N; PID-16 marital status and PID-22 ethnic group (first repetition) kept as sent.
* Telecom PID-13 (home) / PID-14 (business), every repetition: system XTN.3 through
  ``v2-0202-to-contact-point-system`` (a local code raises); no XTN.3: an email address (XTN.4 or an ``@``)
  is email, else phone (the fields are phone-number fields); value XTN.1, else XTN.12, else XTN.5-8 (an
  email's XTN.4 first); use XTN.2 through ``v2-0201-to-contact-point-use`` (omit), empty XTN.2 -> the
  field's own use (home / work).
* PD1-3 GP practice -> Organization (ODS code XON.10, else XON.3; name XON.1). PD1-12 protection
  indicator ``Y`` -> sensitivity restricted (no standard HL7 v2 field exists), ``N``/empty -> normal.

Encounter (PV1, PV2)
--------------------
Visit number PV1-19 -> ``identifiers[0]`` with type ``VN``; system by the identifier rule above (PV1-19.4,
else MSH-4): this is the FHIR ``Encounter.identifier.system`` and feeds the identity key. PV1-50
(alternate visit ID) -> ``identifiers[1]`` (type as sent), never the identity's visit number. PV1-2 class via
``v2-0004-to-encounter-class`` (unmapped -> DataAbsent keeping the v2 code: fhir_out needs a v3-ActCode
coding); PV1-3 location / PV1-6 prior location (point of care, room, bed, facility, description);
PV1-7/8/17 attending/referring/admitting (XCN: id in the system of XCN.9, e.g. GMC); PV1-10 hospital
service, PV1-14 admit source, PV1-36 discharge disposition kept as sent; PV1-4 admission type via
``v2-0007-to-encounter-priority``; PV1-44/45 period (``encounter_start`` / ``encounter_end`` above).

Results (ORU^R01)
-----------------
Each OBR group (with the ORC before it) -> ResultReport: code OBR-4 (local code first, LOINC added through
the trust's local-lab map when the code is in that system); status OBR-25 via ``v2-0123`` (unmapped
raises; empty -> ``unknown``); placer OBR-2 else ORC-2, filler OBR-3 else ORC-3 (EI: system from EI.2,
else EI.3/EI.4, else the sending application MSH-3); effective OBR-7; issued OBR-22; category OBR-24;
NTE after the OBR -> ``notes``. Each OBX -> Observation: code OBX-3; status OBX-11 via ``v2-0085``;
interpretation OBX-8 via ``v2-0078`` (kept as sent when unmapped); reference range OBX-7 (text always,
low/high only for ``a-b``); effective OBX-14 else OBR-7; issued OBR-22; category from OBR-24 through
``v2-0074-to-observation-category`` (lab / imaging sections only, else none); performer OBX-16 / OBX-23,
else OBR-32 (the report's performer: principal result interpreter); NTE -> notes; sequence OBX-1.
Specimens: each SPM (v2.5+; SPM-2 ids, SPM-4 type via ``specimen.type``, SPM-17.1 collected, SPM-18
received), else OBR-15 (type via ``specimen.source``, OBR-7 collected, OBR-14 received). Decisions:
``docs/results-and-orders.md``. Values by OBX-2: NM -> Quantity (comparator prefix ``<7`` allowed; unit
OBX-6, UCUM code when OBX-6.3 says UCUM or, with no coding system, the spelling is in the UCUM unit table
``shared/terminology/data/ucum-units.json`` matched ignoring case - ``mmol/l`` -> ``mmol/L``; any other
unit keeps its text and no system); SN -> Quantity with comparator, Range
(``a-b``), or text for ratios/categories; ST/TX/FT/TM -> text (repetitions one per line); CE/CWE/CNE/CF ->
Concept as sent; DT/TS/DTM -> ClinicalDateTime; ED -> Attachment metadata only (media type, decoded size,
SHA-256 - the data never enters the model); RP -> Attachment(url). A repeated non-text value, an
unparseable number, a CE carrying base64 data or an unknown value type raises InvalidValue. OBX outside
an OBR group and OBX after an SPM (specimen observations) are not mapped.

Orders (ORM^O01)
----------------
Each ORC (with its OBR) -> ServiceRequest: placer ORC-2 else OBR-2, filler ORC-3 else OBR-3; status ORC-5
via ``v2-0038`` else ORC-1 via ``v2-0119`` (unmapped raises); intent ``order`` (rules constant); code OBR-4;
authored ORC-9; requester ORC-12 else OBR-16; reason OBR-31; clinical information OBR-13 (text);
occurrence TQ1-7/8, else ORC-7.4/.5, else OBR-27.4/.5; NTE -> notes; priority TQ1-9, else ORC-7.6,
else OBR-27.6 through ``v2-0027-to-request-priority`` (omit: timing-critical / pre-op / callback / PRN
say when, not how urgent). OBX in an order (ask-at-order-entry answers) are not mapped.

Not mapped (no canonical element or out of scope): NK1, AL1, DG1, PR1, IN1/IN2/GT1 (insurance and
guarantor), ROL/PRT, ACC/PDA, DB1, PID-6/PID-9 names, XPN.15 (called-by), PD1-4. SIU and MDM are
not supported (UnsupportedMessageType).

OBX in ADT messages (after PV1/PV2: height, weight, triage answers) are deliberately NOT mapped: the
canonical event has no free-standing observations, and such OBX have no order, filler number or
identity of their own - replaying the ADT would create a second copy of each measurement. Clinical
measurements come through the results feed (ORU), where they are identified and status-controlled.
(A later change could add ``ClinicalEvent.observations`` keyed on visit number + OBX-3 + OBX-14.)

Speed (lineage off, the ingest hot path) - none of it changes a result
-----------------------------------------------------------------------
* Models are built without pydantic validation (:mod:`shared.mapping._construct`) from values the readers
  have checked; ``tests/unit/mapping/test_trusted_construction.py`` re-validates every mapped event.
* Results are remembered per compiled rules (``Compiled.memo``, bounded - every cached object is walked by
  the garbage collector): reader results by a field repetition's text, units and reference ranges by
  OBX-6/7, the Patient by the PID + PD1 text and the Encounter by trigger + PV1 + PV2 text (with MSH-3/4,
  the fallback identifier systems), so a repeated patient or visit costs a lookup. Never with lineage on,
  non-standard delimiters or escape sequences; ``test_hl7in_fast_paths.py`` checks reuse and the inline
  NHS-number checks against the code they stand in for. Figures: ``bench/convert.py``.
"""

from __future__ import annotations

from shared.mapping.hl7v2_in.mapper import map_bytes, map_message
from shared.mapping.hl7v2_in.rules import RULES

RULES_VERSION = RULES.version

__all__ = ["RULES_VERSION", "map_bytes", "map_message"]
