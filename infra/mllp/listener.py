"""Entry point of the MLLP listener container (Dockerfile): the listener ``tie run`` starts beside the local
functions host (``shared.ingest.mllp_listener.start_mllp_listener``), on its own, against the adapters the
settings select - Service Bus and Storage with the managed identity in Azure (TIE_BUS_BACKEND /
TIE_STORAGE_BACKEND=azure). No HTTP host, no triggers: Service Bus consumers stay in the Function App.

Prints one line with the bound address once listening (TIE_MLLP_PORT=0 picks a free port, for tests), drains
on SIGTERM/SIGINT (Container Apps sends SIGTERM on scale-in and revision change) and exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shared.bootstrap import bootstrap  # noqa: E402
from shared.errors import TieError  # noqa: E402
from shared.ingest.mllp_listener import start_mllp_listener, tls_label  # noqa: E402
from shared.wiring import get_container  # noqa: E402


async def serve() -> int:
    bootstrap()
    container = get_container()
    settings = container.settings
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        credentials = container.credentials if settings.mllp_tls != "off" else None
        server = await start_mllp_listener(
            container.bus, container.records, settings, credentials=credentials
        )
    except OSError as exc:
        print(
            f"mllp listener: cannot listen on {settings.mllp_host}:{settings.mllp_port}: {exc.strerror}",
            file=sys.stderr,
        )
        container.close()
        return 1
    except TieError as exc:  # TIE_MLLP_TLS: the certificate is missing, expired or unreadable
        print(f"mllp listener: TLS not usable ({exc.code}): {exc}", file=sys.stderr)
        container.close()
        return 1
    tls = tls_label(settings)
    print(
        f"MLLP listener: {settings.mllp_host}:{server.port} ({tls}, {settings.bus_backend.value} bus)",
        flush=True,
    )
    await stop.wait()
    await server.stop()
    container.close()
    return 0


def main() -> int:
    return asyncio.run(serve())


if __name__ == "__main__":
    raise SystemExit(main())
