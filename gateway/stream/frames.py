"""Server frames and the one client frame, as on the wire (DESIGN.md).

An event frame is built once per Kafka record and the same ``str`` is sent to
every socket that follows the run: the envelope is spliced in as the producer
wrote it, never decoded and re-encoded per socket.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tidings.errors import CloseCode
from tidings.events import EnvelopeError, Event, EventType

from .cursor import Cursor, CursorError
from .errors import StreamClosed

CAUGHT_UP = '{"kind":"caught_up"}'

_END_STATUS = {
    EventType.RUN_COMPLETED: "COMPLETED",
    EventType.RUN_FAILED: "FAILED",
    EventType.RUN_CANCELLED: "CANCELLED",
}


@dataclass(frozen=True, slots=True)
class EventFrame:
    offset: int
    text: str
    # The run's final status if this event ends it: the socket sends ``end`` after it.
    end_status: str | None


def token_frame(token: str) -> str:
    return json.dumps({"kind": "token", "token": token}, separators=(",", ":"))


def end_frame(status: str) -> str:
    return json.dumps({"kind": "end", "status": status}, separators=(",", ":"))


def error_frame(code: str, message: str) -> str:
    return json.dumps({"kind": "error", "code": code, "message": message}, separators=(",", ":"))


def event_frame(partition: int, offset: int, value: bytes, run_id: str) -> EventFrame:
    """The frame for one record; raises :class:`EnvelopeError` for a record that
    is not a readable envelope of ``run_id`` (it must not reach clients: a
    spliced non-JSON value would corrupt the frame)."""
    event = Event.from_bytes(value)
    if event.run_id != run_id:
        raise EnvelopeError(f"record keyed {run_id!r} carries run {event.run_id!r}")
    cursor = Cursor(partition, offset).encode()
    text = '{"kind":"event","cursor":"' + cursor + '","event":' + value.decode() + "}"
    return EventFrame(offset, text, _END_STATUS.get(event.type))


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
