"""MLLP framing: ``<SB> payload <EB><CR>`` (HL7 v2 Minimal Lower Layer Protocol, release 2).

:func:`frame` wraps one payload; :class:`FrameDecoder` is an incremental decoder for a byte stream that may
arrive in arbitrary pieces. The decoder never raises on any input: everything that is not a well-formed
frame comes out as a typed event, so a server can answer a broken frame with a NAK and keep the
connection.

Decoder semantics (each event is fixed by its position in the stream, so the events for a stream are the
same however the stream is chunked):

* Bytes outside a frame (before the next start block) are skipped and reported as one :class:`Garbage`
  event carrying only a byte count, emitted when the next start block arrives (or by
  :meth:`FrameDecoder.finish`).
* A frame whose payload grows beyond ``max_message_bytes`` is reported once, as :class:`Oversize`, at the
  moment the limit is exceeded; the rest of that frame is discarded silently up to its end block (with or
  without the trailing CR) or a new start block, then decoding resynchronises.
* An end block not followed by CR ends the frame as :class:`BrokenFrame`; the byte after the end block is
  then decoded as if outside a frame (a start block there opens the next frame).
* A start block inside a frame abandons the frame so far (:class:`TruncatedFrame`) and starts a new one.
* :meth:`FrameDecoder.finish` (end of stream) reports pending garbage and an unfinished frame as
  :class:`TruncatedFrame`.

Payload bytes are carried in fields excluded from ``repr`` so an event can be logged without leaking
message content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from shared.mllp.errors import MllpPayloadError

SB: Final = 0x0B
EB: Final = 0x1C
CR: Final = 0x0D

_SB_BYTES: Final = bytes([SB])
_EB_BYTES: Final = bytes([EB])
_TRAILER: Final = bytes([EB, CR])
_CONTROL: Final = re.compile(b"[\x0b\x1c]")

#: Default largest accepted payload (1 MiB).
DEFAULT_MAX_MESSAGE_BYTES: Final = 1_048_576
#: At most this many leading bytes of an oversize frame are kept (enough to echo MSH in a NAK).
OVERSIZE_HEAD_BYTES: Final = 65_536


def frame(payload: bytes) -> bytes:
    """Return ``payload`` wrapped in an MLLP block.

    Raises :class:`MllpPayloadError` when ``payload`` contains a start block (0x0B) or end block (0x1C)
    byte: such a payload cannot be framed unambiguously (an HL7 v2 message never contains either).
    """
    if _SB_BYTES in payload or _EB_BYTES in payload:
        match = _CONTROL.search(payload)
        offset = match.start() if match else -1
        raise MllpPayloadError(f"payload contains an MLLP control byte at offset {offset}")
    return b"".join((_SB_BYTES, payload, _TRAILER))


@dataclass(frozen=True, slots=True)
class Frame:
    """A complete, well-formed frame."""

    payload: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Garbage:
    """``nbytes`` bytes arrived outside any frame and were skipped."""

    nbytes: int


@dataclass(frozen=True, slots=True)
class Oversize:
    """A frame's payload exceeded ``limit`` bytes; the rest of that frame is discarded.

    ``head`` holds the first ``min(limit, OVERSIZE_HEAD_BYTES)`` payload bytes (for echoing MSH in a NAK).
    """

    limit: int
    head: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class BrokenFrame:
    """An end block was followed by something other than CR. ``partial`` is the payload before it."""

    partial: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class TruncatedFrame:
    """A frame was abandoned: a new start block (or end of stream) arrived before its end block."""

    partial: bytes = field(repr=False)


#: Anything :meth:`FrameDecoder.feed` can return.
DecodeEvent = Frame | Garbage | Oversize | BrokenFrame | TruncatedFrame
#: The error events (everything except :class:`Frame`).
DecodeFault = Garbage | Oversize | BrokenFrame | TruncatedFrame

_OUTSIDE: Final = 0
_IN_FRAME: Final = 1
_DISCARD: Final = 2


class FrameDecoder:
    """Incremental MLLP decoder; see the module docstring for the exact event semantics."""

    __slots__ = ("_buf", "_garbage", "_head_limit", "_max", "_pending_eb", "_state")

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        if max_message_bytes < 1:
            raise ValueError("max_message_bytes must be at least 1")
        self._max = max_message_bytes
        self._head_limit = min(max_message_bytes, OVERSIZE_HEAD_BYTES)
        self._state = _OUTSIDE
        self._buf = bytearray()
        self._garbage = 0
        self._pending_eb = False

    @property
    def max_message_bytes(self) -> int:
        return self._max

    @property
    def in_frame(self) -> bool:
        """True while a frame has been started and not yet ended (including a frame being discarded)."""
        return self._state != _OUTSIDE

    def feed(self, data: bytes) -> list[DecodeEvent]:
        """Consume ``data`` and return the events it completes, in stream order. Never raises."""
        events: list[DecodeEvent] = []
        i = 0
        n = len(data)
        while i < n:
            if self._state == _OUTSIDE:
                j = data.find(_SB_BYTES, i)
                if j < 0:
                    self._garbage += n - i
                    break
                self._garbage += j - i
                if self._garbage:
                    events.append(Garbage(self._garbage))
                    self._garbage = 0
                self._state = _IN_FRAME
                self._buf = bytearray()
                i = j + 1
                continue

            if self._pending_eb:
                self._pending_eb = False
                if data[i] == CR:
                    i += 1
                    if self._state == _IN_FRAME:
                        events.append(Frame(bytes(self._buf)))
                elif self._state == _IN_FRAME:
                    # The byte after EB is not consumed: it is decoded as outside a frame.
                    events.append(BrokenFrame(bytes(self._buf)))
                self._end_frame()
                continue

            match = _CONTROL.search(data, i)
            k = match.start() if match else n
            if self._state == _IN_FRAME and k > i:
                if len(self._buf) + (k - i) > self._max:
                    head = bytes(self._buf[: self._head_limit])
                    if len(head) < self._head_limit:
                        head += data[i : i + self._head_limit - len(head)]
                    events.append(Oversize(self._max, head))
                    self._buf = bytearray()
                    self._state = _DISCARD
                else:
                    self._buf += data[i:k]
            if k == n:
                break
            if data[k] == EB:
                self._pending_eb = True
            else:  # a start block inside a frame
                if self._state == _IN_FRAME:
                    events.append(TruncatedFrame(bytes(self._buf)))
                self._state = _IN_FRAME
                self._buf = bytearray()
            i = k + 1
        return events

    def finish(self) -> list[DecodeEvent]:
        """Signal end of stream: report skipped bytes and any unfinished frame, then reset."""
        events: list[DecodeEvent] = []
        if self._garbage:
            events.append(Garbage(self._garbage))
        if self._state == _IN_FRAME:
            events.append(TruncatedFrame(bytes(self._buf)))
        self._garbage = 0
        self._end_frame()
        return events

    def _end_frame(self) -> None:
        self._state = _OUTSIDE
        self._buf = bytearray()
        self._pending_eb = False
