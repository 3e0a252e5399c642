"""uvicorn's websockets-sansio protocol, offering the stream a direct sink.

The ``tidings.frames`` scope extension (``gateway.server.sink``) carries a
:class:`DirectSink`: the stream writes frames it encoded once per record
straight to this connection's transport, skipping the ASGI send and the
per-socket framing. Reads, pings, close and any handshake not adopted (below)
are uvicorn's.

A handshake that httptools parsed and :mod:`gateway.server.handshake` finds plain
is adopted (:meth:`DirectFramesProtocol.adopt`): no second parse by
websockets, and the ``101`` is written by :func:`gateway.server.handshake.switching_protocols`.

The handshake's ``101`` is held back for the rest of the loop turn and goes
out in the same system call as the first frames (a loopback send costs tens
of microseconds here, a good part of a socket open).

Also lighter per connection, because at ten thousand idle sockets each
kilobyte kept is ten megabytes: the handshake's request and response are
dropped once the socket is accepted (nothing reads them again), and the
receive queue and the writable flag, an ``asyncio.Queue`` (three deques) and
an ``asyncio.Event`` (one) in uvicorn, are replaced by :class:`Inbox` and
:class:`Flag`, which allocate nothing until a task waits on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from typing import Any, Generic, TypeVar
from urllib.parse import unquote

from uvicorn.config import Config
from uvicorn.protocols.utils import (
    ClientDisconnected,
    get_client_addr,
    get_path_with_query_string,
)
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from gateway.server.handshake import switching_protocols
from gateway.server.sink import EXTENSION

T = TypeVar("T")

# SO_LINGER on with a zero timeout: close() resets the connection and frees
# its buffers at once.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


class Inbox(Generic[T]):
    """What uvicorn uses of ``asyncio.Queue`` for received messages, for its
    single consumer (the app's ``receive``)."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[T] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> T:
        while not self._items:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        return self._items.pop(0)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)


class Flag:
    """What uvicorn uses of ``asyncio.Event`` for its writable state."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
        return True


class _Capture:
    """Stands in for the transport while uvicorn answers the handshake."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.data: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.data.append(data)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._transport.close()


class DirectSink:
    __slots__ = ("_protocol",)

    def __init__(self, protocol: DirectFramesProtocol) -> None:
        self._protocol = protocol

    def _open(self) -> bool:
        p = self._protocol
        return (
            p.handshake_complete
            and not p.close_sent
            and not p.disconnected
            and p.conn.state is State.OPEN
            and not p.transport.is_closing()
        )

    @property
    def writable(self) -> bool:
        return self._protocol.writable.is_set() and self._open()

    def write(self, wire: bytes) -> bool:
        return self.write_many([wire])

    def write_many(self, wires: list[bytes]) -> bool:
        p = self._protocol
        if not self._open():
            return False
        if p.held is not None:
            wires = [p.held, *wires]
            p.held = None
        p.transport.writelines(wires)
        return True

    def write_if_writable(self, wires: list[bytes]) -> bool:
        # The live fan-out's one check per socket, where ``writable`` then
        # ``write_many`` would look at the connection's state twice.
        return self._protocol.writable.is_set() and self.write_many(wires)

    async def drained(self) -> None:
        # connection_lost sets it too, so a dead peer never leaves this waiting.
        await self._protocol.writable.wait()

    def close_now(self, wire: bytes, code: int, reason: str, linger: float) -> bool:
        return self._protocol.close_now(wire, code, reason, linger)


class DirectFramesProtocol(WebSocketsSansIOProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.queue = Inbox()  # type: ignore[assignment]
        self.held: bytes | None = None  # the handshake's 101, not yet written
        writable = Flag()
        writable.set()
        self.writable = writable  # type: ignore[assignment]
        self.accept_key: bytes | None = None  # set when adopted: the 101 is ours to write

    def adopt(
        self,
        transport: asyncio.Transport,
        addresses: tuple[tuple[str, int | None] | None, tuple[str, int] | None, str | None],
        target: str,
        headers: list[tuple[bytes, bytes]],
        accept_key: bytes,
    ) -> None:
        """Take a connection over from the HTTP protocol, its handshake already
        parsed and checked (``gateway.server.http_protocol``): what ``connection_made``
        and ``handle_connect`` do, without websockets reading the head again.

        ``addresses``: the HTTP protocol's server, client and scheme.
        """
        self.transport = transport
        self.connections.add(self)
        self.server, self.client, http_scheme = addresses
        self.scheme = "wss" if http_scheme == "https" else "ws"
        # Past the handshake from the start: the parser reads frames only.
        self.conn = ServerProtocol(
            state=State.OPEN, max_size=self.config.ws_max_size, logger=self.conn.logger
        )
        self.accept_key = accept_key
        self.handshake_initiated = True
        raw_path, _, query = target.partition("?")
        subprotocols = [
            token.strip()
            for name, value in headers
            if name == b"sec-websocket-protocol"
            for token in value.decode("latin-1").split(",")
        ]
        self.scope = {
            "type": "websocket",
            "asgi": {"version": self.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": self.scheme,
            "server": self.server,
            "client": self.client,
            "root_path": self.root_path,
            "path": self.root_path + unquote(raw_path),
            "raw_path": (self.root_path + raw_path).encode("ascii"),
            "query_string": query.encode("ascii"),
            "headers": headers,
            "subprotocols": subprotocols,
            "state": self.app_state.copy(),
            "extensions": {"websocket.http.response": {}, EXTENSION: {"sink": DirectSink(self)}},
        }
        self.queue.put_nowait({"type": "websocket.connect"})
        task = self.loop.create_task(self.run_asgi())
        task.add_done_callback(self.on_task_complete)
        self.tasks.add(task)

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            # The app's task is created but has not run yet: it sees this.
            scope["extensions"][EXTENSION] = {"sink": DirectSink(self)}

    async def send(self, message: Any) -> None:
        self.flush_held()  # anything sent through ASGI goes after the handshake
        adopted = self.accept_key is not None and not self.handshake_complete
        if adopted and message.get("type") == "websocket.accept":
            self._accept(message)
            return
        if self.handshake_complete or message.get("type") != "websocket.accept":
            await super().send(message)
            return
        real = self.transport
        capture = _Capture(real)
        self.transport = capture  # type: ignore[assignment]
        try:
            await super().send(message)
        finally:
            self.transport = real
        if self.handshake_complete:
            # Read only while answering the handshake.
            self.request = None
            self.response = None
        if capture.data:
            # The 101 goes out with the first frames the app writes in this
            # loop turn (the stream writes its token at once), or alone on
            # the next turn: one system call per open instead of two.
            self.held = b"".join(capture.data)
            self.loop.call_soon(self.flush_held)

    def _accept(self, message: Any) -> None:
        if self.disconnected:
            raise ClientDisconnected()
        if self.transport.is_closing():
            return  # as uvicorn: the app learns of it from its next receive
        assert self.accept_key is not None
        if self.logger.isEnabledFor(logging.INFO):
            # uvicorn's line (gateway.server.redaction strips an access_token from it).
            client, target = get_client_addr(self.scope), get_path_with_query_string(self.scope)
            self.logger.info('%s - "WebSocket %s" [accepted]', client, target)
        headers = [*self.default_headers, *message.get("headers", [])]
        subprotocol = message.get("subprotocol")
        if subprotocol:
            headers.append((b"sec-websocket-protocol", subprotocol.encode("latin-1")))
        self.held = switching_protocols(self.accept_key, headers)
        self.handshake_complete = True
        # The 101 goes out with the first frames, as on the path below.
        self.loop.call_soon(self.flush_held)
        self.start_keepalive()

    def close_now(self, wire: bytes, code: int, reason: str, linger: float) -> bool:
        """uvicorn's ``websocket.close``, preceded by ``wire``, without its wait
        for the transport to be writable: a client that stopped reading
        would otherwise get neither frame, and hold its socket's buffers
        until a timeout dropped it (1006). The frames go after what the
        transport and the kernel hold (both bounded: the sink writes below
        the high-water mark, and SO_SNDBUF is capped), so a client that
        reads again gets every frame before them; one that does not answer
        the close within ``linger`` seconds is aborted, which frees the
        kernel's buffers at once."""
        if (
            self.close_sent
            or self.disconnected
            or self.transport.is_closing()
            or self.conn.state is not State.OPEN
        ):
            return False
        self.flush_held()
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.conn.send_close(code, reason)
        self.transport.writelines([wire, *self.conn.data_to_send()])
        self.close_sent = True
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(linger, self._reset)
        return True

    def _reset(self) -> None:
        """Abort with a reset: a plain abort closes the descriptor, but the
        kernel keeps an orphan socket with the unsent bytes for as long as
        the peer keeps advertising a zero window (minutes)."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        self.transport.abort()

    def flush_held(self) -> None:
        held, self.held = self.held, None
        if held is not None and not self.transport.is_closing():
            self.transport.write(held)

    def connection_lost(self, exc: Exception | None) -> None:
        self.held = None
        super().connection_lost(exc)
