"""Bounds on HL7 v2 input that no real message reaches (issue 12, "Quadratic validation hangs the host").

:func:`shared.hl7v2.validation.validate` checks them before any per-field work and rejects a message
that exceeds one (AR / CR, one ERR with the HL7 table 0357 code and the location, see
:data:`shared.hl7v2.validation.LIMIT_CHECK`); its other checks are skipped. The whole message is
already bounded by the MLLP frame limit (``shared.mllp.framing.DEFAULT_MAX_MESSAGE_BYTES``, 1 MiB); these
bound its shape. Module attributes so a deployment (or a benchmark) can change them; read at call time.
"""

from __future__ import annotations

#: Most segments in one message (code ``100``, at the first segment beyond the bound). A large ORU with
#: one OBX per report line stays well below.
MAX_SEGMENTS: int = 10_000

#: Most repetitions of one field (code ``102``, at the field and the first repetition beyond the bound),
#: e.g. PID-3 patient identifiers: real feeds send a handful.
MAX_FIELD_REPETITIONS: int = 100

#: Most encoded characters in one field (code ``102``, at the field).
MAX_FIELD_LENGTH: int = 65_536

#: Longest MSH fields that identify a message and its sender (code ``102``, at the field): MSH-3..6 (HD,
#: 227 characters in HL7 v2.5) and MSH-10 (ST, 199 characters from v2.7; v2.5's 20 is routinely exceeded
#: by UUID control IDs, so the later bound is used). The ingest edge keys its duplicate check and its
#: journal on them, and echoes them in the ACK.
MSH_FIELD_LENGTHS: dict[int, int] = {3: 227, 4: 227, 5: 227, 6: 227, 10: 199}

#: Fields whose bounds differ from the defaults: ``(segment, field) -> (max repetitions, max length)``,
#: ``None`` for no bound beyond the message size. OBX-5 carries report text (one repetition per line) and
#: encapsulated documents (ED, base64).
FIELD_OVERRIDES: dict[tuple[str, int], tuple[int | None, int | None]] = {
    ("OBX", 5): (10_000, None),
    ("NTE", 3): (10_000, None),
}
