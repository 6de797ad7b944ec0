"""Every FHIR resource the engine emits, collected once per process for the conformance checks.

Three sources, in this order (each sorted, so the collection is deterministic):

* ``corpus``: each HL7 v2 message of the public corpora sweep
  (:mod:`tests.corpus.test_hl7v2_to_canonical_corpus`: the same message discovery, ``map_message``
  then :func:`shared.mapping.fhir_out.to_resources`); the messages that sweep lists as expected mapping
  failures emit nothing.
* ``scenario``: the held-in scenario messages (``tests/fixtures/hl7_messages.py``, ``samples/*.hl7``).
* ``readback``: the scenario messages plus one corpus ORU and ORM written to an embedded FHIR store with the
  FHIR write-back (:class:`shared.backbone.fhir_writeback.FhirDownstream`), then every stored resource read
  back through the FHIR API service (search per type, then a read of each id).

Identical resources (same JSON) are kept once, under the first source that emitted them.
"""

from __future__ import annotations

import functools
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.fhir.json import dumps
from shared.hl7v2 import Message, parse_message
from shared.mapping.errors import MappingError
from shared.mapping.fhir_out import to_resources
from shared.mapping.hl7v2_in import map_message
from tests.corpus.test_hl7v2_to_canonical_corpus import CORPORA, EXPECTED_FAILURES
from tests.corpus.test_hl7v2_to_canonical_corpus import _files as corpus_files
from tests.fixtures.hl7_messages import adt_a01

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Corpus messages also written to the store and read back (an ORU with results, an ORM order).
READBACK_CORPUS = (
    "fhir-converter/data/SampleData/Hl7v2/ORU-R01-01.hl7",
    "fhir-converter/data/SampleData/Hl7v2/ORM-O01-01.hl7",
)
READBACK_TYPES = (
    "Patient",
    "Encounter",
    "Observation",
    "DiagnosticReport",
    "ServiceRequest",
    "Practitioner",
    "Organization",
    "Location",
)

#: Corpus messages that map to canonical but that the FHIR mapper refuses: path -> FhirOutError field, why.
FHIR_OUT_REFUSED = {
    "uclh-emap/hl7-reader/src/test/resources/LabOrders/winpath/Sensitivity.txt": (
        "reports[2].results[0]",
        "two sensitivity OBX give Observations with the same identity (report, OBX sequence, code)",
    ),
}

Resource = dict[str, Any]


@dataclass(frozen=True)
class Emitted:
    source: str  # "corpus:<path>", "scenario:<name>", "readback:<Type>/<id>"
    resource: Resource

    @property
    def resource_type(self) -> str:
        return str(self.resource.get("resourceType"))


@dataclass(frozen=True)
class Collection:
    resources: tuple[Emitted, ...]
    #: (source, why) for each message that emitted nothing though it should have (must stay empty).
    errors: tuple[tuple[str, str], ...]


def _plain(resource: Any) -> Resource:
    """Plain JSON containers (the mapper shares frozen parts and uses Decimal)."""
    value: Resource = json.loads(dumps(resource))
    return value


def scenario_messages() -> list[tuple[str, bytes]]:
    out = [("tests/fixtures/hl7_messages.py:adt_a01", adt_a01())]
    for path in sorted((REPO_ROOT / "samples").glob("*.hl7")):
        out.append((str(path.relative_to(REPO_ROOT)), path.read_bytes()))
    return out


def _map(msg: Message) -> list[Resource]:
    event = map_message(msg).value
    return [_plain(r) for r in to_resources(event).value]


def _corpus() -> tuple[list[Emitted], list[tuple[str, str]]]:
    out: list[Emitted] = []
    errors: list[tuple[str, str]] = []
    if not CORPORA.is_dir():
        return out, errors
    for name, msg in corpus_files():
        try:
            resources = _map(msg)
        except MappingError as exc:
            if FHIR_OUT_REFUSED.get(name, ("",))[0] == exc.field:
                continue
            if name not in EXPECTED_FAILURES:
                errors.append((f"corpus:{name}", f"{type(exc).__name__} {exc.field}"))
            continue
        out.extend(Emitted(f"corpus:{name}", r) for r in resources)
    return out, errors


def _scenarios() -> list[Emitted]:
    out: list[Emitted] = []
    for name, raw in scenario_messages():
        out.extend(Emitted(f"scenario:{name}", r) for r in _map(parse_message(raw)))
    return out


def _readback() -> tuple[list[Emitted], list[tuple[str, str]]]:
    from shared.adapters.embedded.sqlite_bus import SqliteBus
    from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository
    from shared.adapters.embedded.sqlite_records import SqliteRecordStore
    from shared.backbone.errors import DownstreamRejected, WriteBackUnmappable
    from shared.backbone.fhir_writeback import FhirDownstream
    from shared.fhirapi import FhirApi, FhirRequest, Headers

    messages = scenario_messages()
    if CORPORA.is_dir():
        messages += [(name, (CORPORA / name).read_bytes()) for name in READBACK_CORPUS]
    out: list[Emitted] = []
    errors: list[tuple[str, str]] = []
    base = "http://tie.test/api/fhir"
    with tempfile.TemporaryDirectory(prefix="conformance-") as tmp:
        repo = SqliteFhirRepository(Path(tmp) / "fhir.sqlite3")
        bus = SqliteBus(Path(tmp) / "bus.sqlite3")
        records = SqliteRecordStore(Path(tmp) / "records.sqlite3")
        try:
            downstream = FhirDownstream(repo)
            for name, raw in messages:
                try:
                    downstream.apply(map_message(parse_message(raw)).value)
                except (DownstreamRejected, WriteBackUnmappable) as exc:
                    errors.append((f"readback:{name}", f"write-back refused: {exc}"))
            api = FhirApi(repo, bus, records)
            accept = Headers({"Accept": "application/fhir+json"})
            for rtype in READBACK_TYPES:
                found = api.search(FhirRequest("GET", f"{base}/{rtype}?_count=1000", accept), rtype)
                if found.status != 200 or found.body is None:
                    errors.append((f"readback:{rtype}", f"search answered {found.status}"))
                    continue
                ids = sorted(e["resource"]["id"] for e in found.body.get("entry", []))
                for rid in ids:
                    read = api.read(FhirRequest("GET", f"{base}/{rtype}/{rid}", accept), rtype, rid)
                    if read.status != 200 or read.body is None:
                        errors.append((f"readback:{rtype}/{rid}", f"read answered {read.status}"))
                        continue
                    out.append(Emitted(f"readback:{rtype}/{rid}", _plain(read.body)))
        finally:
            repo.close()
            bus.close()
            records.close()
    return out, errors


@functools.cache
def collect() -> Collection:
    """The emitted resources (cached for the process: one test session computes them once)."""
    corpus, corpus_errors = _corpus()
    readback, readback_errors = _readback()
    seen: set[bytes] = set()
    unique: list[Emitted] = []
    for item in [*corpus, *_scenarios(), *readback]:
        key = dumps(item.resource)
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return Collection(tuple(unique), tuple(corpus_errors + readback_errors))
