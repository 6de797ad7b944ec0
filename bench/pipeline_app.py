"""The production FunctionApp for ``bench/pipeline.py``, optionally without write-back idempotency.

``BENCH_IDEMPOTENCY=0`` installs a backbone whose write-back subscribers call the downstream directly
(no idempotency guard, so no outbox: the writeback.completed event is published directly instead) - the
"without" side of the overhead ratio. Anything else: exactly what ``make run`` serves.
"""

from __future__ import annotations

import os

from function_app import app
from shared.backbone.runtime import (
    WriteBackOptions,
    build_backbone,
    default_downstreams,
    set_backbone,
)
from shared.messaging.topology import SUB_WRITEBACK_HL7V2
from shared.wiring import get_container

__all__ = ["app"]

if os.environ.get("BENCH_IDEMPOTENCY") == "0":
    _container = get_container()
    _downstreams = default_downstreams(_container.settings, _container.fhir)
    _backbone = build_backbone(
        bus=_container.bus,
        records=_container.records,
        downstreams=_downstreams,
        options=WriteBackOptions(idempotency=False),
    )
    _backbone._closables.append(_downstreams[SUB_WRITEBACK_HL7V2].close)
    set_backbone(_backbone, owner=_container)
