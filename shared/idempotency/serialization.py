"""How an effect's result is stored in (and restored from) the idempotency record.

Results are stored as JSON data inside the record value (the record store encodes the whole value as
compact JSON and rejects non-JSON data or values over 256 KiB). A serializer converts between the effect's
result type and JSON data:

* :class:`JsonSerializer` (default): the result must already be JSON data (``dict``/``list``/``str``/
  numbers/``bool``/``None``). A retry gets the JSON round-trip of the first result back, so a tuple comes
  back as a list.
* :class:`PydanticSerializer`: a pydantic model, stored with ``model_dump(mode="json")`` and restored with
  ``model_validate``.
* Anything with ``dump``/``load`` satisfying :class:`ResultSerializer`.
"""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


@runtime_checkable
class ResultSerializer(Protocol):
    def dump(self, result: Any) -> Any:
        """The JSON data to store for ``result``."""
        ...

    def load(self, data: Any) -> Any:
        """The result to hand back to a retry, from the stored JSON data."""
        ...


class JsonSerializer:
    """Store the result as-is; it must be JSON data (validated when the record is written)."""

    def dump(self, result: Any) -> Any:
        return result

    def load(self, data: Any) -> Any:
        return data


class PydanticSerializer(Generic[M]):
    """Store a pydantic model as its JSON-mode dump; restore with validation."""

    def __init__(self, model: type[M]) -> None:
        self._model = model

    def dump(self, result: Any) -> Any:
        if not isinstance(result, self._model):
            raise TypeError(f"expected a {self._model.__name__} result, got {type(result).__name__}")
        return result.model_dump(mode="json")

    def load(self, data: Any) -> M:
        return self._model.model_validate(data)
