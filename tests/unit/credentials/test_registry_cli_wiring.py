"""The downstream registry (validated data), ``tie downstreams`` / ``tie certs``, the composition root and the
certificate expiry timer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.config.settings import get_settings, reset_settings
from shared.credentials.errors import RegistryInvalid
from shared.credentials.registry import load_registry, parse_registry
from shared.messaging.topology import SUB_PLATFORM_AUDIT, TOPIC_PLATFORM
from tie.cli import main

SAMPLE = load_registry()


def test_the_sample_registry_lists_every_downstream_with_references_only() -> None:
    assert [d.name for d in SAMPLE] == ["fhir-writeback", "hl7-writeback", "mesh", "mllp-listener", "pds"]
    assert SAMPLE.certificate_names("local") == {
        "tie-fhir-client",
        "tie-mllp-client",
        "tie-mllp-server",
        "tie-mesh-client",
        "tie-local-ca",
    }
    assert SAMPLE.get("pds").credential is not None and SAMPLE.get("pds").credential.kind == "key"


def _entry(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "pas",
        "direction": "outbound",
        "transport": "mllp",
        "message_format": "HL7 v2",
        "format_version": "2.5.1",
        "auth": "mtls",
        "owner": "tests",
        "credential": {"kind": "certificate", "names": {"local": "client"}},
        "endpoints": {"local": "mllps://127.0.0.1:2576"},
    }
    base.update(overrides)
    return base


# (change to a valid entry, text the error must name)
INVALID = [
    ({"auth": "mtls", "credential": None}, "auth mtls needs a credential of kind certificate"),
    ({"auth": "network-only"}, "network-only takes no credential"),
    ({"auth": "api-key"}, "auth api-key needs a credential of kind secret"),
    ({"endpoints": {"local": "tcp://secret-host:1"}}, "mllp endpoints are mllp://host:port"),
    ({"credential": {"kind": "certificate", "names": {"local": "../../etc/passwd"}}}, "credential names"),
    ({"auth": "basic"}, "downstreams.0.auth"),
    ({"password": "hunter2"}, "downstreams.0.password: Extra inputs are not permitted"),
    (
        {"credential": {"kind": "certificate", "names": {"staging": "x"}}},
        "downstreams.0.credential.names.staging",
    ),
]


@pytest.mark.parametrize(("change", "named"), INVALID)
def test_an_invalid_registry_is_refused_naming_the_rule_never_the_value(
    change: dict[str, Any], named: str
) -> None:
    with pytest.raises(RegistryInvalid) as caught:
        parse_registry({"version": "1.0", "downstreams": [_entry(**change)]})
    assert named in str(caught.value)
    assert "hunter2" not in str(caught.value) and "secret-host" not in str(caught.value)
    assert "passwd" not in str(caught.value)


def test_duplicate_names_and_unknown_versions_are_refused() -> None:
    with pytest.raises(RegistryInvalid, match="unique"):
        parse_registry({"version": "1.0", "downstreams": [_entry(), _entry()]})
    with pytest.raises(RegistryInvalid, match="version"):
        parse_registry({"version": "2.0", "downstreams": []})


def test_start_up_validates_the_configured_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shared.bootstrap as bootstrap

    bad = tmp_path / "downstreams.json"
    bad.write_text(json.dumps({"version": "1.0", "downstreams": [_entry(auth="network-only")]}))
    monkeypatch.setenv("TIE_DOWNSTREAMS_FILE", str(bad))
    monkeypatch.setattr(bootstrap, "_done", False)
    monkeypatch.setattr(bootstrap, "configure_logging", lambda *a, **k: None)
    monkeypatch.setattr(bootstrap, "configure_telemetry", lambda *a, **k: None)
    reset_settings()
    with pytest.raises(RegistryInvalid, match=r"downstreams\.json"):
        bootstrap.bootstrap()


def test_tie_downstreams_prints_the_inventory_without_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["downstreams", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"]: r["credential"] for r in rows}["hl7-writeback"] == "certificate:tie-mllp-client"
    assert main(["downstreams"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == [
        "name",
        "direction",
        "transport",
        "format",
        "auth",
        "credential",
        "endpoint",
        "owner",
    ]


def test_tie_certs_init_local_then_list_then_check(
    capsys: pytest.CaptureFixture[str], container: Any
) -> None:
    assert main(["certs", "--json"]) == 0
    assert {r["band"] for r in json.loads(capsys.readouterr().out)} == {"credential-not-found"}
    assert main(["certs", "init-local"]) == 0
    assert "wrote 5 certificates" in capsys.readouterr().out
    assert main(["certs", "init-local"]) == 1  # never silently replaced
    capsys.readouterr()
    assert main(["certs", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["certificate"] for r in rows][
        -1
    ] == "tie-local-ca"  # sorted by days left (the CA lasts longest)
    assert all(r["source"] == "local" and r["days"] != "-" for r in rows)
    assert "PRIVATE" not in json.dumps(rows)
    assert main(["certs", "check"]) == 0
    assert container.bus.peek(TOPIC_PLATFORM, SUB_PLATFORM_AUDIT) == []  # a year left: nothing to announce
    assert main(["certs", "init-local", "--force", "--days", "20"]) == 0
    assert main(["certs", "check"]) == 0
    out = capsys.readouterr().out
    announced = [line for line in out.splitlines() if line.startswith("announced:")]
    assert len(announced) == 4 and all(line.endswith(" 30d") for line in announced)
    notices = container.bus.peek(TOPIC_PLATFORM, SUB_PLATFORM_AUDIT, max_messages=50)
    assert len(notices) == 4
    assert main(["certs", "check"]) == 0 and "announced:" not in capsys.readouterr().out


def test_the_container_wires_the_local_provider_and_audit_trail(container: Any) -> None:
    from shared.adapters.embedded.local_credentials import LocalCredentialProvider
    from shared.credentials.audit import TrailCredentialAudit

    broker = container.credentials
    assert isinstance(broker.provider, LocalCredentialProvider)
    assert broker.provider.root == get_settings().local_dir / "credentials"
    assert isinstance(broker.audit, TrailCredentialAudit)
    assert broker.environment == "local"


def test_azure_credentials_need_a_vault_and_use_the_key_vault_adapter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shared.adapters.azure.keyvault import KeyVaultCredentialProvider
    from shared.config.settings import Settings
    from shared.wiring import build_credential_provider

    with pytest.raises(ValueError, match="TIE_KEY_VAULT_URI"):
        Settings(TIE_CREDENTIALS_BACKEND="azure")  # type: ignore[call-arg]
    settings = Settings(
        TIE_CREDENTIALS_BACKEND="azure",
        TIE_KEY_VAULT_URI="https://tie-kv.vault.azure.net/",  # type: ignore[call-arg]
    )
    monkeypatch.setattr("shared.wiring._credential", lambda s: object())
    provider = build_credential_provider(settings)
    assert isinstance(provider, KeyVaultCredentialProvider)


def test_the_certificate_expiry_timer_is_registered_every_six_hours(container: Any) -> None:
    from azure.functions.timer import TimerRequest

    from functions.certificates import certificate_expiry
    from shared.credentials import selfsigned
    from tie.localhost.discovery import describe, load_app

    [spec] = [f for f in describe(load_app("function_app")) if f.name == "certificate_expiry"]
    assert (spec.kind, spec.schedule, spec.use_monitor) == ("timer", "0 5 */6 * * *", False)

    from datetime import UTC, datetime

    now = datetime.now(UTC)
    ca = selfsigned.make_ca("ca", now=now)
    selfsigned.write(
        get_settings().local_dir / "credentials",
        "tie-mllp-client",
        selfsigned.issue(ca, "c", now=now, days=3),
    )
    certificate_expiry(TimerRequest(past_due=False))
    [message] = container.bus.peek(TOPIC_PLATFORM, SUB_PLATFORM_AUDIT)
    body = json.loads(message.body)
    assert body["type"] == "uk.nhs.tie.platform.certificate.expiring"
    assert (body["data"]["certificate"], body["data"]["band"]) == ("tie-mllp-client", "7d")
