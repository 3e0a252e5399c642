"""How much one tail has queued for its sockets, against a high and a low mark.

Every :class:`~gateway.stream.subscriber.Subscriber` of a tenant's tail adds
the frames it queues (and the live records it buffers while catching up) and
takes them off as its writer sends them. Frames are counted once per socket,
although sockets on one run share one ``str``: the sum overstates memory,
which keeps the bound conservative. Above ``high`` the tail pauses its Kafka
partitions and stops dispatching until the sum is back at or below ``low``
(see ``tail.py``).
"""

from __future__ import annotations

import asyncio
import contextlib


class Watermarks:
    def __init__(self, high: int, low: int) -> None:
        if not 0 <= low < high:
            raise ValueError("the low mark must be below the high mark")
        self.high = high
        self.low = low
        self.bytes = 0
        self.peak = 0  # the most ever queued at once (a gauge for sizing ``high``)
        self._at_low = asyncio.Event()

    def add(self, n: int) -> None:
        self.bytes += n
        if self.bytes > self.peak:
            self.peak = self.bytes

    def remove(self, n: int) -> None:
        self.bytes -= n
        if self.bytes <= self.low:
            self._at_low.set()

    @property
    def over(self) -> bool:
        return self.bytes > self.high

    async def drained(self, timeout: float) -> bool:  # noqa: ASYNC109 (a wake-up interval)
        """Wait up to ``timeout`` for the sum to fall to ``low``; True if it has."""
        if self.bytes <= self.low:
            return True
        self._at_low.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._at_low.wait(), timeout)
        return self.bytes <= self.low
