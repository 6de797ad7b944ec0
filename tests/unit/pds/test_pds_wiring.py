"""Composition: which write-back downstreams the identity gate wraps."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config.settings import get_settings, reset_settings
from shared.pds.gate import IdentityGate
from shared.wiring import build_container, build_identity_gates, build_pds_client


class Plain:
    def __init__(self, name: str) -> None:
        self.name = name


@pytest.mark.parametrize(
    ("setting", "gated"),
    [("", set()), ("fhir", {"writeback-fhir"}), ("fhir, hl7v2", {"writeback-fhir", "writeback-hl7v2"})],
)
def test_gates_follow_the_per_downstream_setting(
    monkeypatch: pytest.MonkeyPatch, pds_corpus: Path, setting: str, gated: set[str]
) -> None:
    monkeypatch.setenv("TIE_PDS_VERIFY_DOWNSTREAMS", setting)
    monkeypatch.setenv("TIE_PDS_CORPUS_DIR", str(pds_corpus))
    reset_settings()
    container = build_container(get_settings())
    try:
        downstreams = {"writeback-fhir": Plain("fhir"), "writeback-hl7v2": Plain("hl7v2")}
        out = build_identity_gates(container, downstreams)  # type: ignore[arg-type]
        assert {k for k, v in out.items() if isinstance(v, IdentityGate)} == gated
    finally:
        container.close()


def test_http_backend_needs_a_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.errors import ConfigurationError

    monkeypatch.setenv("TIE_PDS_BACKEND", "http")
    reset_settings()
    with pytest.raises(ConfigurationError):
        build_pds_client(get_settings())


@pytest.mark.parametrize(
    ("env", "expected", "asked"),
    [
        ({"TIE_PDS_BACKEND": "http", "TIE_PDS_BASE_URL": "https://pds.invalid/FHIR/R4"}, "from-broker", True),
        (
            {
                "TIE_PDS_BACKEND": "http",
                "TIE_PDS_BASE_URL": "https://pds.invalid/FHIR/R4",
                "TIE_PDS_ACCESS_TOKEN": "static",
            },
            "static",
            False,
        ),
        ({}, None, False),  # the stand-in needs no token
    ],
)
def test_token_source_choice(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str | None, asked: bool
) -> None:
    from shared.pds.auth import StaticTokenSource

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_settings()
    calls: list[str] = []

    def broker() -> StaticTokenSource:
        calls.append("pds")
        return StaticTokenSource("from-broker")

    client = build_pds_client(get_settings(), broker)
    assert client._tokens.token() == expected  # type: ignore[attr-defined]
    assert bool(calls) is asked
