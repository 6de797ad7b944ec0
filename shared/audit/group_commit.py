"""Group commit for an :class:`~shared.audit.ports.AuditLog`: concurrent appends share one transaction.

Every caller still returns only once its records are stored (so a failure still fails the audited action),
but callers that arrive while another is writing are not written one transaction each: the first caller
becomes the leader and writes everything queued so far in one ``append``; the callers that queued meanwhile
wait, and the first of them whose records are still pending leads the next batch. A lone caller leads at
once (no hand-off to another thread, no added latency). Record order in the chain is arrival order. Each
waiter is woken once - when its batch is stored, or when it is handed the lead - not at every batch.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from shared.audit.model import AuditRecord
from shared.audit.ports import AuditLog, ChainedEntry
from shared.audit.wrapper import ReadThroughLog

#: Most records written in one transaction.
MAX_BATCH = 500


@dataclass(slots=True)
class _Pending:
    records: Sequence[AuditRecord]
    done: bool = False
    entries: list[ChainedEntry] = field(default_factory=list)
    error: BaseException | None = None
    #: Set when the batch holding these records is stored (``done``) or when this caller is to lead.
    wake: threading.Event = field(default_factory=threading.Event)


class GroupCommitLog(ReadThroughLog):
    """Wraps an :class:`AuditLog`; appends from concurrent threads are batched (see the module docs)."""

    def __init__(self, log: AuditLog, *, max_batch: int = MAX_BATCH) -> None:
        self.log = log
        self._max = max_batch
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._writing = False

    def append(self, records: Sequence[AuditRecord]) -> list[ChainedEntry]:
        if not records:
            return []
        mine = _Pending(records)
        with self._cond:
            self._queue.append(mine)
            lead = not self._writing
            self._writing = True
            self._cond.notify_all()  # only observers of the queue wait on the condition
        if not lead:
            try:
                mine.wake.wait()
            except BaseException:
                self._abandon(mine)  # interrupted while queued: never leave a lead nobody takes
                raise
            if mine.done:
                return self._result(mine)
        # Leading: this caller's records are first in the queue (a leader hands over to the first one).
        with self._cond:
            batch: list[_Pending] = []
            size = 0
            while self._queue and (not batch or size + len(self._queue[0].records) <= self._max):
                item = self._queue.pop(0)
                batch.append(item)
                size += len(item.records)
        self._write(batch)
        return self._result(mine)

    def _write(self, batch: list[_Pending]) -> None:
        """Append one batch; its outcome (entries or the error) goes to each of its callers, and the lead
        to the first caller still queued."""
        try:
            entries = self.log.append([r for item in batch for r in item.records])
        except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch, re-raised there
            for item in batch:
                item.error = exc
        else:
            at = 0
            for item in batch:
                item.entries = entries[at : at + len(item.records)]
                at += len(item.records)
        with self._cond:
            for item in batch:
                item.done = True
                item.wake.set()
            if self._queue:
                self._queue[0].wake.set()  # the next leader (its records are not done)
            else:
                self._writing = False
            self._cond.notify_all()

    def _abandon(self, mine: _Pending) -> None:
        """A queued caller gives up (an exception while it waited): its records leave the queue unwritten,
        and if it had been handed the lead, the lead goes to the next caller (or nobody is writing)."""
        with self._cond:
            if mine.done:
                return
            at = next((i for i, item in enumerate(self._queue) if item is mine), None)
            if at is None:
                return
            del self._queue[at]
            if at == 0 and mine.wake.is_set():  # it was to lead the next batch
                if self._queue:
                    self._queue[0].wake.set()
                else:
                    self._writing = False
            self._cond.notify_all()

    @staticmethod
    def _result(item: _Pending) -> list[ChainedEntry]:
        if item.error is not None:
            raise item.error
        return item.entries

    def close(self) -> None:
        self.log.close()
