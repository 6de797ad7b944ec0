"""An IG-safe cache of PDS retrievals: in memory only, keyed by NHS number, short TTL, never restricted.

Policy (README "PDS"): entries live ``ttl`` seconds (0 disables the cache); a restricted record is never
stored; :meth:`invalidate` drops a number when a demographic update for it passes through the engine; the
cache is per process and never written to disk, the bus or a log.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from shared.pds.model import PdsPatient


class PdsCache:
    def __init__(
        self, ttl_seconds: float, *, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, PdsPatient]] = OrderedDict()

    def get(self, nhs_number: str) -> PdsPatient | None:
        if self._ttl <= 0:
            return None
        with self._lock:
            hit = self._entries.get(nhs_number)
            if hit is None:
                return None
            expires, patient = hit
            if self._clock() >= expires:
                del self._entries[nhs_number]
                return None
            return patient

    def put(self, asked_for: str, patient: PdsPatient) -> bool:
        """Cache ``patient`` under the number asked for (and its current number). ``False``: not cached."""
        if self._ttl <= 0 or patient.restricted:
            return False
        expires = self._clock() + self._ttl
        with self._lock:
            for key in {asked_for, patient.nhs_number}:
                self._entries[key] = (expires, patient)
                self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return True

    def invalidate(self, nhs_number: str) -> None:
        with self._lock:
            stale = [k for k, (_, p) in self._entries.items() if nhs_number in (k, p.nhs_number)]
            for key in stale:
                del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
