from __future__ import annotations

import json
from typing import Any

import pytest

from shared.config.settings import Settings, get_settings, reset_settings
from shared.health import check_all
from shared.messaging.errors import BusUnavailable
from shared.wiring import build_container, get_container, telemetry_exporter


def test_default_container_is_embedded_and_files_appear_on_demand(tmp_path: Any) -> None:
    container = get_container()
    assert type(container.bus).__name__ == "SqliteBus"
    assert type(container.records).__name__ == "SqliteRecordStore"
    assert type(container.blobs).__name__ == "SqliteBlobStore"
    assert container.settings.bus_path.exists()
    assert get_container() is container


def test_azure_backends_are_selected_by_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIE_BUS_BACKEND", "azure")
    monkeypatch.setenv("ServiceBusConnection__fullyQualifiedNamespace", "example.servicebus.windows.net")
    monkeypatch.setenv("TIE_STORAGE_BACKEND", "azure")
    monkeypatch.setenv("TieStorage__emulatorConnectionString", "UseDevelopmentStorage=true")
    reset_settings()
    container = build_container(get_settings())  # constructing clients does not connect
    try:
        assert type(container.bus).__name__ == "ServiceBusMessageBus"
        assert type(container.records).__name__ == "AzureTableRecordStore"
        assert type(container.blobs).__name__ == "AzureBlobStore"
    finally:
        container.close()


def test_health_reports_each_dependency(container: Any) -> None:
    report = check_all(container)
    assert report.healthy
    assert set(report.as_dict()["checks"]) == {"messageBus", "recordStore", "blobStore"}


def test_health_reports_a_failing_dependency_without_details(container: Any) -> None:
    def broken() -> None:
        raise BusUnavailable("amqps://secret-host/ with token abc")

    container.bus.topology = broken
    report = check_all(container).as_dict()
    assert report["status"] == "unhealthy"
    assert report["checks"]["messageBus"] == {
        "status": "unhealthy",
        "backend": "embedded",
        "durationMs": report["checks"]["messageBus"]["durationMs"],
        "detail": "bus-unavailable",
    }
    assert "secret-host" not in json.dumps(report)


def test_health_endpoint_answers_503_when_unhealthy(container: Any) -> None:
    import azure.functions as func

    from functions.health import health

    def broken() -> None:
        raise BusUnavailable("down")

    container.bus.topology = broken
    res = health(func.HttpRequest("GET", "http://x/api/health", headers={}, body=b""))
    assert res.status_code == 503
    assert json.loads(res.get_body())["checks"]["messageBus"]["status"] == "unhealthy"


def test_telemetry_is_a_noop_without_connection_string() -> None:
    from shared.observability import telemetry

    assert telemetry_exporter(Settings()) is None
    assert telemetry.configure_telemetry(Settings(), telemetry_exporter(Settings())) is False


def test_telemetry_configures_azure_monitor_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.adapters.azure import monitor
    from shared.observability import telemetry

    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(
        monitor, "configure_azure_monitor_exporter", lambda cs, service_name: calls.append((cs, service_name))
    )
    monkeypatch.setattr(telemetry, "_configured", False)
    monkeypatch.setenv(
        "APPLICATIONINSIGHTS_CONNECTION_STRING", "InstrumentationKey=00000000-0000-0000-0000-000000000000"
    )
    reset_settings()
    settings = get_settings()
    assert telemetry.configure_telemetry(settings, telemetry_exporter(settings)) is True
    assert calls == [("InstrumentationKey=00000000-0000-0000-0000-000000000000", "serverless-tie")]
