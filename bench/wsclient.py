"""A deliberately thin WebSocket client for load generation.

A full client library spends more CPU per frame than the server under test,
and on a 2-core machine that would measure the client. This one does the
RFC 6455 handshake, then only walks frame headers: counting a frame costs a
few byte reads, and counting the messages in it one C-level ``count`` of a
marker (``"t_ns"``, which every benchmark message carries once, so peers that
pack several messages into one frame are counted right). Frames whose
payload the caller wants are handed over where they lie (the read's buffer
and the payload's bounds), not copied.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from collections.abc import Callable
from typing import cast

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 1, 2, 8, 9, 10
MARKER = b'"t_ns"'


def mask_frame(opcode: int, payload: bytes) -> bytes:
    """Client frames must be masked (RFC 6455 5.3)."""
    key = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return header + key + masked


class CountingClient(asyncio.Protocol):
    def __init__(
        self,
        path: str,
        host: str,
        headers: dict[str, str] | None = None,
        on_payload: Callable[[bytes, int, int, int], None] | None = None,
        *,
        hello: str | None = None,
        ready_marker: bytes | None = None,
        empty_ping: bool = False,
    ) -> None:
        """``hello``: a text frame sent right after the upgrade (e.g. a connect
        command). ``ready_marker``: bytes whose first appearance in a text frame
        means the server has subscribed this socket (``ready`` resolves);
        without one the upgrade itself is readiness. ``empty_ping``: answer a
        ``{}`` text frame with ``{}`` (Centrifugo's JSON-protocol ping)."""
        loop = asyncio.get_running_loop()
        self.path, self.host, self.headers = path, host, headers or {}
        self.on_payload = on_payload
        self.hello = hello
        self.ready_marker = ready_marker
        self.empty_ping = empty_ping
        self.frames = 0
        self.messages = 0
        self.last_ns = 0
        self.close_code: int | None = None
        self.opened: asyncio.Future[None] = loop.create_future()
        self.ready: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._buf = bytearray()  # only what a read left of a frame
        self._upgraded = False
        self._ready = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        self.transport.write(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
            ).encode()
        )

    def send_text(self, text: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(mask_frame(OP_TEXT, text.encode()))

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(mask_frame(OP_CLOSE, struct.pack("!H", 1000)))
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._upgraded and not self._buf:
            # The common case, whole frames and nothing carried over: parsed
            # where they lie, no copy.
            used = self._parse(data)
            if used < len(data):
                self._buf += data[used:]
            return
        self._buf += data
        if not self._upgraded and not self._upgrade():
            return
        buf = bytes(self._buf)
        del self._buf[: self._parse(buf)]

    def _upgrade(self) -> bool:
        """Read the handshake's answer from the buffer; True once upgraded."""
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        status = bytes(self._buf[:end]).split(b"\r\n", 1)[0]
        del self._buf[: end + 4]
        if b" 101 " not in status + b" ":
            error = ConnectionError(status.decode(errors="replace"))
            for future in (self.opened, self.ready):
                if not future.done():
                    future.set_exception(error)
            if self.transport is not None:
                self.transport.close()
            return False
        self._upgraded = True
        self.opened.set_result(None)
        if self.hello is not None:
            self.send_text(self.hello)
        if self.ready_marker is None:
            self._set_ready()
        return True

    def _set_ready(self) -> None:
        self._ready = True
        self.ready.set_result(None)

    def _parse(self, buf: bytes) -> int:
        """Count (and hand over) the whole frames in ``buf``; how many bytes
        they take. This runs once per frame per socket: at a thousand sockets
        the client must stay cheaper than the server it measures."""
        pos, n = 0, len(buf)
        now = 0
        on_payload = self.on_payload
        while n - pos >= 2:
            length = buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = struct.unpack_from("!Q", buf, pos + 2)[0]
                head = 10
            start = pos + head
            end = start + length
            if end > n:
                break
            opcode = buf[pos] & 0x0F
            if opcode in (OP_TEXT, OP_BINARY):
                self.frames += 1
                found = buf.count(MARKER, start, end)
                self.messages += found
                if not found or not self._ready:
                    self._control(buf, start, end)
                if on_payload is not None:
                    now = now or time.monotonic_ns()
                    on_payload(buf, start, end, now)
            elif opcode == OP_CLOSE:
                self.close_code = (buf[start] << 8 | buf[start + 1]) if length >= 2 else 1005
                if self.transport is not None:
                    self.transport.close()
            elif opcode == OP_PING and self.transport is not None:
                self.transport.write(mask_frame(OP_PONG, buf[start:end]))
            pos = end
        if pos:
            self.last_ns = now or time.monotonic_ns()
        return pos

    def _control(self, buf: bytes, start: int, end: int) -> None:
        marker = self.ready_marker
        if marker is not None and not self._ready and buf.find(marker, start, end) >= 0:
            self._set_ready()
        if self.empty_ping and end - start == 2 and buf[start:end] == b"{}":
            self.send_text("{}")

    def connection_lost(self, exc: Exception | None) -> None:
        error = exc or ConnectionError("closed before upgrade")
        for future in (self.opened, self.ready):
            if not future.done():
                future.set_exception(error)
        if not self.closed.done():
            self.closed.set_result(None)


async def connect(
    host: str,
    port: int,
    path: str,
    headers: dict[str, str] | None = None,
    on_payload: Callable[[bytes, int, int, int], None] | None = None,
    open_timeout: float = 10.0,
    **options: object,
) -> CountingClient:
    """Open a socket and wait until it is ready (upgraded, or its ready marker seen)."""
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(
        lambda: CountingClient(path, f"{host}:{port}", headers, on_payload, **options),  # type: ignore[arg-type]
        host,
        port,
    )
    try:
        await asyncio.wait_for(asyncio.shield(proto.ready), open_timeout)
    except BaseException:
        if proto.transport is not None:
            proto.transport.close()
        raise
    return proto
