"""One stream socket, from handshake to close.

Opening: authenticate, check the resume token and its session, ask the run
directory, register with the tenant's live tail, fix the first offset, then
send the token frame first. Running: the socket's own task reads acks from
the client and records them in the gateway's :class:`AckLedger` (never
waiting for Redis), a catch-up task runs while there is something to replay,
and a writer while frames are queued (``subscriber.py``); the client leaving,
the subscriber failing, or a task failing ends the socket and cancels the
rest. After ``end`` the socket keeps reading acks for a short grace (until
the client has acked everything sent, leaves, or the grace is over), so a
client reconnecting to a finished run does not start over. Every refusal is
a :class:`StreamClosed`, turned into an ``error`` frame and a close code in
one place (:func:`serve`); a dependency that is away (Temporal, Kafka,
Redis) is a 1013 with a retry hint and a warning, not a 1011 and a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client import Counter, Histogram
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from gateway.cursor import Cursor, CursorError
from gateway.outages import KafkaUnavailable, dependency_down
from gateway.server.sink import FrameSink, sink_of
from gateway.server.wire import wire_text
from tidings.errors import CloseCode
from tidings.settings import GatewaySettings, KafkaSettings

from .acks import AckLedger
from .directory import CachedRunDirectory, RunInfo
from .errors import StreamClosed, Unavailable, try_again_later
from .frames import error_frame, parse_ack, token_frame
from .hub import TailHub
from .metrics import StreamMetrics
from .replay import PartitionReader, catch_up
from .sessions import Session, SessionStore
from .subscriber import Subscriber
from .tail import TenantTail
from .tokens import Claims, TokenSigner, new_session_id

if TYPE_CHECKING:
    from gateway.access import AccessControl

log = logging.getLogger(__name__)
T = TypeVar("T")

# Events are stamped by the emitter's clock; seek a little before the run's
# start so clock skew between hosts cannot hide its first events.
_CLOCK_SKEW_MS = 60_000
_CLOSE_TIMEOUT = 10.0
# After ``end``, how long acks still in flight are read before the close.
_END_GRACE_SECONDS = 1.0
# A Kafka that does not answer an offset lookup within this is taken as
# away: the socket is refused with 1013 rather than held for the client's
# request timeout.
_KAFKA_ANSWER_SECONDS = 5.0
# Writing a session's last ack on close waits at most this for Redis (the
# ack stays with the ledger's writer if Redis is slower).
_SETTLE_SECONDS = 2.0
# A send the kernel accepts at once never suspends, so a writer with a long
# queue would keep the event loop until its queue is empty while every other
# socket (other tenants' too) waits: a writer yields after this long.
_WRITE_SLICE_SECONDS = 0.0005


@dataclass
class StreamContext:
    gateway: GatewaySettings
    kafka: KafkaSettings
    authenticate: Callable[[str], str | None]
    signer: TokenSigner
    sessions: SessionStore
    runs: CachedRunDirectory
    hub: TailHub
    metrics: StreamMetrics
    replay_slots: asyncio.Semaphore
    subscribers: set[Subscriber]
    stall_seconds: float
    acks: AckLedger
    # How long a socket closed with an error frame (4408 ...) has to read it
    # and answer the close before its connection is aborted.
    close_linger_seconds: float = _CLOSE_TIMEOUT
    # TIDINGS_TENANTS_MAX_SOCKETS: sockets per tenant on this gateway, counted
    # from authentication to release (handshakes in progress included).
    max_sockets: int = 10_000
    open_sockets: dict[str, int] = field(default_factory=dict)
    # Read tokens as well as API keys (gateway/access.py); None: API keys only.
    access: AccessControl | None = None


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
            async with asyncio.timeout(_CLOSE_TIMEOUT):
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
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await ws.close(int(CloseCode.NORMAL))


class StreamSocket:
    def __init__(
        self, ws: WebSocket, run_id: str, ctx: StreamContext, sink: FrameSink | None = None
    ) -> None:
        self.ws = ws
        self.run_id = run_id
        self.ctx = ctx
        self.sink = sink
        self.sub: Subscriber | None = None
        self.tail: TenantTail | None = None
        self.claims: Claims | None = None
        self.admitted: str | None = None  # the tenant whose socket count this one holds
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
        sub, info, end, token = await self._open()
        reader = self._reader = asyncio.current_task()
        assert reader is not None and self.tail is not None
        sub.on_over = self._over
        sub.on_queued = self._start_writer
        await self.ws.accept()
        # The 101, the token and, when nothing needs reading, caught_up: one write.
        cork = self.tail.cork
        cork.open = True
        try:
            sub.push_control(token_frame(token))
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
        if self.admitted is not None:
            left = self.ctx.open_sockets.get(self.admitted, 0) - 1
            if left > 0:
                self.ctx.open_sockets[self.admitted] = left
            else:
                self.ctx.open_sockets.pop(self.admitted, None)
            self.admitted = None
        if self.sub is not None:
            self.sub.fail(StreamClosed(CloseCode.NORMAL, "closed"))
            self.ctx.subscribers.discard(self.sub)
            if self.tail is not None:
                self.tail.remove(self.sub)

    async def _open(self) -> tuple[Subscriber, RunInfo, int, str]:
        """The subscriber, its run, its partition's end offset sampled after
        it registered with the tail, and its resume token."""
        ctx = self.ctx
        tenant = await self._authenticate()
        self._admit(tenant)
        token = self.ws.query_params.get("resume")
        start = self.ws.query_params.get("from")
        if token is not None and start is not None:
            raise StreamClosed(CloseCode.BAD_FRAME, "use either resume= or from=, not both")
        after: Cursor | None = None
        if start not in (None, "start", "now"):
            # (extension) from=<cursor>: re-watch a run from any position of its log.
            try:
                after = Cursor.decode(start)
            except CursorError:
                raise StreamClosed(
                    CloseCode.BAD_FRAME, "from= must be 'start', 'now' or a cursor of this run"
                ) from None
        session: Session | None = None
        if token is not None:
            claims = ctx.signer.verify(token)
            if claims.tenant != tenant:
                raise StreamClosed(CloseCode.FORBIDDEN, "resume token of another tenant")
            if claims.run_id != self.run_id:
                raise StreamClosed(CloseCode.FORBIDDEN, "resume token of another run")
            if ctx.acks.pending(claims.sid):
                # Its last socket's acks first: a resume starts right after them.
                await ctx.acks.settle(claims.sid)
            session = await ctx.sessions.load(claims.sid)
            if session is None:
                raise StreamClosed(CloseCode.TOKEN_EXPIRED, "resume session expired")
        info = await ctx.runs.lookup(tenant, self.run_id)
        if info is None:
            raise StreamClosed(CloseCode.UNKNOWN_RUN, f"unknown run {self.run_id[:64]}")
        self.tail = tail = await ctx.hub.tail(tenant)
        partition = session.partition if session else ctx.hub.partition_for(tail, self.run_id)
        self.sub = sub = Subscriber(
            tenant,
            self.run_id,
            partition,
            max_events=ctx.gateway.send_queue_max_events,
            max_bytes=ctx.gateway.send_queue_max_bytes,
            final_state=info.state if info.finished else None,
            watermarks=tail.watermarks,
            sink=self.sink,
            cork=tail.cork,
        )
        # Registered before any offset is sampled: see the hand-over proof in replay.py.
        tail.add(sub)
        ctx.subscribers.add(sub)
        if start == "now" and session is None:
            # Live only: the retention start is of no use, so it is not asked.
            end = await _kafka(ctx.hub.offsets.end(tail.topic, partition))
            earliest = end
        else:
            earliest, end = await _kafka(ctx.hub.offsets.bounds(tail.topic, partition))
        if session is not None:
            sub.next_offset = session.next_offset
            if session.next_offset < earliest:
                raise StreamClosed(
                    CloseCode.TOKEN_EXPIRED,
                    "events after your cursor are past Kafka retention; subscribe with from=start",
                )
            sid = session.sid
            await ctx.sessions.touch(sid)
            ctx.metrics.resumes.labels(tenant).inc()
        elif after is not None:
            sub.next_offset = _after_cursor(after, partition, earliest, end)
            sid = new_session_id()
            await ctx.sessions.create(Session(sid, tenant, self.run_id, partition, sub.next_offset))
        else:
            sub.next_offset = await self._first_offset(tail, info, partition, earliest, end, start)
            sid = new_session_id()
            await ctx.sessions.create(Session(sid, tenant, self.run_id, partition, sub.next_offset))
        text, self.claims = ctx.signer.issue(tenant, self.run_id, sid)
        return sub, info, end, text

    def _admit(self, tenant: str) -> None:
        """Hold one of the tenant's sockets on this gateway, or refuse with 1013."""
        count = self.ctx.open_sockets.get(tenant, 0)
        if count >= self.ctx.max_sockets:
            self.ctx.metrics.quota_refusals.labels(tenant).inc()
            raise try_again_later(self.ctx.max_sockets)
        self.ctx.open_sockets[tenant] = count + 1
        self.admitted = tenant

    async def _authenticate(self) -> str:
        header = self.ws.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        in_query = scheme.lower() != "bearer" or not key
        if in_query:
            key = self.ws.query_params.get("access_token", "")
        if self.ctx.access is not None:
            return await self.ctx.access.for_stream(key.strip(), self.run_id, in_query=in_query)
        tenant = self.ctx.authenticate(key.strip()) if key else None
        if tenant is None:
            raise StreamClosed(CloseCode.UNAUTHORIZED, "missing or invalid API key")
        return tenant

    async def _first_offset(
        self,
        tail: TenantTail,
        info: RunInfo,
        partition: int,
        earliest: int,
        end: int,
        start: str | None,
    ) -> int:
        # No resume= and no from= means from the start: late subscribers missing
        # a run's first events is the top complaint about realtime streams.
        if start == "now":
            return end
        if info.started_at is None:
            return earliest
        since = int(info.started_at.timestamp() * 1000) - _CLOCK_SKEW_MS
        found = await _kafka(self.ctx.hub.offsets.first_at_or_after(tail.topic, partition, since))
        return end if found is None else max(found, earliest)

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


def _after_cursor(after: Cursor, partition: int, earliest: int, end: int) -> int:
    """The first offset of a ``from=<cursor>`` stream: the event after ``after``."""
    if after.partition != partition or after.offset >= end:
        # Another run's partition, or a position the log never had.
        raise StreamClosed(CloseCode.BAD_FRAME, f"not a cursor of this run: {after}")
    if after.offset + 1 < earliest:
        raise StreamClosed(
            CloseCode.TOKEN_EXPIRED,
            "events after your cursor are past Kafka retention; subscribe with from=start",
        )
    return after.offset + 1


async def _kafka(answer: Coroutine[Any, Any, T]) -> T:
    """``answer``, or :class:`KafkaUnavailable` once Kafka has not answered
    for :data:`_KAFKA_ANSWER_SECONDS` (the lookups are batched and shielded:
    giving up here cancels nobody else's)."""
    try:
        async with asyncio.timeout(_KAFKA_ANSWER_SECONDS):
            return await answer
    except TimeoutError:
        raise KafkaUnavailable(f"no answer within {_KAFKA_ANSWER_SECONDS:g} s") from None


def _too_big(limit: int) -> StreamClosed:
    return StreamClosed(CloseCode.MESSAGE_TOO_BIG, f"frames are at most {limit} bytes")
