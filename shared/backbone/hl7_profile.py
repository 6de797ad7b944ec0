"""Outbound HL7 v2 profile of one downstream: what the receiver expects of the messages TIE writes to it.

A profile is data (JSON, ``TIE_WRITEBACK_HL7_PROFILE_FILE``; the downstream registry's entry will hold it
once the HL7 downstream is read from there)::

    {"version": "2.4", "sending_application": "TIE", "sending_facility": "RGT01",
     "receiving_application": "PAS", "receiving_facility": "RGT01", "country": "GBR",
     "charset": "ASCII", "events": "collapsed", "accept_ack": "AL", "application_ack": "NE"}

* ``version`` - MSH-12, and the field rules of that version (e.g. OBR-15 before SPM in v2.5).
* ``sending_*`` / ``receiving_*`` - MSH-3/4/5/6 (HD namespace ids).
* ``country`` - MSH-17 (ISO 3166 alpha-3), empty: not sent.
* ``charset`` - MSH-18 and the bytes on the wire: ``UNICODE UTF-8`` (the default), ``8859/1``, or
  ``ASCII`` (MSH-18 empty, the HL7 default). For ASCII, letters with diacritics are written without them
  (SEÁN -> SEAN, lineage says so); a character with no ASCII form refuses the message (never a ``?``).
* ``events`` - ``native``: each event as its own trigger (A01 admit, A02 transfer, A03 discharge, A04
  register, A05 pre-admit, A08 update, A11/A12/A13 cancels, A28/A31 person); ``collapsed``: every encounter
  event as A08 and every person event as A31 (for receivers that only take updates).
* ``accept_ack`` / ``application_ack`` - MSH-15/16 (HL7 table 0155: AL, NE, ER, SU), empty: not sent
  (original acknowledgment mode).

See ``docs/hl7-writeback.md``.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final, Literal

from shared.canonical.model import EventKind
from shared.errors import ConfigurationError

#: MSH-18 value -> codec (``ASCII``: MSH-18 left empty, the HL7 default).
CHARSETS: Final = {"UNICODE UTF-8": "utf-8", "8859/1": "latin-1", "ASCII": "ascii"}
_ACK_TYPES: Final = frozenset({"", "AL", "NE", "ER", "SU"})
_VERSIONS: Final = frozenset({"2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8"})

#: ``native`` trigger event and message structure (MSH-9.2 / MSH-9.3, HL7 v2.5 chapter 3) per event kind.
NATIVE_EVENTS: Final[dict[EventKind, tuple[str, str]]] = {
    EventKind.ADMISSION: ("A01", "ADT_A01"),
    EventKind.TRANSFER: ("A02", "ADT_A02"),
    EventKind.DISCHARGE: ("A03", "ADT_A03"),
    EventKind.REGISTRATION: ("A04", "ADT_A01"),
    EventKind.PRE_ADMISSION: ("A05", "ADT_A05"),
    EventKind.ENCOUNTER_UPDATE: ("A08", "ADT_A01"),
    EventKind.CANCEL_ADMISSION: ("A11", "ADT_A09"),
    EventKind.CANCEL_TRANSFER: ("A12", "ADT_A12"),
    EventKind.CANCEL_DISCHARGE: ("A13", "ADT_A01"),
    EventKind.PATIENT_CREATED: ("A28", "ADT_A05"),
    EventKind.PATIENT_UPDATED: ("A31", "ADT_A05"),
}
_ENCOUNTER_UPDATE: Final = ("A08", "ADT_A01")
_PERSON_UPDATE: Final = ("A31", "ADT_A05")


@dataclass(frozen=True, slots=True)
class OutboundProfile:
    """See the module docstring."""

    version: str = "2.5.1"
    sending_application: str = "TIE"
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    country: str = ""
    charset: str = "UNICODE UTF-8"
    events: Literal["native", "collapsed"] = "collapsed"
    accept_ack: str = ""
    application_ack: str = ""

    def __post_init__(self) -> None:
        if self.version not in _VERSIONS:
            raise ConfigurationError(f"HL7 profile: version must be one of {sorted(_VERSIONS)}")
        if self.charset not in CHARSETS:
            raise ConfigurationError(f"HL7 profile: charset must be one of {sorted(CHARSETS)}")
        if self.events not in ("native", "collapsed"):
            raise ConfigurationError("HL7 profile: events must be 'native' or 'collapsed'")
        if self.accept_ack not in _ACK_TYPES or self.application_ack not in _ACK_TYPES:
            raise ConfigurationError(
                "HL7 profile: accept_ack / application_ack must be AL, NE, ER, SU or empty"
            )
        if self.country and (len(self.country) != 3 or not self.country.isalpha()):
            raise ConfigurationError("HL7 profile: country is an ISO 3166 alpha-3 code (MSH-17)")

    @property
    def codec(self) -> str:
        return CHARSETS[self.charset]

    def trigger(self, kind: EventKind, person_level: bool) -> tuple[str, str]:
        """(MSH-9.2 trigger, MSH-9.3 structure) for an ADT event of ``kind`` (``person_level``: no visit)."""
        if self.events == "collapsed":
            return _PERSON_UPDATE if person_level else _ENCOUNTER_UPDATE
        native = NATIVE_EVENTS.get(kind)
        if native is None:
            return _PERSON_UPDATE if person_level else _ENCOUNTER_UPDATE
        return native

    @classmethod
    def from_json(cls, data: Any) -> OutboundProfile:
        if not isinstance(data, dict):
            raise ConfigurationError("HL7 profile: a JSON object is expected")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigurationError(f"HL7 profile: unknown keys {unknown}")
        if any(not isinstance(v, str) for v in data.values()):
            raise ConfigurationError("HL7 profile: every value is a string")
        return cls(**data)


def load_profile(path: str | Path | None) -> OutboundProfile:
    """The profile in ``path`` (JSON), or the default profile when ``path`` is empty."""
    if not path:
        return OutboundProfile()
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise ConfigurationError(f"HL7 profile file cannot be read ({type(exc).__name__})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise ConfigurationError("HL7 profile file is not valid JSON") from None
    return OutboundProfile.from_json(data)


def to_ascii(text: str) -> tuple[str, int | None]:
    """``text`` with diacritics removed (canonical decomposition, combining marks dropped), and the index of
    the first character that still has no ASCII form (``None`` when there is none)."""
    if text.isascii():
        return text, None
    out = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    for i, c in enumerate(out):
        if not c.isascii():
            return out, i
    return out, None
