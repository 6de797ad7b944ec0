"""Exceptions raised when a parsed message cannot be mapped safely to the canonical model.

Every mapping error is a :class:`~shared.errors.PermanentError` (the same input fails the same way) and
carries what the ingest path needs to answer the sender:

* ``field`` - the source location in the sender's notation (HL7: ``"PID-3"``, ``"OBX(2)-5"``), or ``None``
  when no single field is to blame;
* ``error_code`` - the HL7 table 0357 "message error condition" code for an ERR segment:

  ====  =============================================  ==========================================
  code  meaning (table 0357)                           raised as
  ====  =============================================  ==========================================
  101   required field missing                         :class:`MissingRequiredField`
  102   data type error                                :class:`InvalidValue` (default)
  103   table value not found                          :class:`UnmappedSourceCode`,
                                                       :class:`InvalidValue` (``error_code="103"``)
  200   unsupported message type                       :class:`UnsupportedMessageType`
  201   unsupported event code                         :class:`UnsupportedEvent`
  207   application internal error                     :class:`MappingError` (base default)
  ====  =============================================  ==========================================

Texts name the field, the table / concept map and the rule - never a value from the message (no NHS
numbers, names, codes typed by a person or message bodies).
"""

from __future__ import annotations

from shared.errors import PermanentError

__all__ = [
    "InvalidValue",
    "MappingError",
    "MissingRequiredField",
    "UnmappedSourceCode",
    "UnsupportedEvent",
    "UnsupportedMessageType",
]


class MappingError(PermanentError):
    """Base of every mapping failure; ``field`` is the source location, ``error_code`` an HL7 0357 code."""

    code = "mapping"
    #: HL7 table 0357 code used when a subclass does not choose one.
    default_error_code = "207"

    def __init__(self, message: str, *, field: str | None = None, error_code: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.error_code = error_code or self.default_error_code
        self.reason = message


class MissingRequiredField(MappingError):
    """A field the mapping needs (a patient identifier, a visit number, a report code...) is empty."""

    code = "mapping-missing-field"
    default_error_code = "101"

    def __init__(self, field: str, reason: str = "required field is empty") -> None:
        super().__init__(reason, field=field)


class InvalidValue(MappingError):
    """A field holds a value that cannot be read safely (bad date, failed check digit, wrong type)."""

    code = "mapping-invalid-value"
    default_error_code = "102"

    def __init__(self, field: str, reason: str, *, error_code: str | None = None) -> None:
        super().__init__(reason, field=field, error_code=error_code)


class UnsupportedEvent(MappingError):
    """The message type / trigger event has no mapping (``error_code`` 201)."""

    code = "mapping-unsupported-event"
    default_error_code = "201"

    def __init__(self, message_type: str, reason: str = "no mapping for this trigger event") -> None:
        super().__init__(f"{reason} ({message_type})", field="MSH-9")
        self.message_type = message_type


class UnsupportedMessageType(UnsupportedEvent):
    """The message type itself (MSH-9.1) has no mapping (``error_code`` 200)."""

    code = "mapping-unsupported-message-type"
    default_error_code = "200"

    def __init__(self, message_type: str) -> None:
        super().__init__(message_type, "no mapping for this message type")


class UnmappedSourceCode(MappingError):
    """A coded field has no mapping in its concept map and the field's policy is ``RAISE``.

    Wraps :class:`shared.terminology.errors.UnmappedCode` (kept as ``cause``; not chained as
    ``__cause__``, whose text quotes the code) and adds the source location; ``target`` is the canonical
    element and ``concept_map_id`` the map consulted.
    """

    code = "mapping-unmapped-code"
    default_error_code = "103"

    def __init__(
        self,
        field: str,
        *,
        target: str,
        concept_map_id: str,
        cause: PermanentError | None = None,
    ) -> None:
        super().__init__(f"code has no mapping in concept map {concept_map_id} (for {target})", field=field)
        self.target = target
        self.concept_map_id = concept_map_id
        self.cause = cause
