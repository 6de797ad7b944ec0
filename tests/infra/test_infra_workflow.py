"""The deploy pipeline: OIDC only, `make test` and checks before anything deploys, what-if on pull requests,
environments in order with their protection rules, the function package published after the infrastructure;
and its supply chain: actions pinned to commit SHAs, installs from the hashed locks, Dependabot over every
manifest (docs/supply-chain.md)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.infra import bicep_ast as b

yaml = pytest.importorskip("yaml")

WORKFLOWS = b.ROOT / ".github" / "workflows"
DEPLOY_ENVIRONMENT = "./.github/workflows/deploy-environment.yml"
# owner/repo[/path]@<40-hex commit> # vX.Y.Z  (the comment is what Dependabot and a reader go by)
_PINNED_USES = re.compile(r"^\s*(?:-\s+)?uses:\s+[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(?:\.\d+)*\s*$")
_LOCAL_USES = re.compile(r"^\s*(?:-\s+)?uses:\s+\./\S+\s*$")
_PIP_INSTALL = re.compile(r"pip install\b[^\n]*")


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


def _needs(job: dict[str, Any]) -> list[str]:
    needs = job.get("needs", [])
    return [needs] if isinstance(needs, str) else list(needs)


def _transitive_needs(jobs: dict[str, dict[str, Any]], name: str) -> set[str]:
    seen: set[str] = set()
    todo = _needs(jobs[name])
    while todo:
        need = todo.pop()
        if need not in seen:
            seen.add(need)
            todo.extend(_needs(jobs[need]))
    return seen


def _deploys(job: dict[str, Any]) -> bool:
    """Changes an environment: the reusable deploy workflow, a Bicep deployment or a package publish."""
    return (
        job.get("uses") == DEPLOY_ENVIRONMENT
        or "az deployment group create" in _runs(job)
        or bool(_uses(job, "Azure/functions-action"))
    )


def unpinned_uses(text: str) -> list[str]:
    """`uses:` lines neither SHA-pinned with a version comment nor a workflow of this repository."""
    return [
        line.strip()
        for line in text.splitlines()
        if re.match(r"^\s*(?:-\s+)?uses:", line) and not (_PINNED_USES.match(line) or _LOCAL_USES.match(line))
    ]


def unlocked_installs(script: str) -> list[str]:
    """`pip install` commands that bypass the hashed locks (the project's own --no-deps install aside)."""
    bad: list[str] = []
    for command in _PIP_INSTALL.findall(script):
        locked = "--require-hashes" in command and re.search(r"-r requirements(-dev)?\.lock\b", command)
        own_project = "--no-deps" in command and "-r " not in command
        if "--upgrade" in command or " -U " in command or not (locked or own_project):
            bad.append(command)
    return bad


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
    previous = ["test", "checks"]
    for name in order:
        job = jobs[name]
        assert _needs(job) == previous, name
        assert job["uses"] == "./.github/workflows/deploy-environment.yml"
        assert job["with"]["environment"] == name.removeprefix("deploy-")
        assert "pull_request" in job["if"]
        previous = [name]
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


def test_make_test_runs_under_ci_on_every_event_and_gates_every_deploy() -> None:
    jobs = _load("deploy.yml")["jobs"]
    testers = [name for name, job in jobs.items() if re.search(r"(?m)^make test\b", _runs(job))]
    assert testers == ["test"]
    test = jobs["test"]
    assert "if" not in test  # pull requests, pushes and manual runs alike
    assert str(test["env"]["CI"]) == "true"
    (checkout, *_) = _uses(test, "actions/checkout")
    assert checkout["with"]["ref"] == "${{ inputs.ref || github.sha }}"  # the ref that is deployed
    assert "../shared/corpora" in _runs(test)  # CI=true: the corpora must be there, not skipped
    deployers = [name for name, job in jobs.items() if _deploys(job)]
    assert deployers == ["deploy-dev", "deploy-test", "deploy-prod"]
    for name in deployers:
        assert "test" in _transitive_needs(jobs, name), name


def test_every_action_is_pinned_to_a_commit_sha() -> None:
    paths = sorted(WORKFLOWS.glob("*.yml"))
    assert paths
    for path in paths:
        assert unpinned_uses(path.read_text()) == [], path.name


def test_installs_come_from_the_hashed_locks() -> None:
    jobs = _load("deploy.yml")["jobs"]
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for job in _load(path.name)["jobs"].values():
            assert unlocked_installs(_runs(job)) == [], path.name
    checks = _runs(jobs["checks"])
    assert "pip install --require-hashes -r requirements-dev.lock" in checks
    assert "--require-hashes --target .python_packages/lib/site-packages -r requirements.lock" in checks


_SHA = "11d5960a326750d5838078e36cf38b85af677262"
USES_CASES = [
    ("tag", "      - uses: actions/checkout@v4", True),
    ("branch", "      - uses: actions/checkout@main", True),
    ("SHA without its version comment", f"      - uses: actions/checkout@{_SHA}", True),
    ("short SHA", "      - uses: actions/checkout@11d5960a # v4.4.0", True),
    ("SHA with its version", f"      - uses: actions/checkout@{_SHA} # v4.4.0", False),
    ("step key after name", f"        uses: Azure/functions-action@{_SHA} # v1.5.7", False),
    ("workflow of this repository", "    uses: ./.github/workflows/deploy-environment.yml", False),
]


@pytest.mark.parametrize(("case", "line", "flagged"), USES_CASES, ids=[c[0] for c in USES_CASES])
def test_unpinned_uses_table(case: str, line: str, flagged: bool) -> None:
    assert unpinned_uses(line) == ([line.strip()] if flagged else []), case


INSTALL_CASES = [
    ("python -m pip install --require-hashes -r requirements-dev.lock", []),
    ("python -m pip install --no-deps -e .", []),
    ("python -m pip install --upgrade pip", ["pip install --upgrade pip"]),
    ("python -m pip install -r requirements-dev.txt", ["pip install -r requirements-dev.txt"]),
    ("python -m pip install -r requirements.lock", ["pip install -r requirements.lock"]),
    ("pip install --no-deps -r requirements.txt", ["pip install --no-deps -r requirements.txt"]),
]


@pytest.mark.parametrize(("script", "expected"), INSTALL_CASES)
def test_unlocked_installs_table(script: str, expected: list[str]) -> None:
    assert unlocked_installs(script) == expected


def test_dependabot_covers_pip_actions_and_every_npm_manifest() -> None:
    config = yaml.safe_load((b.ROOT / ".github" / "dependabot.yml").read_text())
    assert config["version"] == 2
    covered = {(u["package-ecosystem"], u["directory"]) for u in config["updates"]}
    manifests = set()
    for folder, dirs, files in os.walk(b.ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "node_modules"]
        if "package.json" in files:
            manifests.add("/" + Path(folder).relative_to(b.ROOT).as_posix())
    assert manifests  # the pinned FHIR validator of the conformance tests
    expected = {("pip", "/"), ("github-actions", "/")} | {("npm", d) for d in manifests}
    assert covered == expected
