"""The transaction Bundle under construction: entries, references and ``meta``.

See :mod:`shared.mapping.fhir_out` for the entry/reference scheme. One :class:`Builder` maps one event;
the resource modules (``patient``, ``encounter``, ``results``, ``orders``, ``records``) add its entries.
"""

from __future__ import annotations

import functools
from datetime import UTC

from shared.canonical.identity import IdentityError, encounter_identifier
from shared.canonical.model import (
    ClinicalDateTime,
    ClinicalEvent,
    Coded,
    DataAbsent,
    Encounter,
    EventKind,
    Identifier,
    Sensitivity,
)
from shared.fhir import profiles
from shared.fhir.ids import resource_id, urn
from shared.mapping.fhir_out._build import (
    JSON,
    RULE_COPY,
    RULE_ID,
    RULE_PROFILE,
    RULE_REF,
    Lin,
    identifier_query,
)
from shared.mapping.fhir_out.errors import FhirOutError
from shared.mapping.lineage import LineageEntry
from shared.terminology.valuesets import load_value_set

#: Events that state the patient record itself: the Patient entry is a conditional *update* (PUT
#: ``Patient?identifier=...``: create if absent, replace if present). Every other event carries the
#: patient as context: conditional *create* (POST + ``ifNoneExist``), which never overwrites a record.
PATIENT_UPSERT_KINDS = frozenset(
    {
        EventKind.PATIENT_CREATED,
        EventKind.PATIENT_UPDATED,
        EventKind.PATIENT_MERGE,
        EventKind.ENCOUNTER_UPDATE,
    }
)

#: Events that state the encounter: the Encounter is PUT (by its deterministic id). Other events that
#: name an encounter (a result with a PV1) refer to it by identifier and leave it untouched.
ENCOUNTER_KINDS = frozenset(
    {
        EventKind.ADMISSION,
        EventKind.TRANSFER,
        EventKind.DISCHARGE,
        EventKind.REGISTRATION,
        EventKind.PRE_ADMISSION,
        EventKind.ENCOUNTER_UPDATE,
        EventKind.CANCEL_ADMISSION,
        EventKind.CANCEL_TRANSFER,
        EventKind.CANCEL_DISCHARGE,
    }
)

# Structural codes: fixed FHIR codes chosen by *which canonical field* holds a value (not translations of
# source codes, which happen in shared.terminology before the canonical model).
_CONFIDENTIALITY: dict[Sensitivity, str] = {
    Sensitivity.NORMAL: "U",
    Sensitivity.RESTRICTED: "R",
    Sensitivity.VERY_RESTRICTED: "V",
}
_CONFIDENTIALITY_VS = "pds-confidentiality"
_EVENT_KEY_SYSTEM = "urn:tie:event-key"


@functools.cache
def _security_coding(sensitivity: Sensitivity) -> JSON:
    """v3-Confidentiality coding; the display comes from the PDS confidentiality value set."""
    code = _CONFIDENTIALITY[sensitivity]
    coding: JSON = {"system": profiles.CONFIDENTIALITY_SYSTEM, "code": code}
    display = load_value_set(_CONFIDENTIALITY_VS).display(profiles.CONFIDENTIALITY_SYSTEM, code)
    if display is not None:
        coding["display"] = display
    return coding


@functools.lru_cache(maxsize=16384)
def reference_url(resource_type: str, system: str, value: str) -> str:
    """``urn:uuid:<id>`` of a conditionally created (reference data) entry: the same practitioners,
    organisations and wards recur message after message, so their uuid5 is computed once."""
    return urn(resource_id(resource_type, system, value))


@functools.lru_cache(maxsize=16384)
def ref_query(system: str, value: str) -> str:
    return identifier_query(system, value)


def clear_caches() -> None:
    """Forget the memoised ids (tests: a fresh process must give the same bundle)."""
    reference_url.cache_clear()
    ref_query.cache_clear()


def utc_token(t: ClinicalDateTime | None) -> str:
    return "" if t is None else t.value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def code_token(c: Coded) -> str:
    """``system|code`` of the first coding (or a data-absent / text marker) for child ids."""
    if isinstance(c, DataAbsent):
        src = c.source
        return f"absent:{c.reason.value}:{src.system or ''}|{src.code}" if src else f"absent:{c.reason.value}"
    if c.codings:
        first = c.codings[0]
        return f"{first.system or ''}|{first.code}"
    return f"text:{c.text}"


class Builder:
    """Maps one :class:`ClinicalEvent` into transaction entries (``fullUrl`` -> entry, insertion-ordered)."""

    def __init__(self, event: ClinicalEvent, *, lineage: bool) -> None:
        self.event = event
        self.sink: list[LineageEntry] | None = [] if lineage else None
        self.entries: dict[str, JSON] = {}
        self._security = _security_coding(event.patient.sensitivity)
        self._restricted = event.patient.sensitivity is not Sensitivity.NORMAL
        self.patient_ref: JSON = {}
        self.encounter_ref: JSON | None = None
        self._encounter_ref_source: tuple[str, ...] = ()
        self._positions: dict[str, int] = {}
        self._seen: dict[tuple[str, str, str], str] = {}

    def lin(self, resource_type: str, full_url: str) -> Lin | None:
        return None if self.sink is None else Lin(self.sink, f"{resource_type}.", full_url)

    def meta(
        self, resource_type: str, lin: Lin | None, *, patient: bool = False, reference_data: bool = False
    ) -> JSON:
        """``meta.profile`` (UK Core); ``meta.security`` v3-Confidentiality on the Patient always (as PDS
        does) and on every clinical resource of a restricted (R/V) patient - not on reference data
        (Practitioner, Organization, Location), which is shared by every patient who refers to it."""
        meta: JSON = {"profile": [profiles.UK_CORE_PROFILES[resource_type]]}
        if lin is not None:
            lin.add(None, "meta.profile[0]", RULE_PROFILE)
        if patient or (self._restricted and not reference_data):
            meta["security"] = [dict(self._security)]
            if lin is not None:
                for key in ("system", "code", "display"):
                    lin.add(
                        "patient.sensitivity",
                        f"meta.security[0].{key}",
                        "Sensitivity -> v3-Confidentiality U/R/V (as PDS)",
                    )
        return meta

    def reserve(self, full_url: str) -> None:
        """Hold the next entry position for ``full_url`` (the Patient comes first, before the GP it
        refers to)."""
        self._positions[full_url] = len(self.entries)
        self.entries[full_url] = {}

    def entry(self, full_url: str, resource: JSON, request: JSON, key_source: str | None) -> None:
        n = self._positions.get(full_url, len(self.entries))
        self.entries[full_url] = {"fullUrl": full_url, "resource": resource, "request": request}
        if self.sink is not None:
            base = f"Bundle.entry[{n}]"
            add = self.sink.append
            add(LineageEntry(key_source, f"{base}.fullUrl", RULE_ID, resource=full_url))
            add(
                LineageEntry(
                    None, f"{base}.request.method", "constant: transaction method", resource=full_url
                )
            )
            add(LineageEntry(key_source, f"{base}.request.url", RULE_ID, resource=full_url))
            if "ifNoneExist" in request:
                rule = "derived: conditional create on the business identifier"
                add(LineageEntry(key_source, f"{base}.request.ifNoneExist", rule, resource=full_url))

    def put(self, resource_type: str, rid: str, resource: JSON, lin: Lin | None, key_source: str) -> str:
        """PUT ``<Type>/<id>`` with a deterministic id; referenced as ``<Type>/<id>``."""
        full_url = urn(rid)
        if full_url in self.entries:
            # e.g. two OBX with the same set id and code in one report: writing both to one id would
            # silently drop one result, so the event is refused instead
            raise FhirOutError(f"two {resource_type} resources have the same identity", field=key_source)
        if lin is not None:
            lin.add(key_source, "id", RULE_ID)
        self.entry(full_url, resource, {"method": "PUT", "url": f"{resource_type}/{rid}"}, key_source)
        return full_url

    def create(self, resource_type: str, full_url: str, resource: JSON, query: str, key_source: str) -> None:
        """Conditional create (POST + ifNoneExist); referenced by its ``urn:uuid`` fullUrl."""
        request = {"method": "POST", "url": resource_type, "ifNoneExist": query}
        self.entry(full_url, resource, request, key_source)

    def ref_url(self, resource_type: str, system: str, value: str) -> tuple[str, bool]:
        """(fullUrl, already in the bundle) for a conditionally created entry."""
        seen = self._seen.get((resource_type, system, value))
        if seen is not None:
            return seen, True
        full_url = reference_url(resource_type, system, value)
        self._seen[(resource_type, system, value)] = full_url
        return full_url, False

    def visit(self, enc: Encounter) -> tuple[Identifier, int]:
        try:
            visit = encounter_identifier(enc)
        except IdentityError:
            raise FhirOutError(
                "encounter needs an identifier (visit number)", field="encounter.identifiers"
            ) from None
        return visit, enc.identifiers.index(visit)

    def encounter_context(self) -> None:
        """Decide how other resources refer to the event's encounter (before building them)."""
        enc = self.event.encounter
        if enc is None or not enc.identifiers:
            return
        visit, n = self.visit(enc)
        if self.event.kind in ENCOUNTER_KINDS:
            self.encounter_ref = {
                "reference": f"Encounter/{resource_id('Encounter', visit.system, visit.value)}"
            }
            self._encounter_ref_source = ("encounter",)
        else:
            self.encounter_ref = {
                "type": "Encounter",
                "identifier": {"system": visit.system, "value": visit.value},
            }
            self._encounter_ref_source = (f"encounter.identifiers[{n}]",)

    def encounter_reference(self, lin: Lin | None, dst: str) -> JSON | None:
        """The event's encounter as a reference at ``dst`` (``None`` when the event names none)."""
        if self.encounter_ref is None:
            return None
        if lin is not None:
            if "reference" in self.encounter_ref:
                lin.add("encounter", f"{dst}.reference", RULE_REF)
            else:
                src = self._encounter_ref_source[0]
                lin.add(None, f"{dst}.type", "constant: logical reference to an encounter not in this bundle")
                lin.add(f"{src}.system", f"{dst}.identifier.system")
                lin.add(f"{src}.value", f"{dst}.identifier.value")
        return dict(self.encounter_ref)

    def add_encounter_ref(self, res: JSON, lin: Lin | None, key: str = "encounter") -> None:
        ref = self.encounter_reference(lin, key)
        if ref is not None:
            res[key] = ref

    def add_subject(self, res: JSON, lin: Lin | None, key: str = "subject") -> None:
        res[key] = dict(self.patient_ref)
        if lin is not None:
            lin.add("patient", f"{key}.reference", RULE_REF)

    def bundle_header(self) -> JSON:
        ev = self.event
        if self.sink is not None:
            self.sink.append(LineageEntry(None, "Bundle.type", "constant: transaction"))
            self.sink.append(LineageEntry(None, "Bundle.identifier.system", "constant: event key system"))
            self.sink.append(LineageEntry("key.value", "Bundle.identifier.value", RULE_COPY))
        return {
            "resourceType": "Bundle",
            "identifier": {"system": _EVENT_KEY_SYSTEM, "value": ev.key.value},
            "type": "transaction",
        }
