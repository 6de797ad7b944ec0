"""The HL7 v2 corpus (``*.hl7`` / ``*.txt`` under ../shared/corpora) with its expected outcomes.

``tests/hl7_corpus_outcomes.json`` lists the files ``iter_messages`` cannot read and the messages
(``path#index``) ``map_message`` refuses, each with the exception type. Sweeps over the corpus use
:func:`corpus_messages` / :func:`corpus_events` instead of catching errors: a listed file or message must
fail with exactly its listed type (``pytest.raises``), and any other one must parse and map - an
unexpected error fails the sweep instead of being skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.canonical.model import ClinicalEvent
from shared.hl7v2 import Message, iter_messages
from shared.hl7v2 import errors as hl7_errors
from shared.mapping import errors as mapping_errors
from shared.mapping.hl7v2_in import map_message
from tests.helpers import corpus_missing

CORPORA = (Path(__file__).resolve().parents[1] / ".." / "shared" / "corpora").resolve()
OUTCOMES = Path(__file__).with_name("hl7_corpus_outcomes.json")
SUFFIXES = (".hl7", ".txt")


def _load() -> tuple[dict[str, type[Exception]], dict[str, type[Exception]]]:
    data = json.loads(OUTCOMES.read_text("utf-8"))

    def kind(name: str, module: object) -> type[Exception]:
        found = getattr(module, name)
        assert isinstance(found, type) and issubclass(found, Exception), name
        return found

    unreadable = {k: kind(v, hl7_errors) for k, v in data["unreadable"].items()}
    unmappable = {k: kind(v, mapping_errors) for k, v in data["unmappable"].items()}
    return unreadable, unmappable


UNREADABLE, UNMAPPABLE = _load()

#: Mapped corpus messages ``shared.mapping.fhir_out.to_bundle`` refuses (FhirOutError), and the canonical
#: field it names. Sensitivity.txt (WinPath microbiology): two OBR "Sensitivities" groups under one filler
#: number, told apart only by OBR-26 (parent result = which isolate), which the canonical model does not
#: carry yet - so both would map to one DiagnosticReport/Observation identity and one isolate's results
#: would overwrite the other's.
FHIR_OUT_REFUSED = {
    "uclh-emap/hl7-reader/src/test/resources/LabOrders/winpath/Sensitivity.txt#0": "reports[2].results[0]",
}


def corpus_files() -> list[Path]:
    if not CORPORA.is_dir():
        corpus_missing("../shared/corpora is not present")
    return [p for p in sorted(CORPORA.rglob("*")) if p.suffix in SUFFIXES and p.is_file()]


def corpus_messages(seen: set[str] | None = None) -> Iterator[tuple[str, Message]]:
    """(``path#index``, message) for every readable file; a file listed as unreadable must fail to parse
    with its listed error. ``seen`` collects the table keys met (for the table's own completeness test)."""
    for path in corpus_files():
        name = path.relative_to(CORPORA).as_posix()
        expected = UNREADABLE.get(name)
        if expected is not None:
            with pytest.raises(expected):
                list(iter_messages(path.read_bytes()))
            if seen is not None:
                seen.add(name)
            continue
        for i, message in enumerate(iter_messages(path.read_bytes())):
            yield f"{name}#{i}", message


def corpus_events(
    *, lineage: bool = False, seen: set[str] | None = None
) -> Iterator[tuple[str, Message, ClinicalEvent]]:
    """(``path#index``, message, event) for every message that maps; a message listed as unmappable
    must be refused with its listed error."""
    for name, message in corpus_messages(seen):
        expected = UNMAPPABLE.get(name)
        if expected is not None:
            with pytest.raises(expected):
                map_message(message)
            if seen is not None:
                seen.add(name)
            continue
        yield name, message, map_message(message, lineage=lineage).value
