"""Golden comparison with Microsoft FHIR-Converter's expected FHIR for every pair in PAIRS.tsv.

Prints the per-field agreement table. Every disagreement is pinned, with its reason category, in
``golden_fhir_converter_expected.json`` and explained in ``docs/mapping-differences.md``: a new difference
(or a fixed one) fails this test until it has been reviewed and documented.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.corpus.golden_fhir_converter import ROOT, Report, compare, our_converter
from tests.helpers import corpus_missing

pytestmark = pytest.mark.corpus

EXPECTED = json.loads(
    (Path(__file__).with_name("golden_fhir_converter_expected.json")).read_text(encoding="utf-8")
)
DOCS = (Path(__file__).resolve().parents[2] / "docs" / "mapping-differences.md").read_text(encoding="utf-8")

#: Fields both converters should carry identically wherever both emit them (never a different value).
CORE = (
    "patient.name.primary",
    "patient.birthDate",
    "patient.gender",
    "patient.identifier.ours-in-theirs",
    "patient.address.place",
    "encounter.class",
    "encounter.period.start",
    "encounter.period.end",
    "observation.units",
    "observation.values",
)
#: Patient fields: present on both sides in every converted pair but the documented A40 case.
PATIENT_CORE = tuple(name for name in CORE if name.startswith("patient."))


@pytest.fixture(scope="module")
def report() -> Report:
    if not ROOT.is_dir():
        corpus_missing("../shared/corpora/fhir-converter is not present")
    return compare(our_converter())


def test_prints_per_field_agreement(report: Report, capsys: pytest.CaptureFixture[str]) -> None:
    table = report.table()
    with capsys.disabled():
        print("\n" + table)
    assert report.pairs == 72
    assert "patient.name.primary" in table


def test_unconverted_pairs_are_exactly_the_documented_ones(report: Report) -> None:
    got = {name: reason.split(":")[0] for name, reason in report.failures.items()}
    assert got == EXPECTED["failures"]


def test_every_disagreement_is_pinned_with_a_documented_reason(report: Report) -> None:
    got = {k: v.disagreements for k, v in report.fields.items() if v.disagreements}
    expected = {k: set(v) for k, v in EXPECTED["fields"].items()}
    assert {k: set(v) for k, v in got.items()} == expected
    for categories in EXPECTED["fields"].values():
        for category in categories.values():
            assert f"`{category}`" in DOCS, f"{category} is not explained in docs/mapping-differences.md"


def test_core_fields_agree(report: Report) -> None:
    for name in CORE:
        stats = report.fields[name]
        assert stats.differ == 0, name
        assert stats.agree > 0, name
    for name in PATIENT_CORE:
        assert set(report.fields[name].disagreements) <= {"ADT-A40-01.hl7"}, name
