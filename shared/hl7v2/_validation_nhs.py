"""NHS number checks of :mod:`shared.hl7v2.validation` (split from ``validation.py``, issue 19)."""

from __future__ import annotations

from typing import Final

from shared.hl7v2._validation_issues import (
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    _Collector,
    _issue,
    _Located,
    _repetitions,
)
from shared.hl7v2.parser import Segment
from shared.identifiers.nhs_number import is_repeated_digit_nhs_number, is_valid_nhs_number

#: ISO OID of the NHS number identifier system (England and Wales), accepted in CX.4.2.
NHS_NUMBER_OID: Final = "2.16.840.1.113883.2.1.4.1"


def asserts_nhs_number(seg: Segment, field_no: int, rep: int) -> bool:
    """True when CX repetition ``rep`` of ``field_no`` declares itself an NHS number.

    Accepted declarations: assigning authority (CX.4.1) ``NHS`` or authority universal id (CX.4.2) the
    NHS number OID, with identifier type code (CX.5) ``NH`` (HL7 table 0203), ``HN`` (seen in UCLH Epic
    feeds) or absent; or type ``NH`` with no assigning authority.
    """
    authority = (seg.get(field_no, rep, 4, 1) or "").strip().upper()
    authority_oid = (seg.get(field_no, rep, 4, 2) or "").strip()
    id_type = (seg.get(field_no, rep, 5) or "").strip().upper()
    nhs_authority = authority == "NHS" or authority_oid == NHS_NUMBER_OID
    if nhs_authority:
        return id_type in ("NH", "HN", "")
    return id_type == "NH" and not authority


def _check_nhs_numbers(loc: _Located, out: _Collector) -> None:
    seg = loc.segment
    fields = (2, 3) if seg.name == "PID" else (1,)
    for field_no in fields:
        for rep in _repetitions(seg, field_no):
            if not asserts_nhs_number(seg, field_no, rep):
                continue
            number = seg.get(field_no, rep, 1)
            if number is None:
                out.add(
                    _issue(
                        "E",
                        REQUIRED_FIELD_MISSING,
                        "NHS number identifier has no id number (CX.1)",
                        loc,
                        field_no,
                        rep,
                        1,
                    )
                )
            elif not is_valid_nhs_number(number):
                out.add(
                    _issue(
                        "E",
                        DATA_TYPE_ERROR,
                        "NHS number fails Modulus 11 check",
                        loc,
                        field_no,
                        rep,
                        1,
                    )
                )
            elif is_repeated_digit_nhs_number(number):
                out.add(
                    _issue(
                        "W",
                        DATA_TYPE_ERROR,
                        "NHS number is a repeated-digit placeholder",
                        loc,
                        field_no,
                        rep,
                        1,
                    )
                )
