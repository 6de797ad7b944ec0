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
