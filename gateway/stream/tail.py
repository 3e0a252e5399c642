"""The live tail: one Kafka consumer per tenant topic per gateway, shared by
every socket of that tenant.

The consumer has no group: it is assigned every partition of the topic and
starts at the end, because a gateway keeps no state of its own; sockets that
need older records read them through :mod:`replay`. For each record the tail
looks up the sockets following its run (the record key), builds the frame
once, and offers the same string to each. A tail with no sockets for a while
stops itself, so idle tenants cost nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from tidings.errors import CloseCode
from tidings.events import EnvelopeError

from .errors import StreamClosed
from .frames import event_frame
from .metrics import StreamMetrics
from .subscriber import Subscriber

log = logging.getLogger(__name__)


class TenantTail:
    def __init__(
        self,
        tenant: str,
        topic: str,
        bootstrap: str,
        metrics: StreamMetrics,
        *,
        idle_seconds: float,
        request_timeout_ms: int,
    ) -> None:
        self.tenant = tenant
        self.topic = topic
        self.partitions: list[int] = []
        self.closing = False
        self._subs: dict[str, set[Subscriber]] = {}
        self._metrics = metrics
        self._idle_seconds = idle_seconds
        self._idle_since = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            request_timeout_ms=request_timeout_ms,
        )

    async def start(self) -> None:
        await self._consumer.start()
        try:
            # The consumer's own metadata only covers topics it already uses;
            # a fresh fetch is the way to learn a topic's partitions up front.
            cluster = await self._consumer._client.fetch_all_metadata()
            partitions = cluster.partitions_for_topic(self.topic)
            if not partitions:
                raise StreamClosed(
                    CloseCode.INTERNAL_ERROR, "the tenant's event topic does not exist yet"
                )
            self.partitions = sorted(partitions)
            tps = [TopicPartition(self.topic, p) for p in self.partitions]
            self._consumer.assign(tps)
            await self._consumer.seek_to_end(*tps)
            # Resolve positions now: the hand-over proof in replay.py needs the
            # tail's position fixed before any socket samples the end offset.
            for tp in tps:
                await self._consumer.position(tp)
        except BaseException:
            await self._consumer.stop()
            raise
        self._task = asyncio.create_task(self._run(), name=f"stream-tail-{self.tenant}")

    async def stop(self, error: StreamClosed | None = None) -> None:
        self.closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._fail_all(error)
        await self._consumer.stop()

    def add(self, sub: Subscriber) -> None:
        self._subs.setdefault(sub.run_id, set()).add(sub)

    def remove(self, sub: Subscriber) -> None:
        subs = self._subs.get(sub.run_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.run_id]
        if not self._subs:
            self._idle_since = time.monotonic()

    @property
    def idle(self) -> bool:
        return not self._subs and time.monotonic() - self._idle_since > self._idle_seconds

    async def _run(self) -> None:
        try:
            while not self.closing:
                batches = await self._consumer.getmany(timeout_ms=500, max_records=2000)
                for tp, records in batches.items():
                    for record in records:
                        self._dispatch(tp.partition, record)
                    if records:
                        self._report_lag(tp, records[-1].offset + 1)
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

    def _dispatch(self, partition: int, record: ConsumerRecord[bytes, bytes]) -> None:
        if record.key is None or record.value is None:
            return
        subs = self._subs.get(record.key.decode(errors="replace"))
        if not subs:
            return
        try:
            frame = event_frame(partition, record.offset, record.value, record.key.decode())
        except (EnvelopeError, UnicodeDecodeError) as exc:
            self._metrics.bad_records.labels(self.tenant).inc()
            log.warning("skipping unreadable record %s@%s: %s", self.topic, record.offset, exc)
            return
        for sub in list(subs):
            sub.offer(frame)

    def _report_lag(self, tp: TopicPartition, position: int) -> None:
        highwater = self._consumer.highwater(tp)
        if highwater is not None:
            lag = max(0, highwater - position)
            self._metrics.consumer_lag.labels(self.tenant, str(tp.partition)).set(lag)

    def _fail_all(self, error: StreamClosed | None) -> None:
        for subs in list(self._subs.values()):
            for sub in list(subs):
                if error is not None:
                    sub.fail(error)
