from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shared.config.settings import Backend, Settings, get_settings, reset_settings, setting_names
from shared.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]


def test_every_setting_the_code_reads_is_in_the_sample() -> None:
    missing = [name for name in setting_names() if name not in SAMPLE]
    assert not missing, f"add to local.settings.sample.json: {missing}"


def test_every_setting_name_used_in_code_is_declared() -> None:
    """App-setting names referenced as string literals in code must be fields of Settings (or Functions')."""
    functions_runtime = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage", "AzureWebJobsFeatureFlags"}
    declared = set(setting_names()) | functions_runtime | {"TIE_LOCAL_HOST", "TIE_HTTP_PORT"}
    pattern = re.compile(r"""environ(?:\.get)?\(?\[?["']([A-Za-z_][A-Za-z0-9_]*)["']""")
    used: set[str] = set()
    for folder in ("shared", "functions", "function_app.py"):
        for path in (ROOT / folder).rglob("*.py") if (ROOT / folder).is_dir() else [ROOT / folder]:
            used.update(pattern.findall(path.read_text()))
    assert used - declared == set()


def test_sample_holds_no_secrets() -> None:
    text = (ROOT / "local.settings.sample.json").read_text()
    for marker in ("AccountKey=", "SharedAccessKey", "InstrumentationKey=", "password", "client_secret"):
        assert marker.lower() not in text.lower()


def test_azure_services_use_identity_based_connections() -> None:
    assert "ServiceBusConnection__fullyQualifiedNamespace" in SAMPLE
    assert not any(k.endswith("ConnectionString") and SAMPLE[k] for k in SAMPLE)


def test_defaults_are_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings()
    assert s.bus_backend is Backend.EMBEDDED and s.storage_backend is Backend.EMBEDDED
    assert s.bus_path.name == "bus.sqlite3"


def test_azure_bus_without_namespace_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIE_BUS_BACKEND", "azure")
    reset_settings()
    with pytest.raises(ConfigurationError):
        get_settings()


def test_emulator_connection_string_rejects_real_accounts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIE_STORAGE_BACKEND", "azure")
    monkeypatch.setenv(
        "TieStorage__emulatorConnectionString",
        "DefaultEndpointsProtocol=https;AccountName=prod;EndpointSuffix=core.windows.net",
    )
    reset_settings()
    with pytest.raises(ConfigurationError):
        get_settings()


def test_blank_values_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPLICATIONINSIGHTS_CONNECTION_STRING", "  ")
    reset_settings()
    assert get_settings().applicationinsights_connection_string is None


def test_settings_are_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    first = get_settings()
    monkeypatch.setenv("TIE_LOG_LEVEL", "DEBUG")
    assert get_settings() is first
    reset_settings()
    assert get_settings().log_level == "DEBUG"
