"""One socket's view of a run: a bounded send queue fed by catch-up, then live.

The live tail calls :meth:`Subscriber.offer` synchronously for every record of
the run. While the socket is still catching up, those records are buffered
(bounded; on overflow the buffer is dropped and the catch-up read simply goes
further). Once live, a record that does not fit the queue closes the socket
with 4408 instead of growing memory: the client's acked cursor is in Redis,
so it resumes with nothing lost. ``next_offset`` makes hand-over gap- and
duplicate-free: anything below it was already queued and is dropped.

Every byte queued or buffered is also counted on the tail's
:class:`~gateway.stream.watermarks.Watermarks`, which pauses the tail when the
tenant's sockets together hold too much.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

from .errors import StreamClosed, too_slow
from .frames import CAUGHT_UP, EventFrame, end_frame
from .watermarks import Watermarks


@dataclass(frozen=True, slots=True)
class Item:
    text: str
    offset: int = -1  # -1 for control frames
    end_status: str | None = None  # send ``end`` with this status after the frame
    last: bool = False  # close normally after sending this frame


class Subscriber:
    def __init__(
        self,
        tenant: str,
        run_id: str,
        partition: int,
        *,
        max_events: int,
        max_bytes: int,
        final_state: str | None = None,
        level: Watermarks | None = None,
    ) -> None:
        self.tenant = tenant
        self.run_id = run_id
        self.partition = partition
        self.next_offset = 0
        self.sent_max = -1
        self.live = False
        self.ended = False
        self.failure: StreamClosed | None = None
        # Temporal already reports the run finished: end after catch-up even if
        # no terminal event arrives (a terminated run never emits one).
        self._final_state = final_state
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._queue: deque[Item] = deque()
        self._bytes = 0
        self._pending: list[EventFrame] | None = []
        self._pending_bytes = 0
        self._level = level
        # When the writer last took a frame: a paused tail cuts sockets whose
        # queue has not moved for a while (tail.py).
        self.last_drain = time.monotonic()
        self._readable = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        # Set on failure: the writer may be stuck in a send to a peer that does
        # not read, so the socket's owner waits on this to cut it loose.
        self.failed = asyncio.Event()

    @property
    def depth(self) -> int:
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        """Queued plus buffered-while-catching-up bytes (what the tail's level counts)."""
        return self._bytes + self._pending_bytes

    # -- the live tail -------------------------------------------------------
    def offer(self, frame: EventFrame) -> None:
        if self.failure is not None or self.ended:
            return
        if not self.live:
            if self._pending is not None:
                self._pending.append(frame)
                self._pending_bytes += len(frame.text)
                self._account(len(frame.text))
                if len(self._pending) > self._max_events or self._pending_bytes > self._max_bytes:
                    self._drop_pending()
            return
        if frame.offset < self.next_offset:
            return
        if not self._has_room(frame.text):
            self.fail(too_slow())
            return
        self._push_event(frame)

    # -- the catch-up reader -------------------------------------------------
    async def put_paced(self, frame: EventFrame, stall_seconds: float) -> None:
        """Queue a replayed record, waiting (at the client's pace) for room."""
        if frame.offset < self.next_offset or self.ended:
            return
        while not self._has_room(frame.text):
            self._room.clear()
            try:
                await asyncio.wait_for(self._room.wait(), stall_seconds)
            except TimeoutError:
                self.fail(too_slow())
            if self.failure is not None:
                raise self.failure
        self._push_event(frame)

    def take_pending(self) -> list[EventFrame] | None:
        """What the tail buffered since the last call (None: it overflowed), and
        restart buffering."""
        pending = self._pending
        self._drop_pending()
        self._pending = []
        return pending

    def go_live(self) -> None:
        self.live = True
        self._drop_pending()
        self.push_control(CAUGHT_UP)
        if self._final_state is not None and not self.ended:
            self.ended = True
            self._push(Item(end_frame(self._final_state), last=True))

    # -- the writer ----------------------------------------------------------
    def push_control(self, text: str) -> None:
        self._push(Item(text))

    async def next_item(self) -> Item:
        while not self._queue:
            if self.failure is not None:
                raise self.failure
            self._readable.clear()
            await self._readable.wait()
        if self.failure is not None:
            raise self.failure
        item = self._queue.popleft()
        size = len(item.text)
        self._bytes -= size
        if self._level is not None:
            self._level.remove(size)
        self.last_drain = time.monotonic()
        self._room.set()
        return item

    def fail(self, error: StreamClosed) -> None:
        if self.failure is None:
            self.failure = error
        self.failed.set()
        self._queue.clear()
        self._account(-self._bytes)
        self._bytes = 0
        self._drop_pending()
        self._readable.set()
        self._room.set()

    # -- internals -----------------------------------------------------------
    def _has_room(self, text: str) -> bool:
        if not self._queue:
            return True
        return len(self._queue) < self._max_events and self._bytes + len(text) <= self._max_bytes

    def _push_event(self, frame: EventFrame) -> None:
        self.next_offset = frame.offset + 1
        if frame.end_status is not None:
            self.ended = True
        self._push(Item(frame.text, frame.offset, frame.end_status))

    def _push(self, item: Item) -> None:
        if self.failure is not None:
            return  # never sent (next_item raises first), so never counted
        self._queue.append(item)
        size = len(item.text)
        self._bytes += size
        if self._level is not None:
            self._level.add(size)
        self._readable.set()

    def _drop_pending(self) -> None:
        self._account(-self._pending_bytes)
        self._pending, self._pending_bytes = None, 0

    def _account(self, delta: int) -> None:
        if self._level is not None and delta:
            if delta > 0:
                self._level.add(delta)
            else:
                self._level.remove(-delta)
