"""HL7 v2 acknowledgments: choosing the ACK code, building ACK messages, and answering unparseable input.

Modes (HL7 v2.5 chapter 2.9)
----------------------------
* **Original mode** (MSH-15 and MSH-16 both empty): one *application* acknowledgment, ``AA`` (accepted),
  ``AE`` (error: content unacceptable) or ``AR`` (reject: unsupported type/event/version/processing id,
  structurally unacceptable, or the message could not be taken in for reasons unrelated to its content).
* **Enhanced mode** (MSH-15 or MSH-16 valued): an *accept* (commit) acknowledgment ``CA`` (committed to
  safe storage), ``CE`` (commit error: could not be stored) or ``CR`` (commit reject: structurally
  unacceptable), sent when MSH-15 asks for it, and later an application acknowledgment when MSH-16 asks
  for it. Conditions (HL7 table 0155): ``AL`` always, ``NE`` never, ``ER`` only for error/reject codes,
  ``SU`` only for successful ones. An empty condition in enhanced mode, or an unknown one, counts as
  ``AL`` (the validator reports unknown values separately).

Content errors do not change the commit ACK: a message with AE-level errors that was stored is committed
(``CA``) and its errors belong in the application acknowledgment (``AE``). ACK messages are never
acknowledged.

Building
--------
:func:`build_ack` answers a parsed message: MSH with the original's delimiters, sending and receiving
application/facility swapped (ours from arguments, theirs echoed verbatim), MSH-9 ``ACK^<trigger>^ACK``,
a new MSH-10, MSH-11/12 (and MSH-18) echoed; MSA-1 code, MSA-2 original MSH-10, MSA-3 text (kept for
v2.3 receivers); one ERR per issue in the v2.5 layout (ERR-2 location ``PID^1^3^1^1``, ERR-3
``102^Data type error^HL70357``, ERR-4 severity, ERR-8 user message) and, for messages older than v2.5,
ERR-1 (ELD) as well. All text is escaped with the message's delimiters.

:func:`build_ack_for_unparseable` answers input the parser rejected. It scans the raw bytes for MSH
delimiters, control id, applications, version and processing id without the parser, falls back to
defaults for anything it cannot trust, and never raises.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from shared.hl7v2.errors import Hl7ParseError
from shared.hl7v2.escape import encode as escape_text
from shared.hl7v2.parser import FieldValue, Message, Raw, Separators, build_message
from shared.hl7v2.structures import parse_version
from shared.hl7v2.validation import Issue, ValidationResult

__all__ = [
    "HL7_ERROR_CODES",
    "AckCode",
    "AckMode",
    "AckPlan",
    "ApplicationCode",
    "CommitCode",
    "ack_mode",
    "build_ack",
    "build_ack_for_unparseable",
    "choose_ack_codes",
    "new_control_id",
]

AckCode = Literal["AA", "AE", "AR", "CA", "CE", "CR"]
AckMode = Literal["original", "enhanced"]
CommitCode = Literal["CA", "CE", "CR"]
ApplicationCode = Literal["AA", "AE", "AR"]

#: HL7 table 0357 "Message error condition codes" -> description (used in ERR-3.2).
HL7_ERROR_CODES: Final[dict[str, str]] = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}

_DEFAULT_VERSION: Final = "2.5.1"
_DEFAULT_APPLICATION: Final = "TIE"
_MSA3_MAX: Final = 80
_ERR8_MAX: Final = 250
_SUCCESS: Final = frozenset({"AA", "CA"})
_CONDITIONS: Final = frozenset({"AL", "NE", "ER", "SU"})


# ------------------------------------------------------------------------------------------ choosing


def _condition(value: str | None) -> str:
    value = (value or "").strip().upper()
    return value if value in _CONDITIONS else "AL"


def _wanted(condition: str, code: AckCode) -> bool:
    if condition == "NE":
        return False
    if condition == "ER":
        return code not in _SUCCESS
    if condition == "SU":
        return code in _SUCCESS
    return True


def ack_mode(original: Message | None) -> AckMode:
    """``"enhanced"`` when MSH-15 or MSH-16 is valued, else ``"original"`` (also for ``None``)."""
    if original is None:
        return "original"
    accept = (original.accept_ack_type or "").strip()
    application = (original.application_ack_type or "").strip()
    return "enhanced" if accept or application else "original"


@dataclass(frozen=True, slots=True)
class AckPlan:
    """Which acknowledgments a message should get.

    ``commit``: enhanced mode only, the accept ACK to send on receipt (``None`` = send none).
    ``application``: original mode, the one ACK to send; enhanced mode, the application ACK MSH-16 asks
    for given the outcome known so far (``None`` = send none).
    """

    mode: AckMode
    commit: CommitCode | None
    application: ApplicationCode | None

    @property
    def immediate(self) -> AckCode | None:
        """The code to answer with on receipt: the application ACK (original) or the commit ACK
        (enhanced); ``None`` when no ACK should be sent now."""
        return self.application if self.mode == "original" else self.commit


def choose_ack_codes(
    original: Message | None,
    result: ValidationResult | None = None,
    *,
    committed: bool = True,
) -> AckPlan:
    """Decide the ACK codes for ``original`` given its validation ``result`` (``None`` = not validated,
    treated as clean) and whether it was ``committed`` to safe storage.

    Original mode: ``AR`` when rejected by validation or not committed (the sender may resend), ``AE``
    for content errors, else ``AA``. Enhanced mode: commit ``CR`` when rejected, ``CE`` when not
    committed, else ``CA``, filtered by MSH-15; application code as in original mode, filtered by
    MSH-16. ``original=None`` (unparseable) gives an original-mode ``AR``. ACK messages get no ACK.
    """
    if original is not None and (original.message_type or "").strip() == "ACK":
        return AckPlan(ack_mode(original), None, None)
    rejected = result is not None and result.reject
    application: ApplicationCode
    if rejected or not committed or original is None:
        application = "AR"
    elif result is not None and not result.ok:
        application = "AE"
    else:
        application = "AA"
    mode = ack_mode(original)
    if mode == "original":
        return AckPlan(mode, None, application)
    assert original is not None
    commit: CommitCode = "CR" if rejected else ("CE" if not committed else "CA")
    return AckPlan(
        mode,
        commit if _wanted(_condition(original.accept_ack_type), commit) else None,
        application if _wanted(_condition(original.application_ack_type), application) else None,
    )


# ------------------------------------------------------------------------------------------- building


def new_control_id() -> str:
    """A fresh 20-character MSH-10 (random, fits the 20-character limit of v2.3/v2.4)."""
    return uuid.uuid4().hex[:20].upper()


def _timestamp(now: datetime | None) -> str:
    moment = now if now is not None else datetime.now(UTC)
    text = moment.strftime("%Y%m%d%H%M%S")
    offset = moment.utcoffset()
    if offset is not None:
        minutes = int(offset.total_seconds()) // 60
        sign = "+" if minutes >= 0 else "-"
        text += f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    return text


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())  # no CR/LF or runs of whitespace in one-line fields
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_pre_v25(version: str | None) -> bool:
    parsed = parse_version(version or "")
    return parsed is not None and parsed < (2, 5)


def _occurrence(issue: Issue, original: Message | None) -> int | None:
    if issue.occurrence is not None:
        return issue.occurrence
    if issue.segment_index is None or issue.segment is None:
        return None
    if original is None:
        return issue.segment_index if issue.segment_index == 1 else None
    segments = original.segments[: issue.segment_index]
    return sum(1 for s in segments if s.name == issue.segment) or None


def _num(value: int | None) -> str | None:
    return None if value is None else str(value)


def _err_fields(issue: Issue, original: Message | None, pre_v25: bool) -> list[FieldValue]:
    code = issue.code if issue.code in HL7_ERROR_CODES else "207"
    occurrence = _occurrence(issue, original)
    location: FieldValue = None
    eld: FieldValue = None
    if issue.segment is not None:
        repetition = issue.repetition
        if repetition is None and issue.field is not None:
            repetition = 1  # ERL.4: a field position implies its first repetition
        location = [
            issue.segment,
            _num(occurrence),
            _num(issue.field),
            _num(repetition),
            _num(issue.component),
        ]
        while location and location[-1] is None:
            location.pop()
        if pre_v25:
            eld = [
                issue.segment,
                _num(occurrence),
                _num(issue.field),
                [code, HL7_ERROR_CODES[code], "HL70357"],
            ]
    text = _clip(issue.text, _ERR8_MAX) if issue.text else None
    return [
        "ERR",
        eld,  # ERR-1 error code and location (ELD; v2.4 and earlier)
        location,  # ERR-2 error location (ERL)
        [code, HL7_ERROR_CODES[code], "HL70357"],  # ERR-3 HL7 error code (CWE)
        issue.severity,  # ERR-4 severity (table 0516)
        None,  # ERR-5 application error code
        None,  # ERR-6 application error parameter
        None,  # ERR-7 diagnostic information
        text,  # ERR-8 user message
    ]


def _msa_text(text: str | None, issues: Sequence[Issue]) -> str | None:
    if text:
        return _clip(text, _MSA3_MAX)
    first = next((i for i in issues if i.severity == "E"), None)
    return _clip(first.text, _MSA3_MAX) if first is not None and first.text else None


def _raw_or(original: Message | None, path: str, default: str | None) -> FieldValue:
    if original is not None:
        raw = original.raw(path)
        if raw:
            return Raw(raw)
    return default


def build_ack(
    original: Message | None,
    *,
    code: AckCode,
    issues: Sequence[Issue] = (),
    text: str | None = None,
    sending_application: FieldValue = None,
    sending_facility: FieldValue = None,
    control_id: str | None = None,
    now: datetime | None = None,
) -> Message:
    """Build the ACK for ``original`` (``None`` when there is no parsed message: defaults are used).

    ``sending_application``/``sending_facility`` identify us (MSH-3/MSH-4; a string or HD components);
    when omitted, the original's MSH-5/MSH-6 (how the sender addressed us) are used. ``control_id`` is
    the new MSH-10 (default :func:`new_control_id`); ``now`` the MSH-7 time (default: current UTC time).
    ``text`` goes to MSA-3 (default: the first error's text). Each issue becomes one ERR segment.
    """
    if code not in ("AA", "AE", "AR", "CA", "CE", "CR"):
        raise ValueError("ACK code must be one of AA, AE, AR, CA, CE, CR")
    if original is not None:
        seps = dataclasses.replace(original.separators, segment_terminator="\r")
        trigger = (original.trigger_event or "").strip() or None
        version = (original.version or "").strip() or None
        encoding: str | None = original.codec
    else:
        seps, trigger, version, encoding = Separators(), None, None, None
    our_app = sending_application if sending_application is not None else _raw_or(original, "MSH-5", None)
    our_facility = sending_facility if sending_facility is not None else _raw_or(original, "MSH-6", None)
    if our_app is None:
        our_app = _DEFAULT_APPLICATION
    msh: list[FieldValue] = [
        "MSH",
        None,
        None,
        our_app,  # MSH-3
        our_facility,  # MSH-4
        _raw_or(original, "MSH-3", None),  # MSH-5: whoever sent the original
        _raw_or(original, "MSH-4", None),  # MSH-6
        _timestamp(now),  # MSH-7
        None,  # MSH-8
        ["ACK", trigger, "ACK"],  # MSH-9
        control_id or new_control_id(),  # MSH-10
        _raw_or(original, "MSH-11", "P"),  # MSH-11
        _raw_or(original, "MSH-12", _DEFAULT_VERSION),  # MSH-12
    ]
    charset = _raw_or(original, "MSH-18", None)
    if charset is not None:
        msh.extend([None, None, None, None, None, charset])  # MSH-13..17 empty, MSH-18
    msa: list[FieldValue] = [
        "MSA",
        code,
        _raw_or(original, "MSH-10", None),
        _msa_text(text, issues),
    ]
    pre_v25 = _is_pre_v25(version)
    segments: list[list[FieldValue]] = [msh, msa]
    segments.extend(_err_fields(issue, original, pre_v25) for issue in issues)
    return build_message(segments, separators=seps, encoding=encoding)


# --------------------------------------------------------------------------------------- unparseable

_LEADING_JUNK: Final = re.compile(rb"^(?:\xef\xbb\xbf|[\x0b\x1c\s])*")
_LINE_END: Final = re.compile(rb"\r\n|\r|\n")
_VERSION_RE: Final = re.compile(r"2(?:\.[0-9]{1,2}){1,2}")
_SAFE_TOKEN: Final = re.compile(r"[^\x00-\x1f\x7f]{1,199}")


@dataclass(frozen=True, slots=True)
class _Scanned:
    seps: Separators
    trusted: bool  # delimiters read from the input (values can be echoed verbatim)
    fields: list[str]  # MSH fields by HL7 number (index 0 = "MSH"); empty when nothing usable
    lines: list[bytes]


def _scan(raw: bytes) -> _Scanned:
    data = _LEADING_JUNK.sub(b"", raw, count=1)
    lines = [line for line in _LINE_END.split(data) if line.strip()]
    default = _Scanned(Separators(), False, [], lines)
    if not data.startswith(b"MSH") or len(data) < 8:
        return default
    text = lines[0].decode("latin-1") if lines else ""
    fs = text[3:4]
    end = text.find(fs, 4) if fs else -1
    enc = text[4:end] if end != -1 else text[4:]
    chars = [fs, *enc]
    if (
        len(enc) not in (4, 5)
        or len(set(chars)) != len(chars)
        or any(c.isalnum() or c.isspace() or not c.isprintable() for c in chars)
    ):
        return default
    seps = Separators(fs, enc[0], enc[1], enc[2], enc[3], enc[4] if len(enc) == 5 else None, "\r")
    parts = text.split(fs)
    return _Scanned(seps, True, ["MSH", fs, *parts[1:]], lines)


def _field(scanned: _Scanned, n: int) -> str:
    return scanned.fields[n] if n < len(scanned.fields) else ""


def _component(scanned: _Scanned, n: int, comp: int) -> str:
    value = _field(scanned, n).split(scanned.seps.repetition)[0]
    parts = value.split(scanned.seps.component)
    return parts[comp - 1] if comp <= len(parts) else ""


def _echo(scanned: _Scanned, value: str) -> str | None:
    """A raw field value that is safe to copy into the ACK (printable, bounded), else None."""
    if not value or not scanned.trusted or not _SAFE_TOKEN.fullmatch(value):
        return None
    return value


def _parse_error_occurrence(error: Hl7ParseError, lines: Sequence[bytes]) -> int | None:
    if error.segment_index is None or error.segment is None:
        return None
    if error.segment_index == 1:
        return 1
    name = error.segment.encode("ascii", "replace")
    return sum(1 for line in lines[: error.segment_index] if line.startswith(name)) or None


def _unparseable_er7(
    raw: bytes,
    error: Hl7ParseError,
    sending_application: str | None,
    sending_facility: str | None,
    control_id: str | None,
    now: datetime | None,
) -> str:
    scanned = _scan(raw)
    seps = scanned.seps
    fs, cs = seps.field, seps.component

    def esc(value: str | None) -> str:
        return escape_text(value, seps) if value else ""

    version = _component(scanned, 12, 1).strip()
    version_out = version if _VERSION_RE.fullmatch(version) else _DEFAULT_VERSION
    processing = _component(scanned, 11, 1).strip()
    processing_out = processing if processing in ("D", "P", "T") else "P"
    trigger = _component(scanned, 9, 2).strip()
    trigger_out = trigger if re.fullmatch(r"[A-Z0-9]{3}", trigger) else ""
    enhanced = bool(_field(scanned, 15).strip() or _field(scanned, 16).strip())
    code = "CR" if enhanced else "AR"
    their_control_id = _echo(scanned, _field(scanned, 10)) or ""

    msh = [
        "MSH",
        seps.encoding_characters,
        esc(sending_application) or (_echo(scanned, _field(scanned, 5)) or _DEFAULT_APPLICATION),
        esc(sending_facility) or (_echo(scanned, _field(scanned, 6)) or ""),
        _echo(scanned, _field(scanned, 3)) or "",
        _echo(scanned, _field(scanned, 4)) or "",
        _timestamp(now),
        "",
        cs.join(["ACK", trigger_out, "ACK"]),
        esc(control_id or new_control_id()),
        processing_out,
        version_out,
    ]
    error_code = error.error_code if error.error_code in HL7_ERROR_CODES else "100"
    description = HL7_ERROR_CODES[error_code]
    detail = _clip(getattr(error, "description", "") or description, _ERR8_MAX)
    msa = ["MSA", code, their_control_id, esc(_clip(detail, _MSA3_MAX))]
    location = eld = ""
    if error.segment is not None and re.fullmatch(r"[A-Z][A-Z0-9]{2}", error.segment):
        occurrence = _parse_error_occurrence(error, scanned.lines)
        where = [error.segment, _num(occurrence) or "", _num(error.field) or ""]
        tail = ["1", _num(error.component) or ""] if error.field is not None else []
        location = cs.join(where + tail).rstrip(cs)
        if _is_pre_v25(version_out):
            eld = cs.join([*where, seps.subcomponent.join([error_code, description, "HL70357"])])
    err3 = cs.join([error_code, description, "HL70357"])
    err = ["ERR", eld, location, err3, "E", "", "", "", esc(detail)]
    return "\r".join(fs.join(seg) for seg in (msh, msa, err)) + "\r"


def build_ack_for_unparseable(
    raw: bytes,
    error: Hl7ParseError,
    *,
    sending_application: str | None = None,
    sending_facility: str | None = None,
    control_id: str | None = None,
    now: datetime | None = None,
) -> bytes:
    """An AR (or CR when MSH-15/16 are readable and valued) ACK for input the parser rejected.

    Uses the input's delimiters when its MSH-1/MSH-2 are usable (else ``|^~\\&``), echoes MSH-10, MSH-3/4
    (as MSH-5/6), MSH-5/6 (as our MSH-3/4 when not given), the trigger, a plausible MSH-11/MSH-12,
    and reports the parse error in MSA-3 and one ERR (ERR-2 location from the error, ERR-3 its table 0357
    code, ERR-8 its description, which by the parser's contract holds no field values). Echoed values are
    copied byte for byte, so the ACK is returned as ISO 8859-1-encoded bytes of the original byte values.
    Never raises: on any internal failure a minimal fixed ACK is returned.
    """
    try:
        text = _unparseable_er7(raw, error, sending_application, sending_facility, control_id, now)
        return text.encode("latin-1", errors="replace")
    except Exception:  # noqa: BLE001 - this path must answer whatever the input was
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        fallback = (
            f"MSH|^~\\&|{_DEFAULT_APPLICATION}||||{stamp}||ACK^^ACK|{new_control_id()}|P|{_DEFAULT_VERSION}\r"
            "MSA|AR||Message could not be parsed\r"
            "ERR|||100^Segment sequence error^HL70357|E||||Message could not be parsed\r"
        )
        return fallback.encode("ascii")
