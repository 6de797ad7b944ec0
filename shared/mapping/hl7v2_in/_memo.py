"""The one memo of the HL7 v2 readers (:func:`memoised`, ``docs/speed-code.md``) and the memoised pure
helpers they share (parsed times, quoted names)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import quote

from shared.canonical.model import ClinicalDateTime
from shared.mapping.errors import InvalidValue
from shared.mapping.timeutil import TimeFormatError, from_hl7

if TYPE_CHECKING:
    from shared.mapping.hl7v2_in._context_base import CtxBase as Ctx

__all__ = ["MemoKey", "memoised", "remember"]


#: Reader results by the repetition's encoded text (lineage off, standard delimiters, no escapes): the
#: same consultant, ward or code recurs in message after message, and every canonical value is immutable.
#: They live on the compiled rules (``Compiled.memo``): the same text under other rules may map otherwise.
_MEMO_MAX = 2048
_MISS = object()
_F = TypeVar("_F", bound=Callable[..., Any])
#: Where a reader's result is kept, under which key, and the field text read (handed to the reader so
#: it is not read twice); ``None``: not kept (see :func:`memoised`).
MemoKey = tuple[dict[Any, Any], object, str] | None


def remember(memo: dict[Any, Any], key: object, value: object) -> None:
    if len(memo) >= _MEMO_MAX:
        memo.clear()
    memo[key] = value


class _Counted:
    """A memoised result whose reading counted unmapped local codes: a hit counts them again, so the
    counters count messages, as without the memo."""

    __slots__ = ("counted", "value")

    def __init__(self, value: object, counted: tuple[str, ...]) -> None:
        self.value = value
        self.counted = counted


def memoised(key: Callable[..., MemoKey]) -> Callable[[_F], _F]:
    """A reader whose result depends only on ``key(ctx, *args)`` (a value: the field's encoded text and
    what else the reader reads), kept in a bounded dict: the one memo of the HL7 readers
    (``docs/speed-code.md``). A reader that reads more than its key (the sender's namespace as a
    fallback system) calls :meth:`Ctx.not_memoisable`, and that result - and any reader's that used it -
    is not kept. Unmapped local codes counted while reading (:meth:`Ctx.count_unmapped`) are kept with
    the result and counted again on each hit. On a miss the reader gets the field text the key read as
    ``text=`` (read once)."""

    def wrap(reader: _F) -> _F:
        @functools.wraps(reader)
        def memo_reader(ctx: Ctx, *args: Any, **kwargs: Any) -> Any:
            if ctx.memo:
                where = key(ctx, *args, **kwargs)
                if where is not None:
                    store, k, text = where
                    hit = store.get(k, _MISS)
                    if hit is not _MISS:
                        if hit.__class__ is _Counted:
                            for name in hit.counted:
                                ctx.count_unmapped(name)
                            return hit.value
                        return hit
                    outer, outer_counted = ctx.volatile, ctx.counted
                    ctx.volatile, ctx.counted = False, ()
                    try:
                        value = reader(ctx, *args, text=text, **kwargs)
                    finally:
                        volatile, counted = ctx.volatile, ctx.counted
                        ctx.volatile = outer or volatile
                        ctx.counted = outer_counted + counted if counted else outer_counted
                    if not volatile:
                        if len(store) >= _MEMO_MAX:
                            store.clear()
                        store[k] = _Counted(value, counted) if counted else value
                    return value
            return reader(ctx, *args, **kwargs)

        return cast("_F", memo_reader)

    return wrap


@functools.lru_cache(maxsize=4096)
def _quoted(name: str) -> str:
    return quote(name, safe="-._~")


#: Parsed times by their text: a message usually repeats one time in MSH-7, EVN-2 and PV1-44.
_TIMES: dict[str, ClinicalDateTime | None] = {}


def _time(raw: str, src: str) -> ClinicalDateTime | None:
    """:func:`~shared.mapping.timeutil.from_hl7` (Europe/London for offset-less values), memoised;
    an unreadable value is InvalidValue at ``src``."""
    hit = _TIMES.get(raw, _MISS)
    if hit is not _MISS:
        return hit  # type: ignore[return-value]
    try:
        value = from_hl7(raw)
    except TimeFormatError:
        raise InvalidValue(src, "not a valid HL7 date/time") from None
    if len(_TIMES) >= 1024:
        _TIMES.clear()
    _TIMES[raw] = value
    return value
