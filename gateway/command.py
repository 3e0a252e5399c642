"""``tidings gateway``: serve the REST API and the WebSocket stream with uvicorn.

Settings are read once here and passed down. uvicorn handles SIGTERM/SIGINT:
it stops accepting, lets in-flight requests finish (up to
:data:`GRACEFUL_SHUTDOWN_SECONDS`), then runs the lifespan's shutdown, which
stops the stream (sockets get 1001 and resume elsewhere) and closes clients.
"""

from __future__ import annotations

import argparse
import importlib.util

import uvicorn
from fastapi import FastAPI

from gateway import redaction
from gateway.app import create_app
from gateway.http_protocol import guarded_http_protocol
from gateway.starter import default_starter
from tidings.observability import setup_logging, setup_tracing
from tidings.settings import GatewaySettings, Settings

GRACEFUL_SHUTDOWN_SECONDS = 10


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="bind address (default: TIDINGS_GATEWAY_HOST)")
    parser.add_argument(
        "--port", type=_port, help="port to listen on (default: TIDINGS_GATEWAY_PORT)"
    )


def _port(value: str) -> int:
    port = int(value)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError("a port is 1-65535")
    return port


def websocket_implementation() -> str:
    """DESIGN.md measured websockets-sansio fastest of uvicorn's servers; older
    uvicorn releases lack it, so fall back to the legacy ``websockets`` one."""
    if importlib.util.find_spec("uvicorn.protocols.websockets.websockets_sansio_impl"):
        return "websockets-sansio"
    return "websockets"


def server_config(settings: Settings) -> uvicorn.Config:
    def make_app() -> FastAPI:
        return create_app(settings, starter=default_starter())

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
        ws=websocket_implementation(),
        # Browsers offer permessage-deflate and servers accept it by default;
        # DESIGN.md measured it cutting throughput 3-4x and raising memory.
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
    overrides = {name: value for name, value in (("host", args.host), ("port", args.port)) if value}
    if overrides:
        gateway = GatewaySettings(**{**settings.gateway.model_dump(), **overrides})
        settings = settings.replace(gateway=gateway)
    setup_logging(settings)
    setup_tracing(settings.tracing, "tidings-gateway")
    config = server_config(settings)  # configures uvicorn's logging ...
    redaction.install()  # ... so the filter goes on after it
    uvicorn.Server(config).run()
    return 0
