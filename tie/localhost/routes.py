"""Azure Functions (ASP.NET Core) route templates: ``fhir/{type:alpha}/{id?}``, ``{*rest}``, constraints.

Supported: literal segments, ``{name}``, optional ``{name?}``, defaults ``{name=value}``, catch-all
``{*name}`` (last segment), and the constraints int, long, bool, double, float, decimal, guid, alpha,
datetime, minlength(n), maxlength(n), length(n) / length(a,b), min(n), max(n), range(a,b), regex(expr).
Matching is case-insensitive for literals, like ASP.NET Core. Route precedence: more literal segments
first, then constrained parameters, then plain parameters, then catch-alls.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from urllib.parse import unquote


class RouteTemplateError(ValueError):
    pass


def _is_number(kind: type) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        try:
            kind(value)
        except (ValueError, InvalidOperation):
            return False
        return True

    return check


def _is_int(value: str) -> bool:
    return bool(re.fullmatch(r"-?\d+", value))


def _is_bool(value: str) -> bool:
    return value.lower() in {"true", "false"}


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _constraint(spec: str) -> Callable[[str], bool]:
    m = re.fullmatch(r"(\w+)(?:\((.*)\))?", spec, re.S)
    if not m:
        raise RouteTemplateError(f"bad constraint {spec!r}")
    name, arg = m.group(1).lower(), m.group(2)
    simple: dict[str, Callable[[str], bool]] = {
        "int": _is_int,
        "long": _is_int,
        "bool": _is_bool,
        "double": _is_number(float),
        "float": _is_number(float),
        "decimal": _is_number(Decimal),
        "guid": _is_guid,
        "alpha": lambda v: bool(re.fullmatch(r"[A-Za-z]+", v)),
        "datetime": _is_datetime,
    }
    if name in simple and arg is None:
        return simple[name]
    if arg is None:
        raise RouteTemplateError(f"unknown constraint {spec!r}")
    if name == "regex":
        pattern = re.compile(arg)
        return lambda v: bool(pattern.fullmatch(v))
    nums = [int(a) for a in arg.split(",")]
    if name == "minlength":
        return lambda v: len(v) >= nums[0]
    if name == "maxlength":
        return lambda v: len(v) <= nums[0]
    if name == "length":
        lo, hi = (nums[0], nums[0]) if len(nums) == 1 else (nums[0], nums[1])
        return lambda v: lo <= len(v) <= hi
    if name == "min":
        return lambda v: _is_int(v) and int(v) >= nums[0]
    if name == "max":
        return lambda v: _is_int(v) and int(v) <= nums[0]
    if name == "range":
        return lambda v: _is_int(v) and nums[0] <= int(v) <= nums[1]
    raise RouteTemplateError(f"unknown constraint {spec!r}")


@dataclass(frozen=True)
class _Segment:
    literal: str | None = None
    param: str | None = None
    optional: bool = False
    default: str | None = None
    catch_all: bool = False
    constraints: tuple[Callable[[str], bool], ...] = field(default=())


_PARAM = re.compile(r"^\{(\*{1,2})?([A-Za-z_][\w]*)((?::[^=?}]+(?:\([^)]*\))?)*)(\?)?(?:=([^}]*))?\}$")


@dataclass(frozen=True)
class RouteTemplate:
    template: str
    segments: tuple[_Segment, ...]

    @classmethod
    def parse(cls, template: str) -> RouteTemplate:
        text = template.strip().strip("/")
        segments: list[_Segment] = []
        parts = list(text.split("/")) if text else []
        for index, part in enumerate(parts):
            if not part:
                raise RouteTemplateError(f"empty segment in route {template!r}")
            if "{" not in part:
                segments.append(_Segment(literal=part))
                continue
            m = _PARAM.match(part)
            if not m:
                raise RouteTemplateError(f"unsupported segment {part!r} in route {template!r}")
            stars, name, constraint_text, optional, default = m.groups()
            constraints: list[Callable[[str], bool]] = []
            for spec in re.findall(r":([^:(]+(?:\([^)]*\))?)", constraint_text or ""):
                constraints.append(_constraint(spec))
            catch_all = bool(stars)
            if catch_all and index != len(parts) - 1:
                raise RouteTemplateError(f"catch-all must be last in {template!r}")
            segments.append(
                _Segment(
                    param=name,
                    optional=bool(optional) or catch_all,
                    default=default,
                    catch_all=catch_all,
                    constraints=tuple(constraints),
                )
            )
        return cls(template, tuple(segments))

    @property
    def precedence(self) -> tuple[int, ...]:
        """Sort key: smaller sorts first (more specific)."""
        key = []
        for seg in self.segments:
            if seg.literal is not None:
                key.append(0)
            elif seg.catch_all:
                key.append(3)
            elif seg.constraints:
                key.append(1)
            else:
                key.append(2)
        return (*key, 9)

    def match(self, path: str) -> dict[str, str] | None:
        """Match a path below the route prefix (no leading slash needed); returns route params."""
        raw_parts = list(path.strip("/").split("/")) if path.strip("/") else []
        params: dict[str, str] = {}
        i = 0
        for seg in self.segments:
            if seg.catch_all:
                rest = "/".join(unquote(p) for p in raw_parts[i:])
                if rest:
                    params[seg.param or ""] = rest
                elif seg.default is not None:
                    params[seg.param or ""] = seg.default
                i = len(raw_parts)
                continue
            if i >= len(raw_parts):
                if seg.literal is None and (seg.optional or seg.default is not None):
                    if seg.default is not None:
                        params[seg.param or ""] = seg.default
                    continue
                return None
            value = unquote(raw_parts[i])
            if seg.literal is not None:
                if value.lower() != seg.literal.lower():
                    return None
            else:
                if not all(check(value) for check in seg.constraints):
                    return None
                params[seg.param or ""] = value
            i += 1
        if i != len(raw_parts):
            return None
        return params
