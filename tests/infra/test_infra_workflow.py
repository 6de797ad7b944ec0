"""The deploy pipeline: OIDC only, checks before anything deploys, what-if on pull requests, environments in
order with their protection rules, and the function package published after the infrastructure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.infra import bicep_ast as b

yaml = pytest.importorskip("yaml")

WORKFLOWS = b.ROOT / ".github" / "workflows"


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = job.get("steps", [])
    return steps


def _uses(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in _steps(job) if str(s.get("uses", "")).split("@")[0].lower() == action.lower()]


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(str(s.get("run", "")) for s in _steps(job))


def test_no_workflow_uses_a_client_secret_or_publish_profile() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        text = path.read_text().lower()
        for marker in ("client-secret", "clientsecret", "publish-profile", "creds:", "azure_credentials"):
            assert marker not in text, f"{path.name}: {marker}"


def test_checks_run_the_infra_tests_and_bicep_build_and_lint() -> None:
    workflow = _load("deploy.yml")
    assert set(workflow["on"]) >= {"pull_request", "push", "workflow_dispatch"}
    checks = workflow["jobs"]["checks"]
    script = _runs(checks)
    assert "pytest -q tests/infra" in script
    assert "tools/infra_config.py --check" in script
    assert "az bicep build --file infra/bicep/main.bicep" in script
    assert "az bicep lint --file infra/bicep/main.bicep" in script
    assert _uses(checks, "actions/upload-artifact")
    assert workflow["permissions"] == {"contents": "read"}


def test_what_if_runs_on_pull_requests_for_every_environment() -> None:
    job = _load("deploy.yml")["jobs"]["what-if"]
    assert job["if"] == "github.event_name == 'pull_request'"
    assert job["strategy"]["matrix"]["environment"] == ["dev", "test", "prod"]
    assert job["permissions"]["id-token"] == "write"
    assert "az deployment group what-if" in _runs(job)
    (login,) = _uses(job, "azure/login")
    assert set(login["with"]) == {"client-id", "tenant-id", "subscription-id"}


def test_environments_deploy_in_order_through_the_reusable_workflow() -> None:
    jobs = _load("deploy.yml")["jobs"]
    order = ["deploy-dev", "deploy-test", "deploy-prod"]
    previous = "checks"
    for name in order:
        job = jobs[name]
        assert job["needs"] == previous, name
        assert job["uses"] == "./.github/workflows/deploy-environment.yml"
        assert job["with"]["environment"] == name.removeprefix("deploy-")
        assert "pull_request" in job["if"]
        previous = name
    for env in ("dev", "test", "prod"):
        assert (b.BICEP_DIR / "params" / f"{env}.parameters.json").is_file()


def test_environment_deploy_uses_oidc_then_bicep_then_the_package() -> None:
    workflow = _load("deploy-environment.yml")
    assert workflow["permissions"]["id-token"] == "write"
    (job,) = workflow["jobs"].values()
    assert job["environment"] == "${{ inputs.environment }}"
    names = [str(s.get("uses") or s.get("name")) for s in _steps(job)]
    login = next(i for i, n in enumerate(names) if n.startswith("azure/login"))
    infra = next(
        i for i, s in enumerate(_steps(job)) if "az deployment group create" in str(s.get("run", ""))
    )
    publish = next(i for i, n in enumerate(names) if n.lower().startswith("azure/functions-action"))
    assert login < infra < publish
    (functions,) = _uses(job, "Azure/functions-action")
    assert functions["with"]["sku"] == "flexconsumption"
    assert "params/${{ inputs.environment }}.parameters.json" in _runs(job)


def test_bicepconfig_makes_secret_handling_rules_errors() -> None:
    import json

    rules = json.loads(Path(b.BICEP_DIR / "bicepconfig.json").read_text())["analyzers"]["core"]["rules"]
    for rule in ("secure-secrets-in-params", "outputs-should-not-contain-secrets", "no-hardcoded-location"):
        assert rules[rule]["level"] == "error"
