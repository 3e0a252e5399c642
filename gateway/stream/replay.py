"""Catch-up: read one run's partition from a socket's cursor up to the live tail.

Each catching-up socket gets a short-lived, group-less consumer assigned to the
run's partition (the count of concurrent readers is bounded by the service),
made on its first fetch: a socket that starts at the end of the log
(``from=now``, or a resume with nothing missed) never opens one, so a burst
of such sockets costs no Kafka connections. It reads at the client's pace:
records are queued with :meth:`Subscriber.put_paced`, which waits for room
instead of failing.

Hand-over to live without gap or duplicate: the socket registers with the
live tail *before* the end offset is sampled, so the tail's position is <= that
end offset and every record at or after it is buffered by the subscriber.
Reading up to the sample, then draining the buffer (dropping what is below
``next_offset``) covers each record exactly once. If the buffer overflowed
meanwhile, sample the end again and keep reading.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from types import TracebackType

from aiokafka import AIOKafkaConsumer, TopicPartition

from tidings.errors import CloseCode
from tidings.events import EnvelopeError
from tidings.kafka_log import committed_reader, started
from tidings.settings import KafkaSettings

from .errors import StreamClosed
from .frames import Frame, event_frame
from .metrics import StreamMetrics
from .subscriber import Subscriber

log = logging.getLogger(__name__)

_NO_PROGRESS_SECONDS = 30.0


class PartitionReader:
    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        partition: int,
        run_id: str,
        *,
        request_timeout_ms: int,
        slots: asyncio.Semaphore | None = None,
    ) -> None:
        """``slots`` bounds how many readers hold a consumer at once; one is
        taken on the first fetch and given back on exit."""
        self._tp = TopicPartition(topic, partition)
        self._run_key = run_id.encode()
        self._run_id = run_id
        self._position = -1
        self._kafka = kafka
        self._request_timeout_ms = request_timeout_ms
        self._consumer: AIOKafkaConsumer | None = None
        self._slots = slots
        self._holds_slot = False
        self.bad_records = 0

    async def __aenter__(self) -> PartitionReader:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        consumer, self._consumer = self._consumer, None
        try:
            if consumer is not None:
                await consumer.stop()
        finally:
            if self._holds_slot and self._slots is not None:
                self._holds_slot = False
                self._slots.release()

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            if self._slots is not None and not self._holds_slot:
                await self._slots.acquire()
                self._holds_slot = True
            consumer = committed_reader(
                self._kafka,
                auto_offset_reset="earliest",
                request_timeout_ms=self._request_timeout_ms,
                # Reads stop at a known offset; never long-poll for more.
                fetch_max_wait_ms=50,
            )
            await started(consumer)
            consumer.assign([self._tp])
            self._consumer = consumer
        return self._consumer

    async def frames(self, start: int, target: int) -> AsyncGenerator[Frame, None]:
        """The run's frames from ``start`` until the read position reaches ``target``."""
        if start >= target:
            return
        consumer = await self._started()
        if start != self._position:
            consumer.seek(self._tp, start)
            self._position = start
        progress_at = time.monotonic()
        while self._position < target:
            batch = await consumer.getmany(self._tp, timeout_ms=200, max_records=500)
            records = batch.get(self._tp, [])
            if records:
                progress_at = time.monotonic()
                self._position = records[-1].offset + 1
            else:
                # Offsets may have holes (compaction, transaction markers).
                self._position = await consumer.position(self._tp)
                if time.monotonic() - progress_at > _NO_PROGRESS_SECONDS:
                    raise StreamClosed(
                        CloseCode.INTERNAL_ERROR, "catch-up read stalled; resume with your token"
                    )
            for record in records:
                if record.key != self._run_key or record.value is None:
                    continue
                try:
                    yield event_frame(self._tp.partition, record.offset, record.value, self._run_id)
                except (EnvelopeError, UnicodeDecodeError) as exc:
                    self.bad_records += 1
                    log.warning(
                        "skipping unreadable record %s@%s: %s", self._tp, record.offset, exc
                    )


async def catch_up(
    sub: Subscriber,
    reader: PartitionReader,
    end: Callable[[], Awaitable[int]],
    metrics: StreamMetrics,
    *,
    stall_seconds: float,
    first_end: int | None = None,
) -> None:
    """Bring ``sub`` from its ``next_offset`` to live. ``first_end``: an end
    offset sampled after ``sub`` registered with the tail (the socket's open
    took one), which saves asking the broker again for the first read."""
    replayed = metrics.replayed.labels(sub.tenant)
    delivered = metrics.delivered.labels(sub.tenant)
    target = first_end
    while not sub.ended:
        if target is None:
            target = await end()
        async with aclosing(reader.frames(sub.next_offset, target)) as frames:
            async for frame in frames:
                if await sub.put_paced(frame, stall_seconds):
                    delivered.inc()
                replayed.inc()
                if sub.ended:
                    return
        target = None
        while not sub.ended:
            pending = sub.take_pending()
            if pending is None:
                break  # overflowed while we read: sample the end again
            if not pending:
                sub.go_live()
                return
            for frame in pending:
                if await sub.put_paced(frame, stall_seconds):
                    delivered.inc()
