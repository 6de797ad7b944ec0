"""Field values for building messages (:class:`Raw`, :class:`Repeated`, the value shapes) and their ER7
encoding."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from shared.hl7v2 import escape as _escape
from shared.hl7v2.errors import Hl7EncodingError
from shared.hl7v2.separators import HEADER_SEGMENTS, Separators, _valid_name

__all__ = ["ComponentValue", "FieldValue", "LeafValue", "Raw", "Repeated", "encode_field"]


class Raw(str):
    """Pre-encoded ER7 text inserted verbatim by :func:`build_message` / ``append_segment`` (no escaping)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Repeated:
    """A repeating field value for :func:`build_message`: each item is one repetition."""

    values: Sequence[ComponentValue]


#: A leaf (sub-component) value: plain ``str`` (escaped on write), :class:`Raw` (a ``str`` subclass,
#: written verbatim) or ``None`` (empty).
LeafValue: TypeAlias = "str | None"
#: A repetition: a leaf, or a sequence of components each being a leaf or a sequence of sub-components.
ComponentValue: TypeAlias = "str | Sequence[str | Sequence[str | None] | None] | None"
#: A field: a repetition value or :class:`Repeated`.
FieldValue: TypeAlias = "str | Repeated | Sequence[str | Sequence[str | None] | None] | None"


def _encode_leaf(value: object, seps: Separators, forbidden: str) -> str:
    if value is None:
        return ""
    if isinstance(value, Raw):
        text = str(value)
        if "\r" in text or "\n" in text or any(c in text for c in forbidden):
            raise Hl7EncodingError("raw ER7 text contains a delimiter not allowed at this level")
        return text
    if isinstance(value, str):
        return _escape.encode(value, seps)
    raise Hl7EncodingError(f"unsupported value type {type(value).__name__}")


def _encode_repetition(value: object, seps: Separators) -> str:
    if value is None or isinstance(value, str):
        return _encode_leaf(value, seps, seps.field + seps.repetition)
    if isinstance(value, Sequence):
        comps: list[str] = []
        for comp in value:
            if comp is None or isinstance(comp, str):
                comps.append(_encode_leaf(comp, seps, seps.field + seps.repetition + seps.component))
            elif isinstance(comp, Sequence):
                forbidden = seps.field + seps.repetition + seps.component + seps.subcomponent
                comps.append(seps.subcomponent.join(_encode_leaf(s, seps, forbidden) for s in comp))
            else:
                raise Hl7EncodingError(f"unsupported component type {type(comp).__name__}")
        return seps.component.join(comps)
    raise Hl7EncodingError(f"unsupported value type {type(value).__name__}")


def encode_field(value: FieldValue | object, seps: Separators) -> str:
    """ER7 text of one field value (see :func:`build_message` for the accepted shapes)."""
    if isinstance(value, Repeated):
        return seps.repetition.join(_encode_repetition(v, seps) for v in value.values)
    if value is None or isinstance(value, str):
        return _encode_leaf(value, seps, seps.field)
    return _encode_repetition(value, seps)


def _segment_text(fields: Sequence[FieldValue], seps: Separators) -> str:
    if not fields or not isinstance(fields[0], str) or not _valid_name(fields[0]):
        raise Hl7EncodingError("segment must start with a valid segment ID (e.g. 'PID')")
    name = str(fields[0])
    if name in HEADER_SEGMENTS:
        given = list(fields[1:3])
        if (given and given[0] not in (None, seps.field)) or (
            len(given) > 1 and given[1] not in (None, seps.encoding_characters)
        ):
            raise Hl7EncodingError(f"{name}-1/{name}-2 must be None or match the message separators")
        rest = [encode_field(v, seps) for v in fields[3:]]
        return seps.field.join([name, seps.encoding_characters, *rest])
    encoded = [encode_field(v, seps) for v in fields[1:]]
    return seps.field.join([name, *encoded])
