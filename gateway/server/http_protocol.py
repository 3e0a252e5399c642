"""uvicorn's httptools protocol with two guards on the request head.

uvicorn (httptools) has neither: a request whose headers never complete keeps
its socket for ever (slowloris), and a header block of any size is buffered
and served. :func:`guarded_http_protocol` makes the protocol class that
``tidings gateway`` serves with (``uvicorn.Config(http=...)``):

- a **header timeout**: armed when a connection is made and when a request
  begins (keep-alive: each request), cancelled when its headers are
  complete. On expiry the connection is closed, after a ``408``
  ``request_timeout`` if part of a request arrived and no response is in
  progress on it.
- a **header size limit**: the bytes of a request head (request line and
  headers) are counted as they arrive; past the limit the request is answered
  ``431`` ``headers_too_large`` and the connection closed.

The timer is cancelled at headers complete, so it never fires on a socket
handed over to the WebSocket protocol.

A WebSocket upgrade whose head is a plain handshake (``gateway.server.handshake``)
is handed to :class:`~gateway.server.ws_protocol.DirectFramesProtocol` as parsed,
rather than written back out for websockets to parse again. Bodies are not covered here
(``BodyLimitMiddleware`` bounds their size).
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from gateway.server.handshake import accept_key
from gateway.server.ws_protocol import DirectFramesProtocol
from tidings.errors import ErrorCode
from tidings.settings import GatewaySettings

# After a 431 the client is usually still sending its head: keep reading (and
# discarding) for up to this long after our FIN, so closing with unread data
# does not reset the connection before the client has read the answer.
LINGER_SECONDS = 2.0


class _HeadersTooLarge(Exception):
    """Raised from a parser callback to stop parsing the current request."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """Bind the limits with :func:`guarded_http_protocol`; these are the defaults."""

    header_timeout: float = 10.0
    max_header_bytes: int = 65536
    # SO_SNDBUF of a connection that becomes a WebSocket; 0: the kernel's autotuning.
    send_buffer_bytes: int = 0

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._header_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._reading_head = True
        self._head_bytes = 0  # raw bytes received while the current head is incomplete
        self._head_size = 0  # the current head's request target and header lines
        self._refused = False
        self._message_begun = False  # a byte of a request has arrived on this connection

    # -- connection ------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering after a 431: discard
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeadersTooLarge):
                self._refuse_headers_too_large()
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        if self._reading_head:
            # A head still incomplete: count what arrived (bounds what the
            # parser buffers, e.g. one endless header value).
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_bytes:
                self._refuse_headers_too_large()

    def handle_websocket_upgrade(self) -> None:
        if self.send_buffer_bytes:
            # Autotuning lets one socket whose reader stopped pin megabytes
            # of kernel memory; a stream socket's frames wait in its queue
            # instead, where the gateway bounds and counts them.
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer_bytes)
        ws = self.ws_protocol_class
        if (
            isinstance(ws, type)
            and issubclass(ws, DirectFramesProtocol)
            and not self.config.ws_per_message_deflate
            and self.url.startswith(b"/")
            and self.url.isascii()
            and (key := accept_key(self.scope["method"], self.headers)) is not None
        ):
            self.connections.discard(self)
            protocol = ws(
                config=self.config, server_state=self.server_state, app_state=self.app_state
            )
            addresses = (self.server, self.client, self.scheme)
            protocol.adopt(self.transport, addresses, self.url.decode("ascii"), self.headers, key)
            self.transport.set_protocol(protocol)
            return
        super().handle_websocket_upgrade()  # websockets parses it, and answers any refusal

    # -- parser callbacks --------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._message_begun = True
        self._reading_head = True
        self._head_bytes = 0
        self._head_size = 0
        if self._header_timer is None:  # the first request keeps connection_made's timer
            self._arm_header_timer()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._head_size += len(url)
        if self._head_size > self.max_header_bytes:
            raise _HeadersTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._head_size += len(name) + len(value) + 4  # "name: value\r\n"
        if self._head_size > self.max_header_bytes:
            raise _HeadersTooLarge

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._cancel_header_timer()
        super().on_headers_complete()

    # -- the guards ------------------------------------------------------------

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _response_in_progress(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self._response_in_progress():
            # A pipelined head left half-sent behind a response still being
            # written: read no more, and close once that response is done.
            self.cycle.keep_alive = False
            self.flow.pause_reading()
            return
        if not self._message_begun:
            # Connected and sent nothing: close quietly (an unsolicited 408
            # could race a preconnecting client's first request).
            self.transport.close()
            return
        self.logger.info("Request headers not received within %ss.", self.header_timeout)
        message = f"request headers not received within {self.header_timeout:g} seconds"
        self.transport.write(_error_response(self, 408, ErrorCode.REQUEST_TIMEOUT, message))
        self.transport.close()

    def _refuse_headers_too_large(self) -> None:
        self._refused = True
        self._cancel_header_timer()
        if self.transport.is_closing():
            return
        self.logger.info("Request header block over %d bytes.", self.max_header_bytes)
        if self._response_in_progress():
            self.cycle.keep_alive = False  # no room to answer: close after the response
            self.flow.pause_reading()
            return
        message = f"request header block exceeds {self.max_header_bytes} bytes"
        self.transport.write(_error_response(self, 431, ErrorCode.HEADERS_TOO_LARGE, message))
        if self.transport.can_write_eof():
            # The answer, then FIN; keep reading until the client is done.
            self.transport.write_eof()
            self._linger_timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()


def _error_response(protocol: HttpToolsProtocol, status: int, code: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    content = [STATUS_LINE[status]]
    for name, value in protocol.server_state.default_headers:
        content.extend([name, b": ", value, b"\r\n"])
    content.extend(
        [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n",
            b"\r\n",
            body,
        ]
    )
    return b"".join(content)


def guarded_http_protocol(settings: GatewaySettings) -> type[GuardedHttpToolsProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with ``settings``' limits."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {
            "header_timeout": settings.header_timeout_seconds,
            "max_header_bytes": settings.max_header_bytes,
            "send_buffer_bytes": settings.send_buffer_bytes,
        },
    )
