"""What approvers see and what gets deployed (issue 13, finding 7): a what-if of the built, tested ARM
template before every deployment, in the run summary and as an artifact; the deploy uses that same
build/main.json (never the Bicep source); bootstrap decided by the pipeline, not by a person."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra import bicep_ast as b

yaml = pytest.importorskip("yaml")

WORKFLOWS = b.ROOT / ".github" / "workflows"


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return data


def _runs(job: dict[str, Any]) -> list[str]:
    return [str(s.get("run", "")) for s in job.get("steps", [])]


def test_deploys_use_the_built_template_after_a_what_if_of_it() -> None:
    (job,) = _load("deploy-environment.yml")["jobs"].values()
    runs = _runs(job)
    creates = [i for i, r in enumerate(runs) if "az deployment group create" in r]
    what_ifs = [i for i, r in enumerate(runs) if "az deployment group what-if" in r]
    assert creates and what_ifs and max(what_ifs) < min(creates), "what-if before the deployment"
    for i in creates + what_ifs:
        assert "--template-file build/main.json" in runs[i], runs[i]
        assert "infra/bicep/main.bicep" not in runs[i], "deploy the built, tested template"
        assert "bootstrap=${{ steps.bootstrap.outputs.bootstrap }}" in runs[i] or "bootstrap=false" in runs[i]
    assert "GITHUB_STEP_SUMMARY" in runs[max(what_ifs)]
    (decide,) = [s for s in job["steps"] if s.get("id") == "bootstrap"]
    assert "az deployment group list" in decide["run"] and "provisioningState=='Succeeded'" in decide["run"]


def test_approvers_get_a_plan_of_every_environment_on_every_deploying_run() -> None:
    jobs = _load("deploy.yml")["jobs"]
    plan = jobs["plan"]
    assert plan["if"] == "github.event_name != 'pull_request'"
    assert plan["needs"] == "checks"
    assert plan["strategy"]["matrix"]["environment"] == ["dev", "test", "prod"]
    assert plan["environment"] == "${{ matrix.environment }}-plan"  # no approval, read + what-if only
    (run,) = [r for r in _runs(plan) if "what-if" in r]
    assert "--template-file build/main.json" in run and "GITHUB_STEP_SUMMARY" in run
    uploads = [s for s in plan["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    assert uploads and "what-if-" in uploads[0]["with"]["path"]
    downloads = [s for s in plan["steps"] if str(s.get("uses", "")).startswith("actions/download-artifact@")]
    assert downloads and downloads[0]["with"]["name"] == "tie-${{ github.run_number }}"
    # The built template is what the checks job produced and uploaded.
    checks = "\n".join(_runs(jobs["checks"]))
    assert "az bicep build --file infra/bicep/main.bicep --outfile build/main.json" in checks
    assert 'docker build --pull -t "tie-mllp:${{ github.sha }}" .' in checks
