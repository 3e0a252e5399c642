"""Live tails by tenant: started on a tenant's first socket, reaped when idle.

Each tail gets its tenant's buffer marks, and a :class:`gateway.lag.LagPublisher`
that writes its lag under this gateway's id (``gateway.lag.gateway_id`` of
the port it serves, passed down from the settings).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from aiokafka import AIOKafkaConsumer, TopicPartition

from gateway.kafka import KafkaFactory
from gateway.lag import HashWriter, LagPublisher
from tidings.kafka_log import committed_reader, partition_for, started
from tidings.settings import KafkaSettings
from tidings.topics import events_topic

from .batching import Batcher
from .errors import StreamClosed
from .metrics import StreamMetrics
from .tail import TenantTail
from .watermarks import Watermarks


class Offsets:
    """Offset lookups (ends, retention start, by time) on a consumer of their own.

    A broker answers one connection's requests in order, so asking the tail's
    consumer would queue behind its long-polling fetch (up to 500 ms).

    Retention starts and ends are asked in batches (``batching.py``): a burst
    of N sockets costs one ListOffsets request per kind and loop turn instead
    of N round trips queued on one connection. Each request goes out after its
    callers asked, and so after they registered with the tail: the hand-over
    proof in replay.py holds for every one of them.
    """

    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka
        # Built on first use: aiokafka needs a running loop, and the service
        # is constructed by a synchronous create_app.
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        self._earliest: Batcher[TopicPartition, int] = Batcher(self._beginnings)
        self._ends: Batcher[TopicPartition, int] = Batcher(self.ends)

    async def _ready(self) -> AIOKafkaConsumer:
        async with self._lock:
            if self._consumer is None:
                # Its end offsets are the last stable offset: what the readers can reach.
                consumer = await started(
                    committed_reader(self._kafka, request_timeout_ms=self._kafka.request_timeout_ms)
                )
                self._consumer = consumer
        return self._consumer

    async def bounds(self, topic: str, partition: int) -> tuple[int, int]:
        """(earliest retained offset, end offset) of one partition."""
        tp = TopicPartition(topic, partition)
        earliest, end = await asyncio.gather(self._earliest.ask(tp), self._ends.ask(tp))
        return earliest, end

    async def end(self, topic: str, partition: int) -> int:
        return await self._ends.ask(TopicPartition(topic, partition))

    async def ends(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        """End offsets of several partitions in one request (a tail's lag)."""
        consumer = await self._ready()
        return {tp: int(o) for tp, o in (await consumer.end_offsets(partitions)).items()}

    async def _beginnings(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        consumer = await self._ready()
        found = await consumer.beginning_offsets(partitions)
        return {tp: int(o) for tp, o in found.items()}

    async def first_at_or_after(self, topic: str, partition: int, timestamp_ms: int) -> int | None:
        consumer, tp = await self._ready(), TopicPartition(topic, partition)
        found = (await consumer.offsets_for_times({tp: timestamp_ms})).get(tp)
        return None if found is None else int(found.offset)

    async def stop(self) -> None:
        await asyncio.gather(self._earliest.close(), self._ends.close())
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()


class TailHub:
    def __init__(
        self,
        kafka: KafkaSettings,
        metrics: StreamMetrics,
        *,
        idle_seconds: float = 60.0,
        buffer_high_bytes: int = 64 << 20,
        buffer_low_bytes: int = 32 << 20,
        stall_seconds: float = 30.0,
        lag_redis: HashWriter | None = None,
        gateway_id: str = "",
    ) -> None:
        """``lag_redis``: where tails publish their lag (None: they do not), in
        the field ``gateway_id``."""
        self._kafka = kafka
        self._metrics = metrics
        self._idle_seconds = idle_seconds
        self._marks = (buffer_high_bytes, buffer_low_bytes)
        self._stall_seconds = stall_seconds
        self._lag_redis = lag_redis
        self._gateway_id = gateway_id
        self._tails: dict[str, TenantTail] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self.offsets = Offsets(kafka)
        # One metadata client for all tails' partition lookups.
        self._metadata = KafkaFactory(kafka, client_id="tidings-gateway-tails")

    def topic(self, tenant: str) -> str:
        return events_topic(self._kafka.topic_prefix, tenant)

    async def tail(self, tenant: str) -> TenantTail:
        """The running tail of ``tenant``'s topic, started if need be."""
        async with self._locks.setdefault(tenant, asyncio.Lock()):
            tail = self._tails.get(tenant)
            if tail is not None and tail.closing:
                self._retire(tenant, tail)
                tail = None
            if tail is None:
                lag = None
                if self._lag_redis is not None:
                    lag = LagPublisher(
                        self._lag_redis, self._kafka.topic_prefix, tenant, self._gateway_id
                    )
                tail = TenantTail(
                    tenant,
                    self.topic(tenant),
                    self._kafka,
                    self._metrics,
                    idle_seconds=self._idle_seconds,
                    request_timeout_ms=self._kafka.request_timeout_ms,
                    watermarks=Watermarks(*self._marks),
                    lag=lag,
                    end_offsets=self.offsets.ends,
                    partitions=self._metadata.partitions,
                    stall_seconds=self._stall_seconds,
                )
                await tail.start()
                self._tails[tenant] = tail
            return tail

    def watermarks(self) -> Iterator[tuple[str, int, int]]:
        """(tenant, bytes buffered, peak) of every running tail, for the metrics."""
        for tenant, tail in list(self._tails.items()):
            yield tenant, tail.watermarks.bytes, tail.watermarks.peak

    def partition_for(self, tail: TenantTail, run_id: str) -> int:
        # The partition the emitter wrote this run's events to.
        return partition_for(run_id, tail.partitions)

    async def stop(self, error: StreamClosed | None = None) -> None:
        tails, self._tails = list(self._tails.values()), {}
        await asyncio.gather(*(tail.stop(error) for tail in tails), return_exceptions=True)
        await asyncio.gather(*self._stopping, return_exceptions=True)
        await self.offsets.stop()
        await self._metadata.close()

    def _retire(self, tenant: str, tail: TenantTail) -> None:
        self._tails.pop(tenant, None)
        task = asyncio.create_task(tail.stop())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def reap(self) -> None:
        """Stop tails that closed themselves (idle or failed)."""
        for tenant, tail in list(self._tails.items()):
            if tail.closing:
                with contextlib.suppress(Exception):
                    self._retire(tenant, tail)
