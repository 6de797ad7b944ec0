"""Trusted construction of canonical models on the mapping hot path (no pydantic validation).

pydantic validation of a small frozen model costs 1-2 us; the HL7 mapper builds 20-60 of them per message,
from values it has already checked. :func:`builder` returns a constructor that assembles the instance
directly (``__dict__`` plus pydantic's bookkeeping slots), about twice as fast.

This is only safe where the caller guarantees everything validation would check, so the rules are:

* Only models whose *field-level* constraints the caller meets by construction: ``str`` fields get
  non-empty ``str`` (``min_length=1`` fields), tuples get tuples, literals get a value the rules
  compiler checked against the field's ``Literal`` (``shared.mapping.hl7v2_in.rules``), nested models
  are already models, times come from :mod:`shared.mapping.timeutil` (always timezone-aware).
* Models with a *model validator* or a field validator with logic (``Patient`` identified, ``Concept``
  coded or text, ``NhsNumber`` check digit, ``PartialDate`` calendar date, ``ClinicalDateTime`` aware,
  ``Observation`` value xor data-absent, ``ServiceRequest`` order number) are only built this way where
  the mapper checks the same condition itself, next to the call (each call site says which).
* ``tests/unit/mapping/test_trusted_construction.py`` re-validates every model of every mapped corpus
  and fabricated message (``Model.model_validate(m.model_dump())`` must equal ``m``, recursively), so a
  mapper change that breaks an invariant fails the tests rather than slipping through.

The instances are ordinary pydantic models: equality, hashing, ``model_dump`` and ``model_copy`` work as
for validated ones (every field counts as set; the fields-set object is shared between instances, which
pydantic never changes in place for a frozen model).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

__all__ = ["builder"]

M = TypeVar("M", bound=BaseModel)

_TEMPLATE = """
def build({params}):
    m = _new(_cls)
    _set(m, "__dict__", {{{items}}})
    _set(m, "__pydantic_fields_set__", _fields_set)
    _set(m, "__pydantic_extra__", None)
    _set(m, "__pydantic_private__", None)
    return m
"""


def builder(cls: type[M]) -> Callable[..., M]:
    """A keyword-argument constructor for ``cls`` that skips validation (see the module rules). Fields
    left out take their declared defaults (shared immutable values: ``None``, ``()``, enum members)."""
    names = list(cls.model_fields)
    namespace: dict[str, Any] = {
        "_new": cls.__new__,
        "_cls": cls,
        "_set": object.__setattr__,
        # One set shared by every instance the builder makes: pydantic never changes a frozen model's
        # fields-set in place (model_copy copies it first), and one allocation fewer per model matters.
        "_fields_set": set(names),
    }
    params = []
    for name in names:
        field = cls.model_fields[name]
        if field.is_required():
            params.append(name)
        else:
            default = field.get_default(call_default_factory=True)
            if isinstance(default, list | dict | set):  # pragma: no cover - the canonical model has none
                raise TypeError(f"{cls.__name__}.{name}: a mutable default cannot be shared")
            namespace[f"_default_{name}"] = default
            params.append(f"{name}=_default_{name}")
    # keyword-only: a call can never bind a value to the wrong field by position
    source = _TEMPLATE.format(params="*, " + ", ".join(params), items=", ".join(f"{n!r}: {n}" for n in names))
    exec(source, namespace)  # noqa: S102 - generated from the model's own field names only
    build: Callable[..., M] = namespace["build"]
    build.__name__ = f"trusted_{cls.__name__}"
    build.__doc__ = f"{cls.__name__} without validation (shared.mapping._construct rules apply)."
    return build
