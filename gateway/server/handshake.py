"""The WebSocket opening handshake (RFC 6455 4.2) from a head httptools parsed.

uvicorn hands an upgrade to its WebSocket protocol by writing the request head
back out as bytes, which websockets then parses again and answers through its
own header structures: about 40 microseconds of an open that httptools had
already done in C. :func:`accept_key` checks the head as parsed, and
:func:`switching_protocols` writes the ``101``.

Only a plain handshake is answered here: a GET whose Upgrade, Connection,
key and version headers each appear once with the expected value. Anything
else (a second key, a bad version, an odd Upgrade list) goes the usual way,
so websockets still decides, and words, every refusal. Offered extensions
are declined by not answering them, which is what the gateway does anyway
(permessage-deflate is off, ``gateway.server.command``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable

# RFC 6455 1.3: the server appends this to the client's key before hashing.
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_SINGLE = (b"upgrade", b"connection", b"sec-websocket-key", b"sec-websocket-version")
_FORBIDDEN = frozenset(b"\r\n\0")


def accept_key(method: str, headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """``Sec-WebSocket-Accept`` for a plain handshake, else None.

    ``headers`` as uvicorn's httptools protocol keeps them: names lowercased.
    """
    if method != "GET":
        return None
    found: dict[bytes, bytes] = {}
    for name, value in headers:
        if name in _SINGLE:
            if name in found:
                return None
            found[name] = value
    if len(found) != len(_SINGLE):
        return None
    if found[b"upgrade"].strip().lower() != b"websocket":
        return None
    if b"upgrade" not in (token.strip().lower() for token in found[b"connection"].split(b",")):
        return None
    if found[b"sec-websocket-version"].strip() != b"13":
        return None
    key = found[b"sec-websocket-key"].strip()
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except binascii.Error:
        return None
    # SHA-1 is what RFC 6455 prescribes here; it proves nothing, it only echoes.
    digest = hashlib.sha1(key + _GUID, usedforsecurity=False).digest()
    return base64.b64encode(digest)


def switching_protocols(accept: bytes, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The ``101`` head, with ``headers`` (the server's and the app's) after ours.

    A header holding CR, LF or NUL raises ValueError: it would split the head.
    """
    parts = [
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
        accept,
        b"\r\n",
    ]
    for name, value in headers:
        if _FORBIDDEN.intersection(name) or _FORBIDDEN.intersection(value):
            raise ValueError(f"header {name!r} holds a line break or NUL")
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)
