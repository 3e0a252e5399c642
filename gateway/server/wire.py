"""The wire encoding of the frames the gateway writes itself (RFC 6455).

Server-to-client frames are not masked and the gateway negotiates no
extension, so a text frame on the wire, header included, is the same bytes
for every socket: the stream builds each one once (``gateway.stream.frames``)
and the direct sink (``sink.py``) writes them to every transport as they are.
"""

from __future__ import annotations

import struct

_TEXT_FIN = 0x81  # FIN + opcode 1 (text), no RSV bits: no extension in use


def wire_text(payload: bytes) -> bytes:
    """``payload`` (UTF-8 JSON) as an unmasked, unfragmented text frame."""
    size = len(payload)
    if size < 126:
        return bytes((_TEXT_FIN, size)) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", _TEXT_FIN, 126, size) + payload
    return struct.pack("!BBQ", _TEXT_FIN, 127, size) + payload


def payload_of(wire: bytes) -> bytes:
    """The payload of a frame :func:`wire_text` made."""
    length = wire[1] & 0x7F
    start = 2 if length < 126 else 4 if length == 126 else 10
    return wire[start:]
