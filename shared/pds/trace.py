"""Identity resolution against PDS: retrieve by NHS number, else trace by demographics.

:class:`IdentityResolver` answers a :class:`TraceOutcome` for a patient whose NHS number is absent or not
verified. A present number is retrieved (a superseded number resolves to the current one). Without one,
the demographics are traced in steps, stopping at the first step with a single match:

1. ``exact`` - family, given, birth date, gender, postcode with ``_exact-match=true`` (score 1.0 only);
2. ``fuzzy`` - family, given, birth date, gender with ``_fuzzy-match=true`` (homophones, transpositions);
3. ``history`` - family, given and postcode wildcarded (``Ann*``, ``LS*``) with ``_history=true``.

Each step asks for ``_max-results=2``: a second entry is enough to know the match is not unique. Several
matches or ``TOO_MANY_MATCHES`` stop the trace as ``needs-review`` - a candidate is never picked for a
human - and no match after every step is reported with the steps tried. PDS being unavailable is raised
(transient: the caller retries, then sends the event to review), never treated as "no match".
"""

from __future__ import annotations

from shared.pds.cache import PdsCache
from shared.pds.errors import PatientNotFound
from shared.pds.model import PdsPatient, SearchResult, TraceOutcome, TraceQuery
from shared.pds.ports import PdsClient

STEPS = ("exact", "fuzzy", "history")
_STEP_FLAG = {
    "exact": ("_exact-match", "true"),
    "fuzzy": ("_fuzzy-match", "true"),
    "history": ("_history", "true"),
}


def _params(query: TraceQuery, step: str) -> list[tuple[str, str]]:
    given, postcode, family = query.given, query.postcode, query.family or ""
    if step == "history":
        given = f"{given[:3]}*" if given else None
        postcode = f"{postcode.replace(' ', '')[:2]}*" if postcode else None
    params = [("family", family)]
    if given:
        params.append(("given", given))
    if query.gender:
        params.append(("gender", query.gender))
    params.append(("birthdate", f"eq{query.birth_date}"))
    if postcode and step != "fuzzy":
        params.append(("address-postalcode", postcode))
    params.append(_STEP_FLAG[step])
    params.append(("_max-results", "2"))
    return params


class IdentityResolver:
    def __init__(self, client: PdsClient, cache: PdsCache | None = None) -> None:
        self._client = client
        self._cache = cache

    def retrieve(self, nhs_number: str, *, correlation_id: str) -> PdsPatient:
        """``GET /Patient/{id}`` through the cache (restricted records are never cached)."""
        if self._cache is not None:
            hit = self._cache.get(nhs_number)
            if hit is not None:
                return hit
        patient = self._client.retrieve(nhs_number, correlation_id=correlation_id)
        if self._cache is not None:
            self._cache.put(nhs_number, patient)
        return patient

    def invalidate(self, nhs_number: str) -> None:
        if self._cache is not None:
            self._cache.invalidate(nhs_number)

    def resolve(self, nhs_number: str | None, query: TraceQuery, *, correlation_id: str) -> TraceOutcome:
        if nhs_number:
            try:
                patient = self.retrieve(nhs_number, correlation_id=correlation_id)
            except PatientNotFound:
                # A number PDS does not know (or invalidated without successor): trace by demographics.
                pass
            else:
                return TraceOutcome("matched", patient, ("retrieve",))
        return self.trace(query, correlation_id=correlation_id, tried=("retrieve",) if nhs_number else ())

    def trace(self, query: TraceQuery, *, correlation_id: str, tried: tuple[str, ...] = ()) -> TraceOutcome:
        if not query.traceable():
            return TraceOutcome("needs-review", None, tried, reason="untraceable")
        for step in STEPS:
            tried = (*tried, step)
            result: SearchResult = self._client.search(_params(query, step), correlation_id=correlation_id)
            if result.too_many:
                return TraceOutcome("needs-review", None, tried, reason="too-many-matches")
            if len(result.patients) > 1:
                scores = tuple(f"{p.score:.4f}" if p.score is not None else "?" for p in result.patients)
                return TraceOutcome("needs-review", None, tried, reason="multiple-matches", candidates=scores)
            if len(result.patients) == 1:
                return TraceOutcome("matched", result.patients[0], tried)
        return TraceOutcome("no-match", None, tried, reason="no-match")
