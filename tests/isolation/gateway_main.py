"""A gateway process for the isolation tests, so its memory and CPU are its own:
the gateway ``tests/stream/app.py`` serves, with logging and tracing set up as
``tidings gateway`` sets them up (spans made, not exported).

``python -m tests.isolation.gateway_main <port> <send buffer bytes, 0: the kernel's>``
with the ``TIDINGS_*`` environment (``TIDINGS_GATEWAY_PORT`` = the port).
"""

from __future__ import annotations

import asyncio
import sys

from gateway.server import redaction
from tests.stream.app import listening_socket, server
from tidings.observability import setup_logging, setup_tracing
from tidings.settings import Settings


def main() -> None:
    port, send_buffer = int(sys.argv[1]), int(sys.argv[2])
    settings = Settings()
    setup_logging(settings)
    setup_tracing(settings.tracing, "tidings-gateway")
    gateway, _ = server(settings)
    redaction.install()
    asyncio.run(gateway.serve(sockets=[listening_socket(port, send_buffer or None)]))


if __name__ == "__main__":
    main()
