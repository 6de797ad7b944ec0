"""The demographic / order concept maps added for HL7 v2 name, address and telecom types, order priority and
the HL7 UK NHS-number status: what they map, what they deliberately leave unmatched, and that each FHIR
code reads back to one HL7 v2 code (what shared.mapping.hl7v2_out writes)."""

from __future__ import annotations

import pytest

from shared.terminology import Equivalence, MappedCode, Unmapped, load_concept_map, map_code, translate
from shared.terminology import systems as s

NAME = "v2-0200-to-name-use"
ADDRESS = "v2-0190-to-address-use-and-type"
TELECOM_USE = "v2-0201-to-contact-point-use"
TELECOM_SYSTEM = "v2-0202-to-contact-point-system"
PRIORITY = "v2-0027-to-request-priority"
NHS_STATUS = "hl7uk-0445-to-nhs-number-verification-status"

_EXACT = {Equivalence.EQUAL, Equivalence.EQUIVALENT}


def _mapped(map_id: str, code: str, target_system: str | None = None) -> str | None:
    out = map_code(map_id, code, policy=Unmapped.DATA_ABSENT, field="t", target_system=target_system)
    return out.target.code if isinstance(out, MappedCode) else None


@pytest.mark.parametrize(
    ("map_id", "code", "target_system", "expected"),
    [
        (NAME, "L", None, "official"),
        (NAME, "D", None, "usual"),
        (NAME, "M", None, "maiden"),
        (NAME, "A", None, None),  # alias: no FHIR name use
        (ADDRESS, "H", s.ADDRESS_USE, "home"),
        (ADDRESS, "M", s.ADDRESS_USE, None),  # mailing is a type, not a use
        (ADDRESS, "M", s.ADDRESS_TYPE, "postal"),
        (ADDRESS, "H", s.ADDRESS_TYPE, None),
        (TELECOM_USE, "PRN", None, "home"),
        (TELECOM_USE, "WPN", None, "work"),
        (TELECOM_USE, "NET", None, None),  # email-ness is the system, not a use
        (TELECOM_SYSTEM, "CP", None, "phone"),
        (TELECOM_SYSTEM, "Internet", None, "email"),
        (PRIORITY, "S", None, "stat"),
        (PRIORITY, "T", None, None),  # timing critical is not "urgent"
    ],
)
def test_forward(map_id: str, code: str, target_system: str | None, expected: str | None) -> None:
    assert _mapped(map_id, code, target_system) == expected


def test_every_hl7_equipment_type_has_a_contact_point_system() -> None:
    # ContactPoint.system is required with a value: no table code may be left unmatched.
    cmap = load_concept_map(TELECOM_SYSTEM)
    codes = cmap.source_codes()
    assert {"PH", "FX", "MD", "CP", "SAT", "BP", "Internet", "X.400", "TDD", "TTY"} <= codes
    for code in codes:
        assert _mapped(TELECOM_SYSTEM, code) is not None, code


def test_nhs_number_status_codes() -> None:
    for n in range(1, 9):
        out = map_code(NHS_STATUS, f"NSTS0{n}", policy=Unmapped.RAISE, field="t")
        assert isinstance(out, MappedCode)
        assert (out.target.system, out.target.code) == (s.NHS_NUMBER_VERIFICATION_STATUS_ENGLAND, f"0{n}")
    for code in ("US", "UD", "UA", "AL"):  # the HL7 table's own codes: explicitly not an NHS number status
        result = translate(code, s.V2_0445_IDENTITY_RELIABILITY, concept_map_id=NHS_STATUS)
        assert not result.result and result.matches[0].equivalence is Equivalence.UNMATCHED


@pytest.mark.parametrize(
    ("map_id", "fhir_system", "ambiguous"),
    [
        (NAME, s.NAME_USE, set()),
        (ADDRESS, s.ADDRESS_USE, set()),
        (ADDRESS, s.ADDRESS_TYPE, set()),
        (TELECOM_USE, s.CONTACT_POINT_USE, set()),
        (TELECOM_SYSTEM, s.CONTACT_POINT_SYSTEM, {"other"}),  # modem, TDD, TTY: no single v2 code
        (PRIORITY, s.REQUEST_PRIORITY, set()),
        (NHS_STATUS, s.NHS_NUMBER_VERIFICATION_STATUS_ENGLAND, set()),
    ],
)
def test_each_fhir_code_reads_back_to_one_v2_code(map_id: str, fhir_system: str, ambiguous: set[str]) -> None:
    cmap = load_concept_map(map_id)
    targets = {
        t.code
        for g in cmap.groups
        if g.target == fhir_system
        for e in g.elements.values()
        for t in e.targets
        if t.code is not None
    }
    assert targets
    for code in targets:
        usable = translate(code, fhir_system, concept_map_id=map_id, reverse=True).usable
        exact = [m for m in usable if m.equivalence in _EXACT]
        chosen = {m.concept.code for m in (exact or usable) if m.concept is not None}
        if code in ambiguous:
            assert len(chosen) > 1, code
        else:
            assert len(chosen) == 1, (code, chosen)
