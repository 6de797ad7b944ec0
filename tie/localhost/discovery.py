"""Load a FunctionApp and describe its functions from the azure.functions registry."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func

from tie.localhost.routes import RouteTemplate


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    kind: str  # "http" | "serviceBus" | "timer" | other trigger type
    trigger: Any
    user_function: Callable[..., Any]
    arg_name: str
    is_async: bool
    # HTTP
    route: RouteTemplate | None = None
    methods: frozenset[str] | None = None
    # Service Bus
    topic: str | None = None
    subscription: str | None = None
    connection: str | None = None
    sessions: bool = False
    many: bool = False
    # Timer
    schedule: str | None = None
    run_on_startup: bool = False
    use_monitor: bool = True
    other_bindings: tuple[str, ...] = ()


def load_app(target: str = "function_app") -> func.FunctionApp:
    """Import ``target`` (``module``, ``module:attr`` or ``path/to/file.py[:attr]``) -> the FunctionApp."""
    module_part, _, attr = target.partition(":")
    if module_part.endswith(".py"):
        path = Path(module_part).resolve()
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
    else:
        # Like the Functions host, run from the app's root: function_app.py is a top-level module there.
        root = str(Path.cwd())
        if root not in sys.path:
            sys.path.insert(0, root)
        module = importlib.import_module(module_part)
    if attr:
        app = getattr(module, attr)
        if not isinstance(app, func.FunctionApp):
            raise TypeError(f"{target} is not a FunctionApp")
        return app
    apps = [v for v in vars(module).values() if isinstance(v, func.FunctionApp)]
    if len(apps) != 1:
        raise LookupError(f"expected exactly one FunctionApp in {module_part}, found {len(apps)}")
    return apps[0]


def _trigger_type(trigger: Any) -> str:
    get_type = getattr(trigger, "get_binding_name", None)
    if callable(get_type):
        return str(get_type())
    return str(getattr(trigger, "type", type(trigger).__name__))


# ``FunctionApp.get_functions()`` is meant to be called once per process (the worker indexes once; a second
# call fails its duplicate-name check), so remember the result per app.
_indexed: weakref.WeakKeyDictionary[func.FunctionApp, list[Any]] = weakref.WeakKeyDictionary()


def _index(app: func.FunctionApp) -> list[Any]:
    if app not in _indexed:
        _indexed[app] = app.get_functions()
    return _indexed[app]


def describe(app: func.FunctionApp) -> list[FunctionSpec]:
    specs: list[FunctionSpec] = []
    for fn in _index(app):
        trigger = fn.get_trigger()
        if trigger is None:
            continue
        user_function = fn.get_user_function()
        kind = _trigger_type(trigger)
        name = fn.get_function_name() or user_function.__name__
        others = tuple(
            json.dumps(b.get_dict_repr())
            for b in fn.get_bindings()
            if b is not trigger and b.name != "$return"
        )
        base: dict[str, Any] = {
            "name": name,
            "kind": kind,
            "trigger": trigger,
            "user_function": user_function,
            "arg_name": trigger.name,
            "is_async": inspect.iscoroutinefunction(user_function),
            "other_bindings": others,
        }
        if kind == "httpTrigger":
            route = getattr(trigger, "route", None) or name
            methods = getattr(trigger, "methods", None)
            base["kind"] = "http"
            base["route"] = RouteTemplate.parse(route)
            base["methods"] = (
                frozenset(str(getattr(m, "value", m)).upper() for m in methods) if methods else None
            )
        elif kind == "serviceBusTrigger":
            base["kind"] = "serviceBus"
            base["topic"] = getattr(trigger, "topic_name", None)
            base["subscription"] = getattr(trigger, "subscription_name", None)
            base["connection"] = getattr(trigger, "connection", None)
            base["sessions"] = bool(getattr(trigger, "is_sessions_enabled", False))
            cardinality = getattr(trigger, "cardinality", None)
            base["many"] = str(getattr(cardinality, "value", cardinality) or "").lower() == "many"
        elif kind == "timerTrigger":
            base["kind"] = "timer"
            base["schedule"] = trigger.schedule
            base["run_on_startup"] = bool(getattr(trigger, "run_on_startup", False))
            use_monitor = getattr(trigger, "use_monitor", None)
            base["use_monitor"] = True if use_monitor is None else bool(use_monitor)
        specs.append(FunctionSpec(**base))
    return specs
