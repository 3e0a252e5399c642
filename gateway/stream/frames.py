"""Server frames and the one client frame, as on the wire (docs/protocol.md).

An event frame is built once per Kafka record, and the same bytes go to every
socket that follows the run: the envelope is spliced in as the producer wrote
it, never decoded and re-encoded per socket. Server-to-client WebSocket frames
are not masked (RFC 6455 section 5.1), so without an extension the frame on
the wire, header included, is the same for every socket; :class:`Frame` keeps
exactly those bytes (``gateway.server.wire`` encodes them), and a socket with
a direct sink (``gateway.server.sink``) writes them to its transport as they
are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from gateway.cursor import Cursor, CursorError
from gateway.server.wire import payload_of, wire_text
from tidings.errors import CloseCode
from tidings.events import SUPPORTED_SCHEMAS, EnvelopeError, EventType

from .errors import StreamClosed

_END_STATUS = {
    EventType.RUN_COMPLETED: "COMPLETED",
    EventType.RUN_FAILED: "FAILED",
    EventType.RUN_CANCELLED: "CANCELLED",
    EventType.RUN_TERMINATED: "TERMINATED",
    EventType.RUN_TIMED_OUT: "TIMED_OUT",
}


@dataclass(frozen=True, slots=True)
class Frame:
    wire: bytes  # the whole WebSocket frame: header and payload
    offset: int = -1  # the record's offset; -1 for control frames
    # The run's final status if this event ends it: ``end`` follows it.
    end_status: str | None = None
    # Close normally once this frame is sent (``end``).
    last: bool = False

    @property
    def text(self) -> str:
        """The payload, for a socket without a direct sink."""
        return payload_of(self.wire).decode()


def control(text: str, *, last: bool = False) -> Frame:
    return Frame(wire_text(text.encode()), last=last)


def _json(value: dict[str, str | int]) -> str:
    return json.dumps(value, separators=(",", ":"))


CAUGHT_UP = _json({"kind": "caught_up"})


def token_frame(token: str) -> str:
    return _json({"kind": "token", "token": token})


def end_frame(status: str) -> str:
    return _json({"kind": "end", "status": status})


def error_frame(code: str, message: str, retry_after: int | None = None) -> str:
    frame: dict[str, str | int] = {"kind": "error", "code": code, "message": message}
    if retry_after is not None:
        frame["retry_after"] = retry_after  # (extension) seconds to wait, with 1013
    return _json(frame)


def event_frame(partition: int, offset: int, value: bytes, run_id: str) -> Frame:
    """The frame for one record; raises :class:`EnvelopeError` for a record that
    is not a readable envelope of ``run_id``.

    It must not reach clients: a spliced non-JSON value would corrupt the
    frame. Checked once per record, not per socket, but with one subscriber per
    run that is once per delivery, so the check is what the splice needs (JSON,
    an object of this run, a supported schema, a string type), not the full
    :class:`tidings.events.Event` validation, which costs several times more.
    """
    try:
        raw = json.loads(value)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
        raise EnvelopeError(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise EnvelopeError("the envelope is not a JSON object")
    if raw.get("run_id") != run_id:
        raise EnvelopeError(f"record keyed {run_id!r} carries run {raw.get('run_id')!r}")
    if raw.get("schema") not in SUPPORTED_SCHEMAS:
        raise EnvelopeError(f"unsupported envelope schema {raw.get('schema')!r}")
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise EnvelopeError("the envelope has no type")
    try:
        value.decode()  # json.loads also reads UTF-16 and UTF-32; frames are UTF-8
    except UnicodeDecodeError:
        raise EnvelopeError("the envelope is not UTF-8") from None
    cursor = Cursor(partition, offset).encode().encode()
    payload = b'{"kind":"event","cursor":"' + cursor + b'","event":' + value + b"}"
    return Frame(wire_text(payload), offset, _END_STATUS.get(kind))


def parse_ack(text: str) -> Cursor:
    """The cursor of a client ``{"ack": "<cursor>"}`` frame, else 4400."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError:
        raise StreamClosed(CloseCode.BAD_FRAME, "frames must be JSON") from None
    if not isinstance(raw, dict) or set(raw) != {"ack"}:
        raise StreamClosed(CloseCode.BAD_FRAME, 'unknown frame: the only client frame is {"ack"}')
    try:
        return Cursor.decode(raw["ack"])
    except CursorError as exc:
        raise StreamClosed(CloseCode.BAD_FRAME, str(exc)) from None
