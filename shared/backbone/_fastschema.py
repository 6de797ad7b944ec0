"""A compiled fast path for the JSON Schema subset the backbone's contracts use.

``jsonschema`` interprets a schema on every call (~190 µs for a clinical envelope, and every event is
validated on publish and on each consume). :func:`compile_schema` turns a schema into nested closures
once; ``check(document)`` then answers valid / invalid in a few microseconds. It is only a fast path:
when it says "invalid", :mod:`shared.backbone.contracts` asks ``jsonschema`` for the error to report, and
``tests/unit/backbone/test_contracts.py`` checks both agree on valid documents and on mutated ones.

Supported keywords (anything else raises :class:`UnsupportedSchema` at compile time, so a schema edit
that needs more cannot silently weaken validation): ``type``, ``required``, ``properties``,
``additionalProperties``, ``items``, ``minItems``, ``const``, ``enum``, ``pattern``, ``minLength``,
``maxLength``, ``allOf``, ``$ref`` (to a registered schema ``$id``), and the annotations ``$schema``,
``$id``, ``title``, ``description``. Semantics follow JSON Schema 2020-12: ``integer`` accepts integral
floats, booleans are never numbers, ``const``/``enum`` compare JSON values (``true`` is not ``1``),
``pattern`` is an unanchored search, string lengths count code points.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Check = Callable[[Any], bool]

_ANNOTATIONS = frozenset({"$schema", "$id", "title", "description"})
_SUPPORTED = _ANNOTATIONS | {
    "type",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "minItems",
    "const",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "allOf",
    "$ref",
}


class UnsupportedSchema(ValueError):
    """The schema uses a keyword the fast path does not implement."""


def _is_type(value: Any, name: str) -> bool:
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if isinstance(value, bool):
        return False
    if name == "number":
        return isinstance(value, int | float)
    if name == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    raise UnsupportedSchema(f"unknown type {name!r}")


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: booleans differ from numbers, containers compare element-wise."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and bool(a == b)


def compile_schema(schema: Any, resolve: Callable[[str], Any]) -> Check:
    """``check(document) -> bool`` for ``schema``; ``resolve`` maps a ``$ref`` to its schema."""
    if schema is True:
        return lambda _value: True
    if schema is False:
        return lambda _value: False
    if not isinstance(schema, Mapping):
        raise UnsupportedSchema("a schema must be an object or a boolean")
    unknown = set(schema) - _SUPPORTED
    if unknown:
        raise UnsupportedSchema(f"unsupported keyword(s): {', '.join(sorted(unknown))}")
    checks: list[Check] = []

    if "$ref" in schema:
        checks.append(compile_schema(resolve(str(schema["$ref"])), resolve))
    for sub in schema.get("allOf", ()):
        checks.append(compile_schema(sub, resolve))
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        checks.append(_type_check(tuple(names)))
    if "const" in schema:
        expected = schema["const"]
        checks.append(lambda v: json_equal(v, expected))
    if "enum" in schema:
        options = tuple(schema["enum"])
        checks.append(lambda v: any(json_equal(v, o) for o in options))
    if "pattern" in schema:
        search = re.compile(schema["pattern"]).search
        checks.append(lambda v: not isinstance(v, str) or search(v) is not None)
    if "minLength" in schema:
        low = int(schema["minLength"])
        checks.append(lambda v: not isinstance(v, str) or len(v) >= low)
    if "maxLength" in schema:
        high = int(schema["maxLength"])
        checks.append(lambda v: not isinstance(v, str) or len(v) <= high)
    if "minItems" in schema:
        count = int(schema["minItems"])
        checks.append(lambda v: not isinstance(v, list) or len(v) >= count)
    if "items" in schema:
        item = compile_schema(schema["items"], resolve)
        checks.append(lambda v: not isinstance(v, list) or all(item(x) for x in v))
    if "required" in schema:
        required = tuple(schema["required"])
        checks.append(lambda v: not isinstance(v, dict) or all(k in v for k in required))
    properties = {k: compile_schema(s, resolve) for k, s in schema.get("properties", {}).items()}
    if properties:
        items_ = tuple(properties.items())

        def check_properties(v: Any) -> bool:
            if not isinstance(v, dict):
                return True
            for key, check in items_:  # noqa: SIM110 - a plain loop is faster than all(genexpr) here
                if key in v and not check(v[key]):
                    return False
            return True

        checks.append(check_properties)
    if "additionalProperties" in schema:
        extra = compile_schema(schema["additionalProperties"], resolve)
        declared = frozenset(properties)

        def check_additional(v: Any) -> bool:
            if not isinstance(v, dict):
                return True
            return all(extra(value) for key, value in v.items() if key not in declared)

        checks.append(check_additional)

    if not checks:
        return lambda _value: True
    if len(checks) == 1:
        return checks[0]
    frozen = tuple(checks)

    def check_all(v: Any) -> bool:
        for check in frozen:  # noqa: SIM110 - a plain loop is faster than all(genexpr) here
            if not check(v):
                return False
        return True

    return check_all


_PYTHON_TYPES: dict[str, type] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _type_check(names: tuple[str, ...]) -> Check:
    for name in names:
        _is_type(None, name)  # reject unknown type names at compile time
    if all(name in _PYTHON_TYPES for name in names):
        # No numbers among them, so bool-is-an-int cannot matter: one isinstance() decides.
        types = tuple(_PYTHON_TYPES[name] for name in names)
        return lambda v: isinstance(v, types)
    return lambda v: any(_is_type(v, n) for n in names)
