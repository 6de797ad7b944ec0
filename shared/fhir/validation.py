"""FHIR R4 (UK Core) validation of plain-dict resources and transaction Bundles.

Two layers, both reporting value-free :class:`ValidationIssue` objects: structure with the
``fhir.resources`` R4B models, and the engine's own bindings, UK Core expectations, NHS numbers,
invariants and bundle references. Why R4B, what each layer checks, and its cost: ``docs/fhir-validation.md``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from shared.errors import PermanentError
from shared.fhir import profiles
from shared.identifiers.nhs_number import is_valid_nhs_number
from shared.terminology.valuesets import load_value_set

__all__ = [
    "FhirValidationError",
    "IssueCode",
    "Severity",
    "ValidationIssue",
    "check_bundle",
    "check_resource",
    "errors_only",
    "to_operation_outcome",
    "validate_bundle",
    "validate_resource",
]

Severity = Literal["fatal", "error", "warning", "information"]
#: FHIR IssueType codes used here.
IssueCode = Literal[
    "invalid", "structure", "required", "value", "invariant", "code-invalid", "not-found", "duplicate"
]


@dataclass(frozen=True, slots=True)
class ValidationIssue:
    severity: Severity
    code: IssueCode
    #: FHIR element path, 0-based indexes (``Bundle.entry[1].resource.subject``).
    path: str
    #: What is wrong - never a value from the resource.
    message: str


class FhirValidationError(PermanentError):
    """A resource or Bundle failed validation; ``issues`` holds every issue (errors and warnings).

    The text names the number of errors and the first error's path: element paths, never values."""

    code = "fhir-validation"

    def __init__(self, issues: Iterable[ValidationIssue]) -> None:
        self.issues = tuple(issues)
        errors = errors_only(self.issues)
        first = errors[0] if errors else (self.issues[0] if self.issues else None)
        where = f"; first at {first.path}: {first.message}" if first else ""
        super().__init__(f"FHIR validation failed with {len(errors)} error(s){where}")


def errors_only(issues: Iterable[ValidationIssue]) -> list[ValidationIssue]:
    return [i for i in issues if i.severity in ("error", "fatal")]


def to_operation_outcome(issues: Iterable[ValidationIssue]) -> dict[str, Any]:
    """An OperationOutcome for ``issues`` (``expression`` = the element path)."""
    out = [
        {"severity": i.severity, "code": i.code, "diagnostics": i.message, "expression": [i.path]}
        for i in issues
    ]
    if not out:
        out = [{"severity": "information", "code": "informational", "diagnostics": "no issues"}]
    return {"resourceType": "OperationOutcome", "issue": out}


# ------------------------------------------------------------------------------------- structure
@functools.cache
def _model_class(resource_type: str) -> Any:
    from fhir.resources.R4B import get_fhir_model_class

    try:
        return get_fhir_model_class(resource_type)
    except ValueError:
        return None


_TYPE_CODES: Mapping[str, IssueCode] = {
    "missing": "required",
    "model_field_validation.missing": "required",
    "extra_forbidden": "structure",
    "list_type": "structure",
    "dict_type": "structure",
    "model_type": "structure",
    "model_attributes_type": "structure",
    "model_validation_format": "structure",
    "fhir-validation-wrong-resource-type": "structure",
}
#: pydantic error types whose message is a fixed template (no input echoed).
_SAFE_MESSAGE_TYPES = frozenset(
    {
        "missing",
        "model_field_validation.missing",
        "extra_forbidden",
        "list_type",
        "dict_type",
        "model_type",
        "model_attributes_type",
        "string_type",
        "int_type",
        "int_parsing",
        "bool_type",
        "bool_parsing",
        "decimal_parsing",
        "decimal_type",
        "float_parsing",
        "string_pattern_mismatch",
        "date_from_datetime_parsing",
        "date_parsing",
        "datetime_parsing",
        "datetime_from_date_parsing",
        "literal_error",
        "enum",
        "greater_than_equal",
        "less_than_equal",
    }
)
#: value_error texts from fhir_core that are fixed sentences (anything else is reported generically).
_SAFE_VALUE_ERROR = re.compile(
    r"Value error, (?:\w+ value string does not match spec regex\.|[\w ]*must be timezone aware[\w ]*\.|"
    r"Any of one field value is expected from this list \[[\w', ]*\], but got multiple!|"
    r"Expect any of field value from this list \[[\w', ]*\]\.|\w+ value does not parse to datetime\.)"
)


def _loc_path(prefix: str, loc: tuple[int | str, ...]) -> str:
    parts = [prefix]
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            name = item[:-5] if item.endswith("__ext") else item
            if name in ("root", "__root__"):
                continue
            parts.append(f".{name}")
    return "".join(parts)


def _pydantic_message(err: Mapping[str, Any]) -> str:
    etype = str(err.get("type", ""))
    msg = str(err.get("msg", ""))
    if etype in _SAFE_MESSAGE_TYPES:
        return msg.replace("\n", " ")
    if etype == "value_error" and _SAFE_VALUE_ERROR.fullmatch(msg):
        return msg[len("Value error, ") :]
    return f"invalid value ({etype or 'error'})"


def _structural(resource: Mapping[str, Any], path: str) -> list[ValidationIssue]:
    from pydantic import ValidationError

    rtype = resource.get("resourceType")
    model = _model_class(rtype) if isinstance(rtype, str) and rtype.isalpha() else None
    if model is None:
        return [ValidationIssue("error", "structure", f"{path}.resourceType", "unknown resource type")]
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        return [
            ValidationIssue(
                "error",
                _TYPE_CODES.get(str(err.get("type", "")), "value"),
                _loc_path(path, tuple(err.get("loc", ()))),
                _pydantic_message(err),
            )
            for err in exc.errors(include_input=False, include_url=False)
        ]
    except (TypeError, ValueError, KeyError):
        # fhir_core raises KeyError for a nested resource with an unknown resourceType (contained, Bundle
        # entries): the content is not FHIR, not a defect of ours.
        return [ValidationIssue("error", "structure", path, "resource could not be read as FHIR")]
    return []


# ---------------------------------------------------------------------------------- value sets
@functools.cache
def _codes(value_set_id: str) -> Mapping[str, frozenset[str]]:
    vs = load_value_set(value_set_id)
    return {system: frozenset(codes) for system, codes in vs.concepts.items()}


def _code_in(value_set_id: str, code: str) -> bool:
    """Membership of a bare ``code`` (for ``code``-typed elements bound to a one-system value set)."""
    return any(code in codes for codes in _codes(value_set_id).values())


def _coding_in(value_set_id: str, system: str | None, code: str | None) -> bool:
    return system is not None and code is not None and code in _codes(value_set_id).get(system, frozenset())


_NHS_VERIFICATION_VS: Final = "nhs-number-verification-status"
_DAR_VS: Final = "data-absent-reason"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_NHS_DIGITS = re.compile(r"\d{10}")


# ------------------------------------------------------------------------------------- the walk
class _Walk:
    """One pass over a resource: ele-1, strings, identifiers, extensions; collects references."""

    __slots__ = ("issues", "refs")

    def __init__(self, issues: list[ValidationIssue]) -> None:
        self.issues = issues
        self.refs: list[tuple[str, str]] = []

    def err(self, code: IssueCode, path: str, message: str, severity: Severity = "error") -> None:
        self.issues.append(ValidationIssue(severity, code, path, message))

    def node(self, value: object, path: str, key: str) -> None:
        if isinstance(value, dict):
            if not value:
                self.err("structure", path, "element has no value and no children (ele-1)")
                return
            if key in ("identifier", "masterIdentifier"):
                self.identifier(value, path)
            elif key == "extension":
                self.extension(value, path)
            for k, v in value.items():
                if isinstance(v, str):  # leaves inline: a path is only built for an issue
                    if k == "reference":
                        self.refs.append((f"{path}.reference", v))
                    if (not v or v.isspace() or _CONTROL.search(v)) and k != "div":
                        self.string(v, f"{path}.{k}")
                elif isinstance(v, dict | list):
                    self.node(v, f"{path}.{k}", k)
        elif isinstance(value, list):
            if not value:
                self.err("structure", path, "array is empty (ele-1)")
                return
            for i, item in enumerate(value):
                if isinstance(item, str):
                    if not item or item.isspace() or _CONTROL.search(item):
                        self.string(item, f"{path}[{i}]")
                elif isinstance(item, dict | list):
                    self.node(item, f"{path}[{i}]", key)
        elif isinstance(value, str) and (not value or value.isspace() or _CONTROL.search(value)):
            self.string(value, path)

    def string(self, value: str, path: str) -> None:
        if not value or value.isspace():
            self.err("value", path, "string is empty")
        else:
            self.err("value", path, "string contains control characters")

    def identifier(self, ident: Mapping[str, Any], path: str) -> None:
        system, value = ident.get("system"), ident.get("value")
        if not system:
            self.err("required", f"{path}.system", "identifier has no system")
        if not value:
            self.err("required", f"{path}.value", "identifier has no value")
        if system == profiles.NHS_NUMBER_SYSTEM and isinstance(value, str) and value:
            if not _NHS_DIGITS.fullmatch(value):
                self.err("value", f"{path}.value", "NHS number must be ten digits")
            elif not is_valid_nhs_number(value):
                self.err("value", f"{path}.value", "NHS number fails the Modulus 11 check")

    def extension(self, ext: Mapping[str, Any], path: str) -> None:
        url = ext.get("url")
        if url == profiles.EXT_DATA_ABSENT_REASON:
            code = ext.get("valueCode")
            if not isinstance(code, str) or not _code_in(_DAR_VS, code):
                self.err("code-invalid", f"{path}.valueCode", "not a data-absent-reason code")
        elif url == profiles.EXT_NHS_NUMBER_VERIFICATION:
            codings = (ext.get("valueCodeableConcept") or {}).get("coding") or []
            ok = any(
                isinstance(c, dict)
                and c.get("system") in profiles.NHS_NUMBER_VERIFICATION_SYSTEMS
                and _code_in(_NHS_VERIFICATION_VS, str(c.get("code")))
                for c in codings
            )
            if not ok:
                self.err(
                    "code-invalid",
                    f"{path}.valueCodeableConcept",
                    "not an NHS number verification status (UK Core codes 01-08)",
                )


# --------------------------------------------------------------------------- per-resource rules
Rule = Callable[[Mapping[str, Any], str, "_Walk"], None]


def _require(res: Mapping[str, Any], path: str, w: _Walk, *keys: str) -> None:
    for key in keys:
        if key not in res:
            w.err("required", f"{path}.{key}", f"{key} is required")


def _bound_code(res: Mapping[str, Any], path: str, w: _Walk, key: str, value_set_id: str) -> None:
    value = res.get(key)
    if value is None:
        return
    if not isinstance(value, str) or not _code_in(value_set_id, value):
        w.err("code-invalid", f"{path}.{key}", f"code is not in the required value set {value_set_id}")


def _bound_concept(res: Mapping[str, Any], path: str, w: _Walk, key: str, value_set_id: str) -> None:
    """A CodeableConcept with a required binding: a coding from the value set must be present."""
    cc = res.get(key)
    if not isinstance(cc, dict):
        return
    codings = cc.get("coding") or []
    if not any(
        isinstance(c, dict) and _coding_in(value_set_id, c.get("system"), c.get("code")) for c in codings
    ):
        w.err("code-invalid", f"{path}.{key}", f"no coding from the required value set {value_set_id}")


def _concept_code(res: Mapping[str, Any], key: str) -> str | None:
    cc = res.get(key)
    if isinstance(cc, dict):
        for c in cc.get("coding") or []:
            if isinstance(c, dict) and isinstance(c.get("code"), str):
                return str(c["code"])
    return None


def _dedupe(issues: list[ValidationIssue]) -> list[ValidationIssue]:
    """Drop repeats of (code, path): both layers report some things (a missing required status)."""
    seen: set[tuple[str, str]] = set()
    out: list[ValidationIssue] = []
    for issue in issues:
        key = (issue.code, issue.path)
        if key not in seen:
            seen.add(key)
            out.append(issue)
    return out


def _patient(res: Mapping[str, Any], path: str, w: _Walk) -> None:
    _bound_code(res, path, w, "gender", "administrative-gender")


def _encounter(res: Mapping[str, Any], path: str, w: _Walk) -> None:
    _require(res, path, w, "status", "class", "subject")
    _bound_code(res, path, w, "status", "encounter-status")
    cls = res.get("class")
    if (
        isinstance(cls, dict)
        and "code" in cls
        and not _coding_in("encounter-class", cls.get("system"), cls.get("code"))
    ):
        w.err("code-invalid", f"{path}.class", "class is not a v3 ActEncounterCode", "warning")


def _observation(res: Mapping[str, Any], path: str, w: _Walk) -> None:
    _require(res, path, w, "status", "code", "subject")
    _bound_code(res, path, w, "status", "observation-status")
    has_value = any(k.startswith("value") and k[5:6].isupper() for k in res)
    if has_value and "dataAbsentReason" in res:
        w.err("invariant", f"{path}.dataAbsentReason", "dataAbsentReason only when there is no value (obs-6)")
    if "dataAbsentReason" in res:
        _bound_concept(res, path, w, "dataAbsentReason", _DAR_VS)


def _diagnostic_report(res: Mapping[str, Any], path: str, w: _Walk) -> None:
    _require(res, path, w, "status", "code", "subject")
    _bound_code(res, path, w, "status", "diagnostic-report-status")


def _service_request(res: Mapping[str, Any], path: str, w: _Walk) -> None:
    _require(res, path, w, "status", "intent", "subject")
    _bound_code(res, path, w, "status", "request-status")
    _bound_code(res, path, w, "intent", "request-intent")


def _allergy(res: Mapping[str, Any], path: str, w: _Walk) -> None:
    _require(res, path, w, "patient")
    _bound_concept(res, path, w, "clinicalStatus", "allergyintolerance-clinical")
    _bound_concept(res, path, w, "verificationStatus", "allergyintolerance-verification")
    verification = _concept_code(res, "verificationStatus")
    if verification == "entered-in-error" and "clinicalStatus" in res:
        w.err("invariant", f"{path}.clinicalStatus", "no clinicalStatus when entered-in-error (ait-2)")
    if verification != "entered-in-error" and "clinicalStatus" not in res and "verificationStatus" in res:
        w.err("invariant", f"{path}.clinicalStatus", "clinicalStatus is required (ait-1)")


def _condition(res: Mapping[str, Any], path: str, w: _Walk) -> None:
    _require(res, path, w, "subject")
    if _concept_code(res, "verificationStatus") == "entered-in-error" and "clinicalStatus" in res:
        w.err("invariant", f"{path}.clinicalStatus", "no clinicalStatus when entered-in-error (con-5)")


def _requirer(*keys: str) -> Rule:
    def rule(res: Mapping[str, Any], path: str, w: _Walk) -> None:
        _require(res, path, w, *keys)

    return rule


_RULES: Mapping[str, Rule] = {
    "Patient": _patient,
    "Encounter": _encounter,
    "Observation": _observation,
    "DiagnosticReport": _diagnostic_report,
    "ServiceRequest": _service_request,
    "AllergyIntolerance": _allergy,
    "Condition": _condition,
    "MedicationRequest": _requirer("status", "intent", "subject"),
    "MedicationStatement": _requirer("status", "subject"),
    "DocumentReference": _requirer("status", "subject", "content"),
}


def _own_checks(res: Mapping[str, Any], path: str, w: _Walk, require_profile: bool) -> None:
    rtype = res.get("resourceType")
    if not isinstance(rtype, str):
        w.err("required", f"{path}.resourceType", "resourceType is required")
        return
    profile = profiles.profile_for(rtype) if require_profile else None
    if profile is not None:
        meta = res.get("meta")
        declared = meta.get("profile") if isinstance(meta, dict) else None
        if not isinstance(declared, list) or profile not in declared:
            w.err("required", f"{path}.meta.profile", "meta.profile must name the UK Core profile")
    for key, value in res.items():
        if key in ("resourceType", "text"):
            continue
        w.node(value, f"{path}.{key}", key)
    rule = _RULES.get(rtype)
    if rule is not None:
        rule(res, path, w)


# ------------------------------------------------------------------------------------ public API
def validate_resource(
    resource: Mapping[str, Any], *, structural: bool = True, require_profile: bool = True
) -> list[ValidationIssue]:
    """Every issue found in one resource (a Bundle is passed to :func:`validate_bundle`).

    References are not resolved (a lone resource has nothing to resolve them against) except
    ``#id`` references to its contained resources. ``require_profile=False`` accepts resources that do
    not declare the UK Core profile in ``meta.profile`` (PDS, for one, does not)."""
    if not isinstance(resource, Mapping):
        return [ValidationIssue("fatal", "structure", "", "a resource must be a JSON object")]
    rtype = resource.get("resourceType")
    if rtype == "Bundle":
        return validate_bundle(resource, structural=structural, require_profile=require_profile)
    path = rtype if isinstance(rtype, str) and rtype.isalpha() else "Resource"
    issues: list[ValidationIssue] = []
    if structural:
        issues.extend(_structural(resource, path))
    w = _Walk(issues)
    _own_checks(resource, path, w, require_profile)
    _contained_refs(resource, w.refs, w)
    return _dedupe(issues)


def _contained_refs(resource: Mapping[str, Any], refs: list[tuple[str, str]], w: _Walk) -> None:
    contained = {c.get("id") for c in resource.get("contained") or () if isinstance(c, dict)}
    for path, ref in refs:
        if ref.startswith("#") and ref[1:] not in contained:
            w.err("not-found", path, "reference to a contained resource that is not there")


_CONDITIONAL = re.compile(r"[A-Z][A-Za-z]+\?")
_RELATIVE = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?")


def validate_bundle(
    bundle: Mapping[str, Any],
    *,
    structural: bool = True,
    external_references: bool = False,
    require_profile: bool = True,
) -> list[ValidationIssue]:
    """Every issue in a Bundle and its entries (paths ``Bundle.entry[i].resource...``).

    In a transaction/batch, ``Type/id`` references must name an entry unless ``external_references``
    (then they may point at resources already on the server); in other bundle types they may always."""
    if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
        return [ValidationIssue("fatal", "structure", "Bundle", "not a Bundle")]
    issues: list[ValidationIssue] = []
    if structural:
        issues.extend(_structural(bundle, "Bundle"))
    w = _Walk(issues)
    btype = bundle.get("type")
    if not btype:
        w.err("required", "Bundle.type", "type is required")
    for key in ("identifier", "meta"):
        if key in bundle:
            w.node(bundle[key], f"Bundle.{key}", key)
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        w.err("structure", "Bundle.entry", "entry must be an array")
        return issues
    transaction = btype in ("transaction", "batch")
    full_urls: dict[str, int] = {}
    by_type_id: set[tuple[str, str]] = set()
    resource_refs: list[tuple[int, Mapping[str, Any], list[tuple[str, str]]]] = []
    for i, entry in enumerate(entries):
        epath = f"Bundle.entry[{i}]"
        if not isinstance(entry, dict):
            w.err("structure", epath, "entry must be an object")
            continue
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str):
            if full_url in full_urls:
                w.err("duplicate", f"{epath}.fullUrl", "fullUrl is used by another entry")
            full_urls[full_url] = i
        resource = entry.get("resource")
        request = entry.get("request")
        if transaction:
            _check_request(request, resource, epath, w, by_type_id)
        if isinstance(resource, dict):
            rtype, rid = resource.get("resourceType"), resource.get("id")
            if isinstance(rtype, str) and isinstance(rid, str):
                by_type_id.add((rtype, rid))
            if isinstance(full_url, str):
                m = _RELATIVE.search(full_url)
                if m and full_url.endswith(m.group(0)):
                    by_type_id.add((m.group(1), m.group(2)))
            rw = _Walk(issues)
            _own_checks(resource, f"{epath}.resource", rw, require_profile)
            resource_refs.append((i, resource, rw.refs))
        elif resource is not None:
            w.err("structure", f"{epath}.resource", "resource must be an object")
        elif transaction and isinstance(request, dict) and request.get("method") in ("POST", "PUT"):
            w.err("required", f"{epath}.resource", "POST/PUT entries need a resource")
    # Outside transactions/batches (documents, messages, collections, search results) a Type/id
    # reference may name a resource on the server; urn:uuid and #id references must still resolve.
    external = external_references or not transaction
    for _, resource, refs in resource_refs:
        _resolve(resource, refs, full_urls, by_type_id, w, external_references=external)
    return _dedupe(issues)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"})


def _check_request(
    request: object, resource: object, epath: str, w: _Walk, by_type_id: set[tuple[str, str]]
) -> None:
    if not isinstance(request, dict):
        w.err("required", f"{epath}.request", "transaction entries need a request")
        return
    method, url = request.get("method"), request.get("url")
    if method not in _METHODS:
        w.err("code-invalid", f"{epath}.request.method", "not an HTTP verb FHIR allows")
    if not isinstance(url, str) or not url:
        w.err("required", f"{epath}.request.url", "request.url is required")
        return
    if not isinstance(resource, dict):
        return
    rtype = resource.get("resourceType")
    if method == "POST" and url.split("?", 1)[0] != rtype and "$" not in url:  # "$": an operation
        w.err("invariant", f"{epath}.request.url", "POST url must be the resource type")
    elif method == "PUT":
        target = url.split("?", 1)[0]
        if "?" in url:
            if target != rtype:
                w.err("invariant", f"{epath}.request.url", "conditional PUT url must be the resource type")
        else:
            m = _RELATIVE.fullmatch(url)
            if m is None or m.group(1) != rtype:
                w.err("invariant", f"{epath}.request.url", "PUT url must be <resource type>/<id>")
            else:
                if resource.get("id") not in (None, m.group(2)):
                    w.err("invariant", f"{epath}.resource.id", "resource id differs from the PUT url id")
                by_type_id.add((m.group(1), m.group(2)))


def _resolve(
    resource: Mapping[str, Any],
    refs: list[tuple[str, str]],
    full_urls: Mapping[str, int],
    by_type_id: set[tuple[str, str]],
    w: _Walk,
    *,
    external_references: bool,
) -> None:
    contained: set[object] | None = None
    for path, ref in refs:
        if ref in full_urls:
            continue
        if ref.startswith("#"):
            if contained is None:
                contained = {c.get("id") for c in resource.get("contained") or () if isinstance(c, dict)}
            if ref[1:] not in contained:
                w.err("not-found", path, "reference to a contained resource that is not there")
        elif ref.startswith(("urn:uuid:", "urn:oid:")):
            w.err("not-found", path, "reference does not match any entry fullUrl")
        elif _CONDITIONAL.match(ref) or ref.startswith(("http://", "https://")):
            continue  # conditional (the server resolves it) or absolute (outside the bundle): not checked
        else:
            m = _RELATIVE.fullmatch(ref)
            if m is None:
                w.err("value", path, "reference is not <type>/<id>, a urn:uuid or a URL")
            elif (m.group(1), m.group(2)) not in by_type_id and not external_references:
                w.err("not-found", path, "reference does not resolve to an entry in the bundle")


# -------------------------------------------------------------------------------------- raising
def check_resource(
    resource: Mapping[str, Any], *, structural: bool = True, require_profile: bool = True
) -> list[ValidationIssue]:
    """:func:`validate_resource`, raising :class:`FhirValidationError` when there is any error;
    returns the warnings otherwise."""
    issues = validate_resource(resource, structural=structural, require_profile=require_profile)
    if errors_only(issues):
        raise FhirValidationError(issues)
    return issues


def check_bundle(
    bundle: Mapping[str, Any],
    *,
    structural: bool = True,
    external_references: bool = False,
    require_profile: bool = True,
) -> list[ValidationIssue]:
    """:func:`validate_bundle`, raising :class:`FhirValidationError` when there is any error."""
    issues = validate_bundle(
        bundle,
        structural=structural,
        external_references=external_references,
        require_profile=require_profile,
    )
    if errors_only(issues):
        raise FhirValidationError(issues)
    return issues
