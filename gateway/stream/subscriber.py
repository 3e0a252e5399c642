"""One socket's view of a run: a bounded send queue fed by catch-up, then live.

The live tail calls :meth:`Subscriber.offer` synchronously for every record of
the run. While the socket is still catching up, those records are buffered
(bounded; on overflow the buffer is dropped and the catch-up read simply goes
further). Once live, a record goes straight to the socket's direct sink
(``sink.py``) when nothing is queued ahead of it and the transport has room:
the common case costs a share of one ``transport.writelines`` of bytes shared
by every socket (frames offered during one dispatch slice are held and sent
together: ``cork.py``).
Otherwise it is queued for the socket's writer; a record that does not fit the
queue closes the socket with 4408 instead of growing memory: the client's
acked cursor is in Redis, so it resumes with nothing lost. ``next_offset``
makes hand-over gap- and duplicate-free: anything below it was already queued
or sent, and is dropped.

Every byte queued or buffered is also counted on the tail's
:class:`~gateway.stream.watermarks.Watermarks`, which pauses the tail when the
tenant's sockets together hold too much. Bytes handed to a transport are the
transport's: at most its high-water mark, since the sink is only written
below it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from gateway.server.sink import FrameSink

from .cork import Cork
from .errors import StreamClosed, too_slow
from .frames import CAUGHT_UP, Frame, control, end_frame
from .watermarks import Watermarks

# What a socket may hold during a slice before it is written anyway: the
# transport's default high-water mark.
_HOLD_MAX_BYTES = 64 * 1024


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
        watermarks: Watermarks | None = None,
        sink: FrameSink | None = None,
        cork: Cork | None = None,
    ) -> None:
        self.tenant = tenant
        self.run_id = run_id
        self.partition = partition
        self.next_offset = 0
        self.sent_max = -1  # the highest offset handed to the socket (acks above it are bogus)
        self.live = False
        self.ended = False  # the end frame is queued or sent: nothing more goes out
        self.done = False  # the end frame is sent: close normally
        self.failure: StreamClosed | None = None
        # Temporal already reports the run finished: end after catch-up even if
        # no terminal event arrives (a terminated run never emits one).
        self._final_state = final_state
        self._max_events = max_events
        self._max_bytes = max_bytes
        # A deque once something queues (an empty one is 600 bytes, and an
        # idle socket whose frames all went straight out never needs one).
        self._queue: deque[Frame] | tuple[()] = ()
        self._bytes = 0
        self._pending: list[Frame] | None = []
        self._pending_bytes = 0
        self._watermarks = watermarks
        self._sink = sink
        self._cork = cork
        self._held: list[bytes] = []
        self._held_bytes = 0
        # When the writer last took a frame: a paused tail cuts sockets whose
        # queue has not moved for a while (tail.py).
        self.last_drain = time.monotonic()
        # Made when first waited on: most sockets never wait on either, and
        # ten thousand idle sockets would carry twenty thousand of them.
        self._readable: asyncio.Event | None = None
        self._room: asyncio.Event | None = None
        # The socket's owner is told when the subscriber is over (failed, or
        # the end frame sent, maybe by the tail directly), and when a frame
        # is queued behind an empty queue (it needs a writer).
        self.over = False
        self.on_over: Callable[[], None] | None = None
        self.on_queued: Callable[[], None] | None = None

    @property
    def depth(self) -> int:
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        """Queued plus buffered-while-catching-up bytes (what the tail's watermarks count)."""
        return self._bytes + self._pending_bytes

    # -- the live tail -------------------------------------------------------
    def offer(self, frame: Frame) -> bool:
        """Take one live record; True if it went straight to the socket."""
        if self.failure is not None or self.ended:
            return False
        if not self.live:
            if self._pending is not None:
                self._pending.append(frame)
                size = len(frame.wire)
                self._pending_bytes += size
                self._account(size)
                if len(self._pending) > self._max_events or self._pending_bytes > self._max_bytes:
                    self._drop_pending()
            return False
        if frame.offset < self.next_offset:
            return False
        if self._write_now(frame):
            return True
        if not self._has_room(frame):
            self.fail(too_slow())
            return False
        self._enqueue(frame)
        return False

    def write_live(self, frames: list[Frame]) -> int:
        """The live tail's fast path: write the leading ``frames`` straight to
        the socket, as :meth:`offer` would one at a time, with one call per
        transport buffer's worth; how many were written.

        It stops at the first frame ``offer`` would do anything else with
        (buffer, queue, skip, refuse), and after a frame that ends the run;
        the tail offers the rest one by one. One socket's share of a fan-out
        to a thousand is then a handful of checks and one system call, where
        ``offer`` went through the cork and the sink's checks twice per
        frame, and waited for the slice to end before writing."""
        sink = self._sink
        if (
            sink is None
            or not self.live
            or self.ended
            or self.failure is not None
            or self._queue
            or self._held  # frames held earlier in the slice go first
        ):
            return 0
        total = len(frames)
        done = 0
        while done < total:
            wires: list[bytes] = []
            size = 0
            upto = done
            next_offset = self.next_offset
            while upto < total and size < _HOLD_MAX_BYTES:
                frame = frames[upto]
                if frame.offset < next_offset:
                    break
                wires.append(frame.wire)
                size += len(frame.wire)
                next_offset = frame.offset + 1
                upto += 1
                if frame.end_status is not None:
                    break
            # Past the high-water mark the transport takes no more: the rest
            # queue (offer), so memory stays bounded as it does frame by frame.
            if not wires or not sink.write_if_writable(wires):
                break
            self.next_offset = next_offset
            self.sent(frames[upto - 1])
            done = upto
            status = frames[upto - 1].end_status
            if status is not None:
                self._finish(status)
                break
        return done

    # -- the catch-up reader -------------------------------------------------
    async def put_paced(self, frame: Frame, stall_seconds: float) -> bool:
        """Queue (or send) a replayed record, waiting at the client's pace for
        room; True if it went straight to the socket."""
        if frame.offset < self.next_offset or self.ended:
            return False
        while not self._has_room(frame):
            if self._room is None:
                self._room = asyncio.Event()
            self._room.clear()
            try:
                await asyncio.wait_for(self._room.wait(), stall_seconds)
            except TimeoutError:
                self.fail(too_slow())
            if self.failure is not None:
                raise self.failure
        if self._write_now(frame):
            return True
        self._enqueue(frame)
        return False

    def take_pending(self) -> list[Frame] | None:
        """What the tail buffered since the last call (None: it overflowed), and
        restart buffering."""
        pending = self._pending
        self._drop_pending()
        self._pending = []
        return pending

    def hand_over_now(self) -> int | None:
        """Go live without a read, when nothing before the tail needs one
        (``next_offset`` is at the end offset sampled after registering):
        what the tail buffered since is all there is. None if that does not
        fit the queue (the catch-up task then goes at the client's pace);
        else how many frames went straight to the socket."""
        pending = self._pending
        if pending is None:
            return None
        due = [f for f in pending if f.offset >= self.next_offset]
        if len(due) + len(self._queue) >= self._max_events or (
            self._bytes + sum(len(f.wire) for f in due) > self._max_bytes
        ):
            return None
        direct = 0
        for frame in due:
            if frame.offset < self.next_offset or self.ended:
                continue  # a terminal event ended it, or a repeat
            if self._write_now(frame):
                direct += 1
            else:
                self._enqueue(frame)
        self.go_live()
        return direct

    def go_live(self) -> None:
        self.live = True
        self._drop_pending()
        self.push_control(CAUGHT_UP)
        if self._final_state is not None and not self.ended:
            self._finish(self._final_state)

    def finish(self, state: str) -> None:
        """The run has finished (Temporal says so) and the tail has offered
        every record it wrote before: end once those are out."""
        if self.ended or self.failure is not None:
            return
        if self.live:
            self._finish(state)
        else:
            self._final_state = state  # go_live ends it, after the catch-up

    # -- the writer ----------------------------------------------------------
    def push_control(self, text: str) -> None:
        self._push(control(text))

    async def readable(self) -> None:
        """Return once a frame is queued; raise the failure if there is one."""
        while not self._queue:
            if self.failure is not None:
                raise self.failure
            if self._readable is None:
                self._readable = asyncio.Event()
            self._readable.clear()
            await self._readable.wait()
        if self.failure is not None:
            raise self.failure

    def pop(self) -> Frame:
        queue = self._queue
        assert isinstance(queue, deque)  # readable() saw a frame
        frame = queue.popleft()
        size = len(frame.wire)
        self._bytes -= size
        if self._watermarks is not None:
            self._watermarks.remove(size)
        self.last_drain = time.monotonic()
        if self._room is not None:
            self._room.set()
        return frame

    def sent(self, frame: Frame) -> None:
        """``frame`` was handed to the socket (by the writer or directly)."""
        if frame.offset > self.sent_max:
            self.sent_max = frame.offset
        if frame.last:
            self.done = True
            self._signal_over()

    def flush(self) -> None:
        """Send the frames held during the tail's slice (``cork.py``)."""
        if self._held:
            held, self._held, self._held_bytes = self._held, [], 0
            if self._sink is not None and self.failure is None:
                # False: the socket is closing, and its reader will say so.
                self._sink.write_many(held)

    def fail(self, error: StreamClosed) -> None:
        self._held, self._held_bytes = [], 0
        if self.failure is None:
            self.failure = error
        self._queue = ()
        self._account(-self._bytes)
        self._bytes = 0
        self._drop_pending()
        for event in (self._readable, self._room):
            if event is not None:
                event.set()
        self._signal_over()

    # -- internals -----------------------------------------------------------
    def _write_now(self, frame: Frame) -> bool:
        """An event frame straight to the socket, if nothing is queued ahead."""
        if not self._send_direct(frame):
            return False
        self.next_offset = frame.offset + 1
        if frame.end_status is not None:
            self._finish(frame.end_status)
        return True

    def _send_direct(self, frame: Frame) -> bool:
        sink = self._sink
        if self._queue or sink is None or not sink.writable or not self._emit(sink, frame.wire):
            return False
        self.sent(frame)
        return True

    def _emit(self, sink: FrameSink, wire: bytes) -> bool:
        cork = self._cork
        if cork is None or not cork.open:
            return sink.write(wire)
        if not self._held:
            cork.hold(self)
        self._held.append(wire)
        self._held_bytes += len(wire)
        if self._held_bytes >= _HOLD_MAX_BYTES:
            self.flush()  # a transport buffer's worth: no point holding more
        return True

    def _finish(self, status: str) -> None:
        self.ended = True
        self._push(control(end_frame(status), last=True))

    def _has_room(self, frame: Frame) -> bool:
        if not self._queue:
            return True
        return (
            len(self._queue) < self._max_events and self._bytes + len(frame.wire) <= self._max_bytes
        )

    def _enqueue(self, frame: Frame) -> None:
        self.next_offset = frame.offset + 1
        self._push(frame)
        if frame.end_status is not None:
            self._finish(frame.end_status)

    def _push(self, frame: Frame) -> None:
        if self.failure is not None:
            return  # never sent (readable() raises first), so never counted
        # A control frame with nothing ahead of it: no need to wake the writer.
        if frame.offset < 0 and self._send_direct(frame):
            return
        queue = self._queue
        if not isinstance(queue, deque):
            queue = self._queue = deque()
        first = not queue
        queue.append(frame)
        size = len(frame.wire)
        self._bytes += size
        if self._watermarks is not None:
            self._watermarks.add(size)
        if self._readable is not None:
            self._readable.set()
        if first and self.on_queued is not None:
            self.on_queued()

    def _signal_over(self) -> None:
        if not self.over:
            self.over = True
            if self.on_over is not None:
                self.on_over()

    def _drop_pending(self) -> None:
        self._account(-self._pending_bytes)
        self._pending, self._pending_bytes = None, 0

    def _account(self, delta: int) -> None:
        if self._watermarks is not None and delta:
            if delta > 0:
                self._watermarks.add(delta)
            else:
                self._watermarks.remove(-delta)
