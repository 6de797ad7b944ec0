"""Reading the versioned terminology files shipped in ``shared/terminology/data`` (package data).

Files are read with :mod:`importlib.resources`, so they load the same from a source tree, an installed
wheel or a zip. Ids are restricted to ``[a-z0-9][a-z0-9.-]*`` so a caller-supplied id can never name a
path outside the data folder.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

from shared.terminology.errors import InvalidTerminologyData

DATA_PACKAGE = "shared.terminology.data"
CONCEPT_MAPS = "conceptmaps"
VALUE_SETS = "valuesets"

_ID = re.compile(r"[a-z0-9][a-z0-9.-]{0,99}")
#: Semantic version (MAJOR.MINOR.PATCH, optional pre-release), as required of every data file.
SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?")


def is_valid_id(resource_id: str) -> bool:
    return bool(_ID.fullmatch(resource_id))


def list_ids(kind: str) -> tuple[str, ...]:
    """Ids (file stems) of every ``*.json`` file in ``data/<kind>``, sorted."""
    folder = resources.files(f"{DATA_PACKAGE}.{kind}")
    return tuple(sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json")))


def exists(kind: str, resource_id: str) -> bool:
    return (
        is_valid_id(resource_id)
        and resources.files(f"{DATA_PACKAGE}.{kind}").joinpath(f"{resource_id}.json").is_file()
    )


def read_json(kind: str, resource_id: str) -> Any:
    """Parsed JSON of ``data/<kind>/<resource_id>.json`` (the caller checks :func:`exists` first)."""
    where = f"{kind}/{resource_id}.json"
    text = resources.files(f"{DATA_PACKAGE}.{kind}").joinpath(f"{resource_id}.json").read_text("utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidTerminologyData(f"{where}: not valid JSON (line {exc.lineno})") from None


def read_package_json(name: str) -> Any:
    """Parsed JSON of ``data/<name>.json`` (top-level data files such as the field policies)."""
    text = resources.files(DATA_PACKAGE).joinpath(f"{name}.json").read_text("utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidTerminologyData(f"{name}.json: not valid JSON (line {exc.lineno})") from None


class Reader:
    """Typed accessors over one JSON object that raise :class:`InvalidTerminologyData` naming the file
    and the JSON path of the offending member."""

    def __init__(self, where: str, obj: Any, path: str = "$") -> None:
        if not isinstance(obj, dict):
            raise InvalidTerminologyData(f"{where}: {path} must be an object")
        self.where = where
        self.obj: dict[str, Any] = obj
        self.path = path

    def fail(self, member: str, problem: str) -> InvalidTerminologyData:
        return InvalidTerminologyData(f"{self.where}: {self.path}.{member} {problem}")

    def only(self, allowed: set[str]) -> None:
        unknown = sorted(set(self.obj) - allowed)
        if unknown:
            raise InvalidTerminologyData(f"{self.where}: {self.path} has unknown member(s) {unknown}")

    def string(self, member: str) -> str:
        value = self.obj.get(member)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(member, "is required and must be a non-empty string")
        return value

    def opt_string(self, member: str) -> str | None:
        if member not in self.obj:
            return None
        return self.string(member)

    def semver(self, member: str) -> str:
        value = self.string(member)
        if not SEMVER.fullmatch(value):
            raise self.fail(member, f"must be a semantic version (MAJOR.MINOR.PATCH), got {value[:20]!r}")
        return value

    def choice(self, member: str, allowed: set[str]) -> str:
        value = self.string(member)
        if value not in allowed:
            raise self.fail(member, f"must be one of {sorted(allowed)}, got {value[:30]!r}")
        return value

    def objects(self, member: str, *, required: bool = True, non_empty: bool = True) -> list[Reader]:
        value = self.obj.get(member)
        if value is None and not required:
            return []
        if not isinstance(value, list) or (non_empty and not value):
            raise self.fail(member, "must be a non-empty list" if non_empty else "must be a list")
        return [Reader(self.where, item, f"{self.path}.{member}[{i}]") for i, item in enumerate(value)]

    def opt_object(self, member: str) -> Reader | None:
        if member not in self.obj:
            return None
        return Reader(self.where, self.obj[member], f"{self.path}.{member}")

    def strings(self, member: str) -> tuple[str, ...]:
        value = self.obj.get(member, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(member, "must be a list of non-empty strings")
        return tuple(value)
