"""Validation of a parsed HL7 v2 message against the supported message types and their structures.

``validate(message)`` returns a :class:`ValidationResult` of position-only :class:`Issue` objects (safe to
log and to return in ACK ERR segments) and decides reject (AR/CR) versus error (AE/CE). The checks, in
order, and the bounds: ``docs/hl7v2-validation.md``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Final, Literal

from shared.hl7v2 import limits
from shared.hl7v2.datatypes import check_value
from shared.hl7v2.parser import Message, Segment
from shared.hl7v2.structures import (
    SUPPORTED_EVENTS,
    StructureSet,
    available_versions,
    load_structures,
    parse_version,
    resolve_structure,
    structures_for,
)
from shared.hl7v2.structures.matcher import match_structure
from shared.identifiers.nhs_number import is_repeated_digit_nhs_number, is_valid_nhs_number

__all__ = [
    "DELIMITER_CHECK",
    "ESSENTIAL_FIELDS",
    "LIMIT_CHECK",
    "NHS_NUMBER_OID",
    "POSITION_TOLERANT_SEGMENTS",
    "REJECT_CODES",
    "REJECT_MSH_FIELDS",
    "Issue",
    "Severity",
    "ValidationResult",
    "asserts_nhs_number",
    "validate",
]

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

#: :attr:`Issue.check` of the unescaped-delimiter findings (see the module docstring, check 5).
DELIMITER_CHECK: Final = "delimiters"

#: :attr:`Issue.check` of the bound findings (:mod:`shared.hl7v2.limits`): always a rejection.
LIMIT_CHECK: Final = "limits"

#: ISO OID of the NHS number identifier system (England and Wales), accepted in CX.4.2.
NHS_NUMBER_OID: Final = "2.16.840.1.113883.2.1.4.1"

_DEFAULT_VERSION: Final = "2.5.1"
_CHECKED_DATATYPES: Final = frozenset({"TS", "DTM", "DT", "TM", "NM", "SI"})
_OBX5_CHECKED: Final = frozenset({"NM", "DT", "TM", "TS", "DTM"})
_HL7_NULL: Final = '""'
_HEADER_CHECKED: Final = frozenset({1, 2, 9, 11, 12})
#: Fields whose absence is an error (E). Other fields the standard marks required are reported as warnings:
#: hl7apy's required flags include conditional fields, and real feeds routinely omit e.g. OBX-11 or PV1-2
#: in ways the TIE can tolerate; these are the fields without which a message cannot be processed.
ESSENTIAL_FIELDS: Final = frozenset(
    {
        ("MSH", 7),  # date/time of message
        ("MSH", 9),  # message type
        ("MSH", 10),  # message control id (needed for the ACK)
        ("MSH", 11),  # processing id
        ("MSH", 12),  # version id
        ("PID", 3),  # patient identifier list
        ("MRG", 1),  # prior patient identifier list (merge target)
        ("OBX", 3),  # observation identifier
        ("ORC", 1),  # order control
        ("MSA", 1),  # acknowledgment code
        ("MSA", 2),  # message control id being acknowledged
    }
)

#: Segments whose misplacement is only a warning: NTE is free-text annotation and senders commonly put
#: order-level comments where the standard does not allow them (e.g. straight after ORC).
POSITION_TOLERANT_SEGMENTS: Final = frozenset({"NTE"})

#: Fields whose table is checked: (segment, field, component or None, table id).
_TABLE_CHECKS: Final[tuple[tuple[str, int, int | None, str], ...]] = (
    ("PID", 8, None, "HL70001"),
    ("MSA", 1, None, "HL70008"),
)


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
        """True for an error that makes the message structurally unacceptable (see module docstring)."""
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


# ----------------------------------------------------------------------------------------------- header


def _check_header(
    msh: _Located,
    definitions: StructureSet,
    out: _Collector,
    accepted_processing_ids: Collection[str] | None,
) -> tuple[str | None, str | None, bool]:
    """Check MSH-9/11/12/15/16. Returns (type, trigger, supported)."""
    seg = msh.segment
    message_type = _stripped(seg.get(9, comp=1))
    trigger = _stripped(seg.get(9, comp=2))
    supported = True
    if message_type is None:
        out.add(_issue("E", UNSUPPORTED_MESSAGE_TYPE, "Message type (MSH-9.1) is missing", msh, 9, None, 1))
        supported = False
    elif message_type != "ACK" and not any(e.startswith(message_type + "^") for e in SUPPORTED_EVENTS):
        out.add(_issue("E", UNSUPPORTED_MESSAGE_TYPE, "Unsupported message type", msh, 9, None, 1))
        supported = False
    elif message_type != "ACK" and f"{message_type}^{trigger or ''}" not in SUPPORTED_EVENTS:
        text = "Trigger event (MSH-9.2) is missing" if trigger is None else "Unsupported event code"
        out.add(_issue("E", UNSUPPORTED_EVENT_CODE, text, msh, 9, None, 2))
        supported = False

    version = _stripped(seg.get(12, comp=1))
    parsed = parse_version(version) if version is not None else None
    if version is None:
        out.add(_issue("E", UNSUPPORTED_VERSION_ID, "Version id (MSH-12) is missing", msh, 12, None, 1))
    elif parsed is None or parsed[0] != 2 or len(parsed) < 2:
        out.add(
            _issue("E", UNSUPPORTED_VERSION_ID, "Unsupported version id: HL7 v2.x required", msh, 12, None, 1)
        )

    processing = _stripped(seg.get(11, comp=1))
    processing_table = definitions.tables.get("HL70103")
    if processing is None:
        out.add(
            _issue("E", REQUIRED_FIELD_MISSING, "Required field MSH-11 (processing id) is missing", msh, 11)
        )
    elif processing_table is not None and processing not in processing_table.values:
        out.add(
            _issue("E", TABLE_VALUE_NOT_FOUND, "Processing id not found in HL7 table 0103", msh, 11, None, 1)
        )
    elif accepted_processing_ids is not None and processing not in accepted_processing_ids:
        out.add(
            _issue(
                "E",
                UNSUPPORTED_PROCESSING_ID,
                "Processing id not accepted by this endpoint",
                msh,
                11,
                None,
                1,
            )
        )

    conditions = definitions.tables.get("HL70155")
    for field_no, label in ((15, "accept acknowledgment type"), (16, "application acknowledgment type")):
        value = _stripped(seg.get(field_no))
        if value is not None and conditions is not None and value not in conditions.values:
            out.add(
                _issue(
                    "E",
                    TABLE_VALUE_NOT_FOUND,
                    f"MSH-{field_no} ({label}) not found in HL7 table 0155",
                    msh,
                    field_no,
                )
            )
    return message_type, trigger, supported


# -------------------------------------------------------------------------------------------- structure


def _check_structure(
    located: Sequence[_Located], definitions: StructureSet, structure_id: str, out: _Collector
) -> set[int]:
    """Report structure problems; return the 0-based positions of segments the structure ignores."""
    root = definitions.structures[structure_id]
    names = [loc.segment.name for loc in located]
    ignored: set[int] = set()
    for problem in match_structure(root, names):
        if problem.kind == "missing":
            out.add(
                Issue(
                    "E",
                    SEGMENT_SEQUENCE_ERROR,
                    problem.segment,
                    None,
                    None,
                    None,
                    f"Required segment {problem.segment} is missing (structure {structure_id})",
                )
            )
            continue
        assert problem.index is not None
        where = located[problem.index]
        more = f" ({problem.count} consecutive)" if problem.count > 1 else ""
        if problem.kind == "unexpected":
            ignored.update(range(problem.index, problem.index + problem.count))
            kind = "Z-segment" if problem.segment.startswith("Z") else "Segment"
            text = f"{kind} {problem.segment} is not part of structure {structure_id}; ignored{more}"
            out.add(_issue("W", SEGMENT_SEQUENCE_ERROR, text, where))
        elif problem.kind == "too_many":
            text = f"Segment {problem.segment} repeats more often than {structure_id} allows{more}"
            out.add(_issue("E", SEGMENT_SEQUENCE_ERROR, text, where))
        else:
            text = f"Segment {problem.segment} is not allowed at this position in {structure_id}{more}"
            severity: Severity = "W" if problem.segment in POSITION_TOLERANT_SEGMENTS else "E"
            out.add(_issue(severity, SEGMENT_SEQUENCE_ERROR, text, where))
    return ignored


# ----------------------------------------------------------------------------------------------- bounds


def _check_limits(located: Sequence[_Located], out: _Collector) -> bool:
    """Report input beyond :mod:`shared.hl7v2.limits` (see the module docstring); True when any.

    Linear: a segment is looked at field by field only when its whole text could break a bound."""
    found = False
    msh = located[0]
    for n, longest in sorted(limits.MSH_FIELD_LENGTHS.items()):
        if len(msh.segment.raw_field(n)) > longest:
            text = f"MSH-{n} is longer than {longest} characters"
            out.add(_issue("E", DATA_TYPE_ERROR, text, msh, n, check=LIMIT_CHECK))
            found = True
    max_segments = limits.MAX_SEGMENTS
    if len(located) > max_segments:
        text = f"Message has more than {max_segments} segments"
        out.add(_issue("E", SEGMENT_SEQUENCE_ERROR, text, located[max_segments], check=LIMIT_CHECK))
        return True
    max_reps = limits.MAX_FIELD_REPETITIONS
    max_length = limits.MAX_FIELD_LENGTH
    overrides = limits.FIELD_OVERRIDES
    for loc in located:
        seg = loc.segment
        raw = seg.raw
        rsep = seg.separators.repetition
        if len(raw) <= max_length and raw.count(rsep) < max_reps:
            continue  # no field of this segment can exceed a bound
        for n in range(3 if seg.name in ("MSH", "FHS", "BHS") else 1, len(seg) + 1):
            field_max_reps, field_max_length = overrides.get((seg.name, n), (max_reps, max_length))
            value = seg.raw_field(n)
            if field_max_length is not None and len(value) > field_max_length:
                text = f"{seg.name}-{n} is longer than {field_max_length} characters"
                out.add(_issue("E", DATA_TYPE_ERROR, text, loc, n, check=LIMIT_CHECK))
                found = True
            if field_max_reps is not None and value.count(rsep) >= field_max_reps:
                text = f"{seg.name}-{n} has more than {field_max_reps} repetitions"
                out.add(_issue("E", DATA_TYPE_ERROR, text, loc, n, field_max_reps + 1, check=LIMIT_CHECK))
                found = True
    return found


# ----------------------------------------------------------------------------------------------- fields


def _repetitions(seg: Segment, field_no: int) -> Iterator[int]:
    return iter(range(1, seg.repetition_count(field_no) + 1))


def _check_fields(loc: _Located, definitions: StructureSet, out: _Collector) -> None:
    seg = loc.segment
    fields = definitions.segments.get(seg.name)
    if fields is None:
        return
    # MSH-1/MSH-2 (separators) are the parser's business; MSH-9/11/12 are checked by _check_header.
    skipped = _HEADER_CHECKED if seg.name == "MSH" else frozenset()
    for definition in fields:
        n = definition.seq
        if n in skipped:
            continue
        raw = seg.raw_field(n)
        if not raw.strip():
            if definition.required:
                out.add(
                    _issue(
                        "E" if (seg.name, n) in ESSENTIAL_FIELDS else "W",
                        REQUIRED_FIELD_MISSING,
                        f"Required field {seg.name}-{n} ({_pretty(definition.name)}) is missing",
                        loc,
                        n,
                    )
                )
            continue
        if raw == _HL7_NULL or definition.datatype not in _CHECKED_DATATYPES:
            continue
        datatype = definition.datatype
        for rep in _repetitions(seg, n):
            value = seg.get(n, rep, 1)
            if value is None or value == _HL7_NULL:
                continue
            reason = check_value("DTM" if datatype == "TS" else datatype, value)
            if reason is not None:
                out.add(
                    _issue(
                        "E",
                        DATA_TYPE_ERROR,
                        f"{seg.name}-{n} is not a valid {datatype}: {_reason(reason)}",
                        loc,
                        n,
                        rep,
                        1,
                    )
                )
    for table_segment, field_no, component, table_id in _TABLE_CHECKS:
        if table_segment != seg.name:
            continue
        table = definitions.tables.get(table_id)
        value = _stripped(seg.get(field_no, 1, component))
        if table is not None and value is not None and value != _HL7_NULL and value not in table.values:
            out.add(
                _issue(
                    "E",
                    TABLE_VALUE_NOT_FOUND,
                    f"{seg.name}-{field_no} value not found in HL7 table {table_id[3:]} ({table.name})",
                    loc,
                    field_no,
                    1,
                    component,
                )
            )
    if seg.name == "OBX":
        _check_obx_value(loc, out)


def _check_obx_value(loc: _Located, out: _Collector) -> None:
    seg = loc.segment
    value_type = seg.get(2)
    if value_type not in _OBX5_CHECKED:
        return
    assert value_type is not None
    for rep in _repetitions(seg, 5):
        value = seg.get(5, rep, 1)
        if value is None or value == _HL7_NULL:
            continue
        reason = check_value("DTM" if value_type == "TS" else value_type, value)
        if reason is not None:
            out.add(
                _issue(
                    "W",
                    DATA_TYPE_ERROR,
                    f"OBX-5 does not match value type OBX-2 ({value_type}): {_reason(reason)}",
                    loc,
                    5,
                    rep,
                    1,
                )
            )


def _stripped(value: str | None) -> str | None:
    """Surrounding whitespace removed; whitespace-only counts as absent (senders pad fields with spaces)."""
    if value is None:
        return None
    value = value.strip()
    return value or None


def _pretty(name: str) -> str:
    return name.replace("_", " ").lower()


def _reason(reason: str) -> str:
    """``"DTM: not a valid ..."`` -> ``"not a valid ..."`` (the type is already in the issue text)."""
    return reason.split(": ", 1)[1] if ": " in reason else reason


# ---------------------------------------------------------------------------------- unescaped delimiters

#: Types without a layout to check: withdrawn fields/components and OBX-5's "varies" (arrays MA/NA are
#: not exported by the generator).
_NO_LAYOUT: Final = frozenset({"WD", "varies"})
#: OBX-6 split at a power of ten: ``x10^9/L`` -> components ``x10`` and ``9/L``.
_POWER_OF_TEN: Final = re.compile(r"(?:[xX*\u00d7]\s*)?10")
_EXPONENT_START: Final = re.compile(r"-?[0-9]")

#: A layout: per component, how many sub-components it may hold (1 = primitive, ``None`` = unchecked).
_Layout = tuple[int | None, ...]


def _type_layout(definitions: StructureSet, datatype: str | None) -> _Layout | None:
    if datatype is None or datatype in _NO_LAYOUT:
        return None
    components = definitions.datatypes.get(datatype)
    if components is None:
        return (1,) if datatype in definitions.primitive_datatypes else None
    out: list[int | None] = []
    for component in components:
        sub = definitions.datatypes.get(component)
        if sub is not None:
            out.append(len(sub))
        else:
            out.append(1 if component in definitions.primitive_datatypes else None)
    return tuple(out)


def _wider(a: _Layout | None, b: _Layout | None) -> _Layout | None:
    """Component-wise the more permissive of two layouts (versions only ever add components)."""
    if a is None or b is None:
        return a if b is None else b
    longer, shorter = (a, b) if len(a) >= len(b) else (b, a)
    merged: list[int | None] = []
    for i, x in enumerate(longer):
        y = shorter[i] if i < len(shorter) else None
        merged.append(y if x is None else (x if y is None else max(x, y)))
    return tuple(merged)


@cache
def _type_shape(datatype: str) -> _Layout | None:
    """The widest layout ``datatype`` has in any generated HL7 version."""
    shape: _Layout | None = None
    for version in available_versions():
        shape = _wider(shape, _type_layout(load_structures(version), datatype))
    return shape


@cache
def _field_shape(segment: str, seq: int) -> tuple[_Layout | None, bool]:
    """The widest layout of a field across versions (a field's type may widen, e.g. CE -> CWE) and
    whether it repeats in any version. Senders mix versions; only what no version allows is reported."""
    shape: _Layout | None = None
    repeating = False
    for version in available_versions():
        definitions = load_structures(version)
        definition = definitions.field(segment, seq)
        if definition is None:
            continue
        repeating = repeating or definition.repeating
        shape = _wider(shape, _type_layout(definitions, definition.datatype))
    return shape, repeating


#: Per field to check: (field number, widest layout or ``None`` for OBX-5, repeats in some version).
_FieldShapes = tuple[tuple[int, _Layout | None, bool], ...]


@cache
def _segment_shapes(version: str, segment: str) -> _FieldShapes:
    """The fields of ``segment`` (as defined in ``version``) that have a layout to check, in order."""
    out: list[tuple[int, _Layout | None, bool]] = []
    for definition in load_structures(version).segments.get(segment, ()):
        n = definition.seq
        if segment == "MSH" and n in _HEADER_CHECKED:
            continue
        shape, repeating = _field_shape(segment, n)
        if segment == "OBX" and n == 5:
            out.append((n, None, True))  # the layout of the type named in OBX-2
        elif shape is not None:
            out.append((n, shape, repeating))
    return tuple(out)


def _first_valued(parts: Sequence[str], start: int) -> int | None:
    """0-based index of the first non-empty part at or after ``start``."""
    for i in range(start, len(parts)):
        if parts[i]:
            return i
    return None


def _check_delimiters(loc: _Located, definitions: StructureSet, severity: Severity, out: _Collector) -> None:
    """Check 5 of the module docstring for one segment: one split per field, so linear in its size."""
    seg = loc.segment
    seps = seg.separators
    present = len(seg)
    for n, shape, repeating in _segment_shapes(definitions.version, seg.name):
        if n > present:
            break
        raw = seg.raw_field(n)
        if not raw or (
            seps.component not in raw and seps.subcomponent not in raw and seps.repetition not in raw
        ):
            continue
        if shape is None:  # OBX-5
            value_type = _stripped(seg.get(2))
            shape = _type_shape(value_type) if value_type is not None else None
            if shape is None:
                continue
        repetitions = raw.split(seps.repetition)
        extra = None if repeating else _first_valued(repetitions, 1)
        if extra is not None:
            text = f"{seg.name}-{n} does not repeat but holds repetitions: an unescaped repetition separator?"
            out.add(_issue(severity, DATA_TYPE_ERROR, text, loc, n, extra + 1, None, DELIMITER_CHECK))
        for rep, value in enumerate(repetitions, start=1):
            if seps.component in value or seps.subcomponent in value:
                _check_repetition(loc, n, rep, value, shape, severity, out)


def _check_repetition(
    loc: _Located, n: int, rep: int, value: str, shape: _Layout, severity: Severity, out: _Collector
) -> None:
    seg = loc.segment
    seps = seg.separators
    components = value.split(seps.component)
    primitive = shape == (1,)
    found: list[tuple[int, str]] = []
    if len(components) > len(shape):
        extra = _first_valued(components, len(shape))
        if extra is not None:
            problem = (
                "is a primitive but holds components"
                if primitive
                else f"holds more components than any HL7 v2 version defines ({len(shape)})"
            )
            found.append((extra + 1, f"{seg.name}-{n} {problem}: an unescaped component separator?"))
    if seps.subcomponent in value:
        for i, component in enumerate(components[: len(shape)]):
            limit = shape[i]
            if limit is None or seps.subcomponent not in component:
                continue
            if _first_valued(component.split(seps.subcomponent), limit) is None:
                continue
            problem = (
                "is a primitive but holds sub-components"
                if limit == 1
                else f"holds more sub-components than any HL7 v2 version defines ({limit})"
            )
            label = f"{seg.name}-{n}" if primitive else f"{seg.name}-{n}.{i + 1}"
            found.append((i + 1, f"{label} {problem}: an unescaped sub-component separator?"))
    if seg.name == "OBX" and n == 6:
        for i in range(len(components) - 1):
            if _POWER_OF_TEN.fullmatch(components[i]) and _EXPONENT_START.match(components[i + 1]):
                text = "OBX-6 looks like a unit split at a power of ten: an unescaped component separator?"
                found.append((i + 1, text))
                break
    for position, text in found:
        out.add(_issue(severity, DATA_TYPE_ERROR, text, loc, n, rep, position, DELIMITER_CHECK))


# ------------------------------------------------------------------------------------------ NHS number


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


# ---------------------------------------------------------------------------------------------- entry


def validate(
    message: Message,
    *,
    accepted_processing_ids: Collection[str] | None = None,
    max_issues: int = 100,
    strict_delimiters: bool = False,
) -> ValidationResult:
    """Validate ``message`` (see the module docstring). Never raises for message content.

    ``accepted_processing_ids``: when given (e.g. ``{"P"}`` for a production endpoint), a valid MSH-11
    outside it is reported as ``202`` Unsupported processing id. ``max_issues`` bounds the result (and so
    the ACK size); :attr:`ValidationResult.truncated` says when issues were dropped.
    ``strict_delimiters``: report suspected unescaped delimiters as errors instead of warnings.
    """
    out = _Collector(max_issues)
    located = _locate(message)
    msh = located[0]
    version = message.get("MSH-12.1") or _DEFAULT_VERSION
    definitions = structures_for(version)
    message_type, trigger, supported = _check_header(msh, definitions, out, accepted_processing_ids)
    if not supported or message_type is None:
        return ValidationResult(tuple(out.issues), message_type, trigger, None, None, out.truncated)
    resolved = resolve_structure(message_type, trigger, version)
    if resolved is None:  # pragma: no cover - _check_header already rejected unsupported events
        return ValidationResult(tuple(out.issues), message_type, trigger, None, None, out.truncated)
    structure_definitions, structure_id = resolved
    if _check_limits(located, out):  # absurd input: reject before any per-field work
        return ValidationResult(tuple(out.issues), message_type, trigger, None, None, out.truncated)
    ignored = _check_structure(located, structure_definitions, structure_id, out)
    for position, loc in enumerate(located):
        if position in ignored:  # segments outside the structure are skipped, not field-checked
            continue
        _check_fields(loc, definitions, out)
        if loc.segment.name in ("PID", "MRG"):
            _check_nhs_numbers(loc, out)
    severity: Severity = "E" if strict_delimiters else "W"
    for position, loc in enumerate(located):
        if position not in ignored:
            _check_delimiters(loc, definitions, severity, out)
    return ValidationResult(
        tuple(out.issues),
        message_type,
        trigger,
        structure_id,
        structure_definitions.version,
        out.truncated,
    )
