"""Benchmark: FHIR Bulk Data export from the embedded store (issue 21: 100,000 resources in under 60 s).

Loads ``--count`` resources (a multiple of five: one Patient to every four Observations, through
transaction Bundles of 500) into a fresh embedded FHIR store, then runs one export job to completion
with the worker (:class:`shared.bulkexport.ExportRunner`, default page and file sizes) and prints
resources/s, MB/s and how much the process's peak RSS grew during the export (it streams: a page and
one file in memory, never the whole export). ``--pseudonymise`` runs the pseudonymised variant too.

    .venv/bin/python bench/export.py [--count 100000] [--pseudonymise]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.adapters.embedded.sqlite_blobs import SqliteBlobStore
from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository
from shared.adapters.embedded.sqlite_records import SqliteRecordStore
from shared.bulkexport import BulkExportApi, ExportAccess, ExportConfig, ExportRunner, JobStore, Level
from shared.fhirapi.http import FhirRequest, Headers
from shared.storage.names import CONTAINER_BULK_EXPORT

KEY = uuid.uuid4().hex.encode() * 2  # a throwaway key for this run only


def patient_group(n: int) -> list[dict[str, Any]]:
    """One Patient (transaction-local reference) and four Observations about them."""
    ref = f"urn:uuid:{uuid.uuid4()}"
    group: list[dict[str, Any]] = [
        {
            "fullUrl": ref,
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": f"9{n:09d}"}],
                "name": [{"family": f"Bench{n}", "given": ["Test"]}],
                "birthDate": "1970-01-01",
                "address": [{"postalCode": "LS1 4AP"}],
            },
            "request": {"method": "POST", "url": "Patient"},
        }
    ]
    for k in range(4):
        group.append(
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]},
                    "subject": {"reference": ref},
                    "effectiveDateTime": "2026-01-15T09:30:00Z",
                    "valueQuantity": {"value": 4.0 + k / 10, "unit": "mmol/L"},
                },
                "request": {"method": "POST", "url": "Observation"},
            }
        )
    return group


def load(repo: SqliteFhirRepository, count: int) -> float:
    """``count`` resources in transactions of 500 entries (100 groups), built a Bundle at a time."""
    started = time.perf_counter()
    n = 0
    while n * 5 < count:
        entry: list[dict[str, Any]] = []
        while len(entry) < 500 and n * 5 < count:
            entry.extend(patient_group(n))
            n += 1
        repo.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entry})
    return time.perf_counter() - started


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def export(root: Path, repo: SqliteFhirRepository, pseudonymise: bool) -> None:
    records = SqliteRecordStore(root / f"records-{pseudonymise}.sqlite3")
    blobs = SqliteBlobStore(root / f"blobs-{pseudonymise}")
    jobs = JobStore(records)
    api = BulkExportApi(
        jobs, blobs, ExportConfig(ExportAccess.parse("*:identified"), pseudonym_key_configured=True)
    )
    query = "_type=Patient,Observation" + ("&_pseudonymise=true" if pseudonymise else "")
    headers = Headers({"Prefer": "respond-async", "X-TIE-Client-Id": "bench"})
    kicked = api.kickoff(FhirRequest("GET", f"http://bench/fhir/$export?{query}", headers), Level.SYSTEM)
    assert kicked.status == 202, kicked.body
    runner = ExportRunner(repo, blobs, jobs, pseudonym_key=KEY)
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    while runner.run_pending(budget_seconds=600) == 0:
        pass
    elapsed = time.perf_counter() - started
    (job,) = jobs.all()
    written = sum(o.count for o in job.outputs)
    size = sum(info.size for info in blobs.list(CONTAINER_BULK_EXPORT))
    label = "pseudonymised" if pseudonymise else "identified"
    print(
        f"export {label:<14} {written:>8} resources {elapsed:7.2f} s  {written / elapsed:9.0f} resources/s  "
        f"{size / 1e6 / elapsed:7.1f} MB/s  {len(job.outputs)} files  {size / 1e6:.1f} MB  "
        f"peak RSS +{peak_rss_mb() - rss_before:.0f} MB"
    )
    records.close()
    blobs.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--pseudonymise", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tie-bench-export-") as tmp:
        root = Path(tmp)
        repo = SqliteFhirRepository(root / "fhir.sqlite3")
        loaded = load(repo, args.count)
        print(f"loaded {args.count} resources in {loaded:.1f} s (not part of the export figure)")
        export(root, repo, pseudonymise=False)
        if args.pseudonymise:
            export(root, repo, pseudonymise=True)
        repo.close()


if __name__ == "__main__":
    main()
