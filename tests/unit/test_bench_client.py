"""The benchmark's load client parses frames in place: whatever way the kernel
splits the server's bytes into reads, every message is counted once and handed
over with the right bounds (bench/wsclient.py)."""

from __future__ import annotations

import asyncio
import struct

import pytest

from bench.wsclient import OP_CLOSE, OP_PING, OP_TEXT, CountingClient

pytestmark = pytest.mark.unit

HEAD = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"


class Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def server_frame(opcode: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        return bytes((0x80 | opcode, size)) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", 0x80 | opcode, 126, size) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, size) + payload


def message(n: int, pad: int = 0) -> bytes:
    return b'{"t_ns":%d,"n":%d,"pad":"%s"}' % (1000 + n, n, b"x" * pad)


def client(**options: object) -> tuple[CountingClient, Transport, list[bytes]]:
    seen: list[bytes] = []

    def keep(buf: bytes, start: int, end: int, _now: int) -> None:
        seen.append(bytes(buf[start:end]))

    proto = CountingClient("/ws", "h:1", on_payload=keep, **options)  # type: ignore[arg-type]
    transport = Transport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    return proto, transport, seen


async def test_handshake_and_frames_in_one_read() -> None:
    proto, transport, seen = client()
    assert transport.written[0].startswith(b"GET /ws HTTP/1.1\r\n")
    frames = server_frame(OP_TEXT, message(1)) + server_frame(OP_TEXT, message(2))
    proto.data_received(HEAD + frames)
    assert proto.opened.done() and proto.ready.done()
    assert proto.messages == 2 and proto.frames == 2
    assert seen == [message(1), message(2)]


@pytest.mark.parametrize("pad", [0, 200, 70_000])  # 7-bit, 16-bit and 64-bit lengths
async def test_every_split_of_the_bytes_counts_each_message_once(pad: int) -> None:
    wire = server_frame(OP_TEXT, message(1, pad)) + server_frame(OP_TEXT, message(2, pad))
    cuts = sorted({1, 2, 3, 5, 9, 11, len(wire) // 2, len(wire) - 1})
    for cut in cuts:
        proto, _, seen = client()
        proto.data_received(HEAD)
        proto.data_received(wire[:cut])
        proto.data_received(wire[cut:])
        assert proto.messages == 2, cut
        assert seen == [message(1, pad), message(2, pad)], cut


async def test_a_ready_marker_waits_for_its_frame() -> None:
    proto, _, _ = client(ready_marker=b'"subscribed"')
    proto.data_received(HEAD + server_frame(OP_TEXT, b'{"hello":1}'))
    assert proto.opened.done() and not proto.ready.done()
    proto.data_received(server_frame(OP_TEXT, b'{"subscribed":true}'))
    assert proto.ready.done()


async def test_pings_are_answered_and_a_close_is_read() -> None:
    proto, transport, _ = client()
    proto.data_received(HEAD + server_frame(OP_PING, b"abc"))
    pong = transport.written[-1]
    assert pong[0] == 0x8A and pong[1] == 0x80 | 3  # masked pong, as RFC 6455 requires
    key, masked = pong[2:6], pong[6:]
    assert bytes(b ^ key[i % 4] for i, b in enumerate(masked)) == b"abc"
    proto.data_received(server_frame(OP_CLOSE, struct.pack("!H", 4408) + b"slow"))
    assert proto.close_code == 4408 and transport.closed


async def test_a_refused_upgrade_fails_the_open() -> None:
    proto, transport, _ = client()
    proto.data_received(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
    with pytest.raises(ConnectionError, match="403"):
        await asyncio.wait_for(proto.opened, 1)
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(proto.ready, 1)
    assert transport.closed
