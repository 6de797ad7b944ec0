"""Golden comparison with Microsoft FHIR-Converter's expected FHIR over all 72 pairs in PAIRS.tsv.

The report (per-field full-field agreement, one-sided counts on both sides, relaxed views labelled as such,
the outcome of every pair) must equal the snapshot ``golden_fhir_converter_expected.json`` exactly: a
regression and an improvement both fail until the snapshot is regenerated deliberately
(``python -m tests.corpus.golden_fhir_converter --write``) and the change explained.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.corpus.golden_fhir_converter import (
    COLUMNS,
    CONVERTS,
    OUTCOMES,
    ROOT,
    SNAPSHOT,
    Report,
    compare,
    our_converter,
)
from tests.helpers import corpus_missing

pytestmark = pytest.mark.corpus

DOCS = (Path(__file__).resolve().parents[2] / "docs" / "mapping-differences.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def report() -> Report:
    if not ROOT.is_dir():
        corpus_missing("../shared/corpora/fhir-converter is not present")
    return compare(our_converter())


def test_every_pair_is_compared_and_has_its_expected_outcome(report: Report) -> None:
    assert report.pairs == 72
    assert report.outcomes == OUTCOMES


def test_every_rejected_pair_is_explained_in_the_docs() -> None:
    rejected = [name for name, outcome in OUTCOMES.items() if outcome != CONVERTS]
    missing = [name for name in rejected if f"`{name}`" not in DOCS]
    assert not missing, f"not explained in docs/mapping-differences.md: {missing}"


def test_one_sided_pairs_are_counted_on_both_sides(report: Report) -> None:
    # A rejected pair counts as "only theirs" wherever their output has the field, so a field's counts can
    # never exceed the pair count and rejected pairs are never silently left out.
    for view in ("full", "relaxed"):
        for name, counts in report.counts(view).items():
            assert sum(counts[c] for c in COLUMNS) <= report.pairs, name
    rejected = {name for name, outcome in report.outcomes.items() if outcome != CONVERTS}
    birth = report.statuses["full"]["patient.birthDate"]
    assert {name for name in rejected if name in birth} <= {n for n, s in birth.items() if s == "only-theirs"}
    assert any(birth[name] == "only-theirs" for name in rejected if name in birth)


def test_published_figures_are_the_snapshot_figures() -> None:
    """The figures table in docs/mapping-differences.md and the README's pair count are the snapshot's."""
    snap = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert f"**{snap['converted']}/72 pairs convert**" in readme
    assert f"**{snap['converted']} of 72 pairs convert**" in DOCS
    rows = {}
    for line in DOCS.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[1].isdigit():
            for name in cells[0].split(" / "):
                full = name if "." in name else f"{cells[0].split('.')[0]}.{name}"
                rows[full] = {col: int(cells[i + 1]) for i, col in enumerate(COLUMNS)}
    assert rows == snap["full"]


def test_report_equals_the_snapshot(report: Report, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print("\n" + report.table())
    expected = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    got = json.loads(json.dumps(report.snapshot()))
    for key in ("outcomes", "full", "relaxed", "not_agreeing"):
        assert got[key] == expected[key], (
            f"{key} differs from {SNAPSHOT.name}: if the change is intended, regenerate with "
            "`python -m tests.corpus.golden_fhir_converter --write`, explain the diff, update the figures"
        )
    assert got == expected
