"""Process start-up shared by Azure and the local host: logging and telemetry, once."""

from __future__ import annotations

import os

from shared.config.settings import get_settings
from shared.credentials.registry import load_registry
from shared.observability.logging import configure_logging
from shared.observability.telemetry import configure_telemetry
from shared.wiring import telemetry_exporter

_done = False


def bootstrap() -> None:
    global _done
    if _done:
        return
    settings = get_settings()
    # Inside the Azure Functions worker (Azure or Core Tools) the worker owns the log handlers; our local
    # host (TIE_LOCAL_HOST=1) and the CLI use our JSON handler.
    in_worker = bool(os.environ.get("FUNCTIONS_WORKER_RUNTIME")) and not os.environ.get("TIE_LOCAL_HOST")
    configure_logging(settings.log_level, attach_handler=not in_worker)
    configure_telemetry(settings, telemetry_exporter(settings))  # the composition root picks the exporter
    # The downstream registry is validated at start-up: a bad file stops the app, naming path and rule.
    load_registry(settings.downstreams_file)
    _done = True
