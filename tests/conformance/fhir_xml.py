"""FHIR R4 XML -> FHIR JSON, typed by the base R4 definitions (lists by max cardinality, booleans and
numbers by primitive type). Used to run the UK Core checker over the published UK Core examples (XML only
upstream), which must come out clean: the checker's false-positive test. Narrative (``text``) is dropped.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.conformance.base_r4 import Definitions, definitions
from tests.conformance.terminology import FHIR_NS

_INTEGERS = frozenset({"integer", "positiveInt", "unsignedInt", "integer64"})


def _primitive(type_code: str, text: str) -> Any:
    if type_code == "boolean":
        return text == "true"
    if type_code in _INTEGERS:
        return int(text)
    if type_code == "decimal":
        return Decimal(text)
    return text


def _convert(defs: Definitions, elem: ET.Element, type_name: str, sd_path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attribute in ("id", "url"):
        if attribute in elem.attrib:
            out[attribute] = elem.attrib[attribute]
    for child in elem:
        if not isinstance(child.tag, str) or not child.tag.startswith(FHIR_NS):
            continue  # comments, XHTML narrative
        name = child.tag.removeprefix(FHIR_NS)
        if name == "text" and sd_path == type_name and type_name[:1].isupper():
            continue  # narrative
        found = defs.child(type_name, sd_path, name)
        if found is None:
            raise ValueError(f"{sd_path}.{name} is not an R4 element")
        el, chosen = found
        type_code = chosen or (el["type"][0]["code"] if el.get("type") else "")
        many = el.get("max") != "1"
        value: Any
        if type_code[:1].islower() or type_code.startswith("http://hl7.org/fhirpath/"):
            if len(child):
                out.setdefault("_" + name, []).append(_convert(defs, child, "Element", "Element"))
            value = _primitive(type_code, child.attrib["value"]) if "value" in child.attrib else None
        elif type_code in ("Resource", "DomainResource"):
            inner = next(iter(child))
            rtype = inner.tag.removeprefix(FHIR_NS)
            value = {"resourceType": rtype, **_convert(defs, inner, rtype, rtype)}
        elif el.get("contentReference"):
            target = el["contentReference"].lstrip("#")
            value = _convert(defs, child, target.split(".", 1)[0], target)
        elif defs.has_children(type_name, el["path"]):
            value = _convert(defs, child, type_name, el["path"])
        else:
            value = _convert(defs, child, type_code, type_code)
        if many:
            out.setdefault(name, []).append(value)
        elif value is not None:
            out[name] = value
    for key in [k for k in out if k.startswith("_")]:
        shadows = out[key]
        base = out.get(key[1:])
        out[key] = shadows if isinstance(base, list) else shadows[0]
    return out


def read_resource(path: Path, defs: Definitions | None = None) -> dict[str, Any]:
    root = ET.parse(path).getroot()  # trusted local conformance files
    rtype = root.tag.removeprefix(FHIR_NS)
    return {"resourceType": rtype, **_convert(defs or definitions(), root, rtype, rtype)}
