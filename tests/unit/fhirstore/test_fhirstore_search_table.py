"""The search-parameter table is data (shared/fhirstore/search_parameters.json), validated at import."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from importlib import resources
from typing import Any

import pytest

from shared.fhirstore.search import (
    COMMON_PARAMETERS,
    SEARCH_PARAMETERS,
    SEARCH_PARAMETERS_FILE,
    SUPPORTED_TYPES,
    ParamType,
    SearchParameterTableError,
    capabilities,
    load_search_parameters,
)


def _shipped() -> dict[str, Any]:
    text = resources.files("shared.fhirstore").joinpath(SEARCH_PARAMETERS_FILE).read_text("utf-8")
    table: dict[str, Any] = json.loads(text)
    return table


def test_the_shipped_file_is_the_table_in_use() -> None:
    common, by_type = load_search_parameters(_shipped())
    assert common == COMMON_PARAMETERS
    assert by_type == SEARCH_PARAMETERS
    assert tuple(by_type) == SUPPORTED_TYPES
    assert SUPPORTED_TYPES[:2] == ("Patient", "Encounter")
    patient_org = SEARCH_PARAMETERS["Patient"]["organization"]
    assert (patient_org.type, patient_org.paths, patient_org.targets) == (
        ParamType.REFERENCE,
        ("managingOrganization",),
        ("Organization",),
    )


def test_the_capability_statement_lists_the_table() -> None:
    listed = {r["type"]: [p["name"] for p in r["searchParam"]] for r in capabilities()["rest"]["resource"]}
    table = _shipped()
    common = [entry["name"] for entry in table["common"]]
    assert listed == {
        rtype: common + [e["name"] for e in entries] for rtype, entries in table["resources"].items()
    }


def _entry(table: dict[str, Any], rtype: str, index: int) -> dict[str, Any]:
    entry: dict[str, Any] = table["resources"][rtype][index]
    return entry


# Patient[1] is "family" (string), Patient[8] is "organization" (reference to Organization).
_MALFORMED: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "unknown type",
        lambda t: _entry(t, "Patient", 1).update(type="strng"),
        "resources.Patient[1] (family): 'type'",
    ),
    (
        "no paths",
        lambda t: _entry(t, "Patient", 1).update(paths=[]),
        "resources.Patient[1] (family): 'paths'",
    ),
    (
        "bad path",
        lambda t: _entry(t, "Patient", 1).update(paths=["name..family"]),
        "Patient[1] (family): 'paths'",
    ),
    (
        "path not a string",
        lambda t: _entry(t, "Patient", 1).update(paths=[3]),
        "Patient[1] (family): 'paths'",
    ),
    ("missing name", lambda t: _entry(t, "Patient", 1).pop("name"), "resources.Patient[1]: 'name'"),
    (
        "bad name",
        lambda t: _entry(t, "Patient", 1).update(name="Family Name"),
        "resources.Patient[1]: 'name'",
    ),
    (
        "unknown key",
        lambda t: _entry(t, "Patient", 1).update(pathz=["x"]),
        "Patient[1] (family): unknown keys",
    ),
    ("no documentation", lambda t: _entry(t, "Patient", 1).pop("documentation"), "(family): 'documentation'"),
    (
        "targets on a string",
        lambda t: _entry(t, "Patient", 1).update(targets=["Patient"]),
        "(family): 'targets'",
    ),
    (
        "unknown target",
        lambda t: _entry(t, "Patient", 8).update(targets=["Nope"]),
        "Patient[8] (organization)",
    ),
    (
        "empty targets",
        lambda t: _entry(t, "Patient", 8).update(targets=[]),
        "Patient[8] (organization): 'targets'",
    ),
    (
        "entry not an object",
        lambda t: t["resources"]["Patient"].__setitem__(1, "family"),
        "resources.Patient[1]",
    ),
    (
        "duplicate name",
        lambda t: _entry(t, "Patient", 2).update(name="family"),
        "Patient[2] (family): name defined",
    ),
    (
        "shadows a common one",
        lambda t: _entry(t, "Patient", 1).update(name="_tag"),
        "Patient[1] (_tag): name defined",
    ),
    ("common _id missing", lambda t: t["common"].pop(0), "common: ['_id'] must be defined"),
    ("type with no parameters", lambda t: t["resources"].update(Patient=[]), "resources.Patient: must be"),
    (
        "bad type name",
        lambda t: t["resources"].update({"patient list": t["resources"]["Patient"]}),
        "resources:",
    ),
    (
        "unknown top-level key",
        lambda t: t.update(extra={}),
        "expected an object with 'common' and 'resources'",
    ),
]


@pytest.mark.parametrize(("label", "mutate", "message"), _MALFORMED, ids=[m[0] for m in _MALFORMED])
def test_a_malformed_entry_is_refused_naming_it(
    label: str, mutate: Callable[[dict[str, Any]], None], message: str
) -> None:
    table = copy.deepcopy(_shipped())
    assert _entry(table, "Patient", 1)["name"] == "family"
    assert _entry(table, "Patient", 8)["name"] == "organization"
    mutate(table)
    with pytest.raises(SearchParameterTableError) as caught:
        load_search_parameters(table)
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"{SEARCH_PARAMETERS_FILE}:")
