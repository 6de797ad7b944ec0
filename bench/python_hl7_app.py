"""python-hl7's asyncio MLLP server (``hl7.mllp``) as an unpersisted peer for ``bench/mllp_throughput.py``.

Every message is parsed by ``hl7.parse`` (through the stream reader) and answered with
``Message.create_ack()`` (AA); nothing is stored. Prints the ephemeral port it listens on as one line, then
serves until SIGTERM or until stdin closes. Started by the bench in its own process (its own core), like the
other servers it is compared with.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import hl7.mllp


async def _serve_connection(reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter) -> None:
    try:
        while not writer.is_closing():
            message = await reader.readmessage()
            writer.writemessage(message.create_ack())
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the client went away
    finally:
        writer.close()


async def main() -> None:
    server = await hl7.mllp.start_hl7_server(_serve_connection, host="127.0.0.1", port=0)
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: os.read(sys.stdin.fileno(), 4096) or stop.set())
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
