"""systems.py helpers and registries."""

from __future__ import annotations

import pytest

from shared.terminology import systems as s


def test_v2_table_system() -> None:
    assert s.v2_table_system("0001") == "http://terminology.hl7.org/CodeSystem/v2-0001"
    assert s.v2_table_system("0203") == s.V2_0203_IDENTIFIER_TYPE


@pytest.mark.parametrize("bad", ["1", "001", "00001", "HL70001", "000a", ""])
def test_v2_table_system_rejects_unpadded_ids(bad: str) -> None:
    with pytest.raises(ValueError, match="four digits"):
        s.v2_table_system(bad)


def test_known_code_system() -> None:
    assert s.is_known_code_system(s.SNOMED_CT)
    assert s.is_known_code_system("http://terminology.hl7.org/CodeSystem/v2-0360")
    assert not s.is_known_code_system("http://terminology.hl7.org/CodeSystem/v2-0360x")
    assert not s.is_known_code_system("http://terminology.hl7.org/CodeSystem/v2-")
    assert not s.is_known_code_system(s.NHS_NUMBER)  # an identifier system, not a code system


def test_registries_do_not_overlap_and_are_absolute_uris() -> None:
    assert not (s.CODE_SYSTEMS & s.IDENTIFIER_SYSTEMS)
    assert not (s.CODE_SYSTEMS & s.EXTENSIONS)
    for uri in s.CODE_SYSTEMS | s.IDENTIFIER_SYSTEMS | s.EXTENSIONS:
        assert uri.startswith(("http://", "https://", "urn:")) and uri == uri.strip()
        assert not uri.endswith("/")


def test_every_uri_constant_is_registered() -> None:
    registered = s.CODE_SYSTEMS | s.IDENTIFIER_SYSTEMS | s.EXTENSIONS
    constants = {
        name: value
        for name, value in vars(s).items()
        if name.isupper() and isinstance(value, str) and not name.endswith("_BASE")
    }
    assert constants
    assert {n for n, v in constants.items() if v not in registered} == set()


def test_local_lab_system_is_under_the_local_base() -> None:
    assert s.LOCAL_LAB.startswith(s.LOCAL_CODE_SYSTEM_BASE)
    assert "example" in s.LOCAL_CODE_SYSTEM_BASE  # obviously not a real trust's namespace
