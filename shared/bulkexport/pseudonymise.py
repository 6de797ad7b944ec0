"""Pseudonymised exports: the rules (data, :file:`pseudonymise_rules.json`) and the keyed transformation.

What is done (the rules' version is listed in every pseudonymised manifest):

* resource ids, every reference's target id and every identifier value are replaced by an HMAC-SHA256
  reference (32 hex digits) keyed by ``TIE_EXPORT_PSEUDONYM_KEY`` *and the recipient* (the client id the
  gateway puts in ``X-TIE-Client-Id``): within one recipient's exports the same patient always gets the
  same reference, so files join (``Observation.subject`` -> ``Patient.id``) and nightly extracts line up;
  two recipients' references for one patient differ, so they cannot link their data sets. Identifiers of
  the organisation-code systems listed in the rules are kept as sent.
* top-level elements a type's ``keep`` list does not name are removed (names, telecom, contact, photo,
  ``valueString``...); types without a ``keep`` list are not exported pseudonymised at all;
  ``removeEverywhere`` keys (narrative ``text``, ``note``, ``display``, ``description``, extensions,
  contained resources) are removed at every depth;
* ``Patient.birthDate`` / ``deceasedDateTime`` are cut to year-month and addresses to the postcode
  district (the outward code); an address without a recognisable UK postcode is removed.

No table from reference back to identifier is kept or exported: re-identification needs the key and the
source data, i.e. the Trust.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

JsonDict = dict[str, Any]

#: Identifier system of the references that replace identifier values.
PSEUDONYM_SYSTEM = "urn:tie:pseudonym"
_POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)\s*([0-9][A-Z]{2})$")
_META_KEPT = ("versionId", "lastUpdated", "profile", "tag", "security")
#: Key material shorter than this is refused (HMAC-SHA256 wants at least 256 bits).
MIN_KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class Rules:
    name: str
    version: str
    keep: dict[str, frozenset[str]]
    remove_everywhere: frozenset[str]
    keep_identifier_systems: frozenset[str]
    generalise: dict[str, str]

    @property
    def types(self) -> frozenset[str]:
        return frozenset(self.keep)

    def describe(self) -> JsonDict:
        """What the manifest says about the rules applied."""
        return {"name": self.name, "version": self.version}


def load_rules(text: str | None = None) -> Rules:
    """The packaged rules (or ``text``), checked: every generalisation is one this module implements."""
    raw = json.loads(text or resources.files(__package__).joinpath("pseudonymise_rules.json").read_text())
    known = {"year-month", "postcode-district"}
    for path, how in raw["generalise"].items():
        if how not in known:
            raise ValueError(f"pseudonymisation rule {path}: unknown generalisation")
    return Rules(
        name=raw["name"],
        version=raw["version"],
        keep={rtype: frozenset(elements) for rtype, elements in raw["keep"].items()},
        remove_everywhere=frozenset(raw["removeEverywhere"]),
        keep_identifier_systems=frozenset(raw["keepIdentifierSystems"]),
        generalise=dict(raw["generalise"]),
    )


def postcode_district(value: str) -> str | None:
    """``"LS1 4AP"`` -> ``"LS1"``; None when ``value`` is not a UK postcode."""
    match = _POSTCODE.match(value.strip().upper())
    return match.group(1) if match else None


def year_month(value: str) -> str:
    """``"1980-03-12"`` / ``"1980-03-12T10:00:00Z"`` -> ``"1980-03"`` (``"1980"`` stays ``"1980"``)."""
    return value[:7]


class Pseudonymiser:
    """The transformation for one recipient. ``key``: the export pseudonym key (at least 32 bytes)."""

    def __init__(self, key: bytes, recipient: str, rules: Rules) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError("the pseudonym key is too short")
        if not recipient:
            raise ValueError("a pseudonymised export needs a recipient")
        self.rules = rules
        label = b"tie-bulk-export/recipient/v1\x00" + recipient.encode()
        self._key = hmac.new(key, label, hashlib.sha256).digest()

    def ref(self, kind: str, value: str) -> str:
        digest = hmac.new(self._key, f"{kind}\x00{value}".encode(), hashlib.sha256).hexdigest()
        return digest[:32]

    def resource_id(self, resource_type: str, resource_id: str) -> str:
        return self.ref("id", f"{resource_type}/{resource_id}")

    def exports(self, resource_type: str) -> bool:
        return resource_type in self.rules.keep

    def transform(self, resource: JsonDict) -> JsonDict:
        """The pseudonymised copy of ``resource`` (its type must be one :meth:`exports`)."""
        rtype = str(resource["resourceType"])
        keep = self.rules.keep[rtype]
        out: JsonDict = {"resourceType": rtype, "id": self.resource_id(rtype, str(resource["id"]))}
        meta = resource.get("meta")
        if isinstance(meta, dict):
            kept = {k: copy.deepcopy(meta[k]) for k in _META_KEPT if k in meta}
            if kept:
                out["meta"] = kept
        for name, value in resource.items():
            if name not in keep:
                continue
            how = self.rules.generalise.get(f"{rtype}.{name}")
            if how == "year-month" and isinstance(value, str):
                out[name] = year_month(value)
            elif how == "postcode-district":
                addresses = self._addresses(value)
                if addresses:
                    out[name] = addresses
            else:
                cleaned = self._walk(name, value)
                if cleaned not in (None, [], {}):
                    out[name] = cleaned
        return out

    def deleted_url(self, resource_type: str, resource_id: str) -> str:
        return f"{resource_type}/{self.resource_id(resource_type, resource_id)}"

    # -- helpers -----------------------------------------------------------------------------------

    def _addresses(self, value: Any) -> list[JsonDict]:
        out: list[JsonDict] = []
        for address in value if isinstance(value, list) else [value]:
            if not isinstance(address, dict):
                continue
            district = postcode_district(str(address.get("postalCode") or ""))
            if district is None:
                continue
            item: JsonDict = {"postalCode": district}
            if address.get("use") in ("home", "temp", "old"):
                item["use"] = address["use"]
            out.append(item)
        return out

    def _identifier(self, value: Any) -> Any:
        if not isinstance(value, dict):
            return None
        system = str(value.get("system") or "")
        raw = value.get("value")
        if system in self.rules.keep_identifier_systems:
            return {k: value[k] for k in ("system", "value") if k in value}
        if not isinstance(raw, str) or not raw:
            return None
        out: JsonDict = {"system": PSEUDONYM_SYSTEM, "value": self.ref("identifier", f"{system}|{raw}")}
        if value.get("use") in ("usual", "official", "secondary"):
            out["use"] = value["use"]
        return out

    def _reference(self, value: str) -> str | None:
        parts = value.split("/")
        if len(parts) >= 4 and parts[-2] == "_history":
            parts = parts[:-2]
        if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-2].isalpha() and parts[-1]:
            return f"{parts[-2]}/{self.resource_id(parts[-2], parts[-1])}"
        return None  # contained (#x), urn:uuid: or unreadable: not exported

    def _walk(self, name: str, value: Any) -> Any:
        if name in self.rules.remove_everywhere:
            return None
        if name == "identifier" or name == "accessionIdentifier" or name == "requisition":
            if isinstance(value, list):
                items = [self._identifier(v) for v in value]
                return [i for i in items if i]
            return self._identifier(value)
        if isinstance(value, list):
            items = [self._walk(name, v) for v in value]
            return [i for i in items if i not in (None, {}, [])]
        if isinstance(value, dict):
            out: JsonDict = {}
            for key, item in value.items():
                if key == "reference" and isinstance(item, str):
                    ref = self._reference(item)
                    if ref is not None:
                        out[key] = ref
                    continue
                cleaned = self._walk(key, item)
                if cleaned not in (None, {}, []):
                    out[key] = cleaned
            return out
        return value
