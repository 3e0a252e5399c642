"""A minimal gateway app for the stream tests: the stream router, /metrics and
/healthz, wired the way create_app is expected to wire StreamService.

Run as a module it is a gateway process the tests can SIGKILL:
``python -m tests.stream.app <port>`` with the TIDINGS_* environment.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI, Response
from prometheus_client import generate_latest
from redis.asyncio import BlockingConnectionPool, Redis
from temporalio.client import Client

from gateway.server.command import websocket_implementation
from gateway.server.http_protocol import guarded_http_protocol
from gateway.stream import RunInfo, StreamService, TemporalRunDirectory
from tidings.settings import Settings


class LazyTemporalDirectory:
    """Connects to Temporal on first use, so the router exists before the lifespan runs."""

    def __init__(self, address: str, namespace: str) -> None:
        self._address = address
        self._namespace = namespace
        self._inner: TemporalRunDirectory | None = None
        self._lock = asyncio.Lock()

    async def lookup(self, tenant: str, run_id: str) -> RunInfo | None:
        async with self._lock:
            if self._inner is None:
                client = await Client.connect(self._address, namespace=self._namespace)
                self._inner = TemporalRunDirectory(client)
        return await self._inner.lookup(tenant, run_id)


# Shorter than a gateway's 10 s, so a test sees a stalled socket aborted.
CLOSE_LINGER_SECONDS = 3.0


def build_app(settings: Settings) -> tuple[FastAPI, StreamService]:
    # Blocking pool: a burst of reconnects waits for a connection instead of
    # failing with "Too many connections" (the default pool raises at 100).
    pool = BlockingConnectionPool.from_url(
        settings.redis.url.get_secret_value(), max_connections=64, timeout=10
    )
    redis = Redis(connection_pool=pool)
    runs = LazyTemporalDirectory(settings.temporal.address, settings.temporal.namespace)
    service = StreamService(
        settings, redis, runs=runs, stall_seconds=5.0, close_linger_seconds=CLOSE_LINGER_SECONDS
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()
            await redis.aclose()

    app = FastAPI(lifespan=lifespan)
    app.include_router(service.router)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type="text/plain")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app, service


def server_config(app: FastAPI, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        # What ``tidings gateway`` serves with: its HTTP protocol (which sets
        # a stream socket's SO_SNDBUF), the direct sink unless the settings
        # turn it off (then frames go through ASGI).
        http=guarded_http_protocol(settings.gateway),
        ws=websocket_implementation(settings.gateway.direct_frames),
        ws_per_message_deflate=False,
        ws_max_size=settings.gateway.max_frame_bytes * 4,
        log_level="warning",
        lifespan="on",
    )


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
    settings = Settings()
    app, _ = build_app(settings)
    server = uvicorn.Server(server_config(app, settings))
    asyncio.run(server.serve(sockets=[listening_socket(port)]))


if __name__ == "__main__":
    main()
