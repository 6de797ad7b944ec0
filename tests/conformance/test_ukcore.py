"""UK Core conformance of every emitted resource equals the expected-violations table EXACTLY.

``ukcore_known_violations.json`` lists (profile, path, rule, count). A new violation fails this test, and
so does a fixed one that is still listed (or a count that changed): the table only ever shrinks by a
reviewed edit. The checker's own rules are proven to fail in ``test_ukcore_checker.py``.
"""

from __future__ import annotations

import json

import pytest

from tests.conformance.emitted import Collection
from tests.conformance.report import KNOWN, known_violations, ukcore_result
from tests.conformance.ukcore import RULES

pytestmark = [pytest.mark.corpus, pytest.mark.timeout(300)]


def test_known_violations_table_is_well_formed() -> None:
    rows = json.loads(KNOWN.read_text(encoding="utf-8"))["violations"]
    keys = [(r["profile"], r["path"], r["rule"]) for r in rows]
    assert keys == sorted(set(keys)), "rows must be unique and sorted by profile, path, rule"
    assert all(r["rule"] in RULES and isinstance(r["count"], int) and r["count"] > 0 for r in rows)


def test_ukcore_violations_equal_the_known_table(emitted: Collection, uk_core: None) -> None:
    result = ukcore_result(emitted)
    assert sum(result.resources.values()) == len(emitted.resources)  # every resource had a profile
    found, known = result.table(), known_violations()
    new = {k: n for k, n in found.items() if known.get(k) != n}
    gone = {k: n for k, n in known.items() if found.get(k) != n}
    assert (new, gone) == ({}, {}), (
        "UK Core violations differ from tests/conformance/ukcore_known_violations.json; "
        f"found now (new or changed count): {sorted(new.items())}; "
        f"listed but not found with that count (fixed? remove or update the row): {sorted(gone.items())}"
    )
