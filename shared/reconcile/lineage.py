"""Name the source field of a content mismatch: lineage recorded for a sample of FHIR write-backs.

:class:`LineageSampler` wraps the FHIR write-back downstream. For a deterministic share of events
(``TIE_RECONCILE_LINEAGE_PERCENT``, by event key) it maps the event once more with lineage
(:func:`shared.mapping.fhir_out.to_entries`) and hands, for the duration of ``apply``, each entry's
top-level elements and the canonical fields they came from to :class:`~shared.reconcile.fhir.SentRecorder`
(a context variable: same call stack, no shared state), which stores them with the sent record. A
mismatch on such a resource then names ``status (from encounter.status)``. Field names only.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Mapping
from typing import Final

from shared.backbone.writeback import Downstream, DownstreamResponse
from shared.canonical.model import ClinicalEvent
from shared.mapping.fhir_out import to_entries
from shared.mapping.fhir_out.errors import FhirOutError
from shared.reconcile.fhir import sampled

#: fullUrl -> top-level element -> canonical source fields, while a sampled event is being applied.
SOURCES: Final[contextvars.ContextVar[Mapping[str, Mapping[str, list[str]]] | None]] = contextvars.ContextVar(
    "tie_reconcile_sources", default=None
)
_INDEX = re.compile(r"\[\d+\]")


def element_sources(event: ClinicalEvent) -> dict[str, dict[str, list[str]]]:
    """Per Bundle entry (fullUrl): top-level element -> the canonical fields it was mapped from (indexes
    dropped: ``encounter.identifiers.value``)."""
    out: dict[str, dict[str, set[str]]] = {}
    for entry in to_entries(event, lineage=True).lineage:
        if entry.source is None or entry.resource is None or "." not in entry.target:
            continue
        element = re.split(r"[.\[]", entry.target.split(".", 1)[1], maxsplit=1)[0]
        out.setdefault(entry.resource, {}).setdefault(element, set()).add(_INDEX.sub("", entry.source))
    return {url: {k: sorted(v) for k, v in elements.items()} for url, elements in out.items()}


class LineageSampler:
    """A :class:`~shared.backbone.writeback.Downstream` that records lineage for a sample (see module)."""

    def __init__(self, inner: Downstream, *, percent: float) -> None:
        self.inner = inner
        self.name = inner.name
        self._percent = percent

    def skip_reason(self, event: ClinicalEvent) -> str | None:
        return self.inner.skip_reason(event)

    def apply(self, event: ClinicalEvent) -> DownstreamResponse:
        if self._percent <= 0 or not sampled(event.key.value, "lineage", self._percent):
            return self.inner.apply(event)
        try:
            sources = element_sources(event)
        except FhirOutError:
            return self.inner.apply(event)  # it fails there too, classified by the downstream
        token = SOURCES.set(sources)
        try:
            return self.inner.apply(event)
        finally:
            SOURCES.reset(token)

    def close(self) -> None:
        self.inner.close()
