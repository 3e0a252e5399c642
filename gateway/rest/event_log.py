"""Reading a run's stored events back from Kafka, one bounded page at a time.

A run's events live in its tenant's topic, in the one partition its key (the
run id) hashes to, interleaved with other runs' events. A page scans that
partition forward from a cursor and keeps the records whose key is the run.

Cursors (``gateway.cursor``, opaque to clients, documented for operators):
``"<partition>:<offset>"`` — the Kafka position of the last record *scanned*
(not necessarily returned). ``after=<cursor>`` resumes at ``offset + 1``, so
records of other runs are never rescanned. A page stops at whichever comes
first: ``limit`` events, :data:`MAX_SCAN` records read, :data:`READ_BUDGET`
seconds, or the end of the log as it was when the page began; ``more`` says
whether a bound, not the end, stopped it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from gateway.cursor import Cursor
from gateway.kafka import KafkaFactory
from tidings.errors import BadRequest
from tidings.events import EnvelopeError, Event
from tidings.kafka_log import partition_for, run_key, started
from tidings.topics import events_topic

log = logging.getLogger(__name__)

MAX_SCAN = 20_000  # records read per page, whoever they belong to
READ_BUDGET = 5.0  # seconds of Kafka reading per page
_FETCH_MS = 500


@dataclass
class Page:
    events: list[tuple[Cursor, dict[str, Any]]] = field(default_factory=list)
    next_cursor: Cursor | None = None
    more: bool = False


async def read_page(
    kafka: KafkaFactory,
    *,
    topic_prefix: str,
    tenant: str,
    run_id: str,
    after: Cursor | None,
    limit: int,
    max_scan: int = MAX_SCAN,
    budget: float = READ_BUDGET,
) -> Page:
    topic = events_topic(topic_prefix, tenant)
    partitions = await kafka.partitions(topic)
    if partitions is None:
        # A tenant whose topic does not exist yet has no stored events.
        return Page(next_cursor=after)
    partition = partition_for(run_id, partitions)
    if after is not None and after.partition != partition:
        raise BadRequest("cursor does not belong to this run")
    scan = _Scan(TopicPartition(topic, partition), tenant, run_id, limit, max_scan, budget)
    async with kafka.read_slots:
        consumer = await started(kafka.consumer())
        try:
            return await scan.run(consumer, after)
        finally:
            await consumer.stop()


@dataclass(frozen=True)
class _Scan:
    """One bounded forward read of a run's partition."""

    tp: TopicPartition
    tenant: str
    run_id: str
    limit: int
    max_scan: int
    budget: float

    async def run(self, consumer: Any, after: Cursor | None) -> Page:
        tp = self.tp
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        first = (await consumer.beginning_offsets([tp]))[tp]
        # Retention may have deleted what the cursor points past.
        start = first if after is None else max(after.offset + 1, first)
        if start >= end:
            return Page(next_cursor=after)
        consumer.seek(tp, start)
        return await self._forward(consumer, start, end)

    async def _forward(self, consumer: Any, start: int, end: int) -> Page:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.budget
        key = run_key(self.run_id)
        page = Page()
        position = start  # next offset to look at
        scanned = 0
        while position < end and len(page.events) < self.limit and scanned < self.max_scan:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            batch = await consumer.getmany(
                self.tp,
                timeout_ms=int(min(remaining * 1000, _FETCH_MS)),
                max_records=min(500, self.max_scan - scanned),
            )
            records = batch.get(self.tp, [])
            if not records:
                # Transaction markers take offsets but yield no record: trust the
                # consumer's position to know whether the log end was reached.
                position = max(position, await consumer.position(self.tp))
                continue
            for record in records:
                if record.offset >= end:
                    # Appended after this page began: leave it for the next page,
                    # so the cursor never skips a record nobody looked at.
                    position = end
                    break
                position = record.offset + 1
                scanned += 1
                if record.key == key:
                    event = _envelope(record.value, self.tenant, self.run_id)
                    if event is not None:
                        page.events.append((Cursor(self.tp.partition, record.offset), event))
                if len(page.events) >= self.limit:
                    break
        # position 0 means nothing was scanned from the very start: no cursor yet.
        page.next_cursor = Cursor(self.tp.partition, position - 1) if position > 0 else None
        page.more = position < end
        return page


def _envelope(value: bytes | None, tenant: str, run_id: str) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        raw = json.loads(value)
        event = Event.from_dict(raw)
    except (EnvelopeError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        # Unreadable records go to the DLQ on the way in; here they are skipped.
        log.info("skipping unreadable record of %s: %s", run_id, type(exc).__name__)
        return None
    if event.tenant != tenant or event.run_id != run_id:
        return None
    # The envelope as emitted, not re-serialised: fields newer than this
    # gateway's Event class reach the client intact.
    return dict(raw)
