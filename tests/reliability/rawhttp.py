"""Raw-socket helpers for abuse cases a well-behaved HTTP client refuses to send."""

from __future__ import annotations

import base64
import os
import socket
import struct
import time


def exchange(port: int, request: bytes, timeout: float = 10.0) -> bytes:
    """Send ``request`` as is; everything the server answers until it closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks: list[bytes] = []
        deadline = time.monotonic() + timeout
        sock.settimeout(1.0)
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                if chunks and b"\r\n\r\n" in b"".join(chunks):
                    break
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


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
