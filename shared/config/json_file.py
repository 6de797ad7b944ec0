"""A JSON configuration file named by a setting, else the packaged default, with a process-wide override
(tests, the local host). One loader for the per-Trust identifier systems and the local code systems."""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from shared.errors import ConfigurationError

if TYPE_CHECKING:
    from shared.config.settings import Settings

__all__ = ["SettingsFile"]

T = TypeVar("T")


class SettingsFile(Generic[T]):
    """``configured()``: the override if set, else the file named by ``setting`` (read once), else the
    packaged ``package/resource``; every document goes through ``parse(doc, where)``. Errors name the file,
    never its content."""

    def __init__(
        self,
        *,
        label: str,
        package: str,
        resource: str,
        setting: Callable[[Settings], Path | None],
        parse: Callable[[Any, str], T],
        error: type[ConfigurationError],
    ) -> None:
        self._label = label
        self._package = package
        self._resource = resource
        self._setting = setting
        self._parse = parse
        self._error = error
        self._loaded: list[T] = []
        self._override: list[T] = []

    def load_file(self, path: Path) -> T:
        """The file at ``path``, parsed (an unreadable or non-JSON file raises ``error``)."""
        try:
            text = path.read_text("utf-8")
        except OSError:
            raise self._error(f"{self._label} file {path.name} cannot be read") from None
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise self._error(f"{path.name}: not valid JSON (line {exc.lineno})") from None
        return self._parse(doc, path.name)

    def packaged(self) -> T:
        """The packaged default."""
        text = resources.files(self._package).joinpath(self._resource).read_text("utf-8")
        return self._parse(json.loads(text), self._resource)

    def _from_settings(self) -> T:
        if not self._loaded:
            from shared.config.settings import get_settings

            path = self._setting(get_settings())
            self._loaded.append(self.packaged() if path is None else self.load_file(path))
        return self._loaded[0]

    def configured(self) -> T:
        """The override, else the file named by the setting (read once), else the packaged one."""
        return self._override[-1] if self._override else self._from_settings()

    def override(self, config: T | None) -> None:
        """Use ``config`` instead of the configured file (``None``: back to the file)."""
        self._override.clear()
        if config is not None:
            self._override.append(config)
