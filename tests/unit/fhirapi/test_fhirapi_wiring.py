"""FHIR settings and wiring: the embedded store by default (opened on first use), AHDS when configured, and
the API configured from the settings."""

from __future__ import annotations

import pytest

from shared.config.settings import get_settings, reset_settings
from shared.errors import ConfigurationError
from shared.wiring import build_container, get_container, set_container


def test_embedded_fhir_store_is_opened_on_first_use() -> None:
    container = get_container()
    path = container.settings.fhir_path
    assert path.name == "fhir.sqlite3" and not path.exists()
    assert type(container.fhir).__name__ == "SqliteFhirRepository"
    assert path.exists() and container.fhir is container.fhir


def test_azure_fhir_backend_needs_a_service_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIE_FHIR_BACKEND", "azure")
    reset_settings()
    with pytest.raises(ConfigurationError):
        get_settings()
    monkeypatch.setenv("TieFhir__serviceUrl", "tie-fhir.example")
    reset_settings()
    with pytest.raises(ConfigurationError):
        get_settings()
    monkeypatch.setenv("TieFhir__serviceUrl", "https://ws-fhir.fhir.azurehealthcareapis.com")
    reset_settings()
    container = build_container(get_settings())  # constructing the client does not connect
    try:
        repo = container.fhir
        assert type(repo).__name__ == "AhdsFhirRepository"
        assert repo.base_url == "https://ws-fhir.fhir.azurehealthcareapis.com"  # type: ignore[attr-defined]
    finally:
        container.close()


def test_api_is_configured_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIE_FHIR_BASE_URL", "https://gw.example/tie/fhir")
    monkeypatch.setenv("TIE_REQUIRE_APIM_HEADER", "true")
    monkeypatch.setenv("TIE_APIM_HEADER_NAME", "X-Gw")
    monkeypatch.setenv("TIE_HTTP_MAX_BODY_BYTES", "4096")
    reset_settings()
    container = build_container(get_settings())
    try:
        config = container.fhir_api.config
        assert config.base_url == "https://gw.example/tie/fhir" and config.require_gateway_header
        assert config.gateway_header == "X-Gw" and config.max_body_bytes == 4096
    finally:
        container.close()


def test_functions_use_the_current_container() -> None:
    first = get_container().fhir_api
    assert get_container().fhir_api is first
    replacement = build_container(get_settings())
    previous = set_container(replacement)
    try:
        current = get_container().fhir_api
        assert current is not first and current.repository is replacement.fhir
    finally:
        set_container(previous)
        replacement.close()
