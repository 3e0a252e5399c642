"""Reading a run's Kafka records back (with headers) and holding a tail behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from tests.topics import topic_partitions
from tidings.events import Event

Record = ConsumerRecord[bytes, bytes]


async def run_records(
    bootstrap: str,
    topic: str,
    run_id: str,
    *,
    until: Callable[[list[Event]], bool] | None = None,
    timeout: float = 30.0,  # noqa: ASYNC109 (a deadline for polling)
) -> list[Record]:
    """The run's records from the beginning, until a terminal event (or ``until``)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await topic_partitions(bootstrap, topic)
        assert tps, f"topic {topic} does not exist"
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        found: list[Record] = []

        def done() -> bool:
            events = [Event.from_bytes(r.value or b"") for r in found]
            return until(events) if until else any(e.is_terminal for e in events)

        while not done():
            if loop.time() > deadline:
                raise AssertionError(f"not within {timeout:g}s: the records of run {run_id}")
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                found.extend(r for r in records if (r.key or b"").decode() == run_id)
        return found
    finally:
        await consumer.stop()


def events_of(records: list[Record]) -> list[Event]:
    return [Event.from_bytes(r.value or b"") for r in records]


@asynccontextmanager
async def held_tail(
    bootstrap: str, topic: str
) -> AsyncIterator[tuple[AIOKafkaConsumer, list[TopicPartition]]]:
    """A live tail as a gateway runs one (no group, every partition, from the
    end) that the test never lets read: its lag grows with every record."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = await topic_partitions(bootstrap, topic)
        assert tps, f"topic {topic} does not exist"
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        yield consumer, tps
    finally:
        await consumer.stop()
