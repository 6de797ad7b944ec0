"""HTTP-level value types of the FHIR API, independent of any web framework.

A trigger adapter builds a :class:`FhirRequest` from whatever its platform hands it, calls
:class:`~shared.fhirapi.service.FhirApi`, and writes the :class:`FhirResponse` back. Everything here is
pure: header parsing (``Prefer``, ``Accept``, ``Content-Type``), body decoding, base-URL derivation and
HTTP dates.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from shared.fhirapi.errors import (
    BadRequest,
    MalformedBody,
    NotAcceptable,
    PayloadTooLarge,
    UnsupportedMediaType,
)

FHIR_JSON = "application/fhir+json"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
#: Request media types accepted for resource bodies (parameters such as ``charset`` / ``fhirVersion`` ok).
BODY_MEDIA_TYPES = frozenset({FHIR_JSON, JSON})
#: ``_format`` values meaning JSON (FHIR R4 http.html#mime-type).
_JSON_FORMATS = frozenset({"json", FHIR_JSON, JSON, "application/json+fhir", "text/json"})
_COMMON_ACCEPT = frozenset({"*/*", FHIR_JSON, "application/fhir+json;charset=utf-8"})
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_XML_FORMATS = frozenset({"xml", "application/fhir+xml", "application/xml", "text/xml", "ttl", "text/turtle"})

ReturnPreference = Literal["minimal", "representation", "OperationOutcome"]
Handling = Literal["strict", "lenient"]


class Headers(Mapping[str, str]):
    """Case-insensitive, read-only request headers (the last value wins for repeated names)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items: dict[str, tuple[str, str]] = {k.lower(): (k, v) for k, v in pairs}

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()][1]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._items

    def __iter__(self) -> Any:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str, default: Any = None) -> Any:  # the Mapping mixin goes through KeyError
        item = self._items.get(key.lower())
        return default if item is None else item[1]


@dataclass(frozen=True, slots=True)
class FhirRequest:
    """One HTTP request to the FHIR API.

    ``url`` is the full request URL (base-URL derivation and the query string); ``query`` the raw query
    string (repeated parameters matter in FHIR search: ``date=ge2020&date=lt2021`` is an AND).
    """

    method: str
    url: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    correlation_id: str = ""
    _params: list[tuple[str, str]] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def query(self) -> str:
        _, _, rest = self.url.partition("?")
        return rest.partition("#")[0]

    def query_params(self) -> list[tuple[str, str]]:
        """The decoded query parameters in order, repeats kept (parsed once; do not mutate)."""
        if self._params is None:
            object.__setattr__(self, "_params", parse_qsl(self.query, keep_blank_values=True))
        assert self._params is not None
        return self._params

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return value.strip() if isinstance(value, str) else None


@dataclass(slots=True)
class FhirResponse:
    """Status, headers and a JSON body (``None``: no body)."""

    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = FHIR_JSON


# ----------------------------------------------------------------------------------------- headers


def media_type(value: str | None) -> str:
    """``application/fhir+json; charset=utf-8`` -> ``application/fhir+json`` (lower case)."""
    return (value or "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True, slots=True)
class Preferences:
    """The ``Prefer`` header (RFC 7240) as FHIR uses it."""

    return_: ReturnPreference = "representation"
    handling: Handling = "lenient"


_DEFAULT_PREFERENCES = Preferences()


def parse_prefer(value: str | None) -> Preferences:
    """``return=minimal|representation|OperationOutcome`` and ``handling=strict|lenient``.

    Unknown preferences and values are ignored (RFC 7240: a server ignores what it does not understand);
    the defaults are ``return=representation`` and ``handling=lenient`` (FHIR R4 search.html#errors).
    """
    if not value:
        return _DEFAULT_PREFERENCES
    returns: ReturnPreference = "representation"
    handling: Handling = "lenient"
    for part in value.split(","):
        token = part.split(";", 1)[0].strip()
        name, _, raw = token.partition("=")
        choice = raw.strip().strip('"')
        name = name.strip().lower()
        if name == "return" and choice in ("minimal", "representation", "OperationOutcome"):
            returns = choice  # type: ignore[assignment]
        elif name == "handling" and choice in ("strict", "lenient"):
            handling = choice  # type: ignore[assignment]
    return Preferences(returns, handling)


def response_media_type(accept: str | None, format_param: str | None) -> str:
    """The media type to answer with, or :class:`NotAcceptable` when the client wants only XML/RDF.

    ``_format`` wins over ``Accept`` (FHIR http.html#mime-type). We produce FHIR JSON; a client that
    accepts only ``application/json`` gets that label on the same bytes.
    """
    if not format_param and (not accept or accept in _COMMON_ACCEPT):
        return FHIR_JSON
    if format_param:
        fmt = format_param.strip().lower()
        if fmt in _JSON_FORMATS:
            return JSON if fmt in (JSON, "text/json") else FHIR_JSON
        if fmt in _XML_FORMATS:
            raise NotAcceptable("only JSON is supported (_format)")
        raise NotAcceptable("unknown _format")
    if not accept or not accept.strip():
        return FHIR_JSON
    offered: list[str] = []
    for item in accept.split(","):
        kind = media_type(item)
        params = item.split(";")[1:]
        if any(p.strip().replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in params):
            continue
        offered.append(kind)
    if any(kind in (FHIR_JSON, "application/json+fhir", "*/*", "application/*") for kind in offered):
        return FHIR_JSON
    if JSON in offered or "text/json" in offered:
        return JSON
    if any(kind.endswith("/*") or kind == "*" for kind in offered):
        return FHIR_JSON
    raise NotAcceptable("only application/fhir+json is produced")


def check_body_media_type(content_type: str | None, *, allow_form: bool = False) -> str:
    """The request body's media type if acceptable, else :class:`UnsupportedMediaType` (415)."""
    kind = media_type(content_type)
    if kind in BODY_MEDIA_TYPES or (allow_form and kind == FORM):
        return kind
    if not kind:
        raise UnsupportedMediaType(f"Content-Type is required ({FHIR_JSON})")
    raise UnsupportedMediaType(f"Content-Type must be {FHIR_JSON} or {JSON}")


def _reject_constant(name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON numbers")


def decode_json_object(body: bytes, *, limit: int) -> dict[str, Any]:
    """The body as a JSON object (413 over ``limit`` bytes; 400 when not UTF-8 JSON or not an object)."""
    if len(body) > limit:
        raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    if not body.strip():
        raise MalformedBody("the request body is empty")
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise MalformedBody("the request body is not UTF-8") from None
    except (ValueError, RecursionError):
        raise MalformedBody("the request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise MalformedBody("the request body must be a JSON object (a FHIR resource)")
    if _SURROGATE_ESCAPE.search(body):
        try:  # a lone surrogate escape (\ud800) decodes to a string that cannot be stored as UTF-8
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedBody("the request body holds an unpaired UTF-16 surrogate escape") from None
    return value


#: An ``If-Match`` / ``Bundle.entry.request.ifMatch`` value: a strong or weak entity tag whose opaque
#: part is a FHIR version id (``W/"3"``, ``"3"``). Anything else is a malformed request (400), not a
#: stale version (412).
_ETAG = re.compile(r'(?:[Ww]/)?"[A-Za-z0-9\-.]{1,64}"')


def is_entity_tag(value: str) -> bool:
    """True when ``value`` is ``W/"<version id>"`` or ``"<version id>"`` (surrounding spaces allowed)."""
    return _ETAG.fullmatch(value.strip()) is not None


def if_match(value: str | None) -> str | None:
    """The ``If-Match`` header, checked: ``None`` when absent, else the value (400 when it is not an
    entity tag; the diagnostics never echo it)."""
    if value is None:
        return None
    if not is_entity_tag(value):
        raise BadRequest('If-Match must be an entity tag such as W/"3"')
    return value


def decode_form(body: bytes, *, limit: int) -> list[tuple[str, str]]:
    """``application/x-www-form-urlencoded`` search parameters (``POST [type]/_search``)."""
    if len(body) > limit:
        raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the form body is not valid UTF-8 form data") from None


# ------------------------------------------------------------------------------------------ gateway


def gateway_outcome(status: int, message: str) -> FhirResponse:
    """The OperationOutcome for a request refused by the API gateway check (:mod:`shared.gateway`):
    401 ``login`` (no credential) or 403 ``forbidden``; ``message`` is fixed text, nothing is echoed."""
    issue = {"severity": "error", "code": "login" if status == 401 else "forbidden", "diagnostics": message}
    return FhirResponse(status, {"resourceType": "OperationOutcome", "issue": [issue]})


# --------------------------------------------------------------------------------------------- URLs


def base_url(request_url: str, configured: str | None = None) -> str:
    """The FHIR base (``https://host/api/fhir``): ``configured`` when set, else the request URL up to and
    including its ``fhir`` path segment."""
    if configured:
        return configured.rstrip("/")
    parts = urlsplit(request_url)
    segments = parts.path.split("/")
    for index, segment in enumerate(segments):
        if segment.lower() == "fhir":
            path = "/".join(segments[: index + 1])
            return f"{parts.scheme}://{parts.netloc}{path}"
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


# -------------------------------------------------------------------------------------------- dates


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(moment: datetime) -> str:
    """RFC 9110 IMF-fixdate (``Last-Modified``): ``Wed, 01 May 2024 09:30:00 GMT``."""
    utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return (
        f"{_DAYS[utc.weekday()]}, {utc.day:02d} {_MONTHS[utc.month - 1]} {utc.year:04d} "
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d} GMT"
    )


def parse_http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
