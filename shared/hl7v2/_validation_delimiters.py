"""Suspected unescaped delimiters: check 5 of ``docs/hl7v2-validation.md`` (split from
``validation.py``, issue 19)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from typing import Final

from shared.hl7v2._validation_issues import (
    _HEADER_CHECKED,
    DATA_TYPE_ERROR,
    DELIMITER_CHECK,
    Severity,
    _Collector,
    _issue,
    _Located,
    _stripped,
)
from shared.hl7v2.structures import StructureSet, available_versions, load_structures

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
    """Check 5 (``docs/hl7v2-validation.md``) for one segment: one split per field, so linear in its size."""
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
