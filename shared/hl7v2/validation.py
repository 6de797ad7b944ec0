"""Validation of a parsed HL7 v2 message against the supported message types and their structures.

``validate(message)`` returns a :class:`ValidationResult` of position-only :class:`Issue` objects (safe to
log and to return in ACK ERR segments) and decides reject (AR/CR) versus error (AE/CE). The checks, in
order, and the bounds: ``docs/hl7v2-validation.md``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Final

from shared.hl7v2 import limits
from shared.hl7v2._validation_delimiters import _check_delimiters
from shared.hl7v2._validation_issues import (
    _HEADER_CHECKED,
    DATA_TYPE_ERROR,
    DELIMITER_CHECK,
    LIMIT_CHECK,
    REJECT_CODES,
    REJECT_MSH_FIELDS,
    REQUIRED_FIELD_MISSING,
    SEGMENT_SEQUENCE_ERROR,
    TABLE_VALUE_NOT_FOUND,
    UNSUPPORTED_EVENT_CODE,
    UNSUPPORTED_MESSAGE_TYPE,
    UNSUPPORTED_PROCESSING_ID,
    UNSUPPORTED_VERSION_ID,
    Issue,
    Severity,
    ValidationResult,
    _Collector,
    _issue,
    _locate,
    _Located,
    _repetitions,
    _stripped,
)
from shared.hl7v2._validation_nhs import NHS_NUMBER_OID, _check_nhs_numbers, asserts_nhs_number
from shared.hl7v2.datatypes import check_value
from shared.hl7v2.parser import Message
from shared.hl7v2.structures import (
    SUPPORTED_EVENTS,
    StructureSet,
    parse_version,
    resolve_structure,
    structures_for,
)
from shared.hl7v2.structures.matcher import match_structure

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

_DEFAULT_VERSION: Final = "2.5.1"
_CHECKED_DATATYPES: Final = frozenset({"TS", "DTM", "DT", "TM", "NM", "SI"})
_OBX5_CHECKED: Final = frozenset({"NM", "DT", "TM", "TS", "DTM"})
_HL7_NULL: Final = '""'
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


def _pretty(name: str) -> str:
    return name.replace("_", " ").lower()


def _reason(reason: str) -> str:
    """``"DTM: not a valid ..."`` -> ``"not a valid ..."`` (the type is already in the issue text)."""
    return reason.split(": ", 1)[1] if ": " in reason else reason


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
