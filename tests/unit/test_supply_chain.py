"""The hashed lock files stay in step with the human-edited requirements (docs/supply-chain.md): every pin in
``requirements*.txt`` is the pin in the matching ``*.lock``, every lock entry carries a sha256 hash, the
runtime lock and the dev lock agree (what is tested is what is deployed), and ``make`` installs the dev lock
with ``--require-hashes``. The checkers are pure functions, run on the real files and on broken tables."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

MAKEFILE = REPO_ROOT / "Makefile"
PAIRS = [("requirements.txt", "requirements.lock"), ("requirements-dev.txt", "requirements-dev.lock")]

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_INPUT_LINE = re.compile(rf"^(?P<name>{_NAME})\s*(?:\[[^\]]*\])?\s*(?P<spec>[^;#]*)")
_PIN = re.compile(r"^==\s*(?P<version>[^\s,;]+)$")
_LOCK_ENTRY = re.compile(rf"^(?P<name>{_NAME})==(?P<version>\S+)(?P<options>(?:\s+--hash=\S+)*)\s*$")
_HASH = re.compile(r"--hash=(?P<algo>[a-z0-9]+):(?P<digest>[0-9a-f]+)")


def canonical(name: str) -> str:
    """PEP 503 normalised project name (``fhir.resources`` == ``fhir-resources``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class LockEntry:
    version: str
    sha256: tuple[str, ...]
    other_hashes: tuple[str, ...]


def input_specs(text: str, include: dict[str, str] | None = None) -> dict[str, str]:
    """Name -> version specifier of every requirement line (``-r`` files followed through ``include``)."""
    specs: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-r ", "--requirement ")):
            child = line.split(maxsplit=1)[1]
            if include is None or child not in include:
                raise ValueError(f"unresolved include: {child}")
            specs.update(input_specs(include[child], include))
            continue
        if line.startswith("-"):
            raise ValueError(f"unexpected option line in a requirements input: {line}")
        match = _INPUT_LINE.match(line)
        if match is None:
            raise ValueError(f"unparsable requirement: {line}")
        specs[canonical(match["name"])] = match["spec"].strip()
    return specs


def lock_entries(text: str) -> dict[str, LockEntry]:
    """Name -> pinned version and hashes of every entry of a pip-compile lock (continuations joined)."""
    joined = re.sub(r"\\\n", " ", text)
    entries: dict[str, LockEntry] = {}
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LOCK_ENTRY.match(line)
        if match is None:
            raise ValueError(f"lock line is not an exact pin with hashes: {line[:80]}")
        hashes = [(h["algo"], h["digest"]) for h in _HASH.finditer(match["options"])]
        entries[canonical(match["name"])] = LockEntry(
            version=match["version"],
            sha256=tuple(d for a, d in hashes if a == "sha256" and len(d) == 64),
            other_hashes=tuple(f"{a}:{d}" for a, d in hashes if not (a == "sha256" and len(d) == 64)),
        )
    return entries


def lock_problems(specs: dict[str, str], lock: dict[str, LockEntry]) -> list[str]:
    """Why ``lock`` does not faithfully lock ``specs`` (empty when it does)."""
    problems: list[str] = []
    for name, spec in sorted(specs.items()):
        pin = _PIN.match(spec)
        if pin is None:
            problems.append(f"{name}: input not pinned with == ({spec or 'no specifier'})")
        entry = lock.get(name)
        if entry is None:
            problems.append(f"{name}: missing from the lock")
        elif pin is not None and entry.version != pin["version"]:
            problems.append(f"{name}: input {pin['version']} but lock {entry.version}")
    for name, entry in sorted(lock.items()):
        if not entry.sha256:
            problems.append(f"{name}: no --hash=sha256 in the lock")
        if entry.other_hashes:
            problems.append(f"{name}: malformed or non-sha256 hash {entry.other_hashes[0]}")
    return problems


def disagreements(runtime: dict[str, LockEntry], dev: dict[str, LockEntry]) -> list[str]:
    """Runtime lock entries the dev lock lacks or pins to another version."""
    return [
        f"{name}: runtime {entry.version}, dev {dev[name].version if name in dev else 'absent'}"
        for name, entry in sorted(runtime.items())
        if name not in dev or dev[name].version != entry.version
    ]


def stamp_rule(makefile: str) -> tuple[list[str], list[str]]:
    """Prerequisites and recipe lines of the venv bootstrap rule ``$(STAMP): ...``."""
    lines = makefile.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("$(STAMP):"))
    prerequisites = lines[start].split(":", 1)[1].split()
    recipe: list[str] = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return prerequisites, recipe


def bootstrap_problems(makefile: str) -> list[str]:
    """Why the bootstrap rule does not install exactly the hashed dev lock."""
    prerequisites, recipe = stamp_rule(makefile)
    problems = [
        f"stamp does not depend on {lock}"
        for lock in ("requirements.lock", "requirements-dev.lock")
        if lock not in prerequisites
    ]
    installs = [line for line in recipe if "pip install" in line]
    if not any("--require-hashes" in line and "-r requirements-dev.lock" in line for line in installs):
        problems.append("no pip install --require-hashes -r requirements-dev.lock")
    for line in installs:
        if "--upgrade" in line or " -U " in line:
            problems.append(f"upgrades instead of installing the lock: {line}")
        elif re.search(r"-r requirements(-dev)?\.txt", line):
            problems.append(f"installs the unlocked input: {line}")
        elif "--require-hashes" not in line and "--no-deps" not in line:
            problems.append(f"installs without hashes: {line}")
    return problems


def _read(name: str) -> str:
    return (REPO_ROOT / name).read_text(encoding="utf-8")


def _includes() -> dict[str, str]:
    return {name: _read(name) for name, _ in PAIRS}


# ---- the real files ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("inputs", "lock"), PAIRS)
def test_every_input_requirement_is_pinned_in_its_lock_with_hashes(inputs: str, lock: str) -> None:
    specs = input_specs(_read(inputs), _includes())
    entries = lock_entries(_read(lock))
    assert specs and entries
    assert lock_problems(specs, entries) == []


def test_the_dev_lock_pins_the_runtime_lock_versions() -> None:
    runtime = lock_entries(_read("requirements.lock"))
    dev = lock_entries(_read("requirements-dev.lock"))
    assert disagreements(runtime, dev) == []


def test_the_installer_itself_is_pinned_in_the_dev_lock() -> None:
    dev = lock_entries(_read("requirements-dev.lock"))
    assert {"pip", "setuptools", "wheel"} <= set(dev)


def test_make_installs_the_dev_lock_with_require_hashes() -> None:
    assert bootstrap_problems(MAKEFILE.read_text(encoding="utf-8")) == []


# ---- the checkers catch what they guard against --------------------------------------------------------

_H = "a" * 64
_GOOD_LOCK = f"pydantic==2.14.3 \\\n    --hash=sha256:{_H}\n    # via -r requirements.txt\n"

LOCK_CASES = [
    ("pinned and hashed", "pydantic==2.14.3\n", _GOOD_LOCK, []),
    ("name spelt differently", "Pydantic==2.14.3\n", _GOOD_LOCK, []),
    ("missing from the lock", "orjson==3.13.0\n", _GOOD_LOCK, ["orjson: missing from the lock"]),
    ("lock behind the input", "pydantic==2.15.0\n", _GOOD_LOCK, ["pydantic: input 2.15.0 but lock 2.14.3"]),
    ("input not pinned", "pydantic>=2\n", _GOOD_LOCK, ["pydantic: input not pinned with == (>=2)"]),
    ("no hash", "pydantic==2.14.3\n", "pydantic==2.14.3\n", ["pydantic: no --hash=sha256 in the lock"]),
    (
        "md5 only",
        "pydantic==2.14.3\n",
        f"pydantic==2.14.3 \\\n    --hash=md5:{'b' * 32}\n",
        ["pydantic: no --hash=sha256 in the lock", f"pydantic: malformed or non-sha256 hash md5:{'b' * 32}"],
    ),
]


@pytest.mark.parametrize(("case", "inputs", "lock", "expected"), LOCK_CASES, ids=[c[0] for c in LOCK_CASES])
def test_lock_problems_table(case: str, inputs: str, lock: str, expected: list[str]) -> None:
    assert lock_problems(input_specs(inputs), lock_entries(lock)) == expected, case


def test_a_lock_line_without_an_exact_pin_is_rejected() -> None:
    with pytest.raises(ValueError, match="not an exact pin"):
        lock_entries("pydantic>=2.14 \\\n    --hash=sha256:" + _H + "\n")


def test_an_include_is_followed() -> None:
    specs = input_specs("-r base.txt\npytest==9.2.0\n", {"base.txt": "fhir.resources==8.3.0\n"})
    assert specs == {"fhir-resources": "==8.3.0", "pytest": "==9.2.0"}


def test_disagreeing_locks_are_reported() -> None:
    runtime = lock_entries(_GOOD_LOCK)
    assert disagreements(runtime, lock_entries(_GOOD_LOCK.replace("2.14.3", "2.14.2"))) == [
        "pydantic: runtime 2.14.3, dev 2.14.2"
    ]
    assert disagreements(runtime, {}) == ["pydantic: runtime 2.14.3, dev absent"]


_GOOD_STAMP = (
    "$(STAMP): requirements.lock requirements-dev.lock pyproject.toml\n"
    "\t@test -x $(PY) || $(PYTHON) -m venv $(VENV)\n"
    "\t$(PY) -m pip install --quiet --require-hashes -r requirements-dev.lock\n"
    "\t$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .\n"
    "\t@touch $(STAMP)\n"
)
STAMP_CASES = [
    ("locked", _GOOD_STAMP, []),
    (
        "stamp on the inputs",
        _GOOD_STAMP.replace(
            "requirements.lock requirements-dev.lock", "requirements.txt requirements-dev.txt"
        ),
        ["stamp does not depend on requirements.lock", "stamp does not depend on requirements-dev.lock"],
    ),
    (
        "hashes dropped",
        _GOOD_STAMP.replace("--require-hashes ", ""),
        [
            "no pip install --require-hashes -r requirements-dev.lock",
            "installs without hashes: $(PY) -m pip install --quiet -r requirements-dev.lock",
        ],
    ),
    (
        "unlocked input",
        _GOOD_STAMP.replace("--require-hashes -r requirements-dev.lock", "-r requirements-dev.txt"),
        [
            "no pip install --require-hashes -r requirements-dev.lock",
            "installs the unlocked input: $(PY) -m pip install --quiet -r requirements-dev.txt",
        ],
    ),
    (
        "pip upgraded to the latest",
        _GOOD_STAMP.replace(
            "\t$(PY) -m pip install --quiet --req",
            "\t$(PY) -m pip install -U pip\n\t$(PY) -m pip install --quiet --req",
        ),
        ["upgrades instead of installing the lock: $(PY) -m pip install -U pip"],
    ),
]


@pytest.mark.parametrize(("case", "makefile", "expected"), STAMP_CASES, ids=[c[0] for c in STAMP_CASES])
def test_bootstrap_problems_table(case: str, makefile: str, expected: list[str]) -> None:
    assert bootstrap_problems(makefile) == expected, case


def test_the_lock_files_are_named_in_the_docs() -> None:
    doc = Path(REPO_ROOT / "docs" / "supply-chain.md").read_text(encoding="utf-8")
    for name in ("requirements.lock", "requirements-dev.lock", "make lock", "--require-hashes"):
        assert name in doc
