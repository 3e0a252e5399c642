"""How long an emit keeps trying while the event plane (Kafka) is away.

An outage of the event plane is not a failure of the step that emits: the
emit waits it out, retrying with bounded exponential backoff, for as long as
the caller lets it (a step attempt heartbeats meanwhile and is bounded by its
own start-to-close timeout). See docs/reliability.md, "Event-plane outage".
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import Histogram


@dataclass(frozen=True)
class EmitBackoff:
    """Backoff between tries of one record: ``initial`` doubling up to ``maximum`` seconds."""

    initial: float = 0.2
    maximum: float = 5.0

    def delays(self) -> Iterator[float]:
        delay = self.initial
        while True:
            yield delay
            delay = min(delay * 2, self.maximum)


class RecentIds:
    """The ids of the last ``size`` records the broker acknowledged, oldest dropped first.

    A retried emit activity re-sends the same event id; if this process already
    has the broker's acknowledgement for it, sending again would only write a
    second copy (the idempotent producer dedupes its own retries of one send,
    not a fresh send of the same bytes)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def add(self, key: str) -> None:
        self._ids[key] = None
        self._ids.move_to_end(key)
        while len(self._ids) > self._size:
            self._ids.popitem(last=False)


class Record:
    """One record from its emit until the broker has it (or it is given up on).

    A plain slotted class, not a dataclass: one is built per token, on the
    emitter's hottest path."""

    __slots__ = (
        "headers",
        "id",
        "key",
        "latency",
        "outcome",
        "remember",
        "sent",
        "seq",
        "since",
        "started",
        "topic",
        "value",
    )

    def __init__(
        self,
        id: str,
        topic: str,
        value: bytes,
        key: bytes,
        headers: list[tuple[str, bytes]],
        remember: bool,
        started: float,
        since: float,
        seq: int,
        latency: Histogram | None,
    ) -> None:
        self.id = id
        self.topic = topic
        self.value = value
        self.key = key
        self.headers = headers
        # Keep the id once acknowledged (awaited emits: the ones a retried
        # activity repeats; tokens would crowd them out).
        self.remember = remember
        # Monotonic seconds: the emit call (for the latency histogram) and the
        # start of its wait for the event plane (for stalled_for).
        self.started = started
        self.since = since
        # Hand-over order, for flush's "every record handed over so far".
        self.seq = seq
        # The tenant's emit-latency histogram child (None: not an event).
        self.latency = latency
        # The producer's future for the current send; None before the
        # producer took it, while it is sent again, and once settled.
        self.sent: asyncio.Future[Any] | None = None
        # Made only when someone waits for this record (an awaited emit, a
        # joining emit, a flush that finds it still in flight).
        self.outcome: asyncio.Future[None] | None = None
