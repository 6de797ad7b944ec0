"""What the engine keeps of a PDS answer.

A :class:`PdsPatient` is built from the PDS FHIR ``Patient`` JSON by :func:`parse_patient`, which drops the
location-sensitive fields of a restricted record (``meta.security`` ``R`` / ``V`` / ``REDRRESTRICTED``)
whatever PDS sent: they are never stored, cached, forwarded or logged. ``repr`` shows no demographics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.identifiers.nhs_number import is_valid_nhs_number
from shared.pds.errors import PdsResponseInvalid

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
VERIFICATION_EXTENSION = (
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
)
#: ``meta.security`` codes that mark a restricted (sensitive) patient.
RESTRICTED_CODES = frozenset({"R", "V", "REDRRESTRICTED"})
#: Fields PDS removes for restricted patients, and that this engine never keeps for them.
RESTRICTED_FIELDS = ("address", "telecom", "contact", "generalPractitioner")


@dataclass(frozen=True, slots=True)
class PdsName:
    family: str | None
    given: tuple[str, ...]
    use: str | None


@dataclass(frozen=True, slots=True)
class PdsPatient:
    """A PDS record as the engine keeps it (restricted fields already removed)."""

    nhs_number: str
    version: str | None
    restricted: bool
    #: The number that was asked for when PDS answered with a successor record (superseded number).
    superseded_from: str | None = None
    verification_status: str | None = None
    names: tuple[PdsName, ...] = field(default=(), repr=False)
    gender: str | None = field(default=None, repr=False)
    birth_date: str | None = field(default=None, repr=False)
    postcodes: tuple[str, ...] = field(default=(), repr=False)
    #: Search score (1.0 exact) when the record came from a search.
    score: float | None = None
    #: The FHIR resource, restricted fields removed.
    resource: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def etag(self) -> str | None:
        """The ``If-Match`` value for an update of this version (PDS: ``W/"<versionId>"``)."""
        return f'W/"{self.version}"' if self.version else None


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One search call's answer. ``too_many`` is PDS's ``TOO_MANY_MATCHES`` (no entries then)."""

    patients: tuple[PdsPatient, ...]
    too_many: bool = False
    #: ``true`` when PDS answered but had no example for the query (sandbox warning) or a plain empty set.
    total: int = 0


TraceStatus = Literal["matched", "no-match", "needs-review"]


@dataclass(frozen=True, slots=True)
class TraceQuery:
    """Demographics for a trace. ``repr`` shows which fields are present, never their values."""

    family: str | None = field(default=None, repr=False)
    given: str | None = field(default=None, repr=False)
    birth_date: str | None = field(default=None, repr=False)  # YYYY-MM-DD
    gender: str | None = field(default=None, repr=False)
    postcode: str | None = field(default=None, repr=False)

    def traceable(self) -> bool:
        """PDS needs at least family name, birth date and gender-or-given to trace (spec: 'Too few')."""
        return bool(self.family and self.birth_date and (self.gender or self.given))

    def present(self) -> tuple[str, ...]:
        return tuple(
            name for name in ("family", "given", "birth_date", "gender", "postcode") if getattr(self, name)
        )


@dataclass(frozen=True, slots=True)
class TraceOutcome:
    """The result of a multi-step trace. ``tried`` names the steps run (``exact``, ``fuzzy``, ``history``)."""

    status: TraceStatus
    patient: PdsPatient | None
    tried: tuple[str, ...]
    #: Why a human has to look (``too-many-matches``, ``multiple-matches``, ``no-match``, ``untraceable``,
    #: ``pds-unavailable``, ``superseded-conflict``); ``None`` for a match.
    reason: str | None = None
    #: Scores of the candidates when PDS returned several (no identifiers: they go to the review record).
    candidates: tuple[str, ...] = ()


def _security_codes(resource: Mapping[str, Any]) -> set[str]:
    meta = resource.get("meta")
    codes: set[str] = set()
    if isinstance(meta, Mapping):
        for item in meta.get("security") or ():
            if isinstance(item, Mapping) and isinstance(item.get("code"), str):
                codes.add(item["code"])
    return codes


def is_restricted(resource: Mapping[str, Any]) -> bool:
    return bool(_security_codes(resource) & RESTRICTED_CODES)


def redact(resource: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``resource`` without the restricted fields when it is restricted (else a plain copy)."""
    copy = dict(resource)
    if is_restricted(resource):
        for name in RESTRICTED_FIELDS:
            copy.pop(name, None)
    return copy


def _nhs_identifier(resource: Mapping[str, Any]) -> tuple[str | None, str | None]:
    for ident in resource.get("identifier") or ():
        if not isinstance(ident, Mapping) or ident.get("system") != NHS_NUMBER_SYSTEM:
            continue
        status = None
        for ext in ident.get("extension") or ():
            if isinstance(ext, Mapping) and ext.get("url") == VERIFICATION_EXTENSION:
                for coding in (ext.get("valueCodeableConcept") or {}).get("coding") or ():
                    if isinstance(coding, Mapping) and isinstance(coding.get("code"), str):
                        status = coding["code"]
        value = ident.get("value")
        return (value if isinstance(value, str) else None), status
    return None, None


def parse_patient(resource: Any, *, asked_for: str | None = None, score: float | None = None) -> PdsPatient:
    """A :class:`PdsPatient` from a PDS ``Patient`` resource (raises :class:`PdsResponseInvalid`)."""
    if not isinstance(resource, Mapping) or resource.get("resourceType") != "Patient":
        raise PdsResponseInvalid("PDS answer is not a Patient resource")
    kept = redact(resource)
    number, status = _nhs_identifier(kept)
    number = number or (kept.get("id") if isinstance(kept.get("id"), str) else None)
    if not number or not is_valid_nhs_number(number):
        raise PdsResponseInvalid("PDS Patient carries no valid NHS number")
    meta = kept.get("meta")
    version = meta.get("versionId") if isinstance(meta, Mapping) else None
    names = tuple(
        PdsName(
            family=n.get("family") if isinstance(n.get("family"), str) else None,
            given=tuple(g for g in n.get("given") or () if isinstance(g, str)),
            use=n.get("use") if isinstance(n.get("use"), str) else None,
        )
        for n in kept.get("name") or ()
        if isinstance(n, Mapping)
    )
    postcodes = tuple(
        a["postalCode"]
        for a in kept.get("address") or ()
        if isinstance(a, Mapping) and isinstance(a.get("postalCode"), str)
    )
    return PdsPatient(
        nhs_number=number,
        version=str(version) if version is not None else None,
        restricted=is_restricted(resource),
        superseded_from=asked_for if asked_for and asked_for != number else None,
        verification_status=status,
        names=names,
        gender=kept.get("gender") if isinstance(kept.get("gender"), str) else None,
        birth_date=kept.get("birthDate") if isinstance(kept.get("birthDate"), str) else None,
        postcodes=postcodes,
        score=score,
        resource=kept,
    )


def parse_searchset(bundle: Any) -> SearchResult:
    """A :class:`SearchResult` from a ``searchset`` Bundle or a ``TOO_MANY_MATCHES`` OperationOutcome."""
    if isinstance(bundle, Mapping) and bundle.get("resourceType") == "OperationOutcome":
        if any(code == "TOO_MANY_MATCHES" for code in _issue_codes(bundle)):
            return SearchResult((), too_many=True)
        raise PdsResponseInvalid("PDS search answered an OperationOutcome without a known code")
    if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
        raise PdsResponseInvalid("PDS search answer is not a Bundle")
    patients = []
    for entry in bundle.get("entry") or ():
        if not isinstance(entry, Mapping):
            continue
        search = entry.get("search")
        raw_score = search.get("score") if isinstance(search, Mapping) else None
        score = float(raw_score) if isinstance(raw_score, int | float) else None
        patients.append(parse_patient(entry.get("resource"), score=score))
    patients.sort(key=lambda p: -(p.score or 0.0))
    total = bundle.get("total")
    return SearchResult(tuple(patients), total=total if isinstance(total, int) else len(patients))


def _issue_codes(outcome: Mapping[str, Any]) -> list[str]:
    codes = []
    for issue in outcome.get("issue") or ():
        details = issue.get("details") if isinstance(issue, Mapping) else None
        for coding in (details or {}).get("coding") or ():
            if isinstance(coding, Mapping) and isinstance(coding.get("code"), str):
                codes.append(coding["code"])
    return codes


def error_code(body: Any) -> str | None:
    """The Spine error code of an OperationOutcome body (``RESOURCE_NOT_FOUND`` ...), else ``None``."""
    if isinstance(body, Mapping) and body.get("resourceType") == "OperationOutcome":
        codes = _issue_codes(body)
        return codes[0] if codes else None
    return None
