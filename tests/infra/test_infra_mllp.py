"""MLLP in Azure (issue 13, finding 6): the listener container (Dockerfile, checked statically - Docker is not
available here), its entry point (run for real against the embedded adapters), and its Container Apps
hosting (internal environment, TCP ingress, scale rule, managed identity, TLS from Key Vault)."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from shared.config.settings import Settings
from shared.credentials.registry import load_registry
from shared.ingest.mllp_listener import LISTENER_ENTRY
from shared.mllp.client import read_msa, send_message
from tests.infra import bicep_ast as b

DOCKERFILE = b.ROOT / "Dockerfile"
DOCKERIGNORE = b.ROOT / ".dockerignore"
LISTENER = b.INFRA / "mllp" / "listener.py"
MLLP = b.load(b.MODULES / "mllp.bicep")
MAIN = b.load(b.MAIN)


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


# -- the image --


def test_base_image_is_pinned() -> None:
    steps = _instructions()
    args = dict(a.split("=", 1) for k, a in steps if k == "ARG" and "=" in a)
    images = [args.get(a.strip("${}"), a) for k, a in steps if k == "FROM" for a in [a.split()[0]]]
    assert images, "no FROM"
    for image in images:
        # A digest, or at least an exact patch version (never latest / a bare minor tag).
        assert "@sha256:" in image or re.fullmatch(r"python:3\.11\.\d+-slim-\w+", image), image


def test_image_runs_the_listener_as_a_non_root_user_without_secrets() -> None:
    steps = _instructions()
    users = [a for k, a in steps if k == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and int(users[-1].split(":")[0]) >= 10000
    entry = [a for k, a in steps if k == "ENTRYPOINT"]
    assert entry == ['["python", "/app/infra/mllp/listener.py"]']
    env = " ".join(a for k, a in steps if k in ("ENV", "ARG"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env, "read-only root filesystem: no bytecode written"
    assert not re.search(r"(?i)(secret|password|key|token|connectionstring)\w*=", env)
    copies = [a.split()[-2] for k, a in steps if k == "COPY" and "--from" not in a]
    assert copies == ["requirements.lock", "shared/", "infra/mllp/listener.py"]
    (install,) = [a for k, a in steps if k == "RUN" and "pip install" in a]
    assert "--require-hashes -r requirements.lock" in install, "installs from the hashed lock only"
    assert [a for k, a in steps if k == "EXPOSE"] == [str(b.literal(MAIN.params()["mllpPort"].default))]
    ignore = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and line[0] != "#"
    ]
    assert ignore[0] == "*", "the build context admits only what is listed"
    assert {line for line in ignore if line.startswith("!")} == {
        "!requirements.lock",
        "!shared/",
        "!infra/mllp/listener.py",
    }


# -- the entry point, for real --


@pytest.fixture
def listener(tmp_path: Path) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIE_", "ServiceBus", "TieStorage"))}
    env.update(
        {
            "TIE_LOCAL_DIR": str(tmp_path),
            "TIE_MLLP_HOST": "127.0.0.1",
            "TIE_MLLP_PORT": "0",
            "TIE_LOG_LEVEL": "WARNING",
        }
    )
    proc = subprocess.Popen(
        [sys.executable, str(LISTENER)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or []], daemon=True).start()
    try:
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def test_listener_acks_a_message_and_stops_cleanly_on_sigterm(listener: Any) -> None:
    proc, lines = listener
    banner = lines.get(timeout=60)  # generous: start-up only has to happen, not be fast
    match = re.match(r"MLLP listener: 127\.0\.0\.1:(\d+) \(plain TCP, embedded bus\)", banner)
    assert match, banner
    message = (b.ROOT / "samples" / "oru-r01.hl7").read_bytes().replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    ack = read_msa(send_message("127.0.0.1", int(match.group(1)), message, timeout=30))
    assert ack.code == "AA"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


# -- hosting on Container Apps --


def _one(type_: str) -> b.Declaration:
    (decl,) = MLLP.resources(type_)
    return decl


def test_listener_runs_in_an_internal_environment_with_tcp_ingress() -> None:
    environment = _one("Microsoft.App/managedEnvironments")
    assert b.literal(environment.get("properties.vnetConfiguration.internal")) is True
    assert b.text(environment.get("properties.vnetConfiguration.infrastructureSubnetId")) == "subnetId"
    app = _one("Microsoft.App/containerApps")
    ingress = "properties.configuration.ingress"
    assert b.literal(app.get(f"{ingress}.external")) is False
    assert b.literal(app.get(f"{ingress}.transport")) == "tcp"
    assert b.text(app.get(f"{ingress}.targetPort")) == b.text(app.get(f"{ingress}.exposedPort")) == "port"
    assert "allowedSourcePrefixes" in b.text(app.get(f"{ingress}.ipSecurityRestrictions"))
    (call,) = [m for m in MAIN.modules() if m.symbol == "mllp"]
    assert b.text(call.get("params.subnetId")) == "network.outputs.mllpSubnetId"
    assert b.text(call.get("params.allowedSourcePrefixes")) == "mllpSourcePrefixes"
    network = b.load(b.MODULES / "network.bicep")
    assert "serviceName: 'Microsoft.App/environments'" in b.text(
        network.resources("Microsoft.Network/virtualNetworks")[0].node
    )
    rules = b.text(network.variables()["mllpRules"])
    assert "sourceAddressPrefixes: mllpSourcePrefixes" in rules and "access: 'Deny'" in rules


def test_listener_scales_on_connections_and_never_to_zero() -> None:
    app = _one("Microsoft.App/containerApps")
    scale = "properties.template.scale"
    assert b.text(app.get(f"{scale}.minReplicas")) == "minReplicas"
    assert MLLP.params()["minReplicas"].decorator_args("minValue") is not None
    assert b.literal(MLLP.params()["minReplicas"].decorator_args("minValue")[0]) >= 1  # type: ignore[index]
    rules = b.text(app.get(f"{scale}.rules"))
    assert "tcp: {" in rules and "concurrentConnections" in rules
    assert b.text(MAIN.params()["mllpMinReplicas"].default) == "environmentName == 'prod' ? 2 : 1"


SPEC = json.loads((b.BICEP_DIR / "config" / "app-settings.json").read_text())
ROLES = json.loads((b.BICEP_DIR / "config" / "roles.json").read_text())
SAMPLES = {
    "environmentName": "prod",
    "appIdentityClientId": "00000000-0000-0000-0000-000000000001",
    "serviceBusFqdn": "sb-tie-prod-uks-12345.servicebus.windows.net",
    "dataTableServiceUri": "https://sttieprodd12345.table.core.windows.net/",
    "dataBlobServiceUri": "https://sttieprodd12345.blob.core.windows.net/",
    "keyVaultUri": "https://kv-tie-prod-12345.vault.azure.net/",
    "appInsightsAuthenticationString": "ClientId=x;Authorization=AAD",
}


def _container_settings(tls_mode: str, environment: str) -> Settings:
    """The container's environment as mllp.bicep renders it from "mllpListener", with plausible values."""
    deployment_values = set(b.properties(MAIN.variables()["deploymentValues"]))
    samples = {**SAMPLES, "environmentName": environment, "mllpTlsMode": tls_mode}
    values: dict[str, str] = {}
    for setting in SPEC["mllpListener"]:
        if setting["from"] == "deployment":
            assert setting["value"] in deployment_values, setting
            values[setting["name"]] = samples[setting["value"]]
        elif setting["from"] == "literal":
            values[setting["name"]] = setting["value"]
        else:
            values[setting["name"]] = "InstrumentationKey=00000000-0000-0000-0000-000000000000"
    return Settings.model_validate(values)


def test_listener_runs_as_the_app_identity() -> None:
    app = _one("Microsoft.App/containerApps")
    assert b.literal(app.get("identity.type")) == "UserAssigned"
    assert "".join(b.text(app.get("identity.userAssignedIdentities")).split()) == "{'${identityId}':{}}"
    (call,) = [m for m in MAIN.modules() if m.symbol == "mllp"]
    assert b.text(call.get("params.identityId")) == "appIdentity.outputs.id"


def test_listener_settings_take_tls_from_the_credential_registry_in_key_vault() -> None:
    names = {s["name"]: s for s in SPEC["mllpListener"]}
    assert names["TIE_MLLP_TLS"] == {"name": "TIE_MLLP_TLS", "from": "deployment", "value": "mllpTlsMode"}
    assert names["TIE_CREDENTIALS_BACKEND"]["value"] == "azure"
    assert names["TIE_KEY_VAULT_URI"]["value"] == "keyVaultUri"
    assert b.text(b.properties(MAIN.variables()["deploymentValues"])["mllpTlsMode"]) == "mllpTlsMode"
    modes = MAIN.params()["mllpTlsMode"].allowed()
    assert modes == ["tls", "mutual"], "plain TCP ('off') is never deployed"
    assert b.literal(MAIN.params()["mllpTlsMode"].default) == "mutual"
    registry = load_registry(None)  # TIE_DOWNSTREAMS_FILE empty: the packaged registry
    entry = registry.get(LISTENER_ENTRY)
    for environment in ("dev", "test", "prod"):
        for mode in modes:
            settings = _container_settings(mode, environment)
            assert settings.mllp_tls == mode
            assert settings.credentials_backend.value == "azure"
            assert settings.key_vault_uri == SAMPLES["keyVaultUri"]
            assert settings.managed_identity_client_id == SAMPLES["appIdentityClientId"]
            assert settings.downstreams_file is None
            assert settings.mllp_host == "0.0.0.0"  # inside the container, behind the ingress
            assert not (settings.mllp_tls_cert_file or settings.mllp_tls_key_file)
            assert not settings.mllp_tls_client_ca_file
        # Deployed, the listener finds a server certificate and (mutual, the default) a client CA here.
        assert entry.credential is not None and entry.credential.name_for(environment), environment
        assert entry.trust is not None and entry.trust.name_for(environment), environment


def test_listener_mounts_no_certificate_files() -> None:
    app = _one("Microsoft.App/containerApps")
    containers = b.text(app.get("properties.template.containers"))
    assert "TIE_MLLP_TLS_" not in containers, "certificate file settings: TLS comes from the registry"
    (container,) = app.get("properties.template.containers").named_children  # type: ignore[union-attr]
    mounts = b.properties(container)["volumeMounts"].named_children
    assert [b.literal(b.get(m, "mountPath")) for m in mounts] == ["/tmp"]
    volumes = app.get("properties.template.volumes").named_children  # type: ignore[union-attr]
    assert [b.literal(b.get(v, "storageType")) for v in volumes] == ["EmptyDir"]
    # Container Apps secrets are the keyVaultSecret settings only (Application Insights), no certificate.
    assert b.text(app.get("properties.configuration.secrets")) == "settingSecrets"
    assert {s["value"] for s in SPEC["mllpListener"] if s["from"] == "keyVaultSecret"} == {
        "appinsights-connection-string"
    }
    assert not {"tlsCertificateName", "clientCaCertificateName"} & set(MLLP.params())
    assert not {"mllpTlsCertificateName", "mllpClientCaCertificateName"} & set(MAIN.params())


def test_listener_identity_has_key_vault_secrets_user_on_the_vault() -> None:
    (call,) = [m for m in MAIN.modules() if m.symbol == "mllp"]
    identity = b.text(call.get("params.identityId")).removesuffix(".outputs.id")
    (vault_call,) = [m for m in MAIN.modules() if m.symbol == "keyVault"]
    grants = [
        (b.text(b.get(entry, "principalId")), b.text(b.get(entry, "roleDefinitionId")))
        for entry in vault_call.get("params.roleAssignments").named_children  # type: ignore[union-attr]
    ]
    assert (f"{identity}.outputs.principalId", "roles.keyVaultSecretsUser") in grants
    assert ROLES["keyVaultSecretsUser"] == "4633458b-17de-408a-b874-0445c86b69e6"  # Key Vault Secrets User
    # Scoped to the vault, as a data-plane role, for that principal.
    (grant,) = b.load(b.MODULES / "keyvault.bicep").resources("Microsoft.Authorization/roleAssignments")
    assert b.text(grant.get("scope")) == "vault"
    assert b.text(grant.get("properties.principalId")) == "assignment.principalId"
    assert "assignment.roleDefinitionId" in b.text(grant.get("properties.roleDefinitionId"))
