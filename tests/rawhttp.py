"""Raw-socket helpers for requests a well-behaved HTTP client refuses to send
(abuse, slowloris) and for reading exactly what the server sent back."""

from __future__ import annotations

import base64
import os
import socket
import struct
import time
from collections.abc import Callable


def exchange(port: int, request: bytes, timeout: float = 10.0) -> bytes:
    """Send ``request`` as is; everything the server answers until it closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        answer, _ = receive(sock, timeout, poll=1.0, on_quiet=lambda got: b"\r\n\r\n" in got)
        return answer


def receive(
    sock: socket.socket,
    within: float,
    *,
    poll: float | None = None,
    on_quiet: Callable[[bytes], bool] | None = None,
) -> tuple[bytes, bool]:
    """Everything the server sends for at most ``within`` seconds, and whether
    it is done: the server closed (EOF or reset) or ``on_quiet`` said so.

    ``on_quiet(received)`` is asked after every ``poll`` seconds without a
    byte: True ends the wait (a complete answer; a trickle the server refused).
    """
    deadline = time.monotonic() + within
    chunks: list[bytes] = []
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left if poll is None else min(poll, left))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            if on_quiet is not None and on_quiet(b"".join(chunks)):
                return b"".join(chunks), True
            continue
        except ConnectionResetError:
            return b"".join(chunks), True
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
    return b"".join(chunks), False


def status_of(response: bytes) -> int | None:
    if not response.startswith(b"HTTP/1.1 "):
        return None
    return int(response.split(b" ", 2)[1])


def headers_of(response: bytes) -> list[bytes]:
    head = response.split(b"\r\n\r\n", 1)[0]
    return head.split(b"\r\n")[1:]


def ws_upgrade(path: str, port: int, key: str) -> bytes:
    nonce = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {nonce}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {key}\r\n\r\n"
    ).encode()


def close_code_in(data: bytes) -> int | None:
    """The close code of the first close frame in a server byte stream (after the upgrade)."""
    _, _, rest = data.partition(b"\r\n\r\n")
    pos = 0
    while len(rest) - pos >= 2:
        opcode, length = rest[pos] & 0x0F, rest[pos + 1] & 0x7F
        head = 2
        if length == 126:
            (length,) = struct.unpack_from("!H", rest, pos + 2)
            head = 4
        elif length == 127:
            (length,) = struct.unpack_from("!Q", rest, pos + 2)
            head = 10
        if len(rest) < pos + head + length:
            return None
        if opcode == 8:
            body = rest[pos + head : pos + head + length]
            return struct.unpack("!H", body[:2])[0] if len(body) >= 2 else 1005
        pos += head + length
    return None
