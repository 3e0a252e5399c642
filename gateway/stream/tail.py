"""The live tail: one Kafka consumer per tenant topic per gateway, shared by
every socket of that tenant.

The consumer has no group: it is assigned every partition of the topic and
starts at the end, because a gateway keeps no state of its own; sockets that
need older records read them through :mod:`replay`. For each run in a fetched
batch the tail looks up the sockets following it (the record key), builds
each record's frame once, and offers the same frames to each socket in turn,
each record inside one ``ws.fanout`` span that continues its trace (its
``traceparent`` header; see ``tracing.py``, one span per record, not per
socket). A tail with no sockets for a while stops itself, so idle tenants
cost nothing.

Backpressure: every byte queued for the tail's sockets is counted on its
:class:`~gateway.stream.watermarks.Watermarks`. Past the high mark the tail
pauses all its partitions and dispatches nothing more until the sockets have
drained to the low mark, then resumes. Records fetched but not yet dispatched
wait in the tail (one fetch at most), and the mark is checked before every
frame offered, so the sum never exceeds the high mark by more than one frame.
A socket whose queue does not move for ``stall_seconds`` while the tail is
paused is closed with 4408, so sockets that stopped reading cannot hold the
tenant's stream paused. Individual slow
sockets are still cut by their own queue bound (``subscriber.py``).

Lag: about once a second (in the background, never holding up dispatch) the
tail publishes how far behind it is (``gateway.lag``): broker end offsets,
asked on the hub's offsets connection, minus the tail's positions. This stays
true while the tail is paused, which is when producers need to hear it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Generator, Iterator

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from opentelemetry.trace import Span

from gateway.kafka import KafkaFactory
from gateway.lag import LagPublisher
from tidings.errors import CloseCode
from tidings.events import EnvelopeError
from tidings.kafka_log import committed_reader
from tidings.settings import KafkaSettings

from .cork import Cork
from .errors import StreamClosed, too_slow
from .frames import Frame, event_frame
from .metrics import StreamMetrics
from .subscriber import Subscriber
from .tracing import FanoutSpans
from .watermarks import Watermarks

log = logging.getLogger(__name__)

EndOffsets = Callable[[list[TopicPartition]], Awaitable[dict[TopicPartition, int]]]
TopicPartitions = Callable[[str], Awaitable[list[int] | None]]

# Dispatch time between two yields to the event loop: a fetched batch of
# 2,000 records must not keep every socket writer, and every other tenant's
# tail, waiting until all of it is queued.
_DISPATCH_SLICE_SECONDS = 0.0005
# How often a paused tail wakes to publish its lag and look for stalled sockets.
_HOLD_WAKEUP_SECONDS = 1.0
_LAG_CLOSE_SECONDS = 2.0


class _Step(enum.Enum):
    YIELD = "yield"  # the slice is over: flush and let the loop run
    HOLD = "hold"  # the buffers are past the high mark: flush and pause


def _by_run(
    records: list[ConsumerRecord[bytes, bytes]],
) -> Iterator[tuple[bytes, list[ConsumerRecord[bytes, bytes]]]]:
    """A partition's fetched records by run (key), each run's in log order."""
    runs: dict[bytes, list[ConsumerRecord[bytes, bytes]]] = {}
    for record in records:
        if record.key is not None:
            runs.setdefault(record.key, []).append(record)
    return iter(runs.items())


class TailPositions:
    """What :func:`gateway.lag.measure` asks of a tail: log ends from the broker
    through ``end_offsets`` (the hub's offsets consumer; the tail's own
    connection would answer only after its long poll) and positions from the
    tail's consumer, which knows them locally."""

    def __init__(self, consumer: AIOKafkaConsumer, end_offsets: EndOffsets | None) -> None:
        self._consumer = consumer
        self._end_offsets = end_offsets
        self.ends: dict[TopicPartition, int] | None = None

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        if self._end_offsets is not None:
            ends = await self._end_offsets(partitions)
        else:
            ends = {tp: int(o) for tp, o in (await self._consumer.end_offsets(partitions)).items()}
        self.ends = ends
        return ends

    async def position(self, partition: TopicPartition) -> int:
        return int(await self._consumer.position(partition))


class TenantTail:
    def __init__(
        self,
        tenant: str,
        topic: str,
        kafka: KafkaSettings,
        metrics: StreamMetrics,
        *,
        idle_seconds: float,
        request_timeout_ms: int,
        watermarks: Watermarks | None = None,
        lag: LagPublisher | None = None,
        end_offsets: EndOffsets | None = None,
        partitions: TopicPartitions | None = None,
        stall_seconds: float = 30.0,
    ) -> None:
        """``partitions``: finds a topic's partition ids (None if it does not
        exist); the hub shares one metadata client among its tails."""
        self.tenant = tenant
        self.topic = topic
        self.partitions: list[int] = []
        self._find_partitions = partitions
        self._kafka = kafka
        self.closing = False
        # Without marks of its own a tail never pauses (the limits are far away).
        self.watermarks = watermarks if watermarks is not None else Watermarks(1 << 62, 1 << 61)
        self._subs: dict[str, set[Subscriber]] = {}
        self._metrics = metrics
        self._idle_seconds = idle_seconds
        self._idle_since = time.monotonic()
        self._stall_seconds = stall_seconds
        self._task: asyncio.Task[None] | None = None
        self._tps: list[TopicPartition] = []
        self._lag = lag
        self._lag_task: asyncio.Task[None] | None = None
        self._consumer = committed_reader(
            kafka, auto_offset_reset="latest", request_timeout_ms=request_timeout_ms
        )
        self._positions = TailPositions(self._consumer, end_offsets)
        self._spans = FanoutSpans(tenant)
        self._delivered = metrics.delivered.labels(tenant)
        self._write_seconds = metrics.write_seconds.labels(tenant)
        self._emit_to_socket = metrics.emit_to_socket.labels(tenant)
        # Subscribers of this tail hold their direct writes while it dispatches.
        self.cork = Cork()
        self._slice_sent = 0
        self._slice_began = 0.0
        # Per partition: the next offset to dispatch, and sockets to end once
        # it reaches a given offset (finish_at).
        self._next: dict[int, int] = {}
        self._endings: dict[int, list[tuple[int, Subscriber, str]]] = {}

    async def start(self) -> None:
        try:
            # Inside: a consumer that failed to bootstrap (Kafka away) is still
            # stopped, not left to the collector's "Unclosed AIOKafkaConsumer".
            await self._consumer.start()
            partitions = await self._partitions()
            if not partitions:
                raise StreamClosed(
                    CloseCode.INTERNAL_ERROR, "the tenant's event topic does not exist yet"
                )
            self.partitions = sorted(partitions)
            self._tps = tps = [TopicPartition(self.topic, p) for p in self.partitions]
            self._consumer.assign(tps)
            await self._consumer.seek_to_end(*tps)
            # Resolve positions now: the hand-over proof in replay.py needs the
            # tail's position fixed before any socket samples the end offset.
            for tp in tps:
                self._next[tp.partition] = int(await self._consumer.position(tp))
        except BaseException:
            await self._consumer.stop()
            raise
        self._task = asyncio.create_task(self._run(), name=f"stream-tail-{self.tenant}")

    async def _partitions(self) -> list[int] | None:
        # The consumer's own metadata only covers topics it already uses; a
        # metadata client's fresh fetch learns a topic's partitions up front.
        if self._find_partitions is not None:
            return await self._find_partitions(self.topic)
        metadata = KafkaFactory(self._kafka, client_id="tidings-gateway-tail")
        try:
            return await metadata.partitions(self.topic)
        finally:
            await metadata.close()

    async def stop(self, error: StreamClosed | None = None) -> None:
        self.closing = True
        for task in (self._task, self._lag_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._fail_all(error)
        self._metrics.paused_partitions.labels(self.tenant).set(0)
        if self._lag is not None:
            # This gateway no longer tails the tenant: it no longer lags.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_LAG_CLOSE_SECONDS):
                    await self._lag.close()
        await self._consumer.stop()

    def add(self, sub: Subscriber) -> None:
        self._subs.setdefault(sub.run_id, set()).add(sub)

    def remove(self, sub: Subscriber) -> None:
        endings = self._endings.get(sub.partition)
        if endings:
            self._endings[sub.partition] = [e for e in endings if e[1] is not sub]
        subs = self._subs.get(sub.run_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.run_id]
        if not self._subs:
            self._idle_since = time.monotonic()

    def finish_at(self, sub: Subscriber, offset: int, state: str) -> None:
        """End ``sub``'s run (``state``) once every record of its partition
        below ``offset`` has been offered to it: its last events may still be
        on their way through this tail when Temporal reports it finished."""
        if self._next.get(sub.partition, 0) >= offset:
            sub.finish(state)
        else:
            self._endings.setdefault(sub.partition, []).append((offset, sub, state))

    @property
    def idle(self) -> bool:
        return not self._subs and time.monotonic() - self._idle_since > self._idle_seconds

    @property
    def paused(self) -> bool:
        return bool(self._consumer.paused())

    async def _run(self) -> None:
        try:
            while not self.closing:
                if self.watermarks.over:
                    await self._hold()
                    continue
                batches = await self._consumer.getmany(timeout_ms=500, max_records=2000)
                self._open_slice()
                for tp, records in batches.items():
                    if records:
                        # Until they reach their sockets, the batch's records
                        # are behind too; scrapes run between dispatch slices.
                        self._report_lag(tp, records[0].offset)
                    for run_key, group in _by_run(records):
                        with contextlib.closing(
                            self._fan_out(tp.partition, run_key, group)
                        ) as steps:
                            for step in steps:
                                self._close_slice()
                                if step is _Step.HOLD:
                                    await self._hold()
                                    if self.closing:
                                        return
                                else:
                                    await asyncio.sleep(0)
                                self._open_slice()
                    if records:
                        self._advanced(tp.partition, records[-1].offset + 1)
                        self._report_lag(tp, records[-1].offset + 1)
                self._close_slice()
                self._tick_lag()
                if self.idle:
                    self.closing = True
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("live tail of %s failed", self.topic)
            self.closing = True
            self._fail_all(
                StreamClosed(CloseCode.INTERNAL_ERROR, "gateway lost its event feed; resume")
            )
        finally:
            self.cork.flush()  # never leave writes held (a dispatch may have raised)

    async def _hold(self) -> None:
        """Pause every partition until the sockets have drained to the low mark."""
        tps = self._tps
        self._consumer.pause(*tps)
        self._metrics.paused_partitions.labels(self.tenant).set(len(tps))
        self._metrics.pauses.labels(self.tenant).inc()
        log.debug("tail of %s paused: %d bytes queued", self.topic, self.watermarks.bytes)
        held_since = time.monotonic()
        # A pause is when the tenant falls behind: tell admission now.
        self._tick_lag(now_due=True)
        try:
            while not await self.watermarks.drained(_HOLD_WAKEUP_SECONDS):
                self._tick_lag()
                self._cut_stalled(held_since)
                if self.closing:
                    return
        finally:
            # Records the consumer had prefetched for a paused partition are
            # dropped and fetched again: its position never moved past them.
            self._consumer.resume(*tps)
            self._metrics.paused_partitions.labels(self.tenant).set(0)

    def _cut_stalled(self, held_since: float) -> None:
        now = time.monotonic()
        if now - held_since < self._stall_seconds:
            return
        for subs in list(self._subs.values()):
            for sub in list(subs):
                if sub.queued_bytes and now - sub.last_drain > self._stall_seconds:
                    sub.fail(too_slow())

    def _open_slice(self) -> None:
        self.cork.open = True
        self._slice_began = time.perf_counter()

    def _close_slice(self) -> None:
        """Send what the slice held; must run before the tail awaits anything."""
        self.cork.flush()
        if self._slice_sent:
            # One observation per slice: the mean cost of a direct write
            # (queued frames are timed by their writers, waits included).
            spent = time.perf_counter() - self._slice_began
            self._write_seconds.observe(spent / self._slice_sent)
            self._delivered.inc(self._slice_sent)
            self._slice_sent = 0

    def _advanced(self, partition: int, next_offset: int) -> None:
        self._next[partition] = next_offset
        endings = self._endings.get(partition)
        if endings:
            due = [e for e in endings if e[0] <= next_offset]
            if due:
                self._endings[partition] = [e for e in endings if e[0] > next_offset]
                for _, sub, state in due:
                    sub.finish(state)

    def _fan_out(
        self, partition: int, key: bytes, records: list[ConsumerRecord[bytes, bytes]]
    ) -> Generator[_Step, None, None]:
        """Offer one run's records of a fetch to its sockets.

        First socket by socket: each socket that takes frames straight to its
        transport gets all of its frames of this fetch in one go, written with
        one system call (``Subscriber.write_live``), where record by record a
        thousand sockets on a run would take longer than a slice for each
        record and get a call for every frame. A socket stops there at its
        first frame that had to queue (or that it buffers, catching up); the
        rest of the frames go to those sockets record by record, so that slow
        sockets' queues grow together and the tenant's buffers, not one
        socket's queue, reach their limit first: the tail pauses rather than
        cut a socket.

        Yields when the slice is over (the caller flushes and lets the loop
        run) or when the tenant's buffers passed the high mark (the caller
        pauses until they drain); checked before every frame offered, so they
        pass it by one frame at most. Frames written straight to a transport
        are not counted there (the transport's high-water mark bounds them),
        so the fast path needs no check.
        """
        try:
            run_id = key.decode()
        except UnicodeDecodeError:
            return  # no socket follows a run whose id is not text
        subs = self._subs.get(run_id)
        if not subs:
            return
        frames: list[Frame] = []
        spans: list[Span] = []
        stamps: list[int] = []  # the records' Kafka timestamps (ms)
        for record in records:
            if record.value is None:
                continue
            try:
                frames.append(event_frame(partition, record.offset, record.value, run_id))
            except EnvelopeError as exc:
                self._metrics.bad_records.labels(self.tenant).inc()
                log.warning("skipping unreadable record %s@%s: %s", self.topic, record.offset, exc)
                continue
            # One span per record, not per socket (a span each would cost
            # per-socket CPU); likewise the metrics, once per slice.
            spans.append(self._spans.start(record.headers, run_id, len(subs)))
            stamps.append(record.timestamp)
        try:
            behind: list[tuple[Subscriber, int]] = []  # (socket, its next frame)
            count = len(frames)
            for sub in tuple(subs):
                written = sub.write_live(frames)
                self._slice_sent += written
                for index in range(written, count):
                    if self.watermarks.over:
                        yield _Step.HOLD
                    if not sub.offer(frames[index]):
                        # Queued, buffered, dropped or refused: the rest in turn.
                        if index + 1 < count:
                            behind.append((sub, index + 1))
                        break
                    self._slice_sent += 1
                if time.perf_counter() - self._slice_began > _DISPATCH_SLICE_SECONDS:
                    yield _Step.YIELD
            for index, frame in enumerate(frames):
                for sub, start in behind:
                    if start <= index:
                        if self.watermarks.over:
                            yield _Step.HOLD
                        self._slice_sent += sub.offer(frame)
                if time.perf_counter() - self._slice_began > _DISPATCH_SLICE_SECONDS:
                    yield _Step.YIELD
            handed = time.time()
            for stamp in stamps:
                self._emit_to_socket.observe(max(0.0, handed - stamp / 1000))
        finally:
            for span in spans:
                span.end()

    def _report_lag(self, tp: TopicPartition, position: int) -> None:
        highwater = self._consumer.highwater(tp)
        if highwater is not None:
            lag = max(0, highwater - position)
            self._metrics.consumer_lag.labels(self.tenant, str(tp.partition)).set(lag)

    def _tick_lag(self, *, now_due: bool = False) -> None:
        """Publish the lag in the background (the publisher keeps to once a
        second, unless ``now_due``)."""
        if self._lag is None or (self._lag_task is not None and not self._lag_task.done()):
            return
        self._lag_task = asyncio.create_task(self._publish_lag(self._lag, now_due))

    async def _publish_lag(self, lag: LagPublisher, now_due: bool) -> None:
        self._positions.ends = None
        try:
            await lag.tick(self._positions, self._tps, now_due=now_due)
            ends = self._positions.ends
            if ends is None:
                return  # not due yet
            # The per-partition gauge from broker end offsets: unlike the fetch
            # high-water mark it keeps moving while the partition is paused.
            for tp in self._tps:
                behind = max(0, ends.get(tp, 0) - await self._consumer.position(tp))
                self._metrics.consumer_lag.labels(self.tenant, str(tp.partition)).set(behind)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis or Kafka trouble: lag is advisory
            log.warning("cannot publish the lag of %s: %s", self.topic, exc)

    def _fail_all(self, error: StreamClosed | None) -> None:
        self._endings.clear()
        for subs in list(self._subs.values()):
            for sub in list(subs):
                if error is not None:
                    sub.fail(error)
