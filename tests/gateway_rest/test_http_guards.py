"""The gateway's HTTP protocol (gateway/server/http_protocol.py) over raw sockets: a
request head that is not complete within the header timeout is answered 408
and closed (slowloris), one over the size limit is answered 431; normal
requests, keep-alive, bodies larger than the head limit and WebSocket upgrades
are unaffected. A plain WebSocket handshake is adopted from the parsed head
(gateway.server.handshake); any other is parsed and answered by websockets.

A small app served by uvicorn exactly as ``tidings gateway`` configures the
protocol (no stack needed), with a 1 s timeout and a 4 KiB head limit.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi import FastAPI, Request, WebSocket
from websockets.sync.client import connect

from gateway.server.command import server_config, websocket_implementation
from gateway.server.http_protocol import GuardedHttpToolsProtocol, guarded_http_protocol
from tests.rawhttp import receive, status_of
from tests.support import free_port
from tidings.settings import GatewaySettings, Settings

pytestmark = pytest.mark.unit

TIMEOUT = 1.0
MARGIN = 2.0
LIMIT = 4096


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    @app.post("/echo-size")
    async def echo_size(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @app.websocket("/ws")
    async def echo(socket: WebSocket) -> None:
        await socket.accept()
        while True:
            await socket.send_text(await socket.receive_text())

    @app.websocket("/scope/{name}")
    async def scope(socket: WebSocket, name: str) -> None:
        offered = socket.scope["subprotocols"]
        await socket.accept(subprotocol=offered[0] if offered else None)
        seen = {
            "name": name,
            "path": socket.scope["path"],
            "raw_path": socket.scope["raw_path"].decode(),
            "query_string": socket.scope["query_string"].decode(),
            "subprotocols": offered,
            "header_names": [key.decode() for key, _ in socket.scope["headers"]],
            "sink": "tidings.frames" in socket.scope["extensions"],
        }
        await socket.send_json(seen)
        await socket.send_text(await socket.receive_text())

    @app.websocket("/refuse")
    async def refuse(socket: WebSocket) -> None:
        await socket.close()

    return app


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    chosen = free_port()
    settings = GatewaySettings(header_timeout_seconds=TIMEOUT, max_header_bytes=LIMIT)
    config = uvicorn.Config(
        _app(),
        host="127.0.0.1",
        port=chosen,
        http=guarded_http_protocol(settings),
        ws=websocket_implementation(),
        ws_per_message_deflate=False,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-guards", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.01)  # a poll interval
    try:
        yield chosen
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def _read_until_closed(sock: socket.socket, within: float) -> bytes:
    """Everything the server sends until it closes; fails if it is still open after ``within``."""
    answer, closed = receive(sock, within)
    if not closed:
        raise AssertionError(f"connection still open after {within}s; got {answer!r}")
    return answer


def _read_response(sock: socket.socket, within: float = 5.0) -> bytes:
    """One response with a Content-Length body, leaving the connection open."""
    deadline = time.monotonic() + within
    data = b""
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            if len(body) >= length:
                return data
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        chunk = sock.recv(65536)
        assert chunk, f"closed before a full response: {data!r}"
        data += chunk


def _error_code(response: bytes) -> str:
    code: str = json.loads(response.partition(b"\r\n\r\n")[2])["error"]["code"]
    return code


def _request(port: int, head: bytes, body: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        # Refused mid-send: the answer may still be readable.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head + body)
        return _read_until_closed(sock, 5 + MARGIN)


def test_half_sent_head_gets_408_and_is_closed(port: int) -> None:
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        answer = _read_until_closed(sock, TIMEOUT + MARGIN)
    took = time.monotonic() - began
    assert status_of(answer) == 408, answer
    assert _error_code(answer) == "request_timeout"
    assert b"connection: close" in answer.lower()
    assert TIMEOUT * 0.9 <= took <= TIMEOUT + MARGIN, took


def test_trickled_head_does_not_extend_the_timeout(port: int) -> None:
    """Slowloris proper: a byte of header every 0.2 s still gets cut at the timeout."""
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: ")

        def trickle(_: bytes) -> bool:
            try:
                sock.sendall(b"a")
            except (BrokenPipeError, ConnectionResetError):
                return True  # the server has closed its side
            return False

        within = began + TIMEOUT + MARGIN - time.monotonic()
        # Each quiet 0.2 s the client sends one more byte: the trickle's pace.
        answer, closed = receive(sock, within, poll=0.2, on_quiet=trickle)
        if not closed:
            raise AssertionError("a trickling client was not closed")
    assert time.monotonic() - began <= TIMEOUT + MARGIN
    assert status_of(answer) == 408


def test_silent_connection_is_closed_quietly(port: int) -> None:
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        answer = _read_until_closed(sock, TIMEOUT + MARGIN)
    assert answer == b""  # no request began: nothing to answer
    assert TIMEOUT * 0.9 <= time.monotonic() - began <= TIMEOUT + MARGIN


def test_keep_alive_rearms_the_timeout_for_each_request(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for _ in range(3):
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            first = _read_response(sock)
            assert status_of(first) == 200, first
        # The next request on the same connection is half-sent: cut at its own timeout.
        began = time.monotonic()
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n")
        answer = _read_until_closed(sock, TIMEOUT + MARGIN)
    assert status_of(answer) == 408, answer
    assert time.monotonic() - began <= TIMEOUT + MARGIN


def test_oversized_head_gets_431(port: int) -> None:
    huge = b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n"
    answer = _request(port, huge)
    assert status_of(answer) == 431, answer[:300]
    assert _error_code(answer) == "headers_too_large"


def test_head_just_over_the_limit_in_one_piece_gets_431(port: int) -> None:
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(45))  # ~4.9 KB
    answer = _request(port, b"GET /ping HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert status_of(answer) == 431, answer[:300]


def test_normal_requests_and_large_bodies_are_served(port: int) -> None:
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(25))  # ~2.7 KB
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        answer = _read_response(sock)
        assert status_of(answer) == 200, answer
        assert json.loads(answer.partition(b"\r\n\r\n")[2]) == {"pong": "yes"}
        # A body far over the head limit, in the same write as its head.
        body = b"b" * 200_000
        sock.sendall(
            b"POST /echo-size HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body
        )
        answer = _read_response(sock)
        assert status_of(answer) == 200, answer
        assert json.loads(answer.partition(b"\r\n\r\n")[2]) == {"size": len(body)}


def test_websocket_upgrade_outlives_the_header_timeout(port: int) -> None:
    with connect(f"ws://127.0.0.1:{port}/ws", compression=None, open_timeout=5) as ws:
        opened = time.monotonic()
        sent = 0
        while time.monotonic() - opened < TIMEOUT * 2:
            ws.send(f"m{sent}")
            assert ws.recv(timeout=5) == f"m{sent}"
            sent += 1
        ws.send("last")
        assert ws.recv(timeout=5) == "last"


def test_a_plain_handshake_is_adopted_with_the_scope_uvicorn_would_build(port: int) -> None:
    url = f"ws://127.0.0.1:{port}/scope/a%20b?x=1&y=2"
    with connect(url, compression=None, subprotocols=["p1", "p2"], open_timeout=5) as ws:  # type: ignore[list-item]
        seen = json.loads(ws.recv(timeout=5))
        assert ws.subprotocol == "p1"
        ws.send("after")
        assert ws.recv(timeout=5) == "after"
    assert seen["name"] == "a b"
    assert seen["path"] == "/scope/a b"
    assert seen["raw_path"] == "/scope/a%20b"
    assert seen["query_string"] == "x=1&y=2"
    assert seen["subprotocols"] == ["p1", "p2"]
    assert seen["sink"] is True
    # Lowercased, as ASGI asks: the head as httptools parsed it, not re-read.
    assert "sec-websocket-key" in seen["header_names"]
    assert all(name == name.lower() for name in seen["header_names"])


def test_a_handshake_that_is_not_plain_is_still_served(port: int) -> None:
    """Two Connection headers: valid, but not what the adopted path reads."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"GET /scope/x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: keep-alive\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        answer, _ = receive(sock, 5, poll=0.5, on_quiet=lambda got: b'"sink"' in got)
    assert status_of(answer) == 101, answer
    assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in answer
    assert b'"sink": true' in answer or b'"sink":true' in answer


@pytest.mark.parametrize(
    ("version", "key"),
    [(b"8", b"dGhlIHNhbXBsZSBub25jZQ=="), (b"13", b"not-a-key"), (b"13", b"c2hvcnQ=")],
)
def test_a_bad_handshake_gets_websockets_own_refusal(port: int, version: bytes, key: bytes) -> None:
    head = (
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: " + version + b"\r\n\r\n"
    )
    answer = _request(port, head)
    assert status_of(answer) == 400, answer
    assert b"Sec-WebSocket-" in answer  # websockets names the header at fault


def test_a_socket_closed_before_accept_gets_403(port: int) -> None:
    head = (
        b"GET /refuse HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert status_of(_request(port, head)) == 403


def test_tidings_gateway_serves_with_the_guarded_protocol() -> None:
    settings = Settings(
        gateway=GatewaySettings(header_timeout_seconds=3.5, max_header_bytes=8192),
    )
    protocol = server_config(settings).http
    assert isinstance(protocol, type) and issubclass(protocol, GuardedHttpToolsProtocol)
    assert protocol.header_timeout == 3.5
    assert protocol.max_header_bytes == 8192
