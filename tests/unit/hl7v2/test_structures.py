from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from shared.hl7v2.structures import (
    SUPPORTED_EVENTS,
    GroupRef,
    SegmentRef,
    available_versions,
    load_structures,
    parse_version,
    resolve_structure,
    structures_for,
)

REPO = Path(__file__).resolve().parents[3]
STRUCTURES_DIR = REPO / "shared" / "hl7v2" / "structures"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_hl7_structures", REPO / "tools" / "gen_hl7_structures.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_checked_in_json_matches_generator() -> None:
    pytest.importorskip("hl7apy")
    gen = _generator()
    assert set(available_versions()) == set(gen.VERSIONS)
    for version in gen.VERSIONS:
        path = STRUCTURES_DIR / gen.file_name(version)
        assert path.read_text(encoding="utf-8") == gen.render(gen.build(version)), (
            f"{path.name} is stale: run tools/gen_hl7_structures.py"
        )


def test_generator_check_mode_detects_drift(tmp_path: Path) -> None:
    pytest.importorskip("hl7apy")
    gen = _generator()
    assert gen.main(["--out", str(tmp_path)]) == 0
    assert gen.main(["--check", "--out", str(tmp_path)]) == 0
    victim = tmp_path / gen.file_name("2.5.1")
    document = json.loads(victim.read_text(encoding="utf-8"))
    document["events"]["ADT^A01"] = "ADT_A02"
    victim.write_text(json.dumps(document), encoding="utf-8")
    assert gen.main(["--check", "--out", str(tmp_path)]) == 1


@pytest.mark.parametrize("version", ["2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8"])
def test_every_supported_trigger_resolves(version: str) -> None:
    for event in sorted(SUPPORTED_EVENTS):
        message_type, trigger = event.split("^")
        resolved = resolve_structure(message_type, trigger, version)
        assert resolved is not None, event
        definitions, structure_id = resolved
        root = definitions.structures[structure_id]
        assert isinstance(root, GroupRef)
        first = root.children[0]
        assert isinstance(first, SegmentRef)
        assert (first.name, first.min, first.max) == ("MSH", 1, 1)
    resolved_ack = resolve_structure("ACK", "A01", version)
    assert resolved_ack is not None
    assert resolved_ack[1] == "ACK"


@pytest.mark.parametrize(
    ("event", "version", "structure"),
    [
        ("ADT^A04", "2.5.1", "ADT_A01"),
        ("ADT^A08", "2.5.1", "ADT_A01"),
        ("ADT^A13", "2.5.1", "ADT_A01"),
        ("ADT^A05", "2.5.1", "ADT_A05"),
        ("ADT^A28", "2.5.1", "ADT_A05"),
        ("ADT^A31", "2.4", "ADT_A05"),
        ("ADT^A31", "2.3", "ADT_A01"),  # ADT_A05 appeared in v2.4
        ("ADT^A11", "2.5.1", "ADT_A09"),
        ("ADT^A12", "2.5.1", "ADT_A12"),
        ("ADT^A12", "2.3", "ADT_A12"),
        ("ADT^A12", "2.4", "ADT_A09"),  # hl7apy's v2.4 has no ADT_A12: the same segments as ADT_A09
        ("ADT^A40", "2.5.1", "ADT_A39"),
        ("ADT^A02", "2.5.1", "ADT_A02"),
        ("ADT^A03", "2.5.1", "ADT_A03"),
        ("ORU^R01", "2.5.1", "ORU_R01"),
    ],
)
def test_trigger_to_structure(event: str, version: str, structure: str) -> None:
    message_type, trigger = event.split("^")
    resolved = resolve_structure(message_type, trigger, version)
    assert resolved is not None
    assert resolved[1] == structure


def test_unsupported_events_do_not_resolve() -> None:
    assert resolve_structure("ADT", "A17", "2.5.1") is None
    assert resolve_structure("SIU", "S12", "2.5.1") is None
    assert resolve_structure("ADT", None, "2.5.1") is None


@pytest.mark.parametrize(
    ("message_version", "chosen"),
    [("2.5.1", "2.5.1"), ("2.8.2", "2.8"), ("2.7.1", "2.7"), ("2.2", "2.3"), ("2.1", "2.3"), ("2.9", "2.8")],
)
def test_version_fallback(message_version: str, chosen: str) -> None:
    assert structures_for(message_version).version == chosen


def test_orm_falls_back_to_last_version_that_defines_it() -> None:
    assert "ORM^O01" not in load_structures("2.7").events
    resolved = resolve_structure("ORM", "O01", "2.7")
    assert resolved is not None
    assert resolved[0].version == "2.6"


def test_field_definitions() -> None:
    v251 = load_structures("2.5.1")
    pid3 = v251.field("PID", 3)
    assert pid3 is not None
    assert (pid3.datatype, pid3.required, pid3.repeating) == ("CX", True, True)
    pid8 = v251.field("PID", 8)
    assert pid8 is not None
    assert pid8.table == "HL70001"
    msh7 = v251.field("MSH", 7)
    assert msh7 is not None
    assert msh7.datatype == "TS"
    assert msh7.required
    assert v251.field("PID", 999) is None
    assert v251.field("ZZZ", 1) is None
    # v2.7 replaced TS by DTM
    msh7_v27 = load_structures("2.7").field("MSH", 7)
    assert msh7_v27 is not None
    assert msh7_v27.datatype == "DTM"
    for segment in ("MSH", "EVN", "PID", "PV1", "MRG", "OBR", "OBX", "ORC", "MSA", "ERR"):
        fields = v251.segments[segment]
        assert [f.seq for f in fields] == list(range(1, len(fields) + 1))


def test_choice_group_in_orm() -> None:
    v251 = load_structures("2.5.1")
    root = v251.structures["ORM_O01"]

    def groups(node: GroupRef) -> list[GroupRef]:
        out = [node]
        for child in node.children:
            if isinstance(child, GroupRef):
                out.extend(groups(child))
        return out

    choices = [g for g in groups(root) if g.kind == "choice"]
    assert len(choices) == 1
    assert {c.name for c in choices[0].children if isinstance(c, SegmentRef)} >= {"OBR", "RXO"}


def test_tables() -> None:
    assert load_structures("2.5.1").tables["HL70001"].values == frozenset("AFMNOU")
    assert load_structures("2.3").tables["HL70001"].values == frozenset("FMOU")
    for version in available_versions():
        tables = load_structures(version).tables
        assert tables["HL70103"].values == frozenset("DPT")
        assert tables["HL70155"].values == {"AL", "ER", "NE", "SU"}
        assert tables["HL70008"].values == {"AA", "AE", "AR", "CA", "CE", "CR"}


def test_load_unknown_version() -> None:
    with pytest.raises(KeyError):
        load_structures("9.9")


def test_parse_version() -> None:
    assert parse_version("2.5.1") == (2, 5, 1)
    assert parse_version(" 2.4 ") == (2, 4)
    assert parse_version("2.x") is None
    assert parse_version("") is None


def test_datatype_components() -> None:
    v251 = load_structures("2.5.1")
    assert v251.datatypes["CE"] == ("ST", "ST", "ID", "ST", "ST", "ID")
    assert v251.datatypes["CX"][3] == "HD"
    assert len(v251.datatypes["HD"]) == 3
    assert {"ST", "NM", "ID", "IS", "DT", "DTM", "TM", "SI", "TX", "FT"} <= v251.primitive_datatypes
    assert "CE" not in v251.primitive_datatypes and "NM" not in v251.datatypes
    assert len(load_structures("2.8").datatypes["CWE"]) == 22
    for version in available_versions():  # arrays have no fixed arity and are left out
        assert not {"MA", "NA"} & set(load_structures(version).datatypes)
