"""The gateway's ASGI entry: stream sockets straight to the stream service.

A WebSocket that FastAPI routes passes a dozen layers first (the middleware
stack, the router trying each route, dependency solving), and each layer's
coroutine frame stays alive for as long as the socket is open. For a stream
socket that is most of an open's CPU and several kilobytes of every idle
socket's memory, for nothing: no middleware acts on WebSockets (metrics and
body limits are HTTP-only) and the stream answers every refusal itself. So
sockets on ``/v1/runs/{run_id}/stream`` go to the service directly; anything
else, the lifespan included, goes to the app. The route stays registered on
the app too, so the app alone (in a test client, say) still serves it.
"""

from __future__ import annotations

import re
from typing import Protocol

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from tidings.runs import STREAM_PATH

# The route's own pattern: a path parameter matches one segment.
_BEFORE, _AFTER = STREAM_PATH.split("{run_id}")
_STREAM_PATH = re.compile(re.escape(_BEFORE) + "([^/]+)" + re.escape(_AFTER))


class StreamEndpoint(Protocol):
    """What the server needs of the stream (``gateway.stream.StreamService``
    is one): serve a socket, and tell every socket to go away at shutdown."""

    async def serve(self, websocket: WebSocket, run_id: str) -> None: ...

    async def going_away(self, within: float) -> int: ...


class StreamFirst:
    def __init__(self, app: FastAPI, stream: StreamEndpoint | None) -> None:
        self.app = app
        self._stream = stream

    async def going_away(self, within: float) -> int:
        """Close the stream's sockets with 1001 (see ``gateway.server.command``)."""
        return 0 if self._stream is None else await self._stream.going_away(within)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and self._stream is not None:
            match = _STREAM_PATH.fullmatch(scope["path"])
            if match is not None:
                await self._stream.serve(WebSocket(scope, receive, send), match[1])
                return
        await self.app(scope, receive, send)
