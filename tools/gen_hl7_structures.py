#!/usr/bin/env python3
"""Generate ``shared/hl7v2/structures/structures_v*.json`` from hl7apy's HL7 v2 definitions.

hl7apy (a dev/generation-time dependency only) ships the HL7 v2 message structures, segment field lists
and data types for each version as Python literals. This script extracts what the validator needs for the
message types the TIE supports and writes one JSON file per HL7 version:

* ``events``: ``"TYPE^TRIGGER"`` -> message structure id (HL7 table 0354; written out below because
  hl7apy does not ship the trigger-to-structure mapping), plus ``"ACK"`` -> ``"ACK"`` for any trigger;
* ``structures``: each structure as a tree of ``{"segment", "min", "max"}`` and
  ``{"group", "kind" ("sequence"|"choice"), "min", "max", "children"}`` nodes (``max`` null = unbounded);
* ``segments``: for the segments whose fields are checked, every field's sequence, name, data type,
  required flag, repeat flag and HL7 table;
* ``tables``: the values of the few HL7 tables the validator checks (administrative sex, processing id,
  acknowledgment conditions, acknowledgment code);
* ``datatypes``: each composite data type's component types in ER7 notation (``"CE": "ST^ST^ID^ST^ST^ID"``)
  and ``primitive_datatypes``: the version's primitive types (arity checks for unescaped delimiters).

Run ``python tools/gen_hl7_structures.py`` to regenerate, ``--check`` to verify the checked-in files match
(exit status 1 and a list of stale files otherwise). Output is deterministic (sorted keys, fixed indent).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import sys
from pathlib import Path
from typing import Any

OUTPUT_DIR = Path(__file__).resolve().parents[1] / "shared" / "hl7v2" / "structures"

#: HL7 versions with a generated file, mapped to the hl7apy module that defines them.
VERSIONS: dict[str, str] = {
    "2.3": "hl7apy.v2_3",
    "2.3.1": "hl7apy.v2_3_1",
    "2.4": "hl7apy.v2_4",
    "2.5": "hl7apy.v2_5",
    "2.5.1": "hl7apy.v2_5_1",
    "2.6": "hl7apy.v2_6",
    "2.7": "hl7apy.v2_7",
    "2.8": "hl7apy.v2_8",
}

#: Segments whose field definitions are exported (the ones the validator checks field by field).
CHECKED_SEGMENTS = ("MSH", "EVN", "PID", "PV1", "MRG", "OBR", "OBX", "ORC", "MSA", "ERR")

#: HL7 tables whose values are exported (the ones the validator checks).
CHECKED_TABLES = ("HL70001", "HL70008", "HL70103", "HL70155")

#: Supported trigger events -> message structure (HL7 table 0354) from v2.4 on.
_EVENTS_V24: dict[str, str] = {
    "ADT^A01": "ADT_A01",
    "ADT^A02": "ADT_A02",
    "ADT^A03": "ADT_A03",
    "ADT^A04": "ADT_A01",
    "ADT^A05": "ADT_A05",
    "ADT^A08": "ADT_A01",
    "ADT^A11": "ADT_A09",
    "ADT^A12": "ADT_A12",
    "ADT^A13": "ADT_A01",
    "ADT^A28": "ADT_A05",
    "ADT^A31": "ADT_A05",
    "ADT^A40": "ADT_A39",
    "ORU^R01": "ORU_R01",
    "ORM^O01": "ORM_O01",
    "ACK": "ACK",
}
#: v2.3 and v2.3.1 had no ADT_A05: A05, A28 and A31 used the ADT_A01 structure.
_EVENTS_V23: dict[str, str] = {
    **_EVENTS_V24,
    "ADT^A05": "ADT_A01",
    "ADT^A28": "ADT_A01",
    "ADT^A31": "ADT_A01",
}


#: hl7apy's v2.4 lacks ADT_A12 (the standard defines it): A12 is checked against ADT_A09 there, the same
#: segments (MSH EVN PID [PD1] PV1 [PV2] {DB1} {OBX}) with DG1 repeating instead of at most once.
_EVENTS_V24_ONLY: dict[str, str] = {**_EVENTS_V24, "ADT^A12": "ADT_A09"}


def events_for(version: str) -> dict[str, str]:
    if version == "2.4":
        return dict(_EVENTS_V24_ONLY)
    return dict(_EVENTS_V23 if version in ("2.3", "2.3.1") else _EVENTS_V24)


def _card_max(value: int) -> int | None:
    return None if value == -1 else value


def _node(name: str, ref: Any, card: tuple[int, int], kind: str, structure_id: str) -> dict[str, Any]:
    if kind == "SEG":
        return {"segment": name, "min": card[0], "max": _card_max(card[1])}
    if kind != "GRP":  # pragma: no cover - hl7apy message trees only hold segments and groups
        raise ValueError(f"unexpected element kind {kind!r} in {structure_id}")
    group_kind, children = ref
    prefix = structure_id + "_"
    return {
        "group": name[len(prefix) :] if name.startswith(prefix) else name,
        "kind": group_kind,
        "min": card[0],
        "max": _card_max(card[1]),
        "children": [_node(n, r, c, k, structure_id) for n, r, c, k in children],
    }


def _structure(module: Any, structure_id: str) -> dict[str, Any]:
    kind, children = module.MESSAGES[structure_id]
    return {
        "kind": kind,
        "children": [_node(n, r, c, k, structure_id) for n, r, c, k in children],
    }


def _segment_fields(module: Any, segment: str) -> list[dict[str, Any]]:
    _kind, fields = module.SEGMENTS[segment]
    out: list[dict[str, Any]] = []
    for name, _ref, card, _k in fields:
        definition = module.FIELDS[name]
        out.append(
            {
                "seq": int(name.rsplit("_", 1)[1]),
                "name": definition[3],
                "type": definition[2],
                "required": card[0] >= 1,
                "repeating": card[1] != 1,
                "table": definition[4],
            }
        )
    return out


def _tables(version: str) -> dict[str, Any]:
    """Values of :data:`CHECKED_TABLES`. hl7apy ships no tables for v2.3, so the nearest newer version
    that has them is used (the ``from`` key records which)."""
    names = list(VERSIONS)
    for candidate in names[names.index(version) :]:
        try:
            module = importlib.import_module(VERSIONS[candidate] + ".tables")
        except ModuleNotFoundError:
            continue
        return {
            table: {
                "name": module.TABLES[table][0],
                "values": sorted(module.TABLES[table][1]),
                "from": candidate,
            }
            for table in CHECKED_TABLES
            if table in module.TABLES
        }
    return {}  # pragma: no cover - every generated version has a newer version with tables


def _datatypes(module: Any) -> dict[str, str]:
    """Composite type -> its component types joined with ``^`` (arrays MA/NA have no fixed arity)."""
    return {
        name: "^".join(str(component[1][2]) for component in components)
        for name, components in sorted(module.DATATYPES_STRUCTS.items())
        if name not in ("MA", "NA")
    }


def build(version: str) -> dict[str, Any]:
    """The JSON document for one HL7 version (only structures hl7apy defines for that version)."""
    module = importlib.import_module(VERSIONS[version])
    events = {k: v for k, v in events_for(version).items() if v in module.MESSAGES}
    return {
        "hl7_version": version,
        "source": f"{VERSIONS[version]} (hl7apy {importlib.metadata.version('hl7apy')})",
        "generated_by": "tools/gen_hl7_structures.py",
        "events": events,
        "structures": {sid: _structure(module, sid) for sid in sorted(set(events.values()))},
        "segments": {seg: _segment_fields(module, seg) for seg in CHECKED_SEGMENTS if seg in module.SEGMENTS},
        "tables": _tables(version),
        "datatypes": _datatypes(module),
        "primitive_datatypes": sorted(module.BASE_DATATYPES),
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1, sort_keys=True, ensure_ascii=True) + "\n"


def file_name(version: str) -> str:
    return "structures_v" + version.replace(".", "_") + ".json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="verify checked-in files instead of writing")
    parser.add_argument("--out", type=Path, default=OUTPUT_DIR)
    args = parser.parse_args(argv)
    stale: list[str] = []
    for version in VERSIONS:
        path = args.out / file_name(version)
        text = render(build(version))
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print("stale or missing (run tools/gen_hl7_structures.py):", *stale, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
