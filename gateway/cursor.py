"""Cursors: where one event sits in the event log.

A cursor is ``"<partition>:<offset>"`` of the record in the tenant topic. It is
opaque to clients (they only echo it in acks), but kept readable because it
shows up in logs, in ``GET /v1/runs/{id}/events?after=`` and in bug reports.
One run's events share a partition (key = run id), so the offset alone orders
them; the partition is carried so a cursor from another run is recognisable.

The one cursor of the gateway: REST pages (``after=``, ``next_cursor``) and
the stream (``event`` frames, acks, ``from=``) issue and read the same
positions. :class:`CursorError` is its one error; each edge words it in its
own documented way (400 ``bad_request`` on REST, 4400 on a socket).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# ASCII digits only (``\d`` would take other scripts' digits), a partition
# number of at most 6 digits and a Kafka offset (an int64) of at most 19.
_CURSOR = re.compile(r"([0-9]{1,6}):([0-9]{1,19})")


class CursorError(ValueError):
    """Not a cursor this gateway could have issued."""


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    partition: int
    offset: int

    def encode(self) -> str:
        return f"{self.partition}:{self.offset}"

    @classmethod
    def decode(cls, text: object) -> Cursor:
        if not isinstance(text, str) or len(text) > 40 or not text.isascii():
            raise CursorError("a cursor is a short string")
        match = _CURSOR.fullmatch(text)
        if match is None:
            raise CursorError(f"malformed cursor {text[:40]!r}")
        return cls(int(match[1]), int(match[2]))

    def __str__(self) -> str:
        return self.encode()
