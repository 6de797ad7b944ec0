"""Fabricated HL7 v2 messages for the hl7v2_in tests (no real patients: NHS numbers from the test range).

Segments are built by field number (``seg("PV1", {2: "I", 19: "V1^^^RRV"})``) so a test states exactly which
fields it sets; ``adt(...)``, ``oru(...)`` and ``orm(...)`` assemble whole messages with overridable parts.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel

from shared.canonical.model import ClinicalEvent
from shared.mapping.hl7v2_in import map_bytes
from shared.mapping.lineage import LineageEntry, Mapped, uncovered

NHS = "9434765919"  # valid Modulus 11 (NHS Data Dictionary example)
NHS_2 = "9449305552"  # valid (used in the NW GMSA genomics examples)
NHS_BAD = "9434765918"  # wrong check digit

Fields = Mapping[int, str]


def seg(name: str, fields: Fields) -> str:
    """One segment with ``fields`` at their HL7 field numbers (MSH: numbering starts at MSH-3)."""
    if name == "MSH":
        top = max(fields, default=2)
        parts = ["MSH", "^~\\&"] + [fields.get(i, "") for i in range(3, top + 1)]
        return "|".join(parts)
    top = max(fields, default=0)
    return "|".join([name] + [fields.get(i, "") for i in range(1, top + 1)])


def msh(message_type: str, *, control_id: str = "MSG0001", when: str = "20260701120000", **more: str) -> str:
    fields = {
        3: "PAS",
        4: "RRV",
        5: "TIE",
        6: "RRV",
        7: when,
        9: message_type,
        10: control_id,
        11: "P",
        12: "2.5.1",
    }
    for key, value in more.items():
        fields[int(key.removeprefix("f"))] = value
    return seg("MSH", fields)


PID: dict[int, str] = {
    1: "1",
    3: f"{NHS}^^^NHS^NH~RRV1234567^^^RRV^MR",
    5: "SMITH^JOHN^PAUL DAVID^^MR~JONES^JOHN^^^^^M",
    7: "19800101",
    8: "M",
    11: "1 HIGH STREET^FLAT 2^LONDON^GREATER LONDON^NW1 2BU^GBR^H",
    13: "020 7946 0000^PRN^PH",
    16: "M",
    22: "A^White - British^NHSETHNIC",
}

PV1: dict[int, str] = {
    1: "1",
    2: "I",
    3: "WARD1^BAY2^BED3^RRV",
    4: "E",
    7: "C1234567^JONES^ANNA^^^DR^^^GMC",
    8: "G7654321^BROWN^TOM^^^DR^^^GMP",
    10: "MED",
    14: "19",
    17: "C1234567^JONES^ANNA^^^DR^^^GMC",
    19: "V0000123^^^RRV^VN",
    44: "20260701115500",
}


def message(*segments: str) -> bytes:
    return ("\r".join(segments) + "\r").encode("utf-8")


def adt(
    trigger: str = "A01",
    *,
    pid: Fields | None = None,
    pv1: Fields | None = None,
    evn: Fields | None = None,
    extra: tuple[str, ...] = (),
    before_pv1: tuple[str, ...] = (),
    control_id: str = "MSG0001",
    when: str = "20260701120000",
    msh_fields: Mapping[str, str] | None = None,
) -> bytes:
    """An ADT message; ``pid``/``pv1``/``evn`` replace the defaults field by field (``""`` empties one)."""
    pid_fields = {**PID, **(pid or {})}
    pv1_fields = {**PV1, **(pv1 or {})}
    evn_fields = {1: trigger, 2: when, **(evn or {})}
    segments = [
        msh(f"ADT^{trigger}", control_id=control_id, when=when, **(msh_fields or {})),
        seg("EVN", evn_fields),
        seg("PID", pid_fields),
        *before_pv1,
        seg("PV1", pv1_fields),
        *extra,
    ]
    return message(*segments)


def oru(*groups: str, pid: Fields | None = None, control_id: str = "LAB0001", pv1: bool = False) -> bytes:
    body = list(groups) or [
        "ORC|RE|ORD1^EPR|LAB1^LIMS",
        "OBR|1|ORD1^EPR|LAB1^LIMS|UE^Urea and electrolytes^EXAMPLE-TRUST-LAB|||20260115093000"
        + "|" * 18
        + "F",
        "OBX|1|NM|NA^Sodium^EXAMPLE-TRUST-LAB||140|mmol/L|133-146|N|||F",
    ]
    segments = [
        msh("ORU^R01^ORU_R01", control_id=control_id, when="20260115110500", f3="LIMS", f4="LAB"),
        seg("PID", {**PID, **(pid or {})}),
    ]
    if pv1:
        segments.append(seg("PV1", PV1))
    return message(*segments, *body)


def orm(*groups: str, control_id: str = "ORD0001") -> bytes:
    return message(
        msh("ORM^O01^ORM_O01", control_id=control_id, when="20260301090000", f3="EPR", f4="RRV"),
        seg("PID", PID),
        *groups,
    )


def mapped(raw: bytes, *, lineage: bool = True, strict: bool = False) -> Mapped[ClinicalEvent]:
    return map_bytes(raw, lineage=lineage, strict=strict)


def event(raw: bytes, *, strict: bool = False) -> ClinicalEvent:
    return map_bytes(raw, strict=strict).value


def canonical_leaves(model: BaseModel, prefix: str = "") -> list[str]:
    """Every populated leaf of a canonical model (``None`` and empty tuples skipped; defaults included)."""
    out: list[str] = []

    def walk(node: object, path: str) -> None:
        if isinstance(node, BaseModel):
            for name in type(node).model_fields:
                value = getattr(node, name)
                if value is None or value == ():
                    continue
                walk(value, f"{path}.{name}" if path else name)
        elif isinstance(node, tuple):
            for i, item in enumerate(node):
                walk(item, f"{path}[{i}]")
        else:
            out.append(path)

    walk(model, prefix)
    return out


def uncovered_leaves(result: Mapped[ClinicalEvent]) -> list[str]:
    return uncovered(canonical_leaves(result.value), result.lineage)


def entries_for(lineage: tuple[LineageEntry, ...], target: str) -> list[LineageEntry]:
    return [e for e in lineage if e.target == target]
