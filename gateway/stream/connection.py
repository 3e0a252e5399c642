"""One stream socket, running: from its first frame to its close.

The socket opens first (``opening.py``: authentication, admission, the
resume token or cursor, the first offset). Then it sends the token frame
first, and the socket's own task reads acks from the client and records them
in the gateway's :class:`AckLedger` (never waiting for Redis), a catch-up
task runs while there is something to replay, and a writer while frames are
queued (``subscriber.py``); the client leaving, the subscriber failing, or a
task failing ends the socket and cancels the rest. After ``end`` the socket
keeps reading acks for a short grace (until the client has acked everything
sent, leaves, or the grace is over), so a client reconnecting to a finished
run does not start over. Every refusal, the opening's included, is a
:class:`StreamClosed`, turned into an ``error`` frame and a close code in one
place (:func:`serve`); a dependency that is away (Temporal, Kafka, Redis) is
a 1013 with a retry hint and a warning, not a 1011 and a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from functools import partial
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from gateway.outages import dependency_down
from gateway.server.sink import FrameSink, sink_of
from gateway.server.wire import wire_text
from tidings.errors import CloseCode

from .directory import RunInfo
from .errors import StreamClosed, Unavailable
from .frames import error_frame, parse_ack, token_frame
from .opening import CLOSE_TIMEOUT_SECONDS, Opening, StreamContext
from .replay import PartitionReader, catch_up
from .subscriber import Subscriber
from .tail import TenantTail
from .tokens import Claims

# StreamContext is built by the service, which takes it from here.
__all__ = ["StreamContext", "StreamSocket", "serve"]

log = logging.getLogger(__name__)

# After ``end``, how long acks still in flight are read before the close.
_END_GRACE_SECONDS = 1.0
# Writing a session's last ack on close waits at most this for Redis (the
# ack stays with the ledger's writer if Redis is slower).
_SETTLE_SECONDS = 2.0
# A send the kernel accepts at once never suspends, so a writer with a long
# queue would keep the event loop until its queue is empty while every other
# socket (other tenants' too) waits: a writer yields after this long.
_WRITE_SLICE_SECONDS = 0.0005


async def serve(ws: WebSocket, run_id: str, ctx: StreamContext) -> None:
    # Accepted once open (StreamSocket.run), so the 101 and the first frames
    # leave together; a refusal is accepted here, to carry its close code.
    socket = StreamSocket(ws, run_id, ctx, sink_of(ws))
    try:
        await socket.run()
        code: StreamClosed | None = None
    except StreamClosed as exc:
        code = exc
    except WebSocketDisconnect:
        code = None
    except Exception as exc:
        down = dependency_down(exc)
        if down is None:
            log.exception("stream socket for %s failed", run_id)
            code = StreamClosed(CloseCode.INTERNAL_ERROR, "internal error; resume with your token")
        else:
            log.warning(
                "stream socket for %s refused: %s unavailable (%s)",
                run_id,
                down,
                type(exc).__name__,
            )
            code = Unavailable(down)
    finally:
        socket.release()
    await socket.settle_acks()
    if code is not None:
        ctx.metrics.closes.labels(str(int(code.code))).inc()
        frame = error_frame(code.error_code, code.reason, code.retry_after)
        sink = socket.sink
        if (
            sink is not None
            and ws.application_state is WebSocketState.CONNECTED
            and sink.close_now(
                wire_text(frame.encode()),
                int(code.code),
                code.close_reason,
                ctx.close_linger_seconds,
            )
        ):
            # Written without waiting for the socket to drain: a client that
            # stopped reading gets them when it reads again, or is cut off
            # after the linger, and nothing here waits on it.
            return
        with contextlib.suppress(Exception):
            # A slow client may take a while to drain before the close frame fits.
            async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                if ws.application_state is WebSocketState.CONNECTING:
                    await ws.accept()
                await ws.send_text(frame)
                await ws.close(int(code.code), code.close_reason)
    elif (
        socket.sub is not None
        and socket.sub.done
        and ws.application_state is WebSocketState.CONNECTED
    ):
        ctx.metrics.closes.labels(str(int(CloseCode.NORMAL))).inc()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                await ws.close(int(CloseCode.NORMAL))


class StreamSocket:
    def __init__(
        self, ws: WebSocket, run_id: str, ctx: StreamContext, sink: FrameSink | None = None
    ) -> None:
        self.ws = ws
        self.run_id = run_id
        self.ctx = ctx
        self.sink = sink
        self.opening = Opening(ws, run_id, ctx, sink)
        self.sub: Subscriber | None = None
        self.tail: TenantTail | None = None
        self.claims: Claims | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writer: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._reading = False
        self._interrupted = False
        self._reader: asyncio.Task[Any] | None = None
        self._acked = -1  # the highest offset the client acked on this socket
        self._grace: asyncio.TimerHandle | None = None

    async def run(self) -> None:
        """Open, then read acks until the client leaves or the subscriber is
        over (failed, or ``end`` sent), and raise what ended the socket.

        The socket's own task is the reader: an idle socket costs no other
        task. The subscriber interrupts the read when it is over; the writer
        is started only when frames queue (the sink takes the rest)."""
        ctx = self.ctx
        opened_at = ctx.runs.clock()
        opened = await self.opening.open()
        sub = self.sub = opened.sub
        self.tail, self.claims = opened.tail, opened.claims
        info, end = opened.info, opened.end
        reader = self._reader = asyncio.current_task()
        assert reader is not None
        sub.on_over = self._over
        sub.on_queued = self._start_writer
        await self.ws.accept()
        # The 101, the token and, when nothing needs reading, caught_up: one write.
        cork = opened.tail.cork
        cork.open = True
        try:
            sub.push_control(token_frame(opened.token))
            handed = sub.hand_over_now() if sub.next_offset >= end else None
        finally:
            cork.flush()
        if handed is None:
            self._spawn(self._catch_up(sub, end))
        elif handed:
            ctx.metrics.delivered.labels(sub.tenant).inc(handed)
        if info.cached and not info.finished:
            ctx.runs.watch(sub.tenant, sub.run_id, opened_at, self._finished)
        try:
            # A run that ended at once (all its events and end in the first
            # write) still has its acks read, for the grace.
            if not sub.over or (sub.failure is None and sub.done):
                self._reading = True
                if sub.over:
                    self._over()
                await self._read(sub)
        except asyncio.CancelledError:
            if not self._interrupted:
                raise
            reader.uncancel()
        finally:
            self._reading = False
            if self._grace is not None:
                self._grace.cancel()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if sub.failure is not None:
            if sub.failure.code == CloseCode.TOO_SLOW:
                ctx.metrics.slow_closes.labels(sub.tenant).inc()
            raise sub.failure
        if self._error is not None:
            raise self._error

    def _over(self) -> None:
        """The subscriber is over: stop reading, at once if it failed, else
        (``end`` is out) once the client has acked all it was sent, or after
        a short grace for acks still on their way."""
        sub = self.sub
        if (
            sub is None
            or sub.failure is not None
            or not self._reading
            or self._acked >= sub.sent_max
        ):
            self._interrupt()
        elif self._grace is None:
            self._grace = asyncio.get_running_loop().call_later(_END_GRACE_SECONDS, self._interrupt)

    def _session_expired(self) -> None:
        if self._error is None:
            self._error = StreamClosed(CloseCode.TOKEN_EXPIRED, "resume session expired")
        self._interrupt()

    async def settle_acks(self) -> None:
        """Write this socket's last ack to Redis now (close, end)."""
        if self.claims is None:
            return
        acks = self.ctx.acks
        acks.forget(self.claims.sid)
        if acks.pending(self.claims.sid):
            try:
                async with asyncio.timeout(_SETTLE_SECONDS):
                    await acks.settle(self.claims.sid)
            except Exception as exc:  # the ledger's writer keeps it and retries
                log.warning(
                    "last ack of a %s socket not written yet (%s)", self.run_id, type(exc).__name__
                )

    def _interrupt(self) -> None:
        """Stop the read of acks (the socket's own task), if it is reading."""
        if self._reading and not self._interrupted and self._reader is not None:
            self._interrupted = True
            self._reader.cancel()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self._error is None:
            # A writer that lost its socket, or a bug: end the socket with it.
            self._error = task.exception()
            self._interrupt()

    def _start_writer(self) -> None:
        if self._writer is None and self.sub is not None and not self.sub.over:
            self._writer = self._spawn(self._write(self.sub))

    def _finished(self, info: RunInfo) -> None:
        """The directory found the run finished after this socket opened."""
        if self.sub is not None and not self.sub.over:
            self._spawn(self._end_when_out(self.sub, info.state))

    def release(self) -> None:
        self.opening.release()

    async def _catch_up(self, sub: Subscriber, end: int) -> None:
        ctx = self.ctx
        topic = ctx.hub.topic(sub.tenant)
        try:
            async with PartitionReader(
                ctx.kafka,
                topic,
                sub.partition,
                sub.run_id,
                request_timeout_ms=ctx.kafka.request_timeout_ms,
                slots=ctx.replay_slots,
            ) as reader:
                await catch_up(
                    sub,
                    reader,
                    partial(ctx.hub.offsets.end, topic, sub.partition),
                    ctx.metrics,
                    stall_seconds=ctx.stall_seconds,
                    first_end=end,
                )
        except StreamClosed as exc:
            sub.fail(exc)
        except Exception:
            log.exception("catch-up of %s failed", sub.run_id)
            sub.fail(StreamClosed(CloseCode.INTERNAL_ERROR, "catch-up failed; resume"))

    async def _end_when_out(self, sub: Subscriber, state: str) -> None:
        """End ``sub`` once the records written before its run finished are out."""
        if self.tail is None:
            return
        try:
            end = await self.ctx.hub.offsets.end(self.tail.topic, sub.partition)
        except Exception as exc:  # Kafka trouble: the next socket asks again
            log.warning("cannot end the stream of finished run %s: %s", sub.run_id, exc)
            return
        self.tail.finish_at(sub, end, state)

    async def _write(self, sub: Subscriber) -> None:
        """Send what the subscriber queued (frames that found the socket busy),
        then stop: the subscriber starts another writer when frames queue
        again (``on_queued``)."""
        metrics = self.ctx.metrics
        write_seconds = metrics.write_seconds.labels(sub.tenant)
        delivered = metrics.delivered.labels(sub.tenant)
        sink = self.sink
        try:
            await self._drain(sub, sink, write_seconds, delivered)
        finally:
            # Before any other task runs: a frame queued from now on finds no
            # writer and starts one.
            if self._writer is asyncio.current_task():
                self._writer = None

    async def _drain(
        self,
        sub: Subscriber,
        sink: FrameSink | None,
        write_seconds: Histogram,
        delivered: Counter,
    ) -> None:
        while sub.depth and not sub.done:
            await sub.readable()
            began = time.perf_counter()
            if sink is None:
                frame = sub.pop()
                await self.ws.send({"type": "websocket.send", "text": frame.text})
                sub.sent(frame)
                write_seconds.observe(time.perf_counter() - began)
                delivered.inc(frame.offset >= 0)
                continue
            await sink.drained()
            if not sink.writable:
                raise WebSocketDisconnect(1006)  # drained because it closed
            # Nothing awaits from here to the last write: the tail writes
            # directly only to a socket with an empty queue, so frames it
            # offers meanwhile queue up behind these, in order.
            flushing = time.perf_counter()
            sent = events = 0
            while sub.depth and sink.writable:
                frame = sub.pop()
                if not sink.write(frame.wire):
                    raise WebSocketDisconnect(1006)
                sub.sent(frame)
                sent += 1
                events += frame.offset >= 0
                if time.perf_counter() - flushing > _WRITE_SLICE_SECONDS:
                    break
            if sent:
                # One observation per batch: the wait for the socket to drain
                # and the writes (a queued frame's cost is mostly the wait).
                write_seconds.observe(time.perf_counter() - began)
                delivered.inc(events)
            # A long queue must not keep the loop from every other socket.
            await asyncio.sleep(0)

    async def _read(self, sub: Subscriber) -> None:
        ctx = self.ctx
        limit = ctx.gateway.max_frame_bytes
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                if len(message.get("bytes") or b"") > limit:
                    raise _too_big(limit)
                raise StreamClosed(CloseCode.BAD_FRAME, "frames must be JSON text")
            if len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit):
                raise _too_big(limit)
            cursor = parse_ack(text)
            if cursor.partition != sub.partition or cursor.offset > sub.sent_max:
                raise StreamClosed(CloseCode.BAD_FRAME, f"ack for a cursor never sent: {cursor}")
            assert self.claims is not None
            if cursor.offset > self._acked:
                self._acked = cursor.offset
                ctx.acks.record(self.claims.sid, cursor.offset + 1, self._session_expired)
            if sub.done and self._acked >= sub.sent_max:
                return  # after end, with everything acked: nothing more to read
            if ctx.signer.due_for_refresh(self.claims):
                text, self.claims = ctx.signer.issue(sub.tenant, sub.run_id, self.claims.sid)
                sub.push_control(token_frame(text))


def _too_big(limit: int) -> StreamClosed:
    return StreamClosed(CloseCode.MESSAGE_TOO_BIG, f"frames are at most {limit} bytes")
