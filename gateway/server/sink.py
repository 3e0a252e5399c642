"""A socket's direct sink: pre-encoded frames written straight to its transport.

Through ASGI, every send is a coroutine call down Starlette and the server,
which frames the text again for each socket; at a thousand sockets per event
that per-socket work is most of the gateway's CPU. A server that offers the
``tidings.frames`` scope extension (``gateway.server.ws_protocol``, what ``tidings
gateway`` serves with) hands the app a :class:`FrameSink` instead: a
synchronous write of bytes already framed once per record (``frames.Frame``).
Under any other ASGI server the extension is absent and sockets fall back to
``websocket.send``, frame by frame.

Writes and ASGI sends go to the same transport in call order, so mixing them
keeps frame order; the stream only writes directly while its own queue is
empty and the transport is below its high-water mark, so memory stays bounded
by the queue's limits plus one transport buffer.
"""

from __future__ import annotations

from typing import Protocol

from starlette.websockets import WebSocket

EXTENSION = "tidings.frames"


class FrameSink(Protocol):
    @property
    def writable(self) -> bool:
        """Open, and the transport below its high-water mark."""
        ...

    def write(self, wire: bytes) -> bool:
        """Hand one whole frame to the transport; False if the socket is closing."""
        ...

    def write_many(self, wires: list[bytes]) -> bool:
        """Hand whole frames to the transport at once (one ``writev``)."""
        ...

    def write_if_writable(self, wires: list[bytes]) -> bool:
        """``write_many`` if the sink is ``writable``; else False, nothing written."""
        ...

    async def drained(self) -> None:
        """Return once the transport is below its low-water mark, or closed."""
        ...

    def close_now(self, wire: bytes, code: int, reason: str, linger: float) -> bool:
        """Write the frame ``wire`` and a close frame without waiting for the
        socket to drain (they go after what the transport holds), then abort
        the connection if the peer has not answered the close within
        ``linger`` seconds; False if the socket is already closing."""
        ...


def sink_of(ws: WebSocket) -> FrameSink | None:
    extension = ws.scope.get("extensions", {}).get(EXTENSION)
    sink: FrameSink | None = extension.get("sink") if extension else None
    return sink
