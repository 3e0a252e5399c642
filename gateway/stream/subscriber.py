"""One socket's view of a run: a bounded send queue fed by catch-up, then live.

A subscriber is in one :class:`State` at a time: catching up, live, ending
(the end frame is queued), done (it is sent) or failed; :meth:`Subscriber.move`
is the only way between them and refuses a move the states do not allow.

The live tail calls :meth:`Subscriber.offer` synchronously for every record of
the run. While the socket is still catching up, those records are buffered
(bounded; on overflow the buffer is dropped and the catch-up read simply goes
further). Once live, a record goes straight to the socket's direct sink
(``gateway/server/sink.py``, through its
:class:`~gateway.stream.writer.FrameWriter`) when nothing is queued ahead of
it and the transport has room: the common case costs a share of one
``transport.writelines`` of bytes shared by every socket (frames offered
during one dispatch slice are held and sent together: ``cork.py``).
Otherwise it is queued for the socket's writer task; a record that does not
fit the queue closes the socket with 4408 instead of growing memory: the
client's acked cursor is in Redis, so it resumes with nothing lost.
``next_offset`` makes hand-over gap- and duplicate-free: anything below it
was already queued or sent, and is dropped.

Every byte queued or buffered is also counted on the tail's
:class:`~gateway.stream.watermarks.Watermarks`, which pauses the tail when the
tenant's sockets together hold too much. Bytes handed to a transport are the
transport's: at most its high-water mark, since the sink is only written
below it.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from collections.abc import Callable

from gateway.server.sink import FrameSink

from .cork import Cork
from .errors import StreamClosed, too_slow
from .frames import CAUGHT_UP, Frame, control, end_frame
from .watermarks import Watermarks
from .writer import HOLD_MAX_BYTES, FrameWriter

# The queue of every subscriber that has never queued a frame (or has failed):
# an empty deque is 760 bytes, and an idle socket whose frames all went
# straight out never needs one of its own. Never appended to (``_push``
# replaces it first); ``maxlen=0`` would drop a frame rather than share it.
_NO_QUEUE: deque[Frame] = deque(maxlen=0)


class State(enum.Enum):
    CATCHING_UP = "catching up"  # live records are buffered while the replay reads
    LIVE = "live"  # records go to the socket as the tail offers them
    ENDING = "ending"  # the end frame is queued: nothing more goes out
    DONE = "done"  # the end frame is sent: close normally
    FAILED = "failed"  # ``failure`` says why; the queue is freed


# DONE and FAILED are final. A failure after DONE (the gateway stopping while
# acks are still read) is kept as the close reason; the end frame was sent.
_NEXT: dict[State, frozenset[State]] = {
    State.CATCHING_UP: frozenset({State.LIVE, State.ENDING, State.FAILED}),
    State.LIVE: frozenset({State.ENDING, State.FAILED}),
    State.ENDING: frozenset({State.DONE, State.FAILED}),
    State.DONE: frozenset(),
    State.FAILED: frozenset(),
}
# Module names for the members: an enum member looked up on its class costs
# about 170 ns on Python 3.11, more than the rest of a direct write.
_CATCHING_UP, _LIVE, _ENDING, _DONE, _FAILED = State


class IllegalTransition(RuntimeError):
    """A subscriber was asked to move where its state does not lead: a bug."""


class Subscriber:
    __slots__ = (
        "_bytes",
        "_final_state",
        "_max_bytes",
        "_max_events",
        "_pending",
        "_pending_bytes",
        "_queue",
        "_readable",
        "_room",
        "_watermarks",
        "_writer",
        "failure",
        "last_drain",
        "next_offset",
        "on_over",
        "on_queued",
        "partition",
        "run_id",
        "sent_max",
        "state",
        "tenant",
    )

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
        self.state = _CATCHING_UP
        self.failure: StreamClosed | None = None
        # Temporal already reports the run finished: end after catch-up even if
        # no terminal event arrives (a terminated run never emits one).
        self._final_state = final_state
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._queue = _NO_QUEUE
        self._bytes = 0
        self._pending: list[Frame] | None = []
        self._pending_bytes = 0
        self._watermarks = watermarks
        # None without a direct sink (another ASGI server): the socket's
        # writer task sends every frame.
        self._writer = FrameWriter(sink, cork) if sink is not None else None
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
        self.on_over: Callable[[], None] | None = None
        self.on_queued: Callable[[], None] | None = None

    @property
    def live(self) -> bool:
        return self.state is _LIVE

    @property
    def ended(self) -> bool:
        """Nothing more goes out: the end frame is queued or sent, or it failed."""
        state = self.state
        return state is not _CATCHING_UP and state is not _LIVE

    @property
    def done(self) -> bool:
        """The end frame is sent: the socket closes normally."""
        return self.state is _DONE

    @property
    def over(self) -> bool:
        """Done or failed: the socket's owner stops reading acks (``on_over``)."""
        return self.state is _DONE or self.state is _FAILED

    @property
    def depth(self) -> int:
        return len(self._queue)

    def move(self, to: State) -> None:
        """Go to ``to``; raise :class:`IllegalTransition` where the state does
        not lead there. Entering DONE or FAILED tells the owner (``on_over``)."""
        if to not in _NEXT[self.state]:
            raise IllegalTransition(f"{self.state.value} -> {to.value}")
        self.state = to
        if (to is _DONE or to is _FAILED) and self.on_over is not None:
            self.on_over()

    @property
    def queued_bytes(self) -> int:
        """Queued plus buffered-while-catching-up bytes (what the tail's watermarks count)."""
        return self._bytes + self._pending_bytes

    # -- the live tail -------------------------------------------------------
    def offer(self, frame: Frame) -> bool:
        """Take one live record; True if it went straight to the socket."""
        state = self.state
        if state is not _LIVE:
            if state is _CATCHING_UP and self._pending is not None:
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
        writer = self._writer
        if (
            writer is None
            or self.state is not _LIVE
            or self._queue
            or writer.held  # frames held earlier in the slice go first
        ):
            return 0
        total = len(frames)
        done = 0
        while done < total:
            wires: list[bytes] = []
            size = 0
            upto = done
            next_offset = self.next_offset
            while upto < total and size < HOLD_MAX_BYTES:
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
            if not wires or not writer.write_now(wires):
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
        if self.failure is not None:
            raise self.failure
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
        if len(due) + self.depth >= self._max_events or (
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
        """The catch-up is over: say ``caught_up``. A subscriber that a
        terminal event already ended (hand_over_now) stays ending or done."""
        if self.state is _FAILED:
            return
        if self.state is _CATCHING_UP:
            self.move(_LIVE)
        self._drop_pending()
        self.push_control(CAUGHT_UP)
        if self._final_state is not None and self.state is _LIVE:
            self._finish(self._final_state)

    def finish(self, state: str) -> None:
        """The run has finished (Temporal says so) and the tail has offered
        every record it wrote before: end once those are out."""
        if self.state is _LIVE:
            self._finish(state)
        elif self.state is _CATCHING_UP:
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
        frame = self._queue.popleft()  # readable() saw one
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
        if frame.last and self.state is _ENDING:
            self.move(_DONE)

    def fail(self, error: StreamClosed) -> None:
        """Stop here, freeing the queue and what was buffered; the first
        failure is the close reason. After DONE it is kept as the reason and
        the state stays DONE (the end frame went out)."""
        if self._writer is not None:
            self._writer.drop()
        if self.failure is None:
            self.failure = error
        self._queue = _NO_QUEUE
        self._account(-self._bytes)
        self._bytes = 0
        self._drop_pending()
        for event in (self._readable, self._room):
            if event is not None:
                event.set()
        if self.state is not _DONE and self.state is not _FAILED:
            self.move(_FAILED)

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
        writer = self._writer
        if self._queue or writer is None or not writer.write(frame.wire):
            return False
        self.sent(frame)
        return True

    def _finish(self, status: str) -> None:
        self.move(_ENDING)
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
        if queue is _NO_QUEUE:
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

    def _drop_pending(self) -> None:
        self._account(-self._pending_bytes)
        self._pending, self._pending_bytes = None, 0

    def _account(self, delta: int) -> None:
        if self._watermarks is not None and delta:
            if delta > 0:
                self._watermarks.add(delta)
            else:
                self._watermarks.remove(-delta)
