"""Benchmark: FHIR read-by-id through the API core (in process, no HTTP), without audit, with a
synchronous append per read, and with the background writer the container uses for reads (its final
flush counted). Embedded stores (SQLite FHIR store, SQLite audit log in WAL mode), alternating rounds so
every mode sees the same machine load. The in-process read costs tens of microseconds, so this is the
worst case for the ratio; ``bench/fhir_api.py`` gives the HTTP figure (see docs/audit.md).

    .venv/bin/python bench/audit_read.py --reads 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.adapters.embedded.sqlite_audit import SqliteAuditLog
from shared.adapters.embedded.sqlite_bus import SqliteBus
from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository
from shared.adapters.embedded.sqlite_records import SqliteRecordStore
from shared.audit.background import BackgroundAuditLog
from shared.audit.fhir_access import FhirAccessAuditor
from shared.audit.trail import AuditTrail
from shared.fhirapi import FhirApi, FhirRequest, Headers

PATIENT = {
    "resourceType": "Patient",
    "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"}],
    "name": [{"family": "Benchperson", "given": ["Alex"]}],
    "birthDate": "1980-05-01",
    "gender": "female",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tie-bench-audit-"))
    repo = SqliteFhirRepository(root / "fhir.sqlite3")
    bus, records = SqliteBus(root / "bus.sqlite3"), SqliteRecordStore(root / "records.sqlite3")
    log = SqliteAuditLog(root / "audit.sqlite3", key=b"b" * 32)
    pid = repo.create(PATIENT).resource["id"]
    background = BackgroundAuditLog(log)
    apis = {
        "without audit": FhirApi(repo, bus, records),
        "synchronous": FhirApi(
            repo, bus, records, audit=FhirAccessAuditor(AuditTrail(log), gateway_verified=False)
        ),
        "background": FhirApi(
            repo,
            bus,
            records,
            audit=FhirAccessAuditor(AuditTrail(log, deferred=background), gateway_verified=False),
        ),
    }
    request = FhirRequest(
        "GET", f"http://bench/api/fhir/Patient/{pid}", Headers({"X-TIE-Client-Id": "bench"})
    )
    rates: dict[str, list[float]] = {mode: [] for mode in apis}
    for _ in range(args.rounds):
        for mode, api in apis.items():
            start = time.perf_counter()
            for _ in range(args.reads):
                assert api.read(request, "Patient", pid).status == 200
            background.flush()
            rates[mode].append(args.reads / (time.perf_counter() - start))
    base = statistics.median(rates["without audit"])
    print(f"FHIR read-by-id in process, {args.reads} reads x {args.rounds} rounds (median reads/s)")
    for mode, values in rates.items():
        rate = statistics.median(values)
        print(f"{mode:<14} {rate:8.0f}  overhead {100 * (1 - rate / base):5.1f} %")
    background.close()
    for closable in (repo, bus, records):
        closable.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
