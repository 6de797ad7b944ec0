"""Read-only JSON containers, so parts that are identical in every bundle can be shared between bundles.

Reference-data resources (a ward's Location, a consultant's Practitioner, a GP practice's Organization)
and constant fragments (``meta.profile``) come out the same for every event that names them. Building
them again for each bundle was a large share of the mapping time; sharing one mutable dict between
bundles would let one caller's change leak into every later bundle. :func:`freeze` makes a tree of
:class:`FrozenDict` / :class:`FrozenList` instead: ``dict`` / ``list`` subclasses (so JSON encoders,
``isinstance`` checks and readers see ordinary JSON) whose mutating methods raise ``TypeError``. A
caller that needs to change a bundle copies it first (``copy.deepcopy`` and ``json.loads(serialize(b))``
both give plain, mutable containers).
"""

from __future__ import annotations

from typing import Any, NoReturn

__all__ = ["FrozenDict", "FrozenList", "freeze", "thaw"]


def _read_only(*_args: object, **_kwargs: object) -> NoReturn:
    raise TypeError("this part of the bundle is shared between bundles and read-only: copy it to change it")


class FrozenDict(dict[str, Any]):
    """A ``dict`` whose contents cannot change (see the module docstring)."""

    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = _read_only
    update = pop = popitem = clear = setdefault = _read_only

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return thaw(self)  # type: ignore[no-any-return]

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (dict(self),))


class FrozenList(list[Any]):
    """A ``list`` whose contents cannot change (see the module docstring)."""

    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _read_only
    append = extend = insert = pop = remove = clear = sort = reverse = _read_only

    def __copy__(self) -> list[Any]:
        return list(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return thaw(self)  # type: ignore[no-any-return]

    def __reduce__(self) -> tuple[Any, ...]:
        return (list, (list(self),))


def freeze(node: Any) -> Any:
    """A read-only copy of a JSON tree (dicts, lists and immutable leaves)."""
    if isinstance(node, dict):
        return FrozenDict({k: freeze(v) if isinstance(v, dict | list) else v for k, v in node.items()})
    if isinstance(node, list):
        return FrozenList([freeze(v) if isinstance(v, dict | list) else v for v in node])
    return node


def thaw(node: Any) -> Any:
    """A plain, mutable copy of a JSON tree (frozen or not)."""
    if isinstance(node, dict):
        return {k: thaw(v) for k, v in node.items()}
    if isinstance(node, list):
        return [thaw(v) for v in node]
    return node
