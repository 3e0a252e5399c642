"""Kafka topics of the tests: made (and seen by the broker) before anyone
subscribes, deleted after."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import ConsumerRecord

from tidings.events import Event
from tidings.settings import Settings
from tidings.topics import events_topic

Record = ConsumerRecord[bytes, bytes]


@asynccontextmanager
async def kafka_admin(bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def create_topics(
    bootstrap: str,
    topics: Sequence[str],
    partitions: int = 3,
    within: float = 20,
) -> None:
    """Create ``topics`` and wait until the broker lists them all: a consumer
    that subscribes earlier would miss its partitions."""
    async with kafka_admin(bootstrap) as admin:
        await admin.create_topics([NewTopic(t, partitions, 1) for t in topics])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not set(topics) <= set(await admin.list_topics()):
            assert loop.time() < deadline, f"topics {list(topics)} never appeared"
            await asyncio.sleep(0.05)


async def topic_partitions(
    bootstrap: str, topic: str, within: float = 10.0
) -> list[TopicPartition]:
    """``topic``'s partitions once the cluster's metadata lists them, or none
    after ``within`` seconds: a topic created a moment ago may not be on every
    broker yet. Every topic is described, not this one by name, because a
    metadata request naming a topic may auto-create it."""
    async with kafka_admin(bootstrap) as admin:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            described = await admin.describe_topics()
            found = [
                p["partition"] for t in described if t["topic"] == topic for p in t["partitions"]
            ]
            if found or loop.time() > deadline:
                return [TopicPartition(topic, p) for p in sorted(found)]
            await asyncio.sleep(0.1)  # a poll interval, not a synchronisation


@asynccontextmanager
async def topic_reader(
    bootstrap: str, topic: str, *, from_end: bool = False, within: float = 10.0
) -> AsyncIterator[tuple[AIOKafkaConsumer, list[TopicPartition]]]:
    """A consumer of no group assigned every partition of ``topic``, at the
    beginning or (``from_end``) the end, its positions resolved; stopped after
    the block. ``topic`` must appear within ``within`` seconds."""
    tps = await topic_partitions(bootstrap, topic, within)
    assert tps, f"topic {topic} does not exist"
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        if from_end:
            await consumer.seek_to_end(*tps)
        else:
            await consumer.seek_to_beginning(*tps)
        for tp in tps:
            await consumer.position(tp)
        yield consumer, tps
    finally:
        await consumer.stop()


async def records_until(
    bootstrap: str,
    topic: str,
    *,
    key: str | None,
    until: Callable[[list[Record]], bool],
    timeout: float,  # noqa: ASYNC109 (a deadline for polling)
) -> list[Record]:
    """``topic``'s records (those with ``key``) from the beginning, until ``until`` holds."""
    async with topic_reader(bootstrap, topic, within=timeout) as (consumer, _):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        found: list[Record] = []
        while not until(found):
            if loop.time() > deadline:
                raise AssertionError(f"not within {timeout:g}s: wanted records on {topic}")
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found += [r for r in records if key is None or (r.key or b"").decode() == key]
        return found


async def records_to_end(
    bootstrap: str,
    topic: str,
    timeout: float = 30,  # noqa: ASYNC109 (a deadline for polling)
) -> list[Record]:
    """Every record of ``topic`` up to the end of its log as it is now, each
    partition's in order."""
    async with topic_reader(bootstrap, topic, within=timeout) as (consumer, tps):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        ends = await consumer.end_offsets(tps)
        found: list[Record] = []
        for tp in tps:
            while await consumer.position(tp) < ends[tp]:
                assert loop.time() < deadline, f"reading {tp} took over {timeout:g}s"
                batch = await consumer.getmany(tp, timeout_ms=500, max_records=5000)
                found += [r for r in batch.get(tp, []) if r.offset < ends[tp]]
        return found


async def run_records(
    bootstrap: str,
    topic: str,
    run_id: str,
    *,
    until: Callable[[list[Event]], bool] | None = None,
    timeout: float = 30.0,  # noqa: ASYNC109 (a deadline for polling)
) -> list[Record]:
    """The run's records from the beginning, until a terminal event (or ``until``)."""

    def done(found: list[Record]) -> bool:
        events = events_of(found)
        return until(events) if until else any(e.is_terminal for e in events)

    return await records_until(bootstrap, topic, key=run_id, until=done, timeout=timeout)


def events_of(records: list[Record]) -> list[Event]:
    return [Event.from_bytes(r.value or b"") for r in records]


async def delete_topics(bootstrap: str, topics: Sequence[str]) -> None:
    async with kafka_admin(bootstrap) as admin:
        await admin.delete_topics(list(topics))


async def delete_prefixed(bootstrap: str, prefix: str) -> None:
    """Every topic of a private prefix (tenant topics, DLQ, requests...)."""
    async with kafka_admin(bootstrap) as admin:
        ours = [t for t in await admin.list_topics() if t.startswith(f"{prefix}.")]
        if ours:
            await admin.delete_topics(ours)


@asynccontextmanager
async def private_topics(settings: Settings, tenant: str) -> AsyncIterator[None]:
    """The tenant's events topic in ``settings``' private prefix for the block;
    every topic of that prefix is deleted after."""
    bootstrap = settings.kafka.bootstrap_servers
    topic = events_topic(settings.kafka.topic_prefix, tenant)
    await create_topics(bootstrap, [topic], settings.kafka.partitions)
    try:
        yield
    finally:
        # The prefix is this suite's alone: a topic left behind harms no one,
        # so a failed clean-up must not fail the tests that ran.
        with contextlib.suppress(Exception):
            await delete_prefixed(bootstrap, settings.kafka.topic_prefix)
