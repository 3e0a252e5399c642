"""How long an emit keeps trying while the event plane (Kafka) is away.

An outage of the event plane is not a failure of the step that emits: the
emit waits it out, retrying with bounded exponential backoff, for as long as
the caller lets it (a step attempt heartbeats meanwhile and is bounded by its
own start-to-close timeout). See docs/reliability.md, "Event-plane outage".
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass


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
