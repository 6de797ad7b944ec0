"""Per-message mapping context (:class:`Ctx`) and the HL7 v2 readers shared by the segment mappers: field
access (``_fields``), the readers' memo (``_memo``), the context core (``_context_base``), code readers
(``_codes``) and data-type readers (CX, EI, HD, XPN, XAD, XCN, XON, PL, CWE, TS: ``_datatypes``). Lineage is
recorded in the readers, at the leaf where the source path is known."""

from __future__ import annotations

from shared.mapping.hl7v2_in._builders import (
    new_address,
    new_coding,
    new_concept,
    new_contact_point,
    new_human_name,
    new_identifier,
    new_location,
    new_organization,
    new_period,
    new_practitioner,
)
from shared.mapping.hl7v2_in._datatypes import DataTypeReaders, street_line
from shared.mapping.hl7v2_in._fields import Rep, rep_text, val
from shared.mapping.hl7v2_in._memo import MemoKey, _time, memoised, remember

__all__ = [
    "Ctx",
    "MemoKey",
    "Rep",
    "_time",
    "memoised",
    "new_address",
    "new_coding",
    "new_concept",
    "new_contact_point",
    "new_human_name",
    "new_identifier",
    "new_location",
    "new_organization",
    "new_period",
    "new_practitioner",
    "remember",
    "rep_text",
    "street_line",
    "val",
]


class Ctx(DataTypeReaders):
    """One message being mapped: the message, the compiled rules, the lineage recorder and the sender's
    namespaces (computed on first use); the readers of every HL7 v2 data type the mappers take."""

    __slots__ = ()
