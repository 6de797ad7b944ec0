"""The FHIR R4 REST API core: one method per interaction, :class:`FhirRequest` in, :class:`FhirResponse` out.

No web framework here: ``functions/fhir.py`` builds the request and write the response back. Semantics
(FHIR R4 http.html), in the order a request is checked:

1. **Gateway** - with ``require_gateway_header`` a request without the header API Management injects is
   refused (403 ``forbidden``).
2. **Format** - we answer ``application/fhir+json`` (``application/json`` when the client accepts only
   that); ``_format``/``Accept`` asking only for XML/Turtle -> 406. Bodies must be ``application/fhir+json``
   or ``application/json`` (415 otherwise; ``POST _search`` also takes a form), at most ``max_body_bytes``
   (413), UTF-8 JSON objects (400 ``structure``).
3. **URL vs body** - ``resourceType`` must be the URL's type and an update's body must carry the URL's id
   (400, ``expression`` = ``resourceType`` / ``<Type>.id``).
4. **Validation** of every written resource (:func:`shared.fhir.validation.validate_resource`: fhir.resources
   R4B structure + value-set, NHS-number, UK Core and invariant checks) -> 422 listing every issue with its
   element path in ``expression``. ``meta.profile`` naming the UK Core profile is *not* required of
   clients (``require_profile=False``): a standard FHIR client, or a resource from PDS, does not claim it;
   everything the UK Core profile would check that we can check is checked regardless. The engine's own
   outbound resources do carry it (the mapper adds it).
5. **Clinical event dry run** (:class:`~shared.fhirapi.clinical_events.ClinicalEvents`) -> 422 when the
   write could not become a canonical event. Then the repository call - on the embedded store the
   committed version's events are recorded in its outbox inside the same transaction - then the events
   are published (see :mod:`shared.fhirapi.clinical_events`).

Status codes: read/vread/search/history 200 (304 for a conditional read that matched); create 201
(conditional create that found a match: 200, nothing written); update 200, or 201 when it created;
delete 204 (also for an absent resource); errors as the repository says (404 unknown id, 410 deleted,
409 conflict, 412 ``If-Match`` naming another version or several conditional matches, 400 bad search or
an ``If-Match`` / ``ifMatch`` that is not an entity tag ``W/"<versionId>"``). Every error body
is an OperationOutcome with an issue code and a diagnostics text without patient data.

Headers: ``ETag: W/"<versionId>"``, ``Last-Modified`` (HTTP date) and ``Location``
(``[base]/<Type>/<id>/_history/<versionId>``) on writes; ``ETag``/``Last-Modified`` on reads.
``Prefer: return=minimal`` (no body), ``representation`` (the resource; default) or ``OperationOutcome``
(an outcome, with any validation warnings); ``Prefer: handling=strict`` makes unknown search/history
parameters a 400, ``lenient`` (the default) ignores them and lists their names in an ``outcome`` entry.
Searches page with ``_count`` (default 20, max 500) and ``_offset``; the Bundle has ``self``, ``first``,
``previous``, ``next`` and (when the total is known) ``last`` links.
"""

from __future__ import annotations

from shared.fhirapi._bundles import BundleInteractions
from shared.fhirapi._core import DEFAULT_MAX_BUNDLE_ENTRIES, MAX_OFFSET, FhirApiConfig, error_response
from shared.fhirapi._reads import ReadInteractions


class FhirApi(ReadInteractions, BundleInteractions):
    """The FHIR API over a :class:`FhirRepository`; publishes clinical events on ``bus``, journals and
    parks unpublished events through ``records`` (journal table, outbox)."""


__all__ = ["DEFAULT_MAX_BUNDLE_ENTRIES", "MAX_OFFSET", "FhirApi", "FhirApiConfig", "error_response"]
