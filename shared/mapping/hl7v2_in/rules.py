"""Load ``rules.json`` once and compile it into fast lookups and callables (see the package docstring).

Everything is checked at import so a bad rules file fails the build, not a message at 3 a.m.: unknown
members, event kinds and statuses; concept maps that do not exist (for active rules); concept-map targets
that the canonical field cannot hold (a map into ``Patient.gender`` must only produce male/female/...);
``keep-source`` on a field that holds a bare code; HL7 paths that do not parse.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final, Literal

from pydantic import BaseModel

from shared.canonical.model import (
    Address,
    Coding,
    Concept,
    ContactPoint,
    DataAbsent,
    DataAbsentReason,
    Encounter,
    EncounterStatus,
    EventKind,
    HumanName,
    NhsNumber,
    Observation,
    Patient,
    ResultReport,
    ServiceRequest,
)
from shared.errors import ConfigurationError
from shared.hl7v2 import Hl7PathError, parse_path
from shared.mapping._construct import builder
from shared.mapping.errors import UnmappedSourceCode
from shared.terminology import (
    Coding as TermCoding,
)
from shared.terminology import (
    Equivalence,
    KeptSource,
    MapOutcome,
    MappedCode,
    UnknownConceptMap,
    Unmapped,
    UnmappedCode,
    load_concept_map,
    map_code,
    v2_table_system,
)
from shared.terminology import (
    MappedAbsent as TermDataAbsent,
)

__all__ = ["RULES", "CodedRule", "Compiled", "MessageRule", "Path", "RulesError", "StatusRule", "load_rules"]

Assembly = Literal["encounter", "patient", "merge", "results", "orders"]
#: ``(segment, field, component)``: a compiled HL7 location such as ``EVN-6`` or ``PV1-2``.
Path = tuple[str, int, int | None]


class RulesError(ConfigurationError):
    """``rules.json`` breaks the format or names something that does not exist (a build defect)."""

    code = "hl7v2-in-rules"


def _path(text: str) -> Path:
    try:
        name, _occ, n, _rep, comp, _sub = parse_path(text)
    except Hl7PathError:
        raise RulesError(f"rules.json: {text[:30]!r} is not an HL7 path") from None
    return (name, n, comp)


def _literals(model: type[BaseModel], name: str) -> tuple[frozenset[str], bool, bool]:
    """String literals a model field accepts, whether it also accepts a canonical DataAbsent, and whether
    it may be empty (``None``)."""
    annotation = model.model_fields[name].annotation
    values: set[str] = set()
    absent = optional = False
    stack: list[Any] = [annotation]
    while stack:
        t = stack.pop()
        origin = typing.get_origin(t)
        if origin is Literal:
            values.update(a for a in typing.get_args(t) if isinstance(a, str))
        elif origin in (typing.Union, types.UnionType):
            stack.extend(typing.get_args(t))
        elif t is DataAbsent:
            absent = True
        elif t is type(None):
            optional = True
    return frozenset(values), absent, optional


#: Canonical fields that hold a bare code (a ``Literal``): what their concept maps may produce.
_CODE_TARGETS: Final[dict[str, tuple[type[BaseModel], str]]] = {
    "patient.gender": (Patient, "gender"),
    "report.status": (ResultReport, "status"),
    "observation.status": (Observation, "status"),
    "order.status": (ServiceRequest, "status"),
    "order.status_from_control": (ServiceRequest, "status"),
    "order.priority": (ServiceRequest, "priority"),
    "patient.names.use": (HumanName, "use"),
    "patient.addresses.use": (Address, "use"),
    "patient.addresses.type": (Address, "type"),
    "patient.telecom.system": (ContactPoint, "system"),
    "patient.telecom.use": (ContactPoint, "use"),
    "patient.nhs_number.verification_status": (NhsNumber, "verification_status"),
}


@dataclass(frozen=True, slots=True)
class MessageRule:
    message_type: str
    kind: EventKind
    assembly: Assembly
    #: The trigger's encounter status; ``None`` with ``derived`` when PV1 decides (A08).
    encounter_status: EncounterStatus | None = None
    derived: bool = False
    intent: str | None = None


@dataclass(frozen=True, slots=True)
class StatusRule:
    """One step of the derived-encounter-status list: the first whose condition holds wins."""

    status: EncounterStatus
    present: Path | None = None
    equals: tuple[Path, str] | None = None
    source: str = ""
    #: ``False``: the status is inferred, not stated (the Encounter lists it in ``defaulted``).
    asserted: bool = True


@dataclass(eq=False)
class CodedRule:
    """One coded field: its concept map (or none: the source code is kept as sent) and unmapped policy.

    :meth:`outcome` caches per (code, system): terminology outcomes are immutable, so the hot path pays a
    dict lookup per coded field after the first message.
    """

    name: str
    hl7v2: str
    source_system: str | None
    concept_map_id: str | None
    concept_map_version: str | None
    target_system: str | None
    unmapped: Unmapped
    absent_reason: str
    target: Literal["code", "concept"]
    when_empty: str | None
    assume_source_system: bool
    active: bool
    allowed: frozenset[str] = frozenset()
    accepts_absent: bool = True
    #: ``"unmapped": "omit"``: a code the map cannot map leaves the (optional) field empty - for fields
    #: that cannot hold a data-absent reason and whose element is worth keeping without it (a name
    #: without its type). Never a default value.
    omit: bool = False
    #: ``"unmatched": "omit"``: a code the map lists as deliberately unmatched leaves the field empty; a
    #: code it does not list still follows ``unmapped``.
    unmatched_omit: bool = False
    #: ``"mapped": "replace-source"``: an ``equal`` match replaces the sender's coding (the map says the
    #: code IS the target code and only the sender's system label is wrong, e.g. an NHS Data Dictionary
    #: code sent in an HL7 table field).
    replace_source: bool = False
    #: ``"kept_source_user_selected": false``: a code no map knows, carried as sent, is marked
    #: ``userSelected=false`` (not chosen as the value of the bound value set).
    kept_user_selected: bool | None = None
    _cache: dict[tuple[str, str | None], MapOutcome] = field(default_factory=dict, repr=False)
    #: Canonical values by (encoded field text, simple, sender) - see ``Ctx.coded`` (lineage off only).
    memo: dict[tuple[str, bool, str | None], object] = field(default_factory=dict, repr=False)
    #: Canonical values of bare codes (``Ctx.code_value``; a code that raises is never stored).
    values: dict[str, object] = field(default_factory=dict, repr=False)

    def outcome(self, code: str, system: str | None, where: str) -> MapOutcome | None:
        """Map ``code`` (from ``system``; ``None`` = the sender named none). ``None`` when this rule has
        no concept map, or the code is in a system the map does not translate (kept as sent)."""
        if self.concept_map_id is None:
            return None
        if system is None and self.assume_source_system:
            system = self.source_system
        if system is None:
            return None
        key = (code, system)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        failure: UnmappedCode | None = None
        try:
            out = map_code(
                self.concept_map_id,
                code,
                policy=Unmapped.DATA_ABSENT if self.unmatched_omit else self.unmapped,
                field=self.name,
                system=system,
                target_system=self.target_system,
                absent_reason=self.absent_reason,
            )
        except UnmappedCode as exc:
            failure = exc
        else:
            if (
                self.unmatched_omit
                and isinstance(out, TermDataAbsent)
                and not out.explicitly_unmatched
                and self.unmapped is Unmapped.RAISE
            ):
                failure = UnmappedCode(
                    f"{self.name}: code is not listed in {self.concept_map_id}",
                    field=self.name,
                    concept_map_id=self.concept_map_id,
                )
        if failure is not None:
            # Raised outside the except block, so neither chained nor as context: terminology's text
            # quotes the code, and a code field can hold anything a sender typed. ``cause`` keeps it.
            raise UnmappedSourceCode(
                where, target=self.name, concept_map_id=self.concept_map_id, cause=failure
            )
        if len(self._cache) < 4096:
            self._cache[key] = out
        return out

    @property
    def table(self) -> str | None:
        return self.concept_map_id

    @property
    def table_version(self) -> str | None:
        return self.concept_map_version


# Trusted constructors (shared.mapping._construct): terminology codings have non-empty codes (the map
# loader checks), reasons are data-absent-reason codes, and every Concept below has a coding.
_new_coding = builder(Coding)
_new_concept = builder(Concept)
_new_absent = builder(DataAbsent)


def to_coding(c: TermCoding) -> Coding:
    return _new_coding(system=c.system, code=c.code, display=c.display, version=c.version)


def to_absent(out: TermDataAbsent) -> DataAbsent:
    return _new_absent(
        reason=DataAbsentReason(out.reason), source=to_coding(out.source) if out.source else None
    )


def outcome_kind(out: MapOutcome | None) -> str:
    if isinstance(out, MappedCode):
        return f"mapped ({out.equivalence.value})"
    if isinstance(out, KeptSource):
        return "kept as sent (no mapping)"
    if isinstance(out, TermDataAbsent):
        return f"data-absent {out.reason} (no mapping)"
    return "kept as sent"


def concept_from(
    out: MapOutcome | None,
    source: Coding,
    text: str | None,
    *,
    replace_source: bool = False,
    kept_user_selected: bool | None = None,
) -> Concept | DataAbsent:
    """Canonical value of a ``concept`` field: the sender's coding first (stable identity keys), the
    translation after it; a data-absent outcome keeps the source coding. ``replace_source``: an ``equal``
    match stands alone (the sender's code in its true system). ``kept_user_selected``: the
    ``user_selected`` flag of a source coding no map translated."""
    if isinstance(out, MappedCode):
        target = to_coding(out.target)
        if target == source or (replace_source and out.equivalence is Equivalence.EQUAL):
            return _new_concept(codings=(target,), text=text)
        return _new_concept(codings=(source, target), text=text)
    if isinstance(out, TermDataAbsent):
        return _new_absent(reason=DataAbsentReason(out.reason), source=source)
    if kept_user_selected is not None:
        source = _new_coding(
            system=source.system,
            code=source.code,
            display=source.display,
            version=source.version,
            user_selected=kept_user_selected,
        )
    return _new_concept(codings=(source,), text=text)


@dataclass(frozen=True)
class Compiled:
    version: str
    messages: Mapping[str, MessageRule]
    occurred_at: tuple[Path, ...]
    recorded_at: tuple[Path, ...]
    encounter_start: Mapping[str, tuple[Path, ...]]
    encounter_end: Mapping[str, tuple[Path, ...]]
    derived_status: tuple[StatusRule, ...]
    local_system_prefix: str
    universal_id_prefixes: Mapping[str, str]
    authority_systems: Mapping[str, str]
    nhs_number_fields: tuple[Path, ...]
    nhs_number_unflagged_fields: tuple[Path, ...]
    local_identifier_fields: tuple[Path, ...]
    visit_number_type: str
    alternate_visit_field: Path
    placer_type: str
    filler_type: str
    coding_systems: Mapping[str, str]
    local_coding_system_prefix: str
    coded: Mapping[str, CodedRule]
    indicators: Mapping[str, Mapping[str, Any]]
    indicator_when_empty: Mapping[str, Any]
    #: Telecom fields (PID-13/PID-14) -> the ContactPoint.use their definition implies.
    telecom_fields: Mapping[str, str]
    telecom_number_system: str
    telecom_address_system: str
    #: ContactPoint.system -> the XTN.2 HL7 pairs with it, written for a contact with no use (hl7v2_out).
    telecom_use_code_without_use: Mapping[str, str]
    #: ``explicit_null.fields``: segment -> (field number, canonical object, field) a ``""`` deletes.
    null_fields: Mapping[str, tuple[tuple[int, str, str], ...]]
    #: ``explicit_null.defaults_when_absent``: (segment, field number, Patient field it defaults).
    defaults_when_absent: tuple[tuple[str, int, str], ...]
    value_types: Mapping[str, str]
    numeric_unparseable: Unmapped
    encapsulated_subtypes: Mapping[str, str]
    strict: bool = False
    #: ``telecom.use_by_equipment_type``: XTN.3 codes that fix ContactPoint.use whatever XTN.2 says.
    telecom_use_by_equipment: Mapping[str, str] = field(default_factory=dict)
    #: Reader results by encoded text, and patient / encounter results by their segments' text (lineage
    #: off; see ``_context``): kept per compiled rules, so rules with other tables never share them.
    memo: dict[object, object] = field(default_factory=dict, compare=False, repr=False)

    def rule(self, name: str) -> CodedRule:
        return self.coded[name]


_VALUE_HANDLERS = frozenset(
    {"numeric", "structured-numeric", "text", "coded", "datetime", "encapsulated", "reference"}
)
_TOP = {
    "version",
    "description",
    "messages",
    "event_times",
    "encounter_start",
    "encounter_end",
    "telecom",
    "derived_encounter_status",
    "identifiers",
    "coding_systems",
    "local_coding_system_prefix",
    "coded_fields",
    "indicators",
    "explicit_null",
    "observation_value_types",
    "numeric_unparseable",
    "encapsulated_subtypes",
}


def _only(where: str, obj: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise RulesError(f"rules.json: {where} has unknown member(s) {unknown}")


def _coded(name: str, spec: Mapping[str, Any], *, strict: bool) -> CodedRule:
    _only(
        f"coded_fields.{name}",
        spec,
        {
            "hl7v2",
            "source_table",
            "concept_map",
            "target_system",
            "unmapped",
            "absent_reason",
            "target",
            "when_empty",
            "assume_source_system",
            "status",
            "unmatched",
            "mapped",
            "kept_source_user_selected",
            "comment",
        },
    )
    where = f"rules.json: coded_fields.{name}"
    omit = spec.get("unmapped") == "omit"
    try:
        unmapped = Unmapped.DATA_ABSENT if omit else Unmapped(spec["unmapped"])
    except (KeyError, ValueError):
        raise RulesError(
            f"{where}.unmapped must be one of {[u.value for u in Unmapped] + ['omit']}"
        ) from None
    unmatched_omit = spec.get("unmatched") == "omit"
    if spec.get("unmatched", "omit") != "omit":
        raise RulesError(f"{where}.unmatched may only be 'omit'")
    target = spec.get("target")
    if target not in ("code", "concept"):
        raise RulesError(f"{where}.target must be 'code' or 'concept'")
    active = spec.get("status", "active") == "active"
    if spec.get("status", "active") not in ("active", "pending"):
        raise RulesError(f"{where}.status must be 'active' or 'pending'")
    map_id = spec.get("concept_map")
    version: str | None = None
    allowed: frozenset[str] = frozenset()
    accepts_absent = True
    optional = True
    if target == "code" and name in _CODE_TARGETS:
        model, attr = _CODE_TARGETS[name]
        allowed, accepts_absent, optional = _literals(model, attr)
    if (omit or unmatched_omit) and target == "code" and not optional:
        raise RulesError(f"{where}: 'omit' needs a field that may be empty")
    if omit and target == "concept" and spec.get("concept_map") is None:
        raise RulesError(f"{where}: 'omit' on a concept field needs a concept map to decide by")
    if spec.get("mapped", "replace-source") != "replace-source":
        raise RulesError(f"{where}.mapped may only be 'replace-source'")
    kept_user_selected = spec.get("kept_source_user_selected")
    if kept_user_selected is not None and (kept_user_selected is not False or target != "concept"):
        raise RulesError(f"{where}.kept_source_user_selected may only be false, on a concept field")
    if active and map_id is not None:
        try:
            cmap = load_concept_map(map_id)
        except UnknownConceptMap:
            raise RulesError(f"{where}.concept_map {map_id!r} does not exist") from None
        version = cmap.version
        if target == "code":
            if name not in _CODE_TARGETS:
                raise RulesError(f"{where}: no canonical code field is registered for this rule")
            for group in cmap.groups:
                if spec.get("target_system") is not None and group.target != spec["target_system"]:
                    continue
                for element in group.elements.values():
                    for t in element.targets:
                        if t.code is not None and t.code not in allowed:
                            raise RulesError(
                                f"{where}: concept map {map_id} target {t.code!r} is not a value of the field"
                            )
    if active and map_id is None and target == "code":
        raise RulesError(f"{where}: a code field needs a concept map")
    if target == "code" and unmapped is Unmapped.KEEP_SOURCE:
        raise RulesError(f"{where}: keep-source cannot apply to a field holding a bare code")
    if target == "code" and unmapped is Unmapped.DATA_ABSENT and not accepts_absent and active and not omit:
        raise RulesError(f"{where}: the field cannot hold a data-absent reason (use 'omit')")
    when_empty = spec.get("when_empty")
    if when_empty is not None and when_empty not in allowed:
        raise RulesError(f"{where}.when_empty is not a value of the field")
    table = spec.get("source_table")
    if strict and map_id is not None:
        unmapped = Unmapped.RAISE
        omit = unmatched_omit = False
    return CodedRule(
        name=name,
        hl7v2=str(spec.get("hl7v2", "")),
        source_system=v2_table_system(table) if table else None,
        concept_map_id=map_id if active else None,
        concept_map_version=version,
        target_system=spec.get("target_system"),
        unmapped=unmapped,
        absent_reason=str(spec.get("absent_reason", "unknown")),
        target=target,
        when_empty=when_empty,
        assume_source_system=bool(spec.get("assume_source_system", True)),
        active=active,
        allowed=allowed,
        accepts_absent=accepts_absent,
        omit=omit,
        unmatched_omit=unmatched_omit,
        replace_source=spec.get("mapped") == "replace-source" and target == "concept",
        kept_user_selected=kept_user_selected,
    )


def _field_literals(model: type[BaseModel], name: str) -> frozenset[str]:
    """The values of a ``tuple[Literal[...], ...]`` field (``Patient.cleared``...)."""
    (item, _ellipsis) = typing.get_args(model.model_fields[name].annotation)
    return frozenset(typing.get_args(item))


def _explicit_null(
    spec: Mapping[str, Any], when_empty: Mapping[str, Any]
) -> tuple[dict[str, tuple[tuple[int, str, str], ...]], tuple[tuple[str, int, str], ...]]:
    """``explicit_null``: every target must be a field the canonical object can list in ``cleared`` /
    ``defaulted`` (a rule the model cannot express fails the build); a defaulted field's location must be
    an indicator with a ``when_empty`` value."""
    _only("explicit_null", spec, {"fields", "defaults_when_absent", "comment"})
    can_clear = {
        "patient": _field_literals(Patient, "cleared"),
        "encounter": _field_literals(Encounter, "cleared"),
    }
    fields: dict[str, list[tuple[int, str, str]]] = {}
    for loc, targets in spec["fields"].items():
        seg, n, comp = _path(loc)
        for target in targets if isinstance(targets, list) else [targets]:
            obj, _, name = str(target).partition(".")
            if comp is not None or name not in can_clear.get(obj, frozenset()):
                raise RulesError(f"rules.json: explicit_null.fields.{loc} cannot be cleared")
            fields.setdefault(seg, []).append((n, obj, name))
    defaults: list[tuple[str, int, str]] = []
    for loc, target in spec["defaults_when_absent"].items():
        seg, n, _comp = _path(loc)
        obj, _, name = str(target).partition(".")
        if obj != "patient" or name not in _field_literals(Patient, "defaulted") or loc not in when_empty:
            raise RulesError(f"rules.json: explicit_null.defaults_when_absent.{loc} is not a defaulted field")
        defaults.append((seg, n, name))
    return {k: tuple(v) for k, v in fields.items()}, tuple(defaults)


def compile_rules(doc: Mapping[str, Any], *, strict: bool = False) -> Compiled:
    """Validate and compile a parsed rules document (``strict``: every mapped coded field raises on an
    unmapped code, whatever its declared policy)."""
    if not isinstance(doc, Mapping):
        raise RulesError("rules.json: top level must be an object")
    _only("$", doc, _TOP)
    version = doc.get("version")
    if not isinstance(version, str) or not version:
        raise RulesError("rules.json: version is required")
    messages: dict[str, MessageRule] = {}
    for mtype, spec in doc["messages"].items():
        _only(f"messages.{mtype}", spec, {"kind", "assembly", "encounter_status", "intent", "comment"})
        try:
            kind = EventKind(spec["kind"])
        except (KeyError, ValueError):
            raise RulesError(f"rules.json: messages.{mtype}.kind is not an event kind") from None
        assembly = spec.get("assembly")
        if assembly not in ("encounter", "patient", "merge", "results", "orders"):
            raise RulesError(f"rules.json: messages.{mtype}.assembly is unknown")
        raw_status = spec.get("encounter_status")
        derived = raw_status == "derived"
        status: EncounterStatus | None = None
        if assembly == "encounter" and not derived:
            try:
                status = EncounterStatus(raw_status)
            except ValueError:
                raise RulesError(f"rules.json: messages.{mtype}.encounter_status is unknown") from None
        intent = spec.get("intent")
        if assembly == "orders" and intent not in _literals(ServiceRequest, "intent")[0]:
            raise RulesError(f"rules.json: messages.{mtype}.intent is not a ServiceRequest intent")
        messages[mtype] = MessageRule(mtype, kind, assembly, status, derived, intent)
    times = doc["event_times"]
    derived_status: list[StatusRule] = []
    for i, step in enumerate(doc["derived_encounter_status"]):
        _only(f"derived_encounter_status[{i}]", step, {"present", "equals", "status", "asserted", "comment"})
        st = EncounterStatus(step["status"])
        asserted = step.get("asserted", True)
        if not isinstance(asserted, bool):
            raise RulesError(f"rules.json: derived_encounter_status[{i}].asserted must be true or false")
        if "present" in step:
            derived_status.append(
                StatusRule(st, present=_path(step["present"]), source=step["present"], asserted=asserted)
            )
        else:
            loc, value = step["equals"]
            derived_status.append(StatusRule(st, equals=(_path(loc), value), source=loc, asserted=asserted))
    ids = doc["identifiers"]
    telecom = doc["telecom"]
    _only(
        "telecom",
        telecom,
        {
            "fields",
            "system_without_equipment_type",
            "use_code_without_use",
            "use_by_equipment_type",
            "comment",
        },
    )
    systems_allowed = _literals(ContactPoint, "system")[0]
    uses_allowed = _literals(ContactPoint, "use")[0]
    telecom_fields = {loc: use for loc, use in telecom["fields"].items() if _path(loc)}
    if not set(telecom_fields.values()) <= uses_allowed:
        raise RulesError("rules.json: telecom.fields names a use ContactPoint.use cannot hold")
    no_equipment = telecom["system_without_equipment_type"]
    _only("telecom.system_without_equipment_type", no_equipment, {"number", "address"})
    if not set(no_equipment.values()) <= systems_allowed:
        raise RulesError("rules.json: telecom.system_without_equipment_type is not a ContactPoint.system")
    by_equipment = {k.upper(): v for k, v in telecom.get("use_by_equipment_type", {}).items()}
    if not set(by_equipment.values()) <= uses_allowed:
        raise RulesError("rules.json: telecom.use_by_equipment_type names a use ContactPoint.use cannot hold")
    use_codes = dict(telecom.get("use_code_without_use", {}))
    if not set(use_codes) <= systems_allowed:
        raise RulesError("rules.json: telecom.use_code_without_use names an unknown ContactPoint.system")
    ends = {k: v for k, v in doc["encounter_end"].items() if k != "comment"}
    coded = {name: _coded(name, spec, strict=strict) for name, spec in doc["coded_fields"].items()}
    indicators: dict[str, Mapping[str, Any]] = {}
    when_empty: dict[str, Any] = {}
    for loc, spec in doc["indicators"].items():
        _path(loc)
        indicators[loc] = dict(spec["values"])
        if "when_empty" in spec:
            when_empty[loc] = spec["when_empty"]
    null_fields, defaults_when_absent = _explicit_null(doc["explicit_null"], when_empty)
    value_types = dict(doc["observation_value_types"])
    bad = sorted(set(value_types.values()) - _VALUE_HANDLERS)
    if bad:
        raise RulesError(f"rules.json: observation_value_types names unknown handlers {bad}")
    return Compiled(
        version=version,
        messages=types.MappingProxyType(messages),
        occurred_at=tuple(_path(p) for p in times["occurred_at"]),
        recorded_at=tuple(_path(p) for p in times["recorded_at"]),
        encounter_start=types.MappingProxyType(
            {k: tuple(_path(p) for p in v) for k, v in doc["encounter_start"].items()}
        ),
        encounter_end=types.MappingProxyType({k: tuple(_path(p) for p in v) for k, v in ends.items()}),
        derived_status=tuple(derived_status),
        local_system_prefix=ids["local_system_prefix"],
        universal_id_prefixes=types.MappingProxyType(dict(ids["universal_id_prefixes"])),
        authority_systems=types.MappingProxyType({k.upper(): v for k, v in ids["authority_systems"].items()}),
        nhs_number_fields=tuple(_path(p) for p in ids["nhs_number_fields"]),
        nhs_number_unflagged_fields=tuple(_path(p) for p in ids["nhs_number_unflagged_fields"]),
        local_identifier_fields=tuple(_path(p) for p in ids["local_identifier_fields"]),
        visit_number_type=ids["visit_number_type"],
        alternate_visit_field=_path(ids["alternate_visit_field"]),
        placer_type=ids["placer_type"],
        filler_type=ids["filler_type"],
        coding_systems=types.MappingProxyType({k.upper(): v for k, v in doc["coding_systems"].items()}),
        local_coding_system_prefix=doc["local_coding_system_prefix"],
        coded=types.MappingProxyType(coded),
        indicators=types.MappingProxyType(indicators),
        indicator_when_empty=types.MappingProxyType(when_empty),
        telecom_fields=types.MappingProxyType(telecom_fields),
        telecom_number_system=no_equipment["number"],
        telecom_address_system=no_equipment["address"],
        telecom_use_code_without_use=types.MappingProxyType(use_codes),
        null_fields=types.MappingProxyType(null_fields),
        defaults_when_absent=defaults_when_absent,
        value_types=types.MappingProxyType(value_types),
        numeric_unparseable=Unmapped(doc["numeric_unparseable"]),
        encapsulated_subtypes=types.MappingProxyType(
            {k.upper(): v for k, v in doc["encapsulated_subtypes"].items()}
        ),
        strict=strict,
        telecom_use_by_equipment=types.MappingProxyType(by_equipment),
    )


def load_rules(*, strict: bool = False) -> Compiled:
    """Read the packaged ``rules.json`` and compile it."""
    text = resources.files(__package__ or "shared.mapping.hl7v2_in").joinpath("rules.json").read_text("utf-8")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RulesError(f"rules.json: not valid JSON (line {exc.lineno})") from None
    try:
        return compile_rules(doc, strict=strict)
    except (KeyError, TypeError, ValueError) as exc:
        raise RulesError(f"rules.json: malformed ({type(exc).__name__})") from None


#: The compiled rules (declared policies) and their strict twin (every mapped code field raises).
RULES: Final = load_rules()
STRICT_RULES: Final = load_rules(strict=True)
