"""Cursors: where one event sits in the event log.

A cursor is ``"<partition>:<offset>"`` of the record in the tenant topic. It is
opaque to clients (they only echo it in acks), but kept readable because it
shows up in logs, in ``GET /v1/runs/{id}/events?after=`` and in bug reports.
One run's events share a partition (key = run id), so the offset alone orders
them; the partition is carried so a cursor from another run is recognisable.
"""

from __future__ import annotations

from dataclasses import dataclass


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
        partition, sep, offset = text.partition(":")
        if not sep or not partition.isdigit() or not offset.isdigit():
            raise CursorError(f"malformed cursor {text[:40]!r}")
        return cls(int(partition), int(offset))

    def __str__(self) -> str:
        return self.encode()
