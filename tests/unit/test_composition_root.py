"""One composition root: ``shared.wiring.Container`` builds each object once; a new container, new objects."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest

from shared.adapters.embedded.sqlite_bus import SqliteBus
from shared.backbone.runtime import build_backbone
from shared.config.settings import get_settings, reset_settings
from shared.errors import ConfigurationError
from shared.messaging.topology import SUB_WRITEBACK_FHIR, TOPIC_CLINICAL, TOPOLOGY, TopicSpec
from shared.wiring import Container, build_blobs, build_container, build_records, get_container, set_container


def test_each_built_object_is_built_once_per_container(container: Container) -> None:
    for name in ("backbone", "fhir_api", "topology", "audit", "credentials", "fhir"):
        assert getattr(container, name) is getattr(container, name), name
    assert get_container() is container
    assert container.fhir_api.repository is container.fhir


def test_a_new_container_means_new_objects_and_closing_it_closes_them(container: Container) -> None:
    first_backbone, first_api = container.backbone, container.fhir_api
    replacement = build_container(get_settings())
    set_container(replacement)
    try:
        assert get_container().backbone is not first_backbone
        assert get_container().fhir_api is not first_api
        assert get_container().fhir_api.repository is replacement.fhir
    finally:
        set_container(container)
        replacement.close()
    assert first_backbone._closables, "the first container's backbone is still open"
    container.close()
    assert first_backbone._closables == []  # Backbone.close ran


def test_an_installed_backbone_is_used_and_closed_by_the_container(container: Container) -> None:
    closed: list[str] = []
    backbone = build_backbone(bus=container.bus, records=container.records, downstreams={})
    backbone._closables.append(lambda: closed.append("closed"))
    container.use_backbone(backbone)
    assert container.backbone is backbone
    with pytest.raises(ConfigurationError):
        container.use_backbone(backbone)
    container.close()
    assert closed == ["closed"]


def _short_locks() -> tuple[TopicSpec, ...]:
    """The declared topology with 5 s locks on clinical-events, plus a topic nobody declared."""
    short = tuple(
        dataclasses.replace(
            t,
            subscriptions=tuple(
                dataclasses.replace(s, lock_duration=timedelta(seconds=5), max_delivery_count=2)
                for s in t.subscriptions
            ),
        )
        if t.name == TOPIC_CLINICAL
        else t
        for t in TOPOLOGY
    )
    return (*short, TopicSpec("undeclared", ()))


def test_topology_comes_from_the_bus_port(tmp_path: Path) -> None:
    settings = get_settings()
    bus = SqliteBus(tmp_path / "bus.db", _short_locks())
    built = Container(settings, bus, build_records(settings), build_blobs(settings))
    try:
        topics = {t.name: t for t in built.topology}
        assert set(topics) == {t.name for t in TOPOLOGY}
        declared = {s.name: s for t in TOPOLOGY for s in t.subscriptions}
        for sub in topics[TOPIC_CLINICAL].subscriptions:
            assert (sub.lock_duration, sub.max_delivery_count) == (timedelta(seconds=5), 2)
            assert sub.filter == declared[sub.name].filter
        assert any(s.name == SUB_WRITEBACK_FHIR for s in topics[TOPIC_CLINICAL].subscriptions)
        other = [t for t in TOPOLOGY if t.name != TOPIC_CLINICAL]
        assert [topics[t.name] for t in other] == other
    finally:
        built.close()


def test_service_bus_reports_the_declared_topology(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIE_BUS_BACKEND", "azure")
    monkeypatch.setenv("ServiceBusConnection__fullyQualifiedNamespace", "example.servicebus.windows.net")
    reset_settings()
    built = build_container(get_settings())  # constructing the client does not connect
    try:
        assert type(built.bus).__name__ == "ServiceBusMessageBus"
        assert built.topology == TOPOLOGY
    finally:
        built.close()
