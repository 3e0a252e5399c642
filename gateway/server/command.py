"""``tidings gateway``: serve the REST API and the WebSocket stream with uvicorn.

Settings are read once here and passed down. On SIGTERM/SIGINT the server
(:class:`DrainingServer`) stops accepting, closes every stream socket with 1001
and a reason (clients resume on another replica), then runs uvicorn's own
shutdown: in-flight requests finish (up to :data:`GRACEFUL_SHUTDOWN_SECONDS`)
and the lifespan's shutdown stops the tails and closes clients. Deployments
size their stop grace from :data:`DRAIN_SECONDS` (docs/deployment.md).

With ``--processes N`` this process becomes a supervisor of N such gateways
sharing the port (``gateway.server.supervisor``); each child is started with
``--fd`` (and ``--metrics-fd``), the sockets the supervisor bound for it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import socket
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from gateway.app import create_app
from gateway.server import redaction
from gateway.server.fast_path import StreamFirst
from gateway.server.http_protocol import guarded_http_protocol
from gateway.server.supervisor import serve_processes
from gateway.server.ws_protocol import DirectFramesProtocol
from tidings.observability import setup_logging, setup_tracing
from tidings.preflight import check_connections
from tidings.settings import GatewaySettings, Settings
from workers.catalog import check_local, open_catalog

GRACEFUL_SHUTDOWN_SECONDS = 10
# How long stream sockets get to take their 1001 close before uvicorn's own
# shutdown closes whatever is left (with a bare 1012).
GOING_AWAY_SECONDS = 5
# The longest a SIGTERM takes to end the process, lifespan shutdown aside.
DRAIN_SECONDS = GOING_AWAY_SECONDS + GRACEFUL_SHUTDOWN_SECONDS
# Allocations between young collections (CPython's default is 700).
_GC_YOUNG = 50_000
MAX_PROCESSES = 64
# The supervisor's wait for its children's drain before it kills them.
SUPERVISOR_STOP_SECONDS = DRAIN_SECONDS + 10


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="bind address (default: TIDINGS_GATEWAY_HOST)")
    parser.add_argument(
        "--port", type=_port, help="port to listen on (default: TIDINGS_GATEWAY_PORT)"
    )
    parser.add_argument(
        "--processes",
        type=_processes,
        metavar="N",
        help="serve with N processes sharing the port, one per core (default: "
        "TIDINGS_GATEWAY_PROCESSES, 1)",
    )
    parser.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help="with --processes, process i also listens alone on PORT+i, so each "
        "one's /metrics can be scraped (default: TIDINGS_GATEWAY_METRICS_PORT)",
    )
    # Set by the supervisor for its children: the listening sockets it bound.
    parser.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--metrics-fd", type=int, help=argparse.SUPPRESS)


def _port(value: str) -> int:
    port = int(value)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError("a port is 1-65535")
    return port


def _processes(value: str) -> int:
    count = int(value)
    if not 1 <= count <= MAX_PROCESSES:
        raise argparse.ArgumentTypeError(f"processes is 1-{MAX_PROCESSES}")
    return count


def websocket_implementation(direct_frames: bool = True) -> str | type[asyncio.Protocol]:
    """uvicorn's websockets-sansio server (docs/design.md's measured inputs put
    it fastest of uvicorn's), with the stream's direct sink added
    (``gateway.server.ws_protocol``) unless ``direct_frames`` is off; then
    sockets send every frame through ASGI (README.md beside this module)."""
    if not direct_frames:
        return "websockets-sansio"
    return DirectFramesProtocol


log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, closing the stream's sockets with 1001 first on shutdown.

    uvicorn's own shutdown closes every open WebSocket with 1012 and no reason
    before the lifespan's shutdown runs, so the stream's 1001 ("reconnect with
    your resume token", the documented contract) would never be sent.
    """

    def __init__(self, config: uvicorn.Config, apps: list[StreamFirst]) -> None:
        super().__init__(config)
        self._apps = apps  # filled by the app factory once uvicorn calls it

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # no new sockets while the open ones are told to leave
        for app in self._apps:
            left = await app.going_away(GOING_AWAY_SECONDS)
            if left:
                log.warning("%d stream sockets still open after %ss", left, GOING_AWAY_SECONDS)
        await super().shutdown(sockets)


def build_app(settings: Settings) -> FastAPI:
    """The gateway this command serves: the orchestration plane's pipeline
    catalog (which also starts runs) passed in here, at the entry point, so
    nothing below imports workflow code."""
    return create_app(settings, pipelines=open_catalog)


def server_config(
    settings: Settings,
    made: list[StreamFirst] | None = None,
    *,
    build: Callable[[Settings], FastAPI] = build_app,
) -> uvicorn.Config:
    """uvicorn's config for the gateway ``build`` makes; the app it makes is
    appended to ``made``."""

    def make_app() -> StreamFirst:
        app = build(settings)
        first = StreamFirst(app, app.state.stream)
        if made is not None:
            made.append(first)
        return first

    return uvicorn.Config(
        # A factory: uvicorn calls it inside the serving event loop, where the
        # app's clients (some bind to the running loop when made) belong.
        make_app,
        factory=True,
        host=settings.gateway.host,
        port=settings.gateway.port,
        # httptools with a request-header timeout (408) and size limit (431),
        # which uvicorn lacks: slowloris sockets and huge heads are refused.
        http=guarded_http_protocol(settings.gateway),
        ws=websocket_implementation(settings.gateway.direct_frames),
        # Browsers offer permessage-deflate and servers accept it by default;
        # docs/design.md has the figures: it costs throughput and memory.
        ws_per_message_deflate=False,
        # Above the stream's own frame limit, so the stream (not uvicorn)
        # decides and closes with 1009 and a reason.
        ws_max_size=settings.gateway.max_frame_bytes * 4,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        log_level=settings.runtime.log_level.lower(),
        # None: uvicorn's loggers propagate to the root handler that
        # tidings.observability set up (JSON lines, secrets redacted).
        log_config=None,
        # Logs name the route and status, never the Authorization header.
        access_log=True,
    )


def main(args: argparse.Namespace) -> int:
    settings = Settings()
    given = (
        ("host", args.host),
        ("port", args.port),
        ("processes", args.processes),
        ("metrics_port", args.metrics_port),
    )
    overrides = {name: value for name, value in given if value}
    if overrides:
        gateway = GatewaySettings(**{**settings.gateway.model_dump(), **overrides})
        settings = settings.replace(gateway=gateway)
    setup_logging(settings)
    # Before anything listens: a bad pipelines folder stops the gateway,
    # naming the variable, file and field, instead of failing every run.
    check_local(settings)
    if args.fd is None:
        # Once per gateway, in the supervisor: its processes (given --fd) use
        # the same settings, already checked.
        check_connections(settings)
    if args.fd is None and settings.gateway.processes > 1:
        redaction.install()
        gateway = settings.gateway
        return serve_processes(
            gateway.host,
            gateway.port,
            gateway.processes,
            gateway.metrics_port,
            stop_seconds=SUPERVISOR_STOP_SECONDS,
        )
    setup_tracing(settings.tracing, "tidings-gateway")
    apps: list[StreamFirst] = []
    config = server_config(settings, apps)  # configures uvicorn's logging ...
    redaction.install()  # ... so the filter goes on after it
    tune_gc()
    fds = [fd for fd in (args.fd, args.metrics_fd) if fd is not None]
    sockets = [socket.socket(fileno=fd) for fd in fds] or None
    DrainingServer(config, apps).run(sockets=sockets)
    return 0


def tune_gc() -> None:
    """Collect garbage less often than CPython's default (700, 10, 10).

    A gateway holds tens of thousands of long-lived objects per thousand
    sockets, and every socket open or fan-out allocates a few hundred more:
    at the default thresholds the young collections run every few hundred
    allocations and the full ones keep re-walking every socket's objects,
    a large share of a connection burst's CPU (docs/benchmarks.md). The gateway
    makes few reference cycles, so collecting rarely costs little memory.
    Freezing moves what the imports made out of the collector's way for good.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(_GC_YOUNG, 20, 100)
