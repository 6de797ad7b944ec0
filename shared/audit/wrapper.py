"""The read side shared by the append wrappers (:mod:`~shared.audit.background`,
:mod:`~shared.audit.group_commit`): reads go to the wrapped log once :meth:`ReadThroughLog._settle` says
what was appended before them is written."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from shared.audit.ports import AuditLog, ChainedEntry, Checkpoint

__all__ = ["ReadThroughLog"]


class ReadThroughLog:
    """Base for a wrapper that changes how ``append`` writes to ``log``; ``entries``/``search``/
    ``checkpoints`` read ``log`` after :meth:`_settle` (default: nothing to wait for)."""

    log: AuditLog

    def _settle(self) -> None:
        """Called before every read: wait until earlier appends are in ``log``."""

    def entries(self, *, after: int = 0) -> Iterator[ChainedEntry]:
        self._settle()
        return self.log.entries(after=after)

    def search(
        self,
        *,
        patient: str | None = None,
        agent: str | None = None,
        entity: str | None = None,
        correlation_id: str | None = None,
        record_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[ChainedEntry]:
        self._settle()
        return self.log.search(
            patient=patient,
            agent=agent,
            entity=entity,
            correlation_id=correlation_id,
            record_id=record_id,
            since=since,
            until=until,
            limit=limit,
        )

    def checkpoints(self) -> list[Checkpoint]:
        self._settle()
        return self.log.checkpoints()
