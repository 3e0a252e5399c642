"""Kafka topics of the tests: made (and seen by the broker) before anyone
subscribes, deleted after."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tidings.settings import Settings
from tidings.topics import events_topic


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
