"""``python -m tests.conformance.report``: the conformance figures of every emitted resource.

Prints the base-R4 validator error count (and warnings by kind), the R4 required-binding errors, the UK
Core violations grouped by profile / path / rule with counts (and how they compare with
``ukcore_known_violations.json``), the unmapped codes (local / HL7 table / other codings where UK Core
binds a value set extensible or preferred), what could not be checked offline, and the Must-Support
coverage table. Exit status 0 (it reports; the tests decide).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from tests.conformance.base_r4 import BindingResult, RequiredBindings
from tests.conformance.emitted import Collection, collect
from tests.conformance.tooling import Validator
from tests.conformance.ukcore import UkCoreResult, uk_core

KNOWN = Path(__file__).resolve().parent / "ukcore_known_violations.json"


def known_violations() -> Counter[tuple[str, str, str]]:
    rows = json.loads(KNOWN.read_text(encoding="utf-8"))["violations"]
    return Counter({(r["profile"], r["path"], r["rule"]): int(r["count"]) for r in rows})


def validator_issues(collection: Collection, validator: Validator) -> Counter[tuple[str, str, str]]:
    """(severity, resource type, element) -> count over every emitted resource."""
    out: Counter[tuple[str, str, str]] = Counter()
    for item in collection.resources:
        for issue in validator.validate(item.resource):
            out[(issue["severity"], item.resource_type, issue["expression"].split("[")[0])] += 1
    return out


def required_bindings(collection: Collection) -> BindingResult:
    result = BindingResult()
    checker = RequiredBindings()
    for item in collection.resources:
        checker.check(item.resource, result)
    return result


def ukcore_result(collection: Collection) -> UkCoreResult:
    return uk_core().check(item.resource for item in collection.resources)


def main() -> int:
    collection = collect()
    sources = Counter(e.source.split(":", 1)[0] for e in collection.resources)
    types = Counter(e.resource_type for e in collection.resources)
    shown = ", ".join(f"{k} {v}" for k, v in sources.items())
    print(f"Emitted resources: {len(collection.resources)} ({shown})")
    print("  by type: " + ", ".join(f"{k} {v}" for k, v in sorted(types.items())))
    if collection.errors:
        print(f"  NOT EMITTED (unexpected mapping failures): {len(collection.errors)}")

    with Validator() as validator:
        issues = validator_issues(collection, validator)
    errors = sum(n for (sev, _t, _e), n in issues.items() if sev in ("error", "fatal"))
    warnings = Counter(f"{t}.{e.split('.', 1)[-1]}" for (sev, t, e) in issues.elements() if sev == "warning")
    print("\n== Base FHIR R4 (@medplum/core validateResource)")
    print(f"errors: {errors}")
    for (sev, rtype, element), n in sorted(issues.items()):
        if sev in ("error", "fatal"):
            print(f"  {n:5d}  {rtype}  {element}")
    print(f"warnings: {sum(warnings.values())}" + (f" ({', '.join(sorted(warnings))})" if warnings else ""))
    bindings = required_bindings(collection)
    print(
        f"required-binding errors: {len(bindings.issues)} ({bindings.checked} coded values checked, "
        f"{sum(bindings.not_checkable.values())} not checkable offline)"
    )
    for issue in bindings.issues:
        print(f"  {issue.resource_type}  {issue.path}  {issue.value_set}")

    result = ukcore_result(collection)
    table = result.table()
    known = known_violations()
    print("\n== UK Core violations (profile / path / rule: count)")
    print(
        f"total: {sum(table.values())} in {len(table)} groups; resources checked: "
        + ", ".join(f"{k} {v}" for k, v in sorted(result.resources.items()))
    )
    for (profile, path, rule), n in sorted(table.items()):
        mark = "" if known.get((profile, path, rule)) == n else "   <- differs from the known table"
        print(f"  {n:5d}  {profile}  {path}  [{rule}]{mark}")
    for key in sorted(set(known) - set(table)):
        print(f"  {0:5d}  {key[0]}  {key[1]}  [{key[2]}]   <- listed as known, now fixed: remove it")
    print("values checked: " + ", ".join(f"{k} {v}" for k, v in sorted(result.checked.items())))
    if result.unprofiled:
        print("no UK Core profile: " + ", ".join(f"{k} {v}" for k, v in sorted(result.unprofiled.items())))
    print(
        "\n== Unmapped codes: values bound extensible / preferred with no coding from the value set "
        "(legal, not failed), by what they carry"
    )
    print(f"total: {sum(result.unmapped.values())}" + ("" if result.unmapped else " (none)"))
    for (profile, path, kind), n in sorted(result.unmapped.items()):
        print(f"  {n:5d}  {profile}  {path}  [{kind}]")
    print("\nnot checkable offline:" + ("" if result.not_checkable else " none"))
    for (profile, path, why), n in sorted(result.not_checkable.items()):
        print(f"  {n:5d}  {profile}  {path}  ({why})")

    print("\n== Must-Support coverage (resources populating the element / resources checked)")
    for profile in sorted(result.must_support):
        total = result.resources[profile]
        print(f"{profile} ({total})")
        for element, n in result.must_support[profile].items():
            print(f"  {n:5d}/{total:<5d} {element}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
