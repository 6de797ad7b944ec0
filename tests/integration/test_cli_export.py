"""``tie export`` against the app on the local host: kick off, progress lines while the worker runs,
NDJSON files and manifest.json on disk; Ctrl-C cancels the export on the server."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from functions import bulk_export
from shared.config.settings import reset_settings
from tests.helpers import http
from tests.integration.fhir_api_support import fhir_host
from tests.integration.test_bulk_export_host import app
from tests.unit.fhirapi.fhirapi_helpers import NHS, observation, patient
from tie import cli
from tie.export_cmd import progress_bar, run_export

pytestmark = pytest.mark.timeout(90)
HEADERS = {"Accept": "application/fhir+json", "X-TIE-Client-Id": "tie-cli"}


@pytest.fixture
def base(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("TIE_EXPORT_CLIENTS", "tie-cli:identified")
    monkeypatch.setenv("TIE_EXPORT_PSEUDONYM_KEY", "pseudonym-key-for-tests-only-0123456789abcdef")
    reset_settings()
    with fhir_host(app()) as url:
        for nhs in NHS[:3]:
            created = http(
                "POST",
                f"{url}/Patient",
                json.dumps(patient(nhs)).encode(),
                {"Content-Type": "application/fhir+json"},
            )
            subject = {"reference": f"Patient/{created.json()['id']}"}
            http(
                "POST",
                f"{url}/Observation",
                json.dumps(observation(subject, f"F{nhs}")).encode(),
                {"Content-Type": "application/fhir+json"},
            )
        yield url


def test_export_shows_progress_and_writes_ndjson_and_manifest(base: str, tmp_path: Path) -> None:
    ticks: list[float] = []

    def tick(seconds: float) -> None:  # instead of sleeping Retry-After: one worker run
        ticks.append(seconds)
        bulk_export.bulk_export_worker(None)  # type: ignore[arg-type]

    out = io.StringIO()
    query = [("_type", "Patient,Observation")]
    assert run_export(base, query, HEADERS, tmp_path / "out", sleep=tick, stream=out) == 0
    assert ticks == [5.0]
    text = out.getvalue()
    assert "[" + "." * 30 + "] 0/2 types, 0 resources" in text
    (job_dir,) = (tmp_path / "out").iterdir()
    manifest = json.loads((job_dir / "manifest.json").read_text())
    counts = {o["type"]: o["count"] for o in manifest["output"]}
    assert counts == {"Patient": 3, "Observation": 3}
    files = sorted(p.name for p in job_dir.glob("*.ndjson"))
    assert files == ["Observation-1.ndjson", "Patient-1.ndjson"]
    lines = (job_dir / "Patient-1.ndjson").read_text().splitlines()
    assert sorted(json.loads(line)["identifier"][0]["value"] for line in lines) == sorted(NHS[:3])


def test_pseudonymised_export_files_hold_no_nhs_number(base: str, tmp_path: Path) -> None:
    query = [("_pseudonymise", "true")]
    tick = lambda _: bulk_export.bulk_export_worker(None)  # type: ignore[arg-type]  # noqa: E731
    assert run_export(base, query, HEADERS, tmp_path / "out", sleep=tick, stream=io.StringIO()) == 0
    (job_dir,) = (tmp_path / "out").iterdir()
    text = "".join(p.read_text() for p in job_dir.glob("*.ndjson"))
    assert text.count("\n") == 6
    assert not any(nhs in text for nhs in NHS[:3])


def test_ctrl_c_cancels_on_the_server(base: str, tmp_path: Path) -> None:
    def interrupted(_: float) -> None:
        raise KeyboardInterrupt

    out = io.StringIO()
    assert run_export(base, [], HEADERS, tmp_path / "out", sleep=interrupted, stream=out) == 130
    status_url = out.getvalue().split("polling ", 1)[1].split()[0]
    assert http("GET", status_url, None, HEADERS).status == 404


def test_refusal_exits_1(base: str, tmp_path: Path) -> None:
    assert run_export(base, [("_type", "Spaceship")], HEADERS, tmp_path / "out", stream=io.StringIO()) == 1


def test_cli_parses_the_command() -> None:
    args = cli.build_parser().parse_args(["export", "--type", "Patient,Observation", "--pseudonymise"])
    assert args.type == "Patient,Observation" and args.pseudonymise and args.func.__name__ == "cmd_export"


@pytest.mark.parametrize(
    ("progress", "bar"),
    [("1/2 types, 10 resources", "#" * 15 + "." * 15), ("2/2 types, 9 resources", "#" * 30), ("", "." * 30)],
)
def test_progress_bar(progress: str, bar: str) -> None:
    assert progress_bar(progress) == f"[{bar}] {progress}"
