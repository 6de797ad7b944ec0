"""Issue and result types of :mod:`shared.hl7v2.validation`, the HL7 table 0357 error codes and the
collector and location helpers its checks share (split from ``validation.py``, issue 19)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Literal

from shared.hl7v2.parser import Message, Segment

Severity = Literal["E", "W", "I"]

# HL7 table 0357 (message error condition codes)
SEGMENT_SEQUENCE_ERROR: Final = "100"
REQUIRED_FIELD_MISSING: Final = "101"
DATA_TYPE_ERROR: Final = "102"
TABLE_VALUE_NOT_FOUND: Final = "103"
UNSUPPORTED_MESSAGE_TYPE: Final = "200"
UNSUPPORTED_EVENT_CODE: Final = "201"
UNSUPPORTED_PROCESSING_ID: Final = "202"
UNSUPPORTED_VERSION_ID: Final = "203"

#: Codes that make a message structurally unacceptable (reject) rather than in error.
REJECT_CODES: Final = frozenset(
    {
        SEGMENT_SEQUENCE_ERROR,
        UNSUPPORTED_MESSAGE_TYPE,
        UNSUPPORTED_EVENT_CODE,
        UNSUPPORTED_PROCESSING_ID,
        UNSUPPORTED_VERSION_ID,
    }
)

#: MSH fields whose errors make the message unprocessable (type, control id, processing id, version,
#: acknowledgment conditions): errors there are rejections whatever their code.
REJECT_MSH_FIELDS: Final = frozenset({9, 10, 11, 12, 15, 16})

#: :attr:`Issue.check` of the unescaped-delimiter findings (``docs/hl7v2-validation.md``, check 5).
DELIMITER_CHECK: Final = "delimiters"

#: :attr:`Issue.check` of the bound findings (:mod:`shared.hl7v2.limits`): always a rejection.
LIMIT_CHECK: Final = "limits"

#: MSH fields the field and delimiter checks skip: MSH-1/MSH-2 are the parser's, MSH-9/11/12 the header's.
_HEADER_CHECKED: Final = frozenset({1, 2, 9, 11, 12})


@dataclass(frozen=True, slots=True)
class Issue:
    """One validation finding. ``segment_index`` is the 1-based position of the segment in the message;
    ``occurrence`` the 1-based count of segments with the same ID up to it (HL7 ERL.2 "segment
    sequence"). ``text`` never contains patient data or field values."""

    severity: Severity
    code: str
    segment: str | None = None
    segment_index: int | None = None
    field: int | None = None
    component: int | None = None
    text: str = ""
    repetition: int | None = dataclasses.field(default=None, kw_only=True)
    occurrence: int | None = dataclasses.field(default=None, kw_only=True)
    #: Which check found it when callers treat it specially (:data:`DELIMITER_CHECK`), else ``None``.
    check: str | None = dataclasses.field(default=None, kw_only=True)

    @property
    def is_error(self) -> bool:
        return self.severity == "E"

    @property
    def is_rejection(self) -> bool:
        """True for an error that makes the message structurally unacceptable (docs/hl7v2-validation.md)."""
        if self.severity != "E":
            return False
        if self.check == LIMIT_CHECK:
            return True
        return self.code in REJECT_CODES or (self.segment == "MSH" and self.field in REJECT_MSH_FIELDS)

    @property
    def location(self) -> str:
        """``PID[1]-3[2].1`` style location for logs (positions only)."""
        if self.segment is None:
            return ""
        text = self.segment
        if self.occurrence is not None:
            text += f"[{self.occurrence}]"
        if self.field is not None:
            text += f"-{self.field}"
            if self.repetition is not None:
                text += f"[{self.repetition}]"
            if self.component is not None:
                text += f".{self.component}"
        return text


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """Outcome of :func:`validate`."""

    issues: tuple[Issue, ...]
    message_type: str | None = None
    trigger_event: str | None = None
    structure_id: str | None = None
    #: HL7 version whose definitions were used (may differ from MSH-12, e.g. ``2.8`` for ``2.8.2``).
    definitions_version: str | None = None
    #: True when more issues were found than ``max_issues`` allowed to keep.
    truncated: bool = False

    @property
    def errors(self) -> tuple[Issue, ...]:
        return tuple(i for i in self.issues if i.severity == "E")

    @property
    def warnings(self) -> tuple[Issue, ...]:
        return tuple(i for i in self.issues if i.severity == "W")

    @property
    def delimiter_issues(self) -> tuple[Issue, ...]:
        """Findings of the unescaped-delimiter check (warnings, or errors in strict mode)."""
        return tuple(i for i in self.issues if i.check == DELIMITER_CHECK)

    @property
    def reject(self) -> bool:
        """Structurally unacceptable: answer AR (original mode) / CR (enhanced mode)."""
        return any(i.is_rejection for i in self.issues)

    @property
    def ok(self) -> bool:
        """No errors (warnings and information allowed)."""
        return not any(i.severity == "E" for i in self.issues)

    @property
    def ack_code(self) -> Literal["AA", "AE", "AR"]:
        """Original-mode application acknowledgment code for this outcome."""
        if self.reject:
            return "AR"
        return "AA" if self.ok else "AE"


class _Collector:
    def __init__(self, max_issues: int) -> None:
        self.issues: list[Issue] = []
        self.max_issues = max_issues
        self.truncated = False

    def add(self, issue: Issue) -> None:
        if len(self.issues) >= self.max_issues:
            self.truncated = True
            return
        self.issues.append(issue)


@dataclass(frozen=True, slots=True)
class _Located:
    segment: Segment
    index: int  # 1-based position in the message
    occurrence: int  # 1-based occurrence of this segment ID


def _locate(message: Message) -> list[_Located]:
    seen: dict[str, int] = {}
    out: list[_Located] = []
    for i, seg in enumerate(message.segments, start=1):
        seen[seg.name] = seen.get(seg.name, 0) + 1
        out.append(_Located(seg, i, seen[seg.name]))
    return out


def _issue(
    severity: Severity,
    code: str,
    text: str,
    where: _Located | None = None,
    field_no: int | None = None,
    repetition: int | None = None,
    component: int | None = None,
    check: str | None = None,
) -> Issue:
    if where is None:
        return Issue(
            severity, code, None, None, field_no, component, text, repetition=repetition, check=check
        )
    return Issue(
        severity,
        code,
        where.segment.name,
        where.index,
        field_no,
        component,
        text,
        repetition=repetition,
        occurrence=where.occurrence,
        check=check,
    )


def _repetitions(seg: Segment, field_no: int) -> Iterator[int]:
    return iter(range(1, seg.repetition_count(field_no) + 1))


def _stripped(value: str | None) -> str | None:
    """Surrounding whitespace removed; whitespace-only counts as absent (senders pad fields with spaces)."""
    if value is None:
        return None
    value = value.strip()
    return value or None
