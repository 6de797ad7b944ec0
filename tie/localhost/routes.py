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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Generic, TypeVar
from urllib.parse import unquote

T = TypeVar("T")


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
    #: The segment as written in the template: equal texts check a value alike.
    text: str = ""


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
                    text=part,
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

    @property
    def first_literal(self) -> str | None:
        """The first segment when it is a literal (lower case), else None."""
        first = self.segments[0].literal if self.segments else None
        return first.lower() if first is not None else None

    @property
    def lengths(self) -> tuple[int, float]:
        """Fewest and most path segments this template can match."""
        required = [
            i
            for i, s in enumerate(self.segments)
            if s.literal is not None or not (s.optional or s.default is not None)
        ]
        most = float("inf") if any(s.catch_all for s in self.segments) else len(self.segments)
        return (required[-1] + 1 if required else 0), most

    def match(self, path: str) -> dict[str, str] | None:
        """Match a path below the route prefix (no leading slash needed); returns route params."""
        return self.match_segments(split_path(path))

    def match_segments(
        self, raw_parts: Sequence[str], checked: dict[tuple[int, str], bool] | None = None
    ) -> dict[str, str] | None:
        """:meth:`match` on a path already split by :func:`split_path`; ``checked`` remembers, for this one
        path, which constrained segments (by position and template text) its values passed."""
        params: dict[str, str] = {}
        i = 0
        for seg in self.segments:
            if seg.catch_all:
                rest = "/".join(raw_parts[i:])
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
            value = raw_parts[i]
            if seg.literal is not None:
                if value.lower() != seg.literal.lower():
                    return None
            else:
                if seg.constraints:
                    known = checked.get((i, seg.text)) if checked is not None else None
                    if known is None:
                        known = all(check(value) for check in seg.constraints)
                        if checked is not None:
                            checked[(i, seg.text)] = known
                    if not known:
                        return None
                params[seg.param or ""] = value
            i += 1
        if i != len(raw_parts):
            return None
        return params


def split_path(path: str) -> list[str]:
    """A path's segments, percent-decoded."""
    stripped = path.strip("/")
    return [unquote(part) for part in stripped.split("/")] if stripped else []


class RouteTable(Generic[T]):
    """Routes kept in the given (precedence) order, indexed by their first literal segment: a path is tried
    only against the routes that can match its first segment and its number of segments, in the same
    order as a scan of them all, each constrained segment checked once per path."""

    def __init__(self, routes: Iterable[tuple[RouteTemplate, T]]) -> None:
        entries = [(route, target, route.lengths) for route, target in routes]
        self._any_first = [e for e in entries if e[0].first_literal is None]
        self._by_first = {
            literal: [e for e in entries if e[0].first_literal in (literal, None)]
            for literal in {e[0].first_literal for e in entries} - {None}
            if literal is not None
        }

    def matches(self, path: str) -> Iterator[tuple[T, dict[str, str]]]:
        """``(target, route params)`` of every route matching ``path``, in order."""
        parts = split_path(path)
        candidates = self._by_first.get(parts[0].lower(), self._any_first) if parts else self._any_first
        count = len(parts)
        checked: dict[tuple[int, str], bool] = {}
        for route, target, (fewest, most) in candidates:
            if fewest <= count <= most:
                params = route.match_segments(parts, checked)
                if params is not None:
                    yield target, params
