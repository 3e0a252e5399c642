"""The gateway the stream tests serve: ``tidings gateway``'s own app
(``create_app``) and server config (``gateway.server.command.server_config``:
the guarded HTTP protocol, the stream fast path, the handshake adoption and,
unless the settings turn it off, the direct sink), with the stream's timings
shortened so a test sees a stalled socket cut and aborted in seconds.

Run as a module it is a gateway process the tests can SIGKILL:
``python -m tests.stream.app <port>`` with the TIDINGS_* environment.
"""

from __future__ import annotations

import asyncio
import socket
import sys

import uvicorn
from fastapi import FastAPI

from gateway.app import StreamTimings, create_app
from gateway.server.command import DrainingServer, server_config
from gateway.server.fast_path import StreamFirst
from tidings.settings import Settings
from workers.catalog import open_catalog

# Shorter than a gateway's 10 s, so a test sees a stalled socket aborted.
CLOSE_LINGER_SECONDS = 3.0
TIMINGS = StreamTimings(stall_seconds=5.0, close_linger_seconds=CLOSE_LINGER_SECONDS)


def build_app(settings: Settings) -> FastAPI:
    return create_app(settings, pipelines=open_catalog, stream_timings=TIMINGS)


def server(settings: Settings) -> tuple[uvicorn.Server, list[StreamFirst]]:
    """The gateway's server, unstarted; the app it makes lands in the list."""
    made: list[StreamFirst] = []
    return DrainingServer(server_config(settings, made, build=build_app), made), made


def listening_socket(port: int, send_buffer: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if send_buffer is not None:
        # Accepted sockets inherit it: lets a test fill a non-reading client's
        # pipe in kilobytes instead of the megabytes loopback autotuning allows.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def main() -> None:
    port = int(sys.argv[1])
    gateway, _ = server(Settings())
    asyncio.run(gateway.serve(sockets=[listening_socket(port)]))


if __name__ == "__main__":
    main()
