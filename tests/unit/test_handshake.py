"""gateway.server.handshake: the opening handshake answered from a parsed head.

A head that is not plain must come back None (websockets then decides); the
server-level behaviour is in tests/gateway_rest/test_http_guards.py.
"""

from __future__ import annotations

import pytest
from websockets.http11 import Response
from websockets.streams import StreamReader

from gateway.server.handshake import accept_key, switching_protocols

pytestmark = pytest.mark.unit

# RFC 6455 1.3's own example.
RFC_KEY, RFC_ACCEPT = b"dGhlIHNhbXBsZSBub25jZQ==", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def head(**overrides: bytes | None) -> list[tuple[bytes, bytes]]:
    values: dict[str, bytes | None] = {
        "host": b"127.0.0.1:8000",
        "upgrade": b"websocket",
        "connection": b"Upgrade",
        "sec-websocket-key": RFC_KEY,
        "sec-websocket-version": b"13",
        **overrides,
    }
    return [(name.encode(), value) for name, value in values.items() if value is not None]


def test_the_rfc_example_is_accepted() -> None:
    assert accept_key("GET", head()) == RFC_ACCEPT


@pytest.mark.parametrize(
    ("connection", "upgrade"),
    [
        (b"keep-alive, Upgrade", b"websocket"),
        (b"upgrade", b"WebSocket"),
        (b" Upgrade ", b"websocket"),
    ],
)
def test_token_lists_and_case_are_read_as_the_rfc_says(connection: bytes, upgrade: bytes) -> None:
    assert accept_key("GET", head(connection=connection, upgrade=upgrade)) == RFC_ACCEPT


@pytest.mark.parametrize(
    "overrides",
    [
        {"sec-websocket-version": b"8"},
        {"sec-websocket-key": b"not base64!"},
        {"sec-websocket-key": b"c2hvcnQ="},  # 5 bytes, not 16
        {"sec-websocket-key": None},
        {"sec-websocket-version": None},
        {"upgrade": b"h2c"},
        {"upgrade": b"websocket, h2c"},
        {"connection": b"keep-alive"},
        {"connection": None},
    ],
)
def test_anything_but_a_plain_handshake_is_left_to_websockets(
    overrides: dict[str, bytes | None],
) -> None:
    assert accept_key("GET", head(**overrides)) is None


def test_a_repeated_handshake_header_is_left_to_websockets() -> None:
    assert accept_key("GET", [*head(), (b"sec-websocket-key", RFC_KEY)]) is None


def test_only_get_opens_a_websocket() -> None:
    assert accept_key("POST", head()) is None


def test_the_101_is_a_response_websockets_reads_back() -> None:
    wire = switching_protocols(RFC_ACCEPT, [(b"server", b"uvicorn"), (b"x-a", b"b")])
    reader = StreamReader()
    reader.feed_data(wire)
    parser = Response.parse(reader.read_line, reader.read_exact, reader.read_to_eof)
    with pytest.raises(StopIteration) as done:
        next(parser)
    response = done.value.value
    assert response.status_code == 101
    assert response.headers["Sec-WebSocket-Accept"] == RFC_ACCEPT.decode()
    assert response.headers["Upgrade"] == "websocket"
    assert response.headers["x-a"] == "b"


@pytest.mark.parametrize("bad", [(b"x-a", b"b\r\nset-cookie: c"), (b"x\na", b"b"), (b"x-a", b"\0")])
def test_a_header_that_would_split_the_head_is_refused(bad: tuple[bytes, bytes]) -> None:
    with pytest.raises(ValueError, match="line break or NUL"):
        switching_protocols(RFC_ACCEPT, [bad])
